#!/usr/bin/env python3
"""make-vhdx-seeds.py OUT_DIR VHDX...: turns VHDX files into seed inputs for
tests/fuzz/fuzz_vhdx_reader.c: flags byte, file size in 64 KiB pages, then
(page, length, data) records for every non-zero 64 KiB page, trailing zeros
trimmed. Files larger than 16 MiB are cut at 16 MiB (the BAT beyond is
dropped; the reader must cope)."""
import os, struct, sys

PAGE = 64 * 1024
out_dir = sys.argv[1]
os.makedirs(out_dir, exist_ok=True)
for path in sys.argv[2:]:
    data = open(path, "rb").read()[: 256 * PAGE]
    pages = (len(data) + PAGE - 1) // PAGE
    seed = bytearray([0]) + struct.pack("<H", pages)
    for p in range(pages):
        chunk = data[p * PAGE:(p + 1) * PAGE].rstrip(b"\0")
        if chunk:
            seed += struct.pack("<BH", p, len(chunk) & 0xFFFF) + chunk[:0xFFFF]
    name = os.path.basename(path).replace(".vhdx", "") + ".seed"
    open(os.path.join(out_dir, name), "wb").write(seed)
    print(name, len(seed))

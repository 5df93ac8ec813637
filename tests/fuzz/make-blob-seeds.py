#!/usr/bin/env python3
"""make-blob-seeds.py OUTDIR: seeds of fuzz_blob: a small layer tar (dirs,
files, a symlink, a hard link, a PAX xattr, a whiteout), as tar, gzip (two
members) and zstd (with checksum, plus a skippable frame), each behind mode
bytes that pick the media type, the digest check and the read style (see
tests/fuzz/fuzz_blob.c)."""
import gzip, io, os, subprocess, sys, tarfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(name, typ=tarfile.REGTYPE, data=b"", **kw):
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.mtime, ti.mode = typ, len(data), 1700000000, 0o644
        for k, v in kw.items():
            setattr(ti, k, v)
        t.addfile(ti, io.BytesIO(data) if data else None)
    add("etc", tarfile.DIRTYPE, mode=0o755)
    add("etc/hosts", data=b"127.0.0.1 localhost\n" * 30)
    add("etc/link", tarfile.SYMTYPE, linkname="hosts")
    add("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts")
    add("bin/tool", data=bytes(range(256)) * 20, pax_headers={"SCHILY.xattr.user.k": "v"})
    add("etc/.wh.old")
tar = buf.getvalue()
gz = gzip.compress(tar[:4096], mtime=0) + gzip.compress(tar[4096:], mtime=0)
zst = subprocess.run(["zstd", "-q", "-c", "--check"], input=tar, capture_output=True,
                     check=True).stdout
zst = b"\x50\x2a\x4d\x18\x03\x00\x00\x00abc" + zst
seeds = {"tar-auto": (0x00, tar), "tar-view": (0x11, tar), "tar-digest": (0x15, tar),
         "gzip-auto": (0x10, gz), "gzip-typed": (0x12, gz), "gzip-reads": (0xe2, gz),
         "gzip-wrongdigest": (0x1e, gz), "zstd-auto": (0x10, zst), "zstd-typed": (0x13, zst),
         "zstd-reads": (0x63, zst)}
for name, (mode, blob) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([mode]) + blob)

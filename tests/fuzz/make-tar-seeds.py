#!/usr/bin/python3
"""Seeds of fuzz_tar_convert: "option byte + tar" files from the small golden
layers (../shared's make_layers.py, if present), tests/layer/edge_tars.py and a
few gen_layer.py seeds. Run from the repository root:

  python3 tests/fuzz/make-tar-seeds.py tests/fuzz/corpus/tar_convert [SHARED]
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "layer"))
import edge_tars  # noqa: E402
import gen_layer  # noqa: E402

out = sys.argv[1]
shared = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "..", "..", "shared")
os.makedirs(out, exist_ok=True)
seeds = {}
for name, (_, data) in edge_tars.cases().items():
    if len(data) <= 16 * 1024:
        seeds["edge-" + name] = data
make = os.path.join(shared, "reference/layers/make_layers.py")
if os.path.exists(make):
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, make, d], check=True, capture_output=True)
        for f in sorted(os.listdir(d)):
            data = open(os.path.join(d, f), "rb").read()
            if f.endswith(".tar") and len(data) <= 32 * 1024:
                seeds["golden-" + f[:-4]] = data
for seed in (1, 2, 3, 5, 8, 13):
    data = gen_layer.small(seed, conflicts=seed % 2 == 0)
    if len(data) <= 32 * 1024:
        seeds["random-%d" % seed] = data
for i, (name, data) in enumerate(sorted(seeds.items())):
    opt = 1 | (2 if i % 2 else 0) | (8 if i % 3 == 0 else 0) | ((i % 16) << 4)
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([opt]) + data)
print("%d seeds in %s" % (len(seeds), out))

#!/bin/sh
# make-golden.sh SHARED_DIR OUT_DIR
# Fixture of the verity and VHD unit tests: writes the golden layer tars
# (SHARED_DIR/reference/layers/make_layers.py) and what hcsshim's tar2ext4
# (SHARED_DIR/tools/tar2ext4-ref) makes of them into OUT_DIR, so that the
# tests can compare against them natively and as win64 exes under Wine
# (which cannot start Linux programs themselves):
#   CASE.vhd         -overlay -vhd -max-gb 128          (ext4 + VHD footer)
#   CASE.verity.vhd  -overlay -verity -vhd -max-gb 128  (+ superblock and tree)
#   CASE.roothash    tar2ext4-ref -i CASE.tar -roothash
#   golden.json      the recorded sizes and hashes
# Without SHARED_DIR (an outside clone) it writes OUT_DIR/ABSENT saying so,
# and the tests skip with that message.
set -eu
shared=$1 out=$2
rm -rf "$out"
mkdir -p "$out"
ref=$shared/tools/tar2ext4-ref
gen=$shared/reference/layers/make_layers.py
golden=$shared/reference/layers/golden.json
for f in "$ref" "$gen" "$golden"; do
    if [ ! -f "$f" ]; then
        echo "$f is absent: golden layer comparisons skipped" | tee "$out/ABSENT"
        exit 0
    fi
done
python3 "$gen" "$out" >/dev/null
cp "$golden" "$out/golden.json"
n=0
for tar in "$out"/*.tar; do
    case=$(basename "$tar" .tar)
    [ "$case" = overwrite ] && continue # tar2ext4 refuses it (golden.json: reference_fails)
    "$ref" -i "$tar" -o "$out/$case.vhd" -overlay -vhd -max-gb 128
    "$ref" -i "$tar" -o "$out/$case.verity.vhd" -overlay -verity -vhd -max-gb 128
    "$ref" -i "$tar" -roothash >"$out/$case.roothash"
    n=$((n + 1))
done
echo "golden: $n cases in $out"

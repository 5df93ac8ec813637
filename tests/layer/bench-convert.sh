#!/bin/bash
# bench-convert.sh CONVERTER [ROUNDS] [TAR]
# The tar -> ext4 benchmark of docs/layers.md: the generated ~280 MB,
# 20,000-entry layer (gen_layer.py 7 --profile bench, made once into
# $TMPDIR) converted by CONVERTER (a release build's tests/layer/layer_convert)
# with fsync, beside tar2ext4-ref (-overlay -vhd -max-gb 128, then sync of its
# output) and beside cp of the tar plus sync (the copy floor), interleaved,
# ROUNDS times (default 5). Prints each run (wall s, user+sys s, peak RSS
# KiB) and the medians, and checks that the two images are identical.
# Needs ../shared/tools/tar2ext4-ref and GNU time (/usr/bin/time).
set -eu
conv=$1 rounds=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
ref=${LCOW_SHARED_DIR:-$here/../../../shared}/tools/tar2ext4-ref
tmp=${TMPDIR:-/tmp}/lcow-bench-convert
mkdir -p "$tmp"
tar=${3:-$tmp/bench.tar}
[ -f "$tar" ] || python3 "$here/gen_layer.py" 7 "$tar" --profile bench
[ -x "$ref" ] || { echo "bench-convert: $ref is absent"; exit 77; }
out=$tmp/out
measure() { # NAME CMD...: appends "wall cpu rss" to $tmp/NAME
    local name=$1
    shift
    rm -f "$out".*
    sync
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/time" "$@" >/dev/null
    read -r wall user sys rss <"$tmp/time"
    cpu=$(echo "$user + $sys" | bc)
    printf "%-14s %6.2f s  cpu %5.2f s  rss %7d KiB\n" "$name" "$wall" "$cpu" "$rss"
    echo "$wall $cpu $rss" >>"$tmp/$name"
}
rm -f "$tmp/cp+sync" "$tmp/tar2ext4-ref" "$tmp/lcowsnap"
cat "$tar" >/dev/null # the tar in the page cache for everyone
echo "layer: $tar ($(stat -c %s "$tar") bytes, $(tar tf "$tar" | wc -l) entries)"
for _ in $(seq "$rounds"); do
    measure cp+sync sh -c "cp '$tar' '$out.cp' && sync '$out.cp'"
    measure tar2ext4-ref sh -c "'$ref' -i '$tar' -o '$out.ref' -overlay -vhd -max-gb 128 && sync '$out.ref'"
    measure lcowsnap "$conv" -i "$tar" -o "$out.ours" -overlay -max-gb 128 -sync
done
"$ref" -i "$tar" -o "$out.ref" -overlay -vhd -max-gb 128
"$conv" -i "$tar" -o "$out.ours" -overlay -max-gb 128
if cmp -s "$out.ours" <(head -c -512 "$out.ref"); then echo "images identical"; else echo "IMAGES DIFFER"; exit 1; fi
rm -f "$out".*
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "medians of $rounds rounds (wall, cpu, peak rss):"
for n in cp+sync tar2ext4-ref lcowsnap; do
    printf "  %-14s %s s  %s s  %s KiB\n" "$n" "$(cut -d' ' -f1 "$tmp/$n" | median)" \
        "$(cut -d' ' -f2 "$tmp/$n" | median)" "$(cut -d' ' -f3 "$tmp/$n" | median)"
done

#!/bin/sh
# check-verity.sh DIR VERITYSETUP
# Verifies the [data][superblock][tree] images test_verity exported into DIR
# (listed in DIR/MANIFEST as "FILE DATA_BYTES ROOT_HASH") with `veritysetup
# verify`. Its purpose is the win64 build, whose test exe writes the images
# under Wine, where it cannot run veritysetup itself.
set -eu
dir=$1 vs=$2
[ -f "$dir/MANIFEST" ] || { echo "no $dir/MANIFEST: did test_verity run?"; exit 1; }
fail=0 n=0
cr=$(printf '\r')
while read -r file data root; do
    root=${root%"$cr"} # a MANIFEST written with CRLF
    if out=$("$vs" verify --hash-offset="$data" "$dir/$file" "$dir/$file" "$root" 2>&1); then
        echo "ok   $file: veritysetup verify accepts root $root"
        n=$((n + 1))
    else
        echo "FAIL $file: veritysetup verify: $out"
        fail=1
    fi
done <"$dir/MANIFEST"
[ "$n" -gt 0 ] || { echo "FAIL: MANIFEST lists no image"; exit 1; }
exit $fail

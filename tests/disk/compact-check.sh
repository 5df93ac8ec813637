#!/bin/sh
# compact-check.sh DIR QEMU_IMG E2FSCK DEBUGFS
# Checks what test_compact left in DIR (compact-fixture.sh's directory):
# compacted.vhdx and every crash-N.vhdx (compaction stopped after step N)
# must pass `qemu-img check` and `e2fsck -fn`, and every file of DIR/KEEP
# must read back (debugfs dump) with its sha256. Run after test_compact in
# every build; under Wine the test exe cannot start these tools itself.
set -eu
dir=$1 qemu=$2 e2fsck=$3 debugfs=$4
[ -f "$dir/compacted.vhdx" ] || { echo "no $dir/compacted.vhdx: did test_compact run?"; exit 1; }
fail=0 n=0
for img in "$dir"/compacted.vhdx "$dir"/crash-*.vhdx; do
    [ -f "$img" ] || continue
    n=$((n + 1))
    name=$(basename "$img")
    out=$("$qemu" check -f vhdx "$img" 2>&1) && echo "$out" | grep -q "No errors were found" ||
        { echo "FAIL $name: qemu-img check"; echo "$out"; fail=1; continue; }
    raw=$dir/check.raw
    rm -f "$raw"
    "$qemu" convert -f vhdx -O raw "$img" "$raw"
    out=$("$e2fsck" -fn "$raw" 2>&1) || { echo "FAIL $name: e2fsck -fn"; echo "$out"; fail=1; continue; }
    while read -r file sum; do
        rm -f "$dir/dump"
        "$debugfs" -R "dump $file $dir/dump" "$raw" >/dev/null 2>&1
        got=$(sha256sum <"$dir/dump" | cut -d' ' -f1)
        [ "$got" = "$sum" ] || { echo "FAIL $name: $file reads back different"; fail=1; }
    done <"$dir/KEEP"
    rm -f "$raw" "$dir/dump"
    echo "ok   $name: $(stat -c %s "$img") bytes, qemu-img check and e2fsck -fn clean, $(wc -l <"$dir/KEEP") files identical"
done
[ $n -ge 2 ] || { echo "FAIL: only $n images to check"; exit 1; }
# Checked images go (hundreds of MiB each); a failure keeps them to look at.
[ $fail = 0 ] && rm -f "$dir"/compacted.vhdx "$dir"/crash-*.vhdx
exit $fail

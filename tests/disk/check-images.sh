#!/bin/sh
# check-images.sh DIR QEMU_IMG E2FSCK DUMPE2FS
# Validates the images a disk unit test exported into DIR (listed in
# DIR/MANIFEST as "KIND FILE SIZE BLOCK [RAW]") with the Linux tools. Its purpose
# is the win64 build: the Windows test exe writes the images under Wine,
# where it cannot run qemu-img or e2fsck itself.
set -eu
dir=$1 qemu=$2 e2fsck=$3 dumpe2fs=$4
[ -f "$dir/MANIFEST" ] || { echo "no $dir/MANIFEST: did the exporting test run?"; exit 1; }
features="ext_attr dir_index sparse_super2 filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum"
fail=0
check_ext4() { # image label
    out=$("$e2fsck" -fn "$1" 2>&1) || { echo "FAIL $2: e2fsck -fn rc $?"; echo "$out"; return 1; }
    n=$(printf '%s\n' "$out" | wc -l)
    [ "$n" -le 7 ] || { echo "FAIL $2: e2fsck -fn was not silent"; echo "$out"; return 1; }
    "$dumpe2fs" -h "$1" 2>/dev/null | grep -q "^Filesystem features: *$features\$" ||
        { echo "FAIL $2: unexpected features"; "$dumpe2fs" -h "$1"; return 1; }
    echo "ok   $2: e2fsck -fn clean, features as mkfs.ext4"
}
while read -r kind file size block raw; do
    img=$dir/$file
    case $kind in
    vhdx-ext4)
        out=$("$qemu" check -f vhdx "$img" 2>&1) && echo "$out" | grep -q "No errors were found" ||
            { echo "FAIL $file: qemu-img check"; echo "$out"; fail=1; continue; }
        info=$("$qemu" info -f vhdx --output=json "$img")
        echo "$info" | grep -q "\"virtual-size\": $size," &&
            echo "$info" | grep -q "\"cluster-size\": $block," ||
            { echo "FAIL $file: qemu-img info"; echo "$info"; fail=1; continue; }
        echo "ok   $file: qemu-img check clean, info: vhdx, $size bytes, $block-byte blocks"
        rm -f "$img.raw"
        "$qemu" convert -f vhdx -O raw "$img" "$img.raw"
        check_ext4 "$img.raw" "$file" || fail=1
        rm -f "$img.raw"
        ;;
    vhdx-raw)
        out=$("$qemu" check -f vhdx "$img" 2>&1) && echo "$out" | grep -q "No errors were found" ||
            { echo "FAIL $file: qemu-img check"; echo "$out"; fail=1; continue; }
        info=$("$qemu" info -f vhdx --output=json "$img")
        echo "$info" | grep -q "\"virtual-size\": $size," &&
            echo "$info" | grep -q "\"cluster-size\": $block," ||
            { echo "FAIL $file: qemu-img info"; echo "$info"; fail=1; continue; }
        out=$("$qemu" compare -f raw -F vhdx "$dir/$raw" "$img" 2>&1) ||
            { echo "FAIL $file: qemu-img compare with $raw"; echo "$out"; fail=1; continue; }
        echo "ok   $file: qemu-img check clean, info as written, identical to $raw"
        ;;
    raw-ext4)
        [ "$(stat -c %s "$img")" = "$size" ] || { echo "FAIL $file: size"; fail=1; continue; }
        check_ext4 "$img" "$file" || fail=1
        ;;
    *) echo "FAIL: unknown kind $kind"; fail=1 ;;
    esac
done <<EOF_MANIFEST
$(tr -d '\r' <"$dir/MANIFEST")
EOF_MANIFEST
exit $fail

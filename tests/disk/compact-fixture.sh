#!/bin/sh
# compact-fixture.sh OUTDIR QEMU_IMG DEBUGFS MKFS_EXT4 [SOURCE_VHDX [MiB_PER_FILE]]
# Makes a scratch disk that was filled and emptied, for Compact's tests:
#   - SOURCE_VHDX (a sandbox.vhdx the service made) converted to raw with
#     qemu-img, or, without one, a 1 GiB raw file formatted as lcowsnap's
#     formatter does (docs/disk-format.md: the same mkfs.ext4 options);
#   - eight files of random data written with `debugfs -w -R write`, plus
#     two small ones; six of the big ones deleted again (`debugfs -w -R rm`);
#   - converted back with `qemu-img convert -O vhdx -o subformat=dynamic`
#     (1 MiB blocks, as lcowsnap's own disks), so the deleted data still
#     occupies payload blocks.
# Writes OUTDIR/filled.vhdx, OUTDIR/KEEP (name sha256 of every file that
# stays) and OUTDIR/FREED (bytes of the deleted files).
set -eu
out=$1 qemu=$2 debugfs=$3 mkfs=$4 src=${5:-} mib=${6:-24}
mkdir -p "$out"
raw=$out/work.raw
rm -f "$raw" "$out/filled.vhdx" "$out/KEEP" "$out/FREED"
if [ -n "$src" ]; then
    "$qemu" convert -f vhdx -O raw "$src" "$raw"
else
    truncate -s 1G "$raw"
    "$mkfs" -q -F -E lazy_itable_init=0,nodiscard -O ^has_journal,sparse_super2,^resize_inode "$raw"
fi
i=0
freed=0
: >"$out/KEEP"
while [ $i -lt 8 ]; do
    head -c $((mib * 1048576)) /dev/urandom >"$out/f$i"
    "$debugfs" -w -R "write $out/f$i f$i" "$raw" >/dev/null 2>&1
    i=$((i + 1))
done
for small in s0 s1; do
    head -c 5000 /dev/urandom >"$out/$small"
    "$debugfs" -w -R "write $out/$small $small" "$raw" >/dev/null 2>&1
    echo "$small $(sha256sum <"$out/$small" | cut -d' ' -f1)" >>"$out/KEEP"
done
for i in 0 1 2 4 5 7; do
    "$debugfs" -w -R "rm f$i" "$raw" >/dev/null 2>&1
    freed=$((freed + mib * 1048576))
done
for i in 3 6; do
    echo "f$i $(sha256sum <"$out/f$i" | cut -d' ' -f1)" >>"$out/KEEP"
done
rm -f "$out"/f[0-9] "$out"/s[0-9]
# Every file must be there (debugfs reports errors on stdout only).
for name in $(cut -d' ' -f1 "$out/KEEP"); do
    "$debugfs" -R "stat $name" "$raw" 2>/dev/null | grep -q "^Inode:" ||
        { echo "debugfs did not write $name"; exit 1; }
done
echo "$freed" >"$out/FREED"
"$qemu" convert -f raw -O vhdx -o subformat=dynamic,block_size=1048576 "$raw" "$out/filled.vhdx"
rm -f "$raw"
echo "fixture: $out/filled.vhdx, $(wc -l <"$out/KEEP") files kept, $freed bytes deleted"

#!/usr/bin/env bash
# containerd (its own --config with its own root, state, socket addresses and
# plugin directory; never the system's /run/containerd or /var/lib/containerd)
# with lcowsnap's gRPC socket as the proxy snapshotter "lcowsnap", driven with
# `ctr snapshots --snapshotter lcowsnap`: prepare, commit, view, ls, tree,
# info, label, usage, mounts, rm and their errors as containerd reports them,
# then containerd's garbage collector removing an unreferenced snapshot
# through the endpoint. containerd's snapshots live in their own partition of
# the store (<root>/partitions/containerd): lcowsnapctl (the MessagePack
# endpoint, the shims') does not see them, a shim's snapshot survives
# containerd's collector and containerd's survive a shim's Cleanup.
#   proxy_plugin.sh LCOWSNAP LCOWSNAPCTL
set -euo pipefail
LCOWSNAP=$1 LCOWSNAPCTL=$2

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: containerd_proxy_plugin needs root (containerd runs as root); run as root to test lcowsnap under the real containerd"
  exit 77
fi
for tool in containerd ctr; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not installed (Debian package containerd; scripts/install-deps.sh installs it)"
    exit 77
  fi
done

. "$(dirname "$0")/lib.sh"
private_dir lcow-ctrd

start_lcowsnap_and_containerd
echo "ok: containerd $(containerd --version | awk '{print $3}') loaded lcowsnap as a proxy snapshotter"

SN=("${CTR[@]}" snapshots --snapshotter lcowsnap)
ctl() { "$LCOWSNAPCTL" --address "$DIR/root/lcowsnap.sock" "$@"; }
ok() { # DESCRIPTION -- COMMAND...: must succeed; prints its output to $DIR/out
  local what=$1; shift 2
  "$@" >"$DIR/out" 2>&1 || fail "$what: $* failed: $(cat "$DIR/out")"
  echo "ok: $what"
}
has() { grep -qF -- "$1" "$DIR/out" || fail "expected '$1' in: $(cat "$DIR/out")"; }
lacks() { ! grep -qF -- "$1" "$DIR/out" || fail "did not expect '$1' in: $(cat "$DIR/out")"; }
refused() { # DESCRIPTION TEXT -- COMMAND...: must fail and say TEXT
  local what=$1 text=$2 rc=0; shift 3
  "$@" >"$DIR/out" 2>&1 || rc=$?
  [ "$rc" != 0 ] || fail "$what: $* succeeded: $(cat "$DIR/out")"
  has "$text"
  echo "ok: $what: $(head -n 1 "$DIR/out")"
}

ok "prepare a layer" -- "${SN[@]}" prepare base
ok "commit it" -- "${SN[@]}" commit base-c base
ok "prepare a container snapshot on it" -- "${SN[@]}" prepare --mounts child base-c
has '"Type": "lcow-layer"'
has 'parentLayerPaths=['
ok "view" -- "${SN[@]}" view v1 base-c
# ctr's view has no gc root (prepare's has): without one the collector,
# which the removals below set off, may take it first.
ok "a gc root for the view" -- "${SN[@]}" label v1 containerd.io/gc.root=test
ok "ls" -- "${SN[@]}" ls
has "base-c"; has "child"; has "v1"
grep -Eq "^child +base-c +Active" "$DIR/out" || fail "ls: $(cat "$DIR/out")"
ok "tree" -- "${SN[@]}" tree
has "\\_ child"
ok "info" -- "${SN[@]}" info child
has '"Kind": "Active"'; has '"Parent": "base-c"'
ok "label" -- "${SN[@]}" label child team=lcow
has "team=lcow"
ok "info after label" -- "${SN[@]}" info child
has '"team": "lcow"'
ok "label removed" -- "${SN[@]}" label child team=
ok "info after removal" -- "${SN[@]}" info child
lacks '"team"'
ok "usage" -- "${SN[@]}" usage child
grep -Eq "^child +[0-9.]+ [KMG]?i?B +[0-9]+" "$DIR/out" || fail "usage: $(cat "$DIR/out")"
ok "mounts" -- "${SN[@]}" mounts /mnt child
has "mount -t lcow-layer $DIR/root/partitions/containerd/snapshots/"
# containerd's partition: not the shims'.
ok "the shims' partition (MessagePack endpoint)" -- ctl ls
lacks "child"
ok "a shim's snapshot" -- ctl prepare default/1/shim-layer

refused "prepare on a missing parent" "does not exist: not found" -- "${SN[@]}" prepare x missing
refused "prepare an existing key" "already exists" -- "${SN[@]}" prepare child base-c
# This one is lcowsnap's answer, through errdefs: FailedPrecondition.
refused "commit of a view" "is view, not active: only active snapshots can be committed: failed precondition" -- \
  "${SN[@]}" commit c2 v1
refused "rm of a parent" "failed precondition" -- "${SN[@]}" rm base-c

ok "rm" -- "${SN[@]}" rm child v1
ok "ls after rm" -- "${SN[@]}" ls
lacks "child"; has "base-c"

# Garbage collection: a snapshot without a gc.root label is removed by
# containerd's collector (a synchronous lease removal runs it), through the
# endpoint's List, Remove and Cleanup.
ok "prepare a collectable snapshot" -- "${SN[@]}" prepare gcme base-c
ok "drop its gc root" -- "${SN[@]}" label gcme containerd.io/gc.root=
dirs_before=$(ls "$DIR/root/partitions/containerd/snapshots" | wc -l)
lease=$("${CTR[@]}" leases create | awk '{print $1}')
ok "run the garbage collector" -- "${CTR[@]}" leases rm --sync "$lease"
ok "ls after gc" -- "${SN[@]}" ls
lacks "gcme"; has "base-c"
dirs_after=$(ls "$DIR/root/partitions/containerd/snapshots" | wc -l)
[ "$dirs_after" -lt "$dirs_before" ] ||
  fail "gc left the directory: $dirs_before -> $dirs_after in partitions/containerd/snapshots"
echo "ok: its directory is gone ($dirs_before -> $dirs_after)"
ok "the shim's snapshot survived containerd's gc" -- ctl ls
has "default/1/shim-layer"
ok "a shim's Cleanup" -- ctl cleanup
ok "containerd's snapshots survived it" -- "${SN[@]}" ls
has "base-c"
# containerd 1.6's collector leaves the collected child in its parent's
# children index (its native snapshotter shows the same), so `ctr snapshots
# rm base-c` would now be refused: the collector takes the parent too.
ok "drop the parent's gc root" -- "${SN[@]}" label base-c containerd.io/gc.root=
lease=$("${CTR[@]}" leases create | awk '{print $1}')
ok "collect again" -- "${CTR[@]}" leases rm --sync "$lease"
ok "ls after the second gc" -- "${SN[@]}" ls
lacks "base-c"
[ -z "$(ls "$DIR/root/partitions/containerd/snapshots")" ] ||
  fail "containerd's partition is not empty: $(ls "$DIR/root/partitions/containerd/snapshots")"
echo "ok: containerd's partition is empty"
ok "the shim's snapshot is still there" -- ctl ls
has "default/1/shim-layer"
echo "PASS: containerd_proxy_plugin"

# tests/containerd/lib.sh: sourced by proxy_plugin.sh and pull_unpack.sh.
#
# private_dir PREFIX: DIR becomes a new short directory /tmp/PREFIX.XXXXXX
# (Unix socket names and containerd's own paths must stay short), PIDS an
# empty list of processes to stop; on exit they are stopped (TERM, then KILL
# after 5 s), containerd's leftover mounts under DIR unmounted and DIR
# removed. fail MESSAGE prints it and the tail of every log in DIR, exits 1.
private_dir() {
  DIR=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap _lcow_ctrd_cleanup EXIT
}
_lcow_ctrd_cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # containerd may leave mounts of its own snapshotters under its root.
  grep -o " $DIR[^ ]*" /proc/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" || true; done
  rm -rf "$DIR"
  exit "$rc"
}
fail() {
  echo "FAIL: $*" >&2
  for f in "$DIR"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}
#
# start_lcowsnap_and_containerd: writes a private containerd config under
# $DIR (its own root, state, sockets; CRI and the other snapshotters off;
# lcowsnap's gRPC endpoint as the proxy snapshotter `lcowsnap`), starts
# $LCOWSNAP on $DIR/root and containerd on that config, and waits until
# containerd answers and has loaded the proxy plugin. Needs $DIR, $LCOWSNAP,
# a PIDS array and fail(); sets LCOWSNAP_PID and the CTR command array. Never
# touches the system's /run/containerd or /var/lib/containerd.
start_lcowsnap_and_containerd() {
  mkdir -p "$DIR/root" "$DIR/croot" "$DIR/cstate" "$DIR/opt"
  cat >"$DIR/config.toml" <<TOML
version = 2
root = "$DIR/croot"
state = "$DIR/cstate"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$DIR/containerd.sock"
[ttrpc]
  address = "$DIR/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/opt"
[proxy_plugins.lcowsnap]
  type = "snapshot"
  address = "$DIR/root/lcowsnap-grpc.sock"
TOML
  "$LCOWSNAP" --root "$DIR/root" --log-level debug >"$DIR/lcowsnap.log" 2>&1 &
  LCOWSNAP_PID=$!
  PIDS+=("$LCOWSNAP_PID")
  for _ in $(seq 1 100); do grep -q "in the foreground" "$DIR/lcowsnap.log" && break; sleep 0.1; done
  grep -q "gRPC endpoint $DIR/root/lcowsnap-grpc.sock secured" "$DIR/lcowsnap.log" ||
    fail "lcowsnap did not open its gRPC endpoint"
  containerd --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 &
  PIDS+=($!)
  CTR=(ctr -a "$DIR/containerd.sock")
  for _ in $(seq 1 100); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
  "${CTR[@]}" version >/dev/null 2>&1 || fail "containerd did not start"
  "${CTR[@]}" plugins ls | grep -E "io.containerd.snapshotter.v1 +lcowsnap .* ok" >/dev/null ||
    fail "containerd did not load the lcowsnap proxy plugin: $("${CTR[@]}" plugins ls | grep lcowsnap)"
}

#!/usr/bin/env bash
# containerd's remote-snapshot protocol against lcowsnap (issue 17): a pull
# with unpack of an image whose layers lcowsnap's layer store already holds
# fetches and applies no layer. Only containerd's client Pull with unpack
# (the CRI plugin's and nerdctl's path) sends containerd.io/snapshot.ref on
# the extraction Prepare, so the test serves the image from its own registry
# (Debian's docker-registry on 127.0.0.1) and pulls with pullunpack/main.go,
# built here offline from Debian's golang-go and
# golang-github-containerd-containerd-dev. containerd is started as in
# proxy_plugin.sh (its own root, state, socket and config).
#   1. three layers imported through the MessagePack endpoint (lcowsnapctl
#      import: converted into the shared layer store);
#   2. pull of the image (those three layers) in namespace "first": unpacked,
#      no conversion (bytes_converted unchanged), no layer blob requested
#      from the registry (its log shows the manifest and config GETs), each
#      chain snapshot committed in containerd's partition with its ref label
#      and hard-linked to the stored layer (references 1 -> 2);
#   3. the control: an image of the same three layers plus one lcowsnap does
#      not hold, in namespace "second": the three are adopted again without a
#      fetch, the fourth blob is fetched (the log check sees fetches) and its
#      apply fails (Linux has no LCOW differ for the lcow-layer mount), so
#      the image is not unpacked.
#   pull_unpack.sh LCOWSNAP LCOWSNAPCTL WORKDIR   (WORKDIR: a build directory
#   for the Go program and its build cache)
set -euo pipefail
LCOWSNAP=$1 LCOWSNAPCTL=$2 WORK=$3
HERE=$(cd "$(dirname "$0")" && pwd)
GOSRC=/usr/share/gocode/src/github.com/containerd/containerd

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: containerd_pull_unpack needs root (containerd runs as root); run as root to test lcowsnap under the real containerd"
  exit 77
fi
for tool in containerd:containerd ctr:containerd docker-registry:docker-registry go:golang-go \
            python3:python3; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    echo "SKIP: ${tool%%:*} not installed (Debian package ${tool#*:}; scripts/install-deps.sh installs it)"
    exit 77
  fi
done
if [ ! -f "$GOSRC/client.go" ]; then
  echo "SKIP: containerd's Go sources not installed (Debian package golang-github-containerd-containerd-dev; scripts/install-deps.sh installs it)"
  exit 77
fi

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# The client program: GOPATH mode over Debian's Go sources, offline.
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd) # GOCACHE must be absolute
t0=$(date +%s.%N)
(cd "$HERE/pullunpack" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off \
   GOCACHE="$WORK/gocache" go build -o "$WORK/pullunpack" .) ||
  { echo "FAIL: building pullunpack with Debian's Go packages"; exit 1; }
echo "ok: pullunpack built in $(since "$t0") s"
PULL=$WORK/pullunpack

. "$(dirname "$0")/lib.sh"
private_dir lcow-pull

# The registry: 127.0.0.1 on a free port, storage in $DIR, request log on.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
mkdir -p "$DIR/registry" "$DIR/blobs"
cat >"$DIR/registry.yml" <<YML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $DIR/registry
http:
  addr: $REG
YML
docker-registry serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/', timeout=1)" 2>/dev/null && break
  sleep 0.1
done
python3 -c "import urllib.request; urllib.request.urlopen('http://$REG/v2/', timeout=2)" ||
  fail "docker-registry did not start on $REG"
echo "ok: registry on $REG"

python3 "$HERE/registry_image.py" "$REG" lcowsnap/held v1 "$DIR/blobs" base middle top >"$DIR/held" ||
  fail "pushing lcowsnap/held:v1"
python3 "$HERE/registry_image.py" "$REG" lcowsnap/control v1 "$DIR/blobs" base middle top unheld \
  >"$DIR/control" || fail "pushing lcowsnap/control:v1"
blob_of() { awk -v n="$1" '$1 == "layer" && $2 == n {print $3}' "$DIR/control"; }
diff_of() { awk -v n="$1" '$1 == "layer" && $2 == n {print $4}' "$DIR/control"; }
for n in base middle top; do
  [ "$(blob_of "$n")" = "$(awk -v n="$n" '$1 == "layer" && $2 == n {print $3}' "$DIR/held")" ] ||
    fail "layer $n differs between the two images"
done
echo "ok: pushed lcowsnap/held:v1 (base, middle, top) and lcowsnap/control:v1 (the same + unheld)"

start_lcowsnap_and_containerd
echo "ok: containerd $(containerd --version | awk '{print $3}') with lcowsnap as its proxy snapshotter"

ctl() { "$LCOWSNAPCTL" --address "$DIR/root/lcowsnap.sock" "$@"; }
converted() { ctl status | awk '$1 == "bytes_converted" {print $2}'; }
refs_of() { # DIFFID: the references `lcowsnapctl layers` counts
  ctl layers | awk -v d="$1" '$1 == d {print $(NF - 2)}' # DIFF-ID VERITY SIZE REFS LAST-USE BLOBS
}
# A request counter of `lcowsnapctl status` (both endpoints): METHOD/CODE.
count() { ctl status | awk -v k="$1" '$1 == k {n = $2} END {print n + 0}'; }
# What the registry served: "METHOD URI" per completed request.
served() {
  grep 'msg="response completed"' "$DIR/registry.log" |
    sed -n 's/.*http\.request\.method=\([A-Z]*\).*http\.request\.uri="\([^"]*\)".*/\1 \2/p'
}

# 1. The layers into the store through the MessagePack endpoint (a shim's
#    import: another partition; the store is shared).
parent=
for n in base middle top; do
  ctl import --digest "$(blob_of "$n")" "default/1/$n" "$DIR/blobs/$n.tar.gz" $parent >"$DIR/out" 2>&1 ||
    fail "import $n: $(cat "$DIR/out")"
  parent=default/1/$n
done
for n in base middle top; do
  [ "$(refs_of "$(diff_of "$n")")" = 1 ] || fail "layer $n not stored once: $(ctl layers)"
done
conv0=$(converted)
[ "${conv0:-0}" -gt 0 ] || fail "bytes_converted after three imports: '$conv0'"
echo "ok: three layers imported (bytes_converted $conv0, one reference each)"

# 2. Pull with unpack of the image of those layers.
before=$(served | wc -l)
exists0=$(count Prepare/AlreadyExists) prepared0=$(count Prepare/OK) committed0=$(count Commit/OK)
t0=$(date +%s.%N)
"$PULL" "$DIR/containerd.sock" first lcowsnap "$REG/lcowsnap/held:v1" >"$DIR/out" 2>&1 ||
  fail "pull of lcowsnap/held:v1: $(cat "$DIR/out")"
echo "ok: pull with unpack of lcowsnap/held:v1 ($(since "$t0") s)"
cp "$DIR/out" "$DIR/pull1"
grep -qx "unpacked true" "$DIR/pull1" || fail "image not unpacked: $(cat "$DIR/pull1")"
served | tail -n +$((before + 1)) >"$DIR/served1"
grep -q "^GET /v2/lcowsnap/held/manifests/$(awk '$1 == "manifest" {print $2}' "$DIR/held")$" "$DIR/served1" ||
  fail "the registry log shows no manifest GET (is it logging?): $(cat "$DIR/served1")"
grep -q "^GET /v2/lcowsnap/held/blobs/$(awk '$1 == "config" {print $2}' "$DIR/held")$" "$DIR/served1" ||
  fail "the registry log shows no config GET: $(cat "$DIR/served1")"
for n in base middle top; do
  ! grep -q "/blobs/$(blob_of "$n")" "$DIR/served1" ||
    fail "layer $n was fetched: $(cat "$DIR/served1")"
done
echo "ok: the registry served $(wc -l <"$DIR/served1") requests, the manifest and config, no layer blob"
[ "$(converted)" = "$conv0" ] || fail "the pull converted: bytes_converted $conv0 -> $(converted)"
echo "ok: no conversion (bytes_converted still $conv0)"
# containerd's side of the protocol: each extraction Prepare answered
# AlreadyExists, no snapshot prepared or committed for an apply.
[ "$(count Prepare/AlreadyExists)" = $((exists0 + 3)) ] ||
  fail "Prepare/AlreadyExists $exists0 -> $(count Prepare/AlreadyExists), not +3"
[ "$(count Prepare/OK)" = "$prepared0" ] && [ "$(count Commit/OK)" = "$committed0" ] ||
  fail "the pull prepared or committed: Prepare/OK $prepared0 -> $(count Prepare/OK), Commit/OK $committed0 -> $(count Commit/OK)"
echo "ok: three extraction Prepares answered AlreadyExists; no Prepare, no Commit of an extraction"
i=0
chain_parent=
while read -r _ idx diff chain; do
  [ "$diff" = "$(diff_of "$(sed -n "$((idx + 1))p" <<<"base
middle
top")")" ] || fail "diffID $idx: $diff"
  "${CTR[@]}" -n first snapshots --snapshotter lcowsnap info "$chain" >"$DIR/out" 2>&1 ||
    fail "no snapshot $chain in containerd: $(cat "$DIR/out")"
  grep -q '"Kind": "Committed"' "$DIR/out" || fail "$chain: $(cat "$DIR/out")"
  grep -q "\"containerd.io/snapshot.ref\": \"$chain\"" "$DIR/out" || fail "$chain has no ref label: $(cat "$DIR/out")"
  if [ -n "$chain_parent" ]; then
    grep -q "\"Parent\": \"$chain_parent\"" "$DIR/out" || fail "$chain's parent: $(cat "$DIR/out")"
  fi
  chain_parent=$chain
  i=$((i + 1))
done < <(grep '^chain ' "$DIR/pull1")
[ "$i" = 3 ] || fail "the image's chain: $(cat "$DIR/pull1")"
for n in base middle top; do
  [ "$(refs_of "$(diff_of "$n")")" = 2 ] ||
    fail "layer $n: $(refs_of "$(diff_of "$n")") references after the pull, not 2: $(ctl layers)"
done
echo "ok: the chain's three snapshots are committed with their ref labels, each linking its stored layer (references 1 -> 2)"
"${CTR[@]}" -n first images ls >"$DIR/out" 2>&1
grep -q "$REG/lcowsnap/held:v1" "$DIR/out" || fail "ctr images ls: $(cat "$DIR/out")"

# 3. The control: one more layer, not held. The held three are adopted
#    again (another namespace: lcowsnap's committed snapshot with that ref),
#    the fourth is fetched and its apply fails.
before=$(served | wc -l)
exists0=$(count Prepare/AlreadyExists) prepared0=$(count Prepare/OK)
rc=0
"$PULL" "$DIR/containerd.sock" second lcowsnap "$REG/lcowsnap/control:v1" >"$DIR/out" 2>&1 || rc=$?
cp "$DIR/out" "$DIR/pull2"
served | tail -n +$((before + 1)) >"$DIR/served2"
grep -q "^GET /v2/lcowsnap/control/blobs/$(blob_of unheld)$" "$DIR/served2" ||
  fail "the unheld layer was not fetched: $(cat "$DIR/served2")"
for n in base middle top; do
  ! grep -q "/blobs/$(blob_of "$n")" "$DIR/served2" ||
    fail "control: held layer $n was fetched: $(cat "$DIR/served2")"
done
if [ "$rc" = 0 ]; then
  grep -qx "unpacked true" "$DIR/pull2" && fail "control: an unheld layer was applied on Linux: $(cat "$DIR/pull2")"
fi
[ "$(count Prepare/AlreadyExists)" = $((exists0 + 3)) ] && [ "$(count Prepare/OK)" = $((prepared0 + 1)) ] ||
  fail "control: Prepare/AlreadyExists $exists0 -> $(count Prepare/AlreadyExists) (not +3), Prepare/OK $prepared0 -> $(count Prepare/OK) (not +1)"
echo "ok: control: the held layers adopted again (3 AlreadyExists), the unheld one prepared (1 Prepare) and fetched, the held ones not; its apply failed (exit $rc): $(tr '\n' ' ' <"$DIR/pull2" | cut -c1-400)"
[ "$(converted)" = "$conv0" ] || fail "control: bytes_converted $conv0 -> $(converted)"
# 4. Size labels on a container Prepare through containerd's snapshot
#    service (ctr 1.6 cannot label a Prepare): a bad one is containerd's
#    InvalidArgument with lcowsnap's message and leaves no snapshot; a good
#    one prepares.
sizegb=containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb
for bad in "$sizegb=0" "$sizegb=20x" "containerd.io/snapshot/max-size=-1" \
  "containerd.io/snapshot/windows/rootfs.sizebytes=lots"; do
  rc=0
  "$PULL" prepare "$DIR/containerd.sock" first lcowsnap sized-bad "$bad" >"$DIR/out" 2>&1 || rc=$?
  [ "$rc" = 3 ] && grep -q "^error invalid-argument: .*${bad%%=*}" "$DIR/out" ||
    fail "Prepare with $bad: exit $rc: $(cat "$DIR/out")"
  ! "${CTR[@]}" -n first snapshots --snapshotter lcowsnap info sized-bad >/dev/null 2>&1 ||
    fail "Prepare with $bad left a snapshot"
done
"$PULL" prepare "$DIR/containerd.sock" first lcowsnap sized-ok "containerd.io/snapshot/max-size=2147483648" \
  >"$DIR/out" 2>&1 || fail "Prepare with max-size 2 GiB: $(cat "$DIR/out")"
grep -q "^prepared [1-9]" "$DIR/out" || fail "Prepare with max-size: $(cat "$DIR/out")"
echo "ok: size labels through containerd: four bad values InvalidArgument naming the label, no snapshot left; max-size 2 GiB prepared"

# The service stops cleanly (and, under ASan, reports nothing).
kill -TERM "$LCOWSNAP_PID"
rc=0
wait "$LCOWSNAP_PID" || rc=$?
[ "$rc" = 0 ] || fail "lcowsnap exited with $rc when stopped"
! grep -q "Sanitizer" "$DIR/lcowsnap.log" || fail "lcowsnap: $(grep -A20 Sanitizer "$DIR/lcowsnap.log")"
echo "ok: lcowsnap stopped cleanly"
echo "PASS: containerd_pull_unpack"

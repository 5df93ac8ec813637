#!/bin/bash
# metrics_test.sh SERVICE_LOG CTL...  (run by with_service.sh: LCOW_IT_ADDRESS)
#
# The Prometheus endpoint of a service started with --metrics-address
# 127.0.0.1:0: the port is read from its log line, the text fetched with
# Python's urllib (and curl when installed), and the counters compared with
# the calls this script made through lcowsnapctl; Status (lcowsnapctl
# --json status) reports the same numbers. Natively and under Wine (the
# Windows exe's Winsock listener, fetched from the Linux side).
set -u
log=$1
shift
ctl=("$@" --address "$LCOW_IT_ADDRESS")
py=/usr/bin/python3
fail() { echo "metrics_test: $*" >&2; exit 1; }

port=
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*metrics endpoint: http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$log" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "no 'metrics endpoint' line in $log"
url=http://127.0.0.1:$port/metrics

fetch() {
    "$py" - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=30) as r:
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            sys.exit("content type " + ctype)
        sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print("HTTP %d" % e.code)
PY
}

# Calls whose counts this script knows (the readiness probe only sends Version).
for _ in 1 2; do
    "${ctl[@]}" info metrics/absent >/dev/null 2>&1 && fail "info of a missing key succeeded"
done
"${ctl[@]}" ls >/dev/null || fail "ls failed"
json=$("${ctl[@]}" --json status) || fail "status failed"

text=$(fetch "$url") || fail "fetching $url failed"
for want in \
    'lcowsnap_requests_total{method="Stat",code="NotFound"} 2' \
    'lcowsnap_requests_total{method="Walk",code="OK"} 1' \
    'lcowsnap_requests_total{method="Status",code="OK"} 1' \
    'lcowsnap_request_duration_seconds_count{method="Stat"} 2' \
    'lcowsnap_snapshots{store="default",kind="active"} 0' \
    'lcowsnap_pending_removals{store="default"} 0' \
    '# TYPE lcowsnap_requests_total counter'; do
    grep -qxF "$want" <<<"$text" || fail "missing '$want' in:
$text"
done
grep -q 'method="Prepare"' <<<"$text" && fail "a Prepare was counted that nobody sent"
"$py" - "$json" <<'PY' || fail "lcowsnapctl --json status disagrees: $json"
import json, sys
s = json.loads(sys.argv[1])
assert s["requests"]["Stat/NotFound"] == 2, s
assert s["requests"]["Walk/OK"] == 1, s
assert "Status/OK" not in s["requests"], s  # counted after it answered
assert s["active"] == 0 and s["pending_removals"] == 0, s
assert s["errors_total"] >= 2 and s["connections_total"] >= 4, s
assert s["latency_us"]["max"] >= s["latency_us"]["p50"] > 0, s
PY

[ "$(fetch "http://127.0.0.1:$port/other")" = "HTTP 404" ] || fail "/other is not 404"
if command -v curl >/dev/null; then
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$url") || fail "curl failed"
    [ "$code" = 405 ] || fail "POST answered $code, not 405"
    curl -sf "$url" | grep -q '^lcowsnap_uptime_seconds ' || fail "curl: no uptime"
fi
echo "metrics_test: $url serves the counters of the calls made"

#!/usr/bin/python3
"""An independent lcowsnap client: Debian's python3-msgpack over the Unix
socket, written from docs/protocol.md only (no code shared with the C
client). Covers every Protocol v1 method and several malformed inputs.

Run by with_service.sh with LCOW_IT_ADDRESS set; the service runs with
--max-frame-bytes 65536. Exit status 0 when every check passes."""
import os
import socket
import sys

import msgpack

ADDRESS = os.environ["LCOW_IT_ADDRESS"]
SCRATCH_DIR = os.environ.get("LCOW_IT_SCRATCH_DIR")
MAX_FRAME = 65536
failures = []


class Conn:
    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(ADDRESS)
        self.unpacker = msgpack.Unpacker(raw=False, timestamp=0)
        self.msgid = 0

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, method, params=None, extra_params=None):
        self.msgid += 1
        args = [params if params is not None else {}]
        if extra_params is not None:
            args = extra_params
        self.send_raw(msgpack.packb([0, self.msgid, method, args], use_bin_type=True))
        return self.msgid

    def recv(self):
        for obj in self.unpacker:
            return obj
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed by the service")
            self.unpacker.feed(data)
            for obj in self.unpacker:
                return obj

    def call(self, method, params=None):
        msgid = self.send(method, params)
        resp = self.recv()
        check(isinstance(resp, list) and len(resp) == 4 and resp[0] == 1,
              f"{method}: response shape {resp!r}")
        check(resp[1] == msgid, f"{method}: msgid {resp[1]} != {msgid}")
        return resp[2], resp[3]

    def close(self):
        self.sock.close()


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)
    return cond


def ok(conn, method, params=None):
    err, result = conn.call(method, params)
    check(err is None, f"{method} {params}: unexpected error {err}")
    return result


def expect_error(conn, method, params, code):
    err, result = conn.call(method, params)
    check(err is not None and err.get("code") == code,
          f"{method} {params}: want {code}, got {err}")
    check(result is None, f"{method}: result must be nil with an error")
    return err


def check_info(info, name, kind, parent=""):
    check(set(info) >= {"name", "parent", "kind", "labels", "created", "updated"},
          f"Info fields: {sorted(info)}")
    check(info["name"] == name, f"Info name {info['name']} != {name}")
    check(info["kind"] == kind, f"Info kind {info['kind']} != {kind}")
    check(info["parent"] == parent, f"Info parent {info['parent']!r} != {parent!r}")
    check(isinstance(info["created"], msgpack.Timestamp),
          f"created is {type(info['created'])}, not a msgpack Timestamp")
    check(isinstance(info["updated"], msgpack.Timestamp), "updated is not a Timestamp")


def every_method():
    c = Conn()
    v = ok(c, "Version")
    check(v == {"version": v.get("version"), "protocol": 1, "snapshotter": "windows-lcow",
                "capabilities": v.get("capabilities")}, f"Version result {v}")
    check("rebase" in v["capabilities"], f"Version capabilities {v['capabilities']}")
    # an empty params array is accepted for methods without required fields
    c.send("Version", extra_params=[])
    resp = c.recv()
    check(resp[2] is None, f"Version with [] params: {resp}")

    labels = {"py/label": "1"}
    r = ok(c, "Prepare", {"key": "py/extract-base", "labels": labels})
    m = r["mounts"]
    check(len(m) == 1 and m[0]["type"] == "lcow-layer" and "rw" in m[0]["options"],
          f"Prepare mounts {m}")
    check(ok(c, "Commit", {"name": "py/layer", "key": "py/extract-base", "labels": labels}) == {},
          "Commit result is {}")
    r = ok(c, "Prepare", {"key": "py/c", "parent": "py/layer"})
    opts = r["mounts"][0]["options"]
    check(any(o.startswith("parentLayerPaths=") for o in opts), f"Prepare options {opts}")
    r = ok(c, "View", {"key": "py/v", "parent": "py/layer"})
    check("ro" in r["mounts"][0]["options"], f"View options {r}")
    ok(c, "Mounts", {"key": "py/c"})
    expect_error(c, "Mounts", {"key": "py/layer"}, "FailedPrecondition")

    st = ok(c, "Stat", {"key": "py/layer"})["info"]
    check_info(st, "py/layer", "committed")
    check(st["labels"] == labels, f"labels {st['labels']}")
    check_info(ok(c, "Stat", {"key": "py/c"})["info"], "py/c", "active", "py/layer")
    check_info(ok(c, "Stat", {"key": "py/v"})["info"], "py/v", "view", "py/layer")

    info = dict(st)
    info["labels"] = {"py/new": "x"}
    up = ok(c, "Update", {"info": info, "fieldpaths": ["labels.py/new"]})["info"]
    check(up["labels"] == {"py/label": "1", "py/new": "x"}, f"Update labels {up['labels']}")
    check(up["created"] == st["created"], "Update changed created")
    expect_error(c, "Update", {"info": info, "fieldpaths": ["kind"]}, "InvalidArgument")
    # containerd's metadata layer sends Update with no kind (Go's zero Kind):
    # absent, nil, "" and "Unknown" are ignored; a non-empty unknown name is not.
    for n, kind in enumerate([None, "", "Unknown", "absent"]):
        upd = {"name": "py/layer", "labels": {f"py/nokind{n}": "y"}}
        if kind != "absent":
            upd["kind"] = kind
        up = ok(c, "Update", {"info": upd, "fieldpaths": [f"labels.py/nokind{n}"]})["info"]
        check(up["kind"] == "committed" and up["labels"].get(f"py/nokind{n}") == "y",
              f"Update with kind {kind!r}: {up}")
    expect_error(c, "Update", {"info": {"name": "py/layer", "kind": "frozen"}},
                 "InvalidArgument")

    u = ok(c, "Usage", {"key": "py/c"})
    ext4 = {"ext4_used_bytes", "ext4_used_inodes", "ext4_total_bytes", "ext4_total_inodes"}
    check(set(u) == {"size", "inodes"} | ext4 and u["size"] >= 0, f"Usage {u}")
    # The ext4 view of a fresh 20 GiB sandbox, as df shows it (issue 18).
    check(u["ext4_used_inodes"] == 11 and 0 < u["ext4_used_bytes"] < (1 << 20)
          and 19 << 30 < u["ext4_total_bytes"] < 20 << 30, f"Usage ext4 view {u}")
    check(set(ok(c, "Usage", {"key": "py/layer"})) == {"size", "inodes"},
          "Usage of a committed snapshot has no ext4 view")
    # Compact: a key or all, never both or neither.
    r = ok(c, "Compact", {"key": "py/c"})
    check(set(r) == {"disks", "bytes_before", "bytes_after", "in_use", "failed"}
          and r["disks"] == 1 and r["bytes_before"] == r["bytes_after"] > 0, f"Compact {r}")
    r = ok(c, "Compact", {"all": True})
    check(r["disks"] == 1 and r["in_use"] == 0 and r["failed"] == 0, f"Compact all {r}")
    expect_error(c, "Compact", {}, "InvalidArgument")
    expect_error(c, "Compact", {"key": "py/c", "all": True}, "InvalidArgument")
    expect_error(c, "Compact", {"key": "py/layer"}, "FailedPrecondition")
    expect_error(c, "Compact", {"key": "py/none"}, "NotFound")

    w = ok(c, "Walk", {"filters": ['labels."py/label"==1']})
    check([i["name"] for i in w["infos"]] == ["py/layer"], f"Walk filtered {w}")
    check("next" not in w, "Walk without limit has no next")
    w = ok(c, "Walk", {"limit": 1})
    check(len(w["infos"]) == 1 and "next" in w, f"Walk limit 1 {w}")
    w2 = ok(c, "Walk", {"limit": 10, "after": w["next"]})
    check(w["infos"][0]["name"] not in [i["name"] for i in w2["infos"]], "Walk after")
    expect_error(c, "Walk", {"filters": ["kind=="]}, "InvalidArgument")

    err = expect_error(c, "Remove", {"key": "py/layer"}, "FailedPrecondition")
    check("remove" in err["message"], f"children message {err}")
    for key in ("py/c", "py/v", "py/layer"):
        check(ok(c, "Remove", {"key": key}) == {}, f"Remove {key}")
    expect_error(c, "Stat", {"key": "py/layer"}, "NotFound")
    expect_error(c, "Prepare", {"key": "py/x", "parent": "py/none"}, "NotFound")
    ok(c, "Prepare", {"key": "py/extract-dup"})
    expect_error(c, "Prepare", {"key": "py/extract-dup"}, "AlreadyExists")
    ok(c, "Remove", {"key": "py/extract-dup"})
    check(ok(c, "Cleanup") == {}, "Cleanup result")
    if SCRATCH_DIR:
        path = os.path.join(SCRATCH_DIR, "python.vhdx")
        r = ok(c, "CreateScratch", {"path": path, "size_gb": 1})
        check(r == {"path": path}, f"CreateScratch result {r}")
        check(os.path.getsize(path) > 0, "CreateScratch made no file")
    expect_error(c, "CreateScratch", {"path": "relative.vhdx"}, "InvalidArgument")
    # unknown extra fields are ignored, at every level
    ok(c, "Version", {"client": "python", "future": [1, 2, {"x": None}]})
    ok(c, "Prepare", {"key": "py/extract-extra", "snapshotter": "windows-lcow", "x": 1.5})
    ok(c, "Remove", {"key": "py/extract-extra", "reason": "test"})
    c.close()


def pipelining():
    c = Conn()
    batch = b"".join(
        msgpack.packb([0, 1000 + i, "Stat", [{"key": f"py/missing-{i}"}]]) for i in range(200))
    c.send_raw(batch)
    for i in range(200):
        resp = c.recv()
        check(resp[1] == 1000 + i and resp[2]["code"] == "NotFound", f"pipelined {i}: {resp}")
    c.close()


def malformed():
    c = Conn()
    bystander = Conn()

    def raw(data, msgid, code):
        c.send_raw(data)
        resp = c.recv()
        check(resp[0] == 1 and resp[1] == msgid and resp[2] and resp[2]["code"] == code
              and resp[3] is None, f"raw {data[:20]!r}: want {code} for {msgid}, got {resp}")

    raw(msgpack.packb("just a string"), None, "InvalidArgument")
    raw(msgpack.packb([0, 7, "Stat"]), 7, "InvalidArgument")                     # 3 elements
    raw(msgpack.packb([0, 8, "Stat", [{"key": 5}]]), 8, "InvalidArgument")        # wrong type
    raw(msgpack.packb([0, 9, "Stat", [{}]]), 9, "InvalidArgument")                # missing key
    raw(msgpack.packb([0, 10, "Teleport", [{}]]), 10, "NotImplemented")
    raw(msgpack.packb([0, 11, "Stat", [{}, {}]]), 11, "InvalidArgument")          # two maps
    raw(msgpack.packb([2, "Stat", [{}]]), None, "InvalidArgument")               # notification
    raw(b"\x94\x00\x0c\xa4Stat\x91\x81\xa3key\xa2\xc3\x28", 12, "InvalidArgument")  # bad UTF-8
    raw(b"\x94\x00\x0d\xa4Stat\x91\x81\xa2\xff\xfe\xa1x", 13, "InvalidArgument")    # bad key
    raw(msgpack.packb([0, 14, "Stat", [{"key": "k" * (MAX_FRAME + 10)}]]), 14,
        "ResourceExhausted")
    raw(msgpack.packb([0, 15, "Update", [{"info": {"name": "a", "created": 5}}]]), 15,
        "InvalidArgument")                                                        # not a Timestamp
    err, _ = c.call("Version")
    check(err is None, "connection still usable after malformed frames")
    # 0xc1 is never valid msgpack: the stream cannot be resynchronised
    c.send_raw(b"\xc1")
    try:
        c.recv()
        check(False, "connection should close after 0xc1")
    except (EOFError, ConnectionResetError):
        pass
    err, _ = bystander.call("Version")
    check(err is None, "another client noticed the malformed one")
    c.close()
    bystander.close()


def status_counts():
    """Status (docs/protocol.md): its counters move by exactly the calls made
    here between two Status calls (this script is the service's only client)."""
    c = Conn()
    before = ok(c, "Status")
    for key in ("version", "uptime_seconds", "active", "committed", "view", "store_bytes",
                "scratch_templates", "layers", "pending_removals", "connections_open",
                "requests_total", "errors_total", "bytes_converted", "bytes_created",
                "requests", "latency_us"):
        check(key in before, f"Status has no {key}: {before}")
    expect_error(c, "Stat", {"key": "py/status-absent"}, "NotFound")
    expect_error(c, "Stat", {"key": "py/status-absent"}, "NotFound")
    ok(c, "Prepare", {"key": "py/status-extract-1"})
    after = ok(c, "Status")
    req0, req1 = before["requests"], after["requests"]

    def delta(name):
        return req1.get(name, 0) - req0.get(name, 0)
    check(delta("Stat/NotFound") == 2, f"Stat/NotFound moved by {delta('Stat/NotFound')}")
    check(delta("Prepare/OK") == 1, f"Prepare/OK moved by {delta('Prepare/OK')}")
    check(delta("Status/OK") == 1, f"Status/OK moved by {delta('Status/OK')}")
    check(after["requests_total"] - before["requests_total"] == 4,
          f"requests_total {before['requests_total']} -> {after['requests_total']}")
    check(after["errors_total"] - before["errors_total"] == 2, "errors_total moved by 2")
    check(after["active"] == before["active"] + 1, f"active {before['active']} -> {after['active']}")
    check(after["pending_removals"] == 0, f"pending_removals {after['pending_removals']}")
    lat = after["latency_us"]
    check(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], f"latency {lat}")
    ok(c, "Remove", {"key": "py/status-extract-1"})
    c.close()


for test in (every_method, pipelining, malformed, status_counts):
    try:
        test()
    except Exception as e:  # a crash of the test is a failure, not an error
        check(False, f"{test.__name__}: {type(e).__name__}: {e}")

if failures:
    print(f"python client: {len(failures)} failure(s)", file=sys.stderr)
    sys.exit(1)
print("python client: every method and malformed input checked")

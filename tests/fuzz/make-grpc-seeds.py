#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_grpc_request (tests/fuzz/corpus/grpc_request):
one file per method, first byte = the method's index in lcow_grpc_method, the
rest a request message in protobuf wire format, plus a few broken ones."""
import os
import sys

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def field(num, payload):  # length-delimited
    return varint(num << 3 | 2) + varint(len(payload)) + payload

def s(num, text):
    return field(num, text.encode())

def label(num, k, v):
    return field(num, s(1, k) + s(2, v))

PREPARE, VIEW, MOUNTS, COMMIT, REMOVE, STAT, UPDATE, LIST, USAGE, CLEANUP = range(10)
info = s(1, "default/3/ctr1") + s(2, "default/2/sha256:l1") + varint(3 << 3) + b"\x02" + \
    field(4, varint(1 << 3) + varint(1700000000)) + label(6, "containerd.io/gc.root", "x")
seeds = {
    "prepare": bytes([PREPARE]) + s(1, "lcowsnap") + s(2, "default/1/extract-1") + s(3, "p") +
    label(4, "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb", "30"),
    "view": bytes([VIEW]) + s(2, "v") + s(3, "default/2/sha256:l1"),
    "mounts": bytes([MOUNTS]) + s(2, "k"),
    "commit_parent": bytes([COMMIT]) + s(2, "n") + s(3, "k") + label(4, "a", "b") + s(5, "p"),
    "remove": bytes([REMOVE]) + s(2, "k"),
    "stat": bytes([STAT]) + s(1, "lcowsnap") + s(2, "k"),
    "update": bytes([UPDATE]) + field(2, info) + field(3, s(1, "labels.containerd.io/gc.root")),
    "list": bytes([LIST]) + s(2, 'labels."containerd.io/snapshot.ref"==sha256:x,parent==p'),
    "usage": bytes([USAGE]) + s(2, "k"),
    "cleanup": bytes([CLEANUP]),
    "bad_utf8": bytes([STAT]) + field(2, b"\xff\xfe"),
    "nul": bytes([STAT]) + field(2, b"a\x00b"),
    "bad_wire": bytes([STAT]) + b"\x17\xff\xff",
    "path": bytes([0]) + b"/containerd.services.snapshots.v1.Snapshots/Stat",
}
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus", "grpc_request")
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)

# ---- fuzz_grpc_conn: whole client byte streams (HTTP/2 with prior knowledge)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

def frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload

def literal(name, value):  # literal header field without indexing, new name, no Huffman
    return b"\x00" + varint_hpack(len(name)) + name.encode() + varint_hpack(len(value)) + value.encode()

def varint_hpack(n):  # 7-bit prefix integer, H bit 0
    if n < 127:
        return bytes([n])
    out = bytes([127])
    n -= 127
    while n >= 128:
        out += bytes([n % 128 + 128])
        n //= 128
    return out + bytes([n])

def call(stream, method, message, ctype="application/grpc"):
    hdr = b"".join(literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"),
        (":path", "/containerd.services.snapshots.v1.Snapshots/" + method),
        (":authority", "lcowsnap"), ("content-type", ctype), ("te", "trailers")])
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    return frame(1, 4, stream, hdr) + frame(0, 1, stream, body)

SETTINGS = frame(4, 0, 0, b"")
conn_seeds = {
    "stat": PREFACE + SETTINGS + call(1, "Stat", s(2, "k")),
    "prepare_list": PREFACE + SETTINGS + call(1, "Prepare", s(2, "a") + label(4, "l", "v")) +
    call(3, "List", b""),
    "every_method": PREFACE + SETTINGS + b"".join(
        call(2 * i + 1, m, msg) for i, (m, msg) in enumerate([
            ("Prepare", s(2, "p")), ("View", s(2, "v")), ("Mounts", s(2, "m")),
            ("Commit", s(2, "n") + s(3, "k") + s(5, "p")), ("Remove", s(2, "r")),
            ("Stat", s(2, "s")), ("Update", field(2, info) + field(3, s(1, "labels"))),
            ("List", s(2, "kind==active")), ("Usage", s(2, "u")), ("Cleanup", b"")])),
    "unknown_method": PREFACE + SETTINGS + call(1, "Frobnicate", b""),
    "bad_type": PREFACE + SETTINGS + call(1, "Stat", s(2, "k"), "text/plain"),
    "reset": PREFACE + SETTINGS + call(1, "List", b"")[:-14] + frame(3, 0, 1, b"\x00\x00\x00\x08"),
    "ping_window": PREFACE + SETTINGS + frame(6, 0, 0, b"12345678") +
    frame(8, 0, 0, b"\x00\x01\x00\x00") + call(1, "Usage", s(2, "u")),
    "not_http2": bytes([0x94, 0x00, 0x01, 0xa4]) + b"Stat" + bytes([0x91, 0x80]),
}
conn_out = os.path.join(os.path.dirname(out), "grpc_conn")
os.makedirs(conn_out, exist_ok=True)
for name, data in conn_seeds.items():
    with open(os.path.join(conn_out, name), "wb") as f:
        # The target's header: (count - 1) of read sizes, then the sizes
        # (each + 1): here one size, 256-byte reads.
        f.write(bytes([0, 255]) + data)

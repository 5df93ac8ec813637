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

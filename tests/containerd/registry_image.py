#!/usr/bin/env python3
"""Make a small deterministic image and push it to a registry (HTTP API v2).

    registry_image.py REGISTRY REPO TAG OUTDIR LAYER...

REGISTRY is host:port (plain HTTP). Each LAYER is a name; its tar (a
directory /<name> with a few files whose contents derive from the name) is
the same bytes every time, gzipped with no name and time 0, so the same
name gives the same blob digest and diffID in every image. Writes
OUTDIR/<name>.tar.gz and prints, in order, one line per layer:

    layer NAME BLOB_DIGEST DIFF_ID PATH

then "config DIGEST" and "manifest DIGEST". The manifest is Docker's
schema 2 (what registries and containerd's client both take)."""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request


def layer_tar(name):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(path, data=None, mode=0o644):
            info = tarfile.TarInfo(path)
            info.mtime = 1700000000
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            else:
                info.mode = mode
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        add(name)
        for i in range(3):
            add("%s/file-%d" % (name, i), ("%s %d\n" % (name, i)).encode() * (64 << i))
    return buf.getvalue()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def request(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, dict(r.headers)


def push_blob(base, repo, data):
    digest = sha(data)
    status, headers = request("POST", "%s/v2/%s/blobs/uploads/" % (base, repo), b"")
    if status != 202:
        raise SystemExit("upload start: HTTP %d" % status)
    loc = headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    loc += ("&" if "?" in loc else "?") + "digest=" + digest
    status, _ = request("PUT", loc, data, {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise SystemExit("upload of %s: HTTP %d" % (digest, status))
    return digest


def main():
    if len(sys.argv) < 6:
        raise SystemExit(__doc__)
    registry, repo, tag, outdir = sys.argv[1:5]
    base = "http://" + registry
    layers, diff_ids = [], []
    for name in sys.argv[5:]:
        tar = layer_tar(name)
        blob = gzip.compress(tar, mtime=0)
        path = os.path.join(outdir, name + ".tar.gz")
        with open(path, "wb") as f:
            f.write(blob)
        digest = push_blob(base, repo, blob)
        diff_ids.append(sha(tar))
        layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                       "size": len(blob), "digest": digest})
        print("layer", name, digest, sha(tar), path)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "registry_image.py " + n} for n in sys.argv[5:]],
    }, sort_keys=True).encode()
    config_digest = push_blob(base, repo, config)
    print("config", config_digest)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": config_digest},
        "layers": layers,
    }, sort_keys=True).encode()
    status, _ = request("PUT", "%s/v2/%s/manifests/%s" % (base, repo, tag), manifest,
                        {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
    if status != 201:
        raise SystemExit("manifest: HTTP %d" % status)
    print("manifest", sha(manifest))


if __name__ == "__main__":
    main()

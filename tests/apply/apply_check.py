#!/usr/bin/python3
"""Layer import end to end (tests/apply/CMakeLists.txt runs it).

  apply_check.py tool    EXE SHARED TMP
  apply_check.py service SHARED TMP CTL...        (inside tests/integration/with_service.sh)
  apply_check.py crash   SHARED TMP SERVICE -- CTL...

EXE, SERVICE and CTL are native programs, or Windows exes with the Wine
command in front (LCOW_WINE_COMMAND, '|'-separated, as the layer tests use it):
paths then go to them as Z:\\... and come back from them the same way.
SHARED is ../shared (tar2ext4-ref, make_layers.py); without it the checks that
compare with tar2ext4-ref are skipped and say so, the rest still runs (with a
generated layer instead of the golden ones).

tool:    lcowsnap-tar2ext4 against tar2ext4-ref on the golden tars: -overlay -vhd
         -max-gb 128 (the ext4 part identical, the footer valid), -inline, -verity
         (ext4 and tree identical, the superblock valid), -roothash, gzip and zstd
         input, standard input; bad input exits 1 and leaves the old output; a bad
         command line exits 2.
service: through the service (lcowsnapctl): Apply of gzip (with verity) and zstd
         layers onto extract keys, Commit, a container on top whose Mounts list the
         directories; each layer.vhd is checked (VHD footer field by field, the
         ext4 part = tar2ext4-ref's or else e2fsck -fn clean, veritysetup verify
         with the returned root hash, the digests); lcowsnapctl import (and a
         failing import leaves nothing); bad input gets the right code and
         leaves no layer.vhd and no temporary file; natively a relative path
         over the raw protocol is InvalidArgument.
crash:   the service SIGKILLed during an Apply of a large layer, restarted: no
         layer.vhd, no temporary file, the key still active and usable; then a
         stop (SIGINT) during an Apply: the Apply answers Unavailable at once,
         the service exits 0, nothing is left.
"""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time

SKIP = 77
failures = []


def fail(msg):
    print("FAIL: " + msg)
    failures.append(msg)


def ok(msg):
    print("ok   " + msg)


# ---- programs and paths (native or under Wine) -----------------------------

WINE = [w for w in os.environ.get("LCOW_WINE_COMMAND", "").split("|") if w]


def is_windows(cmd):
    return cmd[-1].lower().endswith(".exe")


def to_prog(cmd, path):
    """A host path as the program sees it."""
    return "Z:" + os.path.abspath(path).replace("/", "\\") if is_windows(cmd) else path


def to_host(path):
    """A path a (Windows) program printed, on this host."""
    if re.match(r"^[A-Za-z]:\\", path):
        assert path[0] in "Zz", path
        return path[2:].replace("\\", "/")
    return path


def run(cmd, *args, stdin=None, timeout=600):
    p = subprocess.run(list(cmd) + list(args), input=stdin, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace").replace("\r", ""), \
        p.stderr.decode(errors="replace").replace("\r", "")


def sha256_file(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            b = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def tool(name):
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


# ---- layers -----------------------------------------------------------------

def layers(shared, tmp):
    """[(name, tar path)]: golden tars when ../shared is here, else generated."""
    make = os.path.join(shared, "reference/layers/make_layers.py")
    d = os.path.join(tmp, "layers")
    os.makedirs(d, exist_ok=True)
    if os.path.exists(make):
        if not os.path.exists(os.path.join(d, "basic.tar")):
            subprocess.run([sys.executable, make, d], check=True, capture_output=True)
        names = ["empty", "basic", "whiteouts", "implicit_parents", "longnames", "pax",
                 "bigdir", "deep", "large", "hardlinks"]
        return [(n, os.path.join(d, n + ".tar")) for n in names]
    print("note: %s is absent: generated layers, no comparison with tar2ext4-ref" % make)
    # Four, so that the service test's l1, l2 and l3 (entries 1, 2 and -1)
    # are three different layers, as with the golden tars.
    out = []
    for seed in (1, 2, 3, 4):
        path = os.path.join(d, "gen%d.tar" % seed)
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
            for i in range(20 * seed):
                ti = tarfile.TarInfo("dir%d/file%d" % (i % 4, i))
                body = bytes((i * 7 + k) % 251 for k in range(i * 997 % 20000))
                ti.size, ti.mtime, ti.mode = len(body), 1700000000, 0o644
                t.addfile(ti, io.BytesIO(body))
            w = tarfile.TarInfo("dir1/.wh.file5")
            w.mtime = 1700000000
            t.addfile(w)
        out.append(("gen%d" % seed, path))
    return out


def ref_path(shared):
    p = os.path.join(shared, "tools/tar2ext4-ref")
    return p if os.access(p, os.X_OK) else None


def compress(tar, kind):
    out = tar + "." + kind
    if os.path.exists(out):
        return out
    if kind == "gz":
        with open(tar, "rb") as f, gzip.open(out, "wb", compresslevel=6) as g:
            shutil.copyfileobj(f, g)
        return out
    z = tool("zstd")
    if not z:
        return None
    subprocess.run([z, "-q", "-3", "-f", tar, "-o", out], check=True)
    return out


# ---- image checks -----------------------------------------------------------

def ext4_bytes(path):
    with open(path, "rb") as f:
        f.seek(1024)
        sb = f.read(1024)
    blocks_lo, = struct.unpack_from("<I", sb, 4)
    log_block, = struct.unpack_from("<I", sb, 24)
    magic, = struct.unpack_from("<H", sb, 56)
    blocks_hi, = struct.unpack_from("<I", sb, 0x150)
    assert magic == 0xEF53, "%s: no ext4 superblock" % path
    return ((blocks_hi << 32) | blocks_lo) * (1024 << log_block)


def check_footer(path):
    """tar2ext4's fixed VHD footer, field by field; returns the disk size."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(size - 512)
        ft = f.read(512)
    errs = []
    if ft[0:8] != b"conectix":
        errs.append("cookie %r" % ft[0:8])
    features, version, data_offset, stamp = struct.unpack_from(">IIQI", ft, 8)
    creator_app, creator_ver, host_os = ft[28:32], struct.unpack_from(">I", ft, 32)[0], ft[36:40]
    orig, cur, geometry, disk_type, checksum = struct.unpack_from(">QQIII", ft, 40)
    want_sum = (~(sum(ft[:64]) + sum(ft[68:]))) & 0xFFFFFFFF
    for name, got, want in (("features", features, 2), ("format version", version, 0x10000),
                            ("data offset", data_offset, (1 << 64) - 1), ("timestamp", stamp, 0),
                            ("creator application", creator_app, b"\0\0\0\0"),
                            ("creator version", creator_ver, 0x000A0000),
                            ("creator host OS", host_os, b"\0\0\0\0"),
                            ("original size", orig, size - 512), ("current size", cur, size - 512),
                            ("geometry", geometry, 0), ("disk type", disk_type, 2),
                            ("checksum", checksum, want_sum), ("saved state", ft[84], 0),
                            ("reserved", ft[85:], bytes(427))):
        if got != want:
            errs.append("%s %r, want %r" % (name, got, want))
    if ft[68:84] == bytes(16):
        errs.append("unique id is zero")
    return size - 512, errs


def check_verity_sb(path, data_bytes):
    with open(path, "rb") as f:
        f.seek(data_bytes)
        sb = f.read(4096)
    errs = []
    if sb[0:8] != b"verity\0\0":
        return ["no verity superblock at %d" % data_bytes]
    version, hash_type = struct.unpack_from("<II", sb, 8)
    alg = sb[32:64].rstrip(b"\0")
    dbs, hbs, blocks, salt_size = struct.unpack_from("<IIQH", sb, 64)
    for name, got, want in (("version", version, 1), ("hash type", hash_type, 1),
                            ("algorithm", alg, b"sha256"), ("data block size", dbs, 4096),
                            ("hash block size", hbs, 4096), ("data blocks", blocks, data_bytes // 4096),
                            ("salt size", salt_size, 32), ("salt", sb[88:88 + 32], bytes(32)),
                            ("padding", sb[88 + 32:], bytes(4096 - 120))):
        if got != want:
            errs.append("verity %s %r, want %r" % (name, got, want))
    return errs


def e2fsck_clean(path, nbytes, tmp):
    e2 = tool("e2fsck")
    if not e2:
        return None
    img = os.path.join(tmp, "e2fsck.img")
    with open(path, "rb") as f, open(img, "wb") as g:
        left = nbytes
        while left:
            b = f.read(min(left, 1 << 20))
            g.write(b)
            left -= len(b)
    p = subprocess.run([e2, "-fn", img], capture_output=True, text=True)
    os.remove(img)
    problems = []
    for line in (p.stdout + p.stderr).splitlines():
        line = line.strip()
        if not line or line.startswith(("Pass ", "e2fsck ")) or line == "Fix? no" or \
                "WARNING: Filesystem still has errors" in line or \
                re.match(r"^\S+: \d+/\d+ files", line) or \
                line.startswith("Padding at end of inode bitmap is not set."):
            continue
        problems.append(line)
    return problems


def check_layer_vhd(path, tar, shared, tmp, root_hash=None, what=""):
    """Every independent check of a layer.vhd made from tar."""
    what = what or path
    disk, errs = check_footer(path)
    image = ext4_bytes(path)
    if root_hash:
        errs += check_verity_sb(path, image)
        vs = tool("veritysetup")
        if vs:
            p = subprocess.run([vs, "verify", "--hash-offset=%d" % image, path, path, root_hash],
                               capture_output=True, text=True)
            if p.returncode != 0:
                errs.append("veritysetup verify: %s" % (p.stderr or p.stdout).strip())
        else:
            print("note: veritysetup absent (cryptsetup-bin): %s's tree not verified" % what)
    elif disk != image:
        errs.append("ext4 %d bytes but the disk is %d" % (image, disk))
    ref = ref_path(shared)
    if ref:
        out = os.path.join(tmp, "ref.vhd")
        subprocess.run([ref, "-i", tar, "-o", out, "-overlay", "-vhd", "-max-gb", "128"],
                       check=True, capture_output=True)
        if os.path.getsize(out) - 512 != image or sha256_file(out, image) != sha256_file(path, image):
            errs.append("the ext4 part differs from tar2ext4-ref's")
        if root_hash:
            rh = subprocess.run([ref, "-i", tar, "-roothash"], check=True, capture_output=True,
                                text=True).stdout.strip()
            if rh != root_hash:
                errs.append("root hash %s, tar2ext4-ref -roothash %s" % (root_hash, rh))
        os.remove(out)
    else:
        problems = e2fsck_clean(path, image, tmp)
        if problems:
            errs.append("e2fsck -fn: %s" % "; ".join(problems[:5]))
    if errs:
        fail("%s: %s" % (what, "; ".join(errs)))
    else:
        ok("%s: footer%s%s" % (what, ", verity (veritysetup verify)" if root_hash else "",
                               ", ext4 = tar2ext4-ref" if ref else ", e2fsck -fn clean"))


# ---- tool -------------------------------------------------------------------

def cmd_tool(exe, shared, tmp):
    os.makedirs(tmp, exist_ok=True)
    ref = ref_path(shared)
    if not ref:
        print("SKIP: %s/tools/tar2ext4-ref is absent (../shared): the tool is compared with it" %
              shared)
        return SKIP
    conv = WINE + [exe]
    out_ours, out_ref = os.path.join(tmp, "ours.img"), os.path.join(tmp, "ref.img")
    profiles = [("differ", ["-overlay", "-vhd", "-max-gb", "128"]),
                ("inline", ["-overlay", "-inline", "-max-gb", "128"]),
                ("slash", ["-convert-slash", "-max-gb", "64"]),
                ("verity", ["-overlay", "-verity", "-vhd", "-max-gb", "128"])]
    for name, tar in layers(shared, tmp):
        for prof, flags in profiles:
            # gzip and zstd input in the differ profile; the rest from the tar
            inputs = [("tar", tar)]
            if prof == "differ":
                inputs += [(k, compress(tar, k)) for k in ("gz", "zst")]
            subprocess.run([ref, "-i", tar, "-o", out_ref] + flags, check=True,
                           capture_output=True)
            for kind, src in inputs:
                if not src:
                    continue
                rc, _, err = run(conv, "-i", to_prog(conv, src), "-o", to_prog(conv, out_ours),
                                 *flags)
                label = "%s %s %s" % (name, prof, kind)
                if rc != 0:
                    fail("%s: exit %d: %s" % (label, rc, err.strip()))
                    continue
                a, b = os.path.getsize(out_ours), os.path.getsize(out_ref)
                footer = 512 if "-vhd" in flags else 0
                if a != b:
                    fail("%s: %d bytes, tar2ext4-ref %d" % (label, a, b))
                    continue
                if prof == "verity":
                    image = ext4_bytes(out_ours)
                    same = sha256_file(out_ours, image) == sha256_file(out_ref, image)
                    # the tree, between the superblock (random UUID) and the footer
                    with open(out_ours, "rb") as f, open(out_ref, "rb") as g:
                        f.seek(image + 4096)
                        g.seek(image + 4096)
                        n = a - image - 4096 - footer
                        same = same and f.read(n) == g.read(n)
                    errs = check_verity_sb(out_ours, image)
                else:
                    same = sha256_file(out_ours, a - footer) == sha256_file(out_ref, a - footer)
                    errs = []
                if footer:
                    errs += check_footer(out_ours)[1]
                if not same or errs:
                    fail("%s: %s" % (label, "; ".join(errs) or "differs from tar2ext4-ref"))
                else:
                    ok("%s = tar2ext4-ref" % label)
        rc, out, err = run(conv, "-roothash", "-i", to_prog(conv, tar))
        want = subprocess.run([ref, "-i", tar, "-roothash"], check=True, capture_output=True,
                              text=True).stdout.strip()
        if rc != 0 or out.strip() != want:
            fail("%s -roothash: exit %d, %r (%s), want %s" % (name, rc, out.strip(), err.strip(), want))
        else:
            ok("%s -roothash = tar2ext4-ref's" % name)
    # standard input
    name, tar = layers(shared, tmp)[1]
    with open(tar, "rb") as f:
        data = f.read()
    rc, _, err = run(conv, "-o", to_prog(conv, out_ours), "-overlay", "-vhd", "-max-gb", "128",
                     stdin=data)
    subprocess.run([ref, "-i", tar, "-o", out_ref, "-overlay", "-vhd", "-max-gb", "128"],
                   check=True, capture_output=True)
    size = os.path.getsize(out_ref) - 512
    if rc != 0 or sha256_file(out_ours, size) != sha256_file(out_ref, size):
        fail("standard input: exit %d %s" % (rc, err.strip()))
    else:
        ok("standard input = tar2ext4-ref")
    # bad input: exit 1, the old output stays, no temporary file
    with open(out_ours, "wb") as f:
        f.write(b"old")
    cut = os.path.join(tmp, "cut.tar.gz")
    gz = compress(tar, "gz")
    with open(gz, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[: os.path.getsize(gz) // 2])
    for label, args, code, prefix in (
            ("truncated gzip", ["-i", to_prog(conv, cut)], 1, "InvalidArgument: "),
            ("missing input", ["-i", to_prog(conv, os.path.join(tmp, "nope.tar"))], 1, "NotFound: "),
            ("wrong digest", ["-i", to_prog(conv, tar), "-digest", "sha256:" + "0" * 64], 1,
             "InvalidArgument: ")):
        rc, _, err = run(conv, *args, "-o", to_prog(conv, out_ours), "-vhd")
        left = [n for n in os.listdir(tmp) if n.startswith(".")]
        with open(out_ours, "rb") as f:
            kept = f.read() == b"old"
        if rc != code or not err.startswith("lcowsnap-tar2ext4: " + prefix) or left or not kept:
            fail("%s: exit %d, stderr %r, temporary files %s, old output kept %s" %
                 (label, rc, err.strip(), left, kept))
        else:
            ok("%s: exit %d, %s" % (label, rc, err.strip()[:90]))
    for args in (["-x"], ["-i", to_prog(conv, tar)], ["-max-gb", "lots", "-o", "x"]):
        rc, _, err = run(conv, *args)
        if rc != 2:
            fail("%s: exit %d, want 2" % (" ".join(args), rc))
    rc, out, _ = run(conv, "-h")
    if rc != 0 or "-roothash" not in out or "-convert-slash" not in out:
        fail("-h: exit %d" % rc)
    else:
        ok("usage errors exit 2; -h documents every flag")
    return 1 if failures else 0


# ---- service ----------------------------------------------------------------

class Ctl:
    def __init__(self, cmd, address):
        self.cmd = list(cmd)
        self.address = address

    def __call__(self, *args, timeout=600):
        return run(self.cmd, "--address", self.address, *args, timeout=timeout)

    def path(self, p):
        return to_prog(self.cmd, p)

    def json(self, *args):
        rc, out, err = self("--json", *args)
        if rc != 0:
            raise RuntimeError("lcowsnapctl %s: exit %d: %s" % (" ".join(args), rc, err.strip()))
        return json.loads(out)

    def dir_of(self, key):
        """The snapshot directory of an active (host path)."""
        return to_host(self.json("mounts", key)[0]["source"])

    def parent_dirs(self, key):
        opts = self.json("mounts", key)[0]["options"]
        arr = [o for o in opts if o.startswith("parentLayerPaths=")][0]
        return [to_host(p) for p in json.loads(arr[len("parentLayerPaths="):])]


def leftovers(d):
    return sorted(n for n in os.listdir(d) if n.startswith(".layer.vhd.tmp-") or n == "layer.vhd")


def apply_and_check(ctl, shared, tmp, key, blob, tar, verity, media_type=None, digest=None):
    args = ["apply"] + (["--verity"] if verity else []) + \
        (["--media-type", media_type] if media_type else []) + \
        (["--digest", digest] if digest else []) + [key, ctl.path(blob)]
    r = ctl.json(*args)
    want_diff = "sha256:" + sha256_file(tar)
    want_digest = "sha256:" + sha256_file(blob)
    d = ctl.dir_of(key)
    vhd = os.path.join(d, "layer.vhd")
    errs = []
    if r["diff_id"] != want_diff:
        errs.append("diff_id %s, want %s" % (r["diff_id"], want_diff))
    if r["digest"] != want_digest:
        errs.append("digest %s, want %s" % (r["digest"], want_digest))
    if r["size"] != os.path.getsize(blob):
        errs.append("size %d, want %d" % (r["size"], os.path.getsize(blob)))
    if not os.path.exists(vhd) or r["layer_bytes"] != os.path.getsize(vhd):
        errs.append("layer_bytes %d, layer.vhd %s" % (r["layer_bytes"], os.path.exists(vhd)))
    if verity != ("verity_root_hash" in r):
        errs.append("verity_root_hash %s" % r.get("verity_root_hash"))
    if leftovers(d) != ["layer.vhd"]:
        errs.append("directory holds %s" % leftovers(d))
    if errs:
        fail("Apply %s: %s" % (key, "; ".join(errs)))
    else:
        ok("Apply %s %s: %s" % (key, os.path.basename(blob), r["diff_id"][:19]))
    return r


def mp_str(text):
    b = text.encode()
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def raw_apply_relative_path(address, key):
    """Native only: Apply with a relative path over the raw protocol (the
    request encoded by hand: lcowsnapctl would make the path absolute)."""
    req = bytes([0x94, 0x00, 0x07]) + mp_str("Apply") + bytes([0x91, 0x82]) + \
        mp_str("key") + mp_str(key) + mp_str("path") + mp_str("blobs/l.tar")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(address)
    s.sendall(req)
    resp = b""
    while b"absolute" not in resp:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    s.close()
    # [1, 7, {"code": "InvalidArgument", "message": "... must be absolute ..."}, nil]
    if not resp.startswith(bytes([0x94, 0x01, 0x07])) or b"InvalidArgument" not in resp or \
            b"absolute" not in resp:
        fail("raw Apply with a relative path: %r" % resp[:200])
    else:
        ok("raw Apply with a relative path: InvalidArgument (%s)" %
           resp[resp.index(b"Apply "):].split(b"\xc0")[0].decode(errors="replace")[:80])


def cmd_service(shared, tmp, ctl_cmd):
    address = os.environ["LCOW_IT_ADDRESS"]
    os.makedirs(tmp, exist_ok=True)
    ctl = Ctl(ctl_cmd, address)
    ls = layers(shared, tmp)
    (n1, tar1), (n2, tar2), (n3, tar3) = ls[1], ls[2 % len(ls)], ls[-1]
    gz1 = compress(tar1, "gz")
    zs2 = compress(tar2, "zst") or tar2

    # layer 1: gzip with verity and a declared digest; layer 2 on top: zstd
    ctl.json("prepare", "it/apply/extract-1 l1")
    r1 = apply_and_check(ctl, shared, tmp, "it/apply/extract-1 l1", gz1, tar1, True,
                         media_type="application/vnd.oci.image.layer.v1.tar+gzip",
                         digest="sha256:" + sha256_file(gz1))
    rc, _, err = ctl("commit", "it/apply/l1", "it/apply/extract-1 l1")
    ctl.json("prepare", "it/apply/extract-2 l2", "it/apply/l1")
    r2 = apply_and_check(ctl, shared, tmp, "it/apply/extract-2 l2", zs2, tar2, False)
    rc2, _, err2 = ctl("commit", "it/apply/l2", "it/apply/extract-2 l2")
    if rc or rc2:
        fail("commit: %s %s" % (err, err2))
    # a container on top: its Mounts list both layers, nearest first
    ctl.json("prepare", "it/apply/c", "it/apply/l2")
    dirs = ctl.parent_dirs("it/apply/c")
    if len(dirs) != 2:
        fail("mounts of the container list %s" % dirs)
    else:
        ok("mounts of it/apply/c list %d layer directories" % len(dirs))
        check_layer_vhd(os.path.join(dirs[1], "layer.vhd"), tar1, shared, tmp,
                        r1.get("verity_root_hash"), "l1 (%s, gzip, verity)" % n1)
        check_layer_vhd(os.path.join(dirs[0], "layer.vhd"), tar2, shared, tmp, None,
                        "l2 (%s, %s)" % (n2, "zstd" if zs2 != tar2 else "tar"))

    # lcowsnapctl import, on top of l2
    r3 = ctl.json("import", "--verity", "it/apply/l3", ctl.path(tar3), "it/apply/l2")
    info = ctl.json("info", "it/apply/l3")
    if info["kind"] != "committed" or info["parent"] != "it/apply/l2" or r3["name"] != "it/apply/l3":
        fail("import: info %s" % info)
    ctl.json("prepare", "it/apply/c3", "it/apply/l3")
    dirs3 = ctl.parent_dirs("it/apply/c3")
    if len(dirs3) != 3 or dirs3[1:] != dirs:
        fail("mounts over the import list %s" % dirs3)
    else:
        check_layer_vhd(os.path.join(dirs3[0], "layer.vhd"), tar3, shared, tmp,
                        r3["verity_root_hash"], "import of %s (verity)" % n3)
    keys = [i["name"] for i in ctl.json("ls")]
    if any("extract-" in k and "l3" in k for k in keys):
        fail("import left its extract key: %s" % keys)

    # bad input: the right code, nothing left in the snapshot
    ctl.json("prepare", "it/apply/extract-bad")
    bad_dir = ctl.dir_of("it/apply/extract-bad")
    cut = os.path.join(tmp, "cut.tar.gz")
    with open(gz1, "rb") as f, open(cut, "wb") as g:
        g.write(f.read()[: os.path.getsize(gz1) * 2 // 3])
    cases = [
        ("truncated gzip", ["it/apply/extract-bad", ctl.path(cut)], "InvalidArgument: "),
        ("wrong digest", ["--digest", "sha256:" + "1" * 64, "it/apply/extract-bad",
                          ctl.path(gz1)], "InvalidArgument: "),
        ("missing file", ["it/apply/extract-bad", ctl.path(os.path.join(tmp, "none.tar"))],
         "NotFound: "),
        ("committed key", ["it/apply/l1", ctl.path(gz1)], "FailedPrecondition: "),
        ("missing key", ["it/apply/none", ctl.path(gz1)], "NotFound: "),
        ("unknown media type", ["--media-type", "application/x-tar", "it/apply/extract-bad",
                                ctl.path(gz1)], "InvalidArgument: "),
    ]
    for label, args, prefix in cases:
        rc, _, err = ctl("apply", *args)
        left = leftovers(bad_dir) + leftovers(dirs[1])[1:]
        if rc != 1 or not err.startswith(prefix) or left:
            fail("%s: exit %d, stderr %r, left %s" % (label, rc, err.strip(), left))
        else:
            ok("%s: %s" % (label, err.strip()[:100]))
    if not is_windows(ctl.cmd):
        raw_apply_relative_path(address, "it/apply/extract-bad")
    if leftovers(bad_dir):
        fail("after the bad inputs the snapshot holds %s" % leftovers(bad_dir))
    # a failing import leaves no extract key and no layer
    before = sorted(i["name"] for i in ctl.json("ls"))
    rc, _, err = ctl("import", "it/apply/lbad", ctl.path(cut))
    after = sorted(i["name"] for i in ctl.json("ls"))
    if rc != 1 or not err.startswith("InvalidArgument: ") or before != after:
        fail("failing import: exit %d %r; keys %s -> %s" % (rc, err.strip(), before, after))
    else:
        ok("failing import: %s; no key left" % err.strip()[:80])
    rc, _, err = ctl("rm", "it/apply/extract-bad", "it/apply/c", "it/apply/c3")
    if rc:
        fail("rm: %s" % err)
    layer_store(ctl, gz1, r1, r2, r3)
    return 1 if failures else 0


def layer_store(ctl, gz1, r1, r2, r3):
    """lcowsnapctl layers / prune and the layer labels, on what cmd_service
    imported: l1 (gzip, verity), l2 (no verity), l3 (import, verity)."""
    def stored():
        return {(e["diff_id"], e["verity"]): e for e in ctl.json("layers")}
    want = {(r1["diff_id"], True), (r2["diff_id"], False), (r3["diff_id"], True)}
    got = stored()
    if set(got) != want or any(e["references"] != 1 for e in got.values()):
        fail("layers: %s, want %s with one reference each" % (sorted(got.items()), want))
    else:
        ok("layers lists the %d imported layers, one reference each" % len(got))
    e1 = got.get((r1["diff_id"], True), {})
    if e1.get("verity_root_hash") != r1["verity_root_hash"] or \
            e1.get("blob_digests") != [r1["digest"]]:
        fail("layers: l1 is %s (want root %s, blob %s)" %
             (e1, r1["verity_root_hash"], r1["digest"]))
    labels = ctl.json("info", "it/apply/l1")["labels"]
    if labels.get("containerd.io/snapshot/diff-id") != r1["diff_id"] or \
            labels.get("containerd.io/snapshot/lcow/verity-root-hash") != r1["verity_root_hash"]:
        fail("info it/apply/l1: labels %s" % labels)
    else:
        ok("info it/apply/l1 labels the diffID and the verity root hash")
    # the same blob again: linked (one more reference), not a second copy
    ctl.json("import", "--verity", "--digest", r1["digest"], "it/apply/l1b", ctl.path(gz1))
    e1 = stored().get((r1["diff_id"], True), {})
    if e1.get("references") != 2:
        fail("after importing l1's blob again: %s" % e1)
    else:
        ok("importing l1's blob again links the stored layer (2 references)")
    rc, out, err = ctl("prune", "--older-than", "1d")
    if rc or not out.startswith("0 layers removed"):
        fail("prune --older-than 1d: exit %d %r %r" % (rc, out, err))
    rc, _, err = ctl("rm", "it/apply/l1b", "it/apply/l3", "it/apply/l2", "it/apply/l1")
    if rc:
        fail("rm: %s" % err)
    got = stored()
    if set(got) != want or any(e["references"] != 0 for e in got.values()):
        fail("after rm, layers: %s (kept, unreferenced)" % sorted(got.items()))
    else:
        ok("after rm the layers stay cached, unreferenced")
    rc, out, err = ctl("prune", "--bogus")
    if rc != 2:
        fail("prune --bogus: exit %d" % rc)
    pr = ctl.json("prune", "--all")
    if pr["layers"] != 3 or stored():
        fail("prune --all: %s, left %s" % (pr, sorted(stored())))
    else:
        ok("prune --all removed %d layers (%d bytes)" % (pr["layers"], pr["bytes"]))


# ---- crash ------------------------------------------------------------------

def big_tar(path, size):
    """One file of `size` zero bytes (the tar is extended, not written)."""
    if os.path.exists(path) and os.path.getsize(path) == 512 + size + 1024:
        return
    ti = tarfile.TarInfo("zeros")
    ti.size, ti.mtime = size, 1700000000
    hdr = ti.tobuf(format=tarfile.USTAR_FORMAT)
    with open(path, "wb") as f:
        f.write(hdr)
        f.truncate(512 + size + 1024)


class Service:
    def __init__(self, cmd, root, address, log):
        self.cmd, self.root, self.address, self.log = cmd, root, address, log
        self.p = None

    def start(self, ctl):
        logf = open(self.log, "ab")
        self.p = subprocess.Popen(self.cmd + ["--root", to_prog(self.cmd, self.root), "--address",
                                              self.address, "--log-level", "debug"],
                                  stdout=logf, stderr=logf)
        for _ in range(600):
            if self.p.poll() is not None:
                raise RuntimeError("the service exited with %d" % self.p.returncode)
            if ctl("--timeout", "2000", "version", timeout=60)[0] == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("the service did not come up")

    def kill(self):
        self.p.kill()
        self.p.wait()

    def interrupt(self, timeout):
        self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def store_temps(root):
    """The layer store's conversions in progress (<root>/layers/tmp)."""
    t = os.path.join(root, "layers", "tmp")
    return sorted(os.listdir(t)) if os.path.isdir(t) else []


def wait_for_temp(d, apply_proc, seconds=120, root=None):
    for _ in range(seconds * 100):
        names = os.listdir(d) + (store_temps(root) if root else [])
        if any(".tmp-apply-" in n for n in names):
            return True
        if apply_proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def cmd_crash(shared, tmp, service_cmd, ctl_cmd):
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    windows = is_windows(service_cmd)
    if windows:
        address = "\\\\.\\pipe\\lcowsnap-apply-crash-%d" % os.getpid()
    else:
        sockdir = "/tmp/lcow-apply-%d" % os.getpid()
        os.makedirs(sockdir, mode=0o700, exist_ok=True)
        address = sockdir + "/s.sock"
    ctl = Ctl(ctl_cmd, address)
    svc = Service(list(service_cmd), os.path.join(tmp, "root"), address,
                  os.path.join(tmp, "service.log"))
    blob = os.path.join(tmp, "big.tar")
    big_tar(blob, 1 << 30)
    small = layers(shared, tmp)[1][1]
    try:
        svc.start(ctl)
        ctl.json("prepare", "crash/extract-1")
        d = ctl.dir_of("crash/extract-1")
        # 1. kill -9 while the layer is being written
        a = subprocess.Popen(ctl.cmd + ["--address", address, "apply", "crash/extract-1",
                                        ctl.path(blob)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        if not wait_for_temp(d, a, root=svc.root):
            fail("kill -9: no temporary file appeared (the Apply ended: %s)" % (a.communicate(),))
        svc.kill()
        _, err = a.communicate(timeout=120)
        mid = leftovers(d) + store_temps(svc.root)
        svc.start(ctl)
        left = leftovers(d) + store_temps(svc.root)
        info = ctl.json("info", "crash/extract-1")
        if left or info["kind"] != "active":
            fail("after kill -9 and restart: %s left (before restart: %s), kind %s" %
                 (left, mid, info["kind"]))
        else:
            ok("kill -9 during Apply (the directory then held %s), restart: nothing left, key "
               "active; the client got %s" % (mid, err.decode(errors="replace").strip()[:60]))
        apply_and_check(ctl, shared, tmp, "crash/extract-1", small, small, False)

        # 2. a stop (Ctrl+C / SIGINT) during an Apply cancels it
        ctl.json("prepare", "crash/extract-2")
        d2 = ctl.dir_of("crash/extract-2")
        a = subprocess.Popen(ctl.cmd + ["--address", address, "apply", "crash/extract-2",
                                        ctl.path(blob)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        if not wait_for_temp(d2, a, root=svc.root):
            fail("stop: no temporary file appeared")
        t0 = time.time()
        code = svc.interrupt(60)
        stop_s = time.time() - t0
        _, err = a.communicate(timeout=120)
        err = err.decode(errors="replace").strip()
        left = leftovers(d2) + store_temps(svc.root)
        if code != 0 or a.returncode != 1 or not err.startswith("Unavailable: ") or left:
            fail("stop during Apply: service exit %s after %.1f s, client exit %d %r, left %s" %
                 (code, stop_s, a.returncode, err, left))
        else:
            ok("stop during Apply: service exit 0 after %.1f s; client: %s; nothing left" %
               (stop_s, err[:80]))
        svc.start(ctl)
        if ctl.json("info", "crash/extract-2")["kind"] != "active" or leftovers(d2):
            fail("after the stop: %s" % leftovers(d2))
        svc.interrupt(60)
    except Exception as e:  # noqa: BLE001 - report and fail
        fail("crash test: %s" % e)
        if svc.p and svc.p.poll() is None:
            svc.kill()
    finally:
        if not windows:
            shutil.rmtree(os.path.dirname(address), ignore_errors=True)
        os.remove(blob)
    if failures:
        with open(svc.log, errors="replace") as f:
            print("service log (last lines):\n" + "".join(f.readlines()[-40:]))
    return 1 if failures else 0


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    sub = sys.argv[1]
    if sub == "tool":
        return cmd_tool(sys.argv[2], sys.argv[3], sys.argv[4])
    if sub == "service":
        return cmd_service(sys.argv[2], sys.argv[3], sys.argv[4:])
    if sub == "crash":
        rest = sys.argv[4:]
        sep = rest.index("--")
        return cmd_crash(sys.argv[2], sys.argv[3], rest[:sep], rest[sep + 1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    rc = main()
    if failures:
        print("%d failure(s)" % len(failures))
    sys.exit(rc)

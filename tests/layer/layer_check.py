#!/usr/bin/python3
"""Checks of the tar -> ext4 converter (tests/layer/CMakeLists.txt runs them).

  layer_check.py golden      CONVERTER SHARED TMP
  layer_check.py random      CONVERTER SHARED TMP FIRST LAST
  layer_check.py independent CONVERTER SHARED TMP [FIRST LAST]
  layer_check.py edge        CONVERTER SHARED TMP
  layer_check.py large       CONVERTER SHARED TMP

CONVERTER is tests/layer/layer_convert (tar2ext4's flags, ext4 image only); in
the win64 build it is layer_convert.exe and LCOW_WINE_COMMAND (a '|'-separated
command, e.g. env|-u|DISPLAY|WINEPREFIX=...|wine) runs it, with Z:\\ paths.
SHARED is ../shared: golden.json, make_layers.py and tar2ext4-ref. Without it
every subcommand prints why and exits 77 (CTest: skipped).

golden:      every case of golden.json, profiles differ and inline (and differ
             again through the view source): size and SHA-256 of our image
             equal tar2ext4's; overwrite.tar (which
             tar2ext4 refuses) converts, with the later entries winning.
random:      seeds FIRST..LAST of gen_layer.py, both profiles, compared byte for
             byte with tar2ext4-ref (a layer tar2ext4-ref refuses must be one we
             refuse too, or, with gen_layer's --conflicts, one we apply).
edge:        the hand-made tars of edge_tars.py (format corners, truncations,
             sparse files, PAX records, paths): identical to tar2ext4-ref where it
             converts them, refused where it refuses them, and refused on purpose
             where docs/layers.md says so; a refused conversion leaves no file.
large:       a 512 MiB + 12 KiB file (an extent tree of depth 1) = tar2ext4-ref.
independent: the golden tars and seeds FIRST..LAST (with --conflicts): e2fsck -fn
             reports nothing but "Padding at end of inode bitmap is not set", and
             the image read back with debugfs (rdump for contents and symlink
             targets; ls -p, stat and ea_get for the rest) equals GNU tar -x of
             the same tar (overlay whiteouts applied to it) in types, contents,
             modes, owners, mtimes, device numbers, xattrs and link counts.
"""
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_layer  # noqa: E402

PROFILES = {"differ": ["-overlay", "-max-gb", "128"], "inline": ["-overlay", "-inline", "-max-gb", "128"]}


class Converter:
    def __init__(self, exe):
        self.exe = exe
        wine = os.environ.get("LCOW_WINE_COMMAND", "")
        self.wine = [w for w in wine.split("|") if w] if wine else []

    def path(self, p):
        return "Z:" + os.path.abspath(p).replace("/", "\\") if self.wine else p

    def run(self, tar, out, flags):
        if os.path.exists(out):
            os.remove(out)
        cmd = self.wine + [self.exe, "-i", self.path(tar), "-o", self.path(out)] + flags
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
        return p.returncode, (p.stderr or "").strip()


def need_shared(shared):
    files = {
        "golden": os.path.join(shared, "reference/layers/golden.json"),
        "make": os.path.join(shared, "reference/layers/make_layers.py"),
        "ref": os.path.join(shared, "tools/tar2ext4-ref"),
    }
    for f in files.values():
        if not os.path.exists(f):
            print("SKIP: %s is absent (../shared is not here): the layer comparisons need it" % f)
            sys.exit(SKIP)
    return files


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def golden_tars(files, tmp):
    d = os.path.join(tmp, "golden")
    if not os.path.exists(os.path.join(d, "overwrite.tar")):
        os.makedirs(d, exist_ok=True)
        subprocess.run([sys.executable, files["make"], d], check=True, capture_output=True)
    return d


# ---- golden ----

def cmd_golden(conv, shared, tmp):
    files = need_shared(shared)
    g = json.load(open(files["golden"]))["cases"]
    d = golden_tars(files, tmp)
    bad = 0
    for case, want in sorted(g.items()):
        tar = os.path.join(d, case + ".tar")
        if sha256(tar) != want["tar_sha256"]:
            print("%s: this Python's tarfile wrote other bytes than golden.json's; skipped" % case)
            continue
        # the third pass feeds the tar through the zero-copy view source
        for prof, flags in list(PROFILES.items()) + [("view", PROFILES["differ"] + ["-view"])]:
            out = os.path.join(tmp, "%s.%s.img" % (case, prof))
            rc, msg = conv.run(tar, out, flags)
            if "reference_fails" in want:
                ok = rc == 0 and overwrite_ok(out)
                print("%-17s %-6s %s (tar2ext4: %s; ours: later entry wins)" %
                      (case, prof, "ok" if ok else "FAIL " + msg, want["reference_fails"]))
                bad += not ok
                continue
            key = "inline_ext4" if prof == "inline" else "ext4"
            if rc != 0:
                print("%-17s %-6s FAIL: %s" % (case, prof, msg))
                bad += 1
                continue
            size, digest = os.path.getsize(out), sha256(out)
            ok = size == want[key + "_bytes"] and digest == want[key + "_sha256"]
            print("%-17s %-6s %s %d bytes %s" % (case, prof, "ok  " if ok else "DIFF", size, digest[:16]))
            bad += not ok
            os.remove(out)
    print("golden: %s" % ("all match" if not bad else "%d mismatches" % bad))
    return 1 if bad else 0


def debugfs(img, cmds):
    p = subprocess.run(["debugfs", "-f", "-", img], input="\n".join(cmds) + "\n", capture_output=True,
                       text=True, errors="surrogateescape")
    return p.stdout


def overwrite_ok(img):
    """golden.json: f holds 'second, longer version\\n'; d has mode 0711 and holds x."""
    out = debugfs(img, ["cat /f", "stat /d", "ls -p /d"])
    return ("second, longer version\n" in out and re.search(r"Mode:\s+0711", out) is not None
            and "/x/" in out and e2fsck(img)[0])


# ---- random differential ----

def cmd_random(conv, shared, tmp, first, last):
    files = need_shared(shared)
    ref = files["ref"]
    bad = same = refused = 0
    for seed in range(first, last + 1):
        conflicts = seed % 10 == 0
        tar = os.path.join(tmp, "r%d.tar" % seed)
        with open(tar, "wb") as f:
            f.write(gen_layer.small(seed, conflicts))
        for prof, flags in PROFILES.items():
            rvhd, ours = os.path.join(tmp, "ref.vhd"), os.path.join(tmp, "ours.img")
            r = subprocess.run([ref, "-i", tar, "-o", rvhd, "-vhd"] + flags, capture_output=True, text=True)
            rc, msg = conv.run(tar, ours, flags)
            if "Sanitizer" in msg or "runtime error" in msg:
                print("seed %d %s: %s" % (seed, prof, msg))
                bad += 1
                continue
            if r.returncode != 0:
                refused += 1
                if not conflicts and rc == 0:
                    print("seed %d %s: tar2ext4 refuses (%s), we accept" % (seed, prof, r.stderr.strip()))
                    bad += 1
                elif conflicts and rc != 0:
                    print("seed %d %s: a layer with conflicts must convert (tar -x): %s" % (seed, prof, msg))
                    bad += 1
                elif conflicts and not e2fsck(ours, pre1970_ok=True)[0]:
                    print("seed %d %s: conflicts applied, but e2fsck complains" % (seed, prof))
                    bad += 1
                continue
            if rc != 0:
                print("seed %d %s: tar2ext4 converts, we fail: %s" % (seed, prof, msg))
                bad += 1
                continue
            n = os.path.getsize(rvhd) - 512
            with open(rvhd, "rb") as a, open(ours, "rb") as b:
                if os.path.getsize(ours) == n and a.read(n) == b.read():
                    same += 1
                    continue
            print("seed %d %s: DIFFERENT from tar2ext4-ref (kept %s)" % (seed, prof, tar))
            bad += 1
        if not bad:
            os.remove(tar)
    print("random seeds %d..%d: %d images identical to tar2ext4-ref, %d refused by it, %d failures" %
          (first, last, same, refused, bad))
    return 1 if bad else 0


# ---- hand-made edge cases ----

def cmd_edge(conv, shared, tmp):
    files = need_shared(shared)
    import edge_tars
    d = os.path.join(tmp, "edge")
    edge_tars.main_into(d)
    expect = json.load(open(os.path.join(d, "cases.json")))
    bad = 0
    for case, want in sorted(expect.items()):
        tar = os.path.join(d, case + ".tar")
        for prof, flags in PROFILES.items():
            rvhd, ours = os.path.join(tmp, "ref.vhd"), os.path.join(tmp, "ours.img")
            r = subprocess.run([files["ref"], "-i", tar, "-o", rvhd, "-vhd"] + flags, capture_output=True, text=True)
            rc, msg = conv.run(tar, ours, flags)
            ref_ok = r.returncode == 0
            if want == "same":
                ok = ref_ok and rc == 0 and same_image(rvhd, ours)
                why = "identical" if ok else "ref rc=%d (%s), ours rc=%d (%s)" % (
                    r.returncode, r.stderr.strip()[-80:], rc, msg[-200:])
            elif want == "both_fail":
                ok = not ref_ok and rc != 0 and "Sanitizer" not in msg and \
                    ("ResourceExhausted" in msg if "over_128g" in case else "InvalidArgument" in msg)
                why = "both refuse: %s" % msg[-120:] if ok else "ref rc=%d, ours rc=%d" % (r.returncode, rc)
            else:  # we_refuse
                ok = ref_ok and rc != 0 and "InvalidArgument" in msg
                why = "we refuse on purpose: %s" % msg[-120:] if ok else "ref rc=%d, ours rc=%d %s" % (
                    r.returncode, rc, msg)
            print("%-26s %-6s %s %s" % (case, prof, "ok  " if ok else "FAIL", why))
            bad += not ok
            if rc != 0 and os.path.exists(ours):
                print("%-26s %-6s FAIL: a failed conversion left its output behind" % (case, prof))
                bad += 1
    print("edge: %d cases x 2 profiles, %s" % (len(expect), "all as expected" if not bad else "%d failures" % bad))
    return 1 if bad else 0


def same_image(rvhd, ours):
    n = os.path.getsize(rvhd) - 512
    if os.path.getsize(ours) != n:
        return False
    with open(rvhd, "rb") as a, open(ours, "rb") as b:
        return a.read(n) == b.read()


# ---- a file past 512 MiB (more than 4 extents: an extent tree of depth 1) ----

def cmd_large(conv, shared, tmp):
    files = need_shared(shared)
    import edge_tars
    tar = os.path.join(tmp, "large.tar")
    size = (512 << 20) + 4096 * 3 + 7  # 5 extents
    with open(tar, "wb") as f:
        f.write(edge_tars.header(name=b"small", size=3) + edge_tars.data(b"abc"))
        f.write(edge_tars.header(name=b"big", size=size))
        chunk = bytes(range(256)) * 4096
        left, i = size, 0
        while left:
            n = min(left, len(chunk))
            f.write(i.to_bytes(8, "little") + chunk[8:n] if n >= 8 else chunk[:n])
            left -= n
            i += 1
        f.write(bytes(-size % 512) + edge_tars.entry(b"after", b"after") + bytes(1024))
    bad = 0
    for prof, flags in PROFILES.items():
        rvhd, ours = os.path.join(tmp, "ref.vhd"), os.path.join(tmp, "ours.img")
        r = subprocess.run([files["ref"], "-i", tar, "-o", rvhd, "-vhd"] + flags, capture_output=True, text=True)
        rc, msg = conv.run(tar, ours, flags)
        ok = r.returncode == 0 and rc == 0 and same_image(rvhd, ours)
        print("large file (%d bytes) %s: %s" % (size, prof, "identical" if ok else "FAIL %s %s" % (r.stderr, msg)))
        bad += not ok
        for p in (rvhd, ours):
            if os.path.exists(p):
                os.remove(p)
    os.remove(tar)
    return 1 if bad else 0


# ---- independent check ----

def e2fsck(img, pre1970_ok=()):
    """(clean, problems): e2fsck -fn may report only the message every
    tar2ext4 image gets, and "likely pre-1970" for the inodes in pre1970_ok
    (tar2ext4's encoding of a time before 1970; True: any inode)."""
    p = subprocess.run(["e2fsck", "-fn", img], capture_output=True, text=True)
    problems = []
    for line in (p.stdout + p.stderr).splitlines():
        line = line.strip()
        if not line or line.startswith(("Pass ", "e2fsck ")) or line == "Fix? no" or \
                "WARNING: Filesystem still has errors" in line or re.match(r"^\S+: \d+/\d+ files", line):
            continue
        if line.startswith("Padding at end of inode bitmap is not set."):
            continue
        m = re.match(r"Timestamp\(s\) on inode (\d+) beyond 2310-04-04 are likely pre-1970", line)
        if m and (pre1970_ok is True or int(m.group(1)) in pre1970_ok):
            continue
        problems.append(line)
    return not problems, problems


def decode_ext4_time(lo, extra):
    sec = lo - (1 << 32) if lo >= 1 << 31 else lo
    return sec + ((extra & 3) << 32), extra >> 2


def go_fs_time(sec, nsec):
    """compactext4's timeToFsTime: (low 32 bits, extra 32 bits)."""
    if sec < -0x80000000:
        v = 0x80000000
    elif sec > 0x37fffffff:
        v = 0x37fffffff
    else:
        v = (sec & ((1 << 64) - 1)) | (nsec << 34)
    v &= (1 << 64) - 1
    return v & 0xffffffff, v >> 32


def image_tree(img, work):
    """path -> metadata, read with debugfs only."""
    tree = {}
    stats = {}
    todo = [("", 2)]
    seen_dirs = set()
    while todo:
        batch, todo = todo, []
        out = debugfs(img, ["ls -p <%d>" % ino for _, ino in batch])
        # debugfs prints the listings in order, each line /ino/mode/uid/gid/name/size/
        chunks = out.split("debugfs:")
        for (path, _), chunk in zip(batch, [c for c in chunks if c.strip() or True][1:]):
            for line in chunk.splitlines():
                m = re.match(r"^/(\d+)/(\d+)/(-?\d+)/(-?\d+)/(.*)/(\d*)/$", line.strip())
                if not m or m.group(1) == "0":
                    continue
                name = m.group(5)
                if name in (".", ".."):
                    continue
                ino, mode = int(m.group(1)), int(m.group(2), 8)
                p = path + "/" + name if path else name
                tree[p] = {"ino": ino}
                if stat.S_ISDIR(mode) and ino not in seen_dirs:
                    seen_dirs.add(ino)
                    todo.append((p, ino))
    inos = sorted({v["ino"] for v in tree.values()} | {2})
    out = debugfs(img, ["stat <%d>" % i for i in inos])
    for block in out.split("debugfs:")[1:]:
        m = re.search(r"Inode: (\d+)\s+Type: (.+?)\s+Mode:\s+(\d+)", block)
        if not m:
            continue
        s = {"type": m.group(2).strip(), "mode": int(m.group(3), 8)}
        # debugfs prints ids of 2^31 and up as negative numbers
        s["uid"] = int(re.search(r"User:\s+(-?\d+)", block).group(1)) & 0xffffffff
        s["gid"] = int(re.search(r"Group:\s+(-?\d+)", block).group(1)) & 0xffffffff
        s["size"] = int(re.search(r"Size:\s+(\d+)", block).group(1))
        s["nlink"] = int(re.search(r"Links:\s+(\d+)", block).group(1))
        for k in ("atime", "ctime", "mtime", "crtime"):
            t = re.search(r"(?<![a-z])%s: 0x([0-9a-f]+)(?::([0-9a-f]+))?" % k, block)
            s[k + "_raw"] = (int(t.group(1), 16), int(t.group(2) or "0", 16)) if t else (0, 0)
        d = re.search(r"Device major/minor number: (\d+):(\d+)", block)
        s["rdev"] = (int(d.group(1)), int(d.group(2))) if d else None
        s["xattr_names"] = [n for n in re.findall(r"^  (\S+) \(\d+\)", block.split("Extended attributes:")[1], re.M)
                            if n != "system.data"] if "Extended attributes:" in block else []  # inline data
        stats[int(m.group(1))] = s
    # exact xattr values
    cmds, want = [], []
    for ino, s in stats.items():
        s["xattrs"] = {}
        for n in s["xattr_names"]:
            f = os.path.join(work, "ea-%d-%d" % (ino, len(want)))
            cmds.append("ea_get -f %s <%d> %s" % (f, ino, n))
            want.append((ino, n, f))
    if cmds:
        debugfs(img, cmds)
        for ino, n, f in want:
            with open(f, "rb") as fh:
                stats[ino]["xattrs"][n] = fh.read()
            os.remove(f)
    # contents and symlink targets through rdump
    rd = os.path.join(work, "rdump")
    shutil.rmtree(rd, ignore_errors=True)
    os.makedirs(rd)
    debugfs(img, ["rdump / %s" % rd])
    for p, v in tree.items():
        v.update(stats[v["ino"]])
        q = os.path.join(rd, p)
        if v["type"] == "regular":
            # debugfs (1.47) dumps an inline file shorter than 60 bytes as 60
            with open(q, "r+b") as fh:
                fh.truncate(v["size"])
            v["sha"] = sha256(q)
        elif v["type"] == "symlink":
            v["target"] = os.readlink(q)
    tree[""] = dict(stats[2], ino=2)
    return tree


TYPES = {stat.S_IFREG: "regular", stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink",
         stat.S_IFCHR: "character special", stat.S_IFBLK: "block special", stat.S_IFIFO: "FIFO"}


def tar_x(tar, d):
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    subprocess.run(["tar", "-xpf", tar, "-C", d, "--same-owner", "--numeric-owner", "--xattrs",
                    "--xattrs-include=*"], capture_output=True)


def tar_tree(tar, work, overlay):
    """path -> metadata of GNU tar -x (as root), whiteouts applied as overlay.
    GNU tar sets a directory's times when the archive leaves it, so an archive
    not in tree order (or with symlinks it creates last) gets directories with
    the time of extraction; their metadata comes from Python's
    tarfile.extractall of the directory entries instead, which sets them all
    at the end."""
    d = os.path.join(work, "tarx")
    tar_x(tar, d)
    dd = os.path.join(work, "tarx-dirs")
    shutil.rmtree(dd, ignore_errors=True)
    os.makedirs(dd)
    with tarfile.open(tar) as src:
        dirs = []
        for m in src.getmembers():
            if m.isdir():
                m.name = clean(m.name) or "."
                dirs.append(m)
        src.extractall(dd, members=dirs, numeric_owner=True)
    tree = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            full = os.path.join(root, n)
            p = os.path.relpath(full, d)
            st = os.lstat(full)
            v = {"type": TYPES.get(stat.S_IFMT(st.st_mode), "?"), "mode": stat.S_IMODE(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid, "nlink": st.st_nlink,
                 "mtime": (st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9),
                 "rdev": (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode)
                 or stat.S_ISBLK(st.st_mode) else None}
            v["xattrs"] = {} if stat.S_ISLNK(st.st_mode) else \
                {x: os.getxattr(full, x, follow_symlinks=False) for x in os.listxattr(full, follow_symlinks=False)}
            if stat.S_ISDIR(st.st_mode) and os.path.isdir(os.path.join(dd, p)):
                ds = os.lstat(os.path.join(dd, p))
                v["mtime"] = (ds.st_mtime_ns // 10**9, ds.st_mtime_ns % 10**9)
                v["mode"], v["uid"], v["gid"] = stat.S_IMODE(ds.st_mode), ds.st_uid, ds.st_gid
            if stat.S_ISREG(st.st_mode):
                v["sha"] = sha256(full)
            elif stat.S_ISLNK(st.st_mode):
                v["target"] = os.readlink(full)
            tree[p] = v
    if overlay:
        for p in sorted(tree):
            base = os.path.basename(p)
            parent = os.path.dirname(p)
            if base == ".wh..wh..opq":
                del tree[p]
                tree.setdefault(parent, {"type": "directory", "xattrs": {}})["xattrs"]["trusted.overlay.opaque"] = b"y"
            elif base.startswith(".wh."):
                del tree[p]
                target = os.path.join(parent, base[4:]) if parent else base[4:]
                tree[target] = {"type": "character special", "mode": 0, "uid": 0, "gid": 0, "nlink": 1,
                                "mtime": None, "rdev": (0, 0), "xattrs": {}, "whiteout": True}
    return tree


def clean(name):
    parts = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            parts = parts[:-1]
        else:
            parts.append(c)
    return "/".join(parts)


class Named(dict):
    """path -> how many entries name it; .xattrs[path] = the xattr names of
    each of those entries, in order."""

    def __init__(self):
        super().__init__()
        self.xattrs = {}


def named_paths(tar):
    names = Named()
    with tarfile.open(tar) as t:
        for m in t.getmembers():
            p = clean(m.name)
            names[p] = names.get(p, 0) + 1
            names.xattrs.setdefault(p, []).append(
                {k[13:] for k in m.pax_headers if k.startswith("SCHILY.xattr.")})
    return names


def compare(img_tree, ref_tree, named):
    errs = []
    for p in sorted(set(img_tree) | set(ref_tree)):
        if p in ("lost+found", ""):
            continue
        a, b = img_tree.get(p), ref_tree.get(p)
        if a is None or b is None:
            errs.append("%s: only in %s" % (p, "the image" if b is None else "tar -x"))
            continue
        if a["type"] != b["type"]:
            errs.append("%s: type %s, tar -x %s" % (p, a["type"], b["type"]))
            continue
        if a["nlink"] != b["nlink"]:
            errs.append("%s: %d links, tar -x %d" % (p, a["nlink"], b["nlink"]))
        if a["type"] == "regular" and a["sha"] != b["sha"]:
            errs.append("%s: content differs" % p)
        if a["type"] == "symlink" and a["target"] != b["target"]:
            errs.append("%s: symlink target differs" % p)
        if b.get("rdev") and a["rdev"] != b["rdev"]:
            errs.append("%s: device %s, tar -x %s" % (p, a["rdev"], b["rdev"]))
        ax = dict(a["xattrs"])
        if "security.capability" not in b["xattrs"]:
            ax.pop("security.capability", None)  # Linux refuses a malformed capability
        if a["type"] == "directory" and named.get(p, 0) > 1:
            # tar2ext4 keeps only the in-inode xattrs of a directory named
            # again (it rewrites the xattr block from the new entry alone)
            # (and tar -x may lose one of the last entry's xattrs when old and
            # new together pass what one inode of the host's ext4 can hold)
            last = named.xattrs[p][-1] if p in named.xattrs else set()
            if any(b["xattrs"].get(k) != v and k not in last for k, v in ax.items()):
                errs.append("%s: xattrs %s, tar -x %s" % (p, sorted(ax), sorted(b["xattrs"])))
        elif a["type"] == "regular" and named.get(p, 0) > 1 and ax != b["xattrs"]:
            # a file named again after a version without data blocks: tar2ext4
            # reuses the inode and keeps the earlier in-inode xattrs the new
            # entry does not set (tar -x starts a new file)
            earlier = set().union(*named.xattrs[p][:-1])
            if any(ax.get(k) != v for k, v in b["xattrs"].items()) or \
                    not set(ax) - set(b["xattrs"]) <= earlier:
                errs.append("%s: xattrs %s, tar -x %s" % (p, sorted(ax), sorted(b["xattrs"])))
        elif a["type"] in ("regular", "directory") and ax != b["xattrs"]:
            errs.append("%s: xattrs %s, tar -x %s" % (p, sorted(a["xattrs"]), sorted(b["xattrs"])))
        if p not in named and not b.get("whiteout"):
            continue  # an implicit parent: tar -x and tar2ext4 each invent its metadata
        for k in ("mode", "uid", "gid"):
            if a[k] != b[k]:
                errs.append("%s: %s %o, tar -x %o" % (p, k, a[k], b[k]))
        if a["type"] == "symlink":
            continue  # tar -x sets no symlink times
        if b.get("whiteout"):
            if a["mtime_raw"] != (0, 0):
                errs.append("%s: whiteout with a time" % p)
            continue
        sec, nsec = b["mtime"]
        got = decode_ext4_time(*a["mtime_raw"])
        # directory times come from Python, which holds them as floats
        slack = 1000 if a["type"] == "directory" else 0
        close = got[0] * 10**9 + got[1] - (sec * 10**9 + nsec)
        # tar2ext4 re-creates a directory to mark it opaque, passing its time
        # through fsTimeToTime: a time before 1970 comes back as 0x37fffffff
        opaque_quirk = sec < 0 and a["mtime_raw"] == (0x7fffffff, 3) and \
            a["xattrs"].get("trusted.overlay.opaque") == b"y"
        if abs(close) > slack and a["mtime_raw"] != go_fs_time(sec, nsec) and not opaque_quirk:
            errs.append("%s: mtime %s, tar -x %d.%09d" % (p, a["mtime_raw"], sec, nsec))
    return errs


def independent_one(conv, tar, tmp, label):
    bad = 0
    for prof, flags in PROFILES.items():
        img = os.path.join(tmp, "ind.img")
        rc, msg = conv.run(tar, img, flags)
        if rc != 0:
            print("%s %s: conversion failed: %s" % (label, prof, msg))
            return 1
        tree = image_tree(img, tmp)
        # Go stores a time before 1970 as uint64(seconds): extra bits all ones
        pre1970 = {v["ino"] for v in tree.values()
                   if any(v[k + "_raw"][1] == 0xffffffff for k in ("atime", "ctime", "mtime", "crtime"))}
        ok, extra = e2fsck(img, pre1970)
        if not ok:
            print("%s %s: e2fsck: %s" % (label, prof, "; ".join(extra[:5])))
            bad += 1
        errs = compare(tree, tar_tree(tar, tmp, True), named_paths(tar))
        if errs:
            print("%s %s: %d differences from tar -x, e.g. %s" % (label, prof, len(errs), "; ".join(errs[:4])))
            bad += 1
    return bad


def cmd_independent(conv, shared, tmp, first, last):
    files = need_shared(shared)
    for tool in ("e2fsck", "debugfs", "tar"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed" % tool)
            return SKIP
    d = golden_tars(files, tmp)
    bad = n = 0
    for case in sorted(os.listdir(d)):
        if case.endswith(".tar"):
            bad += independent_one(conv, os.path.join(d, case), tmp, case[:-4])
            n += 1
    for seed in range(first, last + 1):
        tar = os.path.join(tmp, "i%d.tar" % seed)
        with open(tar, "wb") as f:
            f.write(gen_layer.small(seed, conflicts=True, portable=True))
        b = independent_one(conv, tar, tmp, "seed %d" % seed)
        bad += b
        n += 1
        if not b:
            os.remove(tar)
    print("independent: %d layers, e2fsck and debugfs vs tar -x: %s" % (n, "all agree" if not bad else "%d failures" % bad))
    return 1 if bad else 0


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    cmd, exe, shared, tmp = sys.argv[1:5]
    os.makedirs(tmp, exist_ok=True)
    conv = Converter(exe)
    rest = [int(x) for x in sys.argv[5:]]
    if cmd == "golden":
        return cmd_golden(conv, shared, tmp)
    if cmd == "random":
        return cmd_random(conv, shared, tmp, *rest)
    if cmd == "large":
        return cmd_large(conv, shared, tmp)
    if cmd == "edge":
        return cmd_edge(conv, shared, tmp)
    if cmd == "independent":
        return cmd_independent(conv, shared, tmp, *(rest or [1, 0]))
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main())

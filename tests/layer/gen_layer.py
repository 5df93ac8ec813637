#!/usr/bin/python3
"""Seeded random OCI-style layer tars for differential tests of the tar -> ext4
converter against hcsshim's tar2ext4 (tests/layer/).

  gen_layer.py SEED OUT.tar [--profile small|bench] [--conflicts]

The same seed and profile always give the same bytes (Python's tarfile and
random). Profiles:
  small  (default) up to ~150 entries: deep and wide trees, files of sizes
         around every boundary the writer cares about (0, 59/60/61, 136/137,
         4095/4096/4097, multi-block), short and long symlinks, hard links to
         files and symlinks, whiteouts and opaque markers, xattrs (in-inode and
         in a block, up to 20 per file), devices and FIFOs, PAX times with
         nanoseconds, far-future and pre-1970 times, big uids, GNU long names,
         "./" and absolute names, directories named again with a new mode,
         implicit parents, formats GNU / PAX / USTAR.
  bench  about 20,000 entries and 280 MB (the benchmark layer of issue 15).

--conflicts adds entries tar2ext4 refuses (a file written twice, a hard link
over a file): the converter must then apply them as tar -x does.
"""
import io
import random
import sys
import tarfile

T0 = 1700000000


class Gen:
    def __init__(self, seed, fmt, portable=False):
        self.portable = portable  # only what GNU tar -x can reproduce exactly
        self.r = random.Random(seed)
        self.buf = io.BytesIO()
        self.t = tarfile.open(fileobj=self.buf, mode="w", format=fmt)
        self.fmt = fmt
        self.dirs = [""]  # known directories ("" is the root), with trailing "/"
        self.files = []  # regular files (hard-link targets)
        self.symlinks = []
        self.used = set()  # every path created (no accidental conflicts)

    # ---- names ----
    def name(self, long_ok=True):
        r = self.r
        k = r.random()
        if k < 0.05 and long_ok:
            n = r.randint(100, 255)
            return "".join(r.choice("abcdefghij") for _ in range(n))
        if k < 0.10:
            return "u-\u00e9\u4e2d-%d" % r.randint(0, 1 << 20)
        if k < 0.13:
            return ".hidden%d" % r.randint(0, 999)
        n = r.randint(1, 16)
        return "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789_-.") for _ in range(n)).strip(".") or "x"

    def fresh(self, parent):
        for _ in range(100):
            p = parent + self.name()
            if p not in self.used and p.rstrip("/") + "/" not in self.used:
                if not p.startswith(".wh.") and "/.wh." not in p and p not in (".", ".."):
                    return p
        raise RuntimeError("no fresh name")

    def spelled(self, path):
        """A path as a tar may spell it: ./x, /x, x//y (all the same file)."""
        k = self.r.random()
        if k < 0.08:
            return "./" + path
        if k < 0.12 and self.fmt != tarfile.USTAR_FORMAT:
            return "/" + path
        return path

    # ---- metadata ----
    def when(self):
        r = self.r
        k = r.random()
        if k < 0.05:
            return 0
        if k < 0.08:
            return (1 << 33) + r.randint(0, 1000)  # past 2038: ext4 epoch bits
        if k < 0.10 and self.fmt == tarfile.PAX_FORMAT:
            return -r.randint(1, 1 << 30)  # before 1970
        if k < 0.30 and self.fmt == tarfile.PAX_FORMAT:
            return T0 + r.randint(0, 1 << 20) + r.randint(1, 999999999) / 1e9
        return T0 + r.randint(0, 1 << 24)

    def info(self, name, typ, mode, size=0):
        r = self.r
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size = typ, mode, size
        ti.mtime = self.when()
        ti.uname = ti.gname = ""
        k = r.random()
        if k < 0.7:
            ti.uid = ti.gid = 0
        elif k < 0.9:
            ti.uid, ti.gid = r.randint(1, 65535), r.randint(1, 65535)
        elif self.fmt != tarfile.USTAR_FORMAT:
            top = (1 << 32) - (2 if self.portable else 1)  # chown cannot set -1
            ti.uid, ti.gid = r.randint(65536, top), r.randint(65536, top)
        if self.fmt == tarfile.PAX_FORMAT:
            pax = {}
            if r.random() < 0.25:
                pax["atime"] = "%d.%09d" % (T0 + r.randint(0, 1 << 20), r.randint(0, 999999999))
                pax["ctime"] = "%d.%d" % (T0 + r.randint(0, 1 << 20), r.randint(0, 99))
            if r.random() < 0.3 and (typ in (tarfile.REGTYPE, tarfile.DIRTYPE) or not self.portable):
                pax.update(self.xattrs())
            ti.pax_headers = pax
        return ti

    def xattrs(self):
        r = self.r
        out = {}
        n = r.choice([1, 1, 2, 3, 5, 8, 13, 20])
        for i in range(n):
            k = r.random()
            if k < 0.4:
                key = "user.%s" % "".join(r.choice("abcdefgh") for _ in range(r.randint(1, 20)))
            elif k < 0.55:
                key = "security.capability"
            elif k < 0.65:
                key = "trusted.%s" % r.choice(["md5", "overlay.x", "t%d" % i])
            elif k < 0.75:
                key = "security.selinux"
            else:
                key = "user.k%d" % i
            vk = r.random()
            if vk < 0.5:
                val = "".join(r.choice("abcdef0123") for _ in range(r.randint(0, 16)))
            elif vk < 0.8:
                val = "v" * r.randint(17, 90)
            elif vk < 0.95:
                val = "w" * r.randint(90, 1500)
            else:
                val = "z" * r.randint(1500, 2000)
            out["SCHILY.xattr." + key] = val
        # keep the block within reach: tar2ext4 fails when xattrs do not fit
        while sum(len(k) + len(v) + 24 for k, v in out.items()) > 3500:
            out.pop(next(iter(out)))
        return out

    def data(self, n):
        r = self.r
        k = r.random()
        if k < 0.2:
            return bytes(n)
        if n <= 4096:
            return bytes(r.getrandbits(8) for _ in range(n))
        return r.randbytes(n)

    def size(self):
        r = self.r
        return r.choice([0, 0, 1, 5, 59, 60, 61, 100, 135, 136, 137, 200, 1000, 4095, 4096,
                         4097, 8192, 12289, r.randint(1, 70000), r.randint(70000, 400000)])

    # ---- entries ----
    def add(self, ti, content=None):
        self.t.addfile(ti, io.BytesIO(content) if content is not None else None)

    def mkdir(self, parent):
        p = self.fresh(parent) + "/"
        self.used.add(p)
        if self.r.random() < 0.15:
            # implicit: only a later entry inside it names it
            self.dirs.append(p)
            return p
        mode = self.r.choice([0o755, 0o755, 0o700, 0o1777, 0o2755, 0o555])
        self.add(self.info(self.spelled(p), tarfile.DIRTYPE, mode))
        self.dirs.append(p)
        return p

    def mkfile(self, parent, size=None):
        p = self.fresh(parent)
        self.used.add(p)
        n = self.size() if size is None else size
        mode = self.r.choice([0o644, 0o644, 0o755, 0o600, 0o4755, 0o2711, 0o444])
        self.add(self.info(self.spelled(p), tarfile.REGTYPE, mode, n), self.data(n))
        self.files.append(p)
        return p

    def entry(self):
        r = self.r
        parent = r.choice(self.dirs)
        k = r.random()
        if k < 0.22:
            self.mkdir(parent)
        elif k < 0.70:
            self.mkfile(parent)
        elif k < 0.78:
            p = self.fresh(parent)
            self.used.add(p)
            target = r.choice(["x", "../" * r.randint(0, 4) + "etc/passwd",
                               "t" * r.randint(55, 64), "l" * r.randint(60, 300),
                               r.choice(self.files) if self.files else "none"])
            ti = self.info(self.spelled(p), tarfile.SYMTYPE, 0o777)
            ti.linkname = target
            self.add(ti)
            self.symlinks.append(p)
        elif k < 0.85 and (self.files or self.symlinks):
            p = self.fresh(parent)
            self.used.add(p)
            ti = self.info(self.spelled(p), tarfile.LNKTYPE, 0o644)
            ti.linkname = self.spelled(r.choice(self.files + self.symlinks))
            self.add(ti)
        elif k < 0.89:
            p = self.fresh(parent)
            self.used.add(p)
            typ = r.choice([tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
            ti = self.info(self.spelled(p), typ, r.choice([0o600, 0o666, 0o640]))
            if typ != tarfile.FIFOTYPE:
                ti.devmajor, ti.devminor = r.randint(0, 4095), r.choice([0, 1, 3, 255, 256, 70000])
            self.add(ti)
        elif k < 0.95:
            # a whiteout of a name not created here (tar2ext4 refuses others)
            p = parent + ".wh." + self.fresh("")
            target = parent + p[len(parent) + 4:]
            if target in self.used:
                return
            self.used.add(target)
            self.add(self.info(self.spelled(p), tarfile.REGTYPE, 0o644))
        elif k < 0.97:
            if parent + ".wh..wh..opq" not in self.used:
                self.used.add(parent + ".wh..wh..opq")
                self.add(self.info(self.spelled(parent + ".wh..wh..opq"), tarfile.REGTYPE, 0o644))
        elif k < 0.99 and parent:
            # the directory named again, with a new mode and times
            self.add(self.info(self.spelled(parent), tarfile.DIRTYPE, r.choice([0o711, 0o750])))
        else:
            # a deep chain of implicit parents
            p = parent + "/".join("d%d" % i for i in range(r.randint(2, 40))) + "/"
            if p in self.used:
                return
            self.used.add(p)
            self.dirs.append(p)
            self.mkfile(p)

    def conflicts(self):
        r = self.r
        for _ in range(r.randint(1, 3)):
            if self.files and r.random() < 0.6:
                p = r.choice(self.files)  # the same file again, new content
                n = self.size()
                self.add(self.info(p, tarfile.REGTYPE, 0o644, n), self.data(n))
            elif len(self.files) > 1:
                a, b = r.sample(self.files, 2)  # a hard link replacing a file
                ti = self.info(a, tarfile.LNKTYPE, 0o644)
                ti.linkname = b
                self.add(ti)

    def close(self):
        self.t.close()
        return self.buf.getvalue()


def small(seed, conflicts=False, portable=False):
    r = random.Random(seed)
    fmt = r.choice([tarfile.PAX_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
    g = Gen(seed, fmt, portable)
    if r.random() < 0.2:
        g.add(g.info("./", tarfile.DIRTYPE, r.choice([0o755, 0o700])))
    for _ in range(r.randint(0, 150)):
        try:
            g.entry()
        except (ValueError, RuntimeError):
            pass  # a name or number the format cannot hold: skip it
    if conflicts:
        try:
            g.conflicts()
        except ValueError:
            pass  # e.g. a link target USTAR cannot hold
    return g.close()


def bench(seed):
    """~20,000 entries, ~280 MB: 1,600 directories, 17,900 files (sizes
    log-normal, median 2.5 KiB, mean 14 KiB, every 1000th 6 MiB), 500 symlinks."""
    g = Gen(seed, tarfile.PAX_FORMAT)
    r = g.r
    blob = r.randbytes(8 << 20)
    for i in range(1600):
        p = r.choice(g.dirs) + "dir%04d/" % i
        g.dirs.append(p)
        g.add(g.info(p, tarfile.DIRTYPE, 0o755))
    total = 0
    for i in range(17900):
        n = min(int(r.lognormvariate(7.9, 1.5)), 4 << 20)
        if i % 1000 == 0:
            n = 6 << 20
        off = r.randint(0, len(blob) - n)
        ti = tarfile.TarInfo(r.choice(g.dirs) + "file%05d" % i)
        ti.size, ti.mode, ti.mtime = n, 0o644, T0
        g.t.addfile(ti, io.BytesIO(blob[off:off + n]))
        total += n
    for i in range(500):
        ti = tarfile.TarInfo(r.choice(g.dirs) + "link%03d" % i)
        ti.type, ti.linkname, ti.mtime = tarfile.SYMTYPE, "../some/target/%d" % i, T0
        g.t.addfile(ti)
    return g.close()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    if len(args) < 2:
        sys.exit(__doc__)
    seed, out = int(args[0]), args[1]
    profile = "small"
    if "--profile" in sys.argv:
        profile = sys.argv[sys.argv.index("--profile") + 1]
        args = [a for a in args if a != profile]
        seed, out = int(args[0]), args[1]
    data = bench(seed) if profile == "bench" else small(seed, "--conflicts" in flags)
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Hand-made tars at the edges of the tar format, written byte by byte (no
tarfile module), for the tests that pin lcowsnap's tar reader to Go's
archive/tar (tar2ext4-ref) and show where libarchive reads them otherwise.

  edge_tars.py OUTDIR     writes OUTDIR/<case>.tar and OUTDIR/cases.json

cases.json: case -> expectation
  "same"       tar2ext4-ref converts it; our image must be identical
  "both_fail"  tar2ext4-ref refuses it; so must we
  "we_refuse"  tar2ext4-ref converts it, we refuse on purpose (docs/layers.md)
"""
import json
import os
import sys

BLK = 512
T0 = 1700000000


def octal(v, n):
    return ("%0*o" % (n - 1, v)).encode() + b"\0"


def base256(v, n):
    b = v.to_bytes(n, "big", signed=True)
    return bytes([b[0] | 0x80]) + b[1:] if v >= 0 else bytes([b[0] | 0x80]) + b[1:]


def header(name=b"f", mode=0o644, uid=0, gid=0, size=0, mtime=T0, typ=b"0", link=b"",
           magic=b"ustar\x0000", uname=b"", gname=b"", devmajor=0, devminor=0, prefix=b"",
           raw=None, checksum=None, signed_checksum=False):
    """One 512-byte header; raw = {offset: bytes} overrides after the fields."""
    b = bytearray(BLK)

    def put(off, n, v):
        if isinstance(v, int):
            v = octal(v, n)
        b[off:off + len(v)] = v[:n]

    put(0, 100, name)
    put(100, 8, mode)
    put(108, 8, uid)
    put(116, 8, gid)
    put(124, 12, size)
    put(136, 12, mtime)
    b[156:157] = typ
    put(157, 100, link)
    if magic:
        b[257:265] = magic
        put(265, 32, uname)
        put(297, 32, gname)
        put(329, 8, devmajor)
        put(337, 8, devminor)
        put(345, 155, prefix)
    for off, v in (raw or {}).items():
        b[off:off + len(v)] = v
    b[148:156] = b" " * 8
    if checksum is None:
        checksum = sum((c - 256 if c > 127 and signed_checksum else c) for c in b)
    b[148:156] = ("%06o" % (checksum & 0o777777)).encode() + b"\0 "
    return bytes(b)


def data(content):
    return content + bytes(-len(content) % BLK)


def entry(name, content=b"", **kw):
    return header(name=name, size=len(content), **kw) + data(content)


def pax_records(recs):
    out = b""
    for k, v in recs:
        body = b" " + k + b"=" + v + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def pax(recs, typ=b"x", name=b"PaxHeaders/f"):
    d = pax_records(recs)
    return header(name=name, size=len(d), typ=typ) + data(d)


END = bytes(2 * BLK)
GNU = b"ustar  \0"


def cases():
    c = {}
    same = lambda name, b: c.__setitem__(name, ("same", b))  # noqa: E731
    fail = lambda name, b: c.__setitem__(name, ("both_fail", b))  # noqa: E731

    # --- where libarchive reads otherwise (see libarchive_vs_go.c) ---
    same("global_header", pax([(b"comment", b"git archive"), (b"SCHILY.xattr.user.g", b"1")],
                              typ=b"g", name=b"pax_global_header") + entry(b"f", b"hi") + END)
    same("dir_with_size", header(name=b"d/", typ=b"5", size=1024) + entry(b"d/f", b"data") + END)
    same("symlink_with_size", header(name=b"s", typ=b"2", link=b"t", size=600) + entry(b"g", b"g") + END)
    same("hardlink_with_size", entry(b"a", b"aaa") + header(name=b"b", typ=b"1", link=b"a", size=5)
         + entry(b"c", b"c") + END)
    same("libarchive_xattr", pax([(b"LIBARCHIVE.xattr.user.x", b"dmFsdWU")]) + entry(b"f", b"x") + END)
    same("rht_selinux", pax([(b"RHT.security.selinux", b"system_u:object_r:x:s0")]) + entry(b"f", b"x") + END)
    same("reg_with_slash", entry(b"x/", b"not a dir") + END)
    fail("octal_junk", header(name=b"f", size=b"0000000005x\0") + data(b"hello") + END)
    fail("octal_inner_space", header(name=b"f", mode=b"00 644\0") + END)

    # --- header formats ---
    same("v7", entry(b"v7file", b"seven", magic=None) + END)
    same("ustar_prefix", entry(b"name", b"p", prefix=b"a/very/long/prefix") + END)
    same("star", entry(b"starfile", b"s", raw={257: b"ustar\x0000", 476: octal(T0 + 1, 12),
                                               488: octal(T0 + 2, 12), 508: b"tar\0"}) + END)
    same("gnu_times", entry(b"g", b"x", magic=GNU, raw={345: octal(T0 + 7, 12), 357: octal(T0 + 9, 12)}) + END)
    same("gnu_bad_times_prefix", entry(b"n", b"x", magic=GNU, raw={345: b"zz/pre\0"}) + END)
    same("base256", entry(b"big", b"b", uid=base256(3000000000, 8), gid=base256(1 << 40, 8),
                          mtime=base256((1 << 33) + 77, 12)) + END)
    same("base256_negative_time", entry(b"neg", b"n", mtime=base256(-1000, 12)) + END)
    same("signed_checksum", entry(b"\xe9t\xe9", b"x", signed_checksum=True) + END)
    same("mode_with_type_bits", entry(b"m", b"m", mode=0o100755) + header(name=b"dd", typ=b"5", mode=0o40700) + END)
    same("typeflag_nul", header(name=b"nuldir/", typ=b"\0") + entry(b"nulfile", b"n", typ=b"\0") + END)
    same("typeflag_contiguous", entry(b"c7", b"contig", typ=b"7") + END)
    same("typeflag_unknown", entry(b"zz", b"vendor data", typ=b"Z") + END)
    same("devices", header(name=b"c", typ=b"3", devmajor=4095, devminor=1048575)
         + header(name=b"b", typ=b"4", devmajor=0, devminor=256) + header(name=b"p", typ=b"6") + END)

    # --- GNU long names and PAX ---
    long = b"l" * 150 + b"/" + b"m" * 200
    same("gnu_longname", header(name=b"././@LongLink", typ=b"L", size=len(long) + 1, magic=GNU)
         + data(long + b"\0") + entry(b"short", b"x", magic=GNU) + END)
    same("gnu_longlink", header(name=b"././@LongLink", typ=b"K", size=len(long), magic=GNU) + data(long)
         + header(name=b"ln", typ=b"2", link=b"x", magic=GNU) + END)
    same("gnu_empty_longname", header(name=b"././@LongLink", typ=b"L", size=0, magic=GNU)
         + entry(b"kept", b"x", magic=GNU) + END)
    same("pax_empty_path", pax([(b"path", b""), (b"mtime", b"5")]) + entry(b"ustarname", b"x") + END)
    same("pax_times", pax([(b"mtime", b"-1.5"), (b"atime", b"1700000000.123456789123"), (b"ctime", b"7.")])
         + entry(b"t", b"x") + END)
    same("pax_two_headers", pax([(b"SCHILY.xattr.user.first", b"1")]) + pax([(b"SCHILY.xattr.user.second", b"2")])
         + entry(b"f", b"x") + END)
    same("pax_repeated_key", pax([(b"SCHILY.xattr.user.k", b"old"), (b"SCHILY.xattr.user.k", b"new")])
         + entry(b"f", b"x") + END)
    same("pax_then_global", pax([(b"SCHILY.xattr.user.lost", b"1")]) + pax([], typ=b"g", name=b"glob")
         + entry(b"f", b"x") + END)
    same("pax_empty_xattr", pax([(b"SCHILY.xattr.user.empty", b"")]) + entry(b"f", b"x") + END)
    same("pax_size", pax([(b"size", b"3")]) + header(name=b"f", size=999) + data(b"abc") + END)
    same("pax_uid", pax([(b"uid", b"4000000000"), (b"gid", b"+12")]) + entry(b"f", b"x") + END)
    fail("pax_bad_uid", pax([(b"uid", b"12a")]) + entry(b"f", b"x") + END)
    fail("pax_bad_length", header(name=b"PaxHeaders/f", size=12, typ=b"x") + data(b"99 path=xx\n\0")
         + entry(b"f", b"x") + END)
    fail("pax_nul_in_path", pax([(b"path", b"a\0b")]) + entry(b"f", b"x") + END)
    fail("pax_too_big", header(name=b"PaxHeaders/f", size=(1 << 20) + 1, typ=b"x") + data(b"x" * ((1 << 20) + 1))
         + entry(b"f", b"x") + END)

    # --- xattr blocks: tar2ext4 orders them with a comparator that is not a
    # strict order, so past 12 entries the order is Go 1.19 pdqsort's ---
    import random
    prefixes = [b"user.", b"trusted.", b"security.", b"system.", b"user.x", b"trusted.overlay."]
    for n in (13, 17, 24, 33, 50, 60):
        r = random.Random(n)
        recs = []
        for i in range(n):
            name = r.choice(prefixes) + bytes(r.choice(b"abcdefgh") for _ in range(r.randint(1, 12)))
            recs.append((b"SCHILY.xattr." + name, b"v" * r.randint(0, 3400 // n - 40)))
        same("block_xattrs_%d" % n, pax(recs) + entry(b"f", b"x") + END)

    # --- sparse files ---
    old = bytearray(header(name=b"sp", typ=b"S", size=1024, magic=GNU))
    sp = [(0, 512), (4096, 512)]
    for i, (o, n) in enumerate(sp):
        old[386 + 24 * i:386 + 24 * i + 12] = octal(o, 12)
        old[386 + 24 * i + 12:386 + 24 * i + 24] = octal(n, 12)
    old[483:495] = octal(10000, 12)
    old[148:156] = b" " * 8
    old[148:156] = ("%06o" % sum(old)).encode() + b"\0 "
    same("sparse_old_gnu", bytes(old) + data(b"A" * 512 + b"B" * 512) + END)
    ext = bytearray(header(name=b"spx", typ=b"S", size=6 * 512, magic=GNU))
    for i in range(4):
        ext[386 + 24 * i:386 + 24 * i + 12] = octal(i * 8192, 12)
        ext[386 + 24 * i + 12:386 + 24 * i + 24] = octal(512, 12)
    ext[482] = 1
    ext[483:495] = octal(60000, 12)
    ext[148:156] = b" " * 8
    ext[148:156] = ("%06o" % sum(ext)).encode() + b"\0 "
    more = bytearray(BLK)
    for i in range(2):
        more[24 * i:24 * i + 12] = octal((4 + i) * 8192, 12)
        more[24 * i + 12:24 * i + 24] = octal(512, 12)
    same("sparse_old_gnu_extended", bytes(ext) + bytes(more) + data(bytes(range(256)) * 12) + END)
    same("sparse_pax_01", pax([(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"), (b"GNU.sparse.name", b"real-01"),
                               (b"GNU.sparse.realsize", b"9000"), (b"GNU.sparse.numblocks", b"2"),
                               (b"GNU.sparse.map", b"0,3,8000,2")]) + entry(b"GNUSparseFile.0/x", b"abcde") + END)
    same("sparse_pax_00", pax([(b"GNU.sparse.size", b"7000"), (b"GNU.sparse.numblocks", b"2"),
                               (b"GNU.sparse.offset", b"10"), (b"GNU.sparse.numbytes", b"2"),
                               (b"GNU.sparse.offset", b"6000"), (b"GNU.sparse.numbytes", b"3")])
         + entry(b"sp00", b"xyzzy") + END)
    map10 = data(b"2\n100\n4\n5000\n1\n")
    same("sparse_pax_10", pax([(b"GNU.sparse.major", b"1"), (b"GNU.sparse.minor", b"0"), (b"GNU.sparse.name", b"real-10"),
                               (b"GNU.sparse.realsize", b"6000")])
         + header(name=b"GNUSparseFile.0/y", size=len(map10) + 5) + data(map10 + b"12345") + END)
    fail("sparse_beyond_size", pax([(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"), (b"GNU.sparse.realsize", b"10"),
                                    (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"8,5")]) + entry(b"s", b"abcde") + END)
    fail("sparse_unreferenced_data", pax([(b"GNU.sparse.major", b"0"), (b"GNU.sparse.minor", b"1"), (b"GNU.sparse.realsize", b"10"),
                                          (b"GNU.sparse.numblocks", b"1"), (b"GNU.sparse.map", b"0,2")]) + entry(b"s", b"abcde") + END)
    same("sparse_unknown_version", pax([(b"GNU.sparse.major", b"2"), (b"GNU.sparse.minor", b"0"),
                                        (b"GNU.sparse.map", b"0,1")]) + entry(b"plain", b"abcde") + END)

    # --- ends and truncation ---
    same("no_end_blocks", entry(b"f", b"x"))
    same("one_end_block", entry(b"f", b"x") + bytes(BLK))
    same("end_inside_padding", (entry(b"f", b"hello"))[:BLK + 7])
    same("garbage_after_end", entry(b"f", b"x") + END + b"garbage" * 100)
    fail("zero_then_header", entry(b"f", b"x") + bytes(BLK) + entry(b"g", b"y") + END)
    fail("truncated_header", entry(b"f", b"x") + entry(b"g", b"y")[:300])
    fail("truncated_data", (entry(b"f", b"x" * 3000))[:BLK + 1000])
    fail("bad_checksum", header(name=b"f", checksum=1) + END)
    fail("negative_size", header(name=b"f", size=base256(-5, 12)) + END)

    # --- paths and the converter's rules ---
    same("dotdot_inside", entry(b"a/../b", b"x") + entry(b"./c/./d", b"y") + END)
    same("absolute", entry(b"/abs/x", b"x") + header(name=b"/abs/l", typ=b"1", link=b"/abs/x") + END)
    same("root_entry", header(name=b"./", typ=b"5", mode=0o700, uid=5, mtime=T0 + 3) + entry(b"f", b"x") + END)
    same("whiteout_edges", header(name=b"d/", typ=b"5") + entry(b"d/.wh..wh..opq") + entry(b"e/.wh..wh..opq")
         + entry(b".wh.gone") + header(name=b".wh.dirwh/", typ=b"5") + END)
    same("hardlink_to_symlink", header(name=b"s", typ=b"2", link=b"target") + header(name=b"h", typ=b"1", link=b"s") + END)
    c["dotdot_escape"] = ("we_refuse", entry(b"../escape", b"x") + END)
    c["dotdot_escape_link"] = ("we_refuse", entry(b"f", b"x") + header(name=b"l", typ=b"1", link=b"../../f") + END)
    fail("link_to_missing", header(name=b"l", typ=b"1", link=b"nothing") + END)
    fail("name_256", pax([(b"path", b"d/" + b"n" * 256)]) + entry(b"f", b"x") + END)
    fail("file_over_128g", header(name=b"huge", size=base256((128 << 30) + 1, 12)) + END)
    deep = b"/".join(b"component%03d" % i for i in range(400))  # 5,199 bytes
    same("path_over_4096", pax([(b"path", deep)]) + entry(b"ignored", b"deep") + END)
    fail("file_over_dir", header(name=b"d/", typ=b"5") + entry(b"d", b"x") + END)
    return c


def main():
    main_into(sys.argv[1])


def main_into(out):
    os.makedirs(out, exist_ok=True)
    expect = {}
    for name, (want, b) in cases().items():
        with open(os.path.join(out, name + ".tar"), "wb") as f:
            f.write(b)
        expect[name] = want
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(expect, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

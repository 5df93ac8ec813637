/* Layer blob reader and SHA-256: known answers, media types and magic bytes,
 * round trips of tar/gzip/zstd in both threading modes, every read style and
 * ring size, digests against sha256sum and the gzip/zstd programs natively,
 * truncation at every byte of small gzip and zstd streams, bad CRCs and
 * checksums, trailing garbage, declared digests, and stopping mid-stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>
#include <zstd.h>

#include "core/disk/sha256.h"
#include "core/layer/blob.h"
#include "disk/disk_test_util.h"
#include "layer/layer_test_util.h"
#include "support/layerblob.h"
#include "unit/testlib.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* ---- inputs ---- */

/* Tar-like content: runs of text, zeros and noise, so it compresses ~3x. */
static uint8_t *make_content(size_t len, uint64_t seed)
{
    uint8_t *d = malloc(len ? len : 1);
    assert_non_null(d);
    fill_random(d, len, seed);
    static const char text[] = "usr/lib/x86_64-linux-gnu/libc.so.6 0000755 0000000 0000000 ";
    for (size_t at = 0; at < len;) {
        size_t kind = (at / 4096 + seed) % 3, n = 1000 + (at * 7 % 3000);
        if (n > len - at)
            n = len - at;
        if (kind == 0)
            for (size_t i = 0; i < n; i++)
                d[at + i] = (uint8_t)text[(at + i) % (sizeof text - 1)];
        else if (kind == 1)
            memset(d + at, 0, n);
        at += n;
    }
    return d;
}

static uint8_t *gzip_of(const uint8_t *data, size_t len, size_t *out_len)
{
    uint8_t *gz = lb_gzip(data, len, 6, out_len);
    assert_non_null(gz);
    return gz;
}

/* window_log 0: zstd's default; otherwise streamed (no content size) with
 * that window, which is what the frame header then declares. */
static uint8_t *zstd_of(const uint8_t *data, size_t len, size_t *out_len, bool checksum,
                        int window_log)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(c);
    ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum);
    size_t cap = ZSTD_compressBound(len) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    if (!window_log) {
        *out_len = ZSTD_compress2(c, out, cap, data, len);
    } else {
        ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, window_log);
        ZSTD_inBuffer in = {data, len, 0};
        ZSTD_outBuffer o = {out, cap, 0};
        assert_false(ZSTD_isError(ZSTD_compressStream2(c, &o, &in, ZSTD_e_continue)));
        ZSTD_inBuffer none = {NULL, 0, 0};
        assert_int_equal(ZSTD_compressStream2(c, &o, &none, ZSTD_e_end), 0);
        *out_len = o.pos;
    }
    assert_false(ZSTD_isError(*out_len));
    ZSTD_freeCCtx(c);
    return out;
}

static uint8_t *concat(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uint8_t *r = malloc(alen + blen + 1);
    assert_non_null(r);
    memcpy(r, a, alen);
    if (blen)
        memcpy(r + alen, b, blen);
    return r;
}

/* ---- reading ---- */

typedef enum style { READ_BIG, READ_ODD, READ_VIEW, READ_NONE } style;

typedef struct outcome {
    lcow_code rc;
    lcow_error err;
    uint8_t *data;
    size_t len;
    lcow_blob_result result;
} outcome;

/* Reads a blob (in memory, or from path when non-NULL) to its end and
 * finishes it; returns what came out. */
static outcome read_blob(const uint8_t *blob, size_t blob_len, const char *path,
                         const lcow_blob_options *opts, style st)
{
    outcome o = {0};
    lcow_blob *b;
    o.rc = path ? lcow_blob_open(path, opts, &b, &o.err)
                : lcow_blob_open_memory(blob, blob_len, opts, &b, &o.err);
    if (o.rc)
        return o;
    size_t cap = 64 * KiB;
    o.data = malloc(cap);
    assert_non_null(o.data);
    unsigned step = 0;
    while (st != READ_NONE) {
        const void *p;
        size_t n;
        if (st == READ_VIEW) { /* as the tar reader does it */
            o.rc = lcow_blob_read_view_callback(b, &p, &n, &o.err);
        } else {
            size_t want = st == READ_BIG ? 64 * KiB : 1 + (step++ * 7) % 4000;
            if (o.len + want > cap) {
                cap = (o.len + want) * 2;
                o.data = realloc(o.data, cap);
                assert_non_null(o.data);
            }
            o.rc = st == READ_BIG ? lcow_blob_read_callback(b, o.data + o.len, want, &n, &o.err)
                                  : lcow_blob_read(b, o.data + o.len, want, &n, &o.err);
            if (o.rc == LCOW_OK)
                assert_true(n <= want);
            p = NULL;
        }
        if (o.rc || n == 0)
            break;
        if (p) {
            if (o.len + n > cap) {
                cap = (o.len + n) * 2;
                o.data = realloc(o.data, cap);
                assert_non_null(o.data);
            }
            memcpy(o.data + o.len, p, n);
        }
        o.len += n;
    }
    if (o.rc == LCOW_OK) {
        o.rc = lcow_blob_finish(b, &o.result, &o.err);
    } else {
        /* finish reports the same failure */
        lcow_error e2;
        assert_int_equal(lcow_blob_finish(b, NULL, &e2), o.rc);
    }
    lcow_blob_close(b);
    return o;
}

static void expect_ok(outcome *o, const uint8_t *blob, size_t blob_len, const uint8_t *content,
                      size_t content_len, lcow_blob_format format, style st)
{
    if (o->rc)
        fail_msg("%s: %s", lcow_code_name(o->rc), o->err.message);
    if (st != READ_NONE) {
        assert_int_equal(o->len, content_len);
        assert_memory_equal(o->data, content, content_len);
    }
    uint8_t d[32];
    lcow_sha256(blob, blob_len, d);
    assert_memory_equal(o->result.digest, d, 32);
    lcow_sha256(content, content_len, d);
    assert_memory_equal(o->result.diff_id, d, 32);
    assert_int_equal(o->result.blob_bytes, blob_len);
    assert_int_equal(o->result.tar_bytes, content_len);
    assert_int_equal(o->result.format, format);
}

static void expect_error(outcome *o, lcow_code code, const char *needle)
{
    if (o->rc != code)
        fail_msg("expected %s (%s), got %s: %s", lcow_code_name(code), needle,
                 lcow_code_name(o->rc), o->err.message);
    if (needle && !strstr(o->err.message, needle))
        fail_msg("'%s' does not mention '%s'", o->err.message, needle);
}

static void outcome_free(outcome *o)
{
    free(o->data);
    o->data = NULL;
}

/* ---- SHA-256 ---- */

static void sha256_known_answers(void **state)
{
    char hex[LCOW_SHA256_HEX_SIZE], ds[LCOW_SHA256_DIGEST_STRING_SIZE];
    uint8_t d[32];
    lcow_sha256("", 0, d);
    assert_string_equal(hex32(d, hex),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    lcow_sha256("abc", 3, d);
    assert_string_equal(hex32(d, hex),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    lcow_sha256(two, strlen(two), d);
    assert_string_equal(hex32(d, hex),
                        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces */
    uint8_t *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    lcow_sha256_ctx s;
    lcow_sha256_init(&s);
    for (size_t at = 0, n = 1; at < 1000000; at += n, n = n * 3 % 9973 + 1)
        lcow_sha256_update(&s, a + at, at + n > 1000000 ? 1000000 - at : n);
    lcow_sha256_final(&s, d);
    assert_string_equal(hex32(d, hex),
                        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* final leaves the context ready for a new message; copies continue independently */
    lcow_sha256_update(&s, "ab", 2);
    lcow_sha256_ctx copy = s;
    lcow_sha256_update(&s, "c", 1);
    lcow_sha256_final(&s, d);
    assert_string_equal(hex32(d, hex),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    lcow_sha256_update(&copy, "c", 1);
    lcow_sha256_final(&copy, d);
    assert_string_equal(hex32(d, hex),
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    free(a);

    lcow_sha256_digest_string(d, ds);
    assert_string_equal(ds,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    uint8_t back[32];
    lcow_error err;
    assert_int_equal(lcow_sha256_parse_digest(ds, back, &err), LCOW_OK);
    assert_memory_equal(back, d, 32);
    const char *bad[] = {
        NULL,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015add",
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag",
        "sha256:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(lcow_sha256_parse_digest(bad[i], back, &err), LCOW_INVALID_ARGUMENT);
}

/* ---- formats ---- */

static void media_types_and_magic(void **state)
{
    struct {
        const char *type;
        lcow_blob_format f;
    } ok[] = {
        {NULL, LCOW_BLOB_AUTO},
        {"", LCOW_BLOB_AUTO},
        {"application/vnd.oci.image.layer.v1.tar", LCOW_BLOB_TAR},
        {"application/vnd.oci.image.layer.v1.tar+gzip", LCOW_BLOB_GZIP},
        {"application/vnd.oci.image.layer.v1.tar+zstd", LCOW_BLOB_ZSTD},
        {"application/vnd.docker.image.rootfs.diff.tar.gzip", LCOW_BLOB_GZIP},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", LCOW_BLOB_GZIP},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LCOW_BLOB_ZSTD},
    };
    lcow_blob_format f;
    lcow_error err;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(lcow_blob_format_from_media_type(ok[i].type, &f, &err), LCOW_OK);
        assert_int_equal(f, ok[i].f);
    }
    const char *bad[] = {"application/vnd.oci.image.layer.v1.tar+bzip2",
                         "application/vnd.oci.image.layer.v1.tar+gzip ",
                         "application/vnd.oci.image.manifest.v1+json", "tar"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(lcow_blob_format_from_media_type(bad[i], &f, &err), LCOW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "unknown layer media type"));
    }
    /* ... also when opening */
    lcow_blob_options o = {.media_type = "application/x-tar"};
    lcow_blob *b;
    assert_int_equal(lcow_blob_open_memory("x", 1, &o, &b, &err), LCOW_INVALID_ARGUMENT);
    assert_null(b);

    struct {
        const char *head;
        size_t len;
        lcow_blob_format f;
    } magic[] = {
        {"\x1f\x8b\x08", 3, LCOW_BLOB_GZIP},
        {"\x28\xb5\x2f\xfd", 4, LCOW_BLOB_ZSTD},
        {"\x5e\x2a\x4d\x18", 4, LCOW_BLOB_ZSTD},
        {"usr/", 4, LCOW_BLOB_TAR},
        {"\x1f", 1, LCOW_BLOB_TAR},
        {"", 0, LCOW_BLOB_TAR},
        {"\x28\xb5\x2f", 3, LCOW_BLOB_TAR},
    };
    for (size_t i = 0; i < sizeof magic / sizeof magic[0]; i++) {
        assert_int_equal(lcow_blob_detect((const uint8_t *)magic[i].head, magic[i].len, &f, &err),
                         LCOW_OK);
        assert_int_equal(f, magic[i].f);
    }
    assert_int_equal(lcow_blob_detect((const uint8_t *)"BZh91AY", 7, &f, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "bzip2"));
    assert_int_equal(lcow_blob_detect((const uint8_t *)"\xfd"
                                                       "7zXZ\0\0",
                                      7, &f, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "xz"));
    assert_string_equal(lcow_blob_format_name(LCOW_BLOB_ZSTD), "zstd");
}

/* ---- round trips ---- */

static void round_trip_one(size_t len, uint64_t seed, bool file)
{
    uint8_t *content = make_content(len, seed);
    size_t glen, zlen;
    uint8_t *gz = gzip_of(content, len, &glen);
    uint8_t *zs = zstd_of(content, len, &zlen, true, 0);
    struct {
        const uint8_t *blob;
        size_t len;
        lcow_blob_format f;
        const char *type;
    } forms[] = {{content, len, LCOW_BLOB_TAR, "application/vnd.oci.image.layer.v1.tar"},
                 {gz, glen, LCOW_BLOB_GZIP, "application/vnd.docker.image.rootfs.diff.tar.gzip"},
                 {zs, zlen, LCOW_BLOB_ZSTD, "application/vnd.oci.image.layer.v1.tar+zstd"}};
    for (size_t i = 0; i < 3; i++) {
        char *path = NULL;
        if (file) {
            path = test_path("round-trip.blob");
            write_all(path, forms[i].blob, forms[i].len);
        }
        for (int sync = 0; sync < 2; sync++) {
            for (style st = READ_BIG; st <= READ_NONE; st++) {
                char digest[LCOW_SHA256_DIGEST_STRING_SIZE];
                uint8_t d[32];
                lcow_sha256(forms[i].blob, forms[i].len, d);
                lcow_sha256_digest_string(d, digest);
                lcow_blob_options o = {
                    .synchronous = sync,
                    .ring_bytes = st == READ_ODD ? 64 * KiB : 0,
                    /* the format by media type or by magic, digest checked or not */
                    .media_type = st % 2 ? forms[i].type : NULL,
                    .digest = st >= READ_VIEW ? digest : NULL,
                };
                if (len == 0 && forms[i].f == LCOW_BLOB_TAR && !o.media_type)
                    o.media_type = forms[i].type; /* (an empty blob is tar anyway) */
                outcome out = read_blob(forms[i].blob, forms[i].len, path, &o, st);
                expect_ok(&out, forms[i].blob, forms[i].len, content, len, forms[i].f, st);
                outcome_free(&out);
            }
        }
        if (path) {
            test_remove(path);
            free(path);
        }
    }
    free(zs);
    free(gz);
    free(content);
}

static void round_trips_in_memory(void **state)
{
    static const size_t sizes[] = {0, 1, 10240, 200 * KiB + 3, 3 * MiB + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        round_trip_one(sizes[i], 11 + i, false);
}

static void round_trips_from_files(void **state)
{
    round_trip_one(0, 3, true);
    round_trip_one(9 * MiB + 1234, 4, true); /* many ring wraps, several input chunks */
}

static void multi_member_and_multi_frame(void **state)
{
    size_t alen = 70000, blen = 33333;
    uint8_t *a = make_content(alen, 1), *b = make_content(blen, 2);
    uint8_t *ab = concat(a, alen, b, blen);
    size_t g1, g2, z1, z2;
    uint8_t *ga = gzip_of(a, alen, &g1), *gb = gzip_of(b, blen, &g2);
    uint8_t *za = zstd_of(a, alen, &z1, false, 0), *zb = zstd_of(b, blen, &z2, true, 0);
    uint8_t *gg = concat(ga, g1, gb, g2);
    uint8_t *zz = concat(za, z1, zb, z2);
    /* a skippable frame (magic 0x184D2A5E, 5 bytes of user data) between the two */
    static const uint8_t skip_frame[] = {0x5e, 0x2a, 0x4d, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5};
    uint8_t *zsz0 = concat(za, z1, skip_frame, sizeof skip_frame);
    uint8_t *zsz = concat(zsz0, z1 + sizeof skip_frame, zb, z2);
    for (int sync = 0; sync < 2; sync++) {
        lcow_blob_options o = {.synchronous = sync};
        outcome out = read_blob(gg, g1 + g2, NULL, &o, READ_ODD);
        expect_ok(&out, gg, g1 + g2, ab, alen + blen, LCOW_BLOB_GZIP, READ_ODD);
        outcome_free(&out);
        out = read_blob(zz, z1 + z2, NULL, &o, READ_VIEW);
        expect_ok(&out, zz, z1 + z2, ab, alen + blen, LCOW_BLOB_ZSTD, READ_VIEW);
        outcome_free(&out);
        out = read_blob(zsz, z1 + z2 + sizeof skip_frame, NULL, &o, READ_BIG);
        expect_ok(&out, zsz, z1 + z2 + sizeof skip_frame, ab, alen + blen, LCOW_BLOB_ZSTD,
                  READ_BIG);
        outcome_free(&out);
    }
    free(zsz);
    free(zsz0);
    free(zz);
    free(gg);
    free(za);
    free(zb);
    free(ga);
    free(gb);
    free(ab);
    free(a);
    free(b);
}

/* A gzip member of data whose header carries every optional field (FEXTRA
 * of extra_len bytes, FNAME, FCOMMENT, FHCRC): zlib's member with its plain
 * 10-byte header replaced. *hdr_len: the header's length. */
static uint8_t *gzip_member_full_header(const uint8_t *data, size_t len, size_t extra_len,
                                        size_t *out_len, size_t *hdr_len)
{
    size_t glen;
    uint8_t *g = gzip_of(data, len, &glen);
    static const char name[] = "layer.tar", comment[] = "made by test_blob";
    size_t h = 10 + 2 + extra_len + sizeof name + sizeof comment + 2;
    uint8_t *m = malloc(h + glen - 10);
    assert_non_null(m);
    memcpy(m, g, 10);
    m[3] = 0x04 | 0x08 | 0x10 | 0x02; /* FEXTRA FNAME FCOMMENT FHCRC */
    size_t at = 10;
    m[at++] = (uint8_t)extra_len, m[at++] = (uint8_t)(extra_len >> 8);
    for (size_t i = 0; i < extra_len; i++)
        m[at++] = (uint8_t)(i * 31 + 7);
    memcpy(m + at, name, sizeof name), at += sizeof name;
    memcpy(m + at, comment, sizeof comment), at += sizeof comment;
    uint32_t hcrc = (uint32_t)crc32(0, m, (uInt)at);
    m[at++] = (uint8_t)hcrc, m[at++] = (uint8_t)(hcrc >> 8);
    assert_int_equal(at, h);
    memcpy(m + h, g + 10, glen - 10);
    free(g);
    *out_len = h + glen - 10;
    *hdr_len = h;
    return m;
}

/* The blob reader takes its input in 256 KiB windows, so the header of a
 * later member can be split between two of them at any byte. ISA-L's
 * isal_inflate parses a gzip header itself but forgets the flags when the
 * header is split (its header state is a local); the reader parses headers
 * with isal_read_gzip_header into state that lasts. Member 1's FEXTRA
 * length moves member 2's header across the 256 KiB boundary one byte at a
 * time; a bad header CRC is still caught. */
static void gzip_headers_split_across_input_windows(void **state)
{
    const size_t window = 256 * KiB;
    /* member 1: 240,000 bytes that do not compress, so that FEXTRA (at most
     * 65,535 bytes) can bring it to just short of 256 KiB */
    size_t alen = 240000, blen = 7000;
    uint8_t *a = malloc(alen), *b = make_content(blen, 22);
    assert_non_null(a);
    fill_random(a, alen, 21);
    uint8_t *ab = concat(a, alen, b, blen);
    size_t m2len, h2;
    uint8_t *m2 = gzip_member_full_header(b, blen, 300, &m2len, &h2);
    size_t m1len, h1;
    uint8_t *probe = gzip_member_full_header(a, alen, 0, &m1len, &h1);
    free(probe);
    unsigned splits = 0;
    for (size_t k = 0; k <= h2; k++) {
        /* member 1 ends k bytes before the window boundary */
        size_t extra = window - k - m1len;
        assert_true(extra <= 65535);
        size_t len1;
        uint8_t *m1 = gzip_member_full_header(a, alen, extra, &len1, &h1);
        assert_int_equal(len1, window - k);
        uint8_t *blob = concat(m1, len1, m2, m2len);
        for (int sync = 0; sync < 2; sync++) {
            lcow_blob_options o = {.synchronous = sync};
            outcome out = read_blob(blob, len1 + m2len, NULL, &o, sync ? READ_BIG : READ_VIEW);
            expect_ok(&out, blob, len1 + m2len, ab, alen + blen, LCOW_BLOB_GZIP,
                      sync ? READ_BIG : READ_VIEW);
            outcome_free(&out);
        }
        if (k == h2 / 2) { /* and the header CRC-16 of the split header is checked */
            blob[len1 + h2 - 1] ^= 0x40;
            outcome out = read_blob(blob, len1 + m2len, NULL, NULL, READ_BIG);
            expect_error(&out, LCOW_INVALID_ARGUMENT, "header CRC-16 of member 2");
            outcome_free(&out);
        }
        splits++;
        free(blob);
        free(m1);
    }
    print_message("member 2's %u-byte header split at %u places\n", (unsigned)h2, splits);
    free(m2);
    free(ab);
    free(a);
    free(b);
}

/* ---- truncation, corruption, garbage ---- */

/* Every proper prefix of blob must fail as truncated, except the lengths in
 * ok_at (the ends of whole members or frames). */
static void every_prefix_fails(const uint8_t *blob, size_t len, lcow_blob_format f,
                               const size_t *ok_at, size_t nok)
{
    unsigned checked = 0;
    for (size_t cut = 0; cut < len; cut++) {
        bool ok = false;
        for (size_t k = 0; k < nok; k++)
            ok |= ok_at[k] == cut;
        /* every prefix synchronously; every 61st also through the thread */
        for (int sync = 1; sync >= (cut % 61 == 0 ? 0 : 1); sync--) {
            lcow_blob_options o = {
                .synchronous = sync,
                .ring_bytes = 64 * KiB,
                .media_type = f == LCOW_BLOB_GZIP ? "application/vnd.oci.image.layer.v1.tar+gzip"
                                                  : "application/vnd.oci.image.layer.v1.tar+zstd"};
            outcome out = read_blob(blob, cut, NULL, &o, READ_BIG);
            if (ok) {
                if (out.rc)
                    fail_msg("cut at %u (a unit boundary): %s", (unsigned)cut, out.err.message);
            } else if (out.rc != LCOW_INVALID_ARGUMENT || !strstr(out.err.message, "truncated")) {
                fail_msg("cut at %u of %u: %s: %s", (unsigned)cut, (unsigned)len,
                         lcow_code_name(out.rc), out.rc ? out.err.message : "accepted");
            }
            outcome_free(&out);
            checked++;
        }
    }
    print_message("%s: %u truncations of a %u-byte stream refused as truncated\n",
                  lcow_blob_format_name(f), checked, (unsigned)len);
}

static void gzip_truncated_everywhere(void **state)
{
    size_t alen = 9000, blen = 30000, g1, g2;
    uint8_t *a = make_content(alen, 5), *b = make_content(blen, 6);
    uint8_t *ga = gzip_of(a, alen, &g1), *gb = gzip_of(b, blen, &g2);
    uint8_t *gg = concat(ga, g1, gb, g2);
    size_t ok_at[] = {g1}; /* between the members */
    every_prefix_fails(gg, g1 + g2, LCOW_BLOB_GZIP, ok_at, 1);
    /* a header with FNAME and FCOMMENT (gzip -N style), cut inside them */
    uint8_t hdr[] = {0x1f, 0x8b, 8, 0x18, 0, 0, 0, 0, 0, 3, 'f', '.', 't', 'a', 'r', 0, 'c', 0};
    uint8_t *named = concat(hdr, sizeof hdr, ga + 10, g1 - 10);
    outcome out = read_blob(named, sizeof hdr + g1 - 10, NULL, NULL, READ_BIG);
    expect_ok(&out, named, sizeof hdr + g1 - 10, a, alen, LCOW_BLOB_GZIP, READ_BIG);
    outcome_free(&out);
    every_prefix_fails(named, sizeof hdr + 40, LCOW_BLOB_GZIP, NULL, 0);
    free(named);
    free(gg);
    free(ga);
    free(gb);
    free(a);
    free(b);
}

static void zstd_truncated_everywhere(void **state)
{
    size_t alen = 9000, blen = 30000, z1, z2;
    uint8_t *a = make_content(alen, 7), *b = make_content(blen, 8);
    uint8_t *za = zstd_of(a, alen, &z1, true, 0), *zb = zstd_of(b, blen, &z2, true, 0);
    uint8_t *zz = concat(za, z1, zb, z2);
    size_t ok_at[] = {z1};
    every_prefix_fails(zz, z1 + z2, LCOW_BLOB_ZSTD, ok_at, 1);
    free(zz);
    free(za);
    free(zb);
    free(a);
    free(b);
}

static void gzip_corruption(void **state)
{
    size_t len = 50000, glen;
    uint8_t *content = make_content(len, 9);
    uint8_t *gz = gzip_of(content, len, &glen);
    struct {
        size_t off; /* from the end when negative is meant: see below */
        bool from_end;
        const char *needle;
    } cases[] = {
        {8, true, "CRC"},        /* first byte of the CRC-32 */
        {5, true, "CRC"},        /* last byte of the CRC-32 */
        {4, true, "length"},     /* ISIZE */
        {1, true, "length"},     /* ISIZE */
        {2, false, "gzip:"},     /* compression method */
        {3, false, "gzip:"},     /* reserved flag bits */
        {glen / 2, false, NULL}, /* inside the deflate data: any clean error */
        {glen / 3, false, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *bad = concat(gz, glen, NULL, 0);
        size_t at = cases[i].from_end ? glen - cases[i].off : cases[i].off;
        bad[at] ^= 0x55;
        for (int sync = 0; sync < 2; sync++) {
            lcow_blob_options o = {.synchronous = sync};
            outcome out = read_blob(bad, glen, NULL, &o, READ_BIG);
            if (cases[i].needle) {
                expect_error(&out, LCOW_INVALID_ARGUMENT, cases[i].needle);
            } else if (out.rc == LCOW_OK) {
                /* a flipped bit in deflate data is caught by the CRC at the latest */
                fail_msg("corruption at %u accepted", (unsigned)at);
            }
            if (i == 0 && sync)
                print_message("bad CRC: %s\n", out.err.message);
            outcome_free(&out);
        }
        free(bad);
    }
    free(gz);
    free(content);
}

static void zstd_corruption(void **state)
{
    size_t len = 50000, zlen;
    uint8_t *content = make_content(len, 10);
    uint8_t *zs = zstd_of(content, len, &zlen, true, 0);
    uint8_t *bad = concat(zs, zlen, NULL, 0);
    bad[zlen - 2] ^= 0x01; /* content checksum */
    outcome out = read_blob(bad, zlen, NULL, NULL, READ_BIG);
    expect_error(&out, LCOW_INVALID_ARGUMENT, "checksum");
    outcome_free(&out);
    for (size_t at = 4; at < zlen; at += zlen / 13) {
        memcpy(bad, zs, zlen);
        bad[at] ^= 0xa5;
        out = read_blob(bad, zlen, NULL, NULL, READ_BIG);
        if (out.rc == LCOW_OK)
            fail_msg("zstd corruption at %u accepted", (unsigned)at);
        outcome_free(&out);
    }
    /* a frame that wants a 256 MiB window */
    size_t wlen;
    uint8_t *wide = zstd_of(content, len, &wlen, false, 28);
    out = read_blob(wide, wlen, NULL, NULL, READ_BIG);
    expect_error(&out, LCOW_INVALID_ARGUMENT, "window");
    outcome_free(&out);
    free(wide);
    free(bad);
    free(zs);
    free(content);
}

static void trailing_garbage(void **state)
{
    size_t len = 20000, glen, zlen;
    uint8_t *content = make_content(len, 12);
    uint8_t *gz = gzip_of(content, len, &glen);
    uint8_t *zs = zstd_of(content, len, &zlen, false, 0);
    static const uint8_t zeros[512];
    struct {
        const uint8_t *tail;
        size_t n;
    } tails[] = {{(const uint8_t *)"garbage!", 8},
                 {(const uint8_t *)"\x8b", 1},
                 {zeros, sizeof zeros},
                 {(const uint8_t *)"\x1f\x8c", 2}};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        uint8_t *g = concat(gz, glen, tails[i].tail, tails[i].n);
        for (int sync = 0; sync < 2; sync++) {
            lcow_blob_options o = {.synchronous = sync};
            outcome out = read_blob(g, glen + tails[i].n, NULL, &o, READ_VIEW);
            expect_error(&out, LCOW_INVALID_ARGUMENT, "trailing garbage");
            outcome_free(&out);
        }
        free(g);
    }
    uint8_t *z = concat(zs, zlen, (const uint8_t *)"garbage!", 8);
    outcome out = read_blob(z, zlen + 8, NULL, NULL, READ_BIG);
    expect_error(&out, LCOW_INVALID_ARGUMENT, "trailing garbage");
    print_message("%s\n", out.err.message);
    outcome_free(&out);
    free(z);
    /* a partial next frame at the end is a truncation */
    z = concat(zs, zlen, zs, 3);
    out = read_blob(z, zlen + 3, NULL, NULL, READ_BIG);
    expect_error(&out, LCOW_INVALID_ARGUMENT, "truncated");
    outcome_free(&out);
    free(z);
    free(zs);
    free(gz);
    free(content);
}

static void declared_digest(void **state)
{
    size_t len = 300 * KiB, glen;
    uint8_t *content = make_content(len, 13);
    uint8_t *gz = gzip_of(content, len, &glen);
    uint8_t d[32];
    char good[LCOW_SHA256_DIGEST_STRING_SIZE], wrong[LCOW_SHA256_DIGEST_STRING_SIZE];
    lcow_sha256(gz, glen, d);
    lcow_sha256_digest_string(d, good);
    lcow_sha256(content, len, d); /* the diffID is not the digest */
    lcow_sha256_digest_string(d, wrong);
    for (int sync = 0; sync < 2; sync++) {
        for (style st = READ_BIG; st <= READ_NONE; st++) {
            lcow_blob_options o = {.synchronous = sync, .digest = good};
            outcome out = read_blob(gz, glen, NULL, &o, st);
            expect_ok(&out, gz, glen, content, len, LCOW_BLOB_GZIP, st);
            outcome_free(&out);
            o.digest = wrong;
            out = read_blob(gz, glen, NULL, &o, st);
            expect_error(&out, LCOW_INVALID_ARGUMENT, "digest mismatch");
            assert_non_null(strstr(out.err.message, wrong));
            assert_non_null(strstr(out.err.message, good));
            outcome_free(&out);
        }
    }
    lcow_blob_options o = {.digest = "sha256:abc"};
    lcow_blob *b;
    lcow_error err;
    assert_int_equal(lcow_blob_open_memory(gz, glen, &o, &b, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "declared blob digest"));
    free(gz);
    free(content);
}

static void close_mid_stream(void **state)
{
    size_t len = 8 * MiB, glen;
    uint8_t *content = make_content(len, 14);
    uint8_t *gz = gzip_of(content, len, &glen);
    char *path = test_path("close.blob");
    write_all(path, gz, glen);
    lcow_error err;
    for (int i = 0; i < 3; i++) {
        lcow_blob_options o = {.ring_bytes = 64 * KiB};
        lcow_blob *b;
        assert_int_equal(lcow_blob_open(path, &o, &b, &err), LCOW_OK);
        assert_int_equal(lcow_blob_format_of(b), LCOW_BLOB_GZIP);
        if (i > 0) { /* some reads, then give up (the conversion failed) */
            uint8_t buf[1000];
            size_t got;
            for (int k = 0; k < i * 50; k++)
                assert_int_equal(lcow_blob_read(b, buf, sizeof buf, &got, &err), LCOW_OK);
            test_sleep_ms(20); /* let the decoder fill the ring and block */
        }
        lcow_blob_close(b);
    }
    lcow_blob_close(NULL);
    test_remove(path);
    free(path);
    free(gz);
    free(content);
}

static void missing_file(void **state)
{
    char *path = test_path("no-such.blob");
    lcow_blob *b;
    lcow_error err;
    assert_int_equal(lcow_blob_open(path, NULL, &b, &err), LCOW_NOT_FOUND);
    assert_null(b);
    free(path);
}

/* ---- the real programs (native) ---- */

static char *sha256sum_of(const char *sum, const char *path)
{
    char *out = NULL;
    assert_int_equal(run_cmd(&out, "'%s' '%s'", sum, path), 0);
    out[64] = '\0';
    return out;
}

static void programs_agree(void **state)
{
    const char *gzip = tool("LCOW_GZIP"), *zstd = tool("LCOW_ZSTD"), *sum = tool("LCOW_SHA256SUM");
    if (!gzip || !zstd || !sum) {
        print_message("gzip, zstd or sha256sum not available here: skipped\n");
        skip();
    }
    size_t len = 5 * MiB + 77;
    uint8_t *content = make_content(len, 15);
    char *tar = test_path("prog.tar"), *gz = test_path("prog.tar.gz"),
         *zst = test_path("prog.tar.zst");
    write_all(tar, content, len);
    /* (run_cmd redirects stdout itself: the programs name their outputs) */
    assert_int_equal(run_cmd(NULL, "'%s' -k -n -f '%s'", gzip, tar), 0); /* -> prog.tar.gz */
    assert_int_equal(run_cmd(NULL, "'%s' -q -f --check '%s' -o '%s'", zstd, tar, zst), 0);
    char *tar_sum = sha256sum_of(sum, tar);
    const char *blobs[] = {tar, gz, zst};
    for (size_t i = 0; i < 3; i++) {
        char *blob_sum = sha256sum_of(sum, blobs[i]);
        char digest[80];
        snprintf(digest, sizeof digest, "sha256:%s", blob_sum);
        lcow_blob_options o = {.digest = digest};
        outcome out = read_blob(NULL, 0, blobs[i], &o, READ_VIEW);
        if (out.rc)
            fail_msg("%s: %s", blobs[i], out.err.message);
        char hex[65];
        assert_string_equal(hex32(out.result.diff_id, hex), tar_sum);
        assert_string_equal(hex32(out.result.digest, hex), blob_sum);
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, content, len);
        print_message("%s: digest and diffID = sha256sum's\n",
                      lcow_blob_format_name(out.result.format));
        outcome_free(&out);
        free(blob_sum);
    }
    free(tar_sum);
    test_remove(tar);
    test_remove(gz);
    test_remove(zst);
    free(tar);
    free(gz);
    free(zst);
    free(content);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_known_answers),
        cmocka_unit_test(media_types_and_magic),
        cmocka_unit_test(round_trips_in_memory),
        cmocka_unit_test(round_trips_from_files),
        cmocka_unit_test(multi_member_and_multi_frame),
        cmocka_unit_test(gzip_headers_split_across_input_windows),
        cmocka_unit_test(gzip_truncated_everywhere),
        cmocka_unit_test(zstd_truncated_everywhere),
        cmocka_unit_test(gzip_corruption),
        cmocka_unit_test(zstd_corruption),
        cmocka_unit_test(trailing_garbage),
        cmocka_unit_test(declared_digest),
        cmocka_unit_test(close_mid_stream),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(programs_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

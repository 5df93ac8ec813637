/* Layer apply (core/layer/apply.h) and Apply through the store
 * (lcow_snapshotter_apply, core/snapshotter_apply.c):
 *
 *   - tar, gzip and zstd blobs of one tar give the same image and diffID;
 *     the result's digests, sizes and the VHD footer are right;
 *   - the golden cases (LCOW_GOLDEN_DIR, tests/layer/make-golden.sh; skipped
 *     without ../shared): the ext4 part equals tar2ext4-ref's, with verity
 *     the tree too and the root hash equals -roothash;
 *   - bad input, I/O faults and cancellation leave no layer.vhd and no
 *     temporary file; an existing layer.vhd is never replaced;
 *   - the sweep removes exactly the temporary names;
 *   - through the store: Apply then Commit then a container's mounts list
 *     the directory; the error codes; Remove, Commit, a second Apply and
 *     Cleanup while an Apply runs; lcow_snapshotter_cancel_work and close
 *     cancel it; open sweeps what a crash left. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "core/disk/sha256.h"
#include "core/disk/verity.h"
#include "core/disk/vhd.h"
#include "core/layer/apply.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h" /* the Apply hook and counter */
#include "layer/layer_test_util.h"
#include "support/layerblob.h"
#include "unit/testlib.h"

/* ---- tars (tests/support/layerblob.h) ------------------------------------- */

/* An entry owned by 1000:1000, 0755 for a directory and 0644 otherwise. */
static void tar_entry(lb_tar *t, const char *name, char type, const void *data, size_t size,
                      const char *link)
{
    lb_entry(t, name, type, data, size, link, type == '5' ? 0755 : 0644, 1000);
}

/* A small layer: directories, files of several sizes, a symlink, a hard
 * link and a whiteout. */
static uint8_t *sample_tar(size_t *len)
{
    lb_tar t = {0};
    uint8_t *big = malloc(300000);
    assert_non_null(big);
    fill_random(big, 300000, 7);
    tar_entry(&t, "etc/", '5', NULL, 0, NULL);
    tar_entry(&t, "etc/hostname", '0', "lcow\n", 5, NULL);
    tar_entry(&t, "usr/bin/tool", '0', big, 300000, NULL);
    tar_entry(&t, "usr/bin/link", '1', NULL, 0, "usr/bin/tool");
    tar_entry(&t, "usr/lib/libx.so", '2', NULL, 0, "../bin/tool");
    tar_entry(&t, "var/.wh.cache", '0', NULL, 0, NULL);
    tar_entry(&t, "empty", '0', NULL, 0, NULL);
    lb_end(&t);
    free(big);
    *len = t.len;
    return t.d;
}

static uint8_t *gzip_of(const uint8_t *data, size_t len, size_t *out_len)
{
    uint8_t *gz = lb_gzip(data, len, 6, out_len);
    assert_non_null(gz);
    return gz;
}

static uint8_t *zstd_of(const uint8_t *data, size_t len, size_t *out_len)
{
    size_t cap = ZSTD_compressBound(len) + 64;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    *out_len = ZSTD_compress(out, cap, data, len, 3);
    assert_false(ZSTD_isError(*out_len));
    return out;
}

/* ---- file helpers -------------------------------------------------------- */

static bool is_apply_temp(const char *name)
{
    return lcow_layer_apply_is_temp(name, NULL);
}

/* Temporary names of an apply in dir. */
static int temps_in(const char *dir)
{
    return test_entries_matching(dir, is_apply_temp);
}

static char *blob_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = test_join(dir, name);
    write_all(p, data, len);
    return p;
}

static void digest_of(const void *data, size_t len, char out[LCOW_SHA256_DIGEST_STRING_SIZE])
{
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_sha256(data, len, d);
    lcow_sha256_digest_string(d, out);
}

static void check_footer(const char *path, uint64_t layer_bytes)
{
    lcow_file *f;
    lcow_error err;
    assert_int_equal(lcow_file_open(path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    uint64_t size, disk;
    assert_int_equal(lcow_file_size(f, &size, &err), LCOW_OK);
    assert_int_equal(size, layer_bytes);
    lcow_vhd_footer footer;
    if (lcow_vhd_check_file(f, &footer, &disk, &err) != LCOW_OK)
        fail_msg("%s: %s", path, err.message);
    assert_int_equal(disk, layer_bytes - LCOW_VHD_FOOTER_SIZE);
    lcow_file_close(f);
}

/* ---- the library --------------------------------------------------------- */

static void formats_give_one_image(void **state)
{
    char *dir = test_fresh_dir("formats");
    size_t tlen, glen, zlen;
    uint8_t *tar = sample_tar(&tlen);
    uint8_t *gz = gzip_of(tar, tlen, &glen), *zs = zstd_of(tar, tlen, &zlen);
    const struct {
        const char *name, *media_type;
        const uint8_t *data;
        size_t len;
        lcow_blob_format format;
    } blobs[] = {
        {"t.tar", NULL, tar, tlen, LCOW_BLOB_TAR},
        {"t.tar.gz", "application/vnd.oci.image.layer.v1.tar+gzip", gz, glen, LCOW_BLOB_GZIP},
        {"t.tar.zst", NULL, zs, zlen, LCOW_BLOB_ZSTD},
        {"t2.tar.gz", NULL, gz, glen, LCOW_BLOB_GZIP},
    };
    char want_diff[LCOW_SHA256_DIGEST_STRING_SIZE];
    digest_of(tar, tlen, want_diff);
    uint8_t *first = NULL;
    size_t first_len = 0;
    for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++) {
        char *blob = blob_file(dir, blobs[i].name, blobs[i].data, blobs[i].len);
        char sub[32];
        snprintf(sub, sizeof sub, "out%zu", i);
        char *out = test_join(dir, sub);
        lcow_error err;
        assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
        char want_digest[LCOW_SHA256_DIGEST_STRING_SIZE];
        digest_of(blobs[i].data, blobs[i].len, want_digest);
        lcow_layer_apply_options o = {.media_type = blobs[i].media_type, .digest = want_digest};
        lcow_layer_apply_result r;
        if (lcow_layer_apply_blob(blob, out, &o, &r, &err) != LCOW_OK)
            fail_msg("%s: %s", blobs[i].name, err.message);
        assert_int_equal(r.format, blobs[i].format);
        char got[LCOW_SHA256_DIGEST_STRING_SIZE];
        lcow_sha256_digest_string(r.diff_id, got);
        assert_string_equal(got, want_diff);
        lcow_sha256_digest_string(r.digest, got);
        assert_string_equal(got, want_digest);
        assert_int_equal(r.blob_bytes, blobs[i].len);
        assert_int_equal(r.tar_bytes, tlen);
        assert_int_equal(r.entries, 7);
        assert_false(r.has_root_hash);
        assert_int_equal(r.layer_bytes, r.image_bytes + LCOW_VHD_FOOTER_SIZE);
        char *vhd = test_join(out, "layer.vhd");
        check_footer(vhd, r.layer_bytes);
        assert_int_equal(test_entries_in(out), 1); /* layer.vhd alone */
        size_t len;
        uint8_t *img = read_all(vhd, &len);
        if (!first) {
            first = img;
            first_len = len;
        } else {
            /* the same ext4 image; the footers differ in their UUID only */
            assert_int_equal(len, first_len);
            assert_memory_equal(img, first, len - LCOW_VHD_FOOTER_SIZE);
            free(img);
        }
        free(vhd);
        free(out);
        free(blob);
    }
    free(first);
    free(tar);
    free(gz);
    free(zs);
    free(dir);
}

static void golden_cases_equal_tar2ext4(void **state)
{
    const char *g = golden_dir();
    if (!g)
        skip();
    char *dir = test_fresh_dir("golden");
    for (size_t c = 0; c < GOLDEN_CASES; c++) {
        char *tar = golden_path(g, golden_cases[c], ".tar");
        char *ref = golden_path(g, golden_cases[c], ".vhd");
        char *vref = golden_path(g, golden_cases[c], ".verity.vhd");
        char *rootfile = golden_path(g, golden_cases[c], ".roothash");
        size_t ref_len, vref_len, root_len;
        uint8_t *want = read_all(ref, &ref_len);
        uint8_t *vwant = read_all(vref, &vref_len);
        char *root_text = (char *)read_all(rootfile, &root_len);
        for (int verity = 0; verity < 2; verity++) {
            char sub[64];
            snprintf(sub, sizeof sub, "%s-%d", golden_cases[c], verity);
            char *out = test_join(dir, sub);
            lcow_error err;
            assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
            lcow_layer_apply_options o = {.verity = verity};
            lcow_layer_apply_result r;
            if (lcow_layer_apply_blob(tar, out, &o, &r, &err) != LCOW_OK)
                fail_msg("%s: %s", golden_cases[c], err.message);
            char *vhd = test_join(out, "layer.vhd");
            size_t len;
            uint8_t *img = read_all(vhd, &len);
            check_footer(vhd, len);
            uint64_t ext4 = ref_len - LCOW_VHD_FOOTER_SIZE;
            assert_int_equal(r.image_bytes, ext4);
            if (memcmp(img, want, (size_t)ext4) != 0)
                fail_msg("%s: the ext4 image differs from tar2ext4-ref's", golden_cases[c]);
            if (verity) {
                /* [ext4][superblock][tree][footer]: the tree equals
                 * tar2ext4-ref's, the superblock is valid (its UUID is random) */
                assert_int_equal(len, vref_len);
                assert_true(r.has_root_hash);
                lcow_verity_superblock sb;
                if (lcow_verity_superblock_check(img + ext4, ext4 / 4096, &sb, &err) != LCOW_OK)
                    fail_msg("%s: %s", golden_cases[c], err.message);
                size_t tree_at = (size_t)ext4 + LCOW_VERITY_SUPERBLOCK_SIZE;
                assert_memory_equal(img + tree_at, vwant + tree_at,
                                    len - tree_at - LCOW_VHD_FOOTER_SIZE);
                char hex[LCOW_SHA256_HEX_SIZE];
                lcow_sha256_hex(r.root_hash, hex);
                assert_true(root_len >= 64);
                assert_memory_equal(hex, root_text, 64);
            } else {
                assert_int_equal(len, ref_len);
                assert_false(r.has_root_hash);
            }
            free(img);
            free(vhd);
            free(out);
        }
        free(want);
        free(vwant);
        free(root_text);
        free(tar);
        free(ref);
        free(vref);
        free(rootfile);
    }
    free(dir);
}

/* One failing apply into a fresh directory: the code, a message containing
 * `needle`, and nothing left behind. */
static void expect_failure(const char *dir, const char *name, const char *blob,
                           const lcow_layer_apply_options *o, lcow_code code, const char *needle)
{
    char *out = test_join(dir, name);
    lcow_error err;
    assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
    lcow_layer_apply_result r;
    lcow_code rc = lcow_layer_apply_blob(blob, out, o, &r, &err);
    if (rc != code)
        fail_msg("%s: %s (%s), wanted %s", name, lcow_code_name(rc), rc ? err.message : "",
                 lcow_code_name(code));
    if (needle && !strstr(err.message, needle))
        fail_msg("%s: \"%s\" does not mention \"%s\"", name, err.message, needle);
    assert_int_equal(test_entries_in(out), 0);
    assert_int_equal(r.layer_bytes, 0);
    free(out);
}

static void bad_input_leaves_nothing(void **state)
{
    char *dir = test_fresh_dir("bad");
    size_t tlen, glen, zlen;
    uint8_t *tar = sample_tar(&tlen);
    uint8_t *gz = gzip_of(tar, tlen, &glen), *zs = zstd_of(tar, tlen, &zlen);
    char *cut_gz = blob_file(dir, "cut.tar.gz", gz, glen / 2);
    char *cut_zs = blob_file(dir, "cut.tar.zst", zs, zlen - 9);
    char *cut_tar = blob_file(dir, "cut.tar", tar, tlen / 2); /* inside usr/bin/tool */
    gz[glen - 6] ^= 0x40;                                     /* the CRC */
    char *bad_crc = blob_file(dir, "crc.tar.gz", gz, glen);
    char *good = blob_file(dir, "good.tar", tar, tlen);
    lb_tar esc = {0};
    tar_entry(&esc, "a/../../etc/passwd", '0', "x", 1, NULL);
    lb_end(&esc);
    char *escape = blob_file(dir, "escape.tar", esc.d, esc.len);
    lb_tar lnk = {0};
    tar_entry(&lnk, "dangling", '1', NULL, 0, "missing");
    lb_end(&lnk);
    char *dangling = blob_file(dir, "dangling.tar", lnk.d, lnk.len);
    char *missing = test_join(dir, "missing.tar");

    lcow_layer_apply_options none = {0};
    expect_failure(dir, "o-cut-gz", cut_gz, &none, LCOW_INVALID_ARGUMENT, "gzip");
    expect_failure(dir, "o-cut-zst", cut_zs, &none, LCOW_INVALID_ARGUMENT, "zstd");
    expect_failure(dir, "o-cut-tar", cut_tar, &none, LCOW_INVALID_ARGUMENT, "usr/bin/tool");
    expect_failure(dir, "o-crc", bad_crc, &none, LCOW_INVALID_ARGUMENT, NULL);
    expect_failure(dir, "o-escape", escape, &none, LCOW_INVALID_ARGUMENT, "a/../../etc/passwd");
    expect_failure(dir, "o-dangling", dangling, &none, LCOW_INVALID_ARGUMENT, "missing");
    expect_failure(dir, "o-missing", missing, &none, LCOW_NOT_FOUND, "missing.tar");
    expect_failure(dir, "o-dir", dir, &none, LCOW_INVALID_ARGUMENT, "directory");
    lcow_layer_apply_options wrong = {
        .digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"};
    expect_failure(dir, "o-digest", good, &wrong, LCOW_INVALID_ARGUMENT, "digest");
    lcow_layer_apply_options bad_digest = {.digest = "md5:00"};
    expect_failure(dir, "o-digest-syntax", good, &bad_digest, LCOW_INVALID_ARGUMENT, "digest");
    lcow_layer_apply_options bad_type = {.media_type = "application/x-bzip2"};
    expect_failure(dir, "o-type", good, &bad_type, LCOW_INVALID_ARGUMENT, "media type");
    lcow_layer_apply_options as_gzip = {.media_type =
                                            "application/vnd.oci.image.layer.v1.tar+gzip"};
    expect_failure(dir, "o-not-gzip", good, &as_gzip, LCOW_INVALID_ARGUMENT, NULL);

    /* An existing layer.vhd is never replaced. */
    char *out = test_join(dir, "o-exists");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
    char *vhd = test_join(out, "layer.vhd");
    write_all(vhd, "old", 3);
    assert_int_equal(lcow_layer_apply_blob(good, out, NULL, NULL, &err), LCOW_ALREADY_EXISTS);
    size_t len;
    uint8_t *kept = read_all(vhd, &len);
    assert_int_equal(len, 3);
    free(kept);
    assert_int_equal(test_entries_in(out), 1);

    free(vhd);
    free(out);
    free(esc.d);
    free(lnk.d);
    free(cut_gz);
    free(cut_zs);
    free(cut_tar);
    free(bad_crc);
    free(good);
    free(escape);
    free(dangling);
    free(missing);
    free(tar);
    free(gz);
    free(zs);
    free(dir);
}

static void faults_leave_nothing(void **state)
{
    REQUIRE_FAULT_SEAM();
    char *dir = test_fresh_dir("faults");
    size_t tlen;
    uint8_t *tar = sample_tar(&tlen);
    char *blob = blob_file(dir, "t.tar", tar, tlen);
    const struct {
        lcow_os_op op;
        unsigned nth;
        lcow_os_fault fault;
        lcow_code code;
    } cases[] = {
        {LCOW_OS_OP_SYNC, 1, LCOW_FAULT_EIO, LCOW_INTERNAL},
        {LCOW_OS_OP_WRITE, 1, LCOW_FAULT_ENOSPC, LCOW_RESOURCE_EXHAUSTED},
        {LCOW_OS_OP_WRITE, 3, LCOW_FAULT_EIO, LCOW_INTERNAL},
        {LCOW_OS_OP_OPEN, 2, LCOW_FAULT_EACCES, LCOW_INTERNAL},
        {LCOW_OS_OP_TRUNCATE, 1, LCOW_FAULT_ENOSPC, LCOW_RESOURCE_EXHAUSTED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "o%zu", i);
        char *out = test_join(dir, sub);
        lcow_error err;
        assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
        lcow_os_fault_arm(cases[i].op, cases[i].nth, cases[i].fault, false);
        lcow_code rc = lcow_layer_apply_blob(blob, out, NULL, NULL, &err);
        lcow_os_fault_clear();
        if (rc == LCOW_OK)
            fail_msg("fault %s:%u did not fail the apply", lcow_os_op_name(cases[i].op),
                     cases[i].nth);
        assert_int_equal(test_entries_in(out), 0);
        free(out);
    }
    /* No hard links: the rename fallback publishes. */
    char *out = test_join(dir, "nolink");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
    lcow_os_fault_arm(LCOW_OS_OP_LINK, 1, LCOW_FAULT_EACCES, true);
    lcow_code rc = lcow_layer_apply_blob(blob, out, NULL, NULL, &err);
    lcow_os_fault_clear();
    assert_int_equal(rc, LCOW_OK);
    assert_int_equal(test_entries_in(out), 1);
    free(out);
    /* ... and when that fails too, nothing is left. */
    out = test_join(dir, "norename");
    assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
    lcow_os_fault_arm(LCOW_OS_OP_LINK, 1, LCOW_FAULT_EACCES, true);
    lcow_os_fault_arm(LCOW_OS_OP_RENAME, 1, LCOW_FAULT_EACCES, true);
    rc = lcow_layer_apply_blob(blob, out, NULL, NULL, &err);
    lcow_os_fault_clear();
    assert_int_not_equal(rc, LCOW_OK);
    assert_int_equal(test_entries_in(out), 0);
    free(out);
    free(blob);
    free(tar);
    free(dir);
}

static bool cancel_after(void *ctx)
{
    int *calls = ctx;
    return --*calls < 0;
}

static void cancellation_leaves_nothing(void **state)
{
    char *dir = test_fresh_dir("cancel");
    size_t tlen;
    uint8_t *tar = sample_tar(&tlen);
    char *blob = blob_file(dir, "t.tar", tar, tlen);
    for (int after = 0; after < 6; after++) {
        char sub[32];
        snprintf(sub, sizeof sub, "o%d", after);
        char *out = test_join(dir, sub);
        lcow_error err;
        assert_int_equal(lcow_os_mkdir(out, &err), LCOW_OK);
        int calls = after;
        lcow_layer_apply_options o = {
            .verity = after % 2, .cancelled = cancel_after, .cancel_ctx = &calls};
        lcow_code rc = lcow_layer_apply_blob(blob, out, &o, NULL, &err);
        if (calls >= 0) {
            /* polled fewer times than `after`: it finished */
            assert_int_equal(rc, LCOW_OK);
        } else {
            assert_int_equal(rc, LCOW_UNAVAILABLE);
            assert_string_equal(err.message, "cancelled");
            assert_int_equal(test_entries_in(out), 0);
        }
        free(out);
    }
    free(blob);
    free(tar);
    free(dir);
}

static void output_file_formats_and_replace(void **state)
{
    char *dir = test_fresh_dir("file");
    size_t tlen;
    uint8_t *tar = sample_tar(&tlen);
    char *blob = blob_file(dir, "t.tar", tar, tlen);
    char *out = test_join(dir, "img.ext4");
    write_all(out, "previous", 8);
    lcow_layer_apply_format raw = {.max_disk_size = 128ull << 30}; /* no -overlay, no -vhd */
    lcow_layer_apply_options replace = {.replace = true};
    lcow_layer_apply_result r;
    lcow_error err;
    assert_int_equal(lcow_layer_apply_file(blob, out, &raw, &replace, &r, &err), LCOW_OK);
    assert_int_equal(r.layer_bytes, r.image_bytes);
    size_t len;
    uint8_t *img = read_all(out, &len);
    assert_int_equal(len, r.image_bytes);
    /* the ext4 magic */
    assert_int_equal(img[1024 + 0x38], 0x53);
    assert_int_equal(img[1024 + 0x39], 0xef);
    free(img);
    /* without replace an existing output stays */
    lcow_layer_apply_options keep = {0};
    assert_int_equal(lcow_layer_apply_file(blob, out, &raw, &keep, &r, &err), LCOW_ALREADY_EXISTS);
    /* the differ's format with verity, into a new name */
    char *v = test_join(dir, "v.vhd");
    lcow_layer_apply_format fmt = LCOW_LAYER_APPLY_DIFFER_FORMAT;
    fmt.verity = true;
    assert_int_equal(lcow_layer_apply_file(blob, v, &fmt, &keep, &r, &err), LCOW_OK);
    assert_true(r.has_root_hash);
    assert_int_equal(r.layer_bytes, r.image_bytes + LCOW_VERITY_SUPERBLOCK_SIZE +
                                        lcow_verity_tree_bytes(r.image_bytes / 4096) +
                                        LCOW_VHD_FOOTER_SIZE);
    check_footer(v, r.layer_bytes);
    assert_int_equal(temps_in(dir), 0);
    free(v);
    free(out);
    free(blob);
    free(tar);
    free(dir);
}

static void sweep_removes_only_temporary_names(void **state)
{
    char *dir = test_fresh_dir("sweep");
    const char *names[] = {".layer.vhd.tmp-apply-0123456789abcdef",
                           ".layer.vhd.tmp-apply-x",
                           "layer.vhd",
                           ".layer.vhd.tmp-apply-",
                           ".layer.vhd.tmp-1",
                           "sandbox.vhdx",
                           ".other.tmp-apply-1"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *p = blob_file(dir, names[i], "x", 1);
        free(p);
    }
    assert_true(lcow_layer_apply_is_temp(".layer.vhd.tmp-apply-1", NULL));
    assert_false(lcow_layer_apply_is_temp(".layer.vhd.tmp-apply-", NULL));
    assert_true(lcow_layer_apply_is_temp(".other.tmp-apply-1", "other"));
    unsigned removed;
    lcow_error err;
    assert_int_equal(lcow_layer_apply_sweep(dir, NULL, &removed, &err), LCOW_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(test_entries_in(dir), 5);
    char *missing = test_join(dir, "nope");
    assert_int_equal(lcow_layer_apply_sweep(missing, NULL, &removed, &err), LCOW_OK);
    free(missing);
    free(dir);
}

/* ---- through the store --------------------------------------------------- */

typedef struct store {
    char *root;
    lcow_snapshotter *s;
} store;

static void store_open(store *st)
{
    lcow_snapshotter_config c = {.root = st->root, .no_scratch = true};
    lcow_error err;
    if (lcow_snapshotter_open(&c, &st->s, &err) != LCOW_OK)
        fail_msg("open %s: %s", st->root, err.message);
}

static store store_new(const char *name)
{
    store st = {test_fresh_dir(name), NULL};
    store_open(&st);
    return st;
}

static void store_free(store *st)
{
    lcow_snapshotter_free(st->s);
    free(st->root);
}

/* Prepare key (parent may be NULL); returns its directory (malloc'd). */
static char *prepare(lcow_snapshotter *s, const char *key, const char *parent)
{
    lcow_mounts m;
    lcow_error err;
    if (lcow_snapshotter_prepare(s, key, parent, NULL, &m, &err) != LCOW_OK)
        fail_msg("prepare %s: %s", key, err.message);
    char *dir = strdup(m.items[0].source);
    lcow_mounts_free(&m);
    return dir;
}

static void apply_commit_then_mount_a_container(void **state)
{
    store st = store_new("store-flow");
    size_t tlen;
    uint8_t *tar = sample_tar(&tlen);
    size_t glen;
    uint8_t *gz = gzip_of(tar, tlen, &glen);
    char *blob = blob_file(st.root, "l.tar.gz", gz, glen);
    char *dir = prepare(st.s, "ns/1/extract-1 sha256:l1", NULL);
    char want_digest[LCOW_SHA256_DIGEST_STRING_SIZE], want_diff[LCOW_SHA256_DIGEST_STRING_SIZE];
    digest_of(gz, glen, want_digest);
    digest_of(tar, tlen, want_diff);
    lcow_apply_request req = {.key = "ns/1/extract-1 sha256:l1",
                              .path = blob,
                              .media_type = "application/vnd.oci.image.layer.v1.tar+gzip",
                              .digest = want_digest,
                              .verity = true};
    lcow_apply_result r;
    lcow_error err;
    if (lcow_snapshotter_apply(st.s, &req, &r, &err) != LCOW_OK)
        fail_msg("apply: %s", err.message);
    assert_string_equal(r.diff_id, want_diff);
    assert_string_equal(r.digest, want_digest);
    assert_int_equal(r.size, glen);
    assert_true(r.has_verity_root_hash);
    assert_int_equal(strlen(r.verity_root_hash), 64);
    char *vhd = test_join(dir, "layer.vhd");
    check_footer(vhd, r.layer_bytes);
    /* a second Apply: the layer is there already */
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "layer.vhd"));

    assert_int_equal(lcow_snapshotter_commit(st.s, "ns/1/sha256:l1", "ns/1/extract-1 sha256:l1",
                                             NULL, NULL, &err),
                     LCOW_OK);
    lcow_usage u;
    assert_int_equal(lcow_snapshotter_usage(st.s, "ns/1/sha256:l1", &u, &err), LCOW_OK);
    assert_true(u.size >= (int64_t)r.layer_bytes - 4096);
    lcow_mounts m;
    assert_int_equal(
        lcow_snapshotter_prepare(st.s, "ns/1/container", "ns/1/sha256:l1", NULL, &m, &err),
        LCOW_OK);
    assert_non_null(strstr(m.items[0].options[1], "parentLayerPaths=[\""));
    /* the JSON escapes backslashes: compare the directory's last name */
    const char *id = strrchr(dir, LCOW_PATH_SEP) + 1;
    char needle[64];
    snprintf(needle, sizeof needle, "snapshots%s%s\"]", LCOW_PATH_SEP == '\\' ? "\\\\" : "/", id);
    if (!strstr(m.items[0].options[1], needle))
        fail_msg("%s does not list %s", m.items[0].options[1], dir);
    lcow_mounts_free(&m);
    assert_true(test_exists(vhd));
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_OK);

    free(vhd);
    free(dir);
    free(blob);
    free(gz);
    free(tar);
    store_free(&st);
}

static void apply_error_codes(void **state)
{
    store st = store_new("store-errors");
    size_t tlen;
    uint8_t *tar = sample_tar(&tlen);
    char *blob = blob_file(st.root, "l.tar", tar, tlen);
    char *cut = blob_file(st.root, "cut.tar", tar, tlen / 2);
    char *dir = prepare(st.s, "extract-a", NULL);
    lcow_error err;
    lcow_apply_result r;
    lcow_apply_request req = {.key = "missing", .path = blob};
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_NOT_FOUND);
    req.key = "extract-a";
    req.path = "l.tar";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "absolute"));
    req.path = "";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_INVALID_ARGUMENT);
    req.path = blob;
    req.media_type = "application/zip";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_INVALID_ARGUMENT);
    req.media_type = NULL;
    req.digest = "sha256:AB";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_INVALID_ARGUMENT);
    req.digest = NULL;
    req.path = cut;
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "extract-a"));
    assert_int_equal(test_entries_in(dir), 0); /* the snapshot is unchanged */
    char *missing = test_join(st.root, "missing.tar");
    req.path = missing;
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_NOT_FOUND);
    assert_int_equal(test_entries_in(dir), 0);
    /* committed and view keys are not active */
    req.path = blob;
    assert_int_equal(lcow_snapshotter_commit(st.s, "layer-a", "extract-a", NULL, NULL, &err),
                     LCOW_OK);
    req.key = "layer-a";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "committed"));
    lcow_mounts m;
    assert_int_equal(lcow_snapshotter_view(st.s, "v", "layer-a", NULL, &m, &err), LCOW_OK);
    lcow_mounts_free(&m);
    req.key = "v";
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, &r, &err), LCOW_FAILED_PRECONDITION);
    assert_int_equal(test_entries_in(dir), 0);
    free(missing);
    free(dir);
    free(cut);
    free(blob);
    free(tar);
    store_free(&st);
}

/* A tar holding one file of `size` zero bytes, written without the data
 * (the file is extended): a blob that takes a while to convert. */
static char *zero_tar(const char *dir, uint64_t size)
{
    char *p = test_join(dir, "zeros.tar");
    uint8_t h[512];
    lb_ustar_header(h, "zeros", '0', size, NULL, 0644, 1000);
    lcow_file *f;
    lcow_error err;
    assert_int_equal(
        lcow_file_open(p, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_TRUNCATE, &f, &err),
        LCOW_OK);
    assert_int_equal(lcow_file_pwrite(f, h, sizeof h, 0, &err), LCOW_OK);
    assert_int_equal(lcow_file_truncate(f, 512 + (size + 511) / 512 * 512 + 1024, &err), LCOW_OK);
    lcow_file_close(f);
    return p;
}

typedef struct bg_apply {
    lcow_snapshotter *s;
    lcow_apply_request req;
    lcow_apply_result r;
    lcow_error err;
    lcow_code rc;
} bg_apply;

static void *bg_main(void *arg)
{
    bg_apply *b = arg;
    b->rc = lcow_snapshotter_apply(b->s, &b->req, &b->r, &b->err);
    return NULL;
}

/* Starts an Apply of a large blob on a thread and waits until its temporary
 * file exists; false if it finished first (a very fast machine). */
static bool start_slow_apply(bg_apply *b, lcow_thread *t, const char *dir)
{
    assert_true(lcow_thread_create(t, bg_main, b));
    for (int i = 0; i < 20000; i++) {
        if (temps_in(dir) > 0)
            return true;
        if (test_exists(dir) && test_entries_in(dir) > 0 && temps_in(dir) == 0)
            return false; /* layer.vhd already */
        test_sleep_ms(1);
    }
    fail_msg("no temporary file appeared in %s", dir);
    return false;
}

static void apply_in_flight_guards_and_stop(void **state)
{
    store st = store_new("store-inflight");
    char *blob = zero_tar(st.root, 512ull << 20);
    char *dir = prepare(st.s, "extract-big", NULL);
    bg_apply b = {.s = st.s, .req = {.key = "extract-big", .path = blob, .verity = true}};
    lcow_thread t;
    if (!start_slow_apply(&b, &t, dir)) {
        lcow_thread_join(t, NULL);
        print_message("the Apply finished before the checks could run: skipped\n");
        free(dir);
        free(blob);
        store_free(&st);
        skip();
    }
    lcow_error err;
    assert_int_equal(lcow_snapshotter_remove(st.s, "extract-big", &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "being applied"));
    assert_int_equal(lcow_snapshotter_commit(st.s, "big", "extract-big", NULL, NULL, &err),
                     LCOW_FAILED_PRECONDITION);
    lcow_apply_request again = {.key = "extract-big", .path = blob};
    lcow_apply_result r;
    assert_int_equal(lcow_snapshotter_apply(st.s, &again, &r, &err), LCOW_FAILED_PRECONDITION);
    /* Cleanup leaves the running Apply's file alone */
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    lcow_snapshotter_cancel_work(st.s);
    lcow_thread_join(t, NULL);
    /* (it may have finished just before the cancellation) */
    if (b.rc != LCOW_OK) {
        assert_int_equal(b.rc, LCOW_UNAVAILABLE);
        assert_non_null(strstr(b.err.message, "cancelled"));
        assert_int_equal(test_entries_in(dir), 0);
    }
    assert_int_equal(temps_in(dir), 0);
    /* new Applies are refused; everything else goes on */
    assert_int_equal(lcow_snapshotter_apply(st.s, &again, &r, &err), LCOW_UNAVAILABLE);
    assert_int_equal(lcow_snapshotter_remove(st.s, "extract-big", &err), LCOW_OK);
    free(dir);
    free(blob);
    store_free(&st);
}

static void close_cancels_apply(void **state)
{
    store st = store_new("store-close");
    char *blob = zero_tar(st.root, 512ull << 20);
    char *dir = prepare(st.s, "extract-big", NULL);
    bg_apply b = {.s = st.s, .req = {.key = "extract-big", .path = blob}};
    lcow_thread t;
    bool running = start_slow_apply(&b, &t, dir);
    assert_int_equal(lcow_snapshotter_close(st.s), LCOW_OK);
    lcow_thread_join(t, NULL);
    if (running && b.rc != LCOW_OK) {
        assert_int_equal(b.rc, LCOW_UNAVAILABLE);
        assert_int_equal(test_entries_in(dir), 0);
    }
    assert_int_equal(temps_in(dir), 0);
    free(dir);
    free(blob);
    store_free(&st);
}

static void open_and_cleanup_sweep_apply_temps(void **state)
{
    store st = store_new("store-sweep");
    char *active = prepare(st.s, "extract-1", NULL);
    char *other = prepare(st.s, "extract-2", NULL);
    char *t1 = blob_file(active, ".layer.vhd.tmp-apply-00000000deadbeef", "x", 1);
    char *t2 = blob_file(other, ".layer.vhd.tmp-apply-00000000feedf00d", "x", 1);
    char *keep = blob_file(other, "keep.txt", "x", 1);
    /* a crash: the store goes away without an Apply finishing; open sweeps */
    lcow_snapshotter_free(st.s);
    store_open(&st);
    assert_false(test_exists(t1));
    assert_false(test_exists(t2));
    assert_true(test_exists(keep));
    /* Cleanup, too */
    free(t1);
    t1 = blob_file(active, ".layer.vhd.tmp-apply-0000000000000001", "x", 1);
    lcow_error err;
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    assert_false(test_exists(t1));
    assert_true(test_exists(keep));
    free(t1);
    free(t2);
    free(keep);
    free(active);
    free(other);
    store_free(&st);
}

/* ---- parallel unpack (issue 16) ------------------------------------------ */

/* A small layer of its own: one directory and a 64 KiB file whose bytes
 * depend on n, so every n has its own diffID. */
static uint8_t *layer_tar(int n, size_t *len)
{
    lb_tar t = {0};
    uint8_t data[64 * 1024];
    fill_random(data, sizeof data, 1000 + (uint64_t)n);
    char dir[32], file[48];
    snprintf(dir, sizeof dir, "layer%d/", n);
    snprintf(file, sizeof file, "layer%d/data", n);
    tar_entry(&t, dir, '5', NULL, 0, NULL);
    tar_entry(&t, file, '0', data, sizeof data, NULL);
    lb_end(&t);
    *len = t.len;
    return t.d;
}

/* The barrier the Applies' conversions meet at: each parks on its first
 * cancellation poll (lcow_snapshotter_set_apply_hook: no snapshotter lock is
 * held there) until the test has seen all of them arrive. */
typedef struct meet {
    lcow_mutex m;
    lcow_cond c;
    unsigned arrived;
    bool release;
} meet;

static void meet_hook(void *ctx, const char *key)
{
    (void)key;
    meet *b = ctx;
    lcow_mutex_lock(&b->m);
    b->arrived++;
    lcow_cond_broadcast(&b->c);
    /* Bounded: a broken test must not hang the suite. */
    for (int i = 0; i < 1200 && !b->release; i++)
        lcow_cond_wait_ms(&b->c, &b->m, 100);
    lcow_mutex_unlock(&b->m);
}

/* N Applies of different layers run their conversions at the same time:
 * all N reach the inside of their conversion together (a lock held across
 * a conversion, in the snapshotter or the layer store, would let only one
 * in and the barrier would time out), and while they are all parked there
 * the metadata lock is free: Prepare, Commit, Stat and Remove of other keys
 * go through. The counter of conversions running at once reaches N. */
static void applies_convert_concurrently(void **state)
{
    enum { N = 4 };
    store st = store_new("store-concurrent");
    meet b = {0};
    lcow_mutex_init(&b.m);
    lcow_cond_init(&b.c);
    lcow_snapshotter_set_apply_hook(st.s, meet_hook, &b);
    bg_apply bg[N];
    lcow_thread t[N];
    char *blobs[N], *dirs[N], keys[N][48];
    for (int i = 0; i < N; i++) {
        size_t len;
        uint8_t *tar = layer_tar(i, &len);
        char name[32];
        snprintf(name, sizeof name, "l%d.tar", i);
        blobs[i] = blob_file(st.root, name, tar, len);
        free(tar);
        snprintf(keys[i], sizeof keys[i], "ns/%d/extract-%d sha256:c%d", i + 1, i, i);
        dirs[i] = prepare(st.s, keys[i], NULL);
        bg[i] = (bg_apply){.s = st.s, .req = {.key = keys[i], .path = blobs[i]}};
    }
    for (int i = 0; i < N; i++)
        assert_true(lcow_thread_create(&t[i], bg_main, &bg[i]));
    lcow_mutex_lock(&b.m);
    for (int i = 0; i < 1200 && b.arrived < N; i++)
        lcow_cond_wait_ms(&b.c, &b.m, 100);
    unsigned arrived = b.arrived;
    lcow_mutex_unlock(&b.m);
    lcow_error err;
    bool meta_ok = false;
    if (arrived == N) {
        /* All N conversions are parked inside: the metadata is not locked. */
        char *d = prepare(st.s, "ns/9/extract-other", NULL);
        free(d);
        lcow_info info;
        meta_ok = lcow_snapshotter_commit(st.s, "ns/9/other", "ns/9/extract-other", NULL, NULL,
                                          &err) == LCOW_OK &&
                  lcow_snapshotter_stat(st.s, "ns/9/other", &info, &err) == LCOW_OK;
        if (meta_ok)
            lcow_info_free(&info);
        meta_ok = meta_ok && lcow_snapshotter_remove(st.s, "ns/9/other", &err) == LCOW_OK;
    }
    lcow_mutex_lock(&b.m);
    b.release = true;
    lcow_cond_broadcast(&b.c);
    lcow_mutex_unlock(&b.m);
    for (int i = 0; i < N; i++)
        lcow_thread_join(t[i], NULL);
    if (arrived != N)
        fail_msg("only %u of %d conversions were running at once: Applies are serialised", arrived,
                 N);
    if (!meta_ok)
        fail_msg("metadata calls failed while the conversions ran: %s", err.message);
    for (int i = 0; i < N; i++) {
        if (bg[i].rc != LCOW_OK)
            fail_msg("apply %s: %s", keys[i], bg[i].err.message);
        char *vhd = test_join(dirs[i], "layer.vhd");
        check_footer(vhd, bg[i].r.layer_bytes);
        free(vhd);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(bg[i].r.diff_id, bg[j].r.diff_id);
    }
    assert_int_equal(lcow_snapshotter_conversions_max(st.s), N);
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_OK);
    lcow_snapshotter_set_apply_hook(st.s, NULL, NULL);
    for (int i = 0; i < N; i++) {
        free(blobs[i]);
        free(dirs[i]);
    }
    lcow_cond_destroy(&b.c);
    lcow_mutex_destroy(&b.m);
    store_free(&st);
}

/* chainID(n) = sha256(chainID(n-1) + " " + diffID(n)), chainID(1) = diffID(1)
 * (the OCI image spec; containerd's identity.ChainIDs). */
static void chain_id(const char *parent, const char *diff_id,
                     char out[LCOW_SHA256_DIGEST_STRING_SIZE])
{
    if (!parent) {
        snprintf(out, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", diff_id);
        return;
    }
    char buf[2 * LCOW_SHA256_DIGEST_STRING_SIZE + 2];
    snprintf(buf, sizeof buf, "%s %s", parent, diff_id);
    digest_of(buf, strlen(buf), out);
}

#define LABEL_REF "containerd.io/snapshot.ref"
#define LABEL_DIFF_ID "containerd.io/snapshot/diff-id"
#define LABEL_PARENT_CHAIN "containerd.io/snapshot/parent-chain-id"

static int count_match(void *ctx, const lcow_info *info)
{
    (void)info;
    (*(int *)ctx)++;
    return 0;
}

/* containerd's unpacker with the rebase capability (core/unpack/unpacker.go,
 * through core/metadata/snapshot.go), for a three-layer image: every layer's
 * extraction snapshot is prepared at once WITHOUT a parent, labelled with
 * its ref (chainID), diff-id and parent-chain-id; all are applied
 * concurrently; then, bottom up, each is committed as
 * <ns>/<seq>/<chainID> with the parent's backend name as the Commit's
 * parent (metadata's WithParent(bparent), the rebase). The committed chain
 * must be the image: parents, labels, the container's parentLayerPaths in
 * order, and containerd's remote-snapshot Walk filter finds each layer. */
static void parallel_unpack_with_rebase(void **state)
{
    enum { N = 3 };
    store st = store_new("store-rebase");
    char diff[N][LCOW_SHA256_DIGEST_STRING_SIZE], chain[N][LCOW_SHA256_DIGEST_STRING_SIZE];
    char *blobs[N], *dirs[N], keys[N][160], names[N][120];
    for (int i = 0; i < N; i++) {
        size_t len;
        uint8_t *tar = layer_tar(10 + i, &len);
        digest_of(tar, len, diff[i]); /* containerd reads these from the image config */
        char name[32];
        snprintf(name, sizeof name, "r%d.tar", i);
        blobs[i] = blob_file(st.root, name, tar, len);
        free(tar);
        chain_id(i ? chain[i - 1] : NULL, diff[i], chain[i]);
    }
    /* topHalf: Prepare(key, "", labels) for every layer, in any order. */
    lcow_error err;
    for (int i = N - 1; i >= 0; i--) {
        snprintf(keys[i], sizeof keys[i], "default/%d/extract-%d-AbC%d %s", 10 + i, 123456 + i, i,
                 chain[i]);
        lcow_labels l = {0};
        assert_true(lcow_labels_set(&l, LABEL_REF, chain[i]));
        assert_true(lcow_labels_set(&l, LABEL_DIFF_ID, diff[i]));
        if (i)
            assert_true(lcow_labels_set(&l, LABEL_PARENT_CHAIN, chain[i - 1]));
        lcow_mounts m;
        if (lcow_snapshotter_prepare(st.s, keys[i], "", &l, &m, &err) != LCOW_OK)
            fail_msg("prepare %s: %s", keys[i], err.message);
        dirs[i] = strdup(m.items[0].source);
        lcow_mounts_free(&m);
        lcow_labels_free(&l);
    }
    /* The applies, concurrently. */
    bg_apply bg[N];
    lcow_thread t[N];
    for (int i = 0; i < N; i++) {
        bg[i] = (bg_apply){.s = st.s, .req = {.key = keys[i], .path = blobs[i]}};
        assert_true(lcow_thread_create(&t[i], bg_main, &bg[i]));
    }
    for (int i = 0; i < N; i++) {
        lcow_thread_join(t[i], NULL);
        if (bg[i].rc != LCOW_OK)
            fail_msg("apply %s: %s", keys[i], bg[i].err.message);
        assert_string_equal(bg[i].r.diff_id, diff[i]); /* containerd's diff.Digest check */
    }
    /* bottomHalf, in order: Commit(name, key, labels, parent). */
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "default/%d/%s", 20 + i, chain[i]);
        lcow_labels l = {0};
        assert_true(lcow_labels_set(&l, LABEL_REF, chain[i]));
        assert_true(lcow_labels_set(&l, LABEL_DIFF_ID, diff[i]));
        if (i)
            assert_true(lcow_labels_set(&l, LABEL_PARENT_CHAIN, chain[i - 1]));
        if (lcow_snapshotter_commit(st.s, names[i], keys[i], &l, i ? names[i - 1] : "", &err) !=
            LCOW_OK)
            fail_msg("commit %s: %s", names[i], err.message);
        lcow_labels_free(&l);
    }
    for (int i = 0; i < N; i++) {
        lcow_info info;
        assert_int_equal(lcow_snapshotter_stat(st.s, names[i], &info, &err), LCOW_OK);
        assert_int_equal(info.kind, LCOW_KIND_COMMITTED);
        assert_string_equal(info.parent ? info.parent : "", i ? names[i - 1] : "");
        assert_string_equal(lcow_labels_get(&info.labels, LABEL_REF), chain[i]);
        assert_string_equal(lcow_labels_get(&info.labels, LABEL_DIFF_ID), diff[i]);
        lcow_info_free(&info);
        assert_int_equal(lcow_snapshotter_stat(st.s, keys[i], &info, &err), LCOW_NOT_FOUND);
        /* The filter containerd's metadata layer sends for this ref. */
        char filter[512];
        snprintf(filter, sizeof filter, "labels.\"%s\"==%s,parent==\"%s\"", LABEL_REF, chain[i],
                 i ? names[i - 1] : "");
        const char *filters[] = {filter};
        lcow_walk_options wo = {.filters = filters, .filter_count = 1};
        int found = 0;
        assert_int_equal(lcow_snapshotter_walk(st.s, &wo, count_match, &found, NULL, &err),
                         LCOW_OK);
        assert_int_equal(found, 1);
    }
    /* A container on the image: its parentLayerPaths are the layers, top
     * first. */
    lcow_mounts m;
    assert_int_equal(lcow_snapshotter_prepare(st.s, "default/30/ctr", names[N - 1], NULL, &m, &err),
                     LCOW_OK);
    const char *opt = m.items[0].options[1];
    const char *at = opt;
    for (int i = N - 1; i >= 0; i--) {
        const char *id = strrchr(dirs[i], LCOW_PATH_SEP) + 1;
        char needle[64];
        snprintf(needle, sizeof needle, "snapshots%s%s\"", LCOW_PATH_SEP == '\\' ? "\\\\" : "/",
                 id);
        const char *hit = strstr(at, needle);
        if (!hit)
            fail_msg("%s does not list layer %d (%s) after the layers above it", opt, i, dirs[i]);
        at = hit + strlen(needle);
    }
    lcow_mounts_free(&m);
    /* A rebase onto another parent than the one an active has is refused
     * (containerd's rule; the unpacker never sends it). */
    char *d = prepare(st.s, "default/31/extract-x", names[0]);
    free(d);
    assert_int_equal(
        lcow_snapshotter_commit(st.s, "default/32/x", "default/31/extract-x", NULL, names[1], &err),
        LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_OK);
    for (int i = 0; i < N; i++) {
        free(blobs[i]);
        free(dirs[i]);
    }
    store_free(&st);
}

/* ---- containerd's remote-snapshot protocol (issue 16) -------------------- */

static lcow_code stat_code_of(lcow_snapshotter *s, const char *key)
{
    lcow_info info;
    lcow_error err;
    lcow_code rc = lcow_snapshotter_stat(s, key, &info, &err);
    if (rc == LCOW_OK)
        lcow_info_free(&info);
    return rc;
}

static int first_committed_name(void *ctx, const lcow_info *info)
{
    if (info->kind != LCOW_KIND_COMMITTED)
        return 0;
    snprintf(ctx, 200, "%s", info->name);
    return 1;
}

/* containerd's sequential unpack of one image into namespace ns, as its
 * unpacker (core/unpack/unpacker.go) and metadata layer
 * (core/metadata/snapshot.go) drive a proxy snapshotter: per layer,
 * Prepare("<ns>/<seq>/extract-<unique> <chainID>", <parent's backend
 * name>, labels); on AlreadyExists, the Walk with containerd's filter and
 * the first committed match is the layer; otherwise Apply and
 * Commit("<ns>/<seq>/<chainID>"). containerd 2 sends the diff-id and
 * parent-chain-id labels, 1.6 and 1.7 the ref alone (v2 = false). Fills
 * names (the backend names containerd records) and returns the number of
 * Applies it had to run. */
static int containerd_unpack(lcow_snapshotter *s, const char *ns, int *seq, int n,
                             char *const *blobs, char diff[][LCOW_SHA256_DIGEST_STRING_SIZE],
                             char chain[][LCOW_SHA256_DIGEST_STRING_SIZE], bool v2,
                             char names[][200])
{
    int applies = 0;
    for (int i = 0; i < n; i++) {
        char key[200];
        int k = ++*seq;
        snprintf(key, sizeof key, "%s/%d/extract-%d-Zq%d %s", ns, k, 500000 + k, i, chain[i]);
        const char *parent = i ? names[i - 1] : "";
        lcow_labels l = {0};
        assert_true(lcow_labels_set(&l, "containerd.io/snapshot.ref", chain[i]));
        if (v2) {
            assert_true(lcow_labels_set(&l, "containerd.io/snapshot/diff-id", diff[i]));
            if (i)
                assert_true(
                    lcow_labels_set(&l, "containerd.io/snapshot/parent-chain-id", chain[i - 1]));
        }
        lcow_mounts m;
        lcow_error err;
        lcow_code rc = lcow_snapshotter_prepare(s, key, parent, &l, &m, &err);
        if (rc == LCOW_ALREADY_EXISTS) {
            char filter[512];
            snprintf(filter, sizeof filter,
                     "labels.\"containerd.io/snapshot.ref\"==%s,parent==\"%s\"", chain[i], parent);
            const char *filters[] = {filter};
            lcow_walk_options wo = {.filters = filters, .filter_count = 1};
            names[i][0] = '\0';
            assert_int_equal(
                lcow_snapshotter_walk(s, &wo, first_committed_name, names[i], NULL, &err), LCOW_OK);
            if (!names[i][0])
                fail_msg("AlreadyExists for %s but containerd's Walk finds no %s on \"%s\"", key,
                         chain[i], parent);
            /* containerd's own check of what it adopts */
            lcow_info info;
            assert_int_equal(lcow_snapshotter_stat(s, names[i], &info, &err), LCOW_OK);
            assert_int_equal(info.kind, LCOW_KIND_COMMITTED);
            assert_string_equal(info.parent ? info.parent : "", parent);
            assert_string_equal(lcow_labels_get(&info.labels, "containerd.io/snapshot.ref"),
                                chain[i]);
            assert_string_equal(lcow_labels_get(&info.labels, "containerd.io/snapshot/diff-id"),
                                diff[i]);
            lcow_info_free(&info);
            assert_int_equal(stat_code_of(s, key), LCOW_NOT_FOUND); /* no active left */
        } else {
            if (rc != LCOW_OK)
                fail_msg("prepare %s: %s", key, err.message);
            lcow_mounts_free(&m);
            lcow_apply_request req = {.key = key, .path = blobs[i]};
            lcow_apply_result r;
            if (lcow_snapshotter_apply(s, &req, &r, &err) != LCOW_OK)
                fail_msg("apply %s: %s", key, err.message);
            assert_string_equal(r.diff_id, diff[i]);
            applies++;
            snprintf(names[i], 200, "%s/%d/%s", ns, ++*seq, chain[i]);
            if (lcow_snapshotter_commit(s, names[i], key, &l, NULL, &err) != LCOW_OK)
                fail_msg("commit %s: %s", names[i], err.message);
        }
        lcow_labels_free(&l);
    }
    return applies;
}

static uint64_t conversions_of(lcow_snapshotter *s)
{
    lcow_layer_store_stats st;
    lcow_layer_store_stats_get(lcow_snapshotter_layer_store(s), &st);
    return st.conversions;
}

/* A pull of an image whose layers lcowsnap has: a second namespace adopts
 * the committed layers (no Apply); after both images' snapshots are gone
 * the layer store still has the layers and a containerd 1.7 pull (the ref
 * alone: the diffID found from the parent's chain and the stored diffIDs)
 * gets each layer committed under its ref on the right parent, linked from
 * the store, converting nothing; a container on it mounts the three. An
 * unknown ref, a diff-id that does not give the ref, a key that is not an
 * extraction and a parallel-unpack Prepare (no parent, parent-chain-id) are
 * ordinary Prepares. */
static void remote_snapshot_prepare_of_a_known_layer(void **state)
{
    enum { N = 3 };
    store st = store_new("store-remote");
    char diff[N][LCOW_SHA256_DIGEST_STRING_SIZE], chain[N][LCOW_SHA256_DIGEST_STRING_SIZE];
    char *blobs[N];
    for (int i = 0; i < N; i++) {
        size_t len;
        uint8_t *tar = layer_tar(20 + i, &len);
        digest_of(tar, len, diff[i]);
        char name[32];
        snprintf(name, sizeof name, "m%d.tar", i);
        blobs[i] = blob_file(st.root, name, tar, len);
        free(tar);
        chain_id(i ? chain[i - 1] : NULL, diff[i], chain[i]);
    }
    int seq = 0;
    char a[N][200], b[N][200], c[N][200];
    /* The first pull converts every layer. */
    assert_int_equal(containerd_unpack(st.s, "default", &seq, N, blobs, diff, chain, true, a), N);
    uint64_t converted = conversions_of(st.s);
    assert_int_equal(converted, N);
    /* Another namespace: every layer is adopted as it is. */
    assert_int_equal(containerd_unpack(st.s, "k8s.io", &seq, N, blobs, diff, chain, true, b), 0);
    for (int i = 0; i < N; i++)
        assert_string_equal(b[i], a[i]);

    /* Both images go (containerd's collector removes the snapshots, top
     * first); the layer store keeps the layers. */
    lcow_error err;
    for (int i = N - 1; i >= 0; i--)
        assert_int_equal(lcow_snapshotter_remove(st.s, a[i], &err), LCOW_OK);
    assert_int_equal(containerd_unpack(st.s, "k8s.io", &seq, N, blobs, diff, chain, false, c), 0);
    assert_int_equal(conversions_of(st.s), converted);
    for (int i = 0; i < N; i++)
        assert_string_equal(c[i], chain[i]); /* committed under its ref */
    /* The same pull again (containerd 2 labels) adopts those. */
    char d[N][200];
    assert_int_equal(containerd_unpack(st.s, "default", &seq, N, blobs, diff, chain, true, d), 0);
    for (int i = 0; i < N; i++)
        assert_string_equal(d[i], c[i]);

    /* A container on the image mounts the three layers, top first. */
    lcow_mounts m;
    assert_int_equal(lcow_snapshotter_prepare(st.s, "k8s.io/90/ctr", c[N - 1], NULL, &m, &err),
                     LCOW_OK);
    const char *at = m.items[0].options[1];
    for (int i = N - 1; i >= 0; i--) {
        lcow_meta_record rec;
        assert_int_equal(lcow_metastore_get(st.s->ms, NULL, c[i], &rec, &err), LCOW_OK);
        char needle[64];
        snprintf(needle, sizeof needle, "snapshots%s%" PRIu64 "\"",
                 LCOW_PATH_SEP == '\\' ? "\\\\" : "/", rec.id);
        char *dir = lcow_snapshotter_dir_of(st.s, rec.id);
        char *vhd = test_join(dir, "layer.vhd");
        assert_true(test_exists(vhd));
        free(vhd);
        free(dir);
        lcow_meta_record_free(&rec);
        const char *hit = strstr(at, needle);
        if (!hit)
            fail_msg("%s does not list %s in order", m.items[0].options[1], c[i]);
        at = hit + strlen(needle);
    }
    lcow_mounts_free(&m);
    /* (the check: every labelled layer.vhd is the stored file itself) */
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_OK);

    /* Ordinary Prepares. */
    lcow_labels l = {0};
    char unknown[LCOW_SHA256_DIGEST_STRING_SIZE];
    digest_of("no such layer", 13, unknown);
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot.ref", unknown));
    assert_int_equal(lcow_snapshotter_prepare(st.s, "k8s.io/91/extract-1 x", "", &l, &m, &err),
                     LCOW_OK);
    lcow_mounts_free(&m);
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot.ref", chain[1])); /* not d0's chain */
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot/diff-id", diff[0]));
    assert_int_equal(lcow_snapshotter_prepare(st.s, "k8s.io/92/extract-2 x", "", &l, &m, &err),
                     LCOW_OK);
    lcow_mounts_free(&m);
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot.ref", chain[0]));
    assert_int_equal(lcow_snapshotter_prepare(st.s, "k8s.io/93/container", "", &l, &m, &err),
                     LCOW_OK);
    lcow_mounts_free(&m);
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot.ref", chain[1]));
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot/diff-id", diff[1]));
    assert_true(lcow_labels_set(&l, "containerd.io/snapshot/parent-chain-id", chain[0]));
    assert_int_equal(lcow_snapshotter_prepare(st.s, "k8s.io/94/extract-3 x", "", &l, &m, &err),
                     LCOW_OK);
    lcow_mounts_free(&m);
    lcow_labels_free(&l);
    assert_int_equal(conversions_of(st.s), converted);
    /* The top layer goes; containerd 2's Prepare of it (diff-id label,
     * checked against the ref through the parent's chain) commits it again
     * from the store. */
    assert_int_equal(lcow_snapshotter_remove(st.s, "k8s.io/90/ctr", &err), LCOW_OK);
    assert_int_equal(lcow_snapshotter_remove(st.s, c[N - 1], &err), LCOW_OK);
    char e[N][200];
    assert_int_equal(containerd_unpack(st.s, "x", &seq, N, blobs, diff, chain, true, e), 0);
    assert_string_equal(e[N - 1], chain[N - 1]);
    assert_int_equal(conversions_of(st.s), converted);
    if (lcow_snapshotter_check(st.s, &err) != LCOW_OK)
        fail_msg("check: %s", err.message);
    for (int i = 0; i < N; i++)
        free(blobs[i]);
    store_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_give_one_image),
        cmocka_unit_test(golden_cases_equal_tar2ext4),
        cmocka_unit_test(bad_input_leaves_nothing),
        cmocka_unit_test(faults_leave_nothing),
        cmocka_unit_test(cancellation_leaves_nothing),
        cmocka_unit_test(output_file_formats_and_replace),
        cmocka_unit_test(sweep_removes_only_temporary_names),
        cmocka_unit_test(apply_commit_then_mount_a_container),
        cmocka_unit_test(apply_error_codes),
        cmocka_unit_test(apply_in_flight_guards_and_stop),
        cmocka_unit_test(close_cancels_apply),
        cmocka_unit_test(open_and_cleanup_sweep_apply_temps),
        cmocka_unit_test(applies_convert_concurrently),
        cmocka_unit_test(parallel_unpack_with_rebase),
        cmocka_unit_test(remote_snapshot_prepare_of_a_known_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

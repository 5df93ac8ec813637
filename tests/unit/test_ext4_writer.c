/* Compact ext4 writer (core/disk/ext4_writer): known answers for the images
 * tar2ext4 makes (the empty image of both profiles, by CRC-32C of bytes that
 * tests/layer checks against tar2ext4's SHA-256), the fields it writes, the
 * on_final contract, xattrs in the inode and in a block, time encoding,
 * the deliberate differences (replaced files, hard links over files, ".."),
 * and every refusal. Natively, e2fsck -fn checks the images too. Runs
 * natively, under ASan and as a Windows exe under Wine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/byteorder.h"
#include "core/disk/crc32c.h"
#include "core/disk/ext4_writer.h"
#include "disk/disk_test_util.h"

#define BS 4096u
#define KiB 1024u
#define MiB (1024u * 1024u)
#define S_DIR LCOW_EXT4W_S_IFDIR
#define S_REG LCOW_EXT4W_S_IFREG

/* ---- helpers ---- */

typedef struct image {
    uint8_t *b;
    size_t len;
} image;

static image load(const char *path)
{
    lcow_error err;
    lcow_file *f;
    assert_int_equal(lcow_file_open(path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    uint64_t size;
    assert_int_equal(lcow_file_size(f, &size, &err), LCOW_OK);
    image im = {malloc(size ? size : 1), (size_t)size};
    size_t got;
    assert_int_equal(lcow_file_pread(f, im.b, im.len, 0, &got, &err), LCOW_OK);
    assert_int_equal(got, im.len);
    lcow_file_close(f);
    return im;
}

static const uint8_t *sb(const image *im)
{
    return im->b + 1024;
}

/* Inode ino of a one-group image. */
static const uint8_t *inode(const image *im, uint32_t ino)
{
    uint32_t table = lcow_le_get32(im->b + BS + 8);
    assert_true(ino <= lcow_le_get32(sb(im) + 0x28));
    return im->b + (size_t)table * BS + (size_t)(ino - 1) * 256;
}

static lcow_ext4_writer *open_writer(const char *path, const lcow_ext4_writer_options *o)
{
    lcow_error err;
    lcow_ext4_writer *w;
    test_remove(path);
    if (lcow_ext4_writer_open(path, o, &w, &err) != LCOW_OK)
        fail_msg("open: %s", err.message);
    return w;
}

static void mk(lcow_ext4_writer *w, const char *path, uint16_t mode, const void *data, size_t len)
{
    lcow_error err;
    lcow_ext4_file f = {.mode = mode, .size = len};
    if (lcow_ext4_writer_create(w, path, strlen(path), &f, &err) != LCOW_OK)
        fail_msg("create %s: %s", path, err.message);
    if (len && lcow_ext4_writer_write(w, data, len, &err) != LCOW_OK)
        fail_msg("write %s: %s", path, err.message);
}

static uint64_t finish(lcow_ext4_writer *w)
{
    lcow_error err;
    uint64_t size = 0;
    if (lcow_ext4_writer_finish(w, &size, &err) != LCOW_OK)
        fail_msg("finish: %s", err.message);
    return size;
}

/* Natively: e2fsck -fn reports nothing but the padding message every
 * tar2ext4 image gets. */
static void check_e2fsck(const char *path)
{
    const char *e2fsck = tool("LCOW_E2FSCK");
    if (!e2fsck)
        return;
    char *out = NULL;
    run_cmd(&out, "'%s' -fn '%s'", e2fsck, path);
    assert_non_null(out);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "Pass ", 5) || !strncmp(line, "e2fsck ", 7) ||
            strstr(line, "Padding at end of inode bitmap is not set") ||
            strstr(line, "Filesystem still has errors") || strstr(line, " files (") || line[0] == 0)
            continue;
        fail_msg("e2fsck on %s: %s", path, line);
    }
    free(out);
}

/* ---- known answers ---- */

/* tar2ext4 -max-gb 128 of an empty tar: 14 blocks; the CRC-32Cs are of the
 * images whose SHA-256 equals golden.json's "empty" (differ ed92c1b9...,
 * inline db079379...). */
static void empty_image_is_tar2ext4s(void **state)
{
    (void)state;
    char *path = test_path("empty.img");
    for (int inl = 0; inl < 2; inl++) {
        lcow_ext4_writer_options o = {.max_disk_size = 128ull << 30, .inline_data = inl};
        lcow_ext4_writer *w = open_writer(path, &o);
        assert_int_equal(finish(w), 57344);
        lcow_ext4_writer_close(w);
        image im = load(path);
        assert_int_equal(im.len, 57344);
        assert_int_equal(lcow_crc32c(im.b, im.len), inl ? 0x32bb18ccu : 0x3d11021du);
        const uint8_t *s = sb(&im);
        assert_int_equal(lcow_le_get16(s + 0x38), 0xEF53);
        assert_int_equal(lcow_le_get32(s + 0x04), 14); /* blocks */
        assert_int_equal(lcow_le_get32(s + 0x00), 16); /* inodes */
        /* free: the 7 unused descriptor blocks; blocks past the end count as used */
        assert_int_equal(lcow_le_get32(s + 0x0C), 7);
        assert_int_equal(lcow_le_get32(s + 0x5C), 0x208);
        assert_int_equal(lcow_le_get32(s + 0x60), inl ? 0x8242u : 0x242u);
        assert_int_equal(lcow_le_get32(s + 0x64), 0x104a);
        assert_int_equal(lcow_le_get32(s + 0x268), 11); /* lost+found */
        /* group 0: table at 11 (after 1 + 8 descriptor blocks, 2 dirs), bitmaps 12, 13 */
        assert_int_equal(lcow_le_get32(im.b + BS + 0), 12);
        assert_int_equal(lcow_le_get32(im.b + BS + 4), 13);
        assert_int_equal(lcow_le_get32(im.b + BS + 8), 11);
        assert_int_equal(lcow_le_get16(inode(&im, 2)), S_DIR | 0755);
        assert_int_equal(lcow_le_get16(inode(&im, 2) + 26), 3);
        assert_int_equal(lcow_le_get16(inode(&im, 11)), S_DIR | 0700);
        assert_int_equal(lcow_le_get16(inode(&im, 11) + 26), 2);
        assert_int_equal(lcow_le_get32(inode(&im, 11) + 32), 0x80000 | 0x40000);
        free(im.b);
        check_e2fsck(path);
    }
    test_remove(path);
    free(path);
}

/* ---- on_final ---- */

typedef struct finals {
    uint8_t *copy;
    uint8_t *seen;
    size_t blocks;
    int twice, unaligned;
} finals;

static void on_final(void *ctx, uint64_t off, const void *data, size_t len)
{
    finals *r = ctx;
    if (off % BS || len % BS || len == 0) {
        r->unaligned++;
        return;
    }
    size_t first = (size_t)(off / BS), n = len / BS;
    if (first + n > r->blocks) {
        size_t nb = (first + n) * 2;
        r->copy = realloc(r->copy, nb * BS);
        r->seen = realloc(r->seen, nb);
        memset(r->seen + r->blocks, 0, nb - r->blocks);
        r->blocks = nb;
    }
    for (size_t i = 0; i < n; i++) {
        if (r->seen[first + i])
            r->twice++;
        r->seen[first + i] = 1;
    }
    memcpy(r->copy + first * BS, data, len);
}

static void build_tree(lcow_ext4_writer *w, uint8_t *big, size_t big_len)
{
    lcow_error err;
    static const char value[3000] = {'v'};
    mk(w, "d", S_DIR | 0755, NULL, 0);
    mk(w, "d/small", S_REG | 0644, "hello", 5);
    mk(w, "d/big", S_REG | 0644, big, big_len);
    /* a directory with an xattr block, rewritten by set_xattr */
    lcow_ext4_xattr xa[] = {{"user.big", 8, value, sizeof value}, {"user.a", 6, "1", 1}};
    lcow_ext4_file dir = {.mode = S_DIR | 0700, .xattrs = xa, .xattr_count = 2};
    assert_int_equal(lcow_ext4_writer_create(w, "x/", 2, &dir, &err), LCOW_OK);
    mk(w, "x/f", S_REG | 0600, big, 10000);
    assert_int_equal(lcow_ext4_writer_set_xattr(w, "x", 1, "trusted.overlay.opaque", "y", 1, &err),
                     LCOW_OK);
    char target[300];
    memset(target, 't', sizeof target);
    lcow_ext4_file ln = {.mode = LCOW_EXT4W_S_IFLNK, .link = target, .link_len = sizeof target};
    assert_int_equal(lcow_ext4_writer_create(w, "d/long", 6, &ln, &err), LCOW_OK);
    /* replaced with less data: blocks released */
    mk(w, "d/big", S_REG | 0644, big, 5000);
}

static void on_final_reports_each_block_once(void **state)
{
    (void)state;
    char *path = test_path("final.img");
    size_t big_len = 3 * MiB + 123;
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7 + i / 4096);
    finals r = {0};
    /* a small buffer: data goes straight from memory, flushes are many */
    lcow_ext4_writer_options o = {.max_disk_size = 128ull << 30,
                                  .on_final = on_final,
                                  .on_final_ctx = &r,
                                  .buffer_bytes = 64 * KiB};
    lcow_ext4_writer *w = open_writer(path, &o);
    build_tree(w, big, big_len);
    uint64_t size = finish(w);
    lcow_ext4_writer_stats st;
    lcow_ext4_writer_get_stats(w, &st);
    assert_true(st.released_blocks >= 769); /* 3 MiB + 123 bytes = 769 blocks */
    lcow_ext4_writer_close(w);
    image im = load(path);
    assert_int_equal(im.len, size);
    assert_int_equal(r.twice, 0);
    assert_int_equal(r.unaligned, 0);
    static const uint8_t zero[BS];
    size_t reported = 0;
    for (size_t b = 0; b < im.len / BS; b++) {
        if (b < r.blocks && r.seen[b]) {
            reported++;
            assert_memory_equal(r.copy + b * BS, im.b + b * BS, BS);
        } else {
            assert_memory_equal(zero, im.b + b * BS, BS); /* never reported: zero */
        }
    }
    assert_true(reported > 769);
    free(im.b);
    free(r.copy);
    free(r.seen);
    check_e2fsck(path);
    test_remove(path);
    free(path);
    free(big);
}

/* on_written: ascending, contiguous ranges from the start, every 8 MiB. */
typedef struct writtens {
    uint64_t next;
    int calls, gaps;
} writtens;

static void on_written(void *ctx, uint64_t off, uint64_t len)
{
    writtens *r = ctx;
    r->gaps += off != r->next || len < (8u << 20);
    r->next = off + len;
    r->calls++;
}

static void on_written_follows_the_output(void **state)
{
    (void)state;
    char *path = test_path("written.img");
    size_t n = 20 * MiB;
    uint8_t *data = calloc(1, n);
    writtens r = {0};
    lcow_ext4_writer_options o = {.on_written = on_written, .on_written_ctx = &r};
    lcow_ext4_writer *w = open_writer(path, &o);
    lcow_error err;
    lcow_ext4_file f = {.mode = S_REG | 0644, .size = n};
    assert_int_equal(lcow_ext4_writer_create(w, "big", 3, &f, &err), LCOW_OK);
    for (size_t i = 0; i < n; i += MiB) /* as a stream brings it */
        assert_int_equal(lcow_ext4_writer_write(w, data + i, MiB, &err), LCOW_OK);
    uint64_t size = finish(w);
    lcow_ext4_writer_close(w);
    assert_int_equal(r.gaps, 0);
    assert_int_equal(r.calls, 2); /* 8 and 16 MiB of the 20 MiB + metadata */
    assert_true(r.next <= size);
    free(data);
    test_remove(path);
    free(path);
}

/* ---- times ---- */

static void times_are_encoded_as_tar2ext4_does(void **state)
{
    (void)state;
    char *path = test_path("times.img");
    struct {
        lcow_ext4_time t;
        uint32_t lo, extra;
    } cases[] = {
        {{0, 0, false}, 0, 0}, /* Go's zero time */
        {{0, 0, true}, 0, 0},  /* 1970 */
        {{1700000000, 123456789, true}, 1700000000, 123456789u << 2},
        {{(1ll << 33) + 5, 0, true}, 5, 2},             /* epoch bits */
        {{-1, 0, true}, 0xffffffffu, 0xffffffffu},      /* Go's uint64(-1) */
        {{-(1ll << 40), 0, true}, 0x80000000u, 0},      /* clamped low */
        {{1ll << 40, 999, true}, 0x7fffffffu, 3},       /* clamped: 0x37fffffff */
        {{-62135596800ll, 0, true}, 0, 0},              /* time.Time{}.Unix() */
        {{10, 1500000000u, true}, 11, 500000000u << 2}, /* nsec folded */
    };
    size_t n = sizeof cases / sizeof cases[0];
    lcow_ext4_writer *w = open_writer(path, NULL);
    lcow_error err;
    for (size_t i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "f%zu", i);
        lcow_ext4_file f = {.mode = S_REG | 0644,
                            .atime = cases[i].t,
                            .mtime = cases[i].t,
                            .ctime = cases[i].t,
                            .crtime = cases[i].t};
        assert_int_equal(lcow_ext4_writer_create(w, name, strlen(name), &f, &err), LCOW_OK);
    }
    finish(w);
    lcow_ext4_writer_close(w);
    image im = load(path);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *ino = inode(&im, 12 + (uint32_t)i);
        static const size_t lo[] = {8, 12, 16, 144}, ex[] = {140, 132, 136, 148};
        for (int k = 0; k < 4; k++) {
            assert_int_equal(lcow_le_get32(ino + lo[k]), cases[i].lo);
            assert_int_equal(lcow_le_get32(ino + ex[k]), cases[i].extra);
        }
    }
    free(im.b);
    test_remove(path);
    free(path);
}

/* Implicit parents take their parent's metadata through Go's fsTimeToTime:
 * a time before 1970 comes back clamped to 0x37fffffff. */
static void implicit_parents_copy_their_parent(void **state)
{
    (void)state;
    char *path = test_path("parents.img");
    lcow_ext4_writer *w = open_writer(path, NULL);
    lcow_error err;
    lcow_ext4_file top = {.mode = S_DIR | 0711,
                          .uid = 7,
                          .gid = 8,
                          .mtime = {1700000000, 5, true},
                          .atime = {-5, 0, true}};
    assert_int_equal(lcow_ext4_writer_create(w, "top", 3, &top, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_writer_make_parents(w, "top/a/b/file", 12, &err), LCOW_OK);
    mk(w, "top/a/b/file", S_REG | 0644, "x", 1);
    finish(w);
    lcow_ext4_writer_close(w);
    image im = load(path);
    for (uint32_t ino = 13; ino <= 14; ino++) { /* top/a, top/a/b */
        const uint8_t *p = inode(&im, ino);
        assert_int_equal(lcow_le_get16(p), S_DIR | 0711);
        assert_int_equal(lcow_le_get16(p + 2), 7);
        assert_int_equal(lcow_le_get16(p + 24), 8);
        assert_int_equal(lcow_le_get32(p + 16), 1700000000);
        assert_int_equal(lcow_le_get32(p + 136), 5u << 2);
        assert_int_equal(lcow_le_get32(p + 8), 0x7fffffffu); /* atime -5: 0x37fffffff */
        assert_int_equal(lcow_le_get32(p + 140), 3);
    }
    free(im.b);
    /* no e2fsck: it takes tar2ext4's encoding of a time before 1970 (epoch
     * bits 3) for a time past 2310 ("likely pre-1970"), as for tar2ext4's own */
    test_remove(path);
    free(path);
}

/* ---- xattrs and inline data ---- */

static void xattrs_in_inode_then_block(void **state)
{
    (void)state;
    char *path = test_path("xattr.img");
    lcow_ext4_writer *w = open_writer(path, NULL);
    lcow_error err;
    char v90[90], v500[500];
    memset(v90, 'a', sizeof v90);
    memset(v500, 'b', sizeof v500);
    /* sorted by name: user.a (16+4+8=28 bytes) and user.b (16+4+92) -> b to the block */
    lcow_ext4_xattr xa[] = {{"user.b", 6, v90, sizeof v90},
                            {"user.a", 6, "12345678", 8},
                            {"user.c", 6, v500, sizeof v500},
                            {"user.a", 6, "late", 4}};
    lcow_ext4_file f = {.mode = S_REG | 0644, .xattrs = xa, .xattr_count = 4};
    assert_int_equal(lcow_ext4_writer_create(w, "f", 1, &f, &err), LCOW_OK);
    finish(w);
    lcow_ext4_writer_close(w);
    image im = load(path);
    const uint8_t *p = inode(&im, 12);
    assert_int_equal(lcow_le_get32(p + 152), 0xEA020000u);
    /* entry: name len 1 ("a" after the "user." prefix), index 1, value 4 bytes "late" */
    assert_int_equal(p[156], 1);
    assert_int_equal(p[157], 1);
    assert_int_equal(lcow_le_get32(p + 156 + 8), 4);
    assert_memory_equal(p + 156 + 16, "a", 1);
    uint16_t off = lcow_le_get16(p + 156 + 2);
    assert_memory_equal(p + 156 + off, "late", 4);
    uint32_t blk = lcow_le_get32(p + 104);
    assert_int_equal(blk, 2); /* right after the one descriptor block of 16 GiB */
    assert_int_equal(lcow_le_get32(p + 28), 1);
    const uint8_t *b = im.b + (size_t)blk * BS;
    assert_int_equal(lcow_le_get32(b), 0xEA020000u);
    assert_int_equal(lcow_le_get32(b + 4), 1);
    assert_int_equal(b[32], 1);
    assert_memory_equal(b + 48, "b", 1);
    assert_memory_equal(b + 32 + 20 + 16, "c", 1); /* second entry, after 16 + 4 */
    free(im.b);
    check_e2fsck(path);
    test_remove(path);
    free(path);
}

static void inline_data_splits_at_60_bytes(void **state)
{
    (void)state;
    char *path = test_path("inline.img");
    lcow_ext4_writer_options o = {.inline_data = true};
    lcow_ext4_writer *w = open_writer(path, &o);
    uint8_t data[137];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)i;
    mk(w, "a", S_REG | 0644, data, 100);
    mk(w, "b", S_REG | 0644, data, 137); /* one byte too many: blocks */
    finish(w);
    lcow_ext4_writer_close(w);
    image im = load(path);
    const uint8_t *a = inode(&im, 12);
    assert_int_equal(lcow_le_get32(a + 32), 0x10000000u | 0x40000u);
    assert_memory_equal(a + 40, data, 60);
    assert_int_equal(a[156], 4); /* "data" */
    assert_int_equal(a[157], 7); /* system. */
    assert_int_equal(lcow_le_get32(a + 156 + 8), 40);
    assert_memory_equal(a + 156 + lcow_le_get16(a + 156 + 2), data + 60, 40);
    const uint8_t *b = inode(&im, 13);
    assert_int_equal(lcow_le_get32(b + 32), 0x80000u | 0x40000u);
    assert_int_equal(lcow_le_get16(b + 40), 0xF30A);
    free(im.b);
    check_e2fsck(path);
    test_remove(path);
    free(path);
}

/* ---- deliberate differences ---- */

static void later_entries_replace_files(void **state)
{
    (void)state;
    char *path = test_path("replace.img");
    lcow_ext4_writer *w = open_writer(path, NULL);
    lcow_error err;
    uint8_t data[9000] = {1};
    mk(w, "f", S_REG | 0644, data, sizeof data);
    mk(w, "f", S_REG | 0600, "second", 6); /* tar2ext4 refuses; tar -x semantics */
    mk(w, "g", S_REG | 0644, data, 8000);
    mk(w, "h", S_REG | 0644, data, 100);
    assert_int_equal(lcow_ext4_writer_link(w, "h", 1, "g", 1, &err), LCOW_OK); /* g's inode goes */
    lcow_ext4_writer_stats st;
    lcow_ext4_writer_get_stats(w, &st);
    assert_int_equal(st.released_blocks, 3 + 2);
    finish(w);
    lcow_ext4_writer_close(w);
    image im = load(path);
    const uint8_t *f = inode(&im, 12);
    assert_int_equal(lcow_le_get16(f), S_REG | 0600);
    assert_int_equal(lcow_le_get32(f + 4), 6);
    assert_int_equal(lcow_le_get32(f + 28), 1);
    static const uint8_t zero[256];
    assert_memory_equal(inode(&im, 13), zero, 256); /* g's released inode */
    assert_int_equal(lcow_le_get16(inode(&im, 14) + 26), 2);
    free(im.b);
    check_e2fsck(path);
    test_remove(path);
    free(path);
}

/* ---- refusals ---- */

static void expect(lcow_code want, lcow_code got, const lcow_error *err)
{
    if (got != want)
        fail_msg("want %s, got %s: %s", lcow_code_name(want), lcow_code_name(got), err->message);
}

static void refusals(void **state)
{
    (void)state;
    char *path = test_path("refuse.img");
    lcow_error err;
    char long_name[300];
    memset(long_name, 'n', sizeof long_name);
    long_name[256] = 0;
    struct {
        const char *what;
        lcow_code want;
    } cases[] = {
        {"component over 255 bytes", LCOW_INVALID_ARGUMENT},
        {"dot dot above the root", LCOW_INVALID_ARGUMENT},
        {"missing parent", LCOW_INVALID_ARGUMENT},
        {"file over a directory", LCOW_INVALID_ARGUMENT},
        {"directory over a file", LCOW_INVALID_ARGUMENT},
        {"link to nothing", LCOW_INVALID_ARGUMENT},
        {"link to a directory", LCOW_INVALID_ARGUMENT},
        {"too much data", LCOW_INVALID_ARGUMENT},
        {"too little data", LCOW_INVALID_ARGUMENT},
        {"file over 128 GiB", LCOW_RESOURCE_EXHAUSTED},
        {"image over the maximum", LCOW_RESOURCE_EXHAUSTED},
        {"xattr too big", LCOW_INVALID_ARGUMENT},
        {"invalid mode", LCOW_INVALID_ARGUMENT},
        {"opaque on a written file", LCOW_FAILED_PRECONDITION},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lcow_ext4_writer_options o = {.max_disk_size = i == 10 ? 1 * MiB : 0};
        lcow_ext4_writer *w = open_writer(path, &o);
        mk(w, "dir", S_DIR | 0755, NULL, 0);
        mk(w, "file", S_REG | 0644, "abc", 3);
        lcow_ext4_file reg = {.mode = S_REG | 0644, .size = 4};
        lcow_ext4_file dir = {.mode = S_DIR | 0755};
        lcow_code rc = LCOW_OK;
        switch (i) {
        case 0:
            rc = lcow_ext4_writer_create(w, long_name, 256, &reg, &err);
            break;
        case 1:
            rc = lcow_ext4_writer_create(w, "dir/../../x", 11, &reg, &err);
            break;
        case 2:
            rc = lcow_ext4_writer_create(w, "nope/x", 6, &reg, &err);
            break;
        case 3:
            rc = lcow_ext4_writer_create(w, "dir", 3, &reg, &err);
            break;
        case 4:
            rc = lcow_ext4_writer_create(w, "file", 4, &dir, &err);
            break;
        case 5:
            rc = lcow_ext4_writer_link(w, "nothing", 7, "l", 1, &err);
            break;
        case 6:
            rc = lcow_ext4_writer_link(w, "dir", 3, "l", 1, &err);
            break;
        case 7:
            rc = lcow_ext4_writer_create(w, "x", 1, &reg, &err);
            if (rc == LCOW_OK)
                rc = lcow_ext4_writer_write(w, "12345", 5, &err);
            break;
        case 8:
            rc = lcow_ext4_writer_create(w, "x", 1, &reg, &err);
            if (rc == LCOW_OK)
                rc = lcow_ext4_writer_write(w, "12", 2, &err);
            if (rc == LCOW_OK)
                rc = lcow_ext4_writer_create(w, "y", 1, &dir, &err);
            break;
        case 9:
            reg.size = LCOW_EXT4W_MAX_FILE_SIZE + 1;
            rc = lcow_ext4_writer_create(w, "x", 1, &reg, &err);
            break;
        case 10: {
            static uint8_t mb[MiB];
            reg.size = sizeof mb;
            rc = lcow_ext4_writer_create(w, "x", 1, &reg, &err);
            if (rc == LCOW_OK)
                rc = lcow_ext4_writer_write(w, mb, sizeof mb, &err);
            break;
        }
        case 11: {
            static char v[5000];
            lcow_ext4_xattr xa = {"user.v", 6, v, sizeof v};
            lcow_ext4_file f = {.mode = S_REG, .xattrs = &xa, .xattr_count = 1};
            rc = lcow_ext4_writer_create(w, "x", 1, &f, &err);
            break;
        }
        case 12: {
            lcow_ext4_file f = {.mode = 0x3000 | 0644};
            rc = lcow_ext4_writer_create(w, "x", 1, &f, &err);
            break;
        }
        case 13:
            rc = lcow_ext4_writer_set_xattr(w, "file", 4, "trusted.overlay.opaque", "y", 1, &err);
            break;
        }
        print_message("%s: %s\n", cases[i].what, err.message);
        expect(cases[i].want, rc, &err);
        /* sticky: the writer refuses everything afterwards */
        expect(cases[i].want, lcow_ext4_writer_finish(w, NULL, &err), &err);
        lcow_ext4_writer_close(w);
    }
    /* a path over 4096 bytes is fine */
    lcow_ext4_writer *w = open_writer(path, NULL);
    char *deep = malloc(6000);
    size_t n = 0;
    for (int i = 0; n + 12 < 6000; i++) {
        n += (size_t)snprintf(deep + n, 6000 - n, "%sdir%04d", i ? "/" : "", i);
    }
    assert_int_equal(lcow_ext4_writer_make_parents(w, deep, n, &err), LCOW_OK);
    lcow_ext4_file f = {.mode = S_REG | 0644};
    assert_int_equal(lcow_ext4_writer_create(w, deep, n, &f, &err), LCOW_OK);
    finish(w);
    lcow_ext4_writer_close(w);
    free(deep);
    check_e2fsck(path);
    test_remove(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_image_is_tar2ext4s),
        cmocka_unit_test(on_final_reports_each_block_once),
        cmocka_unit_test(on_written_follows_the_output),
        cmocka_unit_test(times_are_encoded_as_tar2ext4_does),
        cmocka_unit_test(implicit_parents_copy_their_parent),
        cmocka_unit_test(xattrs_in_inode_then_block),
        cmocka_unit_test(inline_data_splits_at_60_bytes),
        cmocka_unit_test(later_entries_replace_files),
        cmocka_unit_test(refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* ext4 formatter: geometry against mke2fs's numbers, what gets written, and
 * (natively) e2fsck -fn, dumpe2fs -h and a block-by-block comparison with
 * mkfs.ext4 given the same UUID, hash seed and clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/blocksink.h"
#include "core/disk/crc32c.h"
#include "core/disk/ext4.h"
#include "disk/disk_test_util.h"
#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

#define GiB (1ull << 30)

#ifndef _WIN32 /* used by the mkfs comparison, which needs the Linux tools */
static const uint8_t UUID[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                                 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
static const uint8_t SEED[16] = {0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33,
                                 0x44, 0x44, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55};
#define NOW 1700000000
#endif

/* Expected geometry: mke2fs 1.47 on Debian 12 (see docs/reference/vhdx-ext4.md, 3.1). */
static void geometry_matches_mke2fs(void **state)
{
    struct {
        uint64_t size, blocks, overhead;
        uint32_t inodes, groups, last_backup;
    } want[] = {
        {1 * GiB, 262144, 4118, 65536, 8, 7},
        {20 * GiB, 5242880, 82252, 1310720, 160, 159},
        {100 * GiB, 26214400, 411242, 6553600, 800, 799},
        {1024 * GiB, 268435456, 0, 67108864, 8192, 8191},
    };
    lcow_error err;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        lcow_ext4_layout L;
        assert_int_equal(lcow_ext4_plan(want[i].size, &L, &err), LCOW_OK);
        assert_int_equal(L.block_count, want[i].blocks);
        assert_int_equal(L.inode_count, want[i].inodes);
        assert_int_equal(L.group_count, want[i].groups);
        assert_int_equal(L.inodes_per_group, 8192);
        assert_int_equal(L.inode_blocks_per_group, 512);
        assert_int_equal(L.reserved_blocks, want[i].blocks / 20);
        assert_int_equal(L.backup_groups[0], 1);
        assert_int_equal(L.backup_groups[1], want[i].last_backup);
        if (want[i].overhead)
            assert_int_equal(L.overhead_blocks, want[i].overhead);
        assert_int_equal(L.free_blocks, L.block_count - L.overhead_blocks - 5);
        assert_int_equal(L.free_inodes, L.inode_count - 11);
    }
    /* 20 GiB: root directory right after flex group 0's inode tables. */
    lcow_ext4_layout L;
    assert_int_equal(lcow_ext4_plan(20 * GiB, &L, &err), LCOW_OK);
    assert_int_equal(L.root_dir_block, 8228);
    /* A last group too small for its metadata is dropped, like mke2fs. */
    assert_int_equal(lcow_ext4_plan(16 * GiB + 20480, &L, &err), LCOW_OK);
    assert_int_equal(L.group_count, 128);
    assert_int_equal(L.block_count, 4194304);
    /* Size types: "big" from 4 TiB, "huge" from 16 TiB; 64 TiB caps inodes. */
    assert_int_equal(lcow_ext4_plan(5000 * GiB, &L, &err), LCOW_OK);
    assert_int_equal(L.inode_ratio, 32768);
    assert_int_equal(L.inodes_per_group, 4096);
    assert_int_equal(lcow_ext4_plan(64ull << 40, &L, &err), LCOW_OK);
    assert_int_equal(L.inode_ratio, 65536);
    assert_true(L.inode_count <= 0xffffffffu);
    assert_int_equal(L.group_count, 524288);
    assert_int_equal(lcow_ext4_plan(GiB - 4096, &L, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_ext4_plan((64ull << 40) + 4096, &L, &err), LCOW_INVALID_ARGUMENT);
}

/* A sink that records every write in memory (offsets must be 4 KiB blocks). */
typedef struct recorded {
    uint64_t *blocks;
    uint8_t *data;
    size_t n, cap;
    lcow_block_sink *forward;
} recorded;

static lcow_code record_write(void *ctx, uint64_t off, const void *buf, size_t len, lcow_error *err)
{
    recorded *r = ctx;
    if (off % 4096 || len % 4096)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "unaligned write");
    for (size_t i = 0; i < len / 4096; i++) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 64;
            r->blocks = realloc(r->blocks, r->cap * sizeof *r->blocks);
            r->data = realloc(r->data, r->cap * 4096);
        }
        r->blocks[r->n] = off / 4096 + i;
        memcpy(r->data + r->n * 4096, (const uint8_t *)buf + i * 4096, 4096);
        r->n++;
    }
    return r->forward ? lcow_block_sink_write(r->forward, off, buf, len, err) : LCOW_OK;
}

static void recorded_free(recorded *r)
{
    free(r->blocks);
    free(r->data);
}

static void format_recorded(uint64_t size, const lcow_ext4_options *o, recorded *rec,
                            lcow_ext4_layout *L)
{
    lcow_block_sink *sink;
    lcow_error err;
    assert_int_equal(lcow_block_sink_callback(record_write, NULL, rec, size, &sink, &err), LCOW_OK);
    lcow_code rc = lcow_ext4_format(sink, o, L, &err);
    if (rc)
        fail_msg("format: %s", err.message);
    lcow_block_sink_free(sink);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void writes_only_the_nonzero_blocks(void **state)
{
    /* 1 + GDT + 2 + 1 + 1 + 4 + 2(1+GDT) + 1 + (flexgroups-1) */
    struct {
        uint64_t size, blocks;
    } want[] = {{1 * GiB, 15}, {20 * GiB, 30}, {100 * GiB, 100}, {1024 * GiB, 907}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        recorded rec = {0};
        lcow_ext4_layout L;
        format_recorded(want[i].size, NULL, &rec, &L);
        assert_int_equal(rec.n, want[i].blocks);
        assert_int_equal(L.blocks_written, want[i].blocks);
        for (size_t k = 0; k < rec.n; k++) {
            const uint8_t *b = rec.data + k * 4096;
            size_t j = 0;
            while (j < 4096 && !b[j])
                j++;
            if (j == 4096)
                fail_msg("block %llu was written but is all zero",
                         (unsigned long long)rec.blocks[k]);
        }
        recorded_free(&rec);
    }
}

static const uint8_t *find_block(const recorded *r, uint64_t block)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->blocks[i] == block)
            return r->data + i * 4096;
    return NULL;
}

static void superblock_is_checksummed_and_fresh_per_disk(void **state)
{
    recorded a = {0}, b = {0};
    lcow_ext4_layout L;
    format_recorded(20 * GiB, NULL, &a, &L);
    format_recorded(20 * GiB, NULL, &b, &L);
    const uint8_t *sa = find_block(&a, 0), *sb = find_block(&b, 0);
    assert_non_null(sa);
    assert_non_null(sb);
    sa += 1024;
    sb += 1024;
    assert_int_equal(sa[0x38] | sa[0x39] << 8, 0xef53);
    assert_int_equal(le32(sa + 0x3fc), lcow_crc32c_update(0xffffffffu, sa, 0x3fc));
    assert_int_equal(le32(sa + 0x04), 5242880);
    assert_int_equal(le32(sa + 0x5c), 0x228); /* compat */
    assert_int_equal(le32(sa + 0x60), 0x2c2); /* incompat */
    assert_int_equal(le32(sa + 0x64), 0x46b); /* ro_compat */
    /* Fresh UUID and hash seed per disk, RFC 4122 version 4. */
    assert_memory_not_equal(sa + 0x68, sb + 0x68, 16);
    assert_memory_not_equal(sa + 0xec, sb + 0xec, 16);
    assert_int_equal(sa[0x68 + 6] >> 4, 4);
    /* Backup in group 1 says so, and is not marked clean. */
    const uint8_t *bk = find_block(&a, 32768);
    assert_non_null(bk);
    assert_int_equal(bk[0x5a], 1);
    assert_int_equal(bk[0x3a], 0);
    assert_int_equal(le32(bk + 0x3fc), lcow_crc32c_update(0xffffffffu, bk, 0x3fc));
    recorded_free(&a);
    recorded_free(&b);
}

static lcow_code failing_write(void *ctx, uint64_t off, const void *buf, size_t len,
                               lcow_error *err)
{
    unsigned *left = ctx;
    if ((*left)-- == 0)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "disk full (injected)");
    return LCOW_OK;
}

static void sink_errors_propagate(void **state)
{
    for (unsigned at = 0; at < 6; at++) {
        unsigned left = at;
        lcow_block_sink *sink;
        lcow_error err;
        assert_int_equal(
            lcow_block_sink_callback(failing_write, NULL, &left, 20 * GiB, &sink, &err), LCOW_OK);
        assert_int_equal(lcow_ext4_format(sink, NULL, NULL, &err), LCOW_RESOURCE_EXHAUSTED);
        assert_non_null(strstr(err.message, "injected"));
        lcow_block_sink_free(sink);
    }
    /* A sink smaller than 1 GiB is refused before any write. */
    unsigned never = 0;
    lcow_block_sink *sink;
    lcow_error err;
    assert_int_equal(lcow_block_sink_callback(failing_write, NULL, &never, GiB / 2, &sink, &err),
                     LCOW_OK);
    assert_int_equal(lcow_ext4_format(sink, NULL, NULL, &err), LCOW_INVALID_ARGUMENT);
    lcow_block_sink_free(sink);
}

/* ---- against the real tools (native only) ---- */

#ifndef _WIN32
/* Every non-zero 4 KiB block of the mkfs image (found with SEEK_DATA) must
 * equal ours, and ours must all appear; bytes that legitimately differ (the
 * lifetime-writes counter and the superblock checksum) are masked. */
static void compare_with_mkfs_image(const recorded *ours, const char *path, uint64_t size)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(4096);
    size_t matched = 0;
    off_t pos = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        for (off_t b = data / 4096 * 4096; b < hole; b += 4096) {
            assert_int_equal(pread(fd, buf, 4096, b), 4096);
            size_t j = 0;
            while (j < 4096 && !buf[j])
                j++;
            if (j == 4096)
                continue;
            const uint8_t *mine = find_block(ours, (uint64_t)b / 4096);
            if (!mine)
                fail_msg("mkfs wrote block %lld, the formatter did not", (long long)(b / 4096));
            uint8_t a[4096], m[4096];
            memcpy(a, mine, 4096);
            memcpy(m, buf, 4096);
            if (a[0x38] == 0x53 && a[0x39] == 0xef) { /* backup superblock at offset 0 */
                memset(a + 0x178, 0, 8), memset(m + 0x178, 0, 8);
                memset(a + 0x3fc, 0, 4), memset(m + 0x3fc, 0, 4);
            }
            if (b == 0) {
                memset(a + 1024 + 0x178, 0, 8), memset(m + 1024 + 0x178, 0, 8);
                memset(a + 1024 + 0x3fc, 0, 4), memset(m + 1024 + 0x3fc, 0, 4);
            }
            for (j = 0; j < 4096; j++)
                if (a[j] != m[j])
                    fail_msg("%llu GiB: block %lld differs from mkfs at byte %zu (ours %02x, "
                             "mkfs %02x)",
                             (unsigned long long)(size >> 30), (long long)(b / 4096), j, a[j],
                             m[j]);
            matched++;
        }
        pos = hole;
    }
    close(fd);
    free(buf);
    assert_int_equal(matched, ours->n);
}

static void check_with_e2fsprogs(const char *img, const lcow_ext4_layout *L)
{
    const char *e2fsck = tool("LCOW_E2FSCK"), *dumpe2fs = tool("LCOW_DUMPE2FS");
    char *out;
    int rc = run_cmd(&out, "'%s' -fn '%s'", e2fsck, img);
    /* Silent: only the version banner, the five pass lines and the summary. */
    int lines = 0;
    for (const char *p = out; p && *p; p++)
        lines += *p == '\n';
    if (rc != 0 || lines > 7 || strstr(out, "?") || strstr(out, "Fix"))
        fail_msg("e2fsck -fn %s: rc %d\n%s", img, rc, out);
    free(out);
    rc = run_cmd(&out, "'%s' -h '%s'", dumpe2fs, img);
    char want[128];
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "Filesystem features:      ext_attr dir_index sparse_super2 "
                                "filetype extent 64bit flex_bg sparse_super large_file "
                                "huge_file dir_nlink extra_isize metadata_csum\n"));
    snprintf(want, sizeof want, "Block count:              %llu\n",
             (unsigned long long)L->block_count);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, "Inode count:              %u\n", L->inode_count);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, "Backup block groups:      1 %u", L->backup_groups[1]);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "Flex block group size:    16\n"));
    assert_non_null(strstr(out, "Checksum type:            crc32c\n"));
    assert_non_null(strstr(out, "Filesystem state:         clean\n"));
    free(out);
}

#endif

static void matches_mkfs_and_passes_e2fsck(void **state)
{
    if (!tool("LCOW_E2FSCK") || !tool("LCOW_DUMPE2FS") || !tool("LCOW_MKFS_EXT4"))
        skip();
#ifndef _WIN32
    const uint64_t sizes[] = {1 * GiB,    20 * GiB,          100 * GiB,
                              1024 * GiB, 37 * GiB + 102400, 16 * GiB + 20480};
    char *ours = test_path("ext4-ours.img"), *ref = test_path("ext4-mkfs.img");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        test_remove(ours);
        test_remove(ref);
        lcow_error err;
        lcow_file *f;
        assert_int_equal(lcow_file_open(ours, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &f, &err),
                         LCOW_OK);
        recorded rec = {0};
        assert_int_equal(lcow_block_sink_raw_file(f, sizes[i], false, &rec.forward, &err), LCOW_OK);
        lcow_ext4_options o = {.now = NOW};
        memcpy(o.uuid, UUID, 16);
        memcpy(o.hash_seed, SEED, 16);
        lcow_ext4_layout L;
        format_recorded(sizes[i], &o, &rec, &L);
        assert_int_equal(lcow_block_sink_finish(rec.forward, &err), LCOW_OK);
        lcow_block_sink_free(rec.forward);
        lcow_file_close(f);
        check_with_e2fsprogs(ours, &L);

        char *out;
        int rc;
        if (sizes[i] > 100 * GiB) {
            /* A real mkfs here would fallocate 16 GiB of inode tables on the
             * shared build disk; `mkfs.ext4 -n` reports the layout it would
             * write without writing anything. */
            rc = run_cmd(&out,
                         "truncate -s %llu '%s' && '%s' -n -F -E lazy_itable_init=0,nodiscard "
                         "-O ^has_journal,sparse_super2,^resize_inode '%s'",
                         (unsigned long long)sizes[i], ref, tool("LCOW_MKFS_EXT4"), ref);
            char want[160];
            snprintf(want, sizeof want, "Creating filesystem with %llu 4k blocks and %u inodes",
                     (unsigned long long)L.block_count, L.inode_count);
            if (rc || !strstr(out, want))
                fail_msg("mkfs.ext4 -n: want \"%s\"\n%s", want, out);
            snprintf(want, sizeof want, "\t32768, %llu\n",
                     (unsigned long long)L.backup_groups[1] * 32768);
            if (!strstr(out, want))
                fail_msg("mkfs.ext4 -n: backups not at %s\n%s", want, out);
            free(out);
            recorded_free(&rec);
            continue;
        }
        rc = run_cmd(&out,
                     "truncate -s %llu '%s' && E2FSPROGS_FAKE_TIME=%d '%s' -F -q -E "
                     "lazy_itable_init=0,nodiscard,hash_seed="
                     "11111111-2222-3333-4444-555555555555 "
                     "-U 01234567-89ab-cdef-0123-456789abcdef "
                     "-O ^has_journal,sparse_super2,^resize_inode '%s'",
                     (unsigned long long)sizes[i], ref, NOW, tool("LCOW_MKFS_EXT4"), ref);
        if (rc)
            fail_msg("mkfs.ext4: %s", out);
        free(out);
        compare_with_mkfs_image(&rec, ref, sizes[i]);
        recorded_free(&rec);
    }
    test_remove(ours);
    test_remove(ref);
    free(ours);
    free(ref);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(geometry_matches_mke2fs),
        cmocka_unit_test(writes_only_the_nonzero_blocks),
        cmocka_unit_test(superblock_is_checksummed_and_fresh_per_disk),
        cmocka_unit_test(sink_errors_propagate),
        cmocka_unit_test(matches_mkfs_and_passes_e2fsck),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

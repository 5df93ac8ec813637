/* core/disk/compact.c and core/disk/ext4_view.c: compaction of a scratch
 * VHDX and the ext4 usage view.
 *
 * In memory (every build): disks our formatter made, with junk written into
 * free ext4 space (as deleted files leave it), compacted; a crash after each
 * durable step (the step seam) leaves a disk our reader accepts whose used
 * blocks read exactly as before.
 *
 * On a real filled-and-emptied disk (every build, Wine included): the
 * fixture tests/disk/compact-fixture.sh made with debugfs and qemu-img
 * (LCOW_COMPACT_FIXTURE names its directory; absent: skipped with a
 * message). Compact must give back >= 90% of the deleted bytes; the results
 * are left there for tests/disk/compact-check.sh (qemu-img check, e2fsck
 * -fn, the kept files dumped with debugfs and compared). */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/disk/blocksink.h"
#include "core/disk/compact.h"
#include "core/disk/ext4.h"
#include "core/disk/ext4_view.h"
#include "disk/disk_test_util.h"

#define MiB (1024u * 1024u)
#define DISK (1024ull * MiB)

/* A 1 GiB scratch disk in memory: junk (non-zero, 1 MiB each) at the given
 * virtual MiB offsets, written before (junk_first) or after the formatter. */
static void make_disk(mem_io *m, const unsigned *junk_mib, size_t n, bool junk_first)
{
    memset(m, 0, sizeof *m);
    lcow_vhdx_io io = mem_io_of(m);
    lcow_vhdx_params p = {.geometry = {.size_bytes = DISK}};
    lcow_vhdx_writer *w;
    lcow_error err;
    assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
    uint8_t *junk = malloc(MiB);
    assert_non_null(junk);
    for (size_t i = 0; i < MiB; i++)
        junk[i] = (uint8_t)(i * 7 + 1);
    if (junk_first)
        for (size_t i = 0; i < n; i++)
            assert_int_equal(
                lcow_vhdx_writer_write(w, (uint64_t)junk_mib[i] * MiB, junk, MiB, &err), LCOW_OK);
    lcow_block_sink *sink;
    assert_int_equal(lcow_block_sink_vhdx(w, DISK, false, &sink, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_format(sink, NULL, NULL, &err), LCOW_OK);
    if (!junk_first)
        for (size_t i = 0; i < n; i++)
            assert_int_equal(
                lcow_vhdx_writer_write(w, (uint64_t)junk_mib[i] * MiB, junk, MiB, &err), LCOW_OK);
    assert_int_equal(lcow_block_sink_finish(sink, &err), LCOW_OK);
    lcow_block_sink_free(sink);
    lcow_vhdx_writer_free(w);
    free(junk);
}

/* What must survive: the used map and the content (a 64-bit FNV-1a per
 * VHDX block) of every used block. */
typedef struct snapshot {
    uint64_t units;
    uint8_t *used;
    uint64_t *hash; /* per unit; 0 for unused ones */
} snapshot;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void take(const lcow_vhdx_io *io, snapshot *s)
{
    lcow_vhdx_reader *r;
    lcow_error err;
    assert_int_equal(lcow_vhdx_reader_open(io, &r, &err), LCOW_OK);
    lcow_vhdx_check_report chk;
    if (lcow_vhdx_reader_check(r, &chk, &err) != LCOW_OK)
        fail_msg("reader check: %s", err.message);
    const lcow_vhdx_info *vi = lcow_vhdx_reader_info(r);
    s->units = (vi->virtual_size + vi->block_size - 1) / vi->block_size;
    s->used = calloc((size_t)(s->units + 7) / 8, 1);
    s->hash = calloc((size_t)s->units, sizeof *s->hash);
    uint8_t *buf = malloc(vi->block_size);
    assert_true(s->used && s->hash && buf);
    if (lcow_ext4_view_used_map(r, s->used, s->units, &err) != LCOW_OK)
        fail_msg("used map: %s", err.message);
    for (uint64_t u = 0; u < s->units; u++) {
        lcow_vhdx_block_state st;
        assert_int_equal(lcow_vhdx_reader_block(r, u, &st, NULL, &err), LCOW_OK);
        if (!(s->used[u / 8] & (1u << (u % 8))) || st != LCOW_VHDX_BLOCK_FULLY_PRESENT)
            continue; /* unused, or absent (zeros) before and after */
        assert_int_equal(lcow_vhdx_reader_read(r, u * vi->block_size, buf, vi->block_size, &err),
                         LCOW_OK);
        s->hash[u] = fnv1a(buf, vi->block_size);
    }
    free(buf);
    lcow_vhdx_reader_free(r);
}

static void assert_same(const snapshot *a, const snapshot *b)
{
    assert_int_equal(a->units, b->units);
    assert_memory_equal(a->used, b->used, (size_t)(a->units + 7) / 8);
    assert_memory_equal(a->hash, b->hash, (size_t)a->units * sizeof *a->hash);
}

static void drop(snapshot *s)
{
    free(s->used);
    free(s->hash);
}

static void a_fresh_disk_is_left_untouched(void **state)
{
    (void)state;
    mem_io m;
    make_disk(&m, NULL, 0, false);
    unsigned char *copy = malloc(m.size);
    assert_non_null(copy);
    memcpy(copy, m.data, m.size);
    size_t size = m.size;
    lcow_vhdx_io io = mem_io_of(&m);
    lcow_compact_report rep;
    lcow_error err;
    assert_int_equal(lcow_compact_vhdx(&io, &rep, NULL, NULL, &err), LCOW_OK);
    assert_int_equal(rep.bytes_before, size);
    assert_int_equal(rep.bytes_after, size);
    assert_int_equal(rep.blocks_freed, 0);
    assert_int_equal(rep.blocks_moved, 0);
    assert_int_equal(m.size, size);
    assert_memory_equal(m.data, copy, size);
    free(copy);
    free(m.data);
}

static void junk_in_free_space_comes_back(void **state)
{
    (void)state;
    /* 64 and 80 MiB lie in group 0 past its tables: free. 300 MiB is in a
     * group whose bitmap is uninitialized: kept, conservatively. */
    const unsigned junk[] = {64, 80, 300};
    mem_io m;
    make_disk(&m, junk, 3, false);
    lcow_vhdx_io io = mem_io_of(&m);
    snapshot before, after;
    take(&io, &before);
    uint64_t size = m.size;
    lcow_compact_report rep;
    lcow_error err;
    if (lcow_compact_vhdx(&io, &rep, NULL, NULL, &err) != LCOW_OK)
        fail_msg("compact: %s", err.message);
    assert_int_equal(rep.blocks_freed, 2);
    assert_int_equal(rep.bytes_before, size);
    assert_int_equal(rep.bytes_after, size - 2 * MiB);
    assert_int_equal(m.size, size - 2 * MiB);
    take(&io, &after);
    assert_same(&before, &after);
    /* The freed blocks read as zeros now. */
    lcow_vhdx_reader *r;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    uint8_t buf[4096];
    assert_int_equal(lcow_vhdx_reader_read(r, 64ull * MiB, buf, sizeof buf, &err), LCOW_OK);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    lcow_vhdx_reader_free(r);
    /* A second run finds nothing more. */
    assert_int_equal(lcow_compact_vhdx(&io, &rep, NULL, NULL, &err), LCOW_OK);
    assert_int_equal(rep.blocks_freed, 0);
    assert_int_equal(rep.bytes_after, rep.bytes_before);
    drop(&before);
    drop(&after);
    free(m.data);
}

static void kept_blocks_move_into_the_holes(void **state)
{
    (void)state;
    /* Junk written first takes the first payload slots; the formatter's
     * blocks follow, so freeing the junk leaves holes that the last blocks
     * of the file fill. */
    const unsigned junk[] = {64, 72, 80};
    mem_io m;
    make_disk(&m, junk, 3, true);
    lcow_vhdx_io io = mem_io_of(&m);
    snapshot before, after;
    take(&io, &before);
    uint64_t size = m.size;
    lcow_compact_report rep;
    lcow_error err;
    if (lcow_compact_vhdx(&io, &rep, NULL, NULL, &err) != LCOW_OK)
        fail_msg("compact: %s", err.message);
    assert_int_equal(rep.blocks_freed, 3);
    assert_int_equal(rep.blocks_moved, 3);
    assert_int_equal(rep.bytes_after, size - 3 * MiB);
    take(&io, &after);
    assert_same(&before, &after);
    drop(&before);
    drop(&after);
    free(m.data);
}

typedef struct stop_ctx {
    int stop_at; /* 1-based step to stop after */
    int seen;
} stop_ctx;

static int stop_step(void *ctx, const char *step)
{
    (void)step;
    stop_ctx *s = ctx;
    return ++s->seen == s->stop_at;
}

static void a_crash_after_any_step_leaves_a_valid_disk(void **state)
{
    (void)state;
    const unsigned junk[] = {64, 72, 80, 88};
    mem_io ref;
    make_disk(&ref, junk, 4, true);
    lcow_vhdx_io ref_io = mem_io_of(&ref);
    snapshot before;
    take(&ref_io, &before);
    /* Count the steps of an uninterrupted run on a copy. */
    int steps = 0;
    for (int n = 1;; n++) {
        mem_io m = ref;
        m.data = malloc(ref.cap);
        assert_non_null(m.data);
        memcpy(m.data, ref.data, ref.size);
        lcow_vhdx_io io = mem_io_of(&m);
        stop_ctx sc = {n, 0};
        lcow_error err;
        lcow_code rc = lcow_compact_vhdx(&io, NULL, stop_step, &sc, &err);
        snapshot after;
        take(&io, &after); /* fails the test if the reader refuses the disk */
        assert_same(&before, &after);
        drop(&after);
        free(m.data);
        if (rc == LCOW_OK) {
            steps = n - 1;
            break;
        }
        assert_int_equal(rc, LCOW_UNAVAILABLE);
        assert_true(n < 100);
    }
    /* header, freed, copied, remapped, truncated */
    assert_int_equal(steps, 5);
    drop(&before);
    free(ref.data);
}

static void an_unclean_filesystem_is_refused(void **state)
{
    (void)state;
    const unsigned junk[] = {64};
    mem_io m;
    make_disk(&m, junk, 1, false);
    lcow_vhdx_io io = mem_io_of(&m);
    lcow_vhdx_reader *r;
    lcow_error err;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    lcow_vhdx_block_state st;
    uint64_t off;
    assert_int_equal(lcow_vhdx_reader_block(r, 0, &st, &off, &err), LCOW_OK);
    lcow_vhdx_reader_free(r);
    assert_int_equal(st, LCOW_VHDX_BLOCK_FULLY_PRESENT);
    m.data[off + 1024 + 0x3a] = 0; /* s_state: mounted, not cleanly unmounted */
    unsigned char *copy = malloc(m.size);
    assert_non_null(copy);
    memcpy(copy, m.data, m.size);
    size_t size = m.size;
    assert_int_equal(lcow_compact_vhdx(&io, NULL, NULL, NULL, &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "not cleanly unmounted"));
    assert_int_equal(m.size, size);
    assert_memory_equal(m.data, copy, size);
    free(copy);
    free(m.data);
}

static void not_ext4_is_refused(void **state)
{
    (void)state;
    mem_io m;
    memset(&m, 0, sizeof m);
    lcow_vhdx_io io = mem_io_of(&m);
    lcow_vhdx_params p = {.geometry = {.size_bytes = DISK}};
    lcow_vhdx_writer *w;
    lcow_error err;
    assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
    assert_int_equal(lcow_vhdx_writer_finish(w, false, &err), LCOW_OK);
    lcow_vhdx_writer_free(w);
    assert_int_equal(lcow_compact_vhdx(&io, NULL, NULL, NULL, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "superblock"));
    lcow_ext4_view_usage u;
    lcow_vhdx_reader *r;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_view_usage_of(r, &u, &err), LCOW_INVALID_ARGUMENT);
    lcow_vhdx_reader_free(r);
    free(m.data);
}

static void usage_of_a_fresh_disk_matches_the_formatter(void **state)
{
    (void)state;
    mem_io m;
    memset(&m, 0, sizeof m);
    lcow_vhdx_io io = mem_io_of(&m);
    lcow_vhdx_params p = {.geometry = {.size_bytes = DISK}};
    lcow_vhdx_writer *w;
    lcow_error err;
    assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
    lcow_block_sink *sink;
    lcow_ext4_layout L;
    assert_int_equal(lcow_block_sink_vhdx(w, DISK, false, &sink, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_format(sink, NULL, &L, &err), LCOW_OK);
    assert_int_equal(lcow_block_sink_finish(sink, &err), LCOW_OK);
    lcow_block_sink_free(sink);
    lcow_vhdx_writer_free(w);
    lcow_vhdx_reader *r;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    lcow_ext4_view_usage u;
    assert_int_equal(lcow_ext4_view_usage_of(r, &u, &err), LCOW_OK);
    lcow_vhdx_reader_free(r);
    assert_int_equal(u.block_size, 4096);
    /* As df: the formatter's overhead (superblock and GDT copies, bitmaps,
     * inode tables) is neither size nor use; root and lost+found are used. */
    assert_int_equal(u.total_bytes, (L.block_count - L.overhead_blocks) * 4096);
    assert_int_equal(u.used_bytes, (L.block_count - L.overhead_blocks - L.free_blocks) * 4096);
    assert_true(u.used_bytes > 0 && u.used_bytes < 64 * 1024);
    assert_int_equal(u.total_inodes, L.inode_count);
    assert_int_equal(u.used_inodes, L.inode_count - L.free_inodes);
    free(m.data);
}

/* ---- the filled-and-emptied fixture ---- */

static char *fixture_file(const char *name)
{
    const char *dir = getenv("LCOW_COMPACT_FIXTURE");
    return dir && *dir ? lcow_path_join(dir, name) : NULL;
}

static uint64_t read_number(const char *name)
{
    char *path = fixture_file(name);
    assert_non_null(path);
    FILE *f = fopen(path, "rb");
    free(path);
    assert_non_null(f);
    uint64_t v = 0;
    assert_int_equal(fscanf(f, "%" SCNu64, &v), 1);
    fclose(f);
    return v;
}

static void copy_file(const char *from, const char *to)
{
    lcow_error err;
    lcow_file *in, *out;
    test_remove(to);
    assert_int_equal(lcow_file_open(from, LCOW_OPEN_READ, &in, &err), LCOW_OK);
    assert_int_equal(
        lcow_file_open(to, LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &out, &err),
        LCOW_OK);
    uint8_t *buf = malloc(MiB);
    assert_non_null(buf);
    for (uint64_t off = 0;; off += MiB) {
        size_t got = 0;
        assert_int_equal(lcow_file_pread(in, buf, MiB, off, &got, &err), LCOW_OK);
        if (!got)
            break;
        assert_int_equal(lcow_file_pwrite(out, buf, got, off, &err), LCOW_OK);
    }
    free(buf);
    lcow_file_close(in);
    lcow_file_close(out);
}

static void a_filled_and_emptied_disk_gives_back_the_deleted_bytes(void **state)
{
    (void)state;
    char *src = fixture_file("filled.vhdx");
    if (!src) {
        print_message("LCOW_COMPACT_FIXTURE not set: tests/disk/compact-fixture.sh needs "
                      "qemu-img, debugfs and mkfs.ext4 on the build host; skipped\n");
        skip();
    }
    uint64_t freed = read_number("FREED");
    char *dst = fixture_file("compacted.vhdx");
    copy_file(src, dst);
    lcow_file *f;
    lcow_error err;
    assert_int_equal(lcow_file_open(dst, LCOW_OPEN_READ | LCOW_OPEN_WRITE, &f, &err), LCOW_OK);
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    snapshot before, after;
    take(&io, &before);
    lcow_vhdx_reader *r;
    lcow_ext4_view_usage u0, u1;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_view_usage_of(r, &u0, &err), LCOW_OK);
    lcow_vhdx_reader_free(r);
    lcow_compact_report rep;
    if (lcow_compact_vhdx(&io, &rep, NULL, NULL, &err) != LCOW_OK)
        fail_msg("compact: %s", err.message);
    print_message("compact: %llu -> %llu bytes (%llu deleted), %llu blocks freed, %llu moved\n",
                  (unsigned long long)rep.bytes_before, (unsigned long long)rep.bytes_after,
                  (unsigned long long)freed, (unsigned long long)rep.blocks_freed,
                  (unsigned long long)rep.blocks_moved);
    assert_true(rep.bytes_before - rep.bytes_after >= freed / 10 * 9);
    uint64_t size;
    assert_int_equal(lcow_file_size(f, &size, &err), LCOW_OK);
    assert_int_equal(size, rep.bytes_after);
    take(&io, &after);
    assert_same(&before, &after);
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_view_usage_of(r, &u1, &err), LCOW_OK);
    lcow_vhdx_reader_free(r);
    assert_memory_equal(&u0, &u1, sizeof u0);
    /* Four files kept (48 MiB and two small ones, with their extent and
     * directory blocks) in an otherwise empty filesystem. */
    assert_true(u1.used_bytes >= 48ull * MiB && u1.used_bytes < 49ull * MiB);
    assert_int_equal(u1.used_inodes, 11 + 4);
    lcow_file_close(f);
    drop(&before);
    drop(&after);
    free(src);
    free(dst);
}

/* Stops after each durable step of the fixture's compaction and leaves the
 * disk as crash-<n>.vhdx for compact-check.sh. */
static void the_fixture_survives_a_crash_after_each_step(void **state)
{
    (void)state;
    char *src = fixture_file("filled.vhdx");
    if (!src) {
        print_message("LCOW_COMPACT_FIXTURE not set; skipped\n");
        skip();
    }
    snapshot before;
    {
        lcow_file *f;
        lcow_error err;
        assert_int_equal(lcow_file_open(src, LCOW_OPEN_READ, &f, &err), LCOW_OK);
        lcow_vhdx_io io = lcow_vhdx_io_file(f);
        take(&io, &before);
        lcow_file_close(f);
    }
    for (int n = 1; n < 20; n++) {
        char name[32];
        snprintf(name, sizeof name, "crash-%d.vhdx", n);
        char *dst = fixture_file(name);
        copy_file(src, dst);
        lcow_file *f;
        lcow_error err;
        assert_int_equal(lcow_file_open(dst, LCOW_OPEN_READ | LCOW_OPEN_WRITE, &f, &err), LCOW_OK);
        lcow_vhdx_io io = lcow_vhdx_io_file(f);
        stop_ctx sc = {n, 0};
        lcow_code rc = lcow_compact_vhdx(&io, NULL, stop_step, &sc, &err);
        snapshot after;
        take(&io, &after);
        assert_same(&before, &after);
        drop(&after);
        lcow_file_close(f);
        if (rc == LCOW_OK) {
            test_remove(dst); /* the last one ran to the end: compacted.vhdx has it */
            free(dst);
            break;
        }
        assert_int_equal(rc, LCOW_UNAVAILABLE);
        free(dst);
    }
    drop(&before);
    free(src);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_fresh_disk_is_left_untouched),
        cmocka_unit_test(junk_in_free_space_comes_back),
        cmocka_unit_test(kept_blocks_move_into_the_holes),
        cmocka_unit_test(a_crash_after_any_step_leaves_a_valid_disk),
        cmocka_unit_test(an_unclean_filesystem_is_refused),
        cmocka_unit_test(not_ext4_is_refused),
        cmocka_unit_test(usage_of_a_fresh_disk_matches_the_formatter),
        cmocka_unit_test(a_filled_and_emptied_disk_gives_back_the_deleted_bytes),
        cmocka_unit_test(the_fixture_survives_a_crash_after_each_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

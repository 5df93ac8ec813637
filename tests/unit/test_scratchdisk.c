/* lcow_scratch_disk_create: options, backend choice (auto falls back to the
 * native writer with one log line where virtdisk cannot run), cleanup on
 * failure, and the finished sandbox.vhdx checked by our reader and natively
 * by qemu-img and e2fsck. It also exports images into
 * $LCOW_TEST_TMP/export for tests/disk/check-images.sh, which validates the
 * Windows-built writer's output with the Linux tools. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/blocksink.h"
#include "core/disk/ext4.h"
#include "core/base/log.h"
#include "core/disk/scratchdisk.h"
#include "core/disk/vhdx.h"
#include "disk/disk_test_util.h"
#include "unit/testlib.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

typedef struct log_capture {
    int lines;
    char last[512];
} log_capture;

static void capture(void *ctx, lcow_log_level level, const char *line)
{
    log_capture *c = ctx;
    if (strstr(line, "scratch disks:")) {
        c->lines++;
        snprintf(c->last, sizeof c->last, "%s", line);
    }
}

static void bad_options_are_refused_before_touching_the_path(void **state)
{
    char *path = test_path("bad.vhdx");
    test_remove(path);
    lcow_error err;
    lcow_scratch_disk_options cases[] = {
        {.geometry.size_bytes = GiB / 2},
        {.geometry.size_bytes = GiB + 512},
        {.geometry.size_bytes = (64ull << 40) + 4096},
        {.geometry.size_bytes = 20 * GiB, .geometry.block_size = 3 * MiB},
        {.geometry.size_bytes = 20 * GiB, .geometry.logical_sector_size = 1024},
        {.geometry.size_bytes = 20 * GiB, .backend = (lcow_scratch_backend)42},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(lcow_scratch_disk_create(path, &cases[i], &err), LCOW_INVALID_ARGUMENT);
        assert_false(test_exists(path));
    }
    free(path);
}

/* Opens path with our reader and checks the ext4 superblock inside. */
static void verify_scratch(const char *path, uint64_t size, uint32_t block)
{
    lcow_error err;
    lcow_file *f;
    assert_int_equal(lcow_file_open(path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_vhdx_reader *r;
    if (lcow_vhdx_reader_open(&io, &r, &err))
        fail_msg("%s: %s", path, err.message);
    assert_int_equal(lcow_vhdx_reader_info(r)->virtual_size, size);
    assert_int_equal(lcow_vhdx_reader_info(r)->block_size, block);
    lcow_vhdx_check_report rep;
    assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
    assert_int_equal(rep.absent_blocks, 0); /* absent blocks are ZERO, see disk-format.md */
    uint8_t sb[1024];
    assert_int_equal(lcow_vhdx_reader_read(r, 1024, sb, sizeof sb, &err), LCOW_OK);
    assert_int_equal(sb[0x38] | sb[0x39] << 8, 0xef53);
    lcow_ext4_layout L;
    assert_int_equal(lcow_ext4_plan(size, &L, &err), LCOW_OK);
    uint32_t blocks =
        (uint32_t)sb[4] | (uint32_t)sb[5] << 8 | (uint32_t)sb[6] << 16 | (uint32_t)sb[7] << 24;
    assert_int_equal(blocks, (uint32_t)L.block_count);
    lcow_vhdx_reader_free(r);
    lcow_file_close(f);
}

static void native_20g_is_17_mib_and_valid(void **state)
{
    char *path = test_path("sandbox.vhdx");
    test_remove(path);
    lcow_error err;
    lcow_scratch_disk_options o = {.geometry.size_bytes = 20 * GiB, .backend = LCOW_SCRATCH_NATIVE};
    assert_int_equal(lcow_scratch_disk_create(path, &o, &err), LCOW_OK);
    /* 4 MiB of headers, metadata and BAT + 13 payload blocks. */
    assert_int_equal(test_file_size(path), 17 * MiB);
    verify_scratch(path, 20 * GiB, 1u << 20);
    /* The path must not exist; the existing file is left alone. */
    assert_int_equal(lcow_scratch_disk_create(path, &o, &err), LCOW_ALREADY_EXISTS);
    assert_int_equal(test_file_size(path), 17 * MiB);
    test_remove(path);
    free(path);
}

static void codes_survive_a_null_error_record_and_4k_sectors_work(void **state)
{
    char *path = test_path("null-err.vhdx");
    test_remove(path);
    lcow_scratch_disk_options o = {.geometry.size_bytes = 2 * GiB,
                                   .geometry.logical_sector_size = 4096,
                                   .geometry.physical_sector_size = 4096,
                                   .backend = LCOW_SCRATCH_NATIVE};
    assert_int_equal(lcow_scratch_disk_create(path, &o, NULL), LCOW_OK);
    verify_scratch(path, 2 * GiB, 1u << 20);
    assert_int_equal(lcow_scratch_disk_create(path, &o, NULL), LCOW_ALREADY_EXISTS);
    test_remove(path);
    if (lcow_os_fault_arm(LCOW_OS_OP_WRITE, 3, LCOW_FAULT_ENOSPC, false)) {
        assert_int_equal(lcow_scratch_disk_create(path, &o, NULL), LCOW_RESOURCE_EXHAUSTED);
        lcow_os_fault_clear();
        assert_false(test_exists(path));
    }
    o.geometry.size_bytes = 1;
    assert_int_equal(lcow_scratch_disk_create(path, &o, NULL), LCOW_INVALID_ARGUMENT);
    free(path);
}

static void auto_falls_back_with_one_log_line(void **state)
{
    log_capture cap = {0};
    lcow_log_set_sink(capture, &cap);
    char *a = test_path("auto-a.vhdx"), *b = test_path("auto-b.vhdx");
    test_remove(a);
    test_remove(b);
    lcow_error err;
    lcow_scratch_disk_options o = {.geometry.size_bytes = 1 * GiB}; /* backend AUTO */
    assert_int_equal(lcow_scratch_disk_create(a, &o, &err), LCOW_OK);
    assert_int_equal(lcow_scratch_disk_create(b, &o, &err), LCOW_OK);
    lcow_log_set_sink(NULL, NULL);
    /* Natively and under Wine virtdisk is unusable: native writer, one line. */
    assert_int_equal(cap.lines, 1);
    assert_non_null(strstr(cap.last, "native VHDX writer"));
    verify_scratch(a, 1 * GiB, 1u << 20);
    verify_scratch(b, 1 * GiB, 1u << 20);
    /* Forcing virtdisk where it cannot run is an error, not a crash. */
    test_remove(a);
    o.backend = LCOW_SCRATCH_VIRTDISK;
    assert_int_equal(lcow_scratch_disk_create(a, &o, &err), LCOW_NOT_IMPLEMENTED);
    assert_non_null(strstr(err.message, "virtdisk"));
    assert_false(test_exists(a));
    test_remove(b);
    free(a);
    free(b);
}

static void write_failure_leaves_nothing(void **state)
{
    char *path = test_path("fail.vhdx");
    lcow_error err;
    lcow_scratch_disk_options o = {.geometry.size_bytes = 20 * GiB, .backend = LCOW_SCRATCH_NATIVE};
    const lcow_os_op ops[] = {LCOW_OS_OP_WRITE, LCOW_OS_OP_TRUNCATE, LCOW_OS_OP_SYNC};
    if (!lcow_os_fault_arm(LCOW_OS_OP_WRITE, 1000000, LCOW_FAULT_EIO, false))
        skip(); /* built without LCOW_FAULT_INJECTION (release) */
    lcow_os_fault_clear();
    for (size_t i = 0; i < 3; i++) {
        /* Count the calls of a clean run, then fail each one in turn. */
        test_remove(path);
        lcow_os_fault_clear();
        assert_int_equal(lcow_scratch_disk_create(path, &o, &err), LCOW_OK);
        unsigned calls = lcow_os_fault_calls(ops[i]);
        assert_true(calls >= 1);
        for (unsigned nth = 1; nth <= calls; nth++) {
            test_remove(path);
            assert_true(lcow_os_fault_arm(ops[i], nth, LCOW_FAULT_ENOSPC, false));
            lcow_code rc = lcow_scratch_disk_create(path, &o, &err);
            lcow_os_fault_clear();
            assert_int_equal(rc, LCOW_RESOURCE_EXHAUSTED);
            assert_non_null(strstr(err.message, "fail.vhdx"));
            assert_false(test_exists(path));
        }
    }
    free(path);
}

static void qemu_and_e2fsck_accept_the_disk(void **state)
{
    const char *qemu = tool("LCOW_QEMU_IMG"), *e2fsck = tool("LCOW_E2FSCK");
    if (!qemu || !e2fsck)
        skip();
    const uint64_t sizes[] = {1 * GiB, 20 * GiB};
    char *vhdx = test_path("q.vhdx"), *raw = test_path("q.raw");
    for (size_t i = 0; i < 2; i++) {
        test_remove(vhdx);
        test_remove(raw);
        lcow_error err;
        lcow_scratch_disk_options o = {.geometry.size_bytes = sizes[i],
                                       .backend = LCOW_SCRATCH_NATIVE};
        assert_int_equal(lcow_scratch_disk_create(vhdx, &o, &err), LCOW_OK);
        char *out;
        int rc = run_cmd(&out, "'%s' check -f vhdx '%s'", qemu, vhdx);
        if (rc || !strstr(out, "No errors were found"))
            fail_msg("qemu-img check: %s", out);
        free(out);
        /* qemu reads the whole disk (its vhdx driver has no block status). */
        rc = run_cmd(&out, "'%s' convert -f vhdx -O raw '%s' '%s' && '%s' -fn '%s'", qemu, vhdx,
                     raw, e2fsck, raw);
        int lines = 0;
        for (const char *p = out; p && *p; p++)
            lines += *p == '\n';
        if (rc || lines > 7)
            fail_msg("qemu-img convert + e2fsck -fn: rc %d\n%s", rc, out);
        free(out);
    }
    test_remove(vhdx);
    test_remove(raw);
    free(vhdx);
    free(raw);
}

/* Leaves images for tests/disk/check-images.sh: the point is the Windows
 * build, whose output Linux tools cannot see from inside Wine. */
static void export_images_for_external_checks(void **state)
{
    char *dir = test_path("export");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir_all(dir, &err), LCOW_OK);
    char *manifest_path = lcow_path_join(dir, "MANIFEST");
    FILE *manifest = fopen(manifest_path, "wb"); /* LF on Windows too */
    assert_non_null(manifest);
    const struct {
        const char *name;
        uint64_t size;
        uint32_t block;
    } disks[] = {{"scratch-1g.vhdx", 1 * GiB, 1u << 20},
                 {"scratch-20g.vhdx", 20 * GiB, 1u << 20},
                 {"scratch-5g-32m.vhdx", 5 * GiB, 32u << 20}};
    for (size_t i = 0; i < 3; i++) {
        char *p = lcow_path_join(dir, disks[i].name);
        test_remove(p);
        lcow_scratch_disk_options o = {.geometry.size_bytes = disks[i].size,
                                       .geometry.block_size = disks[i].block,
                                       .backend = LCOW_SCRATCH_NATIVE};
        assert_int_equal(lcow_scratch_disk_create(p, &o, &err), LCOW_OK);
        fprintf(manifest, "vhdx-ext4 %s %llu %u\n", disks[i].name,
                (unsigned long long)disks[i].size, disks[i].block);
        free(p);
    }
    /* A raw ext4 image from the raw-file sink. */
    char *p = lcow_path_join(dir, "ext4-5g.img");
    test_remove(p);
    lcow_file *f;
    assert_int_equal(lcow_file_open(p, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &f, &err), LCOW_OK);
    lcow_block_sink *sink;
    assert_int_equal(lcow_block_sink_raw_file(f, 5 * GiB, true, &sink, &err), LCOW_OK);
    assert_int_equal(lcow_ext4_format(sink, NULL, NULL, &err), LCOW_OK);
    assert_int_equal(lcow_block_sink_finish(sink, &err), LCOW_OK);
    lcow_block_sink_free(sink);
    lcow_file_close(f);
    fprintf(manifest, "raw-ext4 ext4-5g.img %llu 0\n", (unsigned long long)(5 * GiB));
    free(p);
    fclose(manifest);
    free(manifest_path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_options_are_refused_before_touching_the_path),
        cmocka_unit_test(native_20g_is_17_mib_and_valid),
        cmocka_unit_test(codes_survive_a_null_error_record_and_4k_sectors_work),
        cmocka_unit_test(auto_falls_back_with_one_log_line),
        cmocka_unit_test(write_failure_leaves_nothing),
        cmocka_unit_test(qemu_and_e2fsck_accept_the_disk),
        cmocka_unit_test(export_images_for_external_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

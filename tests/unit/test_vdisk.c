/* The virtdisk backend's sequence against a fake virtdisk: create, attach,
 * format through the device, flush, detach; and every failure point leaves
 * nothing behind (device closed, disk detached and closed, file removed).
 * Runs natively, under ASan and under Wine, where the real virtdisk cannot.
 * On Windows it also checks that the real table is refused under Wine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/blocksink.h"
#include "core/disk/vdisk.h"

#define GiB (1ull << 30)

typedef enum step {
    STEP_NONE,
    STEP_CREATE,
    STEP_ATTACH,
    STEP_OPEN,
    STEP_WRITE, /* the first device write */
    STEP_FLUSH,
    STEP_DETACH,
    STEP_COUNT,
} step;

typedef struct fake {
    step fail_at;
    bool fail_cleanup; /* detach and remove fail during cleanup too */
    bool exists, attached, open_disk, device_open;
    unsigned writes; /* 4 KiB blocks */
    unsigned flushes, detaches, removes;
    uint64_t last_size;
    lcow_disk_geometry params;
    char log[256];
} fake;

static void note(fake *f, const char *what)
{
    strncat(f->log, what, sizeof f->log - strlen(f->log) - 1);
    strncat(f->log, " ", sizeof f->log - strlen(f->log) - 1);
}

static lcow_code failed(lcow_error *err, const char *what)
{
    return lcow_error_set(err, LCOW_INTERNAL, "%s failed (fake)", what);
}

static lcow_code f_create(void *ctx, const char *path, const lcow_disk_geometry *p, void **disk,
                          lcow_error *err)
{
    fake *f = ctx;
    note(f, "create");
    if (f->fail_at == STEP_CREATE)
        return failed(err, "CreateVirtualDisk");
    f->params = *p;
    f->exists = f->open_disk = true;
    *disk = f;
    return LCOW_OK;
}

static lcow_code f_attach(void *ctx, void *disk, lcow_error *err)
{
    fake *f = ctx;
    assert_ptr_equal(disk, f);
    note(f, "attach");
    if (f->fail_at == STEP_ATTACH)
        return failed(err, "AttachVirtualDisk");
    f->attached = true;
    return LCOW_OK;
}

static lcow_code dev_write(void *ctx, uint64_t off, const void *buf, size_t len, lcow_error *err)
{
    fake *f = ctx;
    assert_true(f->attached);
    assert_int_equal(off % f->params.logical_sector_size, 0);
    if (f->fail_at == STEP_WRITE)
        return failed(err, "WriteFile");
    f->writes += (unsigned)(len / 4096);
    return LCOW_OK;
}

static lcow_code dev_flush(void *ctx, lcow_error *err)
{
    fake *f = ctx;
    note(f, "flush");
    if (f->fail_at == STEP_FLUSH)
        return failed(err, "FlushFileBuffers");
    f->flushes++;
    return LCOW_OK;
}

/* The device sink wraps a callback sink and marks the device closed when
 * freed, like the real table's CloseHandle. */
typedef struct dev_sink {
    lcow_block_sink base;
    lcow_block_sink *inner;
    fake *f;
} dev_sink;

static lcow_code ds_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                          lcow_error *err)
{
    return lcow_block_sink_write(((dev_sink *)s)->inner, off, buf, len, err);
}

static lcow_code ds_finish(lcow_block_sink *s, lcow_error *err)
{
    return lcow_block_sink_finish(((dev_sink *)s)->inner, err);
}

static void ds_destroy(lcow_block_sink *s)
{
    dev_sink *d = (dev_sink *)s;
    note(d->f, "close-device");
    d->f->device_open = false;
    lcow_block_sink_free(d->inner);
    free(d);
}

static const lcow_block_sink_ops ds_ops = {ds_write, ds_finish, ds_destroy};

static lcow_code f_open_device(void *ctx, void *disk, uint64_t size, uint32_t sector_size,
                               lcow_block_sink **sink, lcow_error *err)
{
    fake *f = ctx;
    note(f, "open-device");
    if (f->fail_at == STEP_OPEN)
        return failed(err, "CreateFileW(PhysicalDrive)");
    dev_sink *d = calloc(1, sizeof *d);
    assert_int_equal(lcow_block_sink_callback(dev_write, dev_flush, f, size, &d->inner, err),
                     LCOW_OK);
    d->base.ops = &ds_ops;
    d->base.size = size;
    d->f = f;
    f->device_open = true;
    f->last_size = size;
    *sink = &d->base;
    return LCOW_OK;
}

static lcow_code f_detach(void *ctx, void *disk, lcow_error *err)
{
    fake *f = ctx;
    note(f, "detach");
    f->detaches++;
    assert_false(f->device_open); /* never detach under an open device */
    if (f->fail_at == STEP_DETACH || (f->fail_cleanup && f->fail_at != STEP_NONE))
        return failed(err, "DetachVirtualDisk");
    f->attached = false;
    return LCOW_OK;
}

static void f_close(void *ctx, void *disk)
{
    fake *f = ctx;
    note(f, "close");
    f->open_disk = false;
}

static lcow_code f_remove(void *ctx, const char *path, lcow_error *err)
{
    fake *f = ctx;
    note(f, "remove");
    f->removes++;
    assert_false(f->open_disk);
    if (f->fail_cleanup)
        return failed(err, "DeleteFileW");
    f->exists = false;
    return LCOW_OK;
}

static lcow_vdisk_ops fake_ops(fake *f)
{
    lcow_vdisk_ops ops = {f, f_create, f_attach, f_open_device, f_detach, f_close, f_remove};
    return ops;
}

static const lcow_disk_geometry params20 = {20 * GiB, 1u << 20, 512, 4096};

static void happy_path_formats_through_the_attached_disk(void **state)
{
    fake f = {0};
    lcow_vdisk_ops ops = fake_ops(&f);
    lcow_error err;
    assert_int_equal(lcow_vdisk_create_scratch(&ops, "C:\\s\\sandbox.vhdx", &params20, &err),
                     LCOW_OK);
    assert_string_equal(f.log, "create attach open-device flush close-device detach close ");
    assert_true(f.exists);
    assert_false(f.attached || f.open_disk || f.device_open);
    assert_int_equal(f.writes, 30); /* the ext4 blocks of a 20 GiB disk */
    assert_int_equal(f.flushes, 1);
    assert_int_equal(f.last_size, 20 * GiB);
    assert_int_equal(f.params.block_size, 1u << 20);
    assert_int_equal(f.removes, 0);
}

static void every_failure_cleans_up(void **state)
{
    for (int cleanup_fails = 0; cleanup_fails < 2; cleanup_fails++) {
        for (step s = STEP_CREATE; s < STEP_COUNT; s++) {
            fake f = {.fail_at = s, .fail_cleanup = cleanup_fails};
            lcow_vdisk_ops ops = fake_ops(&f);
            lcow_error err;
            lcow_code rc = lcow_vdisk_create_scratch(&ops, "C:\\s\\x.vhdx", &params20, &err);
            assert_int_equal(rc, LCOW_INTERNAL);
            assert_non_null(strstr(err.message, "(fake)"));
            assert_non_null(strstr(err.message, "x.vhdx"));
            assert_false(f.device_open);
            assert_false(f.open_disk);
            if (s == STEP_CREATE) {
                /* Nothing was created, so nothing to undo. */
                assert_string_equal(f.log, "create ");
                continue;
            }
            assert_int_equal(f.removes, 1);
            if (!cleanup_fails) {
                assert_false(f.exists);
                assert_true(f.attached == (s == STEP_DETACH));
            }
            /* Detached once on the way out when attach had succeeded (a failed
             * detach is not retried). */
            assert_int_equal(f.detaches, s == STEP_ATTACH ? 0 : 1);
        }
    }
}

static void real_table_is_refused_under_wine(void **state)
{
    char why[160] = "";
    bool usable = lcow_vdisk_usable(why, sizeof why);
#ifdef _WIN32
    assert_non_null(lcow_vdisk_system());
    const char *wine = getenv("LCOW_UNDER_WINE");
    if (wine && *wine == '1') {
        assert_false(usable);
        assert_non_null(strstr(why, "Wine"));
    }
#else
    assert_false(usable);
    assert_null(lcow_vdisk_system());
    assert_non_null(strstr(why, "Windows"));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(happy_path_formats_through_the_attached_disk),
        cmocka_unit_test(every_failure_cleans_up),
        cmocka_unit_test(real_table_is_refused_under_wine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

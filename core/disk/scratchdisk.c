/* lcow_scratch_disk_create: option checks, backend choice, and the native
 * backend (VHDX writer + ext4 formatter, no VM, no virtdisk). */
#include "core/disk/scratchdisk.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/disk/blocksink.h"
#include "core/disk/ext4.h"
#include "core/base/log.h"
#include "core/os/os.h"
#include "core/disk/vdisk.h"
#include "core/disk/vhdx.h"

/* The one check of a scratch disk's options: the ext4 formatter's size
 * range here, the VHDX geometry (with its defaults filled in) by
 * lcow_vhdx_params_normalize; both backends then get o->geometry as it is. */
static lcow_code check_options(const lcow_scratch_disk_options *in, lcow_scratch_disk_options *o,
                               lcow_error *err)
{
    *o = *in;
    uint64_t size = o->geometry.size_bytes;
    if (size < LCOW_EXT4_MIN_SIZE || size > LCOW_EXT4_MAX_SIZE || size % 4096)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "scratch disk size %llu is not a multiple of 4 KiB between 1 GiB "
                              "and 64 TiB",
                              (unsigned long long)size);
    lcow_vhdx_params p = {.geometry = in->geometry}, checked;
    lcow_code rc = lcow_vhdx_params_normalize(&p, &checked, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "scratch disk");
    o->geometry = checked.geometry;
    if (o->backend != LCOW_SCRATCH_AUTO && o->backend != LCOW_SCRATCH_NATIVE &&
        o->backend != LCOW_SCRATCH_VIRTDISK)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "unknown scratch backend %d",
                              (int)o->backend);
    return LCOW_OK;
}

/* The native writer into an open, empty file. */
static lcow_code write_native(lcow_file *f, const lcow_scratch_disk_options *o, lcow_error *err)
{
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_vhdx_params p = {.geometry = o->geometry};
    lcow_vhdx_writer *w = NULL;
    lcow_block_sink *sink = NULL;
    lcow_code rc;
    if (!(rc = lcow_vhdx_writer_create(&io, &p, &w, err)) &&
        !(rc = lcow_block_sink_vhdx(w, o->geometry.size_bytes, true, &sink, err)) &&
        !(rc = lcow_ext4_format(sink, NULL, NULL, err)))
        rc = lcow_block_sink_finish(sink, err);
    lcow_block_sink_free(sink);
    lcow_vhdx_writer_free(w);
    return rc;
}

static lcow_code create_native(const char *path, const lcow_scratch_disk_options *o,
                               lcow_error *err)
{
    lcow_file *f = NULL;
    lcow_code rc = lcow_file_open(
        path, LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &f, err);
    if (rc)
        return rc;
    rc = write_native(f, o, err);
    lcow_file_close(f);
    if (rc) {
        lcow_error rerr;
        if (lcow_os_remove(path, &rerr))
            LCOW_LOGW("scratch disk: cleanup: %s", rerr.message);
        return lcow_error_wrap_code(err, rc, "create scratch disk %s", path);
    }
    return LCOW_OK;
}

static lcow_code create_virtdisk(const char *path, const lcow_scratch_disk_options *o,
                                 lcow_error *err)
{
    return lcow_vdisk_create_scratch(lcow_vdisk_system(), path, &o->geometry, err);
}

lcow_code lcow_scratch_disk_create(const char *path, const lcow_scratch_disk_options *opts,
                                   lcow_error *err)
{
    lcow_scratch_disk_options o;
    lcow_code rc = check_options(opts, &o, err);
    if (rc)
        return rc;
    char why[160];
    switch (o.backend) {
    case LCOW_SCRATCH_NATIVE:
        return create_native(path, &o, err);
    case LCOW_SCRATCH_VIRTDISK:
        if (!lcow_vdisk_usable(why, sizeof why))
            return lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                                  "scratch backend virtdisk is unavailable: %s", why);
        return create_virtdisk(path, &o, err);
    default:
        break;
    }
    /* auto: virtdisk where it works, else the native writer. One log line per
     * process explains the choice. */
    static atomic_bool logged;
    if (!lcow_vdisk_usable(why, sizeof why)) {
        if (!atomic_exchange(&logged, true))
            LCOW_LOGI("scratch disks: virtdisk unavailable (%s); using the native VHDX writer",
                      why);
        return create_native(path, &o, err);
    }
    rc = create_virtdisk(path, &o, err);
    if (rc == LCOW_UNAVAILABLE) {
        /* e.g. no privilege to attach: the native writer needs none. */
        LCOW_LOGW("scratch disks: virtdisk failed (%s); using the native VHDX writer",
                  err ? err->message : "unavailable");
        return create_native(path, &o, err);
    }
    return rc;
}

lcow_code lcow_scratch_disk_create_in(lcow_dir *dir, const char *name,
                                      const lcow_scratch_disk_options *opts, lcow_error *err)
{
    lcow_scratch_disk_options o;
    lcow_code rc = check_options(opts, &o, err);
    if (rc)
        return rc;
    char why[160];
    bool native = o.backend == LCOW_SCRATCH_NATIVE ||
                  (o.backend == LCOW_SCRATCH_AUTO && !lcow_vdisk_usable(why, sizeof why));
    if (!native) {
        /* virtdisk takes a path: the held directory cannot move (Windows,
         * the only place virtdisk exists), so its path names it. */
        char *path = lcow_path_join(lcow_dir_path(dir), name);
        if (!path)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "scratch disk: out of memory");
        rc = lcow_scratch_disk_create(path, &o, err);
        free(path);
        return rc;
    }
    lcow_file *f = NULL;
    rc = lcow_dir_file_open(
        dir, name, LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &f,
        err);
    if (rc)
        return rc;
    rc = write_native(f, &o, err);
    lcow_file_close(f);
    if (rc) {
        lcow_error rerr;
        if (lcow_dir_remove(dir, name, &rerr))
            LCOW_LOGW("scratch disk: cleanup: %s", rerr.message);
        return lcow_error_wrap_code(err, rc, "create scratch disk %s in %s", name,
                                    lcow_dir_path(dir));
    }
    return LCOW_OK;
}

/* The virtdisk scratch backend: create a dynamic VHDX with the Windows
 * virtdisk API, attach it without a drive letter, format it with the
 * in-process ext4 formatter through the attached disk's handle, detach.
 *
 * Every virtdisk call goes through lcow_vdisk_ops, so the sequence and all
 * of its error and cleanup paths run in unit tests (natively and under Wine)
 * against a fake. The real table (vdisk_win.c) needs a Windows host with
 * virtdisk: Wine 8 implements CreateVirtualDisk as a stub that kills the
 * calling process, so lcow_vdisk_usable() says no there without calling it. */
#ifndef LCOW_VDISK_H
#define LCOW_VDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/disk/blocksink.h"
#include "core/base/errors.h"
#include "core/disk/geometry.h"

typedef struct lcow_vdisk_ops {
    void *ctx;
    /* Creates a new dynamic VHDX at path (UTF-8) and opens it: *disk. */
    lcow_code (*create)(void *ctx, const char *path, const lcow_disk_geometry *p, void **disk,
                        lcow_error *err);
    /* Attaches it as a raw disk: no drive letter, not mounted. */
    lcow_code (*attach)(void *ctx, void *disk, lcow_error *err);
    /* Opens the attached disk device for writing as a block sink of size
     * bytes; freeing the sink closes the device. */
    lcow_code (*open_device)(void *ctx, void *disk, uint64_t size, uint32_t sector_size,
                             lcow_block_sink **sink, lcow_error *err);
    lcow_code (*detach)(void *ctx, void *disk, lcow_error *err);
    /* Closes the virtual disk handle; never fails. */
    void (*close)(void *ctx, void *disk);
    /* Deletes the file at path (cleanup after a failure). */
    lcow_code (*remove)(void *ctx, const char *path, lcow_error *err);
} lcow_vdisk_ops;

/* The real virtdisk table on Windows; NULL elsewhere. */
const lcow_vdisk_ops *lcow_vdisk_system(void);

/* Whether the real table may be used on this host. When not, why (if
 * non-NULL) receives the reason, e.g. "running under Wine 8.0". Never calls
 * CreateVirtualDisk. */
bool lcow_vdisk_usable(char *why, size_t why_len);

/* create -> attach -> open device -> ext4 format -> flush -> close device ->
 * detach -> close. On any failure: the sink is closed, the disk detached if
 * it was attached, the handle closed and the file removed; the first error
 * is returned (cleanup errors are logged). */
lcow_code lcow_vdisk_create_scratch(const lcow_vdisk_ops *ops, const char *path,
                                    const lcow_disk_geometry *params, lcow_error *err);

#endif

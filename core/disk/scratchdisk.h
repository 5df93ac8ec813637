/* One call that makes a formatted LCOW scratch disk: a dynamic VHDX holding
 * an empty ext4 filesystem equivalent to hcsshim's
 *   mkfs.ext4 -q -E lazy_itable_init=0,nodiscard -O ^has_journal,sparse_super2,^resize_inode
 * built in-process (no utility VM). Backends: the native VHDX writer
 * (core/vhdx + core/ext4) everywhere, or on Windows the virtdisk API
 * (core/disk/vdisk_win.c) with the formatter writing through the disk handle. */
#ifndef LCOW_SCRATCHDISK_H
#define LCOW_SCRATCHDISK_H

#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/geometry.h"
#include "core/os/os.h"

/* How scratch disks are made (--scratch-backend). Declared here, at the
 * bottom, because this module is the one that acts on it; the snapshotter's
 * configuration and the scratch policy pass it down unchanged. */
typedef enum lcow_scratch_backend {
    LCOW_SCRATCH_AUTO = 0, /* virtdisk where it works, else native */
    LCOW_SCRATCH_NATIVE,
    LCOW_SCRATCH_VIRTDISK,
} lcow_scratch_backend;

#define LCOW_SCRATCH_DEFAULT_GB 20u
#define LCOW_SCRATCH_MAX_GB 65536u
#define LCOW_SCRATCH_DEFAULT_BLOCK_MB 1u

typedef struct lcow_scratch_disk_options {
    lcow_disk_geometry geometry;  /* size 1 GiB .. 64 TiB, a multiple of 4 KiB */
    lcow_scratch_backend backend; /* AUTO picks virtdisk only where it works */
} lcow_scratch_disk_options;

/* Creates path, which must not exist, writes the whole disk, fsyncs it. On
 * failure nothing is left at path. Callers that publish the file under a
 * final name create it under a temp name and rename it. */
lcow_code lcow_scratch_disk_create(const char *path, const lcow_scratch_disk_options *opts,
                                   lcow_error *err);
/* The same, as the file name (one component) inside an open directory
 * handle: the native writer creates it with lcow_dir_file_open, so a path
 * swapped meanwhile cannot redirect it (issue 14, item 5); virtdisk (Windows)
 * creates it by path, which the held handle keeps in place. */
lcow_code lcow_scratch_disk_create_in(lcow_dir *dir, const char *name,
                                      const lcow_scratch_disk_options *opts, lcow_error *err);

#endif

/* What an ext4 filesystem inside a VHDX holds, read through lcowsnap's own
 * VHDX reader: the used bytes and inodes (superblock + group descriptors,
 * as df counts them: metadata not included) and which VHDX payload blocks hold any block the
 * block bitmaps mark in use (for core/disk/compact.c).
 *
 * The filesystem is the whole virtual disk (no partition table), as on
 * every LCOW scratch disk. Reads are bounded by one filesystem block at a
 * time, whatever the superblock claims. */
#ifndef LCOW_EXT4_VIEW_H
#define LCOW_EXT4_VIEW_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/vhdx.h"

typedef struct lcow_ext4_view_usage {
    uint64_t block_size;
    /* As df shows them (the kernel's statfs): the filesystem's blocks less
     * its overhead (superblock and GDT copies, bitmaps, inode tables, the
     * journal), and of those the ones not free, in bytes. */
    uint64_t total_bytes;
    uint64_t used_bytes;
    uint64_t total_inodes;
    uint64_t used_inodes;
} lcow_ext4_view_usage;

/* Sums the group descriptors' free counts. INVALID_ARGUMENT when there is
 * no ext4 superblock or it is malformed; NOT_IMPLEMENTED for layouts this
 * reader does not follow (meta_bg). */
lcow_code lcow_ext4_view_usage_of(lcow_vhdx_reader *r, lcow_ext4_view_usage *usage,
                                  lcow_error *err);

/* Sets bit b of used (units bits, zeroed by the caller) for every VHDX
 * payload block b of the disk that holds any byte not provably free: a block
 * the bitmaps mark used, a block of a group whose bitmap is uninitialized
 * (BLOCK_UNINIT) or fails its checksum, and anything outside the
 * filesystem's blocks. Refuses (FAILED_PRECONDITION) a filesystem that was
 * not cleanly unmounted, has errors recorded, or has a journal to recover,
 * because then the bitmaps need not say what the inodes use. */
lcow_code lcow_ext4_view_used_map(lcow_vhdx_reader *r, uint8_t *used, uint64_t units,
                                  lcow_error *err);

#endif

/* In-process ext4 formatter: writes an empty filesystem equivalent to
 *   mkfs.ext4 -q -E lazy_itable_init=0,nodiscard \
 *             -O ^has_journal,sparse_super2,^resize_inode
 * with Debian 12's mke2fs 1.47 and /etc/mke2fs.conf (ext4 profile): 4 KiB
 * blocks, 256-byte inodes, one inode per 16 KiB (32 KiB from 4 TiB, 64 KiB
 * from 16 TiB, like the "big"/"huge" types), 5% reserved, flex_bg 16,
 * metadata_csum, 64bit, backups only in group 1 and the last group.
 *
 * The layout (group count, bitmap and inode-table placement, free counts,
 * flags) is computed by the same rules as libext2fs, so dumpe2fs output
 * matches mke2fs's except for UUID, hash seed, times, checksums and the
 * "lifetime writes" counter (docs/disk-format.md lists the differences).
 *
 * Only blocks that hold non-zero data are written (about 30 for 20 GiB), in
 * ascending order; the sink must read as zero everywhere else. */
#ifndef LCOW_EXT4_H
#define LCOW_EXT4_H

#include <stdbool.h>
#include <stdint.h>

#include "core/disk/blocksink.h"
#include "core/base/errors.h"

#define LCOW_EXT4_MIN_SIZE (1ull << 30)
#define LCOW_EXT4_MAX_SIZE (64ull << 40)

typedef struct lcow_ext4_options {
    uint8_t uuid[16];      /* all zero = random (a fresh UUID per disk) */
    uint8_t hash_seed[16]; /* all zero = random */
    int64_t now;           /* seconds since 1970; 0 = current time */
} lcow_ext4_options;

/* Geometry and what the formatter wrote; filled by plan and format. */
typedef struct lcow_ext4_layout {
    uint64_t block_count; /* 4 KiB blocks */
    uint64_t reserved_blocks;
    uint64_t free_blocks;     /* after root and lost+found */
    uint64_t overhead_blocks; /* superblocks, GDTs, bitmaps, inode tables */
    uint32_t inode_count;
    uint32_t free_inodes;
    uint32_t group_count;
    uint32_t inodes_per_group;
    uint32_t inode_blocks_per_group;
    uint32_t desc_blocks;
    uint32_t backup_groups[2];
    uint32_t inode_ratio;
    uint64_t root_dir_block;
    uint64_t blocks_written; /* non-zero 4 KiB blocks written by format */
} lcow_ext4_layout;

/* Geometry for a disk of size_bytes (1 GiB .. 64 TiB), without any I/O. */
lcow_code lcow_ext4_plan(uint64_t size_bytes, lcow_ext4_layout *layout, lcow_error *err);

/* Formats the whole sink (its size is the filesystem size, rounded down to
 * 4 KiB). opts may be NULL. layout (may be NULL) receives the result. Does
 * not call lcow_block_sink_finish. */
lcow_code lcow_ext4_format(lcow_block_sink *sink, const lcow_ext4_options *opts,
                           lcow_ext4_layout *layout, lcow_error *err);

#endif

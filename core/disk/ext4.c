/* ext4 formatter. Geometry and table placement follow libext2fs 1.47
 * (ext2fs_initialize, ext2fs_allocate_group_table with flex_bg, mke2fs's
 * root and lost+found creation), re-derived from the on-disk results of
 * Debian 12's mke2fs; see docs/disk-format.md. Little-endian throughout. */
#include "core/disk/ext4.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/types.h"
#include "core/disk/byteorder.h"
#include "core/disk/crc32c.h"
#include "core/os/os.h"

#define BLOCK_SIZE 4096u
#define LOG_BLOCK 2u /* 1024 << 2 */
#define INODE_SIZE 256u
#define DESC_SIZE 64u
#define DESC_PER_BLOCK (BLOCK_SIZE / DESC_SIZE)
#define BLOCKS_PER_GROUP 32768u
#define LOG_GROUPS_PER_FLEX 4u
#define FLEX_SIZE (1u << LOG_GROUPS_PER_FLEX)
#define FIRST_INO 11u
#define ROOT_INO 2u
#define LPF_INO 11u
#define LPF_BLOCKS 4u /* mke2fs grows lost+found to 16 KiB */
#define EXTRA_ISIZE 32u

#define COMPAT_EXT_ATTR 0x0008u
#define COMPAT_DIR_INDEX 0x0020u
#define COMPAT_SPARSE_SUPER2 0x0200u
#define INCOMPAT_FILETYPE 0x0002u
#define INCOMPAT_EXTENTS 0x0040u
#define INCOMPAT_64BIT 0x0080u
#define INCOMPAT_FLEX_BG 0x0200u
#define RO_COMPAT_SPARSE_SUPER 0x0001u
#define RO_COMPAT_LARGE_FILE 0x0002u
#define RO_COMPAT_HUGE_FILE 0x0008u
#define RO_COMPAT_DIR_NLINK 0x0020u
#define RO_COMPAT_EXTRA_ISIZE 0x0040u
#define RO_COMPAT_METADATA_CSUM 0x0400u

#define BG_INODE_UNINIT 0x1u
#define BG_BLOCK_UNINIT 0x2u
#define BG_INODE_ZEROED 0x4u

#define EXTENTS_FL 0x80000u

/* ---- used-block set: sorted, merged [start, end) spans ---- */

typedef struct span {
    uint64_t start, end;
} span;

typedef struct spanset {
    span *v;
    size_t n, cap;
} spanset;

/* First span with end > b (n if none). */
static size_t spans_after(const spanset *s, uint64_t b)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].end > b)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static bool spans_mark(spanset *s, uint64_t start, uint64_t count)
{
    uint64_t end = start + count;
    /* First span that touches or follows [start, end). */
    size_t i = spans_after(s, start == 0 ? 0 : start - 1);
    if (i < s->n && s->v[i].end < start)
        i++;
    size_t j = i;
    while (j < s->n && s->v[j].start <= end) {
        if (s->v[j].start < start)
            start = s->v[j].start;
        if (s->v[j].end > end)
            end = s->v[j].end;
        j++;
    }
    if (j > i) { /* merge spans i..j-1 into one */
        s->v[i].start = start;
        s->v[i].end = end;
        memmove(&s->v[i + 1], &s->v[j], (s->n - j) * sizeof(span));
        s->n -= j - i - 1;
        return true;
    }
    if (!lcow_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v))
        return false;
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(span));
    s->v[i].start = start;
    s->v[i].end = end;
    s->n++;
    return true;
}

static bool spans_range_free(const spanset *s, uint64_t b, uint64_t num, uint64_t *skip_to)
{
    size_t i = spans_after(s, b);
    if (i < s->n && s->v[i].start < b + num) {
        *skip_to = s->v[i].end;
        return false;
    }
    return true;
}

/* ---- geometry ---- */

typedef struct group {
    uint64_t block_bitmap, inode_bitmap, inode_table;
    uint32_t free_blocks;
    uint32_t free_inodes;
    uint16_t flags;
    uint16_t used_dirs;
    uint32_t itable_unused;
    uint32_t block_bitmap_csum, inode_bitmap_csum;
} group;

typedef struct fs {
    lcow_ext4_layout L;
    uint32_t blocks_per_group;
    group *groups;
    spanset used;
    uint64_t lpf_block; /* first block of lost+found */
    uint8_t uuid[16], hash_seed[16];
    uint32_t csum_seed;
    uint32_t now;
    uint64_t bytes_written;
} fs;

static uint64_t group_first(const fs *f, uint64_t g)
{
    return g * f->blocks_per_group;
}

static uint64_t group_blocks(const fs *f, uint64_t g)
{
    if (g == f->L.group_count - 1)
        return f->L.block_count - group_first(f, g);
    return f->blocks_per_group;
}

static uint64_t group_last(const fs *f, uint64_t g)
{
    return group_first(f, g) + group_blocks(f, g) - 1;
}

static bool group_has_super(const fs *f, uint64_t g)
{
    return g == 0 || g == f->L.backup_groups[0] || g == f->L.backup_groups[1];
}

static lcow_code plan(fs *f, uint64_t size_bytes, lcow_error *err)
{
    if (size_bytes < LCOW_EXT4_MIN_SIZE || size_bytes > LCOW_EXT4_MAX_SIZE)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "ext4: size %llu is outside 1 GiB .. 64 TiB",
                              (unsigned long long)size_bytes);
    lcow_ext4_layout *L = &f->L;
    memset(L, 0, sizeof *L);
    const uint64_t param_blocks = size_bytes / BLOCK_SIZE;
    /* mke2fs.conf size types: "big" from 4 TiB, "huge" from 16 TiB. */
    const uint64_t meg = (1024 * 1024) / BLOCK_SIZE;
    L->inode_ratio = param_blocks < 4ull * 1024 * 1024 * meg    ? 16384
                     : param_blocks < 16ull * 1024 * 1024 * meg ? 32768
                                                                : 65536;
    uint64_t n_inodes = param_blocks * BLOCK_SIZE / L->inode_ratio;
    if (n_inodes > 0xffffffffull)
        n_inodes = 0xffffffffull; /* 64bit: mke2fs caps at 2^32-1 */
    const uint64_t param_r_blocks = (uint64_t)(5.0 * (double)param_blocks / 100.0);

    uint64_t blocks = param_blocks;
    uint64_t r_blocks = param_r_blocks;
    uint32_t bpg = BLOCKS_PER_GROUP;
    uint64_t groups, ipg, ibpg;
    for (;;) {
        groups = (blocks + bpg - 1) / bpg;
        L->desc_blocks = (uint32_t)((groups + DESC_PER_BLOCK - 1) / DESC_PER_BLOCK);
        uint64_t inodes = n_inodes < FIRST_INO + 1 ? FIRST_INO + 1 : n_inodes;
        ipg = (inodes + groups - 1) / groups;
        if (ipg > BLOCK_SIZE * 8) {
            bpg -= 8; /* libext2fs retries with slightly smaller groups */
            blocks = param_blocks;
            continue;
        }
        for (;;) {
            ibpg = (ipg * INODE_SIZE + BLOCK_SIZE - 1) / BLOCK_SIZE;
            uint64_t fitted = ibpg * BLOCK_SIZE / INODE_SIZE;
            if (fitted < 8)
                fitted = 8;
            fitted &= ~7ull;
            ibpg = (fitted * INODE_SIZE + BLOCK_SIZE - 1) / BLOCK_SIZE;
            if (fitted * groups > 0xffffffffull) {
                ipg--;
                continue;
            }
            ipg = fitted;
            break;
        }
        uint64_t overhead = 3 + ibpg;
        if (overhead + L->desc_blocks >= (uint64_t)bpg * 3 / 4)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "ext4: %llu blocks would need meta_bg, which mke2fs's "
                                  "equivalent here does not use",
                                  (unsigned long long)blocks);
        /* Drop a last group too small for its own metadata (it holds a
         * backup under sparse_super2 when there are more than 2 groups). */
        overhead = 2 + ibpg + 1 + L->desc_blocks;
        uint64_t rem = blocks % bpg;
        if (groups == 1 && rem && rem < overhead)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "ext4: filesystem too small");
        if (rem && rem < overhead + 50) {
            blocks -= rem;
            double ratio = 100.0 * (double)param_r_blocks / (double)param_blocks;
            r_blocks = (uint64_t)(ratio * (double)blocks / 100.0);
            continue;
        }
        break;
    }
    L->block_count = blocks;
    L->reserved_blocks = r_blocks;
    L->group_count = (uint32_t)groups;
    L->inodes_per_group = (uint32_t)ipg;
    L->inode_blocks_per_group = (uint32_t)ibpg;
    L->inode_count = (uint32_t)(ipg * groups);
    f->blocks_per_group = bpg;
    /* sparse_super2 with two backups: group 1 and the last group. */
    uint64_t b0 = 1, b1 = ~0ull;
    if (b0 >= groups)
        b0 = groups - 1;
    if (b1 >= groups)
        b1 = groups - 1;
    if (b1 == b0)
        b1 = 0;
    if (b0 > b1) {
        uint64_t t = b0;
        b0 = b1;
        b1 = t;
    }
    L->backup_groups[0] = (uint32_t)b0;
    L->backup_groups[1] = (uint32_t)b1;
    return LCOW_OK;
}

/* Smallest b in [lo, hi) with [b, b+num) free and inside the filesystem. */
static bool first_fit(const fs *f, uint64_t lo, uint64_t hi, uint64_t num, uint64_t *ret)
{
    uint64_t b = lo;
    while (b < hi && b + num <= f->L.block_count) {
        uint64_t skip;
        if (spans_range_free(&f->used, b, num, &skip)) {
            *ret = b;
            return true;
        }
        b = skip > b + 1 ? skip : b + 1;
    }
    return false;
}

/* ext2fs_get_free_blocks2: candidates start .. finish-1, or, when finish <=
 * start, start .. the end and then 0 .. finish-1. */
static bool get_free_blocks(const fs *f, uint64_t start, uint64_t finish, uint64_t num,
                            uint64_t *ret)
{
    if (!finish)
        finish = start;
    if (finish > start)
        return first_fit(f, start, finish, num, ret);
    return first_fit(f, start, f->L.block_count, num, ret) || first_fit(f, 0, finish, num, ret);
}

static uint64_t flexbg_offset(const fs *f, uint64_t g, uint64_t start_blk, uint64_t rem_grp,
                              uint64_t elem_size)
{
    uint64_t flexbg = g / FLEX_SIZE;
    uint64_t size = rem_grp * elem_size;
    if (size > f->blocks_per_group / 4)
        size = f->blocks_per_group / 4;
    uint64_t first_free = 0;
    /* Keep going from the previous allocation if it still fits. */
    if (start_blk && start_blk < f->L.block_count &&
        get_free_blocks(f, start_blk, start_blk + size, elem_size, &first_free))
        return first_free;
    start_blk = group_first(f, FLEX_SIZE * flexbg);
    uint64_t last_grp = g | (FLEX_SIZE - 1);
    if (last_grp > f->L.group_count - 1)
        last_grp = f->L.group_count - 1;
    uint64_t last_blk = group_last(f, last_grp);
    if (get_free_blocks(f, start_blk, last_blk, size, &first_free))
        return first_free;
    if (get_free_blocks(f, start_blk, last_blk, elem_size, &first_free))
        return first_free;
    if (get_free_blocks(f, 0, last_blk, elem_size, &first_free))
        return first_free;
    return first_free;
}

/* Accounts count blocks at blk to the groups they fall in. */
static void take_blocks(fs *f, uint64_t blk, uint64_t count)
{
    while (count) {
        uint64_t g = blk / f->blocks_per_group;
        uint64_t n = group_last(f, g) - blk + 1;
        if (n > count)
            n = count;
        f->groups[g].free_blocks -= (uint32_t)n;
        f->groups[g].flags &= (uint16_t)~BG_BLOCK_UNINIT;
        blk += n;
        count -= n;
    }
}

static lcow_code alloc_at(fs *f, uint64_t start, uint64_t finish, uint64_t fallback_start,
                          uint64_t num, uint64_t *out, lcow_error *err)
{
    if (!get_free_blocks(f, start, finish, num, out) &&
        !get_free_blocks(f, fallback_start, finish, num, out))
        return lcow_error_set(err, LCOW_INTERNAL, "ext4: no room for group metadata");
    if (!spans_mark(&f->used, *out, num))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    take_blocks(f, *out, num);
    return LCOW_OK;
}

/* ext2fs_allocate_group_table with flex_bg: bitmaps and inode tables of a
 * flex group packed in its first group. */
static lcow_code allocate_group_table(fs *f, uint64_t g, lcow_error *err)
{
    group *gd = &f->groups[g];
    uint64_t group_blk = group_first(f, g);
    uint64_t last_grp = g | (FLEX_SIZE - 1);
    if (last_grp > f->L.group_count - 1)
        last_grp = f->L.group_count - 1;
    uint64_t rem_grps = last_grp - g + 1;
    uint64_t table_offset = FLEX_SIZE;
    uint64_t prev = 0;
    if (g % FLEX_SIZE) {
        prev = f->groups[g - 1].block_bitmap + 1;
    } else if (last_grp == f->L.group_count - 1) {
        /* The last flex group keeps its tables contiguous. */
        table_offset = last_grp & (FLEX_SIZE - 1);
        table_offset = table_offset ? table_offset + 1 : FLEX_SIZE;
    }
    uint64_t start = flexbg_offset(f, g, prev, rem_grps, 1);
    uint64_t last_blk = group_last(f, last_grp);
    lcow_code rc = alloc_at(f, start, last_blk, group_blk, 1, &gd->block_bitmap, err);
    if (rc)
        return rc;

    prev = g % FLEX_SIZE ? f->groups[g - 1].inode_bitmap + 1 : gd->block_bitmap + table_offset;
    start = flexbg_offset(f, g, prev, rem_grps, 1);
    if ((rc = alloc_at(f, start, last_blk, group_blk, 1, &gd->inode_bitmap, err)))
        return rc;

    uint64_t ibpg = f->L.inode_blocks_per_group;
    prev = g % FLEX_SIZE ? f->groups[g - 1].inode_table + ibpg : gd->inode_bitmap + table_offset;
    start = flexbg_offset(f, g, prev, rem_grps, ibpg);
    if (!get_free_blocks(f, start, last_blk, ibpg, &gd->inode_table))
        return lcow_error_set(err, LCOW_INTERNAL, "ext4: no room for inode table of group %llu",
                              (unsigned long long)g);
    if (!spans_mark(&f->used, gd->inode_table, ibpg))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    take_blocks(f, gd->inode_table, ibpg);
    return LCOW_OK;
}

/* First free block at or after goal (ext2fs_new_block2), marked used. */
static lcow_code new_block(fs *f, uint64_t goal, uint64_t *out, lcow_error *err)
{
    uint64_t b;
    if (!get_free_blocks(f, goal, 0, 1, &b))
        return lcow_error_set(err, LCOW_INTERNAL, "ext4: no free block for a directory");
    if (!spans_mark(&f->used, b, 1))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    take_blocks(f, b, 1);
    *out = b;
    return LCOW_OK;
}

static lcow_code layout_groups(fs *f, lcow_error *err)
{
    lcow_ext4_layout *L = &f->L;
    f->groups = calloc(L->group_count, sizeof *f->groups);
    if (!f->groups)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    for (uint64_t g = 0; g < L->group_count; g++) {
        group *gd = &f->groups[g];
        uint64_t used = 0;
        if (group_has_super(f, g)) {
            used = 1 + L->desc_blocks;
            if (!spans_mark(&f->used, group_first(f, g), used))
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
        }
        gd->free_blocks = (uint32_t)(group_blocks(f, g) - used);
        gd->free_inodes = L->inodes_per_group;
        gd->itable_unused = L->inodes_per_group;
        /* Not for the last group: its bitmap needs padding bits on disk. */
        gd->flags = BG_INODE_UNINIT | BG_INODE_ZEROED;
        if (g != L->group_count - 1)
            gd->flags |= BG_BLOCK_UNINIT;
    }
    for (uint64_t g = 0; g < L->group_count; g++) {
        lcow_code rc = allocate_group_table(f, g, err);
        if (rc)
            return rc;
    }
    uint64_t free_blocks = 0;
    for (uint64_t g = 0; g < L->group_count; g++)
        free_blocks += f->groups[g].free_blocks;
    L->overhead_blocks = L->block_count - free_blocks;

    /* Root, then lost+found grown to 16 KiB: first free blocks from the
     * start of flex group 0 (ext2fs_find_inode_goal), contiguous. */
    lcow_code rc = new_block(f, 0, &L->root_dir_block, err);
    if (rc)
        return rc;
    for (unsigned i = 0; i < LPF_BLOCKS && !rc; i++) {
        uint64_t b = 0;
        rc = new_block(f, i ? f->lpf_block + i : 0, &b, err);
        if (!rc && i == 0)
            f->lpf_block = b;
        else if (!rc && b != f->lpf_block + i)
            rc = lcow_error_set(err, LCOW_INTERNAL, "ext4: lost+found is not contiguous");
    }
    if (rc)
        return rc;
    /* Inodes 1..11 in use; root and lost+found are directories. */
    group *g0 = &f->groups[0];
    g0->free_inodes -= FIRST_INO;
    g0->itable_unused = L->inodes_per_group - FIRST_INO;
    g0->used_dirs = 2;
    g0->flags &= (uint16_t)~BG_INODE_UNINIT;
    L->free_blocks = 0;
    for (uint64_t g = 0; g < L->group_count; g++)
        L->free_blocks += f->groups[g].free_blocks;
    L->free_inodes = L->inode_count - FIRST_INO;
    return LCOW_OK;
}

lcow_code lcow_ext4_plan(uint64_t size_bytes, lcow_ext4_layout *layout, lcow_error *err)
{
    fs f;
    memset(&f, 0, sizeof f);
    lcow_code rc = plan(&f, size_bytes, err);
    if (!rc)
        rc = layout_groups(&f, err);
    if (!rc)
        *layout = f.L;
    free(f.groups);
    free(f.used.v);
    return rc;
}

/* ---- on-disk structures ---- */

static void block_bitmap(const fs *f, uint64_t g, uint8_t *buf)
{
    memset(buf, 0, BLOCK_SIZE);
    uint64_t first = group_first(f, g), n = group_blocks(f, g);
    size_t i = spans_after(&f->used, first);
    for (; i < f->used.n && f->used.v[i].start < first + n; i++) {
        uint64_t s = f->used.v[i].start < first ? first : f->used.v[i].start;
        uint64_t e = f->used.v[i].end > first + n ? first + n : f->used.v[i].end;
        for (uint64_t b = s; b < e; b++)
            buf[(b - first) / 8] |= (uint8_t)(1u << ((b - first) % 8));
    }
    /* Blocks past the end of a short last group are marked in use. */
    for (uint64_t b = n; b < BLOCK_SIZE * 8; b++)
        buf[b / 8] |= (uint8_t)(1u << (b % 8));
}

static void inode_bitmap(const fs *f, uint8_t *buf)
{
    /* Bits past inodes_per_group are padding, set like libext2fs does. */
    memset(buf, 0xff, BLOCK_SIZE);
    memset(buf, 0, f->L.inodes_per_group / 8);
    for (unsigned i = 0; i < FIRST_INO; i++)
        buf[i / 8] |= (uint8_t)(1u << (i % 8));
}

static void group_desc(const fs *f, uint64_t g, uint8_t *d)
{
    const group *gd = &f->groups[g];
    memset(d, 0, DESC_SIZE);
    lcow_le_put32(d + 0x00, (uint32_t)gd->block_bitmap);
    lcow_le_put32(d + 0x04, (uint32_t)gd->inode_bitmap);
    lcow_le_put32(d + 0x08, (uint32_t)gd->inode_table);
    lcow_le_put16(d + 0x0c, (uint16_t)gd->free_blocks);
    lcow_le_put16(d + 0x0e, (uint16_t)gd->free_inodes);
    lcow_le_put16(d + 0x10, gd->used_dirs);
    lcow_le_put16(d + 0x12, gd->flags);
    lcow_le_put16(d + 0x18, (uint16_t)gd->block_bitmap_csum);
    lcow_le_put16(d + 0x1a, (uint16_t)gd->inode_bitmap_csum);
    lcow_le_put16(d + 0x1c, (uint16_t)gd->itable_unused);
    lcow_le_put32(d + 0x20, (uint32_t)(gd->block_bitmap >> 32));
    lcow_le_put32(d + 0x24, (uint32_t)(gd->inode_bitmap >> 32));
    lcow_le_put32(d + 0x28, (uint32_t)(gd->inode_table >> 32));
    lcow_le_put16(d + 0x2c, (uint16_t)(gd->free_blocks >> 16));
    lcow_le_put16(d + 0x2e, (uint16_t)(gd->free_inodes >> 16));
    lcow_le_put16(d + 0x32, (uint16_t)(gd->itable_unused >> 16));
    lcow_le_put16(d + 0x38, (uint16_t)(gd->block_bitmap_csum >> 16));
    lcow_le_put16(d + 0x3a, (uint16_t)(gd->inode_bitmap_csum >> 16));
    uint8_t le_group[4];
    lcow_le_put32(le_group, (uint32_t)g);
    uint32_t crc = lcow_crc32c_update(f->csum_seed, le_group, 4);
    crc = lcow_crc32c_update(crc, d, DESC_SIZE);
    lcow_le_put16(d + 0x1e, (uint16_t)crc);
}

static void superblock(const fs *f, uint64_t g, uint8_t *sb)
{
    const lcow_ext4_layout *L = &f->L;
    memset(sb, 0, 1024);
    lcow_le_put32(sb + 0x00, L->inode_count);
    lcow_le_put32(sb + 0x04, (uint32_t)L->block_count);
    lcow_le_put32(sb + 0x08, (uint32_t)L->reserved_blocks);
    lcow_le_put32(sb + 0x0c, (uint32_t)L->free_blocks);
    lcow_le_put32(sb + 0x10, L->free_inodes);
    lcow_le_put32(sb + 0x14, 0); /* first data block */
    lcow_le_put32(sb + 0x18, LOG_BLOCK);
    lcow_le_put32(sb + 0x1c, LOG_BLOCK);
    lcow_le_put32(sb + 0x20, f->blocks_per_group);
    lcow_le_put32(sb + 0x24, f->blocks_per_group);
    lcow_le_put32(sb + 0x28, L->inodes_per_group);
    lcow_le_put32(sb + 0x30, f->now); /* wtime */
    lcow_le_put16(sb + 0x36, 0xffff); /* max mount count -1: no periodic fsck */
    lcow_le_put16(sb + 0x38, 0xef53); /* magic */
    /* State clean in the primary; libext2fs writes backups with the valid
     * bit cleared, so a backup used for recovery forces a full check. */
    lcow_le_put16(sb + 0x3a, g == 0 ? 1 : 0);
    lcow_le_put16(sb + 0x3c, 1);      /* errors: continue */
    lcow_le_put32(sb + 0x40, f->now); /* lastcheck */
    lcow_le_put32(sb + 0x4c, 1);      /* dynamic revision */
    lcow_le_put32(sb + 0x54, FIRST_INO);
    lcow_le_put16(sb + 0x58, INODE_SIZE);
    lcow_le_put16(sb + 0x5a, (uint16_t)g); /* block group of this copy */
    lcow_le_put32(sb + 0x5c, COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | COMPAT_SPARSE_SUPER2);
    lcow_le_put32(sb + 0x60,
                  INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG);
    lcow_le_put32(sb + 0x64, RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_HUGE_FILE |
                                 RO_COMPAT_DIR_NLINK | RO_COMPAT_EXTRA_ISIZE |
                                 RO_COMPAT_METADATA_CSUM);
    memcpy(sb + 0x68, f->uuid, 16);
    memcpy(sb + 0xec, f->hash_seed, 16);
    sb[0xfc] = 1; /* default hash: half_md4 */
    lcow_le_put16(sb + 0xfe, DESC_SIZE);
    lcow_le_put32(sb + 0x100, 0x0c);   /* default mount options: user_xattr acl */
    lcow_le_put32(sb + 0x108, f->now); /* mkfs time */
    lcow_le_put32(sb + 0x150, (uint32_t)(L->block_count >> 32));
    lcow_le_put32(sb + 0x154, (uint32_t)(L->reserved_blocks >> 32));
    lcow_le_put32(sb + 0x158, (uint32_t)(L->free_blocks >> 32));
    lcow_le_put16(sb + 0x15c, EXTRA_ISIZE);
    lcow_le_put16(sb + 0x15e, EXTRA_ISIZE);
    lcow_le_put32(sb + 0x160, 1); /* signed directory hash (x86 char) */
    sb[0x174] = LOG_GROUPS_PER_FLEX;
    sb[0x175] = 1; /* checksum type crc32c */
    uint64_t kib = (f->bytes_written >> 10) + 1;
    lcow_le_put32(sb + 0x178, (uint32_t)kib);
    lcow_le_put32(sb + 0x17c, (uint32_t)(kib >> 32));
    lcow_le_put32(sb + 0x248, (uint32_t)L->overhead_blocks);
    lcow_le_put32(sb + 0x24c, L->backup_groups[0]);
    lcow_le_put32(sb + 0x250, L->backup_groups[1]);
    lcow_le_put32(sb + 0x3fc, lcow_crc32c_update(0xffffffffu, sb, 0x3fc));
}

static void inode_checksum(const fs *f, uint32_t ino, uint8_t *in, bool has_hi)
{
    uint8_t le[4];
    lcow_le_put32(le, ino);
    uint32_t crc = lcow_crc32c_update(f->csum_seed, le, 4);
    crc = lcow_crc32c_update(crc, in + 0x64, 4); /* generation */
    lcow_le_put16(in + 0x7c, 0);
    if (has_hi)
        lcow_le_put16(in + 0x82, 0);
    crc = lcow_crc32c_update(crc, in, INODE_SIZE);
    lcow_le_put16(in + 0x7c, (uint16_t)crc);
    if (has_hi)
        lcow_le_put16(in + 0x82, (uint16_t)(crc >> 16));
}

static void dir_inode(const fs *f, uint8_t *in, uint16_t mode, uint16_t links, uint64_t block,
                      uint32_t nblocks)
{
    lcow_le_put16(in + 0x00, mode);
    lcow_le_put32(in + 0x04, nblocks * BLOCK_SIZE);
    lcow_le_put32(in + 0x08, f->now);
    lcow_le_put32(in + 0x0c, f->now);
    lcow_le_put32(in + 0x10, f->now);
    lcow_le_put16(in + 0x1a, links);
    lcow_le_put32(in + 0x1c, nblocks * (BLOCK_SIZE / 512));
    lcow_le_put32(in + 0x20, EXTENTS_FL);
    uint8_t *eh = in + 0x28; /* extent header + one extent in i_block */
    lcow_le_put16(eh + 0, 0xf30a);
    lcow_le_put16(eh + 2, 1);
    lcow_le_put16(eh + 4, 4);
    lcow_le_put16(eh + 6, 0);
    lcow_le_put32(eh + 12, 0); /* first logical block */
    lcow_le_put16(eh + 16, (uint16_t)nblocks);
    lcow_le_put16(eh + 18, (uint16_t)(block >> 32));
    lcow_le_put32(eh + 20, (uint32_t)block);
    lcow_le_put16(in + 0x80, EXTRA_ISIZE);
    lcow_le_put32(in + 0x90, f->now); /* crtime */
}

static void inode_table_block(const fs *f, uint8_t *buf)
{
    memset(buf, 0, BLOCK_SIZE);
    /* Reserved inodes 1..10 are written zeroed by mke2fs, each with its
     * checksum (low half only: i_extra_isize is 0). */
    for (uint32_t ino = 1; ino < FIRST_INO; ino++) {
        uint8_t *in = buf + (ino - 1) * INODE_SIZE;
        if (ino == 1) { /* bad-blocks inode: times only */
            lcow_le_put32(in + 0x08, f->now);
            lcow_le_put32(in + 0x0c, f->now);
            lcow_le_put32(in + 0x10, f->now);
        }
        if (ino != ROOT_INO)
            inode_checksum(f, ino, in, false);
    }
    uint8_t *root = buf + (ROOT_INO - 1) * INODE_SIZE;
    dir_inode(f, root, 040755, 3, f->L.root_dir_block, 1);
    inode_checksum(f, ROOT_INO, root, true);
    uint8_t *lpf = buf + (LPF_INO - 1) * INODE_SIZE;
    dir_inode(f, lpf, 040700, 2, f->lpf_block, LPF_BLOCKS);
    inode_checksum(f, LPF_INO, lpf, true);
}

static uint8_t *dirent(uint8_t *p, uint32_t ino, uint16_t rec_len, const char *name)
{
    size_t len = strlen(name);
    lcow_le_put32(p, ino);
    lcow_le_put16(p + 4, rec_len);
    p[6] = (uint8_t)len;
    p[7] = ino ? 2 : 0; /* directory */
    memcpy(p + 8, name, len);
    return p + rec_len;
}

static void dir_block(const fs *f, uint32_t ino, unsigned index, uint8_t *buf)
{
    memset(buf, 0, BLOCK_SIZE);
    const uint16_t tail = 12, usable = BLOCK_SIZE - tail;
    if (ino == ROOT_INO) {
        uint8_t *p = dirent(buf, ROOT_INO, 12, ".");
        p = dirent(p, ROOT_INO, 12, "..");
        dirent(p, LPF_INO, usable - 24, "lost+found");
    } else if (index == 0) {
        uint8_t *p = dirent(buf, LPF_INO, 12, ".");
        dirent(p, ROOT_INO, usable - 12, "..");
    } else {
        dirent(buf, 0, usable, "");
    }
    uint8_t *t = buf + usable; /* ext4_dir_entry_tail */
    lcow_le_put16(t + 4, tail);
    t[7] = 0xde;
    uint8_t le[4], gen[4] = {0};
    lcow_le_put32(le, ino);
    uint32_t crc = lcow_crc32c_update(f->csum_seed, le, 4);
    crc = lcow_crc32c_update(crc, gen, 4);
    crc = lcow_crc32c_update(crc, buf, usable);
    lcow_le_put32(t + 8, crc);
}

/* ---- writing ---- */

typedef enum item_kind {
    ITEM_SUPER,   /* superblock + GDT of group arg: 1 + desc_blocks blocks */
    ITEM_BBITMAP, /* block bitmap of group arg */
    ITEM_IBITMAP, /* inode bitmap of group 0 */
    ITEM_ITABLE,  /* first inode-table block of group 0 */
    ITEM_ROOT,    /* root directory block */
    ITEM_LPF,     /* lost+found block arg */
} item_kind;

typedef struct item {
    uint64_t block;
    item_kind kind;
    uint64_t arg;
} item;

static int item_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    return x->block < y->block ? -1 : x->block > y->block;
}

static lcow_code put_block(fs *f, lcow_block_sink *sink, uint64_t block, const uint8_t *buf,
                           size_t nblocks, lcow_error *err)
{
    lcow_code rc = lcow_block_sink_write(sink, block * BLOCK_SIZE, buf, nblocks * BLOCK_SIZE, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "ext4: write block %llu", (unsigned long long)block);
    f->bytes_written += nblocks * BLOCK_SIZE;
    f->L.blocks_written += nblocks;
    return LCOW_OK;
}

static lcow_code write_all(fs *f, lcow_block_sink *sink, lcow_error *err)
{
    const lcow_ext4_layout *L = &f->L;
    uint8_t *buf = malloc(BLOCK_SIZE);
    size_t gdt_len = (size_t)L->desc_blocks * BLOCK_SIZE;
    uint8_t *gdt = calloc(1, gdt_len + BLOCK_SIZE);
    item *items = NULL;
    size_t n = 0;
    lcow_code rc = LCOW_OK;
    if (!buf || !gdt)
        goto oom;
    /* Bitmap checksums go into the descriptors. */
    for (uint64_t g = 0; g < L->group_count; g++) {
        group *gd = &f->groups[g];
        if (!(gd->flags & BG_BLOCK_UNINIT)) {
            block_bitmap(f, g, buf);
            gd->block_bitmap_csum = lcow_crc32c_update(f->csum_seed, buf, BLOCK_SIZE);
        }
        if (!(gd->flags & BG_INODE_UNINIT)) {
            inode_bitmap(f, buf);
            gd->inode_bitmap_csum = lcow_crc32c_update(f->csum_seed, buf, L->inodes_per_group / 8);
        }
    }
    for (uint64_t g = 0; g < L->group_count; g++)
        group_desc(f, g, gdt + BLOCK_SIZE + g * DESC_SIZE);

    size_t cap = 16 + LPF_BLOCKS + L->group_count / FLEX_SIZE + 1;
    items = malloc(cap * sizeof *items);
    if (!items)
        goto oom;
    for (uint64_t g = 0; g < L->group_count; g++) {
        if (n + 2 > cap) {
            cap *= 2;
            item *grown = realloc(items, cap * sizeof *items);
            if (!grown)
                goto oom;
            items = grown;
        }
        if (group_has_super(f, g))
            items[n++] = (item){group_first(f, g), ITEM_SUPER, g};
        if (!(f->groups[g].flags & BG_BLOCK_UNINIT))
            items[n++] = (item){f->groups[g].block_bitmap, ITEM_BBITMAP, g};
    }
    if (n + 3 + LPF_BLOCKS > cap) {
        item *grown = realloc(items, (n + 3 + LPF_BLOCKS) * sizeof *items);
        if (!grown)
            goto oom;
        items = grown;
    }
    items[n++] = (item){f->groups[0].inode_bitmap, ITEM_IBITMAP, 0};
    items[n++] = (item){f->groups[0].inode_table, ITEM_ITABLE, 0};
    items[n++] = (item){L->root_dir_block, ITEM_ROOT, 0};
    for (unsigned i = 0; i < LPF_BLOCKS; i++)
        items[n++] = (item){f->lpf_block + i, ITEM_LPF, i};
    qsort(items, n, sizeof *items, item_cmp);

    for (size_t i = 0; i < n && !rc; i++) {
        const item *it = &items[i];
        switch (it->kind) {
        case ITEM_SUPER:
            /* The superblock goes last so its counters are final; the
             * primary copy sits at byte 1024 of block 0. */
            break;
        case ITEM_BBITMAP:
            block_bitmap(f, it->arg, buf);
            rc = put_block(f, sink, it->block, buf, 1, err);
            break;
        case ITEM_IBITMAP:
            inode_bitmap(f, buf);
            rc = put_block(f, sink, it->block, buf, 1, err);
            break;
        case ITEM_ITABLE:
            inode_table_block(f, buf);
            rc = put_block(f, sink, it->block, buf, 1, err);
            break;
        case ITEM_ROOT:
            dir_block(f, ROOT_INO, 0, buf);
            rc = put_block(f, sink, it->block, buf, 1, err);
            break;
        case ITEM_LPF:
            dir_block(f, LPF_INO, (unsigned)it->arg, buf);
            rc = put_block(f, sink, it->block, buf, 1, err);
            break;
        }
    }
    /* Superblock + GDT copies: backups first, the primary last. */
    for (size_t k = n; k-- > 0 && !rc;) {
        if (items[k].kind != ITEM_SUPER)
            continue;
        uint64_t g = items[k].arg;
        memset(gdt, 0, BLOCK_SIZE);
        superblock(f, g, g == 0 ? gdt + 1024 : gdt);
        rc = put_block(f, sink, items[k].block, gdt, 1 + L->desc_blocks, err);
    }
    goto out;
oom:
    rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
out:
    free(items);
    free(gdt);
    free(buf);
    return rc;
}

static bool is_zero16(const uint8_t *p)
{
    for (int i = 0; i < 16; i++)
        if (p[i])
            return false;
    return true;
}

lcow_code lcow_ext4_format(lcow_block_sink *sink, const lcow_ext4_options *opts,
                           lcow_ext4_layout *layout, lcow_error *err)
{
    fs f;
    memset(&f, 0, sizeof f);
    lcow_ext4_options o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    lcow_code rc = plan(&f, sink->size, err);
    if (rc)
        return rc;
    if (is_zero16(o.uuid)) {
        if ((rc = lcow_os_random(o.uuid, 16, err)))
            return rc;
        o.uuid[6] = (uint8_t)((o.uuid[6] & 0x0f) | 0x40); /* RFC 4122 version 4 */
        o.uuid[8] = (uint8_t)((o.uuid[8] & 0x3f) | 0x80);
    }
    if (is_zero16(o.hash_seed)) {
        if ((rc = lcow_os_random(o.hash_seed, 16, err)))
            return rc;
        o.hash_seed[6] = (uint8_t)((o.hash_seed[6] & 0x0f) | 0x40);
        o.hash_seed[8] = (uint8_t)((o.hash_seed[8] & 0x3f) | 0x80);
    }
    memcpy(f.uuid, o.uuid, 16);
    memcpy(f.hash_seed, o.hash_seed, 16);
    f.now = (uint32_t)(o.now ? o.now : (int64_t)time(NULL));
    f.csum_seed = lcow_crc32c_update(0xffffffffu, f.uuid, 16);
    rc = layout_groups(&f, err);
    if (!rc)
        rc = write_all(&f, sink, err);
    if (!rc && layout)
        *layout = f.L;
    free(f.groups);
    free(f.used.v);
    return rc;
}

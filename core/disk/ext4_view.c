/* ext4 seen through the VHDX reader: usage and the used-block map. Field
 * offsets: the kernel's Documentation/filesystems/ext4 (superblock, group
 * descriptors); docs/disk-format.md has what our formatter writes. */
#include "core/disk/ext4_view.h"

#include <stdlib.h>
#include <string.h>

#include "core/disk/byteorder.h"
#include "core/disk/crc32c.h"

#define SB_OFFSET 1024u
#define SB_SIZE 1024u
#define MAGIC 0xef53u

#define STATE_VALID 0x1u
#define STATE_ERROR 0x2u

#define COMPAT_HAS_JOURNAL 0x4u
#define COMPAT_RESIZE_INODE 0x10u
#define COMPAT_SPARSE_SUPER2 0x200u
#define RO_COMPAT_SPARSE_SUPER 0x1u
#define INCOMPAT_RECOVER 0x4u
#define INCOMPAT_JOURNAL_DEV 0x8u
#define INCOMPAT_META_BG 0x10u
#define INCOMPAT_64BIT 0x80u
#define INCOMPAT_CSUM_SEED 0x2000u
#define RO_COMPAT_BIGALLOC 0x200u
#define RO_COMPAT_METADATA_CSUM 0x400u

#define BG_BLOCK_UNINIT 0x2u

typedef struct sb_info {
    uint32_t block_size;
    uint64_t blocks;
    uint32_t first_data_block;
    uint32_t blocks_per_group;
    uint32_t inodes;
    uint32_t inodes_per_group;
    uint32_t inode_size;
    uint32_t groups;
    uint64_t overhead; /* blocks df does not count: metadata and the journal */
    uint32_t desc_size;
    uint16_t state;
    uint32_t incompat;
    uint32_t ro_compat;
    bool csum;
    uint32_t csum_seed;
} sb_info;

static lcow_code bad(lcow_error *err, const char *what)
{
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "ext4: %s", what);
}

static bool is_power_of(uint32_t g, uint32_t base)
{
    uint64_t p = base;
    while (p < g)
        p *= base;
    return p == g;
}

/* Whether group g holds a superblock copy (and a GDT copy). */
static bool has_super(const sb_info *s, const uint8_t *sb, uint32_t g)
{
    uint32_t compat = lcow_le_get32(sb + 0x5c);
    if (g == 0)
        return true;
    if (compat & COMPAT_SPARSE_SUPER2)
        return g == lcow_le_get32(sb + 0x24c) || g == lcow_le_get32(sb + 0x250);
    if (!(s->ro_compat & RO_COMPAT_SPARSE_SUPER))
        return true;
    return g == 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7);
}

/* What the kernel's statfs leaves out of df's size (ext4_calculate_overhead):
 * superblock and GDT copies, bitmaps, inode tables, reserved GDT blocks and
 * an internal journal; s_overhead_clusters when mke2fs recorded it. */
static uint64_t overhead_of(const sb_info *s, const uint8_t *sb)
{
    uint64_t recorded = lcow_le_get32(sb + 0x248);
    if (recorded && recorded < s->blocks)
        return recorded;
    uint32_t compat = lcow_le_get32(sb + 0x5c);
    uint64_t gdt = ((uint64_t)s->groups * s->desc_size + s->block_size - 1) / s->block_size;
    uint64_t reserved_gdt = (compat & COMPAT_RESIZE_INODE) ? lcow_le_get16(sb + 0xce) : 0;
    uint64_t itable =
        ((uint64_t)s->inodes_per_group * s->inode_size + s->block_size - 1) / s->block_size;
    uint64_t o = s->first_data_block;
    for (uint32_t g = 0; g < s->groups; g++) {
        o += 2 + itable;
        if (has_super(s, sb, g))
            o += 1 + gdt + reserved_gdt;
    }
    /* s_jnl_blocks[15..16]: the journal inode's size, when backed up. */
    if ((compat & COMPAT_HAS_JOURNAL) && lcow_le_get32(sb + 0xe0) && sb[0xfd] == 1) {
        uint64_t size = ((uint64_t)lcow_le_get32(sb + 0x148) << 32) | lcow_le_get32(sb + 0x14c);
        o += size / s->block_size;
    }
    return o < s->blocks ? o : s->blocks;
}

static lcow_code read_sb(lcow_vhdx_reader *r, sb_info *s, lcow_error *err)
{
    memset(s, 0, sizeof *s);
    const lcow_vhdx_info *vi = lcow_vhdx_reader_info(r);
    if (vi->virtual_size < SB_OFFSET + SB_SIZE)
        return bad(err, "the disk is too small to hold a superblock");
    uint8_t sb[SB_SIZE];
    lcow_code rc = lcow_vhdx_reader_read(r, SB_OFFSET, sb, sizeof sb, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "ext4: superblock");
    if (lcow_le_get16(sb + 0x38) != MAGIC)
        return bad(err, "no ext4 superblock (magic is not 0xEF53)");
    uint32_t log = lcow_le_get32(sb + 0x18);
    if (log > 6)
        return bad(err, "block size above 64 KiB");
    s->block_size = 1024u << log;
    s->incompat = lcow_le_get32(sb + 0x60);
    s->ro_compat = lcow_le_get32(sb + 0x64);
    s->blocks = lcow_le_get32(sb + 0x04);
    s->desc_size = 32;
    if (s->incompat & INCOMPAT_64BIT) {
        s->blocks |= (uint64_t)lcow_le_get32(sb + 0x150) << 32;
        s->desc_size = lcow_le_get16(sb + 0xfe);
        if (s->desc_size < 64 || s->desc_size > 1024 || (s->desc_size & (s->desc_size - 1)))
            return bad(err, "group descriptor size is not a power of two from 64 to 1024");
    }
    s->first_data_block = lcow_le_get32(sb + 0x14);
    s->blocks_per_group = lcow_le_get32(sb + 0x20);
    s->inodes = lcow_le_get32(sb + 0x00);
    s->state = lcow_le_get16(sb + 0x3a);
    if (s->incompat & INCOMPAT_JOURNAL_DEV)
        return bad(err, "an external journal device, not a filesystem");
    if (s->incompat & INCOMPAT_META_BG)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "ext4: meta_bg is not supported");
    if (s->ro_compat & RO_COMPAT_BIGALLOC)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "ext4: bigalloc is not supported");
    if (s->blocks_per_group == 0 || s->blocks_per_group > 8u * s->block_size ||
        s->blocks_per_group % 8)
        return bad(err, "blocks per group is 0, not a multiple of 8 or more than a bitmap holds");
    if (s->first_data_block != (s->block_size == 1024 ? 1u : 0u))
        return bad(err, "first data block does not match the block size");
    if (s->blocks <= s->first_data_block || s->blocks > vi->virtual_size / s->block_size)
        return bad(err, "block count is zero or larger than the disk");
    uint64_t groups =
        (s->blocks - s->first_data_block + s->blocks_per_group - 1) / s->blocks_per_group;
    if (groups > UINT32_MAX)
        return bad(err, "too many groups");
    s->groups = (uint32_t)groups;
    s->csum = s->ro_compat & RO_COMPAT_METADATA_CSUM;
    s->inodes_per_group = lcow_le_get32(sb + 0x28);
    s->inode_size = lcow_le_get32(sb + 0x4c) >= 1 ? lcow_le_get16(sb + 0x58) : 128;
    if (s->inode_size < 128 || s->inode_size > s->block_size ||
        (s->inode_size & (s->inode_size - 1)))
        return bad(err, "inode size is not a power of two from 128 to the block size");
    s->overhead = overhead_of(s, sb);
    if (s->incompat & INCOMPAT_CSUM_SEED)
        s->csum_seed = lcow_le_get32(sb + 0x270);
    else
        s->csum_seed = lcow_crc32c_update(0xffffffffu, sb + 0x68, 16);
    return LCOW_OK;
}

/* Walks the group descriptors one filesystem block at a time. */
typedef lcow_code (*desc_fn)(void *ctx, uint32_t group, const uint8_t *desc, lcow_error *err);

static lcow_code walk_descs(lcow_vhdx_reader *r, const sb_info *s, desc_fn fn, void *ctx,
                            lcow_error *err)
{
    uint8_t *buf = malloc(s->block_size);
    if (!buf)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    uint32_t per_block = s->block_size / s->desc_size;
    uint64_t gdt = (uint64_t)s->first_data_block + 1;
    lcow_code rc = LCOW_OK;
    for (uint32_t g = 0; g < s->groups && !rc; g++) {
        if (g % per_block == 0) {
            uint64_t blk = gdt + g / per_block;
            if (blk >= s->blocks) {
                rc = bad(err, "group descriptors run past the end of the filesystem");
                break;
            }
            rc = lcow_vhdx_reader_read(r, blk * s->block_size, buf, s->block_size, err);
            if (rc) {
                rc = lcow_error_wrap_code(err, rc, "ext4: group descriptors");
                break;
            }
        }
        rc = fn(ctx, g, buf + (size_t)(g % per_block) * s->desc_size, err);
    }
    free(buf);
    return rc;
}

static uint64_t desc_u32x2(const sb_info *s, const uint8_t *d, unsigned lo, unsigned hi)
{
    uint64_t v = lcow_le_get32(d + lo);
    if (s->desc_size >= 64)
        v |= (uint64_t)lcow_le_get32(d + hi) << 32;
    return v;
}

static uint32_t desc_u16x2(const sb_info *s, const uint8_t *d, unsigned lo, unsigned hi)
{
    uint32_t v = lcow_le_get16(d + lo);
    if (s->desc_size >= 64)
        v |= (uint32_t)lcow_le_get16(d + hi) << 16;
    return v;
}

typedef struct usage_ctx {
    const sb_info *s;
    uint64_t free_blocks, free_inodes;
} usage_ctx;

static lcow_code add_free(void *ctx, uint32_t group, const uint8_t *d, lcow_error *err)
{
    (void)group;
    (void)err;
    usage_ctx *u = ctx;
    u->free_blocks += desc_u16x2(u->s, d, 0x0c, 0x2c);
    u->free_inodes += desc_u16x2(u->s, d, 0x0e, 0x2e);
    return LCOW_OK;
}

lcow_code lcow_ext4_view_usage_of(lcow_vhdx_reader *r, lcow_ext4_view_usage *usage, lcow_error *err)
{
    memset(usage, 0, sizeof *usage);
    sb_info s;
    lcow_code rc = read_sb(r, &s, err);
    if (rc)
        return rc;
    usage_ctx u = {&s, 0, 0};
    if ((rc = walk_descs(r, &s, add_free, &u, err)))
        return rc;
    /* A torn read of a disk in use can see counts that do not add up;
     * clamp rather than wrap. */
    uint64_t fs_blocks = s.blocks - s.overhead;
    usage->block_size = s.block_size;
    usage->total_bytes = fs_blocks * s.block_size;
    usage->used_bytes = (u.free_blocks < fs_blocks ? fs_blocks - u.free_blocks : 0) * s.block_size;
    usage->total_inodes = s.inodes;
    usage->used_inodes = u.free_inodes < s.inodes ? s.inodes - u.free_inodes : 0;
    return LCOW_OK;
}

/* ---- the used map ---- */

typedef struct map_ctx {
    lcow_vhdx_reader *r;
    const sb_info *s;
    uint8_t *used;
    uint64_t units;
    uint64_t unit_size; /* VHDX block size */
    uint8_t *bitmap;    /* one filesystem block */
} map_ctx;

static void mark_bytes(map_ctx *m, uint64_t from, uint64_t to)
{
    if (from >= to)
        return;
    uint64_t first = from / m->unit_size, last = (to - 1) / m->unit_size;
    for (uint64_t u = first; u <= last && u < m->units; u++)
        m->used[u / 8] |= (uint8_t)(1u << (u % 8));
}

static bool bits_any(const uint8_t *bm, uint64_t lo, uint64_t hi)
{
    while (lo < hi && lo % 8) {
        if (bm[lo / 8] & (1u << (lo % 8)))
            return true;
        lo++;
    }
    while (lo + 8 <= hi) {
        if (bm[lo / 8])
            return true;
        lo += 8;
    }
    while (lo < hi) {
        if (bm[lo / 8] & (1u << (lo % 8)))
            return true;
        lo++;
    }
    return false;
}

static lcow_code map_group(void *ctx, uint32_t g, const uint8_t *d, lcow_error *err)
{
    map_ctx *m = ctx;
    const sb_info *s = m->s;
    uint64_t first = (uint64_t)s->first_data_block + (uint64_t)g * s->blocks_per_group;
    uint64_t count = s->blocks - first;
    if (count > s->blocks_per_group)
        count = s->blocks_per_group;
    uint64_t bsz = s->block_size;
    uint16_t flags = lcow_le_get16(d + 0x12);
    uint64_t bitmap_blk = desc_u32x2(s, d, 0x00, 0x20);
    bool trusted =
        !(flags & BG_BLOCK_UNINIT) && bitmap_blk >= s->first_data_block && bitmap_blk < s->blocks;
    if (trusted) {
        lcow_code rc = lcow_vhdx_reader_read(m->r, bitmap_blk * bsz, m->bitmap, bsz, err);
        if (rc)
            return lcow_error_wrap_code(err, rc, "ext4: block bitmap of group %u", g);
        if (s->csum) {
            uint32_t want = desc_u16x2(s, d, 0x18, 0x38);
            uint32_t got = lcow_crc32c_update(s->csum_seed, m->bitmap, s->blocks_per_group / 8);
            if (s->desc_size < 64)
                got &= 0xffffu;
            trusted = got == want;
        }
    }
    if (!trusted) {
        mark_bytes(m, first * bsz, (first + count) * bsz);
        return LCOW_OK;
    }
    /* Each VHDX block overlapping the group: any bit set in its range? */
    uint64_t start = first * bsz, end = (first + count) * bsz;
    for (uint64_t off = start; off < end;) {
        uint64_t unit = off / m->unit_size;
        uint64_t unit_end = (unit + 1) * m->unit_size;
        if (unit_end > end)
            unit_end = end;
        uint64_t lo = (off - start) / bsz, hi = (unit_end - start + bsz - 1) / bsz;
        if (bits_any(m->bitmap, lo, hi))
            mark_bytes(m, off, unit_end);
        off = unit_end;
    }
    return LCOW_OK;
}

lcow_code lcow_ext4_view_used_map(lcow_vhdx_reader *r, uint8_t *used, uint64_t units,
                                  lcow_error *err)
{
    sb_info s;
    lcow_code rc = read_sb(r, &s, err);
    if (rc)
        return rc;
    if (s.incompat & INCOMPAT_RECOVER)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "ext4: the journal needs recovery (mount it once or run e2fsck)");
    if (!(s.state & STATE_VALID) || (s.state & STATE_ERROR))
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "ext4: the filesystem was not cleanly unmounted or has errors "
                              "(state 0x%x): run e2fsck first",
                              s.state);
    const lcow_vhdx_info *vi = lcow_vhdx_reader_info(r);
    map_ctx m = {r, &s, used, units, vi->block_size, malloc(s.block_size)};
    if (!m.bitmap)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4: out of memory");
    /* Outside every group: blocks before the first data block and the disk
     * past the filesystem's last block. */
    mark_bytes(&m, 0, (uint64_t)s.first_data_block * s.block_size);
    mark_bytes(&m, s.blocks * s.block_size, vi->virtual_size);
    rc = walk_descs(r, &s, map_group, &m, err);
    free(m.bitmap);
    return rc;
}

/* Compact ext4 writer: the public finish, which writes the directory
 * blocks, the inode table, the bitmaps, the group descriptors and the
 * superblock. */
#include "core/disk/ext4_writer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/disk/byteorder.h"

/* ---- finish ---- */

typedef struct child {
    uint32_t ino;
    uint32_t name_len;
    const char *name;
} child;

static int child_cmp(const void *pa, const void *pb)
{
    const child *a = pa, *b = pb;
    if (a->ino != b->ino)
        return a->ino < b->ino ? -1 : 1;
    return lcow_ext4_writer_name_cmp((const uint8_t *)a->name, a->name_len,
                                     (const uint8_t *)b->name, b->name_len);
}

static uint8_t file_type(uint16_t mode)
{
    switch (S_TYPE(mode)) {
    case LCOW_EXT4W_S_IFREG:
        return 1;
    case LCOW_EXT4W_S_IFDIR:
        return 2;
    case LCOW_EXT4W_S_IFCHR:
        return 3;
    case LCOW_EXT4W_S_IFBLK:
        return 4;
    case LCOW_EXT4W_S_IFIFO:
        return 5;
    case LCOW_EXT4W_S_IFSOCK:
        return 6;
    case LCOW_EXT4W_S_IFLNK:
        return 7;
    default:
        return 0;
    }
}

typedef struct dirstate {
    size_t left;
} dirstate;

static lcow_code dir_bytes(lcow_ext4_writer *w, const void *p, size_t n, lcow_error *err)
{
    lcow_code rc = lcow_ext4_writer_out_write(w, p, n, err);
    if (rc == LCOW_OK)
        w->cur_written += n;
    return rc;
}

static lcow_code dir_finish_block(lcow_ext4_writer *w, dirstate *d, lcow_error *err)
{
    if (d->left > 0) {
        uint8_t e[8] = {0};
        lcow_le_put16(e + 4, (uint16_t)d->left);
        lcow_code rc = dir_bytes(w, e, 8, err);
        if (rc != LCOW_OK)
            return rc;
        d->left -= 8;
        static const uint8_t zeros[BS];
        rc = dir_bytes(w, zeros, d->left, err);
        if (rc != LCOW_OK)
            return rc;
    }
    d->left = BS;
    return LCOW_OK;
}

static lcow_code dir_entry(lcow_ext4_writer *w, dirstate *d, uint32_t ino, const char *name,
                           size_t len, lcow_error *err)
{
    size_t rl = (8 + len + 3) & ~(size_t)3;
    if (d->left < rl + 12) {
        lcow_code rc = dir_finish_block(w, d, err);
        if (rc != LCOW_OK)
            return rc;
    }
    uint8_t e[8 + LCOW_EXT4W_MAX_NAME + 3] = {0};
    lcow_le_put32(e, ino);
    lcow_le_put16(e + 4, (uint16_t)rl);
    e[6] = (uint8_t)len;
    e[7] = file_type(N(w, ino)->mode);
    memcpy(e + 8, name, len);
    d->left -= rl;
    return dir_bytes(w, e, rl, err);
}

/* Every directory, pre-order, children by inode number then name. */
static lcow_code write_directories(lcow_ext4_writer *w, lcow_error *err)
{
    uint32_t *stack = NULL; /* pairs: dir, parent */
    size_t sp = 0, scap = 0;
    child *kids = NULL;
    size_t kcap = 0;
    lcow_code rc = LCOW_OK;
    if (!lcow_grow(&stack, &scap, 2, sizeof *stack))
        return oom(w, err);
    stack[sp++] = ROOT_INO;
    stack[sp++] = ROOT_INO;
    while (sp) {
        uint32_t parent = stack[--sp];
        uint32_t dir = stack[--sp];
        rc = lcow_ext4_writer_finish_data(w, err);
        if (rc != LCOW_OK)
            break;
        size_t nk = 0;
        for (uint32_t d = N(w, dir)->children; d; d = w->dirents[d - 1].next) {
            if (!lcow_grow(&kids, &kcap, nk + 1, sizeof *kids)) {
                rc = oom(w, err);
                goto out;
            }
            const dirent *e = &w->dirents[d - 1];
            kids[nk++] = (child){e->child, e->name_len, w->names + e->name_off};
        }
        qsort(kids, nk, sizeof *kids, child_cmp);
        /* The directory's blocks; size known at the end. */
        w->cur = dir;
        w->cur_written = 0;
        w->cur_max = UINT64_MAX;
        dirstate ds = {BS};
        rc = dir_entry(w, &ds, dir, ".", 1, err);
        if (rc == LCOW_OK)
            rc = dir_entry(w, &ds, parent, "..", 2, err);
        for (size_t i = 0; i < nk && rc == LCOW_OK; i++)
            rc = dir_entry(w, &ds, kids[i].ino, kids[i].name, kids[i].name_len, err);
        if (rc == LCOW_OK)
            rc = dir_finish_block(w, &ds, err);
        if (rc != LCOW_OK)
            break;
        N(w, dir)->size = w->cur_written;
        w->cur_max = w->cur_written;
        /* Subdirectories next, first child on top of the stack. */
        size_t ndirs = 0;
        for (size_t i = 0; i < nk; i++)
            ndirs += node_is(N(w, kids[i].ino), LCOW_EXT4W_S_IFDIR);
        if (!lcow_grow(&stack, &scap, sp + 2 * ndirs, sizeof *stack)) {
            rc = oom(w, err);
            break;
        }
        for (size_t i = nk; i-- > 0;)
            if (node_is(N(w, kids[i].ino), LCOW_EXT4W_S_IFDIR)) {
                stack[sp++] = kids[i].ino;
                stack[sp++] = dir;
            }
    }
out:
    free(stack);
    free(kids);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    return rc;
}

/* compactext4's bestGroupCount (uint32 arithmetic as in Go). */
static void best_groups(uint32_t blocks, uint32_t inodes, uint32_t *groups, uint32_t *ipg)
{
    *groups = 0xffffffffu;
    *ipg = 0;
    for (uint32_t i = BS / INODE_SIZE; i <= BS * 8; i += BS / INODE_SIZE) {
        uint32_t itable = i * INODE_SIZE / BS;
        uint32_t data = BLOCKS_PER_GROUP - itable - 2;
        uint32_t min = (inodes - 1) / i * data + 1;
        uint32_t b = blocks < min ? min : blocks;
        uint32_t g = (b + data - 1) / data;
        if (g < *groups) {
            *groups = g;
            *ipg = i;
        }
    }
}

static void inode_bytes(lcow_ext4_writer *w, uint32_t ino, uint8_t *b)
{
    memset(b, 0, INODE_SIZE);
    const node *n = N(w, ino);
    if (!n->mode)
        return;
    lcow_le_put16(b + 0, n->mode);
    lcow_le_put16(b + 2, (uint16_t)n->uid);
    lcow_le_put32(b + 4, (uint32_t)n->size);
    lcow_le_put32(b + 8, (uint32_t)n->atime);
    lcow_le_put32(b + 12, (uint32_t)n->ctime);
    lcow_le_put32(b + 16, (uint32_t)n->mtime);
    lcow_le_put16(b + 24, (uint16_t)n->gid);
    lcow_le_put16(b + 26, (uint16_t)n->links);
    lcow_le_put32(b + 28, n->block_count);
    lcow_le_put32(b + 32, n->flags);
    lcow_le_put32(b + 104, n->xattr_block);
    lcow_le_put32(b + 108, (uint32_t)(n->size >> 32));
    lcow_le_put16(b + 120, (uint16_t)(n->uid >> 16));
    lcow_le_put16(b + 122, (uint16_t)(n->gid >> 16));
    lcow_le_put16(b + 128, EXTRA_ISIZE);
    lcow_le_put32(b + 132, (uint32_t)(n->ctime >> 32));
    lcow_le_put32(b + 136, (uint32_t)(n->mtime >> 32));
    lcow_le_put32(b + 140, (uint32_t)(n->atime >> 32));
    lcow_le_put32(b + 144, (uint32_t)n->crtime);
    lcow_le_put32(b + 148, (uint32_t)(n->crtime >> 32));
    if (n->has_xattrs)
        memcpy(b + INODE_USED, w->extras[n->extra - 1].xattr, INODE_XATTR);
    switch (S_TYPE(n->mode)) {
    case LCOW_EXT4W_S_IFDIR:
    case LCOW_EXT4W_S_IFREG:
    case LCOW_EXT4W_S_IFLNK: {
        size_t k = n->data_len < IBLOCK ? n->data_len : IBLOCK;
        memcpy(b + 40, n->iblock, k);
        if (n->data_len > IBLOCK && n->has_xattrs) {
            /* Inline data past 60 bytes: the value of the first in-inode
             * xattr, system.data. */
            xplaced x = {(const uint8_t *)"data", 4, w->extras[n->extra - 1].tail,
                         (size_t)n->data_len - IBLOCK, 7};
            lcow_ext4_writer_xattrs_put(&x, 1, b + INODE_USED + 4, INODE_XATTR - 4, 0);
        }
        break;
    }
    case LCOW_EXT4W_S_IFBLK:
    case LCOW_EXT4W_S_IFCHR: {
        uint32_t dev =
            (n->devminor & 0xff) | (n->devmajor << 8) | ((n->devminor & 0xffffff00u) << 12);
        lcow_le_put32(b + 44, dev);
        break;
    }
    default:
        break;
    }
}

static int span_cmp(const void *pa, const void *pb)
{
    const span *a = pa, *b = pb;
    return a->start < b->start ? -1 : a->start > b->start ? 1 : 0;
}

lcow_code lcow_ext4_writer_finish(lcow_ext4_writer *w, uint64_t *image_size, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    if (rc == LCOW_OK)
        rc = write_directories(w, err);
    if (rc != LCOW_OK)
        return rc;

    uint32_t table = out_block(w);
    uint32_t groups, ipg;
    best_groups(table, w->nnodes, &groups, &ipg);
    uint8_t ib[INODE_SIZE];
    for (uint32_t ino = 1; ino <= w->nnodes; ino++) {
        inode_bytes(w, ino, ib);
        rc = lcow_ext4_writer_out_write(w, ib, INODE_SIZE, err);
        if (rc != LCOW_OK)
            return rc;
    }
    rc = lcow_ext4_writer_out_zero(
        w, (uint64_t)groups * ipg * INODE_SIZE - (uint64_t)w->nnodes * INODE_SIZE, err);
    if (rc != LCOW_OK)
        return rc;

    uint32_t bitmaps = out_block(w);
    uint32_t valid = bitmaps + groups * 2;
    uint32_t disk = valid;
    uint32_t min = (groups - 1) * BLOCKS_PER_GROUP + 1;
    if (disk < min)
        disk = min;
    uint32_t used_gd = (groups - 1) / GD_PER_BLOCK + 1;
    if (used_gd > w->gd_blocks)
        return lcow_ext4_writer_too_big(w, err);

    if (w->nfreed > 1)
        qsort(w->freed, w->nfreed, sizeof *w->freed, span_cmp);
    size_t fi = 0;
    uint8_t *gdt = calloc(w->gd_blocks, BS);
    uint8_t *bm = malloc(2 * BS);
    if (!gdt || !bm) {
        free(gdt);
        free(bm);
        return oom(w, err);
    }
    uint32_t itable_blocks = ipg * INODE_SIZE / BS;
    uint32_t total_used_blocks = 0, total_used_inodes = 0;
    for (uint32_t g = 0; g < groups && rc == LCOW_OK; g++) {
        memset(bm, 0, 2 * BS);
        uint32_t used_blocks = 0, used_inodes = 0, dirs = 0;
        uint64_t gstart = (uint64_t)g * BLOCKS_PER_GROUP;
        if (gstart + BLOCKS_PER_GROUP <= valid) {
            memset(bm, 0xff, BS);
            used_blocks = BLOCKS_PER_GROUP;
        } else if (gstart < valid) {
            uint32_t k = (uint32_t)(valid - gstart);
            memset(bm, 0xff, k / 8);
            for (uint32_t j = k & ~7u; j < k; j++)
                bm[j / 8] |= (uint8_t)(1u << (j % 8));
            used_blocks = k;
        }
        if (g == 0)
            for (uint32_t j = 1 + used_gd; j < 1 + w->gd_blocks; j++) {
                bm[j / 8] &= (uint8_t) ~(1u << (j % 8));
                used_blocks--;
            }
        if (g == groups - 1 && disk % BLOCKS_PER_GROUP) {
            for (uint32_t j = disk % BLOCKS_PER_GROUP; j < BLOCKS_PER_GROUP; j++) {
                bm[j / 8] |= (uint8_t)(1u << (j % 8));
                used_blocks++;
            }
        }
        /* Blocks released by entries that replaced files (not tar2ext4's). */
        for (; fi < w->nfreed && w->freed[fi].start < gstart + BLOCKS_PER_GROUP; fi++) {
            uint64_t s = w->freed[fi].start > gstart ? w->freed[fi].start : gstart;
            uint64_t e = w->freed[fi].end < gstart + BLOCKS_PER_GROUP ? w->freed[fi].end
                                                                      : gstart + BLOCKS_PER_GROUP;
            for (uint64_t b = s; b < e; b++) {
                uint32_t j = (uint32_t)(b - gstart);
                if (bm[j / 8] & (1u << (j % 8))) {
                    bm[j / 8] &= (uint8_t) ~(1u << (j % 8));
                    used_blocks--;
                }
            }
            if (w->freed[fi].end > gstart + BLOCKS_PER_GROUP)
                break; /* continues in the next group */
        }
        for (uint32_t j = 0; j < ipg; j++) {
            uint64_t ino = 1 + (uint64_t)g * ipg + j;
            const node *n = ino <= w->nnodes ? N(w, (uint32_t)ino) : NULL;
            bool present = n && n->mode;
            if (ino < FIRST_INO || present) {
                bm[BS + j / 8] |= (uint8_t)(1u << (j % 8));
                used_inodes++;
            }
            if (present && node_is(n, LCOW_EXT4W_S_IFDIR))
                dirs++;
        }
        rc = lcow_ext4_writer_out_write(w, bm, 2 * BS, err);
        uint8_t *d = gdt + (size_t)g * GD_SIZE;
        lcow_le_put32(d + 0, bitmaps + 2 * g);
        lcow_le_put32(d + 4, bitmaps + 2 * g + 1);
        lcow_le_put32(d + 8, table + g * itable_blocks);
        lcow_le_put16(d + 12, (uint16_t)(BLOCKS_PER_GROUP - used_blocks));
        lcow_le_put16(d + 14, (uint16_t)(ipg - used_inodes));
        lcow_le_put16(d + 16, (uint16_t)dirs);
        total_used_blocks += (uint16_t)used_blocks;
        total_used_inodes += used_inodes;
    }
    free(bm);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_out_zero(w, ((uint64_t)disk - bitmaps - (uint64_t)groups * 2) * BS,
                                       err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_out_flush(w, err);
    if (rc == LCOW_OK && w->len != 0)
        rc = fail(w, lcow_error_set(err, LCOW_INTERNAL, "ext4 writer: unaligned end"));
    if (rc == LCOW_OK)
        rc = fail(w, lcow_file_truncate(w->f, (uint64_t)disk * BS, err));
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_raw_write(w, gdt, (size_t)w->gd_blocks * BS, BS, err);
    if (rc == LCOW_OK && w->on_final)
        w->on_final(w->on_final_ctx, BS, gdt, (size_t)w->gd_blocks * BS);
    free(gdt);
    if (rc != LCOW_OK)
        return rc;

    uint8_t sbb[BS] = {0};
    uint8_t *sb = sbb + 1024;
    lcow_le_put32(sb + 0x00, ipg * groups);
    lcow_le_put32(sb + 0x04, disk);
    lcow_le_put32(sb + 0x0C, BLOCKS_PER_GROUP * groups - total_used_blocks);
    lcow_le_put32(sb + 0x10, ipg * groups - total_used_inodes);
    lcow_le_put32(sb + 0x18, 2); /* 4 KiB blocks */
    lcow_le_put32(sb + 0x1C, 2);
    lcow_le_put32(sb + 0x20, BLOCKS_PER_GROUP);
    lcow_le_put32(sb + 0x24, BLOCKS_PER_GROUP);
    lcow_le_put32(sb + 0x28, ipg);
    lcow_le_put16(sb + 0x38, 0xEF53);
    lcow_le_put16(sb + 0x3A, 1); /* clean */
    lcow_le_put16(sb + 0x3C, 1); /* errors: continue */
    lcow_le_put32(sb + 0x4C, 1); /* dynamic revision */
    lcow_le_put32(sb + 0x54, FIRST_INO);
    lcow_le_put16(sb + 0x58, INODE_SIZE);
    lcow_le_put32(sb + 0x5C, 0x0200 | 0x0008);          /* sparse_super2, ext_attr */
    lcow_le_put32(sb + 0x60, 0x0002 | 0x0040 | 0x0200 | /* filetype, extents, flex_bg */
                                 (w->inline_data ? 0x8000u : 0));
    lcow_le_put32(sb + 0x64, 0x0002 | 0x0008 | 0x0040 | 0x1000); /* large, huge, isize, ro */
    lcow_le_put16(sb + 0x15C, EXTRA_ISIZE);
    lcow_le_put16(sb + 0x15E, EXTRA_ISIZE);
    sb[0x174] = 31;                       /* log groups per flex */
    lcow_le_put32(sb + 0x268, FIRST_INO); /* lost+found */
    rc = lcow_ext4_writer_raw_write(w, sbb, BS, 0, err);
    if (rc != LCOW_OK)
        return rc;
    if (w->on_final) {
        w->on_final(w->on_final_ctx, 0, sbb, BS);
        /* xattr blocks are final now */
        uint8_t xb[BS];
        for (size_t i = 0; i < w->nxblocks; i++) {
            rc = lcow_ext4_writer_out_read_block(w, w->xblocks[i], xb, err);
            if (rc != LCOW_OK)
                return rc;
            w->on_final(w->on_final_ctx, (uint64_t)w->xblocks[i] * BS, xb, BS);
        }
    }
    w->stats.groups = groups;
    w->stats.inodes_per_group = ipg;
    w->finished = true;
    if (image_size)
        *image_size = (uint64_t)disk * BS;
    return LCOW_OK;
}

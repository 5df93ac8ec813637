/* Compact ext4 writer: the output buffer, released blocks, and the data of
 * files and directories with their extent trees. */
#include "core/disk/ext4_writer_internal.h"

#include <string.h>

#include "core/disk/byteorder.h"

/* ---- output ---- */

/* Reports [off, off+len) to on_final, leaving out xattr blocks (they may be
 * rewritten; finish reports them). Calls come in ascending offset order. */
static void report(lcow_ext4_writer *w, uint64_t off, const uint8_t *data, size_t len)
{
    if (!w->on_final || len == 0)
        return;
    uint64_t end = off + len;
    while (w->xcursor < w->nxblocks && (uint64_t)w->xblocks[w->xcursor] * BS < off)
        w->xcursor++;
    while (off < end) {
        uint64_t skip = UINT64_MAX;
        if (w->xcursor < w->nxblocks) {
            uint64_t x = (uint64_t)w->xblocks[w->xcursor] * BS;
            if (x < end)
                skip = x;
        }
        if (skip == UINT64_MAX) {
            w->on_final(w->on_final_ctx, off, data, (size_t)(end - off));
            return;
        }
        if (skip > off)
            w->on_final(w->on_final_ctx, off, data, (size_t)(skip - off));
        data += skip + BS - off;
        off = skip + BS;
        w->xcursor++;
    }
}

lcow_code lcow_ext4_writer_raw_write(lcow_ext4_writer *w, const void *data, size_t len,
                                     uint64_t off, lcow_error *err)
{
    w->stats.write_calls++;
    w->stats.bytes_written += len;
    lcow_code rc = lcow_file_pwrite(w->f, data, len, off, err);
    if (rc == LCOW_OK && w->on_written && off + len >= w->written_upto + WRITTEN_STEP &&
        off >= w->written_upto) {
        w->on_written(w->on_written_ctx, w->written_upto, off + len - w->written_upto);
        w->written_upto = off + len;
    }
    return fail(w, rc);
}

/* Writes the whole blocks of the buffer, keeping a partial last block. */
lcow_code lcow_ext4_writer_out_flush(lcow_ext4_writer *w, lcow_error *err)
{
    size_t n = w->len & ~(size_t)(BS - 1);
    if (n == 0)
        return LCOW_OK;
    lcow_code rc = lcow_ext4_writer_raw_write(w, w->buf, n, w->base, err);
    if (rc != LCOW_OK)
        return rc;
    report(w, w->base, w->buf, n);
    memmove(w->buf, w->buf + n, w->len - n);
    w->base += n;
    w->len -= n;
    return LCOW_OK;
}

lcow_code lcow_ext4_writer_too_big(lcow_ext4_writer *w, lcow_error *err)
{
    return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                  "ext4: the image would exceed the maximum disk size of %llu "
                                  "bytes",
                                  (unsigned long long)w->max_disk));
}

lcow_code lcow_ext4_writer_out_write(lcow_ext4_writer *w, const void *data, size_t n,
                                     lcow_error *err)
{
    if (out_pos(w) + n > w->max_disk)
        return lcow_ext4_writer_too_big(w, err);
    const uint8_t *p = data;
    while (n > 0) {
        if (w->len == 0 && n >= DIRECT_MIN) {
            /* Large data: straight from the caller's memory. */
            size_t k = n & ~(size_t)(BS - 1);
            lcow_code rc = lcow_ext4_writer_raw_write(w, p, k, w->base, err);
            if (rc != LCOW_OK)
                return rc;
            report(w, w->base, p, k);
            w->base += k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = w->cap - w->len;
        if (k > n)
            k = n;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
        if (w->len == w->cap) {
            lcow_code rc = lcow_ext4_writer_out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
        }
    }
    return LCOW_OK;
}

/* n zero bytes. Whole zero blocks are skipped, not written: the file is new
 * and finish sets its length, so they read as zero. */
lcow_code lcow_ext4_writer_out_zero(lcow_ext4_writer *w, uint64_t n, lcow_error *err)
{
    if (out_pos(w) + n > w->max_disk)
        return lcow_ext4_writer_too_big(w, err);
    while (n > 0) {
        size_t in_block = (size_t)(out_pos(w) % BS);
        if (in_block == 0 && n >= BS) {
            lcow_code rc = lcow_ext4_writer_out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
            uint64_t whole = n & ~(uint64_t)(BS - 1);
            w->base += whole; /* len is 0: the buffer was block-aligned */
            n -= whole;
            continue;
        }
        size_t k = w->cap - w->len;
        if (k > n)
            k = (size_t)n;
        if (in_block != 0 && k > BS - in_block)
            k = BS - in_block;
        memset(w->buf + w->len, 0, k);
        w->len += k;
        n -= k;
        if (w->len == w->cap) {
            lcow_code rc = lcow_ext4_writer_out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
        }
    }
    return LCOW_OK;
}

/* Overwrites an earlier whole block (an xattr block being rewritten). */
lcow_code lcow_ext4_writer_out_rewrite_block(lcow_ext4_writer *w, uint32_t block,
                                             const uint8_t *data, lcow_error *err)
{
    uint64_t off = (uint64_t)block * BS;
    if (off >= w->base) {
        memcpy(w->buf + (off - w->base), data, BS);
        return LCOW_OK;
    }
    return lcow_ext4_writer_raw_write(w, data, BS, off, err);
}

lcow_code lcow_ext4_writer_out_read_block(lcow_ext4_writer *w, uint32_t block, uint8_t *data,
                                          lcow_error *err)
{
    uint64_t off = (uint64_t)block * BS;
    if (off >= w->base) {
        memcpy(data, w->buf + (off - w->base), BS);
        return LCOW_OK;
    }
    size_t got = 0;
    lcow_code rc = lcow_file_pread(w->f, data, BS, off, &got, err);
    if (rc == LCOW_OK && got != BS)
        rc = lcow_error_set(err, LCOW_INTERNAL, "ext4 writer: short read of block %u", block);
    return fail(w, rc);
}

/* ---- released blocks, file data, extents ---- */

void lcow_ext4_writer_release_blocks(lcow_ext4_writer *w, uint64_t start, uint64_t count)
{
    if (count == 0)
        return;
    if (lcow_grow(&w->freed, &w->freed_cap, w->nfreed + 1, sizeof *w->freed)) {
        w->freed[w->nfreed].start = start;
        w->freed[w->nfreed].end = start + count;
        w->nfreed++;
        w->stats.released_blocks += count;
    }
    /* Without memory the blocks stay marked in use: wasted, not corrupt. */
}

void lcow_ext4_writer_release_data(lcow_ext4_writer *w, node *n)
{
    lcow_ext4_writer_release_blocks(w, n->data_start, n->data_blocks);
    n->block_count -= n->data_blocks;
    n->data_blocks = 0;
    n->data_start = 0;
}

/* The data written for the current file or directory: pads its last block
 * and records its extents (compactext4's writeExtents). */
static lcow_code write_extents(lcow_ext4_writer *w, node *n, lcow_error *err)
{
    uint64_t start = out_pos(w) - w->cur_written;
    if (out_pos(w) % BS) {
        lcow_code rc = lcow_ext4_writer_out_zero(w, BS - out_pos(w) % BS, err);
        if (rc != LCOW_OK)
            return rc;
    }
    uint32_t start_block = (uint32_t)(start / BS);
    uint32_t blocks = out_block(w) - start_block;
    uint32_t used = blocks;
    uint32_t extents = (blocks + EXTENT_MAX_LEN - 1) / EXTENT_MAX_LEN;
    uint8_t root[IBLOCK] = {0};
    size_t root_len = 0;

    /* compactext4's fillExtents, uint32 arithmetic kept (past the file end
     * its lengths wrap, as tar2ext4's do for files over 340 extents). */
#define FILL_EXTENTS(p, count, first, offset)                                                      \
    for (uint32_t e_ = 0; e_ < (count); e_++) {                                                    \
        uint32_t blk_ = (offset) + e_ * EXTENT_MAX_LEN;                                            \
        uint32_t len_ = blocks - blk_;                                                             \
        if (len_ > EXTENT_MAX_LEN)                                                                 \
            len_ = EXTENT_MAX_LEN;                                                                 \
        uint8_t *q_ = (p) + 12 + 12 * e_;                                                          \
        lcow_le_put32(q_, blk_);                                                                   \
        lcow_le_put16(q_ + 4, (uint16_t)len_);                                                     \
        lcow_le_put32(q_ + 8, (first) + blk_);                                                     \
    }

    if (extents == 0) {
        root_len = 0;
    } else if (extents <= 4) {
        lcow_le_put16(root, 0xF30A);
        lcow_le_put16(root + 2, (uint16_t)extents);
        lcow_le_put16(root + 4, 4);
        FILL_EXTENTS(root, extents, start_block, 0u);
        root_len = IBLOCK;
    } else if (extents <= 4 * EXTENTS_PER_LEAF) {
        uint32_t leaves = extents / EXTENTS_PER_LEAF + 1;
        if (leaves > 4)
            return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                          "ext4: file too big for the extent tree"));
        used += leaves;
        lcow_le_put16(root, 0xF30A);
        lcow_le_put16(root + 2, (uint16_t)leaves);
        lcow_le_put16(root + 4, 4);
        lcow_le_put16(root + 6, 1);
        uint8_t leaf[BS];
        for (uint32_t i = 0; i < leaves; i++) {
            uint32_t offset = i * EXTENTS_PER_LEAF * EXTENT_MAX_LEN;
            lcow_le_put32(root + 12 + 12 * i, offset);
            lcow_le_put32(root + 12 + 12 * i + 4, out_block(w));
            uint32_t in_leaf = extents - i * leaves; /* sic: compactext4's arithmetic */
            if (in_leaf > EXTENTS_PER_LEAF)
                in_leaf = EXTENTS_PER_LEAF;
            memset(leaf, 0, sizeof leaf);
            lcow_le_put16(leaf, 0xF30A);
            lcow_le_put16(leaf + 2, (uint16_t)in_leaf);
            lcow_le_put16(leaf + 4, EXTENTS_PER_LEAF);
            FILL_EXTENTS(leaf, in_leaf, start_block + offset, offset);
            lcow_code rc = lcow_ext4_writer_out_write(w, leaf, BS, err);
            if (rc != LCOW_OK)
                return rc;
        }
        root_len = IBLOCK;
    } else {
        return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "ext4: file too big for the extent tree"));
    }
#undef FILL_EXTENTS
    memcpy(n->iblock, root, IBLOCK);
    n->data_len = (uint8_t)root_len;
    n->flags |= FL_EXTENTS;
    n->block_count += used;
    n->data_start = start_block;
    n->data_blocks = used;
    return LCOW_OK;
}

/* Ends the current file: compactext4's finishInode. */
lcow_code lcow_ext4_writer_finish_data(lcow_ext4_writer *w, lcow_error *err)
{
    if (!w->cur)
        return LCOW_OK;
    node *n = N(w, w->cur);
    if (w->cur_written != w->cur_max)
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%s: %llu bytes of data written, %llu expected",
                                      w->cur_name ? w->cur_name : "?",
                                      (unsigned long long)w->cur_written,
                                      (unsigned long long)w->cur_max));
    if (w->cur_max != 0 && !(n->flags & FL_INLINE_DATA)) {
        lcow_code rc = write_extents(w, n, err);
        if (rc != LCOW_OK)
            return rc;
    }
    w->cur = 0;
    w->cur_written = w->cur_max = 0;
    return LCOW_OK;
}

lcow_code lcow_ext4_writer_start_data(lcow_ext4_writer *w, uint32_t ino, uint64_t size,
                                      const char *name, size_t len, lcow_error *err)
{
    w->cur = ino;
    w->cur_written = 0;
    w->cur_max = size;
    size_t show = len > 200 ? 200 : len;
    if (!lcow_grow(&w->cur_name, &w->cur_name_cap, show + 1, 1))
        return oom(w, err);
    memcpy(w->cur_name, name, show);
    w->cur_name[show] = 0;
    return LCOW_OK;
}

/* Data for the current file: into the inode when inline, else the image. */
lcow_code lcow_ext4_writer_data_write(lcow_ext4_writer *w, const void *data, size_t len,
                                      lcow_error *err)
{
    if (len == 0)
        return LCOW_OK;
    if (!w->cur)
        return fail(w, lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                      "ext4 writer: no regular file is open for data"));
    if (w->cur_written + len > w->cur_max)
        return fail(w, lcow_error_set(
                           err, LCOW_INVALID_ARGUMENT, "%s: more data than the %llu bytes declared",
                           w->cur_name ? w->cur_name : "?", (unsigned long long)w->cur_max));
    node *n = N(w, w->cur);
    if (n->flags & FL_INLINE_DATA) {
        const uint8_t *p = data;
        for (size_t i = 0; i < len; i++) {
            uint64_t at = w->cur_written + i;
            if (at < IBLOCK)
                n->iblock[at] = p[i];
            else
                w->extras[n->extra - 1].tail[at - IBLOCK] = p[i];
        }
        w->cur_written += len;
        return LCOW_OK;
    }
    lcow_code rc = lcow_ext4_writer_out_write(w, data, len, err);
    if (rc != LCOW_OK)
        return rc;
    w->cur_written += len;
    return LCOW_OK;
}

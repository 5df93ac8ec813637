/* Compaction of a scratch VHDX: free, relocate, truncate (compact.h has the
 * ordering that makes it crash-safe). */
#include "core/disk/compact.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/types.h"
#include "core/disk/ext4_view.h"

#define MiB (1024u * 1024u)
#define COPY_CHUNK MiB
#define BATCH_BYTES (64u * MiB) /* data copied between two syncs */

typedef struct placed {
    uint64_t block;
    uint64_t offset;     /* where it is */
    uint64_t new_offset; /* where it goes (== offset: stays) */
} placed;

static int by_offset(const void *a, const void *b)
{
    const placed *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static lcow_code stop_at(lcow_compact_step_fn step, void *ctx, const char *name, lcow_error *err)
{
    if (step && step(ctx, name))
        return lcow_error_set(err, LCOW_UNAVAILABLE, "compact: stopped after step \"%s\"", name);
    return LCOW_OK;
}

static lcow_code sync_io(const lcow_vhdx_io *io, const char *what, lcow_error *err)
{
    lcow_code rc = io->sync(io->ctx, err);
    return rc ? lcow_error_wrap_code(err, rc, "compact: sync after %s", what) : LCOW_OK;
}

static lcow_code copy_block(const lcow_vhdx_io *io, uint8_t *buf, uint64_t from, uint64_t to,
                            uint32_t block_size, lcow_error *err)
{
    for (uint64_t done = 0; done < block_size; done += COPY_CHUNK) {
        size_t n = block_size - done < COPY_CHUNK ? (size_t)(block_size - done) : COPY_CHUNK;
        size_t got = 0;
        lcow_code rc = io->pread(io->ctx, buf, n, from + done, &got, err);
        if (!rc && got != n)
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "compact: payload block at %llu is cut short by the end of file",
                                (unsigned long long)from);
        if (!rc)
            rc = io->pwrite(io->ctx, buf, n, to + done, err);
        if (rc)
            return lcow_error_wrap_code(err, rc, "compact: moving the block at %llu to %llu",
                                        (unsigned long long)from, (unsigned long long)to);
    }
    return LCOW_OK;
}

/* Plans step 4 on the blocks that stay (sorted by offset): the highest goes
 * into the lowest free slot below it, until the slots and blocks meet. */
static void plan_moves(placed *keep, size_t n, uint64_t start, uint32_t bs, size_t *moves)
{
    *moves = 0;
    for (size_t k = 0; k < n; k++)
        keep[k].new_offset = keep[k].offset;
    if (!n)
        return;
    uint64_t p = start;
    size_t i = 0, j = n - 1;
    while (i <= j) {
        if (keep[i].offset < p + bs) { /* in the way: the next slot is after it */
            if (keep[i].offset + bs > p)
                p = keep[i].offset + bs;
            i++;
            continue;
        }
        keep[j].new_offset = p; /* [p, p+bs) is free and below keep[i] <= keep[j] */
        p += bs;
        (*moves)++;
        if (j == 0)
            break;
        j--;
    }
}

static lcow_code run_moves(lcow_vhdx_reader *r, const lcow_vhdx_io *io, placed *keep, size_t n,
                           uint32_t bs, lcow_compact_step_fn step, void *step_ctx, lcow_error *err)
{
    uint8_t *buf = malloc(COPY_CHUNK);
    if (!buf)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "compact: out of memory");
    size_t per_batch = BATCH_BYTES / bs ? BATCH_BYTES / bs : 1;
    lcow_code rc = LCOW_OK;
    /* Moves are the highest blocks: walk down from the end. */
    size_t k = n;
    while (k > 0 && !rc) {
        size_t batch_end = k, count = 0;
        while (k > 0 && count < per_batch && keep[k - 1].new_offset != keep[k - 1].offset) {
            k--;
            count++;
            rc = copy_block(io, buf, keep[k].offset, keep[k].new_offset, bs, err);
            if (rc)
                break;
        }
        if (!count || rc)
            break;
        if ((rc = sync_io(io, "copying blocks", err)) ||
            (rc = stop_at(step, step_ctx, "copied", err)))
            break;
        for (size_t m = k; m < batch_end && !rc; m++)
            rc = lcow_vhdx_reader_set_block(r, keep[m].block, LCOW_VHDX_BLOCK_FULLY_PRESENT,
                                            keep[m].new_offset, err);
        if (!rc && !(rc = sync_io(io, "remapping blocks", err)))
            rc = stop_at(step, step_ctx, "remapped", err);
    }
    free(buf);
    return rc;
}

static lcow_code compact_open(lcow_vhdx_reader *r, const lcow_vhdx_io *io, lcow_compact_report *rep,
                              lcow_compact_step_fn step, void *step_ctx, lcow_error *err)
{
    const lcow_vhdx_info *vi = lcow_vhdx_reader_info(r);
    rep->bytes_before = rep->bytes_after = vi->file_size;
    if (vi->leave_blocks_allocated)
        return lcow_error_set(
            err, LCOW_FAILED_PRECONDITION,
            "compact: a fixed VHDX (LeaveBlockAllocated) has nothing to give back");
    lcow_vhdx_check_report chk;
    lcow_code rc = lcow_vhdx_reader_check(r, &chk, err);
    if (rc)
        return rc;
    rep->blocks_present_before = chk.present_blocks;
    uint32_t bs = vi->block_size;
    uint64_t blocks = (vi->virtual_size + bs - 1) / bs;
    uint8_t *used = calloc((size_t)((blocks + 7) / 8), 1);
    /* Present blocks fit in the file (check), so this is bounded by it. */
    placed *keep = chk.present_blocks ? malloc((size_t)chk.present_blocks * sizeof *keep) : NULL;
    uint64_t *freed =
        chk.present_blocks ? malloc((size_t)chk.present_blocks * sizeof *freed) : NULL;
    if (!used || (chk.present_blocks && (!keep || !freed))) {
        rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "compact: out of memory");
        goto out;
    }
    if ((rc = lcow_ext4_view_used_map(r, used, blocks, err)))
        goto out;
    size_t n_keep = 0, n_freed = 0;
    for (uint64_t b = 0; b < blocks && !rc; b++) {
        lcow_vhdx_block_state st;
        uint64_t off;
        if ((rc = lcow_vhdx_reader_block(r, b, &st, &off, err)))
            break;
        if (st != LCOW_VHDX_BLOCK_FULLY_PRESENT)
            continue;
        if (n_keep + n_freed >= chk.present_blocks) {
            rc = lcow_error_set(err, LCOW_INTERNAL, "compact: the BAT changed while reading it");
            break;
        }
        if (used[b / 8] & (1u << (b % 8)))
            keep[n_keep++] = (placed){b, off, off};
        else
            freed[n_freed++] = b;
    }
    if (rc)
        goto out;
    qsort(keep, n_keep, sizeof *keep, by_offset);
    uint64_t start = lcow_vhdx_reader_payload_start(r);
    size_t moves;
    plan_moves(keep, n_keep, start, bs, &moves);
    uint64_t new_end = start;
    for (size_t k = 0; k < n_keep; k++)
        if (keep[k].new_offset + bs > new_end)
            new_end = keep[k].new_offset + bs;
    if (!n_freed && !moves && new_end >= vi->file_size)
        goto out; /* nothing to give back: the file stays untouched */

    if ((rc = lcow_vhdx_reader_begin_update(r, err)) ||
        (rc = stop_at(step, step_ctx, "header", err)))
        goto out;
    for (size_t k = 0; k < n_freed && !rc; k++)
        rc = lcow_vhdx_reader_set_block(r, freed[k], LCOW_VHDX_BLOCK_ZERO, 0, err);
    if (rc || (rc = sync_io(io, "freeing blocks", err)) ||
        (rc = stop_at(step, step_ctx, "freed", err)))
        goto out;
    rep->blocks_freed = n_freed;
    if ((rc = run_moves(r, io, keep, n_keep, bs, step, step_ctx, err)))
        goto out;
    rep->blocks_moved = moves;
    if (new_end < vi->file_size) {
        if ((rc = io->truncate(io->ctx, new_end, err))) {
            rc = lcow_error_wrap_code(err, rc, "compact: truncating to %llu",
                                      (unsigned long long)new_end);
            goto out;
        }
        if ((rc = sync_io(io, "truncating", err)) ||
            (rc = stop_at(step, step_ctx, "truncated", err)))
            goto out;
    }
    uint64_t size = 0;
    if ((rc = io->size(io->ctx, &size, err)))
        goto out;
    rep->bytes_after = size;
out:
    free(used);
    free(keep);
    free(freed);
    return rc;
}

lcow_code lcow_compact_vhdx(const lcow_vhdx_io *io, lcow_compact_report *report,
                            lcow_compact_step_fn step, void *step_ctx, lcow_error *err)
{
    lcow_compact_report local;
    lcow_compact_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    if (!io->pwrite || !io->sync || !io->truncate)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "compact: the disk is not writable");
    lcow_vhdx_reader *r;
    lcow_code rc = lcow_vhdx_reader_open(io, &r, err);
    if (rc)
        return rc;
    rc = compact_open(r, io, rep, step, step_ctx, err);
    lcow_vhdx_reader_free(r);
    return rc;
}

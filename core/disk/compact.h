/* Compaction of a dynamic VHDX holding ext4 (a scratch disk): gives back to
 * the host every payload block that holds only free ext4 blocks.
 *
 * The sequence, each step durable (io.sync) before the next, so that a
 * crash (kill -9, power loss after a sync) at any point leaves a valid VHDX
 * whose filesystem reads as before:
 *   1. read the BAT and the ext4 block bitmaps (ext4_view.h); nothing to
 *      give back: stop here, the file untouched;
 *   2. header update (new FileWriteGuid/DataWriteGuid, the other header);
 *   3. BAT: every present block holding only free ext4 blocks -> ZERO;
 *      sync. Those blocks read as zeros now, and free blocks may.
 *   4. relocation: the present block highest in the file is copied into
 *      the lowest unreferenced slot below it; copies synced, then their BAT
 *      entries point at the copies, synced (a crash in between leaves the
 *      BAT on the old copy, intact);
 *   5. the file is truncated past its last present block; sync.
 * No log is written and no file is made sparse (Windows refuses to attach
 * a sparse VHDX), so the space comes back as a shorter file on every
 * platform. docs/design.md ("Compact") has the reasoning. */
#ifndef LCOW_COMPACT_H
#define LCOW_COMPACT_H

#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/vhdx.h"

typedef struct lcow_compact_report {
    uint64_t bytes_before; /* file length before */
    uint64_t bytes_after;  /* and after */
    uint64_t blocks_present_before;
    uint64_t blocks_freed; /* BAT entries set to ZERO */
    uint64_t blocks_moved; /* present blocks relocated towards the start */
} lcow_compact_report;

/* Test seam: called after each durable step with its name ("header",
 * "freed", "copied", "remapped", "truncated"); a non-zero return stops
 * compaction there with UNAVAILABLE, as a crash at that point would. */
typedef int (*lcow_compact_step_fn)(void *ctx, const char *step);

/* Compacts the VHDX on io (pread, pwrite, size, truncate and sync all
 * needed), which the caller has opened exclusively. FAILED_PRECONDITION for
 * a disk that must not be compacted (fixed disk, unclean filesystem),
 * INVALID_ARGUMENT / NOT_IMPLEMENTED for what the readers refuse. */
lcow_code lcow_compact_vhdx(const lcow_vhdx_io *io, lcow_compact_report *report,
                            lcow_compact_step_fn step, void *step_ctx, lcow_error *err);

#endif

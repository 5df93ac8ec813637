/* Block sinks: where the ext4 formatter's blocks go. A sink is a virtual disk
 * of `size` bytes that reads as zero wherever nothing was written; the
 * formatter writes only the blocks that hold non-zero data.
 *
 * Sinks: a raw image file, the dynamic VHDX writer, a callback (tests, the
 * virtdisk backend's fakes) and, on Windows, an attached disk's handle. */
#ifndef LCOW_BLOCKSINK_H
#define LCOW_BLOCKSINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/os/os.h"
#include "core/disk/vhdx.h"

typedef struct lcow_block_sink lcow_block_sink;

typedef struct lcow_block_sink_ops {
    lcow_code (*write)(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                       lcow_error *err);
    /* Makes everything written durable (and, for files, sets the length). */
    lcow_code (*finish)(lcow_block_sink *s, lcow_error *err);
    void (*destroy)(lcow_block_sink *s);
} lcow_block_sink_ops;

struct lcow_block_sink {
    const lcow_block_sink_ops *ops;
    uint64_t size; /* virtual size in bytes */
    uint64_t bytes_written;
    uint64_t writes;
};

/* Bounds-checked write: [off, off+len) must lie inside the sink. */
lcow_code lcow_block_sink_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                                lcow_error *err);
lcow_code lcow_block_sink_finish(lcow_block_sink *s, lcow_error *err);
/* NULL is a no-op. Does not finish: an unfinished sink is abandoned. */
void lcow_block_sink_free(lcow_block_sink *s);

/* Raw image in f (not owned): writes in place; finish sets the length to
 * size (the rest reads as zero) and syncs when sync is true. */
lcow_code lcow_block_sink_raw_file(lcow_file *f, uint64_t size, bool sync, lcow_block_sink **out,
                                   lcow_error *err);

/* Virtual disk of the VHDX writer w (not owned); finish calls
 * lcow_vhdx_writer_finish(w, sync). */
lcow_code lcow_block_sink_vhdx(lcow_vhdx_writer *w, uint64_t size, bool sync, lcow_block_sink **out,
                               lcow_error *err);

typedef lcow_code (*lcow_block_sink_write_fn)(void *ctx, uint64_t off, const void *buf, size_t len,
                                              lcow_error *err);
typedef lcow_code (*lcow_block_sink_finish_fn)(void *ctx, lcow_error *err);
/* Forwards to the callbacks (finish may be NULL). */
lcow_code lcow_block_sink_callback(lcow_block_sink_write_fn write, lcow_block_sink_finish_fn finish,
                                   void *ctx, uint64_t size, lcow_block_sink **out,
                                   lcow_error *err);

/* ---- platform (blocksink_posix.c / blocksink_win.c) ---- */

/* Windows only: a sink over a disk or volume HANDLE (passed as void * so this
 * header stays free of <windows.h>; not owned). Writes must be multiples of
 * sector_size at aligned offsets; finish flushes the handle. Elsewhere
 * returns NOT_IMPLEMENTED. */
lcow_code lcow_block_sink_win_handle(void *handle, uint64_t size, uint32_t sector_size,
                                     lcow_block_sink **out, lcow_error *err);

#endif

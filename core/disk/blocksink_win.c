/* Windows side of the block sinks: a sink over a disk handle
 * (\\.\PhysicalDriveN of an attached VHDX). */
#include "core/disk/blocksink.h"

#include <stdlib.h>

#include <windows.h>

typedef struct handle_sink {
    lcow_block_sink base;
    HANDLE handle;
    uint32_t sector_size;
} handle_sink;

static lcow_code handle_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                              lcow_error *err)
{
    handle_sink *h = (handle_sink *)s;
    if (off % h->sector_size || len % h->sector_size)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "disk write of %zu bytes at %llu is not aligned to %u-byte sectors",
                              len, (unsigned long long)off, h->sector_size);
    const char *p = buf;
    while (len) {
        DWORD chunk = len > (1u << 30) ? (1u << 30) : (DWORD)len;
        OVERLAPPED ov = {0};
        ov.Offset = (DWORD)off;
        ov.OffsetHigh = (DWORD)(off >> 32);
        DWORD done = 0;
        if (!WriteFile(h->handle, p, chunk, &done, &ov) || done == 0)
            return lcow_error_set(err, LCOW_INTERNAL, "disk write at %llu failed (error %lu)",
                                  (unsigned long long)off, (unsigned long)GetLastError());
        p += done;
        off += done;
        len -= done;
    }
    return LCOW_OK;
}

static lcow_code handle_finish(lcow_block_sink *s, lcow_error *err)
{
    handle_sink *h = (handle_sink *)s;
    if (!FlushFileBuffers(h->handle))
        return lcow_error_set(err, LCOW_INTERNAL, "flushing the disk failed (error %lu)",
                              (unsigned long)GetLastError());
    return LCOW_OK;
}

static void handle_destroy(lcow_block_sink *s)
{
    free(s);
}

static const lcow_block_sink_ops handle_ops = {handle_write, handle_finish, handle_destroy};

lcow_code lcow_block_sink_win_handle(void *handle, uint64_t size, uint32_t sector_size,
                                     lcow_block_sink **out, lcow_error *err)
{
    *out = NULL;
    if (!handle || handle == INVALID_HANDLE_VALUE || !sector_size)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "disk sink: invalid handle");
    handle_sink *h = calloc(1, sizeof *h);
    if (!h)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "disk sink: out of memory");
    h->base.ops = &handle_ops;
    h->base.size = size;
    h->handle = handle;
    h->sector_size = sector_size;
    *out = &h->base;
    return LCOW_OK;
}

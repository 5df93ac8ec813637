/* POSIX side of the block sinks: no disk-handle sink. */
#include "core/disk/blocksink.h"

lcow_code lcow_block_sink_win_handle(void *handle, uint64_t size, uint32_t sector_size,
                                     lcow_block_sink **out, lcow_error *err)
{
    *out = NULL;
    return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "disk handle sinks exist only on Windows");
}

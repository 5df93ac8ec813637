/* POSIX side of the block sinks: random bytes; no disk-handle sink. */
#include "core/disk/blocksink.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

lcow_code lcow_disk_random(void *buf, size_t len, lcow_error *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom((char *)buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return lcow_error_set(err, LCOW_INTERNAL, "getrandom: %s", strerror(errno));
        }
        done += (size_t)n;
    }
    return LCOW_OK;
}

lcow_code lcow_block_sink_win_handle(void *handle, uint64_t size, uint32_t sector_size,
                                     lcow_block_sink **out, lcow_error *err)
{
    *out = NULL;
    return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "disk handle sinks exist only on Windows");
}

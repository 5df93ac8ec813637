/* Server settings shared by both transports. See server_common.h. */
#include "rpc/server_common.h"

#include "core/os/thread.h"
#include "rpc/frame.h"

_Static_assert(LCOW_SERVER_DEFAULT_MAX_FRAME_BYTES == LCOW_FRAME_DEFAULT_MAX_BYTES,
               "the server's frame limit and the frame reader's default are one fact");

/* Workers: 2 x CPUs, at least 4 (they block in disk I/O and LevelDB). */
static unsigned default_workers(void)
{
    unsigned n = lcow_thread_cpu_count() * 2;
    return n < 4 ? 4 : n;
}

void lcow_server_settings_resolve(const lcow_server_config *config, lcow_server_settings *out)
{
    static const lcow_server_config none = {0};
    if (!config)
        config = &none;
    out->session.max_frame_bytes =
        config->max_frame_bytes ? config->max_frame_bytes : LCOW_SERVER_DEFAULT_MAX_FRAME_BYTES;
    out->max_connections =
        config->max_connections ? config->max_connections : LCOW_SERVER_DEFAULT_MAX_CONNECTIONS;
    out->idle_timeout_ms =
        config->idle_timeout_ms ? config->idle_timeout_ms : LCOW_SERVER_DEFAULT_IDLE_TIMEOUT_MS;
    out->worker_threads = config->worker_threads ? config->worker_threads : default_workers();
    out->session.max_pending = LCOW_SERVER_CONN_MAX_PENDING;
    out->session.max_output = LCOW_SERVER_CONN_MAX_OUTPUT;
    out->session.protocol = config->protocol;
}

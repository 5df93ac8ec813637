/* Server settings shared by both transports. See server_common.h. */
#include "rpc/server_common.h"

#include <stdint.h>

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
    out->frame_timeout_ms =
        config->frame_timeout_ms ? config->frame_timeout_ms : LCOW_SERVER_DEFAULT_FRAME_TIMEOUT_MS;
    out->worker_threads = config->worker_threads ? config->worker_threads : default_workers();
    out->session.max_pending = LCOW_SERVER_CONN_MAX_PENDING;
    out->session.max_output = LCOW_SERVER_CONN_MAX_OUTPUT;
    out->session.protocol = config->protocol;
}

void lcow_conn_clock_start(lcow_conn_clock *k, int64_t now_ms)
{
    k->active_ms = now_ms;
    k->frame_start_ms = 0;
    k->requests = 0;
}

void lcow_conn_clock_fed(lcow_conn_clock *k, lcow_session *s, int64_t now_ms)
{
    uint64_t n = lcow_session_requests(s);
    bool in = lcow_session_in_request(s);
    /* A protocol that does not count requests completes one when it leaves
     * the middle of a request. */
    bool completed = n != k->requests || (n == 0 && !in && k->frame_start_ms != 0);
    k->requests = n;
    if (completed)
        k->active_ms = now_ms;
    if (!in)
        k->frame_start_ms = 0;
    else if (completed || k->frame_start_ms == 0)
        k->frame_start_ms = now_ms; /* a new request started */
}

void lcow_conn_clock_active(lcow_conn_clock *k, int64_t now_ms)
{
    k->active_ms = now_ms;
}

void lcow_conn_clock_paused(lcow_conn_clock *k, int64_t now_ms)
{
    if (k->frame_start_ms != 0)
        k->frame_start_ms = now_ms;
}

int64_t lcow_conn_clock_deadline(const lcow_conn_clock *k, const lcow_server_settings *settings,
                                 bool idle, const char **why)
{
    int64_t deadline = INT64_MAX;
    *why = NULL;
    if (idle) {
        deadline = k->active_ms + (int64_t)settings->idle_timeout_ms;
        *why = "idle timeout";
    }
    if (k->frame_start_ms != 0) {
        int64_t frame = k->frame_start_ms + (int64_t)settings->frame_timeout_ms;
        if (frame < deadline) {
            deadline = frame;
            *why = "frame timeout (a request did not arrive whole in time)";
        }
    }
    return deadline;
}

/* What the two server transports (server_posix.c, server_win.c) share: the
 * configuration with its defaults filled in, and the limits each connection
 * is held to. One copy, in server_common.c. */
#ifndef LCOW_RPC_SERVER_COMMON_H
#define LCOW_RPC_SERVER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "rpc/server.h"
#include "rpc/session.h"

typedef struct lcow_server_settings {
    unsigned max_connections;
    unsigned idle_timeout_ms;
    unsigned frame_timeout_ms;
    unsigned worker_threads;
    /* Per connection: max_frame_bytes and LCOW_SERVER_CONN_MAX_*. */
    lcow_session_limits session;
} lcow_server_settings;

/* config's values with every 0 replaced by its default; config may be NULL. */
void lcow_server_settings_resolve(const lcow_server_config *config, lcow_server_settings *out);

/* The two deadlines of a connection, kept by its transport's I/O thread
 * (times in milliseconds of a monotonic clock, passed in):
 * - idle: idle_timeout_ms after the last activity (a request completed, work
 *   of the connection running or finished, output written); bytes of an
 *   unfinished request are not activity, so a client that trickles an
 *   endless request is idle;
 * - frame: frame_timeout_ms after the first byte of an unfinished request
 *   (the clock stands still while the transport is not reading because the
 *   connection is full). */
typedef struct lcow_conn_clock {
    int64_t active_ms;
    int64_t frame_start_ms; /* 0: no unfinished request */
    uint64_t requests;      /* lcow_session_requests at the last feed */
} lcow_conn_clock;

void lcow_conn_clock_start(lcow_conn_clock *k, int64_t now_ms);
/* After bytes were fed to s. */
void lcow_conn_clock_fed(lcow_conn_clock *k, lcow_session *s, int64_t now_ms);
void lcow_conn_clock_active(lcow_conn_clock *k, int64_t now_ms);
/* The transport is not reading (backpressure): the frame clock waits. */
void lcow_conn_clock_paused(lcow_conn_clock *k, int64_t now_ms);
/* When the connection expires (INT64_MAX: never) and why; the idle
 * deadline counts only when idle is true (nothing of the connection's is
 * queued or running). */
int64_t lcow_conn_clock_deadline(const lcow_conn_clock *k, const lcow_server_settings *settings,
                                 bool idle, const char **why);

#endif

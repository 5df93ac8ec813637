/* What the two server transports (server_posix.c, server_win.c) share: the
 * configuration with its defaults filled in, and the limits each connection
 * is held to. One copy, in server_common.c. */
#ifndef LCOW_RPC_SERVER_COMMON_H
#define LCOW_RPC_SERVER_COMMON_H

#include <stddef.h>

#include "rpc/server.h"
#include "rpc/session.h"

typedef struct lcow_server_settings {
    unsigned max_connections;
    unsigned idle_timeout_ms;
    unsigned worker_threads;
    /* Per connection: max_frame_bytes and LCOW_SERVER_CONN_MAX_*. */
    lcow_session_limits session;
} lcow_server_settings;

/* config's values with every 0 replaced by its default; config may be NULL. */
void lcow_server_settings_resolve(const lcow_server_config *config, lcow_server_settings *out);

#endif

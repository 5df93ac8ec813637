/* What the two server transports (server_posix.c, server_win.c) share: the
 * configuration with its defaults filled in, and the limits each connection
 * is held to. One copy, in server_common.c. */
#ifndef LCOW_RPC_SERVER_COMMON_H
#define LCOW_RPC_SERVER_COMMON_H

#include <stddef.h>

#include "rpc/server.h"

typedef struct lcow_server_settings {
    size_t max_frame_bytes;
    unsigned max_connections;
    unsigned idle_timeout_ms;
    unsigned worker_threads;
    /* Per connection (LCOW_SERVER_CONN_MAX_*). */
    size_t conn_max_pending;
    size_t conn_max_output;
} lcow_server_settings;

/* config's values with every 0 replaced by its default; config may be NULL. */
void lcow_server_settings_resolve(const lcow_server_config *config, lcow_server_settings *out);

#endif

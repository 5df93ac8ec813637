/* MessagePack-RPC server: accepts connections on a named pipe (Windows,
 * server_win.c) or a Unix socket (POSIX, server_posix.c) and answers
 * requests through the dispatch table of rpc/dispatch.h with a worker pool.
 * Requests of one connection are answered in order and may be pipelined; a
 * slow or dead client never blocks the others. */
#ifndef LCOW_RPC_SERVER_H
#define LCOW_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/errors.h"
#include "core/snapshotter.h"

typedef struct lcow_server lcow_server;

/* Defaults of the config fields left 0, for both transports (resolved in
 * server_common.c; the service's flags start from these). */
#define LCOW_SERVER_DEFAULT_MAX_FRAME_BYTES ((size_t)4 << 20)
#define LCOW_SERVER_DEFAULT_MAX_CONNECTIONS 256u
#define LCOW_SERVER_DEFAULT_IDLE_TIMEOUT_MS 300000u
#define LCOW_SERVER_DEFAULT_FRAME_TIMEOUT_MS 30000u
/* Per connection: no more requests are read while this many of its requests
 * are queued or running, or this much of its output is unsent, so a client
 * that does not read its responses only stalls itself. */
#define LCOW_SERVER_CONN_MAX_PENDING 128u
#define LCOW_SERVER_CONN_MAX_OUTPUT ((size_t)8 << 20)

typedef struct lcow_server_config {
    /* Pipe name (\\.\pipe\lcowsnap) on Windows, socket path on POSIX. */
    const char *address;
    /* Windows only: SDDL of the pipe; NULL = D:P(A;;GA;;;SY)(A;;GA;;;BA). */
    const char *pipe_sddl;
    size_t max_frame_bytes;   /* 0 = LCOW_SERVER_DEFAULT_MAX_FRAME_BYTES (4 MiB) */
    unsigned max_connections; /* 0 = LCOW_SERVER_DEFAULT_MAX_CONNECTIONS (256) */
    /* A connection is closed when, for this long, it has had nothing to
     * do: no request queued or running, no request completed, no answer
     * written. Bytes of an unfinished request do not count.
     * 0 = LCOW_SERVER_DEFAULT_IDLE_TIMEOUT_MS (5 min). */
    unsigned idle_timeout_ms;
    /* A request must arrive whole within this long of its first byte, or
     * the connection is closed (slowloris). 0 = LCOW_SERVER_DEFAULT_FRAME_
     * TIMEOUT_MS (30 s). */
    unsigned frame_timeout_ms;
    unsigned worker_threads; /* 0 = 2 x CPUs, at least 4 */
    /* Windows only: accept a pipe_sddl that grants write access to Everyone
     * (WD) or Anonymous (AN); refused otherwise. */
    bool allow_world_writable_sddl;
    /* The protocol of the endpoint: NULL = MessagePack-RPC; the gRPC
     * endpoint passes lcow_grpc_protocol (grpc/conn.h). Same transport,
     * access rules and limits either way. */
    const struct lcow_session_proto *protocol;
} lcow_server_config;

#define LCOW_DEFAULT_PIPE "\\\\.\\pipe\\lcowsnap"
#define LCOW_DEFAULT_PIPE_SDDL "D:P(A;;GA;;;SY)(A;;GA;;;BA)"

/* Binds the endpoint and starts accepting. Fails with ALREADY_EXISTS / a
 * clear message when another process owns the address. */
lcow_code lcow_server_start(const lcow_server_config *config, lcow_snapshotter *snapshotter,
                            lcow_server **out, lcow_error *err);

/* Stops accepting, waits up to drain_ms for in-flight requests to be
 * answered, then closes every connection. Safe to call from a signal-handling
 * thread or the SCM control handler thread. */
void lcow_server_stop(lcow_server *server, unsigned drain_ms);

/* Number of requests currently executing (for STOP_PENDING checkpoints). */
unsigned lcow_server_inflight(const lcow_server *server);

/* Reads the endpoint's access control back from the system and checks it
 * is what was configured: on Windows the pipe's DACL (GetSecurityInfo) must
 * equal pipe_sddl's; on POSIX the socket must have mode 0660. On success
 * *description (if non-NULL) receives a malloc'd string: the DACL as SDDL
 * ("D:P(A;;GA;;;SY)(A;;GA;;;BA)") or "mode 0660". FailedPrecondition when it
 * differs. Note: Wine stores a pipe DACL but does not enforce it. */
lcow_code lcow_server_verify_security(const lcow_server *server, char **description,
                                      lcow_error *err);

void lcow_server_destroy(lcow_server *server);

#endif

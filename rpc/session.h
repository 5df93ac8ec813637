/* Transport-independent half of a server connection, and the worker pool.
 *
 * A transport (server_posix.c, server_win.c) feeds received bytes into a
 * session from its I/O thread. The session frames and decodes them and
 * queues one job per request (or a ready error response). The pool's workers
 * run a session's jobs one at a time in arrival order, so pipelined requests
 * are answered in order and a Commit never overtakes its Prepare; different
 * sessions run in parallel. Responses are appended to the session's output
 * (a list of chunks) and the transport is notified to write them. The limits
 * of lcow_session_limits are enforced request by request as frames are
 * parsed, so one read full of pipelined requests cannot get past them. */
#ifndef LCOW_RPC_SESSION_H
#define LCOW_RPC_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "core/base/errors.h"
#include "core/snapshotter.h"

typedef struct lcow_session lcow_session;
typedef struct lcow_rpc_pool lcow_rpc_pool;

typedef struct lcow_session_ops {
    /* A worker appended output or finished jobs (no lock held). */
    void (*notify)(void *transport);
    /* The last reference is gone: the transport frees its connection. */
    void (*destroy)(void *transport);
} lcow_session_ops;

/* threads = 0: 4. (The servers pass their worker count, 2 x CPUs and at
 * least 4 unless configured: lcow_server_settings_resolve.) */
lcow_rpc_pool *lcow_rpc_pool_create(unsigned threads, lcow_error *err);
/* Workers finish their current job and exit; queued jobs are dropped. */
void lcow_rpc_pool_shutdown(lcow_rpc_pool *pool);
void lcow_rpc_pool_destroy(lcow_rpc_pool *pool);
/* Requests queued or executing over all sessions. */
unsigned lcow_rpc_pool_inflight(const lcow_rpc_pool *pool);

/* What one connection may hold. A session stops taking requests while
 * max_pending of them are queued or running, or max_output bytes of output
 * wait to be sent, and its queued jobs wait while the output is over
 * max_output: a client that does not read only stalls itself and costs at
 * most about max_output plus one answer. 0 = no limit. */
typedef struct lcow_session_limits {
    size_t max_frame_bytes; /* 0 = LCOW_FRAME_DEFAULT_MAX_BYTES */
    size_t max_pending;
    size_t max_output;
    /* What the connection speaks: NULL = MessagePack-RPC (this file);
     * otherwise the session forwards every call below to it (grpc/). */
    const struct lcow_session_proto *protocol;
} lcow_session_limits;

/* The session starts with one reference (the transport's). */
lcow_session *lcow_session_create(lcow_rpc_pool *pool, lcow_snapshotter *snapshotter,
                                  const lcow_session_limits *limits, const lcow_session_ops *ops,
                                  void *transport);
void lcow_session_ref(lcow_session *s);
void lcow_session_unref(lcow_session *s);

/* I/O thread: feeds received bytes, request by request. After each request
 * the limits are checked: once the session is full the feed stops, *consumed
 * says how far it got, and the transport keeps data[*consumed..len) and
 * feeds it again when lcow_session_accepting says so (it must not read more
 * from the client meanwhile). Not LCOW_OK: the stream cannot be
 * resynchronised; the transport should close after flushing output. */
lcow_code lcow_session_feed(lcow_session *s, const void *data, size_t len, size_t *consumed,
                            lcow_error *err);

/* True while the session is under both limits (pending, unsent output). */
bool lcow_session_accepting(lcow_session *s);
/* True while max_output bytes are unsent: queued jobs wait for the client to
 * read, so they are not work in progress (for the idle timeout). */
bool lcow_session_output_full(lcow_session *s);

/* I/O thread, for the transports' deadlines: part of a request has been
 * fed and its end has not; and how many requests (frames, answered or
 * rejected) were completed so far (0 when the protocol does not count). */
bool lcow_session_in_request(lcow_session *s);
uint64_t lcow_session_requests(lcow_session *s);

/* Jobs queued or running. */
size_t lcow_session_pending(lcow_session *s);
/* Bytes of output not yet written: queued in the session, plus those taken
 * with lcow_session_take_output and not yet reported sent. */
size_t lcow_session_output_bytes(lcow_session *s);

/* Writes pending output through write_fn under the session lock (so a
 * worker and the I/O thread never interleave). write_fn returns bytes
 * written (0 = would block) or -1 on error. Returns false on a write error. */
typedef long (*lcow_session_write_fn)(void *ctx, const char *data, size_t len);
bool lcow_session_write(lcow_session *s, lcow_session_write_fn write_fn, void *ctx);

/* Moves the next chunk of pending output (at least one whole answer) into
 * *out, for transports that write asynchronously from a stable buffer;
 * returns false when there is none. The bytes still count against
 * max_output until the transport reports them with lcow_session_output_sent. */
bool lcow_session_take_output(lcow_session *s, msgpack_sbuffer *out);
/* n bytes of taken output reached the client (or were dropped). */
void lcow_session_output_sent(lcow_session *s, size_t n);

/* Drops queued jobs and pending output; running jobs finish unseen. */
void lcow_session_close(lcow_session *s);

/* True once an answer was lost because memory ran out (nothing could be
 * encoded or queued, not even ResourceExhausted): the client would wait
 * for it forever, so the transport stops reading, sends the answers queued
 * before it and closes the connection. The session has logged it. */
bool lcow_session_failed(lcow_session *s);

/* ---- another protocol on the same transports ------------------------- */

/* A task for the pool's workers beside the sessions (a protocol's calls):
 * run(task, false) on a worker; run(task, true) when the pool stops with
 * the task still queued (clean-up only). */
typedef struct lcow_rpc_task {
    struct lcow_rpc_task *next; /* the pool's queue */
    void (*run)(struct lcow_rpc_task *task, bool cancelled);
} lcow_rpc_task;

/* Queues a task; false (nothing queued) once the pool is shut down. */
bool lcow_rpc_pool_submit(lcow_rpc_pool *pool, lcow_rpc_task *task);

/* A connection protocol (lcow_session_limits.protocol): the functions of
 * the same names above, on the protocol's own connection state `conn`,
 * which create makes for session s (s keeps the references: a protocol
 * holds one with lcow_session_ref while work of it is queued) and destroy
 * frees once the last reference is gone. */
typedef struct lcow_session_proto {
    const char *name; /* for logs */
    void *(*create)(lcow_session *s, lcow_rpc_pool *pool, lcow_snapshotter *snapshotter,
                    const lcow_session_limits *limits);
    void (*destroy)(void *conn);
    lcow_code (*feed)(void *conn, const void *data, size_t len, size_t *consumed, lcow_error *err);
    bool (*accepting)(void *conn);
    size_t (*pending)(void *conn);
    size_t (*output_bytes)(void *conn);
    bool (*write)(void *conn, lcow_session_write_fn write_fn, void *ctx);
    bool (*take_output)(void *conn, msgpack_sbuffer *out);
    void (*output_sent)(void *conn, size_t n);
    void (*close)(void *conn);
    /* True while part of a request has arrived and its end has not. */
    bool (*in_request)(void *conn);
    /* Optional: requests completed so far (NULL: the transport counts a
     * request when the connection leaves in_request). */
    uint64_t (*requests)(void *conn);
    /* Optional: lcow_session_stopping. */
    void (*stopping)(void *conn);
} lcow_session_proto;

/* For a protocol: output is ready (or work finished); tells the transport
 * (no lock may be held). */
void lcow_session_notify(lcow_session *s);

/* The server is stopping: the transport calls it once per connected
 * connection before it stops reading, then writes what it produced (gRPC:
 * a GOAWAY, so the client starts no new call here; MessagePack-RPC: no-op). */
void lcow_session_stopping(lcow_session *s);

#endif

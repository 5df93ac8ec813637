/* One gRPC connection: HTTP/2 in cleartext with prior knowledge (what
 * containerd's gRPC client dials) through nghttp2, containerd's snapshots
 * service on it (grpc/codec.h), the calls run by the shared dispatch
 * (rpc/dispatch.h) on the RPC worker pool.
 *
 * It plugs into the MessagePack-RPC server's transports (server_posix.c,
 * server_win.c) as a session protocol (rpc/session.h, lcow_session_proto):
 * the transport accepts, reads, writes and enforces the connection limits;
 * this file turns bytes into calls and answers into bytes.
 *
 * Per connection: at most limits->max_pending concurrent streams
 * (SETTINGS_MAX_CONCURRENT_STREAMS; more are refused by nghttp2), request
 * messages up to limits->max_frame_bytes (larger: ResourceExhausted as
 * soon as the 5-byte prefix says so, the rest is skipped), at most
 * 2 x that plus 1 MiB of partly received requests over all streams (the
 * stream that would cross it gets ResourceExhausted), output above
 * limits->max_output stops reading (as on the MessagePack endpoint) and
 * pauses streaming List. Calls of one connection run in parallel (gRPC does
 * not order them); Stat and Mounts run on the I/O thread like their
 * MessagePack twins. */
#ifndef LCOW_GRPC_CONN_H
#define LCOW_GRPC_CONN_H

#include "rpc/session.h"

/* The session protocol of the gRPC endpoint. */
extern const lcow_session_proto lcow_grpc_protocol;

/* The partition of the store the service gives the gRPC endpoint
 * (lcow_snapshotter_open_partition): containerd's snapshots, apart from the
 * shims'. */
#define LCOW_GRPC_PARTITION "containerd"

/* Infos per ListSnapshotsResponse at most (containerd's own server sends
 * batches of 100), and bytes per message at most (beyond one info). */
#define LCOW_GRPC_LIST_BATCH 100
#define LCOW_GRPC_LIST_BATCH_BYTES ((size_t)1 << 20)

#endif

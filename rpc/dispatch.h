/* The method table: each protocol method is one row (handler over the
 * decoded params of rpc/proto.h), so a new method is one row plus one
 * handler. Core error codes map 1:1 to protocol codes (lcow_code_name). */
#ifndef LCOW_RPC_DISPATCH_H
#define LCOW_RPC_DISPATCH_H

#include <msgpack.h>

#include "core/snapshotter.h"
#include "rpc/proto.h"

/* Runs a decoded request against the snapshotter. On LCOW_OK result holds
 * the method's result (free with lcow_result_free); otherwise err holds the
 * code and message to send. */
lcow_code lcow_dispatch(lcow_snapshotter *snapshotter, const lcow_request *req, lcow_result *result,
                        lcow_error *err);

/* Runs a decoded request and appends the encoded response (result or error)
 * to out; when memory runs out the answer becomes ResourceExhausted. False
 * only if not even that could be encoded (out is then as it was). */
bool lcow_dispatch_respond(lcow_snapshotter *snapshotter, const lcow_request *req,
                           msgpack_sbuffer *out);

/* True for methods cheap and non-blocking enough to run on a server's I/O
 * thread (point reads: Stat, Mounts, Version). */
bool lcow_dispatch_runs_inline(lcow_method method);

/* The process-wide counters of Status (core/base/stats.h) into o: uptime,
 * connections, requests and errors per method and code, latency quantiles,
 * bytes converted and created. The metrics endpoint reads the same. */
lcow_code lcow_dispatch_fill_counters(lcow_status *o, lcow_error *err);

/* Appends an error response; when that runs out of memory, a short
 * ResourceExhausted "out of memory" instead. False if neither fits (out is
 * then as it was). */
bool lcow_dispatch_error(msgpack_sbuffer *out, bool has_msgid, uint32_t msgid, lcow_code code,
                         const char *message);

#endif

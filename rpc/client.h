/* lcowsnap client library: connects to the service (Unix socket path on
 * POSIX, \\.\pipe\NAME on Windows) and calls Protocol v1 methods.
 *
 * Error convention: every call returns LCOW_OK, the server's error code (err
 * holds its message), or LCOW_UNAVAILABLE for transport failures (connect
 * failed, connection lost, timeout) with a message saying which. After a
 * transport failure or a timeout the connection is unusable (a late
 * response could otherwise be taken for the next one): reconnect.
 *
 * A client is not thread-safe; use one per thread (connections are cheap). */
#ifndef LCOW_RPC_CLIENT_H
#define LCOW_RPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"
#include "rpc/proto.h"

typedef struct lcow_client lcow_client;

#define LCOW_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define LCOW_CLIENT_DEFAULT_CALL_TIMEOUT_MS 60000u
#define LCOW_CLIENT_MAX_RESPONSE_BYTES ((size_t)256 << 20)

/* Connects within connect_timeout_ms (0 = default). A missing endpoint fails
 * at once; a busy one (full backlog, no free pipe instance) is retried until
 * the timeout. */
lcow_code lcow_client_connect(const char *address, unsigned connect_timeout_ms, lcow_client **out,
                              lcow_error *err);
/* Per-call timeout (0 = wait forever); default 60 s. */
void lcow_client_set_call_timeout(lcow_client *c, unsigned timeout_ms);
void lcow_client_close(lcow_client *c);

/* Generic call: result is filled on LCOW_OK (free with lcow_result_free). */
lcow_code lcow_client_call(lcow_client *c, lcow_method method, const lcow_params *params,
                           lcow_result *result, lcow_error *err);

/* Pipelining: send several requests, then receive their responses in the
 * same order. receive returns the transport status (LCOW_OK when a response
 * arrived); the server's outcome is in *call_err (code LCOW_OK on success). */
lcow_code lcow_client_send(lcow_client *c, lcow_method method, const lcow_params *params,
                           uint32_t *msgid, lcow_error *err);
lcow_code lcow_client_receive(lcow_client *c, lcow_method method, uint32_t *msgid,
                              lcow_result *result, lcow_error *call_err, lcow_error *err);

/* Raw bytes, for tests of malformed input: send anything, then read one
 * response whatever its shape (result discarded). */
lcow_code lcow_client_send_raw(lcow_client *c, const void *data, size_t len, lcow_error *err);
lcow_code lcow_client_receive_raw(lcow_client *c, bool *has_msgid, uint32_t *msgid,
                                  lcow_error *call_err, lcow_error *err);

/* Typed wrappers. Optional strings may be NULL; labels may be NULL. */
lcow_code lcow_client_prepare(lcow_client *c, const char *key, const char *parent,
                              const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err);
lcow_code lcow_client_view(lcow_client *c, const char *key, const char *parent,
                           const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err);
lcow_code lcow_client_mounts(lcow_client *c, const char *key, lcow_mounts *mounts, lcow_error *err);
lcow_code lcow_client_commit(lcow_client *c, const char *name, const char *key,
                             const lcow_labels *labels, const char *parent, lcow_error *err);
lcow_code lcow_client_remove(lcow_client *c, const char *key, lcow_error *err);
lcow_code lcow_client_stat(lcow_client *c, const char *key, lcow_info *info, lcow_error *err);
lcow_code lcow_client_update(lcow_client *c, const lcow_info *info, const char *const *fieldpaths,
                             size_t fieldpath_count, lcow_info *out, lcow_error *err);
lcow_code lcow_client_usage(lcow_client *c, const char *key, lcow_usage *usage, lcow_error *err);
/* Compact key's scratch disk, or with key NULL every active's (all=true). */
lcow_code lcow_client_compact(lcow_client *c, const char *key, lcow_compact_summary *summary,
                              lcow_error *err);
/* The layer store's layers (*layers: free with lcow_layer_entries_free). */
lcow_code lcow_client_layers(lcow_client *c, lcow_layer_entries *layers, lcow_error *err);
/* Removes unreferenced stored layers: every one (all) or those last used
 * older_than_seconds ago or more; *layers and *bytes (may be NULL) say what went. */
lcow_code lcow_client_prune_layers(lcow_client *c, bool all, uint64_t older_than_seconds,
                                   int64_t *layers, int64_t *bytes, lcow_error *err);
/* One page; *next (malloc'd, NULL at the end) continues with after=*next. */
lcow_code lcow_client_walk(lcow_client *c, const char *const *filters, size_t filter_count,
                           size_t limit, const char *after, lcow_infos *infos, char **next,
                           lcow_error *err);
/* Every page: calls fn for each info (non-zero stops). */
lcow_code lcow_client_walk_all(lcow_client *c, const char *const *filters, size_t filter_count,
                               int (*fn)(void *ctx, const lcow_info *info), void *ctx,
                               lcow_error *err);
lcow_code lcow_client_cleanup(lcow_client *c, lcow_error *err);
/* result->version, ->protocol, ->snapshotter. */
lcow_code lcow_client_version(lcow_client *c, lcow_result *result, lcow_error *err);
/* result->version and result->status (docs/protocol.md, Status). */
lcow_code lcow_client_status(lcow_client *c, lcow_result *result, lcow_error *err);
lcow_code lcow_client_create_scratch(lcow_client *c, const char *path, uint32_t size_gb,
                                     uint32_t block_size_mb, lcow_error *err);
/* Apply: the layer blob at path (absolute, on the service's host) into the
 * active snapshot key's layer.vhd. media_type and digest may be NULL. On
 * LCOW_OK result holds diff_id, digest, size, layer_bytes and, with verity,
 * verity_root_hash (free with lcow_result_free). The call lasts as long as
 * the conversion: set a call timeout to match (or 0). */
lcow_code lcow_client_apply(lcow_client *c, const char *key, const char *path,
                            const char *media_type, const char *digest, bool verity,
                            lcow_result *result, lcow_error *err);

#endif

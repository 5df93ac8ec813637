/* containerd's snapshots gRPC API <-> the shared request and result structs
 * of rpc/proto.h. No HTTP/2 here (grpc/conn.c), no store calls: a decoded
 * request goes through the same lcow_dispatch as a MessagePack-RPC one, and
 * its lcow_result is encoded back with the generated protobuf-c code
 * (grpc/proto/, compiled by protoc-c at build time).
 *
 * Decoding rules (docs/grpc.md): every string, at any depth, must be UTF-8
 * without NUL (protobuf-c does not check; a NUL would silently cut a key), as
 * on the MessagePack endpoint, with the same messages ("key: not valid
 * UTF-8"); an empty proto3 string is "absent" where the MessagePack field is
 * optional (parent); more than LCOW_MAX_LABELS labels is InvalidArgument; a
 * message protobuf-c cannot parse is InvalidArgument; decoding never
 * allocates more than 16 x the message plus 64 KiB (ResourceExhausted). */
#ifndef LCOW_GRPC_CODEC_H
#define LCOW_GRPC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "core/base/errors.h"
#include "core/base/types.h"
#include "rpc/proto.h"

#define LCOW_GRPC_SERVICE "containerd.services.snapshots.v1.Snapshots"

/* The service's methods, in the order of snapshots.proto. */
typedef enum lcow_grpc_method {
    LCOW_GRPC_PREPARE = 0,
    LCOW_GRPC_VIEW,
    LCOW_GRPC_MOUNTS,
    LCOW_GRPC_COMMIT,
    LCOW_GRPC_REMOVE,
    LCOW_GRPC_STAT,
    LCOW_GRPC_UPDATE,
    LCOW_GRPC_LIST, /* server streaming: Walk pages */
    LCOW_GRPC_USAGE,
    LCOW_GRPC_CLEANUP,
    LCOW_GRPC_METHOD_COUNT
} lcow_grpc_method;

/* "Prepare", ...; NULL when out of range. */
const char *lcow_grpc_method_name(lcow_grpc_method method);
/* The shared method it runs (List -> LCOW_METHOD_WALK). */
lcow_method lcow_grpc_core_method(lcow_grpc_method method);

/* The :path of a call ("/containerd.services.snapshots.v1.Snapshots/Stat")
 * to its method. Anything else is LCOW_NOT_IMPLEMENTED with grpc-go's
 * messages ("unknown service X", "unknown method Y for service X",
 * "malformed method name: \"...\""). */
lcow_code lcow_grpc_method_lookup(const char *path, size_t len, lcow_grpc_method *out,
                                  lcow_error *err);

/* Decodes one request message (the bytes after the 5-byte gRPC prefix) into
 * req: method set, params filled (free with lcow_params_free, also on
 * failure). List's filters go to params.filters; the caller sets the page
 * (limit, after). */
lcow_code lcow_grpc_decode_request(lcow_grpc_method method, const uint8_t *data, size_t len,
                                   lcow_request *req, lcow_error *err);

/* Appends the method's response to a successful call as one length-prefixed
 * gRPC message (not for List). False when out of memory. */
bool lcow_grpc_encode_result(lcow_grpc_method method, const lcow_result *result,
                             msgpack_sbuffer *out);

/* Appends one ListSnapshotsResponse (length-prefixed) of the first infos, as
 * many as fit in max_bytes (at least one, whatever its size, when count > 0).
 * Returns how many it took; 0 when out of memory (or count is 0). */
size_t lcow_grpc_encode_infos(const lcow_info *infos, size_t count, size_t max_bytes,
                              msgpack_sbuffer *out);

/* The 5-byte prefix of a message of len bytes, uncompressed. */
void lcow_grpc_message_prefix(uint8_t prefix[5], size_t len);

/* gRPC status code of an lcowsnap error code, as containerd's errdefs maps
 * its categories (NotFound 5, AlreadyExists 6, InvalidArgument 3,
 * FailedPrecondition 9, ResourceExhausted 8, Unavailable 14,
 * NotImplemented 12 = Unimplemented, Internal 13); LCOW_OK is 0. */
int lcow_grpc_status(lcow_code code);
/* The inverse, for clients (codes without a category: LCOW_INTERNAL). */
lcow_code lcow_grpc_code_from_status(int status);

/* grpc-message: percent-encodes bytes outside 0x20..0x7e and '%' (the
 * gRPC spec). Writes at most cap bytes including the NUL; returns the
 * encoded length (truncated at a whole escape when cap is short). */
size_t lcow_grpc_percent_encode(const char *message, char *out, size_t cap);
/* The inverse, in place; invalid escapes are kept as they are. */
void lcow_grpc_percent_decode(char *message);

#endif

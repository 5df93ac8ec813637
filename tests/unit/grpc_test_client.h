/* A small gRPC client on nghttp2 for the tests of the gRPC endpoint: HTTP/2
 * with prior knowledge over the client transport of rpc/ (Unix socket, named
 * pipe), several calls in flight on one connection, and raw access for
 * malformed input (bytes of our own, resets, partial requests). Messages are
 * encoded and decoded by the tests with the generated protobuf-c code.
 *
 * Single-threaded: every function pumps the connection itself. */
#ifndef LCOW_TESTS_GRPC_TEST_CLIENT_H
#define LCOW_TESTS_GRPC_TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "core/base/errors.h"

typedef struct gtc gtc;

/* What came back on one stream. */
typedef struct gtc_reply {
    bool closed;         /* the stream is over */
    uint32_t close_code; /* its HTTP/2 error code (0 = NO_ERROR) */
    int http_status;     /* :status; 0 = none */
    char *content_type;  /* NULL = none */
    int grpc_status;     /* grpc-status; -1 = none */
    char *grpc_message;  /* percent-decoded; NULL = none */
    uint8_t *data;       /* every DATA byte */
    size_t len;
    size_t data_frames;
} gtc_reply;

/* Connects and sends the preface and SETTINGS. */
lcow_code gtc_connect(const char *address, gtc **out, lcow_error *err);
/* The same with the stream receive window it announces (a small one keeps
 * a streaming answer waiting on the server). */
lcow_code gtc_connect_window(const char *address, uint32_t stream_window, gtc **out,
                             lcow_error *err);
void gtc_close(gtc *c);

/* Starts a call: POST path with content-type (NULL: application/grpc) and
 * body (raw bytes, prefix included); end: the request ends with the body
 * (false: the stream stays open for gtc_send_more / reset). Returns the
 * stream id (> 0), or -1. */
int32_t gtc_start(gtc *c, const char *path, const char *content_type, const void *body, size_t len,
                  bool end);
/* A unary or streaming call of the snapshots service: method "Stat", the
 * request message packed and prefixed. */
int32_t gtc_start_call(gtc *c, const char *method, const ProtobufCMessage *request);
/* Waits until the stream is over (or timeout_ms). LCOW_UNAVAILABLE when the
 * connection ends first or on timeout. reply stays owned by the client
 * until gtc_forget. */
lcow_code gtc_wait(gtc *c, int32_t id, unsigned timeout_ms, gtc_reply **reply, lcow_error *err);
/* Drops a finished stream's reply. */
void gtc_forget(gtc *c, int32_t id);
/* The reply so far (NULL: unknown stream). */
gtc_reply *gtc_peek(gtc *c, int32_t id);

/* start_call + wait: status in *grpc_status, message (malloc'd, NULL if
 * none) in *message, the first response message unpacked with desc into
 * *response (NULL when none; free with protobuf_c_message_free_unpacked). */
lcow_code gtc_unary(gtc *c, const char *method, const ProtobufCMessage *request,
                    const ProtobufCMessageDescriptor *desc, int *grpc_status, char **message,
                    ProtobufCMessage **response, lcow_error *err);

/* The index-th length-prefixed message of a reply's data (false: none). */
bool gtc_message(const gtc_reply *r, size_t index, const uint8_t **data, size_t *len);
size_t gtc_message_count(const gtc_reply *r);

/* RST_STREAM(CANCEL) for a stream, sent at once. */
lcow_code gtc_reset(gtc *c, int32_t id, lcow_error *err);
/* Sends raw bytes on the connection, beside nghttp2 (for broken frames). */
lcow_code gtc_send_raw(gtc *c, const void *data, size_t len, lcow_error *err);
/* Reads once (up to timeout_ms) and handles what came. LCOW_UNAVAILABLE:
 * the connection is over. */
lcow_code gtc_pump(gtc *c, unsigned timeout_ms, lcow_error *err);
/* Reads at most BYTES per read from then on (0: up to 64 KiB), so frames
 * arrive one piece at a time. */
void gtc_set_read_chunk(gtc *c, size_t bytes);
/* A GOAWAY came; its error code. */
bool gtc_goaway(const gtc *c, uint32_t *error_code);

/* Packs msg with a 5-byte gRPC prefix into a malloc'd buffer. */
uint8_t *gtc_frame(const ProtobufCMessage *msg, size_t *len);

#endif

/* Framing of a MessagePack-RPC byte stream: splits it into whole msgpack
 * objects without trusting any length the peer declares.
 *
 * A resumable scanner walks the bytes as they arrive and knows where each
 * top-level object ends (and how big it is) before anything is allocated.
 * Frames within the limits are handed to msgpack-c's streaming unpacker one
 * at a time; an oversized frame is skipped byte by byte (never buffered) and
 * reported with the msgid read from its first bytes, so the stream stays in
 * sync. Only an invalid type byte (0xc1), or more than
 * LCOW_FRAME_DISCARD_MAX bytes of one oversized frame, makes the stream
 * unrecoverable. */
#ifndef LCOW_RPC_FRAME_H
#define LCOW_RPC_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "core/base/errors.h"

#define LCOW_FRAME_DEFAULT_MAX_BYTES ((size_t)4 << 20)
/* Upper bound of msgpack objects in one frame (each costs the unpacker a
 * 24-byte msgpack_object); requests need a few hundred. */
#define LCOW_FRAME_MAX_OBJECTS 65536u
/* An oversized frame longer than this is not skipped: the connection closes. */
#define LCOW_FRAME_DISCARD_MAX ((uint64_t)64 << 20)
#define LCOW_FRAME_PREFIX_MAX 16

/* The resumable scanner (exposed for tests and the fuzzer). */
typedef struct lcow_frame_scanner {
    uint64_t pending;     /* objects still to start in this frame */
    uint64_t skip;        /* payload bytes still to skip */
    uint64_t frame_bytes; /* bytes of this frame seen so far */
    uint64_t objects;     /* objects declared in this frame so far */
    uint8_t header[10];   /* partial object header */
    uint8_t header_len;
    uint8_t header_need;
    uint8_t prefix[LCOW_FRAME_PREFIX_MAX]; /* first bytes of the frame */
    uint8_t prefix_len;
} lcow_frame_scanner;

typedef enum lcow_scan_status {
    LCOW_SCAN_MORE = 0, /* every byte consumed, frame not finished */
    LCOW_SCAN_DONE,     /* a frame ended after the returned count */
    LCOW_SCAN_INVALID,  /* byte 0xc1: the stream cannot be resynchronised */
} lcow_scan_status;

void lcow_frame_scanner_init(lcow_frame_scanner *scanner);
/* Consumes bytes of data[0..len) up to the end of the current frame. */
size_t lcow_frame_scan(lcow_frame_scanner *scanner, const uint8_t *data, size_t len,
                       lcow_scan_status *status);

/* Reads the msgid of a request [0, msgid, ...] from the first bytes of a
 * frame; false if those bytes are not the start of a request. */
bool lcow_frame_peek_msgid(const uint8_t *prefix, size_t len, uint32_t *msgid);

/* What the reader reports for each frame. */
typedef struct lcow_frame_event {
    const msgpack_object *object; /* a decoded frame, or NULL for an error */
    lcow_code code;               /* error: InvalidArgument / ResourceExhausted */
    const char *message;
    bool has_msgid; /* error: msgid read from the frame's first bytes */
    uint32_t msgid;
} lcow_frame_event;

/* Called once per frame, in stream order; the object lives only for the call. */
typedef void (*lcow_frame_sink)(void *ctx, const lcow_frame_event *event);

typedef struct lcow_frame_reader {
    lcow_frame_scanner scanner;
    msgpack_unpacker unpacker;
    size_t max_frame_bytes;
    bool discarding;    /* inside an oversized frame */
    uint64_t discarded; /* bytes skipped of it */
    bool broken;        /* unrecoverable; feed fails from now on */
    bool pause;         /* set by the sink: return after this frame */
    uint64_t frames;    /* frames completed (reported to the sink) */
} lcow_frame_reader;

/* msgpack_packer write callback for a msgpack_sbuffer, like msgpack-c's
 * msgpack_sbuffer_write but growing the buffer through lcow_realloc (the
 * allocation seam of core/base/alloc.h). Returns -1 when out of memory; the
 * buffer then holds what was written before. */
int lcow_sbuffer_write(void *sbuffer, const char *data, size_t len);

/* msgpack_unpacker_next without a fresh zone per object: *out stays valid
 * until lcow_unpacker_recycle, which clears the zone (keeping its first
 * chunk) and lets the unpacker reuse its buffer, so a steady stream of small
 * messages allocates nothing. Returns SUCCESS, CONTINUE or an error. */
msgpack_unpack_return lcow_unpacker_next(msgpack_unpacker *unpacker, msgpack_object *out);
void lcow_unpacker_recycle(msgpack_unpacker *unpacker);

bool lcow_frame_reader_init(lcow_frame_reader *reader, size_t max_frame_bytes);
void lcow_frame_reader_destroy(lcow_frame_reader *reader);

/* Feeds bytes; calls sink for each completed frame. Returns LCOW_OK, or
 * InvalidArgument / ResourceExhausted when the stream cannot be
 * resynchronised (the caller closes the connection). Feeds everything: a
 * pause asked for by the sink is ignored. */
lcow_code lcow_frame_reader_feed(lcow_frame_reader *reader, const uint8_t *data, size_t len,
                                 lcow_frame_sink sink, void *ctx, lcow_error *err);

/* The same, but stops right after the frame (or the error report of an
 * oversized frame) whose sink called lcow_frame_reader_pause: *consumed is
 * then the offset just past it, and the caller keeps data[*consumed..len) to
 * feed again later (none of it has been looked at). Otherwise, and on error,
 * *consumed counts what was taken. */
lcow_code lcow_frame_reader_feed_some(lcow_frame_reader *reader, const uint8_t *data, size_t len,
                                      lcow_frame_sink sink, void *ctx, size_t *consumed,
                                      lcow_error *err);

/* From a sink: the current feed returns after this frame. */
void lcow_frame_reader_pause(lcow_frame_reader *reader);

/* True while part of a frame has arrived and its end has not. */
bool lcow_frame_reader_in_frame(const lcow_frame_reader *reader);

#endif

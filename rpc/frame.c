/* Framing: a resumable msgpack scanner plus msgpack-c's streaming unpacker.
 * See frame.h for the contract. */
#include "rpc/frame.h"

#include <stdio.h>
#include <string.h>

#include "core/base/alloc.h"

#define UNPACKER_INITIAL_BYTES 8192

void lcow_frame_scanner_init(lcow_frame_scanner *scanner)
{
    memset(scanner, 0, sizeof *scanner);
    scanner->pending = 1;
}

static uint64_t load_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Bytes of header (type byte included) the object starting with b needs
 * before its size is known; 0 for the invalid byte 0xc1. */
static unsigned header_size(uint8_t b)
{
    if (b <= 0xbf || b >= 0xe0)
        return 1; /* fixint, fixmap, fixarray, fixstr, negative fixint */
    switch (b) {
    case 0xc1:
        return 0;
    case 0xc4:
    case 0xd9:
        return 2; /* bin8, str8 */
    case 0xc5:
    case 0xda:
    case 0xdc:
    case 0xde:
        return 3;
    case 0xc6:
    case 0xdb:
    case 0xdd:
    case 0xdf:
        return 5;
    case 0xc7:
        return 3; /* ext8: len, type */
    case 0xc8:
        return 4;
    case 0xc9:
        return 6;
    default:
        return 1; /* nil, bools, numbers and fixext: fixed payload */
    }
}

/* Applies a complete header: children to expect, payload bytes to skip. */
static void apply_header(lcow_frame_scanner *s)
{
    const uint8_t *h = s->header;
    uint8_t b = h[0];
    if (b <= 0x7f || b >= 0xe0)
        return;
    if (b <= 0x8f) {
        s->pending += 2u * (b & 0x0fu);
        return;
    }
    if (b <= 0x9f) {
        s->pending += b & 0x0fu;
        return;
    }
    if (b <= 0xbf) {
        s->skip = b & 0x1fu;
        return;
    }
    switch (b) {
    case 0xc4:
    case 0xd9:
        s->skip = h[1];
        break;
    case 0xc5:
    case 0xda:
        s->skip = load_be(h + 1, 2);
        break;
    case 0xc6:
    case 0xdb:
        s->skip = load_be(h + 1, 4);
        break;
    case 0xc7:
        s->skip = h[1];
        break;
    case 0xc8:
        s->skip = load_be(h + 1, 2);
        break;
    case 0xc9:
        s->skip = load_be(h + 1, 4);
        break;
    case 0xca:
        s->skip = 4;
        break;
    case 0xcb:
        s->skip = 8;
        break;
    case 0xcc:
    case 0xd0:
        s->skip = 1;
        break;
    case 0xcd:
    case 0xd1:
        s->skip = 2;
        break;
    case 0xce:
    case 0xd2:
        s->skip = 4;
        break;
    case 0xcf:
    case 0xd3:
        s->skip = 8;
        break;
    case 0xd4:
        s->skip = 2;
        break; /* fixext: type byte + data */
    case 0xd5:
        s->skip = 3;
        break;
    case 0xd6:
        s->skip = 5;
        break;
    case 0xd7:
        s->skip = 9;
        break;
    case 0xd8:
        s->skip = 17;
        break;
    case 0xdc:
        s->pending += load_be(h + 1, 2);
        break;
    case 0xdd:
        s->pending += load_be(h + 1, 4);
        break;
    case 0xde:
        s->pending += 2 * load_be(h + 1, 2);
        break;
    case 0xdf:
        s->pending += 2 * load_be(h + 1, 4);
        break;
    default:
        break; /* nil, false, true */
    }
}

static void note_bytes(lcow_frame_scanner *s, const uint8_t *p, size_t n)
{
    size_t room = LCOW_FRAME_PREFIX_MAX - s->prefix_len;
    size_t copy = n < room ? n : room;
    memcpy(s->prefix + s->prefix_len, p, copy);
    s->prefix_len = (uint8_t)(s->prefix_len + copy);
    s->frame_bytes += n;
}

size_t lcow_frame_scan(lcow_frame_scanner *s, const uint8_t *data, size_t len,
                       lcow_scan_status *status)
{
    size_t i = 0;
    *status = LCOW_SCAN_MORE;
    while (i < len) {
        if (s->skip > 0) {
            size_t take = len - i;
            if ((uint64_t)take > s->skip)
                take = (size_t)s->skip;
            note_bytes(s, data + i, take);
            s->skip -= take;
            i += take;
        } else if (s->header_len < s->header_need) {
            s->header[s->header_len++] = data[i];
            note_bytes(s, data + i, 1);
            i++;
            if (s->header_len == s->header_need) {
                apply_header(s);
                s->header_len = s->header_need = 0;
            }
        } else {
            uint8_t b = data[i];
            unsigned need = header_size(b);
            if (need == 0) {
                *status = LCOW_SCAN_INVALID;
                return i;
            }
            s->pending--;
            s->objects++;
            s->header[0] = b;
            s->header_len = 1;
            s->header_need = (uint8_t)need;
            note_bytes(s, data + i, 1);
            i++;
            if (need == 1) {
                apply_header(s);
                s->header_len = s->header_need = 0;
            }
        }
        if (s->pending == 0 && s->skip == 0 && s->header_need == 0) {
            *status = LCOW_SCAN_DONE;
            return i;
        }
    }
    return i;
}

static bool peek_uint(const uint8_t *p, size_t len, size_t *pos, uint64_t *value)
{
    size_t at = *pos;
    if (at >= len)
        return false;
    uint8_t b = p[at];
    unsigned n;
    if (b <= 0x7f) {
        *value = b;
        *pos = at + 1;
        return true;
    }
    switch (b) {
    case 0xcc:
        n = 1;
        break;
    case 0xcd:
        n = 2;
        break;
    case 0xce:
        n = 4;
        break;
    case 0xcf:
        n = 8;
        break;
    default:
        return false;
    }
    if (at + 1 + n > len)
        return false;
    *value = load_be(p + at + 1, n);
    *pos = at + 1 + n;
    return true;
}

bool lcow_frame_peek_msgid(const uint8_t *p, size_t len, uint32_t *msgid)
{
    size_t pos;
    if (len >= 1 && p[0] == 0x94)
        pos = 1;
    else if (len >= 3 && p[0] == 0xdc && load_be(p + 1, 2) == 4)
        pos = 3;
    else if (len >= 5 && p[0] == 0xdd && load_be(p + 1, 4) == 4)
        pos = 5;
    else
        return false;
    uint64_t type, id;
    if (!peek_uint(p, len, &pos, &type) || type != 0)
        return false;
    if (!peek_uint(p, len, &pos, &id) || id > UINT32_MAX)
        return false;
    *msgid = (uint32_t)id;
    return true;
}

int lcow_sbuffer_write(void *sbuffer, const char *data, size_t len)
{
    msgpack_sbuffer *sb = sbuffer;
    if (sb->alloc - sb->size < len) {
        size_t want = sb->size + len;
        if (want < sb->size)
            return -1; /* overflow */
        size_t grow = sb->alloc ? sb->alloc : MSGPACK_SBUFFER_INIT_SIZE;
        while (grow < want) {
            size_t next = grow * 2;
            grow = next > grow ? next : want;
        }
        char *p = lcow_realloc(sb->data, grow);
        if (!p)
            return -1;
        sb->data = p;
        sb->alloc = grow;
    }
    if (len > 0)
        memcpy(sb->data + sb->size, data, len);
    sb->size += len;
    return 0;
}

msgpack_unpack_return lcow_unpacker_next(msgpack_unpacker *unpacker, msgpack_object *out)
{
    int ret = msgpack_unpacker_execute(unpacker);
    if (ret < 0)
        return (msgpack_unpack_return)ret;
    if (ret == 0)
        return MSGPACK_UNPACK_CONTINUE;
    *out = msgpack_unpacker_data(unpacker);
    return MSGPACK_UNPACK_SUCCESS;
}

void lcow_unpacker_recycle(msgpack_unpacker *unpacker)
{
    if (unpacker->z) {
        /* Strings of the object point into the buffer: the flush moves that
         * reference to the zone, and clearing the zone drops it again, so
         * the buffer is free for reuse. If the flush fails (no memory) the
         * unpacker simply takes a new buffer next time. */
        (void)msgpack_unpacker_flush_zone(unpacker);
        msgpack_zone_clear(unpacker->z);
    }
    msgpack_unpacker_reset(unpacker);
}

bool lcow_frame_reader_init(lcow_frame_reader *reader, size_t max_frame_bytes)
{
    memset(reader, 0, sizeof *reader);
    lcow_frame_scanner_init(&reader->scanner);
    reader->max_frame_bytes = max_frame_bytes ? max_frame_bytes : LCOW_FRAME_DEFAULT_MAX_BYTES;
    return msgpack_unpacker_init(&reader->unpacker, UNPACKER_INITIAL_BYTES);
}

void lcow_frame_reader_destroy(lcow_frame_reader *reader)
{
    msgpack_unpacker_destroy(&reader->unpacker);
}

/* Drops whatever the unpacker holds (a partial or unparsable frame). */
static bool reset_unpacker(lcow_frame_reader *reader)
{
    msgpack_unpacker_destroy(&reader->unpacker);
    return msgpack_unpacker_init(&reader->unpacker, UNPACKER_INITIAL_BYTES);
}

static void emit_error(lcow_frame_reader *reader, lcow_frame_sink sink, void *ctx, lcow_code code,
                       const char *message)
{
    lcow_frame_event ev = {.object = NULL, .code = code, .message = message};
    ev.has_msgid =
        lcow_frame_peek_msgid(reader->scanner.prefix, reader->scanner.prefix_len, &ev.msgid);
    sink(ctx, &ev);
}

static bool frame_too_big(const lcow_frame_reader *reader)
{
    const lcow_frame_scanner *s = &reader->scanner;
    /* Every pending object needs at least one more byte. */
    uint64_t min_bytes = s->frame_bytes + s->skip + s->pending;
    return min_bytes > reader->max_frame_bytes || s->objects + s->pending > LCOW_FRAME_MAX_OBJECTS;
}

void lcow_frame_reader_pause(lcow_frame_reader *reader)
{
    reader->pause = true;
}

bool lcow_frame_reader_in_frame(const lcow_frame_reader *reader)
{
    return reader->scanner.frame_bytes > 0;
}

lcow_code lcow_frame_reader_feed(lcow_frame_reader *reader, const uint8_t *data, size_t len,
                                 lcow_frame_sink sink, void *ctx, lcow_error *err)
{
    size_t consumed = 0;
    lcow_code code = LCOW_OK;
    while (code == LCOW_OK && consumed < len) {
        size_t n = 0;
        code = lcow_frame_reader_feed_some(reader, data + consumed, len - consumed, sink, ctx, &n,
                                           err);
        consumed += n;
    }
    return code;
}

lcow_code lcow_frame_reader_feed_some(lcow_frame_reader *reader, const uint8_t *data, size_t len,
                                      lcow_frame_sink sink, void *ctx, size_t *consumed,
                                      lcow_error *err)
{
    const uint8_t *start = data;
    *consumed = 0;
    reader->pause = false;
    while (len > 0) {
        if (reader->broken)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "stream already broken");
        lcow_scan_status st;
        size_t n = lcow_frame_scan(&reader->scanner, data, len, &st);
        if (st == LCOW_SCAN_INVALID) {
            reader->broken = true;
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "not msgpack: byte 0xc1 at frame offset %llu",
                                  (unsigned long long)reader->scanner.frame_bytes);
        }
        if (!reader->discarding && frame_too_big(reader)) {
            char message[128];
            snprintf(message, sizeof message, "frame exceeds the limit of %zu bytes or %u objects",
                     reader->max_frame_bytes, LCOW_FRAME_MAX_OBJECTS);
            reader->discarding = true;
            reader->discarded = reader->scanner.frame_bytes - n;
            if (!reset_unpacker(reader)) {
                reader->broken = true;
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            }
            emit_error(reader, sink, ctx, LCOW_RESOURCE_EXHAUSTED, message);
        }
        if (reader->discarding) {
            reader->discarded += n;
            if (reader->discarded > LCOW_FRAME_DISCARD_MAX) {
                reader->broken = true;
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "oversized frame longer than %llu bytes",
                                      (unsigned long long)LCOW_FRAME_DISCARD_MAX);
            }
        } else if (n > 0) {
            if (!msgpack_unpacker_reserve_buffer(&reader->unpacker, n)) {
                reader->broken = true;
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            }
            memcpy(msgpack_unpacker_buffer(&reader->unpacker), data, n);
            msgpack_unpacker_buffer_consumed(&reader->unpacker, n);
        }
        if (st == LCOW_SCAN_DONE) {
            if (!reader->discarding) {
                msgpack_object object;
                msgpack_unpack_return ret = lcow_unpacker_next(&reader->unpacker, &object);
                if (ret == MSGPACK_UNPACK_SUCCESS) {
                    lcow_frame_event ev = {.object = &object};
                    sink(ctx, &ev);
                    lcow_unpacker_recycle(&reader->unpacker);
                } else {
                    /* Nesting deeper than msgpack-c's stack, or no memory
                     * (msgpack-c reports both as MSGPACK_UNPACK_NOMEM_ERROR):
                     * the frame is skipped, the stream stays in sync. */
                    emit_error(reader, sink, ctx, LCOW_INVALID_ARGUMENT,
                               "malformed msgpack (nesting deeper than 32 levels?)");
                    if (!reset_unpacker(reader)) {
                        reader->broken = true;
                        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
                    }
                }
            }
            reader->discarding = false;
            reader->discarded = 0;
            reader->frames++;
            lcow_frame_scanner_init(&reader->scanner);
        }
        data += n;
        len -= n;
        *consumed = (size_t)(data - start);
        if (reader->pause) {
            reader->pause = false;
            break;
        }
    }
    return LCOW_OK;
}

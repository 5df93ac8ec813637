/* Layer blob reader (see blob.h for the contract).
 *
 * One producer (the decoder: read, hash the blob, decompress) and one
 * consumer (the tar driver, which also hashes the decoded bytes for the
 * diffID as it releases them) share a byte ring. The producer only ever
 * writes into free space and the consumer only reads filled space, so the
 * copies and the decoding run without the lock; the lock covers the two
 * counters (head, tail), the state and the wake-ups. In synchronous mode the
 * consumer runs the producer's step itself whenever the ring is empty.
 *
 * Counters are byte positions since the start of the stream (uint64_t, never
 * wrapping); the ring offset is the position modulo the ring size. */
#include "core/layer/blob.h"

#include <stdlib.h>
#include <string.h>

#include <isa-l/igzip_lib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/disk/byteorder.h"
#include "core/os/os.h"
#include "core/os/thread.h"

#define DEFAULT_RING (4u << 20)
#define MIN_RING (64u << 10)
#define INPUT_CHUNK (256u << 10)
/* Output of one decoder step: small enough that the bytes just decoded are
 * still in cache when the diffID hash and the consumer read them. */
#define STEP_MAX (128u << 10)
#define ZSTD_WINDOW_LOG_MAX 27 /* zstd's default limit: 128 MiB */

typedef enum blob_state { BLOB_RUNNING, BLOB_DONE, BLOB_FAILED } blob_state;

struct lcow_blob {
    /* source */
    lcow_file *file;
    const uint8_t *mem;
    uint64_t src_size;
    uint64_t src_pos; /* bytes taken from the source (and hashed) */
    lcow_blob_format format;
    bool check_digest;
    uint8_t want_digest[LCOW_SHA256_SIZE];

    /* producer-owned */
    uint8_t *inbuf;    /* file sources only */
    const uint8_t *in; /* unconsumed input */
    size_t in_len;
    lcow_sha256_ctx digest_ctx; /* blob bytes */
    lcow_sha256_ctx diffid_ctx; /* decoded bytes (not used for tar: same bytes) */
    uint64_t tar_bytes;
    /* gzip and zstd: the consumer hashes the decoded bytes for the diffID
     * as it releases them (a tar's digest is its diffID). On the decoder's
     * side the hash made the decoder the slower thread: zstd's Apply of a
     * 304 MB tar took 0.62 s that way, 0.50 s this way. A third thread for
     * the hash gained nothing measurable end to end: the converter's writes
     * into the page cache bound it (docs/performance.md). */
    bool hash_diffid;
    /* gzip: ISA-L's inflate (igzip). The member header is read with
     * isal_read_gzip_header into gz_hdr, which must live across calls (a
     * header can straddle two input windows); isal_inflate then decodes the
     * deflate data and checks the CRC-32/ISIZE trailer. */
    struct inflate_state *gz;
    struct isal_gzip_header gz_hdr;
    bool gz_in_header;
    ZSTD_DCtx *zd;
    size_t zstd_hint; /* last ZSTD_decompressStream return: 0 = frame complete */
    unsigned units;   /* gzip members / zstd frames completed */

    /* ring */
    uint8_t *ring;
    size_t ring_size;
    size_t min_free; /* the producer waits for this much free space */
    uint64_t head;   /* written */
    uint64_t tail;   /* consumed */
    size_t view_len; /* handed out by read_view, released on the next call */

    /* shared state, under mu when threaded */
    bool threaded;
    lcow_mutex mu;
    lcow_cond cv_data;  /* consumer waits: data or a final state */
    lcow_cond cv_space; /* producer waits: free space or closing */
    bool consumer_waiting, producer_waiting;
    bool closing;
    blob_state state;
    lcow_error error; /* when FAILED */
    lcow_thread thread;
    bool thread_running;

    bool finished;
    lcow_blob_result result;
};

/* ---- formats ---- */

static const struct {
    const char *media_type;
    lcow_blob_format format;
} media_types[] = {
    {"application/vnd.oci.image.layer.v1.tar", LCOW_BLOB_TAR},
    {"application/vnd.oci.image.layer.v1.tar+gzip", LCOW_BLOB_GZIP},
    {"application/vnd.oci.image.layer.v1.tar+zstd", LCOW_BLOB_ZSTD},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar", LCOW_BLOB_TAR},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", LCOW_BLOB_GZIP},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", LCOW_BLOB_ZSTD},
    {"application/vnd.docker.image.rootfs.diff.tar.gzip", LCOW_BLOB_GZIP},
    {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", LCOW_BLOB_GZIP},
};

lcow_code lcow_blob_format_from_media_type(const char *media_type, lcow_blob_format *out,
                                           lcow_error *err)
{
    *out = LCOW_BLOB_AUTO;
    if (!media_type || !*media_type)
        return LCOW_OK;
    for (size_t i = 0; i < sizeof media_types / sizeof media_types[0]; i++) {
        if (strcmp(media_type, media_types[i].media_type) == 0) {
            *out = media_types[i].format;
            return LCOW_OK;
        }
    }
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "unknown layer media type '%.200s'",
                          media_type);
}

lcow_code lcow_blob_detect(const uint8_t *head, size_t len, lcow_blob_format *out, lcow_error *err)
{
    *out = LCOW_BLOB_TAR;
    if (len >= 2 && head[0] == 0x1f && head[1] == 0x8b)
        *out = LCOW_BLOB_GZIP;
    else if (len >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd)
        *out = LCOW_BLOB_ZSTD;
    else if (len >= 4 && (head[0] & 0xf0) == 0x50 && head[1] == 0x2a && head[2] == 0x4d &&
             head[3] == 0x18)
        *out = LCOW_BLOB_ZSTD; /* skippable frame first */
    else if (len >= 3 && memcmp(head, "BZh", 3) == 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "blob is bzip2-compressed: layers are tar, gzip or zstd");
    else if (len >= 6 && memcmp(head,
                                "\xfd"
                                "7zXZ\0",
                                6) == 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "blob is xz-compressed: layers are tar, gzip or zstd");
    return LCOW_OK;
}

const char *lcow_blob_format_name(lcow_blob_format f)
{
    switch (f) {
    case LCOW_BLOB_TAR:
        return "tar";
    case LCOW_BLOB_GZIP:
        return "gzip";
    case LCOW_BLOB_ZSTD:
        return "zstd";
    default:
        return "auto";
    }
}

/* ---- source ---- */

/* Makes at least `want` unconsumed input bytes available unless the source
 * ends first; the bytes taken from the source are hashed into the digest. */
static lcow_code input_ensure(lcow_blob *b, size_t want, lcow_error *err)
{
    if (b->in_len >= want || b->src_pos == b->src_size)
        return LCOW_OK;
    if (b->mem) {
        /* The whole blob is addressable: extend the window in place. */
        size_t take = b->src_size - b->src_pos < INPUT_CHUNK ? (size_t)(b->src_size - b->src_pos)
                                                             : INPUT_CHUNK;
        if (take < want - b->in_len)
            take = (size_t)(b->src_size - b->src_pos);
        const uint8_t *p = b->mem + b->src_pos;
        lcow_sha256_update(&b->digest_ctx, p, take);
        b->in = b->in_len ? b->in : p;
        b->in_len += take;
        b->src_pos += take;
        return LCOW_OK;
    }
    if (b->in_len)
        memmove(b->inbuf, b->in, b->in_len);
    b->in = b->inbuf;
    uint64_t left = b->src_size - b->src_pos;
    size_t room = INPUT_CHUNK - b->in_len;
    size_t n = left < room ? (size_t)left : room;
    size_t got = 0;
    lcow_code rc = lcow_file_pread(b->file, b->inbuf + b->in_len, n, b->src_pos, &got, err);
    if (rc)
        return rc;
    if (got < n) /* the file shrank under us */
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "blob changed while being read: %llu bytes expected, file ends at "
                              "%llu",
                              (unsigned long long)b->src_size,
                              (unsigned long long)(b->src_pos + got));
    lcow_sha256_update(&b->digest_ctx, b->inbuf + b->in_len, got);
    b->in_len += got;
    b->src_pos += got;
    return LCOW_OK;
}

static bool input_eof(const lcow_blob *b)
{
    return b->in_len == 0 && b->src_pos == b->src_size;
}

static uint64_t input_offset(const lcow_blob *b) /* blob offset of the next unconsumed byte */
{
    return b->src_pos - b->in_len;
}

/* ---- decoders: fill out[0..cap) with up to cap bytes; *done at the end ---- */

/* Reads len bytes of the blob at offset off, which lie inside it. */
static lcow_code source_read_at(lcow_blob *b, uint64_t off, uint8_t *buf, size_t len,
                                lcow_error *err)
{
    if (b->mem) {
        memcpy(buf, b->mem + off, len);
        return LCOW_OK;
    }
    size_t got = 0;
    lcow_code rc = lcow_file_pread(b->file, buf, len, off, &got, err);
    if (rc == LCOW_OK && got < len) /* the file shrank under us */
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "blob changed while being read: file ends at %llu",
                            (unsigned long long)(off + got));
    return rc;
}

static lcow_code decode_tar(lcow_blob *b, uint8_t *out, size_t cap, size_t *n, bool *done,
                            lcow_error *err)
{
    /* Straight from the source into the ring; the digest is the diffID. */
    uint64_t left = b->src_size - b->src_pos;
    size_t take = left < cap ? (size_t)left : cap;
    *n = 0;
    if (take) {
        lcow_code rc = source_read_at(b, b->src_pos, out, take, err);
        if (rc)
            return rc;
        lcow_sha256_update(&b->digest_ctx, out, take);
        b->src_pos += take;
        *n = take;
    }
    *done = b->src_pos == b->src_size;
    return LCOW_OK;
}

/* An error isal_read_gzip_header or isal_inflate returned, as a message. */
static lcow_code gzip_error(lcow_blob *b, int irc, lcow_error *err)
{
    unsigned member = b->units + 1;
    unsigned long long at = (unsigned long long)input_offset(b);
    switch (irc) {
    case ISAL_INCORRECT_CHECKSUM:
        if (b->gz_in_header)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "gzip: bad header CRC-16 of member %u (near blob byte %llu)",
                                  member, at);
        /* The trailer's 8 bytes end where isal_inflate stopped: say which
         * half is wrong. */
        if (at >= 8) {
            uint8_t t[8];
            lcow_error rerr;
            if (source_read_at(b, at - 8, t, sizeof t, &rerr) == LCOW_OK &&
                lcow_le_get32(t) == b->gz->crc)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "gzip: bad length (ISIZE) in the trailer of member %u "
                                      "(ending at blob byte %llu)",
                                      member, at);
        }
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: bad CRC-32 in the trailer of member %u (ending at blob "
                              "byte %llu)",
                              member, at);
    case ISAL_INVALID_WRAPPER:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: member %u does not start with a gzip header (blob byte %llu)",
                              member, at);
    case ISAL_UNSUPPORTED_METHOD:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: member %u uses a compression method other than deflate",
                              member);
    case ISAL_INVALID_BLOCK:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: invalid deflate block (member %u, near blob byte %llu)",
                              member, at);
    case ISAL_INVALID_SYMBOL:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: invalid deflate code (member %u, near blob byte %llu)", member,
                              at);
    case ISAL_INVALID_LOOKBACK:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: invalid distance too far back (member %u, near blob byte "
                              "%llu)",
                              member, at);
    default:
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "gzip: undecodable data, ISA-L error %d (member %u, near blob byte "
                              "%llu)",
                              irc, member, at);
    }
}

static lcow_code gzip_truncated(lcow_blob *b, lcow_error *err)
{
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                          "gzip: truncated stream: the blob ends inside member %u (after %llu "
                          "bytes)",
                          b->units + 1, (unsigned long long)b->src_size);
}

/* Starts a member: the header comes next. */
static void gzip_member_start(lcow_blob *b)
{
    isal_inflate_reset(b->gz);
    b->gz->crc_flag = ISAL_GZIP;
    isal_gzip_header_init(&b->gz_hdr);
    b->gz_hdr.flags = 0; /* which isal_gzip_header_init leaves as it was */
    b->gz_in_header = true;
}

static lcow_code decode_gzip(lcow_blob *b, uint8_t *out, size_t cap, size_t *n, bool *done,
                             lcow_error *err)
{
    struct inflate_state *gz = b->gz;
    *n = 0;
    *done = false;
    lcow_code rc = input_ensure(b, 1, err);
    if (rc)
        return rc;
    size_t before = b->in_len;
    if (b->gz_in_header) {
        if (input_eof(b))
            return gzip_truncated(b, err);
        gz->next_in = (uint8_t *)b->in;
        gz->avail_in = (uint32_t)(b->in_len > UINT32_MAX ? UINT32_MAX : b->in_len);
        int irc = isal_read_gzip_header(gz, &b->gz_hdr);
        size_t used = (size_t)(gz->next_in - b->in);
        b->in += used, b->in_len -= used;
        if (irc == ISAL_END_INPUT)
            return input_eof(b) ? gzip_truncated(b, err) : LCOW_OK;
        if (irc != ISAL_DECOMP_OK)
            return gzip_error(b, irc, err);
        if (b->gz_hdr.flags & 0xe0) /* RFC 1952: reserved, must be zero */
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "gzip: reserved header flags 0x%02x set in member %u",
                                  b->gz_hdr.flags & 0xe0, b->units + 1);
        b->gz_in_header = false;
        if (b->in_len == 0)
            return LCOW_OK; /* the deflate data starts in the next window */
    }
    /* Called with no input left too: inflate may still hold output. */
    gz->next_in = (uint8_t *)b->in;
    gz->avail_in = (uint32_t)(b->in_len > UINT32_MAX ? UINT32_MAX : b->in_len);
    gz->next_out = out;
    gz->avail_out = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap);
    int irc = isal_inflate(gz);
    size_t used = b->in_len ? (size_t)(gz->next_in - b->in) : 0;
    if (used) /* (b->in may be NULL before any input) */
        b->in += used, b->in_len -= used;
    *n = (size_t)(gz->next_out - out);
    if (irc != ISAL_DECOMP_OK)
        return gzip_error(b, irc, err);
    if (gz->block_state != ISAL_BLOCK_FINISH) {
        if (*n == 0 && b->in_len == before) {
            if (input_eof(b))
                return gzip_truncated(b, err);
            return lcow_error_set(err, LCOW_INTERNAL, "gzip: inflate made no progress");
        }
        return LCOW_OK;
    }

    /* End of a member (trailer checked): another member, the end, or
     * trailing garbage. */
    b->units++;
    rc = input_ensure(b, 2, err);
    if (rc)
        return rc;
    if (input_eof(b)) {
        *done = true;
        return LCOW_OK;
    }
    if (b->in[0] == 0x1f && (b->in_len < 2 || b->in[1] == 0x8b)) {
        /* another member (a lone 0x1f at the end is one cut short) */
        gzip_member_start(b);
        return LCOW_OK;
    }
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                          "gzip: %llu bytes of trailing garbage after member %u (at blob byte "
                          "%llu)",
                          (unsigned long long)(b->src_size - input_offset(b)), b->units,
                          (unsigned long long)input_offset(b));
}

static lcow_code decode_zstd(lcow_blob *b, uint8_t *out, size_t cap, size_t *n, bool *done,
                             lcow_error *err)
{
    *n = 0;
    *done = false;
    lcow_code rc = input_ensure(b, 1, err);
    if (rc)
        return rc;
    uint64_t at = input_offset(b);
    ZSTD_inBuffer in = {b->in, b->in_len, 0};
    ZSTD_outBuffer o = {out, cap, 0};
    size_t zr = ZSTD_decompressStream(b->zd, &o, &in);
    if (in.pos) /* (b->in may be NULL before any input) */
        b->in += in.pos, b->in_len -= in.pos;
    *n = o.pos;
    if (ZSTD_isError(zr)) {
        ZSTD_ErrorCode code = ZSTD_getErrorCode(zr);
        if (code == ZSTD_error_prefix_unknown && b->units > 0 && b->zstd_hint == 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "zstd: %llu bytes of trailing garbage after frame %u (at blob "
                                  "byte %llu)",
                                  (unsigned long long)(b->src_size - at), b->units,
                                  (unsigned long long)at);
        if (code == ZSTD_error_memory_allocation)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "zstd: out of memory");
        if (code == ZSTD_error_checksum_wrong)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "zstd: bad content checksum of frame %u (near blob byte %llu)",
                                  b->units + 1, (unsigned long long)at);
        if (code == ZSTD_error_frameParameter_windowTooLarge)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "zstd: frame %u needs a window over %u MiB, more than this "
                                  "reader allows",
                                  b->units + 1, (1u << ZSTD_WINDOW_LOG_MAX) >> 20);
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "zstd: %s (frame %u, near blob byte %llu)", ZSTD_getErrorName(zr),
                              b->units + 1, (unsigned long long)at);
    }
    if (zr == 0)
        b->units++; /* ZSTD_decompressStream stops at the end of every frame */
    b->zstd_hint = zr;
    if (input_eof(b)) {
        if (zr == 0) {
            *done = true;
            return LCOW_OK;
        }
        /* With room to spare the decoder has flushed all it can: it needs
         * input that is not there. */
        if (o.pos < cap)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "zstd: truncated stream: the blob ends inside frame %u (after "
                                  "%llu bytes)",
                                  b->units + 1, (unsigned long long)b->src_size);
    }
    return LCOW_OK;
}

/* Runs the format's decoder into out and accounts for what it produced. */
static lcow_code decode(lcow_blob *b, uint8_t *out, size_t cap, size_t *n, bool *done,
                        lcow_error *err)
{
    lcow_code rc;
    switch (b->format) {
    case LCOW_BLOB_GZIP:
        rc = decode_gzip(b, out, cap, n, done, err);
        break;
    case LCOW_BLOB_ZSTD:
        rc = decode_zstd(b, out, cap, n, done, err);
        break;
    default:
        rc = decode_tar(b, out, cap, n, done, err);
        break;
    }
    return rc;
}

/* At the end of the blob (decoder side): its digest, checked against the
 * declared one. The diffID is completed by lcow_blob_finish. */
static lcow_code conclude(lcow_blob *b, lcow_error *err)
{
    lcow_blob_result *r = &b->result;
    r->format = b->format;
    r->blob_bytes = b->src_size;
    lcow_sha256_final(&b->digest_ctx, r->digest);
    if (b->check_digest && memcmp(r->digest, b->want_digest, LCOW_SHA256_SIZE) != 0) {
        char want[LCOW_SHA256_DIGEST_STRING_SIZE], got[LCOW_SHA256_DIGEST_STRING_SIZE];
        lcow_sha256_digest_string(b->want_digest, want);
        lcow_sha256_digest_string(r->digest, got);
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "blob digest mismatch: declared %s, the blob is %s", want, got);
    }
    return LCOW_OK;
}

/* ---- ring ---- */

static size_t ring_free(const lcow_blob *b)
{
    return b->ring_size - (size_t)(b->head - b->tail);
}

/* Where the producer may write next, and how much at most. */
static uint8_t *ring_write_span(const lcow_blob *b, size_t *cap)
{
    size_t at = (size_t)(b->head % b->ring_size);
    size_t contiguous = b->ring_size - at;
    size_t free_bytes = ring_free(b);
    size_t n = free_bytes < contiguous ? free_bytes : contiguous;
    *cap = n < STEP_MAX ? n : STEP_MAX;
    return b->ring + at;
}

/* One decoder step into the ring (producer side). Returns false when the
 * stream ended (state DONE or FAILED set). Threaded: called without mu,
 * publishes under mu. */
static bool produce_step(lcow_blob *b, uint8_t *out, size_t cap)
{
    size_t n = 0;
    bool done = false;
    lcow_error e;
    lcow_code rc = decode(b, out, cap, &n, &done, &e);
    if (rc == LCOW_OK && done)
        rc = conclude(b, &e);
    if (b->threaded)
        lcow_mutex_lock(&b->mu);
    b->head += n;
    if (rc) {
        b->error = e;
        b->state = BLOB_FAILED;
    } else if (done) {
        b->state = BLOB_DONE;
    }
    if (b->threaded) {
        if (b->consumer_waiting && (n || rc || done))
            lcow_cond_signal(&b->cv_data);
        lcow_mutex_unlock(&b->mu);
    }
    return rc == LCOW_OK && !done;
}

static void *producer_main(void *arg)
{
    lcow_blob *b = arg;
    for (;;) {
        lcow_mutex_lock(&b->mu);
        while (!b->closing && ring_free(b) < b->min_free) {
            b->producer_waiting = true;
            lcow_cond_wait(&b->cv_space, &b->mu);
            b->producer_waiting = false;
        }
        if (b->closing) {
            lcow_mutex_unlock(&b->mu);
            return NULL;
        }
        size_t cap;
        uint8_t *out = ring_write_span(b, &cap);
        lcow_mutex_unlock(&b->mu);
        if (!produce_step(b, out, cap))
            return NULL;
    }
}

/* Consumer: releases n bytes back to the producer. */
static void ring_release(lcow_blob *b, size_t n)
{
    if (!n)
        return;
    if (b->hash_diffid) {
        /* [tail, tail+n) is contiguous (acquire hands out no more) and only
         * this thread moves tail. */
        lcow_sha256_update(&b->diffid_ctx, b->ring + b->tail % b->ring_size, n);
        b->tar_bytes += n;
    }
    if (!b->threaded) {
        b->tail += n;
        return;
    }
    lcow_mutex_lock(&b->mu);
    b->tail += n;
    if (b->producer_waiting && ring_free(b) >= b->min_free)
        lcow_cond_signal(&b->cv_space);
    lcow_mutex_unlock(&b->mu);
}

/* Consumer: waits for decoded bytes; *avail = 0 at the end of the stream. */
static lcow_code ring_acquire(lcow_blob *b, const uint8_t **data, size_t *avail, lcow_error *err)
{
    if (b->threaded)
        lcow_mutex_lock(&b->mu);
    for (;;) {
        if (b->state == BLOB_FAILED) {
            if (err)
                *err = b->error;
            lcow_code rc = b->error.code;
            if (b->threaded)
                lcow_mutex_unlock(&b->mu);
            return rc;
        }
        uint64_t filled = b->head - b->tail;
        if (filled || b->state == BLOB_DONE) {
            size_t at = (size_t)(b->tail % b->ring_size);
            size_t contiguous = b->ring_size - at;
            *data = b->ring + at;
            *avail = filled < contiguous ? (size_t)filled : contiguous;
            if (b->threaded)
                lcow_mutex_unlock(&b->mu);
            return LCOW_OK;
        }
        if (b->threaded) {
            b->consumer_waiting = true;
            lcow_cond_wait(&b->cv_data, &b->mu);
            b->consumer_waiting = false;
        } else {
            /* The ring is empty: decode the next step here. */
            b->head = b->tail = 0;
            size_t cap;
            uint8_t *out = ring_write_span(b, &cap);
            produce_step(b, out, cap);
        }
    }
}

/* ---- public ---- */

static lcow_code blob_setup(lcow_blob *b, const lcow_blob_options *opts, lcow_error *err)
{
    lcow_blob_options o = opts ? *opts : (lcow_blob_options){0};
    lcow_code rc = lcow_blob_format_from_media_type(o.media_type, &b->format, err);
    if (rc)
        return rc;
    if (o.digest) {
        rc = lcow_sha256_parse_digest(o.digest, b->want_digest, err);
        if (rc)
            return lcow_error_wrap(err, "declared blob digest");
        b->check_digest = true;
    }
    lcow_sha256_init(&b->digest_ctx);
    lcow_sha256_init(&b->diffid_ctx);
    if (!b->mem) {
        b->inbuf = malloc(INPUT_CHUNK);
        if (!b->inbuf)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "blob: out of memory");
    }
    if (b->format == LCOW_BLOB_AUTO) {
        uint8_t head[6];
        size_t got = b->src_size < sizeof head ? (size_t)b->src_size : sizeof head;
        if (b->mem) {
            memcpy(head, b->mem, got);
        } else {
            rc = lcow_file_pread(b->file, head, got, 0, &got, err);
            if (rc)
                return rc;
        }
        rc = lcow_blob_detect(head, got, &b->format, err);
        if (rc)
            return rc;
    }
    b->hash_diffid = b->format != LCOW_BLOB_TAR;
    if (b->format == LCOW_BLOB_GZIP) {
        b->gz = malloc(sizeof *b->gz);
        if (!b->gz)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "gzip: out of memory");
        isal_inflate_init(b->gz);
        gzip_member_start(b);
    } else if (b->format == LCOW_BLOB_ZSTD) {
        b->zd = ZSTD_createDCtx();
        if (!b->zd)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "zstd: out of memory");
        ZSTD_DCtx_setParameter(b->zd, ZSTD_d_windowLogMax, ZSTD_WINDOW_LOG_MAX);
        b->zstd_hint = 1;
    }

    size_t ring = o.ring_bytes ? o.ring_bytes : DEFAULT_RING;
    if (ring < MIN_RING)
        ring = MIN_RING;
    b->ring_size = ring;
    b->min_free = ring / 4 < STEP_MAX ? ring / 4 : STEP_MAX;
    b->ring = malloc(ring);
    if (!b->ring)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "blob: out of memory for a %zu-byte "
                              "ring",
                              ring);
    b->state = BLOB_RUNNING;
    b->threaded = !o.synchronous;
    if (!b->threaded)
        return LCOW_OK;
    lcow_mutex_init(&b->mu);
    lcow_cond_init(&b->cv_data);
    lcow_cond_init(&b->cv_space);
    if (!lcow_thread_create(&b->thread, producer_main, b)) {
        lcow_cond_destroy(&b->cv_space);
        lcow_cond_destroy(&b->cv_data);
        lcow_mutex_destroy(&b->mu);
        b->threaded = false;
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "blob: cannot start the decoder thread");
    }
    b->thread_running = true;
    return LCOW_OK;
}

lcow_code lcow_blob_open(const char *path, const lcow_blob_options *opts, lcow_blob **out,
                         lcow_error *err)
{
    *out = NULL;
    lcow_blob *b = calloc(1, sizeof *b);
    if (!b)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "blob: out of memory");
    lcow_code rc = lcow_file_open(path, LCOW_OPEN_READ, &b->file, err);
    if (rc == LCOW_OK)
        rc = lcow_file_size(b->file, &b->src_size, err);
    if (rc == LCOW_OK)
        rc = blob_setup(b, opts, err);
    if (rc) {
        lcow_blob_close(b);
        return rc;
    }
    *out = b;
    return LCOW_OK;
}

lcow_code lcow_blob_open_memory(const void *data, size_t len, const lcow_blob_options *opts,
                                lcow_blob **out, lcow_error *err)
{
    *out = NULL;
    lcow_blob *b = calloc(1, sizeof *b);
    if (!b)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "blob: out of memory");
    static const uint8_t empty[1];
    b->mem = len ? data : empty;
    b->src_size = len;
    lcow_code rc = blob_setup(b, opts, err);
    if (rc) {
        lcow_blob_close(b);
        return rc;
    }
    *out = b;
    return LCOW_OK;
}

lcow_blob_format lcow_blob_format_of(const lcow_blob *b)
{
    return b->format;
}

lcow_code lcow_blob_read_view(lcow_blob *b, const void **data, size_t *len, lcow_error *err)
{
    ring_release(b, b->view_len);
    b->view_len = 0;
    *data = NULL;
    *len = 0;
    const uint8_t *p;
    size_t avail;
    lcow_code rc = ring_acquire(b, &p, &avail, err);
    if (rc)
        return rc;
    *data = p;
    *len = avail;
    b->view_len = avail;
    return LCOW_OK;
}

lcow_code lcow_blob_read(lcow_blob *b, void *buf, size_t len, size_t *got, lcow_error *err)
{
    ring_release(b, b->view_len);
    b->view_len = 0;
    *got = 0;
    if (!len)
        return LCOW_OK;
    const uint8_t *p;
    size_t avail;
    lcow_code rc = ring_acquire(b, &p, &avail, err);
    if (rc)
        return rc;
    size_t n = avail < len ? avail : len;
    memcpy(buf, p, n);
    ring_release(b, n);
    *got = n;
    return LCOW_OK;
}

lcow_code lcow_blob_read_callback(void *ctx, void *buf, size_t len, size_t *got, lcow_error *err)
{
    return lcow_blob_read(ctx, buf, len, got, err);
}

lcow_code lcow_blob_read_view_callback(void *ctx, const void **data, size_t *len, lcow_error *err)
{
    return lcow_blob_read_view(ctx, data, len, err);
}

lcow_code lcow_blob_finish(lcow_blob *b, lcow_blob_result *out, lcow_error *err)
{
    if (b->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "blob: finished twice");
    b->finished = true;
    const void *p;
    size_t n;
    lcow_code rc;
    do
        rc = lcow_blob_read_view(b, &p, &n, err);
    while (rc == LCOW_OK && n);
    if (b->thread_running) {
        lcow_thread_join(b->thread, NULL);
        b->thread_running = false;
    }
    if (rc)
        return rc;
    lcow_blob_result *r = &b->result;
    if (b->format == LCOW_BLOB_TAR) {
        memcpy(r->diff_id, r->digest, LCOW_SHA256_SIZE);
        r->tar_bytes = b->src_size;
    } else {
        lcow_sha256_final(&b->diffid_ctx, r->diff_id);
        r->tar_bytes = b->tar_bytes;
    }
    if (out)
        *out = *r;
    return LCOW_OK;
}

void lcow_blob_close(lcow_blob *b)
{
    if (!b)
        return;
    if (b->thread_running) {
        lcow_mutex_lock(&b->mu);
        b->closing = true;
        lcow_cond_broadcast(&b->cv_space);
        lcow_mutex_unlock(&b->mu);
        lcow_thread_join(b->thread, NULL);
    }
    if (b->threaded) {
        lcow_cond_destroy(&b->cv_space);
        lcow_cond_destroy(&b->cv_data);
        lcow_mutex_destroy(&b->mu);
    }
    free(b->gz);
    ZSTD_freeDCtx(b->zd);
    lcow_file_close(b->file);
    free(b->inbuf);
    free(b->ring);
    free(b);
}

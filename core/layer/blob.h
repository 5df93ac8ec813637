/* Streaming reader of an OCI / Docker layer blob: uncompressed tar, gzip
 * (ISA-L's igzip) or zstd (libzstd), handing the uncompressed tar stream to
 * the tar driver while computing the blob's digest (SHA-256 of the blob
 * bytes) and its diffID (SHA-256 of the uncompressed stream).
 *
 * Threading: by default a decoder thread reads the file, hashes it,
 * decompresses and fills a bounded ring buffer, while the caller's thread
 * consumes it, so that decompression and conversion run on two cores at
 * once. The consumer hashes the decoded bytes for the diffID as it releases
 * them (a tar's digest is its diffID). Memory is bounded: the ring (4 MiB by
 * default), a 256 KiB input buffer and the decoder's state (gzip: ISA-L's
 * inflate state, 85 KiB with its 32 KiB window; zstd: the frame's
 * window, at most 128 MiB, zstd's own default limit; larger windows are
 * refused).
 *
 * Errors are INVALID_ARGUMENT naming what is wrong and where (byte offset in
 * the blob): an unknown media type, a truncated gzip or zstd stream, a bad
 * gzip CRC or length, corrupt compressed data, trailing bytes after the last
 * gzip member or zstd frame (Go's compress/gzip, which containerd uses,
 * refuses those too), and a declared digest that does not match. A failed
 * blob means the caller must discard whatever it wrote from the stream.
 * An error is reported to the consumer as soon as the decoder meets it, even
 * with decoded bytes still buffered. */
#ifndef LCOW_LAYER_BLOB_H
#define LCOW_LAYER_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"

typedef enum lcow_blob_format {
    LCOW_BLOB_AUTO = 0, /* detect from the first bytes */
    LCOW_BLOB_TAR,
    LCOW_BLOB_GZIP,
    LCOW_BLOB_ZSTD,
} lcow_blob_format;

/* Media type to format. Accepted: application/vnd.oci.image.layer.v1.tar,
 * ...v1.tar+gzip, ...v1.tar+zstd, their ...layer.nondistributable.v1.*
 * forms, application/vnd.docker.image.rootfs.diff.tar.gzip and
 * ...rootfs.foreign.diff.tar.gzip. NULL or "" is LCOW_BLOB_AUTO; anything
 * else INVALID_ARGUMENT "unknown layer media type". */
lcow_code lcow_blob_format_from_media_type(const char *media_type, lcow_blob_format *out,
                                           lcow_error *err);

/* Format by magic bytes: gzip 1f 8b, zstd 28 b5 2f fd (or a skippable frame
 * 5? 2a 4d 18), anything else tar. INVALID_ARGUMENT for bzip2 and xz, which
 * layers may not use. head may be shorter than 4 bytes (a tiny or empty
 * blob is taken as tar). */
lcow_code lcow_blob_detect(const uint8_t *head, size_t len, lcow_blob_format *out, lcow_error *err);

/* "tar", "gzip", "zstd" ("auto" for LCOW_BLOB_AUTO). */
const char *lcow_blob_format_name(lcow_blob_format f);

typedef struct lcow_blob_options {
    const char *media_type; /* NULL or "": detect by magic bytes */
    const char *digest;     /* "sha256:<hex>" to verify; NULL: not checked */
    size_t ring_bytes;      /* decoded bytes buffered; 0 = 4 MiB (minimum 64 KiB) */
    /* Decode on the consumer's thread, on demand (no thread): for the
     * fuzzer and for callers that have no second core to give. */
    bool synchronous;
} lcow_blob_options;

typedef struct lcow_blob_result {
    lcow_blob_format format;
    uint8_t digest[LCOW_SHA256_SIZE];  /* of the blob as stored */
    uint8_t diff_id[LCOW_SHA256_SIZE]; /* of the uncompressed tar stream */
    uint64_t blob_bytes;
    uint64_t tar_bytes;
} lcow_blob_result;

typedef struct lcow_blob lcow_blob;

/* Opens the blob file at path (opts may be NULL: detect, no digest check).
 * The media type and the digest string are checked here; the decoder thread
 * starts reading at once. */
lcow_code lcow_blob_open(const char *path, const lcow_blob_options *opts, lcow_blob **out,
                         lcow_error *err);

/* The same over len bytes in memory (not copied: they must outlive the
 * blob). For tests and the fuzzer. */
lcow_code lcow_blob_open_memory(const void *data, size_t len, const lcow_blob_options *opts,
                                lcow_blob **out, lcow_error *err);

/* The format being decoded (after detection). */
lcow_blob_format lcow_blob_format_of(const lcow_blob *b);

/* Reads between 1 and len uncompressed bytes into buf (fewer than len when
 * that is what is decoded so far); *got = 0 means the end of the stream,
 * reached only after the whole blob was read, decoded and its declared
 * digest verified. Blocks while the decoder is behind. */
lcow_code lcow_blob_read(lcow_blob *b, void *buf, size_t len, size_t *got, lcow_error *err);

/* lcow_blob_read with ctx = the blob: the shape of the tar reader's read
 * callback (lcow_tar_read_fn). */
lcow_code lcow_blob_read_callback(void *ctx, void *buf, size_t len, size_t *got, lcow_error *err);

/* Zero-copy read (libarchive's read callback wants exactly this): points
 * *data at the next *len >= 1 decoded bytes inside the ring, valid until the
 * next read, read_view, finish or close; *len = 0 at the end of the stream. */
lcow_code lcow_blob_read_view(lcow_blob *b, const void **data, size_t *len, lcow_error *err);

/* The same with ctx = the blob: the tar reader's view callback. */
lcow_code lcow_blob_read_view_callback(void *ctx, const void **data, size_t *len, lcow_error *err);

/* Consumes (and hashes) whatever the caller has not read (a tar's zero
 * padding after its end marker counts toward the diffID), waits for the
 * decoder, and fills *out (may be NULL). Any error, including a digest
 * mismatch, means the output made from this blob must be discarded. */
lcow_code lcow_blob_finish(lcow_blob *b, lcow_blob_result *out, lcow_error *err);

/* Stops the decoder (promptly, also in the middle of the blob) and frees
 * everything; NULL is a no-op. */
void lcow_blob_close(lcow_blob *b);

#endif

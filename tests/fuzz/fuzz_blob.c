/* Layer blob path fuzz target: core/layer/blob (tar, gzip, zstd; digests)
 * feeding core/layer/tar (Go archive/tar's interpretation), as an Apply
 * reads a blob. Must not crash, leak or grow memory beyond the reader's
 * bounds, whatever the input.
 *
 * Input: one mode byte, then the blob.
 *   bits 0-1  media type: none (magic bytes), tar, +gzip, +zstd
 *   bit 2     declare the blob's digest (bit 3: a wrong one)
 *   bit 4     parse as tar through the zero-copy view (else copy reads
 *             of 1..61 bytes, sized by bits 5-7)
 * Decoding is synchronous: deterministic for libFuzzer; the decoder thread
 * is exercised by tests/unit/test_blob.c. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/disk/sha256.h"
#include "core/layer/blob.h"
#include "core/layer/tar.h"

static void parse_tar(lcow_blob *b)
{
    lcow_tar_source src = {.view = lcow_blob_read_view_callback, .ctx = b};
    lcow_tar_reader *r;
    lcow_error err;
    if (lcow_tar_reader_create(&src, &r, &err))
        return;
    for (int entries = 0; entries < 100000; entries++) {
        const lcow_tar_header *h;
        if (lcow_tar_next(r, &h, &err) || !h)
            break;
        const void *p;
        size_t n;
        do {
            if (lcow_tar_read(r, &p, &n, &err))
                goto done;
        } while (n);
    }
done:
    lcow_tar_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++, size--;
    static const char *const types[] = {NULL, "application/vnd.oci.image.layer.v1.tar",
                                        "application/vnd.oci.image.layer.v1.tar+gzip",
                                        "application/vnd.oci.image.layer.v1.tar+zstd"};
    lcow_blob_options o = {
        .synchronous = true, .ring_bytes = 64 << 10, .media_type = types[mode & 3]};
    char digest[LCOW_SHA256_DIGEST_STRING_SIZE];
    if (mode & 4) {
        uint8_t d[LCOW_SHA256_SIZE];
        lcow_sha256(data, size, d);
        if (mode & 8)
            d[5] ^= 1;
        lcow_sha256_digest_string(d, digest);
        o.digest = digest;
    }
    lcow_blob *b;
    lcow_error err;
    if (lcow_blob_open_memory(data, size, &o, &b, &err))
        return 0;
    if (mode & 16) {
        parse_tar(b);
    } else {
        uint8_t buf[64];
        size_t want = 1 + (size_t)(mode >> 5) * 8, got;
        while (lcow_blob_read(b, buf, want, &got, &err) == LCOW_OK && got)
            ;
    }
    lcow_blob_result res;
    lcow_blob_finish(b, &res, &err);
    lcow_blob_close(b);
    return 0;
}

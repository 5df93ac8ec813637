/* SHA-256 (FIPS 180-4) for layer digests, diffIDs and dm-verity: a thin
 * wrapper over nettle, so the rest of lcowsnap never includes a crypto
 * library's headers. Nettle's fat build picks the SHA-NI code path at run
 * time where the CPU has it.
 *
 * Digest strings follow the OCI image spec: "sha256:" and 64 lowercase hex
 * digits. */
#ifndef LCOW_DISK_SHA256_H
#define LCOW_DISK_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"

#define LCOW_SHA256_SIZE 32
#define LCOW_SHA256_BLOCK_SIZE 64
/* 64 hex digits and the terminating NUL. */
#define LCOW_SHA256_HEX_SIZE 65
/* "sha256:", 64 hex digits and the terminating NUL. */
#define LCOW_SHA256_DIGEST_STRING_SIZE 72

/* Incremental state; opaque storage large enough for nettle's sha256_ctx
 * (checked at compile time in sha256.c), so callers can embed it and copy
 * it (a copy continues independently: that is how a common prefix such as
 * dm-verity's salt is hashed once). */
typedef struct lcow_sha256_ctx {
    union {
        uint64_t align;
        uint8_t storage[128];
    } u;
} lcow_sha256_ctx;

void lcow_sha256_init(lcow_sha256_ctx *s);
void lcow_sha256_update(lcow_sha256_ctx *s, const void *data, size_t len);
/* Writes the digest of everything passed to update since init and leaves s
 * initialised again (ready for a new message). */
void lcow_sha256_final(lcow_sha256_ctx *s, uint8_t out[LCOW_SHA256_SIZE]);

/* One shot: out = SHA-256(data[0..len)). */
void lcow_sha256(const void *data, size_t len, uint8_t out[LCOW_SHA256_SIZE]);

/* Lowercase hex of a digest, NUL-terminated: out has LCOW_SHA256_HEX_SIZE bytes. */
void lcow_sha256_hex(const uint8_t digest[LCOW_SHA256_SIZE], char out[LCOW_SHA256_HEX_SIZE]);

/* "sha256:<hex>", NUL-terminated: out has LCOW_SHA256_DIGEST_STRING_SIZE bytes. */
void lcow_sha256_digest_string(const uint8_t digest[LCOW_SHA256_SIZE],
                               char out[LCOW_SHA256_DIGEST_STRING_SIZE]);

/* Parses an OCI digest string "sha256:<64 lowercase hex>" into its bytes.
 * Anything else (another algorithm, uppercase hex, wrong length) is
 * INVALID_ARGUMENT naming what is wrong. */
lcow_code lcow_sha256_parse_digest(const char *text, uint8_t out[LCOW_SHA256_SIZE],
                                   lcow_error *err);

#endif

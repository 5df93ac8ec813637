/* SHA-256 over nettle (see sha256.h). */
#include "core/disk/sha256.h"

#include <stdalign.h>
#include <string.h>

#include <nettle/sha2.h>

_Static_assert(sizeof(struct sha256_ctx) <= sizeof(((lcow_sha256_ctx *)0)->u.storage),
               "lcow_sha256 storage too small for nettle's sha256_ctx");
_Static_assert(alignof(struct sha256_ctx) <= alignof(lcow_sha256_ctx),
               "lcow_sha256 storage not aligned enough for nettle's sha256_ctx");

static struct sha256_ctx *ctx_of(lcow_sha256_ctx *s)
{
    return (struct sha256_ctx *)(void *)s->u.storage;
}

void lcow_sha256_init(lcow_sha256_ctx *s)
{
    sha256_init(ctx_of(s));
}

void lcow_sha256_update(lcow_sha256_ctx *s, const void *data, size_t len)
{
    if (len)
        sha256_update(ctx_of(s), len, data);
}

void lcow_sha256_final(lcow_sha256_ctx *s, uint8_t out[LCOW_SHA256_SIZE])
{
    /* nettle's digest function resets the context to its initial state. */
    sha256_digest(ctx_of(s), LCOW_SHA256_SIZE, out);
}

void lcow_sha256(const void *data, size_t len, uint8_t out[LCOW_SHA256_SIZE])
{
    lcow_sha256_ctx s;
    lcow_sha256_init(&s);
    lcow_sha256_update(&s, data, len);
    lcow_sha256_final(&s, out);
}

void lcow_sha256_hex(const uint8_t digest[LCOW_SHA256_SIZE], char out[LCOW_SHA256_HEX_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < LCOW_SHA256_SIZE; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[2 * LCOW_SHA256_SIZE] = '\0';
}

void lcow_sha256_digest_string(const uint8_t digest[LCOW_SHA256_SIZE],
                               char out[LCOW_SHA256_DIGEST_STRING_SIZE])
{
    memcpy(out, "sha256:", 7);
    lcow_sha256_hex(digest, out + 7);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

lcow_code lcow_sha256_parse_digest(const char *text, uint8_t out[LCOW_SHA256_SIZE], lcow_error *err)
{
    if (!text)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "digest missing");
    const char *colon = strchr(text, ':');
    if (!colon)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "digest '%.80s' is not of the form algorithm:hex", text);
    if ((size_t)(colon - text) != 6 || memcmp(text, "sha256", 6) != 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "digest '%.80s': only sha256 digests are supported", text);
    const char *hex = colon + 1;
    size_t n = strlen(hex);
    if (n != 2 * LCOW_SHA256_SIZE)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "digest '%.80s': a sha256 digest has 64 hex digits, not %zu", text,
                              n);
    for (int i = 0; i < LCOW_SHA256_SIZE; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "digest '%.80s': not lowercase hex at position %d", text,
                                  7 + 2 * i + (hi < 0 ? 0 : 1));
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return LCOW_OK;
}

/* Layer blobs for the tests, the torture campaigns and the benchmarks
 * (layerblob.h). */
#include "support/layerblob.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/disk/sha256.h"

void lb_ustar_header(uint8_t h[512], const char *name, char type, uint64_t size, const char *link,
                     unsigned mode, unsigned owner)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", mode);
    snprintf((char *)h + 108, 8, "%07o", owner);
    snprintf((char *)h + 116, 8, "%07o", owner);
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
    snprintf((char *)h + 136, 12, "%011o", 1700000000u);
    h[156] = (uint8_t)type;
    if (link)
        snprintf((char *)h + 157, 100, "%s", link);
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

void lb_put(lb_tar *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 4096;
        t->d = realloc(t->d, t->cap);
        if (!t->d) {
            fprintf(stderr, "layerblob: out of memory (%zu bytes)\n", t->cap);
            abort();
        }
    }
    if (n)
        memcpy(t->d + t->len, p, n);
    t->len += n;
}

void lb_entry(lb_tar *t, const char *name, char type, const void *data, size_t size,
              const char *link, unsigned mode, unsigned owner)
{
    uint8_t h[512];
    lb_ustar_header(h, name, type, type == '0' ? size : 0, link, mode, owner);
    lb_put(t, h, 512);
    if (type == '0' && size) {
        lb_put(t, data, size);
        static const uint8_t zero[512];
        if (size % 512)
            lb_put(t, zero, 512 - size % 512);
    }
}

void lb_end(lb_tar *t)
{
    static const uint8_t zero[1024];
    lb_put(t, zero, sizeof zero);
}

uint8_t *lb_gzip(const uint8_t *data, size_t len, int level, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)len) + 64;
    uint8_t *out = malloc(cap);
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

uint64_t lb_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

int lb_write_random_tar(const char *path, size_t bytes, uint64_t *rng, char *digest)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    uint8_t h[512];
    lb_ustar_header(h, "data", '0', bytes, NULL, 0644, 0);
    lcow_sha256_ctx ctx;
    lcow_sha256_init(&ctx);
    int ok = fwrite(h, 1, sizeof h, f) == sizeof h;
    lcow_sha256_update(&ctx, h, sizeof h);
    enum { WORDS = 8192 };
    uint64_t *buf = malloc(WORDS * sizeof *buf);
    if (!buf) {
        fclose(f);
        return -1;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = bytes - done < WORDS * sizeof *buf ? bytes - done : WORDS * sizeof *buf;
        for (size_t i = 0; i < (n + 7) / 8; i++)
            buf[i] = lb_rand(rng);
        ok &= fwrite(buf, 1, n, f) == n;
        lcow_sha256_update(&ctx, buf, n);
        done += n;
    }
    free(buf);
    static const uint8_t zero[512 + 1024];
    size_t pad = (512 - bytes % 512) % 512 + 1024;
    ok &= fwrite(zero, 1, pad, f) == pad;
    lcow_sha256_update(&ctx, zero, pad);
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_sha256_final(&ctx, d);
    lcow_sha256_digest_string(d, digest);
    return fclose(f) == 0 && ok ? 0 : -1;
}

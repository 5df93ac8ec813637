/* Layer blobs for the tests, the torture campaigns and the benchmarks
 * (tests/support/layerblob.c): a ustar writer, gzip of a buffer, and a tar
 * of one file of pseudo-random bytes written to disk with its digest. Plain
 * C without cmocka: failures come back to the caller (out of memory
 * aborts), so the benchmarks and campaigns use it as well as the unit tests. */
#ifndef LCOW_TESTS_SUPPORT_LAYERBLOB_H
#define LCOW_TESTS_SUPPORT_LAYERBLOB_H

#include <stddef.h>
#include <stdint.h>

/* A 512-byte ustar header: name, mode, uid = gid = owner, size, mtime
 * 1700000000, type ('0' file, '1' hard link, '2' symlink, '5' directory),
 * link name (or NULL), magic "ustar\0" "00" and the checksum. */
void lb_ustar_header(uint8_t h[512], const char *name, char type, uint64_t size, const char *link,
                     unsigned mode, unsigned owner);

/* A tar built in memory: d (malloc'd, the caller frees it) holds len bytes. */
typedef struct lb_tar {
    uint8_t *d;
    size_t len, cap;
} lb_tar;

/* Appends n bytes. */
void lb_put(lb_tar *t, const void *p, size_t n);

/* Appends one entry: its header (the size counts for type '0' only) and,
 * for a regular file, its data padded to a multiple of 512. */
void lb_entry(lb_tar *t, const char *name, char type, const void *data, size_t size,
              const char *link, unsigned mode, unsigned owner);

/* Appends the end of the archive: two zero blocks. */
void lb_end(lb_tar *t);

/* data gzip-compressed (zlib: level, window 15, memory level 8, the
 * default strategy); malloc'd, its length in *out_len. NULL on failure. */
uint8_t *lb_gzip(const uint8_t *data, size_t len, int level, size_t *out_len);

/* xorshift64*: the next number of *state (a state of 0 starts from
 * 0x9e3779b97f4a7c15); the same sequence as tests/torture's trand. */
uint64_t lb_rand(uint64_t *state);

/* Writes path: a tar of one file "data" (0644, owner 0) of `bytes` bytes,
 * the 64-bit numbers of lb_rand(rng) in memory order (ceil(bytes / 8) of
 * them drawn), then the end of the archive; its SHA-256 as a digest string
 * ("sha256:<hex>", LCOW_SHA256_DIGEST_STRING_SIZE bytes) in digest.
 * 0, or -1 when the file cannot be written (errno tells why). */
int lb_write_random_tar(const char *path, size_t bytes, uint64_t *rng, char *digest);

#endif

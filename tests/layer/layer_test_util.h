/* Helpers of the layer-format unit tests (test_verity, test_vhd, test_blob):
 * whole-file I/O through core/os, the golden-case fixture written by
 * tests/layer/make-golden.sh (LCOW_GOLDEN_DIR), and a minimal reader of
 * golden.json's flat "cases" records. Include after <cmocka.h>. */
#ifndef LCOW_TESTS_LAYER_TEST_UTIL_H
#define LCOW_TESTS_LAYER_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"
#include "core/os/os.h"

static inline uint8_t *read_all(const char *path, size_t *len)
{
    lcow_error err;
    lcow_file *f;
    if (lcow_file_open(path, LCOW_OPEN_READ, &f, &err))
        fail_msg("open %s: %s", path, err.message);
    uint64_t size;
    assert_int_equal(lcow_file_size(f, &size, &err), LCOW_OK);
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    assert_non_null(buf);
    if (size)
        assert_int_equal(lcow_file_pread(f, buf, (size_t)size, 0, NULL, &err), LCOW_OK);
    lcow_file_close(f);
    *len = (size_t)size;
    return buf;
}

static inline void write_all(const char *path, const void *data, size_t len)
{
    lcow_error err;
    lcow_file *f;
    if (lcow_file_open(path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_TRUNCATE, &f, &err))
        fail_msg("create %s: %s", path, err.message);
    if (len)
        assert_int_equal(lcow_file_pwrite(f, data, len, 0, &err), LCOW_OK);
    lcow_file_close(f);
}

/* Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
static inline void fill_random(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)(x >> 24);
    }
}

/* The fixture directory, or NULL after printing why the test skips. */
static inline const char *golden_dir(void)
{
    const char *dir = getenv("LCOW_GOLDEN_DIR");
    if (!dir || !*dir) {
        print_message("LCOW_GOLDEN_DIR not set: golden layer cases skipped\n");
        return NULL;
    }
    char *absent = lcow_path_join(dir, "ABSENT");
    lcow_stat st;
    lcow_error err;
    int missing = lcow_os_stat(absent, &st, &err) == LCOW_OK && st.exists;
    free(absent);
    if (missing) {
        print_message("../shared (tar2ext4-ref, make_layers.py, golden.json) is absent: golden "
                      "layer cases skipped\n");
        return NULL;
    }
    return dir;
}

static inline char *golden_path(const char *dir, const char *c, const char *suffix)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", c, suffix);
    return lcow_path_join(dir, name);
}

/* The cases of golden.json that tar2ext4 converts (not "overwrite"). */
static const char *const golden_cases[] = {"empty",     "basic",    "whiteouts", "implicit_parents",
                                           "longnames", "pax",      "bigdir",    "deep",
                                           "large",     "hardlinks"};
#define GOLDEN_CASES (sizeof golden_cases / sizeof golden_cases[0])

/* Value of "key" inside the "case": { ... } record of golden.json (a flat
 * object of strings and integers), as text without quotes; fails if absent. */
static inline void golden_value(const char *json, const char *c, const char *key, char *out,
                                size_t outlen)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": {", c);
    const char *rec = strstr(json, pat);
    if (!rec)
        fail_msg("golden.json has no case %s", c);
    const char *end = strchr(rec, '}');
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *v = strstr(rec, pat);
    if (!v || v > end)
        fail_msg("golden.json case %s has no %s", c, key);
    v += strlen(pat);
    if (*v == '"')
        v++;
    size_t n = strcspn(v, "\",\n}");
    if (n >= outlen)
        fail_msg("golden.json %s.%s too long", c, key);
    memcpy(out, v, n);
    out[n] = '\0';
}

static inline uint64_t golden_u64(const char *json, const char *c, const char *key)
{
    char v[32];
    golden_value(json, c, key, v, sizeof v);
    return strtoull(v, NULL, 10);
}

static inline const char *hex32(const uint8_t d[LCOW_SHA256_SIZE], char out[LCOW_SHA256_HEX_SIZE])
{
    lcow_sha256_hex(d, out);
    return out;
}

#endif

/* Helpers shared by the disk unit tests (test_vhdx, test_ext4,
 * test_scratchdisk): an in-memory io, temp paths, and running the external
 * checkers (qemu-img, e2fsck, dumpe2fs, mkfs.ext4) whose paths CTest passes
 * in LCOW_QEMU_IMG and friends. The checkers exist only in native builds;
 * under Wine the same tests fall back to our reader's structure checks. */
#ifndef LCOW_DISK_TEST_UTIL_H
#define LCOW_DISK_TEST_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif

#include "core/os/os.h"
#include "core/disk/vhdx.h"

/* ---- memory io: a growable buffer ---- */

typedef struct mem_io {
    unsigned char *data;
    size_t size, cap;
    unsigned writes;
    unsigned fail_write_at; /* 1-based write call that fails; 0 = never */
} mem_io;

static lcow_code mem_pread(void *ctx, void *buf, size_t len, uint64_t off, size_t *got,
                           lcow_error *err)
{
    mem_io *m = ctx;
    size_t n = 0;
    if (off < m->size)
        n = m->size - (size_t)off < len ? m->size - (size_t)off : len;
    if (n)
        memcpy(buf, m->data + off, n);
    if (got)
        *got = n;
    else if (n < len)
        return lcow_error_set(err, LCOW_INTERNAL, "short read");
    return LCOW_OK;
}

static lcow_code mem_resize(mem_io *m, size_t size, lcow_error *err)
{
    if (size > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < size)
            cap *= 2;
        unsigned char *d = realloc(m->data, cap);
        if (!d)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "oom");
        m->data = d;
        m->cap = cap;
    }
    if (size > m->size)
        memset(m->data + m->size, 0, size - m->size);
    m->size = size;
    return LCOW_OK;
}

static lcow_code mem_pwrite(void *ctx, const void *buf, size_t len, uint64_t off, lcow_error *err)
{
    mem_io *m = ctx;
    if (m->fail_write_at && ++m->writes == m->fail_write_at)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "injected write failure");
    if (off + len > m->size) {
        lcow_code rc = mem_resize(m, (size_t)(off + len), err);
        if (rc)
            return rc;
    }
    memcpy(m->data + off, buf, len);
    return LCOW_OK;
}

static lcow_code mem_size(void *ctx, uint64_t *size, lcow_error *err)
{
    *size = ((mem_io *)ctx)->size;
    return LCOW_OK;
}

static lcow_code mem_truncate(void *ctx, uint64_t size, lcow_error *err)
{
    mem_io *m = ctx;
    if (size < m->size) {
        m->size = (size_t)size;
        return LCOW_OK;
    }
    return mem_resize(m, (size_t)size, err);
}

static lcow_code mem_sync(void *ctx, lcow_error *err)
{
    return LCOW_OK;
}

static inline lcow_vhdx_io mem_io_of(mem_io *m)
{
    lcow_vhdx_io io = {m, mem_pread, mem_pwrite, mem_size, mem_truncate, mem_sync};
    return io;
}

/* ---- paths and tools ---- */

static inline char *test_path(const char *name)
{
    const char *dir = getenv("LCOW_TEST_TMP");
    if (!dir || !*dir)
        dir = ".";
    return lcow_path_join(dir, name);
}

static inline void test_remove(const char *path)
{
    lcow_error err;
    lcow_os_remove(path, &err);
}

static inline const char *tool(const char *env)
{
    const char *t = getenv(env);
    return t && *t ? t : NULL;
}

/* Runs a shell command, stdout+stderr captured into *out (malloc'd, may be
 * NULL); returns the exit status, -1 if it could not run. */
#ifdef __MINGW32__
static inline int run_cmd(char **out, const char *fmt, ...)
    __attribute__((format(gnu_printf, 2, 3)));
#else
static inline int run_cmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static inline int run_cmd(char **out, const char *fmt, ...)
{
    char cmd[4096], capture[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char *cap_path = test_path("cmd-output.txt");
    snprintf(capture, sizeof capture, "%s >'%s' 2>&1", cmd, cap_path);
    int st = system(capture);
#ifndef _WIN32
    st = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
#endif
    if (out) {
        *out = NULL;
        FILE *f = fopen(cap_path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            *out = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
            if (*out && n > 0 && fread(*out, 1, (size_t)n, f) != (size_t)n)
                (*out)[0] = '\0';
            fclose(f);
        }
    }
    free(cap_path);
    return st;
}

#endif

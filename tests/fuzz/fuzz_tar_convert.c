/* Tar -> ext4 conversion fuzz target: core/layer/tar (Go archive/tar's
 * reading), core/layer/convert (tar2ext4's driver) and core/disk/ext4_writer
 * on arbitrary bytes. Must not crash, leak or use memory beyond the
 * reader's bounds; on success the image is at most the maximum size and
 * on_final reported every block at most once, aligned.
 *
 * Input: one option byte, then the tar.
 *   bit 0  convert whiteouts     bit 1  inline data
 *   bit 2  convert backslashes   bit 3  zero-copy view source (else read())
 *   bits 4-7  the read()/view piece size: 1 + 37 * n bytes
 * The image goes to a file of this process in $TMPDIR (or /tmp), 64 MiB at
 * most, removed after each input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/layer/convert.h"

#define MAX_DISK (64u << 20)
#define MAX_BLOCKS (MAX_DISK / 4096)

typedef struct source {
    const uint8_t *p;
    size_t left, piece;
} source;

static lcow_code src_read(void *ctx, void *buf, size_t len, size_t *got, lcow_error *err)
{
    source *s = ctx;
    size_t n = len < s->piece ? len : s->piece;
    if (n > s->left)
        n = s->left;
    memcpy(buf, s->p, n);
    s->p += n;
    s->left -= n;
    *got = n;
    return LCOW_OK;
}

static lcow_code src_view(void *ctx, const void **data, size_t *len, lcow_error *err)
{
    source *s = ctx;
    size_t n = s->piece < s->left ? s->piece : s->left;
    *data = s->p;
    *len = n;
    s->p += n;
    s->left -= n;
    return LCOW_OK;
}

typedef struct finals {
    uint8_t seen[MAX_BLOCKS];
    int bad;
} finals;

static void on_final(void *ctx, uint64_t off, const void *data, size_t len)
{
    finals *f = ctx;
    if (off % 4096 || len % 4096 || len == 0 || off + len > MAX_DISK) {
        f->bad = 1;
        return;
    }
    for (uint64_t b = off / 4096; b < (off + len) / 4096; b++) {
        f->bad |= f->seen[b];
        f->seen[b] = 1;
    }
    (void)data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[256];
    static finals fin;
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/fuzz_tar_convert.%ld.img", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
    }
    if (size < 1)
        return 0;
    uint8_t opt = data[0];
    source s = {data + 1, size - 1, 1 + 37 * (size_t)(opt >> 4)};
    lcow_tar_source src = {.ctx = &s};
    if (opt & 8)
        src.view = src_view;
    else
        src.read = src_read;
    memset(&fin, 0, sizeof fin);
    lcow_layer_convert_options o = {
        .convert_whiteouts = opt & 1,
        .inline_data = (opt & 2) != 0,
        .convert_backslash = (opt & 4) != 0,
        .max_disk_size = MAX_DISK,
        .on_final = on_final,
        .on_final_ctx = &fin,
    };
    lcow_layer_convert_result res;
    lcow_error err;
    if (lcow_layer_convert(&src, path, &o, &res, &err) == LCOW_OK) {
        if (res.image_size > MAX_DISK || res.image_size % 4096 || fin.bad)
            abort();
        remove(path);
    } else if (access(path, F_OK) == 0) {
        abort(); /* a failed conversion must not leave its output */
    }
    return 0;
}

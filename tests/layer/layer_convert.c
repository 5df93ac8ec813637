/* layer_convert: tar2ext4's command line over lcowsnap's converter, for the
 * differential tests and benchmarks (the product's lcowsnap-tar2ext4 is a
 * separate program). Writes the ext4 image only (no VHD footer).
 *
 *   layer_convert -i IN.tar -o OUT [-overlay] [-inline] [-convert-slash]
 *                 [-max-gb N] [-sync] [-stats] [-view]
 *
 * -sync fsyncs the output, starting writeback early as the conversion goes
 * (Linux: sync_file_range on every range the writer reports; elsewhere
 * nothing); -stats prints "image_bytes= tar_bytes= entries=
 * inodes=" on stdout; -view feeds the tar through the zero-copy view source
 * instead of read(). Exit 0 on success, 1 with "CODE: message" on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/layer/convert.h"
#include "core/os/os.h"

#ifdef __linux__
#include <fcntl.h>
#include <unistd.h>

/* Early writeback: a second descriptor of the output (sync_file_range acts
 * on the file, whatever the descriptor). */
static void start_writeback(void *ctx, uint64_t off, uint64_t len)
{
    int *fd = ctx;
    if (*fd >= 0)
        sync_file_range(*fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}
#endif

typedef struct file_source {
    lcow_file *f;
    uint64_t off;
    uint8_t *buf;
    size_t cap;
} file_source;

static lcow_code file_read(void *ctx, void *buf, size_t len, size_t *got, lcow_error *err)
{
    file_source *s = ctx;
    lcow_code rc = lcow_file_pread(s->f, buf, len, s->off, got, err);
    if (rc == LCOW_OK)
        s->off += *got;
    return rc;
}

static lcow_code file_view(void *ctx, const void **data, size_t *len, lcow_error *err)
{
    file_source *s = ctx;
    lcow_code rc = file_read(ctx, s->buf, s->cap, len, err);
    *data = s->buf;
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: layer_convert -i IN.tar -o OUT [-overlay] [-inline] "
                    "[-convert-slash] [-max-gb N] [-sync] [-stats] [-view]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    lcow_layer_convert_options o = {0};
    bool sync = false, stats = false, view = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-i") && i + 1 < argc)
            in = argv[++i];
        else if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "-overlay"))
            o.convert_whiteouts = true;
        else if (!strcmp(argv[i], "-inline"))
            o.inline_data = true;
        else if (!strcmp(argv[i], "-convert-slash"))
            o.convert_backslash = true;
        else if (!strcmp(argv[i], "-max-gb") && i + 1 < argc)
            o.max_disk_size = strtoull(argv[++i], NULL, 10) << 30;
        else if (!strcmp(argv[i], "-sync"))
            sync = true;
        else if (!strcmp(argv[i], "-stats"))
            stats = true;
        else if (!strcmp(argv[i], "-view"))
            view = true;
        else
            return usage();
    }
    if (!in || !out)
        return usage();
    lcow_error err = {0};
    file_source s = {0};
    lcow_code rc = lcow_file_open(in, LCOW_OPEN_READ, &s.f, &err);
    lcow_layer_convert_result res = {0};
    if (rc == LCOW_OK) {
        lcow_tar_source src = {.ctx = &s};
#ifdef __linux__
        static int wb_fd = -1;
        if (sync) {
            /* the writer creates the file: open it afterwards, on the first call */
            o.on_written = start_writeback;
            o.on_written_ctx = &wb_fd;
            close(open(out, O_WRONLY | O_CREAT, 0644));
            wb_fd = open(out, O_WRONLY);
        }
#endif
        if (view) {
            s.cap = 256 * 1024;
            s.buf = malloc(s.cap);
            src.view = file_view;
        } else {
            src.read = file_read;
        }
        rc = lcow_layer_convert(&src, out, &o, &res, &err);
#ifdef __linux__
        if (wb_fd >= 0)
            close(wb_fd);
#endif
    }
    lcow_file_close(s.f);
    free(s.buf);
    if (rc == LCOW_OK && sync) {
        lcow_file *f;
        rc = lcow_file_open(out, LCOW_OPEN_WRITE, &f, &err);
        if (rc == LCOW_OK)
            rc = lcow_file_sync(f, &err);
        lcow_file_close(f);
    }
    if (rc != LCOW_OK) {
        fprintf(stderr, "%s: %s\n", lcow_code_name(rc), err.message);
        return 1;
    }
    if (stats)
        printf("image_bytes=%llu tar_bytes=%llu entries=%llu inodes=%u\n",
               (unsigned long long)res.image_size, (unsigned long long)res.tar_bytes,
               (unsigned long long)res.entries, res.inodes);
    return 0;
}

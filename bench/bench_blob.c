/* Layer blob reader benchmark (native only): decode throughput of
 * core/layer/blob beside the programs on the same file, page cache warm,
 * best of LCOW_BENCH_RUNS runs (default 3) because the machine is shared.
 *
 *   gzip -dc F >/dev/null, zstd -dc F >/dev/null, cat F >/dev/null
 *   blob reader, threaded: decoder thread (read, SHA-256 of the blob,
 *     decompress, SHA-256 of the tar) + this thread taking every byte through
 *     lcow_blob_read_view (what the tar reader does) and discarding it
 *   blob reader, synchronous: the same on one thread
 *   the parts alone: zlib/libzstd decompression, and SHA-256 over the tar
 *
 * Input: LCOW_BENCH_TAR (an uncompressed tar), else a 256 MiB tar of /usr
 * (real binaries, libraries and text, like an image layer) written to
 * LCOW_BENCH_TMP (default ./bench-tmp). The gzip (-6, Go's and Docker's
 * default level) and zstd (-3) blobs are made from it with the programs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <zlib.h>
#include <zstd.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"
#include "core/layer/blob.h"
#include "core/os/os.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process's threads or of its reaped
 * children: on a shared machine they say more than the wall clock. */
static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the best (wall-clock) run of the last measurement. */
static double last_cpu;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_blob: %s: %s\n", what, detail ? detail : strerror(errno));
    exit(1);
}

static int runs(void)
{
    const char *r = getenv("LCOW_BENCH_RUNS");
    int n = r ? atoi(r) : 3;
    return n > 0 ? n : 3;
}

static double time_shell(const char *cmd)
{
    double best = 1e9;
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_CHILDREN);
        if (system(cmd) != 0)
            die("command failed", cmd);
        t = now_s() - t;
        c = cpu_s(RUSAGE_CHILDREN) - c;
        if (t < best)
            best = t, last_cpu = c;
    }
    return best;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
        die(path, "read");
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Reads the whole blob as the tar reader would; returns seconds. */
static double time_blob(const char *path, bool synchronous, uint64_t *tar_bytes)
{
    double best = 1e9;
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_SELF);
        lcow_blob_options o = {.synchronous = synchronous};
        lcow_blob *b;
        lcow_error err;
        if (lcow_blob_open(path, &o, &b, &err))
            die(path, err.message);
        const void *p;
        size_t n;
        volatile uint8_t sink = 0;
        do {
            if (lcow_blob_read_view(b, &p, &n, &err))
                die(path, err.message);
            if (n)
                sink ^= ((const uint8_t *)p)[n - 1];
        } while (n);
        lcow_blob_result r;
        if (lcow_blob_finish(b, &r, &err))
            die(path, err.message);
        lcow_blob_close(b);
        t = now_s() - t;
        *tar_bytes = r.tar_bytes;
        if (t < best)
            best = t, last_cpu = cpu_s(RUSAGE_SELF) - c;
    }
    return best;
}

static double time_inflate(const uint8_t *gz, size_t len)
{
    double best = 1e9;
    uint8_t *out = malloc(128 << 10);
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_SELF);
        z_stream z = {0};
        inflateInit2(&z, 16 + MAX_WBITS);
        z.next_in = (Bytef *)gz;
        z.avail_in = (uInt)len;
        int rc;
        do {
            z.next_out = out;
            z.avail_out = 128 << 10;
            rc = inflate(&z, Z_NO_FLUSH);
        } while (rc == Z_OK);
        inflateEnd(&z);
        t = now_s() - t;
        if (rc != Z_STREAM_END)
            die("inflate", "not Z_STREAM_END");
        if (t < best)
            best = t, last_cpu = cpu_s(RUSAGE_SELF) - c;
    }
    free(out);
    return best;
}

static double time_unzstd(const uint8_t *zs, size_t len)
{
    double best = 1e9;
    uint8_t *out = malloc(128 << 10);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_SELF);
        ZSTD_DCtx_reset(d, ZSTD_reset_session_only);
        ZSTD_inBuffer in = {zs, len, 0};
        size_t rc = 1;
        while (in.pos < in.size || rc) {
            ZSTD_outBuffer o = {out, 128 << 10, 0};
            rc = ZSTD_decompressStream(d, &o, &in);
            if (ZSTD_isError(rc))
                die("zstd", ZSTD_getErrorName(rc));
            if (!rc && in.pos == in.size)
                break;
        }
        t = now_s() - t;
        if (t < best)
            best = t, last_cpu = cpu_s(RUSAGE_SELF) - c;
    }
    ZSTD_freeDCtx(d);
    free(out);
    return best;
}

static double time_sha256(const uint8_t *data, size_t len)
{
    double best = 1e9;
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_SELF);
        uint8_t d[32];
        lcow_sha256_ctx s;
        lcow_sha256_init(&s);
        for (size_t at = 0; at < len; at += 128 << 10)
            lcow_sha256_update(&s, data + at, len - at < (128 << 10) ? len - at : 128 << 10);
        lcow_sha256_final(&s, d);
        t = now_s() - t;
        if (t < best)
            best = t, last_cpu = cpu_s(RUSAGE_SELF) - c;
    }
    return best;
}

static void row(const char *what, double s, double ref, uint64_t bytes)
{
    printf("| %-52s | %7.3f s | %7.3f s | %6.0f MB/s | %5.2fx |\n", what, s, last_cpu,
           (double)bytes / s / 1e6, s / ref);
}

int main(void)
{
    const char *tmp = getenv("LCOW_BENCH_TMP");
    if (!tmp)
        tmp = "bench-tmp";
    lcow_error err;
    if (lcow_os_mkdir_all(tmp, &err))
        die(tmp, err.message);
    char tar[4096], gz[4200], zst[4200], cmd[9000];
    const char *given = getenv("LCOW_BENCH_TAR");
    if (given) {
        snprintf(tar, sizeof tar, "%s", given);
    } else {
        snprintf(tar, sizeof tar, "%s/usr-256m.tar", tmp);
        snprintf(cmd, sizeof cmd,
                 "[ -s '%s' ] || (tar -C /usr -cf - lib bin share 2>/dev/null | head -c 268435456 "
                 ">'%s')",
                 tar, tar);
        if (system(cmd) != 0)
            die("making the tar", cmd);
    }
    snprintf(gz, sizeof gz, "%s/bench.tar.gz", tmp);
    snprintf(zst, sizeof zst, "%s/bench.tar.zst", tmp);
    snprintf(cmd, sizeof cmd, "gzip -6 -n -c '%s' >'%s' && zstd -q -3 -f '%s' -o '%s'", tar, gz,
             tar, zst);
    if (system(cmd) != 0)
        die("compressing", cmd);

    size_t tar_len, gz_len, zst_len;
    uint8_t *tar_data = slurp(tar, &tar_len);
    uint8_t *gz_data = slurp(gz, &gz_len);
    uint8_t *zst_data = slurp(zst, &zst_len);
    printf("tar %.1f MB, gzip -6 %.1f MB, zstd -3 %.1f MB; best of %d runs; MB/s of tar bytes\n\n",
           tar_len / 1e6, gz_len / 1e6, zst_len / 1e6, runs());
    printf("| %-52s | %9s | %9s | %11s | %6s |\n|---|---|---|---|---|\n", "what", "wall", "CPU",
           "throughput", "vs ref");

    uint64_t out_bytes;
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' >/dev/null", gz);
    double gzip_dc = time_shell(cmd);
    row("`gzip -dc >/dev/null` (reference)", gzip_dc, gzip_dc, tar_len);
    row("zlib inflate alone, in memory", time_inflate(gz_data, gz_len), gzip_dc, tar_len);
    row("blob reader, gzip, threaded (decode + 2 SHA-256)", time_blob(gz, false, &out_bytes),
        gzip_dc, tar_len);
    row("blob reader, gzip, synchronous", time_blob(gz, true, &out_bytes), gzip_dc, tar_len);

    snprintf(cmd, sizeof cmd, "zstd -q -dc '%s' >/dev/null", zst);
    double zstd_dc = time_shell(cmd);
    row("`zstd -dc >/dev/null` (reference)", zstd_dc, zstd_dc, tar_len);
    row("libzstd alone, in memory", time_unzstd(zst_data, zst_len), zstd_dc, tar_len);
    row("blob reader, zstd, threaded (decode + 2 SHA-256)", time_blob(zst, false, &out_bytes),
        zstd_dc, tar_len);
    row("blob reader, zstd, synchronous", time_blob(zst, true, &out_bytes), zstd_dc, tar_len);

    snprintf(cmd, sizeof cmd, "cat '%s' >/dev/null", tar);
    double cat = time_shell(cmd);
    row("`cat >/dev/null` (reference)", cat, cat, tar_len);
    row("blob reader, tar, threaded (read + SHA-256)", time_blob(tar, false, &out_bytes), cat,
        tar_len);
    row("SHA-256 (nettle) alone, in memory", time_sha256(tar_data, tar_len), cat, tar_len);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("\npeak RSS of this process %.1f MiB (it holds the three files in memory: %.1f MiB)\n",
           ru.ru_maxrss / 1024.0, (tar_len + gz_len + zst_len) / 1048576.0);
    free(tar_data);
    free(gz_data);
    free(zst_data);
    return 0;
}

/* Layer blob reader benchmark (native only): decode throughput of
 * core/layer/blob beside the programs on the same file, page cache warm,
 * best of LCOW_BENCH_RUNS runs (default 3) because the machine is shared.
 *
 *   gzip -dc F >/dev/null, zstd -dc F >/dev/null, cat F >/dev/null
 *   blob reader, threaded: decoder thread (read, SHA-256 of the blob,
 *     decompress, SHA-256 of the tar) + this thread taking every byte through
 *     lcow_blob_read_view (what the tar reader does) and discarding it
 *   blob reader, synchronous: the same on one thread
 *   the parts alone: zlib, ISA-L and libzstd decompression, and SHA-256 over the tar
 *   end to end, as Apply does it (lcow_layer_apply_file), in a process of
 *     its own (its CPU and peak RSS from /usr/bin/time): blob reader -> tar
 *     reader -> ext4 writer [-> dm-verity from on_final] -> VHD footer ->
 *     fsync -> rename, beside `gzip -dc | tar2ext4-ref -overlay -vhd -max-gb 128`,
 *     tar2ext4-ref on the tar (the program LCOW_TAR2EXT4_REF names, when it
 *     is set and executable; it does not fsync), the copy floor `cp` +
 *     `sync`, and the device floor (`dd` with O_DIRECT and fdatasync: no
 *     page cache)
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
#include <unistd.h>

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"
#include "core/layer/apply.h"
#include "core/layer/blob.h"
#include "core/os/os.h"

/* Keeps the read of each view from being optimised away. */
static volatile uint8_t bench_sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_blob: %s: %s\n", what, detail ? detail : strerror(errno));
    exit(1);
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

/* A measurement: the best wall-clock run of several, and that run's CPU. */
typedef struct meas {
    double wall, cpu, rss_mib; /* rss_mib: only for runs in a child process */
} meas;

static double last_cpu;     /* CPU of the best run of the measurement just taken */
static double last_rss_mib; /* peak RSS of that run, when it was a command */

static meas taken(double wall)
{
    meas m = {wall, last_cpu, last_rss_mib};
    last_rss_mib = 0;
    return m;
}

static int runs(void)
{
    const char *r = getenv("LCOW_BENCH_RUNS");
    int n = r ? atoi(r) : 3;
    return n > 0 ? n : 3;
}

static const char *work_dir = "bench-tmp";

/* Runs `sh -c cmd` under /usr/bin/time: wall time from here, the command's
 * CPU (user + system of all its processes) and peak RSS (of the largest)
 * from time. Every program runs in a fresh process, so its peak RSS is its
 * own; best of runs() by wall time. */
/* A file the timed commands write: removed after each run, outside the
 * timing (deleting a 300 MB file costs about 0.1 s here, which is no part of
 * making it). */
static char made_file[4200];

static double time_shell(const char *cmd)
{
    char script[4200], stat[4200], line[12000];
    snprintf(script, sizeof script, "%s/cmd.sh", work_dir);
    snprintf(stat, sizeof stat, "%s/cmd.time", work_dir);
    FILE *f = fopen(script, "w");
    if (!f)
        die(script, NULL);
    fprintf(f, "%s\n", cmd);
    fclose(f);
    snprintf(line, sizeof line, "/usr/bin/time -f '%%U %%S %%M' -o '%s' sh '%s'", stat, script);
    double best = 1e9;
    for (int i = 0; i < runs(); i++) {
        double t = now_s();
        if (system(line) != 0)
            die("command failed", cmd);
        t = now_s() - t;
        if (made_file[0])
            unlink(made_file);
        double user, sys, kib;
        f = fopen(stat, "r");
        if (!f || fscanf(f, "%lf %lf %lf", &user, &sys, &kib) != 3)
            die("reading /usr/bin/time's output", stat);
        fclose(f);
        if (t < best)
            best = t, last_cpu = user + sys, last_rss_mib = kib / 1024;
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
        do {
            if (lcow_blob_read_view(b, &p, &n, &err))
                die(path, err.message);
            if (n)
                bench_sink ^= ((const uint8_t *)p)[n - 1];
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

/* Blob to layer.vhd exactly as Apply does it (core/layer/apply.h: blob ->
 * tar reader -> ext4 writer [-> dm-verity from on_final] -> VHD footer ->
 * fsync -> rename -> directory sync): `bench_blob --convert BLOB OUT
 * VERITY(0|1)`, run by time_convert in a process of its own. */
static void convert(const char *blob, const char *out, bool verity)
{
    lcow_layer_apply_format fmt = LCOW_LAYER_APPLY_DIFFER_FORMAT;
    fmt.verity = verity;
    lcow_layer_apply_options o = {.replace = true};
    lcow_error err;
    if (lcow_layer_apply_file(blob, out, &fmt, &o, NULL, &err))
        die("convert", err.message);
}

static double time_convert(const char *blob, const char *out, bool verity)
{
    char self[4096], cmd[12600];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        die("/proc/self/exe", NULL);
    self[n] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' --convert '%s' '%s' %d", self, blob, out, verity);
    return time_shell(cmd);
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

/* ISA-L's inflate (what the blob reader uses for gzip), the same way. */
static double time_isal_inflate(const uint8_t *gz, size_t len)
{
    double best = 1e9;
    uint8_t *out = malloc(128 << 10);
    struct inflate_state *st = malloc(sizeof *st);
    for (int i = 0; i < runs(); i++) {
        double t = now_s(), c = cpu_s(RUSAGE_SELF);
        isal_inflate_init(st);
        st->crc_flag = ISAL_GZIP;
        st->next_in = (uint8_t *)gz;
        st->avail_in = (uint32_t)len;
        int rc;
        do {
            st->next_out = out;
            st->avail_out = 128 << 10;
            rc = isal_inflate(st);
        } while (rc == ISAL_DECOMP_OK && st->block_state != ISAL_BLOCK_FINISH);
        t = now_s() - t;
        if (rc != ISAL_DECOMP_OK)
            die("isal_inflate", "error");
        if (t < best)
            best = t, last_cpu = cpu_s(RUSAGE_SELF) - c;
    }
    free(st);
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

/* End-to-end rows: with the child's peak RSS. */
static void row_rss(const char *what, meas m, meas ref, uint64_t bytes)
{
    printf("| %-46s | %7.3f s | %7.3f s | %6.0f MB/s | %5.2fx | %6.1f MiB |\n", what, m.wall, m.cpu,
           (double)bytes / m.wall / 1e6, m.wall / ref.wall, m.rss_mib);
}

static void row(const char *what, meas m, meas ref, uint64_t bytes)
{
    printf("| %-52s | %7.3f s | %7.3f s | %6.0f MB/s | %5.2fx |\n", what, m.wall, m.cpu,
           (double)bytes / m.wall / 1e6, m.wall / ref.wall);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--convert") == 0) {
        convert(argv[2], argv[3], argv[4][0] == '1');
        return 0;
    }
    const char *tmp = getenv("LCOW_BENCH_TMP");
    if (!tmp)
        tmp = "bench-tmp";
    work_dir = tmp;
    lcow_error err;
    if (lcow_os_mkdir_all(tmp, &err))
        die(tmp, err.message);
    char tar[4096], gz[4200], zst[4200], cmd[9000];
    const char *given = getenv("LCOW_BENCH_TAR");
    if (given) {
        snprintf(tar, sizeof tar, "%s", given);
    } else {
        /* a whole tar (entries, not a cut stream) of the first ~256 MiB of
         * /usr/share, /usr/lib and /usr/bin in directory order: many small
         * files (documentation, locales) and some big ones, like a layer */
        snprintf(tar, sizeof tar, "%s/usr-256m.tar", tmp);
        snprintf(cmd, sizeof cmd,
                 "[ -s '%s' ] || python3 -c 'import os,sys,tarfile\n"
                 "t=tarfile.open(sys.argv[1],\"w\",format=tarfile.PAX_FORMAT);n=0\n"
                 "for top in (\"share\",\"lib\",\"bin\"):\n"
                 " for d,ds,fs in os.walk(\"/usr/\"+top):\n"
                 "  ds.sort();fs.sort()\n"
                 "  for x in [d]+[os.path.join(d,f) for f in fs]:\n"
                 "   if n>=256<<20: break\n"
                 "   try: i=t.gettarinfo(x,x[1:])\n"
                 "   except OSError: continue\n"
                 "   if i.isreg():\n"
                 "    try:\n"
                 "     with open(x,\"rb\") as f: t.addfile(i,f)\n"
                 "    except OSError: continue\n"
                 "    n+=i.size\n"
                 "   elif i.isdir() or i.issym(): t.addfile(i)\n"
                 "t.close()' '%s'",
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
    snprintf(cmd, sizeof cmd, "tar -tf '%s' | wc -l", tar);
    FILE *p = popen(cmd, "r");
    long entries = 0;
    if (!p || fscanf(p, "%ld", &entries) != 1)
        entries = -1;
    if (p)
        pclose(p);
    printf("tar %.1f MB (%ld entries), gzip -6 %.1f MB, zstd -3 %.1f MB; best of %d runs; "
           "MB/s of tar bytes\n\n",
           tar_len / 1e6, entries, gz_len / 1e6, zst_len / 1e6, runs());
    printf("| %-52s | %9s | %9s | %11s | %6s |\n|---|---|---|---|---|\n", "what", "wall", "CPU",
           "throughput", "vs ref");

    uint64_t out_bytes;
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' >/dev/null", gz);
    meas gzip_dc = taken(time_shell(cmd));
    row("`gzip -dc >/dev/null` (reference)", gzip_dc, gzip_dc, tar_len);
    row("zlib inflate alone, in memory", taken(time_inflate(gz_data, gz_len)), gzip_dc, tar_len);
    row("ISA-L inflate alone, in memory (what Apply uses)",
        taken(time_isal_inflate(gz_data, gz_len)), gzip_dc, tar_len);
    row("blob reader, gzip, threaded (decode + 2 SHA-256)", taken(time_blob(gz, false, &out_bytes)),
        gzip_dc, tar_len);
    row("blob reader, gzip, synchronous", taken(time_blob(gz, true, &out_bytes)), gzip_dc, tar_len);

    snprintf(cmd, sizeof cmd, "zstd -q -dc '%s' >/dev/null", zst);
    meas zstd_dc = taken(time_shell(cmd));
    row("`zstd -dc >/dev/null` (reference)", zstd_dc, zstd_dc, tar_len);
    row("libzstd alone, in memory", taken(time_unzstd(zst_data, zst_len)), zstd_dc, tar_len);
    row("blob reader, zstd, threaded (decode + 2 SHA-256)",
        taken(time_blob(zst, false, &out_bytes)), zstd_dc, tar_len);
    row("blob reader, zstd, synchronous", taken(time_blob(zst, true, &out_bytes)), zstd_dc,
        tar_len);

    snprintf(cmd, sizeof cmd, "cat '%s' >/dev/null", tar);
    meas cat = taken(time_shell(cmd));
    row("`cat >/dev/null` (reference)", cat, cat, tar_len);
    row("blob reader, tar, threaded (read + SHA-256)", taken(time_blob(tar, false, &out_bytes)),
        cat, tar_len);
    row("SHA-256 (nettle) alone, in memory", taken(time_sha256(tar_data, tar_len)), cat, tar_len);

    /* (the in-memory copies are not needed any more) */
    free(tar_data);
    free(gz_data);
    free(zst_data);
    /* End to end. */
    char out[4200], ref[4096];
    snprintf(out, sizeof out, "%s/bench-layer.vhd", tmp);
    snprintf(made_file, sizeof made_file, "%s", out);
    const char *r = getenv("LCOW_TAR2EXT4_REF");
    snprintf(ref, sizeof ref, "%s", r ? r : "");
    bool have_ref = ref[0] && access(ref, X_OK) == 0;
    printf("\nend to end: blob -> layer.vhd (ext4, [verity,] VHD footer, fsync)\n\n");
    printf("| %-46s | %9s | %9s | %11s | %6s | %10s |\n|---|---|---|---|---|---|\n", "what", "wall",
           "CPU", "throughput", "vs ref", "peak RSS");
    /* the references again, in this phase (same load, small parent) */
    snprintf(cmd, sizeof cmd, "gzip -dc '%s' >/dev/null", gz);
    gzip_dc = taken(time_shell(cmd));
    row_rss("`gzip -dc >/dev/null` (reference)", gzip_dc, gzip_dc, tar_len);
    if (have_ref) {
        snprintf(cmd, sizeof cmd,
                 "gzip -dc '%s' | '%s' -i /dev/stdin -o '%s' -overlay -vhd -max-gb 128", gz, ref,
                 out);
        row_rss("`gzip -dc | tar2ext4-ref -overlay -vhd`", taken(time_shell(cmd)), gzip_dc,
                tar_len);
    }
    row_rss("lcowsnap, gzip", taken(time_convert(gz, out, false)), gzip_dc, tar_len);
    row_rss("lcowsnap, gzip, verity", taken(time_convert(gz, out, true)), gzip_dc, tar_len);
    snprintf(cmd, sizeof cmd, "zstd -q -dc '%s' >/dev/null", zst);
    zstd_dc = taken(time_shell(cmd));
    row_rss("`zstd -dc >/dev/null` (reference)", zstd_dc, zstd_dc, tar_len);
    row_rss("lcowsnap, zstd", taken(time_convert(zst, out, false)), zstd_dc, tar_len);
    row_rss("lcowsnap, zstd, verity", taken(time_convert(zst, out, true)), zstd_dc, tar_len);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && sync '%s'", tar, out, out);
    meas floor = taken(time_shell(cmd));
    row_rss("`cp` + `sync` of the tar (copy floor, reference)", floor, floor, tar_len);
    if (have_ref) {
        snprintf(cmd, sizeof cmd, "'%s' -i '%s' -o '%s' -overlay -vhd -max-gb 128", ref, tar, out);
        row_rss("tar2ext4-ref -overlay -vhd", taken(time_shell(cmd)), floor, tar_len);
        snprintf(cmd, sizeof cmd, "'%s' -i '%s' -o '%s' -overlay -verity -vhd -max-gb 128", ref,
                 tar, out);
        row_rss("tar2ext4-ref -overlay -verity -vhd", taken(time_shell(cmd)), floor, tar_len);
    }
    row_rss("lcowsnap, tar", taken(time_convert(tar, out, false)), floor, tar_len);
    row_rss("lcowsnap, tar, verity", taken(time_convert(tar, out, true)), floor, tar_len);
    /* The device alone: the same bytes written around the page cache
     * (O_DIRECT) and flushed. On this VM a write into the page cache costs
     * far more when the guest's free pages were handed back to the host
     * (virtio-balloon free page reporting), so cp's floor moves between runs;
     * this one does not. */
    snprintf(cmd, sizeof cmd, "dd if='%s' of='%s' bs=1M oflag=direct conv=fdatasync status=none",
             tar, out);
    row_rss("`dd oflag=direct conv=fdatasync` (device floor)", taken(time_shell(cmd)), floor,
            tar_len);

    return 0;
}

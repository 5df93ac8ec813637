/* Parallel unpack and remote-snapshot benchmark (native only; issue 16).
 *
 * Parallel unpack: N Applies of N
 * different gzip layers of about --mb MB of tar each, through the store
 * (lcow_snapshotter_apply, the code the Apply RPC runs on a worker of the
 * pool), one after another on one thread versus all at once on N threads,
 * as containerd's unpacker sends them with the rebase capability.
 *
 * Every round opens a fresh store under --dir (the layer store would link a
 * blob it has seen instead of converting it), prepares N extract-* keys,
 * then times the N Applies; rounds alternate the two modes and the table
 * gives the median of each. The layers: a tar of 256 KiB files of
 * word-like text, different for every layer (gzip -6, about 3:1), made once
 * per run in --dir. The machine's load average is printed before and after:
 * the speedup is bounded by the cores that are idle.
 *
 * Remote snapshot: containerd's extraction Prepare (ref and diff-id labels)
 * of a layer already here, 50 times: from the layer store (a directory, the
 * stored layer.vhd linked, the snapshot committed as the ref in one synced
 * batch, AlreadyExists) and adopting a committed snapshot.
 *
 * Usage: bench_apply_parallel [--layers 8] [--mb 50] [--rounds 3] [--dir DIR]
 * Prints a Markdown table (the one in docs/performance.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <zlib.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h" /* lcow_snapshotter_conversions_max */
#include "support/layerblob.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_apply_parallel: %s: %s\n", what, detail ? detail : "");
    exit(1);
}

static void load_avg(double out[3])
{
    out[0] = out[1] = out[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3)
            out[0] = out[1] = out[2] = -1;
        fclose(f);
    }
}

/* ---- the layers ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void gz_put(gzFile gz, const void *p, size_t n)
{
    if (gzwrite(gz, p, (unsigned)n) != (int)n)
        die("gzwrite", NULL);
}

/* Layer n: mb MB of tar (files of 256 KiB of text from a per-layer word
 * stream) written gzip-compressed to path. */
static void make_layer(const char *path, int n, unsigned mb)
{
    static const char *words[] = {"lcow ",      "layer ",  "ext4 ",       "inode ",
                                  "block ",     "extent ", "containerd ", "snapshot ",
                                  "vhd ",       "shim\n",  "0x7f3a ",     "/usr/lib/",
                                  "libc.so.6 ", "ELF ",    "=== ",        "\t"};
    gzFile gz = gzopen(path, "wb6");
    if (!gz)
        die("gzopen", path);
    enum { FILE_BYTES = 256 * 1024 };
    static char buf[FILE_BYTES];
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(n + 1);
    uint8_t h[512];
    char name[100];
    snprintf(name, sizeof name, "layer%d/", n);
    lb_ustar_header(h, name, '5', 0, NULL, 0755, 0);
    gz_put(gz, h, 512);
    size_t files = ((size_t)mb << 20) / FILE_BYTES;
    for (size_t f = 0; f < files; f++) {
        size_t len = 0;
        while (len < FILE_BYTES) {
            uint64_t r = rng_next(&s);
            const char *w = words[r & 15];
            size_t wl = strlen(w);
            if (len + wl > FILE_BYTES)
                wl = FILE_BYTES - len;
            memcpy(buf + len, w, wl);
            len += wl;
            if ((r >> 8 & 7) == 0 && len + 8 <= FILE_BYTES) { /* some noise */
                uint64_t x = rng_next(&s);
                memcpy(buf + len, &x, 8);
                len += 8;
            }
        }
        snprintf(name, sizeof name, "layer%d/d%03zu/f%06zu", n, f / 64, f);
        lb_ustar_header(h, name, '0', FILE_BYTES, NULL, 0644, 0);
        gz_put(gz, h, 512);
        gz_put(gz, buf, FILE_BYTES);
    }
    static const uint8_t end[1024];
    gz_put(gz, end, sizeof end);
    if (gzclose(gz) != Z_OK)
        die("gzclose", path);
}

/* ---- the disk's floor ---- */

typedef struct writer {
    char *path;
    uint64_t bytes;
} writer;

static void *write_one(void *arg)
{
    writer *w = arg;
    enum { BUF = 1 << 20 };
    char *buf = malloc(BUF);
    if (!buf)
        die("malloc", NULL);
    for (size_t i = 0; i < BUF; i++)
        buf[i] = (char)(i * 131 + (i >> 9));
    int fd = open(w->path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0)
        die("open", w->path);
    for (uint64_t done = 0; done < w->bytes;) {
        size_t len = w->bytes - done < BUF ? (size_t)(w->bytes - done) : BUF;
        if (write(fd, buf, len) != (ssize_t)len)
            die("write", w->path);
        done += len;
    }
    fsync(fd);
    close(fd);
    free(buf);
    return NULL;
}

static double write_floor(const char *dir, int n, uint64_t total, bool parallel)
{
    writer *w = calloc((size_t)n, sizeof *w);
    lcow_thread *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "floor%d", i);
        w[i].path = lcow_path_join(dir, name);
        w[i].bytes = total / (uint64_t)n;
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (!parallel)
            write_one(&w[i]);
        else if (!lcow_thread_create(&t[i], write_one, &w[i]))
            die("thread", NULL);
    }
    if (parallel)
        for (int i = 0; i < n; i++)
            lcow_thread_join(t[i], NULL);
    double secs = now_s() - t0;
    for (int i = 0; i < n; i++) {
        unlink(w[i].path);
        free(w[i].path);
    }
    free(w);
    free(t);
    return secs;
}

/* ---- one round ---- */

typedef struct job {
    lcow_snapshotter *s;
    char key[64];
    const char *blob;
    lcow_error err;
    lcow_code rc;
    uint64_t layer_bytes;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    lcow_apply_request req = {.key = j->key,
                              .path = j->blob,
                              .media_type = "application/vnd.oci.image.layer.v1.tar+gzip"};
    lcow_apply_result r;
    j->rc = lcow_snapshotter_apply(j->s, &req, &r, &j->err);
    j->layer_bytes = r.layer_bytes;
    return NULL;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct round_result {
    double seconds;
    double cpu; /* CPU seconds the process used meanwhile (all threads) */
    unsigned max_at_once;
    uint64_t layer_bytes;
} round_result;

static round_result run_round(const char *dir, int round, bool parallel, char **blobs, int n)
{
    char name[64];
    snprintf(name, sizeof name, "store-%d-%s", round, parallel ? "par" : "seq");
    char *root = lcow_path_join(dir, name);
    lcow_error err;
    lcow_snapshotter_config c = {.root = root, .no_scratch = true};
    lcow_snapshotter *s;
    if (lcow_snapshotter_open(&c, &s, &err) != LCOW_OK)
        die("open", err.message);
    job *jobs = calloc((size_t)n, sizeof *jobs);
    lcow_thread *t = calloc((size_t)n, sizeof *t);
    if (!jobs || !t)
        die("calloc", NULL);
    for (int i = 0; i < n; i++) {
        jobs[i].s = s;
        jobs[i].blob = blobs[i];
        snprintf(jobs[i].key, sizeof jobs[i].key, "default/%d/extract-%d sha256:bench%d", i + 1, i,
                 i);
        lcow_mounts m;
        if (lcow_snapshotter_prepare(s, jobs[i].key, "", NULL, &m, &err) != LCOW_OK)
            die("prepare", err.message);
        lcow_mounts_free(&m);
    }
    double t0 = now_s(), c0 = cpu_s();
    if (parallel) {
        for (int i = 0; i < n; i++)
            if (!lcow_thread_create(&t[i], run_job, &jobs[i]))
                die("thread", NULL);
        for (int i = 0; i < n; i++)
            lcow_thread_join(t[i], NULL);
    } else {
        for (int i = 0; i < n; i++)
            run_job(&jobs[i]);
    }
    round_result res = {.seconds = now_s() - t0,
                        .cpu = cpu_s() - c0,
                        .max_at_once = lcow_snapshotter_conversions_max(s)};
    for (int i = 0; i < n; i++) {
        if (jobs[i].rc != LCOW_OK)
            die("apply", jobs[i].err.message);
        res.layer_bytes += jobs[i].layer_bytes;
    }
    lcow_snapshotter_free(s);
    if (lcow_os_remove_all(root, &err) != LCOW_OK)
        die("remove", err.message);
    free(root);
    free(jobs);
    free(t);
    return res;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the remote-snapshot Prepare of a known layer ---- */

/* containerd's extraction Prepare of layer `blob` (base layer: ref =
 * diffID) in a store that has the layer: through the layer store (the
 * snapshot committed under the ref is removed before each run, untimed) and
 * adopting the committed snapshot (it stays). Median and worst of `runs`. */
static void bench_remote(const char *dir, const char *blob, int runs)
{
    char *root = lcow_path_join(dir, "store-remote");
    lcow_error err;
    lcow_snapshotter_config c = {.root = root, .no_scratch = true};
    lcow_snapshotter *s;
    if (lcow_snapshotter_open(&c, &s, &err) != LCOW_OK)
        die("open", err.message);
    lcow_mounts m;
    if (lcow_snapshotter_prepare(s, "default/1/extract-1 first", "", NULL, &m, &err) != LCOW_OK)
        die("prepare", err.message);
    lcow_mounts_free(&m);
    lcow_apply_request req = {.key = "default/1/extract-1 first", .path = blob};
    lcow_apply_result r;
    if (lcow_snapshotter_apply(s, &req, &r, &err) != LCOW_OK)
        die("apply", err.message);
    /* The first image's snapshot is gone; the layer stays in the store. */
    if (lcow_snapshotter_remove(s, "default/1/extract-1 first", &err) != LCOW_OK)
        die("remove", err.message);
    lcow_labels l = {0};
    lcow_labels_set(&l, "containerd.io/snapshot.ref", r.diff_id);
    lcow_labels_set(&l, "containerd.io/snapshot/diff-id", r.diff_id);
    double *store_ms = calloc((size_t)runs, sizeof *store_ms);
    double *adopt_ms = calloc((size_t)runs, sizeof *adopt_ms);
    char key[200];
    for (int i = 0; i < runs; i++) {
        snprintf(key, sizeof key, "k8s.io/%d/extract-%d %s", 2 * i + 2, i, r.diff_id);
        double t0 = now_s();
        lcow_code rc = lcow_snapshotter_prepare(s, key, "", &l, &m, &err);
        store_ms[i] = (now_s() - t0) * 1e3;
        if (rc != LCOW_ALREADY_EXISTS)
            die("remote prepare (layer store)", rc == LCOW_OK ? "answered OK" : err.message);
        snprintf(key, sizeof key, "k8s.io/%d/extract-%d %s", 2 * i + 3, i, r.diff_id);
        t0 = now_s();
        rc = lcow_snapshotter_prepare(s, key, "", &l, &m, &err);
        adopt_ms[i] = (now_s() - t0) * 1e3;
        if (rc != LCOW_ALREADY_EXISTS)
            die("remote prepare (committed)", rc == LCOW_OK ? "answered OK" : err.message);
        if (lcow_snapshotter_remove(s, r.diff_id, &err) != LCOW_OK)
            die("remove", err.message);
    }
    lcow_labels_free(&l);
    /* The floor in the same run: a durable metadata write is one fdatasync
     * (LevelDB's synced batch), a durable directory entry one fsync of it. */
    double *sync_ms = calloc((size_t)runs, sizeof *sync_ms);
    double *dsync_ms = calloc((size_t)runs, sizeof *dsync_ms);
    char *probe = lcow_path_join(dir, "sync-probe");
    int fd = open(probe, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    int dfd = open(dir, O_RDONLY);
    if (fd < 0 || dfd < 0)
        die("open", probe);
    for (int i = 0; i < runs; i++) {
        if (write(fd, "x", 1) != 1)
            die("write", probe);
        double t0 = now_s();
        fdatasync(fd);
        sync_ms[i] = (now_s() - t0) * 1e3;
        t0 = now_s();
        fsync(dfd);
        dsync_ms[i] = (now_s() - t0) * 1e3;
    }
    close(fd);
    close(dfd);
    unlink(probe);
    free(probe);
    qsort(sync_ms, (size_t)runs, sizeof *sync_ms, cmp_double);
    qsort(dsync_ms, (size_t)runs, sizeof *dsync_ms, cmp_double);
    qsort(store_ms, (size_t)runs, sizeof *store_ms, cmp_double);
    qsort(adopt_ms, (size_t)runs, sizeof *adopt_ms, cmp_double);
    printf("\n| remote-snapshot Prepare of a known %.0f MB layer (%d runs) | median | slowest |\n",
           (double)r.layer_bytes / 1e6, runs);
    printf("|---|---|---|\n");
    printf("| from the layer store: directory, link, the committed record (one synced batch), "
           "AlreadyExists | %.2f ms | "
           "%.2f ms |\n",
           store_ms[runs / 2], store_ms[runs - 1]);
    printf("| committed already (another namespace): the filter finds it, AlreadyExists | %.2f ms "
           "| %.2f ms |\n",
           adopt_ms[runs / 2], adopt_ms[runs - 1]);
    printf("| reference, same disk: one fdatasync of a 1-byte write / one directory fsync | %.2f / "
           "%.2f ms | %.2f / %.2f ms |\n",
           sync_ms[runs / 2], dsync_ms[runs / 2], sync_ms[runs - 1], dsync_ms[runs - 1]);
    free(sync_ms);
    free(dsync_ms);
    free(store_ms);
    free(adopt_ms);
    lcow_snapshotter_free(s);
    lcow_os_remove_all(root, &err);
    free(root);
}

int main(int argc, char **argv)
{
    int n = 8, rounds = 3;
    unsigned mb = 50;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--layers") == 0 && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc)
            mb = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else
            die("usage", "bench_apply_parallel [--layers 8] [--mb 50] [--rounds 3] [--dir DIR]");
    }
    if (n < 1 || n > 64 || mb < 1 || rounds < 1)
        die("arguments", "--layers 1..64, --mb >= 1, --rounds >= 1");
    lcow_log_set_level(LCOW_LOG_WARN);
    char tmpl[] = "/tmp/bench-apply-XXXXXX";
    char *made = NULL;
    if (!dir) {
        made = mkdtemp(tmpl);
        if (!made)
            die("mkdtemp", NULL);
        dir = made;
    }
    char **blobs = calloc((size_t)n, sizeof *blobs);
    uint64_t blob_bytes = 0;
    double tg = now_s();
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%d.tar.gz", i);
        blobs[i] = lcow_path_join(dir, name);
        make_layer(blobs[i], i, mb);
        lcow_stat st;
        lcow_error err;
        if (lcow_os_stat(blobs[i], &st, &err) != LCOW_OK)
            die("stat", err.message);
        blob_bytes += st.size;
    }
    fprintf(stderr, "made %d layers of %u MB tar (%.1f MB gzip in all) in %.1f s\n", n, mb,
            (double)blob_bytes / 1e6, now_s() - tg);
    double before[3], after[3];
    load_avg(before);
    double *seq = calloc((size_t)rounds, sizeof *seq), *par = calloc((size_t)rounds, sizeof *par);
    double *seq_cores = calloc((size_t)rounds, sizeof *seq_cores);
    double *par_cores = calloc((size_t)rounds, sizeof *par_cores);
    double cpu_per_round = 0;
    unsigned max_at_once = 0;
    uint64_t layer_bytes = 0;
    for (int r = 0; r < rounds; r++) {
        /* Alternate which mode goes first: page cache and load drift fall
         * on both. */
        bool par_first = r % 2 == 1;
        for (int k = 0; k < 2; k++) {
            bool parallel = (k == 0) == par_first;
            round_result rr = run_round(dir, r, parallel, blobs, n);
            cpu_per_round += rr.cpu / (2.0 * rounds);
            if (parallel) {
                par_cores[r] = rr.cpu / rr.seconds;
                par[r] = rr.seconds;
                if (rr.max_at_once > max_at_once)
                    max_at_once = rr.max_at_once;
            } else {
                seq_cores[r] = rr.cpu / rr.seconds;
                seq[r] = rr.seconds;
            }
            layer_bytes = rr.layer_bytes;
            fprintf(stderr, "round %d %s: %.2f s, %.2f CPU s (at most %u conversions at once)\n",
                    r + 1, parallel ? "concurrent" : "one after another", rr.seconds, rr.cpu,
                    rr.max_at_once);
        }
    }
    /* The disk's floor in the same run: the same bytes written as n files
     * of layer_bytes / n, each fsynced, one after another and at once. */
    double floor_seq = write_floor(dir, n, layer_bytes, false);
    double floor_par = write_floor(dir, n, layer_bytes, true);
    load_avg(after);
    qsort(seq, (size_t)rounds, sizeof *seq, cmp_double);
    qsort(par, (size_t)rounds, sizeof *par, cmp_double);
    qsort(seq_cores, (size_t)rounds, sizeof *seq_cores, cmp_double);
    qsort(par_cores, (size_t)rounds, sizeof *par_cores, cmp_double);
    double ms = seq[rounds / 2], mp = par[rounds / 2];
    printf("| %d Applies, %u MB tar each (%.0f MB gzip in all, %.0f MB of layer.vhd; %.2f CPU s "
           "per round) | median of %d | CPU cores the process got (median) |\n",
           n, mb, (double)blob_bytes / 1e6, (double)layer_bytes / 1e6, cpu_per_round, rounds);
    printf("|---|---|---|\n");
    printf("| one after another (one thread) | %.2f s | %.2f |\n", ms, seq_cores[rounds / 2]);
    printf("| all at once (%d threads; at most %u conversions seen at once) | %.2f s | %.2f |\n", n,
           max_at_once, mp, par_cores[rounds / 2]);
    printf("| **speedup** | **%.2fx** | %ld CPUs online, load average %.2f before, %.2f after |\n",
           ms / mp, sysconf(_SC_NPROCESSORS_ONLN), before[0], after[0]);
    printf("| reference: the same %.0f MB written as %d fsynced files, one after another / at "
           "once | %.2f / %.2f s | |\n",
           (double)layer_bytes / 1e6, n, floor_seq, floor_par);
    bench_remote(dir, blobs[0], 50);
    for (int i = 0; i < n; i++) {
        lcow_error err;
        lcow_os_remove(blobs[i], &err);
        free(blobs[i]);
    }
    free(blobs);
    free(seq);
    free(par);
    free(seq_cores);
    free(par_cores);
    if (made) {
        lcow_error err;
        lcow_os_remove_all(made, &err);
    }
    return 0;
}

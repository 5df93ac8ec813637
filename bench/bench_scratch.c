/* Scratch policy benchmark (native only).
 *
 *  1. create_own of a 20 GiB scratch: cold (template missing, so it is built
 *     first) and warm (template cached), median and p99, beside
 *     `cp --sparse=always` of the same template in the same run (cp is run
 *     as a process, as a shell would; it does not fsync, we do).
 *  2. Per size: formatting sandbox.vhdx directly vs sparse-copying the
 *     template: the numbers behind strategy_for() in core/scratch.c.
 *  3. The whole Prepare of a container snapshot through the snapshotter
 *     (reserve, directory, scratch disk, synced metadata batch), cold and
 *     warm, beside the same cp of the store's template.
 *
 * Environment: LCOW_BENCH_TMP (work directory, default ./bench-tmp),
 * LCOW_BENCH_RUNS (warm/cp runs, default 30; cold runs are a third),
 * LCOW_BENCH_SIZES (comma-separated GiB list for part 2, default 1,20,256,1024). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/base/errors.h"
#include "core/base/log.h"
#include "core/os/os.h"
#include "core/scratch.h"
#include "core/disk/scratchdisk.h"
#include "core/snapshotter.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double median, p99;
} stats;

static stats summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i99 = (int)((double)n * 0.99 + 0.999) - 1;
    if (i99 < 0)
        i99 = 0;
    if (i99 >= n)
        i99 = n - 1;
    stats s = {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[i99]};
    return s;
}

static void die(const char *what, const lcow_error *err)
{
    fprintf(stderr, "bench_scratch: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

static char *path2(const char *a, const char *b)
{
    char *p = lcow_path_join(a, b);
    if (!p)
        die("out of memory", NULL);
    return p;
}

static void reset_dir(const char *dir)
{
    lcow_error err;
    if (lcow_os_remove_all(dir, &err) || lcow_os_mkdir_all(dir, &err))
        die(dir, &err);
}

/* cp --sparse=always src dst, as a process; returns milliseconds. */
static double run_cp(const char *src, const char *dst)
{
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        execlp("cp", "cp", "--sparse=always", src, dst, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("cp --sparse=always", NULL);
    return now_ms() - t0;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && atoi(v) > 0 ? atoi(v) : def;
}

/* One "X vs cp" table: the cp row, then the warm and cold rows. */
static void print_vs_cp(const char *warm_label, stats w, int runs, const char *cold_label, stats c,
                        int cold_runs, stats r)
{
    printf("| operation | runs | median ms | p99 ms | vs cp median | vs cp p99 |\n");
    printf("|---|---|---|---|---|---|\n");
    printf(
        "| `cp --sparse=always` of the template (no fsync) | %d | %.2f | %.2f | 1.00x | 1.00x |\n",
        runs, r.median, r.p99);
    printf("| %s | %d | %.2f | %.2f | %.2fx | %.2fx |\n", warm_label, runs, w.median, w.p99,
           w.median / r.median, w.p99 / r.p99);
    printf("| %s | %d | %.2f | %.2f | %.2fx | %.2fx |\n", cold_label, cold_runs, c.median, c.p99,
           c.median / r.median, c.p99 / r.p99);
}

int main(void)
{
    lcow_log_set_level(LCOW_LOG_WARN);
    const char *tmp = getenv("LCOW_BENCH_TMP");
    char *work = path2(tmp && *tmp ? tmp : ".", "bench-scratch");
    reset_dir(work);
    char *root = path2(work, "root"), *snaps = path2(work, "snaps");
    reset_dir(root);
    reset_dir(snaps);
    int runs = env_int("LCOW_BENCH_RUNS", 30);
    int cold_runs = runs / 3 > 3 ? runs / 3 : 3;
    lcow_error err;
    lcow_scratch *sc;
    if (lcow_scratch_create(root, LCOW_SCRATCH_NATIVE, 0, NULL, 0, &sc, &err))
        die("open", &err);

    lcow_scratch_plan plan = {.mode = LCOW_META_SCRATCH_OWN, .size_gb = LCOW_SCRATCH_DEFAULT_GB};
    char *template_path = path2(root, "scratch.vhdx");
    double *cold = calloc((size_t)cold_runs, sizeof *cold);
    double *warm = calloc((size_t)runs, sizeof *warm);
    double *cp = calloc((size_t)runs, sizeof *cp);
    char *snap = path2(snaps, "s"), *disk = path2(snap, LCOW_SANDBOX_NAME);
    char *cp_dst = path2(snaps, "cp.vhdx");

    /* 1a. cold: no template, so build it and then copy it. */
    for (int i = 0; i < cold_runs; i++) {
        lcow_os_remove(template_path, NULL);
        reset_dir(snap);
        double t0 = now_ms();
        if (lcow_scratch_create_own(sc, &plan, snap, &err))
            die("create_own (cold)", &err);
        cold[i] = now_ms() - t0;
    }
    /* 1b. warm vs cp, interleaved so both see the same machine state. */
    for (int i = 0; i < runs; i++) {
        reset_dir(snap);
        double t0 = now_ms();
        if (lcow_scratch_create_own(sc, &plan, snap, &err))
            die("create_own (warm)", &err);
        warm[i] = now_ms() - t0;
        lcow_os_remove(cp_dst, NULL);
        cp[i] = run_cp(template_path, cp_dst);
    }
    lcow_stat st;
    lcow_os_stat(template_path, &st, NULL);
    int64_t alloc = 0, inodes = 0, tpl_alloc = 0;
    lcow_os_usage(snap, &alloc, &inodes, NULL);
    lcow_os_usage(template_path, &tpl_alloc, &inodes, NULL);
    stats c = summarize(cold, cold_runs), w = summarize(warm, runs), r = summarize(cp, runs);
    printf("### create_own, 20 GiB scratch (template %.1f MiB long, %.1f MiB allocated; the copy "
           "allocates %.1f MiB)\n\n",
           (double)st.size / 1048576.0, (double)tpl_alloc / 1048576.0, (double)alloc / 1048576.0);
    print_vs_cp("create_own warm (template cached; copy + fsync)", w, runs,
                "create_own cold (build template + copy)", c, cold_runs, r);
    printf("\n");

    /* 2. per size: format directly vs copy the template. */
    const char *sizes_env = getenv("LCOW_BENCH_SIZES");
    char sizes[256];
    snprintf(sizes, sizeof sizes, "%s", sizes_env && *sizes_env ? sizes_env : "1,20,256,1024");
    int size_runs = env_int("LCOW_BENCH_SIZE_RUNS", 5);
    double *fmt = calloc((size_t)size_runs, sizeof *fmt);
    double *copy = calloc((size_t)size_runs, sizeof *copy);
    printf("### sandbox.vhdx per size: format directly vs sparse copy of the template\n\n");
    printf("| size GiB | template allocated MiB | format median ms | copy median ms | faster |\n");
    printf("|---|---|---|---|---|\n");
    for (char *tok = strtok(sizes, ","); tok; tok = strtok(NULL, ",")) {
        unsigned gb = (unsigned)strtoul(tok, NULL, 10);
        if (gb == 0 || gb > LCOW_SCRATCH_MAX_GB)
            continue;
        lcow_scratch_disk_options opts = {.geometry.size_bytes = (uint64_t)gb << 30,
                                          .backend = LCOW_SCRATCH_NATIVE};
        char name[64];
        snprintf(name, sizeof name, "template_%u.vhdx", gb);
        char *tpl = path2(work, name);
        lcow_os_remove(tpl, NULL);
        if (lcow_scratch_disk_create(tpl, &opts, &err))
            die("format template", &err);
        for (int i = 0; i < size_runs; i++) {
            lcow_os_remove(disk, NULL);
            reset_dir(snap);
            double t0 = now_ms();
            if (lcow_scratch_disk_create(disk, &opts, &err))
                die("format", &err);
            fmt[i] = now_ms() - t0;
            lcow_os_remove(disk, NULL);
            t0 = now_ms();
            if (lcow_os_copy_sparse(tpl, disk, &err))
                die("copy", &err);
            copy[i] = now_ms() - t0;
        }
        int64_t tpl_alloc = 0, tpl_inodes = 0;
        lcow_os_usage(tpl, &tpl_alloc, &tpl_inodes, NULL);
        stats f = summarize(fmt, size_runs), k = summarize(copy, size_runs);
        printf("| %u | %.1f | %.2f | %.2f | %s (%.1fx) |\n", gb, (double)tpl_alloc / 1048576.0,
               f.median, k.median, f.median < k.median ? "format" : "copy",
               f.median < k.median ? k.median / f.median : f.median / k.median);
        lcow_os_remove(tpl, NULL);
        free(tpl);
    }
    /* 3. Prepare of a container snapshot, end to end (no RPC). */
    char *store = path2(work, "store");
    reset_dir(store);
    lcow_snapshotter_config cfg = {.root = store, .scratch_backend = LCOW_SCRATCH_NATIVE};
    lcow_snapshotter *snapshotter;
    if (lcow_snapshotter_open(&cfg, &snapshotter, &err))
        die("snapshotter open", &err);
    char *store_template = path2(store, "scratch.vhdx");
    for (int i = 0; i < cold_runs; i++) {
        char key[64];
        snprintf(key, sizeof key, "default/%d/cold-%d", i + 1, i);
        lcow_os_remove(store_template, NULL);
        lcow_mounts m = {0};
        double t0 = now_ms();
        if (lcow_snapshotter_prepare(snapshotter, key, NULL, NULL, &m, &err))
            die("prepare (cold)", &err);
        cold[i] = now_ms() - t0;
        lcow_mounts_free(&m);
    }
    for (int i = 0; i < runs; i++) {
        char key[64];
        snprintf(key, sizeof key, "default/%d/warm-%d", cold_runs + i + 1, i);
        lcow_mounts m = {0};
        double t0 = now_ms();
        if (lcow_snapshotter_prepare(snapshotter, key, NULL, NULL, &m, &err))
            die("prepare (warm)", &err);
        warm[i] = now_ms() - t0;
        lcow_mounts_free(&m);
        lcow_os_remove(cp_dst, NULL);
        cp[i] = run_cp(store_template, cp_dst);
    }
    lcow_snapshotter_close(snapshotter);
    lcow_snapshotter_free(snapshotter);
    c = summarize(cold, cold_runs), w = summarize(warm, runs), r = summarize(cp, runs);
    printf("\n### Prepare of a container snapshot (20 GiB scratch), through the snapshotter\n\n");
    print_vs_cp("Prepare warm (template cached)", w, runs, "Prepare cold (template built first)", c,
                cold_runs, r);
    free(store_template);
    free(store);

    printf("\nruns: %d warm/cp, %d cold, %d per size; work dir %s\n", runs, cold_runs, size_runs,
           work);
    lcow_scratch_destroy(sc);
    lcow_os_remove_all(work, NULL);
    free(fmt);
    free(copy);
    free(cold);
    free(warm);
    free(cp);
    free(snap);
    free(disk);
    free(cp_dst);
    free(template_path);
    free(root);
    free(snaps);
    free(work);
    return 0;
}

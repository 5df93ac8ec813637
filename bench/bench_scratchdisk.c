/* bench_scratchdisk [DIR] [RUNS] (DIR defaults to $LCOW_BENCH_TMP, then
 * ./bench-tmp): time and size of a formatted scratch VHDX
 * (20 GiB and 1 TiB, 1 MiB blocks), lcowsnap's in-process builder beside
 * the pipeline it replaces, in the same run:
 *   truncate + mkfs.ext4 -q -E lazy_itable_init=0,nodiscard
 *              -O ^has_journal,sparse_super2,^resize_inode  raw
 *   qemu-img convert -O vhdx -o subformat=dynamic,block_size=1M raw out
 *   sync out
 * Both timings include making the VHDX durable (fsync). Prints a markdown
 * table (median and min of RUNS, default 5) for docs/performance.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/disk/scratchdisk.h"

#define GiB (1ull << 30)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void sizes_of(const char *path, long long *apparent, long long *allocated)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(1);
    }
    *apparent = (long long)st.st_size;
    *allocated = (long long)st.st_blocks * 512;
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *find_tool(const char *name, const char *const *dirs)
{
    static char buf[4][256];
    static int next;
    for (int i = 0; dirs[i]; i++) {
        char *p = buf[next % 4];
        snprintf(p, sizeof buf[0], "%s/%s", dirs[i], name);
        if (access(p, X_OK) == 0) {
            next++;
            return p;
        }
    }
    return NULL;
}

typedef struct result {
    double median, min;
    long long apparent, allocated;
} result;

static result summarize(double *t, int runs, long long apparent, long long allocated)
{
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    result r = {t[runs / 2], t[0], apparent, allocated};
    return r;
}

int main(int argc, char **argv)
{
    const char *env_dir = getenv("LCOW_BENCH_TMP");
    const char *dir = argc > 1 ? argv[1] : env_dir && *env_dir ? env_dir : "bench-tmp";
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (runs < 1 || runs > 100)
        runs = 5;
    const char *const bins[] = {"/usr/bin", "/usr/sbin", "/sbin", "/bin", NULL};
    const char *mkfs = find_tool("mkfs.ext4", bins), *qemu = find_tool("qemu-img", bins);
    if (!mkfs || !qemu) {
        fprintf(stderr, "bench_scratchdisk: needs mkfs.ext4 and qemu-img\n");
        return 1;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
    if (run(cmd))
        return 1;
    const uint64_t sizes[] = {20 * GiB, 1024 * GiB};
    printf("| virtual size | method | time median (min), ms | apparent size | allocated |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t s = 0; s < 2; s++) {
        char ours[1024], raw[1024], theirs[1024];
        snprintf(ours, sizeof ours, "%s/ours.vhdx", dir);
        snprintf(raw, sizeof raw, "%s/mkfs.raw", dir);
        snprintf(theirs, sizeof theirs, "%s/qemu.vhdx", dir);
        double *t_ours = calloc((size_t)runs, sizeof(double));
        double *t_theirs = calloc((size_t)runs, sizeof(double));
        long long ap_o = 0, al_o = 0, ap_t = 0, al_t = 0;
        for (int i = 0; i < runs; i++) {
            unlink(ours);
            lcow_scratch_disk_options o = {.geometry.size_bytes = sizes[s],
                                           .backend = LCOW_SCRATCH_NATIVE};
            lcow_error err;
            double t0 = now_ms();
            if (lcow_scratch_disk_create(ours, &o, &err)) {
                fprintf(stderr, "create: %s\n", err.message);
                return 1;
            }
            t_ours[i] = now_ms() - t0;
            sizes_of(ours, &ap_o, &al_o);

            unlink(raw);
            unlink(theirs);
            snprintf(cmd, sizeof cmd,
                     "truncate -s %llu '%s' && '%s' -F -q -E lazy_itable_init=0,nodiscard "
                     "-O ^has_journal,sparse_super2,^resize_inode '%s' && "
                     "'%s' convert -f raw -O vhdx -o subformat=dynamic,block_size=1M '%s' '%s' "
                     "&& sync '%s'",
                     (unsigned long long)sizes[s], raw, mkfs, raw, qemu, raw, theirs, theirs);
            t0 = now_ms();
            if (run(cmd)) {
                fprintf(stderr, "pipeline failed: %s\n", cmd);
                return 1;
            }
            t_theirs[i] = now_ms() - t0;
            sizes_of(theirs, &ap_t, &al_t);
        }
        result a = summarize(t_ours, runs, ap_o, al_o);
        result b = summarize(t_theirs, runs, ap_t, al_t);
        const char *label = s == 0 ? "20 GiB" : "1 TiB";
        printf("| %s | lcowsnap in-process (VHDX + ext4, fsync) | %.1f (%.1f) | %lld | %lld |\n",
               label, a.median, a.min, a.apparent, a.allocated);
        printf("| %s | mkfs.ext4 + qemu-img convert + sync | %.1f (%.1f) | %lld | %lld |\n", label,
               b.median, b.min, b.apparent, b.allocated);
        printf("| %s | speed-up (median) | %.1fx | %.2fx of qemu's | |\n", label,
               b.median / a.median, (double)a.apparent / (double)b.apparent);
        fflush(stdout);
        unlink(ours);
        unlink(raw);
        unlink(theirs);
        free(t_ours);
        free(t_theirs);
    }
    return 0;
}

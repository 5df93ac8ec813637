/* bench_compact (issue 18; numbers in docs/performance.md):
 *
 *   bench_compact compact DIR [SIZE_GB [FILES [FILE_MB [DELETED [RUNS]]]]]
 *     (defaults 20 5 1024 4 3: a 20 GiB scratch holding 5 GiB of files of
 *     which 4 GiB were deleted). The disk: lcowsnap's own scratch disk
 *     (lcow_scratch_disk_create), converted to raw with qemu-img, FILES
 *     files of FILE_MB random MiB written with debugfs, DELETED of them
 *     removed, converted back with qemu-img convert -O vhdx -o
 *     subformat=dynamic,block_size=1M. Then, on a fresh copy per run:
 *       - lcowsnap's Compact (lcow_compact_vhdx, every step fsynced);
 *       - qemu-img convert -O vhdx -o subformat=dynamic,block_size=1M of the
 *         same disk to a new file + fsync (the usual way to shrink one).
 *     Prints a markdown table: median and min time, file bytes after.
 *
 *   bench_compact usage DIR [ACTIVES [RUNS]]  (defaults 1000 3)
 *     A store with ACTIVES active snapshots, each with a 1 GiB sandbox.vhdx
 *     (Prepare through the snapshotter); times lcow_snapshotter_usage of
 *     every key (directory walk + the ext4 view), per call. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/disk/compact.h"
#include "core/disk/ext4_view.h"
#include "core/disk/scratchdisk.h"
#include "core/snapshotter.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
    return 0;
}

static long long file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        exit(1);
    }
    return (long long)st.st_size;
}

static void fsync_path(const char *path)
{
    lcow_file *f;
    lcow_error err;
    if (lcow_file_open(path, LCOW_OPEN_READ | LCOW_OPEN_WRITE, &f, &err) != LCOW_OK ||
        lcow_file_sync(f, &err) != LCOW_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
    lcow_file_close(f);
}

static int bench_compact(const char *dir, unsigned size_gb, unsigned files, unsigned file_mb,
                         unsigned deleted, unsigned runs)
{
    char base[1024], raw[1100], filled[1100], work[1100], out[1100], data[1100];
    snprintf(base, sizeof base, "%s/base.vhdx", dir);
    snprintf(raw, sizeof raw, "%s/work.raw", dir);
    snprintf(filled, sizeof filled, "%s/filled.vhdx", dir);
    snprintf(work, sizeof work, "%s/compact.vhdx", dir);
    snprintf(out, sizeof out, "%s/converted.vhdx", dir);
    snprintf(data, sizeof data, "%s/data.bin", dir);
    run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    double t = now_ms();
    lcow_scratch_disk_options o = {.geometry = {.size_bytes = (uint64_t)size_gb * GiB}};
    lcow_error err;
    if (lcow_scratch_disk_create(base, &o, &err) != LCOW_OK) {
        fprintf(stderr, "scratch disk: %s\n", err.message);
        return 1;
    }
    run("qemu-img convert -f vhdx -O raw '%s' '%s'", base, raw);
    run("head -c %llu /dev/urandom > '%s'", (unsigned long long)file_mb * MiB, data);
    for (unsigned i = 0; i < files; i++)
        run("debugfs -w -R 'write %s f%u' '%s' >/dev/null 2>&1", data, i, raw);
    for (unsigned i = 0; i < deleted; i++)
        run("debugfs -w -R 'rm f%u' '%s' >/dev/null 2>&1", i, raw);
    run("qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=1048576 '%s' '%s'", raw,
        filled);
    run("rm -f '%s' '%s'", raw, data);
    fprintf(stderr,
            "prepared %s in %.0f s: %u GiB disk, %u x %u MiB written, %u deleted, "
            "%lld bytes\n",
            filled, (now_ms() - t) / 1e3, size_gb, files, file_mb, deleted, file_size(filled));

    double *tc = calloc(runs, sizeof *tc), *tq = calloc(runs, sizeof *tq);
    lcow_compact_report rep = {0};
    for (unsigned r = 0; r < runs; r++) {
        run("cp '%s' '%s' && sync", filled, work);
        lcow_file *f;
        if (lcow_file_open(work, LCOW_OPEN_READ | LCOW_OPEN_WRITE, &f, &err) != LCOW_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        lcow_vhdx_io io = lcow_vhdx_io_file(f);
        t = now_ms();
        if (lcow_compact_vhdx(&io, &rep, NULL, NULL, &err) != LCOW_OK) {
            fprintf(stderr, "compact: %s\n", err.message);
            return 1;
        }
        tc[r] = now_ms() - t;
        lcow_file_close(f);
        run("rm -f '%s' && sync", out);
        t = now_ms();
        run("qemu-img convert -f vhdx -O vhdx -o subformat=dynamic,block_size=1048576 '%s' '%s'",
            filled, out);
        fsync_path(out);
        tq[r] = now_ms() - t;
        fprintf(stderr, "run %u: compact %.0f ms, qemu-img convert %.0f ms\n", r + 1, tc[r], tq[r]);
    }
    long long conv = file_size(out);
    qsort(tc, runs, sizeof *tc, cmp_double);
    qsort(tq, runs, sizeof *tq, cmp_double);
    double deleted_bytes = (double)deleted * file_mb * MiB;
    printf("Compact of a %u GiB scratch, %u MiB written, %u MiB deleted (1 MiB blocks), "
           "%u runs:\n\n",
           size_gb, files * file_mb, deleted * file_mb, runs);
    printf("| method | median ms | min ms | file before | file after | given back |\n");
    printf("|---|---|---|---|---|---|\n");
    printf("| lcowsnap Compact (fsynced) | %.0f | %.0f | %.1f MiB | %.1f MiB | %.1f MiB (%.0f%% "
           "of the deleted) |\n",
           tc[runs / 2], tc[0], rep.bytes_before / (double)MiB, rep.bytes_after / (double)MiB,
           (rep.bytes_before - rep.bytes_after) / (double)MiB,
           100.0 * (double)(rep.bytes_before - rep.bytes_after) / deleted_bytes);
    printf("| qemu-img convert to a new dynamic VHDX + fsync | %.0f | %.0f | %.1f MiB | %.1f MiB "
           "| %.1f MiB |\n",
           tq[runs / 2], tq[0], rep.bytes_before / (double)MiB, conv / (double)MiB,
           (rep.bytes_before - conv) / (double)MiB);
    printf("\nCompact freed %" PRIu64 " blocks and moved %" PRIu64 ".\n", rep.blocks_freed,
           rep.blocks_moved);
    free(tc);
    free(tq);
    run("rm -rf '%s'", dir);
    return 0;
}

static int bench_usage(const char *dir, unsigned actives, unsigned runs)
{
    run("rm -rf '%s' && mkdir -p '%s'", dir, dir);
    lcow_snapshotter_config c = {.root = dir};
    lcow_snapshotter *s;
    lcow_error err;
    if (lcow_snapshotter_open(&c, &s, &err) != LCOW_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    lcow_labels l = {0};
    lcow_labels_set(&l, "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb",
                    "1");
    double t = now_ms();
    char key[64];
    char **dirs = calloc(actives, sizeof *dirs);
    for (unsigned i = 0; i < actives; i++) {
        snprintf(key, sizeof key, "default/%u/c%u", i + 1, i);
        lcow_mounts m = {0};
        if (lcow_snapshotter_prepare(s, key, "", &l, &m, &err) != LCOW_OK) {
            fprintf(stderr, "prepare: %s\n", err.message);
            return 1;
        }
        dirs[i] = strdup(m.items[0].source);
        lcow_mounts_free(&m);
    }
    lcow_labels_free(&l);
    fprintf(stderr, "%u actives with a 1 GiB sandbox.vhdx prepared in %.0f s\n", actives,
            (now_ms() - t) / 1e3);
    double *per = calloc(runs, sizeof *per), *cpu = calloc(runs, sizeof *cpu);
    double worst = 0;
    uint64_t inodes = 0;
    for (unsigned r = 0; r < runs; r++) {
        t = now_ms();
        double c0 = cpu_ms();
        for (unsigned i = 0; i < actives; i++) {
            snprintf(key, sizeof key, "default/%u/c%u", i + 1, i);
            lcow_usage u;
            double t1 = now_ms();
            if (lcow_snapshotter_usage(s, key, &u, &err) != LCOW_OK) {
                fprintf(stderr, "usage: %s\n", err.message);
                return 1;
            }
            double d = now_ms() - t1;
            if (d > worst)
                worst = d;
            inodes += u.ext4_used_inodes;
        }
        per[r] = (now_ms() - t) / actives;
        cpu[r] = (cpu_ms() - c0) / actives;
    }
    qsort(per, runs, sizeof *per, cmp_double);
    qsort(cpu, runs, sizeof *cpu, cmp_double);
    /* The parts: the directory walk containerd's size needs, and the ext4
     * view alone (open, VHDX headers and metadata, superblock, GDT). */
    double walk = 0, view = 0;
    for (unsigned r = 0; r < runs; r++) {
        double tw = now_ms();
        for (unsigned i = 0; i < actives; i++) {
            int64_t b, n;
            if (lcow_os_usage(dirs[i], &b, &n, &err) != LCOW_OK)
                return 1;
        }
        double w = (now_ms() - tw) / actives;
        double tv = now_ms();
        for (unsigned i = 0; i < actives; i++) {
            char path[1200];
            snprintf(path, sizeof path, "%s/sandbox.vhdx", dirs[i]);
            lcow_file *f;
            lcow_vhdx_reader *rd;
            lcow_ext4_view_usage u;
            if (lcow_file_open(path, LCOW_OPEN_READ, &f, &err) != LCOW_OK)
                return 1;
            lcow_vhdx_io io = lcow_vhdx_io_file(f);
            if (lcow_vhdx_reader_open(&io, &rd, &err) != LCOW_OK ||
                lcow_ext4_view_usage_of(rd, &u, &err) != LCOW_OK)
                return 1;
            lcow_vhdx_reader_free(rd);
            lcow_file_close(f);
        }
        double v = (now_ms() - tv) / actives;
        if (!r || w < walk)
            walk = w;
        if (!r || v < view)
            view = v;
    }
    for (unsigned i = 0; i < actives; i++)
        free(dirs[i]);
    free(dirs);
    if (inodes != (uint64_t)actives * runs * 11) {
        fprintf(stderr, "the ext4 view is missing (%" PRIu64 " inodes in all)\n", inodes);
        return 1;
    }
    printf("| Usage with the ext4 view, %u actives (1 GiB sandbox.vhdx each) | %.3f ms median "
           "per call | %.3f ms best pass | %.3f ms CPU per call | %.2f ms slowest call | of "
           "which: directory walk %.3f ms, ext4 view %.3f ms (best passes) |\n",
           actives, per[runs / 2], per[0], cpu[runs / 2], worst, walk, view);
    free(cpu);
    free(per);
    lcow_snapshotter_free(s);
    run("rm -rf '%s'", dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "compact") == 0) {
        unsigned v[5] = {20, 5, 1024, 4, 3};
        for (int i = 0; i < 5 && i + 3 < argc; i++)
            v[i] = (unsigned)strtoul(argv[i + 3], NULL, 10);
        if (!v[0] || !v[1] || !v[2] || v[3] > v[1] || !v[4] ||
            (uint64_t)v[1] * v[2] * MiB >= (uint64_t)v[0] * GiB * 9 / 10) {
            fprintf(stderr, "bad sizes\n");
            return 2;
        }
        return bench_compact(argv[2], v[0], v[1], v[2], v[3], v[4]);
    }
    if (argc >= 3 && strcmp(argv[1], "usage") == 0) {
        unsigned actives = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 1000;
        unsigned runs = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10) : 3;
        return actives && runs ? bench_usage(argv[2], actives, runs) : 2;
    }
    fprintf(stderr,
            "usage: %s compact DIR [SIZE_GB [FILES [FILE_MB [DELETED [RUNS]]]]]\n"
            "       %s usage DIR [ACTIVES [RUNS]]\n",
            argv[0], argv[0]);
    return 2;
}

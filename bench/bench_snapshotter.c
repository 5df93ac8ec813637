/* Snapshot metadata benchmark (native only).
 *
 * For each store size N (default 1000,10000,100000,1000000):
 *   - populate N snapshot records through the metastore with unsynced
 *     batches (the bulk path), and a raw LevelDB with N values of the same
 *     size under the same key shape;
 *   - measure, through the real snapshotter path (synced batches):
 *     open time, prepare+commit, stat of a random key, walk of everything;
 *   - beside each, the raw LevelDB reference in the same run: open, a synced
 *     put batch of the same shape as the snapshotter's batch, get of a random
 *     key, full scan.
 *
 * Usage: bench_snapshotter [--sizes 1000,10000] [--ops 200] [--dir DIR]
 * Prints a Markdown table (the one in docs/performance.md). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <leveldb/c.h>

#include "core/base/log.h"
#include "core/metastore.h"
#include "core/os/os.h"
#include "core/snapshotter.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what, const lcow_error *err)
{
    fprintf(stderr, "bench_snapshotter: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define BASE "bench/base"

/* N records: one committed base and N-1 views on it (views: no directory,
 * so the file system does not distort metadata numbers). */
static void populate(const char *root, size_t n)
{
    char *meta = lcow_path_join(root, "meta");
    lcow_metastore_options o = {.no_sync = true, .id_reserve = 1u << 20};
    lcow_metastore *ms;
    lcow_error err;
    if (lcow_metastore_open(meta, &o, &ms, &err) != LCOW_OK)
        die("populate open", &err);
    lcow_labels labels = {0};
    lcow_labels_set(&labels, "containerd.io/snapshot.ref", "sha256:0123456789abcdef");
    uint64_t id;
    lcow_metastore_next_id(ms, &id, NULL);
    lcow_meta_create c = {.key = "bench/base-prep", .kind = LCOW_KIND_ACTIVE, .id = id};
    if (lcow_metastore_insert(ms, &c, NULL, &err) != LCOW_OK ||
        lcow_metastore_commit(ms, BASE, "bench/base-prep", &labels, NULL, NULL, &err) != LCOW_OK)
        die("populate base", &err);
    char *snaps = lcow_path_join(root, "snapshots");
    lcow_os_mkdir_all(snaps, &err);
    char idname[24];
    snprintf(idname, sizeof idname, "%" PRIu64, id);
    char *base_dir = lcow_path_join(snaps, idname);
    lcow_os_mkdir_all(base_dir, &err);
    free(base_dir);
    free(snaps);
    char key[64];
    for (size_t i = 1; i < n; i++) {
        snprintf(key, sizeof key, "default/%zu/pop-%08zu", i, i);
        lcow_metastore_next_id(ms, &id, NULL);
        lcow_meta_create v = {
            .key = key, .parent = BASE, .kind = LCOW_KIND_VIEW, .labels = &labels, .id = id};
        if (lcow_metastore_insert(ms, &v, NULL, &err) != LCOW_OK)
            die("populate", &err);
    }
    lcow_labels_free(&labels);
    /* Settle the bulk load: measured reads must not race its compaction. */
    lcow_metastore_compact(ms);
    lcow_metastore_close(ms);
    free(meta);
}

/* The raw reference: N values of a snapshot record's size, in a LevelDB
 * configured as core/metastore.c configures the store (block cache, write
 * buffer, bloom filter), so the ratios are the snapshotter's own cost. */
static leveldb_t *raw_open(const char *path, double *open_us)
{
    static leveldb_cache_t *cache;
    static leveldb_filterpolicy_t *bloom;
    if (!cache) {
        cache = leveldb_cache_create_lru(LCOW_METASTORE_CACHE_BYTES);
        bloom = leveldb_filterpolicy_create_bloom(10);
    }
    leveldb_options_t *o = leveldb_options_create();
    leveldb_options_set_create_if_missing(o, 1);
    leveldb_options_set_cache(o, cache);
    leveldb_options_set_filter_policy(o, bloom);
    leveldb_options_set_write_buffer_size(o, LCOW_METASTORE_WRITE_BUFFER_BYTES);
    char *e = NULL;
    double t0 = now_us();
    leveldb_t *db = leveldb_open(o, path, &e);
    *open_us = now_us() - t0;
    leveldb_options_destroy(o);
    if (e) {
        fprintf(stderr, "raw open: %s\n", e);
        exit(1);
    }
    return db;
}

static const char raw_value[140] = "record-of-about-the-same-size-as-a-view-with-one-label";

/* LCOW_BENCH_RAW_INDEXES=1 (diagnostic): the raw store also gets three
 * index-sized entries per record, as the snapshotter's has (id map, child
 * index, client-key index), to see how much of the walk gap is layout. */
static void raw_populate(leveldb_t *db, size_t n)
{
    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writebatch_t *b = leveldb_writebatch_create();
    const char *with_indexes = getenv("LCOW_BENCH_RAW_INDEXES");
    bool indexes = with_indexes && *with_indexes == '1';
    char key[64], ik[64];
    char *e = NULL;
    for (size_t i = 0; i < n; i++) {
        int kl = snprintf(key, sizeof key, "s/default/%zu/pop-%08zu", i, i);
        leveldb_writebatch_put(b, key, (size_t)kl, raw_value, sizeof raw_value);
        if (indexes) {
            int il = snprintf(ik, sizeof ik, "i/%08zu", i);
            leveldb_writebatch_put(b, ik, (size_t)il, key + 2, (size_t)kl - 2);
            il = snprintf(ik, sizeof ik, "c/0000001%08zu", i);
            leveldb_writebatch_put(b, ik, (size_t)il, key + 2, (size_t)kl - 2);
            il = snprintf(ik, sizeof ik, "k/default%c%zu/pop-%08zu", 0, i, i);
            leveldb_writebatch_put(b, ik, (size_t)il, "", 0);
        }
        if (i % 1000 == 999 || i + 1 == n) {
            leveldb_write(db, wo, b, &e);
            leveldb_writebatch_clear(b);
        }
    }
    leveldb_writebatch_destroy(b);
    leveldb_writeoptions_destroy(wo);
}

typedef struct row {
    size_t n;
    double open_us, raw_open_us;
    double pc_us, raw_put_us;
    double stat_us, raw_get_us;
    double walk_ms, raw_scan_ms;
} row;

static int count_info(void *ctx, const lcow_info *info)
{
    (void)info;
    (*(size_t *)ctx)++;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define ROUNDS 5

/* Both stores are open at once and the measurements alternate round by
 * round, so background noise (other builds on the machine, fsync jitter)
 * hits the snapshotter and its reference alike; each figure is the median
 * of the rounds. */
static row run(const char *dir, size_t n, int ops)
{
    row r = {.n = n};
    lcow_error err;
    char name[32];
    snprintf(name, sizeof name, "n%zu", n);
    char *root = lcow_path_join(dir, name);
    lcow_os_remove_all(root, &err);
    lcow_os_mkdir_all(root, &err);
    populate(root, n);
    char *raw_path = lcow_path_join(root, "raw");
    double ignored;
    leveldb_t *db = raw_open(raw_path, &ignored);
    raw_populate(db, n);
    leveldb_compact_range(db, NULL, 0, NULL, 0);
    leveldb_close(db);

    double open_s[ROUNDS], open_r[ROUNDS];
    lcow_snapshotter_config cfg = {.root = root, .no_scratch = true};
    lcow_snapshotter *s = NULL;
    for (int i = 0; i < ROUNDS; i++) {
        double t0 = now_us();
        if (lcow_snapshotter_open(&cfg, &s, &err) != LCOW_OK)
            die("open", &err);
        open_s[i] = now_us() - t0;
        db = raw_open(raw_path, &open_r[i]);
        if (i + 1 < ROUNDS) {
            lcow_snapshotter_free(s);
            leveldb_close(db);
        }
    }
    r.open_us = median(open_s, ROUNDS);
    r.raw_open_us = median(open_r, ROUNDS);

    leveldb_writeoptions_t *sync = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(sync, 1);
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    char *e = NULL;
    char key[64], cname[64];
    int per_round = ops / ROUNDS > 0 ? ops / ROUNDS : 1;
    int stat_ops = per_round * 200;
    double pc[ROUNDS], put[ROUNDS], st[ROUNDS], get[ROUNDS], walk[ROUNDS], scan[ROUNDS];
    int made = 0;
    for (int round = 0; round < ROUNDS; round++) {
        /* prepare+commit: a layer on the base, each two synced batches */
        double t0 = now_us();
        for (int i = 0; i < per_round; i++, made++) {
            snprintf(key, sizeof key, "default/9%d/extract-%d", made, made);
            snprintf(cname, sizeof cname, "default/9%d/layer-%d", made, made);
            lcow_mounts m;
            if (lcow_snapshotter_prepare(s, key, BASE, NULL, &m, &err) != LCOW_OK)
                die("prepare", &err);
            lcow_mounts_free(&m);
            if (lcow_snapshotter_commit(s, cname, key, NULL, NULL, &err) != LCOW_OK)
                die("commit", &err);
        }
        pc[round] = (now_us() - t0) / per_round;

        /* raw: one synced batch shaped like a Prepare's (record, id map,
         * child and client-key index) */
        t0 = now_us();
        for (int i = 0; i < per_round; i++) {
            leveldb_writebatch_t *b = leveldb_writebatch_create();
            int kl =
                snprintf(key, sizeof key, "s/default/9%d/extract-%d", round * per_round + i, i);
            leveldb_writebatch_put(b, key, (size_t)kl, raw_value, 90);
            leveldb_writebatch_put(b, "i/01234567", 10, key + 2, (size_t)kl - 2);
            leveldb_writebatch_put(b, "c/0123456789abcdef", 18, key + 2, (size_t)kl - 2);
            leveldb_writebatch_put(b, key, (size_t)kl, "", 0);
            leveldb_write(db, sync, b, &e);
            leveldb_writebatch_destroy(b);
        }
        put[round] = (now_us() - t0) / per_round;

        t0 = now_us();
        for (int i = 0; i < stat_ops; i++) {
            size_t k = 1 + (size_t)(next_rand() % (n > 1 ? n - 1 : 1));
            snprintf(key, sizeof key, "default/%zu/pop-%08zu", k, k);
            lcow_info info;
            if (n > 1 && lcow_snapshotter_stat(s, key, &info, &err) != LCOW_OK)
                die("stat", &err);
            lcow_info_free(&info);
        }
        st[round] = (now_us() - t0) / stat_ops;

        t0 = now_us();
        for (int i = 0; i < stat_ops; i++) {
            size_t k = (size_t)(next_rand() % n);
            int kl = snprintf(key, sizeof key, "s/default/%zu/pop-%08zu", k, k);
            size_t vl;
            char *v = leveldb_get(db, ro, key, (size_t)kl, &vl, &e);
            leveldb_free(v);
        }
        get[round] = (now_us() - t0) / stat_ops;

        size_t seen = 0;
        t0 = now_us();
        if (lcow_snapshotter_walk(s, NULL, count_info, &seen, NULL, &err) != LCOW_OK)
            die("walk", &err);
        walk[round] = (now_us() - t0) / 1e3;
        if (seen != n + (size_t)made)
            fprintf(stderr, "walk saw %zu, expected %zu\n", seen, n + (size_t)made);

        t0 = now_us();
        leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
        for (leveldb_iter_seek(it, "s/", 2); leveldb_iter_valid(it); leveldb_iter_next(it)) {
            size_t kl, vl;
            const char *k = leveldb_iter_key(it, &kl);
            if (kl < 2 || k[0] != 's')
                break;
            (void)leveldb_iter_value(it, &vl);
        }
        leveldb_iter_destroy(it);
        scan[round] = (now_us() - t0) / 1e3;
    }
    r.pc_us = median(pc, ROUNDS);
    r.raw_put_us = median(put, ROUNDS);
    r.stat_us = median(st, ROUNDS);
    r.raw_get_us = median(get, ROUNDS);
    r.walk_ms = median(walk, ROUNDS);
    r.raw_scan_ms = median(scan, ROUNDS);

    lcow_snapshotter_free(s);
    leveldb_readoptions_destroy(ro);
    leveldb_writeoptions_destroy(sync);
    leveldb_close(db);
    free(raw_path);
    lcow_os_remove_all(root, &err);
    free(root);
    return r;
}

int main(int argc, char **argv)
{
    const char *sizes = "1000,10000,100000,1000000";
    const char *dir = getenv("LCOW_BENCH_TMP") ? getenv("LCOW_BENCH_TMP") : "./bench-tmp";
    int ops = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc)
            sizes = argv[++i];
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
            ops = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--sizes N,N...] [--ops N] [--dir DIR]\n", argv[0]);
            return 2;
        }
    }
    if (ops < 1)
        ops = 1;
    lcow_log_set_level(LCOW_LOG_WARN);
    char *abs_dir = NULL;
    lcow_error err;
    lcow_os_mkdir_all(dir, &err);
    if (lcow_os_realpath(dir, &abs_dir, &err) != LCOW_OK)
        die("bench dir", &err);

    printf("| snapshots | open ms (raw) | prepare+commit us (raw synced batch) | ratio vs 2 "
           "batches | stat us (raw get) | ratio | walk-all ms (raw scan) | ratio |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fflush(stdout);
    const char *p = sizes;
    while (*p) {
        size_t n = strtoull(p, NULL, 10);
        if (n > 0) {
            row r = run(abs_dir, n, ops);
            printf("| %zu | %.1f (%.1f) | %.0f (%.0f) | %.2f | %.2f (%.2f) | %.2f | %.1f (%.1f) | "
                   "%.2f |\n",
                   r.n, r.open_us / 1e3, r.raw_open_us / 1e3, r.pc_us, r.raw_put_us,
                   r.pc_us / (2 * r.raw_put_us), r.stat_us, r.raw_get_us, r.stat_us / r.raw_get_us,
                   r.walk_ms, r.raw_scan_ms, r.walk_ms / r.raw_scan_ms);
            fflush(stdout);
        }
        p = strchr(p, ',');
        if (!p)
            break;
        p++;
    }
    free(abs_dir);
    return 0;
}

/* Layer store benchmark (native only; docs/performance.md, "Layer store"):
 * what importing a second image costs when it shares layers with one
 * already imported. Through the snapshotter in process, as containerd's
 * unpacker drives it for each layer: Prepare the extract key on the parent,
 * Apply the blob by digest, Commit. Synced metadata and fsync as in the
 * service.
 *
 *   image A: the shared layers (1, 16, 64 and 256 MiB of random bytes, as
 *            uncompressed tars) imported: each converted into the store
 *   image B: in another namespace, the same shared layers (each only linked:
 *            its blob digest is known) and one new 16 MiB layer (converted)
 *
 * Per shared layer of image B: the Apply alone (blob index lookup, hard
 * link, directory sync, labels) and the whole Prepare + Apply + Commit;
 * beside it the conversion of the new layer. The goal is a constant cost
 * per shared layer, independent of its size, under 5 ms. Median of ROUNDS
 * rounds (default 5; each round imports B into a fresh namespace).
 *
 *   bench_layer_store [DIR] [ROUNDS]      DIR default ./bench-tmp/layer-store */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/disk/sha256.h"
#include "core/layer/store.h"
#include "core/os/os.h"
#include "core/snapshotter.h"
#include "support/layerblob.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_layer_store: %s: %s\n", what, detail ? detail : strerror(errno));
    exit(1);
}

/* A tar of one file of `bytes` random bytes; its digest (= diffID). One
 * random stream across all the blobs of a run. */
static void make_blob(const char *path, size_t bytes, char *digest)
{
    static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
    if (lb_write_random_tar(path, bytes, &rng_state, digest) != 0)
        die(path, NULL);
}

typedef struct blob {
    char path[1100];
    char digest[LCOW_SHA256_DIGEST_STRING_SIZE];
    size_t bytes;
} blob;

/* One layer as the unpacker imports it; times the Apply and the whole. */
static void import_layer(lcow_snapshotter *s, const char *ns, int i, const blob *b,
                         const char *parent, char *name, size_t name_len, double *apply_ms,
                         double *total_ms)
{
    char key[128];
    snprintf(key, sizeof key, "%s/1/extract-%d", ns, i);
    snprintf(name, name_len, "%s/1/layer-%d", ns, i);
    lcow_error err;
    lcow_mounts m;
    double t0 = now_ms();
    if (lcow_snapshotter_prepare(s, key, parent, NULL, &m, &err) != LCOW_OK)
        die("prepare", err.message);
    lcow_mounts_free(&m);
    lcow_apply_request req = {.key = key, .path = b->path, .digest = b->digest};
    double t1 = now_ms();
    if (lcow_snapshotter_apply(s, &req, NULL, &err) != LCOW_OK)
        die("apply", err.message);
    double t2 = now_ms();
    if (lcow_snapshotter_commit(s, name, key, NULL, NULL, &err) != LCOW_OK)
        die("commit", err.message);
    *apply_ms = t2 - t1;
    *total_ms = now_ms() - t0;
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

#define NSHARED 4
#define MAX_ROUNDS 50

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "bench-tmp/layer-store";
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > MAX_ROUNDS)
        die("rounds", "1 to 50");
    lcow_error err;
    char *abs = NULL;
    if (lcow_os_mkdir_all(dir, &err) != LCOW_OK || lcow_os_realpath(dir, &abs, &err) != LCOW_OK)
        die(dir, err.message);
    char root[1100], blobs[1100];
    snprintf(root, sizeof root, "%s/root", abs);
    snprintf(blobs, sizeof blobs, "%s/blobs", abs);
    lcow_os_remove_all(root, NULL);
    lcow_os_mkdir_all(blobs, NULL);

    static const size_t sizes[NSHARED] = {1u << 20, 16u << 20, 64u << 20, 256u << 20};
    blob shared[NSHARED], fresh[MAX_ROUNDS];
    for (int i = 0; i < NSHARED; i++) {
        snprintf(shared[i].path, sizeof shared[i].path, "%s/shared-%d.tar", blobs, i);
        shared[i].bytes = sizes[i];
        make_blob(shared[i].path, sizes[i], shared[i].digest);
    }
    for (int r = 0; r < rounds; r++) {
        snprintf(fresh[r].path, sizeof fresh[r].path, "%s/new-%d.tar", blobs, r);
        fresh[r].bytes = 16u << 20;
        make_blob(fresh[r].path, fresh[r].bytes, fresh[r].digest);
    }

    lcow_snapshotter_config cfg = {.root = root, .no_scratch = true};
    lcow_snapshotter *s;
    if (lcow_snapshotter_open(&cfg, &s, &err) != LCOW_OK)
        die("open", err.message);

    /* Image A: every shared layer converted. */
    double convert_ms[NSHARED];
    char parent[128] = "";
    for (int i = 0; i < NSHARED; i++) {
        char name[128];
        double a, t;
        import_layer(s, "a", i, &shared[i], *parent ? parent : NULL, name, sizeof name, &a, &t);
        convert_ms[i] = t;
        snprintf(parent, sizeof parent, "%s", name);
    }

    /* Image B, ROUNDS times in fresh namespaces. */
    static double link_apply[NSHARED][MAX_ROUNDS], link_total[NSHARED][MAX_ROUNDS];
    double new_total[MAX_ROUNDS], image_total[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        char ns[16];
        snprintf(ns, sizeof ns, "b%d", r);
        parent[0] = '\0';
        double t0 = now_ms();
        for (int i = 0; i < NSHARED; i++) {
            char name[128];
            import_layer(s, ns, i, &shared[i], *parent ? parent : NULL, name, sizeof name,
                         &link_apply[i][r], &link_total[i][r]);
            snprintf(parent, sizeof parent, "%s", name);
        }
        char name[128];
        double a;
        import_layer(s, ns, NSHARED, &fresh[r], parent, name, sizeof name, &a, &new_total[r]);
        image_total[r] = now_ms() - t0;
    }
    lcow_layer_store_stats st;
    lcow_layer_store_stats_get(lcow_snapshotter_layer_store(s), &st);
    if (st.conversions != (uint64_t)(NSHARED + rounds))
        die("conversions", "a shared layer was converted again");

    printf("layer store: image B = %d shared layers (linked) + 1 new 16 MiB layer (converted); "
           "median of %d rounds\n",
           NSHARED, rounds);
    printf("%-22s %14s %18s %18s\n", "layer", "convert (A)", "Apply, link (B)",
           "Prepare+Apply+Commit (B)");
    for (int i = 0; i < NSHARED; i++) {
        char label[32];
        snprintf(label, sizeof label, "shared %zu MiB", sizes[i] >> 20);
        double ap = median(link_apply[i], rounds), tot = median(link_total[i], rounds);
        printf("%-22s %11.1f ms %15.2f ms %15.2f ms\n", label, convert_ms[i], ap, tot);
    }
    double nt = median(new_total, rounds), it = median(image_total, rounds);
    printf("%-22s %14s %18s %15.1f ms\n", "new 16 MiB", "", "(converted)", nt);
    printf("image B total: %.1f ms = new layer %.1f ms + %.2f ms per shared layer\n", it, nt,
           (it - nt) / NSHARED);
    printf("store: %" PRIu64 " conversions, %" PRIu64 " known blobs linked, %" PRIu64 " links\n",
           st.conversions, st.known_blobs, st.links);
    lcow_snapshotter_free(s);
    lcow_os_remove_all(root, NULL);
    free(abs);
    return 0;
}

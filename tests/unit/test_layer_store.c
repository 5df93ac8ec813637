/* The layer store (core/layer/store.h) through the snapshotter's Apply and
 * directly: two images sharing four of five layers convert the shared ones
 * once and hold them once on disk (same file id, usage grows by one layer);
 * removing images keeps the layers cached; prune and the size bound free
 * them; concurrent Applies of one blob convert once; what a crash leaves is
 * swept at open and flagged by the check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/sha256.h"
#include "core/layer/store.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "layer/layer_test_util.h"
#include "support/layerblob.h"
#include "unit/testlib.h"

/* ---- layers -------------------------------------------------------------- */

/* Layer number n: one file of `bytes` random bytes (seeded by n). */
static uint8_t *layer_tar(unsigned n, size_t bytes, size_t *len)
{
    lb_tar t = {0};
    uint8_t *data = malloc(bytes);
    assert_non_null(data);
    fill_random(data, bytes, 1000 + n);
    char name[32];
    snprintf(name, sizeof name, "layer%u/data", n);
    lb_entry(&t, name, '0', data, bytes, NULL, 0644, 0);
    lb_end(&t);
    free(data);
    *len = t.len;
    return t.d;
}

/* A gzip blob file of layer n, its digest and diffID. */
typedef struct blob {
    char *path;
    char digest[LCOW_SHA256_DIGEST_STRING_SIZE];
    char diff_id[LCOW_SHA256_DIGEST_STRING_SIZE];
} blob;

static blob make_blob(const char *dir, unsigned n, size_t bytes)
{
    blob b;
    size_t tlen, glen;
    uint8_t *tar = layer_tar(n, bytes, &tlen);
    uint8_t *gz = lb_gzip(tar, tlen, 1, &glen);
    assert_non_null(gz);
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_sha256(tar, tlen, d);
    lcow_sha256_digest_string(d, b.diff_id);
    lcow_sha256(gz, glen, d);
    lcow_sha256_digest_string(d, b.digest);
    char name[32];
    snprintf(name, sizeof name, "layer%u.tar.gz", n);
    b.path = test_join(dir, name);
    write_all(b.path, gz, glen);
    free(tar);
    free(gz);
    return b;
}

/* ---- a store ------------------------------------------------------------- */

typedef struct store {
    char *root;
    char *blobs;
    lcow_snapshotter *s;
    uint64_t max_bytes;
} store;

static void store_open(store *st)
{
    lcow_snapshotter_config c = {
        .root = st->root, .no_scratch = true, .layer_cache_max_bytes = st->max_bytes};
    lcow_error err;
    if (lcow_snapshotter_open(&c, &st->s, &err) != LCOW_OK)
        fail_msg("open %s: %s", st->root, err.message);
}

static store store_new(const char *name, uint64_t max_bytes)
{
    char *top = test_fresh_dir(name);
    store st = {test_join(top, "root"), test_join(top, "blobs"), NULL, max_bytes};
    lcow_error err;
    assert_int_equal(lcow_os_mkdir(st.blobs, &err), LCOW_OK);
    free(top);
    store_open(&st);
    return st;
}

static void store_free(store *st)
{
    lcow_snapshotter_free(st->s);
    free(st->root);
    free(st->blobs);
}

static lcow_layer_store_stats stats(store *st)
{
    lcow_layer_store_stats x;
    lcow_layer_store_stats_get(lcow_snapshotter_layer_store(st->s), &x);
    return x;
}

static void check(store *st)
{
    lcow_error err;
    if (lcow_snapshotter_check(st->s, &err) != LCOW_OK)
        fail_msg("check: %s", err.message);
}

static int64_t usage_of(const char *dir)
{
    int64_t bytes, inodes;
    lcow_error err;
    if (lcow_os_usage(dir, &bytes, &inodes, &err) != LCOW_OK)
        fail_msg("usage %s: %s", dir, err.message);
    return bytes;
}

/* Imports an image (the layers of blobs, in order) as containerd does:
 * Prepare extract key on the parent, Apply with the digest, Commit. The
 * committed names are "<ns>/layer-<i>"; dirs[i] (malloc'd) their
 * directories. */
static void import(store *st, const char *ns, const blob *const *blobs, size_t n, bool verity,
                   char **dirs)
{
    char parent[64] = "";
    for (size_t i = 0; i < n; i++) {
        char key[64], name[64];
        snprintf(key, sizeof key, "%s/extract-%zu", ns, i);
        snprintf(name, sizeof name, "%s/layer-%zu", ns, i);
        lcow_mounts m;
        lcow_error err;
        if (lcow_snapshotter_prepare(st->s, key, *parent ? parent : NULL, NULL, &m, &err) !=
            LCOW_OK)
            fail_msg("prepare %s: %s", key, err.message);
        dirs[i] = strdup(m.items[0].source);
        lcow_mounts_free(&m);
        lcow_apply_request req = {
            .key = key, .path = blobs[i]->path, .digest = blobs[i]->digest, .verity = verity};
        lcow_apply_result r;
        if (lcow_snapshotter_apply(st->s, &req, &r, &err) != LCOW_OK)
            fail_msg("apply %s: %s", key, err.message);
        assert_string_equal(r.diff_id, blobs[i]->diff_id);
        assert_string_equal(r.digest, blobs[i]->digest);
        assert_int_equal(r.has_verity_root_hash, verity);
        if (lcow_snapshotter_commit(st->s, name, key, NULL, NULL, &err) != LCOW_OK)
            fail_msg("commit %s: %s", name, err.message);
        snprintf(parent, sizeof parent, "%s", name);
    }
}

/* Removes an image's committed layers, top first. */
static void remove_image(store *st, const char *ns, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        char name[64];
        snprintf(name, sizeof name, "%s/layer-%zu", ns, i);
        lcow_error err;
        if (lcow_snapshotter_remove(st->s, name, &err) != LCOW_OK)
            fail_msg("remove %s: %s", name, err.message);
    }
}

static lcow_file_id file_id(const char *dir)
{
    char *vhd = test_join(dir, "layer.vhd");
    lcow_file_id id;
    lcow_error err;
    if (lcow_os_file_id(vhd, &id, &err) != LCOW_OK)
        fail_msg("%s", err.message);
    free(vhd);
    return id;
}

static void stored_layer(store *st, const blob *b, bool verity, lcow_layer_store_info *info)
{
    bool found = false;
    lcow_error err;
    assert_int_equal(lcow_layer_store_find(lcow_snapshotter_layer_store(st->s), b->diff_id, verity,
                                           &found, info, &err),
                     LCOW_OK);
    if (!found)
        fail_msg("%s is not stored", b->diff_id);
}

typedef struct listing {
    size_t layers;
    uint64_t bytes;
    uint32_t references;
    size_t blobs;
} listing;

static int list_one(void *ctx, const lcow_layer_store_info *info, const char *const *digests,
                    size_t count)
{
    listing *l = ctx;
    l->layers++;
    l->bytes += info->bytes;
    l->references += info->references;
    l->blobs += count;
    return 0;
}

static listing list(store *st)
{
    listing l = {0};
    lcow_error err;
    assert_int_equal(lcow_snapshotter_list_layers(st->s, list_one, &l, &err), LCOW_OK);
    return l;
}

#define SHARED_BYTES (3u << 20)
#define OWN_BYTES (1u << 20)

/* ---- tests --------------------------------------------------------------- */

static void two_images_share_four_layers(void **state)
{
    store st = store_new("layer-store-share", 0);
    blob b[6];
    for (unsigned i = 0; i < 6; i++)
        b[i] = make_blob(st.blobs, i, i < 4 ? SHARED_BYTES : OWN_BYTES);
    const blob *img_a[5] = {&b[0], &b[1], &b[2], &b[3], &b[4]};
    const blob *img_b[5] = {&b[0], &b[1], &b[2], &b[3], &b[5]};
    char *da[5], *db[5];

    import(&st, "a", img_a, 5, false, da);
    lcow_layer_store_stats s1 = stats(&st);
    assert_int_equal(s1.conversions, 5);
    assert_int_equal(s1.stored, 5);
    int64_t before = usage_of(st.root);

    import(&st, "b", img_b, 5, false, db);
    lcow_layer_store_stats s2 = stats(&st);
    /* the second image converts exactly one layer */
    assert_int_equal(s2.conversions - s1.conversions, 1);
    assert_int_equal(s2.stored - s1.stored, 1);
    assert_int_equal(s2.known_blobs - s1.known_blobs, 4);
    /* each shared layer exists once on disk */
    for (int i = 0; i < 4; i++) {
        lcow_file_id x = file_id(da[i]), y = file_id(db[i]);
        assert_true(x.volume == y.volume && x.index == y.index);
        assert_int_equal(x.links, 3); /* the store's name and two snapshots */
    }
    lcow_file_id x = file_id(da[4]), y = file_id(db[4]);
    assert_false(x.volume == y.volume && x.index == y.index);
    /* the disk usage grows by the one new layer (plus metadata, far less
     * than one shared layer) */
    lcow_layer_store_info own;
    stored_layer(&st, &b[5], false, &own);
    int64_t grown = usage_of(st.root) - before;
    print_message("second image: usage +%lld bytes, its own layer %llu bytes\n", (long long)grown,
                  (unsigned long long)own.bytes);
    assert_true(grown >= (int64_t)own.bytes - 65536);
    assert_true(grown < (int64_t)own.bytes + SHARED_BYTES / 2);

    /* Stat of a committed layer shows its diffID (no verity here) */
    lcow_info info;
    lcow_error err;
    assert_int_equal(lcow_snapshotter_stat(st.s, "b/layer-4", &info, &err), LCOW_OK);
    const char *d = lcow_labels_get(&info.labels, LCOW_LAYER_STORE_LABEL_DIFF_ID);
    assert_non_null(d);
    assert_string_equal(d, b[5].diff_id);
    assert_null(lcow_labels_get(&info.labels, LCOW_LAYER_STORE_LABEL_VERITY_ROOT));
    lcow_info_free(&info);
    listing l = list(&st);
    assert_int_equal(l.layers, 6);
    assert_int_equal(l.references, 10);
    assert_int_equal(l.blobs, 6);
    check(&st);

    /* removing one image keeps the other's layers */
    remove_image(&st, "a", 5);
    for (int i = 0; i < 5; i++) {
        char *vhd = test_join(db[i], "layer.vhd");
        assert_true(test_exists(vhd));
        free(vhd);
        assert_int_equal(file_id(db[i]).links, 2);
    }
    l = list(&st);
    assert_int_equal(l.layers, 6); /* a's own layer stays cached */
    assert_int_equal(l.references, 5);
    check(&st);
    /* removing both leaves the layers cached: a re-import converts nothing */
    remove_image(&st, "b", 5);
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    l = list(&st);
    assert_int_equal(l.layers, 6);
    assert_int_equal(l.references, 0);
    check(&st);
    lcow_layer_store_stats s3 = stats(&st);
    char *dc[5];
    import(&st, "c", img_a, 5, false, dc);
    lcow_layer_store_stats s4 = stats(&st);
    assert_int_equal(s4.conversions, s3.conversions);
    assert_int_equal(s4.known_blobs - s3.known_blobs, 5);
    check(&st);
    remove_image(&st, "c", 5);

    /* prune: an age nothing has reached frees nothing; --all frees all */
    lcow_layer_store_prune_options po = {.older_than_sec = 24 * 3600};
    lcow_layer_store_prune_result pr;
    assert_int_equal(lcow_snapshotter_prune_layers(st.s, &po, &pr, &err), LCOW_OK);
    assert_int_equal(pr.layers, 0);
    po = (lcow_layer_store_prune_options){.all = true};
    assert_int_equal(lcow_snapshotter_prune_layers(st.s, &po, &pr, &err), LCOW_OK);
    assert_int_equal(pr.layers, 6);
    assert_int_equal(pr.bytes, l.bytes);
    l = list(&st);
    assert_int_equal(l.layers, 0);
    assert_int_equal(l.blobs, 0);
    assert_int_equal(stats(&st).evictions, 6);
    check(&st);
    /* after a restart too */
    lcow_snapshotter_free(st.s);
    store_open(&st);
    check(&st);

    for (int i = 0; i < 5; i++) {
        free(da[i]);
        free(db[i]);
        free(dc[i]);
    }
    for (int i = 0; i < 6; i++)
        free(b[i].path);
    store_free(&st);
}

static void prune_keeps_referenced_layers(void **state)
{
    store st = store_new("layer-store-prune-refs", 0);
    blob b = make_blob(st.blobs, 1, OWN_BYTES);
    const blob *img[1] = {&b};
    char *d[1];
    import(&st, "a", img, 1, false, d);
    lcow_layer_store_prune_options po = {.all = true};
    lcow_layer_store_prune_result pr;
    lcow_error err;
    assert_int_equal(lcow_snapshotter_prune_layers(st.s, &po, &pr, &err), LCOW_OK);
    assert_int_equal(pr.layers, 0);
    assert_int_equal(list(&st).layers, 1);
    po.older_than_sec = -1;
    assert_int_equal(lcow_snapshotter_prune_layers(st.s, &po, &pr, &err), LCOW_INVALID_ARGUMENT);
    check(&st);
    free(d[0]);
    free(b.path);
    store_free(&st);
}

static void verity_is_its_own_layer_with_labels(void **state)
{
    store st = store_new("layer-store-verity", 0);
    blob b = make_blob(st.blobs, 7, OWN_BYTES);
    const blob *img[1] = {&b};
    char *plain[1], *ver[1];
    import(&st, "p", img, 1, false, plain);
    import(&st, "v", img, 1, true, ver);
    assert_int_equal(stats(&st).stored, 2);
    lcow_file_id x = file_id(plain[0]), y = file_id(ver[0]);
    assert_false(x.volume == y.volume && x.index == y.index);
    lcow_layer_store_info info;
    stored_layer(&st, &b, true, &info);
    assert_true(info.verity);
    assert_int_equal(strlen(info.verity_root_hash), 64);
    lcow_info si;
    lcow_error err;
    assert_int_equal(lcow_snapshotter_stat(st.s, "v/layer-0", &si, &err), LCOW_OK);
    assert_string_equal(lcow_labels_get(&si.labels, LCOW_LAYER_STORE_LABEL_DIFF_ID), b.diff_id);
    const char *root = lcow_labels_get(&si.labels, LCOW_LAYER_STORE_LABEL_VERITY_ROOT);
    assert_non_null(root);
    assert_string_equal(root, info.verity_root_hash);
    lcow_info_free(&si);
    /* a second verity import links; Walk shows the labels too */
    char *again[1];
    import(&st, "w", img, 1, true, again);
    assert_int_equal(stats(&st).stored, 2);
    assert_int_equal(stats(&st).known_blobs, 1);
    check(&st);
    free(plain[0]);
    free(ver[0]);
    free(again[0]);
    free(b.path);
    store_free(&st);
}

static void without_digest_reads_but_stores_once(void **state)
{
    store st = store_new("layer-store-nodigest", 0);
    blob b = make_blob(st.blobs, 3, OWN_BYTES);
    char *dirs[2];
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "extract-%d", i);
        lcow_mounts m;
        lcow_error err;
        assert_int_equal(lcow_snapshotter_prepare(st.s, key, NULL, NULL, &m, &err), LCOW_OK);
        dirs[i] = strdup(m.items[0].source);
        lcow_mounts_free(&m);
        lcow_apply_request req = {.key = key, .path = b.path};
        lcow_apply_result r;
        if (lcow_snapshotter_apply(st.s, &req, &r, &err) != LCOW_OK)
            fail_msg("apply: %s", err.message);
        assert_string_equal(r.diff_id, b.diff_id);
    }
    lcow_layer_store_stats x = stats(&st);
    assert_int_equal(x.conversions, 2); /* no digest: the blob is read */
    assert_int_equal(x.stored, 1);      /* and stored once */
    lcow_file_id a = file_id(dirs[0]), c = file_id(dirs[1]);
    assert_true(a.volume == c.volume && a.index == c.index);
    /* now the blob is known: an Apply with its digest does not read it */
    lcow_mounts m;
    lcow_error err;
    assert_int_equal(lcow_snapshotter_prepare(st.s, "extract-2", NULL, NULL, &m, &err), LCOW_OK);
    lcow_mounts_free(&m);
    lcow_apply_request req = {.key = "extract-2", .path = b.path, .digest = b.digest};
    assert_int_equal(lcow_snapshotter_apply(st.s, &req, NULL, &err), LCOW_OK);
    assert_int_equal(stats(&st).known_blobs, 1);
    assert_int_equal(stats(&st).conversions, 2);
    check(&st);
    free(dirs[0]);
    free(dirs[1]);
    free(b.path);
    store_free(&st);
}

static void bad_digest_stores_nothing(void **state)
{
    store st = store_new("layer-store-bad", 0);
    blob b = make_blob(st.blobs, 4, OWN_BYTES);
    blob other = make_blob(st.blobs, 5, 1000);
    lcow_mounts m;
    lcow_error err;
    assert_int_equal(lcow_snapshotter_prepare(st.s, "extract", NULL, NULL, &m, &err), LCOW_OK);
    char *dir = strdup(m.items[0].source);
    lcow_mounts_free(&m);
    lcow_apply_request req = {.key = "extract", .path = b.path, .digest = other.digest};
    lcow_code rc = lcow_snapshotter_apply(st.s, &req, NULL, &err);
    assert_int_not_equal(rc, LCOW_OK);
    assert_int_equal(test_entries_in(dir), 0);
    char *layers = test_join(st.root, "layers");
    char *tmp = test_join(layers, "tmp");
    char *blobs = test_join(layers, "blobs");
    assert_int_equal(test_entries_in(tmp), 0);
    assert_int_equal(test_entries_in(blobs), 0);
    assert_int_equal(test_entries_in(layers), 2); /* tmp and blobs only */
    assert_int_equal(stats(&st).stored, 0);
    check(&st);
    free(layers);
    free(tmp);
    free(blobs);
    free(dir);
    free(b.path);
    free(other.path);
    store_free(&st);
}

static void size_bound_evicts_least_recently_used(void **state)
{
    /* room for about two of the three unreferenced layers */
    store st = store_new("layer-store-bound", 0);
    blob b[3];
    for (unsigned i = 0; i < 3; i++)
        b[i] = make_blob(st.blobs, 20 + i, OWN_BYTES);
    char *d[3];
    for (int i = 0; i < 3; i++) {
        char ns[8];
        snprintf(ns, sizeof ns, "n%d", i);
        const blob *img[1] = {&b[i]};
        import(&st, ns, img, 1, false, &d[i]);
    }
    lcow_layer_store_info info;
    stored_layer(&st, &b[0], false, &info);
    uint64_t one = info.bytes;
    remove_image(&st, "n0", 1);
    remove_image(&st, "n1", 1);
    remove_image(&st, "n2", 1);
    lcow_snapshotter_free(st.s);
    st.max_bytes = 2 * one + one / 2;
    store_open(&st);
    lcow_error err;
    /* Cleanup applies the bound: the least recently used (n0's) goes */
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    bool found = true;
    assert_int_equal(lcow_layer_store_find(lcow_snapshotter_layer_store(st.s), b[0].diff_id, false,
                                           &found, NULL, &err),
                     LCOW_OK);
    assert_false(found);
    stored_layer(&st, &b[1], false, &info);
    stored_layer(&st, &b[2], false, &info);
    /* a referenced layer is never evicted, whatever the bound */
    lcow_snapshotter_free(st.s);
    st.max_bytes = 1;
    store_open(&st);
    const blob *img[1] = {&b[1]};
    char *again;
    import(&st, "m", img, 1, false, &again);
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    stored_layer(&st, &b[1], false, &info);
    assert_int_equal(info.references, 1);
    assert_int_equal(list(&st).layers, 1);
    check(&st);
    free(again);
    for (int i = 0; i < 3; i++) {
        free(d[i]);
        free(b[i].path);
    }
    store_free(&st);
}

/* ---- concurrency --------------------------------------------------------- */

typedef struct worker {
    lcow_snapshotter *s;
    char key[32];
    const blob *b;
    lcow_code rc;
    lcow_error err;
} worker;

static void *apply_main(void *arg)
{
    worker *w = arg;
    lcow_apply_request req = {.key = w->key, .path = w->b->path, .digest = w->b->digest};
    w->rc = lcow_snapshotter_apply(w->s, &req, NULL, &w->err);
    return NULL;
}

static void concurrent_applies_of_one_blob_convert_once(void **state)
{
    store st = store_new("layer-store-concurrent", 0);
    blob b = make_blob(st.blobs, 30, SHARED_BYTES);
    enum { N = 4 };
    worker w[N];
    lcow_thread t[N];
    char *dirs[N];
    for (int i = 0; i < N; i++) {
        w[i] = (worker){.s = st.s, .b = &b};
        snprintf(w[i].key, sizeof w[i].key, "extract-%d", i);
        lcow_mounts m;
        lcow_error err;
        assert_int_equal(lcow_snapshotter_prepare(st.s, w[i].key, NULL, NULL, &m, &err), LCOW_OK);
        dirs[i] = strdup(m.items[0].source);
        lcow_mounts_free(&m);
    }
    for (int i = 0; i < N; i++)
        assert_true(lcow_thread_create(&t[i], apply_main, &w[i]));
    for (int i = 0; i < N; i++)
        lcow_thread_join(t[i], NULL);
    for (int i = 0; i < N; i++)
        if (w[i].rc != LCOW_OK)
            fail_msg("apply %d: %s", i, w[i].err.message);
    lcow_layer_store_stats x = stats(&st);
    assert_int_equal(x.conversions, 1);
    assert_int_equal(x.known_blobs, N - 1);
    lcow_file_id first = file_id(dirs[0]);
    for (int i = 1; i < N; i++) {
        lcow_file_id o = file_id(dirs[i]);
        assert_true(o.volume == first.volume && o.index == first.index);
    }
    assert_int_equal(first.links, N + 1);
    check(&st);
    for (int i = 0; i < N; i++)
        free(dirs[i]);
    free(b.path);
    store_free(&st);
}

/* ---- crash leftovers ----------------------------------------------------- */

static void write_text(const char *path, const char *text)
{
    write_all(path, text, strlen(text));
}

static void open_sweeps_what_a_crash_leaves(void **state)
{
    store st = store_new("layer-store-crash", 0);
    blob b = make_blob(st.blobs, 40, OWN_BYTES);
    const blob *img[1] = {&b};
    char *d[1];
    import(&st, "a", img, 1, false, d);
    lcow_snapshotter_free(st.s);
    st.s = NULL;
    char *layers = test_join(st.root, "layers");
    char *tmp = test_join(layers, "tmp");
    char *blobs = test_join(layers, "blobs");
    /* a conversion's temp, an incomplete layer (no info), a blob entry
     * naming no stored layer, a blob entry's temp */
    char *t1 = test_join(tmp, "0123456789abcdef.vhd");
    write_text(t1, "x");
    char *t2 = test_join(tmp, ".0123456789abcdef.vhd.tmp-apply-0000000000000001");
    write_text(t2, "x");
    char *inc = test_join(
        layers, "sha256-1111111111111111111111111111111111111111111111111111111111111111");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir(inc, &err), LCOW_OK);
    char *inc_vhd = test_join(inc, "layer.vhd");
    write_text(inc_vhd, "half");
    char *dangling =
        test_join(blobs, "sha256-2222222222222222222222222222222222222222222222222222222222222222");
    write_text(dangling,
               "sha256:3333333333333333333333333333333333333333333333333333333333333333\n");
    char *btemp = test_join(blobs, ".sha256-44.tmp-01020304");
    write_text(btemp, "x");
    store_open(&st);
    assert_false(test_exists(t1));
    assert_false(test_exists(t2));
    assert_false(test_exists(inc));
    assert_false(test_exists(dangling));
    assert_false(test_exists(btemp));
    assert_int_equal(list(&st).layers, 1);
    check(&st);

    /* the check sees a stored layer whose size disagrees with its info,
     * and a blob entry naming nothing */
    write_text(dangling,
               "sha256:3333333333333333333333333333333333333333333333333333333333333333\n");
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_INTERNAL);
    assert_non_null(strstr(err.message, "not stored"));
    assert_int_equal(lcow_os_remove(dangling, &err), LCOW_OK);
    check(&st);
    assert_int_equal(lcow_os_mkdir(inc, &err), LCOW_OK);
    assert_int_equal(lcow_snapshotter_check(st.s, &err), LCOW_INTERNAL);
    assert_non_null(strstr(err.message, "incomplete"));
    assert_int_equal(lcow_snapshotter_cleanup(st.s, &err), LCOW_OK);
    assert_false(test_exists(inc));
    check(&st);

    free(d[0]);
    free(layers);
    free(tmp);
    free(blobs);
    free(t1);
    free(t2);
    free(inc);
    free(inc_vhd);
    free(dangling);
    free(btemp);
    free(b.path);
    store_free(&st);
}

static void find_and_link_for_a_remote_snapshot(void **state)
{
    store st = store_new("layer-store-link", 0);
    blob b = make_blob(st.blobs, 50, OWN_BYTES);
    const blob *img[1] = {&b};
    char *d[1];
    import(&st, "a", img, 1, false, d);
    lcow_layer_store *ls = lcow_snapshotter_layer_store(st.s);
    bool found = true;
    lcow_error err;
    /* malformed, unknown, the other verity variant */
    assert_int_equal(lcow_layer_store_find(ls, "sha256:xyz", false, &found, NULL, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_layer_store_find(
                         ls,
                         "sha256:5555555555555555555555555555555555555555555555555555555555555555",
                         false, &found, NULL, &err),
                     LCOW_OK);
    assert_false(found);
    assert_int_equal(lcow_layer_store_find(ls, b.diff_id, true, &found, NULL, &err), LCOW_OK);
    assert_false(found);
    lcow_layer_store_info info;
    assert_int_equal(lcow_layer_store_find(ls, b.diff_id, false, &found, &info, &err), LCOW_OK);
    assert_true(found);
    assert_int_equal(info.references, 1);
    /* link into a fresh directory: one more reference, same file */
    char *top = test_fresh_dir("layer-store-link-target");
    assert_int_equal(lcow_layer_store_link(ls, b.diff_id, false, top, &info, &err), LCOW_OK);
    assert_int_equal(info.references, 2);
    lcow_file_id x = file_id(top), y = file_id(d[0]);
    assert_true(x.volume == y.volume && x.index == y.index);
    assert_int_equal(lcow_layer_store_link(ls, b.diff_id, false, top, NULL, &err),
                     LCOW_ALREADY_EXISTS);
    char *other = test_join(top, "sub");
    assert_int_equal(lcow_os_mkdir(other, &err), LCOW_OK);
    assert_int_equal(lcow_layer_store_link(ls, b.diff_id, true, other, NULL, &err), LCOW_NOT_FOUND);
    free(other);
    assert_int_equal(lcow_os_remove_all(top, &err), LCOW_OK);
    free(top);
    free(d[0]);
    free(b.path);
    store_free(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_images_share_four_layers),
        cmocka_unit_test(prune_keeps_referenced_layers),
        cmocka_unit_test(verity_is_its_own_layer_with_labels),
        cmocka_unit_test(without_digest_reads_but_stores_once),
        cmocka_unit_test(bad_digest_stores_nothing),
        cmocka_unit_test(size_bound_evicts_least_recently_used),
        cmocka_unit_test(concurrent_applies_of_one_blob_convert_once),
        cmocka_unit_test(open_sweeps_what_a_crash_leaves),
        cmocka_unit_test(find_and_link_for_a_remote_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

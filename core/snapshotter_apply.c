/* Apply: a layer blob into the directory of an active snapshot as
 * layer.vhd (core/layer/apply.h does the conversion and the atomic
 * publication), in three steps like Prepare's:
 *
 *   1. under the lock: the key must be an active snapshot with no Apply in
 *      flight; it is reserved (s->applying), so Remove and Commit of it are
 *      refused until step 3 and Cleanup leaves its temporary file alone;
 *   2. without the lock: the conversion, cancelled by
 *      lcow_snapshotter_cancel_work or close (both set before close waits
 *      for calls to drain);
 *   3. under the lock: the reservation is dropped.
 *
 * The conversion goes into the layer store (core/layer/store.h), which links
 * the stored layer as layer.vhd (or only links it when the layer is stored
 * already); then the active gets the layer labels (diffID, verity root
 * hash) that Commit carries to the committed layer. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/layer/apply.h"
#include "core/os/os.h"
#include "core/snapshotter_internal.h"

const lcow_snapshotter_applying *lcow_snapshotter_find_applying(const lcow_snapshotter *s,
                                                                const char *key)
{
    for (size_t i = 0; i < s->applying_count; i++)
        if (strcmp(s->applying[i].key, key) == 0)
            return &s->applying[i];
    return NULL;
}

static bool id_applying(const lcow_snapshotter *s, uint64_t id)
{
    for (size_t i = 0; i < s->applying_count; i++)
        if (s->applying[i].id == id)
            return true;
    return false;
}

/* Caller holds the lock. */
static bool add_applying(lcow_snapshotter *s, const char *key, uint64_t id)
{
    if (!lcow_grow(&s->applying, &s->applying_cap, s->applying_count + 1, sizeof *s->applying))
        return false;
    char *copy = strdup(key);
    if (!copy)
        return false;
    s->applying[s->applying_count++] = (lcow_snapshotter_applying){copy, id};
    return true;
}

static void drop_applying(lcow_snapshotter *s, const char *key)
{
    lcow_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->applying_count; i++)
        if (strcmp(s->applying[i].key, key) == 0) {
            free(s->applying[i].key);
            s->applying[i] = s->applying[--s->applying_count];
            break;
        }
    lcow_mutex_unlock(&s->lock);
}

static bool stopping(lcow_snapshotter *s)
{
    return atomic_load(&s->cancel_work) || atomic_load(&s->closed);
}

/* One Apply's conversion, as its cancellation callback sees it: the first
 * poll is the conversion's start (a layer linked from the layer store is
 * never polled), counted in s->converting until convert_end. */
typedef struct convert_run {
    lcow_snapshotter *s;
    const char *key;
    bool started;
} convert_run;

static bool apply_cancelled(void *ctx)
{
    convert_run *run = ctx;
    lcow_snapshotter *s = run->s;
    if (!run->started) {
        run->started = true;
        unsigned now = atomic_fetch_add(&s->converting, 1) + 1;
        unsigned max = atomic_load(&s->converting_max);
        while (now > max && !atomic_compare_exchange_weak(&s->converting_max, &max, now))
            ;
        if (s->apply_hook)
            s->apply_hook(s->apply_hook_ctx, run->key);
    }
    return stopping(s);
}

static void convert_end(convert_run *run)
{
    if (run->started)
        atomic_fetch_sub(&run->s->converting, 1);
}

void lcow_snapshotter_set_apply_hook(lcow_snapshotter *s, lcow_snapshotter_apply_hook fn, void *ctx)
{
    s->apply_hook = fn;
    s->apply_hook_ctx = ctx;
}

unsigned lcow_snapshotter_conversions_max(lcow_snapshotter *s)
{
    return atomic_load(&s->converting_max);
}

void lcow_snapshotter_cancel_work(lcow_snapshotter *s)
{
    if (s)
        atomic_store(&s->cancel_work, true);
}

/* Sets the layer labels on the active key (one synced batch). */
static lcow_code record_layer_labels(lcow_snapshotter *s, const char *key,
                                     const lcow_apply_result *out, lcow_error *err)
{
    lcow_info info = {.name = (char *)key};
    const char *paths[] = {"labels." LCOW_LAYER_STORE_LABEL_DIFF_ID,
                           "labels." LCOW_LAYER_STORE_LABEL_VERITY_ROOT};
    if (!lcow_labels_set(&info.labels, LCOW_LAYER_STORE_LABEL_DIFF_ID, out->diff_id) ||
        (out->has_verity_root_hash &&
         !lcow_labels_set(&info.labels, LCOW_LAYER_STORE_LABEL_VERITY_ROOT,
                          out->verity_root_hash))) {
        lcow_labels_free(&info.labels);
        return lcow_snapshotter_oom(err);
    }
    lcow_meta_record rec;
    lcow_mutex_lock(&s->lock);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_update(s->ms, &info, paths, 2, &rec, err);
    lcow_mutex_unlock(&s->lock);
    if (rc == LCOW_OK)
        lcow_meta_record_free(&rec);
    lcow_labels_free(&info.labels);
    return rc == LCOW_OK ? rc : lcow_error_wrap(err, "Apply %s: recording the layer labels", key);
}

static lcow_code apply_impl(lcow_snapshotter *s, const lcow_apply_request *req,
                            lcow_apply_result *out, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    if (!req)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "Apply: no request");
    rc = lcow_metastore_validate_key("snapshot key", req->key, err);
    if (rc != LCOW_OK)
        return rc;
    if (!req->path || !*req->path)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "Apply %s: the blob path is empty",
                              req->key);
    if (!lcow_path_is_absolute(req->path))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "Apply %s: the blob path must be absolute (got \"%s\")", req->key,
                              req->path);
    /* The media type and the digest's syntax, before anything is reserved. */
    lcow_blob_format format;
    rc = lcow_blob_format_from_media_type(req->media_type, &format, err);
    uint8_t want[LCOW_SHA256_SIZE];
    if (rc == LCOW_OK && req->digest)
        rc = lcow_sha256_parse_digest(req->digest, want, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "Apply %s", req->key);
    if (atomic_load(&s->cancel_work))
        return lcow_error_set(err, LCOW_UNAVAILABLE, "Apply %s: the service is stopping", req->key);

    /* 1. Reserve. */
    lcow_meta_record rec;
    bool have = false, reserved = false;
    lcow_mutex_lock(&s->lock);
    rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_get(s->ms, NULL, req->key, &rec, err);
    have = rc == LCOW_OK;
    if (rc == LCOW_OK && rec.kind != LCOW_KIND_ACTIVE)
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "Apply needs an active snapshot: %s is %s", req->key,
                            lcow_kind_name(rec.kind));
    if (rc == LCOW_OK && lcow_snapshotter_find_applying(s, req->key))
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION, "a layer is already being applied to %s",
                            req->key);
    if (rc == LCOW_OK) {
        reserved = add_applying(s, req->key, rec.id);
        if (!reserved)
            rc = lcow_snapshotter_oom(err);
    }
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK) {
        if (have)
            lcow_meta_record_free(&rec);
        return rc;
    }

    /* 2. Convert into the layer store (or link the stored layer), without
     * the lock. */
    convert_run run = {.s = s, .key = req->key};
    char *dir = lcow_snapshotter_dir_of(s, rec.id);
    lcow_layer_store_apply_result res;
    if (!dir) {
        rc = lcow_snapshotter_oom(err);
    } else {
        lcow_layer_apply_options o = {
            .media_type = req->media_type,
            .digest = req->digest,
            .verity = req->verity,
            .cancelled = apply_cancelled,
            .cancel_ctx = &run,
        };
        rc = lcow_layer_store_apply(s->layers, req->path, dir, &o, &res, err);
        if (rc == LCOW_ALREADY_EXISTS)
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "snapshot %s already has a " LCOW_LAYER_APPLY_VHD_NAME
                                " (a layer is applied once: remove the snapshot and prepare it "
                                "again)",
                                req->key);
        else if (rc == LCOW_UNAVAILABLE && stopping(s))
            rc = lcow_error_set(err, LCOW_UNAVAILABLE,
                                "Apply %s cancelled: the service is stopping", req->key);
        else if (rc != LCOW_OK)
            lcow_error_wrap(err, "Apply %s", req->key);
    }
    if (rc == LCOW_OK) {
        lcow_sha256_digest_string(res.apply.diff_id, out->diff_id);
        lcow_sha256_digest_string(res.apply.digest, out->digest);
        out->size = res.apply.blob_bytes;
        out->layer_bytes = res.apply.layer_bytes;
        out->has_verity_root_hash = res.apply.has_root_hash;
        if (res.apply.has_root_hash)
            lcow_sha256_hex(res.apply.root_hash, out->verity_root_hash);
        LCOW_LOGI("Apply %s: %s (%" PRIu64 " bytes, diff_id %s) -> %s, %" PRIu64 " bytes%s, %s",
                  req->key, req->path, res.apply.blob_bytes, out->diff_id, dir,
                  res.apply.layer_bytes, res.apply.has_root_hash ? ", verity" : "",
                  res.converted ? "converted into the layer store" : "linked from the layer store");
        /* The labels Commit carries to the layer (Stat, Walk, the remote
         * snapshot chain). After the link: a crash in between leaves a
         * layer.vhd without labels, never labels without a layer. */
        rc = record_layer_labels(s, req->key, out, err);
        if (rc != LCOW_OK) {
            char *vhd = lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME);
            lcow_error e;
            if (!vhd || lcow_os_remove(vhd, &e) != LCOW_OK)
                LCOW_LOGW("Apply %s: %s left behind after a failure", req->key,
                          vhd ? vhd : LCOW_LAYER_APPLY_VHD_NAME);
            free(vhd);
            memset(out, 0, sizeof *out);
        }
    }

    convert_end(&run);

    /* 3. Release. */
    drop_applying(s, req->key);
    free(dir);
    lcow_meta_record_free(&rec);
    return rc;
}

lcow_code lcow_snapshotter_apply(lcow_snapshotter *s, const lcow_apply_request *req,
                                 lcow_apply_result *out, lcow_error *err)
{
    lcow_apply_result local;
    if (!out)
        out = &local;
    memset(out, 0, sizeof *out);
    LCOW_SNAPSHOTTER_CALL(s, err, apply_impl(s, req, out, err));
}

/* ---------------------------------------------------------------- sweep */

typedef struct actives {
    uint64_t *ids;
    size_t count, cap;
    bool failed;
} actives;

static int collect_active(void *ctx, const lcow_meta_record *rec)
{
    actives *a = ctx;
    if (rec->kind != LCOW_KIND_ACTIVE)
        return 0;
    if (!lcow_grow(&a->ids, &a->cap, a->count + 1, sizeof *a->ids)) {
        a->failed = true;
        return 1;
    }
    a->ids[a->count++] = rec->id;
    return 0;
}

/* Caller holds the lock. Whether a Remove since the view is deleting this
 * snapshot's directory (it claims the id under the lock, then renames and
 * deletes outside it) or left it to the removal queue: listing it meanwhile
 * would race the rename and the deletion (on Windows a sharing violation
 * that failed the whole Cleanup), and there is nothing left to sweep. */
static bool id_going(const lcow_snapshotter *s, uint64_t id, const char *dir)
{
    for (size_t i = 0; i < s->discarding_count; i++)
        if (s->discarding[i] == id)
            return true;
    return lcow_snapshotter_removal_queued((lcow_snapshotter *)s, dir);
}

lcow_code lcow_snapshotter_sweep_apply_temps(lcow_snapshotter *s, bool at_open, lcow_error *err)
{
    actives a = {0};
    lcow_meta_view *view = lcow_metastore_view_begin(s->ms);
    if (!view)
        return lcow_snapshotter_oom(err);
    lcow_code rc = lcow_metastore_walk(s->ms, view, NULL, collect_active, &a, err);
    lcow_metastore_view_end(s->ms, view);
    if (rc == LCOW_OK && a.failed)
        rc = lcow_snapshotter_oom(err);
    lcow_code first = rc;
    for (size_t i = 0; rc == LCOW_OK && i < a.count; i++) {
        char *dir = lcow_snapshotter_dir_of(s, a.ids[i]);
        lcow_error e;
        lcow_code one = dir ? LCOW_OK : lcow_snapshotter_oom(&e);
        /* Under the lock (one small directory): an Apply cannot start on
         * this id meanwhile, and one in flight keeps its file. */
        if (!at_open)
            lcow_mutex_lock(&s->lock);
        if (dir && (at_open || (!id_applying(s, a.ids[i]) && !id_going(s, a.ids[i], dir))))
            one = lcow_layer_apply_sweep(dir, NULL, NULL, &e);
        if (!at_open)
            lcow_mutex_unlock(&s->lock);
        if (one != LCOW_OK) {
            LCOW_LOGW("cleanup: %s", e.message);
            if (first == LCOW_OK) {
                first = one;
                if (err)
                    *err = e;
            }
        }
        free(dir);
    }
    free(a.ids);
    /* The layer store's leftovers and its bound (at open, its own open did
     * this); a partition's Cleanup sweeps the shared store too. */
    if (!at_open && s->layers) {
        lcow_error e;
        lcow_code one = lcow_layer_store_sweep(s->layers, &e);
        if (one != LCOW_OK) {
            LCOW_LOGW("cleanup: %s", e.message);
            if (first == LCOW_OK) {
                first = one;
                if (err)
                    *err = e;
            }
        }
    }
    return first;
}

/* ---------------------------------------------------------------- layer store */

lcow_code lcow_snapshotter_merge_layer_labels(lcow_snapshotter *s, const char *key,
                                              const lcow_labels *given, lcow_labels *out,
                                              lcow_error *err)
{
    memset(out, 0, sizeof *out);
    if (given && !lcow_labels_copy(out, given))
        return lcow_snapshotter_oom(err);
    lcow_meta_record rec;
    if (!key || lcow_metastore_get(s->ms, NULL, key, &rec, NULL) != LCOW_OK)
        return LCOW_OK; /* Commit's own checks report it */
    static const char *const names[] = {LCOW_LAYER_STORE_LABEL_DIFF_ID,
                                        LCOW_LAYER_STORE_LABEL_VERITY_ROOT};
    bool ok = true;
    for (size_t i = 0; ok && i < 2; i++) {
        const char *v =
            rec.kind == LCOW_KIND_ACTIVE ? lcow_labels_get(&rec.labels, names[i]) : NULL;
        if (v)
            ok = lcow_labels_set(out, names[i], v);
    }
    lcow_meta_record_free(&rec);
    if (!ok) {
        lcow_labels_free(out);
        return lcow_snapshotter_oom(err);
    }
    return LCOW_OK;
}

lcow_code lcow_snapshotter_check_layer_of(lcow_snapshotter *s, const lcow_meta_record *rec,
                                          lcow_error *err)
{
    const char *diff = lcow_labels_get(&rec->labels, LCOW_LAYER_STORE_LABEL_DIFF_ID);
    if (!diff || rec->kind == LCOW_KIND_VIEW || !s->layers)
        return LCOW_OK;
    if (rec->kind == LCOW_KIND_ACTIVE) {
        /* containerd 2 labels an extraction Prepare with the diff-id of the
         * layer it is about to apply: until the Apply there is nothing to
         * check (and the layer need not be stored). */
        char *d = lcow_snapshotter_dir_of(s, rec->id);
        char *v = d ? lcow_path_join(d, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
        lcow_stat st = {0};
        lcow_error se;
        bool none = v && lcow_os_stat(v, &st, &se) == LCOW_OK && !st.exists;
        free(v);
        free(d);
        if (none)
            return LCOW_OK;
    }
    const char *root = lcow_labels_get(&rec->labels, LCOW_LAYER_STORE_LABEL_VERITY_ROOT);
    bool found = false;
    lcow_layer_store_info info;
    lcow_error e;
    if (lcow_layer_store_find(s->layers, diff, root != NULL, &found, &info, &e) != LCOW_OK)
        return lcow_error_set(err, LCOW_INTERNAL, "invariant violated: %s: %s", rec->key,
                              e.message);
    if (!found)
        return lcow_error_set(err, LCOW_INTERNAL,
                              "invariant violated: %s names layer %s%s, which is not stored",
                              rec->key, diff, root ? " (verity)" : "");
    if (root && strcmp(root, info.verity_root_hash) != 0)
        return lcow_error_set(err, LCOW_INTERNAL,
                              "invariant violated: %s: verity root hash %s, the store has %s",
                              rec->key, root, info.verity_root_hash);
    char *dir = lcow_snapshotter_dir_of(s, rec->id);
    char *vhd = dir ? lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
    char hex[LCOW_SHA256_HEX_SIZE];
    snprintf(hex, sizeof hex, "%s", diff + 7);
    char name[128];
    snprintf(name, sizeof name, "sha256-%s%s", hex, root ? ".verity" : "");
    char *layers = lcow_path_join(s->root, LCOW_LAYER_STORE_DIR);
    char *ldir = layers ? lcow_path_join(layers, name) : NULL;
    char *stored = ldir ? lcow_path_join(ldir, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
    lcow_code rc = vhd && stored ? LCOW_OK : lcow_snapshotter_oom(err);
    lcow_file_id a, b;
    if (rc == LCOW_OK &&
        (lcow_os_file_id(vhd, &a, &e) != LCOW_OK || lcow_os_file_id(stored, &b, &e) != LCOW_OK))
        rc = lcow_error_set(err, LCOW_INTERNAL, "invariant violated: %s: %s", rec->key, e.message);
    if (rc == LCOW_OK && (a.volume != b.volume || a.index != b.index))
        rc = lcow_error_set(err, LCOW_INTERNAL,
                            "invariant violated: %s's " LCOW_LAYER_APPLY_VHD_NAME
                            " is not the stored layer %s",
                            rec->key, name);
    free(dir);
    free(vhd);
    free(layers);
    free(ldir);
    free(stored);
    return rc;
}

lcow_code lcow_snapshotter_list_layers(lcow_snapshotter *s, lcow_layer_store_list_fn fn, void *ctx,
                                       lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, lcow_layer_store_list(s->layers, fn, ctx, err));
}

lcow_code lcow_snapshotter_prune_layers(lcow_snapshotter *s,
                                        const lcow_layer_store_prune_options *opts,
                                        lcow_layer_store_prune_result *res, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, lcow_layer_store_prune(s->layers, opts, res, err));
}

lcow_layer_store *lcow_snapshotter_layer_store(lcow_snapshotter *s)
{
    return s->layers;
}

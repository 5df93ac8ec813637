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
 * No metadata changes: the directory's content is what Apply produces, and
 * the record stays an active for Commit to turn into a layer. */
#include <inttypes.h>
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

static bool apply_cancelled(void *ctx)
{
    lcow_snapshotter *s = ctx;
    return atomic_load(&s->cancel_work) || atomic_load(&s->closed);
}

void lcow_snapshotter_cancel_work(lcow_snapshotter *s)
{
    if (s)
        atomic_store(&s->cancel_work, true);
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
        return lcow_error_set(err, LCOW_UNAVAILABLE, "Apply %s: the service is stopping",
                              req->key);

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
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "a layer is already being applied to %s", req->key);
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

    /* 2. Convert, without the lock. */
    char *dir = lcow_snapshotter_dir_of(s, rec.id);
    lcow_layer_apply_result res;
    if (!dir) {
        rc = lcow_snapshotter_oom(err);
    } else {
        lcow_layer_apply_options o = {
            .media_type = req->media_type,
            .digest = req->digest,
            .verity = req->verity,
            .cancelled = apply_cancelled,
            .cancel_ctx = s,
        };
        rc = lcow_layer_apply_blob(req->path, dir, &o, &res, err);
        if (rc == LCOW_ALREADY_EXISTS)
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "snapshot %s already has a " LCOW_LAYER_APPLY_VHD_NAME
                                " (a layer is applied once: remove the snapshot and prepare it "
                                "again)",
                                req->key);
        else if (rc == LCOW_UNAVAILABLE && apply_cancelled(s))
            rc = lcow_error_set(err, LCOW_UNAVAILABLE,
                                "Apply %s cancelled: the service is stopping", req->key);
        else if (rc != LCOW_OK)
            lcow_error_wrap(err, "Apply %s", req->key);
    }
    if (rc == LCOW_OK) {
        lcow_sha256_digest_string(res.diff_id, out->diff_id);
        lcow_sha256_digest_string(res.digest, out->digest);
        out->size = res.blob_bytes;
        out->layer_bytes = res.layer_bytes;
        out->has_verity_root_hash = res.has_root_hash;
        if (res.has_root_hash)
            lcow_sha256_hex(res.root_hash, out->verity_root_hash);
        LCOW_LOGI("Apply %s: %s (%s, %" PRIu64 " bytes, diff_id %s) -> %s, %" PRIu64 " bytes%s",
                  req->key, req->path, lcow_blob_format_name(res.format), res.blob_bytes,
                  out->diff_id, dir, res.layer_bytes, res.has_root_hash ? ", verity" : "");
    }

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
        if (dir && (at_open || !id_applying(s, a.ids[i])))
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
    return first;
}

/* An in-memory stand-in for core/snapshotter.c, for RPC tests that must not
 * depend on the store: keys live in a small sorted table under a mutex. It
 * keeps containerd's snapshotter contract where test_rpc_fake_core.c runs
 * it (snapshotter_contract.c; no filter grammar, Walk holds the lock).
 * Usage of "sleep:<ms>" sleeps (slow-request tests; Usage runs on the
 * worker pool, while Stat may run inline on the server's I/O thread); CreateScratch of a
 * path containing "fail" fails with InvalidArgument. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/os.h"
#include "core/snapshotter.h"
#include "core/os/thread.h"
#include "unit/testlib.h"

#define FAKE_MAX 8192

struct lcow_snapshotter {
    lcow_mutex lock;
    size_t count;
    lcow_info items[FAKE_MAX]; /* sorted by name */
};

lcow_snapshotter *fake_core_new(void)
{
    lcow_snapshotter *s = calloc(1, sizeof *s);
    lcow_mutex_init(&s->lock);
    return s;
}

void fake_core_free(lcow_snapshotter *s)
{
    for (size_t i = 0; i < s->count; i++)
        lcow_info_free(&s->items[i]);
    lcow_mutex_destroy(&s->lock);
    free(s);
}

static size_t find(lcow_snapshotter *s, const char *key, bool *found)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->items[mid].name, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static void make_mounts(const char *key, lcow_kind kind, lcow_mounts *m)
{
    m->count = 1;
    m->items = calloc(1, sizeof *m->items);
    m->items[0].type = strdup("lcow-layer");
    m->items[0].source = strdup(key);
    m->items[0].option_count = 1;
    m->items[0].options = calloc(1, sizeof(char *));
    m->items[0].options[0] = strdup(kind == LCOW_KIND_VIEW ? "ro" : "rw");
}

static lcow_code create(lcow_snapshotter *s, lcow_kind kind, const char *key, const char *parent,
                        const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    if (!key[0])
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "empty key");
    lcow_mutex_lock(&s->lock);
    bool found;
    if (parent && parent[0]) {
        size_t p = find(s, parent, &found);
        if (!found) {
            lcow_mutex_unlock(&s->lock);
            return lcow_error_set(err, LCOW_NOT_FOUND, "parent %s: not found", parent);
        }
        if (s->items[p].kind != LCOW_KIND_COMMITTED) {
            lcow_mutex_unlock(&s->lock);
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "parent %s is not committed", parent);
        }
    }
    size_t at = find(s, key, &found);
    if (found || s->count == FAKE_MAX) {
        lcow_mutex_unlock(&s->lock);
        return lcow_error_set(err, found ? LCOW_ALREADY_EXISTS : LCOW_RESOURCE_EXHAUSTED,
                              "snapshot %s: already exists", key);
    }
    memmove(&s->items[at + 1], &s->items[at], (s->count - at) * sizeof s->items[0]);
    lcow_info *info = &s->items[at];
    memset(info, 0, sizeof *info);
    info->name = strdup(key);
    info->parent = strdup(parent ? parent : "");
    info->kind = kind;
    info->created = info->updated = lcow_os_time_now();
    if (labels)
        lcow_labels_copy(&info->labels, labels);
    s->count++;
    lcow_mutex_unlock(&s->lock);
    make_mounts(key, kind, mounts);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                   const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    return create(s, LCOW_KIND_ACTIVE, key, parent, labels, mounts, err);
}

lcow_code lcow_snapshotter_view(lcow_snapshotter *s, const char *key, const char *parent,
                                const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    return create(s, LCOW_KIND_VIEW, key, parent, labels, mounts, err);
}

lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    lcow_mutex_lock(&s->lock);
    bool found;
    size_t at = find(s, key, &found);
    lcow_kind kind = found ? s->items[at].kind : LCOW_KIND_UNKNOWN;
    lcow_mutex_unlock(&s->lock);
    if (!found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s: not found", key);
    if (kind == LCOW_KIND_COMMITTED)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s is not active or view", key);
    make_mounts(key, kind, mounts);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err)
{
    lcow_mutex_lock(&s->lock);
    bool found;
    find(s, name, &found);
    if (found) {
        lcow_mutex_unlock(&s->lock);
        return lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s: already exists", name);
    }
    size_t at = find(s, key, &found);
    if (!found || s->items[at].kind != LCOW_KIND_ACTIVE) {
        lcow_mutex_unlock(&s->lock);
        return lcow_error_set(err, found ? LCOW_FAILED_PRECONDITION : LCOW_NOT_FOUND,
                              "snapshot %s: %s", key, found ? "not active" : "not found");
    }
    lcow_info old = s->items[at];
    memmove(&s->items[at], &s->items[at + 1], (s->count - at - 1) * sizeof s->items[0]);
    s->count--;
    size_t to = find(s, name, &found);
    memmove(&s->items[to + 1], &s->items[to], (s->count - to) * sizeof s->items[0]);
    lcow_info *info = &s->items[to];
    memset(info, 0, sizeof *info);
    info->name = strdup(name);
    info->parent = old.parent;
    old.parent = NULL;
    info->kind = LCOW_KIND_COMMITTED;
    info->created = info->updated = lcow_os_time_now();
    if (labels)
        lcow_labels_copy(&info->labels, labels);
    s->count++;
    lcow_mutex_unlock(&s->lock);
    lcow_info_free(&old);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    lcow_mutex_lock(&s->lock);
    bool found;
    size_t at = find(s, key, &found);
    if (!found) {
        lcow_mutex_unlock(&s->lock);
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s: not found", key);
    }
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->items[i].parent, key) == 0) {
            lcow_mutex_unlock(&s->lock);
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "cannot remove snapshot with child");
        }
    }
    lcow_info_free(&s->items[at]);
    memmove(&s->items[at], &s->items[at + 1], (s->count - at - 1) * sizeof s->items[0]);
    s->count--;
    lcow_mutex_unlock(&s->lock);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err)
{
    memset(info, 0, sizeof *info);
    lcow_mutex_lock(&s->lock);
    bool found;
    size_t at = find(s, key, &found);
    if (found)
        lcow_info_copy(info, &s->items[at]);
    lcow_mutex_unlock(&s->lock);
    return found ? LCOW_OK : lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s: not found", key);
}

lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < fieldpath_count; i++)
        if (strcmp(fieldpaths[i], "labels") != 0 && strncmp(fieldpaths[i], "labels.", 7) != 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "cannot update %s", fieldpaths[i]);
    lcow_mutex_lock(&s->lock);
    bool found;
    size_t at = find(s, info->name, &found);
    if (!found) {
        lcow_mutex_unlock(&s->lock);
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s: not found", info->name);
    }
    lcow_info *cur = &s->items[at];
    for (size_t i = 0; i <= fieldpath_count; i++) {
        /* No paths or "labels": the labels are replaced. */
        if (i == fieldpath_count ? fieldpath_count == 0 : strcmp(fieldpaths[i], "labels") == 0) {
            lcow_labels_free(&cur->labels);
            lcow_labels_copy(&cur->labels, &info->labels);
        } else if (i < fieldpath_count) {
            const char *k = fieldpaths[i] + 7;
            const char *v = lcow_labels_get(&info->labels, k);
            lcow_labels_set(&cur->labels, k, v ? v : "");
        }
    }
    cur->updated = lcow_os_time_now();
    lcow_info_copy(out, cur);
    lcow_mutex_unlock(&s->lock);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err)
{
    if (strncmp(key, "sleep:", 6) == 0) {
        test_sleep_ms((unsigned)atoi(key + 6));
        usage->size = usage->inodes = 0;
        return LCOW_OK;
    }
    lcow_info info = {0};
    lcow_code code = lcow_snapshotter_stat(s, key, &info, err);
    lcow_info_free(&info);
    usage->size = code == LCOW_OK ? 4096 : 0;
    usage->inodes = code == LCOW_OK ? 1 : 0;
    return code;
}

lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err)
{
    static const lcow_walk_options all;
    if (next)
        *next = NULL;
    if (!opts)
        opts = &all;
    lcow_mutex_lock(&s->lock);
    size_t start = 0, n = 0;
    if (opts->after) {
        bool found;
        start = find(s, opts->after, &found);
        if (found)
            start++;
    }
    for (size_t i = start; i < s->count; i++) {
        if (opts->filter_count && opts->filters[0][0] &&
            strcmp(opts->filters[0], "kind==committed") == 0 &&
            s->items[i].kind != LCOW_KIND_COMMITTED)
            continue;
        if (opts->limit && n == opts->limit) {
            if (next)
                *next = strdup(s->items[i - 1].name);
            break;
        }
        if (fn(ctx, &s->items[i]))
            break;
        n++;
    }
    lcow_mutex_unlock(&s->lock);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err)
{
    return LCOW_OK;
}

/* Status: the kinds counted from the records; nothing on disk. */
lcow_code lcow_snapshotter_status(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    out->layers = -1;
    lcow_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->count; i++) {
        if (s->items[i].kind == LCOW_KIND_ACTIVE)
            out->active++;
        else if (s->items[i].kind == LCOW_KIND_COMMITTED)
            out->committed++;
        else if (s->items[i].kind == LCOW_KIND_VIEW)
            out->view++;
    }
    lcow_mutex_unlock(&s->lock);
    return LCOW_OK;
}

/* Compact: an active "has" a 4 MiB disk that compacts to 3 MiB. */
lcow_code lcow_snapshotter_compact(lcow_snapshotter *s, const char *key,
                                   lcow_compact_summary *summary, lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    lcow_info info = {0};
    lcow_code code = lcow_snapshotter_stat(s, key, &info, err);
    lcow_kind kind = info.kind;
    lcow_info_free(&info);
    if (code != LCOW_OK)
        return code;
    if (kind != LCOW_KIND_ACTIVE)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s has no scratch disk", key);
    *summary = (lcow_compact_summary){.disks = 1, .bytes_before = 4 << 20, .bytes_after = 3 << 20};
    return LCOW_OK;
}

lcow_code lcow_snapshotter_compact_all(lcow_snapshotter *s, lcow_compact_summary *summary,
                                       lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    lcow_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->count; i++)
        if (s->items[i].kind == LCOW_KIND_ACTIVE)
            summary->disks++;
    lcow_mutex_unlock(&s->lock);
    summary->bytes_before = summary->disks * (4 << 20);
    summary->bytes_after = summary->disks * (3 << 20);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_list_layers(lcow_snapshotter *s, lcow_layer_store_list_fn fn, void *ctx,
                                       lcow_error *err)
{
    return LCOW_OK; /* no layer store: nothing stored */
}

lcow_code lcow_snapshotter_prune_layers(lcow_snapshotter *s,
                                        const lcow_layer_store_prune_options *opts,
                                        lcow_layer_store_prune_result *res, lcow_error *err)
{
    memset(res, 0, sizeof *res);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err)
{
    if (strstr(path, "fail"))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: refused", path);
    return LCOW_OK;
}

/* Apply converts nothing: a key that is not an active is refused as the
 * real core refuses it, a path containing "fail" is InvalidArgument, and
 * anything else gets fixed digests. */
lcow_code lcow_snapshotter_apply(lcow_snapshotter *s, const lcow_apply_request *req,
                                 lcow_apply_result *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    lcow_mutex_lock(&s->lock);
    bool found;
    size_t at = find(s, req->key, &found);
    lcow_kind kind = found ? s->items[at].kind : LCOW_KIND_UNKNOWN;
    lcow_mutex_unlock(&s->lock);
    if (!found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s: not found", req->key);
    if (kind != LCOW_KIND_ACTIVE)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s is not active", req->key);
    if (strstr(req->path, "fail"))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: refused", req->path);
    snprintf(out->diff_id, sizeof out->diff_id, "sha256:%064d", 0);
    snprintf(out->digest, sizeof out->digest, "sha256:%064d", 0);
    out->size = strlen(req->path);
    out->layer_bytes = 4096 + 512;
    return LCOW_OK;
}

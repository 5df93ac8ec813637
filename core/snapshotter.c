/* The snapshotter: containerd's contract composed from the metadata store
 * (core/metastore) and the file system (core/os), with the LCOW scratch
 * policy (core/scratch). docs/storage.md describes the ordering rules.
 *
 * This file holds the contract operations (open/close, Prepare/View, reads,
 * Commit, Remove, Update, CreateScratch). Around snapshotter_internal.h:
 * mounts.c builds the mounts, snapshotter_recovery.c sweeps orphans at open
 * and in Cleanup, snapshotter_check.c checks the invariants.
 *
 * Locking: one writer mutex guards metadata read-validate-write and the
 * in-memory reservations (keys being prepared, directories being removed).
 * Slow file work (mkdir + scratch creation, rm -r, usage walks) runs outside
 * it; readers use LevelDB snapshots and never take it. */
#include "core/snapshotter.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/filter.h"
#include "core/os/os.h"
#include "core/snapshotter_internal.h"

/* ---------------------------------------------------------------- helpers */

lcow_code lcow_snapshotter_oom(lcow_error *err)
{
    return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

lcow_code lcow_snapshotter_check_open(lcow_snapshotter *s, lcow_error *err)
{
    if (!s || atomic_load(&s->closed))
        return lcow_error_set(err, LCOW_UNAVAILABLE, "snapshotter is closed");
    return LCOW_OK;
}

lcow_code lcow_snapshotter_enter(lcow_snapshotter *s, lcow_error *err)
{
    if (!s)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "snapshotter is closed");
    atomic_fetch_add(&s->inflight, 1);
    if (atomic_load(&s->closed)) {
        atomic_fetch_sub(&s->inflight, 1);
        lcow_mutex_lock(&s->drain_lock);
        lcow_cond_broadcast(&s->drained);
        lcow_mutex_unlock(&s->drain_lock);
        return lcow_error_set(err, LCOW_UNAVAILABLE, "snapshotter is closed");
    }
    return LCOW_OK;
}

void lcow_snapshotter_leave(lcow_snapshotter *s)
{
    if (atomic_fetch_sub(&s->inflight, 1) == 1 && atomic_load(&s->closed)) {
        lcow_mutex_lock(&s->drain_lock);
        lcow_cond_broadcast(&s->drained);
        lcow_mutex_unlock(&s->drain_lock);
    }
}

char *lcow_snapshotter_dir_of(const lcow_snapshotter *s, uint64_t id)
{
    char name[24];
    snprintf(name, sizeof name, "%" PRIu64, id);
    return lcow_path_join(s->snapshots_dir, name);
}

static char *rm_dir_of(const lcow_snapshotter *s, uint64_t id)
{
    char name[28];
    snprintf(name, sizeof name, "rm-%" PRIu64, id);
    return lcow_path_join(s->snapshots_dir, name);
}

bool lcow_snapshotter_parse_id(const char *name, uint64_t *id)
{
    uint64_t v = 0;
    if (!*name || (name[0] == '0' && name[1]))
        return false;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *id = v;
    return v != 0;
}

static lcow_snapshotter_pending *find_pending(lcow_snapshotter *s, const char *key)
{
    for (size_t i = 0; i < s->pending_count; i++)
        if (strcmp(s->pending[i].key, key) == 0)
            return &s->pending[i];
    return NULL;
}

static bool add_pending(lcow_snapshotter *s, const char *key, const char *parent, uint64_t id,
                        uint64_t disk_id)
{
    if (!lcow_grow(&s->pending, &s->pending_cap, s->pending_count + 1, sizeof *s->pending))
        return false;
    lcow_snapshotter_pending *p = &s->pending[s->pending_count];
    p->key = strdup(key);
    p->parent = strdup(parent ? parent : "");
    p->id = id;
    p->disk_id = disk_id;
    if (!p->key || !p->parent) {
        free(p->key);
        free(p->parent);
        return false;
    }
    s->pending_count++;
    return true;
}

static void drop_pending(lcow_snapshotter *s, const char *key)
{
    lcow_snapshotter_pending *p = find_pending(s, key);
    if (!p)
        return;
    free(p->key);
    free(p->parent);
    *p = s->pending[--s->pending_count];
}

/* Caller holds the lock. */
static bool add_discarding(lcow_snapshotter *s, uint64_t id)
{
    if (!lcow_grow(&s->discarding, &s->discarding_cap, s->discarding_count + 1,
                   sizeof *s->discarding))
        return false;
    s->discarding[s->discarding_count++] = id;
    return true;
}

static void drop_discarding(lcow_snapshotter *s, uint64_t id)
{
    lcow_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->discarding_count; i++)
        if (s->discarding[i] == id) {
            s->discarding[i] = s->discarding[--s->discarding_count];
            break;
        }
    lcow_mutex_unlock(&s->lock);
}

/* Removes a snapshot directory the metadata no longer names: rename to
 * rm-<id> (so a crash mid-delete leaves an obvious orphan), then delete. A
 * deletion a held file stops is queued (snapshotter_removal.c); the sweeps
 * at open and in Cleanup reclaim whatever else is left. */
static void discard_dir(lcow_snapshotter *s, uint64_t id)
{
    char *dir = lcow_snapshotter_dir_of(s, id), *rm = rm_dir_of(s, id);
    lcow_error e;
    if (!dir || !rm) {
        LCOW_LOGW("snapshot directory %" PRIu64 " left for cleanup (out of memory)", id);
    } else if (lcow_os_rename(dir, rm, &e) == LCOW_OK) {
        /* The removal name is durable before anything is deleted. */
        if (!s->no_sync && lcow_os_sync_dir(s->snapshots_dir, &e) != LCOW_OK)
            LCOW_LOGW("syncing %s: %s", s->snapshots_dir, e.message);
        lcow_snapshotter_delete_or_queue(s, rm, NULL);
    } else if (e.code != LCOW_NOT_FOUND) {
        /* Windows refuses to rename a directory with a file held open in
         * it: delete (or queue) it under its own name. */
        LCOW_LOGD("renaming %s for removal failed (%s); deleting in place", dir, e.message);
        lcow_snapshotter_delete_or_queue(s, dir, NULL);
    }
    free(dir);
    free(rm);
}

/* The LevelDB directory: Wine's ReplaceFileW needs backslashes. */
static char *meta_path(const char *root)
{
    char *path = lcow_path_join(root, "meta");
    if (path && LCOW_PATH_SEP == '\\')
        for (char *p = path; *p; p++)
            if (*p == '/')
                *p = '\\';
    return path;
}

/* The state directory is lcowsnap's own: the root and every directory the
 * store keeps in it (snapshots/, tmp/, meta/, partitions/<name>/) must be a
 * real directory or absent, never a symbolic link (reparse point), a FIFO,
 * a device or a file someone put there: the store would otherwise follow a
 * planted link out of its root or block on a FIFO. Checked before anything
 * is created (issue 14, item 3); FAILED_PRECONDITION naming the entry. */
static lcow_code check_state_path(const char *root, const char *path, lcow_error *err)
{
    size_t root_len = strlen(root), len = strlen(path);
    char *buf = strdup(path);
    if (!buf)
        return lcow_snapshotter_oom(err);
    lcow_code rc = LCOW_OK;
    /* The root, then each prefix of path below it that ends a component. */
    for (size_t i = root_len <= len ? root_len : len; i <= len && rc == LCOW_OK; i++) {
        if (i < len && buf[i] != '/' && buf[i] != LCOW_PATH_SEP)
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        lcow_stat st;
        lcow_error e;
        if (lcow_os_stat(buf, &st, &e) != LCOW_OK)
            rc = lcow_error_set(err, e.code, "state directory: %s", e.message);
        else if (!st.exists)
            break; /* nothing below a missing directory exists either */
        else if (!st.is_dir)
            rc = lcow_error_set(
                err, LCOW_FAILED_PRECONDITION,
                "state directory: %s is %s, not a directory; lcowsnap neither follows nor "
                "replaces what it did not create in its root: remove it%s",
                buf, lcow_os_stat_kind(&st),
                i == root_len && st.is_link ? ", or pass the directory it points to as --root"
                                            : "");
        buf[i] = saved;
    }
    free(buf);
    return rc;
}

/* Opens the metadata and directories under dir (the root, or a partition's
 * directory); scratch: the base store's scratch policy for a partition,
 * NULL to open the root's own. */
static lcow_code open_in(const lcow_snapshotter_config *config, const char *dir,
                         lcow_scratch *scratch, lcow_snapshotter **out, lcow_error *err)
{
    *out = NULL;
    lcow_snapshotter *s = calloc(1, sizeof *s);
    if (!s)
        return lcow_snapshotter_oom(err);
    lcow_mutex_init(&s->lock);
    lcow_mutex_init(&s->drain_lock);
    lcow_cond_init(&s->drained);
    lcow_mutex_init(&s->removal_lock);
    lcow_cond_init(&s->removal_wake);
    s->removal_retry_ms = config->removal_retry_ms;
    s->on_removal_queued = config->on_removal_queued;
    s->removal_ctx = config->removal_ctx;
    s->on_compacted = config->on_compacted;
    s->compacted_ctx = config->compacted_ctx;
    atomic_init(&s->inflight, 0);
    atomic_init(&s->closed, false);
    atomic_init(&s->cancel_work, false);
    s->no_scratch = config->no_scratch;
    s->no_sync = config->no_sync;
    s->partition = scratch != NULL;
    s->scratch = scratch;
    s->root = strdup(config->root);
    s->snapshots_dir = lcow_path_join(dir, "snapshots");
    s->tmp_dir = lcow_path_join(dir, "tmp");
    char *meta = meta_path(dir);
    lcow_code rc =
        s->root && s->snapshots_dir && s->tmp_dir && meta ? LCOW_OK : lcow_snapshotter_oom(err);
    if (rc == LCOW_OK)
        rc = check_state_path(s->root, s->snapshots_dir, err);
    if (rc == LCOW_OK)
        rc = check_state_path(s->root, s->tmp_dir, err);
    if (rc == LCOW_OK)
        rc = check_state_path(s->root, meta, err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(s->snapshots_dir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(s->tmp_dir, err);
    if (rc == LCOW_OK) {
        lcow_metastore_options mo = {.no_sync = config->no_sync};
        rc = lcow_metastore_open(meta, &mo, &s->ms, err);
    }
    if (rc == LCOW_OK && !s->partition) {
        lcow_layer_store_options lo = {.max_unreferenced_bytes = config->layer_cache_max_bytes,
                                       .no_sync = config->no_sync};
        rc = lcow_layer_store_open(s->root, &lo, &s->layers, err);
    }
    if (rc == LCOW_OK && !s->partition)
        rc = lcow_scratch_create(s->root, config->scratch_backend, config->scratch_format_from_gb,
                                 config->scratch_dir_allow, config->scratch_dir_allow_count,
                                 &s->scratch, err);
    /* Crash recovery: orphans of an interrupted Prepare or Remove. */
    if (rc == LCOW_OK && (rc = lcow_snapshotter_sweep_orphans(s, true, err)) != LCOW_OK)
        lcow_error_wrap(err, "recovering %s", s->root);
    free(meta);
    if (rc != LCOW_OK) {
        lcow_snapshotter_free(s);
        return rc;
    }
    *out = s;
    return LCOW_OK;
}

lcow_code lcow_snapshotter_open(const lcow_snapshotter_config *config, lcow_snapshotter **out,
                                lcow_error *err)
{
    *out = NULL;
    if (!config || !config->root || !lcow_path_is_absolute(config->root))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "snapshotter root must be an absolute path (got \"%s\")",
                              config && config->root ? config->root : "");
    return open_in(config, config->root, NULL, out, err);
}

lcow_code lcow_snapshotter_open_partition(lcow_snapshotter *base, const char *name,
                                          lcow_snapshotter **out, lcow_error *err)
{
    *out = NULL;
    size_t n = name ? strlen(name) : 0;
    bool ok = n >= 1 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
             name[i] == '-';
    if (!ok)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "partition name \"%s\": 1 to 64 of a-z, 0-9 and -", name ? name : "");
    if (base->partition)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "a partition has no partitions");
    lcow_code rc = lcow_snapshotter_check_open(base, err);
    if (rc != LCOW_OK)
        return rc;
    char *parts = lcow_path_join(base->root, "partitions");
    char *dir = parts ? lcow_path_join(parts, name) : NULL;
    free(parts);
    if (!dir)
        return lcow_snapshotter_oom(err);
    lcow_snapshotter_config config = {
        .root = base->root,
        .no_sync = base->no_sync,
        .no_scratch = base->no_scratch,
        .removal_retry_ms = base->removal_retry_ms,
        .on_removal_queued = base->on_removal_queued,
        .removal_ctx = base->removal_ctx,
        .on_compacted = base->on_compacted,
        .compacted_ctx = base->compacted_ctx,
    };
    rc = open_in(&config, dir, base->scratch, out, err);
    if (rc != LCOW_OK)
        lcow_error_wrap(err, "partition %s", name);
    free(dir);
    if (rc == LCOW_OK)
        (*out)->layers = base->layers;
    return rc;
}

lcow_code lcow_snapshotter_close(lcow_snapshotter *s)
{
    if (!s)
        return LCOW_OK;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&s->closed, &expected, true))
        return LCOW_OK;
    /* New calls now fail with Unavailable; wait for running ones. */
    lcow_mutex_lock(&s->drain_lock);
    while (atomic_load(&s->inflight) > 0)
        lcow_cond_wait(&s->drained, &s->drain_lock);
    lcow_mutex_unlock(&s->drain_lock);
    lcow_snapshotter_removal_stop(s);
    lcow_mutex_lock(&s->lock);
    lcow_metastore_close(s->ms);
    s->ms = NULL;
    if (!s->partition) { /* a partition's are its base store's */
        lcow_scratch_destroy(s->scratch);
        lcow_layer_store_close(s->layers);
    }
    s->scratch = NULL;
    s->layers = NULL;
    lcow_mutex_unlock(&s->lock);
    return LCOW_OK;
}

void lcow_snapshotter_free(lcow_snapshotter *s)
{
    if (!s)
        return;
    lcow_snapshotter_close(s);
    for (size_t i = 0; i < s->pending_count; i++) {
        free(s->pending[i].key);
        free(s->pending[i].parent);
    }
    free(s->pending);
    free(s->discarding);
    for (size_t i = 0; i < s->applying_count; i++)
        free(s->applying[i].key);
    free(s->applying);
    lcow_snapshotter_removal_free(s);
    lcow_cond_destroy(&s->removal_wake);
    lcow_mutex_destroy(&s->removal_lock);
    lcow_mutex_destroy(&s->lock);
    lcow_cond_destroy(&s->drained);
    lcow_mutex_destroy(&s->drain_lock);
    free(s->root);
    free(s->snapshots_dir);
    free(s->tmp_dir);
    free(s);
}

/* ---------------------------------------------------------------- prepare/view */

typedef struct owner_search {
    lcow_snapshotter *s;
    lcow_meta_record best;
    bool have;
    char *seen_kind_key; /* first key seen, for the error message */
    lcow_kind seen_kind;
    lcow_code rc;
    lcow_error *err;
} owner_search;

static int owner_candidate(void *ctx, const char *key)
{
    owner_search *o = ctx;
    lcow_meta_record rec;
    lcow_code rc = lcow_metastore_get(o->s->ms, NULL, key, &rec, o->err);
    if (rc != LCOW_OK) {
        o->rc = rc;
        return 1;
    }
    if (!o->seen_kind_key) {
        o->seen_kind_key = strdup(key);
        o->seen_kind = rec.kind;
    }
    if (rec.kind == LCOW_KIND_ACTIVE && rec.scratch != LCOW_META_SCRATCH_NONE && !o->have) {
        o->best = rec;
        o->have = true;
        return 1;
    }
    lcow_meta_record_free(&rec);
    return 0;
}

/* Resolves the owner of a shared scratch (exact client key, same namespace
 * as key) to the id whose directory holds the disk. Caller holds the lock. */
static lcow_code resolve_owner(lcow_snapshotter *s, const char *key, const char *owner_client,
                               uint64_t *disk_id, lcow_error *err)
{
    const char *client;
    size_t ns_len;
    if (!owner_client || !*owner_client)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "shared scratch needs an owner key");
    lcow_key_split(key, &client, &ns_len);
    owner_search o = {.s = s, .rc = LCOW_OK, .err = err};
    lcow_code rc = lcow_metastore_find_client_key(s->ms, NULL, key, ns_len, owner_client,
                                                  owner_candidate, &o, err);
    if (rc == LCOW_OK)
        rc = o.rc;
    if (rc == LCOW_OK && !o.have) {
        if (!o.seen_kind_key)
            rc = lcow_error_set(err, LCOW_NOT_FOUND,
                                "scratch owner \"%s\" not found in namespace \"%.*s\"",
                                owner_client, (int)ns_len, key);
        else
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "scratch owner \"%s\" (%s) is %s without a scratch disk: only an "
                                "active snapshot with a sandbox.vhdx can be shared",
                                owner_client, o.seen_kind_key, lcow_kind_name(o.seen_kind));
    }
    if (rc == LCOW_OK)
        *disk_id = o.best.scratch == LCOW_META_SCRATCH_OWN ? o.best.id : o.best.disk_id;
    free(o.seen_kind_key);
    lcow_meta_record_free(&o.best);
    return rc;
}

static lcow_code validate_create_args(const char *key, const char *parent,
                                      const lcow_labels *labels, lcow_error *err)
{
    lcow_code rc = lcow_metastore_validate_key("snapshot key", key, err);
    if (rc == LCOW_OK && parent && *parent)
        rc = lcow_metastore_validate_key("parent", parent, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_labels(labels, err);
    return rc;
}

/* Mounts of a snapshot just written, read under the writer lock so that a
 * concurrent Remove cannot make a successful Prepare report NotFound. Only
 * an allocation can fail here; the record then stays (as any Prepare whose
 * reply is lost) and Mounts returns the same list. */
static lcow_code mounts_of_new(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                               lcow_error *err)
{
    if (!mounts)
        return LCOW_OK;
    lcow_meta_record rec;
    lcow_code rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_build_mounts(s, NULL, &rec, mounts, err);
    lcow_meta_record_free(&rec);
    return rc;
}

static lcow_code create_snapshot_impl(lcow_snapshotter *s, lcow_kind kind, const char *key,
                                      const char *parent, const lcow_labels *labels,
                                      lcow_mounts *mounts, lcow_error *err)
{
    if (mounts)
        memset(mounts, 0, sizeof *mounts);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = validate_create_args(key, parent, labels, err);
    if (rc != LCOW_OK)
        return rc;

    /* Labels decide the scratch; every label is validated before anything
     * is created. */
    lcow_scratch_plan plan = {0};
    if (kind == LCOW_KIND_ACTIVE && s->scratch && !s->no_scratch) {
        rc = lcow_scratch_plan_for(s->scratch, kind, key, labels, &plan, err);
        if (rc != LCOW_OK)
            return rc;
    }

    lcow_meta_create req = {
        .key = key, .parent = parent, .kind = kind, .labels = labels, .scratch = plan.mode};
    char *dir = NULL;
    bool reserved = false;

    /* Phase 1, under the lock: validate and reserve. */
    lcow_mutex_lock(&s->lock);
    rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK) {
        /* The shared disk is resolved below; the metadata checks come first. */
        lcow_meta_create first = req;
        first.scratch = LCOW_META_SCRATCH_NONE;
        rc = lcow_metastore_check_insert(s->ms, &first, NULL, err);
    }
    if (rc == LCOW_OK && find_pending(s, key))
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (being prepared)",
                            key);
    if (rc == LCOW_OK && req.scratch == LCOW_META_SCRATCH_SHARED)
        rc = resolve_owner(s, key, plan.owner_key, &req.disk_id, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_next_id(s->ms, &req.id, err);
    if (rc == LCOW_OK && kind == LCOW_KIND_VIEW) {
        /* Views have no files: one step. */
        rc = lcow_metastore_insert(s->ms, &req, NULL, err);
        if (rc == LCOW_OK)
            rc = mounts_of_new(s, key, mounts, err);
        lcow_mutex_unlock(&s->lock);
        goto done;
    }
    if (rc == LCOW_OK) {
        reserved = add_pending(s, key, parent, req.id, req.disk_id);
        if (!reserved)
            rc = lcow_snapshotter_oom(err);
    }
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK)
        goto done;

    /* Files, without the lock: the directory exists (and is durable)
     * before any metadata names it. */
    dir = lcow_snapshotter_dir_of(s, req.id);
    if (!dir)
        rc = lcow_snapshotter_oom(err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir(dir, err);
    /* Ids are never reused, so an entry already at this id is foreign (put
     * there by hand or by an older bug): skip to the next id rather than
     * answer AlreadyExists for a key that does not exist (issue 14, item 6). */
    for (int skips = 0; rc == LCOW_ALREADY_EXISTS && skips < 64; skips++) {
        LCOW_LOGW("%s is not lcowsnap's (no snapshot has id %" PRIu64
                  "); leaving it and using the next id for %s",
                  dir, req.id, key);
        free(dir);
        dir = NULL;
        lcow_mutex_lock(&s->lock);
        uint64_t next = 0;
        rc = lcow_metastore_next_id(s->ms, &next, err);
        lcow_snapshotter_pending *p = rc == LCOW_OK ? find_pending(s, key) : NULL;
        if (p) {
            p->id = next;
            req.id = next;
        } else if (rc == LCOW_OK) {
            rc = lcow_error_set(err, LCOW_INTERNAL, "prepare %s: its reservation vanished", key);
        }
        lcow_mutex_unlock(&s->lock);
        if (rc == LCOW_OK && !(dir = lcow_snapshotter_dir_of(s, req.id)))
            rc = lcow_snapshotter_oom(err);
        if (rc == LCOW_OK)
            rc = lcow_os_mkdir(dir, err);
    }
    bool made_dir = rc == LCOW_OK;
    if (rc == LCOW_OK && plan.mode == LCOW_META_SCRATCH_OWN)
        rc = lcow_scratch_create_own(s->scratch, &plan, dir, err);
    if (rc == LCOW_OK && plan.mode == LCOW_META_SCRATCH_SHARED) {
        char *disk_dir = lcow_snapshotter_dir_of(s, req.disk_id);
        char *disk = disk_dir ? lcow_path_join(disk_dir, LCOW_SANDBOX_NAME) : NULL;
        rc =
            disk ? lcow_scratch_link_shared(s->scratch, disk, dir, err) : lcow_snapshotter_oom(err);
        free(disk);
        free(disk_dir);
    }
    /* The new directory's own entries matter only when it holds a disk;
     * its name in snapshots/ always does. */
    if (rc == LCOW_OK && plan.mode != LCOW_META_SCRATCH_NONE)
        rc = lcow_os_sync_dir(dir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_sync_dir(s->snapshots_dir, err);

    /* Phase 2, under the lock: re-validate and write the one batch. */
    lcow_mutex_lock(&s->lock);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_insert(s->ms, &req, NULL, err);
    bool recorded = rc == LCOW_OK;
    if (recorded)
        rc = mounts_of_new(s, key, mounts, err);
    drop_pending(s, key);
    lcow_mutex_unlock(&s->lock);
    if (!recorded && made_dir) {
        lcow_error e;
        if (lcow_os_remove_all(dir, &e) != LCOW_OK)
            LCOW_LOGW("prepare %s failed and its directory %s could not be removed (%s); "
                      "cleanup will remove it",
                      key, dir, e.message);
    }

done:
    free(dir);
    lcow_scratch_plan_free(&plan);
    return rc;
}

/* ---------------------------------------------------------------- reads */

static lcow_code mounts_impl(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                             lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_view *view = lcow_metastore_view_begin(s->ms);
    if (!view)
        return lcow_snapshotter_oom(err);
    lcow_meta_record rec;
    rc = lcow_metastore_get(s->ms, view, key, &rec, err);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_build_mounts(s, view, &rec, mounts, err);
    lcow_meta_record_free(&rec);
    lcow_metastore_view_end(s->ms, view);
    return rc;
}

static lcow_code stat_impl(lcow_snapshotter *s, const char *key, lcow_info *info, lcow_error *err)
{
    memset(info, 0, sizeof *info);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc != LCOW_OK)
        return rc;
    /* Move, not copy: the record's strings become the Info's. */
    info->name = rec.key;
    info->parent = rec.parent;
    info->kind = rec.kind;
    info->labels = rec.labels;
    info->created = rec.created;
    info->updated = rec.updated;
    return LCOW_OK;
}

/* The usage of an active's directory. The key exists, so a directory that
 * is gone (deleted by hand) is FailedPrecondition naming it, not NotFound. */
static lcow_code active_usage(lcow_snapshotter *s, uint64_t id, lcow_usage *usage, lcow_error *err)
{
    char *dir = lcow_snapshotter_dir_of(s, id);
    if (!dir)
        return lcow_snapshotter_oom(err);
    lcow_code rc = lcow_os_usage(dir, &usage->size, &usage->inodes, err);
    if (rc == LCOW_NOT_FOUND) {
        lcow_stat st;
        if (lcow_os_stat(dir, &st, NULL) == LCOW_OK && !st.exists)
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "the snapshot directory %s is missing (removed outside lcowsnap?)",
                                dir);
    }
    free(dir);
    return rc;
}

static lcow_code usage_impl(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                            lcow_error *err)
{
    memset(usage, 0, sizeof *usage);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc != LCOW_OK)
        return rc;
    if (rec.kind == LCOW_KIND_COMMITTED) {
        *usage = rec.usage;
    } else if (rec.kind == LCOW_KIND_ACTIVE) {
        rc = active_usage(s, rec.id, usage, err);
        if (rc != LCOW_OK)
            lcow_error_wrap(err, "usage of %s", key);
        else
            lcow_snapshotter_ext4_usage(s, &rec, usage);
    }
    lcow_meta_record_free(&rec);
    return rc;
}

typedef struct walk_state {
    const lcow_filter *filter;
    lcow_walk_fn fn;
    void *ctx;
    size_t limit, delivered;
    char *last;
    bool more;
    bool stopped;
    bool failed;
} walk_state;

static int walk_record(void *ctx, const lcow_meta_record *rec)
{
    walk_state *w = ctx;
    /* Borrowed from the walk's record: no copy per snapshot. */
    lcow_info info = {.name = rec->key,
                      .parent = rec->parent,
                      .kind = rec->kind,
                      .labels = rec->labels,
                      .created = rec->created,
                      .updated = rec->updated};
    int stop = 0;
    if (lcow_filter_match_info(w->filter, &info)) {
        if (w->limit && w->delivered == w->limit) {
            w->more = true; /* a further match exists: hand out a cursor */
            stop = 1;
        } else {
            w->delivered++;
            if (w->fn(w->ctx, &info)) {
                w->stopped = true;
                stop = 1;
            } else if (w->limit) {
                free(w->last);
                w->last = strdup(rec->key);
                if (!w->last) {
                    w->failed = true;
                    stop = 1;
                }
            }
        }
    }
    return stop;
}

static lcow_code walk_impl(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                           void *ctx, char **next, lcow_error *err)
{
    if (next)
        *next = NULL;
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_filter *filter = NULL;
    rc =
        lcow_filter_parse(opts ? opts->filters : NULL, opts ? opts->filter_count : 0, &filter, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_view *view = lcow_metastore_view_begin(s->ms);
    if (!view) {
        lcow_filter_free(filter);
        return lcow_snapshotter_oom(err);
    }
    walk_state w = {.filter = filter, .fn = fn, .ctx = ctx, .limit = opts ? opts->limit : 0};
    rc = lcow_metastore_walk(s->ms, view, opts ? opts->after : NULL, walk_record, &w, err);
    lcow_metastore_view_end(s->ms, view);
    lcow_filter_free(filter);
    if (rc == LCOW_OK && w.failed)
        rc = lcow_snapshotter_oom(err);
    if (rc == LCOW_OK && w.more && next) {
        *next = w.last;
        w.last = NULL;
    }
    free(w.last);
    return rc;
}

/* ---------------------------------------------------------------- commit */

static lcow_code commit_impl(lcow_snapshotter *s, const char *name, const char *key,
                             const lcow_labels *labels, const char *parent, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_key("snapshot name", name, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_labels(labels, err);
    if (rc != LCOW_OK)
        return rc;

    /* Measure the active's directory before taking the lock (a walk of the
     * tree is slow); the id is checked again under the lock. */
    lcow_usage usage = {0};
    uint64_t measured_id = 0;
    lcow_code usage_rc = LCOW_OK;
    lcow_error usage_err = {0};
    lcow_meta_record rec;
    if (key && *key && lcow_metastore_get(s->ms, NULL, key, &rec, NULL) == LCOW_OK) {
        if (rec.kind == LCOW_KIND_ACTIVE) {
            usage_rc = active_usage(s, rec.id, &usage, &usage_err);
            measured_id = rec.id;
        }
        lcow_meta_record_free(&rec);
    }

    lcow_mutex_lock(&s->lock);
    rc = lcow_snapshotter_check_open(s, err);
    uint64_t id = 0;
    if (rc == LCOW_OK && find_pending(s, name))
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (being prepared)",
                            name);
    if (rc == LCOW_OK && key && lcow_snapshotter_find_applying(s, key))
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "cannot commit %s now: a layer is being applied to it", key);
    if (rc == LCOW_OK)
        rc = lcow_metastore_check_commit(s->ms, name, key ? key : "", labels, parent, &id, err);
    if (rc == LCOW_OK && id != measured_id) {
        /* The key was replaced between the measurement and the lock. */
        usage_rc = active_usage(s, id, &usage, &usage_err);
    }
    if (rc == LCOW_OK && usage_rc != LCOW_OK) {
        if (err)
            *err = usage_err;
        rc = lcow_error_wrap(err, "commit %s: measuring usage", key);
    }
    /* The layer labels Apply recorded on the active go with it. */
    lcow_labels merged;
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_merge_layer_labels(s, key, labels, &merged, err);
    if (rc == LCOW_OK) {
        rc = lcow_metastore_commit(s->ms, name, key, &merged, parent, &usage, err);
        lcow_labels_free(&merged);
    }
    lcow_mutex_unlock(&s->lock);
    return rc;
}

/* ---------------------------------------------------------------- remove */

/* The shared-disk id a record holds a reference on (0 = none). While a
 * Prepare is linking to that disk, removing the record could free it. */
static uint64_t disk_of(const lcow_meta_record *rec)
{
    if (rec->scratch == LCOW_META_SCRATCH_OWN)
        return rec->id;
    if (rec->scratch == LCOW_META_SCRATCH_SHARED)
        return rec->disk_id;
    return 0;
}

static lcow_code remove_impl(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_remove_effect effect;
    lcow_mutex_lock(&s->lock);
    rc = lcow_snapshotter_check_open(s, err);
    lcow_meta_record rec;
    if (rc == LCOW_OK)
        rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc == LCOW_OK) {
        if (lcow_snapshotter_find_applying(s, key))
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "cannot remove snapshot %s now: a layer is being applied to it",
                                key);
        for (size_t i = 0; i < s->pending_count && rc == LCOW_OK; i++) {
            if (strcmp(s->pending[i].parent, key) == 0)
                rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                    "cannot remove snapshot with child: %s is the parent of %s, "
                                    "being prepared",
                                    key, s->pending[i].key);
            else if (s->pending[i].disk_id && s->pending[i].disk_id == disk_of(&rec))
                rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                    "cannot remove snapshot %s now: %s is being prepared to share "
                                    "its scratch",
                                    key, s->pending[i].key);
        }
        lcow_meta_record_free(&rec);
    }
    if (rc == LCOW_OK)
        rc = lcow_metastore_remove(s->ms, key, &effect, err);
    /* Claim the directories before the lock goes, so a concurrent Cleanup
     * does not delete them under our feet (an unclaimed one is an orphan
     * that Cleanup removes instead). */
    bool own = rc == LCOW_OK && effect.delete_own_dir && effect.kind != LCOW_KIND_VIEW;
    bool own_claimed = own && add_discarding(s, effect.id);
    bool disk_claimed = rc == LCOW_OK && effect.freed_disk && add_discarding(s, effect.freed_disk);
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK)
        return rc;
    /* Metadata is gone: the directories are orphans from here on, so a
     * failure below only leaves work for Cleanup. */
    if (own)
        discard_dir(s, effect.id);
    if (effect.freed_disk)
        discard_dir(s, effect.freed_disk);
    if (own_claimed)
        drop_discarding(s, effect.id);
    if (disk_claimed)
        drop_discarding(s, effect.freed_disk);
    return LCOW_OK;
}

/* ---------------------------------------------------------------- update */

static lcow_code update_impl(lcow_snapshotter *s, const lcow_info *info,
                             const char *const *fieldpaths, size_t fieldpath_count, lcow_info *out,
                             lcow_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK && (!info || !info->name || !*info->name))
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "snapshot name must not be empty");
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_labels(&info->labels, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    lcow_mutex_lock(&s->lock);
    rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_update(s->ms, info, fieldpaths, fieldpath_count, &rec, err);
    lcow_mutex_unlock(&s->lock);
    bool updated = rc == LCOW_OK;
    if (rc == LCOW_OK && out && !lcow_meta_record_to_info(&rec, out))
        rc = lcow_snapshotter_oom(err);
    if (updated) /* also when the copy for the answer ran out of memory */
        lcow_meta_record_free(&rec);
    return rc;
}

/* ---------------------------------------------------------------- create scratch */

/* The file side is the scratch policy's (lcow_scratch_create_at); this
 * call touches no metadata. */
static lcow_code create_scratch_impl(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                     uint32_t block_size_mb, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    return lcow_scratch_create_at(s->scratch, path, size_gb, block_size_mb, err);
}

/* ---------------------------------------------------------------- public calls */

static lcow_code create_snapshot(lcow_snapshotter *s, lcow_kind kind, const char *key,
                                 const char *parent, const lcow_labels *labels, lcow_mounts *mounts,
                                 lcow_error *err)
{
    if (mounts)
        memset(mounts, 0, sizeof *mounts);
    lcow_code rc = lcow_snapshotter_enter(s, err);
    if (rc != LCOW_OK)
        return rc;
    /* An extraction Prepare of a layer the layer store has: containerd's
     * remote-snapshot answer (snapshotter_remote.c). */
    bool handled = false;
    if (kind == LCOW_KIND_ACTIVE && (rc = lcow_snapshotter_check_open(s, err)) == LCOW_OK &&
        (rc = validate_create_args(key, parent, labels, err)) == LCOW_OK)
        rc = lcow_snapshotter_remote_prepare(s, key, parent, labels, &handled, err);
    if (rc == LCOW_OK && !handled)
        rc = create_snapshot_impl(s, kind, key, parent, labels, mounts, err);
    lcow_snapshotter_leave(s);
    return rc;
}

/* For snapshotter_remote.c, inside a call already entered: a committed
 * snapshot recorded whole, as Prepare records an active (reserve under the
 * lock; the directory made, filled and synced without it; one synced batch
 * under it), in one batch instead of a Prepare's and a Commit's. */
lcow_code lcow_snapshotter_insert_layer_in_call(lcow_snapshotter *s, const char *name,
                                                const char *parent, const lcow_labels *labels,
                                                lcow_snapshotter_fill_fn fill, void *ctx,
                                                lcow_error *err)
{
    lcow_meta_create req = {
        .key = name, .parent = parent, .kind = LCOW_KIND_COMMITTED, .labels = labels};
    lcow_mutex_lock(&s->lock);
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_check_insert(s->ms, &req, NULL, err);
    if (rc == LCOW_OK && find_pending(s, name))
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (being prepared)",
                            name);
    if (rc == LCOW_OK)
        rc = lcow_metastore_next_id(s->ms, &req.id, err);
    if (rc == LCOW_OK && !add_pending(s, name, parent, req.id, 0))
        rc = lcow_snapshotter_oom(err);
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK)
        return rc;

    /* The directory is complete and durable before any metadata names it. */
    char *dir = lcow_snapshotter_dir_of(s, req.id);
    rc = dir ? lcow_os_mkdir(dir, err) : lcow_snapshotter_oom(err);
    bool made_dir = rc == LCOW_OK;
    if (rc == LCOW_OK)
        rc = fill(ctx, dir, err);
    if (rc == LCOW_OK)
        rc = active_usage(s, req.id, &req.usage, err);
    if (rc == LCOW_OK)
        rc = lcow_os_sync_dir(s->snapshots_dir, err);

    lcow_mutex_lock(&s->lock);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_insert(s->ms, &req, NULL, err);
    drop_pending(s, name);
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK && made_dir) {
        lcow_error e;
        if (lcow_os_remove_all(dir, &e) != LCOW_OK)
            LCOW_LOGW("%s was not recorded and its directory %s could not be removed (%s); "
                      "cleanup will remove it",
                      name, dir, e.message);
    }
    free(dir);
    return rc;
}

lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    LCOW_SNAPSHOTTER_CALL(s, err, mounts_impl(s, key, mounts, err));
}

lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err)
{
    memset(info, 0, sizeof *info);
    LCOW_SNAPSHOTTER_CALL(s, err, stat_impl(s, key, info, err));
}

lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err)
{
    memset(usage, 0, sizeof *usage);
    LCOW_SNAPSHOTTER_CALL(s, err, usage_impl(s, key, usage, err));
}

lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err)
{
    if (next)
        *next = NULL;
    LCOW_SNAPSHOTTER_CALL(s, err, walk_impl(s, opts, fn, ctx, next, err));
}

lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, commit_impl(s, name, key, labels, parent, err));
}

lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, remove_impl(s, key, err));
}

lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    LCOW_SNAPSHOTTER_CALL(s, err, update_impl(s, info, fieldpaths, fieldpath_count, out, err));
}

lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, create_scratch_impl(s, path, size_gb, block_size_mb, err));
}

lcow_code lcow_snapshotter_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                   const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    return create_snapshot(s, LCOW_KIND_ACTIVE, key, parent, labels, mounts, err);
}

lcow_code lcow_snapshotter_view(lcow_snapshotter *s, const char *key, const char *parent,
                                const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    return create_snapshot(s, LCOW_KIND_VIEW, key, parent, labels, mounts, err);
}

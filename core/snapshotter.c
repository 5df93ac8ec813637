/* The snapshotter: containerd's contract composed from the metadata store
 * (core/metastore) and the file system (core/os), with the LCOW scratch
 * policy (core/scratch). docs/storage.md describes the ordering rules.
 *
 * Locking: one writer mutex guards metadata read-validate-write and the
 * in-memory reservations (keys being prepared). Slow file work (mkdir +
 * scratch creation, rm -r, usage walks) runs outside it; readers use
 * LevelDB snapshots and never take it. */
#include "core/snapshotter.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/filter.h"
#include "core/base/log.h"
#include "core/metastore.h"
#include "core/os/os.h"
#include "core/scratch.h"
#include "core/snapshotter_internal.h"
#include "core/os/thread.h"

/* A Prepare between its two phases: the key is reserved, its directory is
 * being built, its parent and shared disk must not go away. */
typedef struct pending {
    char *key;
    char *parent;
    uint64_t id;
    uint64_t disk_id; /* shared disk it links to, 0 = none */
} pending;

struct lcow_snapshotter {
    char *root;
    char *snapshots_dir;
    char *tmp_dir;
    lcow_metastore *ms;
    lcow_scratch *scratch;
    lcow_mutex lock; /* writer lock */
    atomic_bool closed;
    pending *pending;
    size_t pending_count, pending_cap;
    /* Ids whose directories a Remove is deleting right now (outside the
     * lock): Cleanup leaves <id> and rm-<id> of these to it. */
    uint64_t *discarding;
    size_t discarding_count, discarding_cap;
    bool no_scratch;
    /* Calls in progress; close waits for them to drain. */
    atomic_uint inflight;
    lcow_mutex drain_lock;
    lcow_cond drained;
};

/* ---------------------------------------------------------------- helpers */

static lcow_code oom(lcow_error *err)
{
    return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

static lcow_code check_open(lcow_snapshotter *s, lcow_error *err)
{
    if (!s || atomic_load(&s->closed))
        return lcow_error_set(err, LCOW_UNAVAILABLE, "snapshotter is closed");
    return LCOW_OK;
}

/* Every public call runs between enter and leave, so close never frees the
 * store under a running call (the read path only touches an atomic). */
static lcow_code enter(lcow_snapshotter *s, lcow_error *err)
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

static void leave(lcow_snapshotter *s)
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

/* Parses a decimal id directory name ("17"); false for anything else. */
static bool parse_id(const char *name, uint64_t *id)
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

static pending *find_pending(lcow_snapshotter *s, const char *key)
{
    for (size_t i = 0; i < s->pending_count; i++)
        if (strcmp(s->pending[i].key, key) == 0)
            return &s->pending[i];
    return NULL;
}

static bool add_pending(lcow_snapshotter *s, const char *key, const char *parent, uint64_t id,
                        uint64_t disk_id)
{
    if (s->pending_count == s->pending_cap) {
        size_t cap = s->pending_cap ? s->pending_cap * 2 : 8;
        pending *grown = realloc(s->pending, cap * sizeof *grown);
        if (!grown)
            return false;
        s->pending = grown;
        s->pending_cap = cap;
    }
    pending *p = &s->pending[s->pending_count];
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
    pending *p = find_pending(s, key);
    if (!p)
        return;
    free(p->key);
    free(p->parent);
    *p = s->pending[--s->pending_count];
}

/* Caller holds the lock. */
static bool add_discarding(lcow_snapshotter *s, uint64_t id)
{
    if (s->discarding_count == s->discarding_cap) {
        size_t cap = s->discarding_cap ? s->discarding_cap * 2 : 8;
        uint64_t *grown = realloc(s->discarding, cap * sizeof *grown);
        if (!grown)
            return false;
        s->discarding = grown;
        s->discarding_cap = cap;
    }
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
 * failure is logged; open and Cleanup reclaim what is left. */
static void discard_dir(lcow_snapshotter *s, uint64_t id)
{
    char *dir = lcow_snapshotter_dir_of(s, id), *rm = rm_dir_of(s, id);
    lcow_error e;
    if (!dir || !rm) {
        LCOW_LOGW("snapshot directory %" PRIu64 " left for cleanup (out of memory)", id);
    } else if (lcow_os_rename(dir, rm, &e) == LCOW_OK) {
        if (lcow_os_remove_all(rm, &e) != LCOW_OK)
            LCOW_LOGW("removing %s failed, left for cleanup: %s", rm, e.message);
    } else if (e.code != LCOW_NOT_FOUND) {
        LCOW_LOGW("renaming %s for removal failed (%s); deleting in place", dir, e.message);
        if (lcow_os_remove_all(dir, &e) != LCOW_OK)
            LCOW_LOGW("removing %s failed, left for cleanup: %s", dir, e.message);
    }
    free(dir);
    free(rm);
}

/* ---------------------------------------------------------------- mounts */

/* Appends s as a JSON string the way Go's encoding/json writes it. */
static void json_string(char **out, size_t *len, size_t *cap, const char *s, bool *ok)
{
#define PUT(str, n)                                                                                \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (*len + n_ + 1 > *cap) {                                                                \
            size_t c_ = *cap ? *cap * 2 : 256;                                                     \
            while (c_ < *len + n_ + 1)                                                             \
                c_ *= 2;                                                                           \
            char *g_ = realloc(*out, c_);                                                          \
            if (!g_) {                                                                             \
                *ok = false;                                                                       \
                return;                                                                            \
            }                                                                                      \
            *out = g_;                                                                             \
            *cap = c_;                                                                             \
        }                                                                                          \
        memcpy(*out + *len, (str), n_);                                                            \
        *len += n_;                                                                                \
        (*out)[*len] = '\0';                                                                       \
    } while (0)
    static const char hex[] = "0123456789abcdef";
    PUT("\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            PUT(esc, 2);
            p++;
        } else if (c == '\n') {
            PUT("\\n", 2);
            p++;
        } else if (c == '\r') {
            PUT("\\r", 2);
            p++;
        } else if (c == '\t') {
            PUT("\\t", 2);
            p++;
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            PUT(esc, 6);
            p++;
        } else if (c < 0x80) {
            PUT(p, 1);
            p++;
        } else {
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            size_t avail = strnlen((const char *)p, n);
            if (n == 1 || avail < n || !lcow_utf8_valid((const char *)p, n)) {
                PUT("\\ufffd", 6);
                p++;
            } else if (n == 3 && c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                PUT(p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                p += 3;
            } else {
                PUT(p, n);
                p += n;
            }
        }
    }
    PUT("\"", 1);
#undef PUT
}

char *lcow_snapshotter_json_paths(const char *const *paths, size_t count)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = true;
    out = malloc(64);
    if (!out)
        return NULL;
    cap = 64;
    out[0] = '[';
    out[1] = '\0';
    len = 1;
    for (size_t i = 0; i < count && ok; i++) {
        if (i > 0) {
            char comma[] = ",";
            size_t l = 1;
            if (len + 2 > cap) {
                char *g = realloc(out, cap * 2);
                if (!g) {
                    ok = false;
                    break;
                }
                out = g;
                cap *= 2;
            }
            memcpy(out + len, comma, l);
            len += l;
            out[len] = '\0';
        }
        json_string(&out, &len, &cap, paths[i], &ok);
    }
    if (ok && len + 2 > cap) {
        char *g = realloc(out, len + 2);
        if (!g)
            ok = false;
        else
            out = g;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    out[len++] = ']';
    out[len] = '\0';
    return out;
}

/* Builds the single lcow-layer mount of an active or view (DESIGN.md). */
static lcow_code build_mounts(lcow_snapshotter *s, const lcow_meta_view *view,
                              const lcow_meta_record *rec, lcow_mounts *mounts, lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    if (rec->kind != LCOW_KIND_ACTIVE && rec->kind != LCOW_KIND_VIEW)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "snapshot %s is %s: mounts exist only for active and view "
                              "snapshots",
                              rec->key, lcow_kind_name(rec->kind));
    uint64_t *ids = NULL;
    size_t count = 0;
    lcow_code rc = lcow_metastore_parent_ids(s->ms, view, rec, &ids, &count, err);
    if (rc != LCOW_OK)
        return rc;
    bool view_on_parent = rec->kind == LCOW_KIND_VIEW && count > 0;
    size_t first = view_on_parent ? 1 : 0;
    char **paths = calloc(count + 1, sizeof *paths);
    char *source = NULL, *json = NULL, *option = NULL;
    lcow_mount *m = calloc(1, sizeof *m);
    bool ok = paths && m;
    for (size_t i = first; ok && i < count; i++)
        ok = (paths[i - first] = lcow_snapshotter_dir_of(s, ids[i])) != NULL;
    if (ok)
        ok = (source = lcow_snapshotter_dir_of(s, view_on_parent ? ids[0] : rec->id)) != NULL;
    if (ok)
        ok =
            (json = lcow_snapshotter_json_paths((const char *const *)paths, count - first)) != NULL;
    if (ok) {
        size_t n = strlen("parentLayerPaths=") + strlen(json) + 1;
        option = malloc(n);
        if (option)
            snprintf(option, n, "parentLayerPaths=%s", json);
        ok = option != NULL;
    }
    if (ok) {
        m->type = strdup("lcow-layer");
        m->source = source;
        source = NULL;
        m->options = calloc(2, sizeof *m->options);
        ok = m->type && m->options;
        if (ok) {
            m->options[0] = strdup(rec->kind == LCOW_KIND_ACTIVE ? "rw" : "ro");
            m->options[1] = option;
            option = NULL;
            m->option_count = 2;
            ok = m->options[0] != NULL;
        }
        mounts->items = m;
        mounts->count = 1;
        m = NULL;
    }
    for (size_t i = 0; paths && i < count; i++)
        free(paths[i]);
    free(paths);
    free(ids);
    free(source);
    free(json);
    free(option);
    free(m);
    if (!ok) {
        lcow_mounts_free(mounts);
        return oom(err);
    }
    return LCOW_OK;
}

/* ---------------------------------------------------------------- open/close */

/* Cleanup's sweep of snapshots/: keeps directories named by a record or a
 * retained disk, by a Prepare in flight (captured under the lock), or with
 * an id handed out after the capture. */
typedef struct sweep {
    lcow_snapshotter *s;
    const lcow_meta_view *view;
    uint64_t *keep;
    size_t keep_count;
    uint64_t id_floor; /* ids >= this were handed out after the capture */
    char **doomed;
    size_t doomed_count, doomed_cap;
    bool failed;
    lcow_error *err;
    lcow_code rc;
} sweep;

static bool sweep_keeps(sweep *w, uint64_t id)
{
    if (id >= w->id_floor)
        return true;
    for (size_t i = 0; i < w->keep_count; i++)
        if (w->keep[i] == id)
            return true;
    char *key = NULL;
    lcow_error e;
    lcow_code rc = lcow_metastore_key_of(w->s->ms, w->view, id, &key, &e);
    free(key);
    if (rc == LCOW_OK)
        return true;
    lcow_meta_disk disk;
    rc = lcow_metastore_disk_get(w->s->ms, w->view, id, &disk, &e);
    if (rc == LCOW_OK)
        return true;
    if (rc != LCOW_NOT_FOUND) {
        /* Unsure: keep it rather than delete something live. */
        w->rc = rc;
        if (w->err)
            *w->err = e;
        return true;
    }
    return false;
}

static int sweep_entry(void *ctx, const char *name, bool is_dir)
{
    sweep *w = ctx;
    (void)is_dir;
    uint64_t id;
    if (parse_id(name, &id) && sweep_keeps(w, id))
        return 0;
    /* rm-<id> of a Remove still deleting it */
    if (strncmp(name, "rm-", 3) == 0 && parse_id(name + 3, &id))
        for (size_t i = 0; i < w->keep_count; i++)
            if (w->keep[i] == id)
                return 0;
    if (w->doomed_count == w->doomed_cap) {
        size_t cap = w->doomed_cap ? w->doomed_cap * 2 : 16;
        char **grown = realloc(w->doomed, cap * sizeof *grown);
        if (!grown) {
            w->failed = true;
            return 1;
        }
        w->doomed = grown;
        w->doomed_cap = cap;
    }
    w->doomed[w->doomed_count] = lcow_path_join(w->s->snapshots_dir, name);
    if (!w->doomed[w->doomed_count]) {
        w->failed = true;
        return 1;
    }
    w->doomed_count++;
    return 0;
}

typedef struct tmp_sweep {
    lcow_snapshotter *s;
    char **doomed;
    size_t count, cap;
    bool failed;
} tmp_sweep;

static int tmp_entry(void *ctx, const char *name, bool is_dir)
{
    (void)is_dir;
    tmp_sweep *t = ctx;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **grown = realloc(t->doomed, cap * sizeof *grown);
        if (!grown) {
            t->failed = true;
            return 1;
        }
        t->doomed = grown;
        t->cap = cap;
    }
    if (!(t->doomed[t->count] = lcow_path_join(t->s->tmp_dir, name))) {
        t->failed = true;
        return 1;
    }
    t->count++;
    return 0;
}

/* at_open: also empty tmp/ and treat every unknown directory as an orphan. */
static lcow_code sweep_orphans(lcow_snapshotter *s, bool include_tmp, lcow_error *err)
{
    sweep w = {.s = s, .err = err, .rc = LCOW_OK};
    lcow_mutex_lock(&s->lock);
    w.keep = calloc(s->pending_count + s->discarding_count + 1, sizeof *w.keep);
    for (size_t i = 0; w.keep && i < s->pending_count; i++)
        w.keep[w.keep_count++] = s->pending[i].id;
    for (size_t i = 0; w.keep && i < s->discarding_count; i++)
        w.keep[w.keep_count++] = s->discarding[i];
    lcow_error e;
    lcow_code rc = w.keep ? LCOW_OK : oom(&e);
    /* At open nothing runs concurrently: every unknown directory goes. */
    w.id_floor = include_tmp ? UINT64_MAX : lcow_metastore_peek_next_id(s->ms);
    w.view = lcow_metastore_view_begin(s->ms);
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK || !w.view) {
        free(w.keep);
        lcow_metastore_view_end(s->ms, (lcow_meta_view *)w.view);
        if (err)
            *err = e;
        return rc != LCOW_OK ? rc : oom(err);
    }

    rc = lcow_os_list_dir(s->snapshots_dir, sweep_entry, &w, err);
    lcow_metastore_view_end(s->ms, (lcow_meta_view *)w.view);
    free(w.keep);
    if (rc == LCOW_OK && w.failed)
        rc = oom(err);
    if (rc == LCOW_OK)
        rc = w.rc;
    lcow_code first = rc;
    /* Best effort: one entry that cannot go (a VM holds a file) does not
     * stop the rest; the first failure is reported. */
    for (size_t i = 0; i < w.doomed_count; i++) {
        LCOW_LOGI("cleanup: removing %s (no snapshot record names it)", w.doomed[i]);
        lcow_error e;
        lcow_code one = rc == LCOW_OK ? lcow_os_remove_all(w.doomed[i], &e) : LCOW_OK;
        if (one != LCOW_OK) {
            LCOW_LOGW("cleanup: %s", e.message);
            if (first == LCOW_OK) {
                first = one;
                if (err)
                    *err = e;
            }
        }
        free(w.doomed[i]);
    }
    free(w.doomed);
    if (first == LCOW_OK && include_tmp) {
        tmp_sweep t = {.s = s};
        first = lcow_os_list_dir(s->tmp_dir, tmp_entry, &t, err);
        if (first == LCOW_OK && t.failed)
            first = oom(err);
        for (size_t i = 0; i < t.count; i++) {
            if (first == LCOW_OK && lcow_os_remove_all(t.doomed[i], err) != LCOW_OK)
                first = err ? err->code : LCOW_INTERNAL;
            free(t.doomed[i]);
        }
        free(t.doomed);
    }
    if (first == LCOW_OK && s->scratch)
        first = lcow_scratch_cleanup(s->scratch, err);
    return first;
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

lcow_code lcow_snapshotter_open(const lcow_snapshotter_config *config, lcow_snapshotter **out,
                                lcow_error *err)
{
    *out = NULL;
    if (!config || !config->root || !lcow_path_is_absolute(config->root))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "snapshotter root must be an absolute path (got \"%s\")",
                              config && config->root ? config->root : "");
    lcow_snapshotter *s = calloc(1, sizeof *s);
    if (!s)
        return oom(err);
    lcow_mutex_init(&s->lock);
    lcow_mutex_init(&s->drain_lock);
    lcow_cond_init(&s->drained);
    atomic_init(&s->inflight, 0);
    atomic_init(&s->closed, false);
    s->no_scratch = config->no_scratch;
    s->root = strdup(config->root);
    s->snapshots_dir = lcow_path_join(config->root, "snapshots");
    s->tmp_dir = lcow_path_join(config->root, "tmp");
    char *meta = meta_path(config->root);
    lcow_code rc = s->root && s->snapshots_dir && s->tmp_dir && meta ? LCOW_OK : oom(err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(s->snapshots_dir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(s->tmp_dir, err);
    if (rc == LCOW_OK) {
        lcow_metastore_options mo = {.no_sync = config->no_sync};
        rc = lcow_metastore_open(meta, &mo, &s->ms, err);
    }
    if (rc == LCOW_OK)
        rc = lcow_scratch_open(s->root, config->scratch_backend, config->scratch_dir_allow,
                               config->scratch_dir_allow_count, &s->scratch, err);
    /* Crash recovery: orphans of an interrupted Prepare or Remove. */
    if (rc == LCOW_OK && (rc = sweep_orphans(s, true, err)) != LCOW_OK)
        lcow_error_wrap(err, "recovering %s", s->root);
    free(meta);
    if (rc != LCOW_OK) {
        lcow_snapshotter_free(s);
        return rc;
    }
    *out = s;
    return LCOW_OK;
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
    lcow_mutex_lock(&s->lock);
    lcow_metastore_close(s->ms);
    s->ms = NULL;
    lcow_scratch_free(s->scratch);
    s->scratch = NULL;
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
        rc = build_mounts(s, NULL, &rec, mounts, err);
    lcow_meta_record_free(&rec);
    return rc;
}

static lcow_code create_snapshot_impl(lcow_snapshotter *s, lcow_kind kind, const char *key,
                                      const char *parent, const lcow_labels *labels,
                                      lcow_mounts *mounts, lcow_error *err)
{
    if (mounts)
        memset(mounts, 0, sizeof *mounts);
    lcow_code rc = check_open(s, err);
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

    lcow_meta_create req = {.key = key, .parent = parent, .kind = kind, .labels = labels};
    req.scratch = plan.mode == LCOW_SCRATCH_MODE_OWN      ? LCOW_META_SCRATCH_OWN
                  : plan.mode == LCOW_SCRATCH_MODE_SHARED ? LCOW_META_SCRATCH_SHARED
                                                          : LCOW_META_SCRATCH_NONE;
    char *dir = NULL;
    bool reserved = false;

    /* Phase 1, under the lock: validate and reserve. */
    lcow_mutex_lock(&s->lock);
    rc = check_open(s, err);
    if (rc == LCOW_OK) {
        /* The shared disk is resolved below; the metadata checks come first. */
        lcow_meta_create first = req;
        first.scratch = LCOW_META_SCRATCH_NONE;
        rc = lcow_metastore_create(s->ms, &first, true, NULL, err);
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
        rc = lcow_metastore_create(s->ms, &req, false, NULL, err);
        if (rc == LCOW_OK)
            rc = mounts_of_new(s, key, mounts, err);
        lcow_mutex_unlock(&s->lock);
        goto done;
    }
    if (rc == LCOW_OK) {
        reserved = add_pending(s, key, parent, req.id, req.disk_id);
        if (!reserved)
            rc = oom(err);
    }
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK)
        goto done;

    /* Files, without the lock: the directory exists (and is durable)
     * before any metadata names it. */
    dir = lcow_snapshotter_dir_of(s, req.id);
    if (!dir)
        rc = oom(err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir(dir, err);
    bool made_dir = rc == LCOW_OK;
    if (rc == LCOW_OK && plan.mode == LCOW_SCRATCH_MODE_OWN)
        rc = lcow_scratch_create_own(s->scratch, &plan, dir, err);
    if (rc == LCOW_OK && plan.mode == LCOW_SCRATCH_MODE_SHARED) {
        char *disk_dir = lcow_snapshotter_dir_of(s, req.disk_id);
        char *disk = disk_dir ? lcow_path_join(disk_dir, LCOW_SANDBOX_NAME) : NULL;
        rc = disk ? lcow_scratch_link_shared(s->scratch, disk, dir, err) : oom(err);
        free(disk);
        free(disk_dir);
    }
    /* The new directory's own entries matter only when it holds a disk;
     * its name in snapshots/ always does. */
    if (rc == LCOW_OK && plan.mode != LCOW_SCRATCH_MODE_NONE)
        rc = lcow_os_sync_dir(dir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_sync_dir(s->snapshots_dir, err);

    /* Phase 2, under the lock: re-validate and write the one batch. */
    lcow_mutex_lock(&s->lock);
    if (rc == LCOW_OK)
        rc = check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_create(s->ms, &req, false, NULL, err);
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
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_view *view = lcow_metastore_view_begin(s->ms);
    if (!view)
        return oom(err);
    lcow_meta_record rec;
    rc = lcow_metastore_get(s->ms, view, key, &rec, err);
    if (rc == LCOW_OK)
        rc = build_mounts(s, view, &rec, mounts, err);
    lcow_meta_record_free(&rec);
    lcow_metastore_view_end(s->ms, view);
    return rc;
}

static lcow_code stat_impl(lcow_snapshotter *s, const char *key, lcow_info *info, lcow_error *err)
{
    memset(info, 0, sizeof *info);
    lcow_code rc = check_open(s, err);
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

static lcow_code usage_impl(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                            lcow_error *err)
{
    memset(usage, 0, sizeof *usage);
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc != LCOW_OK)
        return rc;
    if (rec.kind == LCOW_KIND_COMMITTED) {
        *usage = rec.usage;
    } else if (rec.kind == LCOW_KIND_ACTIVE) {
        char *dir = lcow_snapshotter_dir_of(s, rec.id);
        rc = dir ? lcow_os_usage(dir, &usage->size, &usage->inodes, err) : oom(err);
        free(dir);
        if (rc != LCOW_OK)
            lcow_error_wrap(err, "usage of %s", key);
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
    lcow_code rc = check_open(s, err);
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
        return oom(err);
    }
    walk_state w = {.filter = filter, .fn = fn, .ctx = ctx, .limit = opts ? opts->limit : 0};
    rc = lcow_metastore_walk(s->ms, view, opts ? opts->after : NULL, walk_record, &w, err);
    lcow_metastore_view_end(s->ms, view);
    lcow_filter_free(filter);
    if (rc == LCOW_OK && w.failed)
        rc = oom(err);
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
    lcow_code rc = check_open(s, err);
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
            char *dir = lcow_snapshotter_dir_of(s, rec.id);
            usage_rc =
                dir ? lcow_os_usage(dir, &usage.size, &usage.inodes, &usage_err) : oom(&usage_err);
            free(dir);
            measured_id = rec.id;
        }
        lcow_meta_record_free(&rec);
    }

    lcow_mutex_lock(&s->lock);
    rc = check_open(s, err);
    uint64_t id = 0;
    if (rc == LCOW_OK && find_pending(s, name))
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (being prepared)",
                            name);
    if (rc == LCOW_OK)
        rc = lcow_metastore_commit(s->ms, name, key ? key : "", labels, parent, NULL, true, &id,
                                   err);
    if (rc == LCOW_OK && id != measured_id) {
        /* The key was replaced between the measurement and the lock. */
        char *dir = lcow_snapshotter_dir_of(s, id);
        usage_rc =
            dir ? lcow_os_usage(dir, &usage.size, &usage.inodes, &usage_err) : oom(&usage_err);
        free(dir);
    }
    if (rc == LCOW_OK && usage_rc != LCOW_OK) {
        if (err)
            *err = usage_err;
        rc = lcow_error_wrap(err, "commit %s: measuring usage", key);
    }
    if (rc == LCOW_OK)
        rc = lcow_metastore_commit(s->ms, name, key, labels, parent, &usage, false, NULL, err);
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
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_remove_effect effect;
    lcow_mutex_lock(&s->lock);
    rc = check_open(s, err);
    lcow_meta_record rec;
    if (rc == LCOW_OK)
        rc = lcow_metastore_get(s->ms, NULL, key, &rec, err);
    if (rc == LCOW_OK) {
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
    lcow_code rc = check_open(s, err);
    if (rc == LCOW_OK && (!info || !info->name || !*info->name))
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "snapshot name must not be empty");
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_labels(&info->labels, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    lcow_mutex_lock(&s->lock);
    rc = check_open(s, err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_update(s->ms, info, fieldpaths, fieldpath_count, &rec, err);
    lcow_mutex_unlock(&s->lock);
    if (rc == LCOW_OK && out && !lcow_meta_record_to_info(&rec, out))
        rc = oom(err);
    if (rc == LCOW_OK)
        lcow_meta_record_free(&rec);
    return rc;
}

/* ---------------------------------------------------------------- cleanup */

static lcow_code cleanup_impl(lcow_snapshotter *s, lcow_error *err)
{
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    return sweep_orphans(s, false, err);
}

/* ---------------------------------------------------------------- create scratch */

/* The file side is the scratch policy's (lcow_scratch_create_at); this
 * call touches no metadata. */
static lcow_code create_scratch_impl(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                     uint32_t block_size_mb, lcow_error *err)
{
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    return lcow_scratch_create_at(s->scratch, path, size_gb, block_size_mb, err);
}

/* ---------------------------------------------------------------- check */

typedef struct check_state {
    lcow_snapshotter *s;
    const lcow_meta_view *view;
    lcow_error *err;
    lcow_code rc;
    size_t records_with_parent;
    size_t child_entries;
    /* members counted per disk id */
    uint64_t *member_disk;
    size_t member_count, member_cap;
} check_state;

static int check_fail(check_state *c, const char *fmt, ...)
#if defined(__MINGW32__)
    __attribute__((format(gnu_printf, 2, 3)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int check_fail(check_state *c, const char *fmt, ...)
{
    char msg[LCOW_ERROR_MESSAGE_MAX - 32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = lcow_error_set(c->err, LCOW_INTERNAL, "invariant violated: %s", msg);
    return 1;
}

static int check_record(void *ctx, const lcow_meta_record *rec)
{
    check_state *c = ctx;
    lcow_error e;
    if (rec->kind < LCOW_KIND_VIEW || rec->kind > LCOW_KIND_COMMITTED)
        return check_fail(c, "%s has invalid kind %d", rec->key, (int)rec->kind);
    char *mapped = NULL;
    if (lcow_metastore_key_of(c->s->ms, c->view, rec->id, &mapped, &e) != LCOW_OK ||
        strcmp(mapped, rec->key) != 0) {
        free(mapped);
        return check_fail(c, "id map entry of %s (id %" PRIu64 ") is wrong", rec->key, rec->id);
    }
    free(mapped);
    if (*rec->parent) {
        c->records_with_parent++;
        lcow_meta_record p;
        if (lcow_metastore_get(c->s->ms, c->view, rec->parent, &p, &e) != LCOW_OK)
            return check_fail(c, "parent %s of %s is missing", rec->parent, rec->key);
        bool bad = p.kind != LCOW_KIND_COMMITTED || p.id != rec->parent_id;
        lcow_meta_record_free(&p);
        if (bad)
            return check_fail(c, "parent %s of %s is not committed or has another id (%" PRIu64 ")",
                              rec->parent, rec->key, rec->parent_id);
    } else if (rec->parent_id != 0) {
        return check_fail(c, "%s has no parent but parent id %" PRIu64, rec->key, rec->parent_id);
    }
    if (rec->kind != LCOW_KIND_VIEW) {
        char *dir = lcow_snapshotter_dir_of(c->s, rec->id);
        lcow_stat st = {0};
        lcow_code rc = dir ? lcow_os_stat(dir, &st, &e) : LCOW_RESOURCE_EXHAUSTED;
        free(dir);
        if (rc != LCOW_OK || !st.exists || !st.is_dir)
            return check_fail(c, "%s (%s) has no directory snapshots/%" PRIu64, rec->key,
                              lcow_kind_name(rec->kind), rec->id);
    }
    if (rec->scratch == LCOW_META_SCRATCH_SHARED) {
        if (c->member_count == c->member_cap) {
            size_t cap = c->member_cap ? c->member_cap * 2 : 16;
            uint64_t *g = realloc(c->member_disk, cap * sizeof *g);
            if (!g)
                return check_fail(c, "out of memory");
            c->member_disk = g;
            c->member_cap = cap;
        }
        c->member_disk[c->member_count++] = rec->disk_id;
    }
    return 0;
}

static int check_child(void *ctx, uint64_t parent_id, uint64_t child_id, const char *child_key)
{
    check_state *c = ctx;
    c->child_entries++;
    lcow_meta_record rec;
    lcow_error e;
    if (lcow_metastore_get(c->s->ms, c->view, child_key, &rec, &e) != LCOW_OK)
        return check_fail(c, "child index names missing snapshot %s (id %" PRIu64 ")", child_key,
                          child_id);
    bool bad = rec.id != child_id || rec.parent_id != parent_id;
    lcow_meta_record_free(&rec);
    if (bad)
        return check_fail(c, "child index entry for %s (id %" PRIu64 ") disagrees with its record",
                          child_key, child_id);
    return 0;
}

static int check_disk(void *ctx, const lcow_meta_disk *disk)
{
    check_state *c = ctx;
    uint32_t members = 0;
    for (size_t i = 0; i < c->member_count; i++)
        if (c->member_disk[i] == disk->disk_id)
            members++;
    if (members != disk->members || members == 0)
        return check_fail(c,
                          "shared disk %" PRIu64 " records %" PRIu32 " members, %" PRIu32 " found",
                          disk->disk_id, disk->members, members);
    char *owner = NULL;
    lcow_error e;
    lcow_code rc = lcow_metastore_key_of(c->s->ms, c->view, disk->disk_id, &owner, &e);
    free(owner);
    if (disk->retained != (rc == LCOW_NOT_FOUND))
        return check_fail(c, "shared disk %" PRIu64 ": retained flag disagrees with its owner",
                          disk->disk_id);
    char *dir = lcow_snapshotter_dir_of(c->s, disk->disk_id);
    lcow_stat st = {0};
    rc = dir ? lcow_os_stat(dir, &st, &e) : LCOW_RESOURCE_EXHAUSTED;
    free(dir);
    if (rc != LCOW_OK || !st.exists)
        return check_fail(c, "shared disk directory snapshots/%" PRIu64 " is missing",
                          disk->disk_id);
    return 0;
}

static int check_dir_entry(void *ctx, const char *name, bool is_dir)
{
    (void)is_dir;
    check_state *c = ctx;
    uint64_t id;
    bool rm_dir = strncmp(name, "rm-", 3) == 0 && parse_id(name + 3, &id);
    for (size_t i = 0; rm_dir && i < c->s->discarding_count; i++)
        if (c->s->discarding[i] == id)
            return 0; /* a Remove is deleting it right now */
    if (!parse_id(name, &id))
        return check_fail(c, "snapshots/%s is not a snapshot directory (cleanup removes it)", name);
    for (size_t i = 0; i < c->s->discarding_count; i++)
        if (c->s->discarding[i] == id)
            return 0;
    for (size_t i = 0; i < c->s->pending_count; i++)
        if (c->s->pending[i].id == id)
            return 0;
    char *key = NULL;
    lcow_error e;
    lcow_code rc = lcow_metastore_key_of(c->s->ms, c->view, id, &key, &e);
    free(key);
    lcow_meta_disk disk;
    if (rc == LCOW_NOT_FOUND)
        rc = lcow_metastore_disk_get(c->s->ms, c->view, id, &disk, &e);
    if (rc != LCOW_OK)
        return check_fail(c, "directory snapshots/%s has no snapshot record", name);
    return 0;
}

static lcow_code check_impl(lcow_snapshotter *s, lcow_error *err)
{
    lcow_code rc = check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    /* Under the writer lock: a quiescent view of metadata and directories. */
    lcow_mutex_lock(&s->lock);
    check_state c = {.s = s, .err = err, .rc = LCOW_OK};
    c.view = lcow_metastore_view_begin(s->ms);
    rc = lcow_metastore_walk(s->ms, c.view, NULL, check_record, &c, err);
    if (rc == LCOW_OK && c.rc == LCOW_OK)
        rc = lcow_metastore_walk_children(s->ms, c.view, check_child, &c, err);
    if (rc == LCOW_OK && c.rc == LCOW_OK && c.child_entries != c.records_with_parent)
        check_fail(&c, "child index has %zu entries for %zu snapshots with a parent",
                   c.child_entries, c.records_with_parent);
    if (rc == LCOW_OK && c.rc == LCOW_OK)
        rc = lcow_metastore_walk_disks(s->ms, c.view, check_disk, &c, err);
    if (rc == LCOW_OK && c.rc == LCOW_OK) {
        /* Every member's disk has a record (counted above from the disk side). */
        for (size_t i = 0; i < c.member_count && c.rc == LCOW_OK; i++) {
            lcow_meta_disk d;
            lcow_error e;
            if (lcow_metastore_disk_get(s->ms, c.view, c.member_disk[i], &d, &e) != LCOW_OK)
                check_fail(&c, "a member links to disk %" PRIu64 " which has no record",
                           c.member_disk[i]);
        }
    }
    if (rc == LCOW_OK && c.rc == LCOW_OK)
        rc = lcow_os_list_dir(s->snapshots_dir, check_dir_entry, &c, err);
    lcow_metastore_view_end(s->ms, (lcow_meta_view *)c.view);
    lcow_mutex_unlock(&s->lock);
    free(c.member_disk);
    return rc != LCOW_OK ? rc : c.rc;
}

/* ---------------------------------------------------------------- public calls */

static lcow_code create_snapshot(lcow_snapshotter *s, lcow_kind kind, const char *key,
                                 const char *parent, const lcow_labels *labels, lcow_mounts *mounts,
                                 lcow_error *err)
{
    if (mounts)
        memset(mounts, 0, sizeof *mounts);
    lcow_code rc = enter(s, err);
    if (rc != LCOW_OK)
        return rc;
    rc = create_snapshot_impl(s, kind, key, parent, labels, mounts, err);
    leave(s);
    return rc;
}

#define PUBLIC_CALL(call)                                                                          \
    do {                                                                                           \
        lcow_code rc_ = enter(s, err);                                                             \
        if (rc_ != LCOW_OK)                                                                        \
            return rc_;                                                                            \
        rc_ = (call);                                                                              \
        leave(s);                                                                                  \
        return rc_;                                                                                \
    } while (0)

lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    PUBLIC_CALL(mounts_impl(s, key, mounts, err));
}

lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err)
{
    memset(info, 0, sizeof *info);
    PUBLIC_CALL(stat_impl(s, key, info, err));
}

lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err)
{
    memset(usage, 0, sizeof *usage);
    PUBLIC_CALL(usage_impl(s, key, usage, err));
}

lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err)
{
    if (next)
        *next = NULL;
    PUBLIC_CALL(walk_impl(s, opts, fn, ctx, next, err));
}

lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err)
{
    PUBLIC_CALL(commit_impl(s, name, key, labels, parent, err));
}

lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    PUBLIC_CALL(remove_impl(s, key, err));
}

lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    PUBLIC_CALL(update_impl(s, info, fieldpaths, fieldpath_count, out, err));
}

lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err)
{
    PUBLIC_CALL(cleanup_impl(s, err));
}

lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err)
{
    PUBLIC_CALL(create_scratch_impl(s, path, size_gb, block_size_mb, err));
}

lcow_code lcow_snapshotter_check(lcow_snapshotter *s, lcow_error *err)
{
    PUBLIC_CALL(check_impl(s, err));
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

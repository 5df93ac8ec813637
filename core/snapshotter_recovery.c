/* Recovery of the snapshotter: the sweep of snapshots/ (and at open of
 * tmp/) that removes what no snapshot record names, and of the temporary
 * files an Apply leaves in an active's directory when it is interrupted. It
 * runs at open, after a crash of an interrupted Prepare, Remove or Apply,
 * and as Cleanup while the store serves calls; then it keeps what a
 * Prepare, Remove or Apply in flight owns. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/snapshotter_internal.h"

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
    if (rc == LCOW_NOT_FOUND) {
        /* Only a sure "no record" goes on: a lookup that failed (out of
         * memory, I/O) must not make a live snapshot's directory an orphan. */
        lcow_meta_disk disk;
        rc = lcow_metastore_disk_get(w->s->ms, w->view, id, &disk, &e);
        if (rc == LCOW_OK)
            return true;
    }
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
    if (lcow_snapshotter_parse_id(name, &id) && sweep_keeps(w, id))
        return 0;
    /* rm-<id> of a Remove still deleting it */
    if (strncmp(name, "rm-", 3) == 0 && lcow_snapshotter_parse_id(name + 3, &id))
        for (size_t i = 0; i < w->keep_count; i++)
            if (w->keep[i] == id)
                return 0;
    if (!lcow_grow(&w->doomed, &w->doomed_cap, w->doomed_count + 1, sizeof *w->doomed)) {
        w->failed = true;
        return 1;
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
    if (!lcow_grow(&t->doomed, &t->cap, t->count + 1, sizeof *t->doomed)) {
        t->failed = true;
        return 1;
    }
    if (!(t->doomed[t->count] = lcow_path_join(t->s->tmp_dir, name))) {
        t->failed = true;
        return 1;
    }
    t->count++;
    return 0;
}

lcow_code lcow_snapshotter_sweep_orphans(lcow_snapshotter *s, bool at_open, lcow_error *err)
{
    sweep w = {.s = s, .err = err, .rc = LCOW_OK};
    lcow_mutex_lock(&s->lock);
    w.keep = calloc(s->pending_count + s->discarding_count + 1, sizeof *w.keep);
    for (size_t i = 0; w.keep && i < s->pending_count; i++)
        w.keep[w.keep_count++] = s->pending[i].id;
    for (size_t i = 0; w.keep && i < s->discarding_count; i++)
        w.keep[w.keep_count++] = s->discarding[i];
    lcow_error e;
    lcow_code rc = w.keep ? LCOW_OK : lcow_snapshotter_oom(&e);
    /* At open nothing runs concurrently: every unknown directory goes. */
    w.id_floor = at_open ? UINT64_MAX : lcow_metastore_peek_next_id(s->ms);
    w.view = lcow_metastore_view_begin(s->ms);
    lcow_mutex_unlock(&s->lock);
    if (rc != LCOW_OK || !w.view) {
        free(w.keep);
        lcow_metastore_view_end(s->ms, (lcow_meta_view *)w.view);
        if (err)
            *err = e;
        return rc != LCOW_OK ? rc : lcow_snapshotter_oom(err);
    }

    rc = lcow_os_list_dir(s->snapshots_dir, sweep_entry, &w, err);
    lcow_metastore_view_end(s->ms, (lcow_meta_view *)w.view);
    free(w.keep);
    if (rc == LCOW_OK && w.failed)
        rc = lcow_snapshotter_oom(err);
    if (rc == LCOW_OK)
        rc = w.rc;
    lcow_code first = rc;
    /* One entry that cannot go now (a VM holds a file) is queued for the
     * reaper and does not stop the rest; only out of memory is reported. */
    for (size_t i = 0; i < w.doomed_count; i++) {
        if (first == LCOW_OK) {
            LCOW_LOGI("cleanup: removing %s (no snapshot record names it)", w.doomed[i]);
            first = lcow_snapshotter_delete_or_queue(s, w.doomed[i], err);
        }
        free(w.doomed[i]);
    }
    free(w.doomed);
    if (first == LCOW_OK && at_open) {
        tmp_sweep t = {.s = s};
        first = lcow_os_list_dir(s->tmp_dir, tmp_entry, &t, err);
        if (first == LCOW_OK && t.failed)
            first = lcow_snapshotter_oom(err);
        for (size_t i = 0; i < t.count; i++) {
            if (first == LCOW_OK)
                first = lcow_snapshotter_delete_or_queue(s, t.doomed[i], err);
            free(t.doomed[i]);
        }
        free(t.doomed);
    }
    /* Temporary files of an Apply that a crash interrupted. */
    if (first == LCOW_OK)
        first = lcow_snapshotter_sweep_apply_temps(s, at_open, err);
    if (first == LCOW_OK && s->scratch)
        first = lcow_scratch_cleanup(s->scratch, err);
    return first;
}

/* ---------------------------------------------------------------- cleanup */

static lcow_code cleanup_impl(lcow_snapshotter *s, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_snapshotter_retry_removals(s);
    return lcow_snapshotter_sweep_orphans(s, false, err);
}

lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, cleanup_impl(s, err));
}

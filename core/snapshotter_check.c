/* lcow_snapshotter_check: the invariants of the store, checked under the
 * writer lock against the metadata and the directories (tests, the torture
 * campaigns and lcowsnapctl check). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/os.h"
#include "core/snapshotter_internal.h"

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

static int check_fail(check_state *c, const char *fmt, ...) LCOW_PRINTF(2, 3);

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
    if (lcow_snapshotter_check_layer_of(c->s, rec, &e) != LCOW_OK) {
        c->rc = LCOW_INTERNAL;
        if (c->err)
            *c->err = e; /* already "invariant violated: ..." */
        return 1;
    }
    if (rec->scratch == LCOW_META_SCRATCH_SHARED) {
        if (!lcow_grow(&c->member_disk, &c->member_cap, c->member_count + 1,
                       sizeof *c->member_disk))
            return check_fail(c, "out of memory");
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
    bool rm_dir = strncmp(name, "rm-", 3) == 0 && lcow_snapshotter_parse_id(name + 3, &id);
    char *path = lcow_path_join(c->s->snapshots_dir, name);
    bool queued = path && lcow_snapshotter_removal_queued(c->s, path);
    free(path);
    if (queued)
        return 0; /* a held file stopped its deletion: the reaper retries it */
    for (size_t i = 0; rm_dir && i < c->s->discarding_count; i++)
        if (c->s->discarding[i] == id)
            return 0; /* a Remove is deleting it right now */
    if (!lcow_snapshotter_parse_id(name, &id))
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
    lcow_code rc = lcow_snapshotter_check_open(s, err);
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
    if (rc == LCOW_OK && c.rc == LCOW_OK && s->layers)
        rc = lcow_layer_store_check(s->layers, err);
    lcow_metastore_view_end(s->ms, (lcow_meta_view *)c.view);
    lcow_mutex_unlock(&s->lock);
    free(c.member_disk);
    return rc != LCOW_OK ? rc : c.rc;
}

lcow_code lcow_snapshotter_check(lcow_snapshotter *s, lcow_error *err)
{
    LCOW_SNAPSHOTTER_CALL(s, err, check_impl(s, err));
}

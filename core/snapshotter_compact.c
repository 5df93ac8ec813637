/* Compact and the ext4 view of Usage (issue 18): the snapshotter's side of
 * core/disk/compact.c and core/disk/ext4_view.c.
 *
 * The disk of an active is snapshots/<disk id>/sandbox.vhdx, where the disk
 * id is the record's own id (OWN) or the shared disk's (SHARED), so a disk
 * shared by several actives is one file, compacted once by Compact --all.
 * It is opened with LCOW_OPEN_SHARE_NONE: a VM (or anyone) holding it makes
 * the open fail, and Compact answers FailedPrecondition "in use". The long
 * file work runs outside the writer lock, inside the call guard. */
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/disk/compact.h"
#include "core/disk/ext4_view.h"
#include "core/scratch.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h"

static uint64_t disk_id_of(const lcow_meta_record *rec)
{
    if (rec->kind != LCOW_KIND_ACTIVE)
        return 0;
    if (rec->scratch == LCOW_META_SCRATCH_OWN)
        return rec->id;
    if (rec->scratch == LCOW_META_SCRATCH_SHARED)
        return rec->disk_id;
    return 0;
}

static char *disk_path(const lcow_snapshotter *s, uint64_t disk_id)
{
    char *dir = lcow_snapshotter_dir_of(s, disk_id);
    char *path = dir ? lcow_path_join(dir, LCOW_SANDBOX_NAME) : NULL;
    free(dir);
    return path;
}

/* ---- Usage: the ext4 view ---- */

void lcow_snapshotter_ext4_usage(lcow_snapshotter *s, const lcow_meta_record *rec,
                                 lcow_usage *usage)
{
    uint64_t id = disk_id_of(rec);
    if (!id || s->no_scratch)
        return;
    char *path = disk_path(s, id);
    if (!path)
        return;
    /* Read-only and sharing everything: a running VM's disk is read as it
     * is (counts may be a moment old); a disk we cannot read has no view. */
    lcow_file *f = NULL;
    lcow_error err = {0};
    if (lcow_file_open(path, LCOW_OPEN_READ | LCOW_OPEN_REGULAR, &f, &err) == LCOW_OK) {
        lcow_vhdx_io io = lcow_vhdx_io_file(f);
        lcow_vhdx_reader *r;
        lcow_ext4_view_usage u;
        if (lcow_vhdx_reader_open(&io, &r, &err) == LCOW_OK) {
            if (lcow_ext4_view_usage_of(r, &u, &err) == LCOW_OK) {
                usage->ext4_used_bytes = u.used_bytes;
                usage->ext4_used_inodes = u.used_inodes;
                usage->ext4_total_bytes = u.total_bytes;
                usage->ext4_total_inodes = u.total_inodes;
            }
            lcow_vhdx_reader_free(r);
        }
        lcow_file_close(f);
    }
    if (err.code != LCOW_OK)
        LCOW_LOGD("usage of %s: no ext4 view (%s)", rec->key, err.message);
    free(path);
}

/* ---- Compact ---- */

static lcow_code compact_disk(lcow_snapshotter *s, uint64_t disk_id, lcow_compact_summary *sum,
                              lcow_error *err)
{
    char *path = disk_path(s, disk_id);
    if (!path)
        return lcow_snapshotter_oom(err);
    lcow_file *f;
    lcow_code rc = lcow_file_open(
        path, LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_REGULAR | LCOW_OPEN_SHARE_NONE, &f, err);
    if (rc == LCOW_FAILED_PRECONDITION && strstr(err ? err->message : "", "in use")) {
        lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                       "%s is in use (a VM or another process "
                       "has it open)",
                       path);
        free(path);
        return LCOW_FAILED_PRECONDITION;
    }
    if (rc) {
        free(path);
        return rc;
    }
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_compact_report rep;
    rc = lcow_compact_vhdx(&io, &rep, NULL, NULL, err);
    lcow_file_close(f);
    if (rc == LCOW_OK) {
        sum->disks++;
        sum->bytes_before += (int64_t)rep.bytes_before;
        sum->bytes_after += (int64_t)rep.bytes_after;
        LCOW_LOGI("compacted %s: %llu -> %llu bytes (%llu blocks freed, %llu moved)", path,
                  (unsigned long long)rep.bytes_before, (unsigned long long)rep.bytes_after,
                  (unsigned long long)rep.blocks_freed, (unsigned long long)rep.blocks_moved);
        if (s->on_compacted)
            s->on_compacted(s->compacted_ctx, path, rep.bytes_before, rep.bytes_after);
    } else {
        lcow_error_wrap(err, "compact %s", path);
    }
    free(path);
    return rc;
}

static lcow_code compact_impl(lcow_snapshotter *s, const char *key, lcow_compact_summary *sum,
                              lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_meta_record rec;
    if ((rc = lcow_metastore_get(s->ms, NULL, key, &rec, err)))
        return rc;
    uint64_t id = disk_id_of(&rec);
    lcow_kind kind = rec.kind;
    lcow_meta_record_free(&rec);
    if (!id || s->no_scratch)
        return lcow_error_set(
            err, LCOW_FAILED_PRECONDITION, "%s has no scratch disk to compact (%s)", key,
            kind == LCOW_KIND_ACTIVE ? "an active without sandbox.vhdx" : "not an active snapshot");
    return compact_disk(s, id, sum, err);
}

typedef struct disk_set {
    uint64_t *ids;
    size_t count, cap;
    bool oom;
} disk_set;

static int collect_disk(void *ctx, const lcow_meta_record *rec)
{
    disk_set *d = ctx;
    uint64_t id = disk_id_of(rec);
    if (!id)
        return 0;
    for (size_t i = 0; i < d->count; i++)
        if (d->ids[i] == id)
            return 0; /* shared: once */
    if (!lcow_grow(&d->ids, &d->cap, d->count + 1, sizeof *d->ids)) {
        d->oom = true;
        return 1;
    }
    d->ids[d->count++] = id;
    return 0;
}

static lcow_code compact_all_impl(lcow_snapshotter *s, lcow_compact_summary *sum, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    if (s->no_scratch)
        return LCOW_OK;
    disk_set d = {0};
    rc = lcow_metastore_walk(s->ms, NULL, NULL, collect_disk, &d, err);
    if (rc == LCOW_OK && d.oom)
        rc = lcow_snapshotter_oom(err);
    for (size_t i = 0; i < d.count && rc == LCOW_OK; i++) {
        lcow_error e = {0};
        lcow_code one = compact_disk(s, d.ids[i], sum, &e);
        if (one == LCOW_FAILED_PRECONDITION && strstr(e.message, " is in use ")) {
            sum->in_use++;
        } else if (one != LCOW_OK) {
            sum->failed++;
            LCOW_LOGW("compact --all: %s", e.message);
        }
        if (lcow_snapshotter_check_open(s, NULL) != LCOW_OK)
            rc = lcow_snapshotter_check_open(s, err); /* closing: stop between disks */
    }
    free(d.ids);
    return rc;
}

lcow_code lcow_snapshotter_compact(lcow_snapshotter *s, const char *key,
                                   lcow_compact_summary *summary, lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    if (!key || !*key)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "compact: a key is required");
    LCOW_SNAPSHOTTER_CALL(s, err, compact_impl(s, key, summary, err));
}

lcow_code lcow_snapshotter_compact_all(lcow_snapshotter *s, lcow_compact_summary *summary,
                                       lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    LCOW_SNAPSHOTTER_CALL(s, err, compact_all_impl(s, summary, err));
}

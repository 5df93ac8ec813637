/* Snapshot metadata in LevelDB: the schema, containerd's storage-layer
 * validation order, and one atomic write batch per mutation. Knows nothing
 * about files; the snapshotter composes it with core/os.
 *
 * Schema (version LCOW_METASTORE_SCHEMA; docs/storage.md has the details):
 *   "V"                              schema version, decimal
 *   "N"                              id high-water mark, decimal: every id
 *                                    below it may have been handed out
 *   "s/" key                         snapshot record (binary, see metastore.c)
 *   "i/" be64(id)                    -> key  (the id map)
 *   "c/" be64(parent id) be64(id)    -> child key (child index)
 *   "k/" ns 0x00 client-key 0x00 key -> ""   (client-key index, for owners)
 *   "d/" be64(disk id)               -> shared-scratch disk record
 *
 * Concurrency: reads (get, walk, views) are safe from any thread at any
 * time and never block on writers. Mutations (create, commit, remove,
 * update, id allocation) must be serialized by the caller (the snapshotter
 * holds its writer lock around read-validate-write). */
#ifndef LCOW_METASTORE_H
#define LCOW_METASTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"

#define LCOW_METASTORE_SCHEMA 1u

typedef struct lcow_metastore lcow_metastore;

/* A consistent read view (a LevelDB snapshot). NULL view = latest state. */
typedef struct lcow_meta_view lcow_meta_view;

typedef enum lcow_meta_scratch {
    LCOW_META_SCRATCH_NONE = 0,   /* views, extract-* layers */
    LCOW_META_SCRATCH_OWN = 1,    /* snapshots/<id>/sandbox.vhdx is this record's disk */
    LCOW_META_SCRATCH_SHARED = 2, /* sandbox.vhdx links to snapshots/<disk_id>/sandbox.vhdx */
} lcow_meta_scratch;

typedef struct lcow_meta_record {
    char *key;
    uint64_t id;
    lcow_kind kind;
    char *parent; /* "" when none */
    uint64_t parent_id;
    lcow_labels labels;
    lcow_time created;
    lcow_time updated;
    lcow_usage usage; /* committed only */
    lcow_meta_scratch scratch;
    uint64_t disk_id; /* SHARED: the id whose directory holds the disk */
} lcow_meta_record;

void lcow_meta_record_free(lcow_meta_record *rec);
/* Moves the Info fields out of rec into info (rec keeps the rest). */
bool lcow_meta_record_to_info(const lcow_meta_record *rec, lcow_info *info);

/* A shared scratch disk: the disk of record disk_id, linked to by `members`
 * SHARED records. `retained` once the owner record is gone: the directory
 * snapshots/<disk_id> then belongs to this record until members reaches 0. */
typedef struct lcow_meta_disk {
    uint64_t disk_id;
    uint32_t members;
    bool retained;
} lcow_meta_disk;

/* Smaller than LevelDB's 8 MiB cache / 4 MiB write buffer on purpose:
 * records are a few hundred bytes, the OS page cache holds the tables, and
 * a cache that fills for minutes (with blocks of tables compaction already
 * replaced) is memory growth a soak cannot tell from a leak; with 8 / 4 MiB
 * RSS climbed for 4+ minutes of the 10-minute soak. 2 MiB of cache made a
 * random Stat at 100k snapshots 1.86x a raw get (goal 1.8x); 4 MiB keeps it
 * at 1.74x (docs/performance.md, docs/reliability.md). */
#define LCOW_METASTORE_CACHE_BYTES ((size_t)4 << 20)
#define LCOW_METASTORE_WRITE_BUFFER_BYTES ((size_t)1 << 20)

typedef struct lcow_metastore_options {
    bool no_sync;              /* bulk population only: batches are not synced */
    size_t cache_bytes;        /* LevelDB block cache; 0 = LCOW_METASTORE_CACHE_BYTES */
    size_t write_buffer_bytes; /* LevelDB memtable; 0 = LCOW_METASTORE_WRITE_BUFFER_BYTES */
    uint32_t id_reserve;       /* ids reserved per synced bump of "N"; 0 = 1024 */
} lcow_metastore_options;

/* Opens or creates the LevelDB at path (absolute; on Windows with
 * backslashes). A newer schema -> FailedPrecondition naming both versions. */
lcow_code lcow_metastore_open(const char *path, const lcow_metastore_options *opts,
                              lcow_metastore **out, lcow_error *err);
void lcow_metastore_close(lcow_metastore *ms);

/* Compacts the whole database (after a bulk population, so that measured
 * reads do not race a background compaction). Slow; never on a hot path. */
void lcow_metastore_compact(lcow_metastore *ms);

/* Test hook: the schema version stored in the database (writes "V"). */
lcow_code lcow_metastore_set_schema_version(lcow_metastore *ms, uint32_t version, lcow_error *err);

lcow_meta_view *lcow_metastore_view_begin(lcow_metastore *ms);
void lcow_metastore_view_end(lcow_metastore *ms, lcow_meta_view *view);

/* Hands out the next id (never reused, also across restarts: a block of
 * ids is reserved with its own synced write to "N" when the previous block
 * is used up). Caller-serialized. */
lcow_code lcow_metastore_next_id(lcow_metastore *ms, uint64_t *id, lcow_error *err);
/* The id the next call of lcow_metastore_next_id will return (no effect).
 * Caller-serialized like next_id. */
uint64_t lcow_metastore_peek_next_id(const lcow_metastore *ms);

/* ---- reads ---- */

/* NotFound when key is absent (an empty key is absent). */
lcow_code lcow_metastore_get(lcow_metastore *ms, const lcow_meta_view *view, const char *key,
                             lcow_meta_record *rec, lcow_error *err);
/* Key of the record with this id; NotFound if none. *key malloc'd. */
lcow_code lcow_metastore_key_of(lcow_metastore *ms, const lcow_meta_view *view, uint64_t id,
                                char **key, lcow_error *err);
/* True if any child-index entry names id as parent. */
lcow_code lcow_metastore_has_children(lcow_metastore *ms, const lcow_meta_view *view, uint64_t id,
                                      bool *has, lcow_error *err);
/* Ids of rec's ancestors, immediate parent first (containerd's ParentIDs).
 * A record missing along the chain is NotFound. *ids malloc'd. */
lcow_code lcow_metastore_parent_ids(lcow_metastore *ms, const lcow_meta_view *view,
                                    const lcow_meta_record *rec, uint64_t **ids, size_t *count,
                                    lcow_error *err);

/* Visits records in key order starting strictly after `after` (NULL = from
 * the first). fn returns non-zero to stop (walk then returns LCOW_OK). The
 * record passed to fn is owned by the walk and valid only during the call
 * (never pass it to lcow_meta_record_free). */
typedef int (*lcow_meta_walk_fn)(void *ctx, const lcow_meta_record *rec);
lcow_code lcow_metastore_walk(lcow_metastore *ms, const lcow_meta_view *view, const char *after,
                              lcow_meta_walk_fn fn, void *ctx, lcow_error *err);

/* Keys of every record whose client key (lcow_key_split rules) equals
 * client_key in namespace ns[0..ns_len), in key order; fn as above. */
typedef int (*lcow_meta_key_fn)(void *ctx, const char *key);
lcow_code lcow_metastore_find_client_key(lcow_metastore *ms, const lcow_meta_view *view,
                                         const char *ns, size_t ns_len, const char *client_key,
                                         lcow_meta_key_fn fn, void *ctx, lcow_error *err);

/* Shared-disk record; NotFound if none. */
lcow_code lcow_metastore_disk_get(lcow_metastore *ms, const lcow_meta_view *view, uint64_t disk_id,
                                  lcow_meta_disk *disk, lcow_error *err);
typedef int (*lcow_meta_disk_fn)(void *ctx, const lcow_meta_disk *disk);
lcow_code lcow_metastore_walk_disks(lcow_metastore *ms, const lcow_meta_view *view,
                                    lcow_meta_disk_fn fn, void *ctx, lcow_error *err);
/* Visits every child-index entry (parent id, child id, child key). */
typedef int (*lcow_meta_child_fn)(void *ctx, uint64_t parent_id, uint64_t child_id,
                                  const char *child_key);
lcow_code lcow_metastore_walk_children(lcow_metastore *ms, const lcow_meta_view *view,
                                       lcow_meta_child_fn fn, void *ctx, lcow_error *err);

/* ---- validation (pure) ---- */

/* Every label: non-empty key, valid UTF-8 key and value, len(k)+len(v) <=
 * LCOW_MAX_LABEL_LEN; at most LCOW_MAX_LABELS. InvalidArgument otherwise. */
lcow_code lcow_metastore_validate_labels(const lcow_labels *labels, lcow_error *err);
/* Non-empty, valid UTF-8, at most LCOW_MAX_KEY_LEN bytes. */
lcow_code lcow_metastore_validate_key(const char *what, const char *key, lcow_error *err);

/* ---- mutations: one batch each; a failed call writes nothing ---- */

typedef struct lcow_meta_create {
    const char *key;
    const char *parent; /* NULL or "" = none */
    /* ACTIVE or VIEW; COMMITTED for a layer recorded whole (containerd's
     * remote-snapshot Prepare: its directory is complete before the record,
     * scratch NONE, usage below) */
    lcow_kind kind;
    const lcow_labels *labels;
    lcow_usage usage; /* COMMITTED */
    uint64_t id;      /* from lcow_metastore_next_id */
    lcow_meta_scratch scratch;
    uint64_t disk_id; /* SHARED: the disk to reference (members + 1) */
} lcow_meta_create;

/* Checks in containerd's order: parent missing -> NotFound; parent not
 * committed -> InvalidArgument; key exists -> AlreadyExists. For SHARED, the
 * disk must still be live (its owner record exists, or a retained disk
 * record does) -> FailedPrecondition. Then inserts the record (and its id
 * map, child and client-key index entries, the disk's member count) in one
 * batch. The parent's id is returned in *parent_id (0 = none) when non-NULL. */
lcow_code lcow_metastore_insert(lcow_metastore *ms, const lcow_meta_create *req,
                                uint64_t *parent_id, lcow_error *err);
/* The checks of lcow_metastore_insert, in the same order, writing nothing. */
lcow_code lcow_metastore_check_insert(lcow_metastore *ms, const lcow_meta_create *req,
                                      uint64_t *parent_id, lcow_error *err);

/* CommitActive: name exists -> AlreadyExists; key absent -> NotFound; key
 * not active -> FailedPrecondition; rebase parent conflicting ->
 * InvalidArgument; resulting parent missing -> NotFound, not committed ->
 * FailedPrecondition. The new record keeps id and scratch, takes exactly
 * `labels`, created = updated = now, usage as given (NULL = zero). */
lcow_code lcow_metastore_commit(lcow_metastore *ms, const char *name, const char *key,
                                const lcow_labels *labels, const char *rebase_parent,
                                const lcow_usage *usage, lcow_error *err);
/* The checks of lcow_metastore_commit, writing nothing; the active's id in
 * *id when non-NULL. */
lcow_code lcow_metastore_check_commit(lcow_metastore *ms, const char *name, const char *key,
                                      const lcow_labels *labels, const char *rebase_parent,
                                      uint64_t *id, lcow_error *err);

/* What a remove means for directories (the caller does the file work after
 * the batch is written). */
typedef struct lcow_meta_remove_effect {
    uint64_t id;
    lcow_kind kind;
    bool delete_own_dir; /* snapshots/<id> is no longer referenced */
    bool retain_own_dir; /* kept: members still link to its disk */
    uint64_t freed_disk; /* non-zero: snapshots/<freed_disk> is now unreferenced */
} lcow_meta_remove_effect;

/* Remove: absent -> NotFound; has children -> FailedPrecondition ("cannot
 * remove snapshot with child"); parent record missing -> NotFound. Deletes
 * the record, id map, child and client-key entries, and adjusts shared-disk
 * records, in one batch. */
lcow_code lcow_metastore_remove(lcow_metastore *ms, const char *key,
                                lcow_meta_remove_effect *effect, lcow_error *err);

/* Update by field paths (docs/reference/containerd-snapshotter.md, section 3):
 * absent -> NotFound; a path other than "labels" / "labels.<k>" (k non-empty) ->
 * InvalidArgument; resulting labels validated. Sets updated = now. */
lcow_code lcow_metastore_update(lcow_metastore *ms, const lcow_info *info, const char *const *paths,
                                size_t path_count, lcow_meta_record *out, lcow_error *err);

#endif

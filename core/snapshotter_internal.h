/* Internals of the snapshotter, shared by its files and with its tests and
 * benchmark (not a public contract):
 *
 *   snapshotter.c           the contract operations, open/close, the call guard
 *   mounts.c                the lcow-layer mount and its parentLayerPaths JSON
 *   snapshotter_recovery.c  orphan sweeps at open and in Cleanup
 *   snapshotter_check.c     lcow_snapshotter_check (the invariant checker)
 *   snapshotter_apply.c     Apply (a layer blob to layer.vhd) and its sweep
 *   snapshotter_removal.c   the queue of deletions a held file stopped, and
 *                           the thread that retries them with backoff
 *
 * Locking: s->lock (the writer lock) guards metadata read-validate-write and
 * the in-memory reservations (pending, discarding); slow file work runs
 * outside it; readers use LevelDB snapshots and never take it. */
#ifndef LCOW_SNAPSHOTTER_INTERNAL_H
#define LCOW_SNAPSHOTTER_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/layer/store.h"
#include "core/metastore.h"
#include "core/os/thread.h"
#include "core/scratch.h"
#include "core/snapshotter.h"

/* A Prepare between its two phases: the key is reserved, its directory is
 * being built, its parent and shared disk must not go away. */
typedef struct lcow_snapshotter_pending {
    char *key;
    char *parent;
    uint64_t id;
    uint64_t disk_id; /* shared disk it links to, 0 = none */
} lcow_snapshotter_pending;

/* A directory whose deletion failed (a held file): retried with backoff. */
typedef struct lcow_snapshotter_removal {
    char *path;        /* snapshots/rm-<id> or, when renaming failed, snapshots/<id> */
    unsigned attempts; /* failed deletions so far */
    uint64_t due_ms;   /* next attempt, lcow_os_monotonic_ms */
} lcow_snapshotter_removal;

/* An Apply between its phases: the key's layer.vhd is being written. */
typedef struct lcow_snapshotter_applying {
    char *key;
    uint64_t id;
} lcow_snapshotter_applying;

/* Tests: called on an Apply's thread as its conversion starts (its first
 * cancellation poll), with no lock of the snapshotter held. */
typedef void (*lcow_snapshotter_apply_hook)(void *ctx, const char *key);

struct lcow_snapshotter {
    char *root;
    char *snapshots_dir;
    char *tmp_dir;
    lcow_metastore *ms;
    lcow_scratch *scratch;
    /* The layer store (core/layer/store.h, <root>/layers): the base store
     * opens and closes it, a partition uses its base store's. */
    lcow_layer_store *layers;
    /* A partition (lcow_snapshotter_open_partition): its own metadata and
     * directories under root/partitions/<name>, the base store's scratch
     * policy (templates, locations), which it does not free. */
    bool partition;
    bool no_sync;
    lcow_mutex lock; /* writer lock */
    atomic_bool closed;
    lcow_snapshotter_pending *pending;
    size_t pending_count, pending_cap;
    /* Ids whose directories a Remove is deleting right now (outside the
     * lock): Cleanup leaves <id> and rm-<id> of these to it. */
    uint64_t *discarding;
    size_t discarding_count, discarding_cap;
    /* Applies in flight (outside the lock): Remove and Commit of their keys
     * are refused, Cleanup leaves their temporary files alone. */
    lcow_snapshotter_applying *applying;
    size_t applying_count, applying_cap;
    /* lcow_snapshotter_cancel_work was called: Applies stop. */
    atomic_bool cancel_work;
    /* Conversions running now and the most at once since open, and the
     * tests' hook at each conversion's start (snapshotter_apply.c). */
    atomic_uint converting, converting_max;
    lcow_snapshotter_apply_hook apply_hook;
    void *apply_hook_ctx;
    bool no_scratch;
    /* Deletions a held file stopped (snapshotter_removal.c), under
     * removal_lock; the reaper thread retries them from the first one
     * queued until close. */
    lcow_mutex removal_lock;
    lcow_cond removal_wake;
    lcow_snapshotter_removal *removals;
    size_t removal_count, removal_cap;
    lcow_thread reaper;
    bool reaper_started, reaper_stop;
    unsigned removal_retry_ms; /* first backoff; doubles up to LCOW_REMOVAL_RETRY_MAX_MS */
    lcow_snapshotter_removal_fn on_removal_queued;
    void *removal_ctx;
    lcow_snapshotter_compacted_fn on_compacted;
    void *compacted_ctx;
    /* Calls in progress; close waits for them to drain. */
    atomic_uint inflight;
    lcow_mutex drain_lock;
    lcow_cond drained;
};

/* ---- snapshotter.c ---- */

/* RESOURCE_EXHAUSTED "out of memory". */
lcow_code lcow_snapshotter_oom(lcow_error *err);
/* UNAVAILABLE once the store is closed. */
lcow_code lcow_snapshotter_check_open(lcow_snapshotter *s, lcow_error *err);

/* Every public call runs between enter and leave, so close never frees the
 * store under a running call (the read path only touches an atomic). */
lcow_code lcow_snapshotter_enter(lcow_snapshotter *s, lcow_error *err);
void lcow_snapshotter_leave(lcow_snapshotter *s);

/* The body of a public call: `call` runs between enter and leave. */
#define LCOW_SNAPSHOTTER_CALL(s, err, call)                                                        \
    do {                                                                                           \
        lcow_code rc_ = lcow_snapshotter_enter((s), (err));                                        \
        if (rc_ != LCOW_OK)                                                                        \
            return rc_;                                                                            \
        rc_ = (call);                                                                              \
        lcow_snapshotter_leave(s);                                                                 \
        return rc_;                                                                                \
    } while (0)

/* ---- snapshotter_compact.c ---- */

/* Fills usage's ext4 view from rec's scratch disk, if it has one that reads
 * (read-only, shared: a running VM's disk too); leaves it 0 otherwise. */
void lcow_snapshotter_ext4_usage(lcow_snapshotter *s, const lcow_meta_record *rec,
                                 lcow_usage *usage);

/* <root>/snapshots/<id>, malloc'd. */
char *lcow_snapshotter_dir_of(const lcow_snapshotter *s, uint64_t id);

/* Parses a decimal id directory name ("17"); false for anything else. */
bool lcow_snapshotter_parse_id(const char *name, uint64_t *id);

/* ---- snapshotter_remote.c ---- */

/* containerd's remote-snapshot Prepare: an extract-* key whose labels name
 * (containerd.io/snapshot.ref, and diff-id if sent) a layer the layer store
 * holds is committed as <ref> on parent with that layer linked, and the
 * answer is AlreadyExists; *handled false = an ordinary Prepare follows.
 * Called inside the call guard, labels validated. */
lcow_code lcow_snapshotter_remote_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                          const lcow_labels *labels, bool *handled,
                                          lcow_error *err);
/* For it (snapshotter.c): records `name`, a committed snapshot on parent
 * with labels, whose new directory fill() has made complete (the layer
 * linked and the directory synced), in one synced batch; the directory is
 * removed again on failure. Prepare's checks and errors (parent missing or
 * not committed, name taken). */
typedef lcow_code (*lcow_snapshotter_fill_fn)(void *ctx, const char *dir, lcow_error *err);
lcow_code lcow_snapshotter_insert_layer_in_call(lcow_snapshotter *s, const char *name,
                                                const char *parent, const lcow_labels *labels,
                                                lcow_snapshotter_fill_fn fill, void *ctx,
                                                lcow_error *err);

/* ---- mounts.c ---- */

/* The single lcow-layer mount of an active or view record (FailedPrecondition
 * for a committed one), read through view (NULL = the current state). */
lcow_code lcow_snapshotter_build_mounts(lcow_snapshotter *s, const lcow_meta_view *view,
                                        const lcow_meta_record *rec, lcow_mounts *mounts,
                                        lcow_error *err);

/* ---- snapshotter_apply.c ---- */

/* The Apply in flight on key, or NULL. Caller holds the lock. */
/* Tests and benchmarks: the hook (NULL = none; set before the Applies
 * start) and the most conversions seen running at once. */
void lcow_snapshotter_set_apply_hook(lcow_snapshotter *s, lcow_snapshotter_apply_hook fn,
                                     void *ctx);
unsigned lcow_snapshotter_conversions_max(lcow_snapshotter *s);
const lcow_snapshotter_applying *lcow_snapshotter_find_applying(const lcow_snapshotter *s,
                                                                const char *key);

/* Removes the temporary files an interrupted Apply left in the directories
 * of active snapshots (none is running for them: at open every one; in
 * Cleanup each directory is swept under the lock, skipping Applies in
 * flight). Best effort: the first failure is reported. */
lcow_code lcow_snapshotter_sweep_apply_temps(lcow_snapshotter *s, bool at_open, lcow_error *err);

/* ---- snapshotter_removal.c ---- */

/* Deletes the tree at path (a directory no record names any more). When
 * that fails (a file held open: EBUSY, a sharing violation, EACCES), the
 * path joins the removal queue, the reaper retries it with backoff, and
 * LCOW_OK is returned: the directory is an orphan either way, so a restart
 * finds it again (sweep at open) and queues it anew. Only out of memory is
 * returned (the directory then stays for the next sweep). */
lcow_code lcow_snapshotter_delete_or_queue(lcow_snapshotter *s, const char *path, lcow_error *err);
/* Whether path is in the removal queue (the invariant check allows it). */
bool lcow_snapshotter_removal_queued(lcow_snapshotter *s, const char *path);
/* Stops the reaper (close) and frees the queue (free). */
void lcow_snapshotter_removal_stop(lcow_snapshotter *s);
void lcow_snapshotter_removal_free(lcow_snapshotter *s);

/* Commit's labels: given plus the layer labels Apply put on the active key
 * (LCOW_LAYER_STORE_LABEL_*, which win). *out is always initialised. */
lcow_code lcow_snapshotter_merge_layer_labels(lcow_snapshotter *s, const char *key,
                                              const lcow_labels *given, lcow_labels *out,
                                              lcow_error *err);
/* The check of one record's layer: with a diff-id label, its layer.vhd is
 * the stored layer (same file). */
lcow_code lcow_snapshotter_check_layer_of(lcow_snapshotter *s, const lcow_meta_record *rec,
                                          lcow_error *err);

/* ---- snapshotter_recovery.c ---- */

/* Removes the directories in snapshots/ that no record, retained disk,
 * Prepare in flight or Remove in progress names, then stale scratch temp
 * files. at_open (nothing else runs yet): also empties tmp/ and treats every
 * unknown directory as an orphan. Best effort: the first failure is
 * reported, the rest still goes. */
lcow_code lcow_snapshotter_sweep_orphans(lcow_snapshotter *s, bool at_open, lcow_error *err);

#endif

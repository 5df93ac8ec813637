/* The snapshotter contract: containerd's snapshot semantics over LevelDB.
 *
 * Keys and names share one namespace. Kinds are active (writable, from
 * Prepare), view (read-only, from View) and committed (from Commit of an
 * active; the only kind that can be a parent). Every mutation is one synced
 * LevelDB write batch; a failed call changes nothing. Errors use the
 * containerd categories of core/base/errors.h, in containerd's evaluation order
 * (docs/reference/containerd-snapshotter.md, section 10).
 *
 * All functions are thread-safe. Readers (stat, walk, mounts, usage) read a
 * LevelDB snapshot and never wait for a writer; slow file work (scratch
 * creation, directory deletion) runs outside the metadata lock.
 *
 * Outputs (lcow_info, lcow_mounts, ...) are filled by the callee and released
 * by the caller with the matching *_free of core/base/types.h. */
#ifndef LCOW_SNAPSHOTTER_H
#define LCOW_SNAPSHOTTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"
#include "core/disk/scratchdisk.h" /* lcow_scratch_backend */
#include "core/disk/sha256.h"      /* digest string sizes */
#include "core/layer/store.h"      /* the layer store's types */

typedef struct lcow_snapshotter lcow_snapshotter;

/* Told once per directory whose deletion had to be queued (path, and why
 * the first attempt failed); the service writes one Event Log event. It
 * runs on the thread that queued the deletion and must not call the store. */
typedef void (*lcow_snapshotter_removal_fn)(void *ctx, const char *path, const char *reason);

/* The reaper's backoff: the first retry after removal_retry_ms (default
 * LCOW_REMOVAL_RETRY_MS), doubling up to LCOW_REMOVAL_RETRY_MAX_MS. */
#define LCOW_REMOVAL_RETRY_MS 1000u
#define LCOW_REMOVAL_RETRY_MAX_MS (10u * 60u * 1000u)

/* A compaction finished: the disk's path, its file bytes before and after. */
typedef void (*lcow_snapshotter_compacted_fn)(void *ctx, const char *path, uint64_t bytes_before,
                                              uint64_t bytes_after);

typedef struct lcow_snapshotter_config {
    const char *root; /* state directory, absolute */
    lcow_scratch_backend scratch_backend;
    /* Directories that rootfs.location labels and CreateScratch paths must be
     * inside; NULL/0 means any existing absolute directory is accepted. */
    const char *const *scratch_dir_allow;
    size_t scratch_dir_allow_count;
    /* Own scratch disks of this many GiB and more are formatted in place
     * instead of copied from the cached template (--scratch-format-from-gb);
     * 0 = always copy. */
    uint32_t scratch_format_from_gb;
    /* The layer store's bound on unreferenced layers, in bytes
     * (--layer-cache-max-bytes; 0 = LCOW_LAYER_STORE_DEFAULT_MAX_BYTES). */
    uint64_t layer_cache_max_bytes;
    /* false only for bulk benchmark population: batches are not synced. */
    bool no_sync;
    /* Tests and benchmarks of the metadata path only: actives get an empty
     * directory, as extract-* layers do, and no scratch disk. */
    bool no_scratch;
    /* Deletions stopped by a held file (docs/reliability.md): first retry
     * after this many ms (0 = LCOW_REMOVAL_RETRY_MS; tests use less), and who
     * hears of each one queued (NULL = the log only). A partition uses its
     * base store's. */
    unsigned removal_retry_ms;
    lcow_snapshotter_removal_fn on_removal_queued;
    void *removal_ctx;
    /* Who hears of each completed compaction (the Windows Event Log); NULL =
     * the log only. A partition uses its base store's. */
    lcow_snapshotter_compacted_fn on_compacted;
    void *compacted_ctx;
} lcow_snapshotter_config;

/* Opens (creating if needed) the store under config->root: creates meta/,
 * snapshots/, tmp/; refuses a store whose schema version is newer than this
 * build (FailedPrecondition with a clear message); recovers after a crash
 * (removes rm-* and unknown snapshot directories, stale temp files). */
lcow_code lcow_snapshotter_open(const lcow_snapshotter_config *config, lcow_snapshotter **out,
                                lcow_error *err);
/* A partition of an open store: snapshots of their own (metadata,
 * snapshots/ and tmp/ under <root>/partitions/<name>), the same calls, the
 * same rules, and nothing in common with the base store's snapshots or other
 * partitions' (keys, parents, Walk, Cleanup and the invariant check stay
 * inside it), while the scratch templates and their locations are the base
 * store's. The endpoints use it to keep containerd's snapshots (gRPC) apart
 * from the shims' (MessagePack-RPC): containerd's garbage collector removes
 * every snapshot it sees and has no record of. name: 1..64 of [a-z0-9-].
 * Close and free every partition before its base. */
lcow_code lcow_snapshotter_open_partition(lcow_snapshotter *base, const char *name,
                                          lcow_snapshotter **out, lcow_error *err);

/* Closes the store. A second close returns LCOW_OK. Calls after close fail
 * with LCOW_UNAVAILABLE. */
lcow_code lcow_snapshotter_close(lcow_snapshotter *s);
/* Frees the handle (closing first if needed). */
void lcow_snapshotter_free(lcow_snapshotter *s);

/* parent may be NULL or "" for none; labels may be NULL. */
lcow_code lcow_snapshotter_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                   const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err);
lcow_code lcow_snapshotter_view(lcow_snapshotter *s, const char *key, const char *parent,
                                const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err);
lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err);
/* parent (rebase) may be NULL or "". */
lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err);
lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err);
lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err);
/* Update of labels by field paths ("labels", "labels.<key>"); none = replace
 * all labels. Any other path is InvalidArgument. Result in *out. */
lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err);
lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err);

typedef struct lcow_walk_options {
    const char *const *filters; /* OR of filters; NULL/0 or one "" = all */
    size_t filter_count;
    const char *after; /* resume strictly after this key; NULL = start */
    size_t limit;      /* 0 = no limit */
} lcow_walk_options;

/* Called for each matching snapshot in key order, from a consistent
 * snapshot of the store with no lock held (the callback may call stat). A
 * non-zero return stops the walk; walk then returns LCOW_OK. */
typedef int (*lcow_walk_fn)(void *ctx, const lcow_info *info);

/* When limit is reached and more matches may follow, *next (if non-NULL) is
 * set to a malloc'd cursor to pass as `after`; otherwise *next = NULL. */
lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err);

/* Removes every directory and file the metadata does not reference. A
 * directory that cannot go now (a held file) is queued, as Remove's are,
 * and does not fail the call; the queue is retried first. */
lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err);

/* Directories whose deletion a held file stopped (Remove, Cleanup, the sweep
 * at open), waiting for the reaper thread's next attempt. */
size_t lcow_snapshotter_pending_removals(lcow_snapshotter *s);
/* Tries every queued deletion now, whatever its backoff; returns how many
 * are still queued. */
size_t lcow_snapshotter_retry_removals(lcow_snapshotter *s);

/* What Status reports about one store (or partition). */
typedef struct lcow_store_status {
    int64_t active, committed, view; /* snapshots by kind */
    int64_t bytes, inodes;           /* the whole root on disk (lcow_os_usage) */
    int64_t scratch_templates;       /* scratch*.vhdx cached in the root */
    int64_t layers;                  /* layers in the layer store; -1 = none open */
    int64_t pending_removals;        /* lcow_snapshotter_pending_removals */
} lcow_store_status;

/* Walks the metadata and the root once (milliseconds per thousand snapshots). */
lcow_code lcow_snapshotter_status(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err);

/* Compact (docs/design.md "Compact"; core/disk/compact.h): gives the host
 * back every payload block of the active key's scratch disk (a shared disk:
 * the one disk) that holds only free ext4 blocks. FailedPrecondition when
 * the key has no scratch disk, the disk is in use (open by a VM or anyone:
 * "... is in use ..."), or its filesystem is not clean. summary->disks is 1. */
lcow_code lcow_snapshotter_compact(lcow_snapshotter *s, const char *key,
                                   lcow_compact_summary *summary, lcow_error *err);
/* Every active's disk, each shared disk once; disks in use or failing are
 * counted (in_use, failed) and skipped, not errors. */
lcow_code lcow_snapshotter_compact_all(lcow_snapshotter *s, lcow_compact_summary *summary,
                                       lcow_error *err);

/* Creates a formatted ext4 scratch VHDX at an absolute path (the standalone
 * CreateScratch of runhcs); path is subject to the scratch_dir_allow list. */
lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err);

/* ---- layer import (Apply) ---- */

typedef struct lcow_apply_request {
    const char *key;        /* an active snapshot (normally an extract-* key) */
    const char *path;       /* the layer blob on this host, absolute */
    const char *media_type; /* NULL or "": detect gzip / zstd / tar by magic bytes */
    const char *digest;     /* "sha256:<hex>" the blob must have; NULL: not checked */
    bool verity;            /* append a dm-verity superblock and hash tree */
} lcow_apply_request;

typedef struct lcow_apply_result {
    char diff_id[LCOW_SHA256_DIGEST_STRING_SIZE]; /* "sha256:<hex>" of the uncompressed tar */
    char digest[LCOW_SHA256_DIGEST_STRING_SIZE];  /* "sha256:<hex>" of the blob */
    uint64_t size;                                /* blob bytes */
    uint64_t layer_bytes;                         /* bytes of layer.vhd */
    bool has_verity_root_hash;
    char verity_root_hash[LCOW_SHA256_HEX_SIZE]; /* hex, as veritysetup takes it */
} lcow_apply_result;

/* Converts the blob into <dir>/layer.vhd of the active snapshot key: ext4
 * byte-identical to tar2ext4 -overlay -vhd -max-gb 128 (docs/layers.md),
 * with dm-verity when asked. The conversion runs outside the metadata lock;
 * while it runs, Remove and Commit of key are FailedPrecondition (as a
 * second Apply of it). NotFound for a missing key or blob, FailedPrecondition
 * for a key that is not active or already has a layer.vhd, InvalidArgument
 * for a relative path and for bad blobs (naming the entry), ResourceExhausted
 * past 128 GiB, Unavailable when a stop cancels it. On any failure the
 * snapshot's directory is as it was (no layer.vhd, no temporary file). */
lcow_code lcow_snapshotter_apply(lcow_snapshotter *s, const lcow_apply_request *req,
                                 lcow_apply_result *out, lcow_error *err);

/* The first step of a stop: Applies in flight are cancelled (Unavailable,
 * their temporary files removed) and new ones refused; every other call
 * goes on until close. Close implies it. */
void lcow_snapshotter_cancel_work(lcow_snapshotter *s);

/* ---- the layer store (core/layer/store.h, shared with partitions) ---- */

/* lcowsnapctl layers: every stored layer with its blob digests. */
lcow_code lcow_snapshotter_list_layers(lcow_snapshotter *s, lcow_layer_store_list_fn fn, void *ctx,
                                       lcow_error *err);
/* lcowsnapctl prune: unreferenced stored layers removed as opts says. */
lcow_code lcow_snapshotter_prune_layers(lcow_snapshotter *s,
                                        const lcow_layer_store_prune_options *opts,
                                        lcow_layer_store_prune_result *res, lcow_error *err);
/* The store itself (tests, benchmarks, the remote-snapshot Prepare). */
lcow_layer_store *lcow_snapshotter_layer_store(lcow_snapshotter *s);

/* Invariant check: every record's parent exists and is committed, child
 * counts match, every active's directory exists, no directory without a
 * record (after cleanup), shared-scratch reference counts match. Returns
 * LCOW_OK or LCOW_INTERNAL with the first violation in err. */
lcow_code lcow_snapshotter_check(lcow_snapshotter *s, lcow_error *err);

#endif

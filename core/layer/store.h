/* The layer store: one converted LCOW layer (layer.vhd) per uncompressed
 * layer digest (diffID) and verity choice, shared by every snapshot that
 * holds that layer through a hard link (docs/layers.md, "The layer store").
 *
 * Layout under <root>/layers (the state directory's, shared by partitions):
 *
 *   sha256-<hex>[.verity]/layer.vhd   the stored layer; its link count minus
 *                                     one is the number of snapshots using it
 *   sha256-<hex>[.verity]/info        its record (diffID, verity root hash,
 *                                     size, created), written last: a
 *                                     directory without it is incomplete
 *   sha256-<hex>[.verity]/last-use    advisory (no fsync): last link time
 *   blobs/sha256-<hex>                blob digest -> "sha256:<diffID hex>"
 *   tmp/                              conversions in progress
 *
 * References: a snapshot references a stored layer by holding a hard link to
 * it (`<snapshot dir>/layer.vhd`), made by lcow_layer_store_link or
 * lcow_layer_store_apply. Nothing else records a reference: removing the
 * snapshot's directory drops it, so the count can never disagree with the
 * disk after a crash. An unreferenced layer stays cached until the size
 * bound (max_unreferenced_bytes, least recently used first) or
 * lcow_layer_store_prune removes it.
 *
 * Every function is thread-safe. Different diffIDs convert concurrently; the
 * store's lock is held only for the short lookups, links and removals. */
#ifndef LCOW_LAYER_STORE_H
#define LCOW_LAYER_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"
#include "core/disk/sha256.h"
#include "core/disk/verity.h"
#include "core/layer/apply.h"

/* Labels Apply puts on the active (and Commit keeps): the layer's diffID
 * ("sha256:<hex>", containerd's own label name) and, with verity, the root
 * hash (64 hex digits). */
#define LCOW_LAYER_STORE_LABEL_DIFF_ID "containerd.io/snapshot/diff-id"
#define LCOW_LAYER_STORE_LABEL_VERITY_ROOT "containerd.io/snapshot/lcow/verity-root-hash"

/* The directory under the state root. */
#define LCOW_LAYER_STORE_DIR "layers"

/* Default bound on the bytes of unreferenced stored layers. */
#define LCOW_LAYER_STORE_DEFAULT_MAX_BYTES (20ull << 30)

typedef struct lcow_layer_store lcow_layer_store;

typedef struct lcow_layer_store_options {
    /* Unreferenced layers are evicted (least recently used first) while
     * their total exceeds this; 0 = LCOW_LAYER_STORE_DEFAULT_MAX_BYTES,
     * UINT64_MAX = no bound. */
    uint64_t max_unreferenced_bytes;
    bool no_sync; /* benchmarks only */
} lcow_layer_store_options;

/* One stored layer. */
typedef struct lcow_layer_store_info {
    char diff_id[LCOW_SHA256_DIGEST_STRING_SIZE]; /* "sha256:<hex>" */
    bool verity;
    char verity_root_hash[LCOW_SHA256_HEX_SIZE]; /* "" without verity */
    uint64_t bytes;                              /* size of layer.vhd */
    uint32_t references;                         /* snapshots linking it */
    lcow_time created;
    lcow_time last_use;
} lcow_layer_store_info;

/* Opens (creating) <root>/layers and recovers it: removes tmp/'s content,
 * incomplete layer directories (no info) and blob entries whose layer is
 * gone. */
lcow_code lcow_layer_store_open(const char *root, const lcow_layer_store_options *opts,
                                lcow_layer_store **out, lcow_error *err);
/* Frees the store (NULL is fine). No call may be running. */
void lcow_layer_store_close(lcow_layer_store *st);

/* Whether the layer (diff_id "sha256:<hex>", verity) is stored; *info
 * (may be NULL) filled when it is. INVALID_ARGUMENT for a malformed
 * diff_id. */
lcow_code lcow_layer_store_find(lcow_layer_store *st, const char *diff_id, bool verity, bool *found,
                                lcow_layer_store_info *info, lcow_error *err);

/* Links the stored layer into dir as layer.vhd (a hard link, dir synced):
 * this is the reference. Updates the last use. NOT_FOUND when the layer is
 * not stored (e.g. pruned after a find), ALREADY_EXISTS when dir has a
 * layer.vhd. *info (may be NULL) describes the layer. */
lcow_code lcow_layer_store_link(lcow_layer_store *st, const char *diff_id, bool verity,
                                const char *dir, lcow_layer_store_info *info, lcow_error *err);

typedef struct lcow_layer_store_apply_result {
    lcow_layer_apply_result apply; /* as lcow_layer_apply_blob's (format, digests, sizes, root) */
    bool converted;                /* false: an already stored layer was linked */
} lcow_layer_store_apply_result;

/* Apply through the store: the blob at blob_path becomes `<dir>/layer.vhd`.
 * With opts->digest naming a blob whose diffID is known and stored, the
 * layer is linked without reading the blob; otherwise it is converted into
 * the store (the digest checked), published there, then linked. Concurrent
 * applies of one digest convert once (the others wait and link). opts as
 * for lcow_layer_apply_blob (replace is ignored). ALREADY_EXISTS when dir
 * has a layer.vhd. */
lcow_code lcow_layer_store_apply(lcow_layer_store *st, const char *blob_path, const char *dir,
                                 const lcow_layer_apply_options *opts,
                                 lcow_layer_store_apply_result *res, lcow_error *err);

/* Every stored layer, in diffID order, with the blob digests that map to it
 * (blob_digests[i] are "sha256:<hex>"; valid during the callback). A
 * non-zero return stops the walk. */
typedef int (*lcow_layer_store_list_fn)(void *ctx, const lcow_layer_store_info *info,
                                        const char *const *blob_digests, size_t blob_count);
lcow_code lcow_layer_store_list(lcow_layer_store *st, lcow_layer_store_list_fn fn, void *ctx,
                                lcow_error *err);

typedef struct lcow_layer_store_prune_options {
    /* Unreferenced layers last used at least this many seconds ago; 0 with
     * all = false means none (only the size bound applies). */
    int64_t older_than_sec;
    bool all; /* every unreferenced layer */
} lcow_layer_store_prune_options;

typedef struct lcow_layer_store_prune_result {
    uint64_t layers;
    uint64_t bytes;
} lcow_layer_store_prune_result;

/* Removes unreferenced layers as opts says, then evicts down to the bound.
 * res may be NULL. */
lcow_code lcow_layer_store_prune(lcow_layer_store *st, const lcow_layer_store_prune_options *opts,
                                 lcow_layer_store_prune_result *res, lcow_error *err);

/* Removes what interrupted work left (temps in tmp/ that no running apply
 * owns, incomplete layer directories, dangling blob entries). Cleanup runs
 * it. */
lcow_code lcow_layer_store_sweep(lcow_layer_store *st, lcow_error *err);

/* The store's invariants: every layer directory is complete (info parses,
 * names its directory's diffID and verity, layer.vhd has info's size), every
 * blob entry names a stored diffID, tmp/ holds only running applies' files.
 * INTERNAL "invariant violated: ..." otherwise. */
lcow_code lcow_layer_store_check(lcow_layer_store *st, lcow_error *err);

/* Counters since open (tests and the benchmark read them). */
typedef struct lcow_layer_store_stats {
    uint64_t conversions; /* blobs read and converted */
    uint64_t stored;      /* of these, layers that were new to the store */
    uint64_t links;       /* layer.vhd links made into snapshot directories */
    uint64_t known_blobs; /* applies recognised by the blob index without reading */
    uint64_t evictions;   /* layers removed by the bound or prune */
} lcow_layer_store_stats;
void lcow_layer_store_stats_get(lcow_layer_store *st, lcow_layer_store_stats *out);

#endif

/* Protocol v1 messages: strict typed decoding and encoding of every method's
 * params and results (docs/protocol.md).
 *
 * Every method's params and result are described by a table of fields (name,
 * type, required?) over the flat structs below, and one generic codec walks
 * those tables in both directions: the server decodes params and encodes
 * results, the client does the opposite. In this file a new method is an
 * enum value, one row of the method table and its field tables (and any new
 * fields of lcow_params / lcow_result); docs/architecture.md lists the other
 * places it touches (dispatch, core, client, lcowsnapctl, the fake cores).
 *
 * Decoding rules: a params map may carry unknown keys (ignored, so newer
 * clients work with older services); a known key with the wrong type, a
 * missing required key, a duplicate key or a key that is not valid UTF-8 is
 * InvalidArgument. Optional fields may be nil (= absent). Times are the
 * msgpack Timestamp extension (type -1). */
#ifndef LCOW_RPC_PROTO_H
#define LCOW_RPC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "core/base/errors.h"
#include "core/base/types.h"

#define LCOW_PROTOCOL_VERSION 1
#define LCOW_SNAPSHOTTER_NAME "windows-lcow"
/* What Version advertises, as containerd names a snapshotter's capabilities:
 * "rebase" (Commit takes a parent, so containerd's unpacker may prepare and
 * apply every layer of an image at once and give each its parent at Commit)
 * and "remote-snapshot" (an extraction Prepare carrying
 * containerd.io/snapshot.ref of a layer already here answers AlreadyExists,
 * the layer committed under that ref; docs/grpc.md). */
#define LCOW_CAPABILITIES                                                                          \
    {                                                                                              \
        "rebase", "remote-snapshot"                                                                \
    }
/* Walk answers at most this many infos per call (less if the client's limit
 * is lower); a `next` cursor continues. */
#define LCOW_WALK_PAGE_MAX 1000

typedef enum lcow_method {
    LCOW_METHOD_PREPARE = 0,
    LCOW_METHOD_VIEW,
    LCOW_METHOD_MOUNTS,
    LCOW_METHOD_COMMIT,
    LCOW_METHOD_REMOVE,
    LCOW_METHOD_STAT,
    LCOW_METHOD_UPDATE,
    LCOW_METHOD_USAGE,
    LCOW_METHOD_WALK,
    LCOW_METHOD_CLEANUP,
    LCOW_METHOD_VERSION,
    LCOW_METHOD_CREATE_SCRATCH,
    LCOW_METHOD_APPLY,
    LCOW_METHOD_STATUS,
    LCOW_METHOD_COMPACT,
    LCOW_METHOD_LAYERS,
    LCOW_METHOD_PRUNE_LAYERS,
    LCOW_METHOD_COUNT
} lcow_method;

/* Wire name ("Prepare", ...); NULL when out of range. */
const char *lcow_method_name(lcow_method method);
/* Exact, case-sensitive lookup of a wire name. */
bool lcow_method_lookup(const char *name, size_t len, lcow_method *out);

/* A list of strings (fieldpaths, filters). */
typedef struct lcow_strv {
    size_t count;
    char **items;
} lcow_strv;

void lcow_strv_free(lcow_strv *v);
bool lcow_strv_push(lcow_strv *v, const char *s);

/* Params of every method, flattened; each method uses its own fields.
 * Strings are NULL when absent. */
typedef struct lcow_params {
    char *key;
    char *parent;
    char *name;
    lcow_labels labels;
    lcow_info info; /* Update */
    bool has_info;
    lcow_strv fieldpaths; /* Update */
    lcow_strv filters;    /* Walk */
    uint64_t limit;       /* Walk; 0 = none */
    char *after;          /* Walk */
    char *path;           /* CreateScratch, Apply */
    uint32_t size_gb;     /* CreateScratch; 0 = default */
    uint32_t block_size_mb;
    char *media_type; /* Apply; NULL = detect */
    char *digest;     /* Apply; NULL = not checked */
    bool verity;      /* Apply */
    bool all;         /* Compact: every active's disk instead of key's; PruneLayers: every
                         unreferenced layer */
    uint64_t older_than_seconds; /* PruneLayers; 0 = no age rule */
} lcow_params;

void lcow_params_free(lcow_params *params);

typedef struct lcow_infos {
    size_t count;
    size_t capacity;
    lcow_info *items;
} lcow_infos;

bool lcow_infos_push_copy(lcow_infos *infos, const lcow_info *info);
void lcow_infos_free(lcow_infos *infos);

/* Named counters (Status: "Prepare/NotFound" -> 3, "p99" -> 4096). */
typedef struct lcow_counter {
    char *name;
    int64_t value;
} lcow_counter;

typedef struct lcow_counters {
    size_t count, cap;
    lcow_counter *items;
} lcow_counters;

/* Clients accept at most this many counters in one map. */
#define LCOW_COUNTERS_MAX 4096

bool lcow_counters_add(lcow_counters *c, const char *name, int64_t value);
/* The value of name, or fallback when absent. */
int64_t lcow_counters_get(const lcow_counters *c, const char *name, int64_t fallback);
void lcow_counters_free(lcow_counters *c);

/* Status (docs/protocol.md): the service and its store. */
typedef struct lcow_status {
    int64_t uptime_seconds;
    int64_t active, committed, view;
    int64_t store_bytes, store_inodes;
    int64_t scratch_templates;
    int64_t layers; /* in the layer store; -1: none open */
    int64_t pending_removals;
    int64_t connections_open, connections_total;
    int64_t requests_total, errors_total;
    int64_t bytes_converted, bytes_created;
    lcow_counters requests;   /* "<Method>/<lcow_code_name>" -> answers */
    lcow_counters latency_us; /* "p50", "p90", "p99", "max": bucket upper bounds */
} lcow_status;

/* One stored layer (Layers: core/layer/store.h's lcow_layer_store_info). */
typedef struct lcow_layer_entry {
    char *diff_id; /* "sha256:<hex>" */
    bool verity;
    char *verity_root_hash; /* NULL without verity */
    int64_t bytes;          /* layer.vhd */
    int64_t references;     /* snapshots linking it */
    lcow_time created;
    lcow_time last_use;
    lcow_strv blob_digests; /* blobs known to give this diffID */
} lcow_layer_entry;

typedef struct lcow_layer_entries {
    size_t count, cap;
    lcow_layer_entry *items;
} lcow_layer_entries;

/* Clients accept at most this many layers in one answer. */
#define LCOW_LAYERS_MAX 100000

/* Appends a copy of e; false when out of memory. */
bool lcow_layer_entries_push_copy(lcow_layer_entries *v, const lcow_layer_entry *e);
void lcow_layer_entries_free(lcow_layer_entries *v);

/* Results of every method, flattened. */
typedef struct lcow_result {
    lcow_mounts mounts; /* Prepare, View, Mounts */
    lcow_info info;     /* Stat, Update */
    bool has_info;
    int64_t size; /* Usage; Apply: blob bytes */
    int64_t inodes;
    /* Usage: the scratch disk's ext4 view (lcow_usage); 0 = absent. */
    uint64_t ext4_used_bytes, ext4_used_inodes, ext4_total_bytes, ext4_total_inodes;
    lcow_compact_summary compact; /* Compact */
    lcow_layer_entries layers;    /* Layers */
    int64_t pruned_layers;        /* PruneLayers */
    int64_t pruned_bytes;
    lcow_infos infos; /* Walk */
    char *next;       /* Walk; NULL = no more */
    char *version;    /* Version */
    int64_t protocol;
    char *snapshotter;
    lcow_strv capabilities; /* Version: LCOW_CAPABILITIES (absent from older services) */
    char *path;             /* CreateScratch */
    char *diff_id;          /* Apply: "sha256:<hex>" of the uncompressed tar */
    char *digest;           /* Apply: "sha256:<hex>" of the blob */
    int64_t layer_bytes;
    char *verity_root_hash; /* Apply with verity; NULL otherwise */
    lcow_status status;     /* Status */
} lcow_result;

void lcow_result_free(lcow_result *result);

/* A decoded request (filled by lcow_proto_decode_request). */
typedef struct lcow_request {
    uint32_t msgid;
    lcow_method method;
    lcow_params params;
} lcow_request;

/* Decodes [0, msgid, method, [params]]. On failure *has_msgid says whether
 * the msgid could be read (so an error response can be sent) and err holds
 * InvalidArgument (shape, types, UTF-8) or NotImplemented (unknown method).
 * On success the caller frees req->params. */
lcow_code lcow_proto_decode_request(const msgpack_object *obj, lcow_request *req, bool *has_msgid,
                                    lcow_error *err);

/* Decodes a params map (or an empty params array) for one method. */
lcow_code lcow_proto_decode_params(lcow_method method, const msgpack_object *params_array,
                                   lcow_params *out, lcow_error *err);

/* Encodes [0, msgid, method, [params]]. */
bool lcow_proto_encode_request(msgpack_packer *pk, uint32_t msgid, lcow_method method,
                               const lcow_params *params);

/* Encodes [1, msgid, nil, result]. */
bool lcow_proto_encode_result(msgpack_packer *pk, uint32_t msgid, lcow_method method,
                              const lcow_result *result);
/* Encodes [1, msgid-or-nil, {code, message}, nil]. */
bool lcow_proto_encode_error(msgpack_packer *pk, bool has_msgid, uint32_t msgid, lcow_code code,
                             const char *message);

/* Decodes a response. Returns LCOW_OK when it is a well-formed response
 * (then *call_code/call_err carry the server's error, LCOW_OK if none, and
 * result is filled on success); InvalidArgument when malformed. msgid is
 * nil in responses to frames without a readable msgid: *has_msgid = false. */
lcow_code lcow_proto_decode_response(const msgpack_object *obj, lcow_method method, bool *has_msgid,
                                     uint32_t *msgid, lcow_error *call_err, lcow_result *result,
                                     lcow_error *err);

#endif

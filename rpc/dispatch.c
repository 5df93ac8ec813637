/* Method table and handlers: decoded params -> core/snapshotter.h calls. */
#include "rpc/dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/stats.h"
#include "core/os/os.h"
#include "rpc/frame.h"

typedef lcow_code (*handler_fn)(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                                lcow_error *err);

static lcow_code do_prepare(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                            lcow_error *err)
{
    return lcow_snapshotter_prepare(s, p->key, p->parent, &p->labels, &r->mounts, err);
}

static lcow_code do_view(lcow_snapshotter *s, const lcow_params *p, lcow_result *r, lcow_error *err)
{
    return lcow_snapshotter_view(s, p->key, p->parent, &p->labels, &r->mounts, err);
}

static lcow_code do_mounts(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    return lcow_snapshotter_mounts(s, p->key, &r->mounts, err);
}

static lcow_code do_commit(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    return lcow_snapshotter_commit(s, p->name, p->key, &p->labels, p->parent, err);
}

static lcow_code do_remove(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    return lcow_snapshotter_remove(s, p->key, err);
}

static lcow_code do_stat(lcow_snapshotter *s, const lcow_params *p, lcow_result *r, lcow_error *err)
{
    lcow_code code = lcow_snapshotter_stat(s, p->key, &r->info, err);
    r->has_info = code == LCOW_OK;
    return code;
}

static lcow_code do_update(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    lcow_code code = lcow_snapshotter_update(s, &p->info, (const char *const *)p->fieldpaths.items,
                                             p->fieldpaths.count, &r->info, err);
    r->has_info = code == LCOW_OK;
    return code;
}

static lcow_code do_usage(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                          lcow_error *err)
{
    lcow_usage usage = {0, 0};
    lcow_code code = lcow_snapshotter_usage(s, p->key, &usage, err);
    r->size = usage.size;
    r->inodes = usage.inodes;
    r->ext4_used_bytes = usage.ext4_used_bytes;
    r->ext4_used_inodes = usage.ext4_used_inodes;
    r->ext4_total_bytes = usage.ext4_total_bytes;
    r->ext4_total_inodes = usage.ext4_total_inodes;
    return code;
}

static lcow_code do_compact(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                            lcow_error *err)
{
    bool has_key = p->key && *p->key;
    if (has_key == p->all)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "Compact takes either a key or all=true");
    if (p->all)
        return lcow_snapshotter_compact_all(s, &r->compact, err);
    return lcow_snapshotter_compact(s, p->key, &r->compact, err);
}

typedef struct layers_collect {
    lcow_layer_entries *out;
    bool out_of_memory;
} layers_collect;

static int collect_layer(void *ctx, const lcow_layer_store_info *info,
                         const char *const *blob_digests, size_t blob_count)
{
    layers_collect *c = ctx;
    lcow_layer_entry e = {.diff_id = (char *)info->diff_id,
                          .verity = info->verity,
                          .verity_root_hash = info->verity ? (char *)info->verity_root_hash : NULL,
                          .bytes = (int64_t)info->bytes,
                          .references = info->references,
                          .created = info->created,
                          .last_use = info->last_use,
                          .blob_digests = {blob_count, (char **)blob_digests}};
    if (c->out->count >= LCOW_LAYERS_MAX || !lcow_layer_entries_push_copy(c->out, &e)) {
        c->out_of_memory = true;
        return 1;
    }
    return 0;
}

static lcow_code do_layers(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    layers_collect c = {.out = &r->layers};
    lcow_code code = lcow_snapshotter_list_layers(s, collect_layer, &c, err);
    if (code == LCOW_OK && c.out_of_memory)
        code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "out of memory (or more than %d layers) listing the layers",
                              LCOW_LAYERS_MAX);
    return code;
}

static lcow_code do_prune_layers(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                                 lcow_error *err)
{
    if (p->older_than_seconds > INT64_MAX)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "PruneLayers: older_than_seconds is too large");
    if (!p->all && p->older_than_seconds == 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "PruneLayers takes all=true or older_than_seconds > 0");
    lcow_layer_store_prune_options o = {.all = p->all,
                                        .older_than_sec = (int64_t)p->older_than_seconds};
    lcow_layer_store_prune_result res;
    lcow_code code = lcow_snapshotter_prune_layers(s, &o, &res, err);
    if (code == LCOW_OK) {
        r->pruned_layers = (int64_t)res.layers;
        r->pruned_bytes = (int64_t)res.bytes;
    }
    return code;
}

typedef struct walk_collect {
    lcow_infos *infos;
    bool out_of_memory;
} walk_collect;

static int collect_info(void *ctx, const lcow_info *info)
{
    walk_collect *collect = ctx;
    if (lcow_infos_push_copy(collect->infos, info))
        return 0;
    collect->out_of_memory = true;
    return 1;
}

static lcow_code do_walk(lcow_snapshotter *s, const lcow_params *p, lcow_result *r, lcow_error *err)
{
    lcow_walk_options opts = {
        .filters = (const char *const *)p->filters.items,
        .filter_count = p->filters.count,
        .after = p->after,
        .limit = (p->limit == 0 || p->limit > LCOW_WALK_PAGE_MAX) ? LCOW_WALK_PAGE_MAX
                                                                  : (size_t)p->limit,
    };
    walk_collect collect = {&r->infos, false};
    lcow_code code = lcow_snapshotter_walk(s, &opts, collect_info, &collect, &r->next, err);
    if (code == LCOW_OK && collect.out_of_memory)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory collecting infos");
    return code;
}

static lcow_code do_cleanup(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                            lcow_error *err)
{
    return lcow_snapshotter_cleanup(s, err);
}

static lcow_code do_version(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                            lcow_error *err)
{
    r->version = lcow_strdup(LCOW_VERSION);
    r->snapshotter = lcow_strdup(LCOW_SNAPSHOTTER_NAME);
    r->protocol = LCOW_PROTOCOL_VERSION;
    if (!r->version || !r->snapshotter)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    static const char *const caps[] = LCOW_CAPABILITIES;
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        if (!lcow_strv_push(&r->capabilities, caps[i]))
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    return LCOW_OK;
}

static lcow_code do_create_scratch(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                                   lcow_error *err)
{
    lcow_code code = lcow_snapshotter_create_scratch(s, p->path, p->size_gb, p->block_size_mb, err);
    if (code != LCOW_OK)
        return code;
    lcow_stat st;
    if (lcow_os_stat(p->path, &st, NULL) == LCOW_OK && st.exists)
        lcow_stats_add_created(st.size);
    r->path = lcow_strdup(p->path);
    return r->path ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

static lcow_code do_apply(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                          lcow_error *err)
{
    lcow_apply_request req = {.key = p->key,
                              .path = p->path,
                              .media_type = p->media_type,
                              .digest = p->digest,
                              .verity = p->verity};
    lcow_apply_result res;
    lcow_code code = lcow_snapshotter_apply(s, &req, &res, err);
    if (code != LCOW_OK)
        return code;
    r->diff_id = lcow_strdup(res.diff_id);
    r->digest = lcow_strdup(res.digest);
    r->size = (int64_t)res.size;
    r->layer_bytes = (int64_t)res.layer_bytes;
    if (res.has_verity_root_hash && !(r->verity_root_hash = lcow_strdup(res.verity_root_hash)))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    if (!r->diff_id || !r->digest)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    return LCOW_OK;
}

static lcow_code do_status(lcow_snapshotter *s, const lcow_params *p, lcow_result *r,
                           lcow_error *err)
{
    lcow_store_status st;
    lcow_code code = lcow_snapshotter_status(s, &st, err);
    if (code != LCOW_OK)
        return code;
    lcow_status *o = &r->status;
    o->active = st.active;
    o->committed = st.committed;
    o->view = st.view;
    o->store_bytes = st.bytes;
    o->store_inodes = st.inodes;
    o->scratch_templates = st.scratch_templates;
    o->layers = st.layers;
    o->pending_removals = st.pending_removals;
    if (!(r->version = lcow_strdup(LCOW_VERSION)))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    return lcow_dispatch_fill_counters(o, err);
}

/* The method table, indexed by lcow_method (the wire names live in
 * rpc/proto.c beside each method's field tables). "inline" marks point reads
 * of the store that never wait for a writer or touch files: the server may
 * run them on its I/O thread when the connection has nothing queued, which
 * saves a thread hand-off per round trip. */
typedef struct method_row {
    handler_fn handler;
    bool run_inline;
} method_row;

static const method_row method_table[LCOW_METHOD_COUNT] = {
    [LCOW_METHOD_PREPARE] = {do_prepare, false},
    [LCOW_METHOD_VIEW] = {do_view, false},
    [LCOW_METHOD_MOUNTS] = {do_mounts, true},
    [LCOW_METHOD_COMMIT] = {do_commit, false},
    [LCOW_METHOD_REMOVE] = {do_remove, false},
    [LCOW_METHOD_STAT] = {do_stat, true},
    [LCOW_METHOD_UPDATE] = {do_update, false},
    [LCOW_METHOD_USAGE] = {do_usage, false}, /* walks an active's directory */
    [LCOW_METHOD_WALK] = {do_walk, false},
    [LCOW_METHOD_CLEANUP] = {do_cleanup, false},
    [LCOW_METHOD_VERSION] = {do_version, true},
    [LCOW_METHOD_CREATE_SCRATCH] = {do_create_scratch, false},
    [LCOW_METHOD_APPLY] = {do_apply, false},     /* minutes of file work: the worker pool */
    [LCOW_METHOD_STATUS] = {do_status, false},   /* walks the store */
    [LCOW_METHOD_COMPACT] = {do_compact, false}, /* rewrites a disk: the worker pool */
    [LCOW_METHOD_LAYERS] = {do_layers, false},   /* reads the layer store's files */
    [LCOW_METHOD_PRUNE_LAYERS] = {do_prune_layers, false},
};

lcow_code lcow_dispatch_fill_counters(lcow_status *o, lcow_error *err)
{
    lcow_stats_view *v = lcow_malloc(sizeof *v);
    if (!v)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    lcow_stats_read(v);
    uint64_t now = lcow_os_monotonic_ms();
    o->uptime_seconds =
        v->start_ms && now > v->start_ms ? (int64_t)((now - v->start_ms) / 1000) : 0;
    o->connections_open = (int64_t)v->connections_open;
    o->connections_total = (int64_t)v->connections_total;
    o->bytes_converted = (int64_t)v->bytes_converted;
    o->bytes_created = (int64_t)v->bytes_created;
    bool ok = true;
    for (unsigned m = 0; m < LCOW_METHOD_COUNT && m < LCOW_STATS_METHODS; m++)
        for (unsigned c = 0; c < LCOW_CODE_COUNT; c++) {
            uint64_t n = v->requests[m][c];
            if (n == 0)
                continue;
            o->requests_total += (int64_t)n;
            if (c != LCOW_OK)
                o->errors_total += (int64_t)n;
            char name[96];
            snprintf(name, sizeof name, "%s/%s", lcow_method_name((lcow_method)m),
                     lcow_code_name((lcow_code)c));
            ok = ok && lcow_counters_add(&o->requests, name, (int64_t)n);
        }
    static const struct {
        const char *name;
        double q;
    } quantiles[] = {{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"max", 1.0}};
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        uint64_t us = lcow_stats_quantile_us(v, LCOW_STATS_METHODS, quantiles[i].q);
        ok = ok && lcow_counters_add(&o->latency_us, quantiles[i].name,
                                     us > INT64_MAX ? INT64_MAX : (int64_t)us);
    }
    free(v);
    return ok ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

bool lcow_dispatch_runs_inline(lcow_method method)
{
    return (unsigned)method < LCOW_METHOD_COUNT && method_table[method].run_inline;
}

lcow_code lcow_dispatch(lcow_snapshotter *snapshotter, const lcow_request *req, lcow_result *result,
                        lcow_error *err)
{
    memset(result, 0, sizeof *result);
    if ((unsigned)req->method >= LCOW_METHOD_COUNT || !method_table[req->method].handler)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "method not implemented");
    lcow_error local;
    lcow_error_clear(&local);
    uint64_t start = lcow_os_monotonic_us();
    lcow_code code = method_table[req->method].handler(snapshotter, &req->params, result, &local);
    /* Core codes are the protocol's categories; anything else is Internal. */
    if ((unsigned)code >= LCOW_CODE_COUNT)
        code = LCOW_INTERNAL;
    lcow_stats_request((unsigned)req->method, code, lcow_os_monotonic_us() - start);
    if (code == LCOW_OK && req->method == LCOW_METHOD_APPLY) {
        lcow_stats_add_converted((uint64_t)result->size);
        lcow_stats_add_created((uint64_t)result->layer_bytes);
    }
    if (code != LCOW_OK) {
        if (local.message[0] == '\0')
            lcow_error_set(&local, code, "%s failed", lcow_method_name(req->method));
        lcow_error_set(err, code, "%s", local.message);
        lcow_result_free(result);
        LCOW_LOGD("rpc: %s msgid %u: %s: %s", lcow_method_name(req->method), (unsigned)req->msgid,
                  lcow_code_name(code), local.message);
    }
    return code;
}

bool lcow_dispatch_error(msgpack_sbuffer *out, bool has_msgid, uint32_t msgid, lcow_code code,
                         const char *message)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, lcow_sbuffer_write);
    size_t before = out->size;
    if (lcow_proto_encode_error(&pk, has_msgid, msgid, code, message))
        return true;
    out->size = before; /* no half-encoded answer */
    /* Out of memory: a short ResourceExhausted may still fit. */
    if (code != LCOW_RESOURCE_EXHAUSTED || strcmp(message, "out of memory") != 0) {
        if (lcow_proto_encode_error(&pk, has_msgid, msgid, LCOW_RESOURCE_EXHAUSTED,
                                    "out of memory"))
            return true;
        out->size = before;
    }
    return false;
}

bool lcow_dispatch_respond(lcow_snapshotter *snapshotter, const lcow_request *req,
                           msgpack_sbuffer *out)
{
    lcow_result result;
    lcow_error err;
    lcow_error_clear(&err);
    lcow_code code = lcow_dispatch(snapshotter, req, &result, &err);
    if (code != LCOW_OK)
        return lcow_dispatch_error(out, true, req->msgid, code, err.message);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, lcow_sbuffer_write);
    size_t before = out->size;
    bool ok = lcow_proto_encode_result(&pk, req->msgid, req->method, &result);
    lcow_result_free(&result);
    if (!ok) {
        out->size = before;
        return lcow_dispatch_error(out, true, req->msgid, LCOW_RESOURCE_EXHAUSTED,
                                   "out of memory encoding the result");
    }
    return true;
}

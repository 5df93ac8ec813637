/* Fuzz target: a gRPC connection (grpc/conn.c on nghttp2) behind a session,
 * as a transport drives it, with a stub store. The input is cut into reads
 * (each byte of a small header says how long the next read is); after each
 * read the output is drained and the calls queued on the one pool worker
 * are waited for. Then the connection closes. Nothing may crash, leak,
 * deadlock or leave a call behind. The stub answers every method (List
 * walks three snapshots), so the answers' paths run too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "grpc/conn.h"
#include "rpc/session.h"

/* ---- a stub store -------------------------------------------------------- */

struct lcow_snapshotter {
    int unused;
};

static lcow_code one_mount(lcow_mounts *m)
{
    m->items = calloc(1, sizeof *m->items);
    if (!m->items)
        return LCOW_RESOURCE_EXHAUSTED;
    m->count = 1;
    m->items[0].type = strdup("lcow-layer");
    m->items[0].source = strdup("/stub");
    return LCOW_OK;
}

static lcow_code fill_info(const char *key, lcow_info *info)
{
    info->name = strdup(key);
    info->parent = strdup("");
    info->kind = LCOW_KIND_ACTIVE;
    lcow_labels_set(&info->labels, "a", "b");
    return LCOW_OK;
}

lcow_code lcow_snapshotter_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                   const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    if (key[0] == 'x')
        return lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists", key);
    return one_mount(mounts);
}

lcow_code lcow_snapshotter_view(lcow_snapshotter *s, const char *key, const char *parent,
                                const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    return one_mount(mounts);
}

lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err)
{
    return one_mount(mounts);
}

lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err)
{
    return LCOW_OK;
}

lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s does not exist", key);
}

lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err)
{
    return fill_info(key, info);
}

lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err)
{
    return fill_info(info->name, out);
}

lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err)
{
    usage->size = 4096;
    usage->inodes = 1;
    return LCOW_OK;
}

lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err)
{
    static const char *const keys[] = {"k1", "k2", "k3"};
    if (next)
        *next = NULL;
    for (int i = 0; i < 3; i++) {
        if (opts->after && strcmp(keys[i], opts->after) <= 0)
            continue;
        lcow_info info = {0};
        fill_info(keys[i], &info);
        int stop = fn(ctx, &info);
        lcow_info_free(&info);
        if (stop)
            break;
    }
    return LCOW_OK;
}

lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err)
{
    return LCOW_OK;
}

lcow_code lcow_snapshotter_status(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    out->layers = -1;
    return LCOW_OK;
}

lcow_code lcow_snapshotter_compact(lcow_snapshotter *s, const char *key,
                                   lcow_compact_summary *summary, lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_compact_all(lcow_snapshotter *s, lcow_compact_summary *summary,
                                       lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_list_layers(lcow_snapshotter *s, lcow_layer_store_list_fn fn, void *ctx,
                                       lcow_error *err)
{
    return LCOW_OK; /* no layer store: nothing stored */
}

lcow_code lcow_snapshotter_prune_layers(lcow_snapshotter *s,
                                        const lcow_layer_store_prune_options *opts,
                                        lcow_layer_store_prune_result *res, lcow_error *err)
{
    memset(res, 0, sizeof *res);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err)
{
    return LCOW_OK;
}

/* (rpc/dispatch.c's Apply row links against it; gRPC has no Apply) */
lcow_code lcow_snapshotter_apply(lcow_snapshotter *s, const lcow_apply_request *req,
                                 lcow_apply_result *out, lcow_error *err)
{
    return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "no Apply in this fake");
}

/* ---- the connection ------------------------------------------------------ */

static lcow_rpc_pool *pool;
static struct lcow_snapshotter store;

static void on_notify(void *transport) {}

static void on_destroy(void *transport) {}

static const lcow_session_ops ops = {on_notify, on_destroy};

static long sink(void *ctx, const char *data, size_t len)
{
    return (long)len;
}

static void settle(lcow_session *s)
{
    for (int i = 0; i < 20000 && lcow_session_pending(s) > 0; i++) {
        struct timespec t = {0, 50000};
        nanosleep(&t, NULL);
    }
    if (lcow_session_pending(s) > 0)
        abort(); /* a call that never ends */
    lcow_session_write(s, sink, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pool) {
        lcow_error err;
        pool = lcow_rpc_pool_create(1, &err);
        if (!pool)
            abort();
    }
    lcow_session_limits limits = {
        .max_frame_bytes = 64 * 1024,
        .max_pending = 16,
        .max_output = 1 << 20,
        .protocol = &lcow_grpc_protocol,
    };
    lcow_session *s = lcow_session_create(pool, &store, &limits, &ops, NULL);
    if (!s)
        return 0;
    /* Read sizes from the first bytes (1..256 each), up to 8 of them. */
    size_t nsizes = size > 0 ? (data[0] & 7) + 1 : 0;
    if (nsizes > size)
        nsizes = size;
    const uint8_t *sizes = data + (size > 0 ? 1 : 0);
    size_t off = nsizes + (size > 0 ? 1 : 0);
    if (off > size)
        off = size;
    bool broken = false;
    for (size_t k = 0; off < size && !broken; k++) {
        size_t want = nsizes ? (size_t)sizes[k % nsizes] + 1 : size - off;
        if (want > size - off)
            want = size - off;
        size_t used = 0;
        lcow_error err;
        if (lcow_session_feed(s, data + off, want, &used, &err) != LCOW_OK)
            broken = true;
        if (used > want)
            abort();
        off += want;
        settle(s);
        (void)lcow_session_accepting(s);
    }
    settle(s);
    lcow_session_close(s);
    lcow_session_unref(s);
    return 0;
}

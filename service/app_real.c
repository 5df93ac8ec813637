/* The ops of app.h bound to the real store and RPC server (exe only, so the
 * lcow_service library and its tests build without lcow_core / lcow_rpc). */
#include "service/app.h"

#include <stdlib.h>

#include "core/base/log.h"
#include "core/base/stats.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "grpc/conn.h"
#include "rpc/metrics.h"
#include "rpc/server.h"
#include "service/config.h"
#include "service/logging.h"

/* The store: the shims' snapshots (MessagePack-RPC) and, with the gRPC
 * endpoint on, containerd's in a partition (core/snapshotter.h). */
typedef struct stores {
    lcow_snapshotter *shims;
    lcow_snapshotter *containerd;
} stores;

/* One Event Log event per deletion a held file stopped (core queues it). */
static void removal_queued(void *ctx, const char *path, const char *reason)
{
    (void)ctx;
    lcow_log_event(LCOW_EVENT_REMOVAL_QUEUED, LCOW_LOG_WARN,
                   "deleting %s failed (%s); queued, retried in the background", path, reason);
}

/* One Event Log event per completed compaction (Compact, Compact --all). */
static void compacted(void *ctx, const char *path, uint64_t before, uint64_t after)
{
    (void)ctx;
    lcow_log_event(LCOW_EVENT_COMPACTED, LCOW_LOG_INFO,
                   "%s: %llu -> %llu bytes, %llu bytes given back to the host", path,
                   (unsigned long long)before, (unsigned long long)after,
                   (unsigned long long)(before - after));
}

static lcow_code real_open_store(void *ctx, const lcow_svc_config *cfg, void **store,
                                 lcow_error *err)
{
    lcow_snapshotter_config sc = {
        .root = cfg->root,
        .scratch_backend = cfg->scratch_backend,
        .scratch_dir_allow = (const char *const *)cfg->scratch_dir_allow,
        .scratch_dir_allow_count = cfg->scratch_dir_allow_count,
        .scratch_format_from_gb = cfg->scratch_format_from_gb,
        /* 0 is the store's default; a given 0 keeps nothing, which a
         * bound of one byte does (every layer is larger). */
        .layer_cache_max_bytes = !cfg->layer_cache_max_given  ? 0
                                 : cfg->layer_cache_max_bytes ? cfg->layer_cache_max_bytes
                                                              : 1,
        .no_sync = false,
        .on_removal_queued = removal_queued,
        .on_compacted = compacted,
    };
    if (cfg->scratch_dir_allow_count == 0)
        LCOW_LOGW("scratch directory allow-list is open: rootfs.location labels and CreateScratch "
                  "may name any existing absolute directory (only administrators can reach the "
                  "endpoint); confine them with --scratch-dir-allow DIR");
    for (size_t i = 0; i < cfg->scratch_dir_allow_count; i++)
        LCOW_LOGI("scratch directories allowed under %s", cfg->scratch_dir_allow[i]);
    lcow_stats_mark_start(lcow_os_monotonic_ms()); /* Status' uptime */
    *store = NULL;
    stores *st = calloc(1, sizeof *st);
    if (!st)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    lcow_code code = lcow_snapshotter_open(&sc, &st->shims, err);
    /* containerd's snapshots in a partition of their own: its garbage
     * collector removes every snapshot it sees and has no record of, so it
     * must not see the shims' (nor Cleanup over MessagePack containerd's). */
    if (code == LCOW_OK && cfg->grpc_address &&
        (code = lcow_snapshotter_open_partition(st->shims, LCOW_GRPC_PARTITION, &st->containerd,
                                                err)) == LCOW_OK)
        LCOW_LOGI("containerd's snapshots (gRPC endpoint): partition %s of the store",
                  LCOW_GRPC_PARTITION);
    if (code != LCOW_OK) {
        lcow_snapshotter_free(st->shims);
        free(st);
        return code;
    }
    *store = st;
    return LCOW_OK;
}

/* The endpoints: MessagePack-RPC for shims, and containerd's snapshots
 * gRPC API (grpc/) unless --grpc-address "" turned it off, on its partition
 * of the store. Same transport, access rules and limits. */
typedef struct endpoints {
    lcow_server *rpc;
    lcow_server *grpc;
    lcow_metrics *metrics; /* --metrics-address; NULL = off */
    lcow_snapshotter *store;
} endpoints;

static lcow_code start_endpoint(const lcow_svc_config *cfg, const char *address, bool grpc,
                                void *store, lcow_server **out, lcow_error *err)
{
    lcow_server_config sc = {
        .address = address,
        .pipe_sddl = cfg->pipe_sddl,
        .max_frame_bytes = cfg->max_frame_bytes,
        .max_connections = cfg->max_connections,
        .idle_timeout_ms = cfg->idle_timeout_ms,
        .frame_timeout_ms = cfg->frame_timeout_ms,
        .worker_threads = 0,
        /* A DACL that lets Everyone/Anonymous write is accepted only when the
         * administrator wrote it with --pipe-sddl; the default never does. */
        .allow_world_writable_sddl = cfg->pipe_sddl != NULL,
        .protocol = grpc ? &lcow_grpc_protocol : NULL,
    };
    lcow_server *srv = NULL;
    lcow_code code = lcow_server_start(&sc, store, &srv, err);
    if (code != LCOW_OK) {
        *out = NULL;
        return grpc ? lcow_error_wrap_code(err, code, "gRPC endpoint %s", address) : code;
    }
    /* Read the endpoint's access control back from the system: what the
     * kernel (or Wine) stored is what protects the store, not what we asked. */
    char *described = NULL;
    code = lcow_server_verify_security(srv, &described, err);
    if (code != LCOW_OK) {
        lcow_server_stop(srv, 0);
        lcow_server_destroy(srv);
        *out = NULL;
        return code;
    }
    LCOW_LOGI("%s endpoint %s secured: %s", grpc ? "gRPC" : "MessagePack-RPC", address,
              described ? described : "?");
    free(described);
    *out = srv;
    return LCOW_OK;
}

/* The Prometheus endpoint (rpc/metrics.h): the address passed
 * lcow_config_check_metrics_address at validation. */
static lcow_code start_metrics(const char *address, const stores *st, lcow_metrics **out,
                               lcow_error *err)
{
    lcow_tcp_address addr;
    lcow_code code = lcow_config_check_metrics_address(address, &addr, err);
    lcow_metrics_store ms[2] = {{"default", st->shims}, {LCOW_GRPC_PARTITION, st->containerd}};
    if (code == LCOW_OK)
        code = lcow_metrics_start(&addr, ms, st->containerd ? 2 : 1, out, err);
    if (code != LCOW_OK)
        return code;
    LCOW_LOGI("metrics endpoint: http://%s%s%s:%u/metrics", addr.ipv6 ? "[" : "", addr.host,
              addr.ipv6 ? "]" : "", (unsigned)lcow_metrics_port(*out));
    if (!addr.loopback)
        LCOW_LOGW("metrics endpoint on %s, not a loopback address: whoever reaches it reads the "
                  "counters (no authentication)",
                  address);
    return LCOW_OK;
}

static lcow_code real_start_server(void *ctx, const lcow_svc_config *cfg, void *store,
                                   void **server, lcow_error *err)
{
    *server = NULL;
    endpoints *e = calloc(1, sizeof *e);
    if (!e)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    const stores *st = store;
    e->store = st->shims; /* Apply runs there (gRPC has none) */
    const char *address = cfg->address ? cfg->address : LCOW_DEFAULT_PIPE;
    lcow_code code = start_endpoint(cfg, address, false, st->shims, &e->rpc, err);
    if (code == LCOW_OK && cfg->grpc_address)
        code = start_endpoint(cfg, cfg->grpc_address, true, st->containerd, &e->grpc, err);
    else if (code == LCOW_OK)
        LCOW_LOGI("gRPC endpoint off (--grpc-address \"\")");
    if (code == LCOW_OK && cfg->metrics_address && cfg->metrics_address[0])
        code = start_metrics(cfg->metrics_address, st, &e->metrics, err);
    if (code != LCOW_OK) {
        if (e->rpc) {
            lcow_server_stop(e->rpc, 0);
            lcow_server_destroy(e->rpc);
        }
        if (e->grpc) {
            lcow_server_stop(e->grpc, 0);
            lcow_server_destroy(e->grpc);
        }
        free(e);
        return code;
    }
    *server = e;
    return LCOW_OK;
}

static unsigned real_inflight(void *ctx, void *server)
{
    endpoints *e = server;
    return lcow_server_inflight(e->rpc) + (e->grpc ? lcow_server_inflight(e->grpc) : 0);
}

typedef struct stop_args {
    lcow_server *server;
    unsigned drain_ms;
} stop_args;

static void *stop_main(void *arg)
{
    stop_args *a = arg;
    lcow_server_stop(a->server, a->drain_ms);
    return NULL;
}

static void real_stop_server(void *ctx, void *server, unsigned drain_ms)
{
    endpoints *e = server;
    /* Long work in flight (an Apply converting a layer) stops now and
     * answers Unavailable, so the drain below does not wait for it. */
    lcow_snapshotter_cancel_work(e->store);
    /* Both drain at the same time: the stop takes the longer of the two. */
    stop_args grpc_stop = {e->grpc, drain_ms};
    lcow_thread t;
    bool threaded = e->grpc && lcow_thread_create(&t, stop_main, &grpc_stop);
    lcow_server_stop(e->rpc, drain_ms);
    if (threaded)
        lcow_thread_join(t, NULL);
    else if (e->grpc)
        lcow_server_stop(e->grpc, drain_ms);
    lcow_server_destroy(e->rpc);
    lcow_server_destroy(e->grpc);
    lcow_metrics_stop(e->metrics);
    free(e);
}

static void close_one(lcow_snapshotter *s, const char *what)
{
    if (!s)
        return;
    lcow_code code = lcow_snapshotter_close(s);
    if (code != LCOW_OK)
        LCOW_LOGE("closing %s failed: %s", what, lcow_code_name(code));
    lcow_snapshotter_free(s);
}

static void real_close_store(void *ctx, void *store)
{
    stores *st = store;
    close_one(st->containerd, "containerd's partition of the snapshot store"); /* first */
    close_one(st->shims, "the snapshot store");
    free(st);
}

const lcow_app_ops lcow_app_real_ops = {
    .ctx = NULL,
    .open_store = real_open_store,
    .start_server = real_start_server,
    .inflight = real_inflight,
    .stop_server = real_stop_server,
    .close_store = real_close_store,
};

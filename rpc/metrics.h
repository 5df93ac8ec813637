/* The opt-in Prometheus endpoint (--metrics-address): a minimal HTTP/1.1
 * server on one thread that answers GET /metrics with the counters of
 * Status (core/base/stats.h, lcow_dispatch_fill_counters) and each store's
 * lcow_snapshotter_status in the Prometheus text format 0.0.4, named after
 * Prometheus conventions (lcowsnap_requests_total{method=,code=}, ...;
 * docs/operations.md lists them). One client at a time, a request of at
 * most LCOW_METRICS_MAX_REQUEST bytes read within LCOW_METRICS_TIMEOUT_MS,
 * Connection: close after every answer. */
#ifndef LCOW_RPC_METRICS_H
#define LCOW_RPC_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/os/tcp.h"
#include "core/snapshotter.h"

#define LCOW_METRICS_MAX_REQUEST 8192
#define LCOW_METRICS_TIMEOUT_MS 5000
#define LCOW_METRICS_MAX_STORES 4

/* A store reported with the label store="<name>". */
typedef struct lcow_metrics_store {
    const char *name;
    lcow_snapshotter *store;
} lcow_metrics_store;

typedef struct lcow_metrics lcow_metrics;

/* Listens on addr and serves from a thread until lcow_metrics_stop. The
 * address policy (loopback unless named) is the caller's (service/config.c). */
lcow_code lcow_metrics_start(const lcow_tcp_address *addr, const lcow_metrics_store *stores,
                             size_t store_count, lcow_metrics **out, lcow_error *err);
/* The port listened on (the chosen one for port 0). */
uint16_t lcow_metrics_port(const lcow_metrics *m);
/* Stops the thread (within LCOW_METRICS_TIMEOUT_MS) and frees. NULL is a no-op. */
void lcow_metrics_stop(lcow_metrics *m);

/* The exposition text, malloc'd into *text (NUL-terminated, *len bytes). */
lcow_code lcow_metrics_render(const lcow_metrics_store *stores, size_t store_count, char **text,
                              size_t *len, lcow_error *err);

#endif

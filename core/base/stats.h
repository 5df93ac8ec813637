/* Process-wide counters for Status and the metrics endpoint: requests and
 * errors per method and code, a fixed latency histogram per method,
 * connections, bytes converted (Apply) and created (scratch disks). Lock-free
 * atomics in fixed arrays: memory does not grow with traffic. Methods are
 * indexes (rpc/proto.h's lcow_method); their names belong to rpc/. */
#ifndef LCOW_STATS_H
#define LCOW_STATS_H

#include <stdint.h>

#include "core/base/errors.h"

#define LCOW_STATS_METHODS 32
/* Bucket i counts latencies below 2^i microseconds (bucket 0: under 1 us);
 * the last one takes everything longer (2^26 us = 67 s and more). */
#define LCOW_STATS_BUCKETS 28

typedef struct lcow_stats_view {
    uint64_t requests[LCOW_STATS_METHODS][LCOW_CODE_COUNT];
    uint64_t latency[LCOW_STATS_METHODS][LCOW_STATS_BUCKETS];
    uint64_t latency_sum_us[LCOW_STATS_METHODS];
    uint64_t connections_open, connections_total;
    uint64_t bytes_converted, bytes_created;
    uint64_t start_ms; /* lcow_stats_mark_start's clock; 0 = not marked */
} lcow_stats_view;

/* One request answered: method index, its code, how long it took. An index
 * or code out of range is ignored. */
void lcow_stats_request(unsigned method, lcow_code code, uint64_t micros);
void lcow_stats_connection_opened(void);
void lcow_stats_connection_closed(void);
void lcow_stats_add_converted(uint64_t bytes);
void lcow_stats_add_created(uint64_t bytes);
/* The service's start on a monotonic clock (ms), for uptime; the first call wins. */
void lcow_stats_mark_start(uint64_t monotonic_ms);

/* A copy of every counter (each read atomically; the whole is not one instant). */
void lcow_stats_read(lcow_stats_view *out);
/* The upper bound (us) of the bucket holding quantile q (0 < q <= 1) of one
 * method's histogram, or of all methods' (method = LCOW_STATS_METHODS); 0
 * when nothing was counted. */
uint64_t lcow_stats_quantile_us(const lcow_stats_view *v, unsigned method, double q);
/* Upper bound of bucket i in microseconds (UINT64_MAX for the last). */
uint64_t lcow_stats_bucket_le_us(unsigned i);
/* Tests: every counter back to zero. */
void lcow_stats_reset(void);

#endif

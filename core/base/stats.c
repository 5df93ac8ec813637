/* Process-wide counters (stats.h): relaxed atomics, fixed arrays. */
#include "core/base/stats.h"

#include <stdatomic.h>
#include <string.h>

static atomic_uint_fast64_t requests[LCOW_STATS_METHODS][LCOW_CODE_COUNT];
static atomic_uint_fast64_t latency[LCOW_STATS_METHODS][LCOW_STATS_BUCKETS];
static atomic_uint_fast64_t latency_sum[LCOW_STATS_METHODS];
static atomic_uint_fast64_t conn_open, conn_total, converted, created, start_ms;

#define ADD(a, n) atomic_fetch_add_explicit(&(a), (n), memory_order_relaxed)
#define GET(a) ((uint64_t)atomic_load_explicit(&(a), memory_order_relaxed))

static unsigned bucket_of(uint64_t us)
{
    unsigned i = 0;
    while (i + 1 < LCOW_STATS_BUCKETS && us >= (1ull << i))
        i++;
    return i;
}

uint64_t lcow_stats_bucket_le_us(unsigned i)
{
    return i + 1 >= LCOW_STATS_BUCKETS ? UINT64_MAX : (1ull << i);
}

void lcow_stats_request(unsigned method, lcow_code code, uint64_t micros)
{
    if (method >= LCOW_STATS_METHODS || (unsigned)code >= LCOW_CODE_COUNT)
        return;
    ADD(requests[method][code], 1);
    ADD(latency[method][bucket_of(micros)], 1);
    ADD(latency_sum[method], micros);
}

void lcow_stats_connection_opened(void)
{
    ADD(conn_open, 1);
    ADD(conn_total, 1);
}

void lcow_stats_connection_closed(void)
{
    atomic_fetch_sub_explicit(&conn_open, 1, memory_order_relaxed);
}

void lcow_stats_add_converted(uint64_t bytes)
{
    ADD(converted, bytes);
}

void lcow_stats_add_created(uint64_t bytes)
{
    ADD(created, bytes);
}

void lcow_stats_mark_start(uint64_t monotonic_ms)
{
    uint_fast64_t zero = 0;
    atomic_compare_exchange_strong(&start_ms, &zero, monotonic_ms ? monotonic_ms : 1);
}

void lcow_stats_read(lcow_stats_view *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned m = 0; m < LCOW_STATS_METHODS; m++) {
        for (unsigned c = 0; c < LCOW_CODE_COUNT; c++)
            out->requests[m][c] = GET(requests[m][c]);
        for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++)
            out->latency[m][b] = GET(latency[m][b]);
        out->latency_sum_us[m] = GET(latency_sum[m]);
    }
    out->connections_open = GET(conn_open);
    out->connections_total = GET(conn_total);
    out->bytes_converted = GET(converted);
    out->bytes_created = GET(created);
    out->start_ms = GET(start_ms);
}

uint64_t lcow_stats_quantile_us(const lcow_stats_view *v, unsigned method, double q)
{
    uint64_t hist[LCOW_STATS_BUCKETS] = {0}, total = 0;
    for (unsigned m = 0; m < LCOW_STATS_METHODS; m++)
        if (method >= LCOW_STATS_METHODS || m == method)
            for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++)
                hist[b] += v->latency[m][b];
    for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++)
        total += hist[b];
    if (total == 0)
        return 0;
    /* The rank of the quantile, 1-based, rounded up. */
    uint64_t rank = (uint64_t)(q * (double)total);
    if ((double)rank < q * (double)total)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank)
            return lcow_stats_bucket_le_us(b);
    }
    return UINT64_MAX;
}

void lcow_stats_reset(void)
{
    for (unsigned m = 0; m < LCOW_STATS_METHODS; m++) {
        for (unsigned c = 0; c < LCOW_CODE_COUNT; c++)
            atomic_store(&requests[m][c], 0);
        for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++)
            atomic_store(&latency[m][b], 0);
        atomic_store(&latency_sum[m], 0);
    }
    atomic_store(&conn_open, 0);
    atomic_store(&conn_total, 0);
    atomic_store(&converted, 0);
    atomic_store(&created, 0);
    atomic_store(&start_ms, 0);
}

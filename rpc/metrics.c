/* The Prometheus endpoint: see metrics.h. */
#include "rpc/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/stats.h"
#include "core/base/types.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "rpc/dispatch.h"
#include "rpc/proto.h"

/* ---- the text ----------------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t len, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) LCOW_PRINTF(2, 3);
static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        if (!lcow_grow(&t->buf, &t->cap, t->len + (size_t)n + 1 + 4096, 1)) {
            t->failed = true;
            return;
        }
    }
}

static void family(text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Seconds as Prometheus writes them ("0.000256"). */
static void put_seconds(text *t, uint64_t us)
{
    put(t, "%llu.%06llu", (unsigned long long)(us / 1000000u), (unsigned long long)(us % 1000000u));
}

static void render_requests(text *t, const lcow_stats_view *v)
{
    family(t, "lcowsnap_requests_total", "counter",
           "Requests answered, by method and code (OK or containerd's error category).");
    for (unsigned m = 0; m < LCOW_METHOD_COUNT && m < LCOW_STATS_METHODS; m++)
        for (unsigned c = 0; c < LCOW_CODE_COUNT; c++)
            if (v->requests[m][c])
                put(t, "lcowsnap_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                    lcow_method_name((lcow_method)m), lcow_code_name((lcow_code)c),
                    (unsigned long long)v->requests[m][c]);
    family(t, "lcowsnap_request_duration_seconds", "histogram",
           "Time from a decoded request to its answer, by method.");
    for (unsigned m = 0; m < LCOW_METHOD_COUNT && m < LCOW_STATS_METHODS; m++) {
        uint64_t count = 0;
        for (unsigned b = 0; b < LCOW_STATS_BUCKETS; b++)
            count += v->latency[m][b];
        if (count == 0)
            continue;
        const char *name = lcow_method_name((lcow_method)m);
        uint64_t cumulative = 0;
        for (unsigned b = 0; b + 1 < LCOW_STATS_BUCKETS; b++) {
            cumulative += v->latency[m][b];
            put(t, "lcowsnap_request_duration_seconds_bucket{method=\"%s\",le=\"", name);
            put_seconds(t, lcow_stats_bucket_le_us(b));
            put(t, "\"} %llu\n", (unsigned long long)cumulative);
        }
        put(t, "lcowsnap_request_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n", name,
            (unsigned long long)count);
        put(t, "lcowsnap_request_duration_seconds_sum{method=\"%s\"} ", name);
        put_seconds(t, v->latency_sum_us[m]);
        put(t, "\nlcowsnap_request_duration_seconds_count{method=\"%s\"} %llu\n", name,
            (unsigned long long)count);
    }
}

lcow_code lcow_metrics_render(const lcow_metrics_store *stores, size_t store_count, char **out,
                              size_t *len, lcow_error *err)
{
    *out = NULL;
    *len = 0;
    lcow_stats_view *v = lcow_malloc(sizeof *v);
    if (!v)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    lcow_stats_read(v);
    text t = {0};
    family(&t, "lcowsnap_build_info", "gauge", "The service's version (always 1).");
    put(&t, "lcowsnap_build_info{version=\"%s\"} 1\n", LCOW_VERSION);
    uint64_t now = lcow_os_monotonic_ms();
    family(&t, "lcowsnap_uptime_seconds", "gauge", "Seconds since the service started.");
    put(&t, "lcowsnap_uptime_seconds %llu\n",
        (unsigned long long)(v->start_ms && now > v->start_ms ? (now - v->start_ms) / 1000 : 0));
    render_requests(&t, v);
    family(&t, "lcowsnap_connections", "gauge", "Client connections open now.");
    put(&t, "lcowsnap_connections %llu\n", (unsigned long long)v->connections_open);
    family(&t, "lcowsnap_connections_total", "counter", "Client connections accepted.");
    put(&t, "lcowsnap_connections_total %llu\n", (unsigned long long)v->connections_total);
    family(&t, "lcowsnap_converted_bytes_total", "counter", "Layer blob bytes Apply converted.");
    put(&t, "lcowsnap_converted_bytes_total %llu\n", (unsigned long long)v->bytes_converted);
    family(&t, "lcowsnap_created_bytes_total", "counter",
           "Bytes of disks created (Apply's layer.vhd, CreateScratch).");
    put(&t, "lcowsnap_created_bytes_total %llu\n", (unsigned long long)v->bytes_created);
    free(v);

    lcow_store_status st[LCOW_METRICS_MAX_STORES];
    bool have[LCOW_METRICS_MAX_STORES] = {false};
    for (size_t i = 0; i < store_count && i < LCOW_METRICS_MAX_STORES; i++) {
        lcow_error e;
        have[i] = lcow_snapshotter_status(stores[i].store, &st[i], &e) == LCOW_OK;
        if (!have[i])
            LCOW_LOGD("metrics: status of store %s: %s", stores[i].name, e.message);
    }
    family(&t, "lcowsnap_snapshots", "gauge", "Snapshots by store and kind.");
    for (size_t i = 0; i < store_count && i < LCOW_METRICS_MAX_STORES; i++)
        if (have[i]) {
            put(&t, "lcowsnap_snapshots{store=\"%s\",kind=\"active\"} %lld\n", stores[i].name,
                (long long)st[i].active);
            put(&t, "lcowsnap_snapshots{store=\"%s\",kind=\"committed\"} %lld\n", stores[i].name,
                (long long)st[i].committed);
            put(&t, "lcowsnap_snapshots{store=\"%s\",kind=\"view\"} %lld\n", stores[i].name,
                (long long)st[i].view);
        }
    family(&t, "lcowsnap_pending_removals", "gauge",
           "Snapshot directories whose deletion a held file stopped, queued for retry.");
    for (size_t i = 0; i < store_count && i < LCOW_METRICS_MAX_STORES; i++)
        if (have[i])
            put(&t, "lcowsnap_pending_removals{store=\"%s\"} %lld\n", stores[i].name,
                (long long)st[i].pending_removals);
    /* The root (with every partition in it) is counted once: the first store's. */
    if (store_count > 0 && have[0]) {
        family(&t, "lcowsnap_store_bytes", "gauge", "Bytes the state directory takes on disk.");
        put(&t, "lcowsnap_store_bytes %lld\n", (long long)st[0].bytes);
        family(&t, "lcowsnap_scratch_templates", "gauge", "Scratch disk templates cached.");
        put(&t, "lcowsnap_scratch_templates %lld\n", (long long)st[0].scratch_templates);
        if (st[0].layers >= 0) {
            family(&t, "lcowsnap_layers", "gauge", "Layers in the layer store.");
            put(&t, "lcowsnap_layers %lld\n", (long long)st[0].layers);
        }
    }
    if (t.failed) {
        free(t.buf);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    *out = t.buf;
    *len = t.len;
    return LCOW_OK;
}

/* ---- the server --------------------------------------------------------- */

struct lcow_metrics {
    lcow_tcp_listener *listener;
    lcow_metrics_store stores[LCOW_METRICS_MAX_STORES];
    size_t store_count;
    lcow_thread thread;
    atomic_bool stop;
};

static void answer(lcow_tcp_conn *c, const char *status, const char *type, const char *body,
                   size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, len);
    if (lcow_tcp_send_all(c, head, (size_t)n, LCOW_METRICS_TIMEOUT_MS) && len)
        lcow_tcp_send_all(c, body, len, LCOW_METRICS_TIMEOUT_MS);
}

static void answer_text(lcow_tcp_conn *c, const char *status, const char *body)
{
    answer(c, status, "text/plain; charset=utf-8", body, strlen(body));
}

/* Reads the request head (up to the blank line) within the time limit. */
static bool read_head(lcow_tcp_conn *c, char *buf, size_t cap, size_t *len)
{
    uint64_t deadline = lcow_os_monotonic_ms() + LCOW_METRICS_TIMEOUT_MS;
    *len = 0;
    while (*len + 1 < cap) {
        uint64_t now = lcow_os_monotonic_ms();
        if (now >= deadline)
            return false;
        long n = lcow_tcp_recv(c, buf + *len, cap - 1 - *len, (unsigned)(deadline - now));
        if (n <= 0)
            return false;
        *len += (size_t)n;
        buf[*len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return true;
    }
    return false; /* too long */
}

static void serve(lcow_metrics *m, lcow_tcp_conn *c)
{
    char *buf = lcow_malloc(LCOW_METRICS_MAX_REQUEST + 1);
    size_t len;
    if (!buf) {
        answer_text(c, "503 Service Unavailable", "out of memory\n");
        return;
    }
    if (!read_head(c, buf, LCOW_METRICS_MAX_REQUEST + 1, &len)) {
        if (len >= LCOW_METRICS_MAX_REQUEST)
            answer_text(c, "431 Request Header Fields Too Large", "request too large\n");
        else if (len > 0)
            answer_text(c, "408 Request Timeout", "incomplete request\n");
        free(buf);
        return;
    }
    bool get = strncmp(buf, "GET ", 4) == 0;
    const char *target = strchr(buf, ' ');
    target = target ? target + 1 : "";
    size_t tlen = strcspn(target, " \r\n");
    bool path_ok = (tlen == 8 && strncmp(target, "/metrics", 8) == 0) ||
                   (tlen > 8 && strncmp(target, "/metrics?", 9) == 0);
    bool http = strncmp(target + tlen, " HTTP/1.", 8) == 0;
    if (!http) {
        answer_text(c, "400 Bad Request", "expected an HTTP/1.x request\n");
    } else if (!get) {
        answer_text(c, "405 Method Not Allowed", "only GET /metrics\n");
    } else if (!path_ok) {
        answer_text(c, "404 Not Found", "only GET /metrics\n");
    } else {
        char *body = NULL;
        size_t blen = 0;
        lcow_error e;
        if (lcow_metrics_render(m->stores, m->store_count, &body, &blen, &e) == LCOW_OK)
            answer(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, blen);
        else
            answer_text(c, "503 Service Unavailable", e.message);
        free(body);
    }
    free(buf);
}

static void *metrics_main(void *arg)
{
    lcow_metrics *m = arg;
    while (!atomic_load(&m->stop)) {
        lcow_tcp_conn *c = NULL;
        lcow_error e;
        if (lcow_tcp_accept(m->listener, 200, &c, &e) != LCOW_OK) {
            LCOW_LOGW("metrics: %s", e.message);
            continue;
        }
        if (c) {
            serve(m, c);
            lcow_tcp_close(c);
        }
    }
    return NULL;
}

lcow_code lcow_metrics_start(const lcow_tcp_address *addr, const lcow_metrics_store *stores,
                             size_t store_count, lcow_metrics **out, lcow_error *err)
{
    *out = NULL;
    if (store_count > LCOW_METRICS_MAX_STORES)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "metrics: at most %d stores",
                              LCOW_METRICS_MAX_STORES);
    lcow_metrics *m = lcow_calloc(1, sizeof *m);
    if (!m)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < store_count; i++)
        m->stores[i] = stores[i];
    m->store_count = store_count;
    atomic_init(&m->stop, false);
    lcow_code rc = lcow_tcp_listen(addr, &m->listener, err);
    if (rc != LCOW_OK) {
        free(m);
        return lcow_error_wrap_code(err, rc, "metrics endpoint");
    }
    if (!lcow_thread_create(&m->thread, metrics_main, m)) {
        lcow_tcp_listener_close(m->listener);
        free(m);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "metrics: no thread");
    }
    *out = m;
    return LCOW_OK;
}

uint16_t lcow_metrics_port(const lcow_metrics *m)
{
    return lcow_tcp_listener_port(m->listener);
}

void lcow_metrics_stop(lcow_metrics *m)
{
    if (!m)
        return;
    atomic_store(&m->stop, true);
    lcow_thread_join(m->thread, NULL);
    lcow_tcp_listener_close(m->listener);
    free(m);
}

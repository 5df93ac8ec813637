/* The Prometheus endpoint (rpc/metrics.c) on the real store and the real
 * loopback TCP of core/os/tcp.h: the counters it serves match the calls the
 * test made; anything but GET /metrics is refused with the right status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/stats.h"
#include "core/os/os.h"
#include "core/os/tcp.h"
#include "core/snapshotter.h"
#include "rpc/dispatch.h"
#include "rpc/metrics.h"
#include "unit/testlib.h"

typedef struct fixture {
    char *root;
    lcow_snapshotter *store;
    lcow_metrics *metrics;
    lcow_tcp_address addr;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->root = test_fresh_dir("metrics");
    lcow_snapshotter_config c = {.root = f->root, .no_scratch = true};
    lcow_error err;
    if (lcow_snapshotter_open(&c, &f->store, &err) != LCOW_OK)
        fail_msg("open: %s", err.message);
    assert_int_equal(lcow_tcp_parse_address("127.0.0.1:0", &f->addr, &err), LCOW_OK);
    lcow_metrics_store ms = {"default", f->store};
    if (lcow_metrics_start(&f->addr, &ms, 1, &f->metrics, &err) != LCOW_OK)
        fail_msg("metrics: %s", err.message);
    f->addr.port = lcow_metrics_port(f->metrics);
    assert_true(f->addr.port != 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lcow_metrics_stop(f->metrics);
    lcow_snapshotter_free(f->store);
    lcow_error err;
    lcow_os_remove_all(f->root, &err);
    free(f->root);
    free(f);
    return 0;
}

/* Sends request as it is and reads the whole answer (the server closes). */
static char *exchange(fixture *f, const char *request, size_t len)
{
    lcow_tcp_conn *c = NULL;
    lcow_error err;
    if (lcow_tcp_connect(&f->addr, &c, &err) != LCOW_OK)
        fail_msg("connect: %s", err.message);
    assert_true(lcow_tcp_send_all(c, request, len, 30000));
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        long n = lcow_tcp_recv(c, buf + got, cap - got, 30000);
        if (n <= 0)
            break;
        got += (size_t)n;
        assert_true(got < cap);
    }
    buf[got] = '\0';
    lcow_tcp_close(c);
    return buf;
}

static lcow_code call(lcow_snapshotter *s, lcow_method method, const char *key)
{
    lcow_request req = {.msgid = 1, .method = method};
    req.params.key = (char *)key;
    lcow_result r;
    lcow_error err;
    lcow_code code = lcow_dispatch(s, &req, &r, &err);
    if (code == LCOW_OK)
        lcow_result_free(&r);
    return code;
}

static void serves_the_counters_of_the_calls_made(void **state)
{
    fixture *f = *state;
    lcow_stats_reset();
    assert_int_equal(call(f->store, LCOW_METHOD_PREPARE, "k1"), LCOW_OK);
    assert_int_equal(call(f->store, LCOW_METHOD_PREPARE, "k2"), LCOW_OK);
    assert_int_equal(call(f->store, LCOW_METHOD_STAT, "nope"), LCOW_NOT_FOUND);
    assert_int_equal(call(f->store, LCOW_METHOD_STAT, "k1"), LCOW_OK);
    assert_int_equal(call(f->store, LCOW_METHOD_REMOVE, "k2"), LCOW_OK);
    static const char get[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char *text = exchange(f, get, sizeof get - 1);
    assert_non_null(strstr(text, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(text, "Content-Type: text/plain; version=0.0.4"));
    const char *want[] = {
        "lcowsnap_requests_total{method=\"Prepare\",code=\"OK\"} 2\n",
        "lcowsnap_requests_total{method=\"Stat\",code=\"NotFound\"} 1\n",
        "lcowsnap_requests_total{method=\"Stat\",code=\"OK\"} 1\n",
        "lcowsnap_requests_total{method=\"Remove\",code=\"OK\"} 1\n",
        "lcowsnap_request_duration_seconds_count{method=\"Prepare\"} 2\n",
        "lcowsnap_request_duration_seconds_bucket{method=\"Stat\",le=\"+Inf\"} 2\n",
        "lcowsnap_snapshots{store=\"default\",kind=\"active\"} 1\n",
        "lcowsnap_snapshots{store=\"default\",kind=\"committed\"} 0\n",
        "lcowsnap_pending_removals{store=\"default\"} 0\n",
        "lcowsnap_layers 0\n",
        "# TYPE lcowsnap_requests_total counter\n",
        "# TYPE lcowsnap_request_duration_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("missing %s in:\n%s", want[i], text);
    /* Nothing counted that the test did not call. */
    assert_null(strstr(text, "method=\"Commit\""));
    /* The Content-Length is the body's. */
    const char *cl = strstr(text, "Content-Length: ");
    const char *body = strstr(text, "\r\n\r\n");
    assert_non_null(cl);
    assert_non_null(body);
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body + 4));
    free(text);
}

static void anything_else_is_refused(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *request;
        const char *status;
    } cases[] = {
        {"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "},
        {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "},
        {"hello\r\n\r\n", "HTTP/1.1 400 "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = exchange(f, cases[i].request, strlen(cases[i].request));
        if (strncmp(text, cases[i].status, strlen(cases[i].status)) != 0)
            fail_msg("%s -> %s", cases[i].request, text);
        free(text);
    }
    /* A request head longer than the bound: refused, nothing more read. */
    size_t n = LCOW_METRICS_MAX_REQUEST; /* all of it read: no reset */
    char *big = malloc(n);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(big + 26, 'a', n - 26);
    char *text = exchange(f, big, n);
    assert_non_null(strstr(text, "HTTP/1.1 431 "));
    free(text);
    free(big);
    /* Still serving. */
    static const char get[] = "GET /metrics?x=1 HTTP/1.0\r\n\r\n";
    text = exchange(f, get, sizeof get - 1);
    assert_non_null(strstr(text, "HTTP/1.1 200 OK"));
    free(text);
}

static void addresses_parse_strictly(void **state)
{
    (void)state;
    lcow_tcp_address a;
    lcow_error err;
    assert_int_equal(lcow_tcp_parse_address("127.0.0.1:9464", &a, &err), LCOW_OK);
    assert_true(a.loopback && !a.wildcard && a.port == 9464);
    assert_int_equal(lcow_tcp_parse_address("localhost:1", &a, &err), LCOW_OK);
    assert_true(a.loopback);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(lcow_tcp_parse_address("[::1]:80", &a, &err), LCOW_OK);
    assert_true(a.loopback && a.ipv6);
    assert_int_equal(lcow_tcp_parse_address("10.1.2.3:80", &a, &err), LCOW_OK);
    assert_true(!a.loopback && !a.wildcard);
    assert_int_equal(lcow_tcp_parse_address("0.0.0.0:80", &a, &err), LCOW_OK);
    assert_true(a.wildcard);
    assert_int_equal(lcow_tcp_parse_address("[::]:80", &a, &err), LCOW_OK);
    assert_true(a.wildcard);
    const char *bad[] = {":9464",      "9464",        "example.com:80", "127.0.0.1:70000",
                         "127.0.0.1:", "127.0.0.1:x", "[::1:80",        "1.2.3:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (lcow_tcp_parse_address(bad[i], &a, &err) != LCOW_INVALID_ARGUMENT)
            fail_msg("%s was accepted", bad[i]);
}

/* core/os/tcp's two ways to fail, each naming its step and the address: a
 * port someone listens on is AlreadyExists ("listen on"), a port nobody
 * listens on Unavailable ("connect to"); a connection to a listener is
 * accepted. */
static void listen_and_connect_fail_clearly(void **state)
{
    (void)state;
    lcow_tcp_address a;
    lcow_error err;
    assert_int_equal(lcow_tcp_parse_address("127.0.0.1:0", &a, &err), LCOW_OK);
    lcow_tcp_listener *l = NULL, *again = NULL;
    if (lcow_tcp_listen(&a, &l, &err) != LCOW_OK)
        fail_msg("listen: %s", err.message);
    a.port = lcow_tcp_listener_port(l);
    assert_true(a.port != 0);
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%u", (unsigned)a.port);
    assert_int_equal(lcow_tcp_listen(&a, &again, &err), LCOW_ALREADY_EXISTS);
    assert_null(again);
    assert_non_null(strstr(err.message, "listen on"));
    assert_non_null(strstr(err.message, where));
    lcow_tcp_conn *c = NULL, *in = NULL;
    if (lcow_tcp_connect(&a, &c, &err) != LCOW_OK)
        fail_msg("connect: %s", err.message);
    assert_int_equal(lcow_tcp_accept(l, 5000, &in, &err), LCOW_OK);
    assert_non_null(in);
    lcow_tcp_close(in);
    lcow_tcp_close(c);
    lcow_tcp_listener_close(l);
    c = NULL;
    assert_int_equal(lcow_tcp_connect(&a, &c, &err), LCOW_UNAVAILABLE);
    assert_null(c);
    assert_non_null(strstr(err.message, "connect to"));
    assert_non_null(strstr(err.message, where));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(serves_the_counters_of_the_calls_made, setup, teardown),
        cmocka_unit_test_setup_teardown(anything_else_is_refused, setup, teardown),
        cmocka_unit_test(addresses_parse_strictly),
        cmocka_unit_test(listen_and_connect_fail_clearly),
    };
    return cmocka_run_group_tests_name("rpc/metrics", tests, NULL, NULL);
}

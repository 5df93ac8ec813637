/* The allocation seam (core/base/alloc.h) and the campaign it exists for
 * (issue 14 item 2): the real snapshotter (metadata path, no scratch disks)
 * behind the real server transport of the platform, a client in this
 * process exempt from the seam, and for every N the Nth allocation of the
 * server side made to fail (once, or from then on) while a pipelined script
 * of every method runs. Each time: no crash, every request answered in
 * order or its connection closed (a request that gets neither is a lost
 * answer, found by the client's call timeout), the store consistent
 * (lcow_snapshotter_check), and the server still serving afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#include <windows.h>
#endif

#include "core/base/alloc.h"
#include "core/os/os.h"
#include "core/snapshotter.h"
#include "rpc/client.h"
#include "rpc/frame.h"
#include "rpc/server.h"

#ifdef _WIN32
#define CALL_TIMEOUT_MS 20000 /* every pipe operation goes through wineserver */
#else
#define CALL_TIMEOUT_MS 5000
#endif

#ifdef _WIN32
static unsigned pid_now(void)
{
    return (unsigned)GetCurrentProcessId();
}
#endif

#define REQUIRE_ALLOC_SEAM()                                                                       \
    do {                                                                                           \
        if (!lcow_alloc_fault_arm(0, false)) {                                                     \
            print_message("the allocation seam is not compiled in\n");                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- the seam itself ------------------------------------------------------ */

static void the_nth_allocation_fails(void **state)
{
    REQUIRE_ALLOC_SEAM();
    lcow_alloc_fault_clear();
    assert_true(lcow_alloc_fault_arm(3, false));
    void *a = lcow_malloc(8), *b = lcow_calloc(1, 8), *c = lcow_malloc(8), *d = lcow_strdup("x");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c); /* the third */
    assert_non_null(d);
    assert_int_equal(lcow_alloc_fault_calls(), 4);
    assert_int_equal(lcow_alloc_fault_injected(), 1);
    free(a), free(b), free(d);

    /* persistent: the nth and every later one */
    assert_true(lcow_alloc_fault_arm(2, true));
    a = lcow_malloc(8);
    assert_non_null(a);
    void *grown = lcow_realloc(a, 64);
    assert_null(grown); /* a is untouched, as with realloc */
    assert_null(lcow_strndup("abc", 2));
    assert_null(lcow_calloc(2, 2));
    lcow_alloc_fault_clear();
    assert_int_equal(lcow_alloc_fault_calls(), 0);
    grown = lcow_realloc(a, 64);
    assert_non_null(grown);
    free(grown);
    char *s = lcow_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);

    /* an exempt thread is neither counted nor failed */
    lcow_alloc_fault_clear();
    assert_true(lcow_alloc_fault_arm(1, true));
    lcow_alloc_fault_exempt_thread(true);
    a = lcow_malloc(8);
    lcow_alloc_fault_exempt_thread(false);
    assert_non_null(a);
    free(a);
    assert_int_equal(lcow_alloc_fault_calls(), 0);
    lcow_alloc_fault_clear();

    /* LCOW_FAULT=alloc:N[:persist] arms the same seam */
    assert_true(lcow_os_fault_parse("alloc:2"));
    a = lcow_malloc(8);
    assert_non_null(a);
    assert_null(lcow_malloc(8));
    free(a);
    assert_false(lcow_os_fault_parse("alloc:0"));
    assert_false(lcow_os_fault_parse("alloc:2:sometimes"));
    assert_true(lcow_os_fault_parse("alloc:1:persist"));
    assert_null(lcow_malloc(8));
    assert_null(lcow_malloc(8));
    lcow_alloc_fault_clear();
}

static void a_failed_buffer_write_leaves_the_buffer_as_it_was(void **state)
{
    REQUIRE_ALLOC_SEAM();
    lcow_alloc_fault_clear();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(lcow_sbuffer_write(&sb, "hello", 5), 0);
    char big[10000];
    memset(big, 'x', sizeof big);
    assert_true(lcow_alloc_fault_arm(1, false));
    assert_int_equal(lcow_sbuffer_write(&sb, big, sizeof big), -1);
    assert_int_equal(sb.size, 5);
    assert_memory_equal(sb.data, "hello", 5);
    assert_int_equal(lcow_sbuffer_write(&sb, big, sizeof big), 0);
    assert_int_equal(sb.size, 5 + sizeof big);
    msgpack_sbuffer_destroy(&sb);
    lcow_alloc_fault_clear();
}

/* ---- the campaign ---------------------------------------------------------- */

typedef struct campaign {
    char *root;
    char address[512];
    lcow_snapshotter *store;
    lcow_server *server;
    unsigned iterations;
    unsigned closed;   /* iterations whose connection was closed */
    unsigned answered; /* requests answered over all iterations */
    unsigned resource_exhausted;
    unsigned needed_cleanup; /* iterations that left a directory for Cleanup */
} campaign;

static void campaign_open(campaign *cp, const char *name)
{
    memset(cp, 0, sizeof *cp);
    lcow_error err;
    const char *tmp = getenv("LCOW_TEST_TMP");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp ? tmp : ".", name);
    lcow_os_remove_all(dir, &err);
    assert_int_equal(lcow_os_mkdir_all(dir, &err), LCOW_OK);
    assert_int_equal(lcow_os_realpath(dir, &cp->root, &err), LCOW_OK);
    lcow_snapshotter_config cfg = {.root = cp->root, .no_scratch = true};
    if (lcow_snapshotter_open(&cfg, &cp->store, &err) != LCOW_OK)
        fail_msg("open %s: %s", cp->root, err.message);
#ifdef _WIN32
    snprintf(cp->address, sizeof cp->address, "\\\\.\\pipe\\lcow-test-alloc-%u-%s", pid_now(),
             name);
#else
    snprintf(cp->address, sizeof cp->address, "%s/s.sock", cp->root);
#endif
    lcow_server_config sc = {.address = cp->address};
    if (lcow_server_start(&sc, cp->store, &cp->server, &err) != LCOW_OK)
        fail_msg("server start: %s", err.message);
}

static void campaign_close(campaign *cp)
{
    lcow_alloc_fault_clear();
    lcow_server_destroy(cp->server);
    lcow_error err;
    assert_int_equal(lcow_snapshotter_check(cp->store, &err), LCOW_OK);
    lcow_snapshotter_close(cp->store);
    lcow_snapshotter_free(cp->store);
    lcow_os_remove_all(cp->root, &err);
    free(cp->root);
}

static lcow_client *campaign_connect(campaign *cp)
{
    lcow_client *c = NULL;
    lcow_error err;
    if (lcow_client_connect(cp->address, 10000, &c, &err) != LCOW_OK)
        fail_msg("connect: %s", err.message);
    lcow_client_set_call_timeout(c, CALL_TIMEOUT_MS);
    return c;
}

enum { SCRIPT_MAX = 24 };

typedef struct script {
    msgpack_sbuffer buf;
    unsigned count;
    bool has_msgid[SCRIPT_MAX]; /* false: an unreadable frame, answered with msgid nil */
    uint32_t msgid[SCRIPT_MAX];
} script;

static void add(script *sc, lcow_method method, const lcow_params *p)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sc->buf, msgpack_sbuffer_write);
    uint32_t id = 100 + sc->count;
    assert_true(lcow_proto_encode_request(&pk, id, method, p));
    sc->has_msgid[sc->count] = true;
    sc->msgid[sc->count++] = id;
}

/* Every method on keys of iteration n, plus a malformed and an unknown
 * request, in one pipelined write: point reads run on the I/O thread,
 * the rest on the workers. */
static void build_script(script *sc, unsigned n)
{
    memset(sc, 0, sizeof *sc);
    msgpack_sbuffer_init(&sc->buf);
    char a[64], c[64], v[64], none[1] = "";
    snprintf(a, sizeof a, "n%u/active", n);
    snprintf(c, sizeof c, "n%u/layer", n);
    snprintf(v, sizeof v, "n%u/view", n);
    lcow_params p;
    memset(&p, 0, sizeof p);
    add(sc, LCOW_METHOD_VERSION, &p);
    p.key = a;
    assert_true(lcow_labels_set(&p.labels, "x", "1"));
    assert_true(lcow_labels_set(&p.labels, "containerd.io/gc.root", "yes"));
    add(sc, LCOW_METHOD_PREPARE, &p);
    lcow_labels_free(&p.labels);
    add(sc, LCOW_METHOD_STAT, &p);
    add(sc, LCOW_METHOD_MOUNTS, &p);
    memset(&p, 0, sizeof p);
    p.info.name = a;
    p.info.parent = none;
    assert_true(lcow_labels_set(&p.info.labels, "y", "2"));
    p.has_info = true;
    char *paths[] = {"labels.y"};
    p.fieldpaths.items = paths;
    p.fieldpaths.count = 1;
    add(sc, LCOW_METHOD_UPDATE, &p);
    lcow_labels_free(&p.info.labels);
    memset(&p, 0, sizeof p);
    p.name = c;
    p.key = a;
    add(sc, LCOW_METHOD_COMMIT, &p);
    memset(&p, 0, sizeof p);
    p.key = v;
    p.parent = c;
    add(sc, LCOW_METHOD_VIEW, &p);
    memset(&p, 0, sizeof p);
    char *filters[] = {"labels.x==1,kind==committed", "name~=\"^n[0-9]+/view$\""};
    p.filters.items = filters;
    p.filters.count = 2;
    p.limit = 5;
    add(sc, LCOW_METHOD_WALK, &p);
    memset(&p, 0, sizeof p);
    p.key = c;
    add(sc, LCOW_METHOD_USAGE, &p);
    p.key = v;
    add(sc, LCOW_METHOD_STAT, &p);
    add(sc, LCOW_METHOD_REMOVE, &p);
    p.key = c;
    add(sc, LCOW_METHOD_REMOVE, &p);
    p.key = "missing";
    add(sc, LCOW_METHOD_STAT, &p);
    /* not a request (no msgid), and an unknown method */
    static const uint8_t not_array[] = {0xa5, 'h', 'e', 'l', 'l', 'o'};
    assert_int_equal(msgpack_sbuffer_write(&sc->buf, (const char *)not_array, sizeof not_array), 0);
    sc->has_msgid[sc->count++] = false;
    static const uint8_t unknown[] = {0x94, 0x00, 0xcd, 0x01, 0x00, 0xa3,
                                      'F',  'o',  'o',  0x91, 0x80};
    assert_int_equal(msgpack_sbuffer_write(&sc->buf, (const char *)unknown, sizeof unknown), 0);
    sc->has_msgid[sc->count] = true;
    sc->msgid[sc->count++] = 0x100;
    memset(&p, 0, sizeof p);
    add(sc, LCOW_METHOD_CLEANUP, &p);
    assert_true(sc->count <= SCRIPT_MAX);
}

/* One iteration: the Nth server-side allocation from the moment the script
 * is sent fails (and with persistent, every later one). Returns the number
 * of failures injected (0: the script needs fewer than nth allocations). */
static unsigned run_one(campaign *cp, unsigned nth, bool persistent)
{
    lcow_client *c = campaign_connect(cp);
    script sc;
    build_script(&sc, cp->iterations++);
    lcow_error err;
    lcow_alloc_fault_clear();
    assert_true(lcow_alloc_fault_arm(nth, persistent));
    assert_int_equal(lcow_client_send_raw(c, sc.buf.data, sc.buf.size, &err), LCOW_OK);
    bool closed = false;
    for (unsigned i = 0; i < sc.count; i++) {
        bool has_msgid = false;
        uint32_t msgid = 0;
        lcow_error call_err;
        lcow_code code = lcow_client_receive_raw(c, &has_msgid, &msgid, &call_err, &err);
        if (code != LCOW_OK) {
            if (strstr(err.message, "timed out"))
                fail_msg("allocation %u%s: request %u of %u (msgid %u) was neither answered nor "
                         "its connection closed within %u ms",
                         nth, persistent ? "+" : "", i + 1, sc.count, (unsigned)sc.msgid[i],
                         CALL_TIMEOUT_MS);
            closed = true; /* closed by the service: allowed */
            break;
        }
        if (has_msgid != sc.has_msgid[i] || (has_msgid && msgid != sc.msgid[i]))
            fail_msg("allocation %u%s: answer %u has msgid %s%u, expected %s%u (an answer was "
                     "lost or reordered)",
                     nth, persistent ? "+" : "", i + 1, has_msgid ? "" : "nil ", (unsigned)msgid,
                     sc.has_msgid[i] ? "" : "nil ", (unsigned)sc.msgid[i]);
        cp->answered++;
        if (call_err.code == LCOW_RESOURCE_EXHAUSTED)
            cp->resource_exhausted++;
    }
    unsigned injected = lcow_alloc_fault_injected();
    lcow_alloc_fault_clear();
    cp->closed += closed;
    lcow_client_close(c);
    msgpack_sbuffer_destroy(&sc.buf);
    /* The invariants hold as documented: after Cleanup, which reclaims a
     * directory whose removal itself ran out of memory ("left for
     * cleanup"). */
    if (lcow_snapshotter_check(cp->store, &err) != LCOW_OK) {
        cp->needed_cleanup++;
        lcow_error cerr;
        if (lcow_snapshotter_cleanup(cp->store, &cerr) != LCOW_OK)
            fail_msg("allocation %u%s: cleanup after \"%s\": %s", nth, persistent ? "+" : "",
                     err.message, cerr.message);
        if (lcow_snapshotter_check(cp->store, &cerr) != LCOW_OK)
            fail_msg("allocation %u%s: store inconsistent: %s (before cleanup: %s)", nth,
                     persistent ? "+" : "", cerr.message, err.message);
    }
    return injected;
}

/* The server still answers, with nothing armed. */
static void still_serving(campaign *cp)
{
    lcow_client *c = campaign_connect(cp);
    lcow_result v;
    lcow_error err;
    if (lcow_client_version(c, &v, &err) != LCOW_OK)
        fail_msg("the server stopped answering: %s", err.message);
    lcow_result_free(&v);
    lcow_client_close(c);
}

static void campaign_run(bool persistent)
{
    REQUIRE_ALLOC_SEAM();
    lcow_alloc_fault_exempt_thread(true); /* this thread is the client */
    campaign cp;
    campaign_open(&cp, persistent ? "persistent" : "once");
    /* A clean run first: the script is answered whole. */
    unsigned clean = run_one(&cp, 0, false);
    assert_int_equal(clean, 0);
    assert_int_equal(cp.closed, 0);
    unsigned calls_hint = 0, nth;
    for (nth = 1; nth < 5000; nth++) {
        unsigned injected = run_one(&cp, nth, persistent);
        if (injected == 0)
            break; /* the script needs fewer than nth allocations */
        calls_hint = nth;
        if (nth % 25 == 0)
            still_serving(&cp);
    }
    still_serving(&cp);
    print_message("allocation campaign (%s): %u allocations failed in turn, %u iterations, "
                  "%u connections closed, %u requests answered (%u ResourceExhausted), "
                  "%u left a directory for Cleanup\n",
                  persistent ? "from the nth on" : "one at a time", calls_hint, cp.iterations,
                  cp.closed, cp.answered, cp.resource_exhausted, cp.needed_cleanup);
    assert_true(calls_hint > 20); /* the seam is reached on the RPC paths */
    campaign_close(&cp);
    lcow_alloc_fault_exempt_thread(false);
}

static void every_allocation_failing_once(void **state)
{
    campaign_run(false);
}

static void every_allocation_failing_from_then_on(void **state)
{
    campaign_run(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_nth_allocation_fails),
        cmocka_unit_test(a_failed_buffer_write_leaves_the_buffer_as_it_was),
        cmocka_unit_test(every_allocation_failing_once),
        cmocka_unit_test(every_allocation_failing_from_then_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

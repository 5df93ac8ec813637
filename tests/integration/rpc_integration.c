/* Integration tests against a running lcowsnap (started by with_service.sh):
 * the real service exe, the real store, the real transport (Unix socket
 * natively, named pipe under Wine), driven through the client library.
 *
 * Environment: LCOW_IT_ADDRESS (required), LCOW_IT_SCRATCH_DIR (a directory
 * the service may create scratch disks in, as the service sees it),
 * LCOW_IT_SDDL (Windows: the SDDL the service was started with). */
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
#include <aclapi.h>
#include <sddl.h>
#endif

#include "core/os/thread.h"
#include "rpc/client.h"

static const char *address;

static lcow_client *connect_ok(void)
{
    lcow_client *c = NULL;
    lcow_error err;
    if (lcow_client_connect(address, 10000, &c, &err) != LCOW_OK)
        fail_msg("connect %s: %s", address, err.message);
    lcow_client_set_call_timeout(c, 120000);
    return c;
}

#define EXPECT(call, want)                                                                         \
    do {                                                                                           \
        lcow_code got_ = (call);                                                                   \
        if (got_ != (want))                                                                        \
            fail_msg("%s: want %s, got %s: %s", #call, lcow_code_name(want), lcow_code_name(got_), \
                     err.message);                                                                 \
    } while (0)

static bool has_option(const lcow_mount *m, const char *prefix)
{
    for (size_t i = 0; i < m->option_count; i++) {
        if (strncmp(m->options[i], prefix, strlen(prefix)) == 0)
            return true;
    }
    return false;
}

static void version_reports_protocol_1(void **state)
{
    lcow_client *c = connect_ok();
    lcow_result v;
    lcow_error err;
    EXPECT(lcow_client_version(c, &v, &err), LCOW_OK);
    assert_int_equal(v.protocol, 1);
    assert_string_equal(v.snapshotter, "windows-lcow");
    assert_string_equal(v.version, LCOW_VERSION);
    lcow_result_free(&v);
    lcow_client_close(c);
}

static int collect(void *ctx, const lcow_info *info)
{
    lcow_infos *infos = ctx;
    return lcow_infos_push_copy(infos, info) ? 0 : 1;
}

static void snapshot_lifecycle_through_every_method(void **state)
{
    lcow_client *c = connect_ok();
    lcow_error err;
    lcow_mounts m = {0};
    lcow_labels labels = {0};
    assert_true(lcow_labels_set(&labels, "it/label", "1"));

    /* an unpacked layer (containerd's extract- prefix: no scratch disk) */
    EXPECT(lcow_client_prepare(c, "it/1/extract-base", NULL, &labels, &m, &err), LCOW_OK);
    assert_int_equal(m.count, 1);
    assert_string_equal(m.items[0].type, "lcow-layer");
    assert_true(has_option(&m.items[0], "rw"));
    lcow_mounts_free(&m);
    EXPECT(lcow_client_prepare(c, "it/1/extract-base", NULL, NULL, &m, &err), LCOW_ALREADY_EXISTS);
    EXPECT(lcow_client_mounts(c, "it/1/extract-base", &m, &err), LCOW_OK);
    lcow_mounts_free(&m);
    EXPECT(lcow_client_commit(c, "it/1/layer", "it/1/extract-base", &labels, NULL, &err), LCOW_OK);
    EXPECT(lcow_client_mounts(c, "it/1/layer", &m, &err), LCOW_FAILED_PRECONDITION);
    EXPECT(lcow_client_commit(c, "it/1/layer", "it/1/whatever", NULL, NULL, &err),
           LCOW_ALREADY_EXISTS);
    EXPECT(lcow_client_commit(c, "it/1/x", "it/1/missing", NULL, NULL, &err), LCOW_NOT_FOUND);

    /* a container: active on the layer, gets a scratch disk */
    EXPECT(lcow_client_prepare(c, "it/1/container", "it/1/layer", NULL, &m, &err), LCOW_OK);
    assert_true(has_option(&m.items[0], "parentLayerPaths="));
    lcow_mounts_free(&m);
    EXPECT(lcow_client_view(c, "it/1/view", "it/1/layer", NULL, &m, &err), LCOW_OK);
    assert_true(has_option(&m.items[0], "ro"));
    lcow_mounts_free(&m);
    EXPECT(lcow_client_prepare(c, "it/1/bad", "it/1/container", NULL, &m, &err),
           LCOW_INVALID_ARGUMENT); /* parent not committed */
    EXPECT(lcow_client_prepare(c, "it/1/bad", "it/1/nope", NULL, &m, &err), LCOW_NOT_FOUND);

    lcow_info info = {0};
    EXPECT(lcow_client_stat(c, "it/1/layer", &info, &err), LCOW_OK);
    assert_int_equal(info.kind, LCOW_KIND_COMMITTED);
    assert_string_equal(lcow_labels_get(&info.labels, "it/label"), "1");
    lcow_time created = info.created;
    lcow_info_free(&info);
    EXPECT(lcow_client_stat(c, "it/1/container", &info, &err), LCOW_OK);
    assert_int_equal(info.kind, LCOW_KIND_ACTIVE);
    assert_string_equal(info.parent, "it/1/layer");
    lcow_info_free(&info);
    EXPECT(lcow_client_stat(c, "it/1/none", &info, &err), LCOW_NOT_FOUND);

    lcow_info upd = {.name = "it/1/layer", .parent = ""};
    assert_true(lcow_labels_set(&upd.labels, "it/other", "2"));
    const char *paths[] = {"labels.it/other"};
    lcow_info out = {0};
    EXPECT(lcow_client_update(c, &upd, paths, 1, &out, &err), LCOW_OK);
    assert_string_equal(lcow_labels_get(&out.labels, "it/other"), "2");
    assert_string_equal(lcow_labels_get(&out.labels, "it/label"), "1");
    assert_int_equal(out.created.sec, created.sec);
    assert_int_equal(out.created.nsec, created.nsec);
    lcow_info_free(&out);
    const char *bad_paths[] = {"parent"};
    EXPECT(lcow_client_update(c, &upd, bad_paths, 1, &out, &err), LCOW_INVALID_ARGUMENT);
    lcow_labels_free(&upd.labels);

    lcow_usage u;
    EXPECT(lcow_client_usage(c, "it/1/container", &u, &err), LCOW_OK);
    assert_true(u.size >= 0);
    EXPECT(lcow_client_usage(c, "it/1/none", &u, &err), LCOW_NOT_FOUND);

    lcow_infos infos = {0};
    const char *filters[] = {"labels.\"it/label\"==1"};
    EXPECT(lcow_client_walk_all(c, filters, 1, collect, &infos, &err), LCOW_OK);
    assert_int_equal(infos.count, 1);
    assert_string_equal(infos.items[0].name, "it/1/layer");
    lcow_infos_free(&infos);
    const char *bad_filter[] = {"kind=="};
    EXPECT(lcow_client_walk_all(c, bad_filter, 1, collect, &infos, &err), LCOW_INVALID_ARGUMENT);
    lcow_infos_free(&infos);
    char *next = NULL;
    EXPECT(lcow_client_walk(c, NULL, 0, 1, NULL, &infos, &next, &err), LCOW_OK);
    assert_int_equal(infos.count, 1);
    assert_non_null(next);
    lcow_infos_free(&infos);
    free(next);

    EXPECT(lcow_client_remove(c, "it/1/layer", &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "remove"));
    EXPECT(lcow_client_remove(c, "it/1/view", &err), LCOW_OK);
    EXPECT(lcow_client_remove(c, "it/1/container", &err), LCOW_OK);
    EXPECT(lcow_client_remove(c, "it/1/layer", &err), LCOW_OK);
    EXPECT(lcow_client_remove(c, "it/1/layer", &err), LCOW_NOT_FOUND);
    EXPECT(lcow_client_cleanup(c, &err), LCOW_OK);

    const char *dir = getenv("LCOW_IT_SCRATCH_DIR");
    if (dir) {
        char path[1024];
#ifdef _WIN32
        snprintf(path, sizeof path, "%s\\created-%lu.vhdx", dir,
                 (unsigned long)GetCurrentProcessId());
#else
        snprintf(path, sizeof path, "%s/created.vhdx", dir);
#endif
        EXPECT(lcow_client_create_scratch(c, path, 1, 0, &err), LCOW_OK);
        EXPECT(lcow_client_create_scratch(c, "relative.vhdx", 1, 0, &err), LCOW_INVALID_ARGUMENT);
    }
    lcow_labels_free(&labels);
    lcow_client_close(c);
}

static void pipelining_1000_requests_on_one_connection(void **state)
{
    lcow_client *c = connect_ok();
    lcow_error err;
    lcow_mounts m = {0};
    EXPECT(lcow_client_prepare(c, "it/2/extract-p", NULL, NULL, &m, &err), LCOW_OK);
    lcow_mounts_free(&m);
    uint32_t ids[1000];
    for (int i = 0; i < 1000; i++) {
        lcow_params p;
        memset(&p, 0, sizeof p);
        p.key = i % 4 == 0 ? "it/2/missing" : "it/2/extract-p";
        EXPECT(lcow_client_send(c, LCOW_METHOD_STAT, &p, &ids[i], &err), LCOW_OK);
    }
    for (int i = 0; i < 1000; i++) {
        uint32_t id;
        lcow_result r;
        lcow_error call_err;
        EXPECT(lcow_client_receive(c, LCOW_METHOD_STAT, &id, &r, &call_err, &err), LCOW_OK);
        assert_int_equal(id, ids[i]);
        assert_int_equal(call_err.code, i % 4 == 0 ? LCOW_NOT_FOUND : LCOW_OK);
        lcow_result_free(&r);
    }
    /* Prepare, Commit, Remove pipelined: executed in order. */
    for (int i = 0; i < 20; i++) {
        char key[64], name[64];
        snprintf(key, sizeof key, "it/2/extract-%d", i);
        snprintf(name, sizeof name, "it/2/layer-%d", i);
        lcow_params p;
        memset(&p, 0, sizeof p);
        p.key = key;
        EXPECT(lcow_client_send(c, LCOW_METHOD_PREPARE, &p, NULL, &err), LCOW_OK);
        p.name = name;
        EXPECT(lcow_client_send(c, LCOW_METHOD_COMMIT, &p, NULL, &err), LCOW_OK);
        memset(&p, 0, sizeof p);
        p.key = name;
        EXPECT(lcow_client_send(c, LCOW_METHOD_REMOVE, &p, NULL, &err), LCOW_OK);
    }
    static const lcow_method order[] = {LCOW_METHOD_PREPARE, LCOW_METHOD_COMMIT,
                                        LCOW_METHOD_REMOVE};
    for (int i = 0; i < 60; i++) {
        lcow_result r;
        lcow_error call_err;
        EXPECT(lcow_client_receive(c, order[i % 3], NULL, &r, &call_err, &err), LCOW_OK);
        if (call_err.code != LCOW_OK)
            fail_msg("pipelined %d: %s: %s", i, lcow_code_name(call_err.code), call_err.message);
        lcow_result_free(&r);
    }
    EXPECT(lcow_client_remove(c, "it/2/extract-p", &err), LCOW_OK);
    lcow_client_close(c);
}

typedef struct worker {
    int index;
    int ops;
    char failure[300];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    lcow_client *c = NULL;
    lcow_error err;
    if (lcow_client_connect(address, 30000, &c, &err) != LCOW_OK) {
        snprintf(w->failure, sizeof w->failure, "connect: %s", err.message);
        return NULL;
    }
    lcow_client_set_call_timeout(c, 120000);
    for (int i = 0; i < w->ops && !w->failure[0]; i++) {
        char key[64], name[64];
        snprintf(key, sizeof key, "it/3/extract-w%d-%d", w->index, i);
        snprintf(name, sizeof name, "it/3/layer-w%d-%d", w->index, i);
        lcow_mounts m = {0};
        lcow_info info = {0};
        lcow_code code = lcow_client_prepare(c, key, NULL, NULL, &m, &err);
        lcow_mounts_free(&m);
        if (code == LCOW_OK)
            code = lcow_client_commit(c, name, key, NULL, NULL, &err);
        if (code == LCOW_OK)
            code = lcow_client_stat(c, name, &info, &err);
        if (code == LCOW_OK && strcmp(info.name, name) != 0)
            code = lcow_error_set(&err, LCOW_INTERNAL, "stat answered %s", info.name);
        lcow_info_free(&info);
        if (code == LCOW_OK)
            code = lcow_client_remove(c, name, &err);
        if (code != LCOW_OK)
            snprintf(w->failure, sizeof w->failure, "op %d: %s: %s", i, lcow_code_name(code),
                     err.message);
    }
    lcow_client_close(c);
    return NULL;
}

static void thirty_two_concurrent_clients(void **state)
{
    enum { CLIENTS = 32 };
    worker workers[CLIENTS];
    lcow_thread threads[CLIENTS];
#ifdef _WIN32
    int ops = 5;
#else
    int ops = 25;
#endif
    for (int i = 0; i < CLIENTS; i++) {
        workers[i] = (worker){.index = i, .ops = ops};
        assert_true(lcow_thread_create(&threads[i], worker_main, &workers[i]));
    }
    int failed = 0;
    for (int i = 0; i < CLIENTS; i++) {
        lcow_thread_join(threads[i], NULL);
        if (workers[i].failure[0]) {
            print_error("client %d: %s\n", i, workers[i].failure);
            failed++;
        }
    }
    assert_int_equal(failed, 0);
}

static void raw_error(lcow_client *c, const void *bytes, size_t len, bool has_msgid, uint32_t msgid,
                      lcow_code want)
{
    lcow_error err, call_err;
    bool has = false;
    uint32_t id = 0;
    EXPECT(lcow_client_send_raw(c, bytes, len, &err), LCOW_OK);
    EXPECT(lcow_client_receive_raw(c, &has, &id, &call_err, &err), LCOW_OK);
    assert_int_equal(has, has_msgid);
    if (has_msgid)
        assert_int_equal(id, msgid);
    if (call_err.code != want)
        fail_msg("want %s, got %s: %s", lcow_code_name(want), lcow_code_name(call_err.code),
                 call_err.message);
}

static void malformed_requests_get_error_responses(void **state)
{
    lcow_client *c = connect_ok();
    lcow_client *bystander = connect_ok();
    static const uint8_t not_request[] = {0x93, 0x01, 0x02, 0x03};
    raw_error(c, not_request, sizeof not_request, false, 0, LCOW_INVALID_ARGUMENT);
    static const uint8_t unknown[] = {0x94, 0x00, 0x31, 0xa3, 'F', 'o', 'o', 0x91, 0x80};
    raw_error(c, unknown, sizeof unknown, true, 0x31, LCOW_NOT_IMPLEMENTED);
    static const uint8_t wrong_type[] = {0x94, 0x00, 0x32, 0xa6, 'R', 'e', 'm', 'o', 'v',
                                         'e',  0x91, 0x81, 0xa3, 'k', 'e', 'y', 0xc3};
    raw_error(c, wrong_type, sizeof wrong_type, true, 0x32, LCOW_INVALID_ARGUMENT);
    static const uint8_t bad_utf8[] = {0x94, 0x00, 0x33, 0xa4, 'S', 't',  'a',  't', 0x91,
                                       0x81, 0xa3, 'k',  'e',  'y', 0xa2, 0xff, 0xfe};
    raw_error(c, bad_utf8, sizeof bad_utf8, true, 0x33, LCOW_INVALID_ARGUMENT);
    /* larger than the service's --max-frame-bytes (65536 in these tests) */
    size_t big = 70000, n = 0;
    uint8_t *frame = malloc(big + 32);
    static const uint8_t head[] = {0x94, 0x00, 0x34, 0xa4, 'S',  't',  'a',  't',  0x91, 0x81,
                                   0xa3, 'k',  'e',  'y',  0xdb, 0x00, 0x01, 0x11, 0x70};
    memcpy(frame, head, sizeof head);
    n = sizeof head;
    memset(frame + n, 'k', big);
    n += big;
    raw_error(c, frame, n, true, 0x34, LCOW_RESOURCE_EXHAUSTED);
    free(frame);
    lcow_result v;
    lcow_error err;
    EXPECT(lcow_client_version(c, &v, &err), LCOW_OK); /* still in sync */
    lcow_result_free(&v);
    static const uint8_t poison[] = {0xc1, 0xc1};
    bool has;
    uint32_t id;
    lcow_error call_err;
    EXPECT(lcow_client_send_raw(c, poison, sizeof poison, &err), LCOW_OK);
    EXPECT(lcow_client_receive_raw(c, &has, &id, &call_err, &err), LCOW_UNAVAILABLE);
    EXPECT(lcow_client_version(bystander, &v, &err), LCOW_OK);
    lcow_result_free(&v);
    lcow_client_close(c);
    lcow_client_close(bystander);
}

#ifdef _WIN32
/* The DACL of the service's pipe, read back by a client (Wine stores it but
 * does not enforce it, so read-back is what can be checked here). */
static void pipe_security_descriptor_matches_the_configuration(void **state)
{
    const char *want = getenv("LCOW_IT_SDDL");
    if (!want)
        skip();
    int n = MultiByteToWideChar(CP_UTF8, 0, address, -1, NULL, 0);
    wchar_t *name = malloc((size_t)n * sizeof *name);
    MultiByteToWideChar(CP_UTF8, 0, address, -1, name, n);
    HANDLE h = INVALID_HANDLE_VALUE;
    for (int i = 0; i < 100 && h == INVALID_HANDLE_VALUE; i++) {
        h = CreateFileW(name, GENERIC_READ | GENERIC_WRITE | READ_CONTROL, 0, NULL, OPEN_EXISTING,
                        0, NULL);
        if (h == INVALID_HANDLE_VALUE)
            WaitNamedPipeW(name, 1000);
    }
    free(name);
    assert_true(h != INVALID_HANDLE_VALUE);
    PSECURITY_DESCRIPTOR sd = NULL;
    assert_int_equal(GetSecurityInfo(h, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL,
                                     NULL, NULL, &sd),
                     ERROR_SUCCESS);
    LPWSTR wsddl = NULL;
    assert_true(ConvertSecurityDescriptorToStringSecurityDescriptorW(
        sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &wsddl, NULL));
    char got[512];
    WideCharToMultiByte(CP_UTF8, 0, wsddl, -1, got, sizeof got, NULL, NULL);
    LocalFree(wsddl);
    LocalFree(sd);
    CloseHandle(h);
    /* Compare with the configured SDDL in the system's normal form (it
     * orders rights, e.g. GRGW reads back as GWGR). */
    int wn = MultiByteToWideChar(CP_UTF8, 0, want, -1, NULL, 0);
    wchar_t *wwant = malloc((size_t)wn * sizeof *wwant);
    MultiByteToWideChar(CP_UTF8, 0, want, -1, wwant, wn);
    PSECURITY_DESCRIPTOR want_sd = NULL;
    assert_true(ConvertStringSecurityDescriptorToSecurityDescriptorW(wwant, SDDL_REVISION_1,
                                                                     &want_sd, NULL));
    free(wwant);
    assert_true(ConvertSecurityDescriptorToStringSecurityDescriptorW(
        want_sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &wsddl, NULL));
    char normal[512];
    WideCharToMultiByte(CP_UTF8, 0, wsddl, -1, normal, sizeof normal, NULL, NULL);
    LocalFree(wsddl);
    LocalFree(want_sd);
    print_message("pipe DACL read back: %s (configured %s)\n", got, want);
    assert_string_equal(got, normal);
    assert_non_null(strstr(got, "(A;;GA;;;SY)"));
    assert_null(strstr(got, ";;;WD)"));
}
#endif

int main(void)
{
    address = getenv("LCOW_IT_ADDRESS");
    if (!address) {
        fprintf(stderr, "LCOW_IT_ADDRESS is not set\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_reports_protocol_1),
        cmocka_unit_test(snapshot_lifecycle_through_every_method),
        cmocka_unit_test(pipelining_1000_requests_on_one_connection),
        cmocka_unit_test(thirty_two_concurrent_clients),
        cmocka_unit_test(malformed_requests_get_error_responses),
#ifdef _WIN32
        cmocka_unit_test(pipe_security_descriptor_matches_the_configuration),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

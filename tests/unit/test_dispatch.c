/* The method table (rpc/dispatch) against a fake core: every method reaches
 * the right core call with the decoded arguments, results are encoded, core
 * error codes and messages reach the wire 1:1, and undecodable requests get
 * error responses. The fake replaces core/snapshotter.c at link time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/snapshotter.h"
#include "core/base/stats.h"
#include "rpc/dispatch.h"

/* ---- fake core ----------------------------------------------------------- */

static struct fake {
    char call[32];
    char arg1[64], arg2[64], arg3[64], arg4[80];
    bool verity;
    size_t label_count, count2;
    uint64_t limit;
    uint32_t size_gb, block_mb;
    lcow_code fail_code;
    char fail_message[64];
    int walk_items;
} fake;

struct lcow_snapshotter {
    int unused;
};

static lcow_code fake_enter(const char *call, const char *a1, const char *a2, const char *a3,
                            lcow_error *err)
{
    snprintf(fake.call, sizeof fake.call, "%s", call);
    snprintf(fake.arg1, sizeof fake.arg1, "%s", a1 ? a1 : "(null)");
    snprintf(fake.arg2, sizeof fake.arg2, "%s", a2 ? a2 : "(null)");
    snprintf(fake.arg3, sizeof fake.arg3, "%s", a3 ? a3 : "(null)");
    if (fake.fail_code != LCOW_OK)
        return lcow_error_set(err, fake.fail_code, "%s", fake.fail_message);
    return LCOW_OK;
}

static void one_mount(lcow_mounts *m, const char *source)
{
    m->count = 1;
    m->items = calloc(1, sizeof *m->items);
    m->items[0].type = strdup("lcow-layer");
    m->items[0].source = strdup(source);
    m->items[0].option_count = 1;
    m->items[0].options = calloc(1, sizeof(char *));
    m->items[0].options[0] = strdup("rw");
}

static void fill_info(lcow_info *info, const char *name)
{
    info->name = strdup(name);
    info->parent = strdup("");
    info->kind = LCOW_KIND_ACTIVE;
    info->created = (lcow_time){100, 1};
    info->updated = (lcow_time){200, 2};
    lcow_labels_set(&info->labels, "l", "v");
}

lcow_code lcow_snapshotter_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                   const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    fake.label_count = labels ? labels->count : 0;
    lcow_code code = fake_enter("prepare", key, parent, NULL, err);
    if (code == LCOW_OK)
        one_mount(mounts, key);
    return code;
}

lcow_code lcow_snapshotter_view(lcow_snapshotter *s, const char *key, const char *parent,
                                const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    fake.label_count = labels ? labels->count : 0;
    lcow_code code = fake_enter("view", key, parent, NULL, err);
    if (code == LCOW_OK)
        one_mount(mounts, key);
    return code;
}

lcow_code lcow_snapshotter_mounts(lcow_snapshotter *s, const char *key, lcow_mounts *mounts,
                                  lcow_error *err)
{
    lcow_code code = fake_enter("mounts", key, NULL, NULL, err);
    if (code == LCOW_OK)
        one_mount(mounts, key);
    return code;
}

lcow_code lcow_snapshotter_commit(lcow_snapshotter *s, const char *name, const char *key,
                                  const lcow_labels *labels, const char *parent, lcow_error *err)
{
    fake.label_count = labels ? labels->count : 0;
    return fake_enter("commit", name, key, parent, err);
}

lcow_code lcow_snapshotter_remove(lcow_snapshotter *s, const char *key, lcow_error *err)
{
    return fake_enter("remove", key, NULL, NULL, err);
}

lcow_code lcow_snapshotter_stat(lcow_snapshotter *s, const char *key, lcow_info *info,
                                lcow_error *err)
{
    lcow_code code = fake_enter("stat", key, NULL, NULL, err);
    if (code == LCOW_OK)
        fill_info(info, key);
    return code;
}

lcow_code lcow_snapshotter_update(lcow_snapshotter *s, const lcow_info *info,
                                  const char *const *fieldpaths, size_t fieldpath_count,
                                  lcow_info *out, lcow_error *err)
{
    fake.count2 = fieldpath_count;
    fake.label_count = info->labels.count;
    lcow_code code =
        fake_enter("update", info->name, fieldpath_count ? fieldpaths[0] : NULL, NULL, err);
    if (code == LCOW_OK)
        fill_info(out, info->name);
    return code;
}

lcow_code lcow_snapshotter_usage(lcow_snapshotter *s, const char *key, lcow_usage *usage,
                                 lcow_error *err)
{
    usage->size = 4096;
    usage->inodes = 3;
    return fake_enter("usage", key, NULL, NULL, err);
}

lcow_code lcow_snapshotter_walk(lcow_snapshotter *s, const lcow_walk_options *opts, lcow_walk_fn fn,
                                void *ctx, char **next, lcow_error *err)
{
    fake.count2 = opts->filter_count;
    fake.limit = opts->limit;
    *next = NULL;
    lcow_code code =
        fake_enter("walk", opts->filter_count ? opts->filters[0] : NULL, opts->after, NULL, err);
    if (code != LCOW_OK)
        return code;
    for (int i = 0; i < fake.walk_items; i++) {
        if ((size_t)i == opts->limit) {
            *next = strdup("cursor");
            break;
        }
        lcow_info info = {0};
        char name[16];
        snprintf(name, sizeof name, "k%03d", i);
        fill_info(&info, name);
        int stop = fn(ctx, &info);
        lcow_info_free(&info);
        if (stop)
            break;
    }
    return LCOW_OK;
}

lcow_code lcow_snapshotter_cleanup(lcow_snapshotter *s, lcow_error *err)
{
    return fake_enter("cleanup", NULL, NULL, NULL, err);
}

lcow_code lcow_snapshotter_status(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    lcow_code code = fake_enter("status", NULL, NULL, NULL, err);
    if (code != LCOW_OK)
        return code;
    *out = (lcow_store_status){.active = 3,
                               .committed = 2,
                               .view = 1,
                               .bytes = 4096,
                               .inodes = 7,
                               .scratch_templates = 1,
                               .layers = -1,
                               .pending_removals = 5};
    return LCOW_OK;
}

lcow_code lcow_snapshotter_compact(lcow_snapshotter *s, const char *key,
                                   lcow_compact_summary *summary, lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    lcow_code code = fake_enter("compact", key, NULL, NULL, err);
    if (code == LCOW_OK)
        *summary =
            (lcow_compact_summary){.disks = 1, .bytes_before = 9 << 20, .bytes_after = 5 << 20};
    return code;
}

/* Two layers: a verity one with two blobs, a plain one with none. */
lcow_code lcow_snapshotter_list_layers(lcow_snapshotter *s, lcow_layer_store_list_fn fn, void *ctx,
                                       lcow_error *err)
{
    lcow_code code = fake_enter("list_layers", NULL, NULL, NULL, err);
    if (code != LCOW_OK)
        return code;
    lcow_layer_store_info a = {.diff_id = "sha256:aa",
                               .verity = true,
                               .verity_root_hash = "bb",
                               .bytes = 1ull << 33,
                               .references = 2,
                               .created = {1700000000, 5},
                               .last_use = {1700000100, 7}};
    const char *blobs[] = {"sha256:b1", "sha256:b2"};
    if (fn(ctx, &a, blobs, 2) != 0)
        return LCOW_OK;
    lcow_layer_store_info b = {.diff_id = "sha256:cc", .bytes = 4096};
    fn(ctx, &b, NULL, 0);
    return LCOW_OK;
}

lcow_code lcow_snapshotter_prune_layers(lcow_snapshotter *s,
                                        const lcow_layer_store_prune_options *opts,
                                        lcow_layer_store_prune_result *res, lcow_error *err)
{
    char age[32];
    snprintf(age, sizeof age, "%lld", (long long)opts->older_than_sec);
    lcow_code code = fake_enter("prune_layers", opts->all ? "all" : "not all", age, NULL, err);
    if (code == LCOW_OK)
        *res = (lcow_layer_store_prune_result){.layers = 3, .bytes = 5ull << 30};
    return code;
}

lcow_code lcow_snapshotter_compact_all(lcow_snapshotter *s, lcow_compact_summary *summary,
                                       lcow_error *err)
{
    memset(summary, 0, sizeof *summary);
    lcow_code code = fake_enter("compact_all", NULL, NULL, NULL, err);
    if (code == LCOW_OK)
        *summary = (lcow_compact_summary){.disks = 2, .in_use = 1, .failed = 1};
    return code;
}

lcow_code lcow_snapshotter_create_scratch(lcow_snapshotter *s, const char *path, uint32_t size_gb,
                                          uint32_t block_size_mb, lcow_error *err)
{
    fake.size_gb = size_gb;
    fake.block_mb = block_size_mb;
    return fake_enter("create_scratch", path, NULL, NULL, err);
}

lcow_code lcow_snapshotter_apply(lcow_snapshotter *s, const lcow_apply_request *req,
                                 lcow_apply_result *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    fake.verity = req->verity;
    snprintf(fake.arg4, sizeof fake.arg4, "%s", req->digest ? req->digest : "(null)");
    lcow_code code = fake_enter("apply", req->key, req->path, req->media_type, err);
    if (code != LCOW_OK)
        return code;
    snprintf(out->diff_id, sizeof out->diff_id, "sha256:%064d", 1);
    snprintf(out->digest, sizeof out->digest, "sha256:%064d", 2);
    out->size = 1234;
    out->layer_bytes = (1ull << 33) + 512;
    if (req->verity) {
        out->has_verity_root_hash = true;
        snprintf(out->verity_root_hash, sizeof out->verity_root_hash, "%064d", 3);
    }
    return LCOW_OK;
}

/* ---- helpers ------------------------------------------------------------- */

static lcow_snapshotter the_store;

static int reset(void **state)
{
    memset(&fake, 0, sizeof fake);
    return 0;
}

/* Sends one request through the dispatcher and decodes the response. */
/* One request object through the path the session takes: decode, then
 * dispatch and encode, or an error response when it cannot be decoded
 * (msgid nil when unreadable). */
static bool dispatch_object(lcow_snapshotter *snapshotter, const msgpack_object *obj,
                            msgpack_sbuffer *out)
{
    lcow_request req;
    bool has_msgid = false;
    lcow_error err;
    lcow_error_clear(&err);
    lcow_code code = lcow_proto_decode_request(obj, &req, &has_msgid, &err);
    if (code != LCOW_OK)
        return lcow_dispatch_error(out, has_msgid, req.msgid, code, err.message);
    bool ok = lcow_dispatch_respond(snapshotter, &req, out);
    lcow_params_free(&req.params);
    return ok;
}

static lcow_code roundtrip(lcow_method method, const lcow_params *params, lcow_result *result,
                           lcow_error *call_err)
{
    msgpack_sbuffer req;
    msgpack_sbuffer_init(&req);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    assert_true(lcow_proto_encode_request(&pk, 5, method, params));
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, req.data, req.size, &off), MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer resp;
    msgpack_sbuffer_init(&resp);
    assert_true(dispatch_object(&the_store, &u.data, &resp));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&req);

    msgpack_unpacked_init(&u);
    off = 0;
    assert_int_equal(msgpack_unpack_next(&u, resp.data, resp.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, resp.size);
    bool has_msgid;
    uint32_t msgid;
    lcow_error err;
    assert_int_equal(
        lcow_proto_decode_response(&u.data, method, &has_msgid, &msgid, call_err, result, &err),
        LCOW_OK);
    assert_true(has_msgid);
    assert_int_equal(msgid, 5);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&resp);
    return call_err->code;
}

static lcow_params params_with_key(const char *key)
{
    lcow_params p;
    memset(&p, 0, sizeof p);
    p.key = (char *)key;
    return p;
}

/* ---- tests --------------------------------------------------------------- */

static void prepare_view_mounts_reach_the_core(void **state)
{
    lcow_params p = params_with_key("ns/1/a");
    p.parent = "ns/1/base";
    assert_true(lcow_labels_set(&p.labels, "x", "1"));
    static const struct {
        lcow_method method;
        const char *call;
    } rows[] = {{LCOW_METHOD_PREPARE, "prepare"},
                {LCOW_METHOD_VIEW, "view"},
                {LCOW_METHOD_MOUNTS, "mounts"}};
    for (size_t i = 0; i < 3; i++) {
        lcow_result r;
        lcow_error e;
        assert_int_equal(roundtrip(rows[i].method, &p, &r, &e), LCOW_OK);
        assert_string_equal(fake.call, rows[i].call);
        assert_string_equal(fake.arg1, "ns/1/a");
        if (rows[i].method != LCOW_METHOD_MOUNTS) {
            assert_string_equal(fake.arg2, "ns/1/base");
            assert_int_equal(fake.label_count, 1);
        }
        assert_int_equal(r.mounts.count, 1);
        assert_string_equal(r.mounts.items[0].source, "ns/1/a");
        lcow_result_free(&r);
    }
    lcow_labels_free(&p.labels);
}

static void commit_remove_stat_usage_cleanup_reach_the_core(void **state)
{
    lcow_params p = params_with_key("k");
    p.name = "n";
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_COMMIT, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "commit");
    assert_string_equal(fake.arg1, "n");
    assert_string_equal(fake.arg2, "k");
    assert_string_equal(fake.arg3, "(null)");
    lcow_result_free(&r);

    assert_int_equal(roundtrip(LCOW_METHOD_REMOVE, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "remove");
    lcow_result_free(&r);

    assert_int_equal(roundtrip(LCOW_METHOD_STAT, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "stat");
    assert_string_equal(r.info.name, "k");
    assert_int_equal(r.info.created.nsec, 1);
    assert_string_equal(lcow_labels_get(&r.info.labels, "l"), "v");
    lcow_result_free(&r);

    assert_int_equal(roundtrip(LCOW_METHOD_USAGE, &p, &r, &e), LCOW_OK);
    assert_int_equal(r.size, 4096);
    assert_int_equal(r.inodes, 3);
    lcow_result_free(&r);

    assert_int_equal(roundtrip(LCOW_METHOD_CLEANUP, NULL, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "cleanup");
    lcow_result_free(&r);
}

static void update_passes_info_and_fieldpaths(void **state)
{
    lcow_params p;
    memset(&p, 0, sizeof p);
    p.info.name = "k";
    p.info.parent = "";
    p.has_info = true;
    assert_true(lcow_labels_set(&p.info.labels, "a", "b"));
    char *paths[] = {"labels.a", "labels.b"};
    p.fieldpaths = (lcow_strv){2, paths};
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_UPDATE, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "update");
    assert_string_equal(fake.arg1, "k");
    assert_string_equal(fake.arg2, "labels.a");
    assert_int_equal(fake.count2, 2);
    assert_int_equal(fake.label_count, 1);
    assert_string_equal(r.info.name, "k");
    lcow_result_free(&r);
    lcow_labels_free(&p.info.labels);
}

static void walk_pages_are_capped_and_carry_next(void **state)
{
    lcow_params p;
    memset(&p, 0, sizeof p);
    char *filters[] = {"kind==active"};
    p.filters = (lcow_strv){1, filters};
    p.after = "k000";
    fake.walk_items = 5;
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_WALK, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.arg1, "kind==active");
    assert_string_equal(fake.arg2, "k000");
    assert_int_equal(fake.limit, LCOW_WALK_PAGE_MAX); /* no limit asked: the page cap */
    assert_int_equal(r.infos.count, 5);
    assert_null(r.next);
    lcow_result_free(&r);

    p.limit = 2;
    assert_int_equal(roundtrip(LCOW_METHOD_WALK, &p, &r, &e), LCOW_OK);
    assert_int_equal(fake.limit, 2);
    assert_int_equal(r.infos.count, 2);
    assert_string_equal(r.next, "cursor");
    lcow_result_free(&r);

    p.limit = 1u << 30;
    assert_int_equal(roundtrip(LCOW_METHOD_WALK, &p, &r, &e), LCOW_OK);
    assert_int_equal(fake.limit, LCOW_WALK_PAGE_MAX);
    lcow_result_free(&r);
}

static void version_and_create_scratch(void **state)
{
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_VERSION, NULL, &r, &e), LCOW_OK);
    assert_string_equal(r.version, LCOW_VERSION);
    assert_int_equal(r.protocol, 1);
    assert_string_equal(r.snapshotter, "windows-lcow");
    /* containerd's unpacker unpacks in parallel only for "rebase"; the
     * remote-snapshot Prepare (issue 16). */
    bool rebase = false, remote = false;
    for (size_t i = 0; i < r.capabilities.count; i++) {
        rebase |= strcmp(r.capabilities.items[i], "rebase") == 0;
        remote |= strcmp(r.capabilities.items[i], "remote-snapshot") == 0;
    }
    assert_true(rebase);
    assert_true(remote);
    lcow_result_free(&r);

    lcow_params p;
    memset(&p, 0, sizeof p);
    p.path = "/s/x.vhdx";
    p.size_gb = 5;
    assert_int_equal(roundtrip(LCOW_METHOD_CREATE_SCRATCH, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.arg1, "/s/x.vhdx");
    assert_int_equal(fake.size_gb, 5);
    assert_int_equal(fake.block_mb, 0);
    assert_string_equal(r.path, "/s/x.vhdx");
    lcow_result_free(&r);
}

/* Status: the store's numbers from the core, and counters that match the
 * calls this test made (two Stats answered, one NotFound, one Apply). */
static void status_counts_the_calls_made(void **state)
{
    lcow_stats_reset();
    lcow_result r;
    lcow_error e;
    lcow_params p = params_with_key("k");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(roundtrip(LCOW_METHOD_STAT, &p, &r, &e), LCOW_OK);
        lcow_result_free(&r);
    }
    fake.fail_code = LCOW_NOT_FOUND;
    snprintf(fake.fail_message, sizeof fake.fail_message, "no such snapshot");
    assert_int_equal(roundtrip(LCOW_METHOD_STAT, &p, &r, &e), LCOW_NOT_FOUND);
    fake.fail_code = LCOW_OK;
    lcow_params a;
    memset(&a, 0, sizeof a);
    a.key = "extract-1";
    a.path = "/blobs/1";
    assert_int_equal(roundtrip(LCOW_METHOD_APPLY, &a, &r, &e), LCOW_OK);
    lcow_result_free(&r);

    assert_int_equal(roundtrip(LCOW_METHOD_STATUS, NULL, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "status");
    assert_string_equal(r.version, LCOW_VERSION);
    assert_int_equal(r.status.active, 3);
    assert_int_equal(r.status.committed, 2);
    assert_int_equal(r.status.view, 1);
    assert_int_equal(r.status.store_bytes, 4096);
    assert_int_equal(r.status.layers, -1);
    assert_int_equal(r.status.pending_removals, 5);
    /* Status itself is counted after it answers: 4 calls before it. */
    assert_int_equal(r.status.requests_total, 4);
    assert_int_equal(r.status.errors_total, 1);
    assert_int_equal(lcow_counters_get(&r.status.requests, "Stat/OK", 0), 2);
    assert_int_equal(lcow_counters_get(&r.status.requests, "Stat/NotFound", 0), 1);
    assert_int_equal(lcow_counters_get(&r.status.requests, "Apply/OK", 0), 1);
    assert_int_equal(lcow_counters_get(&r.status.requests, "Prepare/OK", -1), -1);
    assert_int_equal(r.status.bytes_converted, 1234);
    assert_int_equal(r.status.bytes_created, (int64_t)((1ull << 33) + 512));
    int64_t p50 = lcow_counters_get(&r.status.latency_us, "p50", -1);
    int64_t max = lcow_counters_get(&r.status.latency_us, "max", -1);
    assert_true(p50 >= 1 && max >= p50);
    lcow_result_free(&r);

    /* The next Status sees the previous one. */
    assert_int_equal(roundtrip(LCOW_METHOD_STATUS, NULL, &r, &e), LCOW_OK);
    assert_int_equal(lcow_counters_get(&r.status.requests, "Status/OK", 0), 1);
    assert_int_equal(r.status.requests_total, 5);
    lcow_result_free(&r);
}

static void apply_passes_its_fields_and_returns_the_layer(void **state)
{
    lcow_params p;
    memset(&p, 0, sizeof p);
    p.key = "ns/1/extract-1";
    p.path = "/blobs/l.tar.gz";
    p.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    p.digest = "sha256:0000000000000000000000000000000000000000000000000000000000000002";
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_APPLY, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "apply");
    assert_string_equal(fake.arg1, "ns/1/extract-1");
    assert_string_equal(fake.arg2, "/blobs/l.tar.gz");
    assert_string_equal(fake.arg3, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_string_equal(fake.arg4, p.digest);
    assert_false(fake.verity);
    assert_string_equal(r.diff_id,
                        "sha256:0000000000000000000000000000000000000000000000000000000000000001");
    assert_string_equal(r.digest, p.digest);
    assert_int_equal(r.size, 1234);
    assert_int_equal(r.layer_bytes, (1ll << 33) + 512);
    assert_null(r.verity_root_hash); /* absent without verity */
    lcow_result_free(&r);

    /* optional fields absent; verity on */
    p.media_type = NULL;
    p.digest = NULL;
    p.verity = true;
    assert_int_equal(roundtrip(LCOW_METHOD_APPLY, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.arg3, "(null)");
    assert_string_equal(fake.arg4, "(null)");
    assert_true(fake.verity);
    assert_string_equal(r.verity_root_hash,
                        "0000000000000000000000000000000000000000000000000000000000000003");
    lcow_result_free(&r);
}

static void layers_lists_the_store(void **state)
{
    lcow_result r;
    lcow_error e;
    assert_int_equal(roundtrip(LCOW_METHOD_LAYERS, NULL, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "list_layers");
    assert_int_equal(r.layers.count, 2);
    const lcow_layer_entry *a = &r.layers.items[0], *b = &r.layers.items[1];
    assert_string_equal(a->diff_id, "sha256:aa");
    assert_true(a->verity);
    assert_string_equal(a->verity_root_hash, "bb");
    assert_int_equal(a->bytes, 1ll << 33);
    assert_int_equal(a->references, 2);
    assert_int_equal(a->created.sec, 1700000000);
    assert_int_equal(a->last_use.nsec, 7);
    assert_int_equal(a->blob_digests.count, 2);
    assert_string_equal(a->blob_digests.items[1], "sha256:b2");
    assert_string_equal(b->diff_id, "sha256:cc");
    assert_false(b->verity);
    assert_null(b->verity_root_hash);
    assert_int_equal(b->blob_digests.count, 0);
    lcow_result_free(&r);
}

static void prune_layers_needs_all_or_an_age(void **state)
{
    lcow_result r;
    lcow_error e;
    lcow_params p = params_with_key(NULL);
    p.all = true;
    assert_int_equal(roundtrip(LCOW_METHOD_PRUNE_LAYERS, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "prune_layers");
    assert_string_equal(fake.arg1, "all");
    assert_int_equal(r.pruned_layers, 3);
    assert_int_equal(r.pruned_bytes, 5ll << 30);
    lcow_result_free(&r);
    p.all = false;
    p.older_than_seconds = 86400;
    assert_int_equal(roundtrip(LCOW_METHOD_PRUNE_LAYERS, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.arg1, "not all");
    assert_string_equal(fake.arg2, "86400");
    lcow_result_free(&r);
    /* neither: refused before the core */
    fake.call[0] = '\0';
    p.older_than_seconds = 0;
    assert_int_equal(roundtrip(LCOW_METHOD_PRUNE_LAYERS, &p, &r, &e), LCOW_INVALID_ARGUMENT);
    assert_string_equal(fake.call, "");
    assert_non_null(strstr(e.message, "older_than_seconds"));
    lcow_result_free(&r);
}

static void compact_takes_a_key_or_all(void **state)
{
    lcow_result r;
    lcow_error e;
    lcow_params p = params_with_key("ns/1/c");
    assert_int_equal(roundtrip(LCOW_METHOD_COMPACT, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "compact");
    assert_string_equal(fake.arg1, "ns/1/c");
    assert_int_equal(r.compact.disks, 1);
    assert_int_equal(r.compact.bytes_before, 9 << 20);
    assert_int_equal(r.compact.bytes_after, 5 << 20);
    lcow_result_free(&r);
    p = params_with_key(NULL);
    p.all = true;
    assert_int_equal(roundtrip(LCOW_METHOD_COMPACT, &p, &r, &e), LCOW_OK);
    assert_string_equal(fake.call, "compact_all");
    assert_int_equal(r.compact.disks, 2);
    assert_int_equal(r.compact.in_use, 1);
    assert_int_equal(r.compact.failed, 1);
    lcow_result_free(&r);
    /* Both or neither: refused before the core. */
    fake.call[0] = '\0';
    p = params_with_key("ns/1/c");
    p.all = true;
    assert_int_equal(roundtrip(LCOW_METHOD_COMPACT, &p, &r, &e), LCOW_INVALID_ARGUMENT);
    p = params_with_key(NULL);
    assert_int_equal(roundtrip(LCOW_METHOD_COMPACT, &p, &r, &e), LCOW_INVALID_ARGUMENT);
    assert_string_equal(fake.call, "");
}

static void core_errors_reach_the_wire_one_to_one(void **state)
{
    for (int code = LCOW_NOT_FOUND; code < LCOW_CODE_COUNT; code++) {
        fake.fail_code = (lcow_code)code;
        snprintf(fake.fail_message, sizeof fake.fail_message, "failure %d", code);
        lcow_params p = params_with_key("k");
        lcow_result r;
        lcow_error e;
        assert_int_equal(roundtrip(LCOW_METHOD_REMOVE, &p, &r, &e), code);
        assert_string_equal(e.message, fake.fail_message);
    }
}

static void undecodable_requests_get_error_responses(void **state)
{
    /* [0, 3, "Nope", []] -> NotImplemented with msgid 3 */
    static const unsigned char bytes[] = {0x94, 0x00, 0x03, 0xa4, 'N', 'o', 'p', 'e', 0x90};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)bytes, sizeof bytes, &off),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_sbuffer resp;
    msgpack_sbuffer_init(&resp);
    assert_true(dispatch_object(&the_store, &u.data, &resp));
    msgpack_unpacked_destroy(&u);
    msgpack_unpacked_init(&u);
    off = 0;
    assert_int_equal(msgpack_unpack_next(&u, resp.data, resp.size, &off), MSGPACK_UNPACK_SUCCESS);
    bool has_msgid;
    uint32_t msgid;
    lcow_error call_err, err;
    lcow_result r;
    assert_int_equal(lcow_proto_decode_response(&u.data, LCOW_METHOD_VERSION, &has_msgid, &msgid,
                                                &call_err, &r, &err),
                     LCOW_OK);
    assert_true(has_msgid);
    assert_int_equal(msgid, 3);
    assert_int_equal(call_err.code, LCOW_NOT_IMPLEMENTED);
    assert_string_equal(fake.call, ""); /* the core was not called */
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(prepare_view_mounts_reach_the_core, reset),
        cmocka_unit_test_setup(commit_remove_stat_usage_cleanup_reach_the_core, reset),
        cmocka_unit_test_setup(update_passes_info_and_fieldpaths, reset),
        cmocka_unit_test_setup(walk_pages_are_capped_and_carry_next, reset),
        cmocka_unit_test_setup(version_and_create_scratch, reset),
        cmocka_unit_test_setup(apply_passes_its_fields_and_returns_the_layer, reset),
        cmocka_unit_test_setup(status_counts_the_calls_made, reset),
        cmocka_unit_test_setup(compact_takes_a_key_or_all, reset),
        cmocka_unit_test_setup(layers_lists_the_store, reset),
        cmocka_unit_test_setup(prune_layers_needs_all_or_an_age, reset),
        cmocka_unit_test_setup(core_errors_reach_the_wire_one_to_one, reset),
        cmocka_unit_test_setup(undecodable_requests_get_error_responses, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

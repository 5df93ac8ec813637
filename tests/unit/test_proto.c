/* Protocol codec (rpc/proto): every method's params and results round-trip,
 * and strict decoding refuses what docs/protocol.md says to refuse. The
 * framer's tests are in test_frame.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/proto.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct packed {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} packed;

static void packed_init(packed *p)
{
    msgpack_sbuffer_init(&p->buf);
    msgpack_packer_init(&p->pk, &p->buf, msgpack_sbuffer_write);
}

static void pstr(packed *p, const char *s)
{
    msgpack_pack_str(&p->pk, strlen(s));
    msgpack_pack_str_body(&p->pk, s, strlen(s));
}

/* Unpacks p into u (caller destroys u). */
static const msgpack_object *unpack(packed *p, msgpack_unpacked *u)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, p->buf.data, p->buf.size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, p->buf.size);
    return &u->data;
}

/* Builds [0, 7, method, [ <map started by the caller> ]]: header only. */
static void request_head(packed *p, const char *method)
{
    msgpack_pack_array(&p->pk, 4);
    msgpack_pack_uint8(&p->pk, 0);
    msgpack_pack_uint32(&p->pk, 7);
    pstr(p, method);
    msgpack_pack_array(&p->pk, 1);
}

static lcow_code decode(packed *p, lcow_request *req, bool *has_msgid, lcow_error *err)
{
    msgpack_unpacked u;
    const msgpack_object *o = unpack(p, &u);
    lcow_code code = lcow_proto_decode_request(o, req, has_msgid, err);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&p->buf);
    return code;
}

/* ---- requests ------------------------------------------------------------ */

static void method_names_round_trip(void **state)
{
    for (int m = 0; m < LCOW_METHOD_COUNT; m++) {
        const char *name = lcow_method_name((lcow_method)m);
        assert_non_null(name);
        lcow_method back;
        assert_true(lcow_method_lookup(name, strlen(name), &back));
        assert_int_equal(back, m);
    }
    lcow_method back;
    assert_false(lcow_method_lookup("stat", 4, &back)); /* case-sensitive */
    assert_false(lcow_method_lookup("Sta", 3, &back));
    assert_null(lcow_method_name(LCOW_METHOD_COUNT));
}

static void every_method_round_trips_its_params(void **state)
{
    lcow_params in;
    memset(&in, 0, sizeof in);
    in.key = "ns/1/k";
    in.parent = "ns/1/p";
    in.name = "ns/1/n";
    assert_true(lcow_labels_set(&in.labels, "a", "1"));
    assert_true(lcow_labels_set(&in.labels, "containerd.io/x", "y\xc3\xa9"));
    in.info.name = "ns/1/k";
    in.info.parent = "";
    in.info.kind = LCOW_KIND_ACTIVE;
    in.info.created = (lcow_time){1700000000, 123456789};
    in.info.updated = (lcow_time){1700000001, 5};
    in.has_info = true;
    char *paths[] = {"labels.a"};
    in.fieldpaths = (lcow_strv){1, paths};
    char *filters[] = {"kind==active", "labels.a==1"};
    in.filters = (lcow_strv){2, filters};
    in.limit = 10;
    in.after = "ns/1/a";
    in.path = "/tmp/x.vhdx";
    in.size_gb = 20;
    in.block_size_mb = 1;
    in.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    in.digest = "sha256:00";
    in.verity = true;
    in.all = true;
    in.older_than_seconds = 86400;
    for (int m = 0; m < LCOW_METHOD_COUNT; m++) {
        packed p;
        packed_init(&p);
        assert_true(lcow_proto_encode_request(&p.pk, 42, (lcow_method)m, &in));
        lcow_request req;
        bool has_msgid;
        lcow_error err;
        assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_OK);
        assert_true(has_msgid);
        assert_int_equal(req.msgid, 42);
        assert_int_equal(req.method, m);
        const lcow_params *out = &req.params;
        switch ((lcow_method)m) {
        case LCOW_METHOD_PREPARE:
        case LCOW_METHOD_VIEW:
            assert_string_equal(out->key, "ns/1/k");
            assert_string_equal(out->parent, "ns/1/p");
            assert_int_equal(out->labels.count, 2);
            assert_string_equal(lcow_labels_get(&out->labels, "containerd.io/x"), "y\xc3\xa9");
            break;
        case LCOW_METHOD_COMMIT:
            assert_string_equal(out->name, "ns/1/n");
            assert_string_equal(out->key, "ns/1/k");
            assert_string_equal(out->parent, "ns/1/p");
            assert_int_equal(out->labels.count, 2);
            break;
        case LCOW_METHOD_MOUNTS:
        case LCOW_METHOD_REMOVE:
        case LCOW_METHOD_STAT:
        case LCOW_METHOD_USAGE:
            assert_string_equal(out->key, "ns/1/k");
            assert_null(out->parent);
            break;
        case LCOW_METHOD_UPDATE:
            assert_true(out->has_info);
            assert_string_equal(out->info.name, "ns/1/k");
            assert_int_equal(out->info.kind, LCOW_KIND_ACTIVE);
            assert_int_equal(out->info.created.sec, 1700000000);
            assert_int_equal(out->info.created.nsec, 123456789);
            assert_int_equal(out->info.updated.nsec, 5);
            assert_int_equal(out->fieldpaths.count, 1);
            assert_string_equal(out->fieldpaths.items[0], "labels.a");
            assert_null(out->key);
            break;
        case LCOW_METHOD_WALK:
            assert_int_equal(out->filters.count, 2);
            assert_string_equal(out->filters.items[1], "labels.a==1");
            assert_int_equal(out->limit, 10);
            assert_string_equal(out->after, "ns/1/a");
            break;
        case LCOW_METHOD_CREATE_SCRATCH:
            assert_string_equal(out->path, "/tmp/x.vhdx");
            assert_int_equal(out->size_gb, 20);
            assert_int_equal(out->block_size_mb, 1);
            break;
        case LCOW_METHOD_APPLY:
            assert_string_equal(out->key, "ns/1/k");
            assert_string_equal(out->path, "/tmp/x.vhdx");
            assert_string_equal(out->media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
            assert_string_equal(out->digest, "sha256:00");
            assert_true(out->verity);
            assert_null(out->parent);
            break;
        case LCOW_METHOD_COMPACT:
            assert_string_equal(out->key, "ns/1/k");
            assert_true(out->all);
            assert_null(out->parent);
            break;
        case LCOW_METHOD_PRUNE_LAYERS:
            assert_true(out->all);
            assert_int_equal(out->older_than_seconds, 86400);
            assert_null(out->key);
            break;
        default:
            assert_null(out->key);
            break;
        }
        lcow_params_free(&req.params);
    }
    lcow_labels_free(&in.labels);
}

static void unknown_extra_fields_are_ignored(void **state)
{
    packed p;
    packed_init(&p);
    request_head(&p, "Stat");
    msgpack_pack_map(&p.pk, 3);
    pstr(&p, "future");
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_int(&p.pk, -1);
    msgpack_pack_nil(&p.pk);
    pstr(&p, "key");
    pstr(&p, "k");
    pstr(&p, "snapshotter");
    pstr(&p, "windows-lcow");
    lcow_request req;
    bool has_msgid;
    lcow_error err;
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_OK);
    assert_string_equal(req.params.key, "k");
    lcow_params_free(&req.params);
}

static void empty_params_array_is_an_empty_map(void **state)
{
    packed p;
    packed_init(&p);
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 1);
    pstr(&p, "Version");
    msgpack_pack_array(&p.pk, 0);
    lcow_request req;
    bool has_msgid;
    lcow_error err;
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_OK);
    assert_int_equal(req.method, LCOW_METHOD_VERSION);

    packed_init(&p); /* Stat with [] is missing its key */
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 1);
    pstr(&p, "Stat");
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_true(has_msgid);
    assert_non_null(strstr(err.message, "missing required field \"key\""));
}

/* Each case: the params map (built by fn) must fail with code. */
typedef void (*build_fn)(packed *p);

static void expect_params_error(const char *method, build_fn build, lcow_code code,
                                const char *substring)
{
    packed p;
    packed_init(&p);
    request_head(&p, method);
    build(&p);
    lcow_request req;
    bool has_msgid = false;
    lcow_error err;
    assert_int_equal(decode(&p, &req, &has_msgid, &err), code);
    assert_true(has_msgid);
    assert_int_equal(req.msgid, 7);
    if (!strstr(err.message, substring))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, substring);
}

static void key_is_int(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "key");
    msgpack_pack_int(&p->pk, 5);
}
static void key_is_nil(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "key");
    msgpack_pack_nil(&p->pk);
}
static void key_bad_utf8(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "key");
    pstr(p, "a\xff");
}
static void map_key_bad_utf8(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "key");
    pstr(p, "a");
    pstr(p, "\xc3\x28");
    pstr(p, "x");
}
static void map_key_not_string(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    msgpack_pack_int(&p->pk, 1);
    pstr(p, "a");
}
static void duplicate_key(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "key");
    pstr(p, "a");
    pstr(p, "key");
    pstr(p, "b");
}
static void labels_not_map(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "key");
    pstr(p, "a");
    pstr(p, "labels");
    msgpack_pack_array(&p->pk, 0);
}
static void label_value_int(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "key");
    pstr(p, "a");
    pstr(p, "labels");
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "x");
    msgpack_pack_int(&p->pk, 1);
}
static void params_not_map(packed *p)
{
    msgpack_pack_array(&p->pk, 1);
    pstr(p, "a");
}
static void size_zero(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "path");
    pstr(p, "/x");
    pstr(p, "size_gb");
    msgpack_pack_uint8(&p->pk, 0);
}
static void size_negative(packed *p)
{
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "path");
    pstr(p, "/x");
    pstr(p, "size_gb");
    msgpack_pack_int(&p->pk, -3);
}
static void info_time_not_timestamp(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "info");
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "name");
    pstr(p, "a");
    pstr(p, "created");
    msgpack_pack_int(&p->pk, 1700000000);
}
static void info_bad_kind(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "info");
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "name");
    pstr(p, "a");
    pstr(p, "kind");
    pstr(p, "frozen");
}
static void info_without_name(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "info");
    msgpack_pack_map(&p->pk, 0);
}
static void filters_not_strings(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "filters");
    msgpack_pack_array(&p->pk, 1);
    msgpack_pack_true(&p->pk);
}

static void strict_decoding_refuses_bad_params(void **state)
{
    expect_params_error("Stat", key_is_int, LCOW_INVALID_ARGUMENT, "key: expected a string");
    expect_params_error("Stat", key_is_nil, LCOW_INVALID_ARGUMENT, "\"key\" is nil");
    expect_params_error("Stat", key_bad_utf8, LCOW_INVALID_ARGUMENT, "not valid UTF-8");
    expect_params_error("Stat", map_key_bad_utf8, LCOW_INVALID_ARGUMENT,
                        "map key is not valid UTF-8");
    expect_params_error("Stat", map_key_not_string, LCOW_INVALID_ARGUMENT,
                        "map key is not a string");
    expect_params_error("Remove", duplicate_key, LCOW_INVALID_ARGUMENT, "duplicate field");
    expect_params_error("Prepare", labels_not_map, LCOW_INVALID_ARGUMENT, "labels: expected a map");
    expect_params_error("Prepare", label_value_int, LCOW_INVALID_ARGUMENT, "expected a string");
    expect_params_error("Prepare", params_not_map, LCOW_INVALID_ARGUMENT, "expected a map");
    expect_params_error("CreateScratch", size_zero, LCOW_INVALID_ARGUMENT, "positive integer");
    expect_params_error("CreateScratch", size_negative, LCOW_INVALID_ARGUMENT, "positive integer");
    expect_params_error("Update", info_time_not_timestamp, LCOW_INVALID_ARGUMENT, "Timestamp");
    expect_params_error("Update", info_bad_kind, LCOW_INVALID_ARGUMENT, "frozen");
    expect_params_error("Update", info_without_name, LCOW_INVALID_ARGUMENT, "\"name\"");
    expect_params_error("Walk", filters_not_strings, LCOW_INVALID_ARGUMENT, "expected a string");
}

/* containerd's metadata layer calls Update without a kind (Go's zero Kind):
 * absent, nil, "" and "unknown" (KindUnknown's name, any case) are all "no
 * kind" and are ignored; a non-empty name that is no kind is still refused. */
static void update_without_kind_is_accepted(void **state)
{
    (void)state;
    enum { ABSENT, NIL, STR };
    static const struct {
        int form;
        const char *kind;
        lcow_kind want;
    } cases[] = {{ABSENT, NULL, LCOW_KIND_UNKNOWN},   {NIL, NULL, LCOW_KIND_UNKNOWN},
                 {STR, "", LCOW_KIND_UNKNOWN},        {STR, "unknown", LCOW_KIND_UNKNOWN},
                 {STR, "Unknown", LCOW_KIND_UNKNOWN}, {STR, "Committed", LCOW_KIND_COMMITTED}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        packed p;
        packed_init(&p);
        request_head(&p, "Update");
        msgpack_pack_map(&p.pk, 2);
        pstr(&p, "info");
        msgpack_pack_map(&p.pk, cases[i].form == ABSENT ? 2 : 3);
        pstr(&p, "name");
        pstr(&p, "a");
        pstr(&p, "labels");
        msgpack_pack_map(&p.pk, 1);
        pstr(&p, "l");
        pstr(&p, "v");
        if (cases[i].form != ABSENT) {
            pstr(&p, "kind");
            if (cases[i].form == NIL)
                msgpack_pack_nil(&p.pk);
            else
                pstr(&p, cases[i].kind);
        }
        pstr(&p, "fieldpaths");
        msgpack_pack_array(&p.pk, 1);
        pstr(&p, "labels.l");
        lcow_request req;
        bool has_msgid;
        lcow_error err;
        lcow_code code = decode(&p, &req, &has_msgid, &err);
        if (code != LCOW_OK)
            fail_msg("case %u (kind %s): %s", (unsigned)i,
                     cases[i].kind ? cases[i].kind : "absent/nil", err.message);
        assert_int_equal(req.method, LCOW_METHOD_UPDATE);
        assert_true(req.params.has_info);
        assert_string_equal(req.params.info.name, "a");
        assert_int_equal(req.params.info.kind, cases[i].want);
        assert_string_equal(lcow_labels_get(&req.params.info.labels, "l"), "v");
        lcow_params_free(&req.params);
    }
}

static void info_kind_typo(packed *p)
{
    msgpack_pack_map(&p->pk, 1);
    pstr(p, "info");
    msgpack_pack_map(&p->pk, 2);
    pstr(p, "name");
    pstr(p, "a");
    pstr(p, "kind");
    pstr(p, "unknowns");
}

static void update_refuses_a_non_empty_unknown_kind(void **state)
{
    (void)state;
    expect_params_error("Update", info_kind_typo, LCOW_INVALID_ARGUMENT,
                        "\"unknowns\" is not active, view or committed");
}

static void request_shape_errors_keep_the_msgid_when_readable(void **state)
{
    lcow_request req;
    bool has_msgid;
    lcow_error err;
    packed p;

    packed_init(&p); /* unknown method */
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 99);
    pstr(&p, "Explode");
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_NOT_IMPLEMENTED);
    assert_true(has_msgid);
    assert_int_equal(req.msgid, 99);
    assert_non_null(strstr(err.message, "Explode"));

    packed_init(&p); /* three elements */
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 5);
    pstr(&p, "Version");
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_true(has_msgid);
    assert_int_equal(req.msgid, 5);

    packed_init(&p); /* negative msgid */
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_int(&p.pk, -5);
    pstr(&p, "Version");
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_false(has_msgid);

    packed_init(&p); /* notification */
    msgpack_pack_array(&p.pk, 3);
    msgpack_pack_uint8(&p.pk, 2);
    pstr(&p, "Version");
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_false(has_msgid);
    assert_non_null(strstr(err.message, "notification"));

    packed_init(&p); /* not an array */
    msgpack_pack_map(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_false(has_msgid);

    packed_init(&p); /* two param maps */
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 6);
    pstr(&p, "Version");
    msgpack_pack_array(&p.pk, 2);
    msgpack_pack_map(&p.pk, 0);
    msgpack_pack_map(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_true(has_msgid);

    packed_init(&p); /* method name invalid UTF-8 */
    msgpack_pack_array(&p.pk, 4);
    msgpack_pack_uint8(&p.pk, 0);
    msgpack_pack_uint32(&p.pk, 8);
    pstr(&p, "St\xff");
    msgpack_pack_array(&p.pk, 0);
    assert_int_equal(decode(&p, &req, &has_msgid, &err), LCOW_INVALID_ARGUMENT);
    assert_true(has_msgid);
}

/* ---- responses ----------------------------------------------------------- */

static const msgpack_object *encode_result(packed *p, msgpack_unpacked *u, lcow_method m,
                                           const lcow_result *r)
{
    packed_init(p);
    assert_true(lcow_proto_encode_result(&p->pk, 3, m, r));
    return unpack(p, u);
}

static void results_round_trip(void **state)
{
    lcow_result in;
    memset(&in, 0, sizeof in);
    char *opts[] = {"rw", "parentLayerPaths=[\"/a\"]"};
    lcow_mount mount = {"lcow-layer", "/root/snapshots/1", 2, opts};
    in.mounts = (lcow_mounts){1, &mount};
    in.info = (lcow_info){.name = "k",
                          .parent = "p",
                          .kind = LCOW_KIND_COMMITTED,
                          .created = {-5, 999999999},
                          .updated = {1LL << 40, 1}};
    in.has_info = true;
    lcow_info items[2] = {in.info, in.info};
    in.infos = (lcow_infos){2, 2, items};
    in.next = "k";
    in.size = 1LL << 40;
    in.inodes = 7;
    in.ext4_used_bytes = 5ull << 32;
    in.ext4_used_inodes = 15;
    in.ext4_total_bytes = 20ull << 30;
    in.ext4_total_inodes = 1310720;
    in.compact = (lcow_compact_summary){2, 9LL << 30, 5LL << 30, 1, 3};
    in.version = "0.1.0";
    in.protocol = 1;
    in.snapshotter = "windows-lcow";
    char *caps[] = {"rebase", "remote-snapshot"};
    in.capabilities = (lcow_strv){2, caps};
    in.path = "/x.vhdx";
    in.diff_id = "sha256:11";
    in.digest = "sha256:22";
    in.layer_bytes = (1LL << 37) + 512;
    in.verity_root_hash = "ab";
    char *blob_digests[] = {"sha256:b1", "sha256:b2"};
    lcow_layer_entry layer_items[2] = {
        {.diff_id = "sha256:d1",
         .verity = true,
         .verity_root_hash = "cd",
         .bytes = 1LL << 35,
         .references = 3,
         .created = {1700000000, 1},
         .last_use = {1700000500, 999999999},
         .blob_digests = {2, blob_digests}},
        {.diff_id = "sha256:d2", .bytes = 4096},
    };
    in.layers = (lcow_layer_entries){2, 2, layer_items};
    in.pruned_layers = 4;
    in.pruned_bytes = 3LL << 32;

    for (int m = 0; m < LCOW_METHOD_COUNT; m++) {
        packed p;
        msgpack_unpacked u;
        const msgpack_object *o = encode_result(&p, &u, (lcow_method)m, &in);
        bool has_msgid;
        uint32_t msgid;
        lcow_error call_err, err;
        lcow_result out;
        assert_int_equal(lcow_proto_decode_response(o, (lcow_method)m, &has_msgid, &msgid,
                                                    &call_err, &out, &err),
                         LCOW_OK);
        assert_true(has_msgid);
        assert_int_equal(msgid, 3);
        assert_int_equal(call_err.code, LCOW_OK);
        switch ((lcow_method)m) {
        case LCOW_METHOD_PREPARE:
        case LCOW_METHOD_VIEW:
        case LCOW_METHOD_MOUNTS:
            assert_int_equal(out.mounts.count, 1);
            assert_string_equal(out.mounts.items[0].type, "lcow-layer");
            assert_int_equal(out.mounts.items[0].option_count, 2);
            assert_string_equal(out.mounts.items[0].options[1], opts[1]);
            break;
        case LCOW_METHOD_STAT:
        case LCOW_METHOD_UPDATE:
            assert_string_equal(out.info.name, "k");
            assert_string_equal(out.info.parent, "p");
            assert_int_equal(out.info.kind, LCOW_KIND_COMMITTED);
            assert_int_equal(out.info.created.sec, -5);
            assert_int_equal(out.info.created.nsec, 999999999);
            assert_int_equal(out.info.updated.sec, 1LL << 40);
            break;
        case LCOW_METHOD_USAGE:
            assert_int_equal(out.size, 1LL << 40);
            assert_int_equal(out.inodes, 7);
            assert_int_equal(out.ext4_used_bytes, 5ull << 32);
            assert_int_equal(out.ext4_used_inodes, 15);
            assert_int_equal(out.ext4_total_bytes, 20ull << 30);
            assert_int_equal(out.ext4_total_inodes, 1310720);
            break;
        case LCOW_METHOD_LAYERS:
            assert_int_equal(out.layers.count, 2);
            assert_string_equal(out.layers.items[0].diff_id, "sha256:d1");
            assert_true(out.layers.items[0].verity);
            assert_string_equal(out.layers.items[0].verity_root_hash, "cd");
            assert_int_equal(out.layers.items[0].bytes, 1LL << 35);
            assert_int_equal(out.layers.items[0].references, 3);
            assert_int_equal(out.layers.items[0].created.nsec, 1);
            assert_int_equal(out.layers.items[0].last_use.sec, 1700000500);
            assert_int_equal(out.layers.items[0].last_use.nsec, 999999999);
            assert_int_equal(out.layers.items[0].blob_digests.count, 2);
            assert_string_equal(out.layers.items[0].blob_digests.items[1], "sha256:b2");
            assert_false(out.layers.items[1].verity);
            assert_null(out.layers.items[1].verity_root_hash);
            assert_int_equal(out.layers.items[1].blob_digests.count, 0);
            break;
        case LCOW_METHOD_PRUNE_LAYERS:
            assert_int_equal(out.pruned_layers, 4);
            assert_int_equal(out.pruned_bytes, 3LL << 32);
            break;
        case LCOW_METHOD_COMPACT:
            assert_int_equal(out.compact.disks, 2);
            assert_int_equal(out.compact.bytes_before, 9LL << 30);
            assert_int_equal(out.compact.bytes_after, 5LL << 30);
            assert_int_equal(out.compact.in_use, 1);
            assert_int_equal(out.compact.failed, 3);
            break;
        case LCOW_METHOD_WALK:
            assert_int_equal(out.infos.count, 2);
            assert_string_equal(out.next, "k");
            break;
        case LCOW_METHOD_VERSION:
            assert_string_equal(out.version, "0.1.0");
            assert_int_equal(out.protocol, 1);
            assert_string_equal(out.snapshotter, "windows-lcow");
            assert_int_equal(out.capabilities.count, 2);
            assert_string_equal(out.capabilities.items[0], "rebase");
            assert_string_equal(out.capabilities.items[1], "remote-snapshot");
            break;
        case LCOW_METHOD_CREATE_SCRATCH:
            assert_string_equal(out.path, "/x.vhdx");
            break;
        case LCOW_METHOD_APPLY:
            assert_string_equal(out.diff_id, "sha256:11");
            assert_string_equal(out.digest, "sha256:22");
            assert_int_equal(out.size, 1LL << 40);
            assert_int_equal(out.layer_bytes, (1LL << 37) + 512);
            assert_string_equal(out.verity_root_hash, "ab");
            break;
        default:
            break;
        }
        lcow_result_free(&out);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&p.buf);
    }
}

/* A Layers answer whose element lacks diff_id, or has a bad time, is refused. */
static void layers_answers_are_decoded_strictly(void **state)
{
    for (int bad = 0; bad < 2; bad++) {
        packed p;
        packed_init(&p);
        msgpack_pack_array(&p.pk, 4);
        msgpack_pack_uint8(&p.pk, 1);
        msgpack_pack_uint32(&p.pk, 3);
        msgpack_pack_nil(&p.pk);
        msgpack_pack_map(&p.pk, 1);
        pstr(&p, "layers");
        msgpack_pack_array(&p.pk, 1);
        msgpack_pack_map(&p.pk, bad ? 5 : 4);
        if (bad) {
            pstr(&p, "diff_id");
            pstr(&p, "sha256:d1");
        }
        pstr(&p, "bytes");
        msgpack_pack_int(&p.pk, 1);
        pstr(&p, "references");
        msgpack_pack_int(&p.pk, 0);
        msgpack_timestamp ts = {1700000000, 0};
        pstr(&p, "created");
        if (bad)
            msgpack_pack_int(&p.pk, 5); /* not a Timestamp */
        else
            msgpack_pack_timestamp(&p.pk, &ts);
        pstr(&p, "last_use");
        msgpack_pack_timestamp(&p.pk, &ts);
        msgpack_unpacked u;
        const msgpack_object *o = unpack(&p, &u);
        bool has_msgid;
        uint32_t msgid;
        lcow_error call_err, err;
        lcow_result out;
        assert_int_equal(lcow_proto_decode_response(o, LCOW_METHOD_LAYERS, &has_msgid, &msgid,
                                                    &call_err, &out, &err),
                         LCOW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, bad ? "created" : "diff_id"));
        lcow_result_free(&out);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&p.buf);
    }
}

static void errors_round_trip_with_and_without_msgid(void **state)
{
    for (int with = 0; with < 2; with++) {
        packed p;
        packed_init(&p);
        assert_true(lcow_proto_encode_error(&p.pk, with, 77, LCOW_FAILED_PRECONDITION,
                                            "cannot remove snapshot with child"));
        msgpack_unpacked u;
        const msgpack_object *o = unpack(&p, &u);
        bool has_msgid;
        uint32_t msgid = 0;
        lcow_error call_err, err;
        lcow_result out;
        assert_int_equal(lcow_proto_decode_response(o, LCOW_METHOD_REMOVE, &has_msgid, &msgid,
                                                    &call_err, &out, &err),
                         LCOW_OK);
        assert_int_equal(has_msgid, with);
        if (with)
            assert_int_equal(msgid, 77);
        assert_int_equal(call_err.code, LCOW_FAILED_PRECONDITION);
        assert_string_equal(call_err.message, "cannot remove snapshot with child");
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&p.buf);
    }
}

/* The byte-level example of docs/protocol.md must stay true. */
static void documented_example_bytes(void **state)
{
    lcow_params params;
    memset(&params, 0, sizeof params);
    params.key = "k1";
    packed p;
    packed_init(&p);
    assert_true(lcow_proto_encode_request(&p.pk, 1, LCOW_METHOD_STAT, &params));
    static const unsigned char want[] = {0x94, 0x00, 0x01, 0xa4, 'S', 't',  'a', 't', 0x91,
                                         0x81, 0xa3, 'k',  'e',  'y', 0xa2, 'k', '1'};
    assert_int_equal(p.buf.size, sizeof want);
    assert_memory_equal(p.buf.data, want, sizeof want);
    msgpack_sbuffer_destroy(&p.buf);

    lcow_result r;
    memset(&r, 0, sizeof r);
    r.info = (lcow_info){.name = "k1",
                         .parent = "",
                         .kind = LCOW_KIND_ACTIVE,
                         .created = {1700000000, 0},
                         .updated = {1700000000, 0}};
    r.has_info = true;
    packed_init(&p);
    assert_true(lcow_proto_encode_result(&p.pk, 1, LCOW_METHOD_STAT, &r));
    /* docs/protocol.md shows exactly these 75 bytes */
    static const unsigned char want_response[] = {
        0x94, 0x01, 0x01, 0xc0, 0x81, 0xa4, 0x69, 0x6e, 0x66, 0x6f, 0x86, 0xa4, 0x6e, 0x61, 0x6d,
        0x65, 0xa2, 0x6b, 0x31, 0xa6, 0x70, 0x61, 0x72, 0x65, 0x6e, 0x74, 0xa0, 0xa4, 0x6b, 0x69,
        0x6e, 0x64, 0xa6, 0x61, 0x63, 0x74, 0x69, 0x76, 0x65, 0xa6, 0x6c, 0x61, 0x62, 0x65, 0x6c,
        0x73, 0x80, 0xa7, 0x63, 0x72, 0x65, 0x61, 0x74, 0x65, 0x64, 0xd6, 0xff, 0x65, 0x53, 0xf1,
        0x00, 0xa7, 0x75, 0x70, 0x64, 0x61, 0x74, 0x65, 0x64, 0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00};
    assert_int_equal(p.buf.size, sizeof want_response);
    assert_memory_equal(p.buf.data, want_response, sizeof want_response);
    msgpack_sbuffer_destroy(&p.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(method_names_round_trip),
        cmocka_unit_test(every_method_round_trips_its_params),
        cmocka_unit_test(unknown_extra_fields_are_ignored),
        cmocka_unit_test(empty_params_array_is_an_empty_map),
        cmocka_unit_test(strict_decoding_refuses_bad_params),
        cmocka_unit_test(update_without_kind_is_accepted),
        cmocka_unit_test(update_refuses_a_non_empty_unknown_kind),
        cmocka_unit_test(request_shape_errors_keep_the_msgid_when_readable),
        cmocka_unit_test(results_round_trip),
        cmocka_unit_test(layers_answers_are_decoded_strictly),
        cmocka_unit_test(errors_round_trip_with_and_without_msgid),
        cmocka_unit_test(documented_example_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

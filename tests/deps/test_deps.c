/* The third-party libraries really work in this build: LevelDB on disk,
 * msgpack-c (including the timestamp extension the protocol uses) and PCRE2.
 * The point is the win64 build: the same exe runs under Wine, linked against
 * the libraries scripts/install-deps.sh cross-built with mingw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <leveldb/c.h>
#include <msgpack.h>
#include <pcre2.h>

#if defined(_WIN32)
#define SEP "\\"
#else
#define SEP "/"
#endif

/* LCOW_TEST_TMP is an absolute path (Z:\... under Wine: LevelDB's rename
 * fallback fails there on paths without backslashes). */
static void db_path(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("LCOW_TEST_TMP");
    assert_non_null(tmp);
    snprintf(out, size, "%s" SEP "%s", tmp, name);
}

static leveldb_t *db_open(const char *path, char **err)
{
    leveldb_options_t *options = leveldb_options_create();
    leveldb_options_set_create_if_missing(options, 1);
    leveldb_t *db = leveldb_open(options, path, err);
    leveldb_options_destroy(options);
    return db;
}

static void db_destroy(const char *path)
{
    leveldb_options_t *options = leveldb_options_create();
    char *err = NULL;
    leveldb_destroy_db(options, path, &err);
    leveldb_options_destroy(options);
    assert_null(err);
}

static void db_expect(leveldb_t *db, const char *key, const char *want)
{
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    size_t len = 0;
    char *err = NULL;
    char *got = leveldb_get(db, ro, key, strlen(key), &len, &err);
    leveldb_readoptions_destroy(ro);
    assert_null(err);
    if (want == NULL) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    leveldb_free(got);
}

static void leveldb_survives_reopen_with_batches_and_iteration(void **state)
{
    char path[1024];
    db_path(path, sizeof path, "leveldb");
    db_destroy(path);

    char *err = NULL;
    leveldb_t *db = db_open(path, &err);
    assert_null(err);
    assert_non_null(db);

    /* A second handle on an open DB is refused (the LOCK file works). */
    char *lock_err = NULL;
    leveldb_t *second = db_open(path, &lock_err);
    assert_null(second);
    assert_non_null(lock_err);
    leveldb_free(lock_err);

    leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(wo, 1);
    leveldb_put(db, wo, "single", 6, "value", 5, &err);
    assert_null(err);

    /* One atomic, synced batch of 1000 puts and a delete, as the metastore
     * writes its mutations. */
    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    for (int i = 0; i < 1000; i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "k%04d", i);
        snprintf(value, sizeof value, "v%d", i);
        leveldb_writebatch_put(batch, key, strlen(key), value, strlen(value));
    }
    leveldb_writebatch_delete(batch, "single", 6);
    leveldb_write(db, wo, batch, &err);
    assert_null(err);
    leveldb_writebatch_destroy(batch);

    db_expect(db, "k0500", "v500");
    db_expect(db, "single", NULL);

    /* Compaction rewrites and renames table files: the Wine-sensitive part. */
    leveldb_compact_range(db, NULL, 0, NULL, 0);
    leveldb_close(db);

    db = db_open(path, &err);
    assert_null(err);
    assert_non_null(db);
    db_expect(db, "k0999", "v999");
    db_expect(db, "single", NULL);

    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    int count = 0;
    char previous[32] = "";
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t klen = 0;
        const char *key = leveldb_iter_key(it, &klen);
        assert_true(klen < sizeof previous);
        char current[32];
        memcpy(current, key, klen);
        current[klen] = '\0';
        assert_true(strcmp(previous, current) < 0);
        memcpy(previous, current, klen + 1);
        count++;
    }
    leveldb_iter_get_error(it, &err);
    assert_null(err);
    assert_int_equal(count, 1000);
    assert_string_equal(previous, "k0999");

    /* Seek lands on the first key >= the target: prefix scans rely on it. */
    leveldb_iter_seek(it, "k0123x", 6);
    assert_true(leveldb_iter_valid(it));
    size_t klen = 0;
    const char *key = leveldb_iter_key(it, &klen);
    assert_int_equal(klen, 5);
    assert_memory_equal(key, "k0124", 5);

    leveldb_iter_destroy(it);
    leveldb_readoptions_destroy(ro);
    leveldb_writeoptions_destroy(wo);
    leveldb_close(db);
    db_destroy(path);
}

static void leveldb_reports_open_errors(void **state)
{
    char path[1024];
    db_path(path, sizeof path, "missing-db");
    db_destroy(path);
    leveldb_options_t *options = leveldb_options_create();
    leveldb_options_set_create_if_missing(options, 0);
    char *err = NULL;
    leveldb_t *db = leveldb_open(options, path, &err);
    leveldb_options_destroy(options);
    assert_null(db);
    assert_non_null(err);
    leveldb_free(err);
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0) {
            return &kv->val;
        }
    }
    fail_msg("key %s missing", key);
    return NULL;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void msgpack_round_trips_a_request_with_timestamps(void **state)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);

    /* [0, msgid, "Stat", [{...}]] followed by a second frame. */
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, 4000000000u);
    pack_str(&pk, "Stat");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 7);
    pack_str(&pk, "key");
    pack_str(&pk, "default/1/\xc3\xa9t\xc3\xa9"); /* UTF-8 passes through untouched */
    pack_str(&pk, "negative");
    msgpack_pack_int64(&pk, -1234567890123LL);
    pack_str(&pk, "flag");
    msgpack_pack_true(&pk);
    pack_str(&pk, "nothing");
    msgpack_pack_nil(&pk);
    pack_str(&pk, "ratio");
    msgpack_pack_double(&pk, 0.25);
    pack_str(&pk, "created");
    msgpack_timestamp created = {.tv_sec = 1700000000, .tv_nsec = 123456789};
    msgpack_pack_timestamp(&pk, &created);
    pack_str(&pk, "old");
    msgpack_timestamp old = {.tv_sec = -86400, .tv_nsec = 5}; /* 96-bit form */
    msgpack_pack_timestamp(&pk, &old);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_nil(&pk);
    msgpack_pack_map(&pk, 0);

    /* Feed the stream one byte at a time, as a pipe may deliver it. */
    msgpack_unpacker unpacker;
    assert_true(msgpack_unpacker_init(&unpacker, MSGPACK_UNPACKER_INIT_BUFFER_SIZE));
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    int frames = 0;
    for (size_t i = 0; i < sbuf.size; i++) {
        assert_true(msgpack_unpacker_reserve_buffer(&unpacker, 1));
        memcpy(msgpack_unpacker_buffer(&unpacker), sbuf.data + i, 1);
        msgpack_unpacker_buffer_consumed(&unpacker, 1);
        msgpack_unpack_return ret;
        while ((ret = msgpack_unpacker_next(&unpacker, &result)) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *frame = &result.data;
            assert_int_equal(frame->type, MSGPACK_OBJECT_ARRAY);
            assert_int_equal(frame->via.array.size, 4);
            if (frames == 0) {
                assert_int_equal(frame->via.array.ptr[1].via.u64, 4000000000u);
                const msgpack_object *method = &frame->via.array.ptr[2];
                assert_int_equal(method->via.str.size, 4);
                assert_memory_equal(method->via.str.ptr, "Stat", 4);
                const msgpack_object *params = &frame->via.array.ptr[3].via.array.ptr[0];
                const msgpack_object *key = map_get(params, "key");
                assert_int_equal(key->via.str.size, 15);
                assert_memory_equal(key->via.str.ptr, "default/1/\xc3\xa9t\xc3\xa9", 15);
                const msgpack_object *negative = map_get(params, "negative");
                assert_int_equal(negative->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
                assert_true(negative->via.i64 == -1234567890123LL);
                assert_int_equal(map_get(params, "flag")->type, MSGPACK_OBJECT_BOOLEAN);
                assert_int_equal(map_get(params, "nothing")->type, MSGPACK_OBJECT_NIL);
                assert_true(map_get(params, "ratio")->via.f64 == 0.25);

                const msgpack_object *ext = map_get(params, "created");
                assert_int_equal(ext->type, MSGPACK_OBJECT_EXT);
                assert_int_equal(ext->via.ext.type, -1);
                msgpack_timestamp ts;
                assert_true(msgpack_object_to_timestamp(ext, &ts));
                assert_true(ts.tv_sec == 1700000000);
                assert_int_equal(ts.tv_nsec, 123456789);
                ext = map_get(params, "old");
                assert_int_equal(ext->via.ext.size, 12);
                assert_true(msgpack_object_to_timestamp(ext, &ts));
                assert_true(ts.tv_sec == -86400);
                assert_int_equal(ts.tv_nsec, 5);
            } else {
                assert_int_equal(frame->via.array.ptr[2].type, MSGPACK_OBJECT_NIL);
                assert_int_equal(frame->via.array.ptr[3].via.map.size, 0);
            }
            frames++;
        }
        assert_int_equal(ret, MSGPACK_UNPACK_CONTINUE);
    }
    assert_int_equal(frames, 2);
    msgpack_unpacked_destroy(&result);
    msgpack_unpacker_destroy(&unpacker);

    /* A truncated buffer is reported as such, not as garbage. */
    msgpack_unpacked partial;
    msgpack_unpacked_init(&partial);
    size_t offset = 0;
    assert_int_equal(msgpack_unpack_next(&partial, sbuf.data, 10, &offset),
                     MSGPACK_UNPACK_CONTINUE);
    msgpack_unpacked_destroy(&partial);
    msgpack_sbuffer_destroy(&sbuf);
}

static void pcre2_compiles_and_matches_utf8(void **state)
{
    int errcode = 0;
    PCRE2_SIZE erroffset = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR) "^([^/]+)/(\\d+)/(.*)$", PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF, &errcode, &erroffset, NULL);
    assert_non_null(re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);

    const char *subject = "d\xc3\xa9mo/42/extract-layer";
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL);
    assert_int_equal(rc, 4);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    assert_int_equal(ov[3] - ov[2], 5); /* "démo": 4 characters, 5 bytes */
    assert_memory_equal(subject + ov[4], "42", ov[5] - ov[4]);
    assert_string_equal(subject + ov[6], "extract-layer");

    rc = pcre2_match(re, (PCRE2_SPTR) "no-slashes", PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
    assert_int_equal(rc, PCRE2_ERROR_NOMATCH);
    /* Invalid UTF-8 subjects are rejected, not matched byte-wise. */
    rc = pcre2_match(re, (PCRE2_SPTR) "a\xff/1/x", PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
    assert_true(rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21);
    pcre2_match_data_free(md);
    pcre2_code_free(re);

    re = pcre2_compile((PCRE2_SPTR) "labels\\.(", PCRE2_ZERO_TERMINATED, 0, &errcode, &erroffset,
                       NULL);
    assert_null(re);
    PCRE2_UCHAR message[128];
    assert_true(pcre2_get_error_message(errcode, message, sizeof message) > 0);
    assert_int_equal(erroffset, 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(leveldb_survives_reopen_with_batches_and_iteration),
        cmocka_unit_test(leveldb_reports_open_errors),
        cmocka_unit_test(msgpack_round_trips_a_request_with_timestamps),
        cmocka_unit_test(pcre2_compiles_and_matches_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

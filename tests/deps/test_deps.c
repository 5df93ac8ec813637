/* The third-party libraries really work in this build: LevelDB on disk,
 * msgpack-c (including the timestamp extension the protocol uses), PCRE2,
 * zlib (gzip), ISA-L (igzip inflate), zstd, libarchive (tar reading), nettle
 * (SHA-256), nghttp2 and the protobuf-c runtime. The point is the win64
 * build: the same exe runs under Wine, linked against the libraries
 * scripts/install-deps.sh cross-built with mingw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <isa-l/igzip_lib.h>
#include <leveldb/c.h>
#include <msgpack.h>
#include <nettle/sha2.h>
#include <nghttp2/nghttp2.h>
#include <pcre2.h>
#include <protobuf-c/protobuf-c.h>
#include <zlib.h>
#include <zstd.h>

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

/* Compressible but not trivial: text lines with a counter in them. */
static unsigned char *sample_data(size_t size)
{
    unsigned char *data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < size; i += 64) {
        char line[65];
        snprintf(line, sizeof line, "layer blob line %08zu: the quick brown fox jumps over\n", i);
        memcpy(data + i, line, size - i < 64 ? size - i : 64);
    }
    return data;
}

/* windowBits 15 + 16: a gzip stream (header and CRC-32 trailer), as in a
 * tar.gz layer. Returns the malloc'd stream and its size in *gz_size. */
static unsigned char *gzip_with_zlib(const unsigned char *data, size_t size, size_t *gz_size)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uLong bound = deflateBound(&zs, (uLong)size);
    unsigned char *gz = malloc(bound);
    assert_non_null(gz);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = gz;
    zs.avail_out = (uInt)bound;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *gz_size = zs.total_out;
    assert_int_equal(deflateEnd(&zs), Z_OK);
    return gz;
}

static void zlib_gzip_round_trip(void **state)
{
    const size_t size = 256 * 1024;
    unsigned char *data = sample_data(size);
    size_t gz_size;
    unsigned char *gz = gzip_with_zlib(data, size, &gz_size);
    assert_true(gz_size < size / 4);
    assert_int_equal(gz[0], 0x1f); /* gzip magic */
    assert_int_equal(gz[1], 0x8b);
    /* The trailer: CRC-32 and length of the input, little-endian. */
    uLong crc = crc32(0L, data, (uInt)size);
    assert_int_equal(gz[gz_size - 8] | gz[gz_size - 7] << 8 | gz[gz_size - 6] << 16 |
                         (uLong)gz[gz_size - 5] << 24,
                     crc);
    assert_int_equal(crc32(0L, (const Bytef *)"123456789", 9), 0xcbf43926UL);

    /* Inflate it back through a small output window, as a stream reader would. */
    unsigned char *out = malloc(size);
    assert_non_null(out);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = gz;
    zs.avail_in = (uInt)gz_size;
    int ret = Z_OK;
    while (ret == Z_OK) {
        unsigned char window[4096];
        zs.next_out = window;
        zs.avail_out = sizeof window;
        ret = inflate(&zs, Z_NO_FLUSH);
        assert_true(ret == Z_OK || ret == Z_STREAM_END);
        size_t got = sizeof window - zs.avail_out;
        assert_true(zs.total_out <= size);
        memcpy(out + zs.total_out - got, window, got);
    }
    assert_int_equal(zs.total_out, size);
    assert_int_equal(inflateEnd(&zs), Z_OK);
    assert_memory_equal(out, data, size);

    /* A corrupted stream is an error, not garbage: flip a CRC byte. */
    gz[gz_size - 6] ^= 0x01;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = gz;
    zs.avail_in = (uInt)gz_size;
    zs.next_out = out;
    zs.avail_out = (uInt)size;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_DATA_ERROR);
    inflateEnd(&zs);

    free(out);
    free(gz);
    free(data);
}

/* isal_inflate over a whole gzip stream (ISAL_GZIP: header parsed, CRC-32 and
 * length checked); the output through a small window. Returns the last
 * isal_inflate result, the bytes written to out in *out_size and whether the
 * stream ended (trailer checked) in *finished. */
static int isal_gunzip(const unsigned char *gz, size_t gz_size, unsigned char *out, size_t out_max,
                       size_t *out_size, int *finished)
{
    struct inflate_state *st = malloc(sizeof *st); /* 85 KiB: not on the stack */
    assert_non_null(st);
    isal_inflate_init(st);
    st->crc_flag = ISAL_GZIP;
    st->next_in = (uint8_t *)gz;
    st->avail_in = (uint32_t)gz_size;
    int ret = ISAL_DECOMP_OK;
    size_t done = 0;
    while (st->block_state != ISAL_BLOCK_FINISH) {
        unsigned char window[4096];
        st->next_out = window;
        st->avail_out = sizeof window;
        ret = isal_inflate(st);
        size_t got = sizeof window - st->avail_out;
        assert_true(done + got <= out_max);
        memcpy(out + done, window, got);
        done += got;
        if (ret != ISAL_DECOMP_OK || (got == 0 && st->avail_in == 0))
            break; /* an error, or input ran out before the end */
    }
    *out_size = done;
    *finished = st->block_state == ISAL_BLOCK_FINISH;
    free(st);
    return ret;
}

static void isal_inflates_zlib_gzip(void **state)
{
    const size_t size = 256 * 1024;
    unsigned char *data = sample_data(size);
    size_t gz_size;
    unsigned char *gz = gzip_with_zlib(data, size, &gz_size);
    unsigned char *out = malloc(size);
    assert_non_null(out);

    size_t got = 0;
    int finished = 0;
    assert_int_equal(isal_gunzip(gz, gz_size, out, size, &got, &finished), ISAL_DECOMP_OK);
    assert_true(finished);
    assert_int_equal(got, size);
    assert_memory_equal(out, data, size);

    /* Without its trailer the stream does not end (no error either: more
     * input could follow), so a reader must check for the end itself. */
    assert_int_equal(isal_gunzip(gz, gz_size - 8, out, size, &got, &finished), ISAL_DECOMP_OK);
    assert_false(finished);

    /* A flipped CRC byte in the trailer is an error, not silent garbage. */
    gz[gz_size - 6] ^= 0x01;
    assert_int_equal(isal_gunzip(gz, gz_size, out, size, &got, &finished), ISAL_INCORRECT_CHECKSUM);

    free(out);
    free(gz);
    free(data);
}

static void zstd_round_trip(void **state)
{
    const size_t size = 256 * 1024;
    unsigned char *data = sample_data(size);

    /* Compress with two worker threads where the library has them (the win64
     * build does: zstd uses Win32 threads there). */
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    assert_non_null(cctx);
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3)));
    assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)));
    ZSTD_bounds workers = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
#if defined(_WIN32)
    assert_true(workers.upperBound >= 2);
#endif
    if (!ZSTD_isError(workers.error) && workers.upperBound >= 2) {
        assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, 2)));
    }
    size_t bound = ZSTD_compressBound(size);
    unsigned char *zst = malloc(bound);
    assert_non_null(zst);
    size_t zst_size = ZSTD_compress2(cctx, zst, bound, data, size);
    assert_false(ZSTD_isError(zst_size));
    ZSTD_freeCCtx(cctx);
    assert_true(zst_size < size / 4);
    /* Frame magic 0xFD2FB528, little-endian. */
    assert_int_equal(zst[0], 0x28);
    assert_int_equal(zst[1], 0xb5);
    assert_int_equal(zst[2], 0x2f);
    assert_int_equal(zst[3], 0xfd);
    assert_int_equal(ZSTD_getFrameContentSize(zst, zst_size), size);

    /* Streaming decompression, fed 1000 bytes at a time. */
    unsigned char *out = malloc(size);
    assert_non_null(out);
    ZSTD_DStream *ds = ZSTD_createDStream();
    assert_non_null(ds);
    assert_false(ZSTD_isError(ZSTD_initDStream(ds)));
    ZSTD_outBuffer ob = {out, size, 0};
    size_t left = 1;
    for (size_t pos = 0; pos < zst_size;) {
        size_t chunk = zst_size - pos < 1000 ? zst_size - pos : 1000;
        ZSTD_inBuffer ib = {zst + pos, chunk, 0};
        while (ib.pos < ib.size) {
            left = ZSTD_decompressStream(ds, &ob, &ib);
            assert_false(ZSTD_isError(left));
        }
        pos += chunk;
    }
    assert_int_equal(left, 0); /* the frame ended, checksum verified */
    assert_int_equal(ob.pos, size);
    assert_memory_equal(out, data, size);
    ZSTD_freeDStream(ds);

    /* One-shot decompression of a damaged frame is refused. */
    zst[zst_size / 2] ^= 0x55;
    size_t r = ZSTD_decompress(out, size, zst, zst_size);
    assert_true(ZSTD_isError(r));

    free(out);
    free(zst);
    free(data);
}

/* One POSIX ustar header block for a regular file or directory. */
static void ustar_header(unsigned char block[512], const char *name, char type, size_t size)
{
    memset(block, 0, 512);
    assert_true(strlen(name) < 100);
    memcpy(block, name, strlen(name));                                     /* name */
    snprintf((char *)block + 100, 8, "%07o", type == '5' ? 0755u : 0644u); /* mode */
    snprintf((char *)block + 108, 8, "%07o", 0);                           /* uid */
    snprintf((char *)block + 116, 8, "%07o", 0);                           /* gid */
    snprintf((char *)block + 124, 12, "%011zo", size);                     /* size */
    snprintf((char *)block + 136, 12, "%011o", 1700000000);                /* mtime */
    block[156] = (unsigned char)type;                                      /* typeflag */
    memcpy(block + 257, "ustar", 6);                                       /* magic + NUL */
    memcpy(block + 263, "00", 2);                                          /* version */
    memcpy(block + 265, "root", 4);                                        /* uname */
    memcpy(block + 297, "root", 4);                                        /* gname */
    /* Checksum: the sum of all bytes with the checksum field read as spaces,
     * written as six octal digits, NUL, space. */
    memset(block + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++) {
        sum += block[i];
    }
    snprintf((char *)block + 148, 8, "%06o", sum);
    block[155] = ' ';
}

static size_t build_tar(unsigned char *tar, size_t cap)
{
    static const char content[] = "hello layer";
    size_t n = 0;
    assert_true(cap >= 512 * 6);
    memset(tar, 0, cap);
    ustar_header(tar + n, "etc/", '5', 0);
    n += 512;
    ustar_header(tar + n, "etc/hostname", '0', strlen(content));
    n += 512;
    memcpy(tar + n, content, strlen(content)); /* data, zero-padded to 512 */
    n += 512;
    ustar_header(tar + n, "etc/.wh.passwd", '0', 0); /* an OCI whiteout */
    n += 512;
    return n + 1024; /* end of archive: two zero blocks */
}

static void libarchive_reads_an_in_memory_tar(void **state)
{
    unsigned char tar[512 * 8];
    size_t tar_size = build_tar(tar, sizeof tar);

    struct archive *a = archive_read_new();
    assert_non_null(a);
    assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
    assert_int_equal(archive_read_open_memory(a, tar, tar_size), ARCHIVE_OK);

    struct archive_entry *entry = NULL;
    assert_int_equal(archive_read_next_header(a, &entry), ARCHIVE_OK);
    assert_int_equal(archive_format(a), ARCHIVE_FORMAT_TAR_USTAR);
    assert_string_equal(archive_entry_pathname(entry), "etc/");
    assert_int_equal(archive_entry_filetype(entry), AE_IFDIR);

    assert_int_equal(archive_read_next_header(a, &entry), ARCHIVE_OK);
    assert_string_equal(archive_entry_pathname(entry), "etc/hostname");
    assert_int_equal(archive_entry_filetype(entry), AE_IFREG);
    assert_int_equal(archive_entry_size(entry), 11);
    assert_int_equal(archive_entry_perm(entry), 0644);
    assert_int_equal(archive_entry_mtime(entry), 1700000000);
    assert_string_equal(archive_entry_uname(entry), "root");
    char buf[64];
    la_ssize_t got = archive_read_data(a, buf, sizeof buf);
    assert_int_equal(got, 11);
    assert_memory_equal(buf, "hello layer", 11);
    assert_int_equal(archive_read_data(a, buf, sizeof buf), 0);

    assert_int_equal(archive_read_next_header(a, &entry), ARCHIVE_OK);
    assert_string_equal(archive_entry_pathname(entry), "etc/.wh.passwd");
    assert_int_equal(archive_entry_size(entry), 0);
    assert_int_equal(archive_read_next_header(a, &entry), ARCHIVE_EOF);
    assert_int_equal(archive_read_free(a), ARCHIVE_OK);

    /* A header with a wrong checksum is refused, not read. */
    tar[512 + 148] = tar[512 + 148] == '1' ? '2' : '1';
    a = archive_read_new();
    assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
    assert_int_equal(archive_read_open_memory(a, tar, tar_size), ARCHIVE_OK);
    assert_int_equal(archive_read_next_header(a, &entry), ARCHIVE_OK); /* etc/ */
    int r = archive_read_next_header(a, &entry); /* ARCHIVE_RETRY: damaged header */
    assert_true(r != ARCHIVE_OK && r != ARCHIVE_EOF && r != ARCHIVE_WARN);
    assert_non_null(archive_error_string(a));
    archive_read_free(a);
}

static void hex(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 2 * i, 3, "%02x", in[i]);
    }
}

static void nettle_sha256_matches_known_vectors(void **state)
{
    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    char text[2 * SHA256_DIGEST_SIZE + 1];

    sha256_init(&ctx);
    sha256_update(&ctx, 3, (const uint8_t *)"abc");
    sha256_digest(&ctx, sizeof digest, digest);
    hex(text, digest, sizeof digest);
    assert_string_equal(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* Two blocks (FIPS 180-2 vector), fed in uneven pieces; sha256_digest
     * resets the context, so the same one is reused. */
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    size_t len = strlen(msg);
    sha256_update(&ctx, 5, (const uint8_t *)msg);
    sha256_update(&ctx, len - 5, (const uint8_t *)msg + 5);
    sha256_digest(&ctx, sizeof digest, digest);
    hex(text, digest, sizeof digest);
    assert_string_equal(text, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    /* A million 'a's, in 1000-byte updates. */
    uint8_t chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 1000; i++) {
        sha256_update(&ctx, sizeof chunk, chunk);
    }
    sha256_digest(&ctx, sizeof digest, digest);
    hex(text, digest, sizeof digest);
    assert_string_equal(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void nghttp2_client_session_sends_preface_and_settings(void **state)
{
    nghttp2_info *info = nghttp2_version(0);
    assert_non_null(info);
    assert_true(info->version_num >= 0x013400); /* 1.52.0 */

    /* A SETTINGS payload on its own: 6 bytes per entry, id then value. */
    nghttp2_settings_entry iv[2] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    uint8_t payload[12];
    assert_int_equal(nghttp2_pack_settings_payload(payload, sizeof payload, iv, 2), 12);
    static const uint8_t want_payload[12] = {0, 3, 0, 0, 0, 100, 0, 4, 0, 0x10, 0, 0};
    assert_memory_equal(payload, want_payload, 12);

    nghttp2_session_callbacks *callbacks = NULL;
    assert_int_equal(nghttp2_session_callbacks_new(&callbacks), 0);
    nghttp2_session *session = NULL;
    assert_int_equal(nghttp2_session_client_new(&session, callbacks, NULL), 0);
    nghttp2_session_callbacks_del(callbacks);
    assert_int_equal(nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, 2), 0);

    /* Client preface, then a 9-byte frame header (length 12, type SETTINGS,
     * no flags, stream 0) and the payload above. */
    uint8_t wire[256];
    size_t n = 0;
    const uint8_t *data = NULL;
    ssize_t len;
    while ((len = nghttp2_session_mem_send(session, &data)) > 0) {
        assert_true(n + (size_t)len <= sizeof wire);
        memcpy(wire + n, data, (size_t)len);
        n += (size_t)len;
    }
    assert_int_equal(len, 0);
    const size_t magic = NGHTTP2_CLIENT_MAGIC_LEN;
    assert_int_equal(n, magic + 9 + 12);
    assert_memory_equal(wire, NGHTTP2_CLIENT_MAGIC, magic);
    static const uint8_t want_header[9] = {0, 0, 12, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    assert_memory_equal(wire + magic, want_header, 9);
    assert_memory_equal(wire + magic + 9, want_payload, 12);

    /* The server's (empty) SETTINGS is answered with a SETTINGS ACK. */
    static const uint8_t server_settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    assert_int_equal(nghttp2_session_mem_recv(session, server_settings, 9), 9);
    len = nghttp2_session_mem_send(session, &data);
    assert_int_equal(len, 9);
    static const uint8_t ack[9] = {0, 0, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, 0, 0, 0};
    assert_memory_equal(data, ack, 9);
    nghttp2_session_del(session);
}

static void protobufc_runtime_links_and_appends(void **state)
{
    const char *version = protobuf_c_version();
    assert_non_null(version);
    assert_true(version[0] != '\0');
    /* The library is the one the headers describe. */
    assert_string_equal(version, PROTOBUF_C_VERSION);
    assert_int_equal(protobuf_c_version_number(), PROTOBUF_C_VERSION_NUMBER);

    /* Appending past the 16-byte scratch array moves the data to the heap. */
    uint8_t scratch[16];
    ProtobufCBufferSimple simple = PROTOBUF_C_BUFFER_SIMPLE_INIT(scratch);
    uint8_t expect[1000];
    for (size_t i = 0; i < sizeof expect; i++) {
        expect[i] = (uint8_t)(i * 7);
    }
    protobuf_c_buffer_simple_append(&simple.base, 10, expect);
    assert_ptr_equal(simple.data, scratch);
    assert_int_equal(simple.len, 10);
    for (size_t off = 10; off < sizeof expect; off += 99) {
        size_t n = sizeof expect - off < 99 ? sizeof expect - off : 99;
        /* Through the ProtobufCBuffer interface, as packing code uses it. */
        simple.base.append(&simple.base, n, expect + off);
    }
    assert_int_equal(simple.len, sizeof expect);
    assert_true(simple.data != scratch);
    assert_true(simple.must_free_data);
    assert_memory_equal(simple.data, expect, sizeof expect);
    PROTOBUF_C_BUFFER_SIMPLE_CLEAR(&simple);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(leveldb_survives_reopen_with_batches_and_iteration),
        cmocka_unit_test(leveldb_reports_open_errors),
        cmocka_unit_test(msgpack_round_trips_a_request_with_timestamps),
        cmocka_unit_test(pcre2_compiles_and_matches_utf8),
        cmocka_unit_test(zlib_gzip_round_trip),
        cmocka_unit_test(isal_inflates_zlib_gzip),
        cmocka_unit_test(zstd_round_trip),
        cmocka_unit_test(libarchive_reads_an_in_memory_tar),
        cmocka_unit_test(nettle_sha256_matches_known_vectors),
        cmocka_unit_test(nghttp2_client_session_sends_preface_and_settings),
        cmocka_unit_test(protobufc_runtime_links_and_appends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* LevelDB schema for snapshot metadata. The layout is in metastore.h and
 * docs/storage.md; every mutation below builds one write batch and writes it
 * with sync (unless the store was opened for unsynced bulk population). */
#include "core/metastore.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <leveldb/c.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/os/os.h" /* the clock only: the metastore knows no files */

struct lcow_metastore {
    leveldb_t *db;
    leveldb_options_t *options;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *bloom;
    leveldb_readoptions_t *read_latest;
    leveldb_writeoptions_t *write;
    uint64_t next_id;    /* next id to hand out */
    uint64_t id_limit;   /* persisted "N": ids below it may be in use */
    uint32_t id_reserve; /* block size of one bump */
    char *path;
};

struct lcow_meta_view {
    const leveldb_snapshot_t *snapshot;
    leveldb_readoptions_t *read;
};

#define RECORD_FORMAT 1u
#define DISK_FORMAT 1u

/* ---------------------------------------------------------------- buffers */

typedef struct buf {
    char *data;
    size_t len, cap;
    bool failed;
} buf;

static void buf_put(buf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 128;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = lcow_realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_u8(buf *b, uint8_t v)
{
    buf_put(b, &v, 1);
}

static void buf_u32(buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, x, 4);
}

static void buf_u64(buf *b, uint64_t v)
{
    buf_u32(b, (uint32_t)(v >> 32));
    buf_u32(b, (uint32_t)v);
}

static void buf_str(buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

static void buf_free(buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

typedef struct reader {
    const unsigned char *p;
    size_t left;
    bool bad;
} reader;

static const unsigned char *rd_take(reader *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint8_t rd_u8(reader *r)
{
    const unsigned char *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

static uint32_t rd_u32(reader *r)
{
    const unsigned char *p = rd_take(r, 4);
    if (!p)
        return 0;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t rd_u64(reader *r)
{
    uint64_t hi = rd_u32(r);
    return hi << 32 | rd_u32(r);
}

static void be64(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t from_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* ---------------------------------------------------------------- keys */

/* "s/" key */
static char *rec_key(const char *key, size_t *len)
{
    size_t n = strlen(key);
    char *k = lcow_malloc(n + 2);
    if (!k)
        return NULL;
    k[0] = 's';
    k[1] = '/';
    memcpy(k + 2, key, n);
    *len = n + 2;
    return k;
}

static void id_key(char out[10], uint64_t id)
{
    out[0] = 'i';
    out[1] = '/';
    be64((unsigned char *)out + 2, id);
}

static void child_key(char out[18], uint64_t parent_id, uint64_t id)
{
    out[0] = 'c';
    out[1] = '/';
    be64((unsigned char *)out + 2, parent_id);
    be64((unsigned char *)out + 10, id);
}

static void disk_key(char out[10], uint64_t disk_id)
{
    out[0] = 'd';
    out[1] = '/';
    be64((unsigned char *)out + 2, disk_id);
}

/* "k/" ns 0 client 0 key */
static char *client_index_key(const char *ns, size_t ns_len, const char *client, const char *key,
                              size_t *len)
{
    size_t cl = strlen(client), kl = key ? strlen(key) : 0;
    size_t n = 2 + ns_len + 1 + cl + 1 + kl;
    char *k = lcow_malloc(n);
    if (!k)
        return NULL;
    char *p = k;
    *p++ = 'k';
    *p++ = '/';
    memcpy(p, ns, ns_len);
    p += ns_len;
    *p++ = '\0';
    memcpy(p, client, cl);
    p += cl;
    *p++ = '\0';
    if (kl)
        memcpy(p, key, kl);
    *len = n;
    return k;
}

static char *client_index_for(const char *key, size_t *len)
{
    const char *client;
    size_t ns_len;
    lcow_key_split(key, &client, &ns_len);
    return client_index_key(key, ns_len, client, key, len);
}

/* ---------------------------------------------------------------- records */

static bool encode_record(const lcow_meta_record *rec, buf *b)
{
    buf_u8(b, RECORD_FORMAT);
    buf_u8(b, (uint8_t)rec->kind);
    buf_u8(b, (uint8_t)rec->scratch);
    buf_u64(b, rec->id);
    buf_u64(b, rec->parent_id);
    buf_u64(b, rec->disk_id);
    buf_u64(b, (uint64_t)rec->created.sec);
    buf_u32(b, rec->created.nsec);
    buf_u64(b, (uint64_t)rec->updated.sec);
    buf_u32(b, rec->updated.nsec);
    buf_u64(b, (uint64_t)rec->usage.size);
    buf_u64(b, (uint64_t)rec->usage.inodes);
    buf_str(b, rec->parent);
    buf_u32(b, (uint32_t)rec->labels.count);
    for (size_t i = 0; i < rec->labels.count; i++) {
        buf_str(b, rec->labels.items[i].key);
        buf_str(b, rec->labels.items[i].value);
    }
    return !b->failed;
}

/* The fixed-width fields after the format byte, in encode_record's order. */
static void decode_fixed_fields(reader *r, lcow_meta_record *rec)
{
    rec->kind = (lcow_kind)rd_u8(r);
    rec->scratch = (lcow_meta_scratch)rd_u8(r);
    rec->id = rd_u64(r);
    rec->parent_id = rd_u64(r);
    rec->disk_id = rd_u64(r);
    rec->created.sec = (int64_t)rd_u64(r);
    rec->created.nsec = rd_u32(r);
    rec->updated.sec = (int64_t)rd_u64(r);
    rec->updated.nsec = rd_u32(r);
    rec->usage.size = (int64_t)rd_u64(r);
    rec->usage.inodes = (int64_t)rd_u64(r);
}

/* Where a decoded record's strings and label array go: malloc'd one by one
 * (arena NULL: the caller owns the record and frees it with
 * lcow_meta_record_free), or packed into one reused buffer (a walk over a
 * million records then makes no allocation per record; the record is valid
 * until the next decode into the arena). */
typedef struct rec_space {
    buf *arena;
    char *next; /* arena: the next free byte */
    bool oom;   /* an allocation failed (not a corrupt record) */
} rec_space;

static char *space_str(rec_space *sp, const void *p, size_t n)
{
    char *s = sp->arena ? sp->next : lcow_malloc(n + 1);
    if (!s) {
        sp->oom = true;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = '\0';
    if (sp->arena)
        sp->next += n + 1;
    return s;
}

static char *rd_str_in(reader *r, rec_space *sp)
{
    uint32_t n = rd_u32(r);
    const unsigned char *p = rd_take(r, n);
    char *s = p ? space_str(sp, p, n) : NULL;
    if (p && !s)
        r->bad = true;
    return s;
}

/* The one decoder of encode_record's format. With an arena, the strings of
 * a record take at most len bytes (each 4-byte length prefix becomes a NUL)
 * and there are at most len / 8 labels, so one buffer of that size holds
 * them all. */
static lcow_code decode_record(const char *key, size_t key_len, const char *val, size_t len,
                               lcow_meta_record *rec, buf *arena, lcow_error *err)
{
    memset(rec, 0, sizeof *rec);
    rec_space sp = {arena, NULL, false};
    lcow_label *arena_labels = NULL;
    if (arena) {
        size_t max_labels = len / 8 + 1;
        size_t need = max_labels * sizeof(lcow_label) + key_len + 1 + len + 1;
        if (arena->cap < need) {
            char *grown = lcow_realloc(arena->data, need * 2);
            if (!grown)
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            arena->data = grown;
            arena->cap = need * 2;
        }
        arena_labels = (lcow_label *)arena->data;
        sp.next = arena->data + max_labels * sizeof(lcow_label);
    }
    reader r = {(const unsigned char *)val, len, false};
    uint8_t format = rd_u8(&r);
    if (!r.bad && format != RECORD_FORMAT)
        return lcow_error_set(err, LCOW_INTERNAL, "snapshot record %.*s: unknown format %u",
                              (int)key_len, key, format);
    decode_fixed_fields(&r, rec);
    rec->key = space_str(&sp, key, key_len);
    rec->parent = rd_str_in(&r, &sp);
    uint32_t count = rd_u32(&r);
    if (!r.bad && count > 0) {
        if (count > r.left / 8)
            r.bad = true;
        else if (arena)
            rec->labels.items = arena_labels;
        else if (!(rec->labels.items = lcow_calloc(count, sizeof *rec->labels.items)))
            r.bad = sp.oom = true;
        for (uint32_t i = 0; i < count && !r.bad; i++) {
            rec->labels.items[i].key = rd_str_in(&r, &sp);
            rec->labels.items[i].value = rd_str_in(&r, &sp);
            rec->labels.count = i + 1;
        }
    }
    if (r.bad || !rec->key || !rec->parent) {
        if (!arena)
            lcow_meta_record_free(rec);
        memset(rec, 0, sizeof *rec);
        if (sp.oom)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                  "out of memory decoding snapshot record %.*s", (int)key_len, key);
        return lcow_error_set(err, LCOW_INTERNAL, "snapshot record %.*s is corrupt", (int)key_len,
                              key);
    }
    return LCOW_OK;
}

void lcow_meta_record_free(lcow_meta_record *rec)
{
    if (!rec)
        return;
    free(rec->key);
    free(rec->parent);
    lcow_labels_free(&rec->labels);
    memset(rec, 0, sizeof *rec);
}

bool lcow_meta_record_to_info(const lcow_meta_record *rec, lcow_info *info)
{
    memset(info, 0, sizeof *info);
    info->name = lcow_strdup(rec->key);
    info->parent = lcow_strdup(rec->parent ? rec->parent : "");
    info->kind = rec->kind;
    info->created = rec->created;
    info->updated = rec->updated;
    if (!info->name || !info->parent || !lcow_labels_copy(&info->labels, &rec->labels)) {
        lcow_info_free(info);
        return false;
    }
    return true;
}

static void encode_disk(const lcow_meta_disk *d, buf *b)
{
    buf_u8(b, DISK_FORMAT);
    buf_u32(b, d->members);
    buf_u8(b, d->retained ? 1 : 0);
}

static bool decode_disk(uint64_t disk_id, const char *val, size_t len, lcow_meta_disk *d)
{
    reader r = {(const unsigned char *)val, len, false};
    uint8_t format = rd_u8(&r);
    d->disk_id = disk_id;
    d->members = rd_u32(&r);
    d->retained = rd_u8(&r) != 0;
    return !r.bad && format == DISK_FORMAT;
}

/* ---------------------------------------------------------------- db helpers */

static lcow_code db_error(lcow_error *err, const char *what, char *msg)
{
    lcow_code code = lcow_error_set(err, LCOW_INTERNAL, "leveldb %s: %s", what, msg ? msg : "?");
    leveldb_free(msg);
    return code;
}

static const leveldb_readoptions_t *read_opts(const lcow_metastore *ms, const lcow_meta_view *view)
{
    return view ? view->read : ms->read_latest;
}

/* Gets a raw value into a buffer of ours (free() it); *val NULL when absent.
 * Not leveldb_get: its C wrapper copies the value into a malloc it never
 * checks (issue 14, item 2). An iterator lends the value; the copy is
 * checked and its failure is ResourceExhausted. */
static lcow_code db_get(lcow_metastore *ms, const lcow_meta_view *view, const char *k, size_t kl,
                        char **val, size_t *vl, lcow_error *err)
{
    *val = NULL;
    *vl = 0;
    lcow_code rc = LCOW_OK;
    leveldb_iterator_t *it = leveldb_create_iterator(ms->db, read_opts(ms, view));
    leveldb_iter_seek(it, k, kl);
    if (leveldb_iter_valid(it)) {
        size_t found_len;
        const char *found = leveldb_iter_key(it, &found_len);
        if (found_len == kl && memcmp(found, k, kl) == 0) {
            size_t n;
            const char *v = leveldb_iter_value(it, &n);
            char *copy = lcow_malloc(n ? n : 1);
            if (!copy) {
                rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                    "out of memory reading a metadata value of %" PRIu64 " bytes",
                                    (uint64_t)n);
            } else {
                memcpy(copy, v, n);
                *val = copy;
                *vl = n;
            }
        }
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e) {
        free(*val);
        *val = NULL;
        *vl = 0;
        return db_error(err, "get", e);
    }
    return rc;
}

static lcow_code db_write(lcow_metastore *ms, leveldb_writebatch_t *batch, lcow_error *err)
{
    char *e = NULL;
    leveldb_write(ms->db, ms->write, batch, &e);
    if (e)
        return db_error(err, "write", e);
    return LCOW_OK;
}

static lcow_code get_record(lcow_metastore *ms, const lcow_meta_view *view, const char *key,
                            lcow_meta_record *rec, bool *found, lcow_error *err)
{
    *found = false;
    memset(rec, 0, sizeof *rec);
    if (!key || !*key)
        return LCOW_OK;
    size_t kl;
    char *k = rec_key(key, &kl);
    if (!k)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    char *val;
    size_t vl;
    lcow_code rc = db_get(ms, view, k, kl, &val, &vl, err);
    if (rc == LCOW_OK && val) {
        rc = decode_record(key, strlen(key), val, vl, rec, NULL, err);
        *found = rc == LCOW_OK;
    }
    free(val);
    free(k);
    return rc;
}

static lcow_code get_disk(lcow_metastore *ms, const lcow_meta_view *view, uint64_t disk_id,
                          lcow_meta_disk *d, bool *found, lcow_error *err)
{
    char k[10];
    disk_key(k, disk_id);
    char *val;
    size_t vl;
    *found = false;
    memset(d, 0, sizeof *d);
    lcow_code rc = db_get(ms, view, k, sizeof k, &val, &vl, err);
    if (rc == LCOW_OK && val) {
        if (!decode_disk(disk_id, val, vl, d))
            rc = lcow_error_set(err, LCOW_INTERNAL, "disk record %" PRIu64 " is corrupt", disk_id);
        else
            *found = true;
    }
    free(val);
    return rc;
}

static bool batch_put_record(leveldb_writebatch_t *batch, const lcow_meta_record *rec)
{
    size_t kl;
    char *k = rec_key(rec->key, &kl);
    buf b = {0};
    bool ok = k && encode_record(rec, &b);
    if (ok)
        leveldb_writebatch_put(batch, k, kl, b.data, b.len);
    buf_free(&b);
    free(k);
    return ok;
}

static bool batch_index_record(leveldb_writebatch_t *batch, const lcow_meta_record *rec, bool add)
{
    char ik[10];
    id_key(ik, rec->id);
    if (add)
        leveldb_writebatch_put(batch, ik, sizeof ik, rec->key, strlen(rec->key));
    else
        leveldb_writebatch_delete(batch, ik, sizeof ik);
    if (rec->parent_id) {
        char ck[18];
        child_key(ck, rec->parent_id, rec->id);
        if (add)
            leveldb_writebatch_put(batch, ck, sizeof ck, rec->key, strlen(rec->key));
        else
            leveldb_writebatch_delete(batch, ck, sizeof ck);
    }
    size_t cl;
    char *ck = client_index_for(rec->key, &cl);
    if (!ck)
        return false;
    if (add)
        leveldb_writebatch_put(batch, ck, cl, "", 0);
    else
        leveldb_writebatch_delete(batch, ck, cl);
    free(ck);
    return true;
}

static void batch_put_disk(leveldb_writebatch_t *batch, const lcow_meta_disk *d)
{
    char k[10];
    disk_key(k, d->disk_id);
    buf b = {0};
    encode_disk(d, &b);
    if (!b.failed)
        leveldb_writebatch_put(batch, k, sizeof k, b.data, b.len);
    buf_free(&b);
}

static void batch_delete_disk(leveldb_writebatch_t *batch, uint64_t disk_id)
{
    char k[10];
    disk_key(k, disk_id);
    leveldb_writebatch_delete(batch, k, sizeof k);
}

static lcow_code oom(lcow_error *err)
{
    return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

/* ---------------------------------------------------------------- open/close */

static lcow_code read_decimal(lcow_metastore *ms, const char *k, uint64_t *v, bool *found,
                              lcow_error *err)
{
    char *val;
    size_t vl;
    *found = false;
    lcow_code rc = db_get(ms, NULL, k, strlen(k), &val, &vl, err);
    if (rc != LCOW_OK || !val)
        return rc;
    uint64_t n = 0;
    bool ok = vl > 0 && vl < 21;
    for (size_t i = 0; ok && i < vl; i++) {
        if (val[i] < '0' || val[i] > '9')
            ok = false;
        else
            n = n * 10 + (uint64_t)(val[i] - '0');
    }
    free(val);
    if (!ok)
        return lcow_error_set(err, LCOW_INTERNAL, "metadata key %s holds a malformed number", k);
    *v = n;
    *found = true;
    return LCOW_OK;
}

static lcow_code write_decimal(lcow_metastore *ms, const char *k, uint64_t v, lcow_error *err)
{
    char text[24];
    int n = snprintf(text, sizeof text, "%" PRIu64, v);
    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    leveldb_writebatch_put(batch, k, strlen(k), text, (size_t)n);
    lcow_code rc = db_write(ms, batch, err);
    leveldb_writebatch_destroy(batch);
    return rc;
}

/* Highest id present in the id map (0 if none): a floor for "N" in case a
 * store was written by a build that did not persist it. */
static lcow_code max_recorded_id(lcow_metastore *ms, uint64_t *max, lcow_error *err)
{
    *max = 0;
    leveldb_iterator_t *it = leveldb_create_iterator(ms->db, ms->read_latest);
    leveldb_iter_seek(it, "i0", 2); /* '0' follows '/' */
    if (leveldb_iter_valid(it))
        leveldb_iter_prev(it);
    else
        leveldb_iter_seek_to_last(it);
    if (leveldb_iter_valid(it)) {
        size_t kl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl == 10 && k[0] == 'i' && k[1] == '/')
            *max = from_be64((const unsigned char *)k + 2);
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e)
        return db_error(err, "scan", e);
    return LCOW_OK;
}

lcow_code lcow_metastore_open(const char *path, const lcow_metastore_options *opts,
                              lcow_metastore **out, lcow_error *err)
{
    *out = NULL;
    lcow_metastore *ms = lcow_calloc(1, sizeof *ms);
    if (!ms || !(ms->path = lcow_strdup(path))) {
        free(ms);
        return oom(err);
    }
    ms->id_reserve = opts && opts->id_reserve ? opts->id_reserve : 1024;
    ms->options = leveldb_options_create();
    leveldb_options_set_create_if_missing(ms->options, 1);
    ms->cache = leveldb_cache_create_lru(opts && opts->cache_bytes ? opts->cache_bytes
                                                                   : LCOW_METASTORE_CACHE_BYTES);
    leveldb_options_set_cache(ms->options, ms->cache);
    leveldb_options_set_write_buffer_size(ms->options, opts && opts->write_buffer_bytes
                                                           ? opts->write_buffer_bytes
                                                           : LCOW_METASTORE_WRITE_BUFFER_BYTES);
    ms->bloom = leveldb_filterpolicy_create_bloom(10);
    leveldb_options_set_filter_policy(ms->options, ms->bloom);
    ms->read_latest = leveldb_readoptions_create();
    ms->write = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(ms->write, opts && opts->no_sync ? 0 : 1);

    char *e = NULL;
    ms->db = leveldb_open(ms->options, path, &e);
    if (e) {
        /* LevelDB's Windows env opens its files by ANSI name (CreateFileA),
         * which stops at MAX_PATH whatever the system's long-path setting. */
        const char *hint = "";
#ifdef _WIN32
        if (strstr(e, "too long"))
            hint = " (LevelDB opens its files by name through the ANSI Windows API, which stops "
                   "at 259 characters: choose a shorter --root)";
#endif
        lcow_error_set(err, LCOW_UNAVAILABLE, "cannot open metadata store %s: %s%s", path, e, hint);
        leveldb_free(e);
        lcow_metastore_close(ms);
        return LCOW_UNAVAILABLE;
    }

    uint64_t version = 0;
    bool found;
    lcow_code rc = read_decimal(ms, "V", &version, &found, err);
    if (rc == LCOW_OK && !found)
        rc = write_decimal(ms, "V", LCOW_METASTORE_SCHEMA, err);
    else if (rc == LCOW_OK && version > LCOW_METASTORE_SCHEMA)
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "metadata store %s has schema version %" PRIu64
                            ", newer than the version %u this build understands; refusing to "
                            "open it (upgrade lcowsnap)",
                            path, version, LCOW_METASTORE_SCHEMA);
    uint64_t limit = 0, max_id = 0;
    if (rc == LCOW_OK)
        rc = read_decimal(ms, "N", &limit, &found, err);
    if (rc == LCOW_OK)
        rc = max_recorded_id(ms, &max_id, err);
    if (rc != LCOW_OK) {
        lcow_metastore_close(ms);
        return rc;
    }
    if (limit <= max_id)
        limit = max_id + 1;
    if (limit == 0)
        limit = 1;
    /* Ids below the persisted limit may have named directories before a
     * crash: start above them all. */
    ms->next_id = limit;
    ms->id_limit = limit;
    *out = ms;
    return LCOW_OK;
}

void lcow_metastore_close(lcow_metastore *ms)
{
    if (!ms)
        return;
    if (ms->db)
        leveldb_close(ms->db);
    if (ms->options)
        leveldb_options_destroy(ms->options);
    if (ms->cache)
        leveldb_cache_destroy(ms->cache);
    if (ms->bloom)
        leveldb_filterpolicy_destroy(ms->bloom);
    if (ms->read_latest)
        leveldb_readoptions_destroy(ms->read_latest);
    if (ms->write)
        leveldb_writeoptions_destroy(ms->write);
    free(ms->path);
    free(ms);
}

void lcow_metastore_compact(lcow_metastore *ms)
{
    leveldb_compact_range(ms->db, NULL, 0, NULL, 0);
}

lcow_code lcow_metastore_set_schema_version(lcow_metastore *ms, uint32_t version, lcow_error *err)
{
    return write_decimal(ms, "V", version, err);
}

lcow_meta_view *lcow_metastore_view_begin(lcow_metastore *ms)
{
    lcow_meta_view *v = lcow_calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->snapshot = leveldb_create_snapshot(ms->db);
    v->read = leveldb_readoptions_create();
    leveldb_readoptions_set_snapshot(v->read, v->snapshot);
    return v;
}

void lcow_metastore_view_end(lcow_metastore *ms, lcow_meta_view *view)
{
    if (!view)
        return;
    leveldb_readoptions_destroy(view->read);
    leveldb_release_snapshot(ms->db, view->snapshot);
    free(view);
}

lcow_code lcow_metastore_next_id(lcow_metastore *ms, uint64_t *id, lcow_error *err)
{
    if (ms->next_id >= ms->id_limit) {
        uint64_t limit = ms->next_id + ms->id_reserve;
        lcow_code rc = write_decimal(ms, "N", limit, err);
        if (rc != LCOW_OK)
            return lcow_error_wrap(err, "reserving snapshot ids");
        ms->id_limit = limit;
    }
    *id = ms->next_id++;
    return LCOW_OK;
}

uint64_t lcow_metastore_peek_next_id(const lcow_metastore *ms)
{
    return ms->next_id;
}

/* ---------------------------------------------------------------- reads */

lcow_code lcow_metastore_get(lcow_metastore *ms, const lcow_meta_view *view, const char *key,
                             lcow_meta_record *rec, lcow_error *err)
{
    bool found;
    lcow_code rc = get_record(ms, view, key, rec, &found, err);
    if (rc == LCOW_OK && !found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s does not exist", key ? key : "");
    return rc;
}

lcow_code lcow_metastore_key_of(lcow_metastore *ms, const lcow_meta_view *view, uint64_t id,
                                char **key, lcow_error *err)
{
    char k[10];
    id_key(k, id);
    char *val;
    size_t vl;
    *key = NULL;
    lcow_code rc = db_get(ms, view, k, sizeof k, &val, &vl, err);
    if (rc != LCOW_OK)
        return rc;
    if (!val)
        return lcow_error_set(err, LCOW_NOT_FOUND, "no snapshot with id %" PRIu64, id);
    *key = lcow_malloc(vl + 1);
    if (*key) {
        memcpy(*key, val, vl);
        (*key)[vl] = '\0';
    }
    free(val);
    return *key ? LCOW_OK : oom(err);
}

/* Iterates keys with the given prefix (starting at `start`, which must
 * begin with the prefix). fn returns non-zero to stop. */
typedef int (*scan_fn)(void *ctx, const char *k, size_t kl, const char *v, size_t vl);

static lcow_code scan(lcow_metastore *ms, const lcow_meta_view *view, const char *prefix,
                      size_t prefix_len, const char *start, size_t start_len, scan_fn fn, void *ctx,
                      lcow_error *err)
{
    leveldb_iterator_t *it = leveldb_create_iterator(ms->db, read_opts(ms, view));
    leveldb_iter_seek(it, start, start_len);
    for (; leveldb_iter_valid(it); leveldb_iter_next(it)) {
        size_t kl, vl;
        const char *k = leveldb_iter_key(it, &kl);
        if (kl < prefix_len || memcmp(k, prefix, prefix_len) != 0)
            break;
        const char *v = leveldb_iter_value(it, &vl);
        if (fn(ctx, k, kl, v, vl))
            break;
    }
    char *e = NULL;
    leveldb_iter_get_error(it, &e);
    leveldb_iter_destroy(it);
    if (e)
        return db_error(err, "scan", e);
    return LCOW_OK;
}

static int first_hit(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)k, (void)kl, (void)v, (void)vl;
    *(bool *)ctx = true;
    return 1;
}

lcow_code lcow_metastore_has_children(lcow_metastore *ms, const lcow_meta_view *view, uint64_t id,
                                      bool *has, lcow_error *err)
{
    char prefix[10];
    prefix[0] = 'c';
    prefix[1] = '/';
    be64((unsigned char *)prefix + 2, id);
    *has = false;
    return scan(ms, view, prefix, sizeof prefix, prefix, sizeof prefix, first_hit, has, err);
}

lcow_code lcow_metastore_parent_ids(lcow_metastore *ms, const lcow_meta_view *view,
                                    const lcow_meta_record *rec, uint64_t **ids, size_t *count,
                                    lcow_error *err)
{
    *ids = NULL;
    *count = 0;
    size_t cap = 0;
    char *parent = lcow_strdup(rec->parent ? rec->parent : "");
    if (!parent)
        return oom(err);
    lcow_code rc = LCOW_OK;
    while (*parent) {
        lcow_meta_record p;
        bool found;
        rc = get_record(ms, view, parent, &p, &found, err);
        if (rc != LCOW_OK)
            break;
        if (!found) {
            rc = lcow_error_set(err, LCOW_NOT_FOUND, "parent snapshot %s of %s does not exist",
                                parent, rec->key);
            break;
        }
        if (!lcow_grow(ids, &cap, *count + 1, sizeof **ids)) {
            lcow_meta_record_free(&p);
            rc = oom(err);
            break;
        }
        (*ids)[(*count)++] = p.id;
        free(parent);
        parent = p.parent; /* take ownership */
        p.parent = NULL;
        lcow_meta_record_free(&p);
        if (*count > 1u << 20) {
            rc = lcow_error_set(err, LCOW_INTERNAL, "parent chain of %s loops", rec->key);
            break;
        }
    }
    free(parent);
    if (rc != LCOW_OK) {
        free(*ids);
        *ids = NULL;
        *count = 0;
    }
    return rc;
}

typedef struct walk_ctx {
    lcow_meta_walk_fn fn;
    void *ctx;
    const char *skip; /* the `after` key itself */
    size_t skip_len;
    lcow_code rc;
    lcow_error *err;
    buf arena;
} walk_ctx;

static int walk_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    walk_ctx *w = ctx;
    if (w->skip && kl - 2 == w->skip_len && memcmp(k + 2, w->skip, kl - 2) == 0)
        return 0;
    lcow_meta_record rec;
    w->rc = decode_record(k + 2, kl - 2, v, vl, &rec, &w->arena, w->err);
    if (w->rc != LCOW_OK)
        return 1;
    return w->fn(w->ctx, &rec);
}

lcow_code lcow_metastore_walk(lcow_metastore *ms, const lcow_meta_view *view, const char *after,
                              lcow_meta_walk_fn fn, void *ctx, lcow_error *err)
{
    walk_ctx w = {fn, ctx, after, after ? strlen(after) : 0, LCOW_OK, err, {0}};
    size_t sl = 2;
    char *start = NULL;
    if (after && *after) {
        start = rec_key(after, &sl);
        if (!start)
            return oom(err);
    }
    lcow_code rc = scan(ms, view, "s/", 2, start ? start : "s/", sl, walk_one, &w, err);
    free(start);
    buf_free(&w.arena);
    return rc != LCOW_OK ? rc : w.rc;
}

typedef struct client_ctx {
    lcow_meta_key_fn fn;
    void *ctx;
    size_t prefix_len;
    char *key;
    bool oom;
} client_ctx;

static int client_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    (void)v, (void)vl;
    client_ctx *c = ctx;
    size_t n = kl - c->prefix_len;
    free(c->key);
    c->key = lcow_malloc(n + 1);
    if (!c->key) {
        c->oom = true;
        return 1;
    }
    memcpy(c->key, k + c->prefix_len, n);
    c->key[n] = '\0';
    return c->fn(c->ctx, c->key);
}

lcow_code lcow_metastore_find_client_key(lcow_metastore *ms, const lcow_meta_view *view,
                                         const char *ns, size_t ns_len, const char *client_key,
                                         lcow_meta_key_fn fn, void *ctx, lcow_error *err)
{
    size_t pl;
    char *prefix = client_index_key(ns, ns_len, client_key, NULL, &pl);
    if (!prefix)
        return oom(err);
    client_ctx c = {fn, ctx, pl, NULL, false};
    lcow_code rc = scan(ms, view, prefix, pl, prefix, pl, client_one, &c, err);
    free(c.key);
    free(prefix);
    if (rc == LCOW_OK && c.oom)
        rc = oom(err);
    return rc;
}

lcow_code lcow_metastore_disk_get(lcow_metastore *ms, const lcow_meta_view *view, uint64_t disk_id,
                                  lcow_meta_disk *disk, lcow_error *err)
{
    bool found;
    lcow_code rc = get_disk(ms, view, disk_id, disk, &found, err);
    if (rc == LCOW_OK && !found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "no shared disk %" PRIu64, disk_id);
    return rc;
}

typedef struct disks_ctx {
    lcow_meta_disk_fn fn;
    void *ctx;
    bool corrupt;
} disks_ctx;

static int disk_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    disks_ctx *d = ctx;
    lcow_meta_disk disk;
    if (kl != 10 || !decode_disk(from_be64((const unsigned char *)k + 2), v, vl, &disk)) {
        d->corrupt = true;
        return 1;
    }
    return d->fn(d->ctx, &disk);
}

lcow_code lcow_metastore_walk_disks(lcow_metastore *ms, const lcow_meta_view *view,
                                    lcow_meta_disk_fn fn, void *ctx, lcow_error *err)
{
    disks_ctx d = {fn, ctx, false};
    lcow_code rc = scan(ms, view, "d/", 2, "d/", 2, disk_one, &d, err);
    if (rc == LCOW_OK && d.corrupt)
        rc = lcow_error_set(err, LCOW_INTERNAL, "a shared disk record is corrupt");
    return rc;
}

typedef struct children_ctx {
    lcow_meta_child_fn fn;
    void *ctx;
    char *key;
    bool failed;
} children_ctx;

static int child_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
    children_ctx *c = ctx;
    if (kl != 18) {
        c->failed = true;
        return 1;
    }
    free(c->key);
    c->key = lcow_malloc(vl + 1);
    if (!c->key) {
        c->failed = true;
        return 1;
    }
    memcpy(c->key, v, vl);
    c->key[vl] = '\0';
    return c->fn(c->ctx, from_be64((const unsigned char *)k + 2),
                 from_be64((const unsigned char *)k + 10), c->key);
}

lcow_code lcow_metastore_walk_children(lcow_metastore *ms, const lcow_meta_view *view,
                                       lcow_meta_child_fn fn, void *ctx, lcow_error *err)
{
    children_ctx c = {fn, ctx, NULL, false};
    lcow_code rc = scan(ms, view, "c/", 2, "c/", 2, child_one, &c, err);
    free(c.key);
    if (rc == LCOW_OK && c.failed)
        rc = lcow_error_set(err, LCOW_INTERNAL, "a child index entry is corrupt");
    return rc;
}

/* ---------------------------------------------------------------- validation */

lcow_code lcow_metastore_validate_key(const char *what, const char *key, lcow_error *err)
{
    if (!key || !*key)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s must not be empty", what);
    size_t n = strlen(key);
    if (n > LCOW_MAX_KEY_LEN)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s is %zu bytes, longer than %d", what,
                              n, LCOW_MAX_KEY_LEN);
    if (!lcow_utf8_valid(key, n))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
    return LCOW_OK;
}

lcow_code lcow_metastore_validate_labels(const lcow_labels *labels, lcow_error *err)
{
    if (!labels)
        return LCOW_OK;
    if (labels->count > LCOW_MAX_LABELS)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%zu labels, more than %d", labels->count,
                              LCOW_MAX_LABELS);
    for (size_t i = 0; i < labels->count; i++) {
        const char *k = labels->items[i].key, *v = labels->items[i].value;
        size_t kl = k ? strlen(k) : 0, vl = v ? strlen(v) : 0;
        if (kl == 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "label key must not be empty");
        if (kl + vl > LCOW_MAX_LABEL_LEN)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "label key and value length (%zu bytes) exceeds maximum size "
                                  "(%d bytes): %.64s",
                                  kl + vl, LCOW_MAX_LABEL_LEN, k);
        if (!lcow_utf8_valid(k, kl))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "label key is not valid UTF-8");
        if (!lcow_utf8_valid(v, vl))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "value of label %.64s is not valid UTF-8", k);
    }
    return LCOW_OK;
}

/* ---------------------------------------------------------------- mutations */

/* A labels copy without empty values (containerd never stores them). */
static bool copy_labels(lcow_labels *dst, const lcow_labels *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src)
        return true;
    for (size_t i = 0; i < src->count; i++)
        if (!lcow_labels_set(dst, src->items[i].key, src->items[i].value)) {
            lcow_labels_free(dst);
            return false;
        }
    return true;
}

/* Checks that disk_id's disk is still referenced: its owner record (any
 * kind, same id) exists, or a disk record with members does. */
static lcow_code disk_live(lcow_metastore *ms, uint64_t disk_id, lcow_meta_disk *disk, bool *exists,
                           lcow_error *err)
{
    lcow_code rc = get_disk(ms, NULL, disk_id, disk, exists, err);
    if (rc != LCOW_OK)
        return rc;
    if (*exists && disk->retained)
        return LCOW_OK;
    char *owner = NULL;
    rc = lcow_metastore_key_of(ms, NULL, disk_id, &owner, err);
    free(owner);
    if (rc == LCOW_NOT_FOUND)
        return lcow_error_set(
            err, LCOW_FAILED_PRECONDITION,
            "the shared scratch disk of snapshot id %" PRIu64 " was removed meanwhile", disk_id);
    return rc;
}

static lcow_code insert_impl(lcow_metastore *ms, const lcow_meta_create *req, bool check_only,
                             uint64_t *parent_id, lcow_error *err)
{
    lcow_meta_record parent = {0}, existing;
    bool found;
    lcow_code rc;
    const char *parent_key = req->parent ? req->parent : "";
    if (parent_id)
        *parent_id = 0;
    if ((req->kind != LCOW_KIND_ACTIVE && req->kind != LCOW_KIND_VIEW &&
         req->kind != LCOW_KIND_COMMITTED) ||
        (req->kind == LCOW_KIND_COMMITTED && req->scratch != LCOW_META_SCRATCH_NONE))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "invalid kind %d for a new snapshot",
                              (int)req->kind);
    if (*parent_key) {
        rc = get_record(ms, NULL, parent_key, &parent, &found, err);
        if (rc != LCOW_OK)
            return rc;
        if (!found)
            return lcow_error_set(err, LCOW_NOT_FOUND, "parent snapshot %s does not exist",
                                  parent_key);
        if (parent.kind != LCOW_KIND_COMMITTED) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "parent snapshot %s is %s, not committed", parent_key,
                                lcow_kind_name(parent.kind));
            lcow_meta_record_free(&parent);
            return rc;
        }
    }
    rc = get_record(ms, NULL, req->key, &existing, &found, err);
    if (rc == LCOW_OK && found) {
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (%s)", req->key,
                            lcow_kind_name(existing.kind));
        lcow_meta_record_free(&existing);
    }
    lcow_meta_disk disk = {0};
    bool disk_exists = false;
    if (rc == LCOW_OK && req->scratch == LCOW_META_SCRATCH_SHARED)
        rc = disk_live(ms, req->disk_id, &disk, &disk_exists, err);
    if (parent_id)
        *parent_id = parent.id;
    if (rc != LCOW_OK || check_only) {
        lcow_meta_record_free(&parent);
        return rc;
    }

    lcow_meta_record rec = {0};
    rec.key = (char *)req->key;
    rec.id = req->id;
    rec.kind = req->kind;
    rec.parent = (char *)parent_key;
    rec.parent_id = parent.id;
    rec.created = rec.updated = lcow_os_time_now();
    rec.scratch = req->scratch;
    rec.disk_id = req->scratch == LCOW_META_SCRATCH_SHARED ? req->disk_id : 0;
    if (req->kind == LCOW_KIND_COMMITTED)
        rec.usage = req->usage;
    lcow_meta_record_free(&parent);
    if (!copy_labels(&rec.labels, req->labels))
        return oom(err);

    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    bool ok = batch_put_record(batch, &rec) && batch_index_record(batch, &rec, true);
    if (ok && req->scratch == LCOW_META_SCRATCH_SHARED) {
        if (!disk_exists)
            disk = (lcow_meta_disk){.disk_id = req->disk_id};
        disk.members++;
        batch_put_disk(batch, &disk);
    }
    rc = ok ? db_write(ms, batch, err) : oom(err);
    leveldb_writebatch_destroy(batch);
    lcow_labels_free(&rec.labels);
    return rc;
}

lcow_code lcow_metastore_insert(lcow_metastore *ms, const lcow_meta_create *req,
                                uint64_t *parent_id, lcow_error *err)
{
    return insert_impl(ms, req, false, parent_id, err);
}

lcow_code lcow_metastore_check_insert(lcow_metastore *ms, const lcow_meta_create *req,
                                      uint64_t *parent_id, lcow_error *err)
{
    return insert_impl(ms, req, true, parent_id, err);
}

static lcow_code commit_impl(lcow_metastore *ms, const char *name, const char *key,
                             const lcow_labels *labels, const char *rebase_parent,
                             const lcow_usage *usage, bool check_only, uint64_t *id,
                             lcow_error *err)
{
    lcow_meta_record active = {0}, tmp, parent = {0};
    bool found;
    lcow_code rc = get_record(ms, NULL, name, &tmp, &found, err);
    if (rc != LCOW_OK)
        return rc;
    if (found) {
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "snapshot %s already exists (%s)", name,
                            lcow_kind_name(tmp.kind));
        lcow_meta_record_free(&tmp);
        return rc;
    }
    rc = get_record(ms, NULL, key, &active, &found, err);
    if (rc != LCOW_OK)
        return rc;
    if (!found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s does not exist", key);
    if (id)
        *id = active.id;
    if (active.kind != LCOW_KIND_ACTIVE) {
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "snapshot %s is %s, not active: only active snapshots can be "
                            "committed",
                            key, lcow_kind_name(active.kind));
        goto out;
    }
    const char *new_parent = active.parent;
    if (rebase_parent && *rebase_parent && strcmp(rebase_parent, active.parent) != 0) {
        if (*active.parent) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "cannot rebase snapshot %s onto %s: its parent is %s", key,
                                rebase_parent, active.parent);
            goto out;
        }
        new_parent = rebase_parent;
    }
    if (*new_parent) {
        rc = get_record(ms, NULL, new_parent, &parent, &found, err);
        if (rc != LCOW_OK)
            goto out;
        if (!found) {
            rc = lcow_error_set(err, LCOW_NOT_FOUND, "parent snapshot %s does not exist",
                                new_parent);
            goto out;
        }
        if (parent.kind != LCOW_KIND_COMMITTED) {
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                "parent snapshot %s is %s, not committed", new_parent,
                                lcow_kind_name(parent.kind));
            goto out;
        }
    }
    if (check_only)
        goto out;

    lcow_meta_record rec = active;
    rec.key = (char *)name;
    rec.kind = LCOW_KIND_COMMITTED;
    rec.parent = (char *)new_parent;
    rec.parent_id = parent.id;
    rec.created = rec.updated = lcow_os_time_now();
    rec.usage = usage ? *usage : (lcow_usage){0};
    if (!copy_labels(&rec.labels, labels)) {
        rc = oom(err);
        goto out;
    }
    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    size_t kl;
    char *k = rec_key(key, &kl);
    bool ok = k != NULL;
    if (ok) {
        leveldb_writebatch_delete(batch, k, kl);
        ok = batch_index_record(batch, &active, false) && batch_put_record(batch, &rec) &&
             batch_index_record(batch, &rec, true);
    }
    free(k);
    rc = ok ? db_write(ms, batch, err) : oom(err);
    leveldb_writebatch_destroy(batch);
    lcow_labels_free(&rec.labels);
out:
    lcow_meta_record_free(&active);
    lcow_meta_record_free(&parent);
    return rc;
}

lcow_code lcow_metastore_commit(lcow_metastore *ms, const char *name, const char *key,
                                const lcow_labels *labels, const char *rebase_parent,
                                const lcow_usage *usage, lcow_error *err)
{
    return commit_impl(ms, name, key, labels, rebase_parent, usage, false, NULL, err);
}

lcow_code lcow_metastore_check_commit(lcow_metastore *ms, const char *name, const char *key,
                                      const lcow_labels *labels, const char *rebase_parent,
                                      uint64_t *id, lcow_error *err)
{
    return commit_impl(ms, name, key, labels, rebase_parent, NULL, true, id, err);
}

lcow_code lcow_metastore_remove(lcow_metastore *ms, const char *key,
                                lcow_meta_remove_effect *effect, lcow_error *err)
{
    memset(effect, 0, sizeof *effect);
    lcow_meta_record rec, parent;
    bool found;
    lcow_code rc = get_record(ms, NULL, key, &rec, &found, err);
    if (rc != LCOW_OK)
        return rc;
    if (!found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s does not exist", key);
    bool has = false;
    rc = lcow_metastore_has_children(ms, NULL, rec.id, &has, err);
    if (rc == LCOW_OK && has)
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "cannot remove snapshot with child: %s has dependent snapshots", key);
    if (rc == LCOW_OK && *rec.parent) {
        rc = get_record(ms, NULL, rec.parent, &parent, &found, err);
        if (rc == LCOW_OK && !found)
            rc = lcow_error_set(err, LCOW_NOT_FOUND, "parent snapshot %s of %s does not exist",
                                rec.parent, key);
        lcow_meta_record_free(&parent);
    }
    if (rc != LCOW_OK) {
        lcow_meta_record_free(&rec);
        return rc;
    }

    leveldb_writebatch_t *batch = leveldb_writebatch_create();
    size_t kl;
    char *k = rec_key(key, &kl);
    bool ok = k != NULL;
    if (ok) {
        leveldb_writebatch_delete(batch, k, kl);
        ok = batch_index_record(batch, &rec, false);
    }
    free(k);
    effect->id = rec.id;
    effect->kind = rec.kind;
    effect->delete_own_dir = true;
    lcow_meta_disk disk;
    /* Owner: if members still link to its disk, the disk record takes over
     * the directory (retained) instead of it being deleted. */
    if (ok && rc == LCOW_OK && rec.scratch == LCOW_META_SCRATCH_OWN) {
        rc = get_disk(ms, NULL, rec.id, &disk, &found, err);
        if (rc == LCOW_OK && found && disk.members > 0) {
            disk.retained = true;
            batch_put_disk(batch, &disk);
            effect->delete_own_dir = false;
            effect->retain_own_dir = true;
        } else if (rc == LCOW_OK && found) {
            batch_delete_disk(batch, rec.id);
        }
    }
    /* Member: drop one reference; the last one frees a retained disk. */
    if (ok && rc == LCOW_OK && rec.scratch == LCOW_META_SCRATCH_SHARED) {
        rc = get_disk(ms, NULL, rec.disk_id, &disk, &found, err);
        if (rc == LCOW_OK && (!found || disk.members == 0)) {
            rc = lcow_error_set(err, LCOW_INTERNAL,
                                "snapshot %s shares disk %" PRIu64 " but the disk record %s", key,
                                rec.disk_id, found ? "has no members" : "is missing");
        } else if (rc == LCOW_OK) {
            disk.members--;
            if (disk.members == 0) {
                batch_delete_disk(batch, rec.disk_id);
                if (disk.retained)
                    effect->freed_disk = rec.disk_id;
            } else {
                batch_put_disk(batch, &disk);
            }
        }
    }
    if (rc == LCOW_OK)
        rc = ok ? db_write(ms, batch, err) : oom(err);
    leveldb_writebatch_destroy(batch);
    lcow_meta_record_free(&rec);
    if (rc != LCOW_OK)
        memset(effect, 0, sizeof *effect);
    return rc;
}

lcow_code lcow_metastore_update(lcow_metastore *ms, const lcow_info *info, const char *const *paths,
                                size_t path_count, lcow_meta_record *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    lcow_meta_record rec;
    bool found;
    const char *name = info && info->name ? info->name : "";
    lcow_code rc = get_record(ms, NULL, name, &rec, &found, err);
    if (rc != LCOW_OK)
        return rc;
    if (!found)
        return lcow_error_set(err, LCOW_NOT_FOUND, "snapshot %s does not exist", name);

    lcow_labels labels = {0};
    bool ok = true;
    if (path_count == 0) {
        ok = copy_labels(&labels, &info->labels);
    } else {
        ok = lcow_labels_copy(&labels, &rec.labels);
        for (size_t i = 0; ok && i < path_count && rc == LCOW_OK; i++) {
            const char *p = paths[i] ? paths[i] : "";
            if (strcmp(p, "labels") == 0) {
                lcow_labels_free(&labels);
                ok = copy_labels(&labels, &info->labels);
            } else if (strncmp(p, "labels.", 7) == 0 && p[7] != '\0') {
                const char *v = lcow_labels_get(&info->labels, p + 7);
                if (v && *v)
                    ok = lcow_labels_set(&labels, p + 7, v);
                else
                    lcow_labels_delete(&labels, p + 7);
            } else {
                rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                    "cannot update %s field \"%s\" of snapshot %s: only labels "
                                    "can be updated",
                                    strncmp(p, "labels.", 7) == 0 ? "empty label" : "the", p, name);
            }
        }
    }
    if (rc == LCOW_OK && !ok)
        rc = oom(err);
    if (rc == LCOW_OK)
        rc = lcow_metastore_validate_labels(&labels, err);
    if (rc == LCOW_OK) {
        lcow_labels_free(&rec.labels);
        rec.labels = labels;
        labels = (lcow_labels){0};
        rec.updated = lcow_os_time_now();
        leveldb_writebatch_t *batch = leveldb_writebatch_create();
        rc = batch_put_record(batch, &rec) ? db_write(ms, batch, err) : oom(err);
        leveldb_writebatch_destroy(batch);
    }
    lcow_labels_free(&labels);
    if (rc == LCOW_OK)
        *out = rec;
    else
        lcow_meta_record_free(&rec);
    return rc;
}

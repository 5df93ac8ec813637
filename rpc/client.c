/* Client library: request encoding, response decoding, deadlines. The bytes
 * travel through client_posix.c / client_win.c. */
#include "rpc/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "core/base/alloc.h"
#include "rpc/client_transport.h"
#include "rpc/frame.h"

#define CLIENT_READ_CHUNK 65536

struct lcow_client {
    lcow_transport *transport;
    unsigned call_timeout_ms;
    uint32_t next_msgid;
    bool broken;
    char broken_reason[160];
    msgpack_unpacker unpacker;
    msgpack_sbuffer sbuf;
};

lcow_code lcow_client_connect(const char *address, unsigned connect_timeout_ms, lcow_client **out,
                              lcow_error *err)
{
    *out = NULL;
    if (!address || !address[0])
        address = lcow_transport_default_address();
    lcow_client *c = lcow_calloc(1, sizeof *c);
    if (!c || !msgpack_unpacker_init(&c->unpacker, CLIENT_READ_CHUNK)) {
        free(c);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    msgpack_sbuffer_init(&c->sbuf);
    c->call_timeout_ms = LCOW_CLIENT_DEFAULT_CALL_TIMEOUT_MS;
    c->next_msgid = 1;
    lcow_code code = lcow_transport_connect(
        address, connect_timeout_ms ? connect_timeout_ms : LCOW_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS,
        &c->transport, err);
    if (code != LCOW_OK) {
        lcow_client_close(c);
        return code;
    }
    *out = c;
    return LCOW_OK;
}

void lcow_client_set_call_timeout(lcow_client *c, unsigned timeout_ms)
{
    c->call_timeout_ms = timeout_ms;
}

void lcow_client_close(lcow_client *c)
{
    if (!c)
        return;
    if (c->transport)
        lcow_transport_close(c->transport);
    msgpack_unpacker_destroy(&c->unpacker);
    msgpack_sbuffer_destroy(&c->sbuf);
    free(c);
}

static lcow_code fail(lcow_client *c, lcow_error *err)
{
    c->broken = true;
    snprintf(c->broken_reason, sizeof c->broken_reason, "%s", err ? err->message : "");
    return LCOW_UNAVAILABLE;
}

static lcow_code check_usable(lcow_client *c, lcow_error *err)
{
    if (c->broken)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "connection unusable after: %s",
                              c->broken_reason);
    return LCOW_OK;
}

lcow_code lcow_client_send_raw(lcow_client *c, const void *data, size_t len, lcow_error *err)
{
    lcow_code code = check_usable(c, err);
    if (code != LCOW_OK)
        return code;
    lcow_error local;
    code = lcow_transport_write(c->transport, data, len, c->call_timeout_ms, &local);
    if (code != LCOW_OK) {
        lcow_error_set(err, code, "%s", local.message);
        return fail(c, &local);
    }
    return LCOW_OK;
}

lcow_code lcow_client_send(lcow_client *c, lcow_method method, const lcow_params *params,
                           uint32_t *msgid, lcow_error *err)
{
    lcow_code code = check_usable(c, err);
    if (code != LCOW_OK)
        return code;
    uint32_t id = c->next_msgid++;
    msgpack_packer pk;
    c->sbuf.size = 0;
    msgpack_packer_init(&pk, &c->sbuf, lcow_sbuffer_write);
    if (!lcow_proto_encode_request(&pk, id, method, params))
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory encoding a request");
    if (msgid)
        *msgid = id;
    return lcow_client_send_raw(c, c->sbuf.data, c->sbuf.size, err);
}

/* Reads the next complete msgpack object into *object, valid until
 * lcow_unpacker_recycle(&c->unpacker). */
static lcow_code read_object(lcow_client *c, msgpack_object *object, lcow_error *err)
{
    unsigned long long deadline = 0;
    if (c->call_timeout_ms)
        deadline = lcow_transport_now_ms() + c->call_timeout_ms;
    bool first_read = true; /* the whole timeout is left: no clock read */
    for (;;) {
        msgpack_unpack_return ret = lcow_unpacker_next(&c->unpacker, object);
        if (ret == MSGPACK_UNPACK_SUCCESS)
            return LCOW_OK;
        if (ret != MSGPACK_UNPACK_CONTINUE) {
            lcow_error_set(err, LCOW_UNAVAILABLE, "malformed response from the server");
            return fail(c, err);
        }
        if (msgpack_unpacker_message_size(&c->unpacker) > LCOW_CLIENT_MAX_RESPONSE_BYTES) {
            lcow_error_set(err, LCOW_UNAVAILABLE, "response larger than %zu bytes",
                           LCOW_CLIENT_MAX_RESPONSE_BYTES);
            return fail(c, err);
        }
        unsigned timeout = c->call_timeout_ms;
        if (deadline && !first_read) {
            unsigned long long now = lcow_transport_now_ms();
            if (now >= deadline) {
                lcow_error_set(err, LCOW_UNAVAILABLE, "no response within %u ms",
                               c->call_timeout_ms);
                return fail(c, err);
            }
            timeout = (unsigned)(deadline - now);
        }
        first_read = false;
        if (!msgpack_unpacker_reserve_buffer(&c->unpacker, CLIENT_READ_CHUNK)) {
            lcow_error_set(err, LCOW_UNAVAILABLE, "out of memory reading a response");
            return fail(c, err);
        }
        size_t got = 0;
        lcow_code code =
            lcow_transport_read(c->transport, msgpack_unpacker_buffer(&c->unpacker),
                                msgpack_unpacker_buffer_capacity(&c->unpacker), &got, timeout, err);
        if (code != LCOW_OK)
            return fail(c, err);
        msgpack_unpacker_buffer_consumed(&c->unpacker, got);
    }
}

lcow_code lcow_client_receive(lcow_client *c, lcow_method method, uint32_t *msgid,
                              lcow_result *result, lcow_error *call_err, lcow_error *err)
{
    memset(result, 0, sizeof *result);
    lcow_code code = check_usable(c, err);
    if (code != LCOW_OK)
        return code;
    msgpack_object object;
    code = read_object(c, &object, err);
    if (code == LCOW_OK) {
        bool has_msgid = false;
        uint32_t id = 0;
        lcow_error decode_err;
        if (lcow_proto_decode_response(&object, method, &has_msgid, &id, call_err, result,
                                       &decode_err) != LCOW_OK) {
            lcow_error_set(err, LCOW_UNAVAILABLE, "bad response: %s", decode_err.message);
            code = fail(c, err);
        } else if (msgid) {
            *msgid = has_msgid ? id : 0;
        }
        lcow_unpacker_recycle(&c->unpacker);
    }
    return code;
}

lcow_code lcow_client_receive_raw(lcow_client *c, bool *has_msgid, uint32_t *msgid,
                                  lcow_error *call_err, lcow_error *err)
{
    lcow_code code = check_usable(c, err);
    if (code != LCOW_OK)
        return code;
    msgpack_object object;
    code = read_object(c, &object, err);
    if (code == LCOW_OK) {
        lcow_result ignored;
        lcow_error decode_err;
        /* Version has no required params; the result map is not checked
         * for errors, and for successes only its shape matters here. */
        msgpack_object *o = &object;
        if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4 &&
            o->via.array.ptr[2].type == MSGPACK_OBJECT_NIL) {
            lcow_error_clear(call_err);
            *has_msgid = o->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
            *msgid = *has_msgid ? (uint32_t)o->via.array.ptr[1].via.u64 : 0;
        } else if (lcow_proto_decode_response(o, LCOW_METHOD_VERSION, has_msgid, msgid, call_err,
                                              &ignored, &decode_err) != LCOW_OK) {
            lcow_error_set(err, LCOW_UNAVAILABLE, "bad response: %s", decode_err.message);
            code = fail(c, err);
        } else {
            lcow_result_free(&ignored);
        }
        lcow_unpacker_recycle(&c->unpacker);
    }
    return code;
}

lcow_code lcow_client_call(lcow_client *c, lcow_method method, const lcow_params *params,
                           lcow_result *result, lcow_error *err)
{
    memset(result, 0, sizeof *result);
    uint32_t sent = 0, got = 0;
    lcow_code code = lcow_client_send(c, method, params, &sent, err);
    if (code != LCOW_OK)
        return code;
    lcow_error call_err;
    code = lcow_client_receive(c, method, &got, result, &call_err, err);
    if (code != LCOW_OK)
        return code;
    if (got != sent) {
        lcow_result_free(result);
        lcow_error_set(err, LCOW_UNAVAILABLE, "response msgid %u does not match request %u",
                       (unsigned)got, (unsigned)sent);
        return fail(c, err);
    }
    if (call_err.code != LCOW_OK) {
        lcow_result_free(result);
        return lcow_error_set(err, call_err.code, "%s", call_err.message);
    }
    return LCOW_OK;
}

/* ---- typed wrappers ------------------------------------------------------ */

/* The params structs only borrow the caller's strings for encoding. */
#define BORROW(s) ((char *)(s))

static lcow_params borrow_labels(const lcow_labels *labels)
{
    lcow_params p;
    memset(&p, 0, sizeof p);
    if (labels)
        p.labels = *labels;
    return p;
}

static lcow_code mounts_call(lcow_client *c, lcow_method method, lcow_params *p,
                             lcow_mounts *mounts, lcow_error *err)
{
    lcow_result r;
    lcow_code code = lcow_client_call(c, method, p, &r, err);
    if (code == LCOW_OK) {
        *mounts = r.mounts;
        memset(&r.mounts, 0, sizeof r.mounts);
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_prepare(lcow_client *c, const char *key, const char *parent,
                              const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    lcow_params p = borrow_labels(labels);
    p.key = BORROW(key);
    p.parent = (parent && parent[0]) ? BORROW(parent) : NULL;
    return mounts_call(c, LCOW_METHOD_PREPARE, &p, mounts, err);
}

lcow_code lcow_client_view(lcow_client *c, const char *key, const char *parent,
                           const lcow_labels *labels, lcow_mounts *mounts, lcow_error *err)
{
    lcow_params p = borrow_labels(labels);
    p.key = BORROW(key);
    p.parent = (parent && parent[0]) ? BORROW(parent) : NULL;
    return mounts_call(c, LCOW_METHOD_VIEW, &p, mounts, err);
}

lcow_code lcow_client_mounts(lcow_client *c, const char *key, lcow_mounts *mounts, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = BORROW(key);
    return mounts_call(c, LCOW_METHOD_MOUNTS, &p, mounts, err);
}

static lcow_code empty_call(lcow_client *c, lcow_method method, lcow_params *p, lcow_error *err)
{
    lcow_result r;
    lcow_code code = lcow_client_call(c, method, p, &r, err);
    if (code == LCOW_OK)
        lcow_result_free(&r);
    return code;
}

lcow_code lcow_client_commit(lcow_client *c, const char *name, const char *key,
                             const lcow_labels *labels, const char *parent, lcow_error *err)
{
    lcow_params p = borrow_labels(labels);
    p.name = BORROW(name);
    p.key = BORROW(key);
    p.parent = (parent && parent[0]) ? BORROW(parent) : NULL;
    return empty_call(c, LCOW_METHOD_COMMIT, &p, err);
}

lcow_code lcow_client_remove(lcow_client *c, const char *key, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = BORROW(key);
    return empty_call(c, LCOW_METHOD_REMOVE, &p, err);
}

lcow_code lcow_client_cleanup(lcow_client *c, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    return empty_call(c, LCOW_METHOD_CLEANUP, &p, err);
}

static lcow_code info_call(lcow_client *c, lcow_method method, lcow_params *p, lcow_info *info,
                           lcow_error *err)
{
    lcow_result r;
    lcow_code code = lcow_client_call(c, method, p, &r, err);
    if (code == LCOW_OK) {
        *info = r.info;
        memset(&r.info, 0, sizeof r.info);
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_stat(lcow_client *c, const char *key, lcow_info *info, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = BORROW(key);
    return info_call(c, LCOW_METHOD_STAT, &p, info, err);
}

lcow_code lcow_client_update(lcow_client *c, const lcow_info *info, const char *const *fieldpaths,
                             size_t fieldpath_count, lcow_info *out, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.info = *info;
    p.has_info = true;
    p.fieldpaths.items = (char **)fieldpaths;
    p.fieldpaths.count = fieldpath_count;
    return info_call(c, LCOW_METHOD_UPDATE, &p, out, err);
}

lcow_code lcow_client_usage(lcow_client *c, const char *key, lcow_usage *usage, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = BORROW(key);
    lcow_result r;
    lcow_code code = lcow_client_call(c, LCOW_METHOD_USAGE, &p, &r, err);
    if (code == LCOW_OK) {
        usage->size = r.size;
        usage->inodes = r.inodes;
        usage->ext4_used_bytes = r.ext4_used_bytes;
        usage->ext4_used_inodes = r.ext4_used_inodes;
        usage->ext4_total_bytes = r.ext4_total_bytes;
        usage->ext4_total_inodes = r.ext4_total_inodes;
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_layers(lcow_client *c, lcow_layer_entries *layers, lcow_error *err)
{
    lcow_result r;
    memset(layers, 0, sizeof *layers);
    lcow_code code = lcow_client_call(c, LCOW_METHOD_LAYERS, NULL, &r, err);
    if (code == LCOW_OK) {
        *layers = r.layers;
        r.layers = (lcow_layer_entries){0};
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_prune_layers(lcow_client *c, bool all, uint64_t older_than_seconds,
                                   int64_t *layers, int64_t *bytes, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.all = all;
    p.older_than_seconds = older_than_seconds;
    lcow_result r;
    lcow_code code = lcow_client_call(c, LCOW_METHOD_PRUNE_LAYERS, &p, &r, err);
    if (code == LCOW_OK) {
        if (layers)
            *layers = r.pruned_layers;
        if (bytes)
            *bytes = r.pruned_bytes;
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_compact(lcow_client *c, const char *key, lcow_compact_summary *summary,
                              lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = key ? BORROW(key) : NULL;
    p.all = key == NULL;
    lcow_result r;
    memset(summary, 0, sizeof *summary);
    lcow_code code = lcow_client_call(c, LCOW_METHOD_COMPACT, &p, &r, err);
    if (code == LCOW_OK) {
        *summary = r.compact;
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_walk(lcow_client *c, const char *const *filters, size_t filter_count,
                           size_t limit, const char *after, lcow_infos *infos, char **next,
                           lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.filters.items = (char **)filters;
    p.filters.count = filter_count;
    p.limit = limit;
    p.after = (after && after[0]) ? BORROW(after) : NULL;
    lcow_result r;
    *next = NULL;
    lcow_code code = lcow_client_call(c, LCOW_METHOD_WALK, &p, &r, err);
    if (code == LCOW_OK) {
        *infos = r.infos;
        *next = r.next;
        memset(&r.infos, 0, sizeof r.infos);
        r.next = NULL;
        lcow_result_free(&r);
    }
    return code;
}

lcow_code lcow_client_walk_all(lcow_client *c, const char *const *filters, size_t filter_count,
                               int (*fn)(void *ctx, const lcow_info *info), void *ctx,
                               lcow_error *err)
{
    char *after = NULL;
    for (;;) {
        lcow_infos page;
        char *next = NULL;
        lcow_code code = lcow_client_walk(c, filters, filter_count, 0, after, &page, &next, err);
        free(after);
        if (code != LCOW_OK)
            return code;
        bool stop = false;
        for (size_t i = 0; i < page.count && !stop; i++)
            stop = fn(ctx, &page.items[i]) != 0;
        lcow_infos_free(&page);
        if (stop || !next) {
            free(next);
            return LCOW_OK;
        }
        after = next;
    }
}

lcow_code lcow_client_version(lcow_client *c, lcow_result *result, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    return lcow_client_call(c, LCOW_METHOD_VERSION, &p, result, err);
}

lcow_code lcow_client_status(lcow_client *c, lcow_result *result, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    return lcow_client_call(c, LCOW_METHOD_STATUS, &p, result, err);
}

lcow_code lcow_client_create_scratch(lcow_client *c, const char *path, uint32_t size_gb,
                                     uint32_t block_size_mb, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.path = BORROW(path);
    p.size_gb = size_gb;
    p.block_size_mb = block_size_mb;
    return empty_call(c, LCOW_METHOD_CREATE_SCRATCH, &p, err);
}

lcow_code lcow_client_apply(lcow_client *c, const char *key, const char *path,
                            const char *media_type, const char *digest, bool verity,
                            lcow_result *result, lcow_error *err)
{
    lcow_params p = borrow_labels(NULL);
    p.key = BORROW(key);
    p.path = BORROW(path);
    p.media_type = BORROW(media_type);
    p.digest = BORROW(digest);
    p.verity = verity;
    return lcow_client_call(c, LCOW_METHOD_APPLY, &p, result, err);
}

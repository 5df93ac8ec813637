/* containerd snapshots API messages <-> lcow_params / lcow_result. See
 * codec.h. */
#include "grpc/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "google/protobuf/empty.pb-c.h"
#include "services/snapshots/v1/snapshots.pb-c.h"
#include "types/mount.pb-c.h"

#define SVC(name) containerd__services__snapshots__v1__##name##__descriptor

typedef struct method_row {
    const char *name;
    lcow_method core;
    const ProtobufCMessageDescriptor *request;
} method_row;

static const method_row methods[LCOW_GRPC_METHOD_COUNT] = {
    [LCOW_GRPC_PREPARE] = {"Prepare", LCOW_METHOD_PREPARE, &SVC(prepare_snapshot_request)},
    [LCOW_GRPC_VIEW] = {"View", LCOW_METHOD_VIEW, &SVC(view_snapshot_request)},
    [LCOW_GRPC_MOUNTS] = {"Mounts", LCOW_METHOD_MOUNTS, &SVC(mounts_request)},
    [LCOW_GRPC_COMMIT] = {"Commit", LCOW_METHOD_COMMIT, &SVC(commit_snapshot_request)},
    [LCOW_GRPC_REMOVE] = {"Remove", LCOW_METHOD_REMOVE, &SVC(remove_snapshot_request)},
    [LCOW_GRPC_STAT] = {"Stat", LCOW_METHOD_STAT, &SVC(stat_snapshot_request)},
    [LCOW_GRPC_UPDATE] = {"Update", LCOW_METHOD_UPDATE, &SVC(update_snapshot_request)},
    [LCOW_GRPC_LIST] = {"List", LCOW_METHOD_WALK, &SVC(list_snapshots_request)},
    [LCOW_GRPC_USAGE] = {"Usage", LCOW_METHOD_USAGE, &SVC(usage_request)},
    [LCOW_GRPC_CLEANUP] = {"Cleanup", LCOW_METHOD_CLEANUP, &SVC(cleanup_request)},
};

const char *lcow_grpc_method_name(lcow_grpc_method method)
{
    return (unsigned)method < LCOW_GRPC_METHOD_COUNT ? methods[method].name : NULL;
}

lcow_method lcow_grpc_core_method(lcow_grpc_method method)
{
    return (unsigned)method < LCOW_GRPC_METHOD_COUNT ? methods[method].core : LCOW_METHOD_COUNT;
}

lcow_code lcow_grpc_method_lookup(const char *path, size_t len, lcow_grpc_method *out,
                                  lcow_error *err)
{
    /* "/<service>/<method>", as grpc-go splits it: at the last '/'. */
    const char *slash = NULL;
    for (size_t i = len; i > 1; i--) {
        if (path[i - 1] == '/') {
            slash = path + i - 1;
            break;
        }
    }
    if (len < 1 || path[0] != '/' || !slash || slash == path)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "malformed method name: \"%.*s\"",
                              (int)(len > 200 ? 200 : len), path);
    size_t service_len = (size_t)(slash - path) - 1;
    const char *method = slash + 1;
    size_t method_len = len - (size_t)(method - path);
    if (service_len != strlen(LCOW_GRPC_SERVICE) ||
        memcmp(path + 1, LCOW_GRPC_SERVICE, service_len) != 0)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "unknown service %.*s",
                              (int)(service_len > 200 ? 200 : service_len), path + 1);
    for (int m = 0; m < LCOW_GRPC_METHOD_COUNT; m++) {
        if (strlen(methods[m].name) == method_len &&
            memcmp(methods[m].name, method, method_len) == 0) {
            *out = (lcow_grpc_method)m;
            return LCOW_OK;
        }
    }
    return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "unknown method %.*s for service %s",
                          (int)(method_len > 200 ? 200 : method_len), method, LCOW_GRPC_SERVICE);
}

/* ---- decoding ---------------------------------------------------------- */

/* protobuf-c's allocator for decoding: a size header before every block
 * (so a string's length as received is known: strlen shorter = a NUL
 * inside) and a bound on the total. */
#define HDR 16

typedef struct dec_alloc {
    size_t used, limit;
    bool refused;
} dec_alloc;

static void *dec_alloc_fn(void *ctx, size_t n)
{
    dec_alloc *a = ctx;
    if (n > a->limit || a->used > a->limit - n || n > SIZE_MAX - HDR) {
        a->refused = true;
        return NULL;
    }
    unsigned char *p = malloc(HDR + n);
    if (!p) {
        a->refused = true;
        return NULL;
    }
    memcpy(p, &n, sizeof n);
    a->used += n;
    return p + HDR;
}

static void dec_free_fn(void *ctx, void *ptr)
{
    if (!ptr)
        return;
    dec_alloc *a = ctx;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    a->used -= n;
    free(p);
}

static size_t dec_size(const void *ptr)
{
    size_t n;
    memcpy(&n, (const unsigned char *)ptr - HDR, sizeof n);
    return n;
}

/* A map entry message: fields "key" = 1 and "value" = 2, nothing else. */
static bool is_map_entry(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 2 && d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 &&
           d->fields[1].id == 2 && strcmp(d->fields[1].name, "value") == 0;
}

static lcow_code check_string(const char *s, const char *what, lcow_error *err)
{
    if (!s || s == protobuf_c_empty_string)
        return LCOW_OK;
    size_t n = dec_size(s) - 1; /* protobuf-c allocates length + 1 */
    if (strlen(s) != n || !lcow_utf8_valid(s, n))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: not valid UTF-8", what);
    return LCOW_OK;
}

/* Every string field at any depth: UTF-8 without NUL. what is the field's
 * path ("info.labels"; a map's entries report the map's name). */
static lcow_code check_strings(const ProtobufCMessage *m, const char *path, int depth,
                               lcow_error *err)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    bool entry = is_map_entry(d);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        char what[128];
        if (entry)
            snprintf(what, sizeof what, "%s", path);
        else
            snprintf(what, sizeof what, "%s%s%s", path, path[0] ? "." : "", f->name);
        const char *base = (const char *)m;
        size_t count = 1;
        const void *const *items = (const void *const *)(base + f->offset);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            memcpy(&count, base + f->quantifier_offset, sizeof count);
            items = *(const void *const *const *)(base + f->offset);
        }
        for (size_t k = 0; k < count; k++) {
            lcow_code code = LCOW_OK;
            if (f->type == PROTOBUF_C_TYPE_STRING)
                code = check_string(items[k], what, err);
            else if (items[k] && depth < 8)
                code = check_strings(items[k], what, depth + 1, err);
            if (code != LCOW_OK)
                return code;
        }
    }
    return LCOW_OK;
}

static char *dup_cstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* A required string: copied as it is ("" included). */
static bool take_str(char **dst, const char *s)
{
    *dst = dup_cstr(s ? s : "");
    return *dst != NULL;
}

/* An optional string: "" (proto3's absent) stays NULL. */
static bool take_opt(char **dst, const char *s)
{
    if (!s || !s[0])
        return true;
    return take_str(dst, s);
}

/* map<string, string> entries: last one wins, as protobuf merges maps. An
 * empty value removes the key (lcow_labels_set), as containerd never stores
 * one. */
static lcow_code take_labels(lcow_labels *labels, size_t n, ProtobufCMessage *const *entries,
                             const char *what, lcow_error *err)
{
    if (n > LCOW_MAX_LABELS)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: more than %d labels", what,
                              LCOW_MAX_LABELS);
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessageDescriptor *d = entries[i]->descriptor;
        const char *base = (const char *)entries[i];
        const char *key, *value;
        memcpy(&key, base + d->fields[0].offset, sizeof key);
        memcpy(&value, base + d->fields[1].offset, sizeof value);
        if (!lcow_labels_set(labels, key ? key : "", value ? value : ""))
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    return LCOW_OK;
}

#define OOM() lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory")

static lcow_code take_info(lcow_params *p, const Containerd__Services__Snapshots__V1__Info *info,
                           lcow_error *err)
{
    if (!info || !info->name || !info->name[0])
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info: missing required field \"name\"");
    int kind = (int)info->kind;
    if (kind < 0 || kind > 3)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "info.kind: %d is not active, view or committed", kind);
    p->info.kind = (lcow_kind)kind;
    if (!take_str(&p->info.name, info->name) || !take_str(&p->info.parent, info->parent))
        return OOM();
    if (info->created_at) {
        p->info.created.sec = info->created_at->seconds;
        p->info.created.nsec = (uint32_t)info->created_at->nanos;
    }
    if (info->updated_at) {
        p->info.updated.sec = info->updated_at->seconds;
        p->info.updated.nsec = (uint32_t)info->updated_at->nanos;
    }
    p->has_info = true;
    return take_labels(&p->info.labels, info->n_labels, (ProtobufCMessage *const *)info->labels,
                       "info.labels", err);
}

static lcow_code take_strv(lcow_strv *v, size_t n, char *const *items, lcow_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!lcow_strv_push(v, items[i] ? items[i] : ""))
            return OOM();
    }
    return LCOW_OK;
}

/* The message's fields into p (strings already checked). */
static lcow_code take_params(lcow_grpc_method method, const ProtobufCMessage *msg, lcow_params *p,
                             lcow_error *err)
{
    switch (method) {
    case LCOW_GRPC_PREPARE: {
        const Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *r = (const void *)msg;
        if (!take_str(&p->key, r->key) || !take_opt(&p->parent, r->parent))
            return OOM();
        return take_labels(&p->labels, r->n_labels, (ProtobufCMessage *const *)r->labels, "labels",
                           err);
    }
    case LCOW_GRPC_VIEW: {
        const Containerd__Services__Snapshots__V1__ViewSnapshotRequest *r = (const void *)msg;
        if (!take_str(&p->key, r->key) || !take_opt(&p->parent, r->parent))
            return OOM();
        return take_labels(&p->labels, r->n_labels, (ProtobufCMessage *const *)r->labels, "labels",
                           err);
    }
    case LCOW_GRPC_COMMIT: {
        const Containerd__Services__Snapshots__V1__CommitSnapshotRequest *r = (const void *)msg;
        if (!take_str(&p->name, r->name) || !take_str(&p->key, r->key) ||
            !take_opt(&p->parent, r->parent))
            return OOM();
        return take_labels(&p->labels, r->n_labels, (ProtobufCMessage *const *)r->labels, "labels",
                           err);
    }
    case LCOW_GRPC_MOUNTS: {
        const Containerd__Services__Snapshots__V1__MountsRequest *r = (const void *)msg;
        return take_str(&p->key, r->key) ? LCOW_OK : OOM();
    }
    case LCOW_GRPC_REMOVE: {
        const Containerd__Services__Snapshots__V1__RemoveSnapshotRequest *r = (const void *)msg;
        return take_str(&p->key, r->key) ? LCOW_OK : OOM();
    }
    case LCOW_GRPC_STAT: {
        const Containerd__Services__Snapshots__V1__StatSnapshotRequest *r = (const void *)msg;
        return take_str(&p->key, r->key) ? LCOW_OK : OOM();
    }
    case LCOW_GRPC_USAGE: {
        const Containerd__Services__Snapshots__V1__UsageRequest *r = (const void *)msg;
        return take_str(&p->key, r->key) ? LCOW_OK : OOM();
    }
    case LCOW_GRPC_UPDATE: {
        const Containerd__Services__Snapshots__V1__UpdateSnapshotRequest *r = (const void *)msg;
        lcow_code code = take_info(p, r->info, err);
        if (code == LCOW_OK && r->update_mask)
            code = take_strv(&p->fieldpaths, r->update_mask->n_paths, r->update_mask->paths, err);
        return code;
    }
    case LCOW_GRPC_LIST: {
        const Containerd__Services__Snapshots__V1__ListSnapshotsRequest *r = (const void *)msg;
        return take_strv(&p->filters, r->n_filters, r->filters, err);
    }
    case LCOW_GRPC_CLEANUP:
    default:
        return LCOW_OK;
    }
}

lcow_code lcow_grpc_decode_request(lcow_grpc_method method, const uint8_t *data, size_t len,
                                   lcow_request *req, lcow_error *err)
{
    memset(req, 0, sizeof *req);
    if ((unsigned)method >= LCOW_GRPC_METHOD_COUNT)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "method not implemented");
    req->method = methods[method].core;
    dec_alloc a = {0, len * 16 + ((size_t)64 << 10), false};
    if (len > (SIZE_MAX - ((size_t)64 << 10)) / 16)
        a.limit = SIZE_MAX / 2;
    ProtobufCAllocator allocator = {dec_alloc_fn, dec_free_fn, &a};
    ProtobufCMessage *msg = protobuf_c_message_unpack(methods[method].request, &allocator, len,
                                                      len ? data : (const uint8_t *)"");
    if (!msg) {
        if (a.refused)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                  "%s: the request message needs too much memory to decode",
                                  methods[method].name);
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "%s: the request is not a valid %s protobuf message",
                              methods[method].name, methods[method].request->short_name);
    }
    lcow_code code = check_strings(msg, "", 0, err);
    if (code == LCOW_OK)
        code = take_params(method, msg, &req->params, err);
    protobuf_c_message_free_unpacked(msg, &allocator);
    return code;
}

/* ---- encoding ---------------------------------------------------------- */

void lcow_grpc_message_prefix(uint8_t prefix[5], size_t len)
{
    prefix[0] = 0; /* not compressed */
    prefix[1] = (uint8_t)(len >> 24);
    prefix[2] = (uint8_t)(len >> 16);
    prefix[3] = (uint8_t)(len >> 8);
    prefix[4] = (uint8_t)len;
}

typedef struct sbuf_appender {
    ProtobufCBuffer base;
    msgpack_sbuffer *out;
    bool failed;
} sbuf_appender;

static void sbuf_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data)
{
    sbuf_appender *a = (sbuf_appender *)buffer;
    if (!a->failed && msgpack_sbuffer_write(a->out, (const char *)data, len) != 0)
        a->failed = true;
}

/* Appends msg as one length-prefixed gRPC message. */
static bool append_message(const ProtobufCMessage *msg, msgpack_sbuffer *out)
{
    size_t before = out->size;
    size_t len = protobuf_c_message_get_packed_size(msg);
    if (len > UINT32_MAX)
        return false;
    uint8_t prefix[5];
    lcow_grpc_message_prefix(prefix, len);
    sbuf_appender a = {{sbuf_append}, out, false};
    if (msgpack_sbuffer_write(out, (const char *)prefix, sizeof prefix) == 0)
        protobuf_c_message_pack_to_buffer(msg, &a.base);
    else
        a.failed = true;
    if (a.failed || out->size != before + 5 + len) {
        out->size = before;
        return false;
    }
    return true;
}

typedef Containerd__Services__Snapshots__V1__Info pb_info;
typedef Containerd__Services__Snapshots__V1__Info__LabelsEntry pb_label;

/* An Info message over an lcow_info's strings (nothing copied). */
typedef struct info_msg {
    pb_info info;
    Google__Protobuf__Timestamp created, updated;
    pb_label *entries;
    pb_label **entry_ptrs;
} info_msg;

static bool info_msg_init(info_msg *m, const lcow_info *info)
{
    pb_info init = CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    m->info = init;
    m->created = ts;
    m->updated = ts;
    m->entries = NULL;
    m->entry_ptrs = NULL;
    m->info.name = info->name ? info->name : (char *)protobuf_c_empty_string;
    m->info.parent = info->parent ? info->parent : (char *)protobuf_c_empty_string;
    m->info.kind = (Containerd__Services__Snapshots__V1__Kind)info->kind;
    m->created.seconds = info->created.sec;
    m->created.nanos = (int32_t)info->created.nsec;
    m->updated.seconds = info->updated.sec;
    m->updated.nanos = (int32_t)info->updated.nsec;
    m->info.created_at = &m->created;
    m->info.updated_at = &m->updated;
    if (info->labels.count == 0)
        return true;
    m->entries = calloc(info->labels.count, sizeof *m->entries);
    m->entry_ptrs = calloc(info->labels.count, sizeof *m->entry_ptrs);
    if (!m->entries || !m->entry_ptrs) {
        free(m->entries);
        free(m->entry_ptrs);
        return false;
    }
    pb_label entry_init = CONTAINERD__SERVICES__SNAPSHOTS__V1__INFO__LABELS_ENTRY__INIT;
    for (size_t i = 0; i < info->labels.count; i++) {
        m->entries[i] = entry_init;
        m->entries[i].key = info->labels.items[i].key;
        m->entries[i].value = info->labels.items[i].value;
        m->entry_ptrs[i] = &m->entries[i];
    }
    m->info.n_labels = info->labels.count;
    m->info.labels = m->entry_ptrs;
    return true;
}

static void info_msg_free(info_msg *m)
{
    free(m->entries);
    free(m->entry_ptrs);
}

typedef struct mounts_msg {
    Containerd__Types__Mount *items;
    Containerd__Types__Mount **ptrs;
} mounts_msg;

static bool mounts_msg_init(mounts_msg *m, const lcow_mounts *mounts)
{
    m->items = NULL;
    m->ptrs = NULL;
    if (mounts->count == 0)
        return true;
    m->items = calloc(mounts->count, sizeof *m->items);
    m->ptrs = calloc(mounts->count, sizeof *m->ptrs);
    if (!m->items || !m->ptrs) {
        free(m->items);
        free(m->ptrs);
        return false;
    }
    Containerd__Types__Mount init = CONTAINERD__TYPES__MOUNT__INIT;
    for (size_t i = 0; i < mounts->count; i++) {
        const lcow_mount *src = &mounts->items[i];
        m->items[i] = init;
        m->items[i].type = src->type ? src->type : (char *)protobuf_c_empty_string;
        m->items[i].source = src->source ? src->source : (char *)protobuf_c_empty_string;
        m->items[i].n_options = src->option_count;
        m->items[i].options = src->options;
        m->ptrs[i] = &m->items[i];
    }
    return true;
}

bool lcow_grpc_encode_result(lcow_grpc_method method, const lcow_result *r, msgpack_sbuffer *out)
{
    switch (method) {
    case LCOW_GRPC_PREPARE:
    case LCOW_GRPC_VIEW:
    case LCOW_GRPC_MOUNTS: {
        /* The three responses are the same message: repeated Mount = 1. */
        Containerd__Services__Snapshots__V1__PrepareSnapshotResponse prep =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_RESPONSE__INIT;
        Containerd__Services__Snapshots__V1__ViewSnapshotResponse view =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__VIEW_SNAPSHOT_RESPONSE__INIT;
        Containerd__Services__Snapshots__V1__MountsResponse mnts =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_RESPONSE__INIT;
        mounts_msg m;
        if (!mounts_msg_init(&m, &r->mounts))
            return false;
        prep.n_mounts = view.n_mounts = mnts.n_mounts = r->mounts.count;
        prep.mounts = view.mounts = mnts.mounts = m.ptrs;
        const ProtobufCMessage *msg = method == LCOW_GRPC_PREPARE ? &prep.base
                                      : method == LCOW_GRPC_VIEW  ? &view.base
                                                                  : &mnts.base;
        bool ok = append_message(msg, out);
        free(m.items);
        free(m.ptrs);
        return ok;
    }
    case LCOW_GRPC_STAT:
    case LCOW_GRPC_UPDATE: {
        Containerd__Services__Snapshots__V1__StatSnapshotResponse stat =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_RESPONSE__INIT;
        Containerd__Services__Snapshots__V1__UpdateSnapshotResponse upd =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__UPDATE_SNAPSHOT_RESPONSE__INIT;
        info_msg m;
        if (!info_msg_init(&m, &r->info))
            return false;
        stat.info = upd.info = &m.info;
        bool ok = append_message(method == LCOW_GRPC_STAT ? &stat.base : &upd.base, out);
        info_msg_free(&m);
        return ok;
    }
    case LCOW_GRPC_USAGE: {
        Containerd__Services__Snapshots__V1__UsageResponse usage =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
        usage.size = r->size;
        usage.inodes = r->inodes;
        return append_message(&usage.base, out);
    }
    case LCOW_GRPC_COMMIT:
    case LCOW_GRPC_REMOVE:
    case LCOW_GRPC_CLEANUP: {
        Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT;
        return append_message(&empty.base, out);
    }
    default:
        return false;
    }
}

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t lcow_grpc_encode_infos(const lcow_info *infos, size_t count, size_t max_bytes,
                              msgpack_sbuffer *out)
{
    if (count == 0)
        return 0;
    info_msg *msgs = calloc(count, sizeof *msgs);
    pb_info **ptrs = calloc(count, sizeof *ptrs);
    size_t n = 0, total = 0;
    bool ok = msgs && ptrs;
    while (ok && n < count) {
        if (!info_msg_init(&msgs[n], &infos[n])) {
            ok = false;
            break;
        }
        size_t len = protobuf_c_message_get_packed_size(&msgs[n].info.base);
        size_t field = 1 + varint_size(len) + len; /* repeated Info info = 1 */
        if (n > 0 && total + field > max_bytes) {
            info_msg_free(&msgs[n]);
            break;
        }
        ptrs[n] = &msgs[n].info;
        total += field;
        n++;
    }
    if (ok) {
        Containerd__Services__Snapshots__V1__ListSnapshotsResponse resp =
            CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
        resp.n_info = n;
        resp.info = ptrs;
        ok = append_message(&resp.base, out);
    }
    for (size_t i = 0; msgs && i < n; i++)
        info_msg_free(&msgs[i]);
    free(msgs);
    free(ptrs);
    return ok ? n : 0;
}

/* ---- status ------------------------------------------------------------ */

int lcow_grpc_status(lcow_code code)
{
    switch (code) {
    case LCOW_OK:
        return 0;
    case LCOW_NOT_FOUND:
        return 5;
    case LCOW_ALREADY_EXISTS:
        return 6;
    case LCOW_INVALID_ARGUMENT:
        return 3;
    case LCOW_FAILED_PRECONDITION:
        return 9;
    case LCOW_RESOURCE_EXHAUSTED:
        return 8;
    case LCOW_UNAVAILABLE:
        return 14;
    case LCOW_NOT_IMPLEMENTED:
        return 12;
    default:
        return 13;
    }
}

lcow_code lcow_grpc_code_from_status(int status)
{
    switch (status) {
    case 0:
        return LCOW_OK;
    case 5:
        return LCOW_NOT_FOUND;
    case 6:
        return LCOW_ALREADY_EXISTS;
    case 3:
        return LCOW_INVALID_ARGUMENT;
    case 9:
        return LCOW_FAILED_PRECONDITION;
    case 8:
        return LCOW_RESOURCE_EXHAUSTED;
    case 14:
        return LCOW_UNAVAILABLE;
    case 12:
        return LCOW_NOT_IMPLEMENTED;
    default:
        return LCOW_INTERNAL;
    }
}

size_t lcow_grpc_percent_encode(const char *message, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    if (cap == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)message; *p; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        size_t need = plain ? 1 : 3;
        if (n + need >= cap)
            break;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void lcow_grpc_percent_decode(char *message)
{
    char *w = message;
    for (const char *r = message; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

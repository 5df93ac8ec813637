/* Protocol v1 codec: field tables per method and one generic walker.
 * See proto.h for the rules. */
#include "rpc/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack/timestamp.h>

#include "core/base/alloc.h"

typedef enum field_type {
    FT_STR,      /* char * */
    FT_LABELS,   /* lcow_labels */
    FT_INFO,     /* lcow_info, presence flag at aux */
    FT_STRV,     /* lcow_strv */
    FT_U64,      /* uint64_t */
    FT_U32,      /* uint32_t, must be > 0 when present */
    FT_I64,      /* int64_t */
    FT_MOUNTS,   /* lcow_mounts */
    FT_INFOS,    /* lcow_infos */
    FT_BOOL,     /* bool; absent = false */
    FT_COUNTERS, /* lcow_counters: a map of string -> integer */
    FT_TIME,     /* lcow_time: a msgpack Timestamp */
    FT_LAYERS,   /* lcow_layer_entries: an array of layer_fields maps */
} field_type;

typedef struct field_spec {
    const char *name;
    field_type type;
    bool required;
    size_t offset;
    size_t aux; /* FT_INFO: offset of its bool presence flag */
} field_spec;

#define P(f) offsetof(lcow_params, f)
#define R(f) offsetof(lcow_result, f)

static const field_spec prepare_params[] = {
    {"key", FT_STR, true, P(key)},
    {"parent", FT_STR, false, P(parent)},
    {"labels", FT_LABELS, false, P(labels)},
};
static const field_spec key_params[] = {{"key", FT_STR, true, P(key)}};
static const field_spec commit_params[] = {
    {"name", FT_STR, true, P(name)},
    {"key", FT_STR, true, P(key)},
    {"labels", FT_LABELS, false, P(labels)},
    {"parent", FT_STR, false, P(parent)},
};
static const field_spec update_params[] = {
    {"info", FT_INFO, true, P(info), P(has_info)},
    {"fieldpaths", FT_STRV, false, P(fieldpaths)},
};
static const field_spec walk_params[] = {
    {"filters", FT_STRV, false, P(filters)},
    {"limit", FT_U64, false, P(limit)},
    {"after", FT_STR, false, P(after)},
};
static const field_spec scratch_params[] = {
    {"path", FT_STR, true, P(path)},
    {"size_gb", FT_U32, false, P(size_gb)},
    {"block_size_mb", FT_U32, false, P(block_size_mb)},
};

static const field_spec apply_params[] = {
    {"key", FT_STR, true, P(key)},
    {"path", FT_STR, true, P(path)},
    {"media_type", FT_STR, false, P(media_type)},
    {"digest", FT_STR, false, P(digest)},
    {"verity", FT_BOOL, false, P(verity)},
};

static const field_spec prune_layers_params[] = {
    {"all", FT_BOOL, false, P(all)},
    {"older_than_seconds", FT_U64, false, P(older_than_seconds)},
};

#define L(f) offsetof(lcow_layer_entry, f)
/* One element of Layers' "layers". */
static const field_spec layer_fields[] = {
    {"diff_id", FT_STR, true, L(diff_id)},
    {"verity", FT_BOOL, false, L(verity)},
    {"verity_root_hash", FT_STR, false, L(verity_root_hash)},
    {"bytes", FT_I64, true, L(bytes)},
    {"references", FT_I64, true, L(references)},
    {"created", FT_TIME, true, L(created)},
    {"last_use", FT_TIME, true, L(last_use)},
    {"blob_digests", FT_STRV, false, L(blob_digests)},
};
#undef L
static const field_spec layers_result[] = {{"layers", FT_LAYERS, true, R(layers)}};
static const field_spec prune_layers_result[] = {
    {"layers", FT_I64, true, R(pruned_layers)},
    {"bytes", FT_I64, true, R(pruned_bytes)},
};

static const field_spec mounts_result[] = {{"mounts", FT_MOUNTS, true, R(mounts)}};
static const field_spec info_result[] = {{"info", FT_INFO, true, R(info), R(has_info)}};
static const field_spec usage_result[] = {
    {"size", FT_I64, true, R(size)},
    {"inodes", FT_I64, true, R(inodes)},
    {"ext4_used_bytes", FT_U64, false, R(ext4_used_bytes)},
    {"ext4_used_inodes", FT_U64, false, R(ext4_used_inodes)},
    {"ext4_total_bytes", FT_U64, false, R(ext4_total_bytes)},
    {"ext4_total_inodes", FT_U64, false, R(ext4_total_inodes)},
};
static const field_spec compact_params[] = {
    {"key", FT_STR, false, P(key)},
    {"all", FT_BOOL, false, P(all)},
};
static const field_spec compact_result[] = {
    {"disks", FT_I64, true, R(compact.disks)},
    {"bytes_before", FT_I64, true, R(compact.bytes_before)},
    {"bytes_after", FT_I64, true, R(compact.bytes_after)},
    {"in_use", FT_I64, true, R(compact.in_use)},
    {"failed", FT_I64, true, R(compact.failed)},
};
static const field_spec walk_result[] = {
    {"infos", FT_INFOS, true, R(infos)},
    {"next", FT_STR, false, R(next)},
};
static const field_spec version_result[] = {
    {"version", FT_STR, true, R(version)},
    {"protocol", FT_I64, true, R(protocol)},
    {"snapshotter", FT_STR, true, R(snapshotter)},
    {"capabilities", FT_STRV, false, R(capabilities)},
};
static const field_spec path_result[] = {{"path", FT_STR, true, R(path)}};
static const field_spec apply_result[] = {
    {"diff_id", FT_STR, true, R(diff_id)},
    {"digest", FT_STR, true, R(digest)},
    {"size", FT_I64, true, R(size)},
    {"layer_bytes", FT_I64, true, R(layer_bytes)},
    {"verity_root_hash", FT_STR, false, R(verity_root_hash)},
};
#define S(f) R(status.f)
static const field_spec status_result[] = {
    {"version", FT_STR, true, R(version)},
    {"uptime_seconds", FT_I64, true, S(uptime_seconds)},
    {"active", FT_I64, true, S(active)},
    {"committed", FT_I64, true, S(committed)},
    {"view", FT_I64, true, S(view)},
    {"store_bytes", FT_I64, true, S(store_bytes)},
    {"store_inodes", FT_I64, true, S(store_inodes)},
    {"scratch_templates", FT_I64, true, S(scratch_templates)},
    {"layers", FT_I64, true, S(layers)},
    {"pending_removals", FT_I64, true, S(pending_removals)},
    {"connections_open", FT_I64, true, S(connections_open)},
    {"connections_total", FT_I64, true, S(connections_total)},
    {"requests_total", FT_I64, true, S(requests_total)},
    {"errors_total", FT_I64, true, S(errors_total)},
    {"bytes_converted", FT_I64, true, S(bytes_converted)},
    {"bytes_created", FT_I64, true, S(bytes_created)},
    {"requests", FT_COUNTERS, true, S(requests)},
    {"latency_us", FT_COUNTERS, true, S(latency_us)},
};

typedef struct method_desc {
    const char *name;
    const field_spec *params;
    size_t param_count;
    const field_spec *result;
    size_t result_count;
} method_desc;

#define FIELDS(a) a, sizeof(a) / sizeof((a)[0])
#define NO_FIELDS NULL, 0

static const method_desc methods[LCOW_METHOD_COUNT] = {
    [LCOW_METHOD_PREPARE] = {"Prepare", FIELDS(prepare_params), FIELDS(mounts_result)},
    [LCOW_METHOD_VIEW] = {"View", FIELDS(prepare_params), FIELDS(mounts_result)},
    [LCOW_METHOD_MOUNTS] = {"Mounts", FIELDS(key_params), FIELDS(mounts_result)},
    [LCOW_METHOD_COMMIT] = {"Commit", FIELDS(commit_params), NO_FIELDS},
    [LCOW_METHOD_REMOVE] = {"Remove", FIELDS(key_params), NO_FIELDS},
    [LCOW_METHOD_STAT] = {"Stat", FIELDS(key_params), FIELDS(info_result)},
    [LCOW_METHOD_UPDATE] = {"Update", FIELDS(update_params), FIELDS(info_result)},
    [LCOW_METHOD_USAGE] = {"Usage", FIELDS(key_params), FIELDS(usage_result)},
    [LCOW_METHOD_WALK] = {"Walk", FIELDS(walk_params), FIELDS(walk_result)},
    [LCOW_METHOD_CLEANUP] = {"Cleanup", NO_FIELDS, NO_FIELDS},
    [LCOW_METHOD_VERSION] = {"Version", NO_FIELDS, FIELDS(version_result)},
    [LCOW_METHOD_CREATE_SCRATCH] = {"CreateScratch", FIELDS(scratch_params), FIELDS(path_result)},
    [LCOW_METHOD_APPLY] = {"Apply", FIELDS(apply_params), FIELDS(apply_result)},
    [LCOW_METHOD_STATUS] = {"Status", NO_FIELDS, FIELDS(status_result)},
    [LCOW_METHOD_COMPACT] = {"Compact", FIELDS(compact_params), FIELDS(compact_result)},
    [LCOW_METHOD_LAYERS] = {"Layers", NO_FIELDS, FIELDS(layers_result)},
    [LCOW_METHOD_PRUNE_LAYERS] = {"PruneLayers", FIELDS(prune_layers_params),
                                  FIELDS(prune_layers_result)},
};

const char *lcow_method_name(lcow_method method)
{
    if ((unsigned)method >= LCOW_METHOD_COUNT)
        return NULL;
    return methods[method].name;
}

bool lcow_method_lookup(const char *name, size_t len, lcow_method *out)
{
    for (size_t i = 0; i < LCOW_METHOD_COUNT; i++) {
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0) {
            *out = (lcow_method)i;
            return true;
        }
    }
    return false;
}

/* ---- value helpers ---------------------------------------------------- */

void lcow_strv_free(lcow_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    v->items = NULL;
    v->count = 0;
}

bool lcow_strv_push(lcow_strv *v, const char *s)
{
    char **items = lcow_realloc(v->items, (v->count + 1) * sizeof *items);
    if (!items)
        return false;
    v->items = items;
    size_t n = strlen(s);
    char *copy = lcow_malloc(n + 1);
    if (!copy)
        return false;
    memcpy(copy, s, n + 1);
    v->items[v->count++] = copy;
    return true;
}

void lcow_params_free(lcow_params *p)
{
    free(p->key);
    free(p->parent);
    free(p->name);
    lcow_labels_free(&p->labels);
    lcow_info_free(&p->info);
    lcow_strv_free(&p->fieldpaths);
    lcow_strv_free(&p->filters);
    free(p->after);
    free(p->path);
    free(p->media_type);
    free(p->digest);
    memset(p, 0, sizeof *p);
}

bool lcow_infos_push_copy(lcow_infos *infos, const lcow_info *info)
{
    if (!lcow_grow(&infos->items, &infos->capacity, infos->count + 1, sizeof *infos->items))
        return false;
    memset(&infos->items[infos->count], 0, sizeof infos->items[0]);
    if (!lcow_info_copy(&infos->items[infos->count], info))
        return false;
    infos->count++;
    return true;
}

void lcow_infos_free(lcow_infos *infos)
{
    for (size_t i = 0; i < infos->count; i++)
        lcow_info_free(&infos->items[i]);
    free(infos->items);
    memset(infos, 0, sizeof *infos);
}

void lcow_result_free(lcow_result *r)
{
    lcow_mounts_free(&r->mounts);
    lcow_info_free(&r->info);
    lcow_infos_free(&r->infos);
    free(r->next);
    free(r->version);
    free(r->snapshotter);
    lcow_strv_free(&r->capabilities);
    free(r->path);
    free(r->diff_id);
    free(r->digest);
    free(r->verity_root_hash);
    lcow_layer_entries_free(&r->layers);
    lcow_counters_free(&r->status.requests);
    lcow_counters_free(&r->status.latency_us);
    memset(r, 0, sizeof *r);
}

static void layer_entry_free(lcow_layer_entry *e)
{
    free(e->diff_id);
    free(e->verity_root_hash);
    lcow_strv_free(&e->blob_digests);
    memset(e, 0, sizeof *e);
}

bool lcow_layer_entries_push_copy(lcow_layer_entries *v, const lcow_layer_entry *e)
{
    if (!lcow_grow(&v->items, &v->cap, v->count + 1, sizeof *v->items))
        return false;
    lcow_layer_entry *c = &v->items[v->count];
    *c = (lcow_layer_entry){.verity = e->verity,
                            .bytes = e->bytes,
                            .references = e->references,
                            .created = e->created,
                            .last_use = e->last_use};
    bool ok = (c->diff_id = lcow_strdup(e->diff_id ? e->diff_id : "")) != NULL;
    if (ok && e->verity_root_hash)
        ok = (c->verity_root_hash = lcow_strdup(e->verity_root_hash)) != NULL;
    for (size_t i = 0; ok && i < e->blob_digests.count; i++)
        ok = lcow_strv_push(&c->blob_digests, e->blob_digests.items[i]);
    if (!ok) {
        layer_entry_free(c);
        return false;
    }
    v->count++;
    return true;
}

void lcow_layer_entries_free(lcow_layer_entries *v)
{
    for (size_t i = 0; i < v->count; i++)
        layer_entry_free(&v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

bool lcow_counters_add(lcow_counters *c, const char *name, int64_t value)
{
    char *copy = lcow_strdup(name);
    if (!copy || !lcow_grow(&c->items, &c->cap, c->count + 1, sizeof *c->items)) {
        free(copy);
        return false;
    }
    c->items[c->count++] = (lcow_counter){copy, value};
    return true;
}

int64_t lcow_counters_get(const lcow_counters *c, const char *name, int64_t fallback)
{
    for (size_t i = 0; i < c->count; i++)
        if (strcmp(c->items[i].name, name) == 0)
            return c->items[i].value;
    return fallback;
}

void lcow_counters_free(lcow_counters *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->items[i].name);
    free(c->items);
    memset(c, 0, sizeof *c);
}

/* ---- decoding --------------------------------------------------------- */

static bool is_str(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_STR;
}

/* Copies a msgpack string after checking it is UTF-8 without NUL. */
static lcow_code dup_str(const msgpack_object *o, const char *what, char **out, lcow_error *err)
{
    if (!is_str(o))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected a string", what);
    if (!lcow_utf8_valid(o->via.str.ptr, o->via.str.size))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: not valid UTF-8", what);
    char *s = lcow_malloc(o->via.str.size + 1);
    if (!s)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = '\0';
    free(*out);
    *out = s;
    return LCOW_OK;
}

static lcow_code decode_labels(const msgpack_object *o, const char *what, lcow_labels *labels,
                               lcow_error *err)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected a map", what);
    if (o->via.map.size > LCOW_MAX_LABELS)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: more than %d labels", what,
                              LCOW_MAX_LABELS);
    lcow_labels_free(labels);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        char *key = NULL, *value = NULL;
        lcow_code code = dup_str(&o->via.map.ptr[i].key, what, &key, err);
        if (code == LCOW_OK)
            code = dup_str(&o->via.map.ptr[i].val, what, &value, err);
        if (code == LCOW_OK && lcow_labels_get(labels, key))
            code =
                lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: duplicate label \"%s\"", what, key);
        if (code == LCOW_OK && !lcow_labels_set(labels, key, value))
            code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        free(key);
        free(value);
        if (code != LCOW_OK)
            return code;
    }
    return LCOW_OK;
}

static lcow_code decode_strv(const msgpack_object *o, const char *what, lcow_strv *v,
                             lcow_error *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected an array of strings", what);
    lcow_strv_free(v);
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        char *s = NULL;
        lcow_code code = dup_str(&o->via.array.ptr[i], what, &s, err);
        if (code != LCOW_OK)
            return code;
        bool ok = lcow_strv_push(v, s);
        free(s);
        if (!ok)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    return LCOW_OK;
}

static lcow_code decode_time(const msgpack_object *o, const char *what, lcow_time *t,
                             lcow_error *err)
{
    msgpack_timestamp ts;
    if (!msgpack_object_to_timestamp(o, &ts) || ts.tv_nsec >= 1000000000u)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "%s: expected a msgpack Timestamp (ext type -1)", what);
    t->sec = ts.tv_sec;
    t->nsec = ts.tv_nsec;
    return LCOW_OK;
}

/* containerd's metadata layer calls Update with its zero Kind, which a client
 * sends as "" or by its name "unknown" (KindUnknown, any case): like an absent
 * or nil kind it means "no kind" and is ignored; only a non-empty name that is
 * no kind at all is refused. */
static bool is_zero_kind(const char *kind)
{
    if (kind[0] == '\0')
        return true;
    const char *want = "unknown";
    while (*kind && *want && (*kind | 0x20) == *want)
        kind++, want++;
    return *kind == '\0' && *want == '\0';
}

static lcow_code decode_info(const msgpack_object *o, lcow_info *info, bool name_required,
                             lcow_error *err)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info: expected a map");
    bool have_name = false;
    unsigned seen = 0;
    static const char *const names[] = {"name", "parent", "kind", "labels", "created", "updated"};
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (!is_str(k))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info: map key is not a string");
        if (!lcow_utf8_valid(k->via.str.ptr, k->via.str.size))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info: map key is not valid UTF-8");
        unsigned field = 0;
        while (field < 6 && !(strlen(names[field]) == k->via.str.size &&
                              memcmp(names[field], k->via.str.ptr, k->via.str.size) == 0))
            field++;
        if (field == 6)
            continue; /* unknown extra field */
        if (seen & (1u << field))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info.%s: duplicate field",
                                  names[field]);
        seen |= 1u << field;
        if (v->type == MSGPACK_OBJECT_NIL && !(field == 0 && name_required))
            continue;
        lcow_code code = LCOW_OK;
        char *kind = NULL;
        switch (field) {
        case 0:
            code = dup_str(v, "info.name", &info->name, err);
            have_name = code == LCOW_OK;
            break;
        case 1:
            code = dup_str(v, "info.parent", &info->parent, err);
            break;
        case 2:
            code = dup_str(v, "info.kind", &kind, err);
            if (code == LCOW_OK) {
                info->kind = lcow_kind_parse(kind);
                if (info->kind == LCOW_KIND_UNKNOWN && !is_zero_kind(kind))
                    code =
                        lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                       "info.kind: \"%s\" is not active, view or committed", kind);
            }
            free(kind);
            break;
        case 3:
            code = decode_labels(v, "info.labels", &info->labels, err);
            break;
        case 4:
            code = decode_time(v, "info.created", &info->created, err);
            break;
        default:
            code = decode_time(v, "info.updated", &info->updated, err);
            break;
        }
        if (code != LCOW_OK)
            return code;
    }
    if (name_required && !have_name)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "info: missing required field \"name\"");
    if (!info->parent) {
        info->parent = lcow_calloc(1, 1);
        if (!info->parent)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    return LCOW_OK;
}

static lcow_code decode_mount(const msgpack_object *o, lcow_mount *m, lcow_error *err)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "mount: expected a map");
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (!is_str(k))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "mount: map key is not a string");
        lcow_code code = LCOW_OK;
        if (k->via.str.size == 4 && memcmp(k->via.str.ptr, "type", 4) == 0) {
            code = dup_str(v, "mount.type", &m->type, err);
        } else if (k->via.str.size == 6 && memcmp(k->via.str.ptr, "source", 6) == 0) {
            code = dup_str(v, "mount.source", &m->source, err);
        } else if (k->via.str.size == 7 && memcmp(k->via.str.ptr, "options", 7) == 0) {
            lcow_strv opts = {m->option_count, m->options};
            code = decode_strv(v, "mount.options", &opts, err);
            m->option_count = opts.count;
            m->options = opts.items;
        }
        if (code != LCOW_OK)
            return code;
    }
    if (!m->type || !m->source)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "mount: missing type or source");
    return LCOW_OK;
}

static lcow_code decode_map(const field_spec *fields, size_t count, const msgpack_object *map,
                            void *base, const char *owner, const char *part, lcow_error *err);

static lcow_code decode_field(const field_spec *f, const msgpack_object *v, void *base,
                              lcow_error *err)
{
    char *at = (char *)base + f->offset;
    const char *what = f->name;
    switch (f->type) {
    case FT_STR:
        return dup_str(v, what, (char **)at, err);
    case FT_LABELS:
        return decode_labels(v, what, (lcow_labels *)at, err);
    case FT_INFO: {
        lcow_code code = decode_info(v, (lcow_info *)at, true, err);
        if (code == LCOW_OK)
            *(bool *)((char *)base + f->aux) = true;
        return code;
    }
    case FT_STRV:
        return decode_strv(v, what, (lcow_strv *)at, err);
    case FT_U64:
    case FT_U32:
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
            (f->type == FT_U32 && (v->via.u64 == 0 || v->via.u64 > UINT32_MAX)))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected a positive integer%s",
                                  what, f->type == FT_U32 ? " below 2^32" : "");
        if (f->type == FT_U64)
            *(uint64_t *)at = v->via.u64;
        else
            *(uint32_t *)at = (uint32_t)v->via.u64;
        return LCOW_OK;
    case FT_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected true or false", what);
        *(bool *)at = v->via.boolean;
        return LCOW_OK;
    case FT_I64:
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
            *(int64_t *)at = (int64_t)v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            *(int64_t *)at = v->via.i64;
        else
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected an integer", what);
        return LCOW_OK;
    case FT_MOUNTS: {
        lcow_mounts *m = (lcow_mounts *)at;
        if (v->type != MSGPACK_OBJECT_ARRAY)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected an array", what);
        lcow_mounts_free(m);
        if (v->via.array.size == 0)
            return LCOW_OK;
        m->items = lcow_calloc(v->via.array.size, sizeof *m->items);
        if (!m->items)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            m->count = i + 1;
            lcow_code code = decode_mount(&v->via.array.ptr[i], &m->items[i], err);
            if (code != LCOW_OK)
                return code;
        }
        return LCOW_OK;
    }
    case FT_COUNTERS: {
        lcow_counters *c = (lcow_counters *)at;
        if (v->type != MSGPACK_OBJECT_MAP)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected a map", what);
        if (v->via.map.size > LCOW_COUNTERS_MAX)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: more than %d counters", what,
                                  LCOW_COUNTERS_MAX);
        lcow_counters_free(c);
        for (uint32_t i = 0; i < v->via.map.size; i++) {
            const msgpack_object *val = &v->via.map.ptr[i].val;
            char *name = NULL;
            lcow_code code = dup_str(&v->via.map.ptr[i].key, what, &name, err);
            int64_t n = 0;
            if (code == LCOW_OK && val->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                val->via.u64 <= INT64_MAX)
                n = (int64_t)val->via.u64;
            else if (code == LCOW_OK && val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                n = val->via.i64;
            else if (code == LCOW_OK)
                code = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected integers", what);
            if (code == LCOW_OK && !lcow_counters_add(c, name, n))
                code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            free(name);
            if (code != LCOW_OK)
                return code;
        }
        return LCOW_OK;
    }
    case FT_TIME:
        return decode_time(v, what, (lcow_time *)at, err);
    case FT_LAYERS: {
        lcow_layer_entries *layers = (lcow_layer_entries *)at;
        if (v->type != MSGPACK_OBJECT_ARRAY)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected an array", what);
        if (v->via.array.size > LCOW_LAYERS_MAX)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: more than %d layers", what,
                                  LCOW_LAYERS_MAX);
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            lcow_layer_entry e = {0};
            lcow_code code = decode_map(layer_fields, sizeof layer_fields / sizeof layer_fields[0],
                                        &v->via.array.ptr[i], &e, what, "element", err);
            if (code == LCOW_OK && !lcow_layer_entries_push_copy(layers, &e))
                code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            layer_entry_free(&e);
            if (code != LCOW_OK)
                return code;
        }
        return LCOW_OK;
    }
    case FT_INFOS: {
        lcow_infos *infos = (lcow_infos *)at;
        if (v->type != MSGPACK_OBJECT_ARRAY)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: expected an array", what);
        for (uint32_t i = 0; i < v->via.array.size; i++) {
            lcow_info info = {0};
            lcow_code code = decode_info(&v->via.array.ptr[i], &info, true, err);
            if (code == LCOW_OK && !lcow_infos_push_copy(infos, &info))
                code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            lcow_info_free(&info);
            if (code != LCOW_OK)
                return code;
        }
        return LCOW_OK;
    }
    }
    return lcow_error_set(err, LCOW_INTERNAL, "unknown field type");
}

/* Errors name a map "<owner> <part>" ("Stat params"), formatted only when
 * there is an error. */
#define MAP_NAME "%s%s%s"
#define MAP_NAME_ARGS owner, *part ? " " : "", part

/* Decodes a map against a field table: unknown keys are ignored. */
static lcow_code decode_map(const field_spec *fields, size_t count, const msgpack_object *map,
                            void *base, const char *owner, const char *part, lcow_error *err)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, MAP_NAME ": expected a map",
                              MAP_NAME_ARGS);
    uint32_t seen = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (!is_str(k))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, MAP_NAME ": map key is not a string",
                                  MAP_NAME_ARGS);
        if (!lcow_utf8_valid(k->via.str.ptr, k->via.str.size))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  MAP_NAME ": map key is not valid UTF-8", MAP_NAME_ARGS);
        size_t f = 0;
        while (f < count && !(strlen(fields[f].name) == k->via.str.size &&
                              memcmp(fields[f].name, k->via.str.ptr, k->via.str.size) == 0))
            f++;
        if (f == count)
            continue; /* unknown extra field: ignored */
        if (seen & (1u << f))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, MAP_NAME ": duplicate field \"%s\"",
                                  MAP_NAME_ARGS, fields[f].name);
        seen |= 1u << f;
        if (v->type == MSGPACK_OBJECT_NIL) {
            if (fields[f].required)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT, MAP_NAME ": field \"%s\" is nil",
                                      MAP_NAME_ARGS, fields[f].name);
            seen &= ~(1u << f);
            continue;
        }
        lcow_code code = decode_field(&fields[f], v, base, err);
        if (code != LCOW_OK)
            return code;
    }
    for (size_t f = 0; f < count; f++) {
        if (fields[f].required && !(seen & (1u << f)))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  MAP_NAME ": missing required field \"%s\"", MAP_NAME_ARGS,
                                  fields[f].name);
    }
    return LCOW_OK;
}

lcow_code lcow_proto_decode_params(lcow_method method, const msgpack_object *params,
                                   lcow_params *out, lcow_error *err)
{
    const method_desc *m = &methods[method];
    memset(out, 0, sizeof *out);
    if (params->type != MSGPACK_OBJECT_ARRAY || params->via.array.size > 1)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "%s: params must be an array holding one map", m->name);
    if (params->via.array.size == 0) {
        msgpack_object empty = {.type = MSGPACK_OBJECT_MAP};
        return decode_map(m->params, m->param_count, &empty, out, m->name, "params", err);
    }
    return decode_map(m->params, m->param_count, &params->via.array.ptr[0], out, m->name, "params",
                      err);
}

static bool read_msgid(const msgpack_object *o, uint32_t *msgid)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return false;
    *msgid = (uint32_t)o->via.u64;
    return true;
}

lcow_code lcow_proto_decode_request(const msgpack_object *obj, lcow_request *req, bool *has_msgid,
                                    lcow_error *err)
{
    memset(req, 0, sizeof *req);
    *has_msgid = false;
    if (obj->type != MSGPACK_OBJECT_ARRAY)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "request is not an array");
    const msgpack_object *el = obj->via.array.ptr;
    uint32_t n = obj->via.array.size;
    bool is_request = n >= 1 && el[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && el[0].via.u64 == 0;
    if (is_request && n >= 2)
        *has_msgid = read_msgid(&el[1], &req->msgid);
    if (n >= 1 && el[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && el[0].via.u64 == 2)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "notifications are not supported");
    if (!is_request)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "not a request: element 0 must be 0");
    if (!*has_msgid)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "request msgid must be an unsigned 32-bit integer");
    if (n != 4)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "request must be [0, msgid, method, [params]], got %u elements",
                              (unsigned)n);
    if (!is_str(&el[2]))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "method must be a string");
    if (!lcow_utf8_valid(el[2].via.str.ptr, el[2].via.str.size))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "method name is not valid UTF-8");
    if (!lcow_method_lookup(el[2].via.str.ptr, el[2].via.str.size, &req->method)) {
        int shown = el[2].via.str.size > 64 ? 64 : (int)el[2].via.str.size;
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "unknown method \"%.*s\"", shown,
                              el[2].via.str.ptr);
    }
    lcow_code code = lcow_proto_decode_params(req->method, &el[3], &req->params, err);
    if (code != LCOW_OK)
        lcow_params_free(&req->params);
    return code;
}

/* ---- encoding --------------------------------------------------------- */

static bool pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, s, n) == 0;
}

static bool pack_labels(msgpack_packer *pk, const lcow_labels *labels)
{
    if (msgpack_pack_map(pk, labels->count) != 0)
        return false;
    for (size_t i = 0; i < labels->count; i++) {
        if (!pack_str(pk, labels->items[i].key) || !pack_str(pk, labels->items[i].value))
            return false;
    }
    return true;
}

static bool pack_time(msgpack_packer *pk, lcow_time t)
{
    msgpack_timestamp ts = {t.sec, t.nsec};
    return msgpack_pack_timestamp(pk, &ts) == 0;
}

static bool pack_info(msgpack_packer *pk, const lcow_info *info)
{
    /* A client's Update may carry no kind: leave the field out. */
    bool has_kind = info->kind != LCOW_KIND_UNKNOWN;
    if (msgpack_pack_map(pk, has_kind ? 6 : 5) != 0 || !pack_str(pk, "name") ||
        !pack_str(pk, info->name ? info->name : "") || !pack_str(pk, "parent") ||
        !pack_str(pk, info->parent ? info->parent : ""))
        return false;
    if (has_kind && (!pack_str(pk, "kind") || !pack_str(pk, lcow_kind_name(info->kind))))
        return false;
    return pack_str(pk, "labels") && pack_labels(pk, &info->labels) && pack_str(pk, "created") &&
           pack_time(pk, info->created) && pack_str(pk, "updated") && pack_time(pk, info->updated);
}

static bool pack_strs(msgpack_packer *pk, char *const *items, size_t count)
{
    if (msgpack_pack_array(pk, count) != 0)
        return false;
    for (size_t i = 0; i < count; i++) {
        if (!pack_str(pk, items[i]))
            return false;
    }
    return true;
}

static bool field_present(const field_spec *f, const void *base)
{
    const char *at = (const char *)base + f->offset;
    if (f->required)
        return true;
    switch (f->type) {
    case FT_STR:
        return *(char *const *)at != NULL;
    case FT_LABELS:
        return ((const lcow_labels *)at)->count > 0;
    case FT_INFO:
        return *(const bool *)((const char *)base + f->aux);
    case FT_STRV:
        return ((const lcow_strv *)at)->count > 0;
    case FT_U64:
        return *(const uint64_t *)at != 0;
    case FT_U32:
        return *(const uint32_t *)at != 0;
    case FT_BOOL:
        return *(const bool *)at;
    default:
        return true;
    }
}

static bool pack_map(msgpack_packer *pk, const field_spec *fields, size_t count, const void *base);

static bool pack_field(msgpack_packer *pk, const field_spec *f, const void *base)
{
    const char *at = (const char *)base + f->offset;
    if (!pack_str(pk, f->name))
        return false;
    switch (f->type) {
    case FT_STR: {
        const char *s = *(char *const *)at;
        return pack_str(pk, s ? s : "");
    }
    case FT_LABELS:
        return pack_labels(pk, (const lcow_labels *)at);
    case FT_INFO:
        return pack_info(pk, (const lcow_info *)at);
    case FT_STRV: {
        const lcow_strv *v = (const lcow_strv *)at;
        return pack_strs(pk, v->items, v->count);
    }
    case FT_U64:
        return msgpack_pack_uint64(pk, *(const uint64_t *)at) == 0;
    case FT_U32:
        return msgpack_pack_uint32(pk, *(const uint32_t *)at) == 0;
    case FT_I64:
        return msgpack_pack_int64(pk, *(const int64_t *)at) == 0;
    case FT_BOOL:
        return (*(const bool *)at ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) == 0;
    case FT_MOUNTS: {
        const lcow_mounts *m = (const lcow_mounts *)at;
        if (msgpack_pack_array(pk, m->count) != 0)
            return false;
        for (size_t i = 0; i < m->count; i++) {
            const lcow_mount *mt = &m->items[i];
            if (msgpack_pack_map(pk, 3) != 0 || !pack_str(pk, "type") ||
                !pack_str(pk, mt->type ? mt->type : "") || !pack_str(pk, "source") ||
                !pack_str(pk, mt->source ? mt->source : "") || !pack_str(pk, "options") ||
                !pack_strs(pk, mt->options, mt->option_count))
                return false;
        }
        return true;
    }
    case FT_COUNTERS: {
        const lcow_counters *c = (const lcow_counters *)at;
        if (msgpack_pack_map(pk, c->count) != 0)
            return false;
        for (size_t i = 0; i < c->count; i++)
            if (!pack_str(pk, c->items[i].name) || msgpack_pack_int64(pk, c->items[i].value) != 0)
                return false;
        return true;
    }
    case FT_TIME:
        return pack_time(pk, *(const lcow_time *)at);
    case FT_LAYERS: {
        const lcow_layer_entries *layers = (const lcow_layer_entries *)at;
        if (msgpack_pack_array(pk, layers->count) != 0)
            return false;
        for (size_t i = 0; i < layers->count; i++)
            if (!pack_map(pk, layer_fields, sizeof layer_fields / sizeof layer_fields[0],
                          &layers->items[i]))
                return false;
        return true;
    }
    case FT_INFOS: {
        const lcow_infos *infos = (const lcow_infos *)at;
        if (msgpack_pack_array(pk, infos->count) != 0)
            return false;
        for (size_t i = 0; i < infos->count; i++) {
            if (!pack_info(pk, &infos->items[i]))
                return false;
        }
        return true;
    }
    }
    return false;
}

static bool pack_map(msgpack_packer *pk, const field_spec *fields, size_t count, const void *base)
{
    size_t present = 0;
    for (size_t f = 0; f < count; f++)
        present += field_present(&fields[f], base);
    if (msgpack_pack_map(pk, present) != 0)
        return false;
    for (size_t f = 0; f < count; f++) {
        if (field_present(&fields[f], base) && !pack_field(pk, &fields[f], base))
            return false;
    }
    return true;
}

bool lcow_proto_encode_request(msgpack_packer *pk, uint32_t msgid, lcow_method method,
                               const lcow_params *params)
{
    const method_desc *m = &methods[method];
    static const lcow_params none;
    return msgpack_pack_array(pk, 4) == 0 && msgpack_pack_uint8(pk, 0) == 0 &&
           msgpack_pack_uint32(pk, msgid) == 0 && pack_str(pk, m->name) &&
           msgpack_pack_array(pk, 1) == 0 &&
           pack_map(pk, m->params, m->param_count, params ? params : &none);
}

bool lcow_proto_encode_result(msgpack_packer *pk, uint32_t msgid, lcow_method method,
                              const lcow_result *result)
{
    const method_desc *m = &methods[method];
    return msgpack_pack_array(pk, 4) == 0 && msgpack_pack_uint8(pk, 1) == 0 &&
           msgpack_pack_uint32(pk, msgid) == 0 && msgpack_pack_nil(pk) == 0 &&
           pack_map(pk, m->result, m->result_count, result);
}

bool lcow_proto_encode_error(msgpack_packer *pk, bool has_msgid, uint32_t msgid, lcow_code code,
                             const char *message)
{
    if (msgpack_pack_array(pk, 4) != 0 || msgpack_pack_uint8(pk, 1) != 0)
        return false;
    if ((has_msgid ? msgpack_pack_uint32(pk, msgid) : msgpack_pack_nil(pk)) != 0)
        return false;
    return msgpack_pack_map(pk, 2) == 0 && pack_str(pk, "code") &&
           pack_str(pk, lcow_code_name(code)) && pack_str(pk, "message") &&
           pack_str(pk, message ? message : "") && msgpack_pack_nil(pk) == 0;
}

lcow_code lcow_proto_decode_response(const msgpack_object *obj, lcow_method method, bool *has_msgid,
                                     uint32_t *msgid, lcow_error *call_err, lcow_result *result,
                                     lcow_error *err)
{
    memset(result, 0, sizeof *result);
    lcow_error_clear(call_err);
    *has_msgid = false;
    if (obj->type != MSGPACK_OBJECT_ARRAY || obj->via.array.size != 4)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "response is not an array of 4");
    const msgpack_object *el = obj->via.array.ptr;
    if (el[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || el[0].via.u64 != 1)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "response type is not 1");
    if (el[1].type != MSGPACK_OBJECT_NIL) {
        if (!read_msgid(&el[1], msgid))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "response msgid is invalid");
        *has_msgid = true;
    }
    if (el[2].type != MSGPACK_OBJECT_NIL) {
        static const field_spec error_fields[] = {
            {"code", FT_STR, true, 0},
            {"message", FT_STR, true, sizeof(char *)},
        };
        char *fields[2] = {NULL, NULL};
        lcow_code code = decode_map(error_fields, 2, &el[2], fields, "error", "", err);
        if (code == LCOW_OK) {
            lcow_code remote = lcow_code_from_name(fields[0]);
            if (remote == LCOW_OK)
                remote = LCOW_INTERNAL;
            lcow_error_set(call_err, remote, "%s", fields[1]);
        }
        free(fields[0]);
        free(fields[1]);
        return code;
    }
    const method_desc *m = &methods[method];
    if (el[3].type != MSGPACK_OBJECT_MAP)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s result: expected a map", m->name);
    lcow_code code = decode_map(m->result, m->result_count, &el[3], result, m->name, "result", err);
    if (code != LCOW_OK)
        lcow_result_free(result);
    return code;
}

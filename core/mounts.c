/* Mounts of the snapshotter: the single lcow-layer mount of an active or a
 * view, with its parentLayerPaths option in Go's JSON encoding (the shape
 * containerd's Windows LCOW snapshotter returns, docs/storage.md). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/snapshotter_internal.h"

/* Appends s as a JSON string the way Go's encoding/json writes it. */
static void json_string(char **out, size_t *len, size_t *cap, const char *s, bool *ok)
{
#define PUT(str, n)                                                                                \
    do {                                                                                           \
        size_t n_ = (n);                                                                           \
        if (*len + n_ + 1 > *cap) {                                                                \
            size_t c_ = *cap ? *cap * 2 : 256;                                                     \
            while (c_ < *len + n_ + 1)                                                             \
                c_ *= 2;                                                                           \
            char *g_ = realloc(*out, c_);                                                          \
            if (!g_) {                                                                             \
                *ok = false;                                                                       \
                return;                                                                            \
            }                                                                                      \
            *out = g_;                                                                             \
            *cap = c_;                                                                             \
        }                                                                                          \
        memcpy(*out + *len, (str), n_);                                                            \
        *len += n_;                                                                                \
        (*out)[*len] = '\0';                                                                       \
    } while (0)
    static const char hex[] = "0123456789abcdef";
    PUT("\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            PUT(esc, 2);
            p++;
        } else if (c == '\n') {
            PUT("\\n", 2);
            p++;
        } else if (c == '\r') {
            PUT("\\r", 2);
            p++;
        } else if (c == '\t') {
            PUT("\\t", 2);
            p++;
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            PUT(esc, 6);
            p++;
        } else if (c < 0x80) {
            PUT(p, 1);
            p++;
        } else {
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            size_t avail = strnlen((const char *)p, n);
            if (n == 1 || avail < n || !lcow_utf8_valid((const char *)p, n)) {
                PUT("\\ufffd", 6);
                p++;
            } else if (n == 3 && c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                PUT(p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                p += 3;
            } else {
                PUT(p, n);
                p += n;
            }
        }
    }
    PUT("\"", 1);
#undef PUT
}

char *lcow_snapshotter_json_paths(const char *const *paths, size_t count)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = true;
    out = malloc(64);
    if (!out)
        return NULL;
    cap = 64;
    out[0] = '[';
    out[1] = '\0';
    len = 1;
    for (size_t i = 0; i < count && ok; i++) {
        if (i > 0) {
            char comma[] = ",";
            size_t l = 1;
            if (len + 2 > cap) {
                char *g = realloc(out, cap * 2);
                if (!g) {
                    ok = false;
                    break;
                }
                out = g;
                cap *= 2;
            }
            memcpy(out + len, comma, l);
            len += l;
            out[len] = '\0';
        }
        json_string(&out, &len, &cap, paths[i], &ok);
    }
    if (ok && len + 2 > cap) {
        char *g = realloc(out, len + 2);
        if (!g)
            ok = false;
        else
            out = g;
    }
    if (!ok) {
        free(out);
        return NULL;
    }
    out[len++] = ']';
    out[len] = '\0';
    return out;
}

lcow_code lcow_snapshotter_build_mounts(lcow_snapshotter *s, const lcow_meta_view *view,
                                        const lcow_meta_record *rec, lcow_mounts *mounts,
                                        lcow_error *err)
{
    memset(mounts, 0, sizeof *mounts);
    if (rec->kind != LCOW_KIND_ACTIVE && rec->kind != LCOW_KIND_VIEW)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "snapshot %s is %s: mounts exist only for active and view "
                              "snapshots",
                              rec->key, lcow_kind_name(rec->kind));
    uint64_t *ids = NULL;
    size_t count = 0;
    lcow_code rc = lcow_metastore_parent_ids(s->ms, view, rec, &ids, &count, err);
    if (rc != LCOW_OK)
        return rc;
    bool view_on_parent = rec->kind == LCOW_KIND_VIEW && count > 0;
    size_t first = view_on_parent ? 1 : 0;
    char **paths = calloc(count + 1, sizeof *paths);
    char *source = NULL, *json = NULL, *option = NULL;
    lcow_mount *m = calloc(1, sizeof *m);
    bool ok = paths && m;
    for (size_t i = first; ok && i < count; i++)
        ok = (paths[i - first] = lcow_snapshotter_dir_of(s, ids[i])) != NULL;
    if (ok)
        ok = (source = lcow_snapshotter_dir_of(s, view_on_parent ? ids[0] : rec->id)) != NULL;
    if (ok)
        ok =
            (json = lcow_snapshotter_json_paths((const char *const *)paths, count - first)) != NULL;
    if (ok) {
        size_t n = strlen("parentLayerPaths=") + strlen(json) + 1;
        option = malloc(n);
        if (option)
            snprintf(option, n, "parentLayerPaths=%s", json);
        ok = option != NULL;
    }
    if (ok) {
        m->type = strdup("lcow-layer");
        m->source = source;
        source = NULL;
        m->options = calloc(2, sizeof *m->options);
        ok = m->type && m->options;
        if (ok) {
            m->options[0] = strdup(rec->kind == LCOW_KIND_ACTIVE ? "rw" : "ro");
            m->options[1] = option;
            option = NULL;
            m->option_count = 2;
            ok = m->options[0] != NULL;
        }
        mounts->items = m;
        mounts->count = 1;
        m = NULL;
    }
    for (size_t i = 0; paths && i < count; i++)
        free(paths[i]);
    free(paths);
    free(ids);
    free(source);
    free(json);
    free(option);
    free(m);
    if (!ok) {
        lcow_mounts_free(mounts);
        return lcow_snapshotter_oom(err);
    }
    return LCOW_OK;
}

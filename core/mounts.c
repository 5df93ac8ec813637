/* Mounts of the snapshotter: the single lcow-layer mount of an active or a
 * view, with its parentLayerPaths option in Go's JSON encoding (the shape
 * containerd's Windows LCOW snapshotter returns, docs/storage.md). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/json.h"
#include "core/snapshotter_internal.h"

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
        ok = (json = lcow_json_string_array((const char *const *)paths, count - first,
                                            LCOW_JSON_GO)) != NULL;
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

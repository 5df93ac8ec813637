/* lcow_snapshotter_status: what Status and the metrics endpoint report about
 * the store (counts by kind, bytes on disk, cached scratch templates, layers
 * in the layer store, the removal queue). A read: no lock beyond the walk's
 * LevelDB snapshot. */
#include <stdbool.h>
#include <string.h>

#include "core/os/os.h"
#include "core/snapshotter_internal.h"

static int count_kind(void *ctx, const lcow_info *info)
{
    lcow_store_status *st = ctx;
    if (info->kind == LCOW_KIND_ACTIVE)
        st->active++;
    else if (info->kind == LCOW_KIND_COMMITTED)
        st->committed++;
    else if (info->kind == LCOW_KIND_VIEW)
        st->view++;
    return 0;
}

/* The cached templates: "scratch.vhdx" and "scratch_<gb>.vhdx" in the root. */
static int count_template(void *ctx, const char *name, bool is_dir)
{
    size_t n = strlen(name);
    if (!is_dir && strncmp(name, "scratch", 7) == 0 && n > 12 &&
        strcmp(name + n - 5, ".vhdx") == 0 && (name[7] == '.' || name[7] == '_'))
        (*(int64_t *)ctx)++;
    return 0;
}

static int count_layer(void *ctx, const lcow_layer_store_info *info,
                       const char *const *blob_digests, size_t blob_count)
{
    (void)info, (void)blob_digests, (void)blob_count;
    (*(int64_t *)ctx)++;
    return 0;
}

static lcow_code status_impl(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err)
{
    lcow_code rc = lcow_snapshotter_check_open(s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_walk_options all = {0};
    rc = lcow_snapshotter_walk(s, &all, count_kind, out, NULL, err);
    if (rc == LCOW_OK)
        rc = lcow_os_usage(s->root, &out->bytes, &out->inodes, err);
    if (rc == LCOW_OK)
        rc = lcow_os_list_dir(s->root, count_template, &out->scratch_templates, err);
    /* The layer store (core/layer/store.h), shared with partitions. */
    out->layers = s->layers ? 0 : -1;
    if (rc == LCOW_OK && s->layers)
        rc = lcow_layer_store_list(s->layers, count_layer, &out->layers, err);
    out->pending_removals = (int64_t)lcow_snapshotter_pending_removals(s);
    return rc;
}

lcow_code lcow_snapshotter_status(lcow_snapshotter *s, lcow_store_status *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    LCOW_SNAPSHOTTER_CALL(s, err, status_impl(s, out, err));
}

/* The virtdisk backend's sequence, portable so its error paths are tested
 * everywhere; the virtdisk calls themselves are in the ops table. */
#include "core/disk/vdisk.h"

#include "core/disk/ext4.h"
#include "core/base/log.h"

lcow_code lcow_vdisk_create_scratch(const lcow_vdisk_ops *ops, const char *path,
                                    const lcow_disk_geometry *params, lcow_error *err)
{
    void *disk = NULL;
    lcow_block_sink *sink = NULL;
    bool attached = false;
    lcow_code rc = ops->create(ops->ctx, path, params, &disk, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "virtdisk: create %s", path);
    if ((rc = ops->attach(ops->ctx, disk, err))) {
        lcow_error_wrap(err, "virtdisk: attach %s", path);
        goto fail;
    }
    attached = true;
    if ((rc = ops->open_device(ops->ctx, disk, params->size_bytes, params->logical_sector_size,
                               &sink, err))) {
        lcow_error_wrap(err, "virtdisk: open the attached disk of %s", path);
        goto fail;
    }
    if ((rc = lcow_ext4_format(sink, NULL, NULL, err)) ||
        (rc = lcow_block_sink_finish(sink, err))) {
        lcow_error_wrap(err, "virtdisk: format %s", path);
        goto fail;
    }
    lcow_block_sink_free(sink);
    sink = NULL;
    attached = false;
    if ((rc = ops->detach(ops->ctx, disk, err))) {
        lcow_error_wrap(err, "virtdisk: detach %s", path);
        goto fail;
    }
    ops->close(ops->ctx, disk);
    return LCOW_OK;

fail:
    lcow_block_sink_free(sink);
    if (attached) {
        lcow_error derr;
        if (ops->detach(ops->ctx, disk, &derr))
            LCOW_LOGW("virtdisk: cleanup: detach %s: %s", path, derr.message);
    }
    ops->close(ops->ctx, disk);
    lcow_error rerr;
    if (ops->remove(ops->ctx, path, &rerr))
        LCOW_LOGW("virtdisk: cleanup: remove %s: %s", path, rerr.message);
    return rc;
}

/* A layer blob to layer.vhd, published atomically (apply.h). The sequence is
 * bench/bench_blob.c's convert() with the failure, cancellation and
 * publication handling a service needs. */
#include "core/layer/apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/disk/ext4_writer.h"
#include "core/disk/vhd.h"
#include "core/layer/convert.h"
#include "core/os/os.h"

typedef struct apply_run {
    const lcow_layer_apply_options *opts;
    lcow_blob *blob;
    lcow_ext4_writer *w;
    bool cancelled;
} apply_run;

static bool is_cancelled(apply_run *a)
{
    if (!a->cancelled && a->opts->cancelled && a->opts->cancelled(a->opts->cancel_ctx))
        a->cancelled = true;
    return a->cancelled;
}

static lcow_code cancel_error(lcow_error *err)
{
    return lcow_error_set(err, LCOW_UNAVAILABLE, "cancelled");
}

/* The tar reader's byte source: the blob's zero-copy view, with the
 * cancellation check in front of every piece. */
static lcow_code view_source(void *ctx, const void **data, size_t *len, lcow_error *err)
{
    apply_run *a = ctx;
    if (is_cancelled(a))
        return cancel_error(err);
    return lcow_blob_read_view(a->blob, data, len, err);
}

/* The writer's on_written: start writeback of what it handed to the OS, so
 * the fsync at the end has little left to wait for (docs/layers.md). */
static void start_writeback(void *ctx, uint64_t off, uint64_t len)
{
    apply_run *a = ctx;
    if (a->w)
        lcow_file_start_writeback(lcow_ext4_writer_file(a->w), off, len);
}

bool lcow_layer_apply_is_temp(const char *name, const char *final_name)
{
    if (!final_name)
        final_name = LCOW_LAYER_APPLY_VHD_NAME;
    size_t n = strlen(final_name), m = strlen(LCOW_LAYER_APPLY_TEMP_MARK);
    return name[0] == '.' && strncmp(name + 1, final_name, n) == 0 &&
           strncmp(name + 1 + n, LCOW_LAYER_APPLY_TEMP_MARK, m) == 0 && name[1 + n + m] != '\0';
}

/* Splits path into its directory ("." when it has none) and its last name;
 * both malloc'd. */
static bool split_path(const char *path, char **dir, char **base)
{
    const char *slash = NULL;
    for (const char *p = path; *p; p++)
        if (*p == '/' || (LCOW_PATH_SEP == '\\' && *p == '\\'))
            slash = p;
    *dir = NULL;
    *base = strdup(slash ? slash + 1 : path);
    if (!slash) {
        *dir = strdup(".");
    } else {
        size_t n = (size_t)(slash - path);
        /* "/x": the root itself; "C:\x": keep the separator after the drive */
        if (n == 0 || (n == 2 && path[1] == ':'))
            n++;
        *dir = malloc(n + 1);
        if (*dir) {
            memcpy(*dir, path, n);
            (*dir)[n] = '\0';
        }
    }
    if (!*dir || !*base) {
        free(*dir);
        free(*base);
        return false;
    }
    return true;
}

/* A fresh temporary name beside the output: ".<base>.tmp-apply-<random>". */
static lcow_code temp_path_for(const char *dir, const char *base, char **out, lcow_error *err)
{
    uint8_t rnd[8];
    lcow_code rc = lcow_os_random(rnd, sizeof rnd, err);
    if (rc != LCOW_OK)
        return rc;
    size_t len = strlen(base) + sizeof LCOW_LAYER_APPLY_TEMP_MARK + 2 * sizeof rnd + 2;
    char *name = malloc(len);
    if (!name)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    int at = snprintf(name, len, ".%s" LCOW_LAYER_APPLY_TEMP_MARK, base);
    for (size_t i = 0; i < sizeof rnd; i++)
        at += snprintf(name + at, len - (size_t)at, "%02x", rnd[i]);
    *out = lcow_path_join(dir, name);
    free(name);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

/* Publishes temp at final without replacing anything: a hard link fails if
 * the name exists; rename only where the file system has no hard links,
 * after a check (the scratch disks' publish_exclusive). */
static lcow_code publish_exclusive(const char *temp, const char *final, lcow_error *err)
{
    lcow_code rc = lcow_os_hardlink(temp, final, err);
    if (rc != LCOW_OK && rc != LCOW_ALREADY_EXISTS) {
        lcow_stat st;
        rc = lcow_os_stat(final, &st, err);
        if (rc == LCOW_OK && st.exists)
            rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", final);
        if (rc == LCOW_OK)
            rc = lcow_os_rename(temp, final, err);
    } else if (rc == LCOW_ALREADY_EXISTS) {
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", final);
    }
    return rc;
}

static void remove_quietly(const char *path, const char *what)
{
    lcow_error e;
    lcow_code rc = lcow_os_remove(path, &e);
    if (rc != LCOW_OK && rc != LCOW_NOT_FOUND)
        LCOW_LOGW("layer apply: %s %s left behind: %s", what, path, e.message);
}

/* Blob -> image at temp (open, converted, finished, verity, footer, synced
 * and closed). On failure the caller removes temp. */
static lcow_code convert_to(apply_run *a, const char *temp, const lcow_layer_apply_format *fmt,
                            lcow_layer_apply_result *res, lcow_error *err)
{
    lcow_verity_hasher *h = NULL;
    lcow_code rc = LCOW_OK;
    if (fmt->verity)
        rc = lcow_verity_hasher_create(NULL, &h, err);
    lcow_ext4_writer_options wo = {
        .max_disk_size = fmt->max_disk_size,
        .inline_data = fmt->inline_data,
        .on_final = h ? lcow_verity_on_final : NULL,
        .on_final_ctx = h,
        .on_written = start_writeback,
        .on_written_ctx = a,
        .exclusive = true,
    };
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_open(temp, &wo, &a->w, err);
    lcow_layer_convert_options co = {
        .convert_whiteouts = fmt->convert_whiteouts,
        .inline_data = fmt->inline_data,
        .convert_backslash = fmt->convert_backslash,
        .max_disk_size = fmt->max_disk_size,
    };
    lcow_tar_source src = {.view = view_source, .ctx = a};
    lcow_layer_convert_result cr = {0};
    if (rc == LCOW_OK)
        rc = lcow_layer_convert_entries(a->w, &src, &co, &cr, err);
    /* The rest of the stream (padding after the end marker), the digest
     * check: nothing is published from a blob that fails here. */
    lcow_blob_result br;
    if (rc == LCOW_OK)
        rc = lcow_blob_finish(a->blob, &br, err);
    uint64_t image = 0, disk = 0;
    if (rc == LCOW_OK && is_cancelled(a))
        rc = cancel_error(err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish(a->w, &image, err);
    lcow_file *f = a->w ? lcow_ext4_writer_file(a->w) : NULL;
    disk = image;
    if (rc == LCOW_OK && is_cancelled(a))
        rc = cancel_error(err);
    if (rc == LCOW_OK && h) {
        rc = lcow_verity_hasher_finish(h, image, res->root_hash, err);
        if (rc == LCOW_OK)
            rc = lcow_verity_hasher_write_file(h, f, image, NULL, err);
        if (rc == LCOW_OK) {
            disk += LCOW_VERITY_SUPERBLOCK_SIZE + lcow_verity_hasher_tree_bytes(h);
            res->has_root_hash = true;
        }
    }
    if (rc == LCOW_OK && fmt->vhd_footer) {
        uint8_t footer[LCOW_VHD_FOOTER_SIZE];
        rc = lcow_vhd_footer_fixed(disk, NULL, 0, footer, err);
        if (rc == LCOW_OK)
            rc = lcow_file_pwrite(f, footer, sizeof footer, disk, err);
        disk += LCOW_VHD_FOOTER_SIZE;
    }
    if (rc == LCOW_OK && is_cancelled(a))
        rc = cancel_error(err);
    if (rc == LCOW_OK)
        rc = lcow_file_sync(f, err);
    lcow_ext4_writer_close(a->w);
    a->w = NULL;
    lcow_verity_hasher_free(h);
    if (rc == LCOW_OK) {
        res->format = br.format;
        memcpy(res->digest, br.digest, sizeof res->digest);
        memcpy(res->diff_id, br.diff_id, sizeof res->diff_id);
        res->blob_bytes = br.blob_bytes;
        res->tar_bytes = br.tar_bytes;
        res->image_bytes = image;
        res->layer_bytes = disk;
        res->entries = cr.entries;
    }
    return rc;
}

lcow_code lcow_layer_apply_file(const char *blob_path, const char *out_path,
                                const lcow_layer_apply_format *fmt,
                                const lcow_layer_apply_options *opts, lcow_layer_apply_result *res,
                                lcow_error *err)
{
    static const lcow_layer_apply_options no_opts;
    lcow_layer_apply_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    apply_run a = {.opts = opts ? opts : &no_opts};
    if (!blob_path || !*blob_path || !out_path || !*out_path)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer apply: empty blob or output path");
    lcow_stat st;
    lcow_code rc = lcow_os_stat(blob_path, &st, err);
    if (rc == LCOW_OK && !st.exists)
        rc = lcow_error_set(err, LCOW_NOT_FOUND, "layer blob %s does not exist", blob_path);
    if (rc == LCOW_OK && st.is_dir)
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer blob %s is a directory", blob_path);
    if (rc != LCOW_OK)
        return rc;
    if (!a.opts->replace) {
        rc = lcow_os_stat(out_path, &st, err);
        if (rc == LCOW_OK && st.exists)
            return lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", out_path);
        if (rc != LCOW_OK)
            return rc;
    }

    lcow_blob_options bo = {.media_type = a.opts->media_type, .digest = a.opts->digest};
    rc = lcow_blob_open(blob_path, &bo, &a.blob, err);
    if (rc != LCOW_OK)
        return rc;
    char *dir = NULL, *base = NULL, *temp = NULL;
    if (!split_path(out_path, &dir, &base))
        rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    if (rc == LCOW_OK)
        rc = temp_path_for(dir, base, &temp, err);
    bool made = false;
    if (rc == LCOW_OK) {
        rc = convert_to(&a, temp, fmt, res, err);
        made = true;
    }
    /* The blob's decoder stops (also mid-stream) before anything else. */
    lcow_blob_close(a.blob);
    a.blob = NULL;
    bool published = false;
    if (rc == LCOW_OK && is_cancelled(&a))
        rc = cancel_error(err);
    if (rc == LCOW_OK) {
        rc = a.opts->replace ? lcow_os_rename(temp, out_path, err)
                             : publish_exclusive(temp, out_path, err);
        published = rc == LCOW_OK;
    }
    /* A rename took the temporary name away; a hard link or a failure left it. */
    if (made && !(published && a.opts->replace))
        remove_quietly(temp, "temporary image");
    if (rc == LCOW_OK) {
        rc = lcow_os_sync_dir(dir, err);
        /* Only what this call created goes again: a replaced file is gone. */
        if (rc != LCOW_OK && !a.opts->replace)
            remove_quietly(out_path, "layer image");
    }
    if (rc != LCOW_OK) {
        memset(res, 0, sizeof *res);
        if (a.cancelled)
            cancel_error(err);
    }
    free(dir);
    free(base);
    free(temp);
    return rc;
}

lcow_code lcow_layer_apply_blob(const char *blob_path, const char *dir,
                                const lcow_layer_apply_options *opts, lcow_layer_apply_result *res,
                                lcow_error *err)
{
    static const lcow_layer_apply_options no_opts;
    lcow_layer_apply_options o = opts ? *opts : no_opts;
    o.replace = false;
    lcow_layer_apply_format fmt = LCOW_LAYER_APPLY_DIFFER_FORMAT;
    fmt.verity = o.verity;
    char *out = lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME);
    if (!out)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    lcow_code rc = lcow_layer_apply_file(blob_path, out, &fmt, &o, res, err);
    free(out);
    return rc;
}

typedef struct sweep_ctx {
    const char *final_name;
    char **names;
    size_t count, cap;
    bool failed;
} sweep_ctx;

static int sweep_entry(void *ctx, const char *name, bool is_dir)
{
    sweep_ctx *s = ctx;
    if (is_dir || !lcow_layer_apply_is_temp(name, s->final_name))
        return 0;
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 4;
        char **n = realloc(s->names, cap * sizeof *n);
        if (!n) {
            s->failed = true;
            return 1;
        }
        s->names = n;
        s->cap = cap;
    }
    if (!(s->names[s->count] = strdup(name))) {
        s->failed = true;
        return 1;
    }
    s->count++;
    return 0;
}

lcow_code lcow_layer_apply_sweep(const char *dir, const char *final_name, unsigned *removed,
                                 lcow_error *err)
{
    if (removed)
        *removed = 0;
    sweep_ctx s = {.final_name = final_name};
    lcow_code rc = lcow_os_list_dir(dir, sweep_entry, &s, err);
    if (rc == LCOW_NOT_FOUND)
        rc = LCOW_OK;
    if (rc == LCOW_OK && s.failed)
        rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < s.count; i++) {
        char *path = rc == LCOW_OK ? lcow_path_join(dir, s.names[i]) : NULL;
        if (rc == LCOW_OK && !path)
            rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        if (path) {
            lcow_code one = lcow_os_remove(path, err);
            if (one == LCOW_OK) {
                LCOW_LOGI("removed %s (left by an interrupted layer apply)", path);
                if (removed)
                    (*removed)++;
            } else if (one != LCOW_NOT_FOUND) {
                rc = one;
            }
        }
        free(path);
        free(s.names[i]);
    }
    free(s.names);
    return rc;
}

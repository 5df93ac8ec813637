/* Portable block sinks: raw file, VHDX writer, callbacks. */
#include "core/disk/blocksink.h"

#include <stdlib.h>

lcow_code lcow_block_sink_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                                lcow_error *err)
{
    if (off > s->size || len > s->size - off)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "block sink: write of %zu bytes at %llu is past the disk size %llu",
                              len, (unsigned long long)off, (unsigned long long)s->size);
    lcow_code rc = s->ops->write(s, off, buf, len, err);
    if (!rc) {
        s->bytes_written += len;
        s->writes++;
    }
    return rc;
}

lcow_code lcow_block_sink_finish(lcow_block_sink *s, lcow_error *err)
{
    return s->ops->finish ? s->ops->finish(s, err) : LCOW_OK;
}

void lcow_block_sink_free(lcow_block_sink *s)
{
    if (s)
        s->ops->destroy(s);
}

/* ---- raw file ---- */

typedef struct raw_sink {
    lcow_block_sink base;
    lcow_file *file;
    bool sync;
} raw_sink;

static lcow_code raw_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                           lcow_error *err)
{
    return lcow_file_pwrite(((raw_sink *)s)->file, buf, len, off, err);
}

static lcow_code raw_finish(lcow_block_sink *s, lcow_error *err)
{
    raw_sink *r = (raw_sink *)s;
    lcow_code rc = lcow_file_truncate(r->file, s->size, err);
    if (!rc && r->sync)
        rc = lcow_file_sync(r->file, err);
    return rc;
}

static void plain_destroy(lcow_block_sink *s)
{
    free(s);
}

static const lcow_block_sink_ops raw_ops = {raw_write, raw_finish, plain_destroy};

lcow_code lcow_block_sink_raw_file(lcow_file *f, uint64_t size, bool sync, lcow_block_sink **out,
                                   lcow_error *err)
{
    raw_sink *r = calloc(1, sizeof *r);
    if (!r)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "block sink: out of memory");
    r->base.ops = &raw_ops;
    r->base.size = size;
    r->file = f;
    r->sync = sync;
    *out = &r->base;
    return LCOW_OK;
}

/* ---- VHDX writer ---- */

typedef struct vhdx_sink {
    lcow_block_sink base;
    lcow_vhdx_writer *writer;
    bool sync;
} vhdx_sink;

static lcow_code vhdx_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                            lcow_error *err)
{
    return lcow_vhdx_writer_write(((vhdx_sink *)s)->writer, off, buf, len, err);
}

static lcow_code vhdx_finish(lcow_block_sink *s, lcow_error *err)
{
    vhdx_sink *v = (vhdx_sink *)s;
    return lcow_vhdx_writer_finish(v->writer, v->sync, err);
}

static const lcow_block_sink_ops vhdx_ops = {vhdx_write, vhdx_finish, plain_destroy};

lcow_code lcow_block_sink_vhdx(lcow_vhdx_writer *w, uint64_t size, bool sync, lcow_block_sink **out,
                               lcow_error *err)
{
    vhdx_sink *v = calloc(1, sizeof *v);
    if (!v)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "block sink: out of memory");
    v->base.ops = &vhdx_ops;
    v->base.size = size;
    v->writer = w;
    v->sync = sync;
    *out = &v->base;
    return LCOW_OK;
}

/* ---- callbacks ---- */

typedef struct callback_sink {
    lcow_block_sink base;
    lcow_block_sink_write_fn write;
    lcow_block_sink_finish_fn finish;
    void *ctx;
} callback_sink;

static lcow_code callback_write(lcow_block_sink *s, uint64_t off, const void *buf, size_t len,
                                lcow_error *err)
{
    callback_sink *c = (callback_sink *)s;
    return c->write(c->ctx, off, buf, len, err);
}

static lcow_code callback_finish(lcow_block_sink *s, lcow_error *err)
{
    callback_sink *c = (callback_sink *)s;
    return c->finish ? c->finish(c->ctx, err) : LCOW_OK;
}

static const lcow_block_sink_ops callback_ops = {callback_write, callback_finish, plain_destroy};

lcow_code lcow_block_sink_callback(lcow_block_sink_write_fn write, lcow_block_sink_finish_fn finish,
                                   void *ctx, uint64_t size, lcow_block_sink **out, lcow_error *err)
{
    callback_sink *c = calloc(1, sizeof *c);
    if (!c)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "block sink: out of memory");
    c->base.ops = &callback_ops;
    c->base.size = size;
    c->write = write;
    c->finish = finish;
    c->ctx = ctx;
    *out = &c->base;
    return LCOW_OK;
}

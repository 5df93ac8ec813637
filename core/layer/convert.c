/* tar2ext4's driver (see convert.h). */
#include "core/layer/convert.h"
#include "core/base/types.h"

#include <stdlib.h>
#include <string.h>

#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"
#define XATTR_RECORD "SCHILY.xattr."
#define SHOW(len) ((int)((len) > 200 ? 200 : (len)))

typedef struct driver {
    lcow_ext4_writer *w;
    const lcow_layer_convert_options *o;
    char *name, *link, *path; /* backslash-converted copies, whiteout target */
    size_t name_cap, link_cap, path_cap;
    lcow_ext4_xattr *xattrs;
    size_t xattrs_cap;
} driver;

static const char *slashed(char **buf, size_t *cap, const char *s, size_t n)
{
    if (!lcow_grow(buf, cap, n + 1, 1))
        return NULL;
    for (size_t i = 0; i < n; i++)
        (*buf)[i] = s[i] == '\\' ? '/' : s[i];
    (*buf)[n] = 0;
    return *buf;
}

static lcow_ext4_time ext4_time(lcow_tar_time t)
{
    return (lcow_ext4_time){t.sec, t.nsec, t.set};
}

static uint16_t type_bits(uint8_t typeflag)
{
    switch (typeflag) {
    case LCOW_TAR_REG:
        return LCOW_EXT4W_S_IFREG;
    case LCOW_TAR_SYMLINK:
        return LCOW_EXT4W_S_IFLNK;
    case LCOW_TAR_CHAR:
        return LCOW_EXT4W_S_IFCHR;
    case LCOW_TAR_BLOCK:
        return LCOW_EXT4W_S_IFBLK;
    case LCOW_TAR_DIR:
        return LCOW_EXT4W_S_IFDIR;
    case LCOW_TAR_FIFO:
        return LCOW_EXT4W_S_IFIFO;
    default:
        return 0; /* the writer makes it a regular file, as compactext4 does */
    }
}

static lcow_code entry(driver *d, lcow_tar_reader *r, const lcow_tar_header *h, lcow_error *err)
{
    const char *name = h->name, *link = h->linkname;
    size_t nl = h->name_len, ll = h->linkname_len;
    if (d->o->convert_backslash) {
        name = slashed(&d->name, &d->name_cap, name, nl);
        link = slashed(&d->link, &d->link_cap, link, ll);
        if (!name || !link)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    lcow_ext4_writer *w = d->w;
    lcow_code rc = lcow_ext4_writer_make_parents(w, name, nl, err);
    if (rc != LCOW_OK)
        return rc;

    if (d->o->convert_whiteouts) {
        size_t base = nl;
        while (base > 0 && name[base - 1] != '/')
            base--;
        const char *file = name + base;
        size_t fl = nl - base;
        if (fl >= 4 && memcmp(file, WHITEOUT, 4) == 0) {
            if (fl == sizeof OPAQUE - 1 && memcmp(file, OPAQUE, fl) == 0)
                return lcow_ext4_writer_set_xattr(w, name, base, "trusted.overlay.opaque", "y", 1,
                                                  err);
            /* dir + name without ".wh.": path.Join's cleaning is the writer's */
            if (!lcow_grow(&d->path, &d->path_cap, nl, 1))
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            memcpy(d->path, name, base);
            memcpy(d->path + base, file + 4, fl - 4);
            lcow_ext4_file f = {.mode = LCOW_EXT4W_S_IFCHR};
            return lcow_ext4_writer_create(w, d->path, nl - 4, &f, err);
        }
    }

    if (h->typeflag == LCOW_TAR_LINK)
        return lcow_ext4_writer_link(w, link, ll, name, nl, err);

    size_t nx = 0;
    for (size_t i = 0; i < h->record_count; i++) {
        const lcow_tar_record *rec = &h->records[i];
        size_t pl = sizeof XATTR_RECORD - 1;
        if (rec->key_len < pl || memcmp(rec->key, XATTR_RECORD, pl) != 0)
            continue;
        if (!lcow_grow(&d->xattrs, &d->xattrs_cap, nx + 1, sizeof *d->xattrs))
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        d->xattrs[nx++] =
            (lcow_ext4_xattr){rec->key + pl, rec->key_len - pl, rec->value, rec->value_len};
    }
    lcow_ext4_file f = {
        .mode = (uint16_t)(((uint16_t)h->mode & ~LCOW_EXT4W_S_IFMT) | type_bits(h->typeflag)),
        .uid = (uint32_t)h->uid,
        .gid = (uint32_t)h->gid,
        .size = h->size < 0 ? 0 : (uint64_t)h->size,
        .atime = ext4_time(h->atime),
        .mtime = ext4_time(h->mtime),
        .ctime = ext4_time(h->ctime),
        .crtime = ext4_time(h->mtime),
        .devmajor = (uint32_t)h->devmajor,
        .devminor = (uint32_t)h->devminor,
        .link = link,
        .link_len = ll,
        .xattrs = d->xattrs,
        .xattr_count = nx,
    };
    rc = lcow_ext4_writer_create(w, name, nl, &f, err);
    for (;;) {
        const void *p;
        size_t n;
        if (rc == LCOW_OK)
            rc = lcow_tar_read(r, &p, &n, err);
        if (rc != LCOW_OK || n == 0)
            return rc;
        rc = lcow_ext4_writer_write(w, p, n, err);
    }
}

lcow_code lcow_layer_convert_entries(lcow_ext4_writer *w, const lcow_tar_source *src,
                                     const lcow_layer_convert_options *opts,
                                     lcow_layer_convert_result *res, lcow_error *err)
{
    static const lcow_layer_convert_options none;
    driver d = {.w = w, .o = opts ? opts : &none};
    lcow_tar_reader *r;
    lcow_code rc = lcow_tar_reader_create(src, &r, err);
    if (rc != LCOW_OK)
        return rc;
    uint64_t entries = 0;
    for (;;) {
        const lcow_tar_header *h;
        rc = lcow_tar_next(r, &h, err);
        if (rc != LCOW_OK || !h)
            break;
        entries++;
        rc = entry(&d, r, h, err);
        if (rc != LCOW_OK) {
            /* The tar reader's messages name the entry already. */
            if (strncmp(err ? err->message : "", "tar:", 4) != 0)
                lcow_error_wrap(err, "layer entry %.*s (offset %llu)", SHOW(h->name_len), h->name,
                                (unsigned long long)h->offset);
            break;
        }
    }
    if (res) {
        res->tar_bytes = lcow_tar_offset(r);
        res->entries = entries;
    }
    lcow_tar_reader_free(r);
    free(d.name);
    free(d.link);
    free(d.path);
    free(d.xattrs);
    return rc;
}

lcow_code lcow_layer_convert(const lcow_tar_source *src, const char *out_path,
                             const lcow_layer_convert_options *opts, lcow_layer_convert_result *res,
                             lcow_error *err)
{
    static const lcow_layer_convert_options none;
    if (!opts)
        opts = &none;
    lcow_ext4_writer_options wo = {
        .max_disk_size = opts->max_disk_size,
        .inline_data = opts->inline_data,
        .on_final = opts->on_final,
        .on_final_ctx = opts->on_final_ctx,
        .on_written = opts->on_written,
        .on_written_ctx = opts->on_written_ctx,
        .exclusive = opts->exclusive,
    };
    lcow_ext4_writer *w;
    lcow_code rc = lcow_ext4_writer_open(out_path, &wo, &w, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_layer_convert_result r = {0};
    rc = lcow_layer_convert_entries(w, src, opts, &r, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish(w, &r.image_size, err);
    lcow_ext4_writer_stats st;
    lcow_ext4_writer_get_stats(w, &st);
    r.inodes = st.inodes;
    lcow_ext4_writer_close(w);
    if (rc != LCOW_OK) {
        lcow_os_remove(out_path, NULL);
        return rc;
    }
    if (res)
        *res = r;
    return LCOW_OK;
}

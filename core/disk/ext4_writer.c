/* Compact ext4 writer (see ext4_writer.h and ext4_writer_internal.h):
 * open/close and the public create, write, make_parents, link and set_xattr. */
#include "core/disk/ext4_writer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- public operations ---- */

lcow_code lcow_ext4_writer_create(lcow_ext4_writer *w, const char *path, size_t len,
                                  const lcow_ext4_file *f, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_create_entry(w, path, len, f, true, err);
    return rc;
}

lcow_code lcow_ext4_writer_write(lcow_ext4_writer *w, const void *data, size_t len, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc != LCOW_OK)
        return rc;
    return lcow_ext4_writer_data_write(w, data, len, err);
}

lcow_code lcow_ext4_writer_make_parents(lcow_ext4_writer *w, const char *path, size_t len,
                                        lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    size_t n;
    rc = lcow_ext4_writer_split_path(w, path, len, &n, err);
    if (rc != LCOW_OK || n < 2)
        return rc;
    uint32_t parent = ROOT_INO;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t child = node_is(N(w, parent), LCOW_EXT4W_S_IFDIR)
                             ? lcow_ext4_writer_dir_child(w, parent, w->comps[i].p, w->comps[i].len)
                             : 0;
        if (!child) {
            /* A parent the tar never names yet: its own parent's metadata,
             * the times through compactext4's fs-time round trip. */
            const node *p = N(w, parent);
            lcow_ext4_file f = {
                .mode = p->mode,
                .uid = p->uid,
                .gid = p->gid,
                .atime = lcow_ext4_writer_time_decode(p->atime),
                .mtime = lcow_ext4_writer_time_decode(p->mtime),
                .ctime = lcow_ext4_writer_time_decode(p->ctime),
                .crtime = lcow_ext4_writer_time_decode(p->crtime),
                .devmajor = p->devmajor,
                .devminor = p->devminor,
            };
            /* create_entry re-splits comps; the prefix path ends at this component. */
            const char *sub = w->comps[0].p;
            size_t sub_len = (size_t)(w->comps[i].p + w->comps[i].len - sub);
            const char *cp = w->comps[i].p;
            size_t cl = w->comps[i].len;
            rc = lcow_ext4_writer_create_entry(w, sub, sub_len, &f, true, err);
            if (rc != LCOW_OK)
                return lcow_error_wrap(err, "making the parents of %.*s", SHOW(len), path), rc;
            child = lcow_ext4_writer_dir_child(w, parent, cp, cl);
            /* comps were overwritten by create_entry: split again. */
            size_t again;
            rc = lcow_ext4_writer_split_path(w, path, len, &again, err);
            if (rc != LCOW_OK)
                return rc;
        }
        parent = child;
    }
    return LCOW_OK;
}

lcow_code lcow_ext4_writer_link(lcow_ext4_writer *w, const char *target_path, size_t target_len,
                                const char *path, size_t len, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    target t;
    rc = lcow_ext4_writer_resolve(w, path, len, false, &t, err);
    if (rc != LCOW_OK)
        return rc;
    if (t.existing && node_is(N(w, t.existing), LCOW_EXT4W_S_IFDIR))
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%.*s: cannot replace a directory with a hard link",
                                      SHOW(len), path));
    target o;
    rc = lcow_ext4_writer_resolve(w, target_path, target_len, true, &o, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "hard link %.*s", SHOW(len), path), rc;
    uint32_t old = o.existing;
    if (node_is(N(w, old), LCOW_EXT4W_S_IFDIR))
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%.*s: hard link target %.*s is a directory", SHOW(len), path,
                                      SHOW(target_len), target_path));
    if (t.existing != old && N(w, old)->links >= MAX_LINKS)
        return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "%.*s: hard link target %.*s has too many links", SHOW(len),
                                      path, SHOW(target_len), target_path));
    if (t.existing)
        N(w, t.existing)->links--;
    N(w, old)->links++;
    if (t.dirent)
        w->dirents[t.dirent - 1].child = old;
    else if (!lcow_ext4_writer_dir_add(w, t.dir, t.name, t.name_len, old))
        return oom(w, err);
    if (t.existing && t.existing != old && N(w, t.existing)->links == 0) {
        /* tar -x replaces the file; its inode is orphaned: release it. */
        node *e = N(w, t.existing);
        lcow_ext4_writer_release_data(w, e);
        if (e->xattr_block)
            lcow_ext4_writer_release_blocks(w, e->xattr_block, 1);
        memset(e, 0, sizeof *e);
    }
    return LCOW_OK;
}

typedef struct statx {
    lcow_ext4_xattr *v;
    size_t n, cap;
    bool oom;
} statx;

static bool statx_add(void *ctx, const uint8_t *name, size_t name_len, const uint8_t *value,
                      size_t value_len)
{
    statx *s = ctx;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].name_len == name_len && memcmp(s->v[i].name, name, name_len) == 0) {
            s->v[i].value = value;
            s->v[i].value_len = value_len;
            return true;
        }
    if (!lcow_grow(&s->v, &s->cap, s->n + 1, sizeof *s->v)) {
        s->oom = true;
        return false;
    }
    s->v[s->n++] = (lcow_ext4_xattr){(const char *)name, name_len, value, value_len};
    return true;
}

lcow_code lcow_ext4_writer_set_xattr(lcow_ext4_writer *w, const char *path, size_t len,
                                     const char *name, const void *value, size_t value_len,
                                     lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = lcow_ext4_writer_finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    target t;
    rc = lcow_ext4_writer_resolve(w, path, len, true, &t, err);
    if (rc != LCOW_OK)
        return rc;
    const node *n = N(w, t.existing);
    if (node_is(n, LCOW_EXT4W_S_IFLNK) && n->size > SMALL_SYMLINK)
        return fail(w,
                    lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                   "%.*s: cannot set an xattr on a long symlink", SHOW(len), path));
    /* compactext4's Stat: metadata, the block's xattrs, then the inode's
     * (without system.data), then the new one. */
    /* Room for the block, the inode area and the names decoded from both
     * (a name gains at most a 24-byte prefix; a block holds <= 254 entries). */
    enum { BLOCK_NAMES = 16 * 1024, AREA_NAMES = 1024 };
    size_t need = BS + INODE_XATTR + BLOCK_NAMES + AREA_NAMES;
    if (!lcow_grow(&w->scratch, &w->scratch_cap, need, 1))
        return oom(w, err);
    uint8_t *block = w->scratch;
    uint8_t *area = w->scratch + BS;
    char *names = (char *)w->scratch + BS + INODE_XATTR;
    statx s = {0};
    if (n->xattr_block) {
        rc = lcow_ext4_writer_out_read_block(w, n->xattr_block, block, err);
        if (rc != LCOW_OK)
            return rc;
        if (!lcow_ext4_writer_xattrs_get(block + 32, BS - 32, 32, names, statx_add, &s) && !s.oom) {
            free(s.v);
            return fail(w, lcow_error_set(err, LCOW_INTERNAL, "%.*s: malformed xattr block",
                                          SHOW(len), path));
        }
        names += BLOCK_NAMES;
    }
    n = N(w, t.existing);
    if (n->has_xattrs && !s.oom) {
        memcpy(area, w->extras[n->extra - 1].xattr, INODE_XATTR);
        if (!lcow_ext4_writer_xattrs_get(area + 4, INODE_XATTR - 4, 0, names, statx_add, &s) &&
            !s.oom) {
            free(s.v);
            return fail(w, lcow_error_set(err, LCOW_INTERNAL, "%.*s: malformed in-inode xattrs",
                                          SHOW(len), path));
        }
    }
    for (size_t i = 0; i < s.n; i++)
        if (s.v[i].name_len == 11 && memcmp(s.v[i].name, "system.data", 11) == 0) {
            s.v[i] = s.v[--s.n];
            break;
        }
    if (!s.oom)
        statx_add(&s, (const uint8_t *)name, strlen(name), value, value_len);
    if (s.oom) {
        free(s.v);
        return oom(w, err);
    }
    char link[SMALL_SYMLINK + 1];
    n = N(w, t.existing);
    lcow_ext4_file f = {
        .mode = n->mode,
        .uid = n->uid,
        .gid = n->gid,
        .size = n->size,
        .atime = lcow_ext4_writer_time_decode(n->atime),
        .mtime = lcow_ext4_writer_time_decode(n->mtime),
        .ctime = lcow_ext4_writer_time_decode(n->ctime),
        .crtime = lcow_ext4_writer_time_decode(n->crtime),
        .devmajor = n->devmajor,
        .devminor = n->devminor,
        .xattrs = s.v,
        .xattr_count = s.n,
    };
    if (node_is(n, LCOW_EXT4W_S_IFLNK)) {
        memcpy(link, n->iblock, n->data_len);
        f.link = link;
        f.link_len = n->data_len;
    }
    rc = lcow_ext4_writer_create_entry(w, path, len, &f, false, err);
    free(s.v);
    return rc;
}

/* ---- lifetime ---- */

lcow_code lcow_ext4_writer_open(const char *path, const lcow_ext4_writer_options *opts,
                                lcow_ext4_writer **out, lcow_error *err)
{
    *out = NULL;
    lcow_ext4_writer_options o = {0};
    if (opts)
        o = *opts;
    lcow_ext4_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4 writer: out of memory");
    if (o.max_disk_size == 0)
        w->max_disk = LCOW_EXT4W_DEFAULT_MAX_DISK;
    else if (o.max_disk_size > LCOW_EXT4W_MAX_MAX_DISK)
        w->max_disk = LCOW_EXT4W_MAX_MAX_DISK;
    else
        w->max_disk = (o.max_disk_size + BS - 1) & ~(uint64_t)(BS - 1);
    uint64_t max_blocks = (w->max_disk - 1) / BS + 1;
    uint64_t max_groups = (max_blocks - 1) / BLOCKS_PER_GROUP + 1;
    w->gd_blocks = (uint32_t)((max_groups - 1) / GD_PER_BLOCK + 1);
    w->inline_data = o.inline_data;
    w->on_final = o.on_final;
    w->on_final_ctx = o.on_final_ctx;
    w->on_written = o.on_written;
    w->on_written_ctx = o.on_written_ctx;
    size_t cap = o.buffer_bytes ? o.buffer_bytes : DEFAULT_BUFFER;
    if (cap < 64 * 1024)
        cap = 64 * 1024;
    w->cap = cap & ~(size_t)(BS - 1);
    w->buf = malloc(w->cap);
    w->slots_cap = 1024;
    w->slots = calloc(w->slots_cap, sizeof *w->slots);
    if (!w->buf || !w->slots) {
        lcow_ext4_writer_close(w);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4 writer: out of memory");
    }
    int flags = LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE |
                (o.exclusive ? LCOW_OPEN_EXCLUSIVE : LCOW_OPEN_TRUNCATE);
    lcow_code rc = lcow_file_open(path, flags, &w->f, err);
    if (rc != LCOW_OK) {
        lcow_ext4_writer_close(w);
        return rc;
    }
    /* Inode 1 (bad blocks) unused, the root, 3..10 reserved, lost+found. */
    if (!GROW(w->nodes, w->nodes_cap, 64)) {
        lcow_ext4_writer_close(w);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4 writer: out of memory");
    }
    memset(&w->nodes[0], 0, sizeof(node));
    w->nnodes = 1;
    lcow_ext4_file root = {.mode = LCOW_EXT4W_S_IFDIR | 0755};
    uint32_t ino;
    rc = lcow_ext4_writer_make_inode(w, "/", 1, &root, 0, false, &ino, err);
    if (rc == LCOW_OK) {
        N(w, ROOT_INO)->links++; /* its ".." */
        while (w->nnodes < FIRST_INO - 1)
            memset(&w->nodes[w->nnodes++], 0, sizeof(node));
        w->base = (uint64_t)(1 + w->gd_blocks) * BS;
        lcow_ext4_file lpf = {.mode = LCOW_EXT4W_S_IFDIR | 0700};
        rc = lcow_ext4_writer_create_entry(w, "lost+found", 10, &lpf, false, err);
    }
    if (rc != LCOW_OK) {
        lcow_ext4_writer_close(w);
        return rc;
    }
    *out = w;
    return LCOW_OK;
}

lcow_file *lcow_ext4_writer_file(lcow_ext4_writer *w)
{
    return w->f;
}

void lcow_ext4_writer_get_stats(const lcow_ext4_writer *w, lcow_ext4_writer_stats *out)
{
    *out = w->stats;
    out->inodes = w->nnodes;
}

void lcow_ext4_writer_close(lcow_ext4_writer *w)
{
    if (!w)
        return;
    lcow_file_close(w->f);
    free(w->buf);
    free(w->xblocks);
    free(w->freed);
    free(w->nodes);
    free(w->extras);
    free(w->dirents);
    free(w->slots);
    free(w->names);
    free(w->cur_name);
    free(w->comps);
    free(w->scratch);
    free(w);
}

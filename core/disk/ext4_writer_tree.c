/* Compact ext4 writer: times, the directory index (names, paths, lookup),
 * inodes and entries (compactext4's makeInode and Create). */
#include "core/disk/ext4_writer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- times ---- */

/* compactext4's timeToFsTime: seconds in the low 34 bits (ext4 stores the
 * low 32 in the inode and bits 32-33 as epoch bits), nanoseconds above. */
static uint64_t time_encode(lcow_ext4_time t)
{
    if (!t.set)
        return 0;
    int64_t s = t.sec;
    uint64_t ns = t.nsec;
    if (ns >= 1000000000u) { /* time.Unix normalizes */
        s += (int64_t)(ns / 1000000000u);
        ns %= 1000000000u;
    }
    if (s == GO_ZERO_TIME_UNIX && ns == 0)
        return 0;
    if (s < -0x80000000ll)
        return 0x80000000u;
    if (s > 0x37fffffffll)
        return 0x37fffffffull;
    return (uint64_t)s | (ns << 34);
}

/* compactext4's fsTimeToTime: the inverse as Go computes it (a negative
 * time comes back as a large positive one and is then clamped: the quirk
 * is kept because implicit parents and set_xattr go through it). */
lcow_ext4_time lcow_ext4_writer_time_decode(uint64_t t)
{
    lcow_ext4_time r = {0, 0, false};
    if (t == 0)
        return r;
    int64_t s = (int64_t)(t & 0x3ffffffffull);
    if (s > 0x7fffffff && s < 0x100000000ll)
        s = (int32_t)(uint32_t)s;
    uint64_t ns = t >> 34;
    s += (int64_t)(ns / 1000000000u);
    r.sec = s;
    r.nsec = (uint32_t)(ns % 1000000000u);
    r.set = true;
    return r;
}

/* ---- names and directories ---- */

static uint32_t name_hash(uint32_t parent, const char *p, size_t len)
{
    uint32_t h = 2166136261u ^ (parent * 0x9e3779b1u);
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)p[i];
        h *= 16777619u;
    }
    return h ^ (h >> 15);
}

static bool dirent_is(const lcow_ext4_writer *w, const dirent *d, uint32_t parent, const char *p,
                      size_t len)
{
    return d->parent == parent && d->name_len == len && memcmp(w->names + d->name_off, p, len) == 0;
}

/* 1-based dirent index of (parent, name), 0 if absent. */
static uint32_t dir_find(const lcow_ext4_writer *w, uint32_t parent, const char *p, size_t len)
{
    uint32_t mask = w->slots_cap - 1;
    for (uint32_t i = name_hash(parent, p, len) & mask;; i = (i + 1) & mask) {
        uint32_t d = w->slots[i];
        if (d == 0)
            return 0;
        if (dirent_is(w, &w->dirents[d - 1], parent, p, len))
            return d;
    }
}

uint32_t lcow_ext4_writer_dir_child(const lcow_ext4_writer *w, uint32_t parent, const char *p,
                                    size_t len)
{
    uint32_t d = dir_find(w, parent, p, len);
    return d ? w->dirents[d - 1].child : 0;
}

static bool slots_rehash(lcow_ext4_writer *w, uint32_t cap)
{
    uint32_t *s = calloc(cap, sizeof *s);
    if (!s)
        return false;
    for (uint32_t d = 1; d <= w->ndirents; d++) {
        const dirent *e = &w->dirents[d - 1];
        uint32_t i = name_hash(e->parent, w->names + e->name_off, e->name_len) & (cap - 1);
        while (s[i])
            i = (i + 1) & (cap - 1);
        s[i] = d;
    }
    free(w->slots);
    w->slots = s;
    w->slots_cap = cap;
    return true;
}

bool lcow_ext4_writer_dir_add(lcow_ext4_writer *w, uint32_t parent, const char *p, size_t len,
                              uint32_t child)
{
    if ((uint64_t)(w->ndirents + 1) * 2 > w->slots_cap && !slots_rehash(w, w->slots_cap * 2))
        return false;
    if (!GROW(w->dirents, w->dirents_cap, (size_t)w->ndirents + 1))
        return false;
    size_t ncap = (size_t)w->names_cap;
    if (!lcow_grow(&w->names, &ncap, (size_t)(w->names_len + len), 1))
        return false;
    w->names_cap = ncap;
    memcpy(w->names + w->names_len, p, len);
    dirent *d = &w->dirents[w->ndirents++];
    d->parent = parent;
    d->child = child;
    d->name_len = (uint32_t)len;
    d->name_off = w->names_len;
    w->names_len += len;
    node *dir = N(w, parent);
    d->next = dir->children;
    dir->children = w->ndirents;
    uint32_t mask = w->slots_cap - 1;
    uint32_t i = name_hash(parent, p, len) & mask;
    while (w->slots[i])
        i = (i + 1) & mask;
    w->slots[i] = w->ndirents;
    return true;
}

/* path.Clean("/" + path) split into components; a ".." above the root is
 * refused (compactext4 drops it silently). */
lcow_code lcow_ext4_writer_split_path(lcow_ext4_writer *w, const char *path, size_t len, size_t *n,
                                      lcow_error *err)
{
    size_t k = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        size_t l = j - i;
        const char *s = path + i;
        i = j + 1;
        if (l == 0 || (l == 1 && s[0] == '.'))
            continue;
        if (l == 2 && s[0] == '.' && s[1] == '.') {
            if (k == 0)
                return fail(w,
                            lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                           "%.*s: \"..\" climbs above the root", SHOW(len), path));
            k--;
            continue;
        }
        if (!lcow_grow(&w->comps, &w->comps_cap, k + 1, sizeof *w->comps))
            return oom(w, err);
        w->comps[k].p = s;
        w->comps[k].len = l;
        k++;
    }
    *n = k;
    return LCOW_OK;
}

/* Walks comps[0..n) from the root; 0 if a component is missing or a
 * non-directory is in the way (compactext4's findPath). */
static uint32_t walk(const lcow_ext4_writer *w, size_t n)
{
    uint32_t ino = ROOT_INO;
    for (size_t i = 0; i < n; i++) {
        if (!node_is(&w->nodes[ino - 1], LCOW_EXT4W_S_IFDIR))
            return 0;
        ino = lcow_ext4_writer_dir_child(w, ino, w->comps[i].p, w->comps[i].len);
        if (!ino)
            return 0;
    }
    return ino;
}

/* compactext4's lookup: the parent must be an existing directory. */
lcow_code lcow_ext4_writer_resolve(lcow_ext4_writer *w, const char *path, size_t len,
                                   bool must_exist, target *t, lcow_error *err)
{
    size_t n;
    lcow_code rc = lcow_ext4_writer_split_path(w, path, len, &n, err);
    if (rc != LCOW_OK)
        return rc;
    memset(t, 0, sizeof *t);
    if (n == 0) {
        t->dir = ROOT_INO;
        t->existing = ROOT_INO;
        return LCOW_OK;
    }
    t->name = w->comps[n - 1].p;
    t->name_len = w->comps[n - 1].len;
    if (t->name_len > LCOW_EXT4W_MAX_NAME)
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%.*s: a name component is longer than 255 bytes", SHOW(len),
                                      path));
    t->dir = walk(w, n - 1);
    if (!t->dir || !node_is(N(w, t->dir), LCOW_EXT4W_S_IFDIR))
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%.*s: parent directory not found", SHOW(len), path));
    t->dirent = dir_find(w, t->dir, t->name, t->name_len);
    t->existing = t->dirent ? w->dirents[t->dirent - 1].child : 0;
    if (!t->existing && must_exist)
        return fail(w,
                    lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%.*s: not found", SHOW(len), path));
    return LCOW_OK;
}

/* ---- inodes ---- */

/* compactext4's makeInode: fills a new inode (reuse 0) or updates an
 * existing one. release: a file whose data is written may be replaced
 * (its blocks are released); otherwise that is refused as compactext4
 * refuses it. */
lcow_code lcow_ext4_writer_make_inode(lcow_ext4_writer *w, const char *path, size_t path_len,
                                      const lcow_ext4_file *f, uint32_t reuse, bool release,
                                      uint32_t *out, lcow_error *err)
{
    uint16_t mode = f->mode;
    if (S_TYPE(mode) == 0)
        mode |= LCOW_EXT4W_S_IFREG;
    uint16_t type = S_TYPE(mode);
    switch (type) {
    case LCOW_EXT4W_S_IFREG:
    case LCOW_EXT4W_S_IFLNK:
    case LCOW_EXT4W_S_IFDIR:
    case LCOW_EXT4W_S_IFIFO:
    case LCOW_EXT4W_S_IFSOCK:
    case LCOW_EXT4W_S_IFCHR:
    case LCOW_EXT4W_S_IFBLK:
        break;
    default:
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%.*s: invalid mode %o",
                                      SHOW(path_len), path, (unsigned)mode));
    }
    if (type == LCOW_EXT4W_S_IFREG && f->size > LCOW_EXT4W_MAX_FILE_SIZE)
        return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "%.*s: file too big: %llu bytes (at most %llu)",
                                      SHOW(path_len), path, (unsigned long long)f->size,
                                      (unsigned long long)LCOW_EXT4W_MAX_FILE_SIZE));
    uint32_t ino = reuse;
    if (!ino) {
        if (w->nnodes == 0xffffffffu || !GROW(w->nodes, w->nodes_cap, (size_t)w->nnodes + 1))
            return oom(w, err);
        memset(&w->nodes[w->nnodes], 0, sizeof(node));
        ino = ++w->nnodes;
        if (type == LCOW_EXT4W_S_IFDIR)
            N(w, ino)->links = 1; /* its own "." */
    } else if (N(w, ino)->flags & FL_EXTENTS) {
        if (!release)
            return fail(w, lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                          "%.*s: cannot update a file whose data is written",
                                          SHOW(path_len), path));
        /* tar -x semantics where compactext4 refuses: a new file in the old
         * inode, nothing of the old one kept (data, xattr block, xattrs). */
        node *o = N(w, ino);
        lcow_ext4_writer_release_data(w, o);
        if (o->xattr_block) {
            lcow_ext4_writer_release_blocks(w, o->xattr_block, 1);
            o->xattr_block = 0;
            o->block_count--;
        }
        o->has_xattrs = 0;
    }

    node *n = N(w, ino);
    /* The xattrs kept in the inode are merged into the new set (compactext4
     * keeps them when a directory or a data-less file is named again). */
    uint8_t old_area[INODE_XATTR];
    char old_names[INODE_XATTR * 2 + 8 * 32];
    bool had_area = n->has_xattrs;
    if (had_area)
        memcpy(old_area, w->extras[n->extra - 1].xattr, INODE_XATTR);

    n->mode = mode;
    n->uid = f->uid;
    n->gid = f->gid;
    n->flags = FL_HUGE_FILE;
    n->atime = time_encode(f->atime);
    n->ctime = time_encode(f->ctime);
    n->mtime = time_encode(f->mtime);
    n->crtime = time_encode(f->crtime);
    n->devmajor = f->devmajor;
    n->devminor = f->devminor;
    n->data_len = 0;
    n->has_xattrs = 0;

    xlists l = {.inode_left = XATTR_INODE_ROOM, .block_left = XATTR_BLOCK_ROOM};
    xcollect c = {0};
    lcow_code rc = LCOW_OK;
    bool oom_flag = false;
    static const uint8_t zeros[INLINE_TAIL];
    uint64_t size = 0;
    if (type == LCOW_EXT4W_S_IFREG) {
        size = f->size;
        if (w->inline_data && size <= LCOW_EXT4W_INLINE_MAX) {
            if (!lcow_ext4_writer_node_extra(w, n)) {
                rc = oom(w, err);
                goto out;
            }
            n = N(w, ino);
            memset(n->iblock, 0, IBLOCK);
            memset(w->extras[n->extra - 1].tail, 0, INLINE_TAIL);
            n->data_len = (uint8_t)size;
            size_t tail = size > IBLOCK ? (size_t)size - IBLOCK : 0;
            /* The data's place in the inode: system.data, filled at finish. */
            lcow_ext4_writer_xlists_add(&l, (const uint8_t *)"system.data", 11, zeros, tail,
                                        &oom_flag);
            n->flags |= FL_INLINE_DATA;
        }
    } else if (type == LCOW_EXT4W_S_IFLNK) {
        n->mode |= 0777;
        size = f->link_len;
        if (size <= SMALL_SYMLINK) {
            memset(n->iblock, 0, IBLOCK);
            memcpy(n->iblock, f->link, f->link_len);
            n->data_len = (uint8_t)size;
        }
    }

    /* The caller's xattrs (the later of a repeated name wins), then the
     * inode's old ones that were not given again; sorted by name. */
    for (size_t i = 0; i < f->xattr_count && !c.oom; i++)
        lcow_ext4_writer_xcollect_add(&c, (const uint8_t *)f->xattrs[i].name, f->xattrs[i].name_len,
                                      f->xattrs[i].value, f->xattrs[i].value_len);
    lcow_ext4_writer_xcollect_settle(&c);
    if (had_area && !c.oom) {
        size_t given = c.n;
        xcollect old = {0};
        if (!lcow_ext4_writer_xattrs_get(old_area + 4, INODE_XATTR - 4, 0, old_names,
                                         lcow_ext4_writer_xcollect_add, &old) &&
            !old.oom) {
            free(old.v);
            rc = fail(w, lcow_error_set(err, LCOW_INTERNAL, "%.*s: malformed in-inode xattrs",
                                        SHOW(path_len), path));
            goto out;
        }
        lcow_ext4_writer_xcollect_settle(&old);
        for (size_t i = 0; i < old.n && !c.oom; i++)
            if (!lcow_ext4_writer_xcollect_has(&c, given, old.v[i].name, old.v[i].name_len))
                lcow_ext4_writer_xcollect_add(&c, old.v[i].name, old.v[i].name_len, old.v[i].value,
                                              old.v[i].value_len);
        oom_flag |= old.oom;
        free(old.v);
        lcow_ext4_writer_xcollect_settle(&c);
    }
    if (c.oom || oom_flag) {
        rc = oom(w, err);
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        if (!lcow_ext4_writer_xlists_add(&l, c.v[i].name, c.v[i].name_len, c.v[i].value,
                                         c.v[i].value_len, &oom_flag)) {
            if (oom_flag)
                rc = oom(w, err);
            else
                rc = fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                            "%.*s: xattr %.*s (%zu bytes) does not fit",
                                            SHOW(path_len), path, SHOW(c.v[i].name_len),
                                            (const char *)c.v[i].name, c.v[i].value_len));
            goto out;
        }
    }
    rc = lcow_ext4_writer_write_xattrs(w, ino, &l, err);
    if (rc != LCOW_OK)
        goto out;
    n = N(w, ino);
    n->size = size;
    if (type == LCOW_EXT4W_S_IFLNK && size > SMALL_SYMLINK) {
        /* A long target is the symlink's data, in a block of its own. */
        rc = lcow_ext4_writer_start_data(w, ino, size, path, path_len, err);
        if (rc == LCOW_OK)
            rc = lcow_ext4_writer_data_write(w, f->link, f->link_len, err);
        if (rc == LCOW_OK)
            rc = lcow_ext4_writer_finish_data(w, err);
    }
out:
    free(c.v);
    free(l.in_block);
    if (rc == LCOW_OK)
        *out = ino;
    return rc;
}

/* compactext4's Create. */
lcow_code lcow_ext4_writer_create_entry(lcow_ext4_writer *w, const char *path, size_t len,
                                        const lcow_ext4_file *f, bool release, lcow_error *err)
{
    target t;
    lcow_code rc = lcow_ext4_writer_resolve(w, path, len, false, &t, err);
    if (rc != LCOW_OK)
        return rc;
    uint16_t type = S_TYPE(f->mode) ? S_TYPE(f->mode) : LCOW_EXT4W_S_IFREG;
    bool is_dir = type == LCOW_EXT4W_S_IFDIR;
    uint32_t reuse = 0;
    if (t.existing) {
        node *e = N(w, t.existing);
        if (node_is(e, LCOW_EXT4W_S_IFDIR)) {
            if (!is_dir)
                return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                              "%.*s: cannot replace a directory with a file",
                                              SHOW(len), path));
            reuse = t.existing;
        } else if (is_dir) {
            return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                          "%.*s: cannot replace a file with a directory", SHOW(len),
                                          path));
        } else if (e->links < 2) {
            reuse = t.existing;
        }
    } else if (is_dir && N(w, t.dir)->links >= MAX_LINKS) {
        return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "%.*s: the parent directory has too many links", SHOW(len),
                                      path));
    }
    uint32_t child;
    rc = lcow_ext4_writer_make_inode(w, path, len, f, reuse, release, &child, err);
    if (rc != LCOW_OK)
        return rc;
    if (t.existing != child) {
        if (t.existing)
            N(w, t.existing)->links--;
        if (t.dirent) {
            w->dirents[t.dirent - 1].child = child;
        } else if (!lcow_ext4_writer_dir_add(w, t.dir, t.name, t.name_len, child)) {
            return oom(w, err);
        }
        N(w, child)->links++;
        if (node_is(N(w, child), LCOW_EXT4W_S_IFDIR))
            N(w, t.dir)->links++;
    }
    if (node_is(N(w, child), LCOW_EXT4W_S_IFREG))
        return lcow_ext4_writer_start_data(w, child, f->size, path, len, err);
    return LCOW_OK;
}

/* Compact ext4 writer: xattrs, their encoding, placement (inode or block)
 * and merging. */
#include "core/disk/ext4_writer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/disk/byteorder.h"
#include "core/disk/go_sort.h"

/* ---- xattrs ---- */

static const struct {
    uint8_t index;
    const char *prefix;
} XATTR_PREFIXES[] = {
    {2, "system.posix_acl_access"},
    {3, "system.posix_acl_default"},
    {8, "system.richacl"},
    {7, "system."},
    {1, "user."},
    {4, "trusted."},
    {6, "security."},
};
#define NPREFIXES (sizeof XATTR_PREFIXES / sizeof XATTR_PREFIXES[0])

static void xattr_compress(const uint8_t *name, size_t len, xplaced *x)
{
    x->index = 0;
    x->name = name;
    x->name_len = len;
    for (size_t i = 0; i < NPREFIXES; i++) {
        size_t pl = strlen(XATTR_PREFIXES[i].prefix);
        if (len >= pl && memcmp(name, XATTR_PREFIXES[i].prefix, pl) == 0) {
            x->index = XATTR_PREFIXES[i].index;
            x->name = name + pl;
            x->name_len = len - pl;
            return;
        }
    }
}

static const char *xattr_prefix(uint8_t index)
{
    for (size_t i = 0; i < NPREFIXES; i++)
        if (XATTR_PREFIXES[i].index == index)
            return XATTR_PREFIXES[i].prefix;
    return "";
}

static uint32_t xattr_hash(const xplaced *x)
{
    uint32_t h = 0;
    for (size_t i = 0; i < x->name_len; i++)
        h = (h << 5) ^ (h >> 27) ^ x->name[i];
    size_t i = 0;
    for (; i + 3 < x->value_len; i += 4)
        h = (h << 16) ^ (h >> 16) ^ lcow_le_get32(x->value + i);
    if (x->value_len % 4) {
        uint8_t last[4] = {0};
        memcpy(last, x->value + (x->value_len & ~(size_t)3), x->value_len % 4);
        h = (h << 16) ^ (h >> 16) ^ lcow_le_get32(last);
    }
    return h;
}

static size_t entry_len(const xplaced *x)
{
    return ((x->name_len + 3) & ~(size_t)3) + 16;
}

static size_t value_len4(const xplaced *x)
{
    return (x->value_len + 3) & ~(size_t)3;
}

/* Entries from the start of b, values packed down from its end; value
 * offsets are relative to b - delta (compactext4's putXattrs). */
void lcow_ext4_writer_xattrs_put(const xplaced *xs, size_t n, uint8_t *b, size_t blen,
                                 uint16_t delta)
{
    uint16_t offset = (uint16_t)(blen + delta);
    size_t eb = 0, db = blen;
    for (size_t i = 0; i < n; i++) {
        const xplaced *x = &xs[i];
        size_t vl = value_len4(x);
        offset = (uint16_t)(offset - vl);
        b[eb] = (uint8_t)x->name_len;
        b[eb + 1] = x->index;
        lcow_le_put16(b + eb + 2, offset);
        lcow_le_put32(b + eb + 8, (uint32_t)x->value_len);
        lcow_le_put32(b + eb + 12, xattr_hash(x));
        memcpy(b + eb + 16, x->name, x->name_len);
        eb += entry_len(x);
        memcpy(b + db - vl, x->value, x->value_len);
        db -= vl;
    }
}

/* compactext4's getXattrs: calls fn for each entry (full name). Returns
 * false on a malformed area (compactext4 would panic). */
bool lcow_ext4_writer_xattrs_get(const uint8_t *b, size_t blen, uint16_t delta, char *namebuf,
                                 xattr_fn fn, void *ctx)
{
    size_t eb = 0;
    while (eb < blen) {
        uint8_t nl = b[eb];
        if (nl == 0)
            break;
        if (eb + 16 + nl > blen)
            return false;
        uint8_t index = b[eb + 1];
        uint16_t off = (uint16_t)(lcow_le_get16(b + eb + 2) - delta);
        uint32_t vl = lcow_le_get32(b + eb + 8);
        if ((size_t)off + vl > blen)
            return false;
        const char *prefix = xattr_prefix(index);
        size_t pl = strlen(prefix);
        memcpy(namebuf, prefix, pl);
        memcpy(namebuf + pl, b + eb + 16, nl);
        if (!fn(ctx, (const uint8_t *)namebuf, pl + nl, b + off, vl))
            return false;
        namebuf += pl + nl;
        eb += ((size_t)(nl + 3) & ~(size_t)3) + 16;
    }
    return true;
}

/* The comparator compactext4 gives sort.Slice for the xattr block:
 * Index < || len(Name) < || Name < . It is not a strict weak order, so the
 * result depends on the algorithm: core/disk/go_sort is Go 1.19's. */
static bool xblock_less(const xplaced *a, const xplaced *b)
{
    if (a->index < b->index)
        return true;
    if (a->name_len < b->name_len)
        return true;
    size_t m = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, m);
    return c < 0 || (c == 0 && a->name_len < b->name_len);
}

static bool xblock_less_v(const void *a, const void *b)
{
    return xblock_less(a, b);
}

int lcow_ext4_writer_name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t m = al < bl ? al : bl;
    int c = memcmp(a, b, m);
    if (c)
        return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int xfull_cmp(const void *pa, const void *pb)
{
    const xfull *a = pa, *b = pb;
    int c = lcow_ext4_writer_name_cmp(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    return a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

/* compactext4's addXattr: the inode while it has room, else the block. */
bool lcow_ext4_writer_xlists_add(xlists *l, const uint8_t *name, size_t name_len,
                                 const uint8_t *value, size_t value_len, bool *oom_flag)
{
    xplaced x;
    xattr_compress(name, name_len, &x);
    x.value = value;
    x.value_len = value_len;
    uint64_t need = (uint64_t)entry_len(&x) + value_len4(&x);
    if (l->inode_left >= need && l->n_inode < sizeof l->in_inode / sizeof l->in_inode[0]) {
        l->in_inode[l->n_inode++] = x;
        l->inode_left -= (size_t)need;
        return true;
    }
    if (l->block_left >= need) {
        if (!lcow_grow(&l->in_block, &l->block_cap, l->n_block + 1, sizeof *l->in_block)) {
            *oom_flag = true;
            return false;
        }
        l->in_block[l->n_block++] = x;
        l->block_left -= (size_t)need;
        return true;
    }
    return false;
}

/* compactext4's writeXattrs. */
lcow_code lcow_ext4_writer_write_xattrs(lcow_ext4_writer *w, uint32_t ino, xlists *l,
                                        lcow_error *err)
{
    node *n = N(w, ino);
    if (l->n_inode) {
        extra *e = lcow_ext4_writer_node_extra(w, n);
        if (!e)
            return oom(w, err);
        memset(e->xattr, 0, sizeof e->xattr);
        lcow_le_put32(e->xattr, XATTR_MAGIC);
        lcow_ext4_writer_xattrs_put(l->in_inode, l->n_inode, e->xattr + 4, INODE_XATTR - 4, 0);
        n->has_xattrs = 1;
    }
    if (l->n_block || n->xattr_block) {
        lcow_go_sort_slice(l->in_block, l->n_block, sizeof *l->in_block, xblock_less_v);
        uint8_t b[BS] = {0};
        lcow_le_put32(b, XATTR_MAGIC);
        lcow_le_put32(b + 4, 1); /* reference count */
        lcow_le_put32(b + 8, 1); /* blocks */
        lcow_ext4_writer_xattrs_put(l->in_block, l->n_block, b + 32, BS - 32, 32);
        if (n->xattr_block)
            return lcow_ext4_writer_out_rewrite_block(w, n->xattr_block, b, err);
        uint32_t blk = out_block(w);
        if (!lcow_grow(&w->xblocks, &w->xblocks_cap, w->nxblocks + 1, sizeof *w->xblocks))
            return oom(w, err);
        lcow_code rc = lcow_ext4_writer_out_write(w, b, BS, err);
        if (rc != LCOW_OK)
            return rc;
        w->xblocks[w->nxblocks++] = blk;
        n = N(w, ino);
        n->xattr_block = blk;
        n->block_count++;
    }
    return LCOW_OK;
}

bool lcow_ext4_writer_xcollect_add(void *ctx, const uint8_t *name, size_t name_len,
                                   const uint8_t *value, size_t value_len)
{
    xcollect *c = ctx;
    if (!lcow_grow(&c->v, &c->cap, c->n + 1, sizeof *c->v)) {
        c->oom = true;
        return false;
    }
    c->v[c->n] = (xfull){name, name_len, value, value_len, c->n};
    c->n++;
    return true;
}

/* Sorts by name and keeps, for each name, the entry added last. */
void lcow_ext4_writer_xcollect_settle(xcollect *c)
{
    if (c->n < 2)
        return;
    qsort(c->v, c->n, sizeof *c->v, xfull_cmp);
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (i + 1 < c->n && lcow_ext4_writer_name_cmp(c->v[i].name, c->v[i].name_len,
                                                      c->v[i + 1].name, c->v[i + 1].name_len) == 0)
            continue;
        c->v[k++] = c->v[i];
    }
    c->n = k;
}

bool lcow_ext4_writer_xcollect_has(const xcollect *c, size_t upto, const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < upto; i++)
        if (lcow_ext4_writer_name_cmp(c->v[i].name, c->v[i].name_len, name, len) == 0)
            return true;
    return false;
}

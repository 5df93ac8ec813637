/* Compact ext4 writer (see ext4_writer.h). The on-disk results follow
 * hcsshim's compactext4 at commit 7c9ff7f; where its code has quirks that
 * shape the bytes (the xattr block's sort comparator, the extent-tree
 * arithmetic past 340 extents, the time round trip of implicit parents)
 * this file reproduces the quirk and says so. Little-endian throughout. */
#include "core/disk/ext4_writer.h"

#include <stdlib.h>
#include <string.h>

#include "core/disk/byteorder.h"
#include "core/disk/go_sort.h"
#include "core/base/types.h"

#define BS 4096u
#define INODE_SIZE 256u
#define INODE_USED 152u                       /* fields through i_crtime_extra */
#define INODE_XATTR (INODE_SIZE - INODE_USED) /* 104 bytes of in-inode xattrs */
#define EXTRA_ISIZE (INODE_USED - 128u)
#define FIRST_INO 11u
#define ROOT_INO 2u
#define BLOCKS_PER_GROUP 32768u
#define GD_SIZE 32u
#define GD_PER_BLOCK (BS / GD_SIZE)
#define MAX_LINKS 65000u
#define SMALL_SYMLINK 59u
#define IBLOCK 60u
#define EXTENT_MAX_LEN 0x8000u
#define EXTENTS_PER_LEAF (BS / 12u - 1u) /* 340 */
#define XATTR_MAGIC 0xEA020000u
#define XATTR_INODE_ROOM (INODE_XATTR - 8u) /* magic + end marker */
#define XATTR_BLOCK_ROOM (BS - 36u)         /* header + end marker */
#define INLINE_TAIL (LCOW_EXT4W_INLINE_MAX - IBLOCK)

#define FL_HUGE_FILE 0x40000u
#define FL_EXTENTS 0x80000u
#define FL_INLINE_DATA 0x10000000u

/* Data of at least this much goes from the caller's memory straight to the
 * file when the write buffer is empty (measured: tests/layer/README). */
#define DIRECT_MIN (32u * 1024)
#define DEFAULT_BUFFER (512u * 1024)
#define WRITTEN_STEP (8u << 20) /* on_written granularity */

#define S_TYPE(m) ((uint16_t)((m)&LCOW_EXT4W_S_IFMT))

/* time.Unix() of Go's zero time.Time, which tar2ext4 stores as 0. */
#define GO_ZERO_TIME_UNIX (-62135596800ll)

/* ---- in-memory model ---- */

typedef struct node {
    uint64_t size;
    uint64_t atime, ctime, mtime, crtime; /* encoded: seconds | nsec << 34 */
    uint32_t uid, gid, links, xattr_block, block_count, devmajor, devminor, flags;
    uint32_t data_start, data_blocks; /* data + extent blocks, to release on overwrite */
    uint32_t extra;                   /* 1-based index into extras, 0 = none */
    uint32_t children;                /* directories: first dirent (1-based) */
    uint16_t mode;                    /* 0: an unused inode slot */
    uint8_t data_len;                 /* bytes of iblock (+ inline tail) in use */
    uint8_t has_xattrs;               /* the in-inode xattr area is present */
    uint8_t iblock[IBLOCK];
} node;

typedef struct extra {
    uint8_t xattr[INODE_XATTR];
    uint8_t tail[INLINE_TAIL]; /* inline data past the first 60 bytes */
} extra;

typedef struct dirent {
    uint32_t parent, child;
    uint32_t next; /* next entry of the same directory, 1-based */
    uint32_t name_len;
    uint64_t name_off;
} dirent;

typedef struct comp {
    const char *p;
    size_t len;
} comp;

typedef struct span {
    uint64_t start, end;
} span;

/* An xattr as placed in the inode or the block: the name without its
 * well-known prefix (which becomes the index). */
typedef struct xplaced {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    uint8_t index;
} xplaced;

/* An xattr by its full name, for merging and sorting. */
typedef struct xfull {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
    size_t order; /* position in the input; the later one wins */
} xfull;

struct lcow_ext4_writer {
    lcow_file *f;
    lcow_code failed; /* sticky */
    bool finished;
    bool inline_data;
    uint64_t max_disk;
    uint32_t gd_blocks;

    /* output buffer: bytes [base, base + len) of the image, base block-aligned */
    uint8_t *buf;
    size_t cap, len;
    uint64_t base;
    lcow_ext4_final_fn on_final;
    void *on_final_ctx;
    lcow_ext4_written_fn on_written;
    void *on_written_ctx;
    uint64_t written_upto; /* end of the last range given to on_written */
    uint32_t *xblocks;     /* xattr blocks (rewritable: reported at finish), ascending */
    size_t nxblocks, xblocks_cap, xcursor;
    span *freed;
    size_t nfreed, freed_cap;

    node *nodes; /* nodes[i] is inode i + 1 */
    uint32_t nnodes, nodes_cap;
    extra *extras;
    uint32_t nextras, extras_cap;
    dirent *dirents;
    uint32_t ndirents, dirents_cap;
    uint32_t *slots; /* hash of (parent, name) -> dirent, 1-based; power-of-two size */
    uint32_t slots_cap;
    char *names;
    uint64_t names_len, names_cap;

    /* the file (or directory, at finish) whose data is being written */
    uint32_t cur;
    uint64_t cur_written, cur_max;
    char *cur_name;
    size_t cur_name_cap;

    comp *comps;
    size_t comps_cap;
    uint8_t *scratch; /* xattr names/values read back for set_xattr */
    size_t scratch_cap;

    lcow_ext4_writer_stats stats;
};

static node *N(lcow_ext4_writer *w, uint32_t ino)
{
    return &w->nodes[ino - 1];
}

static bool node_is(const node *n, uint16_t type)
{
    return S_TYPE(n->mode) == type;
}

#define GROW(arr, capfield, need) grow_field((void **)&(arr), &(capfield), (need), sizeof *(arr))

static bool grow_field(void **p, uint32_t *cap, size_t need, size_t elem)
{
    if (need > 0xffffffffu)
        return false;
    size_t c = *cap;
    if (!lcow_grow(p, &c, need, elem))
        return false;
    *cap = (uint32_t)(c > 0xffffffffu ? 0xffffffffu : c);
    return true;
}

/* ---- errors ---- */

/* Records the first failure; every later call returns it. */
static lcow_code fail(lcow_ext4_writer *w, lcow_code rc)
{
    if (rc != LCOW_OK && w->failed == LCOW_OK)
        w->failed = rc;
    return rc;
}

#define SHOW(len) ((int)((len) > 200 ? 200 : (len)))

static lcow_code oom(lcow_ext4_writer *w, lcow_error *err)
{
    return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4 writer: out of memory"));
}

static lcow_code live(lcow_ext4_writer *w, lcow_error *err)
{
    if (w->failed != LCOW_OK)
        return lcow_error_set(err, w->failed, "ext4 writer: an earlier call failed");
    if (w->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "ext4 writer: already finished");
    return LCOW_OK;
}

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
static lcow_ext4_time time_decode(uint64_t t)
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

/* ---- output ---- */

static uint64_t out_pos(const lcow_ext4_writer *w)
{
    return w->base + w->len;
}

static uint32_t out_block(const lcow_ext4_writer *w)
{
    return (uint32_t)(out_pos(w) / BS);
}

/* Reports [off, off+len) to on_final, leaving out xattr blocks (they may be
 * rewritten; finish reports them). Calls come in ascending offset order. */
static void report(lcow_ext4_writer *w, uint64_t off, const uint8_t *data, size_t len)
{
    if (!w->on_final || len == 0)
        return;
    uint64_t end = off + len;
    while (w->xcursor < w->nxblocks && (uint64_t)w->xblocks[w->xcursor] * BS < off)
        w->xcursor++;
    while (off < end) {
        uint64_t skip = UINT64_MAX;
        if (w->xcursor < w->nxblocks) {
            uint64_t x = (uint64_t)w->xblocks[w->xcursor] * BS;
            if (x < end)
                skip = x;
        }
        if (skip == UINT64_MAX) {
            w->on_final(w->on_final_ctx, off, data, (size_t)(end - off));
            return;
        }
        if (skip > off)
            w->on_final(w->on_final_ctx, off, data, (size_t)(skip - off));
        data += skip + BS - off;
        off = skip + BS;
        w->xcursor++;
    }
}

static lcow_code raw_write(lcow_ext4_writer *w, const void *data, size_t len, uint64_t off,
                           lcow_error *err)
{
    w->stats.write_calls++;
    w->stats.bytes_written += len;
    lcow_code rc = lcow_file_pwrite(w->f, data, len, off, err);
    if (rc == LCOW_OK && w->on_written && off + len >= w->written_upto + WRITTEN_STEP &&
        off >= w->written_upto) {
        w->on_written(w->on_written_ctx, w->written_upto, off + len - w->written_upto);
        w->written_upto = off + len;
    }
    return fail(w, rc);
}

/* Writes the whole blocks of the buffer, keeping a partial last block. */
static lcow_code out_flush(lcow_ext4_writer *w, lcow_error *err)
{
    size_t n = w->len & ~(size_t)(BS - 1);
    if (n == 0)
        return LCOW_OK;
    lcow_code rc = raw_write(w, w->buf, n, w->base, err);
    if (rc != LCOW_OK)
        return rc;
    report(w, w->base, w->buf, n);
    memmove(w->buf, w->buf + n, w->len - n);
    w->base += n;
    w->len -= n;
    return LCOW_OK;
}

static lcow_code too_big(lcow_ext4_writer *w, lcow_error *err)
{
    return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                  "ext4: the image would exceed the maximum disk size of %llu "
                                  "bytes",
                                  (unsigned long long)w->max_disk));
}

static lcow_code out_write(lcow_ext4_writer *w, const void *data, size_t n, lcow_error *err)
{
    if (out_pos(w) + n > w->max_disk)
        return too_big(w, err);
    const uint8_t *p = data;
    while (n > 0) {
        if (w->len == 0 && n >= DIRECT_MIN) {
            /* Large data: straight from the caller's memory. */
            size_t k = n & ~(size_t)(BS - 1);
            lcow_code rc = raw_write(w, p, k, w->base, err);
            if (rc != LCOW_OK)
                return rc;
            report(w, w->base, p, k);
            w->base += k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = w->cap - w->len;
        if (k > n)
            k = n;
        memcpy(w->buf + w->len, p, k);
        w->len += k;
        p += k;
        n -= k;
        if (w->len == w->cap) {
            lcow_code rc = out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
        }
    }
    return LCOW_OK;
}

/* n zero bytes. Whole zero blocks are skipped, not written: the file is new
 * and finish sets its length, so they read as zero. */
static lcow_code out_zero(lcow_ext4_writer *w, uint64_t n, lcow_error *err)
{
    if (out_pos(w) + n > w->max_disk)
        return too_big(w, err);
    while (n > 0) {
        size_t in_block = (size_t)(out_pos(w) % BS);
        if (in_block == 0 && n >= BS) {
            lcow_code rc = out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
            uint64_t whole = n & ~(uint64_t)(BS - 1);
            w->base += whole; /* len is 0: the buffer was block-aligned */
            n -= whole;
            continue;
        }
        size_t k = w->cap - w->len;
        if (k > n)
            k = (size_t)n;
        if (in_block != 0 && k > BS - in_block)
            k = BS - in_block;
        memset(w->buf + w->len, 0, k);
        w->len += k;
        n -= k;
        if (w->len == w->cap) {
            lcow_code rc = out_flush(w, err);
            if (rc != LCOW_OK)
                return rc;
        }
    }
    return LCOW_OK;
}

/* Overwrites an earlier whole block (an xattr block being rewritten). */
static lcow_code out_rewrite_block(lcow_ext4_writer *w, uint32_t block, const uint8_t *data,
                                   lcow_error *err)
{
    uint64_t off = (uint64_t)block * BS;
    if (off >= w->base) {
        memcpy(w->buf + (off - w->base), data, BS);
        return LCOW_OK;
    }
    return raw_write(w, data, BS, off, err);
}

static lcow_code out_read_block(lcow_ext4_writer *w, uint32_t block, uint8_t *data, lcow_error *err)
{
    uint64_t off = (uint64_t)block * BS;
    if (off >= w->base) {
        memcpy(data, w->buf + (off - w->base), BS);
        return LCOW_OK;
    }
    size_t got = 0;
    lcow_code rc = lcow_file_pread(w->f, data, BS, off, &got, err);
    if (rc == LCOW_OK && got != BS)
        rc = lcow_error_set(err, LCOW_INTERNAL, "ext4 writer: short read of block %u", block);
    return fail(w, rc);
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

static uint32_t dir_child(const lcow_ext4_writer *w, uint32_t parent, const char *p, size_t len)
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

static bool dir_add(lcow_ext4_writer *w, uint32_t parent, const char *p, size_t len, uint32_t child)
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
static lcow_code split_path(lcow_ext4_writer *w, const char *path, size_t len, size_t *n,
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
        ino = dir_child(w, ino, w->comps[i].p, w->comps[i].len);
        if (!ino)
            return 0;
    }
    return ino;
}

typedef struct target {
    uint32_t dir;      /* parent directory */
    uint32_t existing; /* the inode at the path, 0 if none */
    uint32_t dirent;   /* its dirent, 0 if none (or the root) */
    const char *name;  /* last component (NULL for the root) */
    size_t name_len;
} target;

/* compactext4's lookup: the parent must be an existing directory. */
static lcow_code resolve(lcow_ext4_writer *w, const char *path, size_t len, bool must_exist,
                         target *t, lcow_error *err)
{
    size_t n;
    lcow_code rc = split_path(w, path, len, &n, err);
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
static void xattrs_put(const xplaced *xs, size_t n, uint8_t *b, size_t blen, uint16_t delta)
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
typedef bool (*xattr_fn)(void *ctx, const uint8_t *name, size_t name_len, const uint8_t *value,
                         size_t value_len);

static bool xattrs_get(const uint8_t *b, size_t blen, uint16_t delta, char *namebuf, xattr_fn fn,
                       void *ctx)
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

/* ---- inodes ---- */

static extra *node_extra(lcow_ext4_writer *w, node *n)
{
    if (!n->extra) {
        if (!GROW(w->extras, w->extras_cap, (size_t)w->nextras + 1))
            return NULL;
        memset(&w->extras[w->nextras], 0, sizeof(extra));
        n->extra = ++w->nextras;
    }
    return &w->extras[n->extra - 1];
}

static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
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
    int c = name_cmp(a->name, a->name_len, b->name, b->name_len);
    if (c)
        return c;
    return a->order < b->order ? -1 : a->order > b->order ? 1 : 0;
}

static void release_blocks(lcow_ext4_writer *w, uint64_t start, uint64_t count)
{
    if (count == 0)
        return;
    if (lcow_grow(&w->freed, &w->freed_cap, w->nfreed + 1, sizeof *w->freed)) {
        w->freed[w->nfreed].start = start;
        w->freed[w->nfreed].end = start + count;
        w->nfreed++;
        w->stats.released_blocks += count;
    }
    /* Without memory the blocks stay marked in use: wasted, not corrupt. */
}

static void release_data(lcow_ext4_writer *w, node *n)
{
    release_blocks(w, n->data_start, n->data_blocks);
    n->block_count -= n->data_blocks;
    n->data_blocks = 0;
    n->data_start = 0;
}

/* The data written for the current file or directory: pads its last block
 * and records its extents (compactext4's writeExtents). */
static lcow_code write_extents(lcow_ext4_writer *w, node *n, lcow_error *err)
{
    uint64_t start = out_pos(w) - w->cur_written;
    if (out_pos(w) % BS) {
        lcow_code rc = out_zero(w, BS - out_pos(w) % BS, err);
        if (rc != LCOW_OK)
            return rc;
    }
    uint32_t start_block = (uint32_t)(start / BS);
    uint32_t blocks = out_block(w) - start_block;
    uint32_t used = blocks;
    uint32_t extents = (blocks + EXTENT_MAX_LEN - 1) / EXTENT_MAX_LEN;
    uint8_t root[IBLOCK] = {0};
    size_t root_len = 0;

    /* compactext4's fillExtents, uint32 arithmetic kept (past the file end
     * its lengths wrap, as tar2ext4's do for files over 340 extents). */
#define FILL_EXTENTS(p, count, first, offset)                                                      \
    for (uint32_t e_ = 0; e_ < (count); e_++) {                                                    \
        uint32_t blk_ = (offset) + e_ * EXTENT_MAX_LEN;                                            \
        uint32_t len_ = blocks - blk_;                                                             \
        if (len_ > EXTENT_MAX_LEN)                                                                 \
            len_ = EXTENT_MAX_LEN;                                                                 \
        uint8_t *q_ = (p) + 12 + 12 * e_;                                                          \
        lcow_le_put32(q_, blk_);                                                                   \
        lcow_le_put16(q_ + 4, (uint16_t)len_);                                                     \
        lcow_le_put32(q_ + 8, (first) + blk_);                                                     \
    }

    if (extents == 0) {
        root_len = 0;
    } else if (extents <= 4) {
        lcow_le_put16(root, 0xF30A);
        lcow_le_put16(root + 2, (uint16_t)extents);
        lcow_le_put16(root + 4, 4);
        FILL_EXTENTS(root, extents, start_block, 0u);
        root_len = IBLOCK;
    } else if (extents <= 4 * EXTENTS_PER_LEAF) {
        uint32_t leaves = extents / EXTENTS_PER_LEAF + 1;
        if (leaves > 4)
            return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                          "ext4: file too big for the extent tree"));
        used += leaves;
        lcow_le_put16(root, 0xF30A);
        lcow_le_put16(root + 2, (uint16_t)leaves);
        lcow_le_put16(root + 4, 4);
        lcow_le_put16(root + 6, 1);
        uint8_t leaf[BS];
        for (uint32_t i = 0; i < leaves; i++) {
            uint32_t offset = i * EXTENTS_PER_LEAF * EXTENT_MAX_LEN;
            lcow_le_put32(root + 12 + 12 * i, offset);
            lcow_le_put32(root + 12 + 12 * i + 4, out_block(w));
            uint32_t in_leaf = extents - i * leaves; /* sic: compactext4's arithmetic */
            if (in_leaf > EXTENTS_PER_LEAF)
                in_leaf = EXTENTS_PER_LEAF;
            memset(leaf, 0, sizeof leaf);
            lcow_le_put16(leaf, 0xF30A);
            lcow_le_put16(leaf + 2, (uint16_t)in_leaf);
            lcow_le_put16(leaf + 4, EXTENTS_PER_LEAF);
            FILL_EXTENTS(leaf, in_leaf, start_block + offset, offset);
            lcow_code rc = out_write(w, leaf, BS, err);
            if (rc != LCOW_OK)
                return rc;
        }
        root_len = IBLOCK;
    } else {
        return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                                      "ext4: file too big for the extent tree"));
    }
#undef FILL_EXTENTS
    memcpy(n->iblock, root, IBLOCK);
    n->data_len = (uint8_t)root_len;
    n->flags |= FL_EXTENTS;
    n->block_count += used;
    n->data_start = start_block;
    n->data_blocks = used;
    return LCOW_OK;
}

/* Ends the current file: compactext4's finishInode. */
static lcow_code finish_data(lcow_ext4_writer *w, lcow_error *err)
{
    if (!w->cur)
        return LCOW_OK;
    node *n = N(w, w->cur);
    if (w->cur_written != w->cur_max)
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%s: %llu bytes of data written, %llu expected",
                                      w->cur_name ? w->cur_name : "?",
                                      (unsigned long long)w->cur_written,
                                      (unsigned long long)w->cur_max));
    if (w->cur_max != 0 && !(n->flags & FL_INLINE_DATA)) {
        lcow_code rc = write_extents(w, n, err);
        if (rc != LCOW_OK)
            return rc;
    }
    w->cur = 0;
    w->cur_written = w->cur_max = 0;
    return LCOW_OK;
}

static lcow_code start_data(lcow_ext4_writer *w, uint32_t ino, uint64_t size, const char *name,
                            size_t len, lcow_error *err)
{
    w->cur = ino;
    w->cur_written = 0;
    w->cur_max = size;
    size_t show = len > 200 ? 200 : len;
    if (!lcow_grow(&w->cur_name, &w->cur_name_cap, show + 1, 1))
        return oom(w, err);
    memcpy(w->cur_name, name, show);
    w->cur_name[show] = 0;
    return LCOW_OK;
}

/* Data for the current file: into the inode when inline, else the image. */
static lcow_code data_write(lcow_ext4_writer *w, const void *data, size_t len, lcow_error *err)
{
    if (len == 0)
        return LCOW_OK;
    if (!w->cur)
        return fail(w, lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                      "ext4 writer: no regular file is open for data"));
    if (w->cur_written + len > w->cur_max)
        return fail(w, lcow_error_set(
                           err, LCOW_INVALID_ARGUMENT, "%s: more data than the %llu bytes declared",
                           w->cur_name ? w->cur_name : "?", (unsigned long long)w->cur_max));
    node *n = N(w, w->cur);
    if (n->flags & FL_INLINE_DATA) {
        const uint8_t *p = data;
        for (size_t i = 0; i < len; i++) {
            uint64_t at = w->cur_written + i;
            if (at < IBLOCK)
                n->iblock[at] = p[i];
            else
                w->extras[n->extra - 1].tail[at - IBLOCK] = p[i];
        }
        w->cur_written += len;
        return LCOW_OK;
    }
    lcow_code rc = out_write(w, data, len, err);
    if (rc != LCOW_OK)
        return rc;
    w->cur_written += len;
    return LCOW_OK;
}

typedef struct xlists {
    xplaced in_inode[32]; /* at most 96 / 16 entries fit */
    size_t n_inode;
    xplaced *in_block;
    size_t n_block, block_cap;
    size_t inode_left, block_left;
} xlists;

/* compactext4's addXattr: the inode while it has room, else the block. */
static bool xlists_add(xlists *l, const uint8_t *name, size_t name_len, const uint8_t *value,
                       size_t value_len, bool *oom_flag)
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
static lcow_code write_xattrs(lcow_ext4_writer *w, uint32_t ino, xlists *l, lcow_error *err)
{
    node *n = N(w, ino);
    if (l->n_inode) {
        extra *e = node_extra(w, n);
        if (!e)
            return oom(w, err);
        memset(e->xattr, 0, sizeof e->xattr);
        lcow_le_put32(e->xattr, XATTR_MAGIC);
        xattrs_put(l->in_inode, l->n_inode, e->xattr + 4, INODE_XATTR - 4, 0);
        n->has_xattrs = 1;
    }
    if (l->n_block || n->xattr_block) {
        lcow_go_sort_slice(l->in_block, l->n_block, sizeof *l->in_block, xblock_less_v);
        uint8_t b[BS] = {0};
        lcow_le_put32(b, XATTR_MAGIC);
        lcow_le_put32(b + 4, 1); /* reference count */
        lcow_le_put32(b + 8, 1); /* blocks */
        xattrs_put(l->in_block, l->n_block, b + 32, BS - 32, 32);
        if (n->xattr_block)
            return out_rewrite_block(w, n->xattr_block, b, err);
        uint32_t blk = out_block(w);
        if (!lcow_grow(&w->xblocks, &w->xblocks_cap, w->nxblocks + 1, sizeof *w->xblocks))
            return oom(w, err);
        lcow_code rc = out_write(w, b, BS, err);
        if (rc != LCOW_OK)
            return rc;
        w->xblocks[w->nxblocks++] = blk;
        n = N(w, ino);
        n->xattr_block = blk;
        n->block_count++;
    }
    return LCOW_OK;
}

typedef struct xcollect {
    xfull *v;
    size_t n, cap;
    bool oom;
} xcollect;

static bool xcollect_add(void *ctx, const uint8_t *name, size_t name_len, const uint8_t *value,
                         size_t value_len)
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
static void xcollect_settle(xcollect *c)
{
    if (c->n < 2)
        return;
    qsort(c->v, c->n, sizeof *c->v, xfull_cmp);
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (i + 1 < c->n &&
            name_cmp(c->v[i].name, c->v[i].name_len, c->v[i + 1].name, c->v[i + 1].name_len) == 0)
            continue;
        c->v[k++] = c->v[i];
    }
    c->n = k;
}

static bool xcollect_has(const xcollect *c, size_t upto, const uint8_t *name, size_t len)
{
    for (size_t i = 0; i < upto; i++)
        if (name_cmp(c->v[i].name, c->v[i].name_len, name, len) == 0)
            return true;
    return false;
}

/* compactext4's makeInode: fills a new inode (reuse 0) or updates an
 * existing one. release: a file whose data is written may be replaced
 * (its blocks are released); otherwise that is refused as compactext4
 * refuses it. */
static lcow_code make_inode(lcow_ext4_writer *w, const char *path, size_t path_len,
                            const lcow_ext4_file *f, uint32_t reuse, bool release, uint32_t *out,
                            lcow_error *err)
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
        release_data(w, o);
        if (o->xattr_block) {
            release_blocks(w, o->xattr_block, 1);
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
            if (!node_extra(w, n)) {
                rc = oom(w, err);
                goto out;
            }
            n = N(w, ino);
            memset(n->iblock, 0, IBLOCK);
            memset(w->extras[n->extra - 1].tail, 0, INLINE_TAIL);
            n->data_len = (uint8_t)size;
            size_t tail = size > IBLOCK ? (size_t)size - IBLOCK : 0;
            /* The data's place in the inode: system.data, filled at finish. */
            xlists_add(&l, (const uint8_t *)"system.data", 11, zeros, tail, &oom_flag);
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
        xcollect_add(&c, (const uint8_t *)f->xattrs[i].name, f->xattrs[i].name_len,
                     f->xattrs[i].value, f->xattrs[i].value_len);
    xcollect_settle(&c);
    if (had_area && !c.oom) {
        size_t given = c.n;
        xcollect old = {0};
        if (!xattrs_get(old_area + 4, INODE_XATTR - 4, 0, old_names, xcollect_add, &old) &&
            !old.oom) {
            free(old.v);
            rc = fail(w, lcow_error_set(err, LCOW_INTERNAL, "%.*s: malformed in-inode xattrs",
                                        SHOW(path_len), path));
            goto out;
        }
        xcollect_settle(&old);
        for (size_t i = 0; i < old.n && !c.oom; i++)
            if (!xcollect_has(&c, given, old.v[i].name, old.v[i].name_len))
                xcollect_add(&c, old.v[i].name, old.v[i].name_len, old.v[i].value,
                             old.v[i].value_len);
        oom_flag |= old.oom;
        free(old.v);
        xcollect_settle(&c);
    }
    if (c.oom || oom_flag) {
        rc = oom(w, err);
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        if (!xlists_add(&l, c.v[i].name, c.v[i].name_len, c.v[i].value, c.v[i].value_len,
                        &oom_flag)) {
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
    rc = write_xattrs(w, ino, &l, err);
    if (rc != LCOW_OK)
        goto out;
    n = N(w, ino);
    n->size = size;
    if (type == LCOW_EXT4W_S_IFLNK && size > SMALL_SYMLINK) {
        /* A long target is the symlink's data, in a block of its own. */
        rc = start_data(w, ino, size, path, path_len, err);
        if (rc == LCOW_OK)
            rc = data_write(w, f->link, f->link_len, err);
        if (rc == LCOW_OK)
            rc = finish_data(w, err);
    }
out:
    free(c.v);
    free(l.in_block);
    if (rc == LCOW_OK)
        *out = ino;
    return rc;
}

/* compactext4's Create. */
static lcow_code create(lcow_ext4_writer *w, const char *path, size_t len, const lcow_ext4_file *f,
                        bool release, lcow_error *err)
{
    target t;
    lcow_code rc = resolve(w, path, len, false, &t, err);
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
    rc = make_inode(w, path, len, f, reuse, release, &child, err);
    if (rc != LCOW_OK)
        return rc;
    if (t.existing != child) {
        if (t.existing)
            N(w, t.existing)->links--;
        if (t.dirent) {
            w->dirents[t.dirent - 1].child = child;
        } else if (!dir_add(w, t.dir, t.name, t.name_len, child)) {
            return oom(w, err);
        }
        N(w, child)->links++;
        if (node_is(N(w, child), LCOW_EXT4W_S_IFDIR))
            N(w, t.dir)->links++;
    }
    if (node_is(N(w, child), LCOW_EXT4W_S_IFREG))
        return start_data(w, child, f->size, path, len, err);
    return LCOW_OK;
}

/* ---- public operations ---- */

lcow_code lcow_ext4_writer_create(lcow_ext4_writer *w, const char *path, size_t len,
                                  const lcow_ext4_file *f, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = finish_data(w, err);
    if (rc == LCOW_OK)
        rc = create(w, path, len, f, true, err);
    return rc;
}

lcow_code lcow_ext4_writer_write(lcow_ext4_writer *w, const void *data, size_t len, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc != LCOW_OK)
        return rc;
    return data_write(w, data, len, err);
}

lcow_code lcow_ext4_writer_make_parents(lcow_ext4_writer *w, const char *path, size_t len,
                                        lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    size_t n;
    rc = split_path(w, path, len, &n, err);
    if (rc != LCOW_OK || n < 2)
        return rc;
    uint32_t parent = ROOT_INO;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t child = node_is(N(w, parent), LCOW_EXT4W_S_IFDIR)
                             ? dir_child(w, parent, w->comps[i].p, w->comps[i].len)
                             : 0;
        if (!child) {
            /* A parent the tar never names yet: its own parent's metadata,
             * the times through compactext4's fs-time round trip. */
            const node *p = N(w, parent);
            lcow_ext4_file f = {
                .mode = p->mode,
                .uid = p->uid,
                .gid = p->gid,
                .atime = time_decode(p->atime),
                .mtime = time_decode(p->mtime),
                .ctime = time_decode(p->ctime),
                .crtime = time_decode(p->crtime),
                .devmajor = p->devmajor,
                .devminor = p->devminor,
            };
            /* create re-splits comps; the prefix path ends at this component. */
            const char *sub = w->comps[0].p;
            size_t sub_len = (size_t)(w->comps[i].p + w->comps[i].len - sub);
            const char *cp = w->comps[i].p;
            size_t cl = w->comps[i].len;
            rc = create(w, sub, sub_len, &f, true, err);
            if (rc != LCOW_OK)
                return lcow_error_wrap(err, "making the parents of %.*s", SHOW(len), path), rc;
            child = dir_child(w, parent, cp, cl);
            /* comps were overwritten by create: split again. */
            size_t again;
            rc = split_path(w, path, len, &again, err);
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
        rc = finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    target t;
    rc = resolve(w, path, len, false, &t, err);
    if (rc != LCOW_OK)
        return rc;
    if (t.existing && node_is(N(w, t.existing), LCOW_EXT4W_S_IFDIR))
        return fail(w, lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "%.*s: cannot replace a directory with a hard link",
                                      SHOW(len), path));
    target o;
    rc = resolve(w, target_path, target_len, true, &o, err);
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
    else if (!dir_add(w, t.dir, t.name, t.name_len, old))
        return oom(w, err);
    if (t.existing && t.existing != old && N(w, t.existing)->links == 0) {
        /* tar -x replaces the file; its inode is orphaned: release it. */
        node *e = N(w, t.existing);
        release_data(w, e);
        if (e->xattr_block)
            release_blocks(w, e->xattr_block, 1);
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
        rc = finish_data(w, err);
    if (rc != LCOW_OK)
        return rc;
    target t;
    rc = resolve(w, path, len, true, &t, err);
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
        rc = out_read_block(w, n->xattr_block, block, err);
        if (rc != LCOW_OK)
            return rc;
        if (!xattrs_get(block + 32, BS - 32, 32, names, statx_add, &s) && !s.oom) {
            free(s.v);
            return fail(w, lcow_error_set(err, LCOW_INTERNAL, "%.*s: malformed xattr block",
                                          SHOW(len), path));
        }
        names += BLOCK_NAMES;
    }
    n = N(w, t.existing);
    if (n->has_xattrs && !s.oom) {
        memcpy(area, w->extras[n->extra - 1].xattr, INODE_XATTR);
        if (!xattrs_get(area + 4, INODE_XATTR - 4, 0, names, statx_add, &s) && !s.oom) {
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
        .atime = time_decode(n->atime),
        .mtime = time_decode(n->mtime),
        .ctime = time_decode(n->ctime),
        .crtime = time_decode(n->crtime),
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
    rc = create(w, path, len, &f, false, err);
    free(s.v);
    return rc;
}

/* ---- finish ---- */

typedef struct child {
    uint32_t ino;
    uint32_t name_len;
    const char *name;
} child;

static int child_cmp(const void *pa, const void *pb)
{
    const child *a = pa, *b = pb;
    if (a->ino != b->ino)
        return a->ino < b->ino ? -1 : 1;
    return name_cmp((const uint8_t *)a->name, a->name_len, (const uint8_t *)b->name, b->name_len);
}

static uint8_t file_type(uint16_t mode)
{
    switch (S_TYPE(mode)) {
    case LCOW_EXT4W_S_IFREG:
        return 1;
    case LCOW_EXT4W_S_IFDIR:
        return 2;
    case LCOW_EXT4W_S_IFCHR:
        return 3;
    case LCOW_EXT4W_S_IFBLK:
        return 4;
    case LCOW_EXT4W_S_IFIFO:
        return 5;
    case LCOW_EXT4W_S_IFSOCK:
        return 6;
    case LCOW_EXT4W_S_IFLNK:
        return 7;
    default:
        return 0;
    }
}

typedef struct dirstate {
    size_t left;
} dirstate;

static lcow_code dir_bytes(lcow_ext4_writer *w, const void *p, size_t n, lcow_error *err)
{
    lcow_code rc = out_write(w, p, n, err);
    if (rc == LCOW_OK)
        w->cur_written += n;
    return rc;
}

static lcow_code dir_finish_block(lcow_ext4_writer *w, dirstate *d, lcow_error *err)
{
    if (d->left > 0) {
        uint8_t e[8] = {0};
        lcow_le_put16(e + 4, (uint16_t)d->left);
        lcow_code rc = dir_bytes(w, e, 8, err);
        if (rc != LCOW_OK)
            return rc;
        d->left -= 8;
        static const uint8_t zeros[BS];
        rc = dir_bytes(w, zeros, d->left, err);
        if (rc != LCOW_OK)
            return rc;
    }
    d->left = BS;
    return LCOW_OK;
}

static lcow_code dir_entry(lcow_ext4_writer *w, dirstate *d, uint32_t ino, const char *name,
                           size_t len, lcow_error *err)
{
    size_t rl = (8 + len + 3) & ~(size_t)3;
    if (d->left < rl + 12) {
        lcow_code rc = dir_finish_block(w, d, err);
        if (rc != LCOW_OK)
            return rc;
    }
    uint8_t e[8 + LCOW_EXT4W_MAX_NAME + 3] = {0};
    lcow_le_put32(e, ino);
    lcow_le_put16(e + 4, (uint16_t)rl);
    e[6] = (uint8_t)len;
    e[7] = file_type(N(w, ino)->mode);
    memcpy(e + 8, name, len);
    d->left -= rl;
    return dir_bytes(w, e, rl, err);
}

/* Every directory, pre-order, children by inode number then name. */
static lcow_code write_directories(lcow_ext4_writer *w, lcow_error *err)
{
    uint32_t *stack = NULL; /* pairs: dir, parent */
    size_t sp = 0, scap = 0;
    child *kids = NULL;
    size_t kcap = 0;
    lcow_code rc = LCOW_OK;
    if (!lcow_grow(&stack, &scap, 2, sizeof *stack))
        return oom(w, err);
    stack[sp++] = ROOT_INO;
    stack[sp++] = ROOT_INO;
    while (sp) {
        uint32_t parent = stack[--sp];
        uint32_t dir = stack[--sp];
        rc = finish_data(w, err);
        if (rc != LCOW_OK)
            break;
        size_t nk = 0;
        for (uint32_t d = N(w, dir)->children; d; d = w->dirents[d - 1].next) {
            if (!lcow_grow(&kids, &kcap, nk + 1, sizeof *kids)) {
                rc = oom(w, err);
                goto out;
            }
            const dirent *e = &w->dirents[d - 1];
            kids[nk++] = (child){e->child, e->name_len, w->names + e->name_off};
        }
        qsort(kids, nk, sizeof *kids, child_cmp);
        /* The directory's blocks; size known at the end. */
        w->cur = dir;
        w->cur_written = 0;
        w->cur_max = UINT64_MAX;
        dirstate ds = {BS};
        rc = dir_entry(w, &ds, dir, ".", 1, err);
        if (rc == LCOW_OK)
            rc = dir_entry(w, &ds, parent, "..", 2, err);
        for (size_t i = 0; i < nk && rc == LCOW_OK; i++)
            rc = dir_entry(w, &ds, kids[i].ino, kids[i].name, kids[i].name_len, err);
        if (rc == LCOW_OK)
            rc = dir_finish_block(w, &ds, err);
        if (rc != LCOW_OK)
            break;
        N(w, dir)->size = w->cur_written;
        w->cur_max = w->cur_written;
        /* Subdirectories next, first child on top of the stack. */
        size_t ndirs = 0;
        for (size_t i = 0; i < nk; i++)
            ndirs += node_is(N(w, kids[i].ino), LCOW_EXT4W_S_IFDIR);
        if (!lcow_grow(&stack, &scap, sp + 2 * ndirs, sizeof *stack)) {
            rc = oom(w, err);
            break;
        }
        for (size_t i = nk; i-- > 0;)
            if (node_is(N(w, kids[i].ino), LCOW_EXT4W_S_IFDIR)) {
                stack[sp++] = kids[i].ino;
                stack[sp++] = dir;
            }
    }
out:
    free(stack);
    free(kids);
    if (rc == LCOW_OK)
        rc = finish_data(w, err);
    return rc;
}

/* compactext4's bestGroupCount (uint32 arithmetic as in Go). */
static void best_groups(uint32_t blocks, uint32_t inodes, uint32_t *groups, uint32_t *ipg)
{
    *groups = 0xffffffffu;
    *ipg = 0;
    for (uint32_t i = BS / INODE_SIZE; i <= BS * 8; i += BS / INODE_SIZE) {
        uint32_t itable = i * INODE_SIZE / BS;
        uint32_t data = BLOCKS_PER_GROUP - itable - 2;
        uint32_t min = (inodes - 1) / i * data + 1;
        uint32_t b = blocks < min ? min : blocks;
        uint32_t g = (b + data - 1) / data;
        if (g < *groups) {
            *groups = g;
            *ipg = i;
        }
    }
}

static void inode_bytes(lcow_ext4_writer *w, uint32_t ino, uint8_t *b)
{
    memset(b, 0, INODE_SIZE);
    const node *n = N(w, ino);
    if (!n->mode)
        return;
    lcow_le_put16(b + 0, n->mode);
    lcow_le_put16(b + 2, (uint16_t)n->uid);
    lcow_le_put32(b + 4, (uint32_t)n->size);
    lcow_le_put32(b + 8, (uint32_t)n->atime);
    lcow_le_put32(b + 12, (uint32_t)n->ctime);
    lcow_le_put32(b + 16, (uint32_t)n->mtime);
    lcow_le_put16(b + 24, (uint16_t)n->gid);
    lcow_le_put16(b + 26, (uint16_t)n->links);
    lcow_le_put32(b + 28, n->block_count);
    lcow_le_put32(b + 32, n->flags);
    lcow_le_put32(b + 104, n->xattr_block);
    lcow_le_put32(b + 108, (uint32_t)(n->size >> 32));
    lcow_le_put16(b + 120, (uint16_t)(n->uid >> 16));
    lcow_le_put16(b + 122, (uint16_t)(n->gid >> 16));
    lcow_le_put16(b + 128, EXTRA_ISIZE);
    lcow_le_put32(b + 132, (uint32_t)(n->ctime >> 32));
    lcow_le_put32(b + 136, (uint32_t)(n->mtime >> 32));
    lcow_le_put32(b + 140, (uint32_t)(n->atime >> 32));
    lcow_le_put32(b + 144, (uint32_t)n->crtime);
    lcow_le_put32(b + 148, (uint32_t)(n->crtime >> 32));
    if (n->has_xattrs)
        memcpy(b + INODE_USED, w->extras[n->extra - 1].xattr, INODE_XATTR);
    switch (S_TYPE(n->mode)) {
    case LCOW_EXT4W_S_IFDIR:
    case LCOW_EXT4W_S_IFREG:
    case LCOW_EXT4W_S_IFLNK: {
        size_t k = n->data_len < IBLOCK ? n->data_len : IBLOCK;
        memcpy(b + 40, n->iblock, k);
        if (n->data_len > IBLOCK && n->has_xattrs) {
            /* Inline data past 60 bytes: the value of the first in-inode
             * xattr, system.data. */
            xplaced x = {(const uint8_t *)"data", 4, w->extras[n->extra - 1].tail,
                         (size_t)n->data_len - IBLOCK, 7};
            xattrs_put(&x, 1, b + INODE_USED + 4, INODE_XATTR - 4, 0);
        }
        break;
    }
    case LCOW_EXT4W_S_IFBLK:
    case LCOW_EXT4W_S_IFCHR: {
        uint32_t dev =
            (n->devminor & 0xff) | (n->devmajor << 8) | ((n->devminor & 0xffffff00u) << 12);
        lcow_le_put32(b + 44, dev);
        break;
    }
    default:
        break;
    }
}

static int span_cmp(const void *pa, const void *pb)
{
    const span *a = pa, *b = pb;
    return a->start < b->start ? -1 : a->start > b->start ? 1 : 0;
}

lcow_code lcow_ext4_writer_finish(lcow_ext4_writer *w, uint64_t *image_size, lcow_error *err)
{
    lcow_code rc = live(w, err);
    if (rc == LCOW_OK)
        rc = finish_data(w, err);
    if (rc == LCOW_OK)
        rc = write_directories(w, err);
    if (rc != LCOW_OK)
        return rc;

    uint32_t table = out_block(w);
    uint32_t groups, ipg;
    best_groups(table, w->nnodes, &groups, &ipg);
    uint8_t ib[INODE_SIZE];
    for (uint32_t ino = 1; ino <= w->nnodes; ino++) {
        inode_bytes(w, ino, ib);
        rc = out_write(w, ib, INODE_SIZE, err);
        if (rc != LCOW_OK)
            return rc;
    }
    rc = out_zero(w, (uint64_t)groups * ipg * INODE_SIZE - (uint64_t)w->nnodes * INODE_SIZE, err);
    if (rc != LCOW_OK)
        return rc;

    uint32_t bitmaps = out_block(w);
    uint32_t valid = bitmaps + groups * 2;
    uint32_t disk = valid;
    uint32_t min = (groups - 1) * BLOCKS_PER_GROUP + 1;
    if (disk < min)
        disk = min;
    uint32_t used_gd = (groups - 1) / GD_PER_BLOCK + 1;
    if (used_gd > w->gd_blocks)
        return too_big(w, err);

    if (w->nfreed > 1)
        qsort(w->freed, w->nfreed, sizeof *w->freed, span_cmp);
    size_t fi = 0;
    uint8_t *gdt = calloc(w->gd_blocks, BS);
    uint8_t *bm = malloc(2 * BS);
    if (!gdt || !bm) {
        free(gdt);
        free(bm);
        return oom(w, err);
    }
    uint32_t itable_blocks = ipg * INODE_SIZE / BS;
    uint32_t total_used_blocks = 0, total_used_inodes = 0;
    for (uint32_t g = 0; g < groups && rc == LCOW_OK; g++) {
        memset(bm, 0, 2 * BS);
        uint32_t used_blocks = 0, used_inodes = 0, dirs = 0;
        uint64_t gstart = (uint64_t)g * BLOCKS_PER_GROUP;
        if (gstart + BLOCKS_PER_GROUP <= valid) {
            memset(bm, 0xff, BS);
            used_blocks = BLOCKS_PER_GROUP;
        } else if (gstart < valid) {
            uint32_t k = (uint32_t)(valid - gstart);
            memset(bm, 0xff, k / 8);
            for (uint32_t j = k & ~7u; j < k; j++)
                bm[j / 8] |= (uint8_t)(1u << (j % 8));
            used_blocks = k;
        }
        if (g == 0)
            for (uint32_t j = 1 + used_gd; j < 1 + w->gd_blocks; j++) {
                bm[j / 8] &= (uint8_t) ~(1u << (j % 8));
                used_blocks--;
            }
        if (g == groups - 1 && disk % BLOCKS_PER_GROUP) {
            for (uint32_t j = disk % BLOCKS_PER_GROUP; j < BLOCKS_PER_GROUP; j++) {
                bm[j / 8] |= (uint8_t)(1u << (j % 8));
                used_blocks++;
            }
        }
        /* Blocks released by entries that replaced files (not tar2ext4's). */
        for (; fi < w->nfreed && w->freed[fi].start < gstart + BLOCKS_PER_GROUP; fi++) {
            uint64_t s = w->freed[fi].start > gstart ? w->freed[fi].start : gstart;
            uint64_t e = w->freed[fi].end < gstart + BLOCKS_PER_GROUP ? w->freed[fi].end
                                                                      : gstart + BLOCKS_PER_GROUP;
            for (uint64_t b = s; b < e; b++) {
                uint32_t j = (uint32_t)(b - gstart);
                if (bm[j / 8] & (1u << (j % 8))) {
                    bm[j / 8] &= (uint8_t) ~(1u << (j % 8));
                    used_blocks--;
                }
            }
            if (w->freed[fi].end > gstart + BLOCKS_PER_GROUP)
                break; /* continues in the next group */
        }
        for (uint32_t j = 0; j < ipg; j++) {
            uint64_t ino = 1 + (uint64_t)g * ipg + j;
            const node *n = ino <= w->nnodes ? N(w, (uint32_t)ino) : NULL;
            bool present = n && n->mode;
            if (ino < FIRST_INO || present) {
                bm[BS + j / 8] |= (uint8_t)(1u << (j % 8));
                used_inodes++;
            }
            if (present && node_is(n, LCOW_EXT4W_S_IFDIR))
                dirs++;
        }
        rc = out_write(w, bm, 2 * BS, err);
        uint8_t *d = gdt + (size_t)g * GD_SIZE;
        lcow_le_put32(d + 0, bitmaps + 2 * g);
        lcow_le_put32(d + 4, bitmaps + 2 * g + 1);
        lcow_le_put32(d + 8, table + g * itable_blocks);
        lcow_le_put16(d + 12, (uint16_t)(BLOCKS_PER_GROUP - used_blocks));
        lcow_le_put16(d + 14, (uint16_t)(ipg - used_inodes));
        lcow_le_put16(d + 16, (uint16_t)dirs);
        total_used_blocks += (uint16_t)used_blocks;
        total_used_inodes += used_inodes;
    }
    free(bm);
    if (rc == LCOW_OK)
        rc = out_zero(w, ((uint64_t)disk - bitmaps - (uint64_t)groups * 2) * BS, err);
    if (rc == LCOW_OK)
        rc = out_flush(w, err);
    if (rc == LCOW_OK && w->len != 0)
        rc = fail(w, lcow_error_set(err, LCOW_INTERNAL, "ext4 writer: unaligned end"));
    if (rc == LCOW_OK)
        rc = fail(w, lcow_file_truncate(w->f, (uint64_t)disk * BS, err));
    if (rc == LCOW_OK)
        rc = raw_write(w, gdt, (size_t)w->gd_blocks * BS, BS, err);
    if (rc == LCOW_OK && w->on_final)
        w->on_final(w->on_final_ctx, BS, gdt, (size_t)w->gd_blocks * BS);
    free(gdt);
    if (rc != LCOW_OK)
        return rc;

    uint8_t sbb[BS] = {0};
    uint8_t *sb = sbb + 1024;
    lcow_le_put32(sb + 0x00, ipg * groups);
    lcow_le_put32(sb + 0x04, disk);
    lcow_le_put32(sb + 0x0C, BLOCKS_PER_GROUP * groups - total_used_blocks);
    lcow_le_put32(sb + 0x10, ipg * groups - total_used_inodes);
    lcow_le_put32(sb + 0x18, 2); /* 4 KiB blocks */
    lcow_le_put32(sb + 0x1C, 2);
    lcow_le_put32(sb + 0x20, BLOCKS_PER_GROUP);
    lcow_le_put32(sb + 0x24, BLOCKS_PER_GROUP);
    lcow_le_put32(sb + 0x28, ipg);
    lcow_le_put16(sb + 0x38, 0xEF53);
    lcow_le_put16(sb + 0x3A, 1); /* clean */
    lcow_le_put16(sb + 0x3C, 1); /* errors: continue */
    lcow_le_put32(sb + 0x4C, 1); /* dynamic revision */
    lcow_le_put32(sb + 0x54, FIRST_INO);
    lcow_le_put16(sb + 0x58, INODE_SIZE);
    lcow_le_put32(sb + 0x5C, 0x0200 | 0x0008);          /* sparse_super2, ext_attr */
    lcow_le_put32(sb + 0x60, 0x0002 | 0x0040 | 0x0200 | /* filetype, extents, flex_bg */
                                 (w->inline_data ? 0x8000u : 0));
    lcow_le_put32(sb + 0x64, 0x0002 | 0x0008 | 0x0040 | 0x1000); /* large, huge, isize, ro */
    lcow_le_put16(sb + 0x15C, EXTRA_ISIZE);
    lcow_le_put16(sb + 0x15E, EXTRA_ISIZE);
    sb[0x174] = 31;                       /* log groups per flex */
    lcow_le_put32(sb + 0x268, FIRST_INO); /* lost+found */
    rc = raw_write(w, sbb, BS, 0, err);
    if (rc != LCOW_OK)
        return rc;
    if (w->on_final) {
        w->on_final(w->on_final_ctx, 0, sbb, BS);
        /* xattr blocks are final now */
        uint8_t xb[BS];
        for (size_t i = 0; i < w->nxblocks; i++) {
            rc = out_read_block(w, w->xblocks[i], xb, err);
            if (rc != LCOW_OK)
                return rc;
            w->on_final(w->on_final_ctx, (uint64_t)w->xblocks[i] * BS, xb, BS);
        }
    }
    w->stats.groups = groups;
    w->stats.inodes_per_group = ipg;
    w->finished = true;
    if (image_size)
        *image_size = (uint64_t)disk * BS;
    return LCOW_OK;
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
    rc = make_inode(w, "/", 1, &root, 0, false, &ino, err);
    if (rc == LCOW_OK) {
        N(w, ROOT_INO)->links++; /* its ".." */
        while (w->nnodes < FIRST_INO - 1)
            memset(&w->nodes[w->nnodes++], 0, sizeof(node));
        w->base = (uint64_t)(1 + w->gd_blocks) * BS;
        lcow_ext4_file lpf = {.mode = LCOW_EXT4W_S_IFDIR | 0700};
        rc = create(w, "lost+found", 10, &lpf, false, err);
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

/* Internals of the compact ext4 writer (see ext4_writer.h), shared by its
 * files (not a public header):
 *
 *   ext4_writer.c          open/close and the public create, write,
 *                          make_parents, link and set_xattr
 *   ext4_writer_tree.c     times, the directory index (names, paths,
 *                          lookup), inodes (make_inode) and entries (create)
 *   ext4_writer_layout.c   the output buffer, released blocks, file data
 *                          and its extent tree
 *   ext4_writer_xattr.c    xattr encoding, placement (inode or block),
 *                          merging
 *   ext4_writer_finish.c   the public finish: directory blocks, inode
 *                          table, bitmaps, group descriptors, superblock
 *
 * The on-disk results follow hcsshim's compactext4 at commit 7c9ff7f; where
 * its code has quirks that shape the bytes (the xattr block's sort
 * comparator, the extent-tree arithmetic past 340 extents, the time round
 * trip of implicit parents) these files reproduce the quirk and say so.
 * Little-endian throughout. */
#ifndef LCOW_DISK_EXT4_WRITER_INTERNAL_H
#define LCOW_DISK_EXT4_WRITER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/base/types.h"
#include "core/disk/ext4_writer.h"

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

static inline node *N(lcow_ext4_writer *w, uint32_t ino)
{
    return &w->nodes[ino - 1];
}

static inline bool node_is(const node *n, uint16_t type)
{
    return S_TYPE(n->mode) == type;
}

#define GROW(arr, capfield, need) grow_field((void **)&(arr), &(capfield), (need), sizeof *(arr))

static inline bool grow_field(void **p, uint32_t *cap, size_t need, size_t elem)
{
    if (need > 0xffffffffu)
        return false;
    size_t c = *cap;
    if (!lcow_grow(p, &c, need, elem))
        return false;
    *cap = (uint32_t)(c > 0xffffffffu ? 0xffffffffu : c);
    return true;
}

/* The inode's extra area (in-inode xattrs, inline data tail), made on first use. */
static inline extra *lcow_ext4_writer_node_extra(lcow_ext4_writer *w, node *n)
{
    if (!n->extra) {
        if (!GROW(w->extras, w->extras_cap, (size_t)w->nextras + 1))
            return NULL;
        memset(&w->extras[w->nextras], 0, sizeof(extra));
        n->extra = ++w->nextras;
    }
    return &w->extras[n->extra - 1];
}

/* ---- errors ---- */

/* Records the first failure; every later call returns it. */
static inline lcow_code fail(lcow_ext4_writer *w, lcow_code rc)
{
    if (rc != LCOW_OK && w->failed == LCOW_OK)
        w->failed = rc;
    return rc;
}

#define SHOW(len) ((int)((len) > 200 ? 200 : (len)))

static inline lcow_code oom(lcow_ext4_writer *w, lcow_error *err)
{
    return fail(w, lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "ext4 writer: out of memory"));
}

static inline lcow_code live(lcow_ext4_writer *w, lcow_error *err)
{
    if (w->failed != LCOW_OK)
        return lcow_error_set(err, w->failed, "ext4 writer: an earlier call failed");
    if (w->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "ext4 writer: already finished");
    return LCOW_OK;
}

/* A path resolved by lcow_ext4_writer_resolve. */
typedef struct target {
    uint32_t dir;      /* parent directory */
    uint32_t existing; /* the inode at the path, 0 if none */
    uint32_t dirent;   /* its dirent, 0 if none (or the root) */
    const char *name;  /* last component (NULL for the root) */
    size_t name_len;
} target;

/* What lcow_ext4_writer_xattrs_get calls for each entry (full name). */
typedef bool (*xattr_fn)(void *ctx, const uint8_t *name, size_t name_len, const uint8_t *value,
                         size_t value_len);

/* The xattrs of one inode as placed: in the inode, then in its block. */
typedef struct xlists {
    xplaced in_inode[32]; /* at most 96 / 16 entries fit */
    size_t n_inode;
    xplaced *in_block;
    size_t n_block, block_cap;
    size_t inode_left, block_left;
} xlists;

/* Xattrs by full name, gathered for merging (lcow_ext4_writer_xcollect_*). */
typedef struct xcollect {
    xfull *v;
    size_t n, cap;
    bool oom;
} xcollect;

/* ---- output position ---- */

static inline uint64_t out_pos(const lcow_ext4_writer *w)
{
    return w->base + w->len;
}

static inline uint32_t out_block(const lcow_ext4_writer *w)
{
    return (uint32_t)(out_pos(w) / BS);
}

/* ---- ext4_writer_layout.c: output, released blocks, file data ---- */

lcow_code lcow_ext4_writer_raw_write(lcow_ext4_writer *w, const void *data, size_t len,
                                     uint64_t off, lcow_error *err);
lcow_code lcow_ext4_writer_out_flush(lcow_ext4_writer *w, lcow_error *err);
lcow_code lcow_ext4_writer_too_big(lcow_ext4_writer *w, lcow_error *err);
lcow_code lcow_ext4_writer_out_write(lcow_ext4_writer *w, const void *data, size_t n,
                                     lcow_error *err);
lcow_code lcow_ext4_writer_out_zero(lcow_ext4_writer *w, uint64_t n, lcow_error *err);
lcow_code lcow_ext4_writer_out_rewrite_block(lcow_ext4_writer *w, uint32_t block,
                                             const uint8_t *data, lcow_error *err);
lcow_code lcow_ext4_writer_out_read_block(lcow_ext4_writer *w, uint32_t block, uint8_t *data,
                                          lcow_error *err);
void lcow_ext4_writer_release_blocks(lcow_ext4_writer *w, uint64_t start, uint64_t count);
void lcow_ext4_writer_release_data(lcow_ext4_writer *w, node *n);
lcow_code lcow_ext4_writer_finish_data(lcow_ext4_writer *w, lcow_error *err);
lcow_code lcow_ext4_writer_start_data(lcow_ext4_writer *w, uint32_t ino, uint64_t size,
                                      const char *name, size_t len, lcow_error *err);
lcow_code lcow_ext4_writer_data_write(lcow_ext4_writer *w, const void *data, size_t len,
                                      lcow_error *err);

/* ---- ext4_writer_tree.c: times, directory index, inodes, entries ---- */

lcow_ext4_time lcow_ext4_writer_time_decode(uint64_t t);
uint32_t lcow_ext4_writer_dir_child(const lcow_ext4_writer *w, uint32_t parent, const char *p,
                                    size_t len);
bool lcow_ext4_writer_dir_add(lcow_ext4_writer *w, uint32_t parent, const char *p, size_t len,
                              uint32_t child);
lcow_code lcow_ext4_writer_split_path(lcow_ext4_writer *w, const char *path, size_t len, size_t *n,
                                      lcow_error *err);
lcow_code lcow_ext4_writer_resolve(lcow_ext4_writer *w, const char *path, size_t len,
                                   bool must_exist, target *t, lcow_error *err);
lcow_code lcow_ext4_writer_make_inode(lcow_ext4_writer *w, const char *path, size_t path_len,
                                      const lcow_ext4_file *f, uint32_t reuse, bool release,
                                      uint32_t *out, lcow_error *err);
lcow_code lcow_ext4_writer_create_entry(lcow_ext4_writer *w, const char *path, size_t len,
                                        const lcow_ext4_file *f, bool release, lcow_error *err);

/* ---- ext4_writer_xattr.c: xattr encoding, placement, merging ---- */

void lcow_ext4_writer_xattrs_put(const xplaced *xs, size_t n, uint8_t *b, size_t blen,
                                 uint16_t delta);
bool lcow_ext4_writer_xattrs_get(const uint8_t *b, size_t blen, uint16_t delta, char *namebuf,
                                 xattr_fn fn, void *ctx);
int lcow_ext4_writer_name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);
bool lcow_ext4_writer_xlists_add(xlists *l, const uint8_t *name, size_t name_len,
                                 const uint8_t *value, size_t value_len, bool *oom_flag);
lcow_code lcow_ext4_writer_write_xattrs(lcow_ext4_writer *w, uint32_t ino, xlists *l,
                                        lcow_error *err);
bool lcow_ext4_writer_xcollect_add(void *ctx, const uint8_t *name, size_t name_len,
                                   const uint8_t *value, size_t value_len);
void lcow_ext4_writer_xcollect_settle(xcollect *c);
bool lcow_ext4_writer_xcollect_has(const xcollect *c, size_t upto, const uint8_t *name, size_t len);

#endif

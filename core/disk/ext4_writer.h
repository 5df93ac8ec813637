/* Compact ext4 writer: builds a read-only ext4 image the way hcsshim's
 * compactext4 (ext4/internal/compactext4, commit 7c9ff7f, used by tar2ext4)
 * does, byte for byte, streaming file data straight to the output file.
 *
 * Layout (every number below is what tar2ext4 writes):
 *   block 0             superblock (written last)
 *   blocks 1..G         group descriptors for the maximum disk size (G = 8
 *                       for 128 GiB), 32-byte descriptors, unused ones zero
 *   then, in call order: for each created inode its xattr block (if its
 *   xattrs do not fit in the inode), its data (regular files, symlinks
 *   longer than 59 bytes) and, past 512 MiB, its extent leaf blocks;
 *   at finish: every directory (pre-order walk, children sorted by inode
 *   number then name), the inode table, one block bitmap + inode bitmap
 *   pair per group, zeros up to the disk size; then the descriptors and
 *   the superblock.
 * 4 KiB blocks, 256-byte inodes (152 used + 104 bytes of in-inode xattrs),
 * inode numbers in creation order (2 root, 11 lost+found, then 12...),
 * features ext_attr sparse_super2 filetype extent flex_bg large_file
 * huge_file extra_isize read-only (+ inline_data with the option), no
 * journal, no checksums, no UUID, no clock: the output depends only on
 * the calls.
 *
 * Semantics follow compactext4: names are '/'-separated and cleaned like
 * Go's path.Clean of "/" + name (so "./a", "/a" and "a" are one path);
 * creating an existing directory updates it in place (its xattrs kept in the
 * inode are merged); make_parents creates missing parents with their own
 * parent's metadata. Deliberate differences (docs/layers.md):
 *   - a ".." that would climb above the root is INVALID_ARGUMENT, not
 *     silently dropped;
 *   - replacing a file whose data is already written (compactext4: "cannot
 *     overwrite file with non-inline data") reuses the inode as compactext4
 *     does for data-less files, releases the old blocks in the block bitmap
 *     and writes the new data: the later entry wins, as with tar -x;
 *   - a hard link over an existing single-link file replaces it (the
 *     orphaned inode is released) instead of failing.
 *
 * Output: the writer creates the file itself. Data goes through a write
 * buffer (512 KiB by default) in large sequential writes; pieces of a file's
 * data of 32 KiB or more skip the buffer when it is empty and go to the file
 * straight from the caller's memory.
 * The only writes to earlier offsets are a rewritten xattr block (when an
 * inode that has one is updated) and, at finish, blocks 0..G.
 *
 * on_final: called (on the writer's thread) for 4096-aligned ranges of the
 * image whose content is final, each block at most once, in no particular
 * order (data as it is written, xattr blocks and blocks 0..G at finish);
 * blocks never reported read as zero. `data` is valid during the call only.
 * It lets a dm-verity hasher work from memory while the image is written.
 *
 * Errors: INVALID_ARGUMENT for bad names and conflicting entries (message
 * names the path), RESOURCE_EXHAUSTED when the image would exceed the
 * maximum disk size or a file exceeds 128 GiB, what the os layer returns
 * for I/O. After any error the writer refuses further calls (the same code
 * again); the caller closes it and removes the file. */
#ifndef LCOW_DISK_EXT4_WRITER_H
#define LCOW_DISK_EXT4_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/os/os.h"

#define LCOW_EXT4W_BLOCK_SIZE 4096u
#define LCOW_EXT4W_DEFAULT_MAX_DISK (16ull << 30) /* compactext4's default */
#define LCOW_EXT4W_MAX_MAX_DISK (16ull << 40)
#define LCOW_EXT4W_MAX_FILE_SIZE (128ull << 30)
#define LCOW_EXT4W_MAX_NAME 255u
#define LCOW_EXT4W_INLINE_MAX 136u /* largest file kept in the inode (inline_data) */

/* File types (the S_IF* values, spelled out: Windows has no S_IFLNK...). */
#define LCOW_EXT4W_S_IFMT 0xF000u
#define LCOW_EXT4W_S_IFIFO 0x1000u
#define LCOW_EXT4W_S_IFCHR 0x2000u
#define LCOW_EXT4W_S_IFDIR 0x4000u
#define LCOW_EXT4W_S_IFBLK 0x6000u
#define LCOW_EXT4W_S_IFREG 0x8000u
#define LCOW_EXT4W_S_IFLNK 0xA000u
#define LCOW_EXT4W_S_IFSOCK 0xC000u

/* A timestamp. set = false is Go's zero time.Time: stored as 0. Seconds are
 * clamped to ext4's range (-2^31 .. 0x37fffffff), nsec must be < 10^9. */
typedef struct lcow_ext4_time {
    int64_t sec;
    uint32_t nsec;
    bool set;
} lcow_ext4_time;

typedef struct lcow_ext4_xattr {
    const char *name; /* full name: "user.x", "security.capability", ... */
    size_t name_len;
    const void *value;
    size_t value_len;
} lcow_ext4_xattr;

/* What to create. Unused fields zero. */
typedef struct lcow_ext4_file {
    uint16_t mode; /* type | permission bits; no type means regular */
    uint32_t uid, gid;
    uint64_t size; /* regular files: the data bytes that follow (write) */
    lcow_ext4_time atime, mtime, ctime, crtime;
    uint32_t devmajor, devminor; /* character and block devices */
    const char *link;            /* symlink target */
    size_t link_len;
    const lcow_ext4_xattr *xattrs; /* a name given twice: the later value wins */
    size_t xattr_count;
} lcow_ext4_file;

typedef void (*lcow_ext4_final_fn)(void *ctx, uint64_t offset, const void *data, size_t len);

/* The image bytes [offset, offset+len) were handed to the OS (pwrite); called
 * about every 8 MiB of sequential output with contiguous ranges from offset 0
 * (which include the superblock and descriptors, written at finish). Lets the
 * caller start writeback early (Linux sync_file_range(SYNC_FILE_RANGE_WRITE))
 * so that the final fsync has less left to wait for: on a 277 MB layer it
 * took the fsync'd conversion from ~0.48 to ~0.37 s. */
typedef void (*lcow_ext4_written_fn)(void *ctx, uint64_t offset, uint64_t len);

typedef struct lcow_ext4_writer_options {
    /* Largest image in bytes: also sizes the descriptor table (tar2ext4's
     * -max-gb). 0 = 16 GiB, above 16 TiB = 16 TiB, else rounded up to 4096. */
    uint64_t max_disk_size;
    bool inline_data; /* files up to 136 bytes live in the inode (tar2ext4 -inline) */
    lcow_ext4_final_fn on_final;
    void *on_final_ctx;
    lcow_ext4_written_fn on_written;
    void *on_written_ctx;
    size_t buffer_bytes; /* write buffer; 0 = 512 KiB; rounded to whole blocks, >= 64 KiB */
    bool exclusive;      /* fail with ALREADY_EXISTS if path exists (else truncate it) */
} lcow_ext4_writer_options;

typedef struct lcow_ext4_writer lcow_ext4_writer;

/* Creates the output file and the root and lost+found directories. opts may
 * be NULL (defaults). */
lcow_code lcow_ext4_writer_open(const char *path, const lcow_ext4_writer_options *opts,
                                lcow_ext4_writer **out, lcow_error *err);

/* Creates the missing parent directories of path (not path itself), each
 * with the mode, owner and times of its own parent (compactext4's
 * MakeParents). */
lcow_code lcow_ext4_writer_make_parents(lcow_ext4_writer *w, const char *path, size_t len,
                                        lcow_error *err);

/* Creates path (its parent must exist) or updates it: an existing directory
 * only by a directory, an existing non-directory only by a non-directory.
 * A regular file is then open for f->size bytes of data (write); the next
 * call of any other function ends it and fails if fewer were written. */
lcow_code lcow_ext4_writer_create(lcow_ext4_writer *w, const char *path, size_t len,
                                  const lcow_ext4_file *f, lcow_error *err);

/* Appends data to the regular file being written. */
lcow_code lcow_ext4_writer_write(lcow_ext4_writer *w, const void *data, size_t len,
                                 lcow_error *err);

/* Hard link: path becomes another name of target (not a directory).
 * Symlinks are linked themselves, not followed. */
lcow_code lcow_ext4_writer_link(lcow_ext4_writer *w, const char *target, size_t target_len,
                                const char *path, size_t len, lcow_error *err);

/* Sets one xattr on an existing path by re-creating it with its own
 * metadata plus the xattr (compactext4's Stat + Create: the overlay opaque
 * marker). FAILED_PRECONDITION for a file whose data is already written. */
lcow_code lcow_ext4_writer_set_xattr(lcow_ext4_writer *w, const char *path, size_t len,
                                     const char *name, const void *value, size_t value_len,
                                     lcow_error *err);

/* Writes the directories, inode table, bitmaps, descriptors and superblock
 * and flushes the buffer; the file stays open (for a verity tree and a VHD
 * footer after the image) and is not synced. *image_size (may be NULL) is
 * the image length, a multiple of 4096; the file is exactly that long. */
lcow_code lcow_ext4_writer_finish(lcow_ext4_writer *w, uint64_t *image_size, lcow_error *err);

/* The output file, to append to after finish or to sync; owned by the writer. */
lcow_file *lcow_ext4_writer_file(lcow_ext4_writer *w);

/* Counters for tests and benchmarks. */
typedef struct lcow_ext4_writer_stats {
    uint32_t inodes; /* inode slots used (highest inode number) */
    uint32_t groups; /* after finish */
    uint32_t inodes_per_group;
    uint64_t released_blocks; /* data blocks freed by later entries that replaced files */
    uint64_t write_calls;     /* lcow_file_pwrite calls */
    uint64_t bytes_written;
} lcow_ext4_writer_stats;

void lcow_ext4_writer_get_stats(const lcow_ext4_writer *w, lcow_ext4_writer_stats *out);

/* Closes the file and frees the writer (NULL is a no-op). Does not remove
 * the file, finished or not. */
void lcow_ext4_writer_close(lcow_ext4_writer *w);

#endif

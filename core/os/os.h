/* Per-platform file operations: the only place core/ touches the OS file
 * system. os_posix.c and os_win.c implement it; Windows converts UTF-8 paths
 * to UTF-16 and calls only W functions (with the \\?\ prefix for long paths).
 *
 * Every operation that can fail passes through the fault-injection seam
 * (lcow_os_fault_*), compiled in when LCOW_FAULT_INJECTION is defined (test
 * builds), so tests can make the Nth call of an operation fail with ENOSPC,
 * EIO or a rename failure and prove the store stays consistent.
 *
 * Errors: a missing path is LCOW_NOT_FOUND, an existing one where a new one is
 * required LCOW_ALREADY_EXISTS, a full disk LCOW_RESOURCE_EXHAUSTED, anything
 * else LCOW_INTERNAL; the message names the operation, the path and the OS
 * error text. */
#ifndef LCOW_OS_H
#define LCOW_OS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"

#ifdef _WIN32
#define LCOW_PATH_SEP '\\'
#define LCOW_PATH_SEP_STR "\\"
#else
#define LCOW_PATH_SEP '/'
#define LCOW_PATH_SEP_STR "/"
#endif

/* ---- paths (pure string functions, no I/O) ---- */

/* Joins a and b with the platform separator; returns malloc'd string. */
char *lcow_path_join(const char *a, const char *b);
/* True for "/x" on POSIX and "C:\x", "C:/x", "\\server\share", "\\?\..." on Windows. */
bool lcow_path_is_absolute(const char *path);
/* Absolute path of an existing path with links and ".." resolved (realpath /
 * GetFinalPathNameByHandleW); malloc'd. */
lcow_code lcow_os_realpath(const char *path, char **out, lcow_error *err);

/* ---- files ---- */

typedef struct lcow_file lcow_file;

enum {
    LCOW_OPEN_READ = 1 << 0,
    LCOW_OPEN_WRITE = 1 << 1,
    LCOW_OPEN_CREATE = 1 << 2,    /* create if missing */
    LCOW_OPEN_EXCLUSIVE = 1 << 3, /* with CREATE: fail with ALREADY_EXISTS if present */
    LCOW_OPEN_TRUNCATE = 1 << 4,
    /* A file the service opens by name that someone else could have put
     * there (templates, sandboxes): never block on it (a FIFO), never follow
     * a final symbolic link or reparse point, and accept only a regular
     * file. Anything else is FAILED_PRECONDITION "not a regular file". */
    LCOW_OPEN_REGULAR = 1 << 5,
    /* Windows: share nothing (no FILE_SHARE_*): the open fails with a
     * sharing violation while anyone else has the file open, and while it
     * is held nobody else can open, rename or delete it, as a VM or a
     * scanner holding a disk does. POSIX has no mandatory sharing: the
     * file is flock()ed exclusively instead, so two such opens exclude
     * each other. Either refusal is FAILED_PRECONDITION "... in use". */
    LCOW_OPEN_SHARE_NONE = 1 << 6,
};

lcow_code lcow_file_open(const char *path, int flags, lcow_file **out, lcow_error *err);
/* Full-length positional I/O: short transfers are retried; reading past EOF
 * returns the bytes available in *got (may be NULL when the caller needs all). */
lcow_code lcow_file_pread(lcow_file *f, void *buf, size_t len, uint64_t off, size_t *got,
                          lcow_error *err);
lcow_code lcow_file_pwrite(lcow_file *f, const void *buf, size_t len, uint64_t off,
                           lcow_error *err);
lcow_code lcow_file_size(lcow_file *f, uint64_t *size, lcow_error *err);
/* Sets the file length (extends with zeros, never marks the file sparse). */
lcow_code lcow_file_truncate(lcow_file *f, uint64_t size, lcow_error *err);
lcow_code lcow_file_sync(lcow_file *f, lcow_error *err);
/* Starts writing [off, off+len) of f back to disk without waiting for it
 * (Linux: sync_file_range(SYNC_FILE_RANGE_WRITE)), so that a later
 * lcow_file_sync has less left to wait for. A hint: it cannot fail, and it
 * is a no-op where the platform has no such call (Windows). */
void lcow_file_start_writeback(lcow_file *f, uint64_t off, uint64_t len);
/* Closes and frees; NULL is a no-op. Errors at close are logged, not returned. */
void lcow_file_close(lcow_file *f);

/* ---- directories and names ---- */

typedef struct lcow_stat {
    bool exists;
    bool is_dir;
    bool is_link;    /* the path itself is a symbolic link (lstat) */
    bool is_regular; /* a regular file: not a link, directory, FIFO, socket or device */
    uint64_t size;
} lcow_stat;

/* What st describes, for messages: "missing", "a regular file", "a
 * directory", "a symbolic link", "a FIFO, socket or device". */
const char *lcow_os_stat_kind(const lcow_stat *st);

/* lstat-like: a missing path is not an error (st->exists = false). */
lcow_code lcow_os_stat(const char *path, lcow_stat *st, lcow_error *err);
/* Creates one directory; ALREADY_EXISTS if anything is at path. */
lcow_code lcow_os_mkdir(const char *path, lcow_error *err);
/* Creates path and missing parents; an existing directory is success. */
lcow_code lcow_os_mkdir_all(const char *path, lcow_error *err);
/* lcow_os_mkdir_all whose last component, when it is created, is private
 * to the service: POSIX 0755 (as mkdir_all); Windows a protected DACL with
 * full control for SYSTEM, Administrators and the owner only, instead of
 * what the parent hands down (C:\ProgramData lets Users add files and
 * folders in every new folder). An existing directory is left as it is. */
lcow_code lcow_os_mkdir_private_all(const char *path, lcow_error *err);
/* Atomic rename within one volume, replacing a file target. */
lcow_code lcow_os_rename(const char *from, const char *to, lcow_error *err);
/* Removes one file or empty directory; missing is NOT_FOUND. */
lcow_code lcow_os_remove(const char *path, lcow_error *err);
/* Removes a tree (links are removed, never followed); missing is success. */
lcow_code lcow_os_remove_all(const char *path, lcow_error *err);
/* Makes the directory entry changes inside dir durable (fsync of the
 * directory on POSIX; a no-op on Windows, where NTFS metadata is journaled). */
lcow_code lcow_os_sync_dir(const char *dir, lcow_error *err);

/* Refuses (FAILED_PRECONDITION naming the directory, who can write it and
 * the remedy) a directory that users other than its owner and the
 * administrators can write, so that nobody else can plant, swap or remove
 * what the service keeps there (issue 14, item 8). POSIX: the directory and
 * every parent must be owned by root or the service's own user and be
 * writable by neither others nor a group other than root's; a parent with
 * the sticky bit (as /tmp) passes, since others cannot rename or remove the
 * entries in it they do not own. Windows: the directory's DACL (read with
 * GetNamedSecurityInfoW) must exist and must not let Everyone, Users,
 * Authenticated Users, Anonymous or Interactive write data, add files or
 * subdirectories, delete children, or change the DACL or owner (inherit-only
 * entries count too: they would apply to what the service creates); parents
 * are not checked there. A missing directory is NOT_FOUND. */
lcow_code lcow_os_check_private_dir(const char *path, lcow_error *err);

/* Calls fn for every entry name in dir except "." and "..". A non-zero return
 * from fn stops the listing and is returned as LCOW_OK. */
typedef int (*lcow_dir_fn)(void *ctx, const char *name, bool is_dir);
lcow_code lcow_os_list_dir(const char *dir, lcow_dir_fn fn, void *ctx, lcow_error *err);

/* ---- directory handles ---- */

/* A directory opened once and worked in by handle, so that a path swapped
 * between a check and a use (a component replaced by a symbolic link) cannot
 * redirect what happens in it (issue 14, item 5). POSIX: an O_DIRECTORY |
 * O_NOFOLLOW descriptor and openat/linkat/unlinkat/fsync on it, O_NOFOLLOW
 * on every name. Windows: a handle opened without FILE_SHARE_DELETE and
 * without following a reparse point, so the directory (and therefore every
 * directory above it) cannot be renamed, removed or replaced while it is
 * held; names below it are opened without following reparse points. Names
 * are single components ("." and ".." refused). */
typedef struct lcow_dir lcow_dir;

/* Opens an existing directory; a final symbolic link (reparse point) or a
 * non-directory is FAILED_PRECONDITION. */
lcow_code lcow_dir_open(const char *path, lcow_dir **out, lcow_error *err);
/* Where the directory is now (Linux: /proc/self/fd; Windows:
 * GetFinalPathNameByHandleW), malloc'd; FAILED_PRECONDITION once it was
 * removed. Compare it with the path that was checked. */
lcow_code lcow_dir_real_path(lcow_dir *d, char **out, lcow_error *err);
/* The path it was opened with. */
const char *lcow_dir_path(const lcow_dir *d);
/* lcow_file_open of name inside d (never following a link at name). */
lcow_code lcow_dir_file_open(lcow_dir *d, const char *name, int flags, lcow_file **out,
                             lcow_error *err);
/* Hard link from -> to, both in d; an existing `to` is ALREADY_EXISTS. */
lcow_code lcow_dir_link(lcow_dir *d, const char *from, const char *to, lcow_error *err);
/* A symbolic link name in d pointing at target (absolute), as
 * lcow_os_symlink (NOT_IMPLEMENTED where links are unavailable). */
lcow_code lcow_dir_symlink(lcow_dir *d, const char *target, const char *name, lcow_error *err);
/* A hard link name in d to the file at the path existing (a link there is
 * linked itself, never followed); an existing name is ALREADY_EXISTS. */
lcow_code lcow_dir_hardlink_from(lcow_dir *d, const char *existing, const char *name,
                                 lcow_error *err);
/* Renames from -> to inside d, replacing a file at to. */
lcow_code lcow_dir_rename(lcow_dir *d, const char *from, const char *to, lcow_error *err);
/* Removes the file name in d (a link itself, never its target). */
lcow_code lcow_dir_remove(lcow_dir *d, const char *name, lcow_error *err);
/* Makes d's entry changes durable (fsync; a no-op on Windows). */
lcow_code lcow_dir_sync(lcow_dir *d, lcow_error *err);
void lcow_dir_close(lcow_dir *d);

/* ---- links ---- */

/* Symbolic link at link_path pointing at target (absolute). On Windows
 * CreateSymbolicLinkW (file link); NOT_IMPLEMENTED where the privilege or the
 * file system is missing, so callers can fall back to a hard link. */
lcow_code lcow_os_symlink(const char *target, const char *link_path, lcow_error *err);
lcow_code lcow_os_hardlink(const char *existing, const char *link_path, lcow_error *err);
/* A file's identity and hard-link count, links not followed: (st_dev,
 * st_ino, st_nlink) on POSIX, (volume serial, file index, nNumberOfLinks)
 * from GetFileInformationByHandle on Windows. Two names with equal volume
 * and index are one file. A missing path is NOT_FOUND. */
typedef struct lcow_file_id {
    uint64_t volume;
    uint64_t index;
    uint32_t links;
} lcow_file_id;
lcow_code lcow_os_file_id(const char *path, lcow_file_id *out, lcow_error *err);

/* ---- space ---- */

/* Disk usage of a tree: allocated bytes and number of inodes (files, dirs,
 * links), each hard-linked inode counted once, links never followed. */
lcow_code lcow_os_usage(const char *path, int64_t *bytes, int64_t *inodes, lcow_error *err);

/* Copies src to a new file dst (created exclusively), keeping holes: only
 * allocated ranges are copied (SEEK_DATA/SEEK_HOLE or copy_file_range on
 * Linux; allocated-range query on Windows). The copy is fsynced. src is
 * opened as lcow_file_open(LCOW_OPEN_REGULAR) does (never a link, a FIFO or
 * a device); a failed copy leaves no dst. */
lcow_code lcow_os_copy_sparse(const char *src, const char *dst, lcow_error *err);
/* The same between two open files: the bytes of the file src is open on
 * (whatever its name leads to now) into dst, a new empty file open for
 * writing, which is sized to src, gets src's allocated ranges only (POSIX:
 * SEEK_DATA/SEEK_HOLE, then copy_file_range or read/write; Windows:
 * FSCTL_QUERY_ALLOCATED_RANGES; the destination is not marked sparse there,
 * as Windows refuses to attach a sparse VHDX) and is fsynced. So a file
 * checked through its open handle is the one copied, even if its name was
 * swapped after the check (issue 14, item 5). On failure dst may hold part
 * of the data: the caller removes it. */
lcow_code lcow_file_copy_sparse(lcow_file *src, lcow_file *dst, lcow_error *err);

/* ---- time ---- */

/* UTC wall-clock time (clock_gettime(CLOCK_REALTIME) /
 * GetSystemTimePreciseAsFileTime: 100 ns ticks, the precision containerd's
 * Windows clock has). */
lcow_time lcow_os_time_now(void);
/* Milliseconds of a monotonic clock (CLOCK_MONOTONIC / GetTickCount64), for
 * deadlines and durations; never goes back. */
uint64_t lcow_os_monotonic_ms(void);
/* Microseconds of the same kind of clock, for request latencies. */
uint64_t lcow_os_monotonic_us(void);

/* ---- random bytes ---- */

/* Cryptographically random bytes (getrandom / RtlGenRandom) for UUIDs,
 * GUIDs and the ext4 hash seed. */
lcow_code lcow_os_random(void *buf, size_t len, lcow_error *err);

/* ---- process ---- */

/* The directory for temporary files (TMPDIR or /tmp; GetTempPathW on
 * Windows); malloc'd, NULL when out of memory. */
char *lcow_os_temp_dir(void);
/* Standard input as bytes (Windows: _O_BINARY, no CR-LF translation; a
 * no-op elsewhere). */
void lcow_os_stdin_binary(void);

/* Sets the allocator up for a long-running service with many threads: on
 * glibc at most 2 malloc arenas (one per connection thread would each keep
 * its own high-water mark) and a fixed 256 KiB mmap threshold (the dynamic
 * one rises after large frees and then keeps big buffers in the heap).
 * Together with smaller LevelDB caches and lcow_os_release_free_memory it
 * turned a soak's RSS from climbing for 10 minutes into a plateau after
 * start-up (docs/reliability.md). Call once, before starting threads; a no-op on
 * Windows, whose heap needs nothing of the sort. */
void lcow_os_tune_allocator(void);

/* Gives memory the allocator holds free back to the system (glibc:
 * malloc_trim, which also releases free pages inside the heap); the
 * foreground service calls it every LCOW_TRIM_INTERVAL_MS so that heap
 * fragmentation does not show as slow RSS growth. A no-op on Windows. */
void lcow_os_release_free_memory(void);

/* ---- fault injection (test builds) ---- */

typedef enum lcow_os_op {
    LCOW_OS_OP_OPEN,
    LCOW_OS_OP_READ,
    LCOW_OS_OP_WRITE,
    LCOW_OS_OP_TRUNCATE,
    LCOW_OS_OP_SYNC,
    LCOW_OS_OP_MKDIR,
    LCOW_OS_OP_RENAME,
    LCOW_OS_OP_REMOVE,
    LCOW_OS_OP_LIST,
    LCOW_OS_OP_LINK,
    LCOW_OS_OP_COPY,
    LCOW_OS_OP_COUNT,
    LCOW_OS_OP_ANY = LCOW_OS_OP_COUNT,
} lcow_os_op;

typedef enum lcow_os_fault {
    LCOW_FAULT_NONE = 0,
    LCOW_FAULT_ENOSPC, /* -> LCOW_RESOURCE_EXHAUSTED */
    LCOW_FAULT_EIO,    /* -> LCOW_INTERNAL */
    LCOW_FAULT_EACCES, /* e.g. rename refused because a VM holds the file */
    LCOW_FAULT_EBUSY,  /* a file in use (EBUSY; Windows' sharing violation) */
} lcow_os_fault;

/* Arms a fault: the nth (1-based) call of op from now on fails with fault;
 * nth == 0 disarms. With persistent, every call from the nth on fails.
 * Always declared; without LCOW_FAULT_INJECTION it returns false and does nothing. */
bool lcow_os_fault_arm(lcow_os_op op, unsigned nth, lcow_os_fault fault, bool persistent);
void lcow_os_fault_clear(void);
/* Number of calls of op seen since the last clear (counted only when
 * fault injection is compiled in). */
unsigned lcow_os_fault_calls(lcow_os_op op);
/* Parses "op:nth:fault[:persist]" (e.g. "rename:1:eio") as given in the
 * LCOW_FAULT environment variable of test builds; "alloc:nth[:persist]"
 * arms the allocation seam of core/base/alloc.h instead. */
bool lcow_os_fault_parse(const char *spec);
const char *lcow_os_op_name(lcow_os_op op);
/* Tests: calls fn(ctx, what) at every call of op that passes the seam, before
 * the operation touches anything (so a test can swap a file between a check
 * and a use: the hook of LCOW_OS_OP_COPY runs when a copy starts); fn NULL
 * removes it (lcow_os_fault_clear removes all). One hook per op, set while
 * no other thread uses that op.
 * Returns false (and does nothing) without LCOW_FAULT_INJECTION. */
typedef void (*lcow_os_hook_fn)(void *ctx, const char *what);
bool lcow_os_fault_set_hook(lcow_os_op op, lcow_os_hook_fn fn, void *ctx);

#endif

/* core/os on POSIX (Linux): the development and CI build. */
#include "core/os/os_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/types.h"

struct lcow_file {
    int fd;
    char *path;
};

static lcow_code code_of_errno(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return LCOW_NOT_FOUND;
    case EEXIST:
        return LCOW_ALREADY_EXISTS;
    case ENOSPC:
    case EDQUOT:
        return LCOW_RESOURCE_EXHAUSTED;
    default:
        return LCOW_INTERNAL;
    }
}

/* Fills err from errno: "<op> <path>: <strerror>". */
static lcow_code os_fail(lcow_error *err, int e, const char *op, const char *path)
{
    return lcow_error_set(err, code_of_errno(e), "%s %s: %s", op, path, strerror(e));
}

bool lcow_path_is_absolute(const char *path)
{
    return path && path[0] == '/';
}

lcow_code lcow_os_realpath(const char *path, char **out, lcow_error *err)
{
    *out = NULL;
    char *r = realpath(path, NULL);
    if (!r)
        return os_fail(err, errno, "realpath", path);
    *out = r;
    return LCOW_OK;
}

/* ---- files ---- */

/* lcow_file_open of name relative to dirfd (AT_FDCWD: a path); path is
 * the name messages and f->path carry. */
static lcow_code file_open_at(int dirfd, const char *name, const char *path, int flags,
                              lcow_file **out, lcow_error *err)
{
    *out = NULL;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_OPEN, path, err);
    if (rc)
        return rc;
    int oflags = O_CLOEXEC;
    if ((flags & LCOW_OPEN_READ) && (flags & LCOW_OPEN_WRITE))
        oflags |= O_RDWR;
    else if (flags & LCOW_OPEN_WRITE)
        oflags |= O_WRONLY;
    else
        oflags |= O_RDONLY;
    if (flags & LCOW_OPEN_CREATE)
        oflags |= O_CREAT;
    if ((flags & LCOW_OPEN_CREATE) && (flags & LCOW_OPEN_EXCLUSIVE))
        oflags |= O_EXCL;
    if (flags & LCOW_OPEN_TRUNCATE)
        oflags |= O_TRUNC;
    if (flags & LCOW_OPEN_REGULAR)
        oflags |= O_NONBLOCK | O_NOFOLLOW;
    if (dirfd != AT_FDCWD)
        oflags |= O_NOFOLLOW; /* inside a directory handle: never out of it */
    lcow_file *f = lcow_calloc(1, sizeof *f);
    if (!f || !(f->path = lcow_strdup(path))) {
        free(f);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "open %s: out of memory", path);
    }
    do
        f->fd = openat(dirfd, name, oflags, 0644);
    while (f->fd < 0 && errno == EINTR);
    if (f->fd < 0) {
        int e = errno;
        free(f->path);
        free(f);
        /* ELOOP: a final symbolic link; ENXIO: a socket or a FIFO without a
         * reader. */
        if ((flags & LCOW_OPEN_REGULAR) && (e == ELOOP || e == ENXIO || e == EMLINK))
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "open %s: not a regular file (%s)",
                                  path, strerror(e));
        return os_fail(err, e, "open", path);
    }
    if ((flags & LCOW_OPEN_SHARE_NONE) && flock(f->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f->fd);
        free(f->path);
        free(f);
        if (e == EWOULDBLOCK)
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "open %s: in use (locked by another process)", path);
        return os_fail(err, e, "lock", path);
    }
    if (flags & LCOW_OPEN_REGULAR) {
        struct stat st;
        int e = 0;
        if (fstat(f->fd, &st) != 0)
            e = errno;
        else if (!S_ISREG(st.st_mode))
            e = -1;
        else if (fcntl(f->fd, F_SETFL, fcntl(f->fd, F_GETFL) & ~O_NONBLOCK) != 0)
            e = errno;
        if (e) {
            close(f->fd);
            free(f->path);
            free(f);
            if (e > 0)
                return os_fail(err, e, "open", path);
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "open %s: not a regular file (a %s)", path,
                                  S_ISFIFO(st.st_mode)                         ? "FIFO"
                                  : S_ISSOCK(st.st_mode)                       ? "socket"
                                  : S_ISDIR(st.st_mode)                        ? "directory"
                                  : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "device"
                                                                               : "special file");
        }
    }
    *out = f;
    return LCOW_OK;
}

lcow_code lcow_file_open(const char *path, int flags, lcow_file **out, lcow_error *err)
{
    return file_open_at(AT_FDCWD, path, path, flags, out, err);
}

lcow_code lcow_file_pread(lcow_file *f, void *buf, size_t len, uint64_t off, size_t *got,
                          lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_READ, f->path, err);
    if (rc)
        return rc;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(f->fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return os_fail(err, errno, "read", f->path);
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    if (got)
        *got = done;
    else if (done < len)
        return lcow_error_set(err, LCOW_INTERNAL,
                              "read %s: short read at offset %llu (%zu of %zu bytes)", f->path,
                              (unsigned long long)off, done, len);
    return LCOW_OK;
}

lcow_code lcow_file_pwrite(lcow_file *f, const void *buf, size_t len, uint64_t off, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_WRITE, f->path, err);
    if (rc)
        return rc;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(f->fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return os_fail(err, errno, "write", f->path);
        }
        done += (size_t)n;
    }
    return LCOW_OK;
}

lcow_code lcow_file_size(lcow_file *f, uint64_t *size, lcow_error *err)
{
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return os_fail(err, errno, "stat", f->path);
    *size = (uint64_t)st.st_size;
    return LCOW_OK;
}

lcow_code lcow_file_truncate(lcow_file *f, uint64_t size, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_TRUNCATE, f->path, err);
    if (rc)
        return rc;
    if (ftruncate(f->fd, (off_t)size) != 0)
        return os_fail(err, errno, "truncate", f->path);
    return LCOW_OK;
}

lcow_code lcow_file_sync(lcow_file *f, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_SYNC, f->path, err);
    if (rc)
        return rc;
    if (fsync(f->fd) != 0)
        return os_fail(err, errno, "fsync", f->path);
    return LCOW_OK;
}

void lcow_file_start_writeback(lcow_file *f, uint64_t off, uint64_t len)
{
#ifdef __linux__
    if (f && len)
        (void)sync_file_range(f->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
#else
    (void)f, (void)off, (void)len;
#endif
}

void lcow_file_close(lcow_file *f)
{
    if (!f)
        return;
    if (close(f->fd) != 0)
        LCOW_LOGW("close %s: %s", f->path, strerror(errno));
    free(f->path);
    free(f);
}

/* ---- directories and names ---- */

lcow_code lcow_os_stat(const char *path, lcow_stat *st, lcow_error *err)
{
    memset(st, 0, sizeof *st);
    struct stat s;
    if (lstat(path, &s) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return LCOW_OK;
        return os_fail(err, errno, "stat", path);
    }
    st->exists = true;
    st->is_dir = S_ISDIR(s.st_mode);
    st->is_link = S_ISLNK(s.st_mode);
    st->is_regular = S_ISREG(s.st_mode);
    st->size = (uint64_t)s.st_size;
    return LCOW_OK;
}

/* One directory of lcow_os_check_private_dir: NULL when it is private,
 * else why not. */
static const char *not_private(const struct stat *s, bool is_parent, char *why, size_t size)
{
    uid_t me = geteuid();
    if (s->st_uid != 0 && s->st_uid != me) {
        snprintf(why, size, "is owned by uid %u, neither root nor the service's user",
                 (unsigned)s->st_uid);
        return why;
    }
    if (is_parent && (s->st_mode & S_ISVTX))
        return NULL; /* others cannot move or remove what is ours in it */
    if (s->st_mode & S_IWOTH) {
        snprintf(why, size, "is world-writable (mode %04o)", (unsigned)(s->st_mode & 07777));
        return why;
    }
    if ((s->st_mode & S_IWGRP) && s->st_gid != 0) {
        snprintf(why, size, "is writable by group %u (mode %04o)", (unsigned)s->st_gid,
                 (unsigned)(s->st_mode & 07777));
        return why;
    }
    return NULL;
}

lcow_code lcow_os_check_private_dir(const char *path, lcow_error *err)
{
    char *real = realpath(path, NULL);
    if (!real) {
        int e = errno;
        return lcow_error_set(err, code_of_errno(e), "%s: %s", path, strerror(e));
    }
    lcow_code rc = LCOW_OK;
    char why[128];
    /* The directory itself, then each parent up to "/" (len 0). */
    size_t full = strlen(real), len = full;
    for (;;) {
        char saved = real[len];
        real[len] = '\0';
        const char *dir = len ? real : "/";
        bool is_parent = len < full;
        struct stat s;
        if (stat(dir, &s) != 0) {
            int e = errno;
            rc = lcow_error_set(err, code_of_errno(e), "%s: %s", dir, strerror(e));
        } else if (!is_parent && !S_ISDIR(s.st_mode)) {
            rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s is not a directory", path);
        } else if (not_private(&s, is_parent, why, sizeof why)) {
            rc = is_parent ? lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                            "%s: its parent %s %s: other users could swap or "
                                            "remove it; use a directory whose parents only root "
                                            "(or the service's user) can write",
                                            path, dir, why)
                           : lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                            "%s %s: other users could plant, swap or remove what "
                                            "lcowsnap keeps there; make it writable only by its "
                                            "owner (chmod go-w)",
                                            path, why);
        }
        real[len] = saved;
        if (rc != LCOW_OK || len == 0)
            break;
        while (len > 0 && real[len - 1] != '/')
            len--;
        if (len > 0)
            len--; /* the separator; 0 is "/" */
    }
    free(real);
    return rc;
}

lcow_code lcow_os_mkdir_private_all(const char *path, lcow_error *err)
{
    return lcow_os_mkdir_all(path, err);
}

lcow_code lcow_os_mkdir(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_MKDIR, path, err);
    if (rc)
        return rc;
    if (mkdir(path, 0755) != 0)
        return os_fail(err, errno, "mkdir", path);
    return LCOW_OK;
}

lcow_code lcow_os_mkdir_all(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_MKDIR, path, err);
    if (rc)
        return rc;
    char *buf = lcow_strdup(path);
    if (!buf)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "mkdir %s: out of memory", path);
    size_t len = strlen(buf);
    /* Create each prefix ending before a separator, then the whole path. */
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        if (buf[i - 1] == '/')
            continue;
        char saved = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            rc = os_fail(err, errno, "mkdir", buf);
            free(buf);
            return rc;
        }
        buf[i] = saved;
    }
    free(buf);
    struct stat s;
    if (stat(path, &s) != 0)
        return os_fail(err, errno, "mkdir", path);
    if (!S_ISDIR(s.st_mode))
        return lcow_error_set(err, LCOW_ALREADY_EXISTS, "mkdir %s: exists and is not a directory",
                              path);
    return LCOW_OK;
}

lcow_code lcow_os_rename(const char *from, const char *to, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_RENAME, from, err);
    if (rc)
        return rc;
    if (rename(from, to) != 0) {
        int e = errno;
        return lcow_error_set(err, code_of_errno(e), "rename %s -> %s: %s", from, to, strerror(e));
    }
    return LCOW_OK;
}

lcow_code lcow_os_remove(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_REMOVE, path, err);
    if (rc)
        return rc;
    struct stat s;
    if (lstat(path, &s) != 0)
        return os_fail(err, errno, "remove", path);
    if ((S_ISDIR(s.st_mode) ? rmdir(path) : unlink(path)) != 0)
        return os_fail(err, errno, "remove", path);
    return LCOW_OK;
}

static lcow_code remove_tree(const char *path, lcow_error *err)
{
    struct stat s;
    if (lstat(path, &s) != 0) {
        if (errno == ENOENT)
            return LCOW_OK;
        return os_fail(err, errno, "remove", path);
    }
    if (!S_ISDIR(s.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return os_fail(err, errno, "remove", path);
        return LCOW_OK;
    }
    DIR *d = opendir(path);
    if (!d)
        return os_fail(err, errno, "opendir", path);
    lcow_code rc = LCOW_OK;
    struct dirent *de;
    /* Collect nothing: removing entries while reading is fine on Linux since
     * readdir never returns an entry twice; removed ones simply vanish. */
    while (rc == LCOW_OK && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *child = lcow_path_join(path, de->d_name);
        if (!child) {
            rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "remove %s: out of memory", path);
            break;
        }
        rc = remove_tree(child, err);
        free(child);
    }
    if (rc == LCOW_OK && !de && errno != 0)
        rc = os_fail(err, errno, "readdir", path);
    closedir(d);
    if (rc == LCOW_OK && rmdir(path) != 0 && errno != ENOENT)
        rc = os_fail(err, errno, "rmdir", path);
    return rc;
}

lcow_code lcow_os_remove_all(const char *path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_REMOVE, path, err);
    if (rc)
        return rc;
    return remove_tree(path, err);
}

lcow_code lcow_os_sync_dir(const char *dir, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_SYNC, dir, err);
    if (rc)
        return rc;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return os_fail(err, errno, "open directory", dir);
    if (fsync(fd) != 0 && errno != EINVAL) {
        rc = os_fail(err, errno, "fsync directory", dir);
        close(fd);
        return rc;
    }
    close(fd);
    return LCOW_OK;
}

lcow_code lcow_os_list_dir(const char *dir, lcow_dir_fn fn, void *ctx, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LIST, dir, err);
    if (rc)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return os_fail(err, errno, "list", dir);
    struct dirent *de;
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        bool is_dir;
        if (de->d_type != DT_UNKNOWN) {
            is_dir = de->d_type == DT_DIR;
        } else {
            struct stat s;
            is_dir =
                fstatat(dirfd(d), de->d_name, &s, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(s.st_mode);
        }
        if (fn(ctx, de->d_name, is_dir) != 0) {
            closedir(d);
            return LCOW_OK;
        }
    }
    if (errno != 0)
        rc = os_fail(err, errno, "list", dir);
    closedir(d);
    return rc;
}

/* ---- links ---- */

lcow_code lcow_os_symlink(const char *target, const char *link_path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, link_path, err);
    if (rc)
        return rc;
    if (symlink(target, link_path) != 0) {
        int e = errno;
        /* File systems without symlinks (vfat, some FUSE) say EPERM. */
        lcow_code code = e == EPERM || e == ENOSYS ? LCOW_NOT_IMPLEMENTED : code_of_errno(e);
        return lcow_error_set(err, code, "symlink %s -> %s: %s", link_path, target, strerror(e));
    }
    return LCOW_OK;
}

lcow_code lcow_os_hardlink(const char *existing, const char *link_path, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, link_path, err);
    if (rc)
        return rc;
    if (link(existing, link_path) != 0) {
        int e = errno;
        return lcow_error_set(err, code_of_errno(e), "hard link %s -> %s: %s", link_path, existing,
                              strerror(e));
    }
    return LCOW_OK;
}

lcow_code lcow_os_file_id(const char *path, lcow_file_id *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    struct stat s;
    if (lstat(path, &s) != 0) {
        int e = errno;
        return lcow_error_set(err, code_of_errno(e), "stat %s: %s", path, strerror(e));
    }
    out->volume = (uint64_t)s.st_dev;
    out->index = (uint64_t)s.st_ino;
    out->links = s.st_nlink > UINT32_MAX ? UINT32_MAX : (uint32_t)s.st_nlink;
    return LCOW_OK;
}

/* ---- space ---- */

typedef struct inode_set {
    size_t count, cap;
    struct inode_id {
        dev_t dev;
        ino_t ino;
    } * items;
} inode_set;

/* Adds (dev, ino); returns 1 if new, 0 if seen, -1 on allocation failure. */
static int inode_set_add(inode_set *set, dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i].dev == dev && set->items[i].ino == ino)
            return 0;
    if (!lcow_grow(&set->items, &set->cap, set->count + 1, sizeof *set->items))
        return -1;
    set->items[set->count].dev = dev;
    set->items[set->count].ino = ino;
    set->count++;
    return 1;
}

static lcow_code usage_walk(const char *path, inode_set *links, int64_t *bytes, int64_t *inodes,
                            lcow_error *err)
{
    struct stat s;
    if (lstat(path, &s) != 0)
        return os_fail(err, errno, "usage", path);
    /* Hard-linked files are counted once (shared scratch disks linked in). */
    if (!S_ISDIR(s.st_mode) && s.st_nlink > 1) {
        int added = inode_set_add(links, s.st_dev, s.st_ino);
        if (added < 0)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "usage %s: out of memory", path);
        if (added == 0)
            return LCOW_OK;
    }
    *bytes += (int64_t)s.st_blocks * 512;
    *inodes += 1;
    if (!S_ISDIR(s.st_mode))
        return LCOW_OK;
    DIR *d = opendir(path);
    if (!d)
        return os_fail(err, errno, "usage", path);
    lcow_code rc = LCOW_OK;
    struct dirent *de;
    while (rc == LCOW_OK && (errno = 0, de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *child = lcow_path_join(path, de->d_name);
        if (!child) {
            rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "usage %s: out of memory", path);
            break;
        }
        rc = usage_walk(child, links, bytes, inodes, err);
        free(child);
    }
    if (rc == LCOW_OK && !de && errno != 0)
        rc = os_fail(err, errno, "usage", path);
    closedir(d);
    return rc;
}

lcow_code lcow_os_usage(const char *path, int64_t *bytes, int64_t *inodes, lcow_error *err)
{
    *bytes = 0;
    *inodes = 0;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LIST, path, err);
    if (rc)
        return rc;
    inode_set links = {0};
    int64_t b = 0, n = 0;
    rc = usage_walk(path, &links, &b, &n, err);
    free(links.items);
    if (rc == LCOW_OK) {
        *bytes = b;
        *inodes = n;
    }
    return rc;
}

/* Copies [off, end) of in to out with copy_file_range (in-kernel, reflinks
 * where the file system can), falling back to read/write. */
static int copy_range(int in, int out, off_t off, off_t end, char *buf, size_t bufsize,
                      bool *use_cfr)
{
    while (off < end) {
        size_t want = (size_t)(end - off);
        if (*use_cfr) {
            loff_t ioff = off, ooff = off;
            ssize_t n = copy_file_range(in, &ioff, out, &ooff, want, 0);
            if (n > 0) {
                off += n;
                continue;
            }
            if (n == 0)
                return EIO; /* source shrank under us */
            if (errno == EINTR)
                continue;
            if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
                return errno;
            *use_cfr = false;
        }
        if (want > bufsize)
            want = bufsize;
        ssize_t n = pread(in, buf, want, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (n == 0)
            return EIO;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(out, buf + done, (size_t)(n - done), off + done);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return errno;
            }
            done += w;
        }
        off += n;
    }
    return 0;
}

/* Walks the data segments of in (SEEK_DATA/SEEK_HOLE) and copies each one;
 * without hole support the whole file is one data segment. */
static int copy_data_segments(int in, int out, off_t size)
{
    enum { BUF = 1 << 20 };
    char *buf = lcow_malloc(BUF);
    if (!buf)
        return ENOMEM;
    bool use_cfr = true;
    int e = 0;
    off_t pos = 0;
    while (pos < size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole remains */
            if (errno == EINVAL || errno == EOPNOTSUPP) {
                e = copy_range(in, out, pos, size, buf, BUF, &use_cfr);
                break;
            }
            e = errno;
            break;
        }
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0) {
            e = errno;
            break;
        }
        if (hole > size)
            hole = size;
        e = copy_range(in, out, data, hole, buf, BUF, &use_cfr);
        if (e)
            break;
        pos = hole;
    }
    free(buf);
    return e;
}

/* lcow_file_copy_sparse after the seam. */
lcow_code lcow_os_copy_open_files(lcow_file *src, lcow_file *dst, lcow_error *err)
{
    struct stat s;
    if (fstat(src->fd, &s) != 0)
        return os_fail(err, errno, "copy: stat source", src->path);
    if (!S_ISREG(s.st_mode))
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "copy: source %s is not a regular file", src->path);
    const char *step = "truncate";
    int e = ftruncate(dst->fd, s.st_size) != 0 ? errno : 0;
    if (!e) {
        step = "copy data to";
        e = copy_data_segments(src->fd, dst->fd, s.st_size);
    }
    if (!e) {
        step = "fsync";
        e = fsync(dst->fd) != 0 ? errno : 0;
    }
    if (e)
        return lcow_error_set(err, code_of_errno(e), "copy %s -> %s: %s %s: %s", src->path,
                              dst->path, step, dst->path, strerror(e));
    return LCOW_OK;
}

lcow_code lcow_file_copy_sparse(lcow_file *src, lcow_file *dst, lcow_error *err)
{
    /* The seam (and the tests' hook) before anything is read: the source
     * is already open, so whatever its name leads to from here on is not
     * what gets copied. */
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_COPY, dst->path, err);
    return rc ? rc : lcow_os_copy_open_files(src, dst, err);
}

void lcow_os_remove_partial(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        LCOW_LOGW("%s: a partial file could not be removed: %s", path, strerror(errno));
}

lcow_time lcow_os_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (lcow_time){.sec = ts.tv_sec, .nsec = (uint32_t)ts.tv_nsec};
}

uint64_t lcow_os_monotonic_ms(void)
{
    return lcow_os_monotonic_us() / 1000;
}

uint64_t lcow_os_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

lcow_code lcow_os_random(void *buf, size_t len, lcow_error *err)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom((char *)buf + done, len - done, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return lcow_error_set(err, LCOW_INTERNAL, "getrandom: %s", strerror(errno));
        }
        done += (size_t)n;
    }
    return LCOW_OK;
}

void lcow_os_tune_allocator(void)
{
#ifdef __GLIBC__
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
}

void lcow_os_release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

char *lcow_os_temp_dir(void)
{
    const char *t = getenv("TMPDIR");
    return strdup(t && *t ? t : "/tmp");
}

void lcow_os_stdin_binary(void) {}

/* ---- directory handles ---- */

struct lcow_dir {
    int fd;
    char *path;
};

lcow_code lcow_dir_open(const char *path, lcow_dir **out, lcow_error *err)
{
    *out = NULL;
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_OPEN, path, err);
    if (rc)
        return rc;
    lcow_dir *d = lcow_calloc(1, sizeof *d);
    if (!d || !(d->path = lcow_strdup(path))) {
        free(d);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "open %s: out of memory", path);
    }
    do
        d->fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    while (d->fd < 0 && errno == EINTR);
    if (d->fd < 0) {
        int e = errno;
        free(d->path);
        free(d);
        if (e == ELOOP || e == ENOTDIR)
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "open directory %s: not a directory (%s)", path, strerror(e));
        return os_fail(err, e, "open directory", path);
    }
    *out = d;
    return LCOW_OK;
}

lcow_code lcow_dir_real_path(lcow_dir *d, char **out, lcow_error *err)
{
    *out = NULL;
    char link[64], buf[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", d->fd);
    ssize_t n = readlink(link, buf, sizeof buf - 1);
    if (n < 0) {
        int e = errno;
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                              "where directory %s is cannot be read (%s: %s)", d->path, link,
                              strerror(e));
    }
    buf[n] = '\0';
    /* " (deleted)": the directory was removed while open */
    struct stat st;
    if (fstat(d->fd, &st) != 0 || st.st_nlink == 0)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "directory %s was removed", d->path);
    *out = lcow_strdup(buf);
    return *out ? LCOW_OK
                : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "%s: out of memory", d->path);
}

static char *dir_child(const lcow_dir *d, const char *name)
{
    return lcow_path_join(d->path, name);
}

static bool one_component(const char *name)
{
    return name[0] && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

lcow_code lcow_dir_file_open(lcow_dir *d, const char *name, int flags, lcow_file **out,
                             lcow_error *err)
{
    *out = NULL;
    if (!one_component(name))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: not a single file name", name);
    char *path = dir_child(d, name);
    if (!path)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "open %s: out of memory", name);
    /* A link at the name is never followed. */
    lcow_code rc = file_open_at(d->fd, name, path, flags | LCOW_OPEN_REGULAR, out, err);
    free(path);
    return rc;
}

lcow_code lcow_dir_link(lcow_dir *d, const char *from, const char *to, lcow_error *err)
{
    if (!one_component(from) || !one_component(to))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "link %s -> %s: not single file names",
                              from, to);
    char *path = dir_child(d, to);
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, path ? path : to, err);
    if (rc == LCOW_OK && linkat(d->fd, from, d->fd, to, 0) != 0)
        rc = os_fail(err, errno, "link", path ? path : to);
    free(path);
    return rc;
}

lcow_code lcow_dir_symlink(lcow_dir *d, const char *target, const char *name, lcow_error *err)
{
    if (!one_component(name))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "symlink %s: not a single file name",
                              name);
    char *path = dir_child(d, name);
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, path ? path : name, err);
    if (rc == LCOW_OK && symlinkat(target, d->fd, name) != 0) {
        int e = errno;
        /* File systems without symlinks (vfat, some FUSE) say EPERM. */
        lcow_code code = e == EPERM || e == ENOSYS ? LCOW_NOT_IMPLEMENTED : code_of_errno(e);
        rc = lcow_error_set(err, code, "symlink %s -> %s: %s", path ? path : name, target,
                            strerror(e));
    }
    free(path);
    return rc;
}

lcow_code lcow_dir_hardlink_from(lcow_dir *d, const char *existing, const char *name,
                                 lcow_error *err)
{
    if (!one_component(name))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "hard link %s: not a single file name",
                              name);
    char *path = dir_child(d, name);
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_LINK, path ? path : name, err);
    if (rc == LCOW_OK && linkat(AT_FDCWD, existing, d->fd, name, 0) != 0) {
        int e = errno;
        rc = lcow_error_set(err, code_of_errno(e), "hard link %s -> %s: %s", path ? path : name,
                            existing, strerror(e));
    }
    free(path);
    return rc;
}

lcow_code lcow_dir_rename(lcow_dir *d, const char *from, const char *to, lcow_error *err)
{
    if (!one_component(from) || !one_component(to))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "rename %s -> %s: not single file names",
                              from, to);
    char *path = dir_child(d, to);
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_RENAME, path ? path : to, err);
    if (rc == LCOW_OK && renameat(d->fd, from, d->fd, to) != 0)
        rc = os_fail(err, errno, "rename", path ? path : to);
    free(path);
    return rc;
}

lcow_code lcow_dir_remove(lcow_dir *d, const char *name, lcow_error *err)
{
    if (!one_component(name))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "remove %s: not a single file name",
                              name);
    char *path = dir_child(d, name);
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_REMOVE, path ? path : name, err);
    if (rc == LCOW_OK && unlinkat(d->fd, name, 0) != 0)
        rc = os_fail(err, errno, "remove", path ? path : name);
    free(path);
    return rc;
}

lcow_code lcow_dir_sync(lcow_dir *d, lcow_error *err)
{
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_SYNC, d->path, err);
    if (rc == LCOW_OK && fsync(d->fd) != 0)
        rc = os_fail(err, errno, "fsync", d->path);
    return rc;
}

const char *lcow_dir_path(const lcow_dir *d)
{
    return d->path;
}

void lcow_dir_close(lcow_dir *d)
{
    if (!d)
        return;
    close(d->fd);
    free(d->path);
    free(d);
}

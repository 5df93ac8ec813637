/* Helpers of the torture campaigns: see torture_util.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "torture_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/layerblob.h"

#include "core/metastore.h"
#include "core/scratch.h"
#include "core/snapshotter.h"
#include "rpc/client.h"

extern char **environ;

uint64_t tnow_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void tsleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint64_t trand(uint64_t *state)
{
    return lb_rand(state);
}

uint32_t trand_below(uint64_t *state, uint32_t n)
{
    return n ? (uint32_t)(trand(state) % n) : 0;
}

void tsummary(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    printf("%s\n", line);
    fflush(stdout);
    const char *file = getenv("LCOW_TORTURE_SUMMARY");
    if (file && *file) {
        FILE *f = fopen(file, "a");
        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
    }
}

int tfresh_dir(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* ------------------------------------------------------------ service */

static int try_version(const char *address)
{
    lcow_client *c = NULL;
    lcow_error err;
    if (lcow_client_connect(address, 500, &c, &err) != LCOW_OK)
        return -1;
    lcow_client_set_call_timeout(c, 2000);
    lcow_result r;
    memset(&r, 0, sizeof r);
    lcow_code rc = lcow_client_version(c, &r, &err);
    lcow_result_free(&r);
    lcow_client_close(c);
    return rc == LCOW_OK ? 0 : -1;
}

int tsvc_start(tsvc *s, const char *fault, const char *const *extra)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = s->exe;
    argv[n++] = "--root";
    argv[n++] = s->root;
    argv[n++] = "--address";
    argv[n++] = s->address;
    argv[n++] = "--scratch-backend";
    argv[n++] = "native";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->status = 0;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (fault)
            setenv("LCOW_FAULT", fault, 1);
        else
            unsetenv("LCOW_FAULT");
        execv(s->exe, (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    uint64_t deadline = tnow_ns() + 15000000000ull;
    while (tnow_ns() < deadline) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            s->status = st;
            s->pid = 0;
            return -1;
        }
        if (try_version(s->address) == 0)
            return 0;
        tsleep_ms(5);
    }
    tsvc_stop(s, SIGKILL, 1000);
    return -1;
}

int tsvc_stop(tsvc *s, int sig, unsigned timeout_ms)
{
    if (s->pid <= 0)
        return s->status;
    kill(s->pid, sig);
    uint64_t deadline = tnow_ns() + (uint64_t)timeout_ms * 1000000u;
    int st = 0;
    for (;;) {
        pid_t w = waitpid(s->pid, &st, WNOHANG);
        if (w == s->pid)
            break;
        if (tnow_ns() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            st = -1; /* did not stop in time */
            break;
        }
        tsleep_ms(2);
    }
    s->pid = 0;
    s->status = st;
    return st;
}

/* ------------------------------------------------------------ store check */

typedef struct idset {
    uint64_t *ids;
    size_t n, cap;
} idset;

static void idset_add(idset *s, uint64_t id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->ids = realloc(s->ids, s->cap * sizeof *s->ids);
    }
    s->ids[s->n++] = id;
}

static bool idset_has(const idset *s, uint64_t id)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->ids[i] == id)
            return true;
    return false;
}

typedef struct scan {
    const char *root;
    idset records, disks;
    char **paths;
    size_t path_count, path_cap;
    char *msg;
    size_t msg_len;
    int bad;
} scan;

static void add_path(scan *sc, const char *path)
{
    for (size_t i = 0; i < sc->path_count; i++)
        if (strcmp(sc->paths[i], path) == 0)
            return;
    if (sc->path_count == sc->path_cap) {
        sc->path_cap = sc->path_cap ? sc->path_cap * 2 : 32;
        sc->paths = realloc(sc->paths, sc->path_cap * sizeof *sc->paths);
    }
    sc->paths[sc->path_count++] = strdup(path);
}

static int fail(scan *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(scan *sc, const char *fmt, ...)
{
    if (!sc->bad) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sc->msg, sc->msg_len, fmt, ap);
        va_end(ap);
    }
    sc->bad = 1;
    return 1;
}

static int scan_record(void *ctx, const lcow_meta_record *rec)
{
    scan *sc = ctx;
    idset_add(&sc->records, rec->id);
    char path[2048];
    struct stat st;
    if (rec->scratch == LCOW_META_SCRATCH_OWN) {
        snprintf(path, sizeof path, "%s/snapshots/%" PRIu64 "/" LCOW_SANDBOX_NAME, sc->root,
                 rec->id);
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
            return fail(sc, "%s (id %" PRIu64 ") owns a scratch disk but %s is missing", rec->key,
                        rec->id, path);
        add_path(sc, path);
    } else if (rec->scratch == LCOW_META_SCRATCH_SHARED) {
        snprintf(path, sizeof path, "%s/snapshots/%" PRIu64 "/" LCOW_SANDBOX_NAME, sc->root,
                 rec->id);
        char disk[2048];
        snprintf(disk, sizeof disk, "%s/snapshots/%" PRIu64 "/" LCOW_SANDBOX_NAME, sc->root,
                 rec->disk_id);
        struct stat a, b;
        if (stat(path, &a) != 0 || stat(disk, &b) != 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev)
            return fail(sc, "%s shares disk %" PRIu64 " but %s does not lead to %s", rec->key,
                        rec->disk_id, path, disk);
        add_path(sc, disk);
    }
    return 0;
}

static int scan_disk(void *ctx, const lcow_meta_disk *disk)
{
    scan *sc = ctx;
    idset_add(&sc->disks, disk->disk_id);
    return 0;
}

int tstore_check(const char *root, char ***disks, size_t *disk_count, char *msg, size_t msg_len)
{
    *disks = NULL;
    *disk_count = 0;
    scan sc = {.root = root, .msg = msg, .msg_len = msg_len};
    msg[0] = '\0';
    char meta[2048];
    snprintf(meta, sizeof meta, "%s/meta", root);
    lcow_metastore *ms = NULL;
    lcow_error err;
    lcow_metastore_options mo = {0};
    if (lcow_metastore_open(meta, &mo, &ms, &err) != LCOW_OK) {
        snprintf(msg, msg_len, "metastore open: %s", err.message);
        return -1;
    }
    if (lcow_metastore_walk(ms, NULL, NULL, scan_record, &sc, &err) != LCOW_OK && !sc.bad)
        fail(&sc, "metastore walk: %s", err.message);
    if (!sc.bad && lcow_metastore_walk_disks(ms, NULL, scan_disk, &sc, &err) != LCOW_OK)
        fail(&sc, "disk walk: %s", err.message);
    lcow_metastore_close(ms);

    /* Directories without a record, as the stopped service left them. */
    char snaps[2048];
    snprintf(snaps, sizeof snaps, "%s/snapshots", root);
    DIR *d = opendir(snaps);
    if (!d && !sc.bad)
        fail(&sc, "opendir %s: %s", snaps, strerror(errno));
    for (struct dirent *e; d && !sc.bad && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *end = NULL;
        errno = 0;
        uint64_t id = strtoull(e->d_name, &end, 10);
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end || errno)
            fail(&sc, "snapshots/%s is not a snapshot directory", e->d_name);
        else if (!idset_has(&sc.records, id) && !idset_has(&sc.disks, id))
            fail(&sc, "directory snapshots/%s has no record", e->d_name);
    }
    if (d)
        closedir(d);
    /* Scratch templates in the root. */
    d = opendir(root);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "scratch", 7) == 0 && len > 5 &&
            strcmp(e->d_name + len - 5, ".vhdx") == 0) {
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", root, e->d_name);
            add_path(&sc, path);
        }
    }
    if (d)
        closedir(d);

    if (!sc.bad) {
        lcow_snapshotter_config cfg = {.root = root, .scratch_backend = LCOW_SCRATCH_NATIVE};
        lcow_snapshotter *s = NULL;
        if (lcow_snapshotter_open(&cfg, &s, &err) != LCOW_OK) {
            fail(&sc, "snapshotter open: %s", err.message);
        } else {
            if (lcow_snapshotter_check(s, &err) != LCOW_OK)
                fail(&sc, "lcow_snapshotter_check: %s", err.message);
            lcow_snapshotter_free(s);
        }
    }
    free(sc.records.ids);
    free(sc.disks.ids);
    *disks = sc.paths;
    *disk_count = sc.path_count;
    return sc.bad ? -1 : 0;
}

void tstrv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

int tqemu_check(const char *path, char *msg, size_t msg_len)
{
    const char *tool = getenv("LCOW_QEMU_IMG");
    if (!tool || !*tool)
        tool = "qemu-img";
    int fds[2];
    if (pipe(fds) != 0)
        return 2;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        execlp(tool, tool, "check", "-q", "-f", "vhdx", path, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    msg[0] = '\0';
    char buf[512];
    ssize_t got;
    while ((got = read(fds[0], buf, sizeof buf)) > 0) {
        size_t take = (size_t)got;
        if (used + take >= msg_len)
            take = msg_len - used - 1;
        memcpy(msg + used, buf, take);
        used += take;
        msg[used] = '\0';
    }
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) == 127)
        return 2;
    return WEXITSTATUS(st) == 0 ? 0 : 1;
}

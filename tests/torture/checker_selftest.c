/* The campaigns' checkers must be able to fail: this plants each kind of
 * damage they look for in a real store and expects tstore_check /
 * tqemu_check to report it.
 *
 * checker_selftest DIR   (exit 0 when every planted fault was detected) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/scratch.h"
#include "core/snapshotter.h"
#include "torture_util.h"

static unsigned g_checks, g_failed;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%s %s\n", ok ? "ok  " : "FAIL", msg);
    g_checks++;
    g_failed += !ok;
}

/* A store with a committed layer and an active container (own scratch). */
static int make_store(const char *root)
{
    tfresh_dir(root);
    lcow_snapshotter_config cfg = {.root = root, .scratch_backend = LCOW_SCRATCH_NATIVE};
    lcow_snapshotter *s = NULL;
    lcow_error err;
    lcow_mounts m = {0};
    lcow_labels l = {0};
    lcow_labels_set(&l, LCOW_LABEL_SIZE_GB, "1");
    lcow_code rc = lcow_snapshotter_open(&cfg, &s, &err);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_prepare(s, "ns/1/extract-a", NULL, NULL, &m, &err);
    lcow_mounts_free(&m);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_commit(s, "ns/1/a", "ns/1/extract-a", NULL, NULL, &err);
    if (rc == LCOW_OK)
        rc = lcow_snapshotter_prepare(s, "ns/1/c", "ns/1/a", &l, &m, &err);
    lcow_mounts_free(&m);
    lcow_labels_free(&l);
    lcow_snapshotter_free(s);
    if (rc != LCOW_OK)
        fprintf(stderr, "setup: %s\n", err.message);
    return rc == LCOW_OK ? 0 : -1;
}

static int run_check(const char *root, char *msg, size_t len, char ***disks, size_t *n)
{
    return tstore_check(root, disks, n, msg, len);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    lcow_log_set_level(LCOW_LOG_ERROR);
    char root[1024], path[1200], msg[2048];
    snprintf(root, sizeof root, "%s/root", argv[1]);
    char **disks = NULL;
    size_t n = 0;

    if (make_store(root) != 0)
        return 1;
    int rc = run_check(root, msg, sizeof msg, &disks, &n);
    check(rc == 0 && n >= 2, "an intact store passes (%zu disks found: own disk + template) %s", n,
          msg);
    for (size_t i = 0; i < n; i++) {
        char qmsg[1024];
        int q = tqemu_check(disks[i], qmsg, sizeof qmsg);
        check(q == 0, "qemu-img check passes on %s %s", disks[i], q ? qmsg : "");
    }
    /* A corrupted disk: overwrite the VHDX header region. */
    if (n > 0) {
        snprintf(path, sizeof path, "%s/broken.vhdx", argv[1]);
        char cmd[2600];
        snprintf(cmd, sizeof cmd,
                 "cp --sparse=always '%s' '%s' && "
                 "dd if=/dev/urandom of='%s' bs=4096 seek=16 count=32 conv=notrunc 2>/dev/null",
                 disks[0], path, path);
        if (system(cmd) == 0) {
            char qmsg[1024];
            int q = tqemu_check(path, qmsg, sizeof qmsg);
            check(q == 1, "qemu-img check reports a VHDX with a damaged header (%d)", q);
        } else {
            check(false, "could not prepare a damaged VHDX");
        }
    }
    tstrv_free(disks, n);

    /* A directory without a record. */
    snprintf(path, sizeof path, "%s/snapshots/999", root);
    mkdir(path, 0755);
    rc = run_check(root, msg, sizeof msg, &disks, &n);
    tstrv_free(disks, n);
    check(rc != 0 && strstr(msg, "no record"), "an orphan directory is reported: %s", msg);

    /* A record whose disk is gone. */
    if (make_store(root) != 0)
        return 1;
    snprintf(path, sizeof path, "%s/snapshots", root);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -f '%s'/*/" LCOW_SANDBOX_NAME, path);
    if (system(cmd) != 0)
        check(false, "rm of the disks");
    rc = run_check(root, msg, sizeof msg, &disks, &n);
    tstrv_free(disks, n);
    check(rc != 0 && strstr(msg, "missing"), "a record without its disk is reported: %s", msg);

    /* A record whose directory is gone (the core invariant check). */
    if (make_store(root) != 0)
        return 1;
    /* ns/1/a is committed without a disk (id 1): only the core check sees it. */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/snapshots/1", root);
    if (system(cmd) != 0)
        check(false, "rm of the directory");
    rc = run_check(root, msg, sizeof msg, &disks, &n);
    tstrv_free(disks, n);
    check(rc != 0 && strstr(msg, "lcow_snapshotter_check"),
          "a committed record without its directory is reported by the core check: %s", msg);

    tsummary("torture checker self-test: %s: %u planted faults and intact cases, %u missed",
             g_failed ? "FAILED" : "ok", g_checks, g_failed);
    return g_failed ? 1 : 0;
}

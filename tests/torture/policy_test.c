/* Input policy and endpoint security, checked against the running lcowsnap.
 *
 * policy_test --exe LCOWSNAP --dir DIR --case CASE
 *   limits   keys, names, parents, label keys/values: length limits and
 *            valid UTF-8 (InvalidArgument), the limits themselves accepted
 *   allow    --scratch-dir-allow A --scratch-dir-allow B confines the
 *            rootfs.location label and CreateScratch paths, after resolving
 *            "..", symbolic links; refusals are InvalidArgument naming the rule
 *   openlog  without --scratch-dir-allow the service says at startup that
 *            the list is open
 *   socket   the Unix socket is 0660 and its directory is not world-writable
 *            (default address in a fresh root; a root created 0777 beforehand;
 *            --address inside a world-writable directory)
 * Prints one line per check; exit 0 when all passed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/scratch.h"
#include "rpc/client.h"
#include "torture_util.h"

static unsigned g_checks, g_failed;
static char g_dir[900];
static const char *g_exe;

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
    if (!ok)
        g_failed++;
}

static int start(tsvc *svc, const char *tag, const char *address, const char *const *extra)
{
    memset(svc, 0, sizeof *svc);
    snprintf(svc->exe, sizeof svc->exe, "%s", g_exe);
    snprintf(svc->root, sizeof svc->root, "%s/%s/root", g_dir, tag);
    if (address)
        snprintf(svc->address, sizeof svc->address, "%s", address);
    else
        snprintf(svc->address, sizeof svc->address, "%s/lcowsnap.sock", svc->root);
    snprintf(svc->log, sizeof svc->log, "%s/%s/service.log", g_dir, tag);
    char base[1024];
    snprintf(base, sizeof base, "%s/%s", g_dir, tag);
    mkdir(base, 0755);
    return tsvc_start(svc, NULL, extra);
}

static lcow_client *connect_to(tsvc *svc)
{
    lcow_client *c = NULL;
    lcow_error err;
    if (lcow_client_connect(svc->address, 5000, &c, &err) != LCOW_OK) {
        check(false, "connect %s: %s", svc->address, err.message);
        return NULL;
    }
    return c;
}

static char *repeat(char ch, size_t n, const char *prefix)
{
    size_t p = strlen(prefix);
    char *s = malloc(p + n + 1);
    memcpy(s, prefix, p);
    memset(s + p, ch, n);
    s[p + n] = '\0';
    return s;
}

static void expect_invalid(lcow_code rc, const lcow_error *err, const char *what)
{
    check(rc == LCOW_INVALID_ARGUMENT, "%s -> InvalidArgument (got %s: %s)", what,
          lcow_code_name(rc), rc == LCOW_OK ? "" : err->message);
}

static lcow_code prep(lcow_client *c, const char *key, const char *parent, const lcow_labels *l,
                      lcow_error *err)
{
    lcow_mounts m = {0};
    lcow_code rc = lcow_client_prepare(c, key, parent, l, &m, err);
    lcow_mounts_free(&m);
    return rc;
}

/* ------------------------------------------------------------ limits */

static void case_limits(void)
{
    tsvc svc;
    if (start(&svc, "limits", NULL, NULL) != 0) {
        check(false, "service start (status %d)", svc.status);
        return;
    }
    lcow_client *c = connect_to(&svc);
    if (!c) {
        tsvc_stop(&svc, SIGKILL, 1000);
        return;
    }
    lcow_error err;
    lcow_code rc;
    /* Keys: 4096 bytes accepted, 4097 refused. */
    char *max_key = repeat('k', LCOW_MAX_KEY_LEN - strlen("ns/1/extract-"), "ns/1/extract-");
    char *long_key = repeat('k', LCOW_MAX_KEY_LEN + 1 - strlen("ns/1/extract-"), "ns/1/extract-");
    rc = prep(c, max_key, NULL, NULL, &err);
    check(rc == LCOW_OK, "Prepare with a %d-byte key is accepted (got %s %s)", LCOW_MAX_KEY_LEN,
          lcow_code_name(rc), rc ? err.message : "");
    rc = prep(c, long_key, NULL, NULL, &err);
    expect_invalid(rc, &err, "Prepare with a 4097-byte key");
    rc = lcow_client_commit(c, long_key, max_key, NULL, NULL, &err);
    expect_invalid(rc, &err, "Commit with a 4097-byte name");
    lcow_info info = {0};
    rc = lcow_client_stat(c, long_key, &info, &err);
    lcow_info_free(&info);
    check(rc == LCOW_INVALID_ARGUMENT || rc == LCOW_NOT_FOUND,
          "Stat of a 4097-byte key is refused or not found (got %s)", lcow_code_name(rc));
    /* Invalid UTF-8 everywhere a string goes. */
    const char *bad[] = {"ns/1/extract-\xff", "ns/1/extract-\xc3\x28", "ns/1/extract-\xed\xa0\x80",
                         "ns/1/extract-\xc0\xaf"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = prep(c, bad[i], NULL, NULL, &err);
        expect_invalid(rc, &err, "Prepare with a key that is not valid UTF-8");
    }
    rc = prep(c, "ns/1/extract-ok", "ns/1/\xff", NULL, &err);
    expect_invalid(rc, &err, "Prepare with a parent that is not valid UTF-8");
    rc = lcow_client_commit(c, "ns/1/\xfe-name", max_key, NULL, NULL, &err);
    expect_invalid(rc, &err, "Commit with a name that is not valid UTF-8");
    lcow_labels l = {0};
    lcow_labels_set(&l, "bad\xff", "v");
    rc = prep(c, "ns/1/extract-l1", NULL, &l, &err);
    expect_invalid(rc, &err, "Prepare with a label key that is not valid UTF-8");
    lcow_labels_free(&l);
    lcow_labels_set(&l, "k", "bad\xc3");
    rc = prep(c, "ns/1/extract-l2", NULL, &l, &err);
    expect_invalid(rc, &err, "Prepare with a label value that is not valid UTF-8");
    lcow_labels_free(&l);
    /* Label length: key + value <= 4096. */
    char *value_ok = repeat('v', LCOW_MAX_LABEL_LEN - 1, "");
    char *value_long = repeat('v', LCOW_MAX_LABEL_LEN, "");
    lcow_labels_set(&l, "k", value_ok);
    rc = prep(c, "ns/1/extract-l3", NULL, &l, &err);
    check(rc == LCOW_OK, "a label with len(key)+len(value) = 4096 is accepted (got %s %s)",
          lcow_code_name(rc), rc ? err.message : "");
    lcow_labels_free(&l);
    lcow_labels_set(&l, "k", value_long);
    rc = prep(c, "ns/1/extract-l4", NULL, &l, &err);
    expect_invalid(rc, &err, "Prepare with a label of 4097 bytes (key + value)");
    rc = lcow_client_commit(c, "ns/1/n-long-label", max_key, &l, NULL, &err);
    expect_invalid(rc, &err, "Commit with a label of 4097 bytes");
    lcow_labels_free(&l);
    /* Too many labels. */
    for (int i = 0; i <= LCOW_MAX_LABELS; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        lcow_labels_set(&l, k, "v");
    }
    rc = prep(c, "ns/1/extract-l5", NULL, &l, &err);
    expect_invalid(rc, &err, "Prepare with 257 labels");
    lcow_labels_free(&l);
    /* Update: the same rules. */
    lcow_info upd = {0}, out = {0};
    upd.name = max_key;
    lcow_labels_set(&upd.labels, "k", value_long);
    rc = lcow_client_update(c, &upd, NULL, 0, &out, &err);
    expect_invalid(rc, &err, "Update with a label of 4097 bytes");
    lcow_labels_free(&upd.labels);
    lcow_info_free(&out);
    lcow_labels_set(&upd.labels, "\xff", "v");
    rc = lcow_client_update(c, &upd, NULL, 0, &out, &err);
    expect_invalid(rc, &err, "Update with a label key that is not valid UTF-8");
    lcow_labels_free(&upd.labels);
    lcow_info_free(&out);
    /* Nothing of the refused calls exists. */
    lcow_infos infos = {0};
    char *next = NULL;
    rc = lcow_client_walk(c, NULL, 0, 0, NULL, &infos, &next, &err);
    check(rc == LCOW_OK && infos.count == 2,
          "after the refusals only the 2 accepted snapshots exist (found %zu)", infos.count);
    lcow_infos_free(&infos);
    free(next);
    free(max_key);
    free(long_key);
    free(value_ok);
    free(value_long);
    lcow_client_close(c);
    tsvc_stop(&svc, SIGTERM, 20000);
}

/* ------------------------------------------------------------ allow list */

static void try_location(lcow_client *c, const char *key, const char *loc, bool allowed,
                         const char *what)
{
    lcow_labels l = {0};
    lcow_labels_set(&l, LCOW_LABEL_SIZE_GB, "1");
    lcow_labels_set(&l, LCOW_LABEL_LOCATION, loc);
    lcow_error err;
    lcow_code rc = prep(c, key, NULL, &l, &err);
    lcow_labels_free(&l);
    if (allowed)
        check(rc == LCOW_OK, "location %s (%s) is accepted (got %s %s)", loc, what,
              lcow_code_name(rc), rc ? err.message : "");
    else
        check(rc == LCOW_INVALID_ARGUMENT && strstr(err.message, "scratch-dir-allow"),
              "location %s (%s) -> InvalidArgument naming --scratch-dir-allow (got %s: %s)", loc,
              what, lcow_code_name(rc), rc ? err.message : "accepted");
}

static void try_create(lcow_client *c, const char *path, bool allowed, const char *what)
{
    lcow_error err;
    lcow_code rc = lcow_client_create_scratch(c, path, 1, 0, &err);
    if (allowed)
        check(rc == LCOW_OK, "CreateScratch %s (%s) is accepted (got %s %s)", path, what,
              lcow_code_name(rc), rc ? err.message : "");
    else
        check(rc == LCOW_INVALID_ARGUMENT && strstr(err.message, "scratch-dir-allow"),
              "CreateScratch %s (%s) -> InvalidArgument naming --scratch-dir-allow (got %s: %s)",
              path, what, lcow_code_name(rc), rc ? err.message : "accepted");
    struct stat st;
    if (!allowed)
        check(stat(path, &st) != 0, "refused CreateScratch created nothing at %s", path);
}

static void case_allow(void)
{
    char a[1024], b[1024], out[1024], p[1200], q[1200];
    snprintf(a, sizeof a, "%s/allow/A", g_dir);
    snprintf(b, sizeof b, "%s/allow/B", g_dir);
    snprintf(out, sizeof out, "%s/allow/outside", g_dir);
    tfresh_dir(a);
    tfresh_dir(b);
    tfresh_dir(out);
    snprintf(p, sizeof p, "%s/sub", a);
    tfresh_dir(p);
    snprintf(p, sizeof p, "%s/link-out", a);
    if (symlink(out, p) != 0)
        check(false, "symlink %s: %s", p, strerror(errno));
    tsvc svc;
    const char *extra[] = {"--scratch-dir-allow", a, "--scratch-dir-allow", b, NULL};
    if (start(&svc, "allow", NULL, extra) != 0) {
        check(false, "service start with two --scratch-dir-allow (status %d)", svc.status);
        return;
    }
    lcow_client *c = connect_to(&svc);
    if (!c) {
        tsvc_stop(&svc, SIGKILL, 1000);
        return;
    }
    try_location(c, "ns/1/c1", a, true, "first allowed directory");
    snprintf(p, sizeof p, "%s/sub", a);
    try_location(c, "ns/1/c2", p, true, "below an allowed directory");
    try_location(c, "ns/1/c3", b, true, "second allowed directory (repeatable flag)");
    try_location(c, "ns/1/c4", out, false, "outside");
    snprintf(p, sizeof p, "%s/../outside", a);
    try_location(c, "ns/1/c5", p, false, "escapes with ..");
    snprintf(p, sizeof p, "%s/link-out", a);
    try_location(c, "ns/1/c6", p, false, "symbolic link leading outside");
    snprintf(p, sizeof p, "%s/allow", g_dir);
    try_location(c, "ns/1/c7", p, false, "parent of an allowed directory");
    {
        lcow_labels l = {0};
        lcow_labels_set(&l, LCOW_LABEL_LOCATION, "relative/dir");
        lcow_error err;
        lcow_code rc = prep(c, "ns/1/c8", NULL, &l, &err);
        lcow_labels_free(&l);
        expect_invalid(rc, &err, "relative location label");
    }
    snprintf(q, sizeof q, "%s/x.vhdx", a);
    try_create(c, q, true, "inside");
    snprintf(q, sizeof q, "%s/x.vhdx", out);
    try_create(c, q, false, "outside");
    snprintf(q, sizeof q, "%s/../outside/y.vhdx", a);
    try_create(c, q, false, "escapes with ..");
    snprintf(q, sizeof q, "%s/link-out/z.vhdx", a);
    try_create(c, q, false, "through a symbolic link leading outside");
    /* A symlink as the final component, pointing outside. */
    snprintf(q, sizeof q, "%s/final-link.vhdx", a);
    snprintf(p, sizeof p, "%s/target.vhdx", out);
    if (symlink(p, q) == 0) {
        lcow_error err;
        lcow_code rc = lcow_client_create_scratch(c, q, 1, 0, &err);
        struct stat st;
        check(rc != LCOW_OK && stat(p, &st) != 0,
              "CreateScratch on a dangling link leading outside is refused and writes nothing "
              "outside (got %s %s)",
              lcow_code_name(rc), rc ? err.message : "");
    }
    lcow_client_close(c);
    tsvc_stop(&svc, SIGTERM, 20000);
}

/* ------------------------------------------------------------ open list log */

static bool log_has(const char *log, const char *needle)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strcasestr(line, needle) != NULL;
    fclose(f);
    return found;
}

static void case_openlog(void)
{
    tsvc svc;
    if (start(&svc, "openlog", NULL, NULL) != 0) {
        check(false, "service start (status %d)", svc.status);
        return;
    }
    tsvc_stop(&svc, SIGTERM, 20000);
    check(log_has(svc.log, "scratch-dir-allow"),
          "without --scratch-dir-allow the startup log says the scratch directory list is open "
          "(a line naming --scratch-dir-allow in %s)",
          svc.log);
    const char *a = g_dir;
    const char *extra[] = {"--scratch-dir-allow", a, NULL};
    tsvc svc2;
    if (start(&svc2, "openlog2", NULL, extra) == 0) {
        tsvc_stop(&svc2, SIGTERM, 20000);
        check(true, "service starts with --scratch-dir-allow %s", a);
    } else {
        check(false, "service start with --scratch-dir-allow (status %d)", svc2.status);
    }
}

/* ------------------------------------------------------------ socket */

static void socket_checks(tsvc *svc, const char *what)
{
    struct stat st, dst;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", svc->address);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    bool ok = lstat(svc->address, &st) == 0 && S_ISSOCK(st.st_mode);
    check(ok && (st.st_mode & 07777) == 0660, "%s: socket %s has mode 0660 (got %04o)", what,
          svc->address, ok ? (unsigned)(st.st_mode & 07777) : 0);
    ok = stat(dir, &dst) == 0;
    check(ok && (dst.st_mode & S_IWOTH) == 0,
          "%s: the socket's directory %s is not world-writable (mode %04o)", what, dir,
          ok ? (unsigned)(dst.st_mode & 07777) : 0);
}

static void case_socket(void)
{
    tsvc svc;
    umask(0);
    if (start(&svc, "sock-default", NULL, NULL) == 0) {
        socket_checks(&svc, "default address <root>/lcowsnap.sock, umask 0");
        tsvc_stop(&svc, SIGTERM, 20000);
    } else {
        check(false, "service start (status %d)", svc.status);
    }
    /* A root that exists already, world-writable. */
    char root[1024];
    snprintf(root, sizeof root, "%s/sock-open/root", g_dir);
    tfresh_dir(root);
    chmod(root, 0777);
    if (start(&svc, "sock-open", NULL, NULL) == 0) {
        socket_checks(&svc, "root created 0777 beforehand");
        tsvc_stop(&svc, SIGTERM, 20000);
    } else {
        check(true,
              "a world-writable root directory for the socket is refused at startup "
              "(status %d)",
              svc.status);
    }
    /* --address inside a world-writable directory. */
    char open_dir[1024], addr[1100];
    snprintf(open_dir, sizeof open_dir, "%s/sock-wd/public", g_dir);
    tfresh_dir(open_dir);
    chmod(open_dir, 0777);
    snprintf(addr, sizeof addr, "%s/s.sock", open_dir);
    if (start(&svc, "sock-wd", addr, NULL) == 0) {
        socket_checks(&svc, "--address in a 0777 directory");
        tsvc_stop(&svc, SIGTERM, 20000);
    } else {
        check(true, "--address in a world-writable directory is refused at startup (status %d)",
              svc.status);
    }
    umask(022);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *which = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--exe"))
            g_exe = argv[i + 1];
        else if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--case"))
            which = argv[i + 1];
    }
    if (!g_exe || !dir || !which) {
        fprintf(stderr, "usage: %s --exe LCOWSNAP --dir DIR --case limits|allow|openlog|socket\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    tfresh_dir(g_dir);
    if (!strcmp(which, "limits"))
        case_limits();
    else if (!strcmp(which, "allow"))
        case_allow();
    else if (!strcmp(which, "openlog"))
        case_openlog();
    else if (!strcmp(which, "socket"))
        case_socket();
    else
        return 2;
    tsummary("torture policy %s: %s: %u checks, %u failed", which, g_failed ? "FAILED" : "ok",
             g_checks, g_failed);
    return g_failed ? 1 : 0;
}

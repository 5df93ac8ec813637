/* Fault campaign: the core/os failure-injection seam driven through the
 * running lcowsnap (test builds read LCOW_FAULT="op:nth:fault" at the first
 * file operation of the process).
 *
 * For each mutating call (scenario) the driver first counts, in-process on an
 * identical store, how many file operations of each kind the store's open
 * and then the call perform (lcow_os_fault_calls). Then, for every distinct
 * operation k of the call and each fault (ENOSPC, EIO; and a refused rename
 * for renames), on a fresh copy of the scenario's store:
 *   1. start lcowsnap with LCOW_FAULT=<op>:<open count + k>:<fault>;
 *   2. make the call: it must fail with the fault's code (ResourceExhausted
 *      for ENOSPC, Internal otherwise) and a message naming the injected
 *      error, or succeed when the operation is best-effort (counted as
 *      "tolerated");
 *   3. stop it (SIGTERM, exit 0), start it without LCOW_FAULT, repeat the
 *      call (it must now succeed), run Cleanup, stop it;
 *   4. check the stopped store (no directory without a record, every disk
 *      present, lcow_snapshotter_check).
 *
 * fault_campaign --exe LCOWSNAP --dir WORKDIR [--max-per-op N] [--all-faults]
 * --max-per-op bounds how many occurrences of one operation kind are tried
 * per call (evenly spread; 0 = all). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/disk/sha256.h"
#include "core/os/os.h"
#include "core/scratch.h"
#include "core/snapshotter.h"
#include "rpc/client.h"
#include "support/layerblob.h"
#include "torture_util.h"

typedef struct target {
    lcow_snapshotter *s; /* in-process, or */
    lcow_client *c;      /* through the service */
} target;

typedef struct paths {
    char base[1024];
    char root[1100];
    char loc[1100];
    char scratch[1100];
    /* Layer blobs (tars): 0 is stored by the setup (a known blob), 1 is
     * new, 2 was stored and its snapshot removed (cached, unreferenced). */
    char blob[3][1100];
    char digest[3][LCOW_SHA256_DIGEST_STRING_SIZE];
} paths;

static lcow_code t_prepare(target *t, bool view, const char *key, const char *parent,
                           const lcow_labels *labels, lcow_error *err)
{
    lcow_mounts m = {0};
    lcow_code rc;
    if (t->s)
        rc = view ? lcow_snapshotter_view(t->s, key, parent, labels, &m, err)
                  : lcow_snapshotter_prepare(t->s, key, parent, labels, &m, err);
    else
        rc = view ? lcow_client_view(t->c, key, parent, labels, &m, err)
                  : lcow_client_prepare(t->c, key, parent, labels, &m, err);
    lcow_mounts_free(&m);
    return rc;
}

static lcow_code t_commit(target *t, const char *name, const char *key, lcow_error *err)
{
    lcow_labels l = {0};
    lcow_labels_set(&l, "fault/committed", name);
    lcow_code rc = t->s ? lcow_snapshotter_commit(t->s, name, key, &l, NULL, err)
                        : lcow_client_commit(t->c, name, key, &l, NULL, err);
    lcow_labels_free(&l);
    return rc;
}

static lcow_code t_remove(target *t, const char *key, lcow_error *err)
{
    return t->s ? lcow_snapshotter_remove(t->s, key, err) : lcow_client_remove(t->c, key, err);
}

static lcow_code t_update(target *t, const char *key, lcow_error *err)
{
    lcow_info info = {0}, out = {0};
    info.name = (char *)key;
    lcow_labels_set(&info.labels, "fault/updated", "yes");
    const char *fp = "labels.fault/updated";
    lcow_code rc = t->s ? lcow_snapshotter_update(t->s, &info, &fp, 1, &out, err)
                        : lcow_client_update(t->c, &info, &fp, 1, &out, err);
    lcow_labels_free(&info.labels);
    lcow_info_free(&out);
    return rc;
}

static lcow_code t_cleanup(target *t, lcow_error *err)
{
    return t->s ? lcow_snapshotter_cleanup(t->s, err) : lcow_client_cleanup(t->c, err);
}

static lcow_code t_create_scratch(target *t, const char *path, lcow_error *err)
{
    return t->s ? lcow_snapshotter_create_scratch(t->s, path, 1, 0, err)
                : lcow_client_create_scratch(t->c, path, 1, 0, err);
}

static lcow_code t_apply(target *t, const char *key, const paths *p, int b, lcow_error *err)
{
    if (t->s) {
        lcow_apply_request req = {.key = key, .path = p->blob[b], .digest = p->digest[b]};
        return lcow_snapshotter_apply(t->s, &req, NULL, err);
    }
    lcow_result r = {0};
    lcow_code rc = lcow_client_apply(t->c, key, p->blob[b], NULL, p->digest[b], false, &r, err);
    lcow_result_free(&r);
    return rc;
}

static lcow_code t_prune_layers(target *t, lcow_error *err)
{
    if (t->s) {
        lcow_layer_store_prune_options o = {.all = true};
        return lcow_snapshotter_prune_layers(t->s, &o, NULL, err);
    }
    return lcow_client_prune_layers(t->c, true, 0, NULL, NULL, err);
}

/* A tar of one 96 KiB file whose bytes depend on seed; its digest. */
static int write_blob(const char *path, unsigned seed, char *digest)
{
    static uint8_t tar[512 + 96 * 1024 + 1024];
    memset(tar, 0, sizeof tar);
    lb_ustar_header(tar, "data", '0', 96u * 1024, NULL, 0644, 0);
    for (size_t i = 0; i < 96 * 1024; i++)
        tar[512 + i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_sha256(tar, sizeof tar, d);
    lcow_sha256_digest_string(d, digest);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(tar, 1, sizeof tar, f);
    return fclose(f) == 0 && n == sizeof tar ? 0 : -1;
}

static lcow_code prep_container(target *t, const char *key, const char *parent, const char *gb,
                                const char *loc, lcow_error *err)
{
    lcow_labels l = {0};
    lcow_labels_set(&l, LCOW_LABEL_SIZE_GB, gb);
    if (loc)
        lcow_labels_set(&l, LCOW_LABEL_LOCATION, loc);
    lcow_code rc = t_prepare(t, false, key, parent, &l, err);
    lcow_labels_free(&l);
    return rc;
}

/* The store every scenario starts from. */
static lcow_code setup(target *t, const paths *p, lcow_error *err)
{
    lcow_code rc = t_prepare(t, false, "ns/1/extract-base", NULL, NULL, err);
    if (rc == LCOW_OK)
        rc = t_commit(t, "ns/1/base", "ns/1/extract-base", err);
    if (rc == LCOW_OK)
        rc = t_prepare(t, false, "ns/1/extract-leaf", "ns/1/base", NULL, err);
    if (rc == LCOW_OK)
        rc = t_commit(t, "ns/1/leaf", "ns/1/extract-leaf", err);
    if (rc == LCOW_OK)
        rc = prep_container(t, "ns/1/c1", "ns/1/base", "1", NULL, err);
    if (rc == LCOW_OK)
        rc = t_prepare(t, true, "ns/1/v1", "ns/1/base", NULL, err);
    /* The layer store: blob 0 stored and used, blob 2 stored and cached
     * (its snapshot removed), an extract key for the Apply scenarios. */
    if (rc == LCOW_OK)
        rc = t_prepare(t, false, "ns/1/extract-l0", "ns/1/base", NULL, err);
    if (rc == LCOW_OK)
        rc = t_apply(t, "ns/1/extract-l0", p, 0, err);
    if (rc == LCOW_OK)
        rc = t_commit(t, "ns/1/l0", "ns/1/extract-l0", err);
    if (rc == LCOW_OK)
        rc = t_prepare(t, false, "ns/1/extract-l2", NULL, NULL, err);
    if (rc == LCOW_OK)
        rc = t_apply(t, "ns/1/extract-l2", p, 2, err);
    if (rc == LCOW_OK)
        rc = t_remove(t, "ns/1/extract-l2", err);
    if (rc == LCOW_OK)
        rc = t_prepare(t, false, "ns/1/extract-a", "ns/1/base", NULL, err);
    return rc;
}

typedef struct scenario {
    const char *name;
    lcow_code (*call)(target *t, const paths *p, lcow_error *err);
} scenario;

static lcow_code sc_prepare_cached(target *t, const paths *p, lcow_error *err)
{
    return prep_container(t, "ns/1/c2", "ns/1/base", "1", NULL, err);
}
static lcow_code sc_prepare_new_template(target *t, const paths *p, lcow_error *err)
{
    return prep_container(t, "ns/1/c3", "ns/1/base", "2", p->loc, err);
}
static lcow_code sc_prepare_shared(target *t, const paths *p, lcow_error *err)
{
    lcow_labels l = {0};
    lcow_labels_set(&l, LCOW_LABEL_REUSE, "true");
    lcow_labels_set(&l, LCOW_LABEL_OWNER, "c1");
    lcow_code rc = t_prepare(t, false, "ns/1/c4", "ns/1/base", &l, err);
    lcow_labels_free(&l);
    return rc;
}
static lcow_code sc_prepare_extract(target *t, const paths *p, lcow_error *err)
{
    return t_prepare(t, false, "ns/1/extract-2", "ns/1/base", NULL, err);
}
static lcow_code sc_view(target *t, const paths *p, lcow_error *err)
{
    return t_prepare(t, true, "ns/1/v2", "ns/1/base", NULL, err);
}
static lcow_code sc_commit(target *t, const paths *p, lcow_error *err)
{
    return t_commit(t, "ns/1/c1-layer", "ns/1/c1", err);
}
static lcow_code sc_remove_active(target *t, const paths *p, lcow_error *err)
{
    return t_remove(t, "ns/1/c1", err);
}
static lcow_code sc_remove_committed(target *t, const paths *p, lcow_error *err)
{
    return t_remove(t, "ns/1/leaf", err);
}
static lcow_code sc_remove_view(target *t, const paths *p, lcow_error *err)
{
    return t_remove(t, "ns/1/v1", err);
}
static lcow_code sc_update(target *t, const paths *p, lcow_error *err)
{
    return t_update(t, "ns/1/c1", err);
}
/* An orphan directory appears while the service runs (id below the
 * high-water mark, no record): Cleanup removes it. */
static lcow_code sc_cleanup(target *t, const paths *p, lcow_error *err)
{
    char orphan[1200];
    snprintf(orphan, sizeof orphan, "%s/snapshots/3", p->root);
    mkdir(orphan, 0755);
    snprintf(orphan, sizeof orphan, "%s/snapshots/3/file", p->root);
    FILE *f = fopen(orphan, "w");
    if (f) {
        fputs("orphan", f);
        fclose(f);
    }
    return t_cleanup(t, err);
}
static lcow_code sc_create_scratch(target *t, const paths *p, lcow_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/standalone.vhdx", p->scratch);
    return t_create_scratch(t, path, err);
}

static lcow_code sc_apply_convert(target *t, const paths *p, lcow_error *err)
{
    return t_apply(t, "ns/1/extract-a", p, 1, err);
}
static lcow_code sc_apply_link(target *t, const paths *p, lcow_error *err)
{
    return t_apply(t, "ns/1/extract-a", p, 0, err);
}
static lcow_code sc_prune_layers(target *t, const paths *p, lcow_error *err)
{
    return t_prune_layers(t, err);
}

static const scenario scenarios[] = {
    {"Prepare (scratch from cached template)", sc_prepare_cached},
    {"Prepare (scratch, new template)", sc_prepare_new_template},
    {"Prepare (shared scratch)", sc_prepare_shared},
    {"Prepare (extract layer)", sc_prepare_extract},
    {"View", sc_view},
    {"Commit", sc_commit},
    {"Remove (active with scratch)", sc_remove_active},
    {"Remove (committed)", sc_remove_committed},
    {"Remove (view)", sc_remove_view},
    {"Update", sc_update},
    {"Cleanup", sc_cleanup},
    {"CreateScratch", sc_create_scratch},
    {"Apply (conversion into the layer store)", sc_apply_convert},
    {"Apply (known blob: a link)", sc_apply_link},
    {"PruneLayers", sc_prune_layers},
};

/* ------------------------------------------------------------ driver */

static const char *g_exe;
static const char *g_dir;
static unsigned g_trial;

static int make_store(paths *p, const char *tag, lcow_error *err)
{
    snprintf(p->base, sizeof p->base, "%s/%s", g_dir, tag);
    snprintf(p->root, sizeof p->root, "%s/root", p->base);
    snprintf(p->loc, sizeof p->loc, "%s/loc", p->base);
    snprintf(p->scratch, sizeof p->scratch, "%s/scratch", p->base);
    tfresh_dir(p->base);
    tfresh_dir(p->loc);
    tfresh_dir(p->scratch);
    char base[sizeof p->base];
    memcpy(base, p->base, sizeof base);
    for (int b = 0; b < 3; b++) {
        snprintf(p->blob[b], sizeof p->blob[b], "%s/blob%d.tar", base, b);
        if (write_blob(p->blob[b], (unsigned)b + 1, p->digest[b]) != 0)
            return -1;
    }
    /* The baseline is closed cleanly: its batches need no sync. */
    lcow_snapshotter_config cfg = {
        .root = p->root, .scratch_backend = LCOW_SCRATCH_NATIVE, .no_sync = true};
    target t = {0};
    lcow_code rc = lcow_snapshotter_open(&cfg, &t.s, err);
    if (rc == LCOW_OK)
        rc = setup(&t, p, err);
    lcow_snapshotter_free(t.s);
    return rc == LCOW_OK ? 0 : -1;
}

typedef struct counts {
    unsigned open[LCOW_OS_OP_COUNT];
    unsigned call[LCOW_OS_OP_COUNT];
} counts;

static int count_ops(const scenario *sc, counts *cn, lcow_error *err)
{
    paths p;
    if (make_store(&p, "count", err) != 0)
        return -1;
    lcow_snapshotter_config cfg = {.root = p.root, .scratch_backend = LCOW_SCRATCH_NATIVE};
    target t = {0};
    lcow_os_fault_clear();
    /* What lcowsnap does before it serves: its config check creates --root
     * (lcow_os_mkdir_all), then it opens the store. */
    if (lcow_os_mkdir_all(p.root, err) != LCOW_OK ||
        lcow_snapshotter_open(&cfg, &t.s, err) != LCOW_OK)
        return -1;
    for (int op = 0; op < LCOW_OS_OP_COUNT; op++)
        cn->open[op] = lcow_os_fault_calls((lcow_os_op)op);
    lcow_os_fault_clear();
    lcow_code rc = sc->call(&t, &p, err);
    for (int op = 0; op < LCOW_OS_OP_COUNT; op++)
        cn->call[op] = lcow_os_fault_calls((lcow_os_op)op);
    lcow_snapshotter_free(t.s);
    return rc == LCOW_OK ? 0 : -1;
}

typedef struct totals {
    unsigned injected, failed_cleanly, tolerated, recovered, checks, trials;
    unsigned per_fault[4];
} totals;

static const char *fault_names[] = {"", "enospc", "eio", "eacces"};

static bool run_call(const scenario *sc, const paths *p, tsvc *svc, lcow_code *rc, lcow_error *err)
{
    lcow_client *c = NULL;
    if (lcow_client_connect(svc->address, 5000, &c, err) != LCOW_OK)
        return false;
    lcow_client_set_call_timeout(c, 60000);
    target t = {.c = c};
    *rc = sc->call(&t, p, err);
    lcow_client_close(c);
    return true;
}

/* One trial; returns 0 or -1 with a message in why. */
static int trial(const scenario *sc, lcow_os_op op, unsigned nth, lcow_os_fault fault, totals *tt,
                 char *why, size_t why_len)
{
    paths p;
    lcow_error err;
    char tag[32];
    snprintf(tag, sizeof tag, "t%u", g_trial++ % 4);
    if (make_store(&p, tag, &err) != 0) {
        snprintf(why, why_len, "setup: %s", err.message);
        return -1;
    }
    tsvc svc;
    memset(&svc, 0, sizeof svc);
    snprintf(svc.exe, sizeof svc.exe, "%s", g_exe);
    snprintf(svc.root, sizeof svc.root, "%s", p.root);
    snprintf(svc.address, sizeof svc.address, "%s/s.sock", p.base);
    snprintf(svc.log, sizeof svc.log, "%s/service.log", p.base);
    char spec[64];
    snprintf(spec, sizeof spec, "%s:%u:%s", lcow_os_op_name(op), nth, fault_names[fault]);
    /* The count above is lcow_snapshotter_open's: without the gRPC endpoint,
     * whose partition of the store would add file operations of its own to
     * the startup. */
    static const char *const no_grpc[] = {"--grpc-address", "", NULL};
    if (tsvc_start(&svc, spec, no_grpc) != 0) {
        snprintf(why, why_len,
                 "service with LCOW_FAULT=%s did not start (status %d): the fault "
                 "hit its startup, so the operation count is off",
                 spec, svc.status);
        return -1;
    }
    lcow_code rc = LCOW_OK;
    memset(&err, 0, sizeof err);
    if (!run_call(sc, &p, &svc, &rc, &err)) {
        snprintf(why, why_len, "connect: %s", err.message);
        tsvc_stop(&svc, SIGKILL, 1000);
        return -1;
    }
    int status = tsvc_stop(&svc, SIGTERM, 20000);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        snprintf(why, why_len, "service (LCOW_FAULT=%s) did not exit 0 on SIGTERM: status %d", spec,
                 status);
        return -1;
    }
    tt->trials++;
    lcow_code want = fault == LCOW_FAULT_ENOSPC ? LCOW_RESOURCE_EXHAUSTED : LCOW_INTERNAL;
    bool failed = rc != LCOW_OK;
    if (failed) {
        if (rc != want || !strstr(err.message, "injected")) {
            snprintf(why, why_len,
                     "LCOW_FAULT=%s: the call failed with %s \"%s\", expected %s "
                     "naming the injected error",
                     spec, lcow_code_name(rc), err.message, lcow_code_name(want));
            return -1;
        }
        tt->failed_cleanly++;
        /* A failed CreateScratch leaves nothing in the target directory. */
        if (sc->call == sc_create_scratch) {
            char cmd[1300];
            snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", p.scratch);
            if (system(cmd) != 0) {
                snprintf(why, why_len, "LCOW_FAULT=%s: failed CreateScratch left files in %s", spec,
                         p.scratch);
                return -1;
            }
        }
    } else {
        tt->tolerated++;
    }
    tt->injected++;
    tt->per_fault[fault]++;

    /* Fault cleared: restart, the same call succeeds (if it failed), Cleanup. */
    if (tsvc_start(&svc, NULL, no_grpc) != 0) {
        snprintf(why, why_len, "after LCOW_FAULT=%s the service does not start (status %d)", spec,
                 svc.status);
        return -1;
    }
    lcow_client *c = NULL;
    int bad = 0;
    if (lcow_client_connect(svc.address, 5000, &c, &err) != LCOW_OK) {
        snprintf(why, why_len, "reconnect: %s", err.message);
        bad = 1;
    } else {
        target t = {.c = c};
        if (failed) {
            rc = sc->call(&t, &p, &err);
            if (rc != LCOW_OK) {
                snprintf(why, why_len,
                         "after LCOW_FAULT=%s and a restart the call still fails: "
                         "%s %s",
                         spec, lcow_code_name(rc), err.message);
                bad = 1;
            } else {
                tt->recovered++;
            }
        }
        if (!bad && t_cleanup(&t, &err) != LCOW_OK) {
            snprintf(why, why_len, "Cleanup after LCOW_FAULT=%s: %s", spec, err.message);
            bad = 1;
        }
        lcow_client_close(c);
    }
    status = tsvc_stop(&svc, SIGTERM, 20000);
    if (bad)
        return -1;
    char **disks = NULL;
    size_t nd = 0;
    char msg[2048];
    int ck = tstore_check(p.root, &disks, &nd, msg, sizeof msg);
    tstrv_free(disks, nd);
    if (ck != 0) {
        snprintf(why, why_len, "store after LCOW_FAULT=%s: %s", spec, msg);
        return -1;
    }
    tt->checks++;
    return 0;
}

int main(int argc, char **argv)
{
    unsigned max_per_op = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--exe"))
            g_exe = argv[i + 1];
        else if (!strcmp(argv[i], "--dir"))
            g_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--max-per-op"))
            max_per_op = (unsigned)strtoul(argv[i + 1], NULL, 10);
    }
    if (!g_exe || !g_dir) {
        fprintf(stderr, "usage: %s --exe LCOWSNAP --dir DIR [--max-per-op N]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    lcow_log_set_level(LCOW_LOG_ERROR);
    uint64_t t0 = tnow_ns();
    tfresh_dir(g_dir);
    totals tt = {0};
    unsigned distinct = 0, failures = 0;
    for (size_t si = 0; si < sizeof scenarios / sizeof scenarios[0]; si++) {
        const scenario *sc = &scenarios[si];
        counts cn = {0};
        lcow_error err;
        if (count_ops(sc, &cn, &err) != 0) {
            fprintf(stderr, "FAIL %s: counting run failed: %s\n", sc->name, err.message);
            failures++;
            continue;
        }
        char line[512];
        size_t used = (size_t)snprintf(line, sizeof line, "  %-40s", sc->name);
        unsigned call_ops = 0;
        for (int op = 0; op < LCOW_OS_OP_COUNT; op++) {
            if (!cn.call[op])
                continue;
            call_ops += cn.call[op];
            used += (size_t)snprintf(line + used, sizeof line - used, " %s x%u",
                                     lcow_os_op_name((lcow_os_op)op), cn.call[op]);
            unsigned tries = cn.call[op];
            if (max_per_op && tries > max_per_op)
                tries = max_per_op;
            for (unsigned j = 0; j < tries; j++) {
                /* Spread: first, last and evenly in between. */
                unsigned k = tries == cn.call[op] ? j + 1
                             : tries == 1         ? 1
                                                  : 1 + j * (cn.call[op] - 1) / (tries - 1);
                distinct++;
                lcow_os_fault faults[3] = {LCOW_FAULT_ENOSPC, LCOW_FAULT_EIO, LCOW_FAULT_EACCES};
                int nf = op == LCOW_OS_OP_RENAME ? 3 : 2;
                for (int f = 0; f < nf; f++) {
                    char why[2048];
                    if (trial(sc, (lcow_os_op)op, cn.open[op] + k, faults[f], &tt, why,
                              sizeof why) != 0) {
                        fprintf(stderr, "FAIL %s, %s #%u of %u, %s: %s\n", sc->name,
                                lcow_os_op_name((lcow_os_op)op), k, cn.call[op],
                                fault_names[faults[f]], why);
                        failures++;
                    }
                }
            }
        }
        if (!call_ops)
            used += (size_t)snprintf(line + used, sizeof line - used, " (no file operations)");
        printf("%s\n", line);
        fflush(stdout);
    }
    double secs = (double)(tnow_ns() - t0) / 1e9;
    tsummary("torture faults: %s: faults injected %u (enospc %u, eio %u, rename/eacces %u) at %u "
             "distinct file operations of %zu mutating calls; %u clean errors with the right "
             "code, %u tolerated (best effort), %u calls succeeded after the fault was cleared, "
             "%u store checks passed, %u failures; %.1f s",
             failures ? "FAILED" : "ok", tt.injected, tt.per_fault[LCOW_FAULT_ENOSPC],
             tt.per_fault[LCOW_FAULT_EIO], tt.per_fault[LCOW_FAULT_EACCES], distinct,
             sizeof scenarios / sizeof scenarios[0], tt.failed_cleanly, tt.tolerated, tt.recovered,
             tt.checks, failures, secs);
    return failures ? 1 : 0;
}

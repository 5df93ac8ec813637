/* Compact crash campaign (issue 18): the real lcowsnap SIGKILLed at random
 * instants while it compacts a scratch disk, then checked:
 *   - the disk is a valid VHDX (our reader's full check, qemu-img check),
 *     its ext4 passes e2fsck -fn, and every block the ext4 uses reads
 *     exactly as before (a hash per VHDX block), so every file is intact;
 *     the kept files read back identical through debugfs (compact-check.sh);
 *   - after a restart, Compact of the same key completes and gives the
 *     same file size as an uninterrupted run.
 *
 * The disk: a sandbox the service made (Prepare, 1 GiB), filled and emptied
 * by tests/disk/compact-fixture.sh (debugfs writes, deletes, qemu-img
 * convert), put back in place of the sandbox before every cycle.
 *
 * compact_crash --exe LCOWSNAP --dir DIR --kills N --fixture-script SH
 *               --check-script SH --qemu-img Q --debugfs D --mkfs M --e2fsck E [--seed S]
 * Exit 0 when every check passed; prints one summary line. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/disk/ext4_view.h"
#include "core/disk/vhdx.h"
#include "core/os/os.h"
#include "rpc/client.h"
#include "torture_util.h"

#define KEY "default/1/compact-me"
#define LABEL_SIZE "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb"

static char g_fail[4096];

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    if (g_fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_fail, sizeof g_fail, fmt, ap);
    va_end(ap);
}

/* ---- what must survive: used map + a hash per used, present block ---- */

typedef struct image {
    uint64_t units;
    uint8_t *used;
    uint64_t *hash;
    uint64_t *offset; /* file offset of each present block, 0 otherwise */
    uint64_t file_size;
    uint64_t sequence; /* of the current header */
    uint64_t present;
} image;

/* Where a kill left the disk, by comparing it with the filled one. */
enum { AT_UNTOUCHED, AT_HEADER, AT_FREED, AT_MOVING, AT_TRUNCATED, AT_COUNT };
static const char *const at_names[AT_COUNT] = {"untouched", "header only", "blocks freed",
                                               "blocks moving", "truncated"};

static int stage_of(const image *ref, const image *im)
{
    if (im->file_size < ref->file_size)
        return AT_TRUNCATED;
    for (uint64_t u = 0; u < im->units; u++)
        if (im->offset[u] && im->offset[u] != ref->offset[u])
            return AT_MOVING;
    if (im->present < ref->present)
        return AT_FREED;
    return im->sequence != ref->sequence ? AT_HEADER : AT_UNTOUCHED;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int take(const char *path, image *im, char *msg, size_t msg_len)
{
    memset(im, 0, sizeof *im);
    lcow_file *f;
    lcow_error err;
    if (lcow_file_open(path, LCOW_OPEN_READ, &f, &err) != LCOW_OK) {
        snprintf(msg, msg_len, "open: %s", err.message);
        return -1;
    }
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_vhdx_reader *r = NULL;
    lcow_vhdx_check_report chk;
    int rc = -1;
    uint8_t *buf = NULL;
    if (lcow_vhdx_reader_open(&io, &r, &err) != LCOW_OK ||
        lcow_vhdx_reader_check(r, &chk, &err) != LCOW_OK) {
        snprintf(msg, msg_len, "VHDX: %s", err.message);
        goto out;
    }
    const lcow_vhdx_info *vi = lcow_vhdx_reader_info(r);
    im->file_size = vi->file_size;
    im->units = (vi->virtual_size + vi->block_size - 1) / vi->block_size;
    im->sequence = vi->sequence_number;
    im->present = chk.present_blocks;
    im->used = calloc((size_t)(im->units + 7) / 8, 1);
    im->hash = calloc((size_t)im->units, sizeof *im->hash);
    im->offset = calloc((size_t)im->units, sizeof *im->offset);
    buf = malloc(vi->block_size);
    if (!im->used || !im->hash || !im->offset || !buf) {
        snprintf(msg, msg_len, "out of memory");
        goto out;
    }
    if (lcow_ext4_view_used_map(r, im->used, im->units, &err) != LCOW_OK) {
        snprintf(msg, msg_len, "ext4: %s", err.message);
        goto out;
    }
    for (uint64_t u = 0; u < im->units; u++) {
        lcow_vhdx_block_state st;
        uint64_t off = 0;
        if (lcow_vhdx_reader_block(r, u, &st, &off, &err) != LCOW_OK) {
            snprintf(msg, msg_len, "BAT: %s", err.message);
            goto out;
        }
        if (st == LCOW_VHDX_BLOCK_FULLY_PRESENT)
            im->offset[u] = off;
        if (!(im->used[u / 8] & (1u << (u % 8))) || st != LCOW_VHDX_BLOCK_FULLY_PRESENT)
            continue;
        if (lcow_vhdx_reader_read(r, u * vi->block_size, buf, vi->block_size, &err) != LCOW_OK) {
            snprintf(msg, msg_len, "read block %" PRIu64 ": %s", u, err.message);
            goto out;
        }
        im->hash[u] = fnv1a(buf, vi->block_size);
    }
    rc = 0;
out:
    free(buf);
    lcow_vhdx_reader_free(r);
    lcow_file_close(f);
    return rc;
}

static int same(const image *a, const image *b)
{
    return a->units == b->units && !memcmp(a->used, b->used, (size_t)(a->units + 7) / 8) &&
           !memcmp(a->hash, b->hash, (size_t)a->units * sizeof *a->hash);
}

static void drop(image *im)
{
    free(im->used);
    free(im->hash);
    free(im->offset);
}

static int copy_file(const char *from, const char *to)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cp -f '%s' '%s'", from, to);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- one Compact call on its own thread (the kill cuts it off) ---- */

typedef struct call {
    const char *address;
    lcow_code rc;
    lcow_compact_summary sum;
    char msg[1024];
} call;

static void *compact_main(void *arg)
{
    call *c = arg;
    lcow_client *cl;
    lcow_error err;
    c->rc = lcow_client_connect(c->address, 5000, &cl, &err);
    if (c->rc == LCOW_OK) {
        lcow_client_set_call_timeout(cl, 120000);
        c->rc = lcow_client_compact(cl, KEY, &c->sum, &err);
        lcow_client_close(cl);
    }
    if (c->rc != LCOW_OK)
        snprintf(c->msg, sizeof c->msg, "%s", err.message);
    return NULL;
}

static int compact_now(const char *address, call *c)
{
    memset(c, 0, sizeof *c);
    c->address = address;
    compact_main(c);
    return c->rc == LCOW_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *exe = NULL, *dir = NULL, *fixture_sh = NULL, *check_sh = NULL, *qemu = NULL,
               *debugfs = NULL, *mkfs = NULL, *e2fsck = NULL;
    unsigned kills = 10;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *v = argv[i + 1];
        if (!strcmp(argv[i], "--exe"))
            exe = v;
        else if (!strcmp(argv[i], "--dir"))
            dir = v;
        else if (!strcmp(argv[i], "--kills"))
            kills = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(argv[i], "--fixture-script"))
            fixture_sh = v;
        else if (!strcmp(argv[i], "--check-script"))
            check_sh = v;
        else if (!strcmp(argv[i], "--qemu-img"))
            qemu = v;
        else if (!strcmp(argv[i], "--debugfs"))
            debugfs = v;
        else if (!strcmp(argv[i], "--mkfs"))
            mkfs = v;
        else if (!strcmp(argv[i], "--e2fsck"))
            e2fsck = v;
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(v, NULL, 10);
    }
    if (!exe || !dir || !fixture_sh || !check_sh || !qemu || !debugfs || !mkfs || !e2fsck) {
        fprintf(stderr,
                "usage: %s --exe LCOWSNAP --dir DIR --kills N --fixture-script SH "
                "--check-script SH --qemu-img Q --debugfs D --mkfs M --e2fsck E "
                "[--seed S]\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("compact crash campaign: %u kills, seed %" PRIu64 "\n", kills, seed);
    uint64_t t0 = tnow_ns();
    tfresh_dir(dir);
    char checkdir[1024], filled[1200], sandbox[1200], cmd[8192], msg[4096];
    snprintf(checkdir, sizeof checkdir, "%s/check", dir);
    tfresh_dir(checkdir);
    tsvc svc;
    memset(&svc, 0, sizeof svc);
    snprintf(svc.exe, sizeof svc.exe, "%s", exe);
    snprintf(svc.root, sizeof svc.root, "%s/root", dir);
    snprintf(svc.address, sizeof svc.address, "%s/s.sock", dir);
    snprintf(svc.log, sizeof svc.log, "%s/service.log", dir);
    uint64_t rng = seed;
    unsigned done = 0, cut_short = 0, finished_anyway = 0, at[AT_COUNT] = {0};
    double full_ms = 0;
    image ref = {0}, after = {0};
    uint64_t ref_size = 0;

    /* The sandbox, made by the service. */
    if (tsvc_start(&svc, NULL, NULL) != 0) {
        failf("service did not start; see %s", svc.log);
        goto end;
    }
    {
        lcow_client *cl;
        lcow_error err;
        lcow_labels l = {0};
        lcow_mounts m = {0};
        lcow_labels_set(&l, LABEL_SIZE, "1");
        if (lcow_client_connect(svc.address, 5000, &cl, &err) != LCOW_OK ||
            lcow_client_prepare(cl, KEY, "", &l, &m, &err) != LCOW_OK) {
            failf("Prepare: %s", err.message);
            lcow_labels_free(&l);
            goto end;
        }
        snprintf(sandbox, sizeof sandbox, "%s", m.count ? m.items[0].source : "");
        lcow_mounts_free(&m);
        lcow_labels_free(&l);
        lcow_client_close(cl);
        size_t n = strlen(sandbox);
        snprintf(sandbox + n, sizeof sandbox - n, "/sandbox.vhdx");
    }
    tsvc_stop(&svc, SIGTERM, 10000);
    /* Filled and emptied through a raw copy and debugfs. */
    snprintf(cmd, sizeof cmd, "sh '%s' '%s' '%s' '%s' '%s' '%s' 16 >'%s/fixture.log' 2>&1",
             fixture_sh, checkdir, qemu, debugfs, mkfs, sandbox, dir);
    if (system(cmd) != 0) {
        failf("compact-fixture.sh failed: see %s/fixture.log", dir);
        goto end;
    }
    snprintf(filled, sizeof filled, "%s/filled.vhdx", checkdir);
    if (take(filled, &ref, msg, sizeof msg) != 0) {
        failf("the filled disk: %s", msg);
        goto end;
    }

    /* One uninterrupted run: its duration bounds the kill instants. */
    {
        call c;
        if (copy_file(filled, sandbox) != 0 || tsvc_start(&svc, NULL, NULL) != 0) {
            failf("reference run: could not start");
            goto end;
        }
        uint64_t s = tnow_ns();
        if (compact_now(svc.address, &c) != 0) {
            failf("reference Compact: %s", c.msg);
            goto end;
        }
        full_ms = (double)(tnow_ns() - s) / 1e6;
        tsvc_stop(&svc, SIGTERM, 10000);
        ref_size = (uint64_t)c.sum.bytes_after;
        if (c.sum.bytes_before - c.sum.bytes_after <= 0) {
            failf("the reference Compact gave nothing back");
            goto end;
        }
        snprintf(msg, sizeof msg, "%s/compacted.vhdx", checkdir);
        copy_file(sandbox, msg);
    }

    for (unsigned k = 0; k < kills && !g_fail[0]; k++) {
        if (copy_file(filled, sandbox) != 0 || tsvc_start(&svc, NULL, NULL) != 0) {
            failf("cycle %u: could not start (see %s)", k, svc.log);
            break;
        }
        call c = {.address = svc.address};
        pthread_t th;
        pthread_create(&th, NULL, compact_main, &c);
        /* Uniform over the call (a little past its usual end) for odd
         * cycles, over its first tenth for even ones: the steps before the
         * first fsync are short and would be hit rarely otherwise. */
        double span_us = full_ms * (k % 2 ? 1100 : 110);
        unsigned delay_us = trand_below(&rng, (uint32_t)span_us + 1);
        usleep(delay_us);
        tsvc_stop(&svc, SIGKILL, 1000);
        pthread_join(th, NULL);
        if (c.rc == LCOW_OK)
            finished_anyway++;
        else
            cut_short++;
        if (take(sandbox, &after, msg, sizeof msg) != 0) {
            failf("cycle %u (killed after %u us): the disk is not valid: %s", k, delay_us, msg);
            break;
        }
        if (!same(&ref, &after)) {
            failf("cycle %u (killed after %u us): a block the ext4 uses changed", k, delay_us);
            break;
        }
        at[stage_of(&ref, &after)]++;
        drop(&after);
        /* The external tools on a copy (compact-check.sh checks crash-*.vhdx). */
        snprintf(msg, sizeof msg, "%s/crash-%u.vhdx", checkdir, k);
        copy_file(sandbox, msg);
        /* A restart resumes: Compact completes with the reference size. */
        call again;
        if (tsvc_start(&svc, NULL, NULL) != 0 || compact_now(svc.address, &again) != 0) {
            failf("cycle %u: Compact after the restart: %s", k, again.msg);
            break;
        }
        tsvc_stop(&svc, SIGTERM, 10000);
        if ((uint64_t)again.sum.bytes_after != ref_size) {
            failf("cycle %u: after the restart the disk is %" PRId64 " bytes, not %" PRIu64, k,
                  again.sum.bytes_after, ref_size);
            break;
        }
        done++;
    }
    if (!g_fail[0]) {
        snprintf(cmd, sizeof cmd, "sh '%s' '%s' '%s' '%s' '%s' >'%s/check.log' 2>&1", check_sh,
                 checkdir, qemu, e2fsck, debugfs, dir);
        if (system(cmd) != 0)
            failf("compact-check.sh found a problem: see %s/check.log", dir);
        else
            tfresh_dir(checkdir); /* the killed disks: 150 MiB each */
    }
end:
    if (svc.pid > 0)
        tsvc_stop(&svc, SIGKILL, 1000);
    drop(&ref);
    double secs = (double)(tnow_ns() - t0) / 1e9;
    if (g_fail[0]) {
        tsummary("compact crash: FAIL after %u of %u kills (seed %" PRIu64 "): %s", done, kills,
                 seed, g_fail);
        return 1;
    }
    char stages[256] = "";
    for (int i = 0; i < AT_COUNT; i++) {
        size_t n = strlen(stages);
        snprintf(stages + n, sizeof stages - n, "%s%s %u", i ? ", " : "", at_names[i], at[i]);
    }
    tsummary("compact crash: %u kills during Compact (%u cut it short, %u came after it ended; "
             "the disk left %s; a full run takes %.0f ms), every disk valid with its files "
             "intact and compacted to the same size after a restart; %.0f s, seed %" PRIu64,
             kills, cut_short, finished_anyway, stages, full_ms, secs, seed);
    return 0;
}

/* The LCOW side of core/snapshotter: the single lcow-layer mount and its
 * parentLayerPaths exactly as containerd's Windows LCOW snapshotter writes
 * them, and the scratch policy through the store (own, shared and retained
 * scratch disks, failures, CreateScratch). containerd's contract and the
 * store's own cases are in test_snapshotter.c. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifndef _WIN32
#include <sys/stat.h>
#endif

#include "core/base/json.h"
#include "core/disk/vhdx.h"
#include "core/disk/vdisk.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h"
#include "unit/snapshotter_contract.h"
#include "unit/snapshotter_fixture.h"
#include "unit/testlib.h"

/* ------------------------------------------------------------ parent chains */

static void chain_128_layers(void **state)
{
    fixture *f = *state;
    char parent[32] = "", key[32], name[32];
    uint64_t ids[128];
    for (int i = 0; i < 128; i++) {
        snprintf(key, sizeof key, "prep-%d", i);
        snprintf(name, sizeof name, "layer-%d", i);
        prep(f->s, key, parent);
        ids[i] = id_of(f->s, key);
        commit(f->s, name, key);
        strcpy(parent, name);
    }
    lcow_mounts m;
    lcow_error err;
    ok(lcow_snapshotter_view(f->s, "top-view", "layer-127", NULL, &m, &err), &err);
    assert_int_equal(m.count, 1);
    assert_string_equal(m.items[0].type, "lcow-layer");
    assert_int_equal(source_id(&m.items[0]), ids[127]);
    /* 127 parent paths, nearest first. */
    const char *paths[127];
    char *owned[127];
    for (int i = 0; i < 127; i++) {
        owned[i] = lcow_snapshotter_dir_of(f->s, ids[126 - i]);
        paths[i] = owned[i];
    }
    char *json = lcow_json_string_array(paths, 127, LCOW_JSON_GO);
    char *expect = malloc(strlen(json) + 32);
    sprintf(expect, "parentLayerPaths=%s", json);
    assert_string_equal(m.items[0].options[1], expect);
    for (int i = 0; i < 127; i++)
        free(owned[i]);
    free(json);
    free(expect);
    lcow_mounts_free(&m);
    /* an active on top: own dir, all 128 parents */
    ok(lcow_snapshotter_prepare(f->s, "top-active", "layer-127", NULL, &m, &err), &err);
    size_t commas = 0;
    for (const char *p = m.items[0].options[1]; *p; p++)
        commas += *p == ',';
    assert_int_equal(commas, 127);
    lcow_mounts_free(&m);
}

/* ------------------------------------------------------------ LCOW mounts */

static void mounts_exactly_as_upstream(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_prepare(f->s, "base-prep", "", NULL, &m, &err), &err);
    uint64_t base = source_id(&m.items[0]);
    assert_string_equal(m.items[0].type, "lcow-layer");
    assert_int_equal(m.items[0].option_count, 2);
    assert_string_equal(m.items[0].options[0], "rw");
    assert_string_equal(m.items[0].options[1], "parentLayerPaths=[]");
    char *dir = lcow_snapshotter_dir_of(f->s, base);
    assert_string_equal(m.items[0].source, dir);
    free(dir);
    lcow_mounts_free(&m);
    commit(f->s, "base", "base-prep");
    prep(f->s, "mid-prep", "base");
    uint64_t mid = id_of(f->s, "mid-prep");
    commit(f->s, "mid", "mid-prep");

    /* view with one parent: Source = parent's dir, [] */
    ok(lcow_snapshotter_view(f->s, "v1", "base", NULL, &m, &err), &err);
    assert_int_equal(source_id(&m.items[0]), base);
    assert_string_equal(m.items[0].options[0], "ro");
    assert_string_equal(m.items[0].options[1], "parentLayerPaths=[]");
    lcow_mounts_free(&m);
    /* view with two: Source = mid, [base] */
    ok(lcow_snapshotter_view(f->s, "v2", "mid", NULL, &m, &err), &err);
    assert_int_equal(source_id(&m.items[0]), mid);
    char *bdir = lcow_snapshotter_dir_of(f->s, base);
    const char *one[] = {bdir};
    char *json = lcow_json_string_array(one, 1, LCOW_JSON_GO);
    char expect[1024];
    snprintf(expect, sizeof expect, "parentLayerPaths=%s", json);
    assert_string_equal(m.items[0].options[1], expect);
    lcow_mounts_free(&m);
    /* a parentless view: own dir (not created), [] never null */
    ok(lcow_snapshotter_view(f->s, "v0", "", NULL, &m, &err), &err);
    assert_string_equal(m.items[0].options[1], "parentLayerPaths=[]");
    assert_false(dir_exists(f->s, source_id(&m.items[0])));
    lcow_mounts_free(&m);
    /* active with two parents: own dir, [mid, base]; Mounts == Prepare */
    lcow_mounts again;
    ok(lcow_snapshotter_prepare(f->s, "top", "mid", NULL, &m, &err), &err);
    ok(lcow_snapshotter_mounts(f->s, "top", &again, &err), &err);
    assert_string_equal(m.items[0].source, again.items[0].source);
    assert_string_equal(m.items[0].options[1], again.items[0].options[1]);
    char *mdir = lcow_snapshotter_dir_of(f->s, mid);
    const char *two[] = {mdir, bdir};
    free(json);
    json = lcow_json_string_array(two, 2, LCOW_JSON_GO);
    snprintf(expect, sizeof expect, "parentLayerPaths=%s", json);
    assert_string_equal(m.items[0].options[1], expect);
    assert_true(dir_exists(f->s, source_id(&m.items[0])));
    lcow_mounts_free(&m);
    lcow_mounts_free(&again);
    free(json);
    free(bdir);
    free(mdir);
    /* committed: FailedPrecondition; missing: NotFound */
    assert_int_equal(lcow_snapshotter_mounts(f->s, "mid", &m, &err), LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_snapshotter_mounts(f->s, "nope", &m, &err), LCOW_NOT_FOUND);
}

/* ------------------------------------------------------------ scratch integration */

static void open_with_scratch(fixture *f)
{
    lcow_snapshotter_free(f->s);
    lcow_snapshotter_config c = {.root = f->root};
    lcow_error err;
    f->s = NULL;
    ok(lcow_snapshotter_open(&c, &f->s, &err), &err);
}

/* Prepare with a 1 GiB scratch (cheap to build with the real builder). */
static lcow_code prep_scratch(lcow_snapshotter *s, const char *key, const char *owner,
                              lcow_error *err)
{
    lcow_labels l = {0};
    lcow_labels_set(&l, LABEL_SIZE, "1");
    if (owner) {
        lcow_labels_set(&l, LABEL_REUSE, "true");
        lcow_labels_set(&l, LABEL_OWNER, owner);
    }
    lcow_mounts m = {0};
    lcow_code rc = lcow_snapshotter_prepare(s, key, "", &l, &m, err);
    lcow_mounts_free(&m);
    lcow_labels_free(&l);
    return rc;
}

static char *sandbox_of(lcow_snapshotter *s, uint64_t id)
{
    char *dir = lcow_snapshotter_dir_of(s, id);
    char *disk = lcow_path_join(dir, "sandbox.vhdx");
    free(dir);
    return disk;
}

/* The disk a member's sandbox.vhdx resolves to is readable and is a
 * scratch disk: qemu-img check with the real builder, the stand-in's
 * signature otherwise. */
static void assert_disk_valid(const char *path)
{
    char *real = NULL;
    lcow_error err;
    ok(lcow_os_realpath(path, &real, &err), &err);
    lcow_file *fh;
    ok(lcow_file_open(real, LCOW_OPEN_READ, &fh, &err), &err);
    char sig[8];
    size_t got = 0;
    ok(lcow_file_pread(fh, sig, sizeof sig, 0, &got, &err), &err);
    lcow_file_close(fh);
    assert_int_equal(got, 8);
    assert_memory_equal(sig, "vhdxfile", 8);
#if !defined(_WIN32)
    const char *qemu = getenv("LCOW_QEMU_IMG");
    if (qemu && *qemu) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "'%s' check -q -f vhdx '%s'", qemu, real);
        assert_int_equal(system(cmd), 0);
    }
#endif
    free(real);
}

static void scratch_for_containers_not_extract_layers(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "default/1/extract-123-Ab_d sha256:abc", NULL, &err), &err);
    ok(prep_scratch(f->s, "default/2/my-extractor", NULL, &err), &err);
    ok(prep_scratch(f->s, "plain-key", NULL, &err), &err);
    char *d1 = sandbox_of(f->s, id_of(f->s, "default/1/extract-123-Ab_d sha256:abc"));
    char *d2 = sandbox_of(f->s, id_of(f->s, "default/2/my-extractor"));
    char *d3 = sandbox_of(f->s, id_of(f->s, "plain-key"));
    assert_false(test_stat(d1).exists);
    assert_true(test_stat(d2).exists);
    assert_true(test_stat(d3).exists);
    assert_disk_valid(d2);
    /* views get nothing */
    view(f->s, "default/3/view", "");
    /* a bad size label is refused before anything is created */
    lcow_labels l = {0};
    lcow_labels_set(&l, LABEL_SIZE, "abc");
    lcow_mounts m;
    assert_int_equal(lcow_snapshotter_prepare(f->s, "default/4/bad", "", &l, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(stat_code(f->s, "default/4/bad"), LCOW_NOT_FOUND);
    lcow_labels_free(&l);
    check(f->s);
    free(d1);
    free(d2);
    free(d3);
}

/* The byte-size labels through Prepare (issue 16): CRI's rootfs.sizebytes
 * of 1 GiB + 1 byte gives a 2 GiB scratch (its template scratch_2.vhdx),
 * max-size beats it, size-gb beats both; a malformed one creates nothing. */
static void byte_size_labels_size_the_scratch(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    lcow_mounts m = {0};
    lcow_labels l = {0};
    lcow_labels_set(&l, "containerd.io/snapshot/windows/rootfs.sizebytes", "1073741825");
    ok(lcow_snapshotter_prepare(f->s, "default/1/c1", "", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    char *t2 = lcow_path_join(f->root, "scratch_2.vhdx");
    char *t1 = lcow_path_join(f->root, "scratch_1.vhdx");
    assert_true(test_stat(t2).exists);
    assert_false(test_stat(t1).exists);
    char *disk = sandbox_of(f->s, id_of(f->s, "default/1/c1"));
    assert_int_equal(test_stat(disk).size, test_stat(t2).size);
    assert_disk_valid(disk);
    free(disk);

    lcow_labels_set(&l, "containerd.io/snapshot/max-size", "1024");
    ok(lcow_snapshotter_prepare(f->s, "default/2/c2", "", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    assert_true(test_stat(t1).exists);

    lcow_labels_set(&l, "containerd.io/snapshot/max-size", "1 GiB");
    assert_int_equal(lcow_snapshotter_prepare(f->s, "default/3/bad", "", &l, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "containerd.io/snapshot/max-size"));
    assert_int_equal(stat_code(f->s, "default/3/bad"), LCOW_NOT_FOUND);
    lcow_labels_set(&l, LABEL_SIZE, "1");
    assert_int_equal(lcow_snapshotter_prepare(f->s, "default/3/bad", "", &l, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    lcow_labels_set(&l, "containerd.io/snapshot/max-size", "4294967296");
    ok(lcow_snapshotter_prepare(f->s, "default/4/c4", "", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    char *t4 = lcow_path_join(f->root, "scratch_4.vhdx");
    assert_false(test_stat(t4).exists); /* size-gb=1 decided */
    lcow_labels_free(&l);
    check(f->s);
    free(t1);
    free(t2);
    free(t4);
}

static void shared_owner_is_exact_client_key_in_namespace(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "default/3/owner-long", NULL, &err), &err);
    ok(prep_scratch(f->s, "default/4/owner", NULL, &err), &err);
    ok(prep_scratch(f->s, "other/5/tenant", NULL, &err), &err);
    /* exact client key in the same namespace */
    ok(prep_scratch(f->s, "default/6/member", "owner", &err), &err);
    char *member = sandbox_of(f->s, id_of(f->s, "default/6/member"));
    char *owner = sandbox_of(f->s, id_of(f->s, "default/4/owner"));
    char *rm_ = NULL, *ro_ = NULL;
    ok(lcow_os_realpath(member, &rm_, &err), &err);
    ok(lcow_os_realpath(owner, &ro_, &err), &err);
    lcow_stat mst = test_stat(member);
    assert_true(mst.is_link || strcmp(rm_, member) == 0); /* symlink, or hard link */
#ifndef _WIN32
    assert_string_equal(rm_, ro_);
#endif
    /* a substring of another key, another namespace's owner, none */
    assert_int_equal(prep_scratch(f->s, "default/7/m2", "own", &err), LCOW_NOT_FOUND);
    assert_non_null(strstr(err.message, "own"));
    assert_int_equal(prep_scratch(f->s, "default/8/m3", "tenant", &err), LCOW_NOT_FOUND);
    assert_int_equal(prep_scratch(f->s, "other/9/m4", "owner", &err), LCOW_NOT_FOUND);
    /* owner exists but has no scratch / is not active */
    ok(prep_scratch(f->s, "default/10/extract-1", NULL, &err), &err);
    assert_int_equal(prep_scratch(f->s, "default/11/m5", "extract-1", &err),
                     LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "extract-1"));
    commit(f->s, "default/12/sealed", "default/3/owner-long");
    ok(prep_scratch(f->s, "default/13/sealed-base", NULL, &err), &err);
    assert_int_equal(prep_scratch(f->s, "default/14/m6", "sealed", &err), LCOW_FAILED_PRECONDITION);
    /* nothing was left behind by the refusals */
    check(f->s);
    /* a member of a member shares the canonical disk */
    ok(prep_scratch(f->s, "default/15/member2", "member", &err), &err);
    char *m2 = sandbox_of(f->s, id_of(f->s, "default/15/member2"));
    char *rm2 = NULL;
    ok(lcow_os_realpath(m2, &rm2, &err), &err);
#ifndef _WIN32
    assert_string_equal(rm2, ro_);
#endif
    check(f->s);
    free(m2);
    free(rm2);
    free(member);
    free(owner);
    free(rm_);
    free(ro_);
}

static void owner_removed_before_members_keeps_disk(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "k8s.io/1/sandbox", NULL, &err), &err);
    uint64_t owner_id = id_of(f->s, "k8s.io/1/sandbox");
    ok(prep_scratch(f->s, "k8s.io/2/c1", "sandbox", &err), &err);
    ok(prep_scratch(f->s, "k8s.io/3/c2", "sandbox", &err), &err);
    char *c1 = sandbox_of(
        f->s, id_of(f->s, "k8s.io/1/sandbox") == owner_id ? id_of(f->s, "k8s.io/2/c1") : 0);
    char *c2 = sandbox_of(f->s, id_of(f->s, "k8s.io/3/c2"));
    rm(f->s, "k8s.io/1/sandbox");
    assert_int_equal(stat_code(f->s, "k8s.io/1/sandbox"), LCOW_NOT_FOUND);
    /* the disk stays where the links point */
    assert_true(dir_exists(f->s, owner_id));
    assert_disk_valid(c1);
    assert_disk_valid(c2);
    check(f->s);
    /* Cleanup and a restart keep the retained disk */
    ok(lcow_snapshotter_cleanup(f->s, &err), &err);
    open_with_scratch(f);
    assert_true(dir_exists(f->s, owner_id));
    check(f->s);
    /* the owner key is gone: a new member cannot find it */
    assert_int_equal(prep_scratch(f->s, "k8s.io/4/c3", "sandbox", &err), LCOW_NOT_FOUND);
    /* but sharing through a remaining member reaches the same disk */
    ok(prep_scratch(f->s, "k8s.io/5/c4", "c1", &err), &err);
    rm(f->s, "k8s.io/2/c1");
    assert_true(dir_exists(f->s, owner_id));
    assert_disk_valid(c2);
    rm(f->s, "k8s.io/5/c4");
    assert_true(dir_exists(f->s, owner_id));
    rm(f->s, "k8s.io/3/c2"); /* the last member frees the disk */
    assert_false(dir_exists(f->s, owner_id));
    check(f->s);
    free(c1);
    free(c2);
}

static void scratch_failures_leave_nothing(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "owner", NULL, &err), &err);
    if (!lcow_os_fault_arm(LCOW_OS_OP_LINK, 1, LCOW_FAULT_EIO, true))
        skip();
    assert_int_not_equal(prep_scratch(f->s, "member", "owner", &err), LCOW_OK);
    lcow_os_fault_clear();
    assert_int_equal(stat_code(f->s, "member"), LCOW_NOT_FOUND);
    check(f->s);
    /* a copy/write failure while making an own disk */
    lcow_os_fault_arm(LCOW_OS_OP_WRITE, 1, LCOW_FAULT_ENOSPC, true);
    lcow_os_fault_arm(LCOW_OS_OP_COPY, 1, LCOW_FAULT_ENOSPC, true);
    assert_int_not_equal(prep_scratch(f->s, "own2", NULL, &err), LCOW_OK);
    lcow_os_fault_clear();
    assert_int_equal(stat_code(f->s, "own2"), LCOW_NOT_FOUND);
    check(f->s);
    ok(prep_scratch(f->s, "member", "owner", &err), &err);
    ok(prep_scratch(f->s, "own2", NULL, &err), &err);
    /* the owner cannot go while a member is being prepared: shown by the
     * remove order rules (owner first is allowed, disk retained) */
    rm(f->s, "owner");
    rm(f->s, "member");
    check(f->s);
}

typedef struct slow_prepare {
    lcow_snapshotter *s;
    _Atomic int done;
    lcow_code rc;
} slow_prepare;

static void *prepare_big_scratch(void *arg)
{
    slow_prepare *p = arg;
    lcow_labels l = {0};
    lcow_labels_set(&l, LABEL_SIZE, "4096"); /* cold template: the slowest Prepare */
    lcow_mounts m = {0};
    lcow_error err;
    p->rc = lcow_snapshotter_prepare(p->s, "default/1/big", "", &l, &m, &err);
    lcow_mounts_free(&m);
    lcow_labels_free(&l);
    p->done = 1;
    return NULL;
}

static void scratch_creation_blocks_no_one(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    prep(f->s, "existing", "");
    slow_prepare p = {.s = f->s};
    lcow_thread t;
    assert_true(lcow_thread_create(&t, prepare_big_scratch, &p));
    /* While the template is being built (outside the metadata lock),
     * readers and other writers go ahead. */
    int done_meanwhile = 0;
    for (int i = 0; i < 20 && !p.done; i++) {
        char key[32];
        snprintf(key, sizeof key, "default/2/extract-%d", i);
        assert_int_equal(stat_code(f->s, "existing"), LCOW_OK);
        prep(f->s, key, "");
        if (!p.done)
            done_meanwhile++;
    }
    /* the same key cannot be prepared twice meanwhile */
    lcow_error err;
    lcow_mounts m = {0};
    lcow_code again = lcow_snapshotter_prepare(f->s, "default/1/big", "", NULL, &m, &err);
    lcow_thread_join(t, NULL);
    lcow_mounts_free(&m);
    /* Exactly one of the two Prepares of the key wins. On a loaded machine
     * the thread may start only after this second call: then it loses. */
    assert_true((p.rc == LCOW_OK && again == LCOW_ALREADY_EXISTS) ||
                (p.rc == LCOW_ALREADY_EXISTS && again == LCOW_OK));
    if (done_meanwhile == 0)
        skip(); /* the build was too quick to show anything */
    check(f->s);
}

static bool is_temp(const char *name)
{
    return strstr(name, ".tmp") != NULL;
}

static void create_scratch_validates_path(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    static int n;
    char name[32];
    snprintf(name, sizeof name, "csout%d", n++);
    char *out = test_fresh_dir(name); /* never the root: see create_scratch_never_in_root */
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, "relative.vhdx", 1, 0, &err),
                     LCOW_INVALID_ARGUMENT);
    char *missing_dir = lcow_path_join(out, "no-such-dir");
    char *in_missing = lcow_path_join(missing_dir, "x.vhdx");
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, in_missing, 1, 0, &err), LCOW_NOT_FOUND);
    char *target = lcow_path_join(out, "made.vhdx");
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, target, 0, 3, &err),
                     LCOW_INVALID_ARGUMENT); /* block size not a power of two */
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, target, 70000, 0, &err),
                     LCOW_INVALID_ARGUMENT);
    ok(lcow_snapshotter_create_scratch(f->s, target, 1, 0, &err), &err);
    assert_disk_valid(target);
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, target, 1, 0, &err),
                     LCOW_ALREADY_EXISTS);
    /* no temp file left next to it, also after a failed build */
    lcow_os_fault_arm(LCOW_OS_OP_WRITE, 3, LCOW_FAULT_ENOSPC, false);
    char *second = lcow_path_join(out, "second.vhdx");
    assert_int_not_equal(lcow_snapshotter_create_scratch(f->s, second, 1, 0, &err), LCOW_OK);
    lcow_os_fault_clear();
    assert_false(test_stat(second).exists);
    assert_int_equal(test_entries_matching(out, is_temp), 0);
    lcow_os_remove_all(out, &err);
    free(out);
    free(second);
    free(missing_dir);
    free(in_missing);
    free(target);
}

/* The service's root is lcowsnap's alone (issue 14, item 6): a CreateScratch
 * target or a rootfs.location inside it is InvalidArgument naming the path,
 * also when reached through "..", and whatever the allow list says. Nothing
 * is written there. */
static void create_scratch_never_in_root(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    char *snapshots = lcow_path_join(f->root, "snapshots");
    char next[32];
    snprintf(next, sizeof next, "%" PRIu64, lcow_metastore_peek_next_id(f->s->ms));
    char *at_next = lcow_path_join(snapshots, next);
    char *template7 = lcow_path_join(f->root, "scratch_7.vhdx");
    char *climb_dir = lcow_path_join(snapshots, "..");
    char *climb = lcow_path_join(climb_dir, "scratch_1.vhdx");
    const char *targets[] = {at_next, template7, climb};
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        assert_int_equal(lcow_snapshotter_create_scratch(f->s, targets[i], 1, 0, &err),
                         LCOW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, targets[i]));
        assert_non_null(strstr(err.message, "root"));
    }
    assert_false(test_stat(at_next).exists);
    assert_false(test_stat(template7).exists);
    /* a rootfs.location in the root, or the root itself */
    const char *locations[] = {f->root, snapshots};
    for (size_t i = 0; i < 2; i++) {
        lcow_labels l = {0};
        lcow_labels_set(&l, LABEL_SIZE, "1");
        lcow_labels_set(&l, "containerd.io/snapshot/io.microsoft.container.storage.rootfs.location",
                        locations[i]);
        lcow_mounts m = {0};
        assert_int_equal(lcow_snapshotter_prepare(f->s, "c1", "", &l, &m, &err),
                         LCOW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "root"));
        lcow_labels_free(&l);
    }
    /* the allow list does not open the root */
    lcow_snapshotter_free(f->s);
    const char *allow[] = {f->root};
    lcow_snapshotter_config c = {
        .root = f->root, .scratch_dir_allow = allow, .scratch_dir_allow_count = 1};
    f->s = NULL;
    ok(lcow_snapshotter_open(&c, &f->s, &err), &err);
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, template7, 1, 0, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_false(test_stat(template7).exists);
    /* and the next Prepare of a new key is unharmed */
    ok(prep_scratch(f->s, "c2", NULL, &err), &err);
    free(snapshots);
    free(at_next);
    free(template7);
    free(climb_dir);
    free(climb);
}

/* A foreign entry at the next snapshot id under <root>/snapshots (issue 14,
 * item 6) is skipped: Prepare takes the next id and succeeds, the entry is
 * left alone, never AlreadyExists for a key that does not exist. */
static void foreign_entry_at_next_id_is_skipped(void **state)
{
    fixture *f = *state;
    lcow_error err;
    uint64_t id = lcow_metastore_peek_next_id(f->s->ms);
    char *foreign = lcow_snapshotter_dir_of(f->s, id);
    char *foreign2 = lcow_snapshotter_dir_of(f->s, id + 1);
    lcow_file *fh;
    ok(lcow_file_open(foreign, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &fh, &err), &err);
    lcow_file_close(fh);
    ok(lcow_os_mkdir(foreign2, &err), &err);
    lcow_mounts m = {0};
    ok(lcow_snapshotter_prepare(f->s, "k", "", NULL, &m, &err), &err);
    lcow_mounts_free(&m);
    lcow_meta_record rec;
    ok(lcow_metastore_get(f->s->ms, NULL, "k", &rec, &err), &err);
    assert_int_equal(rec.id, id + 2);
    lcow_meta_record_free(&rec);
    lcow_stat st = test_stat(foreign);
    assert_true(st.exists);
    assert_false(st.is_dir);
    assert_true(test_stat(foreign2).is_dir);
    ok(lcow_snapshotter_remove(f->s, "k", &err), &err);
    ok(lcow_os_remove(foreign, &err), &err);
    ok(lcow_os_remove_all(foreign2, &err), &err);
    free(foreign);
    free(foreign2);
}

/* CreateScratch builds with the configured --scratch-backend, as Prepare
 * does (it used to hard-code auto, so "virtdisk" and "native" were ignored).
 * virtdisk is unusable natively and under Wine: asking for it must fail the
 * same way for both calls and leave nothing behind. */
static void create_scratch_uses_configured_backend(void **state)
{
    fixture *f = *state;
    char why[160];
    if (lcow_vdisk_usable(why, sizeof why))
        skip(); /* a Windows host with virtdisk: the build would succeed */
    lcow_snapshotter_free(f->s);
    lcow_snapshotter_config c = {.root = f->root, .scratch_backend = LCOW_SCRATCH_VIRTDISK};
    lcow_error err;
    f->s = NULL;
    ok(lcow_snapshotter_open(&c, &f->s, &err), &err);
    char *out = test_fresh_dir("virtout"); /* not the root: create_scratch_never_in_root */
    char *target = lcow_path_join(out, "virt.vhdx");
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, target, 1, 0, &err),
                     LCOW_NOT_IMPLEMENTED);
    assert_non_null(strstr(err.message, "virtdisk"));
    assert_false(test_stat(target).exists);
    assert_int_equal(test_entries_matching(out, is_temp), 0);
    lcow_os_remove_all(out, &err);
    free(out);
    assert_int_equal(prep_scratch(f->s, "c1", NULL, &err), LCOW_NOT_IMPLEMENTED);
    assert_non_null(strstr(err.message, "virtdisk"));
    free(target);
}

#ifndef _WIN32
/* A FIFO at a template's name, in the root and in a rootfs.location
 * directory (issue 14, item 3): Prepare neither blocks on it nor fails; the
 * FIFO is moved aside and the template rebuilt. */
static void prepare_completes_with_a_fifo_at_the_template(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    char *location = test_fresh_dir("fifo-location");
    const char *dirs[] = {f->root, location};
    for (int i = 0; i < 2; i++) {
        char *template_path = lcow_path_join(dirs[i], "scratch_1.vhdx");
        assert_int_equal(mkfifo(template_path, 0600), 0);
        lcow_labels l = {0};
        lcow_labels_set(&l, LABEL_SIZE, "1");
        if (i == 1)
            lcow_labels_set(&l,
                            "containerd.io/snapshot/io.microsoft.container.storage.rootfs.location",
                            location);
        lcow_mounts m = {0};
        ok(lcow_snapshotter_prepare(f->s, i ? "c2" : "c1", "", &l, &m, &err), &err);
        lcow_mounts_free(&m);
        lcow_labels_free(&l);
        lcow_stat st = test_stat(template_path);
        assert_true(st.exists && !st.is_dir && !st.is_link);
        assert_disk_valid(template_path);
        free(template_path);
    }
    lcow_os_remove_all(location, &err);
    free(location);
}
#endif

/* ------------------------------------------------------------ Compact, ext4 usage */

#define MiB (1024u * 1024u)

/* Appends a payload block of junk for virtual MiB `mib` (free space in the
 * ext4 of a fresh disk) at the end of the file, as a deleted file's data
 * stays in the VHDX. */
static void add_junk_block(const char *path, unsigned mib)
{
    lcow_file *fh;
    lcow_error err;
    ok(lcow_file_open(path, LCOW_OPEN_READ | LCOW_OPEN_WRITE, &fh, &err), &err);
    lcow_vhdx_io io = lcow_vhdx_io_file(fh);
    lcow_vhdx_reader *r;
    ok(lcow_vhdx_reader_open(&io, &r, &err), &err);
    assert_int_equal(lcow_vhdx_reader_info(r)->block_size, MiB);
    uint64_t size;
    ok(lcow_file_size(fh, &size, &err), &err);
    uint64_t at = (size + MiB - 1) / MiB * MiB;
    uint8_t *junk = malloc(MiB);
    assert_non_null(junk);
    memset(junk, 0x5a, MiB);
    ok(lcow_file_pwrite(fh, junk, MiB, at, &err), &err);
    ok(lcow_vhdx_reader_begin_update(r, &err), &err);
    ok(lcow_vhdx_reader_set_block(r, mib, LCOW_VHDX_BLOCK_FULLY_PRESENT, at, &err), &err);
    lcow_vhdx_reader_free(r);
    lcow_file_close(fh);
    free(junk);
}

static void compact_gives_back_free_blocks_once_per_disk(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "default/1/owner", NULL, &err), &err);
    ok(prep_scratch(f->s, "default/2/member", "owner", &err), &err);
    ok(prep_scratch(f->s, "default/3/alone", NULL, &err), &err);
    char *owner = sandbox_of(f->s, id_of(f->s, "default/1/owner"));
    char *alone = sandbox_of(f->s, id_of(f->s, "default/3/alone"));
    add_junk_block(owner, 64);
    add_junk_block(owner, 72);

    /* Through the member: the shared disk is the owner's. */
    lcow_compact_summary sum;
    ok(lcow_snapshotter_compact(f->s, "default/2/member", &sum, &err), &err);
    assert_int_equal(sum.disks, 1);
    assert_int_equal(sum.bytes_before - sum.bytes_after, 2 * MiB);
    assert_int_equal((int64_t)test_stat(owner).size, sum.bytes_after);
    assert_disk_valid(owner);
    ok(lcow_snapshotter_compact(f->s, "default/1/owner", &sum, &err), &err);
    assert_int_equal(sum.bytes_before, sum.bytes_after);

    /* --all: two disks for three actives, each compacted once. */
    add_junk_block(owner, 80);
    add_junk_block(alone, 64);
    ok(lcow_snapshotter_compact_all(f->s, &sum, &err), &err);
    assert_int_equal(sum.disks, 2);
    assert_int_equal(sum.in_use, 0);
    assert_int_equal(sum.failed, 0);
    assert_int_equal(sum.bytes_before - sum.bytes_after, 2 * MiB);

    /* A disk someone holds is in use: refused, and skipped by --all. */
    add_junk_block(owner, 88);
    uint64_t held_size = test_stat(owner).size;
    lcow_file *held;
    ok(lcow_file_open(owner, LCOW_OPEN_READ | LCOW_OPEN_SHARE_NONE, &held, &err), &err);
    assert_int_equal(lcow_snapshotter_compact(f->s, "default/1/owner", &sum, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "in use"));
    ok(lcow_snapshotter_compact_all(f->s, &sum, &err), &err);
    assert_int_equal(sum.disks, 1);
    assert_int_equal(sum.in_use, 1);
    lcow_file_close(held);
    assert_int_equal(test_stat(owner).size, held_size);
    ok(lcow_snapshotter_compact(f->s, "default/1/owner", &sum, &err), &err);
    assert_int_equal(sum.bytes_before - sum.bytes_after, MiB);

    /* No disk: a view, a committed snapshot; no key. */
    lcow_mounts m = {0};
    commit(f->s, "default/4/sealed", "default/3/alone");
    ok(lcow_snapshotter_view(f->s, "default/5/v", "default/4/sealed", NULL, &m, &err), &err);
    lcow_mounts_free(&m);
    assert_int_equal(lcow_snapshotter_compact(f->s, "default/5/v", &sum, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_snapshotter_compact(f->s, "default/4/sealed", &sum, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_snapshotter_compact(f->s, "default/9/none", &sum, &err), LCOW_NOT_FOUND);
    check(f->s);
    free(owner);
    free(alone);
}

static void usage_has_the_ext4_view_of_a_scratch_disk(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    ok(prep_scratch(f->s, "default/1/c", NULL, &err), &err);
    ok(prep_scratch(f->s, "default/2/m", "c", &err), &err);
    ok(prep_scratch(f->s, "default/3/extract-1", NULL, &err), &err);
    lcow_usage u, um, ux;
    ok(lcow_snapshotter_usage(f->s, "default/1/c", &u, &err), &err);
    /* A fresh 1 GiB ext4 as df shows it: its tables are not counted, root
     * and lost+found (and the reserved inodes) are all it holds. */
    assert_true(u.ext4_total_bytes > 960ull * MiB && u.ext4_total_bytes < 1024ull * MiB);
    assert_int_equal(u.ext4_used_inodes, 11);
    assert_int_equal(u.ext4_total_inodes, 65536);
    assert_true(u.ext4_used_bytes > 0 && u.ext4_used_bytes < MiB);
    assert_true(u.size > 0);
    ok(lcow_snapshotter_usage(f->s, "default/2/m", &um, &err), &err);
    assert_int_equal(um.ext4_used_bytes, u.ext4_used_bytes);
    ok(lcow_snapshotter_usage(f->s, "default/3/extract-1", &ux, &err), &err);
    assert_int_equal(ux.ext4_used_bytes, 0);
    assert_int_equal(ux.ext4_used_inodes, 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(chain_128_layers),
        T(mounts_exactly_as_upstream),
        T(scratch_for_containers_not_extract_layers),
        T(byte_size_labels_size_the_scratch),
        T(shared_owner_is_exact_client_key_in_namespace),
        T(owner_removed_before_members_keeps_disk),
        T(scratch_failures_leave_nothing),
        T(scratch_creation_blocks_no_one),
        T(create_scratch_validates_path),
        T(create_scratch_never_in_root),
        T(foreign_entry_at_next_id_is_skipped),
#ifndef _WIN32
        T(prepare_completes_with_a_fifo_at_the_template),
#endif
        T(create_scratch_uses_configured_backend),
        T(compact_gives_back_free_blocks_once_per_disk),
        T(usage_has_the_ext4_view_of_a_scratch_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* core/snapshotter: the store itself. containerd's contract
 * (snapshotter_contract.c) against the real store, then what only a real
 * store has: close, error order and failed calls that change nothing,
 * usage, paging, directories and ids, persistence and crash recovery,
 * failure injection, concurrency and a kill at any instant. The LCOW mounts
 * and scratch policy are in test_snapshotter_lcow.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "core/metastore.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h"
#include "unit/snapshotter_contract.h"
#include "unit/snapshotter_fixture.h"
#include "unit/testlib.h"

/* ------------------------------------------------------------ the contract */

static lcow_snapshotter *contract_open(void **ctx)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "contract%d", n++);
    char *root = test_fresh_dir(name);
    *ctx = root;
    return open_at(root);
}

static void contract_close(lcow_snapshotter *s, void *ctx)
{
    char *root = ctx;
    check(s);
    lcow_snapshotter_free(s);
    lcow_error err;
    lcow_os_remove_all(root, &err);
    free(root);
}

static const contract_store real_store = {
    .name = "contract: core/snapshotter",
    .open = contract_open,
    .close = contract_close,
    .filters = true,
    .walk_unlocked = true,
};

/* ------------------------------------------------------------ close */

static void close_twice(void **state)
{
    fixture *f = *state;
    prep(f->s, "a", "");
    commit(f->s, "c", "a");
    rm(f->s, "c");
    assert_int_equal(lcow_snapshotter_close(f->s), LCOW_OK);
    assert_int_equal(lcow_snapshotter_close(f->s), LCOW_OK);
    lcow_error err;
    assert_int_equal(stat_code(f->s, "c"), LCOW_UNAVAILABLE);
    lcow_mounts m;
    assert_int_equal(lcow_snapshotter_prepare(f->s, "x", "", NULL, &m, &err), LCOW_UNAVAILABLE);
}

/* ------------------------------------------------------------ errors */

static void errors_and_failed_calls_change_nothing(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    lcow_info info;
    assert_int_equal(lcow_snapshotter_prepare(f->s, "", "", NULL, &m, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_snapshotter_view(f->s, "", "", NULL, &m, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "bad\xc3", "", NULL, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_snapshotter_stat(f->s, "", &info, &err), LCOW_NOT_FOUND);
    lcow_labels big = {0};
    char *v = calloc(1, 5000);
    memset(v, 'x', 4095);
    lcow_labels_set(&big, "kk", v);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "big", "", &big, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(stat_code(f->s, "big"), LCOW_NOT_FOUND);
    prep(f->s, "a", "");
    assert_int_equal(lcow_snapshotter_commit(f->s, "c", "a", &big, NULL, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(stat_code(f->s, "a"), LCOW_OK);
    lcow_info req = {.name = "a", .labels = big};
    assert_int_equal(lcow_snapshotter_update(f->s, &req, NULL, 0, &info, &err),
                     LCOW_INVALID_ARGUMENT);
    lcow_labels_free(&big);
    free(v);
    lcow_info empty = {.name = ""};
    assert_int_equal(lcow_snapshotter_update(f->s, &empty, NULL, 0, &info, &err),
                     LCOW_INVALID_ARGUMENT);

    /* prepare: parent missing -> NotFound, even when the key exists */
    assert_int_equal(lcow_snapshotter_prepare(f->s, "a", "nope", NULL, &m, &err), LCOW_NOT_FOUND);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "b", "a", NULL, &m, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "a", "", NULL, &m, &err), LCOW_ALREADY_EXISTS);
    /* commit: name exists -> AlreadyExists before the key check */
    view(f->s, "v", "");
    assert_int_equal(lcow_snapshotter_commit(f->s, "v", "nope", NULL, NULL, &err),
                     LCOW_ALREADY_EXISTS);
    assert_int_equal(lcow_snapshotter_commit(f->s, "a", "a", NULL, NULL, &err),
                     LCOW_ALREADY_EXISTS);
    assert_int_equal(lcow_snapshotter_commit(f->s, "c", "nope", NULL, NULL, &err), LCOW_NOT_FOUND);
    assert_int_equal(lcow_snapshotter_commit(f->s, "c", "v", NULL, NULL, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_snapshotter_commit(f->s, "", "a", NULL, NULL, &err),
                     LCOW_INVALID_ARGUMENT);
    commit(f->s, "c", "a");
    assert_int_equal(lcow_snapshotter_commit(f->s, "c2", "c", NULL, NULL, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_snapshotter_remove(f->s, "nope", &err), LCOW_NOT_FOUND);
    lcow_usage u;
    assert_int_equal(lcow_snapshotter_usage(f->s, "nope", &u, &err), LCOW_NOT_FOUND);
    /* nothing half-done anywhere */
    check(f->s);
    names n = {{0}};
    ok(lcow_snapshotter_walk(f->s, NULL, collect_names, &n, NULL, &err), &err);
    assert_string_equal(n.buf, "c v");
}

static void commit_resets_times_and_takes_commit_labels(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    lcow_labels pl = {0}, cl = {0};
    lcow_labels_set(&pl, "from", "prepare");
    lcow_labels_set(&cl, "to", "commit");
    ok(lcow_snapshotter_prepare(f->s, "a", "", &pl, &m, &err), &err);
    lcow_mounts_free(&m);
    lcow_info before, after;
    ok(lcow_snapshotter_stat(f->s, "a", &before, &err), &err);
    lcow_time t1 = lcow_os_time_now();
    ok(lcow_snapshotter_commit(f->s, "c", "a", &cl, NULL, &err), &err);
    lcow_time t2 = lcow_os_time_now();
    ok(lcow_snapshotter_stat(f->s, "c", &after, &err), &err);
    assert_true(time_between(after.created, t1, t2));
    assert_int_equal(lcow_time_cmp(after.created, after.updated), 0);
    assert_int_equal(after.labels.count, 1);
    assert_string_equal(lcow_labels_get(&after.labels, "to"), "commit");
    lcow_info_free(&before);
    lcow_info_free(&after);
    lcow_labels_free(&pl);
    lcow_labels_free(&cl);
}

/* ------------------------------------------------------------ usage */

static void write_file(const char *dir, const char *name, size_t size)
{
    char *path = lcow_path_join(dir, name);
    lcow_file *fh;
    lcow_error err;
    ok(lcow_file_open(path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_TRUNCATE, &fh, &err),
       &err);
    char *data = malloc(size);
    memset(data, 'x', size);
    ok(lcow_file_pwrite(fh, data, size, 0, &err), &err);
    lcow_file_close(fh);
    free(data);
    free(path);
}

static void usage_by_kind(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_usage u0, u1, uc;
    prep(f->s, "a", "");
    ok(lcow_snapshotter_usage(f->s, "a", &u0, &err), &err);
    char *dir = lcow_snapshotter_dir_of(f->s, id_of(f->s, "a"));
    write_file(dir, "layer.vhd", 64 * 1024);
    free(dir);
    ok(lcow_snapshotter_usage(f->s, "a", &u1, &err), &err);
    assert_true(u1.size >= u0.size + 64 * 1024);
    commit(f->s, "c", "a");
    ok(lcow_snapshotter_usage(f->s, "c", &uc, &err), &err);
    assert_int_equal(uc.size, u1.size);
    assert_int_equal(uc.inodes, u1.inodes);
    view(f->s, "v", "c");
    ok(lcow_snapshotter_usage(f->s, "v", &uc, &err), &err);
    assert_int_equal(uc.size, 0);
    assert_int_equal(uc.inodes, 0);
}

/* An active whose directory was deleted by hand (issue 14, item 10): the key
 * exists, so Usage and Commit answer FailedPrecondition naming the missing
 * directory, never NotFound; nothing is committed. */
static void missing_active_dir_is_failed_precondition(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_usage u;
    prep(f->s, "a", "");
    char *dir = lcow_snapshotter_dir_of(f->s, id_of(f->s, "a"));
    ok(lcow_os_remove_all(dir, &err), &err);
    assert_int_equal(lcow_snapshotter_usage(f->s, "a", &u, &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, dir));
    assert_int_equal(lcow_snapshotter_commit(f->s, "c", "a", NULL, NULL, &err),
                     LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, dir));
    lcow_info info;
    assert_int_equal(lcow_snapshotter_stat(f->s, "c", &info, &err), LCOW_NOT_FOUND);
    ok(lcow_snapshotter_stat(f->s, "a", &info, &err), &err);
    assert_int_equal(info.kind, LCOW_KIND_ACTIVE);
    lcow_info_free(&info);
    ok(lcow_snapshotter_remove(f->s, "a", &err), &err);
    free(dir);
}

/* The state directory is lcowsnap's own (issue 14, item 3): a symbolic
 * link, FIFO, device node or file where the root or one of its directories
 * (snapshots, tmp, meta) belongs is refused at open with FailedPrecondition
 * naming it, nothing is created, no link is followed out of the root, no
 * FIFO is waited on. Before: the root's link and a link at snapshots/ or
 * meta/ were followed (the store lived outside its root), a FIFO at tmp/
 * was "already exists". */
static lcow_code open_plain(const char *root, lcow_error *err)
{
    lcow_snapshotter_config c = {.root = root, .no_scratch = true};
    lcow_snapshotter *s = NULL;
    lcow_code rc = lcow_snapshotter_open(&c, &s, err);
    lcow_snapshotter_free(s);
    return rc;
}

static void state_dir_entries_of_the_wrong_type_are_refused(void **state)
{
    fixture *f = *state;
    lcow_error err;
    char *outside = test_fresh_dir("state-outside");
    char *base = test_fresh_dir("state-base");
    const char *names[] = {"", "snapshots", "tmp", "meta"};
    int kinds = 2; /* a directory elsewhere: linked; a plain file */
#ifndef _WIN32
    kinds = 5; /* and a FIFO, a socket-less device node, a dangling link */
#endif
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        for (int kind = 0; kind < kinds; kind++) {
            char sub[32];
            snprintf(sub, sizeof sub, "r%zu-%d", n, kind);
            char *root = lcow_path_join(base, sub);
            char *entry = n ? lcow_path_join(root, names[n]) : lcow_path_join(root, "");
            if (n)
                ok(lcow_os_mkdir(root, &err), &err);
            lcow_code made = LCOW_OK;
            if (kind == 0) {
                made = lcow_os_symlink(outside, entry, &err);
                if (made == LCOW_NOT_IMPLEMENTED) { /* Wine without symlinks */
                    free(entry);
                    free(root);
                    continue;
                }
            } else if (kind == 1) {
                lcow_file *fl;
                made = lcow_file_open(entry, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &fl, &err);
                lcow_file_close(fl);
            }
#ifndef _WIN32
            else if (kind == 2) {
                made = mkfifo(entry, 0600) == 0 ? LCOW_OK : LCOW_INTERNAL;
            } else if (kind == 3) {
                if (mknod(entry, S_IFCHR | 0600, makedev(1, 3)) != 0) { /* not root */
                    free(entry);
                    free(root);
                    continue;
                }
            } else {
                char *gone = lcow_path_join(outside, "gone");
                made = symlink(gone, entry) == 0 ? LCOW_OK : LCOW_INTERNAL;
                free(gone);
            }
#endif
            ok(made, &err);
            lcow_stat before;
            ok(lcow_os_stat(entry, &before, &err), &err);
            assert_true(before.exists);
            lcow_code rc = open_plain(root, &err);
            if (rc != LCOW_FAILED_PRECONDITION)
                fail_msg("%s as kind %d: %d %s", entry, kind, rc, err.message);
            assert_non_null(strstr(err.message, entry));
            /* nothing changed: the entry is as it was, nothing was created
             * beside it or through it */
            lcow_stat after;
            ok(lcow_os_stat(entry, &after, &err), &err);
            assert_true(after.exists && after.is_link == before.is_link &&
                        after.is_dir == before.is_dir && after.is_regular == before.is_regular);
            if (n)
                assert_int_equal(test_entries_in(root), 1);
            assert_int_equal(test_entries_in(outside), 0);
            free(entry);
            free(root);
        }
    }
    /* A real directory at every name opens. */
    char *good = lcow_path_join(base, "good");
    ok(open_plain(good, &err), &err);
    ok(open_plain(good, &err), &err);
    free(good);
    free(base);
    free(outside);
    (void)f;
}

/* ------------------------------------------------------------ paging */

static void walk_paging(void **state)
{
    fixture *f = *state;
    lcow_error err;
    char key[16];
    for (int i = 0; i < 10; i += 2) {
        snprintf(key, sizeof key, "k%02d", i);
        prep(f->s, key, "");
    }
    lcow_walk_options wo = {.limit = 2};
    names n = {{0}};
    char *next = NULL;
    ok(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, &next, &err), &err);
    assert_string_equal(n.buf, "k00 k02");
    assert_non_null(next);
    /* snapshots added meanwhile, before and after the cursor */
    prep(f->s, "k01", "");
    prep(f->s, "k03", "");
    n.buf[0] = '\0';
    wo.after = next;
    char *next2 = NULL;
    ok(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, &next2, &err), &err);
    assert_string_equal(n.buf, "k03 k04");
    free(next);
    n.buf[0] = '\0';
    wo.after = next2;
    ok(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, &next, &err), &err);
    assert_string_equal(n.buf, "k06 k08");
    assert_null(next); /* nothing follows */
    free(next2);
    /* limit with a filter */
    const char *flt[] = {"name~=^k0[13]"};
    wo = (lcow_walk_options){.filters = flt, .filter_count = 1, .limit = 1};
    n.buf[0] = '\0';
    ok(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, &next, &err), &err);
    assert_string_equal(n.buf, "k01");
    assert_string_equal(next, "k01");
    wo.after = next;
    n.buf[0] = '\0';
    ok(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, &next2, &err), &err);
    assert_string_equal(n.buf, "k03");
    assert_null(next2);
    free(next);
}

/* ------------------------------------------------------------ files, ids */

static void directories_follow_kinds(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    prep(f->s, "a", "");
    uint64_t a = id_of(f->s, "a");
    assert_true(dir_exists(f->s, a));
    commit(f->s, "c", "a");
    assert_true(dir_exists(f->s, a)); /* nothing moves on commit */
    ok(lcow_snapshotter_view(f->s, "v", "c", NULL, &m, &err), &err);
    lcow_mounts_free(&m);
    rm(f->s, "v");
    rm(f->s, "c");
    assert_false(dir_exists(f->s, a));
    prep(f->s, "a", "");
    assert_true(id_of(f->s, "a") > a);
}

static void reopen_keeps_state_and_never_reuses_ids(void **state)
{
    fixture *f = *state;
    prep(f->s, "a", "");
    uint64_t a = id_of(f->s, "a");
    commit(f->s, "c", "a");
    prep(f->s, "b", "c");
    uint64_t b = id_of(f->s, "b");
    rm(f->s, "b"); /* its id was the highest in use */
    lcow_snapshotter_free(f->s);
    f->s = open_at(f->root);
    assert_int_equal(stat_code(f->s, "c"), LCOW_OK);
    assert_int_equal(stat_code(f->s, "b"), LCOW_NOT_FOUND);
    assert_true(dir_exists(f->s, a));
    prep(f->s, "b", "c");
    assert_true(id_of(f->s, "b") > b);
    check(f->s);
}

static void crash_recovery_removes_orphans(void **state)
{
    fixture *f = *state;
    lcow_error err;
    prep(f->s, "keep", "");
    uint64_t keep = id_of(f->s, "keep");
    prep(f->s, "gone", "");
    uint64_t gone = id_of(f->s, "gone");
    lcow_snapshotter_free(f->s);
    f->s = NULL;
    /* Crash states: a Remove after its batch (record gone, dir present), a
     * Remove mid-delete (rm-*), a Prepare before its batch (dir with a newer
     * id), a stray work file. The metadata side of "gone" is removed by
     * reopening the metastore directly. */
    char *meta = lcow_path_join(f->root, "meta");
    lcow_metastore *ms;
    ok(lcow_metastore_open(meta, NULL, &ms, &err), &err);
    lcow_meta_remove_effect eff;
    ok(lcow_metastore_remove(ms, "gone", &eff, &err), &err);
    lcow_metastore_close(ms);
    free(meta);
    char *snaps = lcow_path_join(f->root, "snapshots");
    char *rm7 = lcow_path_join(snaps, "rm-7"), *future = lcow_path_join(snaps, "999999");
    char *junk = lcow_path_join(snaps, "junk"), *tmp = lcow_path_join(f->root, "tmp");
    ok(lcow_os_mkdir(rm7, &err), &err);
    write_file(rm7, "sandbox.vhdx", 4096);
    ok(lcow_os_mkdir(future, &err), &err);
    write_file(snaps, "junk", 10);
    write_file(tmp, "work.tmp", 10);
    f->s = open_at(f->root);
    check(f->s);
    assert_true(dir_exists(f->s, keep));
    assert_false(dir_exists(f->s, gone));
    lcow_stat st;
    ok(lcow_os_stat(rm7, &st, &err), &err);
    assert_false(st.exists);
    ok(lcow_os_stat(future, &st, &err), &err);
    assert_false(st.exists);
    ok(lcow_os_stat(junk, &st, &err), &err);
    assert_false(st.exists);
    char *work = lcow_path_join(tmp, "work.tmp");
    ok(lcow_os_stat(work, &st, &err), &err);
    assert_false(st.exists);
    /* Cleanup does the same while running. */
    ok(lcow_os_mkdir(rm7, &err), &err);
    assert_int_not_equal(lcow_snapshotter_check(f->s, &err), LCOW_OK);
    ok(lcow_snapshotter_cleanup(f->s, &err), &err);
    check(f->s);
    free(work);
    free(snaps);
    free(rm7);
    free(future);
    free(junk);
    free(tmp);
}

static void newer_schema_refused_by_open(void **state)
{
    fixture *f = *state;
    lcow_snapshotter_free(f->s);
    f->s = NULL;
    char *meta = lcow_path_join(f->root, "meta");
    lcow_metastore *ms;
    lcow_error err;
    ok(lcow_metastore_open(meta, NULL, &ms, &err), &err);
    ok(lcow_metastore_set_schema_version(ms, 99, &err), &err);
    lcow_metastore_close(ms);
    free(meta);
    lcow_snapshotter_config c = {.root = f->root};
    lcow_snapshotter *s = NULL;
    assert_int_equal(lcow_snapshotter_open(&c, &s, &err), LCOW_FAILED_PRECONDITION);
    assert_null(s);
    assert_non_null(strstr(err.message, "schema version 99"));
    lcow_snapshotter_config rel = {.root = "relative/root"};
    assert_int_equal(lcow_snapshotter_open(&rel, &s, &err), LCOW_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------ failure injection */

static const lcow_os_op fault_ops[] = {LCOW_OS_OP_MKDIR,  LCOW_OS_OP_SYNC,    LCOW_OS_OP_RENAME,
                                       LCOW_OS_OP_REMOVE, LCOW_OS_OP_LIST,    LCOW_OS_OP_OPEN,
                                       LCOW_OS_OP_WRITE,  LCOW_OS_OP_LINK,    LCOW_OS_OP_COPY,
                                       LCOW_OS_OP_READ,   LCOW_OS_OP_TRUNCATE};
static const lcow_os_fault faults[] = {LCOW_FAULT_ENOSPC, LCOW_FAULT_EIO, LCOW_FAULT_EACCES};

static void failure_injection_leaves_store_consistent(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    if (!lcow_os_fault_arm(LCOW_OS_OP_MKDIR, 0, LCOW_FAULT_NONE, false))
        skip();
    prep(f->s, "base-prep", "");
    commit(f->s, "base", "base-prep");
    int n = 0, injected = 0;
    for (size_t o = 0; o < sizeof fault_ops / sizeof fault_ops[0]; o++) {
        for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++) {
            for (unsigned nth = 1; nth <= 3; nth++) {
                char key[64], name[64];
                snprintf(key, sizeof key, "a-%d", n);
                snprintf(name, sizeof name, "c-%d", n++);

                /* prepare */
                lcow_os_fault_clear();
                lcow_os_fault_arm(fault_ops[o], nth, faults[k], false);
                lcow_code rc = lcow_snapshotter_prepare(f->s, key, "base", NULL, &m, &err);
                bool fired = lcow_os_fault_calls(fault_ops[o]) >= nth;
                lcow_os_fault_clear();
                injected += fired;
                if (rc == LCOW_OK)
                    lcow_mounts_free(&m);
                else
                    assert_int_equal(stat_code(f->s, key), LCOW_NOT_FOUND);
                check(f->s);
                if (rc != LCOW_OK)
                    prep(f->s, key, "base"); /* the next call succeeds */

                /* commit */
                lcow_os_fault_arm(fault_ops[o], nth, faults[k], false);
                rc = lcow_snapshotter_commit(f->s, name, key, NULL, NULL, &err);
                lcow_os_fault_clear();
                if (rc != LCOW_OK) {
                    assert_int_equal(stat_code(f->s, key), LCOW_OK);
                    assert_int_equal(stat_code(f->s, name), LCOW_NOT_FOUND);
                    check(f->s);
                    commit(f->s, name, key);
                }
                check(f->s);

                /* remove: metadata goes first, so it succeeds; what a
                 * failed delete leaves behind is an orphan for Cleanup. */
                lcow_os_fault_arm(fault_ops[o], nth, faults[k], false);
                rc = lcow_snapshotter_remove(f->s, name, &err);
                lcow_os_fault_clear();
                if (rc != LCOW_OK) {
                    assert_int_equal(stat_code(f->s, name), LCOW_OK);
                    rm(f->s, name);
                }
                assert_int_equal(stat_code(f->s, name), LCOW_NOT_FOUND);
                ok(lcow_snapshotter_cleanup(f->s, &err), &err);
                check(f->s);
            }
        }
    }
    assert_true(injected > 0);
    /* A persistent fault on every mkdir: prepare fails cleanly each time. */
    lcow_os_fault_arm(LCOW_OS_OP_MKDIR, 1, LCOW_FAULT_ENOSPC, true);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "full", "base", NULL, &m, &err),
                     LCOW_RESOURCE_EXHAUSTED);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "full", "base", NULL, &m, &err),
                     LCOW_RESOURCE_EXHAUSTED);
    lcow_os_fault_clear();
    check(f->s);
    prep(f->s, "full", "base");
}

/* ------------------------------------------------------------ held files */

static atomic_int removal_events;

static void count_removal_event(void *ctx, const char *path, const char *reason)
{
    (void)ctx;
    assert_non_null(strstr(path, "snapshots"));
    assert_true(reason && *reason);
    atomic_fetch_add(&removal_events, 1);
}

static lcow_snapshotter *open_retrying(const char *root)
{
    lcow_snapshotter_config c = {.root = root,
                                 .no_scratch = true,
                                 .removal_retry_ms = 5,
                                 .on_removal_queued = count_removal_event};
    lcow_snapshotter *s = NULL;
    lcow_error err;
    ok(lcow_snapshotter_open(&c, &s, &err), &err);
    return s;
}

/* The snapshot directory (<id> or the removal name rm-<id>) that still
 * exists, NULL when neither does. */
static char *left_over(lcow_snapshotter *s, uint64_t id)
{
    char name[40];
    snprintf(name, sizeof name, "rm-%" PRIu64, id);
    char *paths[2] = {lcow_snapshotter_dir_of(s, id), lcow_path_join(s->snapshots_dir, name)};
    char *found = NULL;
    for (int i = 0; i < 2; i++) {
        lcow_stat st;
        lcow_error err;
        ok(lcow_os_stat(paths[i], &st, &err), &err);
        if (st.exists && !found)
            found = paths[i];
        else
            free(paths[i]);
    }
    return found;
}

/* A file held open in a snapshot's directory (Windows, Wine: a handle
 * without delete sharing, as a VM holds sandbox.vhdx; elsewhere, where an
 * open file never stops unlink, the fault seam's EBUSY): Remove succeeds,
 * the directory is queued, a restart resumes the queue, and the directory
 * goes once the file is released. */
static void held_file_deletion_is_queued_and_resumed(void **state)
{
    fixture *f = *state;
    lcow_error err;
    bool windows = LCOW_PATH_SEP == '\\';
    if (!windows && !lcow_os_fault_arm(LCOW_OS_OP_REMOVE, 0, LCOW_FAULT_NONE, false))
        skip(); /* no fault seam in this build */
    lcow_snapshotter_free(f->s);
    atomic_store(&removal_events, 0);
    f->s = open_retrying(f->root);
    prep(f->s, "held", "");
    prep(f->s, "free", "");
    uint64_t id = id_of(f->s, "held"), free_id = id_of(f->s, "free");
    char *dir = lcow_snapshotter_dir_of(f->s, id);
    char *disk = lcow_path_join(dir, "sandbox.vhdx");
    lcow_file *hold = NULL;
    ok(lcow_file_open(disk,
                      LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_SHARE_NONE,
                      &hold, &err),
       &err);
    ok(lcow_file_pwrite(hold, "vhdx", 4, 0, &err), &err);
    if (!windows)
        assert_true(lcow_os_fault_arm(LCOW_OS_OP_REMOVE, 1, LCOW_FAULT_EBUSY, true));

    rm(f->s, "held");
    assert_int_equal(stat_code(f->s, "held"), LCOW_NOT_FOUND);
    assert_int_equal(lcow_snapshotter_pending_removals(f->s), 1);
    assert_int_equal(atomic_load(&removal_events), 1);
    char *left = left_over(f->s, id);
    assert_non_null(left); /* still on disk, but queued: */
    assert_true(lcow_snapshotter_removal_queued(f->s, left));
    free(left);
    check(f->s);
    /* Cleanup queues rather than fails, and does not queue twice. */
    ok(lcow_snapshotter_cleanup(f->s, &err), &err);
    assert_int_equal(lcow_snapshotter_pending_removals(f->s), 1);
    assert_int_equal(atomic_load(&removal_events), 1);
    assert_int_equal(lcow_snapshotter_retry_removals(f->s), 1);

    /* A restart while the file is still held: open succeeds and the sweep
     * queues the directory again. */
    lcow_snapshotter_free(f->s);
    f->s = open_retrying(f->root);
    assert_int_equal(lcow_snapshotter_pending_removals(f->s), 1);
    assert_int_equal(atomic_load(&removal_events), 2);
    assert_true(dir_exists(f->s, free_id));
    check(f->s);

    /* Released: the reaper deletes it on its own (a generous deadline; the
     * backoff is milliseconds). */
    lcow_file_close(hold);
    lcow_os_fault_clear();
    for (int i = 0; i < 6000 && lcow_snapshotter_pending_removals(f->s) > 0; i++)
        test_sleep_ms(10);
    assert_int_equal(lcow_snapshotter_pending_removals(f->s), 0);
    left = left_over(f->s, id);
    assert_null(left);
    assert_true(dir_exists(f->s, free_id));
    check(f->s);
    free(disk);
    free(dir);
}

/* ------------------------------------------------------------ concurrency */

typedef struct race {
    lcow_snapshotter *s;
    int index;
    int wins;
    int lost;
    int other;
} race;

static void *prepare_same_key(void *arg)
{
    race *r = arg;
    lcow_mounts m;
    lcow_error err;
    lcow_code rc = lcow_snapshotter_prepare(r->s, "contended", "", NULL, &m, &err);
    if (rc == LCOW_OK) {
        r->wins++;
        lcow_mounts_free(&m);
    } else if (rc == LCOW_ALREADY_EXISTS) {
        r->lost++;
    } else {
        r->other++;
    }
    return NULL;
}

static void concurrent_prepare_of_one_key(void **state)
{
    fixture *f = *state;
    for (int round = 0; round < 5; round++) {
        race r[8];
        lcow_thread t[8];
        for (int i = 0; i < 8; i++) {
            r[i] = (race){.s = f->s, .index = i};
            assert_true(lcow_thread_create(&t[i], prepare_same_key, &r[i]));
        }
        int wins = 0, lost = 0, other = 0;
        for (int i = 0; i < 8; i++) {
            lcow_thread_join(t[i], NULL);
            wins += r[i].wins;
            lost += r[i].lost;
            other += r[i].other;
        }
        assert_int_equal(wins, 1);
        assert_int_equal(lost, 7);
        assert_int_equal(other, 0);
        check(f->s);
        rm(f->s, "contended");
    }
}

static void *stat_until_closed(void *arg)
{
    race *r = arg;
    for (;;) {
        lcow_info info;
        lcow_error err;
        lcow_code rc = lcow_snapshotter_stat(r->s, "a", &info, &err);
        lcow_info_free(&info);
        names n = {{0}};
        if (rc == LCOW_OK)
            rc = lcow_snapshotter_walk(r->s, NULL, collect_names, &n, NULL, &err);
        if (rc == LCOW_UNAVAILABLE)
            break;
        if (rc != LCOW_OK)
            r->other++;
        else
            r->wins++;
    }
    return NULL;
}

static void close_waits_for_running_calls(void **state)
{
    fixture *f = *state;
    prep(f->s, "a", "");
    race r[4];
    lcow_thread t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (race){.s = f->s, .index = i};
        assert_true(lcow_thread_create(&t[i], stat_until_closed, &r[i]));
    }
    /* let them run, then close under their feet */
    for (int i = 0; i < 200; i++) {
        lcow_info info;
        lcow_snapshotter_stat(f->s, "a", &info, NULL);
        lcow_info_free(&info);
    }
    assert_int_equal(lcow_snapshotter_close(f->s), LCOW_OK);
    for (int i = 0; i < 4; i++) {
        lcow_thread_join(t[i], NULL);
        assert_int_equal(r[i].other, 0);
    }
}

#define STRESS_THREADS 8
#define STRESS_OPS 150

static void *stress_worker(void *arg)
{
    race *r = arg;
    lcow_snapshotter *s = r->s;
    unsigned seed = 1234u + (unsigned)r->index * 7919u;
    char key[64], name[64], parent[64] = "";
    lcow_error err;
    lcow_mounts m;
    for (int i = 0; i < STRESS_OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned op = (seed >> 16) % 8;
        snprintf(key, sizeof key, "t%d/%d/k%u", r->index, i % 7, (seed >> 8) % 5);
        lcow_code rc = LCOW_OK;
        switch (op) {
        case 0:
        case 1:
            /* prepare on a shared committed parent (from any thread) */
            rc = lcow_snapshotter_prepare(s, key, (seed & 1) ? "shared-base" : parent, NULL, &m,
                                          &err);
            if (rc == LCOW_OK)
                lcow_mounts_free(&m);
            if (rc == LCOW_NOT_FOUND || rc == LCOW_ALREADY_EXISTS || rc == LCOW_INVALID_ARGUMENT)
                rc = LCOW_OK;
            break;
        case 2:
            snprintf(name, sizeof name, "t%d/c%d", r->index, i);
            rc = lcow_snapshotter_commit(s, name, key, NULL, NULL, &err);
            if (rc == LCOW_OK)
                strcpy(parent, name);
            if (rc == LCOW_NOT_FOUND || rc == LCOW_FAILED_PRECONDITION)
                rc = LCOW_OK;
            break;
        case 3:
            rc = lcow_snapshotter_view(s, key, "shared-base", NULL, &m, &err);
            if (rc == LCOW_OK)
                lcow_mounts_free(&m);
            if (rc == LCOW_ALREADY_EXISTS)
                rc = LCOW_OK;
            break;
        case 4:
            rc = lcow_snapshotter_remove(s, key, &err);
            if (rc == LCOW_NOT_FOUND || rc == LCOW_FAILED_PRECONDITION)
                rc = LCOW_OK;
            break;
        case 5: {
            lcow_info info;
            rc = lcow_snapshotter_stat(s, key, &info, &err);
            lcow_info_free(&info);
            if (rc == LCOW_NOT_FOUND)
                rc = LCOW_OK;
            break;
        }
        case 6: {
            names n = {{0}};
            lcow_walk_options wo = {.limit = 5, .after = key};
            char *next = NULL;
            rc = lcow_snapshotter_walk(s, &wo, collect_names, &n, &next, &err);
            free(next);
            break;
        }
        default: {
            lcow_info req = {.name = key};
            lcow_labels_set(&req.labels, "n", "1");
            lcow_info out;
            rc = lcow_snapshotter_update(s, &req, NULL, 0, &out, &err);
            if (rc == LCOW_OK)
                lcow_info_free(&out);
            lcow_labels_free(&req.labels);
            if (rc == LCOW_NOT_FOUND)
                rc = LCOW_OK;
            break;
        }
        }
        if (rc != LCOW_OK) {
            fprintf(stderr, "stress thread %d op %u on %s: %s: %s\n", r->index, op, key,
                    lcow_code_name(rc), err.message);
            r->other++;
        }
    }
    return NULL;
}

static void stress_eight_threads(void **state)
{
    fixture *f = *state;
    prep(f->s, "shared-base-prep", "");
    commit(f->s, "shared-base", "shared-base-prep");
    race r[STRESS_THREADS];
    lcow_thread t[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        r[i] = (race){.s = f->s, .index = i};
        assert_true(lcow_thread_create(&t[i], stress_worker, &r[i]));
    }
    /* Cleanup concurrently with the writers must not eat live directories. */
    lcow_error err, first = {0};
    int cleanup_failures = 0;
    for (int i = 0; i < 5; i++)
        if (lcow_snapshotter_cleanup(f->s, &err) != LCOW_OK && cleanup_failures++ == 0)
            first = err;
    int failures = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        lcow_thread_join(t[i], NULL);
        failures += r[i].other;
    }
    if (cleanup_failures)
        fail_msg("cleanup during the stress run: %s", first.message);
    assert_int_equal(failures, 0);
    check(f->s);
    lcow_snapshotter_free(f->s);
    f->s = open_at(f->root);
    check(f->s);
}

/* ------------------------------------------------------------ kill at any instant */

/* The child mode of this executable: runs a random mix of operations on
 * ROOT and is killed from inside (_Exit from a watchdog thread) after a
 * pseudo-random amount of work, wherever the main thread happens to be:
 * between mkdir and the batch, between a batch and the rename, in the
 * middle of a scratch copy. The parent then reopens and checks. */
static const char *self_path;
static _Atomic unsigned crash_ops;

typedef struct watchdog {
    unsigned after_ops;
    unsigned spin;
} watchdog;

static void *crash_watchdog(void *arg)
{
    watchdog *w = arg;
    while (crash_ops < w->after_ops)
        ;
    for (volatile unsigned i = 0; i < w->spin; i++)
        ;
    _Exit(0);
    return NULL;
}

static int crash_child(const char *root, unsigned seed)
{
    lcow_snapshotter_config c = {.root = root};
    lcow_snapshotter *s;
    lcow_error err;
    if (lcow_snapshotter_open(&c, &s, &err) != LCOW_OK) {
        fprintf(stderr, "crash child: open: %s\n", err.message);
        return 3;
    }
    watchdog w = {.after_ops = 5 + seed % 40, .spin = (seed * 2654435761u) % 3000000u};
    lcow_thread t;
    if (!lcow_thread_create(&t, crash_watchdog, &w))
        return 4;
    lcow_labels sized = {0}, shared = {0};
    lcow_labels_set(&sized, LABEL_SIZE, "1");
    lcow_labels_set(&shared, LABEL_REUSE, "true");
    lcow_labels_set(&shared, LABEL_OWNER, "owner");
    lcow_mounts m;
lcow_prepare_owner:
    if (lcow_snapshotter_prepare(s, "ns/1/owner", "", &sized, &m, &err) == LCOW_OK)
        lcow_mounts_free(&m);
    for (unsigned i = 0;; i++) {
        char key[64], name[64];
        unsigned r = (seed + i) * 1103515245u + 12345u;
        snprintf(key, sizeof key, "ns/%u/%s-%u", 2 + r % 5, (r >> 3) % 3 ? "extract" : "c", r % 11);
        snprintf(name, sizeof name, "ns/%u/layer-%u", 2 + r % 5, (r >> 5) % 7);
        switch ((r >> 8) % 6) {
        case 0:
        case 1:
            if (lcow_snapshotter_prepare(s, key, (r >> 4) % 2 ? "" : "ns/2/layer-1",
                                         (r >> 12) % 3 ? &sized : &shared, &m, &err) == LCOW_OK)
                lcow_mounts_free(&m);
            break;
        case 2:
            lcow_snapshotter_commit(s, name, key, NULL, NULL, &err);
            break;
        case 3:
            lcow_snapshotter_remove(s, (r >> 9) % 2 ? key : name, &err);
            break;
        case 4:
            if (lcow_snapshotter_view(s, key, name, NULL, &m, &err) == LCOW_OK)
                lcow_mounts_free(&m);
            break;
        default:
            if ((r >> 10) % 4 == 0) {
                lcow_snapshotter_remove(s, "ns/1/owner", &err);
                goto lcow_prepare_owner;
            }
            lcow_snapshotter_cleanup(s, &err);
            break;
        }
        crash_ops++;
    }
}

/* Runs a command line and returns its exit status. On Windows the child is
 * started directly (CreateProcess, this test's console handles), not through
 * cmd.exe as system() does: one process fewer to fail under load, and a
 * child that cannot be started is named with its Windows error (system()
 * returned a bare -1 once, under stress-ng). */
static int run_child(char *cmdline)
{
#ifdef _WIN32
    STARTUPINFOA si;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    PROCESS_INFORMATION pi;
    if (!CreateProcessA(NULL, cmdline, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
        fail_msg("CreateProcess %s: Windows error %lu", cmdline, (unsigned long)GetLastError());
    WaitForSingleObject(pi.hProcess, INFINITE);
    DWORD code = 0;
    if (!GetExitCodeProcess(pi.hProcess, &code))
        fail_msg("GetExitCodeProcess: Windows error %lu", (unsigned long)GetLastError());
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return (int)code;
#else
    int status = system(cmdline);
    if (status == -1)
        fail_msg("system(%s) failed", cmdline);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
#endif
}

static void killed_at_any_instant_reopens_clean(void **state)
{
    fixture *f = *state;
    if (!self_path)
        skip();
    lcow_snapshotter_free(f->s);
    f->s = NULL;
    uint64_t last_id = 0;
    for (unsigned round = 0; round < 12; round++) {
        char cmd[4096];
#ifdef _WIN32
        snprintf(cmd, sizeof cmd, "\"%s\" --crash-child \"%s\" %u", self_path, f->root,
                 round * 7919u + 13u);
#else
        snprintf(cmd, sizeof cmd, "'%s' --crash-child '%s' %u", self_path, f->root,
                 round * 7919u + 13u);
#endif
        int status = run_child(cmd);
        if (status != 0)
            fail_msg("round %u: the crash child exited with %d (0x%x): %s", round, status,
                     (unsigned)status, cmd);
        lcow_snapshotter *s = open_at(f->root);
        lcow_error err;
        lcow_code rc = lcow_snapshotter_check(s, &err);
        if (rc != LCOW_OK)
            fail_msg("round %u: %s", round, err.message);
        /* ids keep growing across crashes */
        prep(s, "probe", "");
        uint64_t id = id_of(s, "probe");
        assert_true(id > last_id);
        last_id = id;
        rm(s, "probe");
        check(s);
        lcow_snapshotter_free(s);
    }
    f->s = open_at(f->root);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--crash-child") == 0)
        return crash_child(argv[2], (unsigned)strtoul(argv[3], NULL, 10));
    self_path = argc > 0 ? argv[0] : NULL;
    int failed = contract_run(&real_store);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(close_twice),
        T(errors_and_failed_calls_change_nothing),
        T(commit_resets_times_and_takes_commit_labels),
        T(usage_by_kind),
        T(missing_active_dir_is_failed_precondition),
        T(state_dir_entries_of_the_wrong_type_are_refused),
        T(walk_paging),
        T(directories_follow_kinds),
        T(reopen_keeps_state_and_never_reuses_ids),
        T(crash_recovery_removes_orphans),
        T(newer_schema_refused_by_open),
        T(failure_injection_leaves_store_consistent),
        T(held_file_deletion_is_queued_and_resumed),
        T(concurrent_prepare_of_one_key),
        T(close_waits_for_running_calls),
        T(stress_eight_threads),
        T(killed_at_any_instant_reopens_clean),
    };
    return failed + cmocka_run_group_tests_name("core/snapshotter", tests, NULL, NULL);
}

/* containerd's snapshotter contract as a test suite parameterised by how a
 * store is opened, as containerd's SnapshotterSuite(t, name, fn): the real
 * store runs it (test_snapshotter.c) and so does the in-memory fake core of
 * the RPC tests (test_rpc_fake_core.c), so the fake answers the way the
 * store does. The fake of test_dispatch.c only records the calls it gets
 * and keeps no snapshots: the contract does not apply to it.
 *
 * Also the small helpers every snapshotter test uses (cmocka asserts). */
#ifndef LCOW_TEST_SNAPSHOTTER_CONTRACT_H
#define LCOW_TEST_SNAPSHOTTER_CONTRACT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/snapshotter.h"

#define GC_ROOT "containerd.io/gc.root"

typedef struct contract_store {
    const char *name;
    /* A fresh, empty store; *ctx goes to close. Fails the test on error. */
    lcow_snapshotter *(*open)(void **ctx);
    /* Checks the store's invariants where it has a checker, then frees it. */
    void (*close)(lcow_snapshotter *s, void *ctx);
    bool filters;       /* Walk takes containerd's filter expressions */
    bool walk_unlocked; /* a Walk callback may call the store (Stat, Prepare) */
} contract_store;

/* Runs every case of the contract against store (a cmocka group named
 * store->name); returns the number of failed cases. */
int contract_run(const contract_store *store);

static inline void ok(lcow_code rc, const lcow_error *err)
{
    if (rc != LCOW_OK)
        fail_msg("unexpected %s: %s", lcow_code_name(rc), err->message);
}

static inline void prep(lcow_snapshotter *s, const char *key, const char *parent)
{
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_prepare(s, key, parent, NULL, &m, &err), &err);
    assert_int_equal(m.count, 1);
    lcow_mounts_free(&m);
}

static inline void view(lcow_snapshotter *s, const char *key, const char *parent)
{
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_view(s, key, parent, NULL, &m, &err), &err);
    lcow_mounts_free(&m);
}

static inline void commit(lcow_snapshotter *s, const char *name, const char *key)
{
    lcow_error err;
    ok(lcow_snapshotter_commit(s, name, key, NULL, NULL, &err), &err);
}

static inline void rm(lcow_snapshotter *s, const char *key)
{
    lcow_error err;
    ok(lcow_snapshotter_remove(s, key, &err), &err);
}

static inline lcow_code stat_code(lcow_snapshotter *s, const char *key)
{
    lcow_info info;
    lcow_code rc = lcow_snapshotter_stat(s, key, &info, NULL);
    lcow_info_free(&info);
    return rc;
}

static inline void assert_info_equal(const lcow_info *a, const lcow_info *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->parent, b->parent);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(lcow_time_cmp(a->created, b->created), 0);
    assert_int_equal(lcow_time_cmp(a->updated, b->updated), 0);
    assert_int_equal(a->labels.count, b->labels.count);
    for (size_t i = 0; i < a->labels.count; i++) {
        assert_string_equal(a->labels.items[i].key, b->labels.items[i].key);
        assert_string_equal(a->labels.items[i].value, b->labels.items[i].value);
    }
}

static inline bool time_between(lcow_time t, lcow_time lo, lcow_time hi)
{
    return lcow_time_cmp(lo, t) <= 0 && lcow_time_cmp(t, hi) <= 0;
}

/* Walk callback: the names seen, space-separated. */
typedef struct names {
    char buf[1024];
} names;

static inline int collect_names(void *ctx, const lcow_info *info)
{
    names *n = ctx;
    if (n->buf[0])
        strcat(n->buf, " ");
    strcat(n->buf, info->name);
    return 0;
}

#endif

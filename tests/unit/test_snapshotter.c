/* core/snapshotter: containerd's snapshotter testsuite cases that need no
 * host mount, plus LCOW mounts, error order, paging, failure injection,
 * crash recovery, persistence and a multi-threaded stress test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/json.h"
#include "core/disk/vdisk.h"
#include "core/metastore.h"
#include "core/os/os.h"
#include "core/snapshotter.h"
#include "core/snapshotter_internal.h"
#include "core/os/thread.h"
#include "unit/test_util.h"

#define GC_ROOT "containerd.io/gc.root"

typedef struct fixture {
    char *root;
    lcow_snapshotter *s;
} fixture;

static lcow_snapshotter *open_at(const char *root)
{
    lcow_snapshotter_config c = {.root = root, .no_scratch = true};
    lcow_snapshotter *s = NULL;
    lcow_error err;
    lcow_code rc = lcow_snapshotter_open(&c, &s, &err);
    if (rc != LCOW_OK)
        fail_msg("open %s: %s", root, err.message);
    return s;
}

static int setup(void **state)
{
    static int n;
    char name[32];
    snprintf(name, sizeof name, "sn%d", n++);
    fixture *f = calloc(1, sizeof *f);
    f->root = test_fresh_dir(name);
    f->s = open_at(f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    lcow_os_fault_clear();
    if (f->s) {
        lcow_error err;
        lcow_code rc = lcow_snapshotter_check(f->s, &err);
        if (rc != LCOW_OK && rc != LCOW_UNAVAILABLE)
            fail_msg("check at teardown: %s", err.message);
    }
    lcow_snapshotter_free(f->s);
    lcow_error err;
    lcow_os_remove_all(f->root, &err);
    free(f->root);
    free(f);
    return 0;
}

static void ok(lcow_code rc, const lcow_error *err)
{
    if (rc != LCOW_OK)
        fail_msg("unexpected %s: %s", lcow_code_name(rc), err->message);
}

static void prep(lcow_snapshotter *s, const char *key, const char *parent)
{
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_prepare(s, key, parent, NULL, &m, &err), &err);
    assert_int_equal(m.count, 1);
    lcow_mounts_free(&m);
}

static void view(lcow_snapshotter *s, const char *key, const char *parent)
{
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_view(s, key, parent, NULL, &m, &err), &err);
    lcow_mounts_free(&m);
}

static void commit(lcow_snapshotter *s, const char *name, const char *key)
{
    lcow_error err;
    ok(lcow_snapshotter_commit(s, name, key, NULL, NULL, &err), &err);
}

static void rm(lcow_snapshotter *s, const char *key)
{
    lcow_error err;
    ok(lcow_snapshotter_remove(s, key, &err), &err);
}

static void check(lcow_snapshotter *s)
{
    lcow_error err;
    ok(lcow_snapshotter_check(s, &err), &err);
}

static lcow_code stat_code(lcow_snapshotter *s, const char *key)
{
    lcow_info info;
    lcow_code rc = lcow_snapshotter_stat(s, key, &info, NULL);
    lcow_info_free(&info);
    return rc;
}

static void assert_info_equal(const lcow_info *a, const lcow_info *b)
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

/* The id in snapshots/<id> of a mount's source. */
static uint64_t source_id(const lcow_mount *m)
{
    const char *p = m->source + strlen(m->source);
    while (p > m->source && p[-1] != '/' && p[-1] != '\\')
        p--;
    return strtoull(p, NULL, 10);
}

static uint64_t id_of(lcow_snapshotter *s, const char *active_key)
{
    lcow_mounts m;
    lcow_error err;
    ok(lcow_snapshotter_mounts(s, active_key, &m, &err), &err);
    uint64_t id = source_id(&m.items[0]);
    lcow_mounts_free(&m);
    return id;
}

static bool dir_exists(lcow_snapshotter *s, uint64_t id)
{
    char *dir = lcow_snapshotter_dir_of(s, id);
    lcow_stat st;
    lcow_error err;
    assert_int_equal(lcow_os_stat(dir, &st, &err), LCOW_OK);
    free(dir);
    return st.exists && st.is_dir;
}

/* ------------------------------------------------------------ testsuite */

static int walk_find(void *ctx, const lcow_info *info)
{
    lcow_info *want = ctx;
    if (strcmp(info->name, want->name) == 0)
        assert_info_equal(info, want);
    return 0;
}

static void basic(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    lcow_labels labels = {0};
    lcow_labels_set(&labels, GC_ROOT, "2026-01-01T00:00:00Z");
    ok(lcow_snapshotter_prepare(f->s, "/tmp/prepare-a", "", &labels, &m, &err), &err);
    assert_true(m.count >= 1);
    lcow_mounts_free(&m);
    ok(lcow_snapshotter_commit(f->s, "/tmp/committed-a", "/tmp/prepare-a", &labels, NULL, &err),
       &err);
    lcow_info si;
    ok(lcow_snapshotter_stat(f->s, "/tmp/committed-a", &si, &err), &err);
    assert_int_equal(si.kind, LCOW_KIND_COMMITTED);
    assert_string_equal(si.parent, "");
    assert_string_equal(lcow_labels_get(&si.labels, GC_ROOT), "2026-01-01T00:00:00Z");
    assert_int_equal(stat_code(f->s, "/tmp/prepare-a"), LCOW_NOT_FOUND);
    lcow_walk_options wo = {0};
    ok(lcow_snapshotter_walk(f->s, &wo, walk_find, &si, NULL, &err), &err);
    lcow_info_free(&si);

    ok(lcow_snapshotter_prepare(f->s, "/tmp/prepare-b", "/tmp/committed-a", &labels, &m, &err),
       &err);
    lcow_mounts_free(&m);
    ok(lcow_snapshotter_stat(f->s, "/tmp/prepare-b", &si, &err), &err);
    assert_int_equal(si.kind, LCOW_KIND_ACTIVE);
    assert_string_equal(si.parent, "/tmp/committed-a");
    ok(lcow_snapshotter_walk(f->s, &wo, walk_find, &si, NULL, &err), &err);
    lcow_info_free(&si);
    ok(lcow_snapshotter_commit(f->s, "/tmp/committed-b", "/tmp/prepare-b", &labels, NULL, &err),
       &err);
    ok(lcow_snapshotter_stat(f->s, "/tmp/committed-b", &si, &err), &err);
    assert_string_equal(si.parent, "/tmp/committed-a");
    assert_int_equal(si.kind, LCOW_KIND_COMMITTED);
    ok(lcow_snapshotter_walk(f->s, &wo, walk_find, &si, NULL, &err), &err);
    lcow_info_free(&si);

    ok(lcow_snapshotter_view(f->s, "/tmp/view", "/tmp/committed-b", &labels, &m, &err), &err);
    lcow_mounts_free(&m);
    rm(f->s, "/tmp/view");
    assert_int_equal(lcow_snapshotter_remove(f->s, "/tmp/committed-a", &err),
                     LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "remove"));
    rm(f->s, "/tmp/committed-b");
    rm(f->s, "/tmp/committed-a");
    check(f->s);
    lcow_labels_free(&labels);
}

static void stat_active(void **state)
{
    fixture *f = *state;
    prep(f->s, "active", "");
    lcow_info si;
    ok(lcow_snapshotter_stat(f->s, "active", &si, NULL), NULL);
    assert_string_equal(si.name, "active");
    assert_int_equal(si.kind, LCOW_KIND_ACTIVE);
    assert_string_equal(si.parent, "");
    lcow_info_free(&si);
}

static void stat_committed(void **state)
{
    fixture *f = *state;
    prep(f->s, "prepare", "");
    commit(f->s, "committed", "prepare");
    lcow_info si;
    ok(lcow_snapshotter_stat(f->s, "committed", &si, NULL), NULL);
    assert_string_equal(si.name, "committed");
    assert_int_equal(si.kind, LCOW_KIND_COMMITTED);
    assert_string_equal(si.parent, "");
    lcow_info_free(&si);
}

static void transitivity(void **state)
{
    fixture *f = *state;
    prep(f->s, "a-prep", "");
    commit(f->s, "A", "a-prep");
    prep(f->s, "b-prep", "A");
    commit(f->s, "B", "b-prep");
    lcow_info a, b, pb;
    ok(lcow_snapshotter_stat(f->s, "A", &a, NULL), NULL);
    ok(lcow_snapshotter_stat(f->s, "B", &b, NULL), NULL);
    ok(lcow_snapshotter_stat(f->s, b.parent, &pb, NULL), NULL);
    assert_string_equal(a.parent, "");
    assert_string_equal(b.parent, "A");
    assert_string_equal(pb.parent, "");
    lcow_info_free(&a);
    lcow_info_free(&b);
    lcow_info_free(&pb);
}

static void prepare_view_failing(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    prep(f->s, "k", "");
    assert_int_equal(lcow_snapshotter_view(f->s, "k", "", NULL, &m, &err), LCOW_ALREADY_EXISTS);
    assert_int_equal(lcow_snapshotter_prepare(f->s, "k", "", NULL, &m, &err), LCOW_ALREADY_EXISTS);
    view(f->s, "v", "");
    assert_int_equal(lcow_snapshotter_view(f->s, "v", "", NULL, &m, &err), LCOW_ALREADY_EXISTS);
}

static bool time_between(lcow_time t, lcow_time lo, lcow_time hi)
{
    return lcow_time_cmp(lo, t) <= 0 && lcow_time_cmp(t, hi) <= 0;
}

static void update(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_time t1 = lcow_os_time_now();
    prep(f->s, "c1-prep", "");
    commit(f->s, "c1", "c1-prep");
    prep(f->s, "c2-prep", "c1");
    commit(f->s, "c2", "c2-prep");
    prep(f->s, "a1", "c2");
    prep(f->s, "a2", "");
    view(f->s, "v1", "c2");
    view(f->s, "v2", "");
    lcow_time t2 = lcow_os_time_now();
    struct {
        const char *name, *parent;
        lcow_kind kind;
    } want[] = {{"c1", "", LCOW_KIND_COMMITTED}, {"c2", "c1", LCOW_KIND_COMMITTED},
                {"a1", "c2", LCOW_KIND_ACTIVE},  {"a2", "", LCOW_KIND_ACTIVE},
                {"v1", "c2", LCOW_KIND_VIEW},    {"v2", "", LCOW_KIND_VIEW}};
    for (size_t i = 0; i < 6; i++) {
        lcow_info si;
        ok(lcow_snapshotter_stat(f->s, want[i].name, &si, &err), &err);
        assert_true(time_between(si.created, t1, t2));
        assert_int_equal(lcow_time_cmp(si.created, si.updated), 0);
        assert_int_equal(si.kind, want[i].kind);
        assert_string_equal(si.parent, want[i].parent);
        assert_string_equal(si.name, want[i].name);

        /* No paths: labels replaced, bogus parent ignored. */
        lcow_info req = {.name = si.name, .parent = "doesnotexist"};
        lcow_labels_set(&req.labels, "l1", "v1");
        lcow_labels_set(&req.labels, "l2", "v2");
        lcow_labels_set(&req.labels, "l3", "v3");
        lcow_labels_set(&req.labels, GC_ROOT, "T");
        lcow_time u1 = lcow_os_time_now();
        lcow_info out;
        ok(lcow_snapshotter_update(f->s, &req, NULL, 0, &out, &err), &err);
        lcow_time u2 = lcow_os_time_now();
        assert_string_equal(out.parent, want[i].parent);
        assert_int_equal(lcow_time_cmp(out.created, si.created), 0);
        assert_true(time_between(out.updated, u1, u2));
        assert_int_equal(out.labels.count, 4);
        lcow_info_free(&out);

        /* Worked example of section 4. */
        lcow_labels_free(&req.labels);
        lcow_labels_set(&req.labels, "l1", "updated");
        lcow_labels_set(&req.labels, "l4", "v4");
        const char *p1[] = {"labels.l1", "labels.l2"};
        ok(lcow_snapshotter_update(f->s, &req, p1, 2, &out, &err), &err);
        assert_int_equal(out.labels.count, 3);
        assert_string_equal(lcow_labels_get(&out.labels, "l1"), "updated");
        assert_string_equal(lcow_labels_get(&out.labels, "l3"), "v3");
        assert_string_equal(lcow_labels_get(&out.labels, GC_ROOT), "T");
        lcow_info_free(&out);
        lcow_labels_free(&req.labels);
        lcow_labels_set(&req.labels, "l4", "v4");
        lcow_labels_set(&req.labels, GC_ROOT, "T");
        const char *p2[] = {"labels"};
        ok(lcow_snapshotter_update(f->s, &req, p2, 1, &out, &err), &err);
        assert_int_equal(out.labels.count, 2);
        assert_string_equal(lcow_labels_get(&out.labels, "l4"), "v4");
        assert_string_equal(lcow_labels_get(&out.labels, GC_ROOT), "T");
        lcow_info_free(&out);
        const char *p3[] = {"parent"};
        assert_int_equal(lcow_snapshotter_update(f->s, &req, p3, 1, &out, &err),
                         LCOW_INVALID_ARGUMENT);
        /* Stat agrees with the last successful update. */
        lcow_info after;
        ok(lcow_snapshotter_stat(f->s, want[i].name, &after, &err), &err);
        assert_int_equal(after.labels.count, 2);
        lcow_info_free(&after);
        lcow_labels_free(&req.labels);
        lcow_info_free(&si);
    }
}

static void remove_sequence(void **state)
{
    fixture *f = *state;
    prep(f->s, "committed-a", "");
    commit(f->s, "committed-1", "committed-a");
    prep(f->s, "reuse-1", "committed-1");
    rm(f->s, "reuse-1");
    view(f->s, "reuse-1", "committed-1");
    rm(f->s, "reuse-1");
    prep(f->s, "reuse-1", "");
    rm(f->s, "committed-1");
    commit(f->s, "committed-1", "reuse-1");
    check(f->s);
}

typedef struct names {
    char buf[1024];
} names;

static int collect_names(void *ctx, const lcow_info *info)
{
    names *n = ctx;
    if (n->buf[0])
        strcat(n->buf, " ");
    strcat(n->buf, info->name);
    return 0;
}

static void walk_expect(lcow_snapshotter *s, const char *const *filters, size_t count,
                        const char *expect)
{
    names n = {{0}};
    lcow_walk_options wo = {.filters = filters, .filter_count = count};
    lcow_error err;
    ok(lcow_snapshotter_walk(s, &wo, collect_names, &n, NULL, &err), &err);
    assert_string_equal(n.buf, expect);
}

static void walk_filters(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    struct {
        const char *key, *parent, *l;
        lcow_kind kind;
        bool commit;
    } setup_[] = {
        {"a-np", "", NULL, LCOW_KIND_ACTIVE, false},
        {"p", "", NULL, LCOW_KIND_ACTIVE, true},
        {"a", "p", NULL, LCOW_KIND_ACTIVE, false},
        {"v", "p", NULL, LCOW_KIND_VIEW, false},
        {"p-wl", "", "1", LCOW_KIND_ACTIVE, true},
        {"a-wl", "p-wl", "2", LCOW_KIND_ACTIVE, false},
        {"v-wl", "p-wl", "3", LCOW_KIND_VIEW, false},
        {"a-np-wl", "", "2", LCOW_KIND_ACTIVE, false},
    };
    for (size_t i = 0; i < sizeof setup_ / sizeof setup_[0]; i++) {
        lcow_labels l = {0};
        lcow_labels_set(&l, GC_ROOT, "check-walk");
        if (setup_[i].l)
            lcow_labels_set(&l, "l", setup_[i].l);
        const char *key = setup_[i].key;
        char tmp[64];
        if (setup_[i].commit) {
            snprintf(tmp, sizeof tmp, "%s-prep", key);
            key = tmp;
        }
        if (setup_[i].kind == LCOW_KIND_VIEW)
            ok(lcow_snapshotter_view(f->s, key, setup_[i].parent, &l, &m, &err), &err);
        else
            ok(lcow_snapshotter_prepare(f->s, key, setup_[i].parent, &l, &m, &err), &err);
        lcow_mounts_free(&m);
        if (setup_[i].commit)
            ok(lcow_snapshotter_commit(f->s, setup_[i].key, key, &l, NULL, &err), &err);
        lcow_labels_free(&l);
    }
    const char *all[] = {"labels.\"containerd.io/gc.root\"==check-walk"};
    walk_expect(f->s, all, 1, "a a-np a-np-wl a-wl p p-wl v v-wl");
    const char *actives[] = {"kind==active,labels.\"containerd.io/gc.root\"==check-walk"};
    walk_expect(f->s, actives, 1, "a a-np a-np-wl a-wl");
    const char *views[] = {"kind==view,labels.\"containerd.io/gc.root\"==check-walk"};
    walk_expect(f->s, views, 1, "v v-wl");
    const char *committed[] = {"kind==committed,labels.\"containerd.io/gc.root\"==check-walk"};
    walk_expect(f->s, committed, 1, "p p-wl");
    const char *or_[] = {"name==p", "name==a-np-wl"};
    walk_expect(f->s, or_, 2, "a-np-wl p");
    const char *and_[] = {"name==a-wl,labels.l"};
    walk_expect(f->s, and_, 1, "a-wl");
    const char *parent[] = {"parent==p"};
    walk_expect(f->s, parent, 1, "a v");
    const char *has_parent[] = {"parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk"};
    walk_expect(f->s, has_parent, 1, "a a-wl v v-wl");
    const char *has_l[] = {"labels.l"};
    walk_expect(f->s, has_l, 1, "a-np-wl a-wl p-wl v-wl");
    const char *l2[] = {"labels.l==2"};
    walk_expect(f->s, l2, 1, "a-np-wl a-wl");
    /* no filter / one "" = everything; a malformed filter is InvalidArgument */
    walk_expect(f->s, NULL, 0, "a a-np a-np-wl a-wl p p-wl v v-wl");
    const char *empty[] = {""};
    walk_expect(f->s, empty, 1, "a a-np a-np-wl a-wl p p-wl v v-wl");
    const char *bad[] = {"name==\"unterminated"};
    names n = {{0}};
    lcow_walk_options wo = {.filters = bad, .filter_count = 1};
    assert_int_equal(lcow_snapshotter_walk(f->s, &wo, collect_names, &n, NULL, &err),
                     LCOW_INVALID_ARGUMENT);
    const char *regex[] = {"name~=^a-np"};
    walk_expect(f->s, regex, 1, "a-np a-np-wl");
}

static void remove_intermediate(void **state)
{
    fixture *f = *state;
    lcow_error err;
    prep(f->s, "base-prep", "");
    commit(f->s, "base", "base-prep");
    prep(f->s, "inter-prep", "base");
    commit(f->s, "inter", "inter-prep");
    prep(f->s, "top-prep", "inter");
    commit(f->s, "top", "top-prep");
    assert_int_equal(lcow_snapshotter_remove(f->s, "inter", &err), LCOW_FAILED_PRECONDITION);
    rm(f->s, "top");
    rm(f->s, "inter");
    rm(f->s, "base");
}

static void view_mounts_are_readonly(void **state)
{
    fixture *f = *state;
    lcow_error err;
    lcow_mounts m;
    prep(f->s, "p-prep", "");
    commit(f->s, "p", "p-prep");
    ok(lcow_snapshotter_view(f->s, "v", "p", NULL, &m, &err), &err);
    assert_string_equal(m.items[0].options[0], "ro");
    lcow_mounts_free(&m);
    ok(lcow_snapshotter_prepare(f->s, "a", "p", NULL, &m, &err), &err);
    for (size_t i = 0; i < m.items[0].option_count; i++)
        assert_string_not_equal(m.items[0].options[i], "ro");
    assert_string_equal(m.items[0].options[0], "rw");
    lcow_mounts_free(&m);
}

typedef struct stat_in_walk_ctx {
    lcow_snapshotter *s;
    int seen;
} stat_in_walk_ctx;

static int stat_inside(void *ctx, const lcow_info *info)
{
    stat_in_walk_ctx *c = ctx;
    lcow_info si;
    lcow_error err;
    ok(lcow_snapshotter_stat(c->s, info->name, &si, &err), &err);
    assert_info_equal(info, &si);
    lcow_info_free(&si);
    c->seen++;
    return 0;
}

static void stat_in_walk(void **state)
{
    fixture *f = *state;
    lcow_labels l = {0};
    lcow_labels_set(&l, GC_ROOT, "x");
    lcow_error err;
    lcow_mounts m;
    ok(lcow_snapshotter_prepare(f->s, "a", "", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    ok(lcow_snapshotter_commit(f->s, "c", "a", &l, NULL, &err), &err);
    ok(lcow_snapshotter_prepare(f->s, "b", "c", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    ok(lcow_snapshotter_view(f->s, "v", "c", &l, &m, &err), &err);
    lcow_mounts_free(&m);
    stat_in_walk_ctx c = {f->s, 0};
    ok(lcow_snapshotter_walk(f->s, NULL, stat_inside, &c, NULL, &err), &err);
    assert_int_equal(c.seen, 3);
    lcow_labels_free(&l);
}

static int prepare_inside(void *ctx, const lcow_info *info)
{
    lcow_snapshotter *s = ctx;
    char key[128];
    snprintf(key, sizeof key, "zz-from-walk-%s", info->name);
    /* No lock is held during the callback: a writer can run. */
    prep(s, key, "");
    return 0;
}

static void walk_callback_holds_no_lock(void **state)
{
    fixture *f = *state;
    prep(f->s, "a", "");
    prep(f->s, "b", "");
    names n = {{0}};
    lcow_error err;
    ok(lcow_snapshotter_walk(f->s, NULL, prepare_inside, f->s, NULL, &err), &err);
    /* The walk ran on a snapshot: it did not see its own insertions. */
    ok(lcow_snapshotter_walk(f->s, NULL, collect_names, &n, NULL, &err), &err);
    assert_string_equal(n.buf, "a b zz-from-walk-a zz-from-walk-b");
}

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

/* ------------------------------------------------------------ scratch integration */

#define LABEL_SIZE "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb"
#define LABEL_REUSE "containerd.io/snapshot/io.microsoft.container.storage.reuse-scratch"
#define LABEL_OWNER "containerd.io/snapshot/io.microsoft.owner.key"

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

static lcow_stat stat_path(const char *path)
{
    lcow_stat st;
    lcow_error err;
    ok(lcow_os_stat(path, &st, &err), &err);
    return st;
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
    assert_false(stat_path(d1).exists);
    assert_true(stat_path(d2).exists);
    assert_true(stat_path(d3).exists);
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
    lcow_stat mst = stat_path(member);
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
    lcow_mounts m;
    lcow_code again = lcow_snapshotter_prepare(f->s, "default/1/big", "", NULL, &m, &err);
    bool still_running = !p.done;
    lcow_thread_join(t, NULL);
    assert_int_equal(p.rc, LCOW_OK);
    if (still_running)
        assert_int_equal(again, LCOW_ALREADY_EXISTS);
    if (done_meanwhile == 0)
        skip(); /* the build was too quick to show anything */
    check(f->s);
}

static int count_temp(void *ctx, const char *name, bool is_dir)
{
    (void)is_dir;
    if (strstr(name, ".tmp"))
        (*(int *)ctx)++;
    return 0;
}

static void create_scratch_validates_path(void **state)
{
    fixture *f = *state;
    open_with_scratch(f);
    lcow_error err;
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, "relative.vhdx", 1, 0, &err),
                     LCOW_INVALID_ARGUMENT);
    char *missing_dir = lcow_path_join(f->root, "no-such-dir");
    char *in_missing = lcow_path_join(missing_dir, "x.vhdx");
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, in_missing, 1, 0, &err), LCOW_NOT_FOUND);
    char *target = lcow_path_join(f->root, "made.vhdx");
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
    char *second = lcow_path_join(f->root, "second.vhdx");
    assert_int_not_equal(lcow_snapshotter_create_scratch(f->s, second, 1, 0, &err), LCOW_OK);
    lcow_os_fault_clear();
    assert_false(stat_path(second).exists);
    int temps = 0;
    ok(lcow_os_list_dir(f->root, count_temp, &temps, &err), &err);
    assert_int_equal(temps, 0);
    free(second);
    free(missing_dir);
    free(in_missing);
    free(target);
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
    char *target = lcow_path_join(f->root, "virt.vhdx");
    assert_int_equal(lcow_snapshotter_create_scratch(f->s, target, 1, 0, &err),
                     LCOW_NOT_IMPLEMENTED);
    assert_non_null(strstr(err.message, "virtdisk"));
    assert_false(stat_path(target).exists);
    int temps = 0;
    ok(lcow_os_list_dir(f->root, count_temp, &temps, &err), &err);
    assert_int_equal(temps, 0);
    assert_int_equal(prep_scratch(f->s, "c1", NULL, &err), LCOW_NOT_IMPLEMENTED);
    assert_non_null(strstr(err.message, "virtdisk"));
    free(target);
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
        snprintf(cmd, sizeof cmd, "\"\"%s\" --crash-child \"%s\" %u\"", self_path, f->root,
                 round * 7919u + 13u);
#else
        snprintf(cmd, sizeof cmd, "'%s' --crash-child '%s' %u", self_path, f->root,
                 round * 7919u + 13u);
#endif
        int status = system(cmd);
        assert_int_equal(status, 0);
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
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(basic),
        T(stat_active),
        T(stat_committed),
        T(transitivity),
        T(prepare_view_failing),
        T(update),
        T(remove_sequence),
        T(walk_filters),
        T(remove_intermediate),
        T(view_mounts_are_readonly),
        T(stat_in_walk),
        T(walk_callback_holds_no_lock),
        T(close_twice),
        T(chain_128_layers),
        T(mounts_exactly_as_upstream),
        T(errors_and_failed_calls_change_nothing),
        T(commit_resets_times_and_takes_commit_labels),
        T(usage_by_kind),
        T(walk_paging),
        T(directories_follow_kinds),
        T(reopen_keeps_state_and_never_reuses_ids),
        T(crash_recovery_removes_orphans),
        T(newer_schema_refused_by_open),
        T(failure_injection_leaves_store_consistent),
        T(concurrent_prepare_of_one_key),
        T(close_waits_for_running_calls),
        T(stress_eight_threads),
        T(scratch_for_containers_not_extract_layers),
        T(shared_owner_is_exact_client_key_in_namespace),
        T(owner_removed_before_members_keeps_disk),
        T(scratch_failures_leave_nothing),
        T(scratch_creation_blocks_no_one),
        T(create_scratch_validates_path),
        T(create_scratch_uses_configured_backend),
        T(killed_at_any_instant_reopens_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

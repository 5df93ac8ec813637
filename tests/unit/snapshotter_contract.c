/* containerd's snapshotter testsuite (the cases that need no host mount:
 * containerd/snapshots/testsuite), run against any store through
 * contract_store (snapshotter_contract.h). */
#include "unit/snapshotter_contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/os.h"

typedef struct fixture {
    const contract_store *store;
    void *ctx;
    lcow_snapshotter *s;
} fixture;

static const contract_store *current;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->store = current;
    f->s = current->open(&f->ctx);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    f->store->close(f->s, f->ctx);
    free(f);
    return 0;
}

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

        /* The worked example of docs/reference/containerd-snapshotter.md, "Update field paths". */
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
    if (!f->store->filters)
        skip();
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
    if (!f->store->walk_unlocked)
        skip();
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
    if (!f->store->walk_unlocked)
        skip();
    prep(f->s, "a", "");
    prep(f->s, "b", "");
    names n = {{0}};
    lcow_error err;
    ok(lcow_snapshotter_walk(f->s, NULL, prepare_inside, f->s, NULL, &err), &err);
    /* The walk ran on a snapshot: it did not see its own insertions. */
    ok(lcow_snapshotter_walk(f->s, NULL, collect_names, &n, NULL, &err), &err);
    assert_string_equal(n.buf, "a b zz-from-walk-a zz-from-walk-b");
}

int contract_run(const contract_store *store)
{
    current = store;
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
    };
#undef T
    return cmocka_run_group_tests_name(store->name, tests, NULL, NULL);
}

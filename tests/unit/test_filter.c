/* The Walk filter: containerd's pkg/filters grammar, its scanner quirks, the
 * snapshot-info adaptor, regex behaviour and thread safety. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/errors.h"
#include "core/filter.h"
#include "core/base/types.h"

#define GC_ROOT "containerd.io/gc.root"

/* ---- the snapshot set of containerd's testsuite "Walk" case ---- */

typedef struct walk_set {
    size_t count;
    lcow_info infos[16];
} walk_set;

static void add_info(walk_set *set, const char *name, const char *parent, lcow_kind kind,
                     const char *l)
{
    lcow_info *info = &set->infos[set->count++];
    memset(info, 0, sizeof *info);
    info->name = strdup(name);
    info->parent = strdup(parent);
    info->kind = kind;
    assert_true(lcow_labels_set(&info->labels, GC_ROOT, "check-walk"));
    if (l)
        assert_true(lcow_labels_set(&info->labels, "l", l));
}

static int walk_set_setup(void **state)
{
    walk_set *set = calloc(1, sizeof *set);
    assert_non_null(set);
    add_info(set, "a-np", "", LCOW_KIND_ACTIVE, NULL);
    add_info(set, "p", "", LCOW_KIND_COMMITTED, NULL);
    add_info(set, "a", "p", LCOW_KIND_ACTIVE, NULL);
    add_info(set, "v", "p", LCOW_KIND_VIEW, NULL);
    add_info(set, "p-wl", "", LCOW_KIND_COMMITTED, "1");
    add_info(set, "a-wl", "p-wl", LCOW_KIND_ACTIVE, "2");
    add_info(set, "v-wl", "p-wl", LCOW_KIND_VIEW, "3");
    add_info(set, "a-np-wl", "", LCOW_KIND_ACTIVE, "2");
    *state = set;
    return 0;
}

static int walk_set_teardown(void **state)
{
    walk_set *set = *state;
    for (size_t i = 0; i < set->count; i++)
        lcow_info_free(&set->infos[i]);
    free(set);
    return 0;
}

static lcow_filter *must_parse_n(const char *const *filters, size_t count)
{
    lcow_filter *f = NULL;
    lcow_error err = {0};
    lcow_code rc = lcow_filter_parse(filters, count, &f, &err);
    if (rc != LCOW_OK)
        fail_msg("parse of \"%s\"... failed: %s", count ? filters[0] : "", err.message);
    assert_non_null(f);
    return f;
}

static lcow_filter *must_parse(const char *filter)
{
    return must_parse_n(&filter, 1);
}

/* Names of the set that the filters select, in set order, joined by ' '. */
static void selected(const walk_set *set, const char *const *filters, size_t count, char *out,
                     size_t cap)
{
    lcow_filter *f = must_parse_n(filters, count);
    out[0] = '\0';
    for (size_t i = 0; i < set->count; i++) {
        if (lcow_filter_match_info(f, &set->infos[i])) {
            if (out[0])
                strncat(out, " ", cap - strlen(out) - 1);
            strncat(out, set->infos[i].name, cap - strlen(out) - 1);
        }
    }
    lcow_filter_free(f);
}

static void assert_walk(const walk_set *set, const char *expected, size_t count, ...)
{
    const char *filters[8] = {""};
    va_list ap;
    va_start(ap, count);
    for (size_t i = 0; i < count; i++)
        filters[i] = va_arg(ap, const char *);
    va_end(ap);
    char got[256];
    selected(set, filters, count, got, sizeof got);
    if (strcmp(got, expected) != 0)
        fail_msg("filter \"%s\"%s: selected [%s], expected [%s]", filters[0],
                 count > 1 ? " (OR ...)" : "", got, expected);
}

static void walk_testsuite_cases(void **state)
{
    const walk_set *set = *state;
    assert_walk(set, "a-np p a v p-wl a-wl v-wl a-np-wl", 1,
                "labels.\"containerd.io/gc.root\"==check-walk");
    assert_walk(set, "a-np a a-wl a-np-wl", 1,
                "kind==active,labels.\"containerd.io/gc.root\"==check-walk");
    assert_walk(set, "v v-wl", 1, "kind==view,labels.\"containerd.io/gc.root\"==check-walk");
    assert_walk(set, "p p-wl", 1, "kind==committed,labels.\"containerd.io/gc.root\"==check-walk");
    assert_walk(set, "p a-np-wl", 2, "name==p", "name==a-np-wl");
    assert_walk(set, "a-wl", 1, "name==a-wl,labels.l");
    assert_walk(set, "a v", 1, "parent==p");
    assert_walk(set, "a v a-wl v-wl", 1,
                "parent!=\"\",labels.\"containerd.io/gc.root\"==check-walk");
    assert_walk(set, "p-wl a-wl v-wl a-np-wl", 1, "labels.l");
    assert_walk(set, "a-wl a-np-wl", 1, "labels.l==2");
}

static void walk_more_semantics(void **state)
{
    const walk_set *set = *state;
    /* parent is always present, so parent=="" selects the roots. */
    assert_walk(set, "a-np p p-wl a-np-wl", 1, "parent==\"\"");
    /* != treats an absent field as "": every snapshot without l, plus l!=2. */
    assert_walk(set, "a-np p a v p-wl v-wl", 1, "labels.l!=2");
    assert_walk(set, "", 1, "labels.l!=\"\",labels.l==7");
    /* Unknown fields are absent; != of an absent field against "" is false. */
    assert_walk(set, "", 1, "id");
    assert_walk(set, "", 1, "Name==p");
    assert_walk(set, "a-np p a v p-wl a-wl v-wl a-np-wl", 1, "created!=x");
    assert_walk(set, "", 1, "created!=\"\"");
    /* Extra elements after name/parent/kind are ignored. */
    assert_walk(set, "p", 1, "name.x.y==p");
    assert_walk(set, "a v", 1, "parent.whatever==p");
    assert_walk(set, "v v-wl", 1, "kind.x==view");
    /* `labels` alone looks up the key "", absent here. */
    assert_walk(set, "", 1, "labels");
    /* Presence of always-present fields. */
    assert_walk(set, "a-np p a v p-wl a-wl v-wl a-np-wl", 1, "name,parent,kind");
    /* OR of an empty string is everything (containerd's Always). */
    assert_walk(set, "a-np p a v p-wl a-wl v-wl a-np-wl", 2, "name==nothing", "");
    assert_walk(set, "a-np p a v p-wl a-wl v-wl a-np-wl", 0, NULL);
    /* Case-sensitive, byte-exact equality. */
    assert_walk(set, "", 1, "kind==Active");
    assert_walk(set, "", 1, "name==P");
}

static void unknown_kind_is_absent(void **state)
{
    lcow_info info = {.name = "x", .parent = "", .kind = LCOW_KIND_UNKNOWN};
    lcow_filter *f = must_parse("kind");
    assert_false(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
    f = must_parse("kind!=\"\"");
    assert_false(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
    f = must_parse("kind!=active");
    assert_true(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
}

static void match_all_forms(void **state)
{
    lcow_filter *f = NULL;
    lcow_info info = {.name = "x", .parent = "", .kind = LCOW_KIND_VIEW};
    assert_int_equal(lcow_filter_parse(NULL, 0, &f, NULL), LCOW_OK);
    assert_true(lcow_filter_matches_all(f));
    assert_true(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
    const char *empties[] = {"", ""};
    f = must_parse_n(empties, 2);
    assert_true(lcow_filter_matches_all(f));
    lcow_filter_free(f);
    f = must_parse("name==y");
    assert_false(lcow_filter_matches_all(f));
    assert_false(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
    assert_true(lcow_filter_match_info(NULL, &info));
}

/* ---- labels, quoting and the remote-snapshot lookup ---- */

static bool matches_labels(const char *filter, const char *name, const char *parent, ...)
{
    lcow_info info = {.name = (char *)name, .parent = (char *)parent, .kind = LCOW_KIND_COMMITTED};
    va_list ap;
    va_start(ap, parent);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        assert_true(lcow_labels_set(&info.labels, k, v));
    }
    va_end(ap);
    lcow_filter *f = must_parse(filter);
    bool m = lcow_filter_match_info(f, &info);
    lcow_filter_free(f);
    lcow_labels_free(&info.labels);
    return m;
}

#define CHAIN "sha256:4e2b3a0e8cbd6e1e4f5f2e8d5c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a19081"

static void remote_snapshot_lookup(void **state)
{
    const char *ref = "containerd.io/snapshot.ref";
    assert_true(matches_labels("labels.\"containerd.io/snapshot.ref\"==" CHAIN
                               ",parent==\"default/12/sha256:abc\"",
                               "default/13/" CHAIN, "default/12/sha256:abc", ref, CHAIN, NULL));
    assert_false(matches_labels("labels.\"containerd.io/snapshot.ref\"==" CHAIN
                                ",parent==\"default/12/sha256:abc\"",
                                "default/13/" CHAIN, "default/11/sha256:abc", ref, CHAIN, NULL));
    assert_false(matches_labels(
        "labels.\"containerd.io/snapshot.ref\"==" CHAIN ",parent==\"default/12/sha256:abc\"",
        "default/13/x", "default/12/sha256:abc", ref, "sha256:other", NULL));
    /* The base layer: parent=="" */
    assert_true(matches_labels("labels.\"containerd.io/snapshot.ref\"==" CHAIN ",parent==\"\"",
                               "default/1/" CHAIN, "", ref, CHAIN, NULL));
    assert_false(matches_labels("labels.\"containerd.io/snapshot.ref\"==" CHAIN ",parent==\"\"",
                                "default/2/" CHAIN, "default/1/y", ref, CHAIN, NULL));
    /* Unquoted, the key's '.' splits the path and rejoins with '.', but '/'
     * starts a quoted token in field position: parse error. */
    lcow_filter *f = NULL;
    const char *bad = "labels.containerd.io/snapshot.ref==x";
    assert_int_equal(lcow_filter_parse(&bad, 1, &f, NULL), LCOW_INVALID_ARGUMENT);
    assert_null(f);
}

static void dotted_and_quoted_label_keys(void **state)
{
    assert_true(matches_labels("labels.a.b==1", "n", "", "a.b", "1", NULL));
    assert_true(matches_labels("labels.\"a.b\"==1", "n", "", "a.b", "1", NULL));
    assert_true(matches_labels("labels.\"a\".b==1", "n", "", "a.b", "1", NULL));
    assert_true(matches_labels("labels.\"a\".\"b\"", "n", "", "a.b", "1", NULL));
    assert_false(matches_labels("labels.a==1", "n", "", "a.b", "1", NULL));
    assert_true(
        matches_labels("labels.\"with space\"==\"v 1\"", "n", "", "with space", "v 1", NULL));
    assert_true(matches_labels("labels.\"k-1\"==x", "n", "", "k-1", "x", NULL));
    /* Quoted field names still name the field. */
    assert_true(matches_labels("\"name\"==n", "n", "", "k", "v", NULL));
    /* Keys and values with backslashes and quotes (containerd's own test). */
    assert_true(matches_labels("labels.\"more complex label with \\\\ and \\\"\"==present", "n", "",
                               "more complex label with \\ and \"", "present", NULL));
    assert_true(matches_labels("labels.\"more complex label with \\\\ and \\\"\".post==present",
                               "n", "", "more complex label with \\ and \".post", "present", NULL));
    /* An escaped NUL in a key can be in no label map. */
    assert_false(matches_labels("labels.\"a\\x00b\"", "n", "", "a", "1", NULL));
    assert_true(matches_labels("labels.\"a\\x00b\"!=1", "n", "", "a", "1", NULL));
    /* Values may hold '.', '/', ':', '=' and more once past the first rune. */
    assert_true(matches_labels("labels.k==a.b/c:d=e!f~g", "n", "", "k", "a.b/c:d=e!f~g", NULL));
    assert_true(
        matches_labels("labels.k==omg_asdf.asdf-qwer", "n", "", "k", "omg_asdf.asdf-qwer", NULL));
    assert_true(
        matches_labels("labels.k==\"too complex, yo\"", "n", "", "k", "too complex, yo", NULL));
}

/* ---- regexes ---- */

static void regex_forms_of_the_spec(void **state)
{
    assert_true(matches_labels("name~=^k8s\\.io/", "k8s.io/1/x", "", "k", "v", NULL));
    assert_false(matches_labels("name~=^k8s\\.io/", "k8sXio/1/x", "", "k", "v", NULL));
    assert_false(matches_labels("name~=^k8s\\.io/", "default/k8s.io/", "", "k", "v", NULL));
    assert_true(matches_labels("name~=/^k8s\\\\.io\\//", "k8s.io/1/x", "", "k", "v", NULL));
    assert_false(matches_labels("name~=/^k8s\\\\.io\\//", "k8sXio/1/x", "", "k", "v", NULL));
    assert_true(matches_labels("labels.\"a\"~=|v[0-9]+|", "n", "", "a", "release-v12", NULL));
    assert_false(matches_labels("labels.\"a\"~=|v[0-9]+|", "n", "", "a", "version", NULL));
    /* Quoted forms may hold ',' and spaces; unquoted ones stop there. */
    assert_true(matches_labels("name~=/[abc]{1,2}/", "xbx", "", "k", "v", NULL));
    assert_true(matches_labels("name~=\"a b\"", "xa by", "", "k", "v", NULL));
    /* `\.` is an illegal escape inside quotes: parse error, not a regex. */
    lcow_filter *f = NULL;
    lcow_error err = {0};
    const char *bad = "name~=/^k8s\\.io\\//";
    assert_int_equal(lcow_filter_parse(&bad, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "illegal escape sequence"));
}

static void regex_semantics(void **state)
{
    /* Unanchored search. */
    assert_true(matches_labels("name~=ab", "xxabxx", "", "k", "v", NULL));
    assert_true(matches_labels("name~=[abc]+,name!=foo", "zzc", "", "k", "v", NULL));
    /* Absent fields count as "": an empty-matching regex matches them. */
    assert_true(matches_labels("labels.nope~=^$", "n", "", "k", "v", NULL));
    assert_true(matches_labels("labels.nope~=x*", "n", "", "k", "v", NULL));
    assert_false(matches_labels("labels.nope~=x", "n", "", "k", "v", NULL));
    /* '$' is the end of text only, as in RE2 (not before a final \n). */
    assert_true(matches_labels("labels.k~=/a$/", "n", "", "k", "a", NULL));
    assert_false(matches_labels("labels.k~=/a$/", "n", "", "k", "a\n", NULL));
    /* '.' does not match \n; (?s) makes it. */
    assert_false(matches_labels("labels.k~=/a.b/", "n", "", "k", "a\nb", NULL));
    assert_true(matches_labels("labels.k~=/(?s)a.b/", "n", "", "k", "a\nb", NULL));
    /* UTF-8: '.' is one rune. */
    assert_true(matches_labels("labels.k~=/^.$/", "n", "", "k", "\xe7\x89\x9b", NULL));
    assert_true(matches_labels("name~=\xe7\x89\x9b,labels.moo==true", "a\xe7\x89\x9b", "", "moo",
                               "true", NULL));
    assert_true(matches_labels("name~=|\xe7\x89\x9b|", "\xe7\x89\x9b!", "", "k", "v", NULL));
    /* The search wrapper keeps odd-but-valid patterns intact: an open \Q,
     * a trailing (?x) comment, top-level alternation, lookbehind. */
    assert_true(matches_labels("name~=\\Qa.b", "xa.b", "", "k", "v", NULL));
    assert_false(matches_labels("name~=\\Qa.b", "xaxb", "", "k", "v", NULL));
    assert_true(matches_labels("name~=\"(?x) s h a # comment\"", "k8s/sha", "", "k", "v", NULL));
    assert_false(matches_labels("name~=\"(?x) s h a # comment\"", "k8s/s h a", "", "k", "v", NULL));
    assert_true(matches_labels("name~=^x|b$", "aab", "", "k", "v", NULL));
    assert_false(matches_labels("name~=^x|b$", "bax", "", "k", "v", NULL));
    assert_true(matches_labels("name~=(?<=/)sha", "k8s/sha", "", "k", "v", NULL));
    /* PCRE2-only start-of-pattern verbs are invalid, as they are for RE2. */
    assert_false(matches_labels("name~=(*UTF)a", "a", "", "k", "v", NULL));
    /* Case-insensitive flag. */
    assert_true(matches_labels("name~=(?i)ABC", "xabc", "", "k", "v", NULL));
}

static void invalid_regex_never_matches(void **state)
{
    /* Go compiles lazily and a bad pattern makes the selector false; parse
     * must succeed. */
    const char *bad[] = {"name~=[",     "name~=a)", "name~=*", "name~=/(a/", "labels.k~=\"\\xff\"",
                         "name~=(a)\\1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lcow_filter *f = NULL;
        lcow_error err = {0};
        assert_int_equal(lcow_filter_parse(&bad[i], 1, &f, &err), LCOW_OK);
        lcow_info info = {.name = "aa)[*(a\xc3\xbf", .parent = "", .kind = LCOW_KIND_ACTIVE};
        assert_true(lcow_labels_set(&info.labels, "k", "\xc3\xbf"));
        if (lcow_filter_match_info(f, &info))
            fail_msg("invalid regex %s matched", bad[i]);
        lcow_labels_free(&info.labels);
        lcow_filter_free(f);
    }
    /* The bad selector is false, yet != and OR around it work as usual. */
    const char * or [] = {"name~=[", "name==x"};
    lcow_filter *f = must_parse_n(or, 2);
    lcow_info info = {.name = "x", .parent = "", .kind = LCOW_KIND_ACTIVE};
    assert_true(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
}

static void hostile_regex_finishes(void **state)
{
    /* Exponential for a backtracker; the DFA matcher is linear in the subject. */
    char subject[4097];
    memset(subject, 'a', 4095);
    subject[4095] = 'b';
    subject[4096] = '\0';
    lcow_info info = {.name = subject, .parent = "", .kind = LCOW_KIND_ACTIVE};
    const char *hostile[] = {"name~=/^(a+)+$/", "name~=/^(a|aa)+$/", "name~=/(a*)*c/",
                             "name~=/^(a|a?)+c/", "name~=/(?:a{1,50}){1,50}$/"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        lcow_filter *f = must_parse(hostile[i]);
        assert_false(lcow_filter_match_info(f, &info));
        lcow_filter_free(f);
    }
    lcow_filter *f = must_parse("name~=/^(a+)+b$/");
    assert_true(lcow_filter_match_info(f, &info));
    lcow_filter_free(f);
}

/* ---- escapes ---- */

static void escape_values(void **state)
{
    struct {
        const char *filter;
        const char *value;
    } cases[] = {
        {"labels.k==\"\\a\\b\\f\\n\\r\\t\\v\\\\\"", "\a\b\f\n\r\t\v\\"},
        {"labels.k==\"say \\\"hi\\\"\"", "say \"hi\""},
        {"labels.k==\"\\101\\102\"", "AB"},
        {"labels.k==\"\\x41\\x62\"", "Ab"},
        {"labels.k==\"\\u00e9\"", "\xc3\xa9"},
        {"labels.k==\"\\U0001F600\"", "\xf0\x9f\x98\x80"},
        {"labels.k==\"\\xc3\\xa9\"", "\xc3\xa9"}, /* raw bytes that happen to be UTF-8 */
        {"labels.k==\"\\303\\251\"", "\xc3\xa9"},
        {"labels.k==\"\\ud800\"", "\xef\xbf\xbd"}, /* a surrogate encodes as U+FFFD */
        {"labels.k~=/a\\/b/", "xa/b"},
        {"labels.k~=|a\\|b|", "a|b"}, /* the regex a|b: alternation */
        {"labels.k~=|\\x41|", "A"},
        {"labels.k==\"/|\"", "/|"},
        {"labels.k~=/\"/", "\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!matches_labels(cases[i].filter, "n", "", "k", cases[i].value, NULL))
            fail_msg("%s did not match its value", cases[i].filter);
    }
    /* \x escapes give raw bytes: \xff is not UTF-8 and equals no label. */
    assert_false(matches_labels("labels.k==\"\\xff\"", "n", "", "k", "\xc3\xbf", NULL));
    assert_true(matches_labels("labels.k==\"\\u00ff\"", "n", "", "k", "\xc3\xbf", NULL));
    /* An unquoted VALUE has no escape processing. */
    assert_true(matches_labels("labels.k==a\\tb", "n", "", "k", "a\\tb", NULL));
}

/* ---- rejected and accepted forms ---- */

static void expect_error(const char *filter, size_t len, const char *fragment)
{
    lcow_filter *f = (lcow_filter *)(uintptr_t)1;
    lcow_error err = {0};
    lcow_code rc = lcow_filter_parse_n(&filter, &len, 1, &f, &err);
    if (rc != LCOW_INVALID_ARGUMENT)
        fail_msg("\"%s\": expected InvalidArgument, got %s", filter, lcow_code_name(rc));
    assert_int_equal(err.code, LCOW_INVALID_ARGUMENT);
    assert_null(f);
    if (fragment && !strstr(err.message, fragment))
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", filter, err.message, fragment);
}

static void reject(const char *filter, const char *fragment)
{
    expect_error(filter, strlen(filter), fragment);
}

static void accept(const char *filter)
{
    lcow_filter *f = NULL;
    lcow_error err = {0};
    if (lcow_filter_parse(&filter, 1, &f, &err) != LCOW_OK)
        fail_msg("\"%s\" rejected: %s", filter, err.message);
    lcow_filter_free(f);
}

static void whitespace_quirks(void **state)
{
    accept("name==foo, kind==active");
    accept("name == foo");
    accept("name ==foo");
    accept("name== foo");
    accept("name==\tfoo,\t kind");
    accept(" name==foo");         /* leading whitespace is skipped */
    accept("labels. l==2");       /* and after '.', too */
    accept("name==foo,\n\nkind"); /* any Unicode space */
    accept("name==\xc2\xa0"
           "foo"); /* NBSP is a space */
    reject("name==foo ", "unexpected whitespace");
    reject("name==foo\t", "unexpected whitespace");
    reject("name==foo ,kind", "unexpected whitespace");
    reject("name ,kind", "expected an operator");
    reject("name ", "expected an operator");
    reject("labels .l", "expected an operator");
    reject("name==\"foo\" ", "unexpected whitespace");
    reject("name==foo\xe3\x80\x80", "unexpected whitespace"); /* ideographic space */
    reject("name==foo bar", "unexpected whitespace");
}

static void operator_quirks(void **state)
{
    accept("name==a");
    accept("name!=a");
    accept("name~=a");
    reject("name=a", "unsupported operator \"=\"");
    reject("name===a", "unsupported operator \"===\"");
    reject("name=!a", "unsupported operator");
    reject("name~a", "unsupported operator \"~\"");
    reject("name!a", "unsupported operator");
    reject("name==!a", "unsupported operator \"==!\"");
    reject("name== =a", "expected a value");
    reject("name==", "expected a value");
    reject("name== ", "expected a value");
    reject("name==,kind", "expected a value");
    reject("name==.x", "expected a value");
    reject("image~=,id?=?fbaq", "expected a value");
    reject("name foo", "expected an operator");
    reject("name?", "expected an operator");
}

static void field_quirks(void **state)
{
    accept("1abc");  /* a leading digit is fine */
    accept("_x.9_"); /* digits and underscores anywhere */
    accept("\"quoted field\"");
    accept(""); /* matches everything */
}

static void field_rejections(void **state)
{
    reject("a-b", "expected an operator (==, != or ~=) or ',' or the end, found '-'");
    reject("labels.a-b==1", "found '-'");
    reject("labels.ns/key==value", "quoted literal not terminated");
    reject("labels.containerd.io/key==value", "quoted literal not terminated");
    reject("labels.|foo|==x", "invalid quote '|'");
    reject("labels./foo/==x", "invalid quote '/'");
    reject("labels.'foo'==x", "expected a field name");
    reject("labels.", "expected a field name");
    reject("labels..x", "expected a field name");
    reject(".name", "expected a field name");
    reject("name==foo,", "expected a field name");
    reject(",name", "expected a field name");
    reject("name,,kind", "expected a field name");
    reject("labels.?\"x\".post==present", "expected a field name");
    reject("==x", "expected a field name");
    reject("n\xc3\xa9", "found U+00E9");
}

static void value_quirks(void **state)
{
    /* The first rune decides: quote, separator and operator runes are not
     * values, anything else starts one. */
    reject("parent==/tmp/x", "invalid quote '/'"); /* `/tmp/` is a quoted token */
    accept("parent==\"/tmp/x\"");
    reject("labels.key==/value", "quoted literal not terminated");
    reject("name==|x|", "invalid quote '|'");
    reject("name!=/x/", "invalid quote '/'");
    accept("name~=/x/");
    accept("name~=|x|");
    accept("name==x/y|z\"w"); /* only the FIRST rune is classified */
    accept("name==a=b");
    accept("name==-1");
    accept("name=='x'"); /* ' is no quote character */
    reject("name==\"x\".y", "unexpected '.'");
    reject("name==\"x\"y", "unexpected 'y'");
    reject("name==x,", "expected a field name");
    accept("name==\xe7\x89\x9b");                   /* a Han character */
    accept("name==a\xe7\x89\x9b\xc3\xa9");          /* graphic runes continue a value */
    reject("name==a\xc2\xad", "unexpected U+00AD"); /* soft hyphen (Cf) ends it */
    reject("name==a\x01", "unexpected U+0001");
    accept("name==\x01"); /* ...but may start one, as in Go */
    accept("name==\xc2\xad");
    reject("name==a\x7f", "unexpected U+007F");
}

static void quoted_rejections(void **state)
{
    reject("labels.\"\\g\"", "illegal escape sequence");
    reject("labels.\"\\xaz\"", "illegal numeric escape sequence");
    reject("labels.\"\\x4\"", "illegal numeric escape sequence");
    reject("labels.\"\\u12\"", "illegal numeric escape sequence");
    reject("labels.\"\\U0001F60\"", "illegal numeric escape sequence");
    reject("labels.\"\\18\"", "illegal numeric escape sequence");
    reject("labels.\"\\400\"", "unquoting failed");
    reject("labels.\"\\U00110000\"", "unquoting failed");
    reject("labels.\"\\'\"", "illegal escape sequence");
    reject("labels.\"\\/\"", "illegal escape sequence");
    reject("name~=/\\|/", "illegal escape sequence");
    reject("name~=|\\\"|", "illegal escape sequence");
    reject("labels.\"abc", "quoted literal not terminated");
    reject("labels.\"abc\\\"", "quoted literal not terminated");
    reject("labels.\"containerd.io\nkey\"==value", "quoted literal not terminated");
    reject("name==\"a\nb\"", "quoted literal not terminated");
    reject("name==\"\\", "illegal escape sequence"); /* first error wins, as in Go */
    accept("labels.\"\"");
    accept("labels.\"\"==\"\"");
}

static void nul_and_utf8_rejected(void **state)
{
    expect_error("name==a\0b", 9, "unexpected NUL byte");
    expect_error("na\0me==a", 8, "NUL byte");
    expect_error("name==\"a\0b\"", 11, "NUL byte");
    expect_error("\0", 1, "NUL byte");
    reject("name==a\xff", "invalid UTF-8");
    reject("name==\xff", "invalid UTF-8");
    reject("name==\"\xc3\"", "invalid UTF-8");
    reject("labels.\"\xed\xa0\x80\"", "invalid UTF-8"); /* an encoded surrogate */
    reject("name==\xc0\xaf", "invalid UTF-8");          /* overlong '/' */
    reject("name==\xef\xbf\xbd", "U+FFFD");             /* Go cannot tell it from an error */
    reject("\xe7\x89", "invalid UTF-8");
    /* A NULL string in the list. */
    const char *list[] = {"name==a", NULL};
    lcow_filter *f = NULL;
    lcow_error err = {0};
    assert_int_equal(lcow_filter_parse(list, 2, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "filter 1"));
    assert_null(f);
}

static void error_messages_name_position_and_expectation(void **state)
{
    const char *list[] = {"name==a", "labels.l==2,kind=view"};
    lcow_filter *f = NULL;
    lcow_error err = {0};
    assert_int_equal(lcow_filter_parse(list, 2, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "filter 1: parse error at byte 16: unsupported operator "
                                     "\"=\": expected ==, != or ~=: [labels.l==2,kind >|=|< view]");
    const char *trailing = "name==foo ";
    assert_int_equal(lcow_filter_parse(&trailing, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "filter 0: parse error at byte 9: unexpected whitespace"));
    assert_non_null(strstr(err.message, "[name==foo >| |< ]"));
    const char *eof = "name==";
    assert_int_equal(lcow_filter_parse(&eof, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at byte 6 (end of filter): expected a value or a quoted "
                                        "string after the operator, found the end of the filter"));
    const char *esc = "labels.\"ab\\qc\"";
    assert_int_equal(lcow_filter_parse(&esc, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at byte 11: illegal escape sequence"));
    /* An unterminated quote is reported where it opens, as in Go. */
    const char *open_quote = "labels.ns/key==value";
    assert_int_equal(lcow_filter_parse(&open_quote, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at byte 9: quoted literal not terminated"));
    assert_non_null(strstr(err.message, "[labels.ns >|/|< key==value]"));
    /* Control bytes and invalid UTF-8 are escaped in the excerpt, so the
     * message is always printable UTF-8. */
    const char *ctl = "name==a\x01\xff";
    assert_int_equal(lcow_filter_parse(&ctl, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_true(lcow_utf8_valid(err.message, strlen(err.message)));
    assert_non_null(strstr(err.message, "\\x01"));
    /* A long filter is shown as an excerpt. */
    char longf[600];
    memset(longf, 'a', sizeof longf);
    memcpy(longf + 300, "==x y", 5);
    longf[sizeof longf - 1] = '\0';
    const char *lp = longf;
    assert_int_equal(lcow_filter_parse(&lp, 1, &f, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at byte 303"));
    assert_non_null(strstr(err.message, ": [...aaaa"));
    assert_non_null(strstr(err.message, "aaaa==x >| |< yaaaa"));
    assert_non_null(strstr(err.message, "aaa...]"));
}

/* ---- the generic adaptor ---- */

typedef struct obj {
    const char *name;
    const char *other;
} obj;

static bool obj_field(void *ctx, const char *const *path, const size_t *lens, size_t count,
                      const char **value)
{
    const obj *o = ctx;
    assert_true(count >= 1);
    if (strcmp(path[0], "name") == 0 && lens[0] == 4) {
        *value = o->name;
        return o->name[0] != '\0';
    }
    if (strcmp(path[0], "other") == 0) {
        *value = o->other;
        return o->other[0] != '\0';
    }
    return false;
}

static void generic_adaptor(void **state)
{
    obj baz = {"baz", "too complex, yo"}, bazo = {"bazo", "abc"}, foo = {"foo", ""};
    lcow_filter *f = must_parse("other~=[abc]+,name!=foo");
    assert_true(lcow_filter_match(f, obj_field, &baz));
    assert_true(lcow_filter_match(f, obj_field, &bazo));
    assert_false(lcow_filter_match(f, obj_field, &foo));
    lcow_filter_free(f);
    f = must_parse("other==\"too complex, yo\"");
    assert_true(lcow_filter_match(f, obj_field, &baz));
    assert_false(lcow_filter_match(f, obj_field, &bazo));
    lcow_filter_free(f);
    f = must_parse("other~=/[abc]{0,1}\"\\//,name!=foo");
    assert_false(lcow_filter_match(f, obj_field, &baz));
    assert_false(lcow_filter_match(f, obj_field, &bazo));
    lcow_filter_free(f);
    f = must_parse("other");
    assert_false(lcow_filter_match(f, obj_field, &foo));
    assert_true(lcow_filter_match(f, obj_field, &baz));
    lcow_filter_free(f);
    /* The adaptor sees escaped NULs through the lengths. */
    f = must_parse("\"name\\x00\"==baz");
    assert_false(lcow_filter_match(f, obj_field, &baz));
    lcow_filter_free(f);
}

/* ---- threads ---- */

typedef struct thread_job {
    const lcow_filter *filter;
    const walk_set *set;
    int mismatches;
} thread_job;

static void *match_many(void *arg)
{
    thread_job *job = arg;
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < job->set->count; i++) {
            const lcow_info *info = &job->set->infos[i];
            bool expected = strcmp(info->name, "a-wl") == 0 || strcmp(info->name, "v") == 0 ||
                            strcmp(info->name, "a") == 0;
            if (lcow_filter_match_info(job->filter, info) != expected)
                job->mismatches++;
        }
    }
    return NULL;
}

static void threads_share_one_filter(void **state)
{
    const walk_set *set = *state;
    const char *filters[] = {"name~=^a-w,labels.l~=/^[0-9]$/",
                             "parent~=|^p$|,kind~=(?:view|active)", "name==nothing"};
    lcow_filter *f = must_parse_n(filters, 3);
    pthread_t threads[6];
    thread_job jobs[6];
    for (int i = 0; i < 6; i++) {
        jobs[i] = (thread_job){f, set, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, match_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(jobs[i].mismatches, 0);
    }
    lcow_filter_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(walk_testsuite_cases, walk_set_setup, walk_set_teardown),
        cmocka_unit_test_setup_teardown(walk_more_semantics, walk_set_setup, walk_set_teardown),
        cmocka_unit_test(unknown_kind_is_absent),
        cmocka_unit_test(match_all_forms),
        cmocka_unit_test(remote_snapshot_lookup),
        cmocka_unit_test(dotted_and_quoted_label_keys),
        cmocka_unit_test(regex_forms_of_the_spec),
        cmocka_unit_test(regex_semantics),
        cmocka_unit_test(invalid_regex_never_matches),
        cmocka_unit_test(hostile_regex_finishes),
        cmocka_unit_test(escape_values),
        cmocka_unit_test(whitespace_quirks),
        cmocka_unit_test(operator_quirks),
        cmocka_unit_test(field_quirks),
        cmocka_unit_test(field_rejections),
        cmocka_unit_test(value_quirks),
        cmocka_unit_test(quoted_rejections),
        cmocka_unit_test(nul_and_utf8_rejected),
        cmocka_unit_test(error_messages_name_position_and_expectation),
        cmocka_unit_test(generic_adaptor),
        cmocka_unit_test_setup_teardown(threads_share_one_filter, walk_set_setup,
                                        walk_set_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

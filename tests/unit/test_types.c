/* Value types and error records shared by every layer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/errors.h"
#include "core/base/types.h"

static void labels_stay_sorted_and_drop_empty_values(void **state)
{
    lcow_labels l = {0};
    assert_true(lcow_labels_set(&l, "b", "2"));
    assert_true(lcow_labels_set(&l, "a", "1"));
    assert_true(lcow_labels_set(&l, "c", "3"));
    assert_int_equal(l.count, 3);
    assert_string_equal(l.items[0].key, "a");
    assert_string_equal(l.items[2].key, "c");
    assert_true(lcow_labels_set(&l, "b", "two"));
    assert_string_equal(lcow_labels_get(&l, "b"), "two");
    assert_true(lcow_labels_set(&l, "b", ""));
    assert_null(lcow_labels_get(&l, "b"));
    assert_int_equal(l.count, 2);
    lcow_labels copy;
    assert_true(lcow_labels_copy(&copy, &l));
    assert_int_equal(copy.count, 2);
    assert_string_equal(copy.items[1].value, "3");
    lcow_labels_free(&copy);
    lcow_labels_free(&l);
    assert_int_equal(l.count, 0);
}

static void kinds_parse_case_insensitively(void **state)
{
    assert_int_equal(lcow_kind_parse("Active"), LCOW_KIND_ACTIVE);
    assert_int_equal(lcow_kind_parse("committed"), LCOW_KIND_COMMITTED);
    assert_int_equal(lcow_kind_parse("VIEW"), LCOW_KIND_VIEW);
    assert_int_equal(lcow_kind_parse("views"), LCOW_KIND_UNKNOWN);
    assert_int_equal(lcow_kind_parse(""), LCOW_KIND_UNKNOWN);
    assert_string_equal(lcow_kind_name(LCOW_KIND_VIEW), "view");
}

static void utf8_validation_rejects_bad_sequences(void **state)
{
    assert_true(lcow_utf8_valid("plain", 5));
    assert_true(lcow_utf8_valid("caf\xc3\xa9", 5));
    assert_true(lcow_utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(lcow_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(lcow_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(lcow_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(lcow_utf8_valid("a\0b", 3));             /* NUL */
    assert_false(lcow_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
}

static void errors_carry_code_and_wrapped_message(void **state)
{
    lcow_error err;
    assert_int_equal(lcow_error_set(&err, LCOW_NOT_FOUND, "snapshot %s", "k"), LCOW_NOT_FOUND);
    lcow_error_wrap(&err, "stat");
    assert_string_equal(err.message, "stat: snapshot k");
    assert_string_equal(lcow_code_name(err.code), "NotFound");
    assert_int_equal(lcow_code_from_name("FailedPrecondition"), LCOW_FAILED_PRECONDITION);
    assert_int_equal(lcow_code_from_name("bogus"), LCOW_INTERNAL);
    assert_int_equal(lcow_error_set(NULL, LCOW_INTERNAL, "x"), LCOW_INTERNAL);
}

/* A message longer than the record keeps its cause (head) and its remedy
 * (tail) whatever the path length, and stays valid UTF-8: the middle, where
 * the paths are, is cut (issue 14 item 11: a 150-character checkout lost the
 * --scratch-dir-allow hint). */
static void long_messages_keep_cause_and_remedy(void **state)
{
    static const char remedy[] = "is outside every --scratch-dir-allow directory";
    for (size_t len = LCOW_ERROR_MESSAGE_MAX - 30; len < 3 * LCOW_ERROR_MESSAGE_MAX; len += 97) {
        char *path = malloc(len + 1);
        assert_non_null(path);
        path[0] = '/';
        for (size_t i = 1; i < len; i++) /* "é" (2 bytes) and ASCII, cut anywhere */
            path[i] = (i % 3 == 0) ? 'a' : (i % 3 == 1 ? '\xc3' : '\xa9');
        if (path[len - 1] == '\xc3')
            path[len - 1] = 'a';
        path[len] = '\0';
        assert_true(lcow_utf8_valid(path, len));
        lcow_error err;
        assert_int_equal(lcow_error_set(&err, LCOW_INVALID_ARGUMENT, "label %s: %s %s",
                                        "x.location", path, remedy),
                         LCOW_INVALID_ARGUMENT);
        size_t n = strlen(err.message);
        assert_true(n < LCOW_ERROR_MESSAGE_MAX);
        assert_true(strncmp(err.message, "label x.location: /", 19) == 0);
        assert_string_equal(err.message + n - (sizeof remedy - 1), remedy);
        assert_non_null(strstr(err.message, "[...]"));
        assert_true(lcow_utf8_valid(err.message, n));

        lcow_error_wrap(&err, "prepare %s", path); /* a long context too */
        n = strlen(err.message);
        assert_true(n < LCOW_ERROR_MESSAGE_MAX);
        assert_true(strncmp(err.message, "prepare /", 9) == 0);
        assert_string_equal(err.message + n - (sizeof remedy - 1), remedy);
        assert_true(lcow_utf8_valid(err.message, n));
        free(path);
    }
    /* Every word survives: only the long tokens (the paths) are shortened. */
    char a[LCOW_ERROR_MESSAGE_MAX * 3 / 4], b[LCOW_ERROR_MESSAGE_MAX];
    memset(a, 'a', sizeof a - 1);
    a[0] = '/';
    a[sizeof a - 1] = '\0';
    memset(b, 'b', sizeof b - 1);
    b[0] = '/';
    memcpy(b + sizeof b - 12, "/state.file", 12);
    lcow_error err;
    lcow_error_set(&err, LCOW_FAILED_PRECONDITION,
                   "--root: state directory %s is not writable: create %s: permission denied", a,
                   b);
    size_t n = strlen(err.message);
    assert_true(n < LCOW_ERROR_MESSAGE_MAX);
    if (!strstr(err.message, "--root: state directory /aaa") ||
        !strstr(err.message, " is not writable: create /bbb") ||
        !strstr(err.message, "/state.file: permission denied") ||
        strcmp(err.message + n - 17, "permission denied") != 0)
        fail_msg("a word was lost: %s", err.message);
    /* Too many words for the record: the middle of the message goes. */
    char many[3 * LCOW_ERROR_MESSAGE_MAX];
    size_t at = 0;
    at += (size_t)snprintf(many, sizeof many, "cause:");
    while (at < 2 * LCOW_ERROR_MESSAGE_MAX)
        at += (size_t)snprintf(many + at, sizeof many - at, " w%zu", at);
    snprintf(many + at, sizeof many - at, " remedy");
    lcow_error_set(&err, LCOW_INTERNAL, "%s", many);
    n = strlen(err.message);
    assert_true(n < LCOW_ERROR_MESSAGE_MAX);
    assert_true(strncmp(err.message, "cause: ", 7) == 0);
    assert_string_equal(err.message + n - 7, " remedy");
    /* a message that fits is unchanged */
    lcow_error_set(&err, LCOW_NOT_FOUND, "%s", "short");
    assert_string_equal(err.message, "short");
}

static void keys_split_into_namespace_and_client_key(void **state)
{
    const char *client;
    size_t ns;
    lcow_key_split("default/17/extract-1 sha256:ab", &client, &ns);
    assert_string_equal(client, "extract-1 sha256:ab");
    assert_int_equal(ns, 7);
    lcow_key_split("k8s.io/3/a/b", &client, &ns);
    assert_string_equal(client, "a/b");
    assert_int_equal(ns, 6);
    lcow_key_split("ns/0012/x/y", &client, &ns);
    assert_string_equal(client, "x/y");
    assert_int_equal(ns, 2);
    lcow_key_split("a/1/", &client, &ns);
    assert_string_equal(client, "");
    assert_int_equal(ns, 1);
    const char *plain[] = {"plain", "/1/x",   "ns//x",         "ns/1x/y",
                           "ns/12", "ns/a/b", "C:\\layers\\1", ""};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        lcow_key_split(plain[i], &client, &ns);
        assert_ptr_equal(client, plain[i]);
        assert_int_equal(ns, 0);
    }
}

static void grow_doubles_and_keeps_contents(void **state)
{
    int *v = NULL;
    size_t cap = 0;
    assert_true(lcow_grow(&v, &cap, 1, sizeof *v));
    assert_int_equal(cap, 8);
    for (int i = 0; i < 8; i++)
        v[i] = i;
    assert_true(lcow_grow(&v, &cap, 8, sizeof *v)); /* enough room: unchanged */
    assert_int_equal(cap, 8);
    assert_true(lcow_grow(&v, &cap, 9, sizeof *v));
    assert_int_equal(cap, 16);
    assert_true(lcow_grow(&v, &cap, 100, sizeof *v));
    assert_int_equal(cap, 128);
    for (int i = 0; i < 8; i++)
        assert_int_equal(v[i], i);
    size_t before = cap;
    assert_false(lcow_grow(&v, &cap, SIZE_MAX / 2, sizeof *v)); /* overflow: refused */
    assert_int_equal(cap, before);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(labels_stay_sorted_and_drop_empty_values),
        cmocka_unit_test(kinds_parse_case_insensitively),
        cmocka_unit_test(utf8_validation_rejects_bad_sequences),
        cmocka_unit_test(errors_carry_code_and_wrapped_message),
        cmocka_unit_test(long_messages_keep_cause_and_remedy),
        cmocka_unit_test(keys_split_into_namespace_and_client_key),
        cmocka_unit_test(grow_doubles_and_keeps_contents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

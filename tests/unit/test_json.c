/* core/base/json: JSON string literals, Go's rule (the parentLayerPaths
 * mount option) and the plain rule (lcowsnapctl --json). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/base/json.h"

static void go_rule_is_encoding_json(void **state)
{
    (void)state;
    const char *paths[] = {"C:\\ProgramData\\lcowsnap\\snapshots\\5", "a\"b<c>&d", "\x01\n",
                           "caf\xc3\xa9 \xe2\x80\xa8", "bad\xff"};
    char *j = lcow_json_string_array(paths, 5, LCOW_JSON_GO);
    assert_string_equal(j, "[\"C:\\\\ProgramData\\\\lcowsnap\\\\snapshots\\\\5\","
                           "\"a\\\"b\\u003cc\\u003e\\u0026d\",\"\\u0001\\n\","
                           "\"caf\xc3\xa9 \\u2028\",\"bad\\ufffd\"]");
    free(j);
    j = lcow_json_string_array(NULL, 0, LCOW_JSON_GO);
    assert_string_equal(j, "[]");
    free(j);
}

/* lcowsnapctl's rule, unchanged: short escapes, \u00XX below 0x20, every
 * other byte (< > &, U+2028, invalid UTF-8) as it is. */
static void plain_rule_copies_other_bytes(void **state)
{
    (void)state;
    char *j =
        lcow_json_string("a\"b\\<c>&d\r\t\x1f caf\xc3\xa9 \xe2\x80\xa8 bad\xff", LCOW_JSON_PLAIN);
    assert_string_equal(j, "\"a\\\"b\\\\<c>&d\\r\\t\\u001f caf\xc3\xa9 \xe2\x80\xa8 bad\xff\"");
    free(j);
    j = lcow_json_string("", LCOW_JSON_PLAIN);
    assert_string_equal(j, "\"\"");
    free(j);
    const char *two[] = {"x", "y"};
    j = lcow_json_string_array(two, 2, LCOW_JSON_PLAIN);
    assert_string_equal(j, "[\"x\",\"y\"]");
    free(j);
}

static void append_grows_one_buffer(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < 1000; i++)
        assert_true(lcow_json_append_string(&out, &len, &cap, "<abc>", LCOW_JSON_GO));
    assert_int_equal(len, 1000 * 17);
    assert_memory_equal(out, "\"\\u003cabc\\u003e\"", 17);
    assert_int_equal(out[len], '\0');
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(go_rule_is_encoding_json),
        cmocka_unit_test(plain_rule_copies_other_bytes),
        cmocka_unit_test(append_grows_one_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Helpers shared by the cmocka unit tests (tests/unit/test_util.c). Include
 * after <cmocka.h>: the helpers fail the running test through its asserts. */
#ifndef LCOW_TESTS_UNIT_TEST_UTIL_H
#define LCOW_TESTS_UNIT_TEST_UTIL_H

/* A fresh, empty directory per test: <LCOW_TEST_TMP>/<name>, malloc'd.
 * Whatever a previous run left there is removed first. */
char *test_fresh_dir(const char *name);

#endif

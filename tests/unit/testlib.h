/* Helpers shared by the cmocka unit tests (tests/unit/testlib.c). Include
 * after <cmocka.h>: the helpers fail the running test through its asserts. */
#ifndef LCOW_TESTS_UNIT_TESTLIB_H
#define LCOW_TESTS_UNIT_TESTLIB_H

#include <stdbool.h>
#include <stdint.h>

#include "core/os/os.h"

/* Skips the running test in builds without LCOW_FAULT_INJECTION (the release
 * preset), which have no core/os fault seam. */
#define REQUIRE_FAULT_SEAM()                                                                       \
    do {                                                                                           \
        if (!lcow_os_fault_arm(LCOW_OS_OP_ANY, 0, LCOW_FAULT_NONE, false)) {                       \
            print_message("fault injection not compiled in\n");                                    \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* A fresh, empty directory per test: <LCOW_TEST_TMP>/<name>, malloc'd.
 * Whatever a previous run left there is removed first. */
char *test_fresh_dir(const char *name);

/* lcow_path_join(a, b), malloc'd; never NULL. */
char *test_join(const char *a, const char *b);

/* lcow_os_stat of path (.exists false where nothing is); fails the test
 * where path cannot be looked at. */
lcow_stat test_stat(const char *path);

/* Whether something is at path (test_stat). */
bool test_exists(const char *path);

/* The size of the file at path, which must exist. */
uint64_t test_file_size(const char *path);

/* How many entries directory dir holds. */
int test_entries_in(const char *dir);

/* How many entries of directory dir have a name match accepts. */
int test_entries_matching(const char *dir, bool (*match)(const char *name));

/* Sleeps at least ms milliseconds. */
void test_sleep_ms(unsigned ms);

#endif

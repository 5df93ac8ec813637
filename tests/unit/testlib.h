/* Helpers shared by the cmocka unit tests (tests/unit/testlib.c). Include
 * after <cmocka.h>: the helpers fail the running test through its asserts. */
#ifndef LCOW_TESTS_UNIT_TESTLIB_H
#define LCOW_TESTS_UNIT_TESTLIB_H

/* Skips the running test in builds without LCOW_FAULT_INJECTION (the release
 * preset), which have no core/os fault seam. Needs core/os/os.h. */
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

/* Sleeps at least ms milliseconds. */
void test_sleep_ms(unsigned ms);

#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

#include "core/base/errors.h"
#include "core/os/os.h"
#include "unit/testlib.h"

char *test_fresh_dir(const char *name)
{
    const char *base = getenv("LCOW_TEST_TMP");
    assert_non_null(base);
    char *dir = lcow_path_join(base, name);
    lcow_error err;
    assert_int_equal(lcow_os_remove_all(dir, &err), LCOW_OK);
    assert_int_equal(lcow_os_mkdir_all(dir, &err), LCOW_OK);
    return dir;
}

void test_sleep_ms(unsigned ms)
{
#ifdef _WIN32
    Sleep(ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/errors.h"
#include "core/os.h"
#include "unit/test_util.h"

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

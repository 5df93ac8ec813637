#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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

char *test_join(const char *a, const char *b)
{
    char *p = lcow_path_join(a, b);
    assert_non_null(p);
    return p;
}

lcow_stat test_stat(const char *path)
{
    lcow_stat st;
    lcow_error err;
    if (lcow_os_stat(path, &st, &err) != LCOW_OK)
        fail_msg("stat %s: %s", path, err.message);
    return st;
}

bool test_exists(const char *path)
{
    return test_stat(path).exists;
}

uint64_t test_file_size(const char *path)
{
    lcow_stat st = test_stat(path);
    if (!st.exists)
        fail_msg("%s does not exist", path);
    return st.size;
}

typedef struct entry_count {
    bool (*match)(const char *name);
    int n;
} entry_count;

static int count_entry(void *ctx, const char *name, bool is_dir)
{
    (void)is_dir;
    entry_count *c = ctx;
    if (!c->match || c->match(name))
        c->n++;
    return 0;
}

int test_entries_matching(const char *dir, bool (*match)(const char *name))
{
    entry_count c = {match, 0};
    lcow_error err;
    if (lcow_os_list_dir(dir, count_entry, &c, &err) != LCOW_OK)
        fail_msg("list %s: %s", dir, err.message);
    return c.n;
}

int test_entries_in(const char *dir)
{
    return test_entries_matching(dir, NULL);
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

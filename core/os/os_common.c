/* Platform-independent parts of core/os: path strings. */
#include "core/os/os.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
static bool is_sep(char c)
{
    return c == LCOW_PATH_SEP || c == '/';
}

char *lcow_path_join(const char *a, const char *b)
{
    size_t alen = strlen(a), blen = strlen(b);
    bool need_sep = alen > 0 && blen > 0 && !is_sep(a[alen - 1]);
    /* b is relative to a: drop its leading separators so "a/" + "/b" is "a/b". */
    while (alen > 0 && blen > 0 && is_sep(*b))
        b++, blen--;
    char *out = lcow_malloc(alen + need_sep + blen + 1);
    if (!out)
        return NULL;
    memcpy(out, a, alen);
    if (need_sep)
        out[alen] = LCOW_PATH_SEP;
    memcpy(out + alen + need_sep, b, blen + 1);
    return out;
}

const char *lcow_os_stat_kind(const lcow_stat *st)
{
    if (!st->exists)
        return "missing";
    if (st->is_link)
        return "a symbolic link";
    if (st->is_dir)
        return "a directory";
    if (st->is_regular)
        return "a regular file";
    return "a FIFO, socket or device";
}

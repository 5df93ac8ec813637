/* Platform-independent parts of core/os: path strings, the sparse copy's
 * shape (the platform files copy the bytes). */
#include "core/os/os.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
#include "core/os/os_internal.h"

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

lcow_code lcow_os_copy_sparse(const char *src, const char *dst, lcow_error *err)
{
    /* The seam first, as for every operation: nothing is opened or
     * created when it fails. */
    lcow_code rc = lcow_os_fault_check(LCOW_OS_OP_COPY, dst, err);
    if (rc)
        return rc;
    /* The source only as a regular file: never waited on (a FIFO, a pipe),
     * never followed (a final link, a reparse point), never a device. */
    lcow_file *in = NULL, *out = NULL;
    lcow_error e;
    rc = lcow_file_open(src, LCOW_OPEN_READ | LCOW_OPEN_REGULAR, &in, &e);
    if (rc != LCOW_OK)
        return lcow_error_set(err, rc, "copy: source %s", e.message);
    rc = lcow_file_open(dst, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &out, &e);
    if (rc != LCOW_OK) {
        lcow_file_close(in);
        return lcow_error_set(err, rc, "copy: create %s", e.message);
    }
    rc = lcow_os_copy_open_files(in, out, err);
    lcow_file_close(in);
    lcow_file_close(out);
    if (rc != LCOW_OK)
        lcow_os_remove_partial(dst); /* a failed copy leaves nothing behind */
    return rc;
}

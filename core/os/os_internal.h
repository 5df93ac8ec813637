/* Shared between the platform files of core/os (not a public header): the
 * fault-injection check every fallible operation calls first. */
#ifndef LCOW_OS_INTERNAL_H
#define LCOW_OS_INTERNAL_H

#include "core/os/os.h"

/* Counts one call of op; when an armed fault fires, fills err with a message
 * naming the operation and what (a path) and returns the fault's code.
 * Returns LCOW_OK otherwise (always, without LCOW_FAULT_INJECTION). */
lcow_code lcow_os_fault_check(lcow_os_op op, const char *what, lcow_error *err);

/* The platform's half of lcow_file_copy_sparse (os_common.c): copies src
 * into dst from their starts, keeping src's holes, and syncs dst. */
lcow_code lcow_os_copy_open_files(lcow_file *src, lcow_file *dst, lcow_error *err);

/* Removes a partial file after a failed operation, without the seam (a
 * persistent fault must not keep it); logs a warning if it stays. */
void lcow_os_remove_partial(const char *path);

#endif

/* Shared between the platform files of core/os (not a public header): the
 * fault-injection check every fallible operation calls first. */
#ifndef LCOW_OS_INTERNAL_H
#define LCOW_OS_INTERNAL_H

#include "core/os/os.h"

/* Counts one call of op; when an armed fault fires, fills err with a message
 * naming the operation and what (a path) and returns the fault's code.
 * Returns LCOW_OK otherwise (always, without LCOW_FAULT_INJECTION). */
lcow_code lcow_os_fault_check(lcow_os_op op, const char *what, lcow_error *err);

#endif

/* Windows helpers of the service (Windows builds only); the UTF-8 <-> UTF-16
 * conversions are core's (core/os/win_str.h). */
#ifndef LCOW_SERVICE_WIN_UTIL_H
#define LCOW_SERVICE_WIN_UTIL_H

#include <windows.h>

#include "core/os/win_str.h"

/* The system message for a Win32 error code, UTF-8, no trailing newline. */
void lcow_win_error_text(DWORD code, char *buf, size_t size);

#endif

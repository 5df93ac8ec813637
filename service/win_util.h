/* UTF-8 <-> UTF-16 at the Windows API boundary (Windows builds only). */
#ifndef LCOW_SERVICE_WIN_UTIL_H
#define LCOW_SERVICE_WIN_UTIL_H

#include <windows.h>

/* malloc'd conversions; NULL on failure or NULL input. */
wchar_t *lcow_utf8_to_wide(const char *s);
char *lcow_wide_to_utf8(const wchar_t *w);
/* The system message for a Win32 error code, UTF-8, no trailing newline. */
void lcow_win_error_text(DWORD code, char *buf, size_t size);

#endif

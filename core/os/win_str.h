/* UTF-8 <-> UTF-16 at the Windows API boundary (Windows builds only): the one
 * conversion every *_win.c file uses, in core/ so rpc/ and service/ share it. */
#ifndef LCOW_CORE_WIN_STR_H
#define LCOW_CORE_WIN_STR_H

#include <wchar.h>

/* malloc'd conversions; NULL on failure, invalid UTF-8 or NULL input. */
wchar_t *lcow_utf8_to_wide(const char *s);
char *lcow_wide_to_utf8(const wchar_t *w);

#endif

/* UTF-8 <-> UTF-16 at the Windows API boundary (Windows builds only): the one
 * conversion every *_win.c file uses, in core/ so rpc/ and service/ share it. */
#ifndef LCOW_CORE_WIN_STR_H
#define LCOW_CORE_WIN_STR_H

#include <stdbool.h>
#include <wchar.h>

/* malloc'd conversions; NULL on failure, invalid UTF-8 or NULL input. */
wchar_t *lcow_utf8_to_wide(const char *s);
char *lcow_wide_to_utf8(const wchar_t *w);

/* The process's command line as UTF-8 arguments, for main() on Windows,
 * whose CRT argv is in the ANSI code page: CommandLineToArgvW of
 * GetCommandLineW, each argument through lcow_wide_to_utf8. *argv is
 * NULL-terminated; release it with lcow_utf8_argv_free. False (and nothing
 * to free) when the command line cannot be read or converted. */
bool lcow_utf8_argv(int *argc, char ***argv);
void lcow_utf8_argv_free(int argc, char **argv);

#endif

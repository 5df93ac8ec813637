/* Building a Windows command line (the service's ImagePath) that
 * CommandLineToArgvW / the C runtime split back into exactly the same
 * arguments: spaces, tabs, quotes and trailing backslashes are quoted by
 * the documented argv rules. Pure string code, tested on every platform. */
#ifndef LCOW_SERVICE_CMDLINE_H
#define LCOW_SERVICE_CMDLINE_H

#include <stddef.h>

/* Appends one argument (quoted if needed, preceded by a space unless *buf is
 * empty) to the malloc'd string *buf. Returns 0, or -1 when out of memory. */
int lcow_cmdline_append(char **buf, const char *arg);

/* "<exe quoted> --run-service <args quoted>..."; malloc'd, NULL if out of memory.
 * The exe path is always quoted so a path with spaces cannot be hijacked
 * (C:\Program.exe). */
char *lcow_cmdline_for_service(const char *exe, const char *const *args, size_t count);

#endif

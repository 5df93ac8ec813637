/* The service's own ImagePath (register_win.c; Windows only): an unquoted
 * path with a space is CWE-428, an unquoted search path. */
#ifndef LCOW_SERVICE_IMAGE_PATH_H
#define LCOW_SERVICE_IMAGE_PATH_H

#include <stdbool.h>
#include <wchar.h>

/* True when a service ImagePath is unquoted and its executable's path (up to
 * the first ".exe" that ends a word) contains a space: Windows then tries
 * each prefix ending at a space first (C:\Program.exe for C:\Program Files\...),
 * as the service's account (CWE-428, unquoted search path). */
bool lcow_image_path_unquoted_with_space(const wchar_t *image_path);

/* At service startup: reads the service's own ImagePath from the SCM and logs
 * a warning (also to the Event Log) when lcow_image_path_unquoted_with_space,
 * naming the fix. Says nothing when the path is quoted or cannot be read. */
void lcow_check_own_image_path(const char *service_name);

#endif

/* The few OS operations the service layer needs before the store exists
 * (config validation, log files, sleeping) that core/os/os.h does not have
 * (absolute paths and directory creation come from there). platform_posix.c
 * and platform_win.c implement them; paths are UTF-8, converted to UTF-16 at
 * the Windows API. */
#ifndef LCOW_SERVICE_PLATFORM_H
#define LCOW_SERVICE_PLATFORM_H

#include <stdbool.h>
#include <stdio.h>

#include "core/base/errors.h"

/* malloc'd copy with the platform separator ('/' -> '\' on Windows) and no
 * trailing separator (except a root like "/" or "C:\"). */
char *lcow_svc_path_normalize(const char *path);
/* malloc'd current directory, NULL on failure. */
char *lcow_svc_cwd(void);
/* malloc'd default state directory: %ProgramData%\lcowsnap on Windows,
 * <cwd>/var/lcowsnap elsewhere. */
char *lcow_svc_default_root(void);
/* Creates, writes and deletes a probe file in dir. */
lcow_code lcow_svc_probe_writable(const char *dir, lcow_error *err);
/* fopen with a UTF-8 path. */
FILE *lcow_svc_fopen(const char *path, const char *mode);
void lcow_svc_sleep_ms(unsigned ms);
/* "2026-11-27T22:54:01.123Z" into buf (at least 32 bytes). */
void lcow_svc_timestamp(char *buf, size_t size);
/* What --version says about the platform: "windows", or "linux, foreground
 * only". */
const char *lcow_svc_platform_name(void);
/* One process-wide lock for the log sinks (lines from many threads). */
void lcow_svc_log_lock(void);
void lcow_svc_log_unlock(void);

#endif

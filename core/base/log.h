/* Leveled logging shared by every layer. The service installs a sink (stderr,
 * a log file, the Windows Event Log); until then messages go to stderr.
 * Lower layers only call lcow_log(); they never know where lines end up. */
#ifndef LCOW_LOG_H
#define LCOW_LOG_H

#include "core/base/compiler.h"

typedef enum lcow_log_level {
    LCOW_LOG_ERROR = 0,
    LCOW_LOG_WARN = 1,
    LCOW_LOG_INFO = 2,
    LCOW_LOG_DEBUG = 3,
} lcow_log_level;

/* A sink receives one formatted line (no trailing newline). It must be
 * thread-safe: lcow_log is called from many threads. */
typedef void (*lcow_log_sink)(void *ctx, lcow_log_level level, const char *line);

void lcow_log_set_sink(lcow_log_sink sink, void *ctx);
void lcow_log_set_level(lcow_log_level level);
lcow_log_level lcow_log_get_level(void);

/* "error", "warn", "info", "debug" -> level; returns -1 if unknown. */
int lcow_log_level_parse(const char *name);
const char *lcow_log_level_name(lcow_log_level level);

void lcow_log(lcow_log_level level, const char *fmt, ...) LCOW_PRINTF(2, 3);

#define LCOW_LOGE(...) lcow_log(LCOW_LOG_ERROR, __VA_ARGS__)
#define LCOW_LOGW(...) lcow_log(LCOW_LOG_WARN, __VA_ARGS__)
#define LCOW_LOGI(...) lcow_log(LCOW_LOG_INFO, __VA_ARGS__)
#define LCOW_LOGD(...) lcow_log(LCOW_LOG_DEBUG, __VA_ARGS__)

#endif

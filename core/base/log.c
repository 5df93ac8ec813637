#include "core/base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Written once at startup before threads exist, read afterwards: no lock. */
static lcow_log_sink current_sink;
static void *current_ctx;
static volatile int current_level = LCOW_LOG_INFO;

static void stderr_sink(void *ctx, lcow_log_level level, const char *line)
{
    (void)ctx;
    fprintf(stderr, "lcowsnap %s: %s\n", level_names[level], line);
}

void lcow_log_set_sink(lcow_log_sink sink, void *ctx)
{
    current_sink = sink;
    current_ctx = ctx;
}

void lcow_log_set_level(lcow_log_level level)
{
    current_level = level;
}

lcow_log_level lcow_log_get_level(void)
{
    return (lcow_log_level)current_level;
}

int lcow_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *lcow_log_level_name(lcow_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "unknown";
}

void lcow_log(lcow_log_level level, const char *fmt, ...)
{
    if ((int)level > current_level)
        return;
    char line[4096]; /* an lcow_error message (2048) and its context */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (current_sink)
        current_sink(current_ctx, level, line);
    else
        stderr_sink(NULL, level, line);
}

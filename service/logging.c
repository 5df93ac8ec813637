#include "service/logging.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "service/platform.h"

static struct {
    FILE *file;
    bool to_stderr;
    lcow_eventlog *eventlog;
    bool started;
} sinks;

/* Writes one line to every sink. Callers hold no lock. */
static void emit(lcow_svc_event event, lcow_log_level level, const char *text)
{
    char stamp[40];
    lcow_svc_timestamp(stamp, sizeof stamp);
    const char *name = lcow_log_level_name(level);
    lcow_svc_log_lock();
    if (sinks.to_stderr) {
        fprintf(stderr, "%s %-5s %s\n", stamp, name, text);
        fflush(stderr);
    }
    if (sinks.file) {
        fprintf(sinks.file, "%s %-5s %s\n", stamp, name, text);
        fflush(sinks.file);
    }
    if (sinks.eventlog && level <= LCOW_LOG_INFO)
        lcow_eventlog_write(sinks.eventlog, event, level, text);
    lcow_svc_log_unlock();
}

static void sink(void *ctx, lcow_log_level level, const char *line)
{
    (void)ctx;
    emit(LCOW_EVENT_LINE, level, line);
}

lcow_code lcow_logging_start(const lcow_logging_options *opts, lcow_error *err)
{
    lcow_logging_stop();
    FILE *file = NULL;
    if (opts->log_file) {
        file = lcow_svc_fopen(opts->log_file, "a");
        if (!file)
            return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                  "--log-file: cannot open %s for appending", opts->log_file);
    }
    lcow_eventlog *eventlog = NULL;
    if (opts->event_source) {
        lcow_error inner;
        if (lcow_eventlog_open(opts->event_source, &eventlog, &inner) != LCOW_OK) {
            /* Not fatal: the service still runs, logging to the file. */
            eventlog = NULL;
            if (opts->to_stderr || file) {
                char stamp[40];
                lcow_svc_timestamp(stamp, sizeof stamp);
                fprintf(file ? file : stderr, "%s warn  Event Log unavailable: %s\n", stamp,
                        inner.message);
            }
        }
    }
    lcow_svc_log_lock();
    sinks.file = file;
    sinks.to_stderr = opts->to_stderr;
    sinks.eventlog = eventlog;
    sinks.started = true;
    lcow_svc_log_unlock();
    lcow_log_set_level(opts->level);
    lcow_log_set_sink(sink, NULL);
    return LCOW_OK;
}

void lcow_logging_stop(void)
{
    if (!sinks.started)
        return;
    lcow_log_set_sink(NULL, NULL);
    lcow_svc_log_lock();
    if (sinks.file)
        fclose(sinks.file);
    if (sinks.eventlog)
        lcow_eventlog_close(sinks.eventlog);
    memset(&sinks, 0, sizeof sinks);
    lcow_svc_log_unlock();
}

void lcow_log_event(lcow_svc_event event, lcow_log_level level, const char *fmt, ...)
{
    char text[4096]; /* an lcow_error message (2048) and its context */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* Lifecycle events are logged at any --log-level: they are what an
     * operator looks for first. */
    if (event == LCOW_EVENT_LINE && level > lcow_log_get_level())
        return;
    if (!sinks.started) {
        lcow_log(level, "%s", text);
        return;
    }
    emit(event, level, text);
}

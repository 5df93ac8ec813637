/* Where lcow_log lines end up: the sinks behind core/base/log.h's seam.
 *
 * - stderr in the foreground,
 * - --log-file on both platforms (appended, one line per message, flushed),
 * - the Windows Application Event Log when running as a service, with event
 *   IDs from the message table compiled from lcowsnap_msg.mc (so Event
 *   Viewer renders real text). Debug lines never go to the Event Log.
 *
 * Lines look like "2026-11-27T22:54:01.123Z info  <what happened, to which
 * snapshot or client>". */
#ifndef LCOW_SERVICE_LOGGING_H
#define LCOW_SERVICE_LOGGING_H

#include <stdbool.h>

#include "core/base/errors.h"
#include "core/base/log.h"

/* Lifecycle events that have their own message in the Event Log; ordinary
 * lines use LCOW_EVENT_LINE (one message per severity). */
typedef enum lcow_svc_event {
    LCOW_EVENT_LINE = 0,
    LCOW_EVENT_STARTED,        /* RUNNING: store open, endpoint listening */
    LCOW_EVENT_STOPPING,       /* stop/shutdown requested, draining */
    LCOW_EVENT_STOPPED,        /* clean stop */
    LCOW_EVENT_STARTUP_FAILED, /* text starts with the service-specific exit code */
    LCOW_EVENT_REGISTERED,
    LCOW_EVENT_UNREGISTERED,
    LCOW_EVENT_REMOVAL_QUEUED, /* a held file stopped a deletion: queued, retried */
    LCOW_EVENT_COMPACTED,      /* Compact gave a scratch disk's free blocks back */
} lcow_svc_event;

typedef struct lcow_logging_options {
    lcow_log_level level;
    const char *log_file;     /* NULL: no file */
    bool to_stderr;           /* foreground and management commands */
    const char *event_source; /* NULL: no Event Log (always NULL off Windows) */
} lcow_logging_options;

/* Installs the sinks as core/base/log.h's sink. Fails (and installs nothing) when
 * the log file cannot be opened. */
lcow_code lcow_logging_start(const lcow_logging_options *opts, lcow_error *err);
/* Flushes and closes the sinks; lcow_log goes back to plain stderr. */
void lcow_logging_stop(void);

/* Logs a lifecycle event: the line goes to every sink whatever the
 * --log-level, and the Event Log gets the event's own ID. */
void lcow_log_event(lcow_svc_event event, lcow_log_level level, const char *fmt, ...)
    LCOW_PRINTF(3, 4);

/* ---- Event Log backend (logging_win.c; logging_posix.c has none) ---- */
typedef struct lcow_eventlog lcow_eventlog;
lcow_code lcow_eventlog_open(const char *source, lcow_eventlog **out, lcow_error *err);
void lcow_eventlog_write(lcow_eventlog *log, lcow_svc_event event, lcow_log_level level,
                         const char *text);
void lcow_eventlog_close(lcow_eventlog *log);

#endif

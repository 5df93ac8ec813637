/* No Event Log off Windows: the service logs to stderr and --log-file. */
#include "service/logging.h"

lcow_code lcow_eventlog_open(const char *source, lcow_eventlog **out, lcow_error *err)
{
    *out = NULL;
    return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "the Event Log exists only on Windows");
}

void lcow_eventlog_write(lcow_eventlog *log, lcow_svc_event event, lcow_log_level level,
                         const char *text)
{
}

void lcow_eventlog_close(lcow_eventlog *log) {}

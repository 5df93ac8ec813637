/* Shutdown requests in foreground mode: Ctrl+C, Ctrl+Break and console
 * close on Windows (console_win.c), SIGINT and SIGTERM on POSIX
 * (signals_posix.c). The first request starts a graceful shutdown (stop
 * accepting, drain, close the store); a second Ctrl+C / signal during the
 * drain ends the process at once. */
#ifndef LCOW_SERVICE_SHUTDOWN_H
#define LCOW_SERVICE_SHUTDOWN_H

#include "core/base/errors.h"

/* Installs the handlers; call before any thread starts. */
lcow_code lcow_shutdown_init(lcow_error *err);
/* Blocks until a shutdown is requested; returns what asked for it
 * ("SIGTERM", "Ctrl+C", "console close", ...). */
const char *lcow_shutdown_wait(void);
/* The same, giving up after timeout_ms: NULL when no request came. */
const char *lcow_shutdown_wait_for(unsigned timeout_ms);
/* Requests a shutdown from any thread (tests, internal fatal errors). */
void lcow_shutdown_request(void);
/* The graceful shutdown has finished: a pending console close may proceed. */
void lcow_shutdown_done(void);
/* Restores the default handlers. */
void lcow_shutdown_cleanup(void);

#endif

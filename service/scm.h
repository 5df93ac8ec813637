/* Windows service hosting and registration (scm_win.c, register_win.c).
 * Every SCM, Event Log and registry call goes through svcapi.h. Off Windows,
 * scm_posix.c answers "Windows only", so callers need no #ifdef. */
#ifndef LCOW_SERVICE_SCM_H
#define LCOW_SERVICE_SCM_H

#include "service/app.h"

/* --run-service: connects to the SCM with StartServiceCtrlDispatcherW and
 * runs ServiceMain: START_PENDING (with checkpoints) while the store opens
 * and recovers, RUNNING once the endpoint listens, STOP_PENDING (with
 * checkpoints) while STOP / SHUTDOWN / PRESHUTDOWN drain in-flight requests,
 * then STOPPED. A startup failure ends in STOPPED with
 * ERROR_SERVICE_SPECIFIC_ERROR and the lcow_exit_code as service-specific
 * exit code, plus a STARTUP_FAILED Event Log entry. startup_exit_code !=0
 * (with startup_error) reports a command line that failed to parse that
 * way. Returns the process exit code. */
int lcow_scm_run(lcow_svc_config *cfg, const lcow_app_ops *ops, int startup_exit_code,
                 const char *startup_error);

/* --register-service / --unregister-service; print what they did (or why
 * not) through lcow_log and return an lcow_exit_code. */
int lcow_register_service(const lcow_svc_config *cfg);
int lcow_unregister_service(const lcow_svc_config *cfg);

#endif

/* Hosting under the service control manager (--run-service).
 *
 * ServiceMain runs the slow steps (store open/recovery, drain) on a worker
 * thread and reports a new checkpoint every second meanwhile, so the SCM
 * sees progress instead of a hung service. STOP, SHUTDOWN and PRESHUTDOWN
 * all take the same path: signal the stop event, then ServiceMain drains
 * and closes the store. (Wine never delivers SHUTDOWN/PRESHUTDOWN; the unit
 * tests deliver them through the fake svcapi table.) */
#include "service/scm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/image_path.h"
#include "service/logging.h"
#include "service/svcapi.h"
#include "service/win_util.h"

#define CHECKPOINT_INTERVAL_MS 1000u
#define WAIT_HINT_MS 5000u

static struct {
    lcow_svc_config *cfg;
    const lcow_app_ops *ops;
    int startup_exit_code;
    const char *startup_error;

    SERVICE_STATUS_HANDLE status_handle;
    SERVICE_STATUS status;
    SRWLOCK status_lock;
    HANDLE stop_event;
    volatile LONG stop_control; /* SERVICE_CONTROL_* that asked to stop, 0 = none */
    int exit_code;              /* process exit code once ServiceMain is done */
    char name[260];
} svc;

static const char *control_name(DWORD control)
{
    switch (control) {
    case SERVICE_CONTROL_STOP:
        return "stop";
    case SERVICE_CONTROL_SHUTDOWN:
        return "system shutdown";
    case SERVICE_CONTROL_PRESHUTDOWN:
        return "system preshutdown";
    default:
        return "control";
    }
}

/* Reports state to the SCM. Checkpoints increase while a *_PENDING state
 * lasts and are 0 otherwise, as the SCM expects. */
static void report(DWORD state, DWORD win32_exit, DWORD specific_exit, DWORD wait_hint)
{
    AcquireSRWLockExclusive(&svc.status_lock);
    SERVICE_STATUS *st = &svc.status;
    st->dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    bool pending = state == SERVICE_START_PENDING || state == SERVICE_STOP_PENDING;
    if (pending && st->dwCurrentState == state)
        st->dwCheckPoint++;
    else
        st->dwCheckPoint = pending ? 1 : 0;
    st->dwCurrentState = state;
    st->dwControlsAccepted =
        state == SERVICE_RUNNING
            ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN | SERVICE_ACCEPT_PRESHUTDOWN
            : 0;
    st->dwWin32ExitCode = win32_exit;
    st->dwServiceSpecificExitCode = specific_exit;
    st->dwWaitHint = pending ? wait_hint : 0;
    if (svc.status_handle)
        lcow_svcapi_get()->SetServiceStatus(svc.status_handle, st);
    ReleaseSRWLockExclusive(&svc.status_lock);
}

static DWORD WINAPI control_handler(DWORD control, DWORD event_type, LPVOID event_data,
                                    LPVOID context)
{
    switch (control) {
    case SERVICE_CONTROL_STOP:
    case SERVICE_CONTROL_SHUTDOWN:
    case SERVICE_CONTROL_PRESHUTDOWN:
        if (InterlockedCompareExchange(&svc.stop_control, (LONG)control, 0) == 0) {
            report(SERVICE_STOP_PENDING, NO_ERROR, 0, WAIT_HINT_MS);
            SetEvent(svc.stop_event);
        }
        return NO_ERROR;
    case SERVICE_CONTROL_INTERROGATE:
        return NO_ERROR;
    default:
        return ERROR_CALL_NOT_IMPLEMENTED;
    }
}

/* ---- slow steps on a worker thread, with checkpoints ---- */

typedef enum step_kind { STEP_OPEN_STORE, STEP_STOP } step_kind;

typedef struct step {
    step_kind kind;
    lcow_app *app;
    int exit_code;
    lcow_error err;
    lcow_code code;
} step;

static DWORD WINAPI step_thread(LPVOID arg)
{
    step *s = arg;
    if (s->kind == STEP_OPEN_STORE)
        s->code = lcow_app_open_store(s->app, &s->exit_code, &s->err);
    else
        lcow_app_stop(s->app, LCOW_DRAIN_MS);
    return 0;
}

static void run_step(step *s, DWORD pending_state)
{
    HANDLE thread = CreateThread(NULL, 0, step_thread, s, 0, NULL);
    if (!thread) {
        step_thread(s); /* no thread: run inline, without checkpoints */
        return;
    }
    while (WaitForSingleObject(thread, CHECKPOINT_INTERVAL_MS) == WAIT_TIMEOUT) {
        if (pending_state == SERVICE_STOP_PENDING)
            LCOW_LOGI("still draining: %u requests in flight", lcow_app_inflight(s->app));
        report(pending_state, NO_ERROR, 0, WAIT_HINT_MS);
    }
    CloseHandle(thread);
}

static void fail_startup(int exit_code, const char *message)
{
    lcow_log_event(LCOW_EVENT_STARTUP_FAILED, LCOW_LOG_ERROR,
                   "service %s, service-specific exit code %d (%s): %s", svc.name, exit_code,
                   lcow_exit_code_name(exit_code), message);
    svc.exit_code = exit_code;
    report(SERVICE_STOPPED, ERROR_SERVICE_SPECIFIC_ERROR, (DWORD)exit_code, 0);
}

static void start_logging(void)
{
    lcow_logging_options opts = {
        .level = svc.cfg->log_level,
        .log_file = svc.cfg->log_file,
        .to_stderr = false,
        .event_source = svc.name,
    };
    lcow_error err;
    if (lcow_logging_start(&opts, &err) == LCOW_OK)
        return;
    /* The log file failed: keep the Event Log so the failure is visible. */
    opts.log_file = NULL;
    lcow_logging_start(&opts, NULL);
    if (svc.startup_exit_code == 0) {
        svc.startup_exit_code = LCOW_EXIT_LOG_FILE;
        static char message[LCOW_ERROR_MESSAGE_MAX];
        snprintf(message, sizeof message, "%s", err.message);
        svc.startup_error = message;
    }
}

static void WINAPI service_main(DWORD argc, LPWSTR *argv)
{
    /* The SCM passes the name it started us under; it names the event
     * source too. */
    char *name = argc > 0 ? lcow_wide_to_utf8(argv[0]) : NULL;
    snprintf(svc.name, sizeof svc.name, "%s", name ? name : svc.cfg->service_name);
    free(name);
    wchar_t *wname = lcow_utf8_to_wide(svc.name);
    svc.status_handle =
        lcow_svcapi_get()->RegisterServiceCtrlHandlerExW(wname, control_handler, NULL);
    free(wname);
    if (!svc.status_handle) {
        svc.exit_code = LCOW_EXIT_SCM;
        return;
    }
    start_logging();
    report(SERVICE_START_PENDING, NO_ERROR, 0, WAIT_HINT_MS);
    lcow_check_own_image_path(svc.name); /* warns on an unquoted path with a space */

    if (svc.startup_exit_code != 0) {
        fail_startup(svc.startup_exit_code, svc.startup_error ? svc.startup_error : "");
        lcow_logging_stop();
        return;
    }
    int exit_code = LCOW_EXIT_OK;
    lcow_error err;
    if (lcow_config_validate(svc.cfg, &exit_code, &err) != LCOW_OK) {
        fail_startup(exit_code, err.message);
        lcow_logging_stop();
        return;
    }
    LCOW_LOGI("service %s: opening the snapshot store in %s", svc.name, svc.cfg->root);
    lcow_app app;
    lcow_app_init(&app, svc.ops, svc.cfg);
    step open = {.kind = STEP_OPEN_STORE, .app = &app};
    run_step(&open, SERVICE_START_PENDING);
    if (open.code != LCOW_OK) {
        fail_startup(open.exit_code, open.err.message);
        lcow_logging_stop();
        return;
    }
    report(SERVICE_START_PENDING, NO_ERROR, 0, WAIT_HINT_MS);
    if (lcow_app_start_server(&app, &exit_code, &err) != LCOW_OK) {
        fail_startup(exit_code, err.message);
        lcow_logging_stop();
        return;
    }
    report(SERVICE_RUNNING, NO_ERROR, 0, 0);
    lcow_log_event(LCOW_EVENT_STARTED, LCOW_LOG_INFO,
                   "service %s (lcowsnap %s, pid %lu), root %s, listening on %s", svc.name,
                   LCOW_VERSION, (unsigned long)GetCurrentProcessId(), svc.cfg->root,
                   svc.cfg->address);

    WaitForSingleObject(svc.stop_event, INFINITE);
    DWORD control = (DWORD)svc.stop_control;
    lcow_log_event(LCOW_EVENT_STOPPING, LCOW_LOG_INFO,
                   "service %s: %s requested; no new clients on %s, waiting up to %u s for %u "
                   "in-flight requests",
                   svc.name, control_name(control), svc.cfg->address, LCOW_DRAIN_MS / 1000,
                   lcow_app_inflight(&app));
    step stop = {.kind = STEP_STOP, .app = &app};
    run_step(&stop, SERVICE_STOP_PENDING);
    lcow_log_event(LCOW_EVENT_STOPPED, LCOW_LOG_INFO,
                   "service %s: in-flight requests answered, snapshot store in %s closed", svc.name,
                   svc.cfg->root);
    lcow_logging_stop();
    svc.exit_code = LCOW_EXIT_OK;
    report(SERVICE_STOPPED, NO_ERROR, 0, 0);
}

int lcow_scm_run(lcow_svc_config *cfg, const lcow_app_ops *ops, int startup_exit_code,
                 const char *startup_error)
{
    memset(&svc, 0, sizeof svc);
    InitializeSRWLock(&svc.status_lock);
    svc.cfg = cfg;
    svc.ops = ops;
    svc.startup_exit_code = startup_exit_code;
    svc.startup_error = startup_error;
    svc.exit_code = LCOW_EXIT_SCM;
    svc.stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!svc.stop_event)
        return LCOW_EXIT_INTERNAL;
    wchar_t *wname = lcow_utf8_to_wide(cfg->service_name ? cfg->service_name : "lcowsnap");
    SERVICE_TABLE_ENTRYW table[] = {{wname, service_main}, {NULL, NULL}};
    if (!lcow_svcapi_get()->StartServiceCtrlDispatcherW(table)) {
        DWORD e = GetLastError();
        if (e == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT)
            fprintf(stderr,
                    "lcowsnap: --run-service is for the service control manager only; "
                    "run lcowsnap without it to serve in the foreground, or start the "
                    "registered service with `sc start %s`\n",
                    cfg->service_name);
        else {
            char text[256];
            lcow_win_error_text(e, text, sizeof text);
            fprintf(stderr, "lcowsnap: StartServiceCtrlDispatcherW: %s\n", text);
        }
        svc.exit_code = LCOW_EXIT_SCM;
    }
    free(wname);
    CloseHandle(svc.stop_event);
    svc.stop_event = NULL;
    return svc.exit_code;
}

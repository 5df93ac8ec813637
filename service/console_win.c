/* Ctrl+C, Ctrl+Break and console close -> graceful shutdown. The console
 * handler runs on its own thread; for a close/logoff/shutdown event Windows
 * ends the process when the handler returns, so it waits (bounded) for the
 * drain to finish first. */
#include "service/shutdown.h"

#include <windows.h>

static HANDLE request_event;
static HANDLE done_event;
static volatile LONG request_kind = -1; /* CTRL_* of the first request */

static BOOL WINAPI on_console_event(DWORD kind)
{
    if (InterlockedCompareExchange(&request_kind, (LONG)kind, -1) != -1) {
        if (kind == CTRL_C_EVENT || kind == CTRL_BREAK_EVENT)
            ExitProcess(130); /* second Ctrl+C during the drain */
    }
    SetEvent(request_event);
    if (kind == CTRL_CLOSE_EVENT || kind == CTRL_LOGOFF_EVENT || kind == CTRL_SHUTDOWN_EVENT)
        WaitForSingleObject(done_event, 4500); /* Windows allows about 5 s */
    return TRUE;
}

lcow_code lcow_shutdown_init(lcow_error *err)
{
    if (!request_event)
        request_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!done_event)
        done_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!request_event || !done_event)
        return lcow_error_set(err, LCOW_INTERNAL, "CreateEventW failed (error %lu)",
                              (unsigned long)GetLastError());
    ResetEvent(request_event);
    ResetEvent(done_event);
    InterlockedExchange(&request_kind, -1);
    /* No console (e.g. started detached) is fine: requests then come only
     * from lcow_shutdown_request. */
    SetConsoleCtrlHandler(on_console_event, TRUE);
    return LCOW_OK;
}

static const char *wait_ms(DWORD timeout_ms)
{
    if (WaitForSingleObject(request_event, timeout_ms) == WAIT_TIMEOUT)
        return NULL;
    switch (request_kind) {
    case CTRL_C_EVENT:
        return "Ctrl+C";
    case CTRL_BREAK_EVENT:
        return "Ctrl+Break";
    case CTRL_CLOSE_EVENT:
        return "console close";
    case CTRL_LOGOFF_EVENT:
        return "logoff";
    case CTRL_SHUTDOWN_EVENT:
        return "system shutdown";
    default:
        return "shutdown request";
    }
}

const char *lcow_shutdown_wait(void)
{
    return wait_ms(INFINITE);
}

const char *lcow_shutdown_wait_for(unsigned timeout_ms)
{
    return wait_ms(timeout_ms >= INFINITE ? INFINITE - 1 : timeout_ms);
}

void lcow_shutdown_request(void)
{
    InterlockedCompareExchange(&request_kind, 1000, -1);
    SetEvent(request_event);
}

void lcow_shutdown_done(void)
{
    if (done_event)
        SetEvent(done_event);
}

void lcow_shutdown_cleanup(void)
{
    SetConsoleCtrlHandler(on_console_event, FALSE);
}

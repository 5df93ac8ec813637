/* Client transport over a named pipe: overlapped I/O so every read and
 * write can time out (CancelIoEx on expiry); WaitNamedPipeW while all
 * server instances are busy. */
#include "rpc/client_transport.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>

#include "core/base/alloc.h"
#include "core/os/win_str.h"

struct lcow_transport {
    HANDLE pipe;
    HANDLE event;
};

const char *lcow_transport_default_address(void)
{
    return "\\\\.\\pipe\\lcowsnap";
}

unsigned long long lcow_transport_now_ms(void)
{
    return GetTickCount64();
}

lcow_code lcow_transport_connect(const char *address, unsigned timeout_ms, lcow_transport **out,
                                 lcow_error *err)
{
    *out = NULL;
    wchar_t *name = lcow_utf8_to_wide(address);
    if (!name)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "pipe name is not valid UTF-8");
    ULONGLONG deadline = GetTickCount64() + timeout_ms;
    HANDLE pipe = INVALID_HANDLE_VALUE;
    for (;;) {
        /* SECURITY_IDENTIFICATION: the service cannot impersonate us. */
        pipe = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
                           NULL);
        if (pipe != INVALID_HANDLE_VALUE)
            break;
        DWORD e = GetLastError();
        ULONGLONG now = GetTickCount64();
        if (e != ERROR_PIPE_BUSY || now >= deadline) {
            free(name);
            if (e == ERROR_FILE_NOT_FOUND)
                return lcow_error_set(err, LCOW_UNAVAILABLE, "connect %s: no such pipe", address);
            return lcow_error_set(err, LCOW_UNAVAILABLE, "connect %s: error %lu", address,
                                  (unsigned long)e);
        }
        WaitNamedPipeW(name, (DWORD)(deadline - now));
    }
    free(name);
    lcow_transport *t = lcow_calloc(1, sizeof *t);
    HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!t || !event) {
        free(t);
        if (event)
            CloseHandle(event);
        CloseHandle(pipe);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    t->pipe = pipe;
    t->event = event;
    *out = t;
    return LCOW_OK;
}

/* Runs one overlapped read or write to completion or timeout. */
static lcow_code overlapped_io(lcow_transport *t, bool write, void *buf, DWORD len, DWORD *done,
                               unsigned timeout_ms, lcow_error *err)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = t->event;
    ResetEvent(t->event);
    BOOL ok =
        write ? WriteFile(t->pipe, buf, len, NULL, &ov) : ReadFile(t->pipe, buf, len, NULL, &ov);
    const char *what = write ? "write" : "read";
    if (!ok && GetLastError() != ERROR_IO_PENDING) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED || e == ERROR_NO_DATA)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "connection closed by the service");
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: error %lu", what, (unsigned long)e);
    }
    DWORD wait = WaitForSingleObject(t->event, timeout_ms ? timeout_ms : INFINITE);
    if (wait != WAIT_OBJECT_0) {
        CancelIoEx(t->pipe, &ov);
        GetOverlappedResult(t->pipe, &ov, done, TRUE);
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: timed out after %u ms", what, timeout_ms);
    }
    if (!GetOverlappedResult(t->pipe, &ov, done, FALSE)) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "connection closed by the service");
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: error %lu", what, (unsigned long)e);
    }
    return LCOW_OK;
}

lcow_code lcow_transport_write(lcow_transport *t, const void *data, size_t len, unsigned timeout_ms,
                               lcow_error *err)
{
    const char *p = data;
    ULONGLONG deadline = GetTickCount64() + timeout_ms;
    while (len > 0) {
        DWORD chunk = len > (1u << 30) ? (1u << 30) : (DWORD)len;
        DWORD done = 0;
        unsigned left = 0;
        if (timeout_ms) {
            ULONGLONG now = GetTickCount64();
            if (now >= deadline)
                return lcow_error_set(err, LCOW_UNAVAILABLE, "write: timed out after %u ms",
                                      timeout_ms);
            left = (unsigned)(deadline - now);
        }
        lcow_code code = overlapped_io(t, true, (void *)p, chunk, &done, left, err);
        if (code != LCOW_OK)
            return code;
        p += done;
        len -= done;
    }
    return LCOW_OK;
}

lcow_code lcow_transport_read(lcow_transport *t, void *buf, size_t cap, size_t *got,
                              unsigned timeout_ms, lcow_error *err)
{
    *got = 0;
    DWORD chunk = cap > (1u << 30) ? (1u << 30) : (DWORD)cap;
    for (;;) {
        DWORD done = 0;
        lcow_code code = overlapped_io(t, false, buf, chunk, &done, timeout_ms, err);
        if (code != LCOW_OK)
            return code;
        if (done > 0) {
            *got = done;
            return LCOW_OK;
        }
    }
}

void lcow_transport_close(lcow_transport *t)
{
    if (!t)
        return;
    CloseHandle(t->pipe);
    CloseHandle(t->event);
    free(t);
}

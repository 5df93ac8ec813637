#include "service/platform.h"

#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "service/win_util.h"

void lcow_win_error_text(DWORD code, char *buf, size_t size)
{
    wchar_t wbuf[512];
    DWORD n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code,
                             0, wbuf, sizeof wbuf / sizeof wbuf[0], NULL);
    while (n > 0 && (wbuf[n - 1] == L'\r' || wbuf[n - 1] == L'\n' || wbuf[n - 1] == L' ' ||
                     wbuf[n - 1] == L'.'))
        wbuf[--n] = L'\0';
    char *text = n > 0 ? lcow_wide_to_utf8(wbuf) : NULL;
    if (text)
        snprintf(buf, size, "%s (error %lu)", text, (unsigned long)code);
    else
        snprintf(buf, size, "Windows error %lu", (unsigned long)code);
    free(text);
}

char *lcow_svc_path_normalize(const char *path)
{
    char *out = _strdup(path);
    if (!out)
        return NULL;
    for (char *p = out; *p; p++)
        if (*p == '/')
            *p = '\\';
    size_t len = strlen(out);
    /* Keep "C:\" and "\\" intact. */
    while (len > 3 && out[len - 1] == '\\')
        out[--len] = '\0';
    return out;
}

char *lcow_svc_cwd(void)
{
    DWORD n = GetCurrentDirectoryW(0, NULL);
    if (n == 0)
        return NULL;
    wchar_t *w = malloc((size_t)n * sizeof *w);
    if (!w)
        return NULL;
    char *out = NULL;
    if (GetCurrentDirectoryW(n, w) > 0)
        out = lcow_wide_to_utf8(w);
    free(w);
    return out;
}

char *lcow_svc_default_root(void)
{
    wchar_t wbase[MAX_PATH];
    DWORD n = GetEnvironmentVariableW(L"ProgramData", wbase, MAX_PATH);
    char *base = (n > 0 && n < MAX_PATH) ? lcow_wide_to_utf8(wbase) : _strdup("C:\\ProgramData");
    if (!base)
        return NULL;
    size_t len = strlen(base) + sizeof "\\lcowsnap";
    char *root = malloc(len);
    if (root)
        snprintf(root, len, "%s\\lcowsnap", base);
    free(base);
    return root;
}

lcow_code lcow_svc_probe_writable(const char *dir, lcow_error *err)
{
    char probe[1024];
    snprintf(probe, sizeof probe, "%s\\.lcowsnap-write-probe-%lu", dir,
             (unsigned long)GetCurrentProcessId());
    wchar_t *w = lcow_utf8_to_wide(probe);
    if (!w)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s is not valid UTF-8", dir);
    HANDLE h = CreateFileW(w, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        DWORD e = GetLastError();
        free(w);
        char text[256];
        lcow_win_error_text(e, text, sizeof text);
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "cannot write in %s: %s", dir, text);
    }
    DWORD written = 0;
    BOOL ok = WriteFile(h, "probe", 5, &written, NULL);
    DWORD e = GetLastError();
    CloseHandle(h);
    DeleteFileW(w); /* in case DELETE_ON_CLOSE was ignored */
    free(w);
    if (!ok || written != 5) {
        char text[256];
        lcow_win_error_text(e, text, sizeof text);
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "cannot write in %s: %s", dir, text);
    }
    return LCOW_OK;
}

FILE *lcow_svc_fopen(const char *path, const char *mode)
{
    wchar_t *wpath = lcow_utf8_to_wide(path);
    wchar_t *wmode = lcow_utf8_to_wide(mode);
    FILE *f = (wpath && wmode) ? _wfopen(wpath, wmode) : NULL;
    free(wpath);
    free(wmode);
    return f;
}

void lcow_svc_sleep_ms(unsigned ms)
{
    Sleep(ms);
}

void lcow_svc_timestamp(char *buf, size_t size)
{
    SYSTEMTIME st;
    GetSystemTime(&st);
    snprintf(buf, size, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", st.wYear, st.wMonth, st.wDay,
             st.wHour, st.wMinute, st.wSecond, st.wMilliseconds);
}

static SRWLOCK log_lock = SRWLOCK_INIT;

void lcow_svc_log_lock(void)
{
    AcquireSRWLockExclusive(&log_lock);
}

void lcow_svc_log_unlock(void)
{
    ReleaseSRWLockExclusive(&log_lock);
}

const char *lcow_svc_platform_name(void)
{
    return "windows";
}

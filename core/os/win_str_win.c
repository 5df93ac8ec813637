#include "core/os/win_str.h"

#include <stdlib.h>

#include <windows.h>

#include <shellapi.h>

#include "core/base/alloc.h"

wchar_t *lcow_utf8_to_wide(const char *s)
{
    if (!s)
        return NULL;
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0)
        return NULL;
    wchar_t *w = lcow_malloc((size_t)n * sizeof *w);
    if (w && MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        free(w);
        return NULL;
    }
    return w;
}

char *lcow_wide_to_utf8(const wchar_t *w)
{
    if (!w)
        return NULL;
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    if (n <= 0)
        return NULL;
    char *s = lcow_malloc((size_t)n);
    if (s && WideCharToMultiByte(CP_UTF8, 0, w, -1, s, n, NULL, NULL) != n) {
        free(s);
        return NULL;
    }
    return s;
}

void lcow_utf8_argv_free(int argc, char **argv)
{
    for (int i = 0; argv && i < argc; i++)
        free(argv[i]);
    free(argv);
}

bool lcow_utf8_argv(int *argc, char ***argv)
{
    *argc = 0;
    *argv = NULL;
    int n = 0;
    wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), &n);
    if (!wargv)
        return false;
    char **out = lcow_calloc((size_t)n + 1, sizeof *out);
    bool ok = out != NULL;
    for (int i = 0; ok && i < n; i++)
        ok = (out[i] = lcow_wide_to_utf8(wargv[i])) != NULL;
    LocalFree(wargv);
    if (!ok) {
        lcow_utf8_argv_free(n, out);
        return false;
    }
    *argc = n;
    *argv = out;
    return true;
}

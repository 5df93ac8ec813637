/* lcowsnap.exe / lcowsnap: converts the command line to UTF-8 and hands it
 * to lcow_service_main with the real store and RPC server. */
#include <stdlib.h>

#include "core/os/os.h"
#include "service/app.h"

#ifdef _WIN32
#include <windows.h>

#include <shellapi.h>

#include "service/win_util.h"

int main(void)
{
    lcow_os_tune_allocator();
    /* The CRT's argv is in the ANSI code page; take the UTF-16 command line. */
    int argc = 0;
    wchar_t **wargv = CommandLineToArgvW(GetCommandLineW(), &argc);
    if (!wargv)
        return LCOW_EXIT_INTERNAL;
    char **argv = calloc((size_t)argc + 1, sizeof *argv);
    if (!argv)
        return LCOW_EXIT_INTERNAL;
    for (int i = 0; i < argc; i++) {
        argv[i] = lcow_wide_to_utf8(wargv[i]);
        if (!argv[i])
            return LCOW_EXIT_INTERNAL;
    }
    LocalFree(wargv);
    int code = lcow_service_main(argc, argv, &lcow_app_real_ops);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
    return code;
}
#else
int main(int argc, char **argv)
{
    lcow_os_tune_allocator();
    return lcow_service_main(argc, argv, &lcow_app_real_ops);
}
#endif

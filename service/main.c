/* lcowsnap.exe / lcowsnap: converts the command line to UTF-8 and hands it
 * to lcow_service_main with the real store and RPC server. */
#include <stdlib.h>

#include "core/os/os.h"
#include "service/app.h"

#ifdef _WIN32
#include "core/os/win_str.h"

int main(void)
{
    lcow_os_tune_allocator();
    /* The CRT's argv is in the ANSI code page; take the UTF-16 command line. */
    int argc;
    char **argv;
    if (!lcow_utf8_argv(&argc, &argv))
        return LCOW_EXIT_INTERNAL;
    int code = lcow_service_main(argc, argv, &lcow_app_real_ops);
    lcow_utf8_argv_free(argc, argv);
    return code;
}
#else
int main(int argc, char **argv)
{
    lcow_os_tune_allocator();
    return lcow_service_main(argc, argv, &lcow_app_real_ops);
}
#endif

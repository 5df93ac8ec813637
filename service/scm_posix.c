/* scm.h off Windows: there is no Service Control Manager, so the service
 * modes answer "Windows only". The flag parser already refuses their flags
 * here (config.c: windows_only), so service_main.c reaches these only for a
 * command line that failed to parse and named --run-service. */
#include <stdio.h>

#include "service/scm.h"

int lcow_scm_run(lcow_svc_config *cfg, const lcow_app_ops *ops, int startup_exit_code,
                 const char *startup_error)
{
    (void)cfg;
    (void)ops;
    /* Reported the way every other bad command line is. */
    if (startup_exit_code) {
        fprintf(stderr, "lcowsnap: %s\n", startup_error ? startup_error : "bad command line");
        return startup_exit_code;
    }
    fputs("lcowsnap: --run-service is Windows only\n", stderr);
    return LCOW_EXIT_BAD_CONFIG;
}

int lcow_register_service(const lcow_svc_config *cfg)
{
    (void)cfg;
    fputs("lcowsnap: --register-service is Windows only\n", stderr);
    return LCOW_EXIT_BAD_CONFIG;
}

int lcow_unregister_service(const lcow_svc_config *cfg)
{
    (void)cfg;
    fputs("lcowsnap: --unregister-service is Windows only\n", stderr);
    return LCOW_EXIT_BAD_CONFIG;
}

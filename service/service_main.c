/* lcowsnap's entry point after argv is UTF-8: picks the mode the flags ask
 * for and runs it. */
#include <stdio.h>
#include <string.h>

#include "service/app.h"
#include "service/logging.h"
#include "service/platform.h"
#include "service/scm.h"

static bool wants_run_service(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--run-service") == 0)
            return true;
    return false;
}

static int start_stderr_logging(const lcow_svc_config *cfg, bool with_file)
{
    lcow_logging_options opts = {
        .level = cfg->log_level,
        .log_file = with_file ? cfg->log_file : NULL,
        .to_stderr = true,
        .event_source = NULL,
    };
    lcow_error err;
    if (lcow_logging_start(&opts, &err) != LCOW_OK) {
        fprintf(stderr, "lcowsnap: %s\n", err.message);
        return LCOW_EXIT_LOG_FILE;
    }
    return LCOW_EXIT_OK;
}

int lcow_service_main(int argc, char **argv, const lcow_app_ops *ops)
{
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = LCOW_EXIT_OK;
    if (lcow_config_parse(&cfg, argc, argv, &err) != LCOW_OK) {
        /* Started by the SCM: tell it why, or it only sees a service that
         * never connected (off Windows the stub reports it as below). */
        if (wants_run_service(argc, argv)) {
            exit_code = lcow_scm_run(&cfg, ops, LCOW_EXIT_BAD_CONFIG, err.message);
            lcow_config_free(&cfg);
            return exit_code;
        }
        fprintf(stderr, "lcowsnap: %s\n", err.message);
        lcow_config_free(&cfg);
        return LCOW_EXIT_BAD_CONFIG;
    }

    switch (cfg.mode) {
    case LCOW_MODE_HELP:
        fputs(lcow_config_usage(), stdout);
        break;
    case LCOW_MODE_VERSION:
        printf("lcowsnap %s (protocol 1, snapshotter windows-lcow, %s)\n", LCOW_VERSION,
               lcow_svc_platform_name());
        break;
    /* Windows only: off Windows the flags do not parse, and scm_posix.c
     * answers "Windows only" all the same. */
    case LCOW_MODE_REGISTER:
    case LCOW_MODE_UNREGISTER:
        if (lcow_config_validate_syntax(&cfg, &err) != LCOW_OK) {
            fprintf(stderr, "lcowsnap: %s\n", err.message);
            exit_code = LCOW_EXIT_BAD_CONFIG;
            break;
        }
        exit_code = start_stderr_logging(&cfg, false);
        if (exit_code == LCOW_EXIT_OK)
            exit_code = cfg.mode == LCOW_MODE_REGISTER ? lcow_register_service(&cfg)
                                                       : lcow_unregister_service(&cfg);
        lcow_logging_stop();
        break;
    case LCOW_MODE_RUN_SERVICE:
        exit_code = lcow_scm_run(&cfg, ops, 0, NULL);
        break;
    default:
        if (lcow_config_validate(&cfg, &exit_code, &err) != LCOW_OK) {
            fprintf(stderr, "lcowsnap: %s\n", err.message);
            break;
        }
        exit_code = start_stderr_logging(&cfg, true);
        if (exit_code == LCOW_EXIT_OK)
            exit_code = lcow_run_foreground(&cfg, ops);
        lcow_logging_stop();
        break;
    }
    lcow_config_free(&cfg);
    return exit_code;
}

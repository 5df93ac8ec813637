#include "service/app.h"

#include <stdio.h>
#include <string.h>

#include "core/os/os.h"
#include "service/logging.h"
#include "service/shutdown.h"

void lcow_app_init(lcow_app *app, const lcow_app_ops *ops, const lcow_svc_config *cfg)
{
    app->ops = ops;
    app->cfg = cfg;
    app->store = NULL;
    app->server = NULL;
}

lcow_code lcow_app_open_store(lcow_app *app, int *exit_code, lcow_error *err)
{
    lcow_error inner;
    lcow_error_clear(&inner);
    lcow_code code = app->ops->open_store(app->ops->ctx, app->cfg, &app->store, &inner);
    if (code != LCOW_OK) {
        app->store = NULL;
        *exit_code = LCOW_EXIT_STORE_OPEN;
        return lcow_error_set(err, code, "opening the snapshot store in %s failed: %s",
                              app->cfg->root, inner.message);
    }
    return LCOW_OK;
}

/* Which endpoint failed to start: the gRPC one's errors name its address
 * (app_real.c), anything else is the main one. */
static bool grpc_failed(const lcow_svc_config *cfg, const lcow_error *inner)
{
    return cfg->grpc_address && strstr(inner->message, cfg->grpc_address) != NULL;
}

static const char *failed_address(const lcow_svc_config *cfg, const lcow_error *inner)
{
    return grpc_failed(cfg, inner) ? cfg->grpc_address : cfg->address;
}

static const char *failed_flag(const lcow_svc_config *cfg, const lcow_error *inner)
{
    return grpc_failed(cfg, inner) ? "--grpc-address" : "--address";
}

lcow_code lcow_app_start_server(lcow_app *app, int *exit_code, lcow_error *err)
{
    lcow_error inner;
    lcow_error_clear(&inner);
    lcow_code code =
        app->ops->start_server(app->ops->ctx, app->cfg, app->store, &app->server, &inner);
    if (code == LCOW_OK)
        return LCOW_OK;
    app->server = NULL;
    if (code == LCOW_ALREADY_EXISTS) {
        *exit_code = LCOW_EXIT_ADDRESS_IN_USE;
        lcow_error_set(err, code,
                       "address %s is in use by another process (another lcowsnap? pass a "
                       "different %s): %s",
                       failed_address(app->cfg, &inner), failed_flag(app->cfg, &inner),
                       inner.message);
    } else {
        *exit_code = LCOW_EXIT_SERVER_START;
        lcow_error_set(err, code, "listening on %s failed: %s", failed_address(app->cfg, &inner),
                       inner.message);
    }
    app->ops->close_store(app->ops->ctx, app->store);
    app->store = NULL;
    return code;
}

unsigned lcow_app_inflight(lcow_app *app)
{
    return app->server ? app->ops->inflight(app->ops->ctx, app->server) : 0;
}

void lcow_app_stop(lcow_app *app, unsigned drain_ms)
{
    if (app->server) {
        app->ops->stop_server(app->ops->ctx, app->server, drain_ms);
        app->server = NULL;
    }
    if (app->store) {
        app->ops->close_store(app->ops->ctx, app->store);
        app->store = NULL;
    }
}

int lcow_run_foreground(lcow_svc_config *cfg, const lcow_app_ops *ops)
{
    lcow_error err;
    if (lcow_shutdown_init(&err) != LCOW_OK) {
        LCOW_LOGE("cannot install the Ctrl+C / signal handlers: %s", err.message);
        return LCOW_EXIT_INTERNAL;
    }
    lcow_app app;
    lcow_app_init(&app, ops, cfg);
    int exit_code = LCOW_EXIT_OK;
    LCOW_LOGI("opening the snapshot store in %s", cfg->root);
    if (lcow_app_open_store(&app, &exit_code, &err) != LCOW_OK ||
        lcow_app_start_server(&app, &exit_code, &err) != LCOW_OK) {
        lcow_log_event(LCOW_EVENT_STARTUP_FAILED, LCOW_LOG_ERROR, "exit code %d (%s): %s",
                       exit_code, lcow_exit_code_name(exit_code), err.message);
        lcow_shutdown_cleanup();
        return exit_code;
    }
    lcow_log_event(LCOW_EVENT_STARTED, LCOW_LOG_INFO,
                   "lcowsnap %s in the foreground, root %s, listening on %s", LCOW_VERSION,
                   cfg->root, cfg->address);
    const char *reason;
    while ((reason = lcow_shutdown_wait_for(LCOW_TRIM_INTERVAL_MS)) == NULL)
        lcow_os_release_free_memory();
    lcow_log_event(LCOW_EVENT_STOPPING, LCOW_LOG_INFO,
                   "%s received: no new clients on %s; waiting up to %u s for %u in-flight "
                   "requests",
                   reason, cfg->address, LCOW_DRAIN_MS / 1000, lcow_app_inflight(&app));
    lcow_app_stop(&app, LCOW_DRAIN_MS);
    lcow_log_event(LCOW_EVENT_STOPPED, LCOW_LOG_INFO, "snapshot store in %s closed", cfg->root);
    lcow_shutdown_done();
    lcow_shutdown_cleanup();
    return LCOW_EXIT_OK;
}

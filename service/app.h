/* What the service does, independent of how it is hosted (foreground,
 * SCM): open the store, start the endpoint, and on a stop request drain
 * in-flight requests and close the store. The store and the server come in
 * through an ops table so the hosting logic is unit-tested with fakes;
 * app_real.c (linked into the exe only) binds it to lcow_snapshotter_* and
 * lcow_server_*. */
#ifndef LCOW_SERVICE_APP_H
#define LCOW_SERVICE_APP_H

#include "service/config.h"

/* How long a stop waits for in-flight requests before closing connections;
 * below the registered preshutdown timeout so the store still closes. */
#define LCOW_DRAIN_MS 20000u
/* How often the foreground service gives free heap memory back (POSIX). */
#define LCOW_TRIM_INTERVAL_MS 10000u

typedef struct lcow_app_ops {
    void *ctx;
    lcow_code (*open_store)(void *ctx, const lcow_svc_config *cfg, void **store, lcow_error *err);
    /* ALREADY_EXISTS when another process owns the address. */
    lcow_code (*start_server)(void *ctx, const lcow_svc_config *cfg, void *store, void **server,
                              lcow_error *err);
    unsigned (*inflight)(void *ctx, void *server);
    /* Stops accepting, drains up to drain_ms, closes and frees the server. */
    void (*stop_server)(void *ctx, void *server, unsigned drain_ms);
    /* Closes and frees the store. */
    void (*close_store)(void *ctx, void *store);
} lcow_app_ops;

typedef struct lcow_app {
    const lcow_app_ops *ops;
    const lcow_svc_config *cfg;
    void *store;
    void *server;
} lcow_app;

void lcow_app_init(lcow_app *app, const lcow_app_ops *ops, const lcow_svc_config *cfg);
/* Opens the store (creating and recovering it). On failure *exit_code is
 * LCOW_EXIT_STORE_OPEN and err says why. */
lcow_code lcow_app_open_store(lcow_app *app, int *exit_code, lcow_error *err);
/* Starts the endpoint; on failure closes the store, *exit_code is
 * LCOW_EXIT_ADDRESS_IN_USE or LCOW_EXIT_SERVER_START. */
lcow_code lcow_app_start_server(lcow_app *app, int *exit_code, lcow_error *err);
unsigned lcow_app_inflight(lcow_app *app);
/* Drains and stops the server (if started), then closes the store. */
void lcow_app_stop(lcow_app *app, unsigned drain_ms);

/* The real ops (app_real.c, exe only). */
extern const lcow_app_ops lcow_app_real_ops;

/* Runs in the foreground until Ctrl+C / SIGTERM (shutdown.h); returns the
 * process exit code (lcow_exit_code). cfg must be validated. */
int lcow_run_foreground(lcow_svc_config *cfg, const lcow_app_ops *ops);

/* Entry point shared by main.c and tests: parses argv (UTF-8), sets up
 * logging, and runs the mode the flags ask for. Returns the exit code. */
int lcow_service_main(int argc, char **argv, const lcow_app_ops *ops);

#endif

/* lcowsnap's command line: parsing and validation of the flags of
 * README.md "Command line". Parsing is pure (no I/O); validation resolves
 * defaults and touches the file system (root must be writable).
 *
 * Every error names the flag and says what to do, e.g.
 *   "--root: 'var/x' is not an absolute path (use e.g. C:\ProgramData\lcowsnap)". */
#ifndef LCOW_SERVICE_CONFIG_H
#define LCOW_SERVICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/errors.h"
#include "core/base/log.h"
#include "core/snapshotter.h"

typedef enum lcow_svc_mode {
    LCOW_MODE_FOREGROUND = 0, /* default: run until Ctrl+C / SIGTERM */
    LCOW_MODE_RUN_SERVICE,    /* --run-service: started by the SCM */
    LCOW_MODE_REGISTER,       /* --register-service */
    LCOW_MODE_UNREGISTER,     /* --unregister-service */
    LCOW_MODE_VERSION,
    LCOW_MODE_HELP,
} lcow_svc_mode;

#define LCOW_DEFAULT_SERVICE_NAME "lcowsnap"

/* Service-specific exit codes (also the process exit status in the
 * foreground), so `sc query` (SERVICE_EXIT_CODE) and shells show why
 * lcowsnap stopped. 0 is a clean stop. */
typedef enum lcow_exit_code {
    LCOW_EXIT_OK = 0,
    LCOW_EXIT_BAD_CONFIG = 2,      /* unknown flag, bad value */
    LCOW_EXIT_ROOT_UNWRITABLE = 3, /* --root cannot be created or written */
    LCOW_EXIT_STORE_OPEN = 4,      /* the snapshot store failed to open/recover */
    LCOW_EXIT_ADDRESS_IN_USE = 5,  /* another process owns the pipe/socket */
    LCOW_EXIT_SERVER_START = 6,    /* the RPC endpoint could not be created */
    LCOW_EXIT_LOG_FILE = 7,        /* --log-file cannot be opened */
    LCOW_EXIT_SCM = 8,             /* SCM / registration failure */
    LCOW_EXIT_NOT_ADMIN = 9,       /* register/unregister without admin rights */
    LCOW_EXIT_INTERNAL = 10,
} lcow_exit_code;

/* Short reason for an exit code ("store open failed", ...). */
const char *lcow_exit_code_name(int code);

/* The rule for --metrics-address (docs/operations.md): HOST:PORT with a
 * numeric host (or localhost); a loopback address, or one interface's own
 * address named explicitly; a wildcard (0.0.0.0, [::]) or a missing host is
 * InvalidArgument. out (may be NULL) gets the parsed address. */
struct lcow_tcp_address;
lcow_code lcow_config_check_metrics_address(const char *text, struct lcow_tcp_address *out,
                                            lcow_error *err);

typedef struct lcow_svc_config {
    lcow_svc_mode mode;
    char *root;    /* absolute after validation */
    char *address; /* pipe name / socket path; default resolved by validation */
    /* The gRPC endpoint's pipe name / socket path (--grpc-address); after
     * validation NULL when turned off with "". */
    char *grpc_address;
    /* --metrics-address HOST:PORT: the Prometheus endpoint; NULL or "" = off. */
    char *metrics_address;
    lcow_log_level log_level;
    char *log_file; /* NULL: none */
    lcow_scratch_backend scratch_backend;
    char **scratch_dir_allow; /* absolute directories */
    size_t scratch_dir_allow_count;
    uint32_t scratch_format_from_gb; /* --scratch-format-from-gb; 0 = always copy */
    /* --layer-cache-max-bytes: the layer store's bound on unreferenced
     * layers; given = false: the store's default (20 GiB). */
    uint64_t layer_cache_max_bytes;
    bool layer_cache_max_given;
    char *pipe_sddl; /* NULL: the server's default */
    size_t max_frame_bytes;
    unsigned max_connections;
    unsigned idle_timeout_ms;
    unsigned frame_timeout_ms;
    char *service_name;

    /* The run-time flags exactly as given ("--root", "C:\x", ...), without
     * the mode flags: what --register-service stores after --run-service. */
    char **service_args;
    size_t service_arg_count;

    bool root_given;
    bool address_given;
} lcow_svc_config;

/* Fills cfg with defaults then applies argv[1..argc-1] (UTF-8). Accepts
 * "--flag value" and "--flag=value". Returns LCOW_INVALID_ARGUMENT with the
 * message to print on an unknown flag, a missing or bad value, conflicting
 * modes, or a Windows-only flag on Linux. cfg must be freed either way. */
lcow_code lcow_config_parse(lcow_svc_config *cfg, int argc, char **argv, lcow_error *err);

/* Resolves defaults (root, address), checks that root is absolute and
 * writable (creating it), that scratch directories are absolute, and that the
 * address is well formed. On failure *exit_code says which
 * lcow_exit_code applies. */
lcow_code lcow_config_validate(lcow_svc_config *cfg, int *exit_code, lcow_error *err);

/* Checks only what can be checked without touching the disk (used by
 * --register-service, which runs as a different user than the service). */
lcow_code lcow_config_validate_syntax(lcow_svc_config *cfg, lcow_error *err);

void lcow_config_free(lcow_svc_config *cfg);

/* The --help text (tells the truth for the platform it was built for). */
const char *lcow_config_usage(void);

/* "5m", "300s", "1500ms", "300" (seconds) -> milliseconds; false if bad. */
bool lcow_parse_duration_ms(const char *text, unsigned *out_ms);
/* "4194304", "4096K", "4M", "20GiB" -> bytes: a decimal number, alone or
 * with K, M, G or T (or KiB, MiB, GiB, TiB, the same), powers of 1024;
 * false if bad or larger than SIZE_MAX. */
bool lcow_parse_size(const char *text, size_t *out);

#endif

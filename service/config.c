#include "service/config.h"

#include "core/os/tcp.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/os.h"
#include "core/os/unixsock.h"
#include "rpc/server.h"
#include "service/platform.h"

#ifdef _WIN32
#define LCOW_ON_WINDOWS 1
#else
#define LCOW_ON_WINDOWS 0
#endif

const char *lcow_exit_code_name(int code)
{
    switch (code) {
    case LCOW_EXIT_OK:
        return "clean stop";
    case LCOW_EXIT_BAD_CONFIG:
        return "bad command line";
    case LCOW_EXIT_ROOT_UNWRITABLE:
        return "state directory not writable";
    case LCOW_EXIT_STORE_OPEN:
        return "snapshot store failed to open";
    case LCOW_EXIT_ADDRESS_IN_USE:
        return "address in use";
    case LCOW_EXIT_SERVER_START:
        return "RPC endpoint failed to start";
    case LCOW_EXIT_LOG_FILE:
        return "log file cannot be opened";
    case LCOW_EXIT_SCM:
        return "service control manager error";
    case LCOW_EXIT_NOT_ADMIN:
        return "administrator rights required";
    default:
        return "internal error";
    }
}

/* ---- value parsers ---- */

static bool parse_u64(const char *text, uint64_t *out, const char **rest)
{
    if (!text || !isdigit((unsigned char)text[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return false;
    *out = v;
    *rest = end;
    return true;
}

bool lcow_parse_duration_ms(const char *text, unsigned *out_ms)
{
    uint64_t v;
    const char *unit;
    if (!parse_u64(text, &v, &unit))
        return false;
    uint64_t mult;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        mult = 1000;
    else if (strcmp(unit, "ms") == 0)
        mult = 1;
    else if (strcmp(unit, "m") == 0)
        mult = 60000;
    else if (strcmp(unit, "h") == 0)
        mult = 3600000;
    else
        return false;
    if (v > UINT32_MAX / mult)
        return false;
    *out_ms = (unsigned)(v * mult);
    return true;
}

bool lcow_parse_size(const char *text, size_t *out)
{
    /* Binary multiples: K and KiB are both 1024 bytes, and so on. */
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {{"", 0},   {"K", 10},   {"KiB", 10}, {"M", 20},  {"MiB", 20},
                 {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40}};
    uint64_t v;
    const char *unit;
    if (!parse_u64(text, &v, &unit))
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) != 0)
            continue;
        if (v > (uint64_t)SIZE_MAX >> units[i].shift)
            return false;
        *out = (size_t)(v << units[i].shift);
        return true;
    }
    return false;
}

/* ---- flag table ---- */

typedef enum flag_id {
    F_ROOT,
    F_ADDRESS,
    F_GRPC_ADDRESS,
    F_METRICS_ADDRESS,
    F_LOG_LEVEL,
    F_LOG_FILE,
    F_SCRATCH_BACKEND,
    F_SCRATCH_DIR_ALLOW,
    F_SCRATCH_FORMAT_FROM_GB,
    F_LAYER_CACHE_MAX_BYTES,
    F_PIPE_SDDL,
    F_MAX_FRAME_BYTES,
    F_MAX_CONNECTIONS,
    F_IDLE_TIMEOUT,
    F_FRAME_TIMEOUT,
    F_SERVICE_NAME,
    F_REGISTER,
    F_UNREGISTER,
    F_RUN_SERVICE,
    F_VERSION,
    F_HELP,
} flag_id;

typedef struct flag_def {
    const char *name;
    flag_id id;
    bool takes_value;
    bool windows_only;
    lcow_svc_mode mode; /* for mode flags */
} flag_def;

static const flag_def flags[] = {
    {"--root", F_ROOT, true, false, 0},
    {"--address", F_ADDRESS, true, false, 0},
    {"--grpc-address", F_GRPC_ADDRESS, true, false, 0},
    {"--metrics-address", F_METRICS_ADDRESS, true, false, 0},
    {"--log-level", F_LOG_LEVEL, true, false, 0},
    {"--log-file", F_LOG_FILE, true, false, 0},
    {"--scratch-backend", F_SCRATCH_BACKEND, true, false, 0},
    {"--scratch-dir-allow", F_SCRATCH_DIR_ALLOW, true, false, 0},
    {"--scratch-format-from-gb", F_SCRATCH_FORMAT_FROM_GB, true, false, 0},
    {"--layer-cache-max-bytes", F_LAYER_CACHE_MAX_BYTES, true, false, 0},
    {"--pipe-sddl", F_PIPE_SDDL, true, true, 0},
    {"--max-frame-bytes", F_MAX_FRAME_BYTES, true, false, 0},
    {"--max-connections", F_MAX_CONNECTIONS, true, false, 0},
    {"--idle-timeout", F_IDLE_TIMEOUT, true, false, 0},
    {"--frame-timeout", F_FRAME_TIMEOUT, true, false, 0},
    {"--service-name", F_SERVICE_NAME, true, true, 0},
    {"--register-service", F_REGISTER, false, true, LCOW_MODE_REGISTER},
    {"--unregister-service", F_UNREGISTER, false, true, LCOW_MODE_UNREGISTER},
    {"--run-service", F_RUN_SERVICE, false, true, LCOW_MODE_RUN_SERVICE},
    {"--version", F_VERSION, false, false, LCOW_MODE_VERSION},
    {"--help", F_HELP, false, false, LCOW_MODE_HELP},
    {"-h", F_HELP, false, false, LCOW_MODE_HELP},
};

static const flag_def *find_flag(const char *arg, size_t name_len)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (strlen(flags[i].name) == name_len && strncmp(flags[i].name, arg, name_len) == 0)
            return &flags[i];
    return NULL;
}

static bool replace_str(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return false;
    free(*slot);
    *slot = copy;
    return true;
}

static bool push_str(char ***items, size_t *count, const char *value)
{
    char **grown = realloc(*items, (*count + 1) * sizeof **items);
    if (!grown)
        return false;
    *items = grown;
    grown[*count] = strdup(value);
    if (!grown[*count])
        return false;
    (*count)++;
    return true;
}

static lcow_code apply_value(lcow_svc_config *cfg, const flag_def *f, const char *value,
                             lcow_error *err)
{
    bool ok = true;
    switch (f->id) {
    case F_ROOT:
        if (value[0] == '\0')
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "--root: empty path");
        ok = replace_str(&cfg->root, value);
        cfg->root_given = true;
        break;
    case F_ADDRESS:
        if (value[0] == '\0')
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "--address: empty address");
        ok = replace_str(&cfg->address, value);
        cfg->address_given = true;
        break;
    case F_GRPC_ADDRESS: /* "" turns the gRPC endpoint off */
        ok = replace_str(&cfg->grpc_address, value);
        break;
    case F_METRICS_ADDRESS: /* "" = off, the default */
        ok = replace_str(&cfg->metrics_address, value);
        break;
    case F_LOG_LEVEL: {
        int level = lcow_log_level_parse(value);
        if (level < 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--log-level: '%s' is not one of error, warn, info, debug",
                                  value);
        cfg->log_level = (lcow_log_level)level;
        break;
    }
    case F_LOG_FILE:
        if (value[0] == '\0')
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "--log-file: empty path");
        ok = replace_str(&cfg->log_file, value);
        break;
    case F_SCRATCH_BACKEND:
        if (strcmp(value, "auto") == 0)
            cfg->scratch_backend = LCOW_SCRATCH_AUTO;
        else if (strcmp(value, "native") == 0)
            cfg->scratch_backend = LCOW_SCRATCH_NATIVE;
        else if (strcmp(value, "virtdisk") == 0) {
            if (!LCOW_ON_WINDOWS)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "--scratch-backend: virtdisk exists only on Windows; "
                                      "use auto or native");
            cfg->scratch_backend = LCOW_SCRATCH_VIRTDISK;
        } else
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--scratch-backend: '%s' is not one of auto, virtdisk, native",
                                  value);
        break;
    case F_SCRATCH_DIR_ALLOW:
        if (!lcow_path_is_absolute(value))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--scratch-dir-allow: '%s' is not an absolute path", value);
        ok = push_str(&cfg->scratch_dir_allow, &cfg->scratch_dir_allow_count, value);
        break;
    case F_SCRATCH_FORMAT_FROM_GB: {
        uint64_t gb;
        const char *rest;
        if (!parse_u64(value, &gb, &rest) || *rest != '\0' || gb < 1 || gb > LCOW_SCRATCH_MAX_GB)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--scratch-format-from-gb: '%s' is not a number of GiB between 1 "
                                  "and %u",
                                  value, LCOW_SCRATCH_MAX_GB);
        cfg->scratch_format_from_gb = (uint32_t)gb;
        break;
    }
    case F_LAYER_CACHE_MAX_BYTES: {
        size_t bytes;
        if (!lcow_parse_size(value, &bytes))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--layer-cache-max-bytes: '%s' is not a size (e.g. 20G, 512M; "
                                  "0 keeps no unreferenced layer)",
                                  value);
        cfg->layer_cache_max_bytes = bytes;
        cfg->layer_cache_max_given = true;
        break;
    }
    case F_PIPE_SDDL:
        if (value[0] == '\0')
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "--pipe-sddl: empty SDDL");
        ok = replace_str(&cfg->pipe_sddl, value);
        break;
    case F_MAX_FRAME_BYTES: {
        size_t bytes;
        if (!lcow_parse_size(value, &bytes) || bytes < 1024 || bytes > (size_t)1 << 30)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--max-frame-bytes: '%s' is not a size between 1K and 1024M "
                                  "(e.g. 4194304, 4096K, 4M)",
                                  value);
        cfg->max_frame_bytes = bytes;
        break;
    }
    case F_MAX_CONNECTIONS: {
        uint64_t n;
        const char *rest;
        if (!parse_u64(value, &n, &rest) || *rest != '\0' || n < 1 || n > 65535)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--max-connections: '%s' is not a number between 1 and 65535",
                                  value);
        cfg->max_connections = (unsigned)n;
        break;
    }
    case F_IDLE_TIMEOUT: {
        unsigned ms;
        if (!lcow_parse_duration_ms(value, &ms) || ms == 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--idle-timeout: '%s' is not a positive duration "
                                  "(e.g. 300, 300s, 5m, 1500ms)",
                                  value);
        cfg->idle_timeout_ms = ms;
        break;
    }
    case F_FRAME_TIMEOUT: {
        unsigned ms;
        if (!lcow_parse_duration_ms(value, &ms) || ms == 0)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--frame-timeout: '%s' is not a positive duration "
                                  "(e.g. 30, 30s, 1m, 500ms)",
                                  value);
        cfg->frame_timeout_ms = ms;
        break;
    }
    case F_SERVICE_NAME: {
        size_t len = strlen(value);
        if (len == 0 || len > 256 || strpbrk(value, "/\\") != NULL)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--service-name: '%s' must be 1-256 characters without / or \\",
                                  value);
        ok = replace_str(&cfg->service_name, value);
        break;
    }
    default:
        break;
    }
    if (!ok)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    return LCOW_OK;
}

static const char *mode_flag_name(lcow_svc_mode mode)
{
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!flags[i].takes_value && flags[i].mode == mode)
            return flags[i].name;
    return "?";
}

lcow_code lcow_config_parse(lcow_svc_config *cfg, int argc, char **argv, lcow_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = LCOW_MODE_FOREGROUND;
    cfg->log_level = LCOW_LOG_INFO;
    cfg->scratch_backend = LCOW_SCRATCH_AUTO;
    cfg->max_frame_bytes = LCOW_SERVER_DEFAULT_MAX_FRAME_BYTES;
    cfg->max_connections = LCOW_SERVER_DEFAULT_MAX_CONNECTIONS;
    cfg->idle_timeout_ms = LCOW_SERVER_DEFAULT_IDLE_TIMEOUT_MS;
    cfg->frame_timeout_ms = LCOW_SERVER_DEFAULT_FRAME_TIMEOUT_MS;
    cfg->service_name = strdup(LCOW_DEFAULT_SERVICE_NAME);
    if (!cfg->service_name)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");

    bool mode_set = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        const flag_def *f = find_flag(arg, name_len);
        if (!f) {
            if (arg[0] != '-')
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "unexpected argument '%s' (lcowsnap takes only flags; "
                                      "see --help)",
                                      arg);
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "unknown flag '%.*s' (see --help)",
                                  (int)name_len, arg);
        }
        if (f->windows_only && !LCOW_ON_WINDOWS)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "%s is available only on Windows; on Linux lcowsnap runs in "
                                  "the foreground only",
                                  f->name);
        if (!f->takes_value) {
            if (eq)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s takes no value", f->name);
            if (mode_set && cfg->mode != f->mode)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s cannot be combined with %s",
                                      f->name, mode_flag_name(cfg->mode));
            cfg->mode = f->mode;
            mode_set = true;
            continue;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s needs a value (see --help)",
                                      f->name);
            value = argv[++i];
        }
        lcow_code code = apply_value(cfg, f, value, err);
        if (code != LCOW_OK)
            return code;
        if (!push_str(&cfg->service_args, &cfg->service_arg_count, f->name) ||
            !push_str(&cfg->service_args, &cfg->service_arg_count, value))
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    return LCOW_OK;
}

/* A pipe name (Windows) or a socket path whose file name fits (POSIX). */
static lcow_code check_endpoint(const char *flag, const char *address, lcow_error *err)
{
    if (LCOW_ON_WINDOWS) {
        if (strncmp(address, "\\\\.\\pipe\\", 9) != 0 || address[9] == '\0' ||
            strlen(address) > 256)
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "%s: '%s' is not a local pipe name like \\\\.\\pipe\\lcowsnap",
                                  flag, address);
        return LCOW_OK;
    }
    /* A path of any length works (core/os/unixsock.h); the name must fit. */
    const char *name = strrchr(address, '/');
    name = name ? name + 1 : address;
    if (strlen(name) > LCOW_UNIX_NAME_MAX)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "%s: the socket's file name '%s' is longer than %d bytes; use a "
                              "shorter name (the directory may be any length)",
                              flag, name, LCOW_UNIX_NAME_MAX);
    return LCOW_OK;
}

/* Pipe names are case-insensitive; socket paths are not. */
static bool same_endpoint(const char *a, const char *b)
{
    if (!LCOW_ON_WINDOWS)
        return strcmp(a, b) == 0;
    while (*a && tolower((unsigned char)*a) == tolower((unsigned char)*b))
        a++, b++;
    return *a == *b;
}

/* POSIX: a relative socket path is made absolute (the service's directory
 * is not the client's). */
static lcow_code absolute_endpoint(const char *flag, char **address, lcow_error *err)
{
    if (LCOW_ON_WINDOWS || lcow_path_is_absolute(*address))
        return LCOW_OK;
    char *cwd = lcow_svc_cwd();
    size_t len = (cwd ? strlen(cwd) : 0) + strlen(*address) + 2;
    char *abs = malloc(len);
    if (!cwd || !abs) {
        free(cwd);
        free(abs);
        return lcow_error_set(err, LCOW_INTERNAL, "cannot resolve %s '%s'", flag, *address);
    }
    snprintf(abs, len, "%s/%s", cwd, *address);
    free(cwd);
    free(*address);
    *address = abs;
    return LCOW_OK;
}

lcow_code lcow_config_check_metrics_address(const char *text, lcow_tcp_address *out,
                                            lcow_error *err)
{
    lcow_tcp_address a;
    lcow_code code = lcow_tcp_parse_address(text, &a, err);
    if (code != LCOW_OK)
        return lcow_error_wrap_code(err, code, "--metrics-address");
    if (a.wildcard)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "--metrics-address: '%s' would listen on every interface; name "
                              "the one address to listen on (127.0.0.1:PORT, or an interface's "
                              "own address to expose the counters beyond this host)",
                              text);
    if (out)
        *out = a;
    return LCOW_OK;
}

static lcow_code normalize_paths(lcow_svc_config *cfg, lcow_error *err)
{
    if (cfg->root) {
        if (!lcow_path_is_absolute(cfg->root))
            return lcow_error_set(
                err, LCOW_INVALID_ARGUMENT, "--root: '%s' is not an absolute path (e.g. %s)",
                cfg->root, LCOW_ON_WINDOWS ? "C:\\ProgramData\\lcowsnap" : "/var/lib/lcowsnap");
        char *norm = lcow_svc_path_normalize(cfg->root);
        if (!norm)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        free(cfg->root);
        cfg->root = norm;
    }
    for (size_t i = 0; i < cfg->scratch_dir_allow_count; i++) {
        char *norm = lcow_svc_path_normalize(cfg->scratch_dir_allow[i]);
        if (!norm)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        free(cfg->scratch_dir_allow[i]);
        cfg->scratch_dir_allow[i] = norm;
    }
    if (cfg->log_file && !lcow_path_is_absolute(cfg->log_file) && LCOW_ON_WINDOWS &&
        cfg->mode == LCOW_MODE_REGISTER)
        /* The service starts in System32; a relative log file would land there. */
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "--log-file: '%s' must be absolute for a registered service",
                              cfg->log_file);
    lcow_code code = cfg->address ? check_endpoint("--address", cfg->address, err) : LCOW_OK;
    if (code == LCOW_OK && cfg->grpc_address && cfg->grpc_address[0])
        code = check_endpoint("--grpc-address", cfg->grpc_address, err);
    if (code == LCOW_OK && cfg->metrics_address && cfg->metrics_address[0])
        code = lcow_config_check_metrics_address(cfg->metrics_address, NULL, err);
    return code;
}

lcow_code lcow_config_validate_syntax(lcow_svc_config *cfg, lcow_error *err)
{
    return normalize_paths(cfg, err);
}

lcow_code lcow_config_validate(lcow_svc_config *cfg, int *exit_code, lcow_error *err)
{
    *exit_code = LCOW_EXIT_BAD_CONFIG;
    if (!cfg->root) {
        cfg->root = lcow_svc_default_root();
        if (!cfg->root)
            return lcow_error_set(err, LCOW_INTERNAL,
                                  "cannot determine the default state directory; pass --root");
    }
    lcow_code code = normalize_paths(cfg, err);
    if (code != LCOW_OK)
        return code;
    if (!cfg->address) {
        if (LCOW_ON_WINDOWS) {
            cfg->address = strdup(LCOW_DEFAULT_PIPE);
        } else {
            size_t len = strlen(cfg->root) + sizeof "/lcowsnap.sock";
            cfg->address = malloc(len);
            if (cfg->address)
                snprintf(cfg->address, len, "%s/lcowsnap.sock", cfg->root);
        }
        if (!cfg->address)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    } else if ((code = absolute_endpoint("--address", &cfg->address, err)) != LCOW_OK) {
        return code;
    }
    /* The gRPC endpoint (containerd's proxy plugin): on unless "". Its
     * default pipe is the main one's name + "-grpc" (\\.\pipe\lcowsnap-grpc),
     * so an instance with its own --address has its own; the socket's is
     * <root>/lcowsnap-grpc.sock. */
    if (cfg->grpc_address && !cfg->grpc_address[0]) {
        free(cfg->grpc_address);
        cfg->grpc_address = NULL;
    } else {
        if (!cfg->grpc_address) {
            const char *base = LCOW_ON_WINDOWS ? cfg->address : cfg->root;
            const char *suffix = LCOW_ON_WINDOWS ? "-grpc" : "/lcowsnap-grpc.sock";
            size_t len = strlen(base) + strlen(suffix) + 1;
            cfg->grpc_address = malloc(len);
            if (!cfg->grpc_address)
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            snprintf(cfg->grpc_address, len, "%s%s", base, suffix);
            if ((code = check_endpoint("--grpc-address", cfg->grpc_address, err)) != LCOW_OK)
                return code;
        } else if ((code = absolute_endpoint("--grpc-address", &cfg->grpc_address, err)) !=
                   LCOW_OK) {
            return code;
        }
        if (same_endpoint(cfg->grpc_address, cfg->address))
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "--grpc-address: '%s' is also the --address; the MessagePack "
                                  "and gRPC endpoints need addresses of their own",
                                  cfg->grpc_address);
    }
    *exit_code = LCOW_EXIT_ROOT_UNWRITABLE;
    lcow_error inner;
    if (lcow_os_mkdir_private_all(cfg->root, &inner) != LCOW_OK ||
        lcow_svc_probe_writable(cfg->root, &inner) != LCOW_OK)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "--root: state directory %s is not writable: %s", cfg->root,
                              inner.message);
    /* Nobody but the service and the administrators may write there
     * (issue 14, item 8). */
    if (lcow_os_check_private_dir(cfg->root, &inner) != LCOW_OK)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "--root: state directory refused: %s",
                              inner.message);
    *exit_code = LCOW_EXIT_OK;
    return LCOW_OK;
}

static void free_list(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

void lcow_config_free(lcow_svc_config *cfg)
{
    free(cfg->root);
    free(cfg->address);
    free(cfg->grpc_address);
    free(cfg->metrics_address);
    free(cfg->log_file);
    free(cfg->pipe_sddl);
    free(cfg->service_name);
    free_list(cfg->scratch_dir_allow, cfg->scratch_dir_allow_count);
    free_list(cfg->service_args, cfg->service_arg_count);
    memset(cfg, 0, sizeof *cfg);
}

#ifdef _WIN32
static const char usage_text[] =
    "Usage: lcowsnap [FLAGS]\n"
    "\n"
    "lcowsnap is the snapshot and scratch-disk service for Linux containers on\n"
    "Windows. Container shims talk to it over a named pipe (MessagePack-RPC).\n"
    "Without --run-service it runs in the foreground until Ctrl+C, Ctrl+Break or\n"
    "the console closes; the SCM entry made by --register-service runs it as a\n"
    "service.\n"
    "\n"
    "Run-time flags (stored in the service command line by --register-service):\n"
    "  --root DIR               state directory, absolute\n"
    "                           (default %ProgramData%\\lcowsnap)\n"
    "  --address PIPE           pipe name (default \\\\.\\pipe\\lcowsnap)\n"
    "  --grpc-address PIPE      containerd's snapshots gRPC API (proxy plugin) on\n"
    "                           this pipe (default: the --address name + -grpc,\n"
    "                           \\\\.\\pipe\\lcowsnap-grpc); \"\" turns it off\n"
    "  --metrics-address HOST:PORT  Prometheus text at http://HOST:PORT/metrics\n"
    "                           (default off); a loopback address, or one\n"
    "                           interface's address, never 0.0.0.0 or [::]\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n"
    "  --log-file FILE          also append log lines to FILE\n"
    "  --scratch-backend B      auto (default: virtdisk, else lcowsnap's own VHDX\n"
    "                           writer), virtdisk or native\n"
    "  --scratch-dir-allow DIR  scratch locations must be inside DIR (repeatable;\n"
    "                           default: any absolute directory)\n"
    "  --scratch-format-from-gb N  format scratch disks of N GiB and more in\n"
    "                           place instead of copying the cached template\n"
    "                           (default: always copy)\n"
    "  --layer-cache-max-bytes N  unreferenced layers the layer store keeps\n"
    "                           (default 20G; 0 keeps none)\n"
    "  --pipe-sddl SDDL         pipe DACL (default D:P(A;;GA;;;SY)(A;;GA;;;BA):\n"
    "                           SYSTEM and Administrators only)\n"
    "  --max-frame-bytes N      largest request accepted (default 4M; 1K to 1G)\n"
    "  --max-connections N      concurrent clients (default 256)\n"
    "  --idle-timeout D         close idle connections after D (default 5m)\n"
    "  --frame-timeout D        close a connection whose request has not arrived\n"
    "                           whole D after its first byte (default 30s)\n"
    "\n"
    "Service management (need an elevated, administrator prompt):\n"
    "  --register-service       create the SCM service (automatic, delayed start,\n"
    "                           LocalSystem, restart on failure) that runs\n"
    "                           this exe with --run-service and the run-time flags\n"
    "                           given here, and register its Event Log source\n"
    "  --unregister-service     stop and delete the service and its Event Log source\n"
    "  --service-name NAME      service name (default lcowsnap)\n"
    "  --run-service            used by the SCM entry only\n"
    "\n"
    "  --version                print the version\n"
    "  --help                   print this text\n"
    "\n"
    "Sizes (--layer-cache-max-bytes, --max-frame-bytes): bytes, or with K, M,\n"
    "G or T, or KiB, MiB, GiB or TiB, the same: powers of 1024 (20G = 20GiB).\n"
    "In the foreground logs go to stderr (and --log-file); as a service to the\n"
    "Application Event Log (source = service name) and --log-file.\n"
    "Exit codes (also the service-specific exit code in `sc query`):\n"
    "2 bad command line, 3 state directory cannot be created or written, or\n"
    "others can write it, 4 store failed to open, 5 address in use, 6 endpoint\n"
    "failed, 7 log file, 8 SCM error, 9 not administrator, 10 internal.\n";
#else
static const char usage_text[] =
    "Usage: lcowsnap [FLAGS]\n"
    "\n"
    "lcowsnap is the snapshot and scratch-disk service for Linux containers on\n"
    "Windows. This Linux build is for development and testing: it runs in the\n"
    "foreground only, serves a Unix socket and stops on SIGINT or SIGTERM\n"
    "(in-flight requests are answered first). The Windows service flags\n"
    "(--register-service, --unregister-service, --run-service, --service-name,\n"
    "--pipe-sddl) exist only in the Windows build.\n"
    "\n"
    "Flags:\n"
    "  --root DIR               state directory, absolute (default ./var/lcowsnap,\n"
    "                           made absolute)\n"
    "  --address PATH           Unix socket path (default <root>/lcowsnap.sock)\n"
    "  --grpc-address PATH      containerd's snapshots gRPC API (proxy plugin) on\n"
    "                           this socket (default <root>/lcowsnap-grpc.sock);\n"
    "                           \"\" turns it off\n"
    "  --metrics-address HOST:PORT  Prometheus text at http://HOST:PORT/metrics\n"
    "                           (default off); a loopback address, or one\n"
    "                           interface's address, never 0.0.0.0 or [::]\n"
    "  --log-level LEVEL        error, warn, info (default) or debug\n"
    "  --log-file FILE          also append log lines to FILE\n"
    "  --scratch-backend B      auto (default) or native (virtdisk is Windows-only;\n"
    "                           auto means native here)\n"
    "  --scratch-dir-allow DIR  scratch locations must be inside DIR (repeatable;\n"
    "                           default: any absolute directory)\n"
    "  --scratch-format-from-gb N  format scratch disks of N GiB and more in\n"
    "                           place instead of copying the cached template\n"
    "                           (default: always copy)\n"
    "  --layer-cache-max-bytes N  unreferenced layers the layer store keeps\n"
    "                           (default 20G; 0 keeps none)\n"
    "  --max-frame-bytes N      largest request accepted (default 4M; 1K to 1G)\n"
    "  --max-connections N      concurrent clients (default 256)\n"
    "  --idle-timeout D         close idle connections after D (default 5m)\n"
    "  --frame-timeout D        close a connection whose request has not arrived\n"
    "                           whole D after its first byte (default 30s)\n"
    "  --version                print the version\n"
    "  --help                   print this text\n"
    "\n"
    "Sizes (--layer-cache-max-bytes, --max-frame-bytes): bytes, or with K, M,\n"
    "G or T, or KiB, MiB, GiB or TiB, the same: powers of 1024 (20G = 20GiB).\n"
    "Logs go to stderr and, with --log-file, to FILE.\n"
    "Exit codes: 2 bad command line, 3 state directory cannot be created or\n"
    "written, or others can write it, 4 store failed to open, 5 address in use,\n"
    "6 endpoint failed, 7 log file, 10 internal.\n";
#endif

const char *lcow_config_usage(void)
{
    return usage_text;
}

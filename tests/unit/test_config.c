/* service/config, cmdline, logging and the foreground host: flag parsing and
 * validation messages, command-line quoting, log sinks, and the
 * open-store / start-server / drain / close sequence with fake ops. Runs
 * natively and under Wine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/os/os.h"
#include "service/app.h"
#include "service/cmdline.h"
#include "service/config.h"
#include "service/logging.h"
#include "service/platform.h"
#include "service/shutdown.h"

#ifdef _WIN32
#define ABS_ROOT "C:\\lcow\\root"
#define SEP "\\"
#else
#include <sys/stat.h>
#define ABS_ROOT "/srv/lcow/root"
#define SEP "/"
#endif

static lcow_code parse(lcow_svc_config *cfg, lcow_error *err, ...)
{
    char *argv[32] = {"lcowsnap"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;)
        argv[argc++] = (char *)a;
    va_end(ap);
    lcow_error_clear(err);
    return lcow_config_parse(cfg, argc, argv, err);
}

static const char *test_tmp(void)
{
    const char *tmp = getenv("LCOW_TEST_TMP");
    assert_non_null(tmp);
    return tmp;
}

/* ---- parsing ---- */

static void defaults_without_flags(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, NULL), LCOW_OK);
    assert_int_equal(cfg.mode, LCOW_MODE_FOREGROUND);
    assert_int_equal(cfg.log_level, LCOW_LOG_INFO);
    assert_int_equal(cfg.scratch_backend, LCOW_SCRATCH_AUTO);
    assert_int_equal(cfg.scratch_format_from_gb, 0);
    assert_false(cfg.layer_cache_max_given);
    assert_int_equal(cfg.max_frame_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg.max_connections, 256);
    assert_int_equal(cfg.idle_timeout_ms, 300000);
    assert_int_equal(cfg.frame_timeout_ms, 30000);
    assert_string_equal(cfg.service_name, "lcowsnap");
    assert_null(cfg.root);
    assert_int_equal(cfg.service_arg_count, 0);
    lcow_config_free(&cfg);
}

static void every_value_flag_parses_in_both_spellings(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, "--root", ABS_ROOT, "--log-level=debug", "--log-file",
                           "lcow.log", "--scratch-backend", "native", "--scratch-dir-allow",
                           ABS_ROOT SEP "a", "--scratch-dir-allow=" ABS_ROOT SEP "b",
                           "--max-frame-bytes", "64K", "--max-connections=32", "--idle-timeout",
                           "5m", "--scratch-format-from-gb=256", "--frame-timeout", "1500ms",
                           "--layer-cache-max-bytes", "20G", NULL),
                     LCOW_OK);
    assert_string_equal(cfg.root, ABS_ROOT);
    assert_true(cfg.root_given);
    assert_int_equal(cfg.log_level, LCOW_LOG_DEBUG);
    assert_string_equal(cfg.log_file, "lcow.log");
    assert_int_equal(cfg.scratch_backend, LCOW_SCRATCH_NATIVE);
    assert_int_equal(cfg.scratch_dir_allow_count, 2);
    assert_string_equal(cfg.scratch_dir_allow[1], ABS_ROOT SEP "b");
    assert_int_equal(cfg.max_frame_bytes, 65536);
    assert_int_equal(cfg.max_connections, 32);
    assert_int_equal(cfg.idle_timeout_ms, 300000);
    assert_int_equal(cfg.scratch_format_from_gb, 256);
    assert_int_equal(cfg.frame_timeout_ms, 1500);
    assert_true(cfg.layer_cache_max_given);
    assert_true(cfg.layer_cache_max_bytes == 20ull << 30);
    /* The run-time flags are kept, as given, for the service command line. */
    assert_int_equal(cfg.service_arg_count, 24);
    assert_string_equal(cfg.service_args[0], "--root");
    assert_string_equal(cfg.service_args[1], ABS_ROOT);
    assert_string_equal(cfg.service_args[2], "--log-level");
    assert_string_equal(cfg.service_args[3], "debug");
    lcow_config_free(&cfg);
}

/* --metrics-address: loopback, or one interface's address named explicitly;
 * never a wildcard or a missing host. */
static void metrics_address_rule(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, "--metrics-address", "127.0.0.1:9464", NULL), LCOW_OK);
    assert_string_equal(cfg.metrics_address, "127.0.0.1:9464");
    lcow_config_free(&cfg);
    const char *ok_addrs[] = {"127.0.0.1:9464", "localhost:0", "[::1]:9464", "192.0.2.7:9464"};
    for (size_t i = 0; i < sizeof ok_addrs / sizeof ok_addrs[0]; i++)
        if (lcow_config_check_metrics_address(ok_addrs[i], NULL, &err) != LCOW_OK)
            fail_msg("%s refused: %s", ok_addrs[i], err.message);
    const char *bad[] = {"0.0.0.0:9464", "[::]:9464", ":9464", "9464", "metrics.example:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (lcow_config_check_metrics_address(bad[i], NULL, &err) != LCOW_INVALID_ARGUMENT)
            fail_msg("%s accepted", bad[i]);
        assert_non_null(strstr(err.message, "--metrics-address"));
    }
}

static void errors_name_the_flag(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, "--rooot", "/x", NULL), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "unknown flag '--rooot' (see --help)");
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--bogus=1", NULL), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "unknown flag '--bogus' (see --help)");
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--root", NULL), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "--root needs a value (see --help)");
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--address", "--root", ABS_ROOT, NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "--address needs a value (see --help)");
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--log-level", "verbose", NULL), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "error, warn, info, debug"));
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--scratch-backend", "vhd", NULL), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "auto, virtdisk, native"));
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--max-connections", "0", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--max-frame-bytes", "12X", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--idle-timeout", "soon", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--frame-timeout", "0", NULL), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--frame-timeout"));
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--scratch-format-from-gb", "0", NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--scratch-format-from-gb"));
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--layer-cache-max-bytes", "lots", NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--layer-cache-max-bytes"));
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--layer-cache-max-bytes=0", NULL), LCOW_OK);
    assert_true(cfg.layer_cache_max_given);
    assert_true(cfg.layer_cache_max_bytes == 0);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--scratch-dir-allow", "relative", NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "not an absolute path"));
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "stray", NULL), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "unexpected argument 'stray'"));
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--version", "--help", NULL), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "--help cannot be combined with --version");
    lcow_config_free(&cfg);

    assert_int_equal(parse(&cfg, &err, "--version=yes", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
}

static void windows_flags_per_platform(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
#ifdef _WIN32
    assert_int_equal(parse(&cfg, &err, "--register-service", "--service-name", "lcow-test",
                           "--pipe-sddl", "D:P(A;;GA;;;SY)", "--scratch-backend", "virtdisk", NULL),
                     LCOW_OK);
    assert_int_equal(cfg.mode, LCOW_MODE_REGISTER);
    assert_string_equal(cfg.service_name, "lcow-test");
    assert_string_equal(cfg.pipe_sddl, "D:P(A;;GA;;;SY)");
    assert_int_equal(cfg.scratch_backend, LCOW_SCRATCH_VIRTDISK);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--register-service", "--unregister-service", NULL),
                     LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--service-name", "a\\b", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
#else
    assert_int_equal(parse(&cfg, &err, "--register-service", NULL), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "--register-service is available only on Windows; on Linux "
                                     "lcowsnap runs in the foreground only");
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--run-service", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--pipe-sddl", "D:P", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--scratch-backend", "virtdisk", NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "only on Windows"));
    lcow_config_free(&cfg);
#endif
}

static void help_tells_the_platform_truth(void **state)
{
    const char *usage = lcow_config_usage();
    assert_non_null(strstr(usage, "--root DIR"));
    assert_non_null(strstr(usage, "--scratch-dir-allow"));
    /* exit code 3 is also a state directory others can write (issue 14) */
    assert_non_null(strstr(usage, "3 state directory cannot be created or"));
    assert_non_null(strstr(usage, "others can write it"));
    assert_non_null(strstr(usage, "KiB, MiB, GiB or TiB"));
#ifdef _WIN32
    assert_non_null(strstr(usage, "--register-service"));
    assert_non_null(strstr(usage, "ProgramData"));
#else
    assert_non_null(strstr(usage, "foreground only"));
    assert_null(strstr(usage, "  --register-service"));
#endif
}

static void durations_and_sizes(void **state)
{
    unsigned ms;
    assert_true(lcow_parse_duration_ms("300", &ms));
    assert_int_equal(ms, 300000);
    assert_true(lcow_parse_duration_ms("1500ms", &ms));
    assert_int_equal(ms, 1500);
    assert_true(lcow_parse_duration_ms("2h", &ms));
    assert_int_equal(ms, 7200000);
    assert_false(lcow_parse_duration_ms("-1", &ms));
    assert_false(lcow_parse_duration_ms("5 m", &ms));
    assert_false(lcow_parse_duration_ms("99999999999", &ms));
}

/* lcow_parse_size: bytes, or K/M/G/T and their KiB/MiB/GiB/TiB spellings,
 * all powers of 1024; anything else and what does not fit in size_t is
 * refused. --layer-cache-max-bytes and --max-frame-bytes use it. */
static void sizes_take_binary_suffixes(void **state)
{
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"4194304", 4194304},
        {"4096K", 4096ull << 10},
        {"4096KiB", 4096ull << 10},
        {"4M", 4ull << 20},
        {"4MiB", 4ull << 20},
        {"20G", 20ull << 30},
        {"20GiB", 20ull << 30},
        {"3T", 3ull << 40},
        {"3TiB", 3ull << 40},
        {"0GiB", 0},
        {"16777215T", 16777215ull << 40},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        size_t size = 1;
        if (!lcow_parse_size(good[i].text, &size))
            fail_msg("'%s' refused", good[i].text);
        if ((uint64_t)size != good[i].bytes)
            fail_msg("'%s' is %llu bytes, expected %llu", good[i].text, (unsigned long long)size,
                     (unsigned long long)good[i].bytes);
    }
    static const char *const bad[] = {
        "", "G", "GiB", "-1", "+4M", " 4M", "4 M", "4m", "4k", "4g", "4Gi", "4GB", "4iB", "4B",
        "4MG", "4GiBs", "4P", "4PiB", "1.5G", "0x10", "4G ",
        /* larger than SIZE_MAX (2^64 - 1 here) */
        "18446744073709551616", "16777216T", "16777216TiB", "17179869184G", "17592186044416M",
        "18014398509481984K", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t size = 7;
        if (lcow_parse_size(bad[i], &size))
            fail_msg("'%s' accepted as %llu bytes", bad[i], (unsigned long long)size);
        assert_int_equal(size, 7); /* untouched */
    }
    /* through the flags */
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, "--layer-cache-max-bytes", "20GiB", NULL), LCOW_OK);
    assert_true(cfg.layer_cache_max_bytes == (size_t)20 << 30);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--layer-cache-max-bytes", "2TiB", NULL), LCOW_OK);
    assert_true(cfg.layer_cache_max_bytes == (size_t)2 << 40);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--layer-cache-max-bytes", "5MG", NULL),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--layer-cache-max-bytes"));
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--max-frame-bytes", "64KiB", NULL), LCOW_OK);
    assert_true(cfg.max_frame_bytes == 64 << 10);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--max-frame-bytes", "1GiB", NULL), LCOW_OK);
    assert_true(cfg.max_frame_bytes == 1 << 30);
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--max-frame-bytes", "2G", NULL), LCOW_INVALID_ARGUMENT);
    lcow_config_free(&cfg);
}

/* ---- validation ---- */

static void relative_root_is_rejected(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    assert_int_equal(parse(&cfg, &err, "--root", "var/lcow", NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(exit_code, LCOW_EXIT_BAD_CONFIG);
    assert_non_null(strstr(err.message, "--root: 'var/lcow' is not an absolute path"));
    lcow_config_free(&cfg);
}

static void root_is_created_and_address_defaults(void **state)
{
    char root[1024];
    snprintf(root, sizeof root, "%s" SEP "created" SEP "deeper", test_tmp());
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    assert_int_equal(parse(&cfg, &err, "--root", root, NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    assert_int_equal(exit_code, LCOW_EXIT_OK);
    assert_string_equal(cfg.root, root);
    FILE *probe = NULL;
    char file[1100];
    snprintf(file, sizeof file, "%s" SEP "x", root);
    probe = lcow_svc_fopen(file, "w");
    assert_non_null(probe);
    fclose(probe);
    remove(file);
#ifdef _WIN32
    assert_string_equal(cfg.address, "\\\\.\\pipe\\lcowsnap");
#else
    char expect[1100];
    snprintf(expect, sizeof expect, "%s/lcowsnap.sock", root);
    assert_string_equal(cfg.address, expect);
#endif
    lcow_config_free(&cfg);
}

static void root_under_a_file_is_unwritable(void **state)
{
    char file[1024], root[1100];
    snprintf(file, sizeof file, "%s" SEP "plain-file", test_tmp());
    FILE *f = lcow_svc_fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(root, sizeof root, "%s" SEP "sub", file);
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    assert_int_equal(parse(&cfg, &err, "--root", root, NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_FAILED_PRECONDITION);
    assert_int_equal(exit_code, LCOW_EXIT_ROOT_UNWRITABLE);
    assert_non_null(strstr(err.message, "is not writable"));
    assert_non_null(strstr(err.message, root));
    lcow_config_free(&cfg);
}

/* A state directory others can write is refused at startup (issue 14,
 * item 8): a world-writable --root (mode 1777), and a private root under a
 * world-writable parent that is not sticky. Before: accepted when the
 * socket lived elsewhere. (Windows: the DACL check is test_os's
 * private_dir_check_refuses_dirs_others_can_write.) */
static void world_writable_root_is_refused(void **state)
{
#ifdef _WIN32
    skip();
#else
    char parent[1024], root[1100];
    snprintf(parent, sizeof parent, "%s" SEP "ww-parent", test_tmp());
    snprintf(root, sizeof root, "%s" SEP "root", parent);
    assert_int_equal(lcow_os_mkdir_all(root, NULL), LCOW_OK);
    for (int c = 0; c < 2; c++) {
        assert_int_equal(chmod(c == 0 ? root : parent, c == 0 ? 01777 : 0777), 0);
        lcow_svc_config cfg;
        lcow_error err;
        int exit_code = -1;
        assert_int_equal(
            parse(&cfg, &err, "--root", root, "--address", "/run/elsewhere.sock", NULL), LCOW_OK);
        assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_FAILED_PRECONDITION);
        assert_int_equal(exit_code, LCOW_EXIT_ROOT_UNWRITABLE);
        assert_non_null(strstr(err.message, root));
        assert_non_null(strstr(err.message, "world-writable"));
        lcow_config_free(&cfg);
        assert_int_equal(chmod(c == 0 ? root : parent, 0755), 0);
    }
    /* sticky parent (as /tmp), private root: accepted */
    assert_int_equal(chmod(parent, 01777), 0);
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    assert_int_equal(parse(&cfg, &err, "--root", root, "--address", "/run/elsewhere.sock", NULL),
                     LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    lcow_config_free(&cfg);
    assert_int_equal(chmod(parent, 0755), 0);
#endif
}

static void bad_address_is_rejected(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
#ifdef _WIN32
    assert_int_equal(parse(&cfg, &err, "--root", test_tmp(), "--address", "lcowsnap", NULL),
                     LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "not a local pipe name"));
#else
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(parse(&cfg, &err, "--root", test_tmp(), "--address", longpath, NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "file name"));
    assert_non_null(strstr(err.message, "82 bytes"));
#endif
    assert_int_equal(exit_code, LCOW_EXIT_BAD_CONFIG);
    lcow_config_free(&cfg);
}

/* The gRPC endpoint: on by default (Windows: the --address pipe + -grpc;
 * POSIX: <root>/lcowsnap-grpc.sock), off with "", never the --address. */
static void grpc_address_defaults_off_and_conflicts(void **state)
{
    char root[1024], expect[1100];
    snprintf(root, sizeof root, "%s" SEP "grpc", test_tmp());
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    assert_int_equal(parse(&cfg, &err, "--root", root, NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
#ifdef _WIN32
    snprintf(expect, sizeof expect, "\\\\.\\pipe\\lcowsnap-grpc");
#else
    snprintf(expect, sizeof expect, "%s/lcowsnap-grpc.sock", root);
#endif
    assert_string_equal(cfg.grpc_address, expect);
    lcow_config_free(&cfg);
#ifdef _WIN32
    /* A second instance with its own --address gets its own gRPC pipe. */
    assert_int_equal(parse(&cfg, &err, "--root", root, "--address", "\\\\.\\pipe\\other", NULL),
                     LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    assert_string_equal(cfg.grpc_address, "\\\\.\\pipe\\other-grpc");
    lcow_config_free(&cfg);
#endif
    /* "" turns it off, in both spellings, and is kept for the service. */
    assert_int_equal(parse(&cfg, &err, "--root", root, "--grpc-address", "", NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    assert_null(cfg.grpc_address);
    assert_int_equal(cfg.service_arg_count, 4);
    assert_string_equal(cfg.service_args[2], "--grpc-address");
    assert_string_equal(cfg.service_args[3], "");
    lcow_config_free(&cfg);
    assert_int_equal(parse(&cfg, &err, "--root", root, "--grpc-address=", NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    assert_null(cfg.grpc_address);
    lcow_config_free(&cfg);
    /* Not the same address as the MessagePack endpoint. */
#ifdef _WIN32
    const char *same = "\\\\.\\pipe\\lcowsnap", *same_other_case = "\\\\.\\pipe\\LcowSnap";
#else
    const char *same = "/srv/lcow/one.sock", *same_other_case = same;
#endif
    assert_int_equal(parse(&cfg, &err, "--root", root, "--address", same, "--grpc-address",
                           same_other_case, NULL),
                     LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(exit_code, LCOW_EXIT_BAD_CONFIG);
    assert_non_null(strstr(err.message, "--grpc-address: "));
    assert_non_null(strstr(err.message, "is also the --address"));
    lcow_config_free(&cfg);
    /* Checked like --address. */
#ifdef _WIN32
    assert_int_equal(parse(&cfg, &err, "--root", root, "--grpc-address", "lcowsnap-grpc", NULL),
                     LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_string_equal(err.message, "--grpc-address: 'lcowsnap-grpc' is not a local pipe name "
                                     "like \\\\.\\pipe\\lcowsnap");
#else
    char longpath[200];
    memset(longpath, 'g', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(parse(&cfg, &err, "--root", root, "--grpc-address", longpath, NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--grpc-address: the socket's file name"));
#endif
    lcow_config_free(&cfg);
}

/* A socket path of any length is fine when its file name fits: the service
 * binds through a handle on the directory (core/os/unixsock.h); nor is a deep
 * --root a reason to refuse the default address (issue 14 item 11). */
static void deep_socket_paths_are_accepted(void **state)
{
#ifndef _WIN32
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code = -1;
    char longpath[200];
    memset(longpath, 'd', sizeof longpath - 1);
    longpath[0] = '/';
    memcpy(longpath + sizeof longpath - 8, "/x.sock", 8);
    assert_int_equal(strlen(longpath), sizeof longpath - 1);
    assert_int_equal(parse(&cfg, &err, "--root", test_tmp(), "--address", longpath, NULL), LCOW_OK);
    if (lcow_config_validate(&cfg, &exit_code, &err) != LCOW_OK)
        fail_msg("a 199-byte --address with a short name: %s", err.message);
    assert_string_equal(cfg.address, longpath);
    lcow_config_free(&cfg);

    char root[400];
    snprintf(root, sizeof root, "%s/%0150d", test_tmp(), 0);
    assert_int_equal(parse(&cfg, &err, "--root", root, NULL), LCOW_OK);
    if (lcow_config_validate(&cfg, &exit_code, &err) != LCOW_OK)
        fail_msg("a deep --root with the default address: %s", err.message);
    assert_true(strlen(cfg.address) > 150);
    lcow_config_free(&cfg);
#endif
    (void)state;
}

/* ---- command-line quoting ---- */

/* The documented Windows argv splitting rules (CommandLineToArgvW for
 * arguments after the first), used to prove quoting round-trips. */
static int split_windows(const char *line, char out[][256], int max)
{
    int n = 0;
    const char *p = line;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        char *o = out[n];
        int quoted = 0;
        while (*p && (quoted || (*p != ' ' && *p != '\t'))) {
            size_t bs = 0;
            while (*p == '\\') {
                bs++;
                p++;
            }
            if (*p == '"') {
                for (size_t i = 0; i < bs / 2; i++)
                    *o++ = '\\';
                if (bs % 2) {
                    *o++ = '"';
                } else {
                    quoted = !quoted;
                }
                p++;
            } else {
                for (size_t i = 0; i < bs; i++)
                    *o++ = '\\';
                if (*p && (quoted || (*p != ' ' && *p != '\t')))
                    *o++ = *p++;
            }
        }
        *o = '\0';
        n++;
    }
    return n;
}

static void service_command_line_quotes_and_round_trips(void **state)
{
    const char *args[] = {
        "--root",      "C:\\Program Data\\lcow snap\\", "--log-file", "C:\\logs\\a.log",
        "--pipe-sddl", "D:P(A;;GA;;;SY) \"x\"",         "--address",  "\\\\.\\pipe\\lcow"};
    const char *exe = "C:\\Program Files\\lcowsnap\\lcowsnap.exe";
    char *line = lcow_cmdline_for_service(exe, args, 8);
    assert_non_null(line);
    assert_string_equal(line, "\"C:\\Program Files\\lcowsnap\\lcowsnap.exe\" --run-service --root "
                              "\"C:\\Program Data\\lcow snap\\\\\" --log-file C:\\logs\\a.log "
                              "--pipe-sddl \"D:P(A;;GA;;;SY) \\\"x\\\"\" --address "
                              "\\\\.\\pipe\\lcow");
    char split[12][256];
    assert_int_equal(split_windows(line, split, 12), 10);
    assert_string_equal(split[0], exe);
    assert_string_equal(split[1], "--run-service");
    for (int i = 0; i < 8; i++)
        assert_string_equal(split[i + 2], args[i]);
    free(line);

    /* Even a path without spaces is quoted: the SCM must never guess. */
    line = lcow_cmdline_for_service("C:\\lcowsnap.exe", NULL, 0);
    assert_string_equal(line, "\"C:\\lcowsnap.exe\" --run-service");
    free(line);

    char *buf = NULL;
    assert_int_equal(lcow_cmdline_append(&buf, ""), 0);
    assert_int_equal(lcow_cmdline_append(&buf, "a\tb"), 0);
    assert_string_equal(buf, "\"\" \"a\tb\"");
    free(buf);
}

/* ---- logging ---- */

static char *read_file(const char *path)
{
    FILE *f = lcow_svc_fopen(path, "r"); /* text: CRLF on Windows */
    if (!f)
        return NULL;
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void log_file_gets_leveled_lines(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s" SEP "service.log", test_tmp());
    remove(path);
    lcow_logging_options opts = {.level = LCOW_LOG_INFO, .log_file = path, .to_stderr = false};
    lcow_error err;
    assert_int_equal(lcow_logging_start(&opts, &err), LCOW_OK);
    LCOW_LOGI("prepared snapshot %s for client %d", "default/1/ctr", 7);
    LCOW_LOGD("debug lines are filtered at info");
    LCOW_LOGE("commit of %s failed", "default/2/x");
    lcow_log_event(LCOW_EVENT_STARTED, LCOW_LOG_INFO, "listening on %s", "test-address");
    lcow_logging_stop();
    const char *text = read_file(path);
    assert_non_null(text);
    assert_non_null(strstr(text, " info  prepared snapshot default/1/ctr for client 7\n"));
    assert_non_null(strstr(text, " error commit of default/2/x failed\n"));
    assert_non_null(strstr(text, " info  listening on test-address\n"));
    assert_null(strstr(text, "debug lines"));
    /* ISO-8601 UTC timestamp first. */
    assert_true(text[4] == '-' && text[10] == 'T' && text[23] == 'Z');
    remove(path);
}

static void lifecycle_events_ignore_the_level(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s" SEP "events.log", test_tmp());
    remove(path);
    lcow_logging_options opts = {.level = LCOW_LOG_ERROR, .log_file = path};
    lcow_error err;
    assert_int_equal(lcow_logging_start(&opts, &err), LCOW_OK);
    LCOW_LOGI("an info line is below --log-level error");
    lcow_log_event(LCOW_EVENT_STOPPED, LCOW_LOG_INFO, "store %s closed", "X");
    lcow_logging_stop();
    const char *text = read_file(path);
    assert_non_null(text);
    assert_null(strstr(text, "an info line"));
    assert_non_null(strstr(text, " info  store X closed\n"));
    remove(path);
}

static void unopenable_log_file_is_a_clear_error(void **state)
{
    char path[1024];
    snprintf(path, sizeof path, "%s" SEP "no-such-dir" SEP "x.log", test_tmp());
    lcow_logging_options opts = {.level = LCOW_LOG_INFO, .log_file = path};
    lcow_error err;
    assert_int_equal(lcow_logging_start(&opts, &err), LCOW_FAILED_PRECONDITION);
    assert_non_null(strstr(err.message, "--log-file: cannot open"));
}

/* ---- foreground host with fake ops ---- */

typedef struct fake_app {
    lcow_code open_result;
    lcow_code start_result;
    int opened, started, stopped, closed;
    unsigned drain_ms;
    int order; /* stop must come before close */
    int stop_order, close_order;
    bool grpc_fails; /* start_result comes from the gRPC endpoint */
} fake_app;

static lcow_code fake_open(void *ctx, const lcow_svc_config *cfg, void **store, lcow_error *err)
{
    fake_app *f = ctx;
    f->opened++;
    *store = f;
    if (f->open_result != LCOW_OK)
        return lcow_error_set(err, f->open_result, "schema version 9 is newer than this build");
    return LCOW_OK;
}

static lcow_code fake_start(void *ctx, const lcow_svc_config *cfg, void *store, void **server,
                            lcow_error *err)
{
    fake_app *f = ctx;
    f->started++;
    *server = f;
    if (f->start_result != LCOW_OK && f->grpc_fails)
        return lcow_error_set(err, f->start_result, "gRPC endpoint %s: pipe busy",
                              cfg->grpc_address);
    if (f->start_result != LCOW_OK)
        return lcow_error_set(err, f->start_result, "pipe busy");
    /* The shutdown request arrives while serving. */
    lcow_shutdown_request();
    return LCOW_OK;
}

static unsigned fake_inflight(void *ctx, void *server)
{
    return 3;
}

static void fake_stop(void *ctx, void *server, unsigned drain_ms)
{
    fake_app *f = ctx;
    f->stopped++;
    f->drain_ms = drain_ms;
    f->stop_order = ++f->order;
}

static void fake_close(void *ctx, void *store)
{
    fake_app *f = ctx;
    f->closed++;
    f->close_order = ++f->order;
}

static lcow_app_ops fake_ops(fake_app *f)
{
    lcow_app_ops ops = {f, fake_open, fake_start, fake_inflight, fake_stop, fake_close};
    return ops;
}

static void foreground_drains_then_closes(void **state)
{
    fake_app f = {0};
    lcow_app_ops ops = fake_ops(&f);
    lcow_svc_config cfg;
    lcow_error err;
    assert_int_equal(parse(&cfg, &err, "--root", test_tmp(), NULL), LCOW_OK);
    int exit_code;
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);
    assert_int_equal(lcow_run_foreground(&cfg, &ops), LCOW_EXIT_OK);
    assert_int_equal(f.opened, 1);
    assert_int_equal(f.started, 1);
    assert_int_equal(f.stopped, 1);
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.drain_ms, LCOW_DRAIN_MS);
    assert_true(f.stop_order < f.close_order);
    lcow_config_free(&cfg);
}

/* The last 12 bytes of a path: what survives of it in an error message
 * however long the path is. */
static const char *path_tail(const char *path)
{
    size_t n = strlen(path);
    return n > 12 ? path + n - 12 : path;
}

static void foreground_startup_failures_map_to_exit_codes(void **state)
{
    lcow_svc_config cfg;
    lcow_error err;
    int exit_code;
    assert_int_equal(parse(&cfg, &err, "--root", test_tmp(), NULL), LCOW_OK);
    assert_int_equal(lcow_config_validate(&cfg, &exit_code, &err), LCOW_OK);

    fake_app f = {.open_result = LCOW_FAILED_PRECONDITION};
    lcow_app_ops ops = fake_ops(&f);
    assert_int_equal(lcow_run_foreground(&cfg, &ops), LCOW_EXIT_STORE_OPEN);
    assert_int_equal(f.started, 0);
    assert_int_equal(f.closed, 0);

    fake_app g = {.start_result = LCOW_ALREADY_EXISTS};
    ops = fake_ops(&g);
    assert_int_equal(lcow_run_foreground(&cfg, &ops), LCOW_EXIT_ADDRESS_IN_USE);
    assert_int_equal(g.closed, 1); /* the store opened, so it is closed again */
    assert_int_equal(g.stopped, 0);

    fake_app h = {.start_result = LCOW_INTERNAL};
    ops = fake_ops(&h);
    assert_int_equal(lcow_run_foreground(&cfg, &ops), LCOW_EXIT_SERVER_START);

    /* The message names the endpoint that failed, and its flag. */
    lcow_app app;
    fake_app m = {.start_result = LCOW_ALREADY_EXISTS}, g2 = m;
    g2.grpc_fails = true;
    ops = fake_ops(&m);
    lcow_app_init(&app, &ops, &cfg);
    assert_int_equal(lcow_app_open_store(&app, &exit_code, &err), LCOW_OK);
    assert_int_equal(lcow_app_start_server(&app, &exit_code, &err), LCOW_ALREADY_EXISTS);
    assert_int_equal(exit_code, LCOW_EXIT_ADDRESS_IN_USE);
    /* A long path is shortened in its middle (core/base/errors.c), so a deep
     * checkout's test directory leaves only the head and the tail of it. */
    assert_non_null(strstr(err.message, path_tail(cfg.address)));
    assert_non_null(strstr(err.message, "is in use"));
    assert_non_null(strstr(err.message, "pass a different --address)"));
    ops = fake_ops(&g2);
    lcow_app_init(&app, &ops, &cfg);
    assert_int_equal(lcow_app_open_store(&app, &exit_code, &err), LCOW_OK);
    assert_int_equal(lcow_app_start_server(&app, &exit_code, &err), LCOW_ALREADY_EXISTS);
    assert_int_equal(exit_code, LCOW_EXIT_ADDRESS_IN_USE);
    assert_non_null(strstr(err.message, path_tail(cfg.grpc_address)));
    assert_non_null(strstr(err.message, "is in use"));
    assert_non_null(strstr(err.message, "pass a different --grpc-address)"));
    lcow_config_free(&cfg);
}

/* The foreground loop wakes up on its own (to give memory back) and still
 * sees a request. */
static void shutdown_wait_for_times_out_then_sees_a_request(void **state)
{
    lcow_error err;
    assert_int_equal(lcow_shutdown_init(&err), LCOW_OK);
    assert_null(lcow_shutdown_wait_for(30));
    lcow_shutdown_request();
    const char *reason = lcow_shutdown_wait_for(5000);
    assert_non_null(reason);
    assert_string_equal(reason, "shutdown request");
    lcow_shutdown_cleanup();
}

#ifndef _WIN32
#include <signal.h>

static void sigterm_and_sigint_request_a_shutdown(void **state)
{
    lcow_error err;
    assert_int_equal(lcow_shutdown_init(&err), LCOW_OK);
    raise(SIGTERM);
    assert_string_equal(lcow_shutdown_wait(), "SIGTERM");
    lcow_shutdown_cleanup();
    assert_int_equal(lcow_shutdown_init(&err), LCOW_OK);
    raise(SIGINT);
    assert_string_equal(lcow_shutdown_wait(), "SIGINT");
    lcow_shutdown_cleanup();
}
#endif

static void service_main_exit_codes(void **state)
{
    fake_app f = {0};
    lcow_app_ops ops = fake_ops(&f);
    char *bad[] = {"lcowsnap", "--nope"};
    assert_int_equal(lcow_service_main(2, bad, &ops), LCOW_EXIT_BAD_CONFIG);
    char *rel[] = {"lcowsnap", "--root", "relative"};
    assert_int_equal(lcow_service_main(3, rel, &ops), LCOW_EXIT_BAD_CONFIG);
    char *version[] = {"lcowsnap", "--version"};
    assert_int_equal(lcow_service_main(2, version, &ops), LCOW_EXIT_OK);
    assert_int_equal(f.opened, 0);

    char file[1024], root[1100];
    snprintf(file, sizeof file, "%s" SEP "plain-file2", test_tmp());
    FILE *fp = lcow_svc_fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(root, sizeof root, "%s" SEP "sub", file);
    char *unwritable[] = {"lcowsnap", "--root", root};
    assert_int_equal(lcow_service_main(3, unwritable, &ops), LCOW_EXIT_ROOT_UNWRITABLE);

    char *ok[] = {"lcowsnap", "--root", (char *)test_tmp(), "--log-level", "warn"};
    assert_int_equal(lcow_service_main(5, ok, &ops), LCOW_EXIT_OK);
    assert_int_equal(f.stopped, 1);
    assert_int_equal(f.closed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_without_flags),
        cmocka_unit_test(every_value_flag_parses_in_both_spellings),
        cmocka_unit_test(errors_name_the_flag),
        cmocka_unit_test(metrics_address_rule),
        cmocka_unit_test(windows_flags_per_platform),
        cmocka_unit_test(help_tells_the_platform_truth),
        cmocka_unit_test(durations_and_sizes),
        cmocka_unit_test(sizes_take_binary_suffixes),
        cmocka_unit_test(relative_root_is_rejected),
        cmocka_unit_test(root_is_created_and_address_defaults),
        cmocka_unit_test(root_under_a_file_is_unwritable),
        cmocka_unit_test(world_writable_root_is_refused),
        cmocka_unit_test(bad_address_is_rejected),
        cmocka_unit_test(deep_socket_paths_are_accepted),
        cmocka_unit_test(grpc_address_defaults_off_and_conflicts),
        cmocka_unit_test(service_command_line_quotes_and_round_trips),
        cmocka_unit_test(log_file_gets_leveled_lines),
        cmocka_unit_test(lifecycle_events_ignore_the_level),
        cmocka_unit_test(unopenable_log_file_is_a_clear_error),
        cmocka_unit_test(foreground_drains_then_closes),
        cmocka_unit_test(foreground_startup_failures_map_to_exit_codes),
        cmocka_unit_test(service_main_exit_codes),
        cmocka_unit_test(shutdown_wait_for_times_out_then_sees_a_request),
#ifndef _WIN32
        cmocka_unit_test(sigterm_and_sigint_request_a_shutdown),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

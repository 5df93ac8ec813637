/* lcowsnapctl: command-line client of lcowsnap, modelled on `ctr snapshots`.
 *
 *   lcowsnapctl [--address ADDR] [--json] [--timeout MS] COMMAND [ARGS]
 *
 * Exit status: 0 on success; 1 when the service (or the connection) reports
 * an error, printed as "CODE: message" on stderr; 2 for a usage error
 * ("InvalidArgument: ..." on stderr). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/errors.h"
#include "core/base/json.h"
#include "core/base/types.h"
#include "core/os/os.h"
#include "rpc/client.h"
#include "rpc/proto.h"

#ifdef _WIN32
#include <windows.h>

#include "core/os/win_str.h"
#endif

#define EXIT_SERVICE 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: lcowsnapctl [--address ADDR] [--json] [--timeout MS] COMMAND [ARGS]\n"
    "commands:\n"
    "  version\n"
    "  status\n"
    "  prepare [--label k=v]... KEY [PARENT]\n"
    "  view [--label k=v]... KEY [PARENT]\n"
    "  mounts KEY\n"
    "  commit [--label k=v]... NAME KEY\n"
    "  rm KEY...\n"
    "  info KEY\n"
    "  usage [KEY]\n"
    "  compact KEY | compact --all\n"
    "  layers\n"
    "  prune --all | prune --older-than D   (D: 3600, 90m, 12h, 30d)\n"
    "  ls [--filter EXPR]...\n"
    "  tree\n"
    "  label KEY [k=v|k=]...\n"
    "  cleanup\n"
    "  create-scratch [--size-gb N] [--block-size-mb M] PATH\n"
    "  apply [--media-type T] [--digest D] [--verity] KEY BLOB\n"
    "  import [--media-type T] [--digest D] [--verity] NAME BLOB [PARENT]\n"
    "apply, import and compact wait without a time limit unless --timeout is given;\n"
    "a relative BLOB is made absolute here (the service reads the file itself).\n";

typedef struct ctl {
    lcow_client *client;
    bool json;
    bool timeout_given; /* --timeout: also for apply and import */
} ctl;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("InvalidArgument: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

static int service_error(const lcow_error *err)
{
    fprintf(stderr, "%s: %s\n", lcow_code_name(err->code), err->message);
    return EXIT_SERVICE;
}

/* ---- output helpers ------------------------------------------------------ */

/* A JSON string with lcowsnapctl's plain escaping (core/base/json.h). */
static void json_str(const char *s)
{
    char *q = lcow_json_string(s, LCOW_JSON_PLAIN);
    if (!q) {
        fputs("lcowsnapctl: out of memory\n", stderr);
        exit(EXIT_SERVICE);
    }
    fputs(q, stdout);
    free(q);
}

/* RFC 3339 UTC with nanoseconds, computed without the C library's time
 * functions (days-from-civil inverse, valid for any int64 day count). */
static void format_time(lcow_time t, char *buf, size_t size)
{
    int64_t days = t.sec / 86400, secs = t.sec % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;
    snprintf(buf, size, "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02d:%02d:%02d.%09uZ", y, m, d,
             (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60), (unsigned)t.nsec);
}

static void json_info(const lcow_info *info, const char *indent)
{
    char created[48], updated[48];
    format_time(info->created, created, sizeof created);
    format_time(info->updated, updated, sizeof updated);
    printf("{\n%s  \"name\": ", indent);
    json_str(info->name);
    printf(",\n%s  \"parent\": ", indent);
    json_str(info->parent ? info->parent : "");
    printf(",\n%s  \"kind\": ", indent);
    json_str(lcow_kind_name(info->kind));
    printf(",\n%s  \"labels\": {", indent);
    for (size_t i = 0; i < info->labels.count; i++) {
        printf("%s\n%s    ", i ? "," : "", indent);
        json_str(info->labels.items[i].key);
        fputs(": ", stdout);
        json_str(info->labels.items[i].value);
    }
    if (info->labels.count)
        printf("\n%s  ", indent);
    printf("},\n%s  \"created\": \"%s\",\n%s  \"updated\": \"%s\"\n%s}", indent, created, indent,
           updated, indent);
}

static void print_mounts(const ctl *c, const lcow_mounts *mounts)
{
    if (c->json) {
        fputs("[", stdout);
        for (size_t i = 0; i < mounts->count; i++) {
            const lcow_mount *m = &mounts->items[i];
            fputs(i ? ",\n  {\"type\": " : "\n  {\"type\": ", stdout);
            json_str(m->type);
            fputs(", \"source\": ", stdout);
            json_str(m->source);
            fputs(", \"options\": [", stdout);
            for (size_t j = 0; j < m->option_count; j++) {
                if (j)
                    fputs(", ", stdout);
                json_str(m->options[j]);
            }
            fputs("]}", stdout);
        }
        puts(mounts->count ? "\n]" : "]");
        return;
    }
    printf("%-12s %-50s %s\n", "TYPE", "SOURCE", "OPTIONS");
    for (size_t i = 0; i < mounts->count; i++) {
        const lcow_mount *m = &mounts->items[i];
        printf("%-12s %-50s ", m->type, m->source);
        for (size_t j = 0; j < m->option_count; j++)
            printf("%s%s", j ? "," : "", m->options[j]);
        putchar('\n');
    }
}

/* ---- argument helpers ---------------------------------------------------- */

/* Parses "k=v" into labels; an empty value is kept as "" (deletion). */
static bool parse_label(const char *arg, lcow_labels *labels, bool allow_empty)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || (!allow_empty && !eq[1]))
        return false;
    size_t klen = (size_t)(eq - arg);
    char *key = malloc(klen + 1);
    if (!key)
        return false;
    memcpy(key, arg, klen);
    key[klen] = '\0';
    bool ok = lcow_labels_set(labels, key, eq + 1);
    free(key);
    return ok;
}

/* Collects leading --label options; returns the index of the first
 * positional argument, or -1 on a bad label. */
static int take_labels(int argc, char **argv, int i, lcow_labels *labels)
{
    while (i < argc) {
        const char *value = NULL;
        if (strcmp(argv[i], "--label") == 0 && i + 1 < argc) {
            value = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--label=", 8) == 0) {
            value = argv[i] + 8;
            i++;
        } else {
            break;
        }
        if (!parse_label(value, labels, false)) {
            usage_error("bad label \"%s\" (want k=v)", value);
            return -1;
        }
    }
    return i;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_version(ctl *c, int argc, char **argv)
{
    lcow_result r;
    lcow_error err;
    if (lcow_client_version(c->client, &r, &err) != LCOW_OK)
        return service_error(&err);
    if (c->json) {
        printf("{\"client\": \"%s\", \"version\": ", LCOW_VERSION);
        json_str(r.version);
        printf(", \"protocol\": %" PRId64 ", \"snapshotter\": ", r.protocol);
        json_str(r.snapshotter);
        printf(", \"capabilities\": [");
        for (size_t i = 0; i < r.capabilities.count; i++) {
            if (i)
                printf(", ");
            json_str(r.capabilities.items[i]);
        }
        puts("]}");
    } else {
        printf("Client:\n  Version:     %s\nService:\n  Version:     %s\n  Protocol:    %" PRId64
               "\n  Snapshotter: %s\n  Capabilities:",
               LCOW_VERSION, r.version, r.protocol, r.snapshotter);
        for (size_t i = 0; i < r.capabilities.count; i++)
            printf(" %s", r.capabilities.items[i]);
        printf("\n");
    }
    lcow_result_free(&r);
    return 0;
}

static void print_counters(const lcow_counters *cs, bool json)
{
    for (size_t i = 0; i < cs->count; i++) {
        if (json) {
            printf("%s", i ? ", " : "");
            json_str(cs->items[i].name);
            printf(": %" PRId64, cs->items[i].value);
        } else {
            printf("    %-32s %" PRId64 "\n", cs->items[i].name, cs->items[i].value);
        }
    }
}

static int cmd_status(ctl *c, int argc, char **argv)
{
    lcow_result r;
    lcow_error err;
    if (lcow_client_status(c->client, &r, &err) != LCOW_OK)
        return service_error(&err);
    const lcow_status *st = &r.status;
    const struct {
        const char *name;
        int64_t value;
    } rows[] = {
        {"uptime_seconds", st->uptime_seconds},
        {"active", st->active},
        {"committed", st->committed},
        {"view", st->view},
        {"store_bytes", st->store_bytes},
        {"store_inodes", st->store_inodes},
        {"scratch_templates", st->scratch_templates},
        {"layers", st->layers},
        {"pending_removals", st->pending_removals},
        {"connections_open", st->connections_open},
        {"connections_total", st->connections_total},
        {"requests_total", st->requests_total},
        {"errors_total", st->errors_total},
        {"bytes_converted", st->bytes_converted},
        {"bytes_created", st->bytes_created},
    };
    if (c->json) {
        printf("{\"version\": ");
        json_str(r.version);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            printf(", \"%s\": %" PRId64, rows[i].name, rows[i].value);
        printf(", \"requests\": {");
        print_counters(&st->requests, true);
        printf("}, \"latency_us\": {");
        print_counters(&st->latency_us, true);
        puts("}}");
    } else {
        printf("Version:             %s\n", r.version);
        for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
            printf("%-20s %" PRId64 "%s\n", rows[i].name, rows[i].value,
                   strcmp(rows[i].name, "layers") == 0 && rows[i].value < 0 ? " (no layer store)"
                                                                            : "");
        printf("Requests (method/code):\n");
        print_counters(&st->requests, false);
        printf("Latency (us, bucket upper bound):\n");
        print_counters(&st->latency_us, false);
    }
    lcow_result_free(&r);
    return 0;
}

static int cmd_prepare_view(ctl *c, int argc, char **argv, bool view)
{
    lcow_labels labels = {0};
    int i = take_labels(argc, argv, 1, &labels);
    int rc = EXIT_USAGE;
    if (i < 0)
        goto out;
    if (argc - i < 1 || argc - i > 2) {
        rc = usage_error("%s needs KEY [PARENT]", argv[0]);
        goto out;
    }
    lcow_mounts mounts = {0};
    lcow_error err;
    const char *parent = argc - i == 2 ? argv[i + 1] : NULL;
    lcow_code code = view ? lcow_client_view(c->client, argv[i], parent, &labels, &mounts, &err)
                          : lcow_client_prepare(c->client, argv[i], parent, &labels, &mounts, &err);
    if (code != LCOW_OK) {
        rc = service_error(&err);
        goto out;
    }
    print_mounts(c, &mounts);
    lcow_mounts_free(&mounts);
    rc = 0;
out:
    lcow_labels_free(&labels);
    return rc;
}

static int cmd_mounts(ctl *c, int argc, char **argv)
{
    if (argc != 2)
        return usage_error("%s", "mounts needs KEY");
    lcow_mounts mounts = {0};
    lcow_error err;
    if (lcow_client_mounts(c->client, argv[1], &mounts, &err) != LCOW_OK)
        return service_error(&err);
    print_mounts(c, &mounts);
    lcow_mounts_free(&mounts);
    return 0;
}

static int cmd_commit(ctl *c, int argc, char **argv)
{
    lcow_labels labels = {0};
    int i = take_labels(argc, argv, 1, &labels);
    int rc = EXIT_USAGE;
    if (i >= 0 && argc - i != 2)
        rc = usage_error("%s", "commit needs NAME KEY");
    if (i >= 0 && argc - i == 2) {
        lcow_error err;
        rc = lcow_client_commit(c->client, argv[i], argv[i + 1], &labels, NULL, &err) == LCOW_OK
                 ? 0
                 : service_error(&err);
    }
    lcow_labels_free(&labels);
    return rc;
}

static int cmd_rm(ctl *c, int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "rm needs at least one KEY");
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        lcow_error err;
        if (lcow_client_remove(c->client, argv[i], &err) != LCOW_OK)
            rc = service_error(&err);
    }
    return rc;
}

static int cmd_info(ctl *c, int argc, char **argv)
{
    if (argc != 2)
        return usage_error("%s", "info needs KEY");
    lcow_info info = {0};
    lcow_error err;
    if (lcow_client_stat(c->client, argv[1], &info, &err) != LCOW_OK)
        return service_error(&err);
    json_info(&info, "");
    putchar('\n');
    lcow_info_free(&info);
    return 0;
}

typedef struct usage_row {
    char *key;
    lcow_usage usage;
} usage_row;

typedef struct key_list {
    size_t count;
    char **keys;
    char **parents;
    lcow_kind *kinds;
} key_list;

static int collect_key(void *ctx, const lcow_info *info)
{
    key_list *list = ctx;
    size_t n = list->count + 1;
    char **keys = realloc(list->keys, n * sizeof *keys);
    if (keys)
        list->keys = keys;
    char **parents = realloc(list->parents, n * sizeof *parents);
    if (parents)
        list->parents = parents;
    lcow_kind *kinds = realloc(list->kinds, n * sizeof *kinds);
    if (kinds)
        list->kinds = kinds;
    if (!keys || !parents || !kinds)
        return 1;
    list->keys[list->count] = strdup(info->name);
    list->parents[list->count] = strdup(info->parent ? info->parent : "");
    list->kinds[list->count] = info->kind;
    list->count++;
    return 0;
}

static void key_list_free(key_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->keys[i]);
        free(list->parents[i]);
    }
    free(list->keys);
    free(list->parents);
    free(list->kinds);
    memset(list, 0, sizeof *list);
}

static void human_size(int64_t bytes, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%" PRId64 " B", bytes);
    else
        snprintf(buf, size, "%.1f %s", v, units[u]);
}

static int cmd_usage(ctl *c, int argc, char **argv)
{
    if (argc > 2)
        return usage_error("%s", "usage takes at most one KEY");
    key_list list = {0};
    lcow_error err;
    int rc = 0;
    if (argc == 2) {
        lcow_info one = {.name = argv[1], .parent = ""};
        collect_key(&list, &one);
    } else if (lcow_client_walk_all(c->client, NULL, 0, collect_key, &list, &err) != LCOW_OK) {
        key_list_free(&list);
        return service_error(&err);
    }
    if (c->json)
        fputs("[", stdout);
    else
        printf("%-40s %-12s %-10s %-12s %s\n", "KEY", "SIZE", "INODES", "EXT4-USED", "EXT4-INODES");
    bool first = true;
    for (size_t i = 0; i < list.count; i++) {
        lcow_usage u = {0, 0};
        if (lcow_client_usage(c->client, list.keys[i], &u, &err) != LCOW_OK) {
            rc = service_error(&err);
            if (err.code == LCOW_UNAVAILABLE)
                break;
            continue;
        }
        if (c->json) {
            fputs(first ? "\n  {\"key\": " : ",\n  {\"key\": ", stdout);
            json_str(list.keys[i]);
            printf(", \"size\": %" PRId64 ", \"inodes\": %" PRId64, u.size, u.inodes);
            if (u.ext4_used_inodes)
                printf(", \"ext4_used_bytes\": %" PRIu64 ", \"ext4_used_inodes\": %" PRIu64
                       ", \"ext4_total_bytes\": %" PRIu64 ", \"ext4_total_inodes\": %" PRIu64,
                       u.ext4_used_bytes, u.ext4_used_inodes, u.ext4_total_bytes,
                       u.ext4_total_inodes);
            fputs("}", stdout);
        } else {
            char size[32], used[32] = "-", inodes[32] = "-";
            human_size(u.size, size, sizeof size);
            if (u.ext4_used_inodes) {
                human_size((int64_t)u.ext4_used_bytes, used, sizeof used);
                snprintf(inodes, sizeof inodes, "%" PRIu64, u.ext4_used_inodes);
            }
            printf("%-40s %-12s %-10" PRId64 " %-12s %s\n", list.keys[i], size, u.inodes, used,
                   inodes);
        }
        first = false;
    }
    if (c->json)
        puts(first ? "]" : "\n]");
    key_list_free(&list);
    return rc;
}

typedef struct ls_ctx {
    ctl *c;
    bool first;
} ls_ctx;

static int print_ls_row(void *ctx, const lcow_info *info)
{
    ls_ctx *ls = ctx;
    if (ls->c->json) {
        fputs(ls->first ? "\n  " : ",\n  ", stdout);
        json_info(info, "  ");
    } else {
        printf("%-40s %-40s %s\n", info->name, info->parent[0] ? info->parent : "",
               lcow_kind_name(info->kind));
    }
    ls->first = false;
    return 0;
}

static int cmd_ls(ctl *c, int argc, char **argv)
{
    lcow_strv filters = {0};
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = NULL;
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            f = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            f = argv[i] + 9;
        if (!f) {
            lcow_strv_free(&filters);
            return usage_error("unexpected argument \"%s\" (ls [--filter EXPR]...)", argv[i]);
        }
        lcow_strv_push(&filters, f);
    }
    ls_ctx ls = {c, true};
    if (c->json)
        fputs("[", stdout);
    else
        printf("%-40s %-40s %s\n", "KEY", "PARENT", "KIND");
    lcow_error err;
    if (lcow_client_walk_all(c->client, (const char *const *)filters.items, filters.count,
                             print_ls_row, &ls, &err) != LCOW_OK)
        rc = service_error(&err);
    if (c->json)
        puts(ls.first ? "]" : "\n]");
    lcow_strv_free(&filters);
    return rc;
}

static void print_tree(const key_list *list, const char *parent, int depth, bool *first)
{
    for (size_t i = 0; i < list->count; i++) {
        if (strcmp(list->parents[i], parent) != 0)
            continue;
        if (depth > 64)
            return; /* a cycle would be a store bug; never loop forever */
        if (depth == 0) {
            puts(list->keys[i]);
        } else {
            printf("%*s\\_ %s\n", depth * 2 - 1, "", list->keys[i]);
        }
        *first = false;
        print_tree(list, list->keys[i], depth + 1, first);
    }
}

static void json_tree(const key_list *list, const char *parent, int depth)
{
    bool first = true;
    fputs("[", stdout);
    for (size_t i = 0; i < list->count && depth <= 64; i++) {
        if (strcmp(list->parents[i], parent) != 0)
            continue;
        fputs(first ? "{\"name\": " : ", {\"name\": ", stdout);
        json_str(list->keys[i]);
        fputs(", \"kind\": ", stdout);
        json_str(lcow_kind_name(list->kinds[i]));
        fputs(", \"children\": ", stdout);
        json_tree(list, list->keys[i], depth + 1);
        fputs("}", stdout);
        first = false;
    }
    fputs("]", stdout);
}

static int cmd_tree(ctl *c, int argc, char **argv)
{
    if (argc != 1)
        return usage_error("%s", "tree takes no arguments");
    key_list list = {0};
    lcow_error err;
    if (lcow_client_walk_all(c->client, NULL, 0, collect_key, &list, &err) != LCOW_OK) {
        key_list_free(&list);
        return service_error(&err);
    }
    if (c->json) {
        json_tree(&list, "", 0);
        putchar('\n');
    } else {
        bool first = true;
        print_tree(&list, "", 0, &first);
    }
    key_list_free(&list);
    return 0;
}

static int cmd_label(ctl *c, int argc, char **argv)
{
    if (argc < 2)
        return usage_error("%s", "label needs KEY [k=v|k=]...");
    lcow_info info = {.name = argv[1], .parent = ""};
    lcow_strv paths = {0};
    lcow_labels set = {0};
    int rc = 0;
    for (int i = 2; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq == argv[i]) {
            rc = usage_error("bad label \"%s\" (want k=v, or k= to delete)", argv[i]);
            goto out;
        }
        size_t klen = (size_t)(eq - argv[i]);
        char *path = malloc(klen + 8);
        if (!path) {
            rc = EXIT_SERVICE;
            goto out;
        }
        memcpy(path, "labels.", 7);
        memcpy(path + 7, argv[i], klen);
        path[7 + klen] = '\0';
        lcow_strv_push(&paths, path);
        free(path);
        if (eq[1] && !parse_label(argv[i], &set, false)) {
            rc = EXIT_SERVICE;
            goto out;
        }
    }
    lcow_error err;
    lcow_info out = {0};
    lcow_code code;
    if (paths.count == 0) {
        code = lcow_client_stat(c->client, argv[1], &out, &err);
    } else {
        info.labels = set;
        code = lcow_client_update(c->client, &info, (const char *const *)paths.items, paths.count,
                                  &out, &err);
    }
    if (code != LCOW_OK) {
        rc = service_error(&err);
        goto out;
    }
    if (c->json) {
        fputs("{", stdout);
        for (size_t i = 0; i < out.labels.count; i++) {
            fputs(i ? ", " : "", stdout);
            json_str(out.labels.items[i].key);
            fputs(": ", stdout);
            json_str(out.labels.items[i].value);
        }
        puts("}");
    } else {
        for (size_t i = 0; i < out.labels.count; i++)
            printf("%s=%s\n", out.labels.items[i].key, out.labels.items[i].value);
    }
    lcow_info_free(&out);
out:
    lcow_strv_free(&paths);
    lcow_labels_free(&set);
    return rc;
}

static int cmd_compact(ctl *c, int argc, char **argv)
{
    if (argc != 2)
        return usage_error("%s", "compact needs KEY or --all");
    const char *key = strcmp(argv[1], "--all") == 0 ? NULL : argv[1];
    if (!c->timeout_given)
        lcow_client_set_call_timeout(c->client, 0); /* a big disk takes minutes */
    lcow_compact_summary s;
    lcow_error err;
    if (lcow_client_compact(c->client, key, &s, &err) != LCOW_OK)
        return service_error(&err);
    if (c->json) {
        printf("{\"disks\": %" PRId64 ", \"bytes_before\": %" PRId64 ", \"bytes_after\": %" PRId64
               ", \"in_use\": %" PRId64 ", \"failed\": %" PRId64 "}\n",
               s.disks, s.bytes_before, s.bytes_after, s.in_use, s.failed);
        return 0;
    }
    char before[32], after[32], back[32];
    human_size(s.bytes_before, before, sizeof before);
    human_size(s.bytes_after, after, sizeof after);
    human_size(s.bytes_before - s.bytes_after, back, sizeof back);
    if (key)
        printf("%s: %s -> %s (%s given back)\n", key, before, after, back);
    else
        printf("%" PRId64 " disks: %s -> %s (%s given back); %" PRId64 " in use, %" PRId64
               " failed (see the service log)\n",
               s.disks, before, after, back, s.in_use, s.failed);
    return 0;
}

static int cmd_layers(ctl *c, int argc, char **argv)
{
    if (argc != 1)
        return usage_error("%s", "layers takes no arguments");
    lcow_layer_entries l;
    lcow_error err;
    if (lcow_client_layers(c->client, &l, &err) != LCOW_OK)
        return service_error(&err);
    if (c->json)
        fputs("[", stdout);
    else
        printf("%-71s  %6s  %10s  %4s  %-20s  %s\n", "DIFF-ID", "VERITY", "SIZE", "REFS",
               "LAST-USE", "BLOBS");
    for (size_t i = 0; i < l.count; i++) {
        const lcow_layer_entry *e = &l.items[i];
        char created[48], used[48];
        format_time(e->created, created, sizeof created);
        format_time(e->last_use, used, sizeof used);
        if (c->json) {
            printf("%s\n  {\"diff_id\": ", i ? "," : "");
            json_str(e->diff_id);
            printf(", \"verity\": %s, \"verity_root_hash\": ", e->verity ? "true" : "false");
            json_str(e->verity_root_hash ? e->verity_root_hash : "");
            printf(", \"bytes\": %" PRId64 ", \"references\": %" PRId64
                   ", \"created\": \"%s\", \"last_use\": \"%s\", \"blob_digests\": [",
                   e->bytes, e->references, created, used);
            for (size_t j = 0; j < e->blob_digests.count; j++) {
                fputs(j ? ", " : "", stdout);
                json_str(e->blob_digests.items[j]);
            }
            fputs("]}", stdout);
            continue;
        }
        char size[32];
        human_size(e->bytes, size, sizeof size);
        used[19] = '\0'; /* to the second */
        printf("%-71s  %6s  %10s  %4" PRId64 "  %-20s  ", e->diff_id, e->verity ? "yes" : "no",
               size, e->references, used);
        for (size_t j = 0; j < e->blob_digests.count; j++)
            printf("%s%s", j ? "," : "", e->blob_digests.items[j]);
        puts(e->blob_digests.count ? "" : "-");
        if (e->verity && e->verity_root_hash)
            printf("  verity root hash %s\n", e->verity_root_hash);
    }
    if (c->json)
        puts(l.count ? "\n]" : "]");
    lcow_layer_entries_free(&l);
    return 0;
}

/* "3600", "3600s", "90m", "12h", "30d" -> seconds (> 0). */
static bool parse_age(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || s[0] == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    if (end == s)
        return false;
    if (*end == 'd')
        mult = 86400;
    else if (*end == 'h')
        mult = 3600;
    else if (*end == 'm')
        mult = 60;
    else if (*end != 's' && *end != '\0')
        return false;
    if (*end && end[1])
        return false;
    if (v == 0 || v > (uint64_t)INT64_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

static int cmd_prune(ctl *c, int argc, char **argv)
{
    bool all = false;
    uint64_t age = 0;
    if (argc == 2 && strcmp(argv[1], "--all") == 0)
        all = true;
    else if (argc == 3 && strcmp(argv[1], "--older-than") == 0) {
        if (!parse_age(argv[2], &age))
            return usage_error("\"%s\" is not a positive duration (3600, 90m, 12h, 30d)", argv[2]);
    } else
        return usage_error("%s", "prune needs --all or --older-than D");
    int64_t layers = 0, bytes = 0;
    lcow_error err;
    if (lcow_client_prune_layers(c->client, all, age, &layers, &bytes, &err) != LCOW_OK)
        return service_error(&err);
    if (c->json) {
        printf("{\"layers\": %" PRId64 ", \"bytes\": %" PRId64 "}\n", layers, bytes);
        return 0;
    }
    char size[32];
    human_size(bytes, size, sizeof size);
    printf("%" PRId64 " layers removed, %s freed\n", layers, size);
    return 0;
}

static int cmd_cleanup(ctl *c, int argc, char **argv)
{
    if (argc != 1)
        return usage_error("%s", "cleanup takes no arguments");
    lcow_error err;
    return lcow_client_cleanup(c->client, &err) == LCOW_OK ? 0 : service_error(&err);
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v == 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int cmd_create_scratch(ctl *c, int argc, char **argv)
{
    uint32_t size_gb = 0, block_mb = 0;
    int i = 1;
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        uint32_t *target = NULL;
        if (strcmp(argv[i], "--size-gb") == 0)
            target = &size_gb;
        else if (strcmp(argv[i], "--block-size-mb") == 0)
            target = &block_mb;
        if (!target || i + 1 >= argc)
            return usage_error("unknown or incomplete option \"%s\"", argv[i]);
        if (!parse_u32(argv[i + 1], target))
            return usage_error("\"%s\" is not a positive integer", argv[i + 1]);
        i += 2;
    }
    if (argc - i != 1)
        return usage_error("%s", "create-scratch needs PATH");
    lcow_error err;
    if (lcow_client_create_scratch(c->client, argv[i], size_gb, block_mb, &err) != LCOW_OK)
        return service_error(&err);
    if (c->json) {
        fputs("{\"path\": ", stdout);
        json_str(argv[i]);
        puts("}");
    } else {
        puts(argv[i]);
    }
    return 0;
}

/* ---- layer import --------------------------------------------------------- */

typedef struct apply_args {
    const char *media_type, *digest;
    bool verity;
    char *blob; /* absolute, malloc'd */
} apply_args;

/* [--media-type T] [--digest D] [--verity], then positional arguments from
 * the returned index (-1: usage error, already reported). */
static int take_apply_options(int argc, char **argv, apply_args *a)
{
    int i = 1;
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        if (strcmp(argv[i], "--verity") == 0) {
            a->verity = true;
            i++;
        } else if (strcmp(argv[i], "--media-type") == 0 && i + 1 < argc) {
            a->media_type = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--media-type=", 13) == 0) {
            a->media_type = argv[i++] + 13;
        } else if (strcmp(argv[i], "--digest") == 0 && i + 1 < argc) {
            a->digest = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--digest=", 9) == 0) {
            a->digest = argv[i++] + 9;
        } else {
            usage_error("unknown or incomplete option \"%s\"", argv[i]);
            return -1;
        }
    }
    return i;
}

/* The service needs an absolute path: a relative BLOB is resolved here. */
static int absolute_blob(const char *blob, apply_args *a)
{
    lcow_error err;
    if (lcow_path_is_absolute(blob)) {
        a->blob = strdup(blob);
    } else if (lcow_os_realpath(blob, &a->blob, &err) != LCOW_OK) {
        return service_error(&err);
    }
    if (!a->blob) {
        fputs("lcowsnapctl: out of memory\n", stderr);
        return EXIT_SERVICE;
    }
    return 0;
}

/* Long conversions: no call timeout unless --timeout was given. */
static void apply_timeout(ctl *c)
{
    if (!c->timeout_given)
        lcow_client_set_call_timeout(c->client, 0);
}

static void print_apply(const ctl *c, const char *name, const lcow_result *r)
{
    if (c->json) {
        fputs("{", stdout);
        if (name) {
            fputs("\"name\": ", stdout);
            json_str(name);
            fputs(", ", stdout);
        }
        fputs("\"diff_id\": ", stdout);
        json_str(r->diff_id);
        fputs(", \"digest\": ", stdout);
        json_str(r->digest);
        printf(", \"size\": %" PRId64 ", \"layer_bytes\": %" PRId64, r->size, r->layer_bytes);
        if (r->verity_root_hash) {
            fputs(", \"verity_root_hash\": ", stdout);
            json_str(r->verity_root_hash);
        }
        puts("}");
        return;
    }
    if (name)
        printf("name:             %s\n", name);
    printf("diff_id:          %s\ndigest:           %s\nsize:             %" PRId64
           "\nlayer_bytes:      %" PRId64 "\n",
           r->diff_id, r->digest, r->size, r->layer_bytes);
    if (r->verity_root_hash)
        printf("verity_root_hash: %s\n", r->verity_root_hash);
}

static int cmd_apply(ctl *c, int argc, char **argv)
{
    apply_args a = {0};
    int i = take_apply_options(argc, argv, &a);
    if (i < 0)
        return EXIT_USAGE;
    if (argc - i != 2)
        return usage_error("%s", "apply needs KEY BLOB");
    int rc = absolute_blob(argv[i + 1], &a);
    if (rc != 0)
        return rc;
    apply_timeout(c);
    lcow_result r;
    lcow_error err;
    if (lcow_client_apply(c->client, argv[i], a.blob, a.media_type, a.digest, a.verity, &r, &err) !=
        LCOW_OK) {
        rc = service_error(&err);
    } else {
        print_apply(c, NULL, &r);
        lcow_result_free(&r);
    }
    free(a.blob);
    return rc;
}

/* The extract key for NAME: containerd's unpack key form "extract-<unique>
 * <name>", in NAME's namespace when it has one ("ns/3/x" -> "ns/3/extract-..."). */
static char *extract_key_for(const char *name)
{
    size_t prefix = 0;
    const char *slash = strchr(name, '/');
    if (slash && slash != name) {
        const char *p = slash + 1;
        while (*p >= '0' && *p <= '9')
            p++;
        if (p > slash + 1 && *p == '/')
            prefix = (size_t)(p + 1 - name);
    }
    lcow_time now = lcow_os_time_now();
    uint8_t rnd[4] = {0};
    lcow_os_random(rnd, sizeof rnd, NULL);
    size_t len = strlen(name) + 64;
    char *key = malloc(len);
    if (key)
        snprintf(key, len, "%.*sextract-%lld%09u-%02x%02x%02x%02x %s", (int)prefix, name,
                 (long long)now.sec, (unsigned)now.nsec, rnd[0], rnd[1], rnd[2], rnd[3],
                 name + prefix);
    return key;
}

static int cmd_import(ctl *c, int argc, char **argv)
{
    apply_args a = {0};
    int i = take_apply_options(argc, argv, &a);
    if (i < 0)
        return EXIT_USAGE;
    if (argc - i < 2 || argc - i > 3)
        return usage_error("%s", "import needs NAME BLOB [PARENT]");
    const char *name = argv[i], *parent = argc - i == 3 ? argv[i + 2] : NULL;
    int rc = absolute_blob(argv[i + 1], &a);
    if (rc != 0)
        return rc;
    char *key = extract_key_for(name);
    if (!key) {
        free(a.blob);
        fputs("lcowsnapctl: out of memory\n", stderr);
        return EXIT_SERVICE;
    }
    lcow_error err;
    lcow_mounts mounts = {0};
    lcow_result r = {0};
    bool prepared = false, applied = false;
    lcow_code code = lcow_client_prepare(c->client, key, parent, NULL, &mounts, &err);
    lcow_mounts_free(&mounts);
    prepared = code == LCOW_OK;
    if (code == LCOW_OK) {
        apply_timeout(c);
        code =
            lcow_client_apply(c->client, key, a.blob, a.media_type, a.digest, a.verity, &r, &err);
        applied = code == LCOW_OK;
    }
    if (code == LCOW_OK)
        code = lcow_client_commit(c->client, name, key, NULL, NULL, &err);
    if (code != LCOW_OK) {
        rc = service_error(&err);
        /* Leave nothing behind: the extract snapshot goes (with its layer). */
        lcow_error rm_err;
        if (prepared && err.code != LCOW_UNAVAILABLE &&
            lcow_client_remove(c->client, key, &rm_err) != LCOW_OK)
            fprintf(stderr, "lcowsnapctl: removing %s after the failure: %s: %s\n", key,
                    lcow_code_name(rm_err.code), rm_err.message);
        else if (prepared && err.code == LCOW_UNAVAILABLE)
            fprintf(stderr,
                    "lcowsnapctl: %s is left for `lcowsnapctl rm` (the service is "
                    "unavailable)\n",
                    key);
    } else {
        print_apply(c, name, &r);
    }
    if (applied)
        lcow_result_free(&r);
    free(key);
    free(a.blob);
    return rc;
}

typedef struct command {
    const char *name;
    int (*run)(ctl *c, int argc, char **argv);
} command;

static int cmd_prepare(ctl *c, int argc, char **argv)
{
    return cmd_prepare_view(c, argc, argv, false);
}

static int cmd_view(ctl *c, int argc, char **argv)
{
    return cmd_prepare_view(c, argc, argv, true);
}

static const command commands[] = {
    {"version", cmd_version},
    {"status", cmd_status},
    {"prepare", cmd_prepare},
    {"view", cmd_view},
    {"mounts", cmd_mounts},
    {"commit", cmd_commit},
    {"rm", cmd_rm},
    {"info", cmd_info},
    {"usage", cmd_usage},
    {"compact", cmd_compact},
    {"layers", cmd_layers},
    {"prune", cmd_prune},
    {"ls", cmd_ls},
    {"tree", cmd_tree},
    {"label", cmd_label},
    {"cleanup", cmd_cleanup},
    {"create-scratch", cmd_create_scratch},
    {"apply", cmd_apply},
    {"import", cmd_import},
};

static int run(int argc, char **argv)
{
    const char *address = NULL;
    unsigned timeout_ms = 0;
    bool json = false;
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            address = argv[++i];
        } else if (strncmp(argv[i], "--address=", 10) == 0) {
            address = argv[i] + 10;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            uint32_t v;
            if (!parse_u32(argv[++i], &v))
                return usage_error("bad --timeout \"%s\"", argv[i]);
            timeout_ms = v;
        } else if (strcmp(argv[i], "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            return usage_error("unknown option \"%s\"", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("%s", "missing COMMAND");
    const command *cmd = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(commands[k].name, argv[i]) == 0)
            cmd = &commands[k];
    }
    if (!cmd)
        return usage_error("unknown command \"%s\"", argv[i]);
    ctl c = {NULL, json, timeout_ms != 0};
    lcow_error err;
    if (lcow_client_connect(address, timeout_ms, &c.client, &err) != LCOW_OK)
        return service_error(&err);
    if (timeout_ms)
        lcow_client_set_call_timeout(c.client, timeout_ms);
    int rc = cmd->run(&c, argc - i, argv + i);
    lcow_client_close(c.client);
    fflush(stdout);
    return rc;
}

#ifdef _WIN32
/* Arguments arrive as UTF-16 and are used as UTF-8 inside. */
int main(void)
{
    int argc;
    char **argv;
    if (!lcow_utf8_argv(&argc, &argv))
        return EXIT_USAGE;
    SetConsoleOutputCP(CP_UTF8);
    int rc = run(argc, argv);
    lcow_utf8_argv_free(argc, argv);
    return rc;
}
#else
int main(int argc, char **argv)
{
    return run(argc, argv);
}
#endif

/* Fuzz target: the Walk filter parser and matcher. The input is split on
 * '\n' into filter strings (counted, so NUL bytes reach the scanner), parsed
 * as one OR-filter, and a parsed filter is matched against a few fixed
 * snapshot infos through both adaptors. A failure must be InvalidArgument
 * with a printable UTF-8 message and no filter; nothing may crash, leak or
 * hang (regexes run under PCRE2 limits). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/filter.h"

#define MAX_FILTERS 16
#define MAX_INPUT 8192

static lcow_info infos[4];
static bool infos_ready;

static void setup_infos(void)
{
    static char long_value[4001];
    memset(long_value, 'a', sizeof long_value - 1);
    infos[0] = (lcow_info){.name = "default/13/sha256:4e2b3a",
                           .parent = "default/12/sha256:9f",
                           .kind = LCOW_KIND_COMMITTED};
    lcow_labels_set(&infos[0].labels, "containerd.io/snapshot.ref", "sha256:4e2b3a");
    lcow_labels_set(&infos[0].labels, "l", "1");
    infos[1] =
        (lcow_info){.name = "k8s.io/7/extract-1 sha", .parent = "", .kind = LCOW_KIND_ACTIVE};
    lcow_labels_set(&infos[1].labels, "a.b", "v12");
    lcow_labels_set(&infos[1].labels, "", "empty key");
    infos[2] = (lcow_info){.name = "v\xe7\x89\x9b", .parent = "p", .kind = LCOW_KIND_VIEW};
    lcow_labels_set(&infos[2].labels, "long", long_value);
    infos[3] = (lcow_info){.name = "", .parent = "", .kind = LCOW_KIND_UNKNOWN};
    infos_ready = true;
}

static bool field_of(void *ctx, const char *const *path, const size_t *lens, size_t count,
                     const char **value)
{
    const lcow_info *info = ctx;
    if (count == 0 || !path[count - 1] || strlen(path[0]) > lens[0])
        abort();
    if (lens[0] == 4 && memcmp(path[0], "name", 4) == 0) {
        *value = info->name;
        return true;
    }
    if (lens[0] == 6 && memcmp(path[0], "labels", 6) == 0 && count == 2 &&
        strlen(path[1]) == lens[1]) {
        *value = lcow_labels_get(&info->labels, path[1]);
        return *value != NULL;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!infos_ready)
        setup_infos();
    if (size > MAX_INPUT)
        size = MAX_INPUT;
    const char *filters[MAX_FILTERS];
    size_t lens[MAX_FILTERS];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= size && count < MAX_FILTERS; i++) {
        if (i == size || data[i] == '\n') {
            filters[count] = (const char *)data + start;
            lens[count] = i - start;
            count++;
            start = i + 1;
        }
    }
    if (size == 0)
        count = 0;

    lcow_filter *f = (lcow_filter *)(uintptr_t)1;
    lcow_error err = {0};
    lcow_code rc = lcow_filter_parse_n(filters, lens, count, &f, &err);
    if (rc != LCOW_OK) {
        if (f != NULL || err.code != rc ||
            (rc != LCOW_INVALID_ARGUMENT && rc != LCOW_RESOURCE_EXHAUSTED))
            abort();
        if (!lcow_utf8_valid(err.message, strlen(err.message)))
            abort();
        return 0;
    }
    for (size_t i = 0; i < sizeof infos / sizeof infos[0]; i++) {
        bool a = lcow_filter_match_info(f, &infos[i]);
        bool b = lcow_filter_match_info(f, &infos[i]);
        if (a != b)
            abort(); /* matching is a pure function */
        (void)lcow_filter_match(f, field_of, &infos[i]);
    }
    if (lcow_filter_matches_all(f) && !lcow_filter_match_info(f, &infos[3]))
        abort();
    lcow_filter_free(f);
    return 0;
}

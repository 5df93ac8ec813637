/* Value types of the snapshotter contract, shared by core/, rpc/ and tools/.
 * All strings are NUL-terminated UTF-8 and owned by the struct holding them;
 * the *_free functions release contents (not the struct itself). */
#ifndef LCOW_TYPES_H
#define LCOW_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum lcow_kind {
    LCOW_KIND_UNKNOWN = 0,
    LCOW_KIND_VIEW = 1,
    LCOW_KIND_ACTIVE = 2,
    LCOW_KIND_COMMITTED = 3,
} lcow_kind;

/* "active", "view", "committed" (the filter adaptor's lowercase names). */
const char *lcow_kind_name(lcow_kind kind);
/* Case-insensitive inverse; LCOW_KIND_UNKNOWN if not a kind. */
lcow_kind lcow_kind_parse(const char *name);

/* UTC wall-clock time with nanosecond precision. */
typedef struct lcow_time {
    int64_t sec;
    uint32_t nsec;
} lcow_time;

lcow_time lcow_time_now(void);
int lcow_time_cmp(lcow_time a, lcow_time b);

typedef struct lcow_label {
    char *key;
    char *value;
} lcow_label;

/* A label map kept sorted by key, keys unique. */
typedef struct lcow_labels {
    size_t count;
    lcow_label *items;
} lcow_labels;

/* Sets key=value (copying both); an empty value deletes the key, as
 * containerd never stores empty values. Returns false on allocation failure. */
bool lcow_labels_set(lcow_labels *labels, const char *key, const char *value);
bool lcow_labels_delete(lcow_labels *labels, const char *key);
const char *lcow_labels_get(const lcow_labels *labels, const char *key);
bool lcow_labels_copy(lcow_labels *dst, const lcow_labels *src);
void lcow_labels_free(lcow_labels *labels);

typedef struct lcow_info {
    char *name;
    char *parent; /* "" when none */
    lcow_kind kind;
    lcow_labels labels;
    lcow_time created;
    lcow_time updated;
} lcow_info;

void lcow_info_free(lcow_info *info);
bool lcow_info_copy(lcow_info *dst, const lcow_info *src);

typedef struct lcow_mount {
    char *type;
    char *source;
    size_t option_count;
    char **options;
} lcow_mount;

typedef struct lcow_mounts {
    size_t count;
    lcow_mount *items;
} lcow_mounts;

void lcow_mounts_free(lcow_mounts *mounts);

typedef struct lcow_usage {
    int64_t size;
    int64_t inodes;
} lcow_usage;

/* Input limits (containerd's metadata layer enforces key+value <= 4096). */
#define LCOW_MAX_KEY_LEN 4096
#define LCOW_MAX_LABEL_LEN 4096 /* len(key) + len(value) */
#define LCOW_MAX_LABELS 256

/* True if s[0..len) is valid UTF-8 with no NUL bytes. */
bool lcow_utf8_valid(const char *s, size_t len);

#endif

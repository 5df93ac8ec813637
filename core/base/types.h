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

/* UTC wall-clock time with nanosecond precision (the clock itself is
 * lcow_os_time_now in core/os/os.h). */
typedef struct lcow_time {
    int64_t sec;
    uint32_t nsec;
} lcow_time;

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
    /* The ext4 view of an active's scratch disk (Usage only, never stored):
     * used and total bytes and inodes as df counts them; 0 = no view (no
     * scratch disk, or it could not be read). */
    uint64_t ext4_used_bytes, ext4_used_inodes;
    uint64_t ext4_total_bytes, ext4_total_inodes;
} lcow_usage;

/* What Compact did: disks compacted, their file bytes before and after, and
 * for Compact --all the disks skipped because in use or failed. */
typedef struct lcow_compact_summary {
    int64_t disks;
    int64_t bytes_before, bytes_after;
    int64_t in_use, failed;
} lcow_compact_summary;

/* Input limits (containerd's metadata layer enforces key+value <= 4096). */
#define LCOW_MAX_KEY_LEN 4096
#define LCOW_MAX_LABEL_LEN 4096 /* len(key) + len(value) */
#define LCOW_MAX_LABELS 256

/* True if s[0..len) is valid UTF-8 with no NUL bytes. */
bool lcow_utf8_valid(const char *s, size_t len);

/* The key grammar of containerd's metadata layer: a backend key is
 * "<namespace>/<n>/<client key>" (n decimal). Keys without that prefix have
 * namespace "" and are their own client key. The returned pointer points
 * into key (no allocation); *namespace_len is the length of key's namespace
 * prefix. The scratch policy, the snapshotter's owner lookup and the
 * metastore's client-key index all split keys with this one function. */
void lcow_key_split(const char *key, const char **client_key, size_t *namespace_len);

/* Growable arrays: makes room for `need` elements of elem_size bytes in the
 * array whose pointer is at *(void **)items (capacity *cap elements),
 * doubling from at least 8. On failure the array and *cap are unchanged and
 * false is returned. Use: lcow_grow(&v, &cap, count + 1, sizeof *v). */
bool lcow_grow(void *items, size_t *cap, size_t need, size_t elem_size);

#endif

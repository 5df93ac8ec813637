#include "core/base/types.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"unknown", "view", "active", "committed"};

const char *lcow_kind_name(lcow_kind kind)
{
    return (unsigned)kind < 4 ? kind_names[kind] : "unknown";
}

lcow_kind lcow_kind_parse(const char *name)
{
    for (int k = 1; k < 4; k++) {
        const char *a = name, *b = kind_names[k];
        while (*a && *b && (*a | 0x20) == *b)
            a++, b++;
        if (*a == '\0' && *b == '\0')
            return (lcow_kind)k;
    }
    return LCOW_KIND_UNKNOWN;
}

int lcow_time_cmp(lcow_time a, lcow_time b)
{
    if (a.sec != b.sec)
        return a.sec < b.sec ? -1 : 1;
    if (a.nsec != b.nsec)
        return a.nsec < b.nsec ? -1 : 1;
    return 0;
}

/* Index of key, or -(insertion point) - 1 when absent. */
static long labels_find(const lcow_labels *labels, const char *key)
{
    size_t lo = 0, hi = labels->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(labels->items[mid].key, key);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

bool lcow_labels_set(lcow_labels *labels, const char *key, const char *value)
{
    if (!value || !*value) {
        lcow_labels_delete(labels, key);
        return true;
    }
    char *v = strdup(value);
    if (!v)
        return false;
    long at = labels_find(labels, key);
    if (at >= 0) {
        free(labels->items[at].value);
        labels->items[at].value = v;
        return true;
    }
    char *k = strdup(key);
    lcow_label *grown = realloc(labels->items, (labels->count + 1) * sizeof *grown);
    if (!k || !grown) {
        free(k);
        free(v);
        if (grown)
            labels->items = grown;
        return false;
    }
    labels->items = grown;
    size_t pos = (size_t)(-at - 1);
    memmove(&labels->items[pos + 1], &labels->items[pos],
            (labels->count - pos) * sizeof labels->items[0]);
    labels->items[pos].key = k;
    labels->items[pos].value = v;
    labels->count++;
    return true;
}

bool lcow_labels_delete(lcow_labels *labels, const char *key)
{
    long at = labels_find(labels, key);
    if (at < 0)
        return false;
    free(labels->items[at].key);
    free(labels->items[at].value);
    memmove(&labels->items[at], &labels->items[at + 1],
            (labels->count - (size_t)at - 1) * sizeof labels->items[0]);
    labels->count--;
    return true;
}

const char *lcow_labels_get(const lcow_labels *labels, const char *key)
{
    if (!labels)
        return NULL;
    long at = labels_find(labels, key);
    return at >= 0 ? labels->items[at].value : NULL;
}

bool lcow_labels_copy(lcow_labels *dst, const lcow_labels *src)
{
    dst->count = 0;
    dst->items = NULL;
    if (!src || src->count == 0)
        return true;
    dst->items = calloc(src->count, sizeof *dst->items);
    if (!dst->items)
        return false;
    for (size_t i = 0; i < src->count; i++) {
        dst->items[i].key = strdup(src->items[i].key);
        dst->items[i].value = strdup(src->items[i].value);
        dst->count = i + 1;
        if (!dst->items[i].key || !dst->items[i].value) {
            lcow_labels_free(dst);
            return false;
        }
    }
    return true;
}

void lcow_labels_free(lcow_labels *labels)
{
    if (!labels)
        return;
    for (size_t i = 0; i < labels->count; i++) {
        free(labels->items[i].key);
        free(labels->items[i].value);
    }
    free(labels->items);
    labels->items = NULL;
    labels->count = 0;
}

void lcow_info_free(lcow_info *info)
{
    if (!info)
        return;
    free(info->name);
    free(info->parent);
    lcow_labels_free(&info->labels);
    memset(info, 0, sizeof *info);
}

bool lcow_info_copy(lcow_info *dst, const lcow_info *src)
{
    memset(dst, 0, sizeof *dst);
    dst->name = strdup(src->name ? src->name : "");
    dst->parent = strdup(src->parent ? src->parent : "");
    dst->kind = src->kind;
    dst->created = src->created;
    dst->updated = src->updated;
    if (!dst->name || !dst->parent || !lcow_labels_copy(&dst->labels, &src->labels)) {
        lcow_info_free(dst);
        return false;
    }
    return true;
}

void lcow_mounts_free(lcow_mounts *mounts)
{
    if (!mounts)
        return;
    for (size_t i = 0; i < mounts->count; i++) {
        lcow_mount *m = &mounts->items[i];
        free(m->type);
        free(m->source);
        for (size_t j = 0; j < m->option_count; j++)
            free(m->options[j]);
        free(m->options);
    }
    free(mounts->items);
    mounts->items = NULL;
    mounts->count = 0;
}

bool lcow_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned min;
        if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t j = 1; j <= n; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            c = (c << 6) | (s[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

void lcow_key_split(const char *key, const char **client_key, size_t *namespace_len)
{
    const char *slash = strchr(key, '/');
    if (slash && slash != key) {
        const char *digits = slash + 1, *d = digits;
        while (*d >= '0' && *d <= '9')
            d++;
        if (d != digits && *d == '/') {
            *client_key = d + 1;
            *namespace_len = (size_t)(slash - key);
            return;
        }
    }
    *client_key = key;
    *namespace_len = 0;
}

bool lcow_grow(void *items, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 8;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return false;
        n *= 2;
    }
    if (n > SIZE_MAX / elem_size)
        return false;
    void *old;
    memcpy(&old, items, sizeof old); /* items is the address of a T * */
    void *grown = realloc(old, n * elem_size);
    if (!grown)
        return false;
    memcpy(items, &grown, sizeof grown);
    *cap = n;
    return true;
}

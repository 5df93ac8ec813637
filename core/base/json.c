/* JSON string literals (core/base/json.h). */
#include "core/base/json.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/types.h"

static bool put(char **out, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (!lcow_grow(out, cap, *len + n + 1, 1))
        return false;
    memcpy(*out + *len, p, n);
    *len += n;
    (*out)[*len] = '\0';
    return true;
}

bool lcow_json_append_string(char **out, size_t *len, size_t *cap, const char *s,
                             lcow_json_rule rule)
{
    static const char hex[] = "0123456789abcdef";
    bool go = rule == LCOW_JSON_GO;
    bool ok = put(out, len, cap, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    while (ok && *p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ok = put(out, len, cap, esc, 2);
            p++;
        } else if (c == '\n') {
            ok = put(out, len, cap, "\\n", 2);
            p++;
        } else if (c == '\r') {
            ok = put(out, len, cap, "\\r", 2);
            p++;
        } else if (c == '\t') {
            ok = put(out, len, cap, "\\t", 2);
            p++;
        } else if (c < 0x20 || (go && (c == '<' || c == '>' || c == '&'))) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            ok = put(out, len, cap, esc, 6);
            p++;
        } else if (c < 0x80 || !go) {
            ok = put(out, len, cap, p, 1);
            p++;
        } else {
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            size_t avail = strnlen((const char *)p, n);
            if (n == 1 || avail < n || !lcow_utf8_valid((const char *)p, n)) {
                ok = put(out, len, cap, "\\ufffd", 6);
                p++;
            } else if (n == 3 && c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
                ok = put(out, len, cap, p[2] == 0xa8 ? "\\u2028" : "\\u2029", 6);
                p += 3;
            } else {
                ok = put(out, len, cap, p, n);
                p += n;
            }
        }
    }
    return ok && put(out, len, cap, "\"", 1);
}

char *lcow_json_string(const char *s, lcow_json_rule rule)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    if (!lcow_json_append_string(&out, &len, &cap, s, rule)) {
        free(out);
        return NULL;
    }
    return out;
}

char *lcow_json_string_array(const char *const *items, size_t count, lcow_json_rule rule)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = put(&out, &len, &cap, "[", 1);
    for (size_t i = 0; ok && i < count; i++)
        ok = (i == 0 || put(&out, &len, &cap, ",", 1)) &&
             lcow_json_append_string(&out, &len, &cap, items[i], rule);
    if (!ok || !put(&out, &len, &cap, "]", 1)) {
        free(out);
        return NULL;
    }
    return out;
}

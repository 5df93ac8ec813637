/* JSON string literals for the two places the tree writes JSON: the
 * snapshotter's parentLayerPaths mount option, which must be byte-identical
 * to what Go's encoding/json writes (containerd's Windows snapshotter
 * marshals a []string), and lcowsnapctl --json, whose output scripts read.
 *
 * The two differ only in the escaping rule, chosen by a flag:
 *   LCOW_JSON_GO     encoding/json's default: " \ \n \r \t as two-character
 *                    escapes, other bytes below 0x20 and < > & as \u00XX,
 *                    U+2028 and U+2029 as \u2028 and \u2029, and every byte
 *                    of invalid UTF-8 as \ufffd;
 *   LCOW_JSON_PLAIN  the same short escapes and \u00XX below 0x20, every
 *                    other byte copied as it is (lcowsnapctl). */
#ifndef LCOW_JSON_H
#define LCOW_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef enum lcow_json_rule {
    LCOW_JSON_PLAIN = 0,
    LCOW_JSON_GO = 1,
} lcow_json_rule;

/* Appends s as a quoted JSON string to the NUL-terminated text *out of
 * length *len in a buffer of *cap bytes (all three may start 0/NULL; the
 * buffer grows with realloc). False on out of memory; *out stays valid. */
bool lcow_json_append_string(char **out, size_t *len, size_t *cap, const char *s,
                             lcow_json_rule rule);

/* s as a quoted JSON string, malloc'd; NULL on out of memory. */
char *lcow_json_string(const char *s, lcow_json_rule rule);

/* items as a JSON array of strings ("[]" when count is 0, never null, as Go
 * writes an empty []string), malloc'd; NULL on out of memory. */
char *lcow_json_string_array(const char *const *items, size_t count, lcow_json_rule rule);

#endif

/* containerd-style filters (pkg/filters) for Walk and similar listings.
 *
 * A filter is the OR of one or more filter strings; each string is the AND of
 * comma-separated selectors `fieldpath [op value]` with op one of ==, != and
 * ~= (unanchored regex search, compiled with PCRE2 at parse time). A selector
 * without an operator is a presence test. See docs/filters.md for the full
 * grammar, its quirks and the differences from Go's RE2. */
#ifndef LCOW_FILTER_H
#define LCOW_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "errors.h"
#include "types.h"

typedef struct lcow_filter lcow_filter;

/* Parses and compiles the OR of filters[0..count). count 0, or every string
 * "", yields a filter that matches everything. A syntax error (or a NULL
 * string, NUL/invalid UTF-8 in a quoted value, ...) returns
 * LCOW_INVALID_ARGUMENT with a message naming the filter index, the byte
 * position and what was expected; allocation failure returns
 * LCOW_RESOURCE_EXHAUSTED. On success *out owns the compiled filter; on
 * failure *out is set to NULL. */
lcow_code lcow_filter_parse(const char *const *filters, size_t count, lcow_filter **out,
                            lcow_error *err);

/* Matches the snapshot-info adaptor: fields name, parent (always present,
 * possibly ""), kind ("active", "view", "committed") and labels.<key> where
 * the key is the remaining path elements joined by '.'. Thread-safe: many
 * threads may match against one compiled filter concurrently. A NULL filter
 * matches everything. */
bool lcow_filter_match_info(const lcow_filter *f, const lcow_info *info);

/* Generic adaptor: given the field path path[0..len), returns true and sets
 * *value (borrowed, NUL-terminated, valid until the callback returns to the
 * matcher for the next field) if the field is present; false if absent. */
typedef bool (*lcow_filter_field_fn)(void *ctx, const char *const *path, size_t len,
                                     const char **value);

/* Matches f against any object through the field adaptor; thread-safe as
 * lcow_filter_match_info. */
bool lcow_filter_match(const lcow_filter *f, lcow_filter_field_fn field, void *ctx);

/* True if f matches everything (no selectors at all). */
bool lcow_filter_matches_all(const lcow_filter *f);

void lcow_filter_free(lcow_filter *f);

#endif

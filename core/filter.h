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

#include "core/base/errors.h"
#include "core/base/types.h"

typedef struct lcow_filter lcow_filter;

/* Parses and compiles the OR of filters[0..count). count 0 yields a filter
 * that matches everything, and so does any "" among the strings (containerd's
 * ParseAll: "" is its Always filter, and Always OR x is Always). A syntax
 * error (including a NUL byte or invalid UTF-8 anywhere) returns
 * LCOW_INVALID_ARGUMENT with a message naming the filter index, the byte
 * position and what was expected; a NULL string is LCOW_INVALID_ARGUMENT too;
 * allocation failure returns LCOW_RESOURCE_EXHAUSTED. On success *out owns
 * the compiled filter; on failure *out is set to NULL. Regexes (~=) are
 * compiled here; an invalid one is not an error, its selector never matches. */
lcow_code lcow_filter_parse(const char *const *filters, size_t count, lcow_filter **out,
                            lcow_error *err);

/* Matches the snapshot-info adaptor: fields name, parent (always present,
 * possibly ""), kind ("active", "view", "committed") and labels.<key> where
 * the key is the remaining path elements joined by '.'. Thread-safe: many
 * threads may match against one compiled filter concurrently. A NULL filter
 * matches everything. */
bool lcow_filter_match_info(const lcow_filter *f, const lcow_info *info);

/* Generic adaptor: given the field path (count elements; element i is
 * path[i], path_lens[i] bytes, NUL-terminated but possibly containing an
 * escaped NUL byte), returns true and sets *value (borrowed NUL-terminated
 * string, valid until the matcher asks for the next field) if the field is
 * present; false if absent. */
typedef bool (*lcow_filter_field_fn)(void *ctx, const char *const *path, const size_t *path_lens,
                                     size_t count, const char **value);

/* Matches f against any object through the field adaptor; thread-safe as
 * lcow_filter_match_info. A NULL filter matches everything. */
bool lcow_filter_match(const lcow_filter *f, lcow_filter_field_fn field, void *ctx);

/* True if f matches everything (count 0 or an empty string among the OR). */
bool lcow_filter_matches_all(const lcow_filter *f);

/* As lcow_filter_parse, for counted strings (e.g. straight from the wire):
 * filters[i] has lens[i] bytes (lens NULL: NUL-terminated), so an embedded
 * NUL byte is seen and rejected as containerd does. */
lcow_code lcow_filter_parse_n(const char *const *filters, const size_t *lens, size_t count,
                              lcow_filter **out, lcow_error *err);

void lcow_filter_free(lcow_filter *f);

#endif

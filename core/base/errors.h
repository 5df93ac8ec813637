/* lcowsnap error categories and the error record every fallible call fills.
 *
 * The categories are containerd's errdefs categories, so the RPC layer maps
 * them 1:1 to protocol codes and a shim maps them 1:1 to errdefs. */
#ifndef LCOW_ERRORS_H
#define LCOW_ERRORS_H

#include <stddef.h>

#include "core/base/compiler.h"

typedef enum lcow_code {
    LCOW_OK = 0,
    LCOW_NOT_FOUND,
    LCOW_ALREADY_EXISTS,
    LCOW_INVALID_ARGUMENT,
    LCOW_FAILED_PRECONDITION,
    LCOW_RESOURCE_EXHAUSTED,
    LCOW_UNAVAILABLE,
    LCOW_NOT_IMPLEMENTED,
    LCOW_INTERNAL,
    LCOW_CODE_COUNT
} lcow_code;

/* Room for a few paths of a deep checkout or root (a message longer than this
 * keeps every word: errors.c shortens its long tokens, the paths, in the
 * middle). 512 cut off the remedy at a 150-character checkout. */
#define LCOW_ERROR_MESSAGE_MAX 2048

/* An error: a category plus a human-readable message. Callers may pass NULL
 * for the error record when they only need the code. */
typedef struct lcow_error {
    lcow_code code;
    char message[LCOW_ERROR_MESSAGE_MAX];
} lcow_error;

/* Records code and a printf-style message in err (if non-NULL); returns code
 * so a failing path can `return lcow_error_set(err, ...)`. */
lcow_code lcow_error_set(lcow_error *err, lcow_code code, const char *fmt, ...) LCOW_PRINTF(3, 4);

/* Prepends "context: " to the message already in err, keeping the code. */
lcow_code lcow_error_wrap(lcow_error *err, const char *fmt, ...) LCOW_PRINTF(2, 3);

/* The same, returning code whether or not err is NULL: the form for a
 * failure path that holds its code, `return lcow_error_wrap_code(err, rc,
 * "reading %s", path);` (lcow_error_wrap has no code to return for a NULL
 * err and returns LCOW_INTERNAL). */
lcow_code lcow_error_wrap_code(lcow_error *err, lcow_code code, const char *fmt, ...)
    LCOW_PRINTF(3, 4);

void lcow_error_clear(lcow_error *err);

/* Protocol name of a code: "NotFound", "AlreadyExists", ... ("Internal" for
 * anything out of range). */
const char *lcow_code_name(lcow_code code);

/* Inverse of lcow_code_name; returns LCOW_INTERNAL for unknown names. */
lcow_code lcow_code_from_name(const char *name);

#endif

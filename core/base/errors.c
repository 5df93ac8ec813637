#include "core/base/errors.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const code_names[LCOW_CODE_COUNT] = {
    [LCOW_OK] = "OK",
    [LCOW_NOT_FOUND] = "NotFound",
    [LCOW_ALREADY_EXISTS] = "AlreadyExists",
    [LCOW_INVALID_ARGUMENT] = "InvalidArgument",
    [LCOW_FAILED_PRECONDITION] = "FailedPrecondition",
    [LCOW_RESOURCE_EXHAUSTED] = "ResourceExhausted",
    [LCOW_UNAVAILABLE] = "Unavailable",
    [LCOW_NOT_IMPLEMENTED] = "NotImplemented",
    [LCOW_INTERNAL] = "Internal",
};

/* A message longer than LCOW_ERROR_MESSAGE_MAX keeps every word: its long
 * space-separated tokens (paths, mostly) are shortened in their middle, to
 * the largest common length that makes the message fit, so the cause (the
 * operation, at the head) and the remedy and the OS error text (at the tail)
 * survive whatever the path length; a path keeps its start and, longer, its
 * end (the file name). Only if that is not enough is the middle of the whole
 * message cut. A cut never splits a UTF-8 sequence, so the message stays
 * valid UTF-8 for the protocol. */
#define ELLIPSIS "[...]"
#define ELLIPSIS_LEN (sizeof ELLIPSIS - 1)
#define MIN_TOKEN 32 /* a shortened token keeps at least this many bytes */

static bool is_continuation(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* Copies s[0..n) to out (room for n + 1) with its middle replaced by the
 * ellipsis so that it is at most max bytes; returns the length written. */
static size_t cut_middle(char *out, const char *s, size_t n, size_t max)
{
    if (n <= max) {
        memmove(out, s, n);
        return n;
    }
    size_t keep = max - ELLIPSIS_LEN;
    size_t head = keep / 3, tail_at = n - (keep - head);
    while (head > 0 && is_continuation(s[head]))
        head--;
    while (tail_at < n && is_continuation(s[tail_at]))
        tail_at++;
    memmove(out, s, head);
    memmove(out + head, ELLIPSIS, ELLIPSIS_LEN);
    memmove(out + head + ELLIPSIS_LEN, s + tail_at, n - tail_at);
    return head + ELLIPSIS_LEN + (n - tail_at);
}

/* With out == NULL only measures: the length of s[0..n) with every token
 * longer than cap cut to cap bytes. */
static size_t cap_tokens(char *out, const char *s, size_t n, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j] != ' ')
            j++;
        size_t t = j - i;
        if (t > cap && out)
            len += cut_middle(out + len, s + i, t, cap);
        else if (t > cap)
            len += cap;
        else {
            if (out)
                memmove(out + len, s + i, t);
            len += t;
        }
        if (j < n) {
            if (out)
                out[len] = ' ';
            len++;
        }
        i = j + 1;
    }
    return len;
}

static void fit(char out[LCOW_ERROR_MESSAGE_MAX], char *s, size_t n)
{
    const size_t max = LCOW_ERROR_MESSAGE_MAX - 1;
    if (n > max) {
        size_t lo = MIN_TOKEN, hi = n; /* the largest cap that fits, if any */
        if (cap_tokens(NULL, s, n, lo) <= max) {
            while (lo < hi) {
                size_t mid = lo + (hi - lo + 1) / 2;
                if (cap_tokens(NULL, s, n, mid) <= max)
                    lo = mid;
                else
                    hi = mid - 1;
            }
        }
        n = cap_tokens(s, s, n, lo); /* in place: the output never overtakes the input */
    }
    n = cut_middle(out, s, n, max);
    out[n] = '\0';
}

static void vformat_fit(char out[LCOW_ERROR_MESSAGE_MAX], const char *fmt, va_list ap)
    LCOW_PRINTF(2, 0);

static void vformat_fit(char out[LCOW_ERROR_MESSAGE_MAX], const char *fmt, va_list ap)
{
    char buf[LCOW_ERROR_MESSAGE_MAX];
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) {
        snprintf(out, LCOW_ERROR_MESSAGE_MAX, "(unformattable message: %s)", fmt);
    } else if ((size_t)n < sizeof buf) {
        memcpy(out, buf, (size_t)n + 1);
    } else {
        /* Only an overlong message allocates; without memory it keeps its head. */
        char *full = malloc((size_t)n + 1);
        if (full && vsnprintf(full, (size_t)n + 1, fmt, again) == n)
            fit(out, full, (size_t)n);
        else
            memcpy(out, buf, sizeof buf);
        free(full);
    }
    va_end(again);
}

static void format_fit(char out[LCOW_ERROR_MESSAGE_MAX], const char *fmt, ...) LCOW_PRINTF(2, 3);

static void format_fit(char out[LCOW_ERROR_MESSAGE_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vformat_fit(out, fmt, ap);
    va_end(ap);
}

lcow_code lcow_error_set(lcow_error *err, lcow_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vformat_fit(err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static void vwrap(lcow_error *err, const char *fmt, va_list ap) LCOW_PRINTF(2, 0);

static void vwrap(lcow_error *err, const char *fmt, va_list ap)
{
    char prefix[LCOW_ERROR_MESSAGE_MAX];
    char old[LCOW_ERROR_MESSAGE_MAX];
    vformat_fit(prefix, fmt, ap);
    memcpy(old, err->message, sizeof old);
    format_fit(err->message, "%s: %s", prefix, old);
}

lcow_code lcow_error_wrap(lcow_error *err, const char *fmt, ...)
{
    if (!err)
        return LCOW_INTERNAL;
    va_list ap;
    va_start(ap, fmt);
    vwrap(err, fmt, ap);
    va_end(ap);
    return err->code;
}

lcow_code lcow_error_wrap_code(lcow_error *err, lcow_code code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vwrap(err, fmt, ap);
    va_end(ap);
    return code;
}

void lcow_error_clear(lcow_error *err)
{
    if (err) {
        err->code = LCOW_OK;
        err->message[0] = '\0';
    }
}

const char *lcow_code_name(lcow_code code)
{
    if ((unsigned)code >= LCOW_CODE_COUNT)
        return "Internal";
    return code_names[code];
}

lcow_code lcow_code_from_name(const char *name)
{
    for (int i = 0; i < LCOW_CODE_COUNT; i++)
        if (name && strcmp(code_names[i], name) == 0)
            return (lcow_code)i;
    return LCOW_INTERNAL;
}

#include "core/base/errors.h"

#include <stdarg.h>
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

/* A message longer than LCOW_ERROR_MESSAGE_MAX keeps its head (the cause:
 * the operation and where) and its tail (the OS error text, the remedy) and
 * loses its middle, which is where long paths sit; a cut never splits a
 * UTF-8 sequence, so the message stays valid UTF-8 for the protocol. */
#define ELLIPSIS "[...]"

static void fit(char out[LCOW_ERROR_MESSAGE_MAX], const char *s, size_t n)
{
    if (n < LCOW_ERROR_MESSAGE_MAX) {
        memcpy(out, s, n + 1);
        return;
    }
    size_t keep = LCOW_ERROR_MESSAGE_MAX - 1 - (sizeof ELLIPSIS - 1);
    size_t head = keep / 2, tail_at = n - (keep - head);
    while (head > 0 && ((unsigned char)s[head] & 0xC0) == 0x80)
        head--;
    while (tail_at < n && ((unsigned char)s[tail_at] & 0xC0) == 0x80)
        tail_at++;
    memcpy(out, s, head);
    memcpy(out + head, ELLIPSIS, sizeof ELLIPSIS - 1);
    memcpy(out + head + sizeof ELLIPSIS - 1, s + tail_at, n - tail_at + 1);
}

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

lcow_code lcow_error_wrap(lcow_error *err, const char *fmt, ...)
{
    if (!err)
        return LCOW_INTERNAL;
    char prefix[LCOW_ERROR_MESSAGE_MAX];
    char old[LCOW_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vformat_fit(prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    format_fit(err->message, "%s: %s", prefix, old);
    return err->code;
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

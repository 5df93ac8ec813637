#include "core/base/errors.h"

#include <stdarg.h>
#include <stdio.h>
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

lcow_code lcow_error_set(lcow_error *err, lcow_code code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
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
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof old);
    snprintf(err->message, sizeof err->message, "%s: %s", prefix, old);
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

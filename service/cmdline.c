#include "service/cmdline.h"

#include <stdlib.h>
#include <string.h>

static int append_raw(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t grown = (*cap ? *cap * 2 : 64);
        while (grown < *len + n + 1)
            grown *= 2;
        char *p = realloc(*buf, grown);
        if (!p)
            return -1;
        *buf = p;
        *cap = grown;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

static int append_quoted(char **buf, const char *arg, int force_quotes)
{
    size_t len = *buf ? strlen(*buf) : 0;
    size_t cap = *buf ? len + 1 : 0;
    if (len > 0 && append_raw(buf, &len, &cap, " ", 1) != 0)
        return -1;
    if (!force_quotes && arg[0] != '\0' && strpbrk(arg, " \t\n\v\"") == NULL)
        return append_raw(buf, &len, &cap, arg, strlen(arg));
    if (append_raw(buf, &len, &cap, "\"", 1) != 0)
        return -1;
    for (const char *p = arg;; p++) {
        size_t backslashes = 0;
        while (*p == '\\') {
            backslashes++;
            p++;
        }
        /* Backslashes are literal unless they precede a quote (the argument's
         * own or the closing one): then each must be doubled. */
        size_t emit = (*p == '\0' || *p == '"') ? backslashes * 2 : backslashes;
        for (size_t i = 0; i < emit; i++)
            if (append_raw(buf, &len, &cap, "\\", 1) != 0)
                return -1;
        if (*p == '\0')
            break;
        if (*p == '"' && append_raw(buf, &len, &cap, "\\", 1) != 0)
            return -1;
        if (append_raw(buf, &len, &cap, p, 1) != 0)
            return -1;
    }
    return append_raw(buf, &len, &cap, "\"", 1);
}

int lcow_cmdline_append(char **buf, const char *arg)
{
    if (!*buf) {
        *buf = calloc(1, 1);
        if (!*buf)
            return -1;
    }
    return append_quoted(buf, arg, 0);
}

char *lcow_cmdline_for_service(const char *exe, const char *const *args, size_t count)
{
    char *buf = calloc(1, 1);
    if (!buf || append_quoted(&buf, exe, 1) != 0 || lcow_cmdline_append(&buf, "--run-service") != 0)
        goto fail;
    for (size_t i = 0; i < count; i++)
        if (lcow_cmdline_append(&buf, args[i]) != 0)
            goto fail;
    return buf;
fail:
    free(buf);
    return NULL;
}

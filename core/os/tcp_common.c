/* lcow_tcp_parse_address: the part of core/os/tcp.h that is string work. */
#include "core/os/tcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/tcp_internal.h"

lcow_code lcow_tcp_parse_address(const char *text, lcow_tcp_address *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "address '%s': expected HOST:PORT (e.g. 127.0.0.1:9464)",
                              text ? text : "");
    size_t hlen = (size_t)(colon - text);
    const char *host = text;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
        out->ipv6 = true;
    }
    if (hlen == 0 || hlen >= sizeof out->host)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "address '%s': the host must be named (127.0.0.1, [::1], or an "
                              "interface's address)",
                              text);
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (!out->ipv6 && strcmp(out->host, "localhost") == 0)
        snprintf(out->host, sizeof out->host, "127.0.0.1");
    char *end = NULL;
    unsigned long port = colon[1] >= '0' && colon[1] <= '9' ? strtoul(colon + 1, &end, 10) : 99999;
    if (!end || *end || port > 65535)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "address '%s': bad port", text);
    out->port = (uint16_t)port;
    unsigned char raw[16];
    if (!lcow_tcp_inet_pton(out->ipv6, out->host, raw))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "address '%s': '%s' is not a numeric %s address (names are not "
                              "resolved)",
                              text, out->host, out->ipv6 ? "IPv6" : "IPv4");
    if (out->ipv6) {
        static const unsigned char zero[16], one[16] = {[15] = 1};
        out->wildcard = memcmp(raw, zero, 16) == 0;
        out->loopback = memcmp(raw, one, 16) == 0;
    } else {
        out->wildcard = raw[0] == 0 && raw[1] == 0 && raw[2] == 0 && raw[3] == 0;
        out->loopback = raw[0] == 127;
    }
    return LCOW_OK;
}

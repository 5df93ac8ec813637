/* Shared by tcp_common.c and the platform files (not a public header). */
#ifndef LCOW_OS_TCP_INTERNAL_H
#define LCOW_OS_TCP_INTERNAL_H

#include <stdbool.h>

/* inet_pton of an IPv4 (4 bytes) or IPv6 (16 bytes) literal into raw. */
bool lcow_tcp_inet_pton(bool ipv6, const char *host, unsigned char *raw);

#endif

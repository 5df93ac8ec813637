/* TCP on the loopback or a named interface, for the opt-in metrics endpoint
 * (rpc/metrics.c): a listener, accept and blocking I/O with timeouts. BSD
 * sockets on POSIX (tcp_posix.c), Winsock 2 on Windows (tcp_win.c). Only
 * numeric addresses: no name resolution. */
#ifndef LCOW_OS_TCP_H
#define LCOW_OS_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"

typedef struct lcow_tcp_listener lcow_tcp_listener;
typedef struct lcow_tcp_conn lcow_tcp_conn;

/* A parsed "HOST:PORT" / "[V6]:PORT" (lcow_tcp_parse_address). */
typedef struct lcow_tcp_address {
    char host[64]; /* numeric, without brackets */
    uint16_t port;
    bool ipv6;
    bool loopback; /* 127.0.0.0/8 or ::1 */
    bool wildcard; /* 0.0.0.0 or :: (every interface) */
} lcow_tcp_address;

/* Parses "HOST:PORT": HOST an IPv4 literal, "[IPv6]", or "localhost"
 * (= 127.0.0.1); PORT 0..65535 (0: any free port). InvalidArgument naming
 * what is wrong otherwise. Pure string work (inet_pton). */
lcow_code lcow_tcp_parse_address(const char *text, lcow_tcp_address *out, lcow_error *err);

/* Listens on addr (SO_EXCLUSIVEADDRUSE on Windows, SO_REUSEADDR elsewhere). */
lcow_code lcow_tcp_listen(const lcow_tcp_address *addr, lcow_tcp_listener **out, lcow_error *err);
/* The bound port (the one chosen for port 0). */
uint16_t lcow_tcp_listener_port(const lcow_tcp_listener *l);
/* Waits up to timeout_ms for a client: *out is NULL when none came. */
lcow_code lcow_tcp_accept(lcow_tcp_listener *l, unsigned timeout_ms, lcow_tcp_conn **out,
                          lcow_error *err);
void lcow_tcp_listener_close(lcow_tcp_listener *l);

/* Reads what is there (at most len) within timeout_ms: bytes read, 0 when
 * the peer closed, -1 on an error or timeout. */
long lcow_tcp_recv(lcow_tcp_conn *c, void *buf, size_t len, unsigned timeout_ms);
/* Sends all of buf within timeout_ms per wait; false on error or timeout. */
bool lcow_tcp_send_all(lcow_tcp_conn *c, const void *buf, size_t len, unsigned timeout_ms);
void lcow_tcp_close(lcow_tcp_conn *c);

/* A client connection (tests): connects to addr. */
lcow_code lcow_tcp_connect(const lcow_tcp_address *addr, lcow_tcp_conn **out, lcow_error *err);

#endif

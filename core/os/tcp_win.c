/* core/os/tcp.h on Winsock 2 (WSAPoll; WSAStartup once per process). */
#include "core/os/tcp.h"

#include <winsock2.h>
#include <ws2tcpip.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/os/tcp_internal.h"

struct lcow_tcp_listener {
    SOCKET s;
    uint16_t port;
};

struct lcow_tcp_conn {
    SOCKET s;
};

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static int wsa_error;

static BOOL CALLBACK wsa_init(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once, (void)param, (void)ctx;
    WSADATA data;
    wsa_error = WSAStartup(MAKEWORD(2, 2), &data);
    return TRUE;
}

static bool wsa_ready(void)
{
    InitOnceExecuteOnce(&wsa_once, wsa_init, NULL, NULL);
    return wsa_error == 0;
}

bool lcow_tcp_inet_pton(bool ipv6, const char *host, unsigned char *raw)
{
    if (!wsa_ready())
        return false;
    return inet_pton(ipv6 ? AF_INET6 : AF_INET, host, raw) == 1;
}

static int sockaddr_of(const lcow_tcp_address *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->ipv6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        inet_pton(AF_INET6, a->host, &s6->sin6_addr);
        return (int)sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    inet_pton(AF_INET, a->host, &s4->sin_addr);
    return (int)sizeof *s4;
}

static lcow_code fail(lcow_error *err, const char *what, const lcow_tcp_address *a, int e)
{
    char text[256] = "";
    FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, (DWORD)e, 0,
                   text, sizeof text, NULL);
    for (size_t n = strlen(text); n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'); n--)
        text[n - 1] = '\0';
    return lcow_error_set(err, e == WSAEADDRINUSE ? LCOW_ALREADY_EXISTS : LCOW_UNAVAILABLE,
                          "%s %s%s%s:%u: %s (WSA error %d)", what, a->ipv6 ? "[" : "", a->host,
                          a->ipv6 ? "]" : "", (unsigned)a->port, text, e);
}

typedef enum socket_role { ROLE_LISTEN, ROLE_CONNECT } socket_role;

/* A TCP socket of addr's family, not inherited by child processes, listening
 * on addr (the address ours alone, a backlog of 16) or connected to it. */
static lcow_code open_socket(const lcow_tcp_address *addr, socket_role role, SOCKET *out,
                             lcow_error *err)
{
    *out = INVALID_SOCKET;
    if (!wsa_ready())
        return fail(err, "WSAStartup for", addr, wsa_error);
    struct sockaddr_storage ss;
    int len = sockaddr_of(addr, &ss);
    SOCKET s =
        WSASocketW(ss.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET)
        return fail(err, "socket", addr, WSAGetLastError());
    bool ok;
    if (role == ROLE_LISTEN) {
        BOOL one = TRUE;
        setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
        ok = bind(s, (struct sockaddr *)&ss, len) == 0 && listen(s, 16) == 0;
    } else {
        ok = connect(s, (struct sockaddr *)&ss, len) == 0;
    }
    if (!ok) {
        int e = WSAGetLastError();
        closesocket(s);
        return fail(err, role == ROLE_LISTEN ? "listen on" : "connect to", addr, e);
    }
    *out = s;
    return LCOW_OK;
}

lcow_code lcow_tcp_listen(const lcow_tcp_address *addr, lcow_tcp_listener **out, lcow_error *err)
{
    *out = NULL;
    SOCKET s;
    lcow_code rc = open_socket(addr, ROLE_LISTEN, &s, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_tcp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        closesocket(s);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    l->s = s;
    l->port = addr->port;
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (getsockname(s, (struct sockaddr *)&bound, &blen) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    *out = l;
    return LCOW_OK;
}

uint16_t lcow_tcp_listener_port(const lcow_tcp_listener *l)
{
    return l->port;
}

static lcow_tcp_conn *conn_of(SOCKET s)
{
    lcow_tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        closesocket(s);
        return NULL;
    }
    c->s = s;
    return c;
}

static bool wait_for(SOCKET s, short events, unsigned timeout_ms)
{
    WSAPOLLFD p = {.fd = s, .events = events};
    return WSAPoll(&p, 1, (INT)timeout_ms) > 0;
}

lcow_code lcow_tcp_accept(lcow_tcp_listener *l, unsigned timeout_ms, lcow_tcp_conn **out,
                          lcow_error *err)
{
    *out = NULL;
    if (!wait_for(l->s, POLLRDNORM, timeout_ms))
        return LCOW_OK;
    SOCKET s = accept(l->s, NULL, NULL);
    if (s == INVALID_SOCKET)
        return LCOW_OK; /* the client went away already */
    *out = conn_of(s);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

void lcow_tcp_listener_close(lcow_tcp_listener *l)
{
    if (!l)
        return;
    closesocket(l->s);
    free(l);
}

long lcow_tcp_recv(lcow_tcp_conn *c, void *buf, size_t len, unsigned timeout_ms)
{
    if (!wait_for(c->s, POLLRDNORM, timeout_ms))
        return -1;
    int n = recv(c->s, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    return n == SOCKET_ERROR ? -1 : (long)n;
}

bool lcow_tcp_send_all(lcow_tcp_conn *c, const void *buf, size_t len, unsigned timeout_ms)
{
    const char *p = buf;
    while (len > 0) {
        if (!wait_for(c->s, POLLWRNORM, timeout_ms))
            return false;
        int n = send(c->s, p, len > INT_MAX ? INT_MAX : (int)len, 0);
        if (n == SOCKET_ERROR || n == 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

void lcow_tcp_close(lcow_tcp_conn *c)
{
    if (!c)
        return;
    shutdown(c->s, SD_SEND);
    closesocket(c->s);
    free(c);
}

lcow_code lcow_tcp_connect(const lcow_tcp_address *addr, lcow_tcp_conn **out, lcow_error *err)
{
    *out = NULL;
    SOCKET s;
    lcow_code rc = open_socket(addr, ROLE_CONNECT, &s, err);
    if (rc != LCOW_OK)
        return rc;
    *out = conn_of(s);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

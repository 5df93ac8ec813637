/* core/os/tcp.h on BSD sockets. */
#include "core/os/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/os/tcp_internal.h"

struct lcow_tcp_listener {
    int fd;
    uint16_t port;
};

struct lcow_tcp_conn {
    int fd;
};

bool lcow_tcp_inet_pton(bool ipv6, const char *host, unsigned char *raw)
{
    return inet_pton(ipv6 ? AF_INET6 : AF_INET, host, raw) == 1;
}

static socklen_t sockaddr_of(const lcow_tcp_address *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (a->ipv6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        inet_pton(AF_INET6, a->host, &s6->sin6_addr);
        return sizeof *s6;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    inet_pton(AF_INET, a->host, &s4->sin_addr);
    return sizeof *s4;
}

static lcow_code fail(lcow_error *err, const char *what, const lcow_tcp_address *a, int e)
{
    return lcow_error_set(err, e == EADDRINUSE ? LCOW_ALREADY_EXISTS : LCOW_UNAVAILABLE,
                          "%s %s%s%s:%u: %s", what, a->ipv6 ? "[" : "", a->host, a->ipv6 ? "]" : "",
                          (unsigned)a->port, strerror(e));
}

typedef enum socket_role { ROLE_LISTEN, ROLE_CONNECT } socket_role;

/* A TCP socket of addr's family, closed on exec, listening on addr
 * (SO_REUSEADDR, a backlog of 16) or connected to it. */
static lcow_code open_socket(const lcow_tcp_address *addr, socket_role role, int *out,
                             lcow_error *err)
{
    *out = -1;
    struct sockaddr_storage ss;
    socklen_t len = sockaddr_of(addr, &ss);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, "socket", addr, errno);
    bool ok;
    if (role == ROLE_LISTEN) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        ok = bind(fd, (struct sockaddr *)&ss, len) == 0 && listen(fd, 16) == 0;
    } else {
        ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
    }
    if (!ok) {
        int e = errno;
        close(fd);
        return fail(err, role == ROLE_LISTEN ? "listen on" : "connect to", addr, e);
    }
    *out = fd;
    return LCOW_OK;
}

lcow_code lcow_tcp_listen(const lcow_tcp_address *addr, lcow_tcp_listener **out, lcow_error *err)
{
    *out = NULL;
    int fd;
    lcow_code rc = open_socket(addr, ROLE_LISTEN, &fd, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_tcp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    }
    l->fd = fd;
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    l->port = addr->port;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    *out = l;
    return LCOW_OK;
}

uint16_t lcow_tcp_listener_port(const lcow_tcp_listener *l)
{
    return l->port;
}

static lcow_tcp_conn *conn_of(int fd)
{
    lcow_tcp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    return c;
}

lcow_code lcow_tcp_accept(lcow_tcp_listener *l, unsigned timeout_ms, lcow_tcp_conn **out,
                          lcow_error *err)
{
    *out = NULL;
    struct pollfd p = {.fd = l->fd, .events = POLLIN};
    int n = poll(&p, 1, (int)timeout_ms);
    if (n <= 0)
        return n < 0 && errno != EINTR
                   ? lcow_error_set(err, LCOW_UNAVAILABLE, "poll: %s", strerror(errno))
                   : LCOW_OK;
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return LCOW_OK; /* the client went away already: not the listener's fault */
    *out = conn_of(fd);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

void lcow_tcp_listener_close(lcow_tcp_listener *l)
{
    if (!l)
        return;
    close(l->fd);
    free(l);
}

static bool wait_for(int fd, short events, unsigned timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n;
    do
        n = poll(&p, 1, (int)timeout_ms);
    while (n < 0 && errno == EINTR);
    return n > 0;
}

long lcow_tcp_recv(lcow_tcp_conn *c, void *buf, size_t len, unsigned timeout_ms)
{
    if (!wait_for(c->fd, POLLIN, timeout_ms))
        return -1;
    ssize_t n;
    do
        n = recv(c->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    return (long)n;
}

bool lcow_tcp_send_all(lcow_tcp_conn *c, const void *buf, size_t len, unsigned timeout_ms)
{
    const char *p = buf;
    while (len > 0) {
        if (!wait_for(c->fd, POLLOUT, timeout_ms))
            return false;
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
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
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
}

lcow_code lcow_tcp_connect(const lcow_tcp_address *addr, lcow_tcp_conn **out, lcow_error *err)
{
    *out = NULL;
    int fd;
    lcow_code rc = open_socket(addr, ROLE_CONNECT, &fd, err);
    if (rc != LCOW_OK)
        return rc;
    *out = conn_of(fd);
    return *out ? LCOW_OK : lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

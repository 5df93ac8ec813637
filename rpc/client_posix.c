/* Client transport over a Unix socket: send() with poll() when the socket
 * is full, blocking recv() with SO_RCVTIMEO for the call timeout. */
#include "rpc/client_transport.h"

#include "core/base/alloc.h"
#include "core/os/unixsock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct lcow_transport {
    int fd;
    unsigned rcv_timeout_ms; /* SO_RCVTIMEO now on the socket; 0 = none */
};

const char *lcow_transport_default_address(void)
{
    return "./var/lcowsnap/lcowsnap.sock";
}

unsigned long long lcow_transport_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u;
}

lcow_code lcow_transport_connect(const char *address, unsigned timeout_ms, lcow_transport **out,
                                 lcow_error *err)
{
    *out = NULL;
    unsigned long long deadline = lcow_transport_now_ms() + timeout_ms;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "socket: %s", strerror(errno));
        if (lcow_os_unix_connect(fd, address) == 0) { /* any path length */
            lcow_transport *t = lcow_malloc(sizeof *t);
            if (!t) {
                close(fd);
                return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            }
            t->fd = fd;
            t->rcv_timeout_ms = 0;
            *out = t;
            return LCOW_OK;
        }
        int saved = errno;
        close(fd);
        /* A full backlog is worth waiting for; a missing service is not. */
        if ((saved != EAGAIN && saved != EINTR) || lcow_transport_now_ms() >= deadline)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "connect %s: %s", address,
                                  strerror(saved));
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static lcow_code wait_fd(int fd, short events, unsigned timeout_ms, const char *what,
                         lcow_error *err)
{
    struct pollfd p = {fd, events, 0};
    for (;;) {
        int rc = poll(&p, 1, timeout_ms ? (int)timeout_ms : -1);
        if (rc > 0)
            return LCOW_OK;
        if (rc == 0)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: timed out after %u ms", what,
                                  timeout_ms);
        if (errno != EINTR)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: poll: %s", what, strerror(errno));
    }
}

lcow_code lcow_transport_write(lcow_transport *t, const void *data, size_t len, unsigned timeout_ms,
                               lcow_error *err)
{
    const char *p = data;
    unsigned long long deadline = 0; /* set the first time the socket is full */
    while (len > 0) {
        ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "send: %s", strerror(errno));
        unsigned left = 0;
        if (timeout_ms) {
            unsigned long long now = lcow_transport_now_ms();
            if (!deadline)
                deadline = now + timeout_ms;
            if (now >= deadline)
                return lcow_error_set(err, LCOW_UNAVAILABLE, "send: timed out after %u ms",
                                      timeout_ms);
            left = (unsigned)(deadline - now);
        }
        lcow_code code = wait_fd(t->fd, POLLOUT, left, "send", err);
        if (code != LCOW_OK)
            return code;
    }
    return LCOW_OK;
}

/* Makes a blocking recv() give up after about timeout_ms (0 = never). The
 * option stays set between calls: each call's remaining time is nearly the
 * same, so it is only changed when it would wait noticeably too long. */
static lcow_code set_recv_timeout(lcow_transport *t, unsigned timeout_ms, lcow_error *err)
{
    unsigned cur = t->rcv_timeout_ms;
    if (cur == timeout_ms ||
        (timeout_ms && cur && cur >= timeout_ms && cur - timeout_ms <= timeout_ms / 16 + 1))
        return LCOW_OK;
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    if (setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "setsockopt(SO_RCVTIMEO): %s",
                              strerror(errno));
    t->rcv_timeout_ms = timeout_ms;
    return LCOW_OK;
}

lcow_code lcow_transport_read(lcow_transport *t, void *buf, size_t cap, size_t *got,
                              unsigned timeout_ms, lcow_error *err)
{
    *got = 0;
    /* A blocking recv() with SO_RCVTIMEO: one system call per response,
     * where poll + recv takes two. */
    lcow_code code = set_recv_timeout(t, timeout_ms, err);
    if (code != LCOW_OK)
        return code;
    for (;;) {
        ssize_t n = recv(t->fd, buf, cap, 0);
        if (n > 0) {
            *got = (size_t)n;
            return LCOW_OK;
        }
        if (n == 0)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "connection closed by the service");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return lcow_error_set(err, LCOW_UNAVAILABLE, "recv: timed out after %u ms", timeout_ms);
        return lcow_error_set(err, LCOW_UNAVAILABLE, "recv: %s", strerror(errno));
    }
}

void lcow_transport_close(lcow_transport *t)
{
    if (!t)
        return;
    close(t->fd);
    free(t);
}

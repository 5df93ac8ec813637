/* MessagePack-RPC server on a Unix socket: one I/O thread with poll() over
 * the listener and every connection, the worker pool of session.c for the
 * requests. Workers write responses directly when the socket has room and
 * wake the I/O thread (self-pipe) only when output is left over. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../core/log.h"
#include "../core/thread.h"
#include "session.h"

/* Stop reading from a connection while this many of its requests wait, or
 * this much output is unsent: a client that does not read its responses
 * only stalls itself. */
#define CONN_MAX_PENDING 128
#define CONN_MAX_OUTPUT ((size_t)8 << 20)
#define READ_CHUNK 65536

typedef struct conn {
    struct conn *prev, *next; /* I/O thread's list */
    lcow_server *server;
    int fd;
    lcow_session *session;
    int64_t last_activity_ms;
    atomic_bool read_eof;
    bool broken; /* stream cannot be resynchronised */
    atomic_bool paused;
} conn;

struct lcow_server {
    lcow_snapshotter *snapshotter;
    char *address;
    size_t max_frame_bytes;
    unsigned max_connections;
    unsigned idle_timeout_ms;
    lcow_rpc_pool *pool;
    int listen_fd;
    dev_t sock_dev;
    ino_t sock_ino;
    int wake_fds[2];
    lcow_thread io_thread;
    bool io_started;
    atomic_bool stopping;
    atomic_bool stopped;
    unsigned drain_ms;
    conn *conns;
    unsigned conn_count;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_io(lcow_server *server)
{
    char byte = 1;
    ssize_t n = write(server->wake_fds[1], &byte, 1);
    (void)n; /* a full pipe already means "wake up" */
}

static long sock_write(void *ctx, const char *data, size_t len)
{
    conn *c = ctx;
    for (;;) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0)
            return (long)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -1;
    }
}

/* Worker thread: a response is ready. */
static void conn_notify(void *transport)
{
    conn *c = transport;
    bool ok = lcow_session_write(c->session, sock_write, c);
    if (!ok || lcow_session_output_bytes(c->session) > 0 || atomic_load(&c->paused) ||
        atomic_load(&c->read_eof) || atomic_load(&c->server->stopping))
        wake_io(c->server);
}

static void conn_destroy(void *transport)
{
    conn *c = transport;
    close(c->fd);
    free(c);
}

static const lcow_session_ops conn_ops = {conn_notify, conn_destroy};

static void conn_close(lcow_server *server, conn *c, const char *why)
{
    LCOW_LOGD("rpc: closing connection fd %d: %s", c->fd, why);
    if (c->prev)
        c->prev->next = c->next;
    else
        server->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    server->conn_count--;
    shutdown(c->fd, SHUT_RDWR);
    lcow_session_close(c->session);
    lcow_session_unref(c->session); /* conn_destroy closes the fd when workers are done */
}

static void accept_connections(lcow_server *server, int64_t now)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                LCOW_LOGW("rpc: accept on %s: %s", server->address, strerror(errno));
            return;
        }
        if (server->conn_count >= server->max_connections) {
            LCOW_LOGW("rpc: refusing a connection: %u connections open (limit)",
                      server->conn_count);
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        if (c) {
            c->server = server;
            c->fd = fd;
            c->last_activity_ms = now;
            atomic_init(&c->paused, false);
            atomic_init(&c->read_eof, false);
            c->session = lcow_session_create(server->pool, server->snapshotter,
                                             server->max_frame_bytes, &conn_ops, c);
        }
        if (!c || !c->session) {
            LCOW_LOGE("rpc: out of memory accepting a connection");
            free(c);
            close(fd);
            continue;
        }
        c->next = server->conns;
        if (server->conns)
            server->conns->prev = c;
        server->conns = c;
        server->conn_count++;
    }
}

/* Returns false when the connection must be closed now. */
static bool conn_read(lcow_server *server, conn *c, uint8_t *buf)
{
    for (int i = 0; i < 4; i++) {
        ssize_t n = recv(c->fd, buf, READ_CHUNK, 0);
        if (n > 0) {
            lcow_error err;
            lcow_error_clear(&err);
            if (lcow_session_feed(c->session, buf, (size_t)n, &err) != LCOW_OK) {
                LCOW_LOGW("rpc: connection fd %d: %s; closing it", c->fd, err.message);
                c->broken = true;
                return true;
            }
            /* Answers of requests run inline go out at once. */
            if (!lcow_session_write(c->session, sock_write, c))
                return false;
            if ((size_t)n < READ_CHUNK)
                return true;
            continue;
        }
        if (n == 0) {
            atomic_store(&c->read_eof, true);
            return true;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    return true;
}

static bool conn_idle(conn *c)
{
    return lcow_session_pending(c->session) == 0 && lcow_session_output_bytes(c->session) == 0;
}

static void close_listener(lcow_server *server)
{
    if (server->listen_fd < 0)
        return;
    close(server->listen_fd);
    server->listen_fd = -1;
    /* Remove the socket file only if it is still ours. */
    struct stat st;
    if (lstat(server->address, &st) == 0 && st.st_dev == server->sock_dev &&
        st.st_ino == server->sock_ino)
        unlink(server->address);
}

static void *io_main(void *arg)
{
    lcow_server *server = arg;
    uint8_t *buf = malloc(READ_CHUNK);
    struct pollfd *fds = NULL;
    conn **polled = NULL;
    size_t fds_cap = 0;
    int64_t drain_deadline = -1;
    if (!buf) {
        LCOW_LOGE("rpc: out of memory in the I/O thread");
        return NULL;
    }
    for (;;) {
        int64_t now = now_ms();
        bool stopping = atomic_load(&server->stopping);
        if (stopping && drain_deadline < 0) {
            close_listener(server);
            drain_deadline = now + server->drain_ms;
        }
        if (stopping) {
            bool drained = true;
            for (conn *c = server->conns; c && drained; c = c->next)
                drained = conn_idle(c);
            if (drained || now >= drain_deadline)
                break;
        }
        size_t need = 2 + server->conn_count;
        if (need > fds_cap) {
            size_t cap = need * 2;
            struct pollfd *nf = realloc(fds, cap * sizeof *nf);
            conn **np = nf ? realloc(polled, cap * sizeof *np) : NULL;
            if (nf)
                fds = nf;
            if (!np) {
                LCOW_LOGE("rpc: out of memory in the I/O thread");
                break;
            }
            polled = np;
            fds_cap = cap;
        }
        size_t nfds = 0;
        fds[nfds++] = (struct pollfd){server->wake_fds[0], POLLIN, 0};
        size_t listen_index = (size_t)-1;
        if (server->listen_fd >= 0) {
            listen_index = nfds;
            fds[nfds++] = (struct pollfd){server->listen_fd, POLLIN, 0};
        }
        int timeout = stopping ? 50 : 1000;
        size_t first_conn = nfds;
        for (conn *c = server->conns; c; c = c->next) {
            size_t pending = lcow_session_pending(c->session);
            size_t output = lcow_session_output_bytes(c->session);
            bool reading = !stopping && !atomic_load(&c->read_eof) && !c->broken &&
                           pending < CONN_MAX_PENDING && output < CONN_MAX_OUTPUT;
            atomic_store(&c->paused, !reading);
            short events = (short)((reading ? POLLIN : 0) | (output > 0 ? POLLOUT : 0));
            polled[nfds] = c;
            fds[nfds++] = (struct pollfd){c->fd, events, 0};
            if (!stopping && pending == 0 && output == 0) {
                int64_t left = c->last_activity_ms + server->idle_timeout_ms - now;
                if (left < timeout)
                    timeout = left < 0 ? 0 : (int)left;
            }
        }
        int ready = poll(fds, nfds, timeout);
        if (ready < 0 && errno != EINTR) {
            LCOW_LOGE("rpc: poll: %s", strerror(errno));
            break;
        }
        now = now_ms();
        if (ready > 0 && (fds[0].revents & POLLIN)) {
            char drain[256];
            while (read(server->wake_fds[0], drain, sizeof drain) > 0) {
            }
        }
        for (size_t i = first_conn; ready > 0 && i < nfds; i++) {
            conn *c = polled[i];
            short rev = fds[i].revents;
            if (!rev)
                continue;
            bool keep = true;
            if (rev & POLLIN) {
                keep = conn_read(server, c, buf);
                c->last_activity_ms = now;
            } else if (rev & (POLLHUP | POLLERR | POLLNVAL)) {
                keep = false; /* peer gone while we were not reading */
            }
            if (keep && (rev & POLLOUT)) {
                keep = lcow_session_write(c->session, sock_write, c);
                c->last_activity_ms = now;
            }
            if (!keep)
                conn_close(server, c, "read/write error or hang-up");
        }
        if (listen_index != (size_t)-1 && ready > 0 && (fds[listen_index].revents & POLLIN))
            accept_connections(server, now);
        /* Finished connections and idle ones. */
        for (conn *c = server->conns, *next; c; c = next) {
            next = c->next;
            if (!conn_idle(c))
                continue;
            if (atomic_load(&c->read_eof) || c->broken)
                conn_close(server, c, c->broken ? "stream broken" : "end of stream");
            else if (!stopping && now - c->last_activity_ms >= server->idle_timeout_ms)
                conn_close(server, c, "idle timeout");
        }
    }
    close_listener(server);
    while (server->conns)
        conn_close(server, server->conns, "server stopping");
    free(fds);
    free(polled);
    free(buf);
    return NULL;
}

/* Takes over a stale socket file; refuses a live one or a non-socket. */
static lcow_code prepare_address(const char *path, lcow_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return LCOW_OK;
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: %s", path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode))
        return lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s exists and is not a socket", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int saved = errno;
    close(fd);
    if (rc == 0)
        return lcow_error_set(err, LCOW_ALREADY_EXISTS,
                              "another process is already listening on %s", path);
    if (saved != ECONNREFUSED)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "probing %s: %s", path, strerror(saved));
    LCOW_LOGI("rpc: replacing stale socket %s", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "removing stale %s: %s", path,
                              strerror(errno));
    return LCOW_OK;
}

static unsigned default_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cpus > 0 ? (unsigned)cpus * 2 : 4;
    return n < 4 ? 4 : n;
}

lcow_code lcow_server_start(const lcow_server_config *config, lcow_snapshotter *snapshotter,
                            lcow_server **out, lcow_error *err)
{
    *out = NULL;
    if (!config || !config->address || !config->address[0])
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "server address is empty");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(config->address);
    if (len >= sizeof sa.sun_path)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "socket path %s is longer than %zu bytes",
                              config->address, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, config->address, len + 1);

    lcow_server *server = calloc(1, sizeof *server);
    if (!server)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    server->listen_fd = -1;
    server->wake_fds[0] = server->wake_fds[1] = -1;
    server->snapshotter = snapshotter;
    server->address = strdup(config->address);
    server->max_frame_bytes = config->max_frame_bytes ? config->max_frame_bytes : (4u << 20);
    server->max_connections = config->max_connections ? config->max_connections : 256;
    server->idle_timeout_ms = config->idle_timeout_ms ? config->idle_timeout_ms : 300000;
    atomic_init(&server->stopping, false);
    atomic_init(&server->stopped, false);
    lcow_code code = LCOW_OK;
    if (!server->address) {
        code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        goto fail;
    }
    code = prepare_address(config->address, err);
    if (code != LCOW_OK)
        goto fail;
    server->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (server->listen_fd < 0) {
        code = lcow_error_set(err, LCOW_UNAVAILABLE, "socket: %s", strerror(errno));
        goto fail;
    }
    if (bind(server->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        code = lcow_error_set(err, errno == EADDRINUSE ? LCOW_ALREADY_EXISTS : LCOW_UNAVAILABLE,
                              "bind %s: %s", config->address, strerror(errno));
        close(server->listen_fd);
        server->listen_fd = -1;
        goto fail;
    }
    struct stat st;
    if (chmod(config->address, 0660) != 0 || lstat(config->address, &st) != 0) {
        code =
            lcow_error_set(err, LCOW_UNAVAILABLE, "chmod %s: %s", config->address, strerror(errno));
        goto fail_unlink;
    }
    server->sock_dev = st.st_dev;
    server->sock_ino = st.st_ino;
    if (listen(server->listen_fd, 128) != 0) {
        code = lcow_error_set(err, LCOW_UNAVAILABLE, "listen %s: %s", config->address,
                              strerror(errno));
        goto fail_unlink;
    }
    if (pipe2(server->wake_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
        code = lcow_error_set(err, LCOW_UNAVAILABLE, "pipe: %s", strerror(errno));
        goto fail_unlink;
    }
    server->pool = lcow_rpc_pool_create(
        config->worker_threads ? config->worker_threads : default_workers(), err);
    if (!server->pool) {
        code = err ? err->code : LCOW_RESOURCE_EXHAUSTED;
        goto fail_unlink;
    }
    if (!lcow_thread_create(&server->io_thread, io_main, server)) {
        code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "cannot start the I/O thread");
        goto fail_unlink;
    }
    server->io_started = true;
    LCOW_LOGI("rpc: listening on %s", config->address);
    *out = server;
    return LCOW_OK;

fail_unlink:
    close_listener(server);
fail:
    lcow_server_free(server);
    return code;
}

void lcow_server_stop(lcow_server *server, unsigned drain_ms)
{
    if (!server || atomic_exchange(&server->stopped, true))
        return;
    server->drain_ms = drain_ms;
    atomic_store(&server->stopping, true);
    if (server->io_started) {
        wake_io(server);
        lcow_thread_join(server->io_thread, NULL);
        server->io_started = false;
    } else {
        lcow_rpc_pool_shutdown(server->pool);
        return; /* never started */
    }
    /* Workers still in a core call are waited for: the store closes after. */
    lcow_rpc_pool_shutdown(server->pool);
    LCOW_LOGI("rpc: stopped listening on %s", server->address);
}

unsigned lcow_server_inflight(const lcow_server *server)
{
    return server && server->pool ? lcow_rpc_pool_inflight(server->pool) : 0;
}

lcow_code lcow_server_verify_security(const lcow_server *server, char **description,
                                      lcow_error *err)
{
    if (description)
        *description = NULL;
    struct stat st;
    if (lstat(server->address, &st) != 0)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: %s", server->address, strerror(errno));
    if ((st.st_mode & 07777) != 0660)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s has mode %04o, expected 0660",
                              server->address, (unsigned)(st.st_mode & 07777));
    if (description) {
        *description = malloc(16);
        if (*description)
            memcpy(*description, "mode 0660", 10);
    }
    return LCOW_OK;
}

void lcow_server_free(lcow_server *server)
{
    if (!server)
        return;
    lcow_server_stop(server, 0);
    lcow_rpc_pool_free(server->pool);
    if (server->wake_fds[0] >= 0)
        close(server->wake_fds[0]);
    if (server->wake_fds[1] >= 0)
        close(server->wake_fds[1]);
    free(server->address);
    free(server);
}

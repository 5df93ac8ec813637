/* MessagePack-RPC server on a Unix socket: one poll() loop per CPU (up to
 * MAX_LOOPS) over its share of the connections, loop 0 also accepting and
 * handing new connections out round-robin; the worker pool of session.c
 * for the requests. Workers write responses directly when the socket has
 * room and wake the connection's loop (self-pipe) only when output is left
 * over. Point reads run on the loop itself (see dispatch.h). */
#include "server.h"

#include <errno.h>
#include <limits.h>
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
#define MAX_LOOPS 4
#define ADOPT_MAX 64

typedef struct io_loop io_loop;

typedef struct conn {
    struct conn *prev, *next; /* its loop's list */
    io_loop *loop;
    int fd;
    lcow_session *session;
    int64_t last_activity_ms;
    atomic_bool read_eof;
    bool broken; /* stream cannot be resynchronised */
    atomic_bool paused;
} conn;

/* One I/O thread. Its connection list is touched only by its thread; new
 * connections arrive through the adopt queue. */
struct io_loop {
    lcow_server *server;
    unsigned index;
    int wake_fds[2];
    lcow_thread thread;
    bool started;
    conn *conns;
    unsigned conn_count;
    lcow_mutex adopt_lock;
    int adopt_fds[ADOPT_MAX];
    size_t adopt_count;
};

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
    io_loop loops[MAX_LOOPS];
    unsigned loop_count;
    unsigned next_loop;
    atomic_uint conn_total;
    atomic_bool stopping;
    atomic_bool stopped;
    unsigned drain_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_io(io_loop *loop)
{
    char byte = 1;
    ssize_t n = write(loop->wake_fds[1], &byte, 1);
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
        atomic_load(&c->read_eof) || atomic_load(&c->loop->server->stopping))
        wake_io(c->loop);
}

static void conn_destroy(void *transport)
{
    conn *c = transport;
    close(c->fd);
    free(c);
}

static const lcow_session_ops conn_ops = {conn_notify, conn_destroy};

static void conn_close(io_loop *loop, conn *c, const char *why)
{
    LCOW_LOGD("rpc: closing connection fd %d: %s", c->fd, why);
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->conn_count--;
    atomic_fetch_sub(&loop->server->conn_total, 1);
    shutdown(c->fd, SHUT_RDWR);
    lcow_session_close(c->session);
    lcow_session_unref(c->session); /* conn_destroy closes the fd when workers are done */
}

/* Makes fd a connection of this loop (its thread only). */
static void adopt(io_loop *loop, int fd, int64_t now)
{
    lcow_server *server = loop->server;
    conn *c = calloc(1, sizeof *c);
    if (c) {
        c->loop = loop;
        c->fd = fd;
        c->last_activity_ms = now;
        atomic_init(&c->paused, false);
        atomic_init(&c->read_eof, false);
        c->session = lcow_session_create(server->pool, server->snapshotter, server->max_frame_bytes,
                                         &conn_ops, c);
    }
    if (!c || !c->session) {
        LCOW_LOGE("rpc: out of memory accepting a connection");
        free(c);
        close(fd);
        atomic_fetch_sub(&server->conn_total, 1);
        return;
    }
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->conn_count++;
}

/* Loop 0: accepts and deals connections out to the loops in turn. */
static void accept_connections(io_loop *loop0, int64_t now)
{
    lcow_server *server = loop0->server;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                LCOW_LOGW("rpc: accept on %s: %s", server->address, strerror(errno));
            return;
        }
        unsigned open = atomic_load(&server->conn_total);
        if (open >= server->max_connections) {
            LCOW_LOGW("rpc: refusing a connection: %u connections open (limit)", open);
            close(fd);
            continue;
        }
        atomic_fetch_add(&server->conn_total, 1);
        io_loop *target = &server->loops[server->next_loop++ % server->loop_count];
        bool queued = false;
        if (target != loop0) {
            lcow_mutex_lock(&target->adopt_lock);
            if (target->adopt_count < ADOPT_MAX) {
                target->adopt_fds[target->adopt_count++] = fd;
                queued = true;
            }
            lcow_mutex_unlock(&target->adopt_lock);
        }
        if (queued)
            wake_io(target);
        else
            adopt(loop0, fd, now);
    }
}

static void adopt_queued(io_loop *loop, int64_t now, bool refuse)
{
    int fds[ADOPT_MAX];
    lcow_mutex_lock(&loop->adopt_lock);
    size_t n = loop->adopt_count;
    memcpy(fds, loop->adopt_fds, n * sizeof fds[0]);
    loop->adopt_count = 0;
    lcow_mutex_unlock(&loop->adopt_lock);
    for (size_t i = 0; i < n; i++) {
        if (refuse) {
            close(fds[i]);
            atomic_fetch_sub(&loop->server->conn_total, 1);
        } else {
            adopt(loop, fds[i], now);
        }
    }
}

/* Returns false when the connection must be closed now. */
static bool conn_read(conn *c, uint8_t *buf)
{
    /* One chunk per poll round: the loop's other connections come next. */
    for (;;) {
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
            return lcow_session_write(c->session, sock_write, c);
        }
        if (n == 0) {
            atomic_store(&c->read_eof, true);
            return true;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK;
    }
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
    io_loop *loop = arg;
    lcow_server *server = loop->server;
    bool accepting = loop->index == 0;
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
            if (accepting)
                close_listener(server);
            drain_deadline = now + server->drain_ms;
        }
        adopt_queued(loop, now, stopping);
        if (stopping) {
            bool drained = true;
            for (conn *c = loop->conns; c && drained; c = c->next)
                drained = conn_idle(c);
            if (drained || now >= drain_deadline)
                break;
        }
        size_t need = 2 + loop->conn_count;
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
        fds[nfds++] = (struct pollfd){loop->wake_fds[0], POLLIN, 0};
        size_t listen_index = (size_t)-1;
        if (accepting && server->listen_fd >= 0) {
            listen_index = nfds;
            fds[nfds++] = (struct pollfd){server->listen_fd, POLLIN, 0};
        }
        int timeout = stopping ? 50 : 1000;
        size_t first_conn = nfds;
        for (conn *c = loop->conns; c; c = c->next) {
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
            while (read(loop->wake_fds[0], drain, sizeof drain) > 0) {
            }
        }
        for (size_t i = first_conn; ready > 0 && i < nfds; i++) {
            conn *c = polled[i];
            short rev = fds[i].revents;
            if (!rev)
                continue;
            bool keep = true;
            if (rev & POLLIN) {
                keep = conn_read(c, buf);
                c->last_activity_ms = now;
            } else if (rev & (POLLHUP | POLLERR | POLLNVAL)) {
                keep = false; /* peer gone while we were not reading */
            }
            if (keep && (rev & POLLOUT)) {
                keep = lcow_session_write(c->session, sock_write, c);
                c->last_activity_ms = now;
            }
            if (!keep)
                conn_close(loop, c, "read/write error or hang-up");
        }
        if (listen_index != (size_t)-1 && ready > 0 && (fds[listen_index].revents & POLLIN))
            accept_connections(loop, now);
        /* Finished connections and idle ones. */
        for (conn *c = loop->conns, *next; c; c = next) {
            next = c->next;
            if (!conn_idle(c))
                continue;
            if (atomic_load(&c->read_eof) || c->broken)
                conn_close(loop, c, c->broken ? "stream broken" : "end of stream");
            else if (!stopping && now - c->last_activity_ms >= server->idle_timeout_ms)
                conn_close(loop, c, "idle timeout");
        }
    }
    if (accepting)
        close_listener(server);
    adopt_queued(loop, now_ms(), true);
    while (loop->conns)
        conn_close(loop, loop->conns, "server stopping");
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

/* A world-writable directory lets any local user unlink the socket and put
 * their own in its place, whatever the socket's own mode: refuse it before
 * binding, so the socket never appears there. */
static lcow_code check_socket_dir(const char *address, lcow_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", address);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    struct stat dst;
    if (stat(dir, &dst) != 0)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: %s", dir, strerror(errno));
    if (dst.st_mode & S_IWOTH)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "the socket's directory %s is world-writable (mode %04o): any local "
                              "user could replace the socket; use a directory only the service "
                              "account can write",
                              dir, (unsigned)(dst.st_mode & 07777));
    return LCOW_OK;
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
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    server->loop_count = cpus < 1 ? 1 : cpus > MAX_LOOPS ? MAX_LOOPS : (unsigned)cpus;
    for (unsigned i = 0; i < MAX_LOOPS; i++) {
        server->loops[i].server = server;
        server->loops[i].index = i;
        server->loops[i].wake_fds[0] = server->loops[i].wake_fds[1] = -1;
        lcow_mutex_init(&server->loops[i].adopt_lock);
    }
    atomic_init(&server->conn_total, 0);
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
    code = check_socket_dir(config->address, err);
    if (code == LCOW_OK)
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
    for (unsigned i = 0; i < server->loop_count; i++) {
        if (pipe2(server->loops[i].wake_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
            code = lcow_error_set(err, LCOW_UNAVAILABLE, "pipe: %s", strerror(errno));
            goto fail_unlink;
        }
    }
    server->pool = lcow_rpc_pool_create(
        config->worker_threads ? config->worker_threads : default_workers(), err);
    if (!server->pool) {
        code = err ? err->code : LCOW_RESOURCE_EXHAUSTED;
        goto fail_unlink;
    }
    for (unsigned i = 0; i < server->loop_count; i++) {
        io_loop *loop = &server->loops[i];
        if (!lcow_thread_create(&loop->thread, io_main, loop)) {
            code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "cannot start I/O thread %u", i);
            goto fail_unlink;
        }
        loop->started = true;
    }
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
    bool started = server->loops[0].started;
    for (unsigned i = 0; i < server->loop_count; i++) {
        io_loop *loop = &server->loops[i];
        if (loop->started) {
            wake_io(loop);
            lcow_thread_join(loop->thread, NULL);
            loop->started = false;
        }
    }
    if (!started) {
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
    lcow_code code;
    struct stat st;
    if (lstat(server->address, &st) != 0)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "%s: %s", server->address, strerror(errno));
    if ((st.st_mode & 07777) != 0660)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s has mode %04o, expected 0660",
                              server->address, (unsigned)(st.st_mode & 07777));
    code = check_socket_dir(server->address, err);
    if (code != LCOW_OK)
        return code;
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
    for (unsigned i = 0; i < MAX_LOOPS; i++) {
        for (int k = 0; k < 2; k++) {
            if (server->loops[i].wake_fds[k] >= 0)
                close(server->loops[i].wake_fds[k]);
        }
        lcow_mutex_destroy(&server->loops[i].adopt_lock);
    }
    free(server->address);
    free(server);
}

/* MessagePack-RPC server on a Unix socket.
 *
 * One thread accepts (poll() on the listening socket and a wake pipe) and
 * gives every connection its own reader thread (small stack, detached).
 * A reader blocks in recv() while its connection has nothing in flight, so
 * a request wakes exactly the thread that serves it: on this VM a cross-CPU
 * wake-up of a shared poll loop costs more than the whole Stat, and a
 * shared loop re-arms every connection's wait queue on each poll() (see
 * docs/performance.md, "RPC"). Point reads (Stat, Mounts, Version) run on
 * the reader itself; everything else goes to the worker pool of session.c,
 * whose workers write the response directly when the socket has room.
 * While requests of a connection are queued or output is left over, its
 * reader waits in poll() on the socket and an eventfd the workers signal;
 * a client that does not read its responses only stalls its own reader. */
#include "rpc/server.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/stats.h"
#include "core/os/thread.h"
#include "core/os/unixsock.h"
#include "rpc/server_common.h"
#include "rpc/session.h"

/* Per reader; larger frames arrive in several reads. */
#define READ_CHUNK 32768
/* Readers run the frame decoder, msgpack and inline LevelDB reads. */
#define READER_STACK ((size_t)256 << 10)

typedef struct conn {
    struct conn *prev, *next; /* the server's list (server->lock) */
    lcow_server *server;
    int fd;
    int wake_fd;           /* eventfd: a worker finished something */
    atomic_bool waiting;   /* the reader is in poll() and wants wake-ups */
    lcow_session *session; /* holds the last reference to this struct */
    bool read_eof;
    bool told_stopping; /* lcow_session_stopping was called (by the stop or by us) */
    bool broken;        /* stream cannot be resynchronised */
    uint8_t *buf;       /* READ_CHUNK bytes (reader thread) */
    size_t rest_off;    /* buf[rest_off..+rest_len): received, not fed yet */
    size_t rest_len;    /* (the session was full) */
    /* Reader thread: the idle and frame deadlines (server_common.h), the
     * SO_RCVTIMEO in force, and the output seen last (a change is activity). */
    lcow_conn_clock clock;
    int64_t recv_timeout_ms;
    size_t last_output;
} conn;

struct lcow_server {
    lcow_snapshotter *snapshotter;
    char *address;
    lcow_server_settings settings;
    lcow_rpc_pool *pool;
    int listen_fd;
    dev_t sock_dev;
    ino_t sock_ino;
    int wake_fds[2]; /* wakes the accept thread */
    lcow_thread accept_thread;
    bool accept_started;
    lcow_mutex lock; /* guards conns, readers */
    lcow_cond readers_done;
    conn *conns;
    unsigned readers; /* reader threads alive; a reader owns one connection */
    atomic_bool stopping;
    atomic_bool stopped;
    atomic_llong drain_deadline_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t n = write(fd, &one, sizeof one);
    (void)n; /* a saturated eventfd or full pipe already means "wake up" */
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

/* Worker thread: a job of this connection finished. Its response goes out
 * now if the socket has room; the reader is woken when it waits for jobs
 * or for room to write the rest. */
static void conn_notify(void *transport)
{
    conn *c = transport;
    if (!lcow_session_write(c->session, sock_write, c))
        shutdown(c->fd, SHUT_RDWR); /* the reader sees the error and closes */
    if (atomic_load(&c->waiting))
        signal_fd(c->wake_fd);
}

static void conn_destroy(void *transport)
{
    conn *c = transport;
    close(c->fd);
    close(c->wake_fd);
    free(c);
}

static const lcow_session_ops conn_ops = {conn_notify, conn_destroy};

typedef enum read_outcome { READ_OK, READ_TIMED_OUT, READ_FAILED } read_outcome;

/* Reader thread: feeds the received bytes not fed yet, as many requests as
 * the session takes (the rest waits in buf until it drains), and writes
 * the answers of requests run inline. false: close the connection now. */
static bool conn_feed(conn *c)
{
    size_t used = 0;
    lcow_error err;
    lcow_error_clear(&err);
    if (lcow_session_feed(c->session, c->buf + c->rest_off, c->rest_len, &used, &err) != LCOW_OK) {
        LCOW_LOGW("rpc: connection fd %d: %s; closing it", c->fd, err.message);
        c->broken = true;
        used = c->rest_len;
    }
    c->rest_off += used;
    c->rest_len -= used;
    if (c->rest_len == 0)
        c->rest_off = 0;
    lcow_conn_clock_fed(&c->clock, c->session, now_ms());
    return lcow_session_write(c->session, sock_write, c);
}

/* Reader thread, with nothing left in buf: receives and feeds.
 * READ_TIMED_OUT: a blocking recv() waited its SO_RCVTIMEO (the nearer
 * deadline) for nothing; READ_FAILED: close the connection now. */
static read_outcome conn_read(conn *c, bool blocking)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf, READ_CHUNK, blocking ? 0 : MSG_DONTWAIT);
        if (n > 0) {
            c->rest_off = 0;
            c->rest_len = (size_t)n;
            return conn_feed(c) ? READ_OK : READ_FAILED;
        }
        if (n == 0) {
            c->read_eof = true;
            return READ_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return blocking ? READ_TIMED_OUT : READ_OK;
        return READ_FAILED;
    }
}

/* Waits in poll() for the socket or a worker; returns false to close. */
static bool conn_wait(conn *c, bool reading, bool has_output, int timeout_ms)
{
    struct pollfd p[2] = {
        {c->fd, (short)((reading ? POLLIN : 0) | (has_output ? POLLOUT : 0)), 0},
        {c->wake_fd, POLLIN, 0},
    };
    int ready = poll(p, 2, timeout_ms);
    atomic_store(&c->waiting, false);
    if (ready < 0)
        return errno == EINTR;
    if (p[1].revents & POLLIN) {
        uint64_t count;
        ssize_t n = read(c->wake_fd, &count, sizeof count);
        (void)n;
    }
    short rev = p[0].revents;
    if (rev & POLLIN)
        return conn_read(c, false) != READ_FAILED;
    if (rev & (POLLHUP | POLLERR | POLLNVAL))
        return false; /* peer gone while we were not reading */
    if (rev & POLLOUT)
        return lcow_session_write(c->session, sock_write, c);
    return true;
}

static void conn_close(conn *c, const char *why)
{
    lcow_server *server = c->server;
    LCOW_LOGD("rpc: closing connection fd %d: %s", c->fd, why);
    lcow_stats_connection_closed();
    lcow_mutex_lock(&server->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        server->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    lcow_mutex_unlock(&server->lock);
    shutdown(c->fd, SHUT_RDWR);
    lcow_session_close(c->session);
    lcow_session_unref(c->session); /* conn_destroy closes the fds when workers are done */
}

/* A reader thread is done (or never started): lcow_server_stop may go on. */
static void reader_gone(lcow_server *server)
{
    lcow_mutex_lock(&server->lock);
    server->readers--;
    lcow_cond_broadcast(&server->readers_done);
    lcow_mutex_unlock(&server->lock);
}

/* The blocking recv() waits at most ms (at least 1). A timeout already in
 * force is kept when it ends at most 250 ms after the deadline, so a busy
 * connection does not pay a setsockopt per request. */
static bool set_recv_timeout(conn *c, int64_t ms)
{
    if (ms < 1)
        ms = 1;
    if (c->recv_timeout_ms >= ms && c->recv_timeout_ms - ms <= 250)
        return true;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return false;
    c->recv_timeout_ms = ms;
    return true;
}

/* A deadline passed: a slowloris (frame timeout) is worth a warning. */
static void log_expiry(const conn *c, const char *why)
{
    if (strncmp(why, "frame timeout", 13) == 0)
        LCOW_LOGW("rpc: connection fd %d: %s (%u ms); closing it", c->fd, why,
                  c->server->settings.frame_timeout_ms);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    lcow_server *server = c->server;
    c->buf = lcow_malloc(READ_CHUNK);
    const char *why = "out of memory";
    if (!c->buf)
        LCOW_LOGW("rpc: out of memory for the read buffer of connection fd %d; closing it", c->fd);
    else
        why = NULL;
    lcow_conn_clock_start(&c->clock, now_ms());
    while (!why) {
        bool stopping = atomic_load(&server->stopping);
        /* failed: an answer was lost (out of memory, logged by the session):
         * send the answers before it, then close. */
        bool failed = lcow_session_failed(c->session);
        bool open = !stopping && !c->read_eof && !c->broken && !failed;
        bool accepting = lcow_session_accepting(c->session);
        if (open && c->rest_len > 0 && accepting) {
            /* The session drained: the requests received earlier go first. */
            if (!conn_feed(c))
                why = "read/write error or hang-up";
            continue;
        }
        size_t pending = lcow_session_pending(c->session);
        size_t output = lcow_session_output_bytes(c->session);
        if (pending == 0 && output == 0) {
            /* failed is looked at again now: a worker that lost an answer
             * since the top of the loop set it before it lowered pending
             * (one critical section), so read after pending it is current.
             * With the stale value the reader would block in recv() for
             * the idle timeout, the connection neither answered nor
             * closed. */
            if (!failed && lcow_session_failed(c->session)) {
                failed = true;
                open = false;
            }
            if (!open && stopping && !c->told_stopping) {
                /* The stop sets `stopping` before it tells each session
                 * (gRPC: a GOAWAY): a reader that sees the flag first tells
                 * its session itself and sends what that queued. */
                c->told_stopping = true;
                lcow_session_stopping(c->session);
                continue;
            }
            if (!open) {
                why = failed      ? "an answer was lost (out of memory)"
                      : c->broken ? "stream broken"
                      : stopping  ? "server stopping"
                                  : "end of stream";
                break;
            }
            if (c->rest_len > 0)
                continue; /* a worker finished since `accepting`: feed first */
            /* Nothing in flight: only the client can give us work. recv()
             * waits until the idle timeout or the frame deadline; bytes of
             * an unfinished request move neither (lcow_conn_clock_fed). */
            c->last_output = 0;
            const char *expiry;
            int64_t now = now_ms();
            int64_t deadline =
                lcow_conn_clock_deadline(&c->clock, &server->settings, true, &expiry);
            if (deadline <= now) {
                log_expiry(c, expiry);
                why = expiry;
                break;
            }
            if (!set_recv_timeout(c, deadline - now)) {
                why = "setsockopt(SO_RCVTIMEO) failed";
                break;
            }
            if (conn_read(c, true) == READ_FAILED)
                why = "read/write error or hang-up";
            continue; /* READ_TIMED_OUT: the deadline is looked at again */
        }
        /* Requests in flight or answers unsent. Running work and output that
         * moves are activity; a client that reads nothing for the idle
         * timeout while its answers wait (and its queued jobs with them) is
         * idle. */
        int64_t now = now_ms();
        bool working = pending > 0 && !lcow_session_output_full(c->session);
        if (working || output != c->last_output)
            lcow_conn_clock_active(&c->clock, now);
        c->last_output = output;
        if (!(open && c->rest_len == 0 && accepting))
            lcow_conn_clock_paused(&c->clock, now); /* not reading: the frame clock waits */
        const char *expiry;
        int64_t deadline =
            lcow_conn_clock_deadline(&c->clock, &server->settings, !working, &expiry);
        if (!stopping && deadline <= now) {
            log_expiry(c, expiry);
            why = expiry;
            break;
        }
        int timeout = 1000;
        if (!stopping && deadline - now < timeout)
            timeout = (int)(deadline - now);
        if (stopping) {
            int64_t left = atomic_load(&server->drain_deadline_ms) - now_ms();
            if (left <= 0) {
                why = "server stopping (drain time over)";
                break;
            }
            timeout = left < timeout ? (int)left : timeout;
        }
        /* Say we wait before looking again, so a worker that finishes in
         * between sees it and signals (no lost wake-up). */
        atomic_store(&c->waiting, true);
        pending = lcow_session_pending(c->session);
        output = lcow_session_output_bytes(c->session);
        accepting = lcow_session_accepting(c->session);
        if ((pending == 0 && output == 0) || (open && c->rest_len > 0 && accepting)) {
            atomic_store(&c->waiting, false);
            continue;
        }
        /* Read more only when nothing received is left over and the
         * session takes requests (below 128 queued, 8 MiB unsent). */
        bool reading = open && c->rest_len == 0 && accepting;
        if (!conn_wait(c, reading, output > 0, timeout))
            why = "read/write error or hang-up";
    }
    free(c->buf);
    c->buf = NULL;
    conn_close(c, why);
    reader_gone(server);
    return NULL;
}

/* Accept thread: a connection gets a session and its reader. */
static void start_connection(lcow_server *server, int fd)
{
    conn *c = lcow_calloc(1, sizeof *c);
    if (!c) {
        LCOW_LOGE("rpc: out of memory accepting a connection");
        close(fd);
        return;
    }
    c->server = server;
    c->fd = fd;
    atomic_init(&c->waiting, false);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->wake_fd >= 0)
        c->session = lcow_session_create(server->pool, server->snapshotter,
                                         &server->settings.session, &conn_ops, c);
    if (!c->session) {
        LCOW_LOGE("rpc: cannot set up a connection: %s",
                  c->wake_fd < 0 ? strerror(errno) : "out of memory");
        if (c->wake_fd >= 0)
            close(c->wake_fd);
        close(fd);
        free(c);
        return;
    }
    lcow_mutex_lock(&server->lock);
    c->next = server->conns;
    if (server->conns)
        server->conns->prev = c;
    server->conns = c;
    server->readers++;
    lcow_mutex_unlock(&server->lock);
    lcow_stats_connection_opened();

    if (!lcow_thread_start_detached(conn_main, c, READER_STACK)) {
        LCOW_LOGE("rpc: cannot start a reader thread; closing the connection");
        conn_close(c, "no reader thread");
        reader_gone(server);
    }
}

static void accept_connections(lcow_server *server)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(server->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                LCOW_LOGW("rpc: accept on %s: %s", server->address, strerror(errno));
            return;
        }
        lcow_mutex_lock(&server->lock);
        unsigned open = server->readers;
        lcow_mutex_unlock(&server->lock);
        if (open >= server->settings.max_connections) {
            LCOW_LOGW("rpc: refusing a connection: %u connections open (limit)", open);
            close(fd);
            continue;
        }
        start_connection(server, fd);
    }
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

static void *accept_main(void *arg)
{
    lcow_server *server = arg;
    while (!atomic_load(&server->stopping)) {
        struct pollfd p[2] = {{server->wake_fds[0], POLLIN, 0}, {server->listen_fd, POLLIN, 0}};
        int ready = poll(p, 2, 1000);
        if (ready < 0 && errno != EINTR) {
            LCOW_LOGE("rpc: poll: %s", strerror(errno));
            break;
        }
        if (ready > 0 && (p[1].revents & POLLIN))
            accept_connections(server);
    }
    close_listener(server);
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
    int rc = lcow_os_unix_connect(fd, path);
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
    lcow_server *server = lcow_calloc(1, sizeof *server);
    if (!server)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    server->listen_fd = -1;
    server->wake_fds[0] = server->wake_fds[1] = -1;
    lcow_mutex_init(&server->lock);
    lcow_cond_init(&server->readers_done);
    atomic_init(&server->drain_deadline_ms, 0);
    server->snapshotter = snapshotter;
    server->address = lcow_strdup(config->address);
    lcow_server_settings_resolve(config, &server->settings);
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
    if (lcow_os_unix_bind(server->listen_fd, config->address) != 0) { /* any path length */
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
    server->pool = lcow_rpc_pool_create(server->settings.worker_threads, err);
    if (!server->pool) {
        code = err ? err->code : LCOW_RESOURCE_EXHAUSTED;
        goto fail_unlink;
    }
    if (!lcow_thread_create(&server->accept_thread, accept_main, server)) {
        code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "cannot start the accept thread");
        goto fail_unlink;
    }
    server->accept_started = true;
    LCOW_LOGI("rpc: listening on %s", config->address);
    *out = server;
    return LCOW_OK;

fail_unlink:
    close_listener(server);
fail:
    lcow_server_destroy(server);
    return code;
}

void lcow_server_stop(lcow_server *server, unsigned drain_ms)
{
    if (!server || atomic_exchange(&server->stopped, true))
        return;
    atomic_store(&server->drain_deadline_ms, now_ms() + drain_ms);
    atomic_store(&server->stopping, true);
    if (!server->accept_started) {
        lcow_rpc_pool_shutdown(server->pool);
        return; /* never started */
    }
    signal_fd(server->wake_fds[1]);
    lcow_thread_join(server->accept_thread, NULL);
    server->accept_started = false;
    /* Readers blocked in recv() see end of stream; the others wake up. Each
     * answers what it has in flight (until the drain deadline) and closes. */
    lcow_mutex_lock(&server->lock);
    for (conn *c = server->conns; c; c = c->next) {
        lcow_session_stopping(c->session); /* gRPC: GOAWAY, written by the reader */
        shutdown(c->fd, SHUT_RD);
        signal_fd(c->wake_fd);
    }
    while (server->readers > 0)
        lcow_cond_wait(&server->readers_done, &server->lock);
    lcow_mutex_unlock(&server->lock);
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
        *description = lcow_malloc(16);
        if (*description)
            memcpy(*description, "mode 0660", 10);
    }
    return LCOW_OK;
}

void lcow_server_destroy(lcow_server *server)
{
    if (!server)
        return;
    lcow_server_stop(server, 0);
    lcow_rpc_pool_destroy(server->pool);
    for (int k = 0; k < 2; k++) {
        if (server->wake_fds[k] >= 0)
            close(server->wake_fds[k]);
    }
    lcow_cond_destroy(&server->readers_done);
    lcow_mutex_destroy(&server->lock);
    free(server->address);
    free(server);
}

/* MessagePack-RPC server on a named pipe: one I/O completion port serviced
 * by one I/O thread, several pipe instances waiting in overlapped
 * ConnectNamedPipe, overlapped reads and writes per connection, and the
 * worker pool of session.c for the requests (workers post a completion
 * packet when output is ready). The pipe's security descriptor comes from
 * SDDL and is read back with GetSecurityInfo at startup. */
#include "rpc/server.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <windows.h>
#include <aclapi.h>
#include <sddl.h>

#include "core/base/alloc.h"
#include "core/base/log.h"
#include "core/base/stats.h"
#include "core/os/thread.h"
#include "core/os/win_str.h"
#include "rpc/server_common.h"
#include "rpc/session.h"

#define PENDING_INSTANCES 4
#define PIPE_BUFFER_BYTES 65536
#define READ_CHUNK 65536
/* Bound on waiting for cancelled I/O to complete while stopping. */
#define CANCEL_WAIT_MS 5000

typedef enum conn_state { CONN_LISTENING, CONN_CONNECTED } conn_state;

typedef struct conn {
    struct conn *prev, *next;
    lcow_server *server;
    HANDLE pipe;
    conn_state state;
    lcow_session *session;
    OVERLAPPED connect_ov, read_ov, write_ov;
    bool connect_pending, read_pending, write_pending;
    bool read_eof, broken, closing, reaped;
    msgpack_sbuffer writing; /* buffer of the pending WriteFile */
    size_t written;
    /* The idle and frame deadlines (server_common.h), and the output seen
     * at the last look (a change is activity). */
    lcow_conn_clock clock;
    size_t last_output;
    /* read_buf[rest_off..+rest_len): received but not fed yet, because the
     * session was full (128 queued requests or 8 MiB unsent). */
    size_t rest_off, rest_len;
    uint8_t read_buf[READ_CHUNK];
} conn;

struct lcow_server {
    lcow_snapshotter *snapshotter;
    char *address;
    wchar_t *pipe_name;
    char *sddl;          /* as configured */
    char *sddl_readback; /* as read back from the first instance */
    PSECURITY_DESCRIPTOR sd;
    SECURITY_ATTRIBUTES sa;
    lcow_server_settings settings;
    HANDLE iocp;
    lcow_rpc_pool *pool;
    lcow_thread io_thread;
    bool io_started;
    atomic_bool stopping;
    atomic_bool stopped;
    unsigned drain_ms;
    conn *conns;
    unsigned connected;
    unsigned listening;
    HANDLE first_instance; /* handed to the I/O thread as its first listener */
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = lcow_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- security descriptor -------------------------------------------------- */

/* The DACL part of sd as SDDL (normalised by the system), malloc'd UTF-8. */
static char *dacl_sddl(PSECURITY_DESCRIPTOR sd)
{
    LPWSTR str = NULL;
    if (!ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, &str, NULL))
        return NULL;
    char *utf8 = lcow_wide_to_utf8(str);
    LocalFree(str);
    return utf8;
}

static bool sid_is(PSID sid, WELL_KNOWN_SID_TYPE type)
{
    BYTE buf[SECURITY_MAX_SID_SIZE];
    DWORD size = sizeof buf;
    if (!CreateWellKnownSid(type, NULL, buf, &size))
        return false;
    return EqualSid(sid, (PSID)buf) != 0;
}

/* True when the DACL lets Everyone or Anonymous write (or there is no DACL,
 * which grants everyone everything). */
static bool grants_world_write(PSECURITY_DESCRIPTOR sd)
{
    BOOL present = FALSE, defaulted = FALSE;
    PACL dacl = NULL;
    if (!GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted))
        return true;
    if (!present || !dacl)
        return true;
    const ACCESS_MASK write_bits =
        GENERIC_ALL | GENERIC_WRITE | FILE_WRITE_DATA | FILE_APPEND_DATA | WRITE_DAC | WRITE_OWNER;
    for (DWORD i = 0; i < dacl->AceCount; i++) {
        ACE_HEADER *ace = NULL;
        if (!GetAce(dacl, i, (LPVOID *)&ace) || ace->AceType != ACCESS_ALLOWED_ACE_TYPE)
            continue;
        ACCESS_ALLOWED_ACE *allowed = (ACCESS_ALLOWED_ACE *)ace;
        PSID sid = (PSID)&allowed->SidStart;
        if ((allowed->Mask & write_bits) &&
            (sid_is(sid, WinWorldSid) || sid_is(sid, WinAnonymousSid)))
            return true;
    }
    return false;
}

static lcow_code build_security(lcow_server *server, const char *sddl, bool allow_world,
                                lcow_error *err)
{
    wchar_t *wsddl = lcow_utf8_to_wide(sddl);
    if (!wsddl)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "pipe SDDL is not valid UTF-8");
    BOOL ok = ConvertStringSecurityDescriptorToSecurityDescriptorW(wsddl, SDDL_REVISION_1,
                                                                   &server->sd, NULL);
    DWORD gle = GetLastError();
    free(wsddl);
    if (!ok)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "pipe SDDL \"%s\" is invalid (error %lu)",
                              sddl, (unsigned long)gle);
    if (!allow_world && grants_world_write(server->sd))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "pipe SDDL \"%s\" lets Everyone or Anonymous write (or has no "
                              "DACL); refused unless explicitly allowed",
                              sddl);
    server->sddl = dacl_sddl(server->sd);
    if (!server->sddl)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "pipe SDDL \"%s\" cannot be normalised",
                              sddl);
    server->sa.nLength = sizeof server->sa;
    server->sa.lpSecurityDescriptor = server->sd;
    server->sa.bInheritHandle = FALSE;
    return LCOW_OK;
}

/* Reads the DACL of a live instance back from the system. */
static lcow_code read_back_security(lcow_server *server, HANDLE pipe, lcow_error *err)
{
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD rc = GetSecurityInfo(pipe, SE_KERNEL_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, NULL,
                               NULL, &sd);
    if (rc != ERROR_SUCCESS)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "GetSecurityInfo on %s failed (error %lu)", server->address,
                              (unsigned long)rc);
    server->sddl_readback = dacl_sddl(sd);
    LocalFree(sd);
    if (!server->sddl_readback)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "cannot convert the DACL of %s to SDDL", server->address);
    if (strcmp(server->sddl_readback, server->sddl) != 0)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s has DACL %s, configured %s",
                              server->address, server->sddl_readback, server->sddl);
    return LCOW_OK;
}

lcow_code lcow_server_verify_security(const lcow_server *server, char **description,
                                      lcow_error *err)
{
    if (description)
        *description = NULL;
    if (!server->sddl_readback)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "no DACL read back from %s",
                              server->address);
    if (strcmp(server->sddl_readback, server->sddl) != 0)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "%s has DACL %s, configured %s",
                              server->address, server->sddl_readback, server->sddl);
    if (description)
        *description = dup_str(server->sddl_readback);
    return LCOW_OK;
}

/* ---- pipe instances and connections --------------------------------------- */

static HANDLE create_instance(lcow_server *server, bool first, DWORD *error)
{
    DWORD open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if (first)
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    HANDLE h = CreateNamedPipeW(
        server->pipe_name, open_mode,
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
        PIPE_UNLIMITED_INSTANCES, PIPE_BUFFER_BYTES, PIPE_BUFFER_BYTES, 0, &server->sa);
    *error = h == INVALID_HANDLE_VALUE ? GetLastError() : 0;
    return h;
}

static void conn_notify(void *transport)
{
    conn *c = transport;
    /* The packet holds a reference until the I/O thread has handled it. */
    lcow_session_ref(c->session);
    if (!PostQueuedCompletionStatus(c->server->iocp, 0, (ULONG_PTR)c, NULL))
        lcow_session_unref(c->session);
}

static void conn_destroy(void *transport)
{
    conn *c = transport;
    msgpack_sbuffer_destroy(&c->writing);
    free(c);
}

static const lcow_session_ops conn_ops = {conn_notify, conn_destroy};

static void list_add(lcow_server *server, conn *c)
{
    c->prev = NULL;
    c->next = server->conns;
    if (server->conns)
        server->conns->prev = c;
    server->conns = c;
}

static void list_remove(lcow_server *server, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        server->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static bool ops_pending(const conn *c)
{
    return c->connect_pending || c->read_pending || c->write_pending;
}

/* Frees the connection once no overlapped operation refers to it. */
static void conn_reap(lcow_server *server, conn *c)
{
    if (!c->closing || c->reaped || ops_pending(c))
        return;
    c->reaped = true;
    list_remove(server, c);
    if (c->state == CONN_CONNECTED) {
        /* No DisconnectNamedPipe: it throws away what the client has not
         * read yet (the last answers, a GOAWAY). Closing the handle alone
         * lets the client read them and then see the pipe end. */
        server->connected--;
        lcow_stats_connection_closed();
    } else {
        server->listening--;
    }
    CloseHandle(c->pipe);
    c->pipe = INVALID_HANDLE_VALUE;
    lcow_session_close(c->session);
    lcow_session_unref(c->session);
}

static void conn_close(lcow_server *server, conn *c, const char *why)
{
    if (!c->closing) {
        LCOW_LOGD("rpc: closing pipe connection: %s", why);
        c->closing = true;
        if (ops_pending(c))
            CancelIoEx(c->pipe, NULL);
    }
    conn_reap(server, c);
}

static bool add_listener(lcow_server *server, HANDLE pipe);

static void replenish_listeners(lcow_server *server)
{
    while (!atomic_load(&server->stopping) && server->listening < PENDING_INSTANCES) {
        DWORD error = 0;
        HANDLE h = create_instance(server, false, &error);
        if (h == INVALID_HANDLE_VALUE) {
            LCOW_LOGE("rpc: CreateNamedPipeW %s failed (error %lu)", server->address,
                      (unsigned long)error);
            return;
        }
        if (!add_listener(server, h))
            return;
    }
}

static void start_read(lcow_server *server, conn *c)
{
    if (c->closing || c->read_pending || c->read_eof || c->broken || c->state != CONN_CONNECTED)
        return;
    /* Read more only when nothing received is left over and the session
     * takes requests. */
    if (atomic_load(&server->stopping) || c->rest_len > 0 || !lcow_session_accepting(c->session))
        return;
    memset(&c->read_ov, 0, sizeof c->read_ov);
    if (!ReadFile(c->pipe, c->read_buf, READ_CHUNK, NULL, &c->read_ov)) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED) {
            c->read_eof = true;
            return;
        }
        if (e != ERROR_IO_PENDING) {
            conn_close(server, c, "ReadFile failed");
            return;
        }
    }
    c->read_pending = true; /* the completion packet comes either way */
}

static void start_write(lcow_server *server, conn *c)
{
    if (c->closing || c->write_pending || c->state != CONN_CONNECTED)
        return;
    if (c->writing.size == 0) {
        msgpack_sbuffer_destroy(&c->writing);
        if (!lcow_session_take_output(c->session, &c->writing)) {
            msgpack_sbuffer_init(&c->writing);
            return;
        }
        c->written = 0;
    }
    memset(&c->write_ov, 0, sizeof c->write_ov);
    if (!WriteFile(c->pipe, c->writing.data + c->written, (DWORD)(c->writing.size - c->written),
                   NULL, &c->write_ov) &&
        GetLastError() != ERROR_IO_PENDING) {
        conn_close(server, c, "WriteFile failed");
        return;
    }
    c->write_pending = true;
}

/* Feeds the received bytes not fed yet, as many requests as the session
 * takes; the rest waits in read_buf until it drains. */
static void feed_rest(lcow_server *server, conn *c)
{
    while (c->rest_len > 0 && !c->closing && !c->broken && !atomic_load(&server->stopping) &&
           lcow_session_accepting(c->session)) {
        size_t used = 0;
        lcow_error err;
        lcow_error_clear(&err);
        if (lcow_session_feed(c->session, c->read_buf + c->rest_off, c->rest_len, &used, &err) !=
            LCOW_OK) {
            LCOW_LOGW("rpc: pipe connection: %s; closing it", err.message);
            c->broken = true;
            used = c->rest_len;
        }
        c->rest_off += used;
        c->rest_len -= used;
        lcow_conn_clock_fed(&c->clock, c->session, (int64_t)GetTickCount64());
    }
    if (c->rest_len == 0)
        c->rest_off = 0;
}

/* After any event: feed what was left over, write, resume reading, or
 * finish the connection. */
static void conn_progress(lcow_server *server, conn *c)
{
    if (c->closing) {
        conn_reap(server, c);
        return;
    }
    start_write(server, c);
    if (c->rest_len > 0) {
        feed_rest(server, c);
        start_write(server, c);
    }
    start_read(server, c);
    /* failed: an answer was lost (out of memory, logged by the session):
     * the answers before it go out, then the connection closes. */
    bool failed = lcow_session_failed(c->session);
    if ((c->read_eof || c->broken || failed) && !c->closing && !c->write_pending &&
        (c->rest_len == 0 || c->broken || failed) && lcow_session_pending(c->session) == 0 &&
        lcow_session_output_bytes(c->session) == 0)
        conn_close(server, c,
                   failed      ? "an answer was lost (out of memory)"
                   : c->broken ? "stream broken"
                               : "end of stream");
}

static bool add_listener(lcow_server *server, HANDLE pipe)
{
    conn *c = lcow_calloc(1, sizeof *c);
    if (c) {
        c->server = server;
        c->pipe = pipe;
        c->state = CONN_LISTENING;
        msgpack_sbuffer_init(&c->writing);
        c->session = lcow_session_create(server->pool, server->snapshotter,
                                         &server->settings.session, &conn_ops, c);
    }
    if (!c || !c->session || !CreateIoCompletionPort(pipe, server->iocp, (ULONG_PTR)c, 0)) {
        LCOW_LOGE("rpc: cannot set up a pipe instance");
        free(c);
        CloseHandle(pipe);
        return false;
    }
    list_add(server, c);
    server->listening++;
    if (!ConnectNamedPipe(pipe, &c->connect_ov)) {
        DWORD e = GetLastError();
        if (e == ERROR_PIPE_CONNECTED) {
            /* Connected before we asked: no packet is queued, post one. */
            PostQueuedCompletionStatus(server->iocp, 0, (ULONG_PTR)c, &c->connect_ov);
        } else if (e != ERROR_IO_PENDING) {
            LCOW_LOGE("rpc: ConnectNamedPipe failed (error %lu)", (unsigned long)e);
            c->closing = true;
            conn_reap(server, c);
            return false;
        }
    } else {
        PostQueuedCompletionStatus(server->iocp, 0, (ULONG_PTR)c, &c->connect_ov);
    }
    c->connect_pending = true;
    return true;
}

static void on_connect(lcow_server *server, conn *c, BOOL ok)
{
    c->connect_pending = false;
    server->listening--;
    c->state = CONN_CONNECTED;
    server->connected++;
    lcow_stats_connection_opened();
    lcow_conn_clock_start(&c->clock, (int64_t)GetTickCount64());
    if (c->closing) {
        conn_reap(server, c);
        replenish_listeners(server);
        return;
    }
    if (!ok && GetLastError() != ERROR_PIPE_CONNECTED) {
        conn_close(server, c, "ConnectNamedPipe failed");
    } else if (server->connected > server->settings.max_connections) {
        LCOW_LOGW("rpc: refusing a connection: %u connections open (limit)", server->connected - 1);
        conn_close(server, c, "connection limit");
    } else {
        conn_progress(server, c);
    }
    replenish_listeners(server);
}

static void on_read(lcow_server *server, conn *c, BOOL ok, DWORD bytes)
{
    c->read_pending = false;
    if (!ok) {
        DWORD e = GetLastError();
        if (e == ERROR_BROKEN_PIPE || e == ERROR_PIPE_NOT_CONNECTED)
            c->read_eof = true;
        else if (!c->closing && e != ERROR_OPERATION_ABORTED)
            conn_close(server, c, "read failed");
        conn_progress(server, c);
        return;
    }
    if (bytes > 0 && !c->closing) {
        c->rest_off = 0;
        c->rest_len = bytes;
    }
    conn_progress(server, c);
}

static void on_write(lcow_server *server, conn *c, BOOL ok, DWORD bytes)
{
    c->write_pending = false;
    lcow_conn_clock_active(&c->clock, (int64_t)GetTickCount64());
    if (!ok) {
        if (!c->closing)
            conn_close(server, c, "write failed");
        conn_progress(server, c);
        return;
    }
    c->written += bytes;
    lcow_session_output_sent(c->session, bytes);
    if (c->written >= c->writing.size) {
        c->writing.size = 0;
        c->written = 0;
    }
    conn_progress(server, c);
}

/* During a stop: nothing taken on is left to answer or to write. Bytes
 * received but not fed to the session (rest) do not count: feed_rest feeds
 * nothing once the server is stopping, so they are requests the service
 * never took on (a session that was full, or a read that completed just
 * after the stop), and waiting for them only ran the drain to its deadline
 * (test_client stop_is_not_held_by_requests_never_taken_on). */
static bool conn_idle(conn *c)
{
    return !c->write_pending && lcow_session_pending(c->session) == 0 &&
           lcow_session_output_bytes(c->session) == 0 && c->writing.size == 0;
}

static void *io_main(void *arg)
{
    lcow_server *server = arg;
    add_listener(server, server->first_instance);
    server->first_instance = INVALID_HANDLE_VALUE;
    replenish_listeners(server);
    ULONGLONG drain_deadline = 0, cancel_deadline = 0;
    bool drained = false;
    for (;;) {
        bool stopping = atomic_load(&server->stopping);
        ULONGLONG now = GetTickCount64();
        if (stopping && drain_deadline == 0) {
            drain_deadline = now + server->drain_ms;
            /* Stop listening and stop reading; writes continue. */
            for (conn *c = server->conns, *next; c; c = next) {
                next = c->next;
                if (c->state == CONN_LISTENING) {
                    conn_close(server, c, "server stopping");
                    continue;
                }
                if (c->read_pending)
                    CancelIoEx(c->pipe, &c->read_ov);
                if (!c->closing) {
                    lcow_session_stopping(c->session); /* gRPC: GOAWAY */
                    start_write(server, c);
                }
            }
        }
        if (stopping && !drained) {
            bool idle = true;
            for (conn *c = server->conns; c && idle; c = c->next)
                idle = c->closing || conn_idle(c);
            if (idle || now >= drain_deadline) {
                drained = true;
                cancel_deadline = now + CANCEL_WAIT_MS;
                for (conn *c = server->conns, *next; c; c = next) {
                    next = c->next;
                    conn_close(server, c, "server stopping");
                }
            }
        }
        if (drained && (!server->conns || now >= cancel_deadline))
            break;

        DWORD bytes = 0;
        ULONG_PTR key = 0;
        OVERLAPPED *ov = NULL;
        BOOL ok = GetQueuedCompletionStatus(server->iocp, &bytes, &key, &ov, stopping ? 50 : 1000);
        if (ov) {
            conn *c = (conn *)key;
            if (ov == &c->connect_ov)
                on_connect(server, c, ok);
            else if (ov == &c->read_ov)
                on_read(server, c, ok, bytes);
            else if (ov == &c->write_ov)
                on_write(server, c, ok, bytes);
        } else if (ok && key != 0) {
            /* A worker has output for this connection. */
            conn *c = (conn *)key;
            lcow_session *s = c->session;
            lcow_conn_clock_active(&c->clock, (int64_t)GetTickCount64());
            conn_progress(server, c);
            lcow_session_unref(s);
        }
        /* Deadlines: idle connections, and requests that do not arrive whole
         * in time (slowloris). */
        if (!stopping) {
            int64_t t = (int64_t)GetTickCount64();
            for (conn *c = server->conns, *next; c; c = next) {
                next = c->next;
                if (c->state != CONN_CONNECTED || c->closing)
                    continue;
                size_t pending = lcow_session_pending(c->session);
                size_t output = lcow_session_output_bytes(c->session);
                /* queued jobs held for a client that does not read are
                 * not work in progress */
                bool working = pending > 0 && !lcow_session_output_full(c->session);
                if (working || output != c->last_output)
                    lcow_conn_clock_active(&c->clock, t);
                c->last_output = output;
                if (c->rest_len > 0 || c->read_eof || c->broken ||
                    !lcow_session_accepting(c->session))
                    lcow_conn_clock_paused(&c->clock, t); /* not reading */
                const char *why;
                if (t >= lcow_conn_clock_deadline(&c->clock, &server->settings, !working, &why)) {
                    if (strncmp(why, "frame timeout", 13) == 0)
                        LCOW_LOGW("rpc: pipe connection: %s (%u ms); closing it", why,
                                  server->settings.frame_timeout_ms);
                    conn_close(server, c, why);
                }
            }
        }
    }
    if (server->conns)
        LCOW_LOGW("rpc: %s: cancelled pipe I/O did not complete in time", server->address);
    return NULL;
}

/* ---- public API ------------------------------------------------------------ */

lcow_code lcow_server_start(const lcow_server_config *config, lcow_snapshotter *snapshotter,
                            lcow_server **out, lcow_error *err)
{
    *out = NULL;
    const char *address = config && config->address ? config->address : LCOW_DEFAULT_PIPE;
    if (_strnicmp(address, "\\\\.\\pipe\\", 9) != 0 || !address[9])
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "pipe name \"%s\" does not start with \\\\.\\pipe\\", address);
    lcow_server *server = lcow_calloc(1, sizeof *server);
    if (!server)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
    server->first_instance = INVALID_HANDLE_VALUE;
    atomic_init(&server->stopping, false);
    atomic_init(&server->stopped, false);
    server->snapshotter = snapshotter;
    server->address = dup_str(address);
    server->pipe_name = lcow_utf8_to_wide(address);
    lcow_server_settings_resolve(config, &server->settings);
    lcow_code code = LCOW_OK;
    if (!server->address || !server->pipe_name) {
        code = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "pipe name is not valid UTF-8");
        goto fail;
    }
    code = build_security(server,
                          config && config->pipe_sddl ? config->pipe_sddl : LCOW_DEFAULT_PIPE_SDDL,
                          config && config->allow_world_writable_sddl, err);
    if (code != LCOW_OK)
        goto fail;
    /* FILE_FLAG_FIRST_PIPE_INSTANCE makes the name ours on Windows; Wine
     * does not enforce it (observed), so also look for a live server. */
    if (WaitNamedPipeW(server->pipe_name, 1) || GetLastError() == ERROR_SEM_TIMEOUT) {
        code = lcow_error_set(err, LCOW_ALREADY_EXISTS,
                              "another process already serves the pipe %s", address);
        goto fail;
    }
    DWORD error = 0;
    server->first_instance = create_instance(server, true, &error);
    if (server->first_instance == INVALID_HANDLE_VALUE) {
        if (error == ERROR_ACCESS_DENIED || error == ERROR_PIPE_BUSY)
            code = lcow_error_set(err, LCOW_ALREADY_EXISTS,
                                  "another process already owns the pipe %s", address);
        else
            code = lcow_error_set(err, LCOW_UNAVAILABLE, "CreateNamedPipeW %s failed (error %lu)",
                                  address, (unsigned long)error);
        goto fail;
    }
    code = read_back_security(server, server->first_instance, err);
    if (code != LCOW_OK)
        goto fail;
    server->iocp = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!server->iocp) {
        code = lcow_error_set(err, LCOW_UNAVAILABLE, "CreateIoCompletionPort failed (error %lu)",
                              (unsigned long)GetLastError());
        goto fail;
    }
    server->pool = lcow_rpc_pool_create(server->settings.worker_threads, err);
    if (!server->pool) {
        code = err ? err->code : LCOW_RESOURCE_EXHAUSTED;
        goto fail;
    }
    if (!lcow_thread_create(&server->io_thread, io_main, server)) {
        code = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "cannot start the I/O thread");
        goto fail;
    }
    server->io_started = true;
    LCOW_LOGI("rpc: listening on %s (DACL %s)", address, server->sddl_readback);
    *out = server;
    return LCOW_OK;
fail:
    lcow_server_destroy(server);
    return code;
}

void lcow_server_stop(lcow_server *server, unsigned drain_ms)
{
    if (!server || atomic_exchange(&server->stopped, true))
        return;
    server->drain_ms = drain_ms;
    atomic_store(&server->stopping, true);
    if (server->io_started) {
        PostQueuedCompletionStatus(server->iocp, 0, 0, NULL);
        lcow_thread_join(server->io_thread, NULL);
        server->io_started = false;
    } else {
        lcow_rpc_pool_shutdown(server->pool);
        return; /* never started */
    }
    lcow_rpc_pool_shutdown(server->pool);
    /* Output notifications still queued hold session references. */
    DWORD bytes;
    ULONG_PTR key;
    OVERLAPPED *ov;
    while (server->iocp && GetQueuedCompletionStatus(server->iocp, &bytes, &key, &ov, 0)) {
        if (!ov && key != 0)
            lcow_session_unref(((conn *)key)->session);
    }
    LCOW_LOGI("rpc: stopped listening on %s", server->address);
}

unsigned lcow_server_inflight(const lcow_server *server)
{
    return server && server->pool ? lcow_rpc_pool_inflight(server->pool) : 0;
}

void lcow_server_destroy(lcow_server *server)
{
    if (!server)
        return;
    lcow_server_stop(server, 0);
    lcow_rpc_pool_destroy(server->pool);
    if (server->first_instance != INVALID_HANDLE_VALUE)
        CloseHandle(server->first_instance);
    if (server->iocp)
        CloseHandle(server->iocp);
    if (server->sd)
        LocalFree(server->sd);
    free(server->sddl);
    free(server->sddl_readback);
    free(server->pipe_name);
    free(server->address);
    free(server);
}

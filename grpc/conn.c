/* A gRPC connection on nghttp2. See conn.h.
 *
 * Locking: one mutex per connection guards the nghttp2 session, every
 * stream and the output buffer; nghttp2 is only ever called with it held,
 * so its callbacks run with it held too. The snapshotter is called without
 * it (a task, or the I/O thread after nghttp2_session_mem_recv returned).
 *
 * Streams: created by nghttp2's first HEADERS callback, freed when nghttp2
 * has closed them and no task refers to them (refs, under the lock); the
 * connection keeps them all in a list so a closing connection can free
 * those nghttp2 still holds. A complete request becomes a task on the RPC
 * worker pool (Stat and Mounts run on the I/O thread instead); a task holds
 * a reference to the stream and one to the session, so neither goes away
 * under it. List runs one Walk page per task run: it re-queues itself, or
 * parks while more than max_output / 4 of its messages wait to be sent and
 * is re-queued by the data source callback once they drained. */
#include "grpc/conn.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "core/base/log.h"
#include "core/os/thread.h"
#include "grpc/codec.h"
#include "rpc/dispatch.h"

/* Output pulled from nghttp2 ahead of the transport's writes. */
#define OUT_AHEAD ((size_t)256 << 10)
/* Header bytes (names + values) of one request at most. */
#define MAX_HEADER_BYTES ((size_t)16 << 10)
/* Requests one feed may run on the I/O thread. */
#define INLINE_BUDGET 64
/* Stream and connection receive windows. */
#define STREAM_WINDOW ((int32_t)1 << 20)
#define CONN_WINDOW ((int32_t)8 << 20)

typedef struct gconn gconn;
typedef struct gstream gstream;

struct gstream {
    gstream *prev, *next; /* conn->streams */
    gstream *ready_next;  /* conn->ready: complete during this feed */
    lcow_rpc_task task;
    gconn *conn;
    int32_t id;
    unsigned refs; /* nghttp2's (until closed) + the task's */
    bool open;     /* nghttp2 still has it */
    bool partial;  /* headers in, request not complete (conn->partial) */
    bool answered; /* the request is taken or refused: later bytes are dropped */
    bool replied;  /* response HEADERS submitted (trailers-only or with data) */
    bool deferred; /* the data source said NGHTTP2_ERR_DEFERRED */
    bool parked;   /* List: waits for its messages to drain */
    bool eof;      /* no more messages: trailers after data */
    /* Request headers. */
    bool post, grpc_type;
    int method; /* lcow_grpc_method; -1: unknown (path_code/path_message) */
    lcow_code path_code;
    char *path_message;
    char *encoding; /* grpc-encoding; NULL: identity */
    size_t header_bytes;
    /* Request body (the one message, with its prefix). */
    msgpack_sbuffer body;
    /* The call. */
    lcow_request req;
    /* Response messages not yet taken by nghttp2, then the status. */
    msgpack_sbuffer data;
    size_t data_off;
    int status;
    char *message;
};

struct gconn {
    lcow_session *session; /* references and transport notifications */
    lcow_rpc_pool *pool;
    lcow_snapshotter *snapshotter;
    size_t max_message; /* request message bytes */
    size_t max_buffered;
    size_t max_output;
    unsigned max_streams;

    lcow_mutex lock; /* everything below */
    nghttp2_session *h2;
    gstream *streams;
    gstream *ready;
    size_t buffered;   /* request body bytes held over all streams */
    unsigned tasks;    /* stream tasks queued or running */
    unsigned partial;  /* streams with a request not complete */
    uint64_t requests; /* requests completed (END_STREAM), answered or refused */
    bool closed;       /* the transport closed the connection */
    bool failed;       /* HTTP/2 session over: close after the output */
    bool goaway_sent;  /* the stop's GOAWAY (sent once) */
    msgpack_sbuffer out;
    size_t out_off; /* out[out_off..size): not written yet */
    size_t lent;    /* taken by the transport, not reported sent */
    /* Frame boundaries of what was fed (for in_request). */
    size_t preface_left;
    unsigned hdr_have;
    uint8_t hdr[9];
    size_t payload_left;
};

#define STREAM_OF(t) ((gstream *)((char *)(t)-offsetof(gstream, task)))

static void stream_task(lcow_rpc_task *task, bool cancelled);

/* ---- streams ----------------------------------------------------------- */

static void body_drop_locked(gconn *c, gstream *st)
{
    c->buffered -= st->body.size;
    msgpack_sbuffer_destroy(&st->body);
    msgpack_sbuffer_init(&st->body);
}

static void stream_free_locked(gconn *c, gstream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    body_drop_locked(c, st);
    msgpack_sbuffer_destroy(&st->body);
    msgpack_sbuffer_destroy(&st->data);
    lcow_params_free(&st->req.params);
    free(st->path_message);
    free(st->encoding);
    free(st->message);
    free(st);
}

static void stream_unref_locked(gconn *c, gstream *st)
{
    if (--st->refs == 0)
        stream_free_locked(c, st);
}

/* Queues the stream's task (c->lock held): the task holds a reference to
 * the stream and one to the session. False: the pool is stopping. */
static bool submit_task_locked(gconn *c, gstream *st)
{
    st->refs++;
    c->tasks++;
    lcow_session_ref(c->session);
    st->task.run = stream_task;
    if (lcow_rpc_pool_submit(c->pool, &st->task))
        return true;
    st->refs--;
    c->tasks--;
    /* Not the last reference: the caller's context holds one. */
    lcow_session_unref(c->session);
    return false;
}

/* ---- responses (c->lock held) ------------------------------------------ */

static void status_nv(nghttp2_nv *nv, const char *name, const char *value)
{
    nv->name = (uint8_t *)name;
    nv->namelen = strlen(name);
    nv->value = (uint8_t *)value;
    nv->valuelen = strlen(value);
    nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* grpc-status and grpc-message into nv; returns how many. */
static size_t status_headers(nghttp2_nv *nv, int status, const char *message, char *code_buf,
                             char *msg_buf, size_t msg_cap)
{
    snprintf(code_buf, 16, "%d", status);
    status_nv(&nv[0], "grpc-status", code_buf);
    if (status == 0 || !message || !message[0])
        return 1;
    lcow_grpc_percent_encode(message, msg_buf, msg_cap);
    status_nv(&nv[1], "grpc-message", msg_buf);
    return 2;
}

#define MSG_CAP (LCOW_ERROR_MESSAGE_MAX * 3 + 1)

/* A trailers-only response: the call failed before any message. */
static void answer_error_locked(gconn *c, gstream *st, lcow_code code, const char *message)
{
    if (st->replied || !st->open)
        return;
    st->replied = true;
    st->answered = true;
    body_drop_locked(c, st);
    nghttp2_nv nv[4];
    char code_buf[16], msg_buf[MSG_CAP];
    status_nv(&nv[0], ":status", "200");
    status_nv(&nv[1], "content-type", "application/grpc");
    size_t n = 2 + status_headers(nv + 2, lcow_grpc_status(code), message, code_buf, msg_buf,
                                  sizeof msg_buf);
    int rv = nghttp2_submit_response(c->h2, st->id, nv, n, NULL);
    if (rv != 0)
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

/* Not gRPC at all: an HTTP status and nothing else. */
static void answer_http_locked(gconn *c, gstream *st, const char *status)
{
    if (st->replied || !st->open)
        return;
    st->replied = true;
    st->answered = true;
    body_drop_locked(c, st);
    nghttp2_nv nv[1];
    status_nv(&nv[0], ":status", status);
    if (nghttp2_submit_response(c->h2, st->id, nv, 1, NULL) != 0)
        nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
}

/* A List the stopping pool will not continue ends with Unavailable, not
 * with a success that would pass the missing pages off as the end. */
static void list_cut_locked(gstream *st)
{
    st->eof = true;
    st->status = lcow_grpc_status(LCOW_UNAVAILABLE);
    free(st->message);
    st->message = strdup("the service is stopping");
}

static ssize_t read_data(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    gconn *c = user_data;
    gstream *st = source->ptr;
    size_t avail = st->data.size - st->data_off;
    size_t n = avail < length ? avail : length;
    if (n > 0) {
        memcpy(buf, st->data.data + st->data_off, n);
        st->data_off += n;
    }
    if (st->data_off == st->data.size) {
        st->data.size = 0;
        st->data_off = 0;
        if (st->data.alloc > ((size_t)1 << 20)) {
            msgpack_sbuffer_destroy(&st->data);
            msgpack_sbuffer_init(&st->data);
        }
    }
    size_t left = st->data.size - st->data_off;
    if (st->parked && left < c->max_output / 8) {
        /* A parked List: its messages drained, the next page may run. */
        st->parked = false;
        if (!submit_task_locked(c, st))
            list_cut_locked(st);
    }
    if (left == 0 && st->eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv nv[2];
        char code_buf[16], msg_buf[MSG_CAP];
        size_t nn = status_headers(nv, st->status, st->message, code_buf, msg_buf, sizeof msg_buf);
        if (nghttp2_submit_trailer(h2, stream_id, nv, nn) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    if (n == 0) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* After messages were appended or eof set: start or resume the response. */
static void respond_locked(gconn *c, gstream *st)
{
    if (!st->open)
        return;
    if (!st->replied) {
        st->replied = true;
        st->answered = true;
        nghttp2_nv nv[2];
        status_nv(&nv[0], ":status", "200");
        status_nv(&nv[1], "content-type", "application/grpc");
        nghttp2_data_provider prd;
        prd.source.ptr = st;
        prd.read_callback = read_data;
        if (nghttp2_submit_response(c->h2, st->id, nv, 2, &prd) != 0)
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    } else if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(c->h2, st->id);
    }
}

/* Pulls frames out of nghttp2 until OUT_AHEAD bytes wait or it has none. */
static void pull_locked(gconn *c)
{
    if (c->closed)
        return;
    if (c->out_off > 0 && c->out_off == c->out.size) {
        c->out.size = 0;
        c->out_off = 0;
    }
    while (c->out.size - c->out_off < OUT_AHEAD) {
        const uint8_t *data = NULL;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) {
            LCOW_LOGW("grpc: HTTP/2 send: %s", nghttp2_strerror((int)n));
            c->failed = true;
            break;
        }
        if (n == 0)
            break;
        if (msgpack_sbuffer_write(&c->out, (const char *)data, (size_t)n) != 0) {
            LCOW_LOGE("grpc: out of memory buffering output; closing the connection");
            c->failed = true;
            break;
        }
    }
}

/* ---- calls ------------------------------------------------------------- */

static bool alive(gconn *c, gstream *st)
{
    lcow_mutex_lock(&c->lock);
    bool ok = st->open && !c->closed;
    lcow_mutex_unlock(&c->lock);
    return ok;
}

/* One unary call: dispatch, encode, respond. */
static void run_unary(gconn *c, gstream *st)
{
    if (!alive(c, st))
        return; /* reset by the client before it started */
    lcow_result result;
    lcow_error err;
    lcow_error_clear(&err);
    msgpack_sbuffer msg;
    msgpack_sbuffer_init(&msg);
    lcow_code code = lcow_dispatch(c->snapshotter, &st->req, &result, &err);
    if (code == LCOW_OK) {
        if (!lcow_grpc_encode_result(st->method, &result, &msg))
            code =
                lcow_error_set(&err, LCOW_RESOURCE_EXHAUSTED, "out of memory encoding the result");
        lcow_result_free(&result);
    }
    lcow_mutex_lock(&c->lock);
    if (st->open && !c->closed) {
        if (code != LCOW_OK) {
            answer_error_locked(c, st, code, err.message);
        } else {
            msgpack_sbuffer_destroy(&st->data);
            st->data = msg;
            msgpack_sbuffer_init(&msg);
            st->data_off = 0;
            st->eof = true;
            st->status = 0;
            respond_locked(c, st);
        }
        pull_locked(c);
    }
    lcow_mutex_unlock(&c->lock);
    msgpack_sbuffer_destroy(&msg);
}

/* One page of a List: a Walk page (LCOW_WALK_PAGE_MAX infos) from the
 * cursor, sent as messages of up to LCOW_GRPC_LIST_BATCH infos, then
 * re-queue, park or finish. */
static void run_list_page(gconn *c, gstream *st)
{
    if (!alive(c, st))
        return;
    st->req.params.limit = LCOW_WALK_PAGE_MAX;
    lcow_result result;
    lcow_error err;
    lcow_error_clear(&err);
    msgpack_sbuffer msg;
    msgpack_sbuffer_init(&msg);
    bool done = true;
    lcow_code code = lcow_dispatch(c->snapshotter, &st->req, &result, &err);
    if (code == LCOW_OK) {
        for (size_t i = 0; i < result.infos.count && code == LCOW_OK;) {
            size_t left = result.infos.count - i;
            size_t n = lcow_grpc_encode_infos(
                result.infos.items + i, left < LCOW_GRPC_LIST_BATCH ? left : LCOW_GRPC_LIST_BATCH,
                LCOW_GRPC_LIST_BATCH_BYTES, &msg);
            if (n == 0)
                code = lcow_error_set(&err, LCOW_RESOURCE_EXHAUSTED,
                                      "out of memory encoding the result");
            i += n;
        }
        /* The cursor moves on (after = the page's last key). */
        free(st->req.params.after);
        st->req.params.after = result.next;
        result.next = NULL;
        done = st->req.params.after == NULL;
        lcow_result_free(&result);
    }
    lcow_mutex_lock(&c->lock);
    if (st->open && !c->closed) {
        if (code != LCOW_OK && !st->replied) {
            answer_error_locked(c, st, code, err.message);
        } else {
            if (msg.size > 0 && msgpack_sbuffer_write(&st->data, msg.data, msg.size) != 0)
                code = lcow_error_set(&err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
            if (code != LCOW_OK || done) {
                st->eof = true;
                st->status = lcow_grpc_status(code);
                if (code != LCOW_OK) {
                    free(st->message);
                    st->message = strdup(err.message);
                }
            }
            respond_locked(c, st);
            if (!st->eof) {
                if (st->data.size - st->data_off > c->max_output / 4)
                    st->parked = true; /* read_data re-queues it */
                else if (!submit_task_locked(c, st))
                    list_cut_locked(st);
                if (st->eof)
                    respond_locked(c, st);
            }
        }
        pull_locked(c);
    }
    lcow_mutex_unlock(&c->lock);
    msgpack_sbuffer_destroy(&msg);
}

/* A stream's task: run by a worker, or by the I/O thread for inline calls
 * (cancelled: the pool is stopping; only the references go). */
static void stream_task(lcow_rpc_task *task, bool cancelled)
{
    gstream *st = STREAM_OF(task);
    gconn *c = st->conn;
    if (!cancelled) {
        if (st->method == LCOW_GRPC_LIST)
            run_list_page(c, st);
        else
            run_unary(c, st);
    }
    lcow_mutex_lock(&c->lock);
    c->tasks--;
    stream_unref_locked(c, st);
    lcow_mutex_unlock(&c->lock);
    lcow_session *s = c->session;
    if (!cancelled)
        lcow_session_notify(s);
    lcow_session_unref(s);
}

/* The request is complete (c->lock held): check the one message, decode it,
 * and put the stream on the ready list; or answer the error. */
static void request_complete_locked(gconn *c, gstream *st)
{
    c->requests++;
    if (st->partial) {
        st->partial = false;
        c->partial--;
    }
    if (st->answered)
        return;
    const uint8_t *b = (const uint8_t *)st->body.data;
    size_t have = st->body.size;
    if (have < 5) {
        answer_error_locked(c, st, LCOW_INTERNAL,
                            have == 0 ? "grpc: the request has no message"
                                      : "grpc: the request ends inside a message prefix");
        return;
    }
    size_t len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    if (have < 5 + len) {
        char m[128];
        snprintf(m, sizeof m, "grpc: the request ends inside its message (%zu of %zu bytes)",
                 have - 5, len);
        answer_error_locked(c, st, LCOW_INTERNAL, m);
        return;
    }
    lcow_error err;
    lcow_error_clear(&err);
    lcow_code code = lcow_grpc_decode_request(st->method, b + 5, len, &st->req, &err);
    body_drop_locked(c, st);
    if (code != LCOW_OK) {
        answer_error_locked(c, st, code, err.message);
        return;
    }
    st->req.msgid = (uint32_t)st->id; /* what the dispatch's log lines call it */
    st->answered = true;              /* by the call */
    st->refs++;                       /* the ready list's, then the task's */
    st->ready_next = c->ready;
    c->ready = st;
}

/* ---- nghttp2 callbacks (c->lock held) ----------------------------------- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    gconn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    gstream *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
    st->conn = c;
    st->id = frame->hd.stream_id;
    st->refs = 1;
    st->open = true;
    st->partial = true;
    st->method = -1;
    st->path_code = LCOW_NOT_IMPLEMENTED;
    msgpack_sbuffer_init(&st->body);
    msgpack_sbuffer_init(&st->data);
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->partial++;
    nghttp2_session_set_stream_user_data(h2, st->id, st);
    return 0;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(name, want, len) == 0;
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers of a request: nothing we use */
    gstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    st->header_bytes += namelen + valuelen;
    if (st->header_bytes > MAX_HEADER_BYTES)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (header_is(name, namelen, ":method")) {
        st->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (header_is(name, namelen, ":path")) {
        lcow_error err;
        lcow_error_clear(&err);
        lcow_grpc_method m;
        free(st->path_message);
        st->path_message = NULL;
        if (lcow_grpc_method_lookup((const char *)value, valuelen, &m, &err) == LCOW_OK) {
            st->method = (int)m;
        } else {
            st->method = -1;
            st->path_code = err.code;
            st->path_message = strdup(err.message);
        }
    } else if (header_is(name, namelen, "content-type")) {
        /* application/grpc, application/grpc+proto, application/grpc;... */
        st->grpc_type = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                        (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (header_is(name, namelen, "grpc-encoding")) {
        free(st->encoding);
        st->encoding = NULL;
        if (!(valuelen == 8 && memcmp(value, "identity", 8) == 0))
            st->encoding = dup_bytes(value, valuelen);
    }
    return 0;
}

/* Checks the message prefix as soon as it is in (so an oversized message is
 * refused before its bytes arrive). */
static void check_prefix_locked(gconn *c, gstream *st)
{
    if (st->answered || st->body.size < 5)
        return;
    const uint8_t *b = (const uint8_t *)st->body.data;
    size_t len = (size_t)b[1] << 24 | (size_t)b[2] << 16 | (size_t)b[3] << 8 | b[4];
    char m[192];
    if (b[0] == 1) {
        if (!st->encoding)
            answer_error_locked(c, st, LCOW_INTERNAL,
                                "grpc: compressed flag set with identity or empty encoding");
        else {
            snprintf(m, sizeof m, "grpc: Decompressor is not installed for grpc-encoding \"%.64s\"",
                     st->encoding);
            answer_error_locked(c, st, LCOW_NOT_IMPLEMENTED, m);
        }
    } else if (b[0] != 0) {
        snprintf(m, sizeof m, "grpc: received unexpected payload format %u", b[0]);
        answer_error_locked(c, st, LCOW_INTERNAL, m);
    } else if (len > c->max_message) {
        snprintf(m, sizeof m, "grpc: received message larger than max (%zu vs. %zu)", len,
                 c->max_message);
        answer_error_locked(c, st, LCOW_RESOURCE_EXHAUSTED, m);
    } else if (st->body.size > 5 + len) {
        answer_error_locked(c, st, LCOW_INTERNAL,
                            "grpc: more than one request message in a unary call");
    }
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    gconn *c = user_data;
    gstream *st = nghttp2_session_get_stream_user_data(h2, stream_id);
    if (!st || st->answered)
        return 0; /* dropped (nghttp2 still counts it for flow control) */
    if (c->buffered + len > c->max_buffered) {
        answer_error_locked(c, st, LCOW_RESOURCE_EXHAUSTED,
                            "grpc: too many request bytes in flight on this connection");
        return 0;
    }
    if (msgpack_sbuffer_write(&st->body, (const char *)data, len) != 0) {
        answer_error_locked(c, st, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        return 0;
    }
    c->buffered += len;
    check_prefix_locked(c, st);
    return 0;
}

/* Headers complete: refuse what is not a gRPC call of this service now. */
static void headers_complete_locked(gconn *c, gstream *st)
{
    if (!st->post)
        answer_http_locked(c, st, "405");
    else if (!st->grpc_type)
        answer_http_locked(c, st, "415");
    else if (st->method < 0)
        answer_error_locked(c, st, st->path_code,
                            st->path_message ? st->path_message : "unknown method");
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    gconn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    gstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        headers_complete_locked(c, st);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        request_complete_locked(c, st);
    return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    /* We ended the stream before the client did (an early error): ask it to
     * stop sending (RFC 9113, section 8.1). */
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(h2, frame->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    gconn *c = user_data;
    gstream *st = nghttp2_session_get_stream_user_data(h2, stream_id);
    if (!st)
        return 0;
    if (error_code != NGHTTP2_NO_ERROR)
        LCOW_LOGD("grpc: stream %d closed: %s", (int)stream_id, nghttp2_http2_strerror(error_code));
    nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
    st->open = false;
    st->parked = false;
    if (st->partial) {
        st->partial = false;
        c->partial--;
    }
    body_drop_locked(c, st);
    stream_unref_locked(c, st);
    return 0;
}

/* ---- the session protocol ---------------------------------------------- */

static void *grpc_create(lcow_session *session, lcow_rpc_pool *pool, lcow_snapshotter *snapshotter,
                         const lcow_session_limits *limits)
{
    gconn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->session = session;
    c->pool = pool;
    c->snapshotter = snapshotter;
    c->max_message = limits->max_frame_bytes ? limits->max_frame_bytes : ((size_t)4 << 20);
    c->max_buffered = 2 * c->max_message + ((size_t)1 << 20);
    c->max_output = limits->max_output ? limits->max_output : ((size_t)8 << 20);
    c->max_streams = limits->max_pending ? (unsigned)limits->max_pending : 128;
    c->preface_left = 24;
    msgpack_sbuffer_init(&c->out);
    lcow_mutex_init(&c->lock);

    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    bool ok = nghttp2_session_callbacks_new(&cb) == 0 && nghttp2_option_new(&opt) == 0;
    if (ok) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
        /* Bounds on what a peer can make us queue. */
        nghttp2_option_set_max_outbound_ack(opt, 1000);
        nghttp2_option_set_max_settings(opt, 32);
        ok = nghttp2_session_server_new2(&c->h2, cb, c, opt) == 0;
    }
    if (ok) {
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->max_streams},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)STREAM_WINDOW},
            {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)MAX_HEADER_BYTES},
        };
        ok = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) == 0 &&
             nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW) == 0;
    }
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    if (!ok) {
        if (c->h2)
            nghttp2_session_del(c->h2);
        lcow_mutex_destroy(&c->lock);
        msgpack_sbuffer_destroy(&c->out);
        free(c);
        return NULL;
    }
    /* Our SETTINGS go out first, whatever the client sends. */
    lcow_mutex_lock(&c->lock);
    pull_locked(c);
    lcow_mutex_unlock(&c->lock);
    return c;
}

static void grpc_destroy(void *impl)
{
    gconn *c = impl;
    /* No task is left (each holds a session reference): free what nghttp2
     * still holds. */
    nghttp2_session_del(c->h2);
    while (c->streams)
        stream_free_locked(c, c->streams);
    msgpack_sbuffer_destroy(&c->out);
    lcow_mutex_destroy(&c->lock);
    free(c);
}

static void track_frames(gconn *c, const uint8_t *p, size_t len)
{
    while (len > 0) {
        size_t take;
        if (c->preface_left > 0) {
            take = len < c->preface_left ? len : c->preface_left;
            c->preface_left -= take;
        } else if (c->payload_left > 0) {
            take = len < c->payload_left ? len : c->payload_left;
            c->payload_left -= take;
        } else {
            take = 1;
            c->hdr[c->hdr_have++] = *p;
            if (c->hdr_have == 9) {
                c->payload_left = (size_t)c->hdr[0] << 16 | (size_t)c->hdr[1] << 8 | c->hdr[2];
                c->hdr_have = 0;
            }
        }
        p += take;
        len -= take;
    }
}

static lcow_code grpc_feed(void *impl, const void *data, size_t len, size_t *consumed,
                           lcow_error *err)
{
    gconn *c = impl;
    *consumed = len;
    lcow_code code = LCOW_OK;
    lcow_mutex_lock(&c->lock);
    if (c->failed) {
        lcow_mutex_unlock(&c->lock);
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "HTTP/2 session already over");
    }
    track_frames(c, data, len);
    ssize_t rv = nghttp2_session_mem_recv(c->h2, data, len);
    if (rv < 0) {
        c->failed = true;
        if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
            code = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "not an HTTP/2 client (no connection preface): the gRPC "
                                  "endpoint speaks HTTP/2 with prior knowledge");
        else
            code =
                lcow_error_set(err, LCOW_INVALID_ARGUMENT, "HTTP/2: %s", nghttp2_strerror((int)rv));
    }
    gstream *ready = c->ready;
    c->ready = NULL;
    pull_locked(c);
    if (code == LCOW_OK &&
        (c->failed || (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)))) {
        c->failed = true;
        code = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "HTTP/2 session over (GOAWAY)");
    }
    /* The ready list's references become tasks. */
    unsigned budget = INLINE_BUDGET;
    gstream *inline_list = NULL;
    while (ready) {
        gstream *st = ready;
        ready = st->ready_next;
        st->ready_next = NULL;
        st->refs--; /* the ready list's */
        if (!st->open || c->failed) {
            if (st->refs == 0)
                stream_free_locked(c, st);
            continue;
        }
        if (budget > 0 && lcow_dispatch_runs_inline(st->req.method)) {
            budget--;
            st->refs++;
            c->tasks++;
            lcow_session_ref(c->session);
            st->ready_next = inline_list;
            inline_list = st;
        } else if (!submit_task_locked(c, st)) {
            answer_error_locked(c, st, LCOW_UNAVAILABLE, "the service is stopping");
        }
    }
    lcow_mutex_unlock(&c->lock);
    while (inline_list) {
        gstream *st = inline_list;
        inline_list = st->ready_next;
        st->ready_next = NULL;
        st->task.run = stream_task;
        /* Like a worker, without the notify (the transport writes after
         * the feed): stream_task's notify is harmless but costs a wake-up. */
        run_unary(c, st);
        lcow_mutex_lock(&c->lock);
        c->tasks--;
        stream_unref_locked(c, st);
        lcow_mutex_unlock(&c->lock);
        lcow_session_unref(c->session);
    }
    return code;
}

static bool grpc_accepting(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    bool ok = !c->closed && c->out.size - c->out_off + c->lent < c->max_output;
    lcow_mutex_unlock(&c->lock);
    return ok;
}

static size_t grpc_pending(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    size_t n = c->tasks;
    lcow_mutex_unlock(&c->lock);
    return n;
}

static size_t grpc_output_bytes(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    size_t n = c->out.size - c->out_off + c->lent;
    lcow_mutex_unlock(&c->lock);
    return n;
}

static bool grpc_write(void *impl, lcow_session_write_fn write_fn, void *ctx)
{
    gconn *c = impl;
    bool ok = true;
    lcow_mutex_lock(&c->lock);
    for (;;) {
        if (c->out_off == c->out.size)
            pull_locked(c);
        if (c->out_off == c->out.size)
            break;
        long n = write_fn(ctx, c->out.data + c->out_off, c->out.size - c->out_off);
        if (n < 0) {
            ok = false;
            break;
        }
        if (n == 0)
            break;
        c->out_off += (size_t)n;
    }
    if (c->out_off == c->out.size) {
        c->out.size = 0;
        c->out_off = 0;
    }
    lcow_mutex_unlock(&c->lock);
    return ok;
}

static bool grpc_take_output(void *impl, msgpack_sbuffer *out)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    if (c->out_off == c->out.size)
        pull_locked(c);
    bool any = c->out_off < c->out.size;
    if (any) {
        if (c->out_off > 0) {
            memmove(c->out.data, c->out.data + c->out_off, c->out.size - c->out_off);
            c->out.size -= c->out_off;
            c->out_off = 0;
        }
        *out = c->out;
        msgpack_sbuffer_init(&c->out);
        c->lent += out->size;
    }
    lcow_mutex_unlock(&c->lock);
    return any;
}

static void grpc_output_sent(void *impl, size_t n)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    c->lent -= n < c->lent ? n : c->lent;
    lcow_mutex_unlock(&c->lock);
}

static void grpc_close(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    c->closed = true;
    c->lent = 0;
    c->out.size = 0;
    c->out_off = 0;
    lcow_mutex_unlock(&c->lock);
}

static bool grpc_in_request(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    bool in = (c->preface_left > 0 && c->preface_left < 24) || c->hdr_have > 0 ||
              c->payload_left > 0 || c->partial > 0;
    lcow_mutex_unlock(&c->lock);
    return in;
}

/* The server stops: a GOAWAY naming the last stream taken, so the client
 * starts no new call on this connection (grpc-go retries those elsewhere);
 * calls in flight are answered until the drain ends. */
static void grpc_stopping(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    if (!c->closed && !c->failed && !c->goaway_sent) {
        c->goaway_sent = true;
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                              NULL, 0);
        pull_locked(c);
    }
    lcow_mutex_unlock(&c->lock);
}

static uint64_t grpc_requests(void *impl)
{
    gconn *c = impl;
    lcow_mutex_lock(&c->lock);
    uint64_t n = c->requests;
    lcow_mutex_unlock(&c->lock);
    return n;
}

const lcow_session_proto lcow_grpc_protocol = {
    .name = "gRPC",
    .create = grpc_create,
    .destroy = grpc_destroy,
    .feed = grpc_feed,
    .accepting = grpc_accepting,
    .pending = grpc_pending,
    .output_bytes = grpc_output_bytes,
    .write = grpc_write,
    .take_output = grpc_take_output,
    .output_sent = grpc_output_sent,
    .close = grpc_close,
    .in_request = grpc_in_request,
    .requests = grpc_requests,
    .stopping = grpc_stopping,
};

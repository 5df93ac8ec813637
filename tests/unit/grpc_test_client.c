/* gRPC test client on nghttp2. See grpc_test_client.h. */
#include "unit/grpc_test_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "grpc/codec.h"
#include "rpc/client_transport.h"

#define MAX_STREAMS 256
#define IO_TIMEOUT_MS 30000u

typedef struct gtc_body {
    uint8_t *data;
    size_t len, off;
    bool end;
} gtc_body;

typedef struct gtc_stream {
    int32_t id; /* 0: free slot */
    gtc_body body;
    gtc_reply reply;
} gtc_stream;

struct gtc {
    lcow_transport *t;
    nghttp2_session *h2;
    bool dead;         /* nothing more to read */
    bool write_closed; /* a write failed: the server closed; what it sent before is still read */
    bool goaway;
    uint32_t goaway_code;
    size_t read_chunk; /* bytes per read, 0: up to 64 KiB */
    gtc_stream streams[MAX_STREAMS];
};

static gtc_stream *find(gtc *c, int32_t id)
{
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (c->streams[i].id == id && id != 0)
            return &c->streams[i];
    }
    return NULL;
}

static char *dup_n(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    gtc_stream *st = find(user_data, frame->hd.stream_id);
    if (!st)
        return 0;
    gtc_reply *r = &st->reply;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        char *v = dup_n(value, valuelen);
        r->http_status = atoi(v);
        free(v);
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        free(r->content_type);
        r->content_type = dup_n(value, valuelen);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char *v = dup_n(value, valuelen);
        r->grpc_status = atoi(v);
        free(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(r->grpc_message);
        r->grpc_message = dup_n(value, valuelen);
        lcow_grpc_percent_decode(r->grpc_message);
    }
    return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *user_data)
{
    gtc_stream *st = find(user_data, stream_id);
    if (!st)
        return 0;
    gtc_reply *r = &st->reply;
    uint8_t *grown = realloc(r->data, r->len + len + 1);
    if (!grown)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    memcpy(grown + r->len, data, len);
    r->data = grown;
    r->len += len;
    return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    gtc *c = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        c->goaway_code = frame->goaway.error_code;
    } else if (frame->hd.type == NGHTTP2_DATA) {
        gtc_stream *st = find(c, frame->hd.stream_id);
        if (st)
            st->reply.data_frames++;
    }
    return 0;
}

static int on_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *user_data)
{
    gtc_stream *st = find(user_data, stream_id);
    if (st) {
        st->reply.closed = true;
        st->reply.close_code = error_code;
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    gtc_body *b = source->ptr;
    size_t n = b->len - b->off < length ? b->len - b->off : length;
    memcpy(buf, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!b->end)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

/* Sends what nghttp2 has queued. The first failed write (the server has
 * closed its end) is reported; after it nothing more is sent, but reading
 * goes on: a server that answers a broken frame with a GOAWAY and closes may
 * close while the client still acknowledges its SETTINGS, and the GOAWAY
 * must still be read (a real HTTP/2 client reads to the end too). */
static lcow_code flush(gtc *c, lcow_error *err)
{
    if (c->write_closed)
        return LCOW_OK;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0)
            return lcow_error_set(err, LCOW_INTERNAL, "mem_send: %s", nghttp2_strerror((int)n));
        if (n == 0)
            return LCOW_OK;
        lcow_code code = lcow_transport_write(c->t, data, (size_t)n, IO_TIMEOUT_MS, err);
        if (code != LCOW_OK) {
            c->write_closed = true;
            return code;
        }
    }
}

lcow_code gtc_connect(const char *address, gtc **out, lcow_error *err)
{
    return gtc_connect_window(address, 1u << 20, out, err);
}

lcow_code gtc_connect_window(const char *address, uint32_t stream_window, gtc **out,
                             lcow_error *err)
{
    *out = NULL;
    gtc *c = calloc(1, sizeof *c);
    lcow_code code = lcow_transport_connect(address, 5000, &c->t, err);
    if (code != LCOW_OK) {
        free(c);
        return code;
    }
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_client_new(&c->h2, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_window}};
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1);
    if (stream_window >= (1u << 20))
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    code = flush(c, err);
    if (code != LCOW_OK) {
        gtc_close(c);
        return code;
    }
    *out = c;
    return LCOW_OK;
}

static void reply_clear(gtc_reply *r)
{
    free(r->content_type);
    free(r->grpc_message);
    free(r->data);
    memset(r, 0, sizeof *r);
    r->grpc_status = -1;
}

void gtc_forget(gtc *c, int32_t id)
{
    gtc_stream *st = find(c, id);
    if (!st)
        return;
    reply_clear(&st->reply);
    free(st->body.data);
    memset(st, 0, sizeof *st);
}

void gtc_close(gtc *c)
{
    if (!c)
        return;
    for (int i = 0; i < MAX_STREAMS; i++) {
        if (c->streams[i].id)
            gtc_forget(c, c->streams[i].id);
    }
    nghttp2_session_del(c->h2);
    lcow_transport_close(c->t);
    free(c);
}

int32_t gtc_start(gtc *c, const char *path, const char *content_type, const void *body, size_t len,
                  bool end)
{
    gtc_stream *st = find(c, 0);
    for (int i = 0; i < MAX_STREAMS && !st; i++) {
        if (c->streams[i].id == 0)
            st = &c->streams[i];
    }
    if (!st)
        return -1;
    memset(st, 0, sizeof *st);
    st->reply.grpc_status = -1;
    st->body.data = malloc(len ? len : 1);
    if (len > 0)
        memcpy(st->body.data, body, len);
    st->body.len = len;
    st->body.end = end;
    const char *ct = content_type ? content_type : "application/grpc";
    nghttp2_nv nv[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":authority", (uint8_t *)"lcowsnap", 10, 8, 0},
        {(uint8_t *)"content-type", (uint8_t *)ct, 12, strlen(ct), 0},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
    };
    nghttp2_data_provider prd;
    prd.source.ptr = &st->body;
    prd.read_callback = read_body;
    int32_t id = nghttp2_submit_request(c->h2, NULL, nv, sizeof nv / sizeof nv[0],
                                        (len > 0 || !end) ? &prd : NULL, NULL);
    if (id < 0) {
        free(st->body.data);
        memset(st, 0, sizeof *st);
        return -1;
    }
    st->id = id;
    lcow_error err;
    if (flush(c, &err) != LCOW_OK)
        return id; /* gtc_wait reports the dead connection */
    return id;
}

uint8_t *gtc_frame(const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 5);
    lcow_grpc_message_prefix(buf, n);
    protobuf_c_message_pack(msg, buf + 5);
    *len = n + 5;
    return buf;
}

int32_t gtc_start_call(gtc *c, const char *method, const ProtobufCMessage *request)
{
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", LCOW_GRPC_SERVICE, method);
    size_t len;
    uint8_t *body = gtc_frame(request, &len);
    int32_t id = gtc_start(c, path, NULL, body, len, true);
    free(body);
    return id;
}

lcow_code gtc_pump(gtc *c, unsigned timeout_ms, lcow_error *err)
{
    if (c->dead)
        return lcow_error_set(err, LCOW_UNAVAILABLE, "connection is over");
    uint8_t buf[65536];
    size_t got = 0;
    size_t cap = c->read_chunk && c->read_chunk < sizeof buf ? c->read_chunk : sizeof buf;
    lcow_code code = lcow_transport_read(c->t, buf, cap, &got, timeout_ms, err);
    if (code != LCOW_OK) {
        c->dead = true;
        return code;
    }
    ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, got);
    if (rv < 0) {
        c->dead = true;
        return lcow_error_set(err, LCOW_UNAVAILABLE, "mem_recv: %s", nghttp2_strerror((int)rv));
    }
    code = flush(c, err);
    /* The server closed: read on, its last frames may still be in transit. */
    return c->write_closed ? LCOW_OK : code;
}

gtc_reply *gtc_peek(gtc *c, int32_t id)
{
    gtc_stream *st = find(c, id);
    return st ? &st->reply : NULL;
}

lcow_code gtc_wait(gtc *c, int32_t id, unsigned timeout_ms, gtc_reply **reply, lcow_error *err)
{
    gtc_stream *st = find(c, id);
    if (!st)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "no stream %d", (int)id);
    lcow_code code = flush(c, err);
    if (c->write_closed)
        code = LCOW_OK; /* read what the server sent before it closed */
    while (code == LCOW_OK && !st->reply.closed)
        code = gtc_pump(c, timeout_ms ? timeout_ms : IO_TIMEOUT_MS, err);
    *reply = &st->reply;
    return st->reply.closed ? LCOW_OK : code;
}

bool gtc_message(const gtc_reply *r, size_t index, const uint8_t **data, size_t *len)
{
    size_t off = 0;
    for (size_t i = 0;; i++) {
        if (off + 5 > r->len)
            return false;
        const uint8_t *p = r->data + off;
        size_t n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
        if (off + 5 + n > r->len)
            return false;
        if (i == index) {
            *data = p + 5;
            *len = n;
            return true;
        }
        off += 5 + n;
    }
}

size_t gtc_message_count(const gtc_reply *r)
{
    size_t n = 0;
    const uint8_t *d;
    size_t len;
    while (gtc_message(r, n, &d, &len))
        n++;
    return n;
}

lcow_code gtc_unary(gtc *c, const char *method, const ProtobufCMessage *request,
                    const ProtobufCMessageDescriptor *desc, int *grpc_status, char **message,
                    ProtobufCMessage **response, lcow_error *err)
{
    *grpc_status = -1;
    if (message)
        *message = NULL;
    if (response)
        *response = NULL;
    int32_t id = gtc_start_call(c, method, request);
    if (id < 0)
        return lcow_error_set(err, LCOW_INTERNAL, "cannot start the call");
    gtc_reply *r;
    lcow_code code = gtc_wait(c, id, 0, &r, err);
    if (code == LCOW_OK) {
        *grpc_status = r->grpc_status;
        if (message && r->grpc_message)
            *message = strdup(r->grpc_message);
        const uint8_t *d;
        size_t len;
        if (response && desc && gtc_message(r, 0, &d, &len))
            *response = protobuf_c_message_unpack(desc, NULL, len, d);
    }
    gtc_forget(c, id);
    return code;
}

lcow_code gtc_reset(gtc *c, int32_t id, lcow_error *err)
{
    nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    return flush(c, err);
}

lcow_code gtc_send_raw(gtc *c, const void *data, size_t len, lcow_error *err)
{
    lcow_code code = flush(c, err);
    if (code == LCOW_OK)
        code = lcow_transport_write(c->t, data, len, IO_TIMEOUT_MS, err);
    return code;
}

void gtc_set_read_chunk(gtc *c, size_t bytes)
{
    c->read_chunk = bytes;
}

bool gtc_goaway(const gtc *c, uint32_t *error_code)
{
    if (c->goaway && error_code)
        *error_code = c->goaway_code;
    return c->goaway;
}

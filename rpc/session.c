/* Sessions (per-connection request queues) and the worker pool that runs
 * them. See session.h. */
#include "rpc/session.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/os/thread.h"
#include "rpc/dispatch.h"
#include "rpc/frame.h"
#include "rpc/proto.h"

/* A session runs at most this many jobs before yielding its worker, so one
 * busy pipelining client cannot starve the others. */
#define SESSION_BATCH 16
/* Requests one feed may run inline on the I/O thread; the rest of a large
 * pipelined burst goes to the workers, so one client cannot hold an I/O
 * thread (and the other connections it serves) for long. */
#define INLINE_BUDGET 256

typedef struct job {
    struct job *next;
    bool decoded; /* req holds a decoded request */
    lcow_request req;
    msgpack_sbuffer out; /* !decoded: a ready error response */
} job;

struct lcow_session {
    lcow_rpc_pool *pool;
    lcow_snapshotter *snapshotter;
    const lcow_session_ops *ops;
    void *transport;
    atomic_int refs;

    lcow_frame_reader reader; /* I/O thread only */
    lcow_code feed_code;      /* set by the frame sink on allocation failure */
    unsigned inline_budget;   /* left for this feed */
    msgpack_sbuffer scratch;  /* answers of inline requests, reused */

    lcow_mutex lock; /* guards everything below */
    job *head, *tail;
    size_t pending; /* queued + running */
    bool scheduled; /* in the pool queue or on a worker */
    bool closed;
    msgpack_sbuffer out;
    size_t out_off;
    struct lcow_session *next_ready; /* pool queue link (pool lock) */
};

struct lcow_rpc_pool {
    lcow_mutex lock;
    lcow_cond wake;
    lcow_session *head, *tail;
    bool shutdown;
    unsigned thread_count;
    lcow_thread *threads;
    atomic_uint inflight;
};

/* ---- pool ------------------------------------------------------------- */

static void free_job(job *j)
{
    if (j->decoded)
        lcow_params_free(&j->req.params);
    msgpack_sbuffer_destroy(&j->out);
    free(j);
}

/* Appends s to the pool's ready queue and wakes a worker; the queue holds
 * the reference the caller took when s was scheduled. */
static void pool_enqueue(lcow_rpc_pool *pool, lcow_session *s)
{
    lcow_mutex_lock(&pool->lock);
    s->next_ready = NULL;
    if (pool->tail)
        pool->tail->next_ready = s;
    else
        pool->head = s;
    pool->tail = s;
    lcow_cond_signal(&pool->wake);
    lcow_mutex_unlock(&pool->lock);
}

static void run_session(lcow_rpc_pool *pool, lcow_session *s)
{
    for (int n = 0;; n++) {
        lcow_mutex_lock(&s->lock);
        job *j = s->head;
        if (!j || n == SESSION_BATCH) {
            bool requeue = j != NULL;
            if (!requeue)
                s->scheduled = false;
            lcow_mutex_unlock(&s->lock);
            if (requeue) {
                pool_enqueue(pool, s);
            } else {
                lcow_session_unref(s);
            }
            return;
        }
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        bool closed = s->closed;
        lcow_mutex_unlock(&s->lock);

        if (!closed && j->decoded) {
            if (!lcow_dispatch_respond(s->snapshotter, &j->req, &j->out))
                LCOW_LOGE("rpc: out of memory answering msgid %u", (unsigned)j->req.msgid);
        }

        lcow_mutex_lock(&s->lock);
        if (!s->closed && j->out.size > 0)
            msgpack_sbuffer_write(&s->out, j->out.data, j->out.size);
        s->pending--;
        lcow_mutex_unlock(&s->lock);
        atomic_fetch_sub(&pool->inflight, 1);
        free_job(j);
        s->ops->notify(s->transport);
    }
}

static void *worker_main(void *arg)
{
    lcow_rpc_pool *pool = arg;
    for (;;) {
        lcow_mutex_lock(&pool->lock);
        while (!pool->shutdown && !pool->head)
            lcow_cond_wait(&pool->wake, &pool->lock);
        if (pool->shutdown) {
            lcow_mutex_unlock(&pool->lock);
            return NULL;
        }
        lcow_session *s = pool->head;
        pool->head = s->next_ready;
        if (!pool->head)
            pool->tail = NULL;
        lcow_mutex_unlock(&pool->lock);
        run_session(pool, s);
    }
}

lcow_rpc_pool *lcow_rpc_pool_create(unsigned threads, lcow_error *err)
{
    lcow_rpc_pool *pool = calloc(1, sizeof *pool);
    if (threads == 0)
        threads = 4;
    if (pool)
        pool->threads = calloc(threads, sizeof *pool->threads);
    if (!pool || !pool->threads) {
        free(pool);
        lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    lcow_mutex_init(&pool->lock);
    lcow_cond_init(&pool->wake);
    atomic_init(&pool->inflight, 0);
    for (unsigned i = 0; i < threads; i++) {
        if (!lcow_thread_create(&pool->threads[i], worker_main, pool)) {
            lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "cannot start worker thread %u", i);
            lcow_rpc_pool_shutdown(pool);
            lcow_rpc_pool_free(pool);
            return NULL;
        }
        pool->thread_count = i + 1;
    }
    return pool;
}

void lcow_rpc_pool_shutdown(lcow_rpc_pool *pool)
{
    if (!pool)
        return;
    lcow_mutex_lock(&pool->lock);
    pool->shutdown = true;
    lcow_cond_broadcast(&pool->wake);
    lcow_mutex_unlock(&pool->lock);
    for (unsigned i = 0; i < pool->thread_count; i++)
        lcow_thread_join(pool->threads[i], NULL);
    pool->thread_count = 0;
    /* Sessions still queued: drop their jobs and the queue's reference. */
    lcow_session *s = pool->head;
    pool->head = pool->tail = NULL;
    while (s) {
        lcow_session *next = s->next_ready;
        lcow_session_close(s);
        lcow_mutex_lock(&s->lock);
        s->scheduled = false;
        lcow_mutex_unlock(&s->lock);
        lcow_session_unref(s);
        s = next;
    }
}

void lcow_rpc_pool_free(lcow_rpc_pool *pool)
{
    if (!pool)
        return;
    lcow_cond_destroy(&pool->wake);
    lcow_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

unsigned lcow_rpc_pool_inflight(const lcow_rpc_pool *pool)
{
    return atomic_load(&((lcow_rpc_pool *)pool)->inflight);
}

/* ---- session ---------------------------------------------------------- */

lcow_session *lcow_session_create(lcow_rpc_pool *pool, lcow_snapshotter *snapshotter,
                                  size_t max_frame_bytes, const lcow_session_ops *ops,
                                  void *transport)
{
    lcow_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!lcow_frame_reader_init(&s->reader, max_frame_bytes)) {
        free(s);
        return NULL;
    }
    s->pool = pool;
    s->snapshotter = snapshotter;
    s->ops = ops;
    s->transport = transport;
    atomic_init(&s->refs, 1);
    lcow_mutex_init(&s->lock);
    msgpack_sbuffer_init(&s->out);
    msgpack_sbuffer_init(&s->scratch);
    return s;
}

void lcow_session_ref(lcow_session *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void lcow_session_unref(lcow_session *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    lcow_session_close(s);
    lcow_frame_reader_destroy(&s->reader);
    msgpack_sbuffer_destroy(&s->out);
    msgpack_sbuffer_destroy(&s->scratch);
    lcow_mutex_destroy(&s->lock);
    const lcow_session_ops *ops = s->ops;
    void *transport = s->transport;
    free(s);
    if (ops->destroy)
        ops->destroy(transport);
}

static void enqueue(lcow_session *s, job *j)
{
    bool schedule = false;
    lcow_mutex_lock(&s->lock);
    if (s->closed) {
        lcow_mutex_unlock(&s->lock);
        free_job(j);
        return;
    }
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->pending++;
    if (!s->scheduled) {
        s->scheduled = true;
        schedule = true;
    }
    lcow_mutex_unlock(&s->lock);
    lcow_rpc_pool *pool = s->pool;
    atomic_fetch_add(&pool->inflight, 1);
    if (schedule) {
        lcow_session_ref(s);
        pool_enqueue(pool, s);
    }
}

/* Runs a cheap request on the calling (I/O) thread when nothing of this
 * session is queued or running, so order is kept; false = queue it. No
 * allocation on this path beyond what decoding and the core call need. */
static bool run_inline(lcow_session *s, const lcow_request *req)
{
    if (s->inline_budget == 0)
        return false;
    lcow_mutex_lock(&s->lock);
    bool idle = s->pending == 0 && !s->closed;
    lcow_mutex_unlock(&s->lock);
    if (!idle)
        return false;
    s->inline_budget--;
    s->scratch.size = 0;
    if (!lcow_dispatch_respond(s->snapshotter, req, &s->scratch))
        LCOW_LOGE("rpc: out of memory answering msgid %u", (unsigned)req->msgid);
    lcow_mutex_lock(&s->lock);
    if (!s->closed && s->scratch.size > 0)
        msgpack_sbuffer_write(&s->out, s->scratch.data, s->scratch.size);
    lcow_mutex_unlock(&s->lock);
    if (s->scratch.alloc > (64u << 10)) {
        /* A large answer (a long Walk page): give the memory back. */
        msgpack_sbuffer_destroy(&s->scratch);
        msgpack_sbuffer_init(&s->scratch);
    }
    return true;
}

static void frame_sink(void *ctx, const lcow_frame_event *ev)
{
    lcow_session *s = ctx;
    lcow_request req;
    bool decoded = false, has_msgid = ev->has_msgid;
    uint32_t msgid = ev->msgid;
    lcow_code code = ev->code;
    const char *message = ev->message;
    lcow_error err;
    lcow_error_clear(&err);
    if (ev->object) {
        has_msgid = false;
        code = lcow_proto_decode_request(ev->object, &req, &has_msgid, &err);
        decoded = code == LCOW_OK;
        msgid = req.msgid;
        message = err.message;
        if (decoded && lcow_dispatch_runs_inline(req.method) && run_inline(s, &req)) {
            lcow_params_free(&req.params);
            return;
        }
    }
    job *j = calloc(1, sizeof *j);
    if (!j) {
        if (decoded)
            lcow_params_free(&req.params);
        s->feed_code = LCOW_RESOURCE_EXHAUSTED;
        return;
    }
    msgpack_sbuffer_init(&j->out);
    if (decoded) {
        j->decoded = true;
        j->req = req; /* the job owns the params now */
    } else {
        lcow_dispatch_error(&j->out, has_msgid, msgid, code, message);
    }
    enqueue(s, j);
}

lcow_code lcow_session_feed(lcow_session *s, const void *data, size_t len, lcow_error *err)
{
    s->feed_code = LCOW_OK;
    s->inline_budget = INLINE_BUDGET;
    lcow_code code = lcow_frame_reader_feed(&s->reader, data, len, frame_sink, s, err);
    if (code == LCOW_OK && s->feed_code != LCOW_OK)
        code = lcow_error_set(err, s->feed_code, "out of memory queueing a request");
    return code;
}

size_t lcow_session_pending(lcow_session *s)
{
    lcow_mutex_lock(&s->lock);
    size_t n = s->pending;
    lcow_mutex_unlock(&s->lock);
    return n;
}

size_t lcow_session_output_bytes(lcow_session *s)
{
    lcow_mutex_lock(&s->lock);
    size_t n = s->out.size - s->out_off;
    lcow_mutex_unlock(&s->lock);
    return n;
}

bool lcow_session_write(lcow_session *s, lcow_session_write_fn write_fn, void *ctx)
{
    bool ok = true;
    lcow_mutex_lock(&s->lock);
    while (s->out_off < s->out.size) {
        long n = write_fn(ctx, s->out.data + s->out_off, s->out.size - s->out_off);
        if (n < 0) {
            ok = false;
            break;
        }
        if (n == 0)
            break;
        s->out_off += (size_t)n;
    }
    if (s->out_off == s->out.size) {
        s->out.size = 0;
        s->out_off = 0;
        if (s->out.alloc > (1u << 20)) {
            /* Give back the memory of a burst. */
            msgpack_sbuffer_destroy(&s->out);
            msgpack_sbuffer_init(&s->out);
        }
    }
    lcow_mutex_unlock(&s->lock);
    return ok;
}

bool lcow_session_take_output(lcow_session *s, msgpack_sbuffer *out)
{
    lcow_mutex_lock(&s->lock);
    bool any = s->out.size > s->out_off;
    if (any) {
        if (s->out_off > 0) {
            memmove(s->out.data, s->out.data + s->out_off, s->out.size - s->out_off);
            s->out.size -= s->out_off;
            s->out_off = 0;
        }
        *out = s->out;
        msgpack_sbuffer_init(&s->out);
    }
    lcow_mutex_unlock(&s->lock);
    return any;
}

void lcow_session_close(lcow_session *s)
{
    lcow_mutex_lock(&s->lock);
    s->closed = true;
    job *j = s->head;
    size_t dropped = 0;
    s->head = s->tail = NULL;
    s->out.size = 0;
    s->out_off = 0;
    while (j) {
        job *next = j->next;
        free_job(j);
        dropped++;
        j = next;
    }
    s->pending -= dropped;
    lcow_mutex_unlock(&s->lock);
    if (dropped)
        atomic_fetch_sub(&s->pool->inflight, (unsigned)dropped);
}

/* Sessions (per-connection request queues) and the worker pool that runs
 * them. See session.h. */
#include "rpc/session.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/alloc.h"
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
/* Small answers are packed into the last output chunk up to this size. */
#define CHUNK_PACK ((size_t)64 << 10)

/* A request waiting for a worker, and afterwards a chunk of output: the
 * answers of a session wait for the transport in a list of chunks. A job's
 * own answer buffer is linked as it is (no copy, no allocation); small
 * answers are packed into the last chunk. Sent chunks are freed one by one,
 * so output for a slow reader never builds one big buffer that has to grow
 * or move. */
typedef struct job {
    struct job *next; /* the job queue, then the output list */
    bool decoded;     /* req holds a decoded request */
    lcow_request req;
    msgpack_sbuffer out; /* the answer (!decoded: a ready error response) */
} job;

struct lcow_session {
    lcow_rpc_pool *pool;
    lcow_snapshotter *snapshotter;
    const lcow_session_ops *ops;
    void *transport;
    atomic_int refs;
    lcow_session_limits limits;

    lcow_frame_reader reader; /* I/O thread only */
    lcow_code feed_code;      /* set by the frame sink on allocation failure */
    bool feed_has_msgid;      /* ... and the msgid of the request it lost */
    uint32_t feed_msgid;
    unsigned inline_budget;  /* left for this feed */
    msgpack_sbuffer scratch; /* answers of inline requests, reused */

    lcow_mutex lock; /* guards everything below */
    job *head, *tail;
    size_t pending; /* queued + running */
    bool scheduled; /* in the pool queue or on a worker */
    bool stalled;   /* jobs wait until the output drains below max_output */
    bool closed;
    bool failed;                     /* an answer was lost: see lcow_session_failed */
    job *out_head, *out_tail;        /* output chunks in order */
    size_t out_bytes;                /* their sizes together */
    size_t out_off;                  /* bytes of out_head already sent */
    size_t lent;                     /* taken by the transport, not yet reported sent */
    struct lcow_session *next_ready; /* pool queue link (pool lock) */
    /* Another protocol (grpc/): every call goes to proto on impl. */
    const lcow_session_proto *proto;
    void *impl;
};

struct lcow_rpc_pool {
    lcow_mutex lock;
    lcow_cond wake;
    lcow_session *head, *tail;
    lcow_rpc_task *task_head, *task_tail; /* lcow_rpc_pool_submit */
    bool tasks_first;                     /* a task goes next if both wait */
    bool shutdown;
    unsigned thread_count;
    lcow_thread *threads;
    atomic_uint inflight;
};

/* ---- pool ------------------------------------------------------------- */

/* Output not yet sent to the client (s->lock held). */
static size_t unsent_locked(const lcow_session *s)
{
    return s->out_bytes - s->out_off + s->lent;
}

/* What the output holds in memory (the sent part of the first chunk counts
 * until the chunk is freed): the limit applies to this. */
static bool output_full_locked(const lcow_session *s)
{
    return s->limits.max_output && s->out_bytes + s->lent >= s->limits.max_output;
}

static void free_job(job *j)
{
    if (j->decoded)
        lcow_params_free(&j->req.params);
    msgpack_sbuffer_destroy(&j->out);
    free(j);
}

/* Packs len bytes into the last chunk when they fit under CHUNK_PACK
 * (s->lock held); false = link a chunk of their own. */
static bool pack_locked(lcow_session *s, const char *data, size_t len)
{
    job *t = s->out_tail;
    if (!t || t->out.size + len > CHUNK_PACK || msgpack_sbuffer_write(&t->out, data, len) != 0)
        return false;
    s->out_bytes += len;
    return true;
}

/* Appends c (its answer in c->out) as a chunk of its own (s->lock held). */
static void link_chunk_locked(lcow_session *s, job *c)
{
    if (c->decoded) {
        lcow_params_free(&c->req.params);
        c->decoded = false;
    }
    c->next = NULL;
    if (s->out_tail)
        s->out_tail->next = c;
    else
        s->out_head = c;
    s->out_tail = c;
    s->out_bytes += c->out.size;
}

/* Unlinks the first chunk, fully sent or taken (s->lock held). */
static job *pop_chunk_locked(lcow_session *s)
{
    job *c = s->out_head;
    s->out_head = c->next;
    if (!s->out_head)
        s->out_tail = NULL;
    s->out_bytes -= c->out.size;
    s->out_off = 0;
    return c;
}

/* Appends the answer of a job that ran (s->lock held); the job is packed
 * into the last chunk (then freed) or becomes a chunk itself. */
static void output_job_locked(lcow_session *s, job *j)
{
    if (s->failed || j->out.size == 0 || pack_locked(s, j->out.data, j->out.size))
        free_job(j);
    else
        link_chunk_locked(s, j);
}

/* An answer could not be produced or queued (s->lock held): marks the
 * session failed (the transport closes the connection once the answers
 * before it are out) and drops the queued jobs, whose answers would come
 * after the lost one. Returns how many were dropped (for the pool's
 * in-flight count, which the caller lowers after unlocking). */
static size_t fail_locked(lcow_session *s)
{
    s->failed = true;
    size_t dropped = 0;
    for (job *j = s->head, *next; j; j = next) {
        next = j->next;
        free_job(j);
        dropped++;
    }
    s->head = s->tail = NULL;
    s->pending -= dropped;
    return dropped;
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
        if (j && !s->closed && output_full_locked(s)) {
            /* The client is not reading: its jobs wait (off the pool) until
             * the transport has written enough (resume_locked). */
            s->stalled = true;
            s->scheduled = false;
            lcow_mutex_unlock(&s->lock);
            lcow_session_unref(s);
            return;
        }
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
        bool closed = s->closed || s->failed;
        lcow_mutex_unlock(&s->lock);

        /* A job that is not a decoded request carries its (error) answer. */
        bool answered =
            closed || !j->decoded || lcow_dispatch_respond(s->snapshotter, &j->req, &j->out);
        uint32_t msgid = j->req.msgid;

        lcow_mutex_lock(&s->lock);
        size_t dropped = 0;
        bool lost = false;
        if (s->closed || s->failed) {
            free_job(j);
        } else if (!answered) {
            free_job(j);
            dropped = fail_locked(s);
            lost = true;
        } else {
            output_job_locked(s, j);
        }
        s->pending--;
        lcow_mutex_unlock(&s->lock);
        atomic_fetch_sub(&pool->inflight, 1 + (unsigned)dropped);
        if (lost)
            LCOW_LOGE("rpc: out of memory answering msgid %u (not even ResourceExhausted could "
                      "be encoded): the connection closes after the answers before it",
                      (unsigned)msgid);
        s->ops->notify(s->transport);
    }
}

static void *worker_main(void *arg)
{
    lcow_rpc_pool *pool = arg;
    for (;;) {
        lcow_mutex_lock(&pool->lock);
        while (!pool->shutdown && !pool->head && !pool->task_head)
            lcow_cond_wait(&pool->wake, &pool->lock);
        if (pool->shutdown) {
            lcow_mutex_unlock(&pool->lock);
            return NULL;
        }
        lcow_rpc_task *task = pool->task_head;
        if (task && (!pool->head || pool->tasks_first)) {
            /* Sessions and tasks take turns. */
            pool->task_head = task->next;
            if (!pool->task_head)
                pool->task_tail = NULL;
            pool->tasks_first = false;
            lcow_mutex_unlock(&pool->lock);
            task->run(task, false);
            atomic_fetch_sub(&pool->inflight, 1);
            continue;
        }
        pool->tasks_first = true;
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
            lcow_rpc_pool_destroy(pool);
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
    /* Tasks still queued: cleaned up, not run. */
    lcow_mutex_lock(&pool->lock);
    lcow_rpc_task *task = pool->task_head;
    pool->task_head = pool->task_tail = NULL;
    lcow_mutex_unlock(&pool->lock);
    while (task) {
        lcow_rpc_task *next = task->next;
        task->run(task, true);
        atomic_fetch_sub(&pool->inflight, 1);
        task = next;
    }
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

void lcow_rpc_pool_destroy(lcow_rpc_pool *pool)
{
    if (!pool)
        return;
    lcow_cond_destroy(&pool->wake);
    lcow_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

bool lcow_rpc_pool_submit(lcow_rpc_pool *pool, lcow_rpc_task *task)
{
    lcow_mutex_lock(&pool->lock);
    bool ok = !pool->shutdown;
    if (ok) {
        task->next = NULL;
        if (pool->task_tail)
            pool->task_tail->next = task;
        else
            pool->task_head = task;
        pool->task_tail = task;
        atomic_fetch_add(&pool->inflight, 1);
        lcow_cond_signal(&pool->wake);
    }
    lcow_mutex_unlock(&pool->lock);
    return ok;
}

unsigned lcow_rpc_pool_inflight(const lcow_rpc_pool *pool)
{
    return atomic_load(&((lcow_rpc_pool *)pool)->inflight);
}

/* ---- session ---------------------------------------------------------- */

/* Output drained (s->lock held): true when stalled jobs may run again; the
 * caller then hands the session to the pool with resume(). */
static bool resume_locked(lcow_session *s)
{
    if (!s->stalled || s->closed || s->failed || !s->head || output_full_locked(s))
        return false;
    s->stalled = false;
    s->scheduled = true;
    return true;
}

static void resume(lcow_session *s)
{
    lcow_session_ref(s);
    pool_enqueue(s->pool, s);
}

lcow_session *lcow_session_create(lcow_rpc_pool *pool, lcow_snapshotter *snapshotter,
                                  const lcow_session_limits *limits, const lcow_session_ops *ops,
                                  void *transport)
{
    lcow_session *s = lcow_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->limits = *limits;
    if (limits->protocol) {
        s->proto = limits->protocol;
        s->ops = ops;
        s->transport = transport;
        atomic_init(&s->refs, 1);
        lcow_mutex_init(&s->lock); /* unused, but every session has one */
        s->impl = s->proto->create(s, pool, snapshotter, limits);
        if (!s->impl) {
            lcow_mutex_destroy(&s->lock);
            free(s);
            return NULL;
        }
        return s;
    }
    if (!lcow_frame_reader_init(&s->reader, limits->max_frame_bytes)) {
        free(s);
        return NULL;
    }
    s->pool = pool;
    s->snapshotter = snapshotter;
    s->ops = ops;
    s->transport = transport;
    atomic_init(&s->refs, 1);
    lcow_mutex_init(&s->lock);
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
    if (s->proto) {
        const lcow_session_ops *ops = s->ops;
        void *transport = s->transport;
        s->proto->close(s->impl);
        s->proto->destroy(s->impl);
        lcow_mutex_destroy(&s->lock);
        free(s);
        if (ops->destroy)
            ops->destroy(transport);
        return;
    }
    lcow_session_close(s);
    lcow_frame_reader_destroy(&s->reader);
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
    if (!s->scheduled && !s->stalled) {
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
    bool idle = s->pending == 0 && !s->closed && !s->failed;
    lcow_mutex_unlock(&s->lock);
    if (!idle)
        return false;
    s->inline_budget--;
    s->scratch.size = 0;
    bool answered = lcow_dispatch_respond(s->snapshotter, req, &s->scratch);
    lcow_mutex_lock(&s->lock);
    bool done = answered && (s->closed || pack_locked(s, s->scratch.data, s->scratch.size));
    lcow_mutex_unlock(&s->lock);
    if (answered && !done) {
        /* A large answer: its buffer becomes a chunk of its own. */
        job *c = lcow_calloc(1, sizeof *c);
        if (c) {
            c->out = s->scratch;
            msgpack_sbuffer_init(&s->scratch);
            lcow_mutex_lock(&s->lock);
            if (!s->closed)
                link_chunk_locked(s, c);
            else
                free_job(c);
            lcow_mutex_unlock(&s->lock);
            done = true;
        }
    }
    if (!done) {
        lcow_mutex_lock(&s->lock);
        size_t dropped = fail_locked(s); /* 0: nothing was queued */
        lcow_mutex_unlock(&s->lock);
        if (dropped)
            atomic_fetch_sub(&s->pool->inflight, (unsigned)dropped);
        LCOW_LOGE("rpc: out of memory %s msgid %u: the connection closes after the answers "
                  "before it",
                  answered ? "queueing the answer to" : "answering", (unsigned)req->msgid);
    }
    if (s->scratch.alloc > (64u << 10)) {
        /* A large answer (a long Walk page): give the memory back. */
        msgpack_sbuffer_destroy(&s->scratch);
        msgpack_sbuffer_init(&s->scratch);
    }
    return true;
}

static void handle_frame(lcow_session *s, const lcow_frame_event *ev)
{
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
    job *j = lcow_calloc(1, sizeof *j);
    if (j) {
        msgpack_sbuffer_init(&j->out);
        if (decoded) {
            j->decoded = true;
            j->req = req; /* the job owns the params now */
        } else if (!lcow_dispatch_error(&j->out, has_msgid, msgid, code, message)) {
            free_job(j);
            j = NULL;
        }
    } else if (decoded) {
        lcow_params_free(&req.params);
    }
    if (!j) {
        /* Neither queued nor answerable: the feed stops with an error and
         * the transport closes the connection once earlier answers are
         * out (lcow_session_feed's message says why). */
        s->feed_code = LCOW_RESOURCE_EXHAUSTED;
        s->feed_msgid = msgid;
        s->feed_has_msgid = decoded || has_msgid;
        return;
    }
    enqueue(s, j);
}

/* Each frame, then the limits: a full session stops the feed right after
 * this request, so one read's worth of pipelined requests cannot queue more
 * than the limits allow. */
static void frame_sink(void *ctx, const lcow_frame_event *ev)
{
    lcow_session *s = ctx;
    handle_frame(s, ev);
    if (s->feed_code != LCOW_OK || !lcow_session_accepting(s) || lcow_session_failed(s))
        lcow_frame_reader_pause(&s->reader);
}

lcow_code lcow_session_feed(lcow_session *s, const void *data, size_t len, size_t *consumed,
                            lcow_error *err)
{
    if (s->proto)
        return s->proto->feed(s->impl, data, len, consumed, err);
    s->feed_code = LCOW_OK;
    s->inline_budget = INLINE_BUDGET;
    lcow_code code =
        lcow_frame_reader_feed_some(&s->reader, data, len, frame_sink, s, consumed, err);
    if (code == LCOW_OK && s->feed_code != LCOW_OK) {
        if (s->feed_has_msgid)
            code = lcow_error_set(err, s->feed_code, "out of memory queueing or answering msgid %u",
                                  (unsigned)s->feed_msgid);
        else
            code = lcow_error_set(err, s->feed_code, "out of memory answering a request");
    }
    return code;
}

bool lcow_session_accepting(lcow_session *s)
{
    if (s->proto)
        return s->proto->accepting(s->impl);
    lcow_mutex_lock(&s->lock);
    bool ok = !s->failed && (!s->limits.max_pending || s->pending < s->limits.max_pending) &&
              !output_full_locked(s);
    lcow_mutex_unlock(&s->lock);
    return ok;
}

bool lcow_session_output_full(lcow_session *s)
{
    if (s->proto)
        return false;
    lcow_mutex_lock(&s->lock);
    bool full = output_full_locked(s);
    lcow_mutex_unlock(&s->lock);
    return full;
}

bool lcow_session_in_request(lcow_session *s)
{
    if (s->proto)
        return s->proto->in_request && s->proto->in_request(s->impl);
    return lcow_frame_reader_in_frame(&s->reader);
}

uint64_t lcow_session_requests(lcow_session *s)
{
    if (s->proto)
        return s->proto->requests ? s->proto->requests(s->impl) : 0;
    return s->reader.frames;
}

size_t lcow_session_pending(lcow_session *s)
{
    if (s->proto)
        return s->proto->pending(s->impl);
    lcow_mutex_lock(&s->lock);
    size_t n = s->pending;
    lcow_mutex_unlock(&s->lock);
    return n;
}

size_t lcow_session_output_bytes(lcow_session *s)
{
    if (s->proto)
        return s->proto->output_bytes(s->impl);
    lcow_mutex_lock(&s->lock);
    size_t n = unsent_locked(s);
    lcow_mutex_unlock(&s->lock);
    return n;
}

bool lcow_session_write(lcow_session *s, lcow_session_write_fn write_fn, void *ctx)
{
    if (s->proto)
        return s->proto->write(s->impl, write_fn, ctx);
    bool ok = true;
    job *sent = NULL;
    lcow_mutex_lock(&s->lock);
    while (s->out_head) {
        job *c = s->out_head;
        if (s->out_off < c->out.size) {
            long n = write_fn(ctx, c->out.data + s->out_off, c->out.size - s->out_off);
            if (n < 0) {
                ok = false;
                break;
            }
            if (n == 0)
                break;
            s->out_off += (size_t)n;
            if (s->out_off < c->out.size)
                continue;
        }
        c = pop_chunk_locked(s);
        c->next = sent;
        sent = c;
    }
    bool wake = resume_locked(s);
    lcow_mutex_unlock(&s->lock);
    while (sent) {
        job *next = sent->next;
        free_job(sent);
        sent = next;
    }
    if (wake)
        resume(s);
    return ok;
}

bool lcow_session_take_output(lcow_session *s, msgpack_sbuffer *out)
{
    if (s->proto)
        return s->proto->take_output(s->impl, out);
    lcow_mutex_lock(&s->lock);
    job *c = s->out_head;
    if (c) {
        if (s->out_off > 0) {
            memmove(c->out.data, c->out.data + s->out_off, c->out.size - s->out_off);
            c->out.size -= s->out_off;
            s->out_bytes -= s->out_off;
            s->out_off = 0;
        }
        c = pop_chunk_locked(s);
        s->lent += c->out.size;
        *out = c->out;
        msgpack_sbuffer_init(&c->out);
    }
    lcow_mutex_unlock(&s->lock);
    if (c)
        free_job(c);
    return c != NULL;
}

void lcow_session_output_sent(lcow_session *s, size_t n)
{
    if (s->proto) {
        s->proto->output_sent(s->impl, n);
        return;
    }
    lcow_mutex_lock(&s->lock);
    s->lent -= n < s->lent ? n : s->lent;
    bool wake = resume_locked(s);
    lcow_mutex_unlock(&s->lock);
    if (wake)
        resume(s);
}

void lcow_session_close(lcow_session *s)
{
    if (s->proto) {
        s->proto->close(s->impl);
        return;
    }
    lcow_mutex_lock(&s->lock);
    s->closed = true;
    job *j = s->head;
    size_t dropped = 0;
    s->head = s->tail = NULL;
    s->lent = 0;
    s->stalled = false;
    while (j) {
        job *next = j->next;
        free_job(j);
        dropped++;
        j = next;
    }
    while (s->out_head)
        free_job(pop_chunk_locked(s));
    s->pending -= dropped;
    lcow_mutex_unlock(&s->lock);
    if (dropped)
        atomic_fetch_sub(&s->pool->inflight, (unsigned)dropped);
}

void lcow_session_notify(lcow_session *s)
{
    s->ops->notify(s->transport);
}

void lcow_session_stopping(lcow_session *s)
{
    if (s->proto && s->proto->stopping)
        s->proto->stopping(s->impl);
}

bool lcow_session_failed(lcow_session *s)
{
    if (s->proto)
        return false; /* a protocol closes its connection itself */
    lcow_mutex_lock(&s->lock);
    bool failed = s->failed;
    lcow_mutex_unlock(&s->lock);
    return failed;
}

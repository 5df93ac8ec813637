/* Sessions (rpc/session): driven directly through rpc/session.h, without
 * sockets, with a fake transport (lcow_session_ops capturing notify and
 * destroy) and the in-memory fake core (rpc_fake_core.c): whole frames,
 * frames split at every byte, several frames per feed, garbage and the
 * protocol error path, the inline path (Stat, Version) and the worker pool
 * (Prepare, Usage), answers in msgid order one per request, the pipelining
 * bounds (max_pending, max_output: the feed stops, queued jobs stall, both
 * resume when output is taken) and destruction with requests in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/frame.h"
#include "rpc/proto.h"
#include "rpc/session.h"
#include "unit/testlib.h"

lcow_snapshotter *fake_core_new(void);
void fake_core_free(lcow_snapshotter *s);

/* ---- fake transport ------------------------------------------------------ */

typedef struct fake_transport {
    atomic_int notified;
    atomic_int destroyed;
} fake_transport;

static void fake_notify(void *transport)
{
    atomic_fetch_add(&((fake_transport *)transport)->notified, 1);
}

static void fake_destroy(void *transport)
{
    atomic_fetch_add(&((fake_transport *)transport)->destroyed, 1);
}

static const lcow_session_ops fake_ops = {fake_notify, fake_destroy};

typedef struct fixture {
    lcow_snapshotter *core;
    lcow_rpc_pool *pool;
    fake_transport transport;
    lcow_session *s;
    msgpack_sbuffer wire; /* the requests fed */
    msgpack_packer pk;
    msgpack_sbuffer output;   /* everything taken from the session */
    lcow_method methods[512]; /* method of each msgid, to decode answers */
} fixture;

static fixture *fixture_new(const lcow_session_limits *limits)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->core = fake_core_new();
    lcow_error err;
    f->pool = lcow_rpc_pool_create(2, &err);
    assert_non_null(f->pool);
    atomic_init(&f->transport.notified, 0);
    atomic_init(&f->transport.destroyed, 0);
    lcow_session_limits none = {0};
    f->s = lcow_session_create(f->pool, f->core, limits ? limits : &none, &fake_ops, &f->transport);
    assert_non_null(f->s);
    msgpack_sbuffer_init(&f->wire);
    msgpack_packer_init(&f->pk, &f->wire, msgpack_sbuffer_write);
    msgpack_sbuffer_init(&f->output);
    return f;
}

/* The transport's reference goes; the session must be destroyed (once). */
static void fixture_free(fixture *f)
{
    if (f->s) {
        lcow_session_close(f->s);
        lcow_session_unref(f->s);
    }
    lcow_rpc_pool_shutdown(f->pool);
    assert_int_equal(atomic_load(&f->transport.destroyed), 1);
    assert_int_equal(lcow_rpc_pool_inflight(f->pool), 0);
    lcow_rpc_pool_destroy(f->pool);
    fake_core_free(f->core);
    msgpack_sbuffer_destroy(&f->wire);
    msgpack_sbuffer_destroy(&f->output);
    free(f);
}

/* Appends one request to f->wire; returns its size. */
static size_t add_request(fixture *f, uint32_t msgid, lcow_method method, const char *key)
{
    size_t before = f->wire.size;
    lcow_params params;
    memset(&params, 0, sizeof params);
    params.key = (char *)key;
    assert_true(msgid < 512);
    f->methods[msgid] = method;
    assert_true(lcow_proto_encode_request(&f->pk, msgid, method, &params));
    return f->wire.size - before;
}

static void feed_all(fixture *f, const void *data, size_t len)
{
    size_t consumed = 0;
    lcow_error err;
    assert_int_equal(lcow_session_feed(f->s, data, len, &consumed, &err), LCOW_OK);
    assert_int_equal(consumed, len);
}

/* Waits (at most 20 s) until nothing is queued or running. */
static void wait_idle(fixture *f)
{
    for (int i = 0; i < 20000 && lcow_session_pending(f->s) != 0; i++)
        test_sleep_ms(1);
    assert_int_equal(lcow_session_pending(f->s), 0);
}

/* Takes every chunk of output into f->output and reports it sent. */
static void take_all(fixture *f)
{
    msgpack_sbuffer chunk;
    while (lcow_session_take_output(f->s, &chunk)) {
        assert_true(chunk.size > 0);
        msgpack_sbuffer_write(&f->output, chunk.data, chunk.size);
        lcow_session_output_sent(f->s, chunk.size);
        msgpack_sbuffer_destroy(&chunk);
    }
    assert_int_equal(lcow_session_output_bytes(f->s), 0);
}

typedef struct answer {
    bool has_msgid;
    uint32_t msgid;
    lcow_code code; /* the call's code: LCOW_OK or the error sent */
} answer;

/* Decodes the answers in f->output (each of the method its msgid was sent
 * with; answers without msgid as Version); returns how many. */
static size_t answers(fixture *f, answer *out, size_t max)
{
    msgpack_unpacker up;
    assert_true(msgpack_unpacker_init(&up, f->output.size + 16));
    memcpy(msgpack_unpacker_buffer(&up), f->output.data, f->output.size);
    msgpack_unpacker_buffer_consumed(&up, f->output.size);
    msgpack_unpacked obj;
    msgpack_unpacked_init(&obj);
    size_t n = 0;
    msgpack_unpack_return rc;
    while ((rc = msgpack_unpacker_next(&up, &obj)) == MSGPACK_UNPACK_SUCCESS) {
        assert_true(n < max);
        const msgpack_object *o = &obj.data;
        assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o->via.array.size, 4);
        const msgpack_object *id = &o->via.array.ptr[1];
        lcow_method method = LCOW_METHOD_VERSION;
        if (id->type == MSGPACK_OBJECT_POSITIVE_INTEGER && id->via.u64 < 512)
            method = f->methods[id->via.u64];
        lcow_error call_err, err;
        lcow_result result;
        memset(&result, 0, sizeof result);
        lcow_error_clear(&call_err);
        assert_int_equal(lcow_proto_decode_response(o, method, &out[n].has_msgid, &out[n].msgid,
                                                    &call_err, &result, &err),
                         LCOW_OK);
        out[n].code = call_err.code;
        lcow_result_free(&result);
        n++;
    }
    assert_int_equal(rc, MSGPACK_UNPACK_CONTINUE); /* nothing left over */
    msgpack_unpacked_destroy(&obj);
    msgpack_unpacker_destroy(&up);
    return n;
}

/* Every answer has a msgid, they come as first..first+n-1 in order. */
static void expect_in_order(const answer *a, size_t n, uint32_t first)
{
    for (size_t i = 0; i < n; i++) {
        assert_true(a[i].has_msgid);
        assert_int_equal(a[i].msgid, first + i);
    }
}

/* ---- whole frames, inline path and worker pool --------------------------- */

static void inline_requests_are_answered_during_the_feed(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_VERSION, NULL);
    add_request(f, 2, LCOW_METHOD_STAT, "missing");
    add_request(f, 3, LCOW_METHOD_MOUNTS, "missing");
    feed_all(f, f->wire.data, f->wire.size);
    /* Inline: answered on this thread, nothing was queued. */
    assert_int_equal(lcow_session_pending(f->s), 0);
    assert_int_equal(lcow_rpc_pool_inflight(f->pool), 0);
    assert_true(lcow_session_output_bytes(f->s) > 0);
    assert_int_equal(lcow_session_requests(f->s), 3);
    assert_false(lcow_session_in_request(f->s));
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 3);
    expect_in_order(a, 3, 1);
    assert_int_equal(a[0].code, LCOW_OK);
    assert_int_equal(a[1].code, LCOW_NOT_FOUND);
    assert_int_equal(a[2].code, LCOW_NOT_FOUND);
    fixture_free(f);
}

/* Prepare runs on a worker; the Stat behind it must not overtake it (it is
 * queued, not run inline, while the Prepare is pending) and sees its key. */
static void pipelined_requests_keep_their_order(void **state)
{
    fixture *f = fixture_new(NULL);
    uint32_t id = 1;
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        add_request(f, id++, LCOW_METHOD_PREPARE, key);
        add_request(f, id++, LCOW_METHOD_STAT, key);
        add_request(f, id++, LCOW_METHOD_USAGE, key);
    }
    feed_all(f, f->wire.data, f->wire.size);
    wait_idle(f);
    assert_true(atomic_load(&f->transport.notified) > 0);
    take_all(f);
    answer a[128];
    assert_int_equal(answers(f, a, 128), 60);
    expect_in_order(a, 60, 1);
    for (int i = 0; i < 60; i++)
        assert_int_equal(a[i].code, LCOW_OK);
    assert_int_equal(lcow_session_requests(f->s), 60);
    fixture_free(f);
}

/* ---- splits ---------------------------------------------------------------- */

static void frames_split_at_every_byte(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_PREPARE, "a");
    size_t first = f->wire.size;
    add_request(f, 2, LCOW_METHOD_STAT, "a");
    add_request(f, 3, LCOW_METHOD_USAGE, "a");
    add_request(f, 4, LCOW_METHOD_VERSION, NULL);
    const char *p = f->wire.data;
    for (size_t i = 0; i < f->wire.size; i++) {
        feed_all(f, p + i, 1);
        /* In the middle of the first frame: a request has started. */
        if (i + 1 < first)
            assert_true(lcow_session_in_request(f->s));
        if (i + 1 == first)
            assert_false(lcow_session_in_request(f->s));
    }
    assert_false(lcow_session_in_request(f->s));
    assert_int_equal(lcow_session_requests(f->s), 4);
    wait_idle(f);
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 4);
    expect_in_order(a, 4, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].code, LCOW_OK);
    fixture_free(f);
}

/* Every two-piece split of a stream of several frames gives the same
 * answers (each split on a fresh session). */
static void every_two_piece_split_of_several_frames(void **state)
{
    fixture *ref = fixture_new(NULL);
    add_request(ref, 1, LCOW_METHOD_VERSION, NULL);
    add_request(ref, 2, LCOW_METHOD_STAT, "nope");
    add_request(ref, 3, LCOW_METHOD_USAGE, "nope");
    add_request(ref, 4, LCOW_METHOD_STAT, "nope");
    for (size_t cut = 0; cut <= ref->wire.size; cut++) {
        fixture *f = fixture_new(NULL);
        memcpy(f->methods, ref->methods, sizeof f->methods);
        feed_all(f, ref->wire.data, cut);
        feed_all(f, ref->wire.data + cut, ref->wire.size - cut);
        wait_idle(f);
        take_all(f);
        answer a[8];
        assert_int_equal(answers(f, a, 8), 4);
        expect_in_order(a, 4, 1);
        assert_int_equal(a[0].code, LCOW_OK);
        assert_int_equal(a[1].code, LCOW_NOT_FOUND);
        assert_int_equal(a[2].code, LCOW_NOT_FOUND);
        assert_int_equal(a[3].code, LCOW_NOT_FOUND);
        fixture_free(f);
    }
    fixture_free(ref);
}

/* ---- garbage and the protocol error path --------------------------------- */

/* Frames that are msgpack but not requests are answered with an error (with
 * the msgid when it can be read) and the stream goes on. */
static void malformed_frames_are_answered_and_the_stream_goes_on(void **state)
{
    lcow_session_limits limits = {0};
    limits.max_frame_bytes = 256;
    fixture *f = fixture_new(&limits);
    add_request(f, 1, LCOW_METHOD_VERSION, NULL);
    /* Not an array: no msgid. */
    msgpack_pack_int(&f->pk, 42);
    /* An unknown method, msgid 3. */
    msgpack_pack_array(&f->pk, 4);
    msgpack_pack_uint8(&f->pk, 0);
    msgpack_pack_uint32(&f->pk, 3);
    msgpack_pack_str(&f->pk, 4);
    msgpack_pack_str_body(&f->pk, "Nope", 4);
    msgpack_pack_array(&f->pk, 0);
    f->methods[3] = LCOW_METHOD_VERSION;
    /* Oversized (over max_frame_bytes): skipped, answered with its msgid. */
    char big[600];
    memset(big, 'x', sizeof big);
    msgpack_pack_array(&f->pk, 4);
    msgpack_pack_uint8(&f->pk, 0);
    msgpack_pack_uint32(&f->pk, 4);
    msgpack_pack_str(&f->pk, 4);
    msgpack_pack_str_body(&f->pk, "Stat", 4);
    msgpack_pack_array(&f->pk, 1);
    msgpack_pack_map(&f->pk, 1);
    msgpack_pack_str(&f->pk, 3);
    msgpack_pack_str_body(&f->pk, "key", 3);
    msgpack_pack_str(&f->pk, sizeof big);
    msgpack_pack_str_body(&f->pk, big, sizeof big);
    f->methods[4] = LCOW_METHOD_STAT;
    add_request(f, 5, LCOW_METHOD_STAT, "missing");
    feed_all(f, f->wire.data, f->wire.size);
    wait_idle(f);
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 5);
    assert_true(a[0].has_msgid);
    assert_int_equal(a[0].msgid, 1);
    assert_int_equal(a[0].code, LCOW_OK);
    assert_false(a[1].has_msgid);
    assert_int_equal(a[1].code, LCOW_INVALID_ARGUMENT);
    assert_true(a[2].has_msgid);
    assert_int_equal(a[2].msgid, 3);
    assert_int_equal(a[2].code, LCOW_NOT_IMPLEMENTED);
    assert_true(a[3].has_msgid);
    assert_int_equal(a[3].msgid, 4);
    assert_int_equal(a[3].code, LCOW_RESOURCE_EXHAUSTED);
    assert_true(a[4].has_msgid);
    assert_int_equal(a[4].msgid, 5);
    assert_int_equal(a[4].code, LCOW_NOT_FOUND);
    fixture_free(f);
}

/* A byte that cannot start a msgpack object (0xc1): the stream cannot be
 * resynchronised, the feed fails (and keeps failing); the answers to the
 * requests before it are still there to flush. */
static void garbage_fails_the_feed_after_earlier_answers(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_USAGE, "x");
    add_request(f, 2, LCOW_METHOD_STAT, "x");
    size_t good = f->wire.size;
    const char junk[] = {(char)0xc1, 'g', 'a', 'r', 'b', 'a', 'g', 'e'};
    msgpack_sbuffer_write(&f->wire, junk, sizeof junk);
    size_t consumed = 0;
    lcow_error err;
    lcow_error_clear(&err);
    lcow_code code = lcow_session_feed(f->s, f->wire.data, f->wire.size, &consumed, &err);
    assert_int_not_equal(code, LCOW_OK);
    assert_true(err.message[0] != '\0');
    assert_true(consumed >= good);
    /* Still broken on the next feed. */
    code = lcow_session_feed(f->s, junk + 1, sizeof junk - 1, &consumed, &err);
    assert_int_not_equal(code, LCOW_OK);
    wait_idle(f);
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 2);
    expect_in_order(a, 2, 1);
    fixture_free(f);
}

/* ---- write path -------------------------------------------------------- */

typedef struct dribble {
    msgpack_sbuffer *into;
    int calls;
} dribble;

/* Writes at most 3 bytes, and every third call none (would block). */
static long dribble_write(void *ctx, const char *data, size_t len)
{
    dribble *d = ctx;
    if (++d->calls % 3 == 0)
        return 0;
    size_t n = len < 3 ? len : 3;
    msgpack_sbuffer_write(d->into, data, n);
    return (long)n;
}

static long failing_write(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
    return -1;
}

static void write_in_small_pieces(void **state)
{
    fixture *f = fixture_new(NULL);
    for (uint32_t id = 1; id <= 30; id++)
        add_request(f, id, id % 2 ? LCOW_METHOD_USAGE : LCOW_METHOD_STAT, "w");
    feed_all(f, f->wire.data, f->wire.size);
    wait_idle(f);
    dribble d = {&f->output, 0};
    for (int i = 0; i < 100000 && lcow_session_output_bytes(f->s) > 0; i++)
        assert_true(lcow_session_write(f->s, dribble_write, &d));
    assert_int_equal(lcow_session_output_bytes(f->s), 0);
    answer a[64];
    assert_int_equal(answers(f, a, 64), 30);
    expect_in_order(a, 30, 1);
    fixture_free(f);
}

static void write_error_is_reported(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_VERSION, NULL);
    feed_all(f, f->wire.data, f->wire.size);
    assert_true(lcow_session_output_bytes(f->s) > 0);
    assert_false(lcow_session_write(f->s, failing_write, NULL));
    fixture_free(f);
}

/* ---- pipelining bounds ---------------------------------------------------- */

/* max_pending: the feed stops right after the request that fills the
 * session, the rest waits unparsed; it resumes once the jobs have run. */
static void feed_stops_at_max_pending_and_resumes(void **state)
{
    lcow_session_limits limits = {0};
    limits.max_pending = 2;
    fixture *f = fixture_new(&limits);
    size_t one = add_request(f, 1, LCOW_METHOD_USAGE, "sleep:400");
    size_t two = add_request(f, 2, LCOW_METHOD_USAGE, "sleep:400");
    for (uint32_t id = 3; id <= 6; id++)
        add_request(f, id, LCOW_METHOD_STAT, "s");
    size_t consumed = 0;
    lcow_error err;
    assert_int_equal(lcow_session_feed(f->s, f->wire.data, f->wire.size, &consumed, &err), LCOW_OK);
    assert_int_equal(consumed, one + two);
    assert_false(lcow_session_accepting(f->s));
    assert_int_equal(lcow_session_pending(f->s), 2);
    assert_int_equal(lcow_session_requests(f->s), 2);
    assert_false(lcow_session_in_request(f->s)); /* nothing of frame 3 looked at */
    wait_idle(f);
    assert_true(lcow_session_accepting(f->s));
    feed_all(f, f->wire.data + consumed, f->wire.size - consumed);
    wait_idle(f);
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 6);
    expect_in_order(a, 6, 1);
    fixture_free(f);
}

/* max_output with the inline path: answers pile up during the feed until
 * max_output; the feed stops there, taken output still counts until it is
 * reported sent, then the rest is fed. */
static void feed_stops_at_max_output_and_resumes_when_output_is_taken(void **state)
{
    lcow_session_limits limits = {0};
    limits.max_output = 200;
    fixture *f = fixture_new(&limits);
    for (uint32_t id = 1; id <= 40; id++)
        add_request(f, id, LCOW_METHOD_STAT, "missing-key-of-some-length");
    size_t off = 0, feeds = 0;
    while (off < f->wire.size) {
        size_t consumed = 0;
        lcow_error err;
        assert_int_equal(
            lcow_session_feed(f->s, f->wire.data + off, f->wire.size - off, &consumed, &err),
            LCOW_OK);
        off += consumed;
        feeds++;
        if (off < f->wire.size) {
            /* Stopped at the bound: at most one answer past it. */
            assert_false(lcow_session_accepting(f->s));
            assert_true(lcow_session_output_full(f->s));
            size_t unsent = lcow_session_output_bytes(f->s);
            assert_true(unsent >= 200);
            assert_true(unsent < 200 + 200);
            /* Taken but not sent: still full. */
            msgpack_sbuffer chunk;
            assert_true(lcow_session_take_output(f->s, &chunk));
            assert_int_equal(lcow_session_output_bytes(f->s), unsent);
            assert_false(lcow_session_accepting(f->s));
            msgpack_sbuffer_write(&f->output, chunk.data, chunk.size);
            lcow_session_output_sent(f->s, chunk.size);
            msgpack_sbuffer_destroy(&chunk);
            take_all(f);
            assert_true(lcow_session_accepting(f->s));
        }
    }
    assert_true(feeds > 3);
    take_all(f);
    answer a[64];
    assert_int_equal(answers(f, a, 64), 40);
    expect_in_order(a, 40, 1);
    fixture_free(f);
}

/* Queued jobs wait while max_output is unsent (the client is not reading)
 * and run once output is taken and reported sent. */
static void queued_jobs_stall_while_output_is_full(void **state)
{
    lcow_session_limits limits = {0};
    limits.max_output = 1;
    fixture *f = fixture_new(&limits);
    add_request(f, 1, LCOW_METHOD_USAGE, "sleep:300");
    for (uint32_t id = 2; id <= 5; id++)
        add_request(f, id, LCOW_METHOD_USAGE, "q");
    feed_all(f, f->wire.data, f->wire.size);
    assert_int_equal(lcow_session_pending(f->s), 5);
    /* The first answer fills the output; the four behind it stall. */
    for (int i = 0; i < 20000 && lcow_session_pending(f->s) > 4; i++)
        test_sleep_ms(1);
    test_sleep_ms(100);
    assert_int_equal(lcow_session_pending(f->s), 4);
    assert_true(lcow_session_output_full(f->s));
    assert_false(lcow_session_accepting(f->s));
    /* Each take + sent lets one more answer through. */
    for (int round = 0; round < 50 && lcow_session_pending(f->s) + lcow_session_output_bytes(f->s);
         round++) {
        take_all(f);
        for (int i = 0; i < 2000 && !lcow_session_output_full(f->s) && lcow_session_pending(f->s);
             i++)
            test_sleep_ms(1);
    }
    wait_idle(f);
    take_all(f);
    answer a[8];
    assert_int_equal(answers(f, a, 8), 5);
    expect_in_order(a, 5, 1);
    fixture_free(f);
}

/* ---- destruction with requests in flight --------------------------------- */

/* The transport closes and drops its reference while jobs are queued and one
 * runs: queued jobs are dropped, the running one finishes unseen, and the
 * session is destroyed once the worker lets go (destroy called once). */
static void destroy_with_requests_in_flight(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_USAGE, "sleep:100");
    for (uint32_t id = 2; id <= 50; id++)
        add_request(f, id, id % 2 ? LCOW_METHOD_PREPARE : LCOW_METHOD_STAT, "d");
    feed_all(f, f->wire.data, f->wire.size);
    assert_true(lcow_session_pending(f->s) > 0);
    lcow_session_close(f->s);
    lcow_session_unref(f->s);
    f->s = NULL;
    for (int i = 0; i < 20000 && atomic_load(&f->transport.destroyed) == 0; i++)
        test_sleep_ms(1);
    assert_int_equal(atomic_load(&f->transport.destroyed), 1);
    assert_int_equal(lcow_rpc_pool_inflight(f->pool), 0);
    fixture_free(f);
}

/* Only the transport's reference goes (no close): the session lives until
 * its queued work is done, then is destroyed; its output is freed with it. */
static void unref_without_close_frees_queued_work_and_output(void **state)
{
    fixture *f = fixture_new(NULL);
    for (uint32_t id = 1; id <= 20; id++)
        add_request(f, id, LCOW_METHOD_USAGE, id == 1 ? "sleep:50" : "u");
    add_request(f, 21, LCOW_METHOD_VERSION, NULL);
    feed_all(f, f->wire.data, f->wire.size);
    /* Half a frame still buffered in the reader. */
    size_t start = f->wire.size;
    size_t half = add_request(f, 22, LCOW_METHOD_VERSION, NULL) / 2;
    feed_all(f, f->wire.data + start, half);
    assert_true(lcow_session_in_request(f->s));
    lcow_session_unref(f->s);
    f->s = NULL;
    for (int i = 0; i < 20000 && atomic_load(&f->transport.destroyed) == 0; i++)
        test_sleep_ms(1);
    fixture_free(f);
}

/* The pool shuts down while a session's jobs are queued behind a slow one:
 * they are dropped, the queue's reference goes, nothing leaks. */
static void pool_shutdown_with_queued_jobs(void **state)
{
    fixture *f = fixture_new(NULL);
    add_request(f, 1, LCOW_METHOD_USAGE, "sleep:100");
    for (uint32_t id = 2; id <= 30; id++)
        add_request(f, id, LCOW_METHOD_USAGE, "p");
    feed_all(f, f->wire.data, f->wire.size);
    lcow_session *s = f->s;
    f->s = NULL;
    lcow_session_unref(s); /* the transport's reference; the pool holds one */
    assert_int_equal(atomic_load(&f->transport.destroyed), 0);
    fixture_free(f); /* shuts the pool down */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inline_requests_are_answered_during_the_feed),
        cmocka_unit_test(pipelined_requests_keep_their_order),
        cmocka_unit_test(frames_split_at_every_byte),
        cmocka_unit_test(every_two_piece_split_of_several_frames),
        cmocka_unit_test(malformed_frames_are_answered_and_the_stream_goes_on),
        cmocka_unit_test(garbage_fails_the_feed_after_earlier_answers),
        cmocka_unit_test(write_in_small_pieces),
        cmocka_unit_test(write_error_is_reported),
        cmocka_unit_test(feed_stops_at_max_pending_and_resumes),
        cmocka_unit_test(feed_stops_at_max_output_and_resumes_when_output_is_taken),
        cmocka_unit_test(queued_jobs_stall_while_output_is_full),
        cmocka_unit_test(destroy_with_requests_in_flight),
        cmocka_unit_test(unref_without_close_frees_queued_work_and_output),
        cmocka_unit_test(pool_shutdown_with_queued_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

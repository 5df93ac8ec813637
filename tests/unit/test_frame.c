/* Framing (rpc/frame): the scanner finds frame ends without trusting
 * lengths, survives every split of the input, and turns oversized, huge,
 * malformed and too deeply nested frames into errors without losing the
 * stream where it can resync. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/frame.h"
#include "rpc/proto.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct packed {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} packed;

static void packed_init(packed *p)
{
    msgpack_sbuffer_init(&p->buf);
    msgpack_packer_init(&p->pk, &p->buf, msgpack_sbuffer_write);
}

static void pstr(packed *p, const char *s)
{
    msgpack_pack_str(&p->pk, strlen(s));
    msgpack_pack_str_body(&p->pk, s, strlen(s));
}

/* Builds [0, 7, method, [ <map started by the caller> ]]: header only. */
static void request_head(packed *p, const char *method)
{
    msgpack_pack_array(&p->pk, 4);
    msgpack_pack_uint8(&p->pk, 0);
    msgpack_pack_uint32(&p->pk, 7);
    pstr(p, method);
    msgpack_pack_array(&p->pk, 1);
}

/* ---- framing ------------------------------------------------------------- */

typedef struct frames {
    int objects;
    int errors;
    lcow_code last_code;
    bool last_has_msgid;
    uint32_t last_msgid;
    uint32_t msgids[64];
} frames;

static void count_frames(void *ctx, const lcow_frame_event *ev)
{
    frames *f = ctx;
    if (ev->object) {
        lcow_request req;
        bool has_msgid;
        lcow_error err;
        if (lcow_proto_decode_request(ev->object, &req, &has_msgid, &err) == LCOW_OK)
            lcow_params_free(&req.params);
        f->msgids[f->objects % 64] = req.msgid;
        f->objects++;
    } else {
        f->errors++;
        f->last_code = ev->code;
        f->last_has_msgid = ev->has_msgid;
        f->last_msgid = ev->msgid;
    }
}

static void three_requests(packed *p)
{
    lcow_params params;
    memset(&params, 0, sizeof params);
    params.key = "some/key";
    assert_true(lcow_labels_set(&params.labels, "containerd.io/snapshot/x", "1"));
    for (uint32_t id = 1; id <= 3; id++)
        assert_true(lcow_proto_encode_request(&p->pk, id * 1000, LCOW_METHOD_PREPARE, &params));
    lcow_labels_free(&params.labels);
}

static void frames_survive_every_split(void **state)
{
    packed p;
    packed_init(&p);
    three_requests(&p);
    for (size_t cut = 0; cut <= p.buf.size; cut++) {
        lcow_frame_reader r;
        assert_true(lcow_frame_reader_init(&r, 0));
        frames f = {0};
        lcow_error err;
        assert_int_equal(
            lcow_frame_reader_feed(&r, (const uint8_t *)p.buf.data, cut, count_frames, &f, &err),
            LCOW_OK);
        assert_int_equal(lcow_frame_reader_feed(&r, (const uint8_t *)p.buf.data + cut,
                                                p.buf.size - cut, count_frames, &f, &err),
                         LCOW_OK);
        assert_int_equal(f.objects, 3);
        assert_int_equal(f.errors, 0);
        assert_int_equal(f.msgids[2], 3000);
        lcow_frame_reader_destroy(&r);
    }
    /* one byte at a time */
    lcow_frame_reader r;
    assert_true(lcow_frame_reader_init(&r, 0));
    frames f = {0};
    lcow_error err;
    for (size_t i = 0; i < p.buf.size; i++)
        assert_int_equal(
            lcow_frame_reader_feed(&r, (const uint8_t *)p.buf.data + i, 1, count_frames, &f, &err),
            LCOW_OK);
    assert_int_equal(f.objects, 3);
    lcow_frame_reader_destroy(&r);
    msgpack_sbuffer_destroy(&p.buf);
}

typedef struct pausing {
    lcow_frame_reader *reader;
    frames f;
} pausing;

static void count_and_pause(void *ctx, const lcow_frame_event *ev)
{
    pausing *p = ctx;
    count_frames(&p->f, ev);
    lcow_frame_reader_pause(p->reader);
}

/* A sink that pauses gets one frame per feed; the rest of the bytes is left
 * untouched for the caller, and feeding it again goes on where it stopped,
 * whatever the split of the bytes. */
static void a_pausing_sink_gets_one_frame_per_feed(void **state)
{
    packed p;
    packed_init(&p);
    three_requests(&p);
    size_t single = p.buf.size / 3;
    for (size_t cut = 0; cut <= p.buf.size; cut++) {
        lcow_frame_reader r;
        assert_true(lcow_frame_reader_init(&r, 0));
        pausing ps = {.reader = &r};
        lcow_error err;
        const uint8_t *data = (const uint8_t *)p.buf.data;
        size_t off = 0, feeds = 0;
        size_t end = cut;
        for (int round = 0; round < 2; round++) {
            while (off < end) {
                size_t n = 0;
                uint64_t before = r.frames;
                assert_int_equal(lcow_frame_reader_feed_some(&r, data + off, end - off,
                                                             count_and_pause, &ps, &n, &err),
                                 LCOW_OK);
                assert_true(r.frames - before <= 1);
                if (r.frames > before)
                    assert_int_equal((off + n) % single, 0); /* stopped at a frame's end */
                off += n;
                feeds++;
            }
            assert_int_equal(lcow_frame_reader_in_frame(&r), off % single != 0);
            end = p.buf.size;
        }
        assert_int_equal(ps.f.objects, 3);
        assert_int_equal(r.frames, 3);
        assert_int_equal(ps.f.msgids[2], 3000);
        assert_false(lcow_frame_reader_in_frame(&r));
        lcow_frame_reader_destroy(&r);
    }
    msgpack_sbuffer_destroy(&p.buf);
}

static void oversized_frame_gets_resource_exhausted_and_stream_resyncs(void **state)
{
    packed p;
    packed_init(&p);
    request_head(&p, "Stat"); /* msgid 7 */
    msgpack_pack_map(&p.pk, 1);
    pstr(&p, "key");
    size_t big = 5000;
    char *s = malloc(big);
    memset(s, 'x', big);
    msgpack_pack_str(&p.pk, big);
    msgpack_pack_str_body(&p.pk, s, big);
    free(s);
    lcow_params params;
    memset(&params, 0, sizeof params);
    params.key = "after";
    assert_true(lcow_proto_encode_request(&p.pk, 8, LCOW_METHOD_STAT, &params));

    for (size_t chunk = 1; chunk <= p.buf.size; chunk = chunk * 3 + 1) {
        lcow_frame_reader r;
        assert_true(lcow_frame_reader_init(&r, 1024));
        frames f = {0};
        lcow_error err;
        for (size_t off = 0; off < p.buf.size; off += chunk) {
            size_t n = p.buf.size - off < chunk ? p.buf.size - off : chunk;
            assert_int_equal(lcow_frame_reader_feed(&r, (const uint8_t *)p.buf.data + off, n,
                                                    count_frames, &f, &err),
                             LCOW_OK);
        }
        assert_int_equal(f.errors, 1);
        assert_int_equal(f.last_code, LCOW_RESOURCE_EXHAUSTED);
        assert_true(f.last_has_msgid);
        assert_int_equal(f.last_msgid, 7);
        assert_int_equal(f.objects, 1);
        assert_int_equal(f.msgids[0], 8);
        lcow_frame_reader_destroy(&r);
    }
    msgpack_sbuffer_destroy(&p.buf);
}

static void declared_huge_containers_are_refused_early(void **state)
{
    /* [0, 9, "Stat", array32 of 2^32-1 elements ...] */
    static const uint8_t bytes[] = {0x94, 0x00, 0x09, 0xa4, 'S',  't', 'a',
                                    't',  0xdd, 0xff, 0xff, 0xff, 0xff};
    lcow_frame_reader r;
    assert_true(lcow_frame_reader_init(&r, 0));
    frames f = {0};
    lcow_error err;
    assert_int_equal(lcow_frame_reader_feed(&r, bytes, sizeof bytes, count_frames, &f, &err),
                     LCOW_OK);
    assert_int_equal(f.errors, 1);
    assert_int_equal(f.last_code, LCOW_RESOURCE_EXHAUSTED);
    assert_int_equal(f.last_msgid, 9);
    lcow_frame_reader_destroy(&r);
}

static void invalid_byte_breaks_the_stream(void **state)
{
    static const uint8_t bytes[] = {0x94, 0x00, 0x01, 0xc1};
    lcow_frame_reader r;
    assert_true(lcow_frame_reader_init(&r, 0));
    frames f = {0};
    lcow_error err;
    assert_int_equal(lcow_frame_reader_feed(&r, bytes, sizeof bytes, count_frames, &f, &err),
                     LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "0xc1"));
    assert_int_not_equal(lcow_frame_reader_feed(&r, bytes, 1, count_frames, &f, &err), LCOW_OK);
    lcow_frame_reader_destroy(&r);
}

static void deep_nesting_is_an_error_not_a_crash(void **state)
{
    uint8_t bytes[200];
    size_t n = 0;
    bytes[n++] = 0x94;
    bytes[n++] = 0x00;
    bytes[n++] = 0x0b; /* msgid 11 */
    bytes[n++] = 0xa4;
    memcpy(bytes + n, "Stat", 4);
    n += 4;
    for (int i = 0; i < 100; i++)
        bytes[n++] = 0x91;
    bytes[n++] = 0xc0;
    /* then a valid Version request */
    static const uint8_t version[] = {0x94, 0x00, 0x0c, 0xa7, 'V',  'e', 'r',
                                      's',  'i',  'o',  'n',  0x91, 0x80};
    memcpy(bytes + n, version, sizeof version);
    n += sizeof version;
    lcow_frame_reader r;
    assert_true(lcow_frame_reader_init(&r, 0));
    frames f = {0};
    lcow_error err;
    assert_int_equal(lcow_frame_reader_feed(&r, bytes, n, count_frames, &f, &err), LCOW_OK);
    assert_int_equal(f.errors, 1);
    assert_int_equal(f.last_code, LCOW_INVALID_ARGUMENT);
    assert_int_equal(f.last_msgid, 11);
    assert_int_equal(f.objects, 1);
    assert_int_equal(f.msgids[0], 12);
    lcow_frame_reader_destroy(&r);
}

static void msgid_peek_accepts_every_uint_form(void **state)
{
    uint32_t id;
    static const uint8_t a[] = {0x94, 0x00, 0x05};
    assert_true(lcow_frame_peek_msgid(a, sizeof a, &id));
    assert_int_equal(id, 5);
    static const uint8_t b[] = {0xdc, 0x00, 0x04, 0x00, 0xce, 0x12, 0x34, 0x56, 0x78};
    assert_true(lcow_frame_peek_msgid(b, sizeof b, &id));
    assert_int_equal(id, 0x12345678);
    static const uint8_t c[] = {0x94, 0x00, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0}; /* > 2^32 */
    assert_false(lcow_frame_peek_msgid(c, sizeof c, &id));
    static const uint8_t d[] = {0x94, 0x01, 0x05}; /* a response */
    assert_false(lcow_frame_peek_msgid(d, sizeof d, &id));
    static const uint8_t e[] = {0x93, 0x00, 0x05};
    assert_false(lcow_frame_peek_msgid(e, sizeof e, &id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames_survive_every_split),
        cmocka_unit_test(a_pausing_sink_gets_one_frame_per_feed),
        cmocka_unit_test(oversized_frame_gets_resource_exhausted_and_stream_resyncs),
        cmocka_unit_test(declared_huge_containers_are_refused_early),
        cmocka_unit_test(invalid_byte_breaks_the_stream),
        cmocka_unit_test(deep_nesting_is_an_error_not_a_crash),
        cmocka_unit_test(msgid_peek_accepts_every_uint_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

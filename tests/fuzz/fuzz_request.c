/* Fuzz target: the server's request path without the store. Bytes go
 * through the framer (in two chunks, split where the first byte says) and
 * every frame through the strict request decoder; a decoded request is
 * re-encoded and decoded again and must come back identical, and every
 * error must carry a protocol code. Responses are decoded too (the client's
 * path). Nothing here may crash, leak or loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/frame.h"
#include "rpc/proto.h"

static void check_request_round_trip(const lcow_request *req)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    if (!lcow_proto_encode_request(&pk, req->msgid, req->method, &req->params))
        abort();
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, buf.data, buf.size, &off) != MSGPACK_UNPACK_SUCCESS)
        abort();
    lcow_request again;
    bool has_msgid;
    lcow_error err;
    if (lcow_proto_decode_request(&u.data, &again, &has_msgid, &err) != LCOW_OK)
        abort(); /* what we encode we must accept */
    if (again.msgid != req->msgid || again.method != req->method)
        abort();
    const lcow_params *a = &req->params, *b = &again.params;
    if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key) != 0))
        abort();
    if (a->labels.count != b->labels.count || a->filters.count != b->filters.count)
        abort();
    lcow_params_free(&again.params);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&buf);
}

static void on_frame(void *ctx, const lcow_frame_event *ev)
{
    if (!ev->object) {
        if (ev->code != LCOW_INVALID_ARGUMENT && ev->code != LCOW_RESOURCE_EXHAUSTED)
            abort();
        return;
    }
    lcow_request req;
    bool has_msgid;
    lcow_error err;
    lcow_code code = lcow_proto_decode_request(ev->object, &req, &has_msgid, &err);
    if (code == LCOW_OK) {
        check_request_round_trip(&req);
        lcow_params_free(&req.params);
    } else if (code != LCOW_INVALID_ARGUMENT && code != LCOW_NOT_IMPLEMENTED &&
               code != LCOW_RESOURCE_EXHAUSTED) {
        abort();
    }
    for (int m = 0; m < LCOW_METHOD_COUNT; m += 5) {
        uint32_t msgid;
        lcow_error call_err;
        lcow_result result;
        if (lcow_proto_decode_response(ev->object, (lcow_method)m, &has_msgid, &msgid, &call_err,
                                       &result, &err) == LCOW_OK)
            lcow_result_free(&result);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lcow_frame_reader reader;
    if (!lcow_frame_reader_init(&reader, 64 * 1024))
        return 0;
    size_t split = size ? data[0] % (size + 1) : 0;
    lcow_error err;
    if (lcow_frame_reader_feed(&reader, data, split, on_frame, NULL, &err) == LCOW_OK)
        lcow_frame_reader_feed(&reader, data + split, size - split, on_frame, NULL, &err);
    lcow_frame_reader_destroy(&reader);
    return 0;
}

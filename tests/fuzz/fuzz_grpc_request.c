/* Fuzz target: the gRPC endpoint's request decoding without HTTP/2 or the
 * store. The first byte picks the method, the rest is the request message
 * (what follows the 5-byte gRPC prefix). A decoded request must hold only
 * UTF-8 strings without NUL and at most LCOW_MAX_LABELS labels; Update's
 * info is encoded back (as a one-info List answer), unpacked again and must
 * come back with the same name and labels. Every error carries a code the
 * decoder documents. The same bytes also go through the :path lookup.
 * Nothing here may crash, leak or loop. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/codec.h"
#include "services/snapshots/v1/snapshots.pb-c.h"

static void check_str(const char *s)
{
    if (s && !lcow_utf8_valid(s, strlen(s)))
        abort();
}

static void check_labels(const lcow_labels *l)
{
    if (l->count > LCOW_MAX_LABELS)
        abort();
    for (size_t i = 0; i < l->count; i++) {
        check_str(l->items[i].key);
        check_str(l->items[i].value);
    }
}

static void round_trip_info(const lcow_info *info)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    if (lcow_grpc_encode_infos(info, 1, 1 << 20, &out) == 1) {
        if (out.size < 5)
            abort();
        Containerd__Services__Snapshots__V1__ListSnapshotsResponse *r =
            containerd__services__snapshots__v1__list_snapshots_response__unpack(
                NULL, out.size - 5, (const uint8_t *)out.data + 5);
        if (!r || r->n_info != 1 || strcmp(r->info[0]->name, info->name) != 0 ||
            r->info[0]->n_labels != info->labels.count)
            abort();
        containerd__services__snapshots__v1__list_snapshots_response__free_unpacked(r, NULL);
    }
    msgpack_sbuffer_destroy(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    lcow_grpc_method method = (lcow_grpc_method)(data[0] % LCOW_GRPC_METHOD_COUNT);
    lcow_request req;
    lcow_error err;
    lcow_code code = lcow_grpc_decode_request(method, data + 1, size - 1, &req, &err);
    if (code == LCOW_OK) {
        const lcow_params *p = &req.params;
        check_str(p->key);
        check_str(p->parent);
        check_str(p->name);
        check_labels(&p->labels);
        for (size_t i = 0; i < p->filters.count; i++)
            check_str(p->filters.items[i]);
        for (size_t i = 0; i < p->fieldpaths.count; i++)
            check_str(p->fieldpaths.items[i]);
        if (req.method != lcow_grpc_core_method(method))
            abort();
        if (p->has_info) {
            check_str(p->info.name);
            check_labels(&p->info.labels);
            round_trip_info(&p->info);
        }
    } else if (code != LCOW_INVALID_ARGUMENT && code != LCOW_RESOURCE_EXHAUSTED) {
        abort();
    }
    lcow_params_free(&req.params);
    lcow_grpc_method m;
    code = lcow_grpc_method_lookup((const char *)data + 1, size - 1, &m, &err);
    if (code != LCOW_OK && code != LCOW_NOT_IMPLEMENTED)
        abort();
    return 0;
}

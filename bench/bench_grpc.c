/* bench_grpc: the gRPC endpoint beside the MessagePack-RPC one and beside a
 * bare HTTP/2 echo, all over the same Unix socket transport, in one run.
 *
 *   bench_grpc [--duration S] [--clients 1,8,32] [--list N] [--dir DIR]
 *
 * For each client count, each client on its own connection, in turns for
 * S seconds in all (default 3, split into 5 rounds):
 *   echo (HTTP/2)  a Stat-sized gRPC request to an nghttp2 server (a thread
 *                  per connection) that answers each stream with its own
 *                  body as one message and grpc-status 0: HTTP/2 framing,
 *                  HPACK and the transport, no protobuf, no store
 *   gRPC Stat      the same request to lcowsnap's gRPC endpoint (lcow_server
 *                  with lcow_grpc_protocol, the real store)
 *   MessagePack    Stat over the MessagePack-RPC endpoint (lcow_client)
 * Both HTTP/2 sides use the test client of tests/unit/grpc_test_client.c.
 * Then List of --list N snapshots (default 100000) over gRPC beside Walk
 * over MessagePack (pages of 1000) and the in-process walk. Linux only. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/os/thread.h"
#include "core/snapshotter.h"
#include "grpc/codec.h"
#include "grpc/conn.h"
#include "rpc/client.h"
#include "rpc/server.h"
#include "services/snapshots/v1/snapshots.pb-c.h"
#include "unit/grpc_test_client.h"

#define MAX_CLIENTS 64

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- latencies ------------------------------------------------------------- */

typedef struct lat {
    uint64_t *ns;
    size_t count, cap;
} lat;

static void lat_add(lat *l, uint64_t ns)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->ns = realloc(l->ns, l->cap * sizeof *l->ns);
    }
    l->ns[l->count++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double lat_pct_us(lat *l, double p)
{
    if (l->count == 0)
        return 0;
    qsort(l->ns, l->count, sizeof *l->ns, cmp_u64);
    size_t i = (size_t)((double)(l->count - 1) * p);
    return (double)l->ns[i] / 1000.0;
}

/* ---- bare HTTP/2 echo ---------------------------------------------------- */

typedef struct echo_stream {
    uint8_t body[4096];
    size_t len, off;
    bool eof_sent;
} echo_stream;

static ssize_t echo_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
    echo_stream *st = source->ptr;
    size_t n = st->len - st->off < length ? st->len - st->off : length;
    memcpy(buf, st->body + st->off, n);
    st->off += n;
    if (st->off == st->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv nv[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
        nghttp2_submit_trailer(h2, id, nv, 1);
    }
    return (ssize_t)n;
}

static int echo_begin(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id,
                                             calloc(1, sizeof(echo_stream)));
    return 0;
}

static int echo_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                     size_t len, void *user_data)
{
    echo_stream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (st && st->len + len <= sizeof st->body) {
        memcpy(st->body + st->len, data, len);
        st->len += len;
    }
    return 0;
}

static int echo_frame(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        echo_stream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (!st)
            return 0;
        nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
                           {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0}};
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = echo_read};
        nghttp2_submit_response(h2, frame->hd.stream_id, nv, 2, &prd);
    }
    return 0;
}

static int echo_close(nghttp2_session *h2, int32_t id, uint32_t code, void *user_data)
{
    free(nghttp2_session_get_stream_user_data(h2, id));
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    return 0;
}

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, echo_begin);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, echo_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, echo_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, echo_close);
    nghttp2_session *h2;
    nghttp2_session_server_new(&h2, cb, NULL);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(h2, NGHTTP2_FLAG_NONE, NULL, 0);
    uint8_t buf[65536];
    for (;;) {
        const uint8_t *out;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h2, &out)) > 0) {
            for (ssize_t off = 0; off < n;) {
                ssize_t w = send(fd, out + off, (size_t)(n - off), MSG_NOSIGNAL);
                if (w <= 0)
                    goto out;
                off += w;
            }
        }
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r <= 0 || nghttp2_session_mem_recv(h2, buf, (size_t)r) < 0)
            break;
    }
out:
    nghttp2_session_del(h2);
    close(fd);
    return NULL;
}

static atomic_bool echo_stop;

static void *echo_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    while (!atomic_load(&echo_stop)) {
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0 && !lcow_thread_start_detached(echo_conn, (void *)(intptr_t)fd, 0))
            close(fd);
    }
    close(lfd);
    return NULL;
}

static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 128) != 0) {
        perror(path);
        exit(1);
    }
    return fd;
}

/* ---- clients --------------------------------------------------------------- */

typedef enum scenario { SC_ECHO, SC_GRPC, SC_MSGPACK, SC_COUNT } scenario;
static const char *const scenario_names[SC_COUNT] = {"bare HTTP/2 echo", "gRPC Stat",
                                                     "MessagePack Stat"};
static char echo_address[256], grpc_address[256], mp_address[256];

typedef struct client {
    scenario sc;
    uint64_t until;
    lat l;
    unsigned errors;
    gtc *g;
    lcow_client *m;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
    req.snapshotter = "lcowsnap";
    req.key = "default/1/bench";
    lcow_params p = {0};
    p.key = "default/1/bench";
    while (now_ns() < c->until) {
        uint64_t t0 = now_ns();
        bool ok;
        if (c->sc == SC_MSGPACK) {
            lcow_result r;
            lcow_error err;
            ok = lcow_client_call(c->m, LCOW_METHOD_STAT, &p, &r, &err) == LCOW_OK;
            if (ok)
                lcow_result_free(&r);
        } else {
            int32_t id = gtc_start_call(c->g, "Stat", &req.base);
            gtc_reply *r;
            lcow_error err;
            ok = id > 0 && gtc_wait(c->g, id, 10000, &r, &err) == LCOW_OK && r->grpc_status == 0;
            if (id > 0)
                gtc_forget(c->g, id);
        }
        if (ok)
            lat_add(&c->l, now_ns() - t0);
        else
            c->errors++;
    }
    return NULL;
}

static void run_cell(unsigned nclients, double seconds)
{
    client clients[SC_COUNT][MAX_CLIENTS];
    memset(clients, 0, sizeof clients);
    lcow_error err;
    for (int sc = 0; sc < SC_COUNT; sc++) {
        for (unsigned i = 0; i < nclients; i++) {
            client *c = &clients[sc][i];
            c->sc = (scenario)sc;
            lcow_code code =
                sc == SC_MSGPACK
                    ? lcow_client_connect(mp_address, 5000, &c->m, &err)
                    : gtc_connect(sc == SC_ECHO ? echo_address : grpc_address, &c->g, &err);
            if (code != LCOW_OK) {
                fprintf(stderr, "connect: %s\n", err.message);
                exit(1);
            }
        }
    }
    const int rounds = 5;
    uint64_t busy[SC_COUNT] = {0};
    for (int r = 0; r < rounds; r++) {
        for (int sc = 0; sc < SC_COUNT; sc++) {
            uint64_t slot = (uint64_t)(seconds * 1e9 / rounds / SC_COUNT);
            uint64_t start = now_ns();
            lcow_thread t[MAX_CLIENTS];
            for (unsigned i = 0; i < nclients; i++) {
                clients[sc][i].until = start + slot;
                lcow_thread_create(&t[i], client_main, &clients[sc][i]);
            }
            for (unsigned i = 0; i < nclients; i++)
                lcow_thread_join(t[i], NULL);
            busy[sc] += now_ns() - start;
        }
    }
    double p50[SC_COUNT];
    for (int sc = 0; sc < SC_COUNT; sc++) {
        lat all = {0};
        unsigned errors = 0;
        for (unsigned i = 0; i < nclients; i++) {
            client *c = &clients[sc][i];
            for (size_t k = 0; k < c->l.count; k++)
                lat_add(&all, c->l.ns[k]);
            errors += c->errors;
            free(c->l.ns);
            gtc_close(c->g);
            lcow_client_close(c->m);
        }
        p50[sc] = lat_pct_us(&all, 0.5);
        printf("| %u | %s | %.0f | %.1f | %.1f | %u |", nclients, scenario_names[sc],
               (double)all.count / ((double)busy[sc] / 1e9), p50[sc], lat_pct_us(&all, 0.99),
               errors);
        if (sc == SC_GRPC)
            printf(" %.2fx the echo |", p50[SC_GRPC] / p50[SC_ECHO]);
        else if (sc == SC_MSGPACK)
            printf(" gRPC is %.2fx this |", p50[SC_GRPC] / p50[SC_MSGPACK]);
        else
            printf(" |");
        printf("\n");
        free(all.ns);
    }
}

/* ---- List ------------------------------------------------------------------ */

static int count_info(void *ctx, const lcow_info *info)
{
    (*(size_t *)ctx)++;
    return 0;
}

static void run_list(lcow_snapshotter *store, size_t n)
{
    char key[64];
    lcow_error err;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "default/%zu/list-%07zu", i + 10, i);
        lcow_mounts m = {0};
        if (lcow_snapshotter_view(store, key, NULL, NULL, &m, &err) != LCOW_OK) {
            fprintf(stderr, "view: %s\n", err.message);
            exit(1);
        }
        lcow_mounts_free(&m);
    }
    printf("\npopulated %zu views in %.1f s\n\n", n, (double)(now_ns() - t0) / 1e9);
    printf("| List of %zu snapshots | ms | messages / pages |\n|---|---|---|\n", n + 1);

    gtc *g;
    if (gtc_connect(grpc_address, &g, &err) != LCOW_OK)
        exit(1);
    Containerd__Services__Snapshots__V1__ListSnapshotsRequest req =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_REQUEST__INIT;
    t0 = now_ns();
    int32_t id = gtc_start_call(g, "List", &req.base);
    gtc_reply *r;
    if (gtc_wait(g, id, 600000, &r, &err) != LCOW_OK || r->grpc_status != 0) {
        fprintf(stderr, "List failed\n");
        exit(1);
    }
    double ms = (double)(now_ns() - t0) / 1e6;
    printf("| gRPC List (stream) | %.0f | %zu |\n", ms, gtc_message_count(r));
    gtc_forget(g, id);
    gtc_close(g);

    lcow_client *m;
    if (lcow_client_connect(mp_address, 5000, &m, &err) != LCOW_OK)
        exit(1);
    t0 = now_ns();
    size_t pages = 0, total = 0;
    lcow_params p = {0};
    char *after = NULL;
    do {
        lcow_result res;
        p.after = after;
        if (lcow_client_call(m, LCOW_METHOD_WALK, &p, &res, &err) != LCOW_OK) {
            fprintf(stderr, "Walk: %s\n", err.message);
            exit(1);
        }
        pages++;
        total += res.infos.count;
        free(after);
        after = res.next;
        res.next = NULL;
        lcow_result_free(&res);
    } while (after);
    ms = (double)(now_ns() - t0) / 1e6;
    if (total == 0) {
        fprintf(stderr, "MessagePack Walk returned no snapshot\n");
        exit(1);
    }
    printf("| MessagePack Walk (pages of 1000) | %.0f | %zu |\n", ms, pages);
    lcow_client_close(m);

    t0 = now_ns();
    size_t seen = 0;
    lcow_walk_options opts = {0};
    lcow_snapshotter_walk(store, &opts, count_info, &seen, NULL, &err);
    printf("| in-process walk | %.0f | - |\n", (double)(now_ns() - t0) / 1e6);
}

int main(int argc, char **argv)
{
    double seconds = 3;
    unsigned counts[8] = {1, 8, 32};
    size_t ncounts = 3, list_n = 100000;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc) {
            ncounts = 0;
            for (char *s = strtok(argv[++i], ","); s && ncounts < 8; s = strtok(NULL, ","))
                counts[ncounts++] = (unsigned)atoi(s);
        } else if (strcmp(argv[i], "--list") == 0 && i + 1 < argc) {
            list_n = (size_t)atol(argv[++i]);
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_grpc [--duration S] [--clients 1,8,32] [--list N] "
                            "[--dir DIR]\n");
            return 2;
        }
    }
    lcow_log_set_level(LCOW_LOG_WARN);
    char tmpl[] = "/tmp/bench-grpc.XXXXXX";
    char root[512];
    if (!dir)
        dir = mkdtemp(tmpl);
    snprintf(root, sizeof root, "%s/root", dir);
    snprintf(echo_address, sizeof echo_address, "%s/echo.sock", dir);
    snprintf(grpc_address, sizeof grpc_address, "%s/grpc.sock", dir);
    snprintf(mp_address, sizeof mp_address, "%s/mp.sock", dir);

    lcow_snapshotter_config sc = {.root = root, .no_scratch = true, .no_sync = true};
    lcow_snapshotter *store;
    lcow_error err;
    if (lcow_snapshotter_open(&sc, &store, &err) != LCOW_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    lcow_mounts mounts = {0};
    lcow_snapshotter_view(store, "default/1/bench", NULL, NULL, &mounts, &err);
    lcow_mounts_free(&mounts);
    lcow_server *mp, *gr;
    lcow_server_config mc = {.address = mp_address, .max_connections = 1024};
    lcow_server_config gc = {
        .address = grpc_address, .max_connections = 1024, .protocol = &lcow_grpc_protocol};
    if (lcow_server_start(&mc, store, &mp, &err) != LCOW_OK ||
        lcow_server_start(&gc, store, &gr, &err) != LCOW_OK) {
        fprintf(stderr, "server: %s\n", err.message);
        return 1;
    }
    lcow_thread echo;
    lcow_thread_create(&echo, echo_accept, (void *)(intptr_t)listen_unix(echo_address));

    printf("Stat round trips, %.1f s per cell, %u CPUs\n\n", seconds, lcow_thread_cpu_count());
    printf("| clients | what | ops/s | p50 us | p99 us | errors | ratio |\n"
           "|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < ncounts; i++)
        run_cell(counts[i] > MAX_CLIENTS ? MAX_CLIENTS : counts[i], seconds);
    if (list_n > 0)
        run_list(store, list_n);

    atomic_store(&echo_stop, true);
    lcow_thread_join(echo, NULL);
    lcow_server_stop(gr, 1000);
    lcow_server_stop(mp, 1000);
    lcow_server_destroy(gr);
    lcow_server_destroy(mp);
    lcow_snapshotter_close(store);
    lcow_snapshotter_free(store);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (strncmp(dir, "/tmp/bench-grpc.", 16) == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}

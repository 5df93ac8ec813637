/* bench_rpc: RPC round trips over the Unix socket transport, beside a bare
 * echo over the same transport in the same run.
 *
 *   bench_rpc [--duration S] [--clients 1,8,32] [--only echo,stat,prepare,direct]
 *             [--rounds N] [--soak S] [--dir DIR]
 *
 * Each cell runs for S seconds in all (default 3), split into N rounds
 * (default 5) in which the scenarios take turns.
 *
 * For each client count: (1) echo: a request-sized frame written to an echo
 * server and read back (the transport's floor); (2) Stat of one snapshot
 * through lcow_server + the real store; (3) Prepare+Commit of a new layer
 * (an "extract-" key, so no scratch disk: metadata, a directory and two
 * synced LevelDB batches). Each prints ops/s, p50, p99, errors and RSS.
 * --soak S then runs Stat with 8 clients for S seconds and reports RSS every
 * 10 s (flat memory = no leak per request). Linux only.
 *
 * With one client the round trip is dominated by where the scheduler puts
 * the two threads (waking a thread on an idle CPU costs about 20 us on this
 * VM, a switch on the same CPU a few), and it places an echo pair and an
 * RPC pair differently from run to run. So the 1-client cells are also run
 * with the placement fixed for both sides: "apart" pins the server's
 * threads (echo server, lcowsnap's accept/reader/worker threads) to CPU 0
 * and the client to CPU 1; "one CPU" pins everything to CPU 0. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/snapshotter.h"
#include "core/os/thread.h"
#include "rpc/client.h"
#include "rpc/server.h"

#define MAX_CLIENTS 64

/* ---- latency histogram: 100 ns up to 1 ms, 10 us up to 100 ms, 1 ms up to 10 s */

#define HIST_BUCKETS 30000

typedef struct hist {
    uint32_t bucket[HIST_BUCKETS];
    uint64_t count;
} hist;

static void hist_add(hist *h, uint64_t ns)
{
    size_t b;
    if (ns < 1000000)
        b = ns / 100;
    else if (ns < 100000000)
        b = 10000 + (ns - 1000000) / 10000;
    else if (ns < 10000000000ull)
        b = 20000 + (ns - 100000000) / 1000000;
    else
        b = HIST_BUCKETS - 1;
    if (b >= HIST_BUCKETS)
        b = HIST_BUCKETS - 1;
    h->bucket[b]++;
    h->count++;
}

static double bucket_us(size_t b)
{
    if (b < 10000)
        return (double)b * 0.1;
    if (b < 20000)
        return 1000.0 + (double)(b - 10000) * 10.0;
    return 100000.0 + (double)(b - 20000) * 1000.0;
}

static double hist_percentile(const hist *h, double p)
{
    uint64_t want = (uint64_t)((double)h->count * p);
    uint64_t seen = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->bucket[b];
        if (seen > want)
            return bucket_us(b);
    }
    return 0;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* ---- echo server over the same transport --------------------------------- */

static atomic_bool echo_stop;
static lcow_thread echo_threads[1024];
static size_t echo_thread_count;

static void *echo_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto out;
            off += w;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *echo_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    while (!atomic_load(&echo_stop)) {
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        lcow_thread t;
        if (echo_thread_count < 1024 && lcow_thread_create(&t, echo_conn, (void *)(intptr_t)fd))
            echo_threads[echo_thread_count++] = t; /* exits when its client closes */
        else
            close(fd);
    }
    close(lfd);
    for (size_t i = 0; i < echo_thread_count; i++)
        lcow_thread_join(echo_threads[i], NULL);
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

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror(path);
        exit(1);
    }
    return fd;
}

/* ---- scenarios ------------------------------------------------------------- */

typedef enum scenario { SC_ECHO, SC_STAT, SC_PREPARE_COMMIT, SC_STAT_DIRECT } scenario;
static const char *const scenario_names[] = {"echo (same transport)", "Stat", "Prepare+Commit",
                                             "Stat, in-process core call (no RPC)"};
static lcow_snapshotter *direct_store;

static char rpc_address[512], echo_address[512];
static msgpack_sbuffer stat_request; /* the bytes the echo client sends */

/* ---- thread placement (1-client cells) ----------------------------------- */

typedef enum placement { PL_FREE, PL_APART, PL_ONE_CPU } placement;
static const char *const placement_names[] = {"free", "apart", "one CPU"};

/* Pins every thread of the process (cpu < 0: lets them run anywhere). */
static void pin_all_threads(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    for (long i = 0; i < cpus && i < CPU_SETSIZE; i++) {
        if (cpu < 0 || i == cpu)
            CPU_SET((int)i, &set);
    }
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && sched_setaffinity(atoi(e->d_name), sizeof set, &set) != 0)
            perror("sched_setaffinity");
    }
    if (d)
        closedir(d);
}

static void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

typedef struct client_args {
    int pin_cpu; /* -1: not pinned */
    scenario sc;
    int index;
    uint64_t deadline_ns;
    uint64_t ops, errors;
    char last_error[200];
    hist *h;
} client_args;

static void *client_main(void *arg)
{
    client_args *a = arg;
    if (a->pin_cpu >= 0)
        pin_self(a->pin_cpu);
    lcow_client *c = NULL;
    int fd = -1;
    lcow_error err;
    if (a->sc == SC_ECHO) {
        fd = connect_unix(echo_address);
    } else if (a->sc == SC_STAT_DIRECT) {
        /* no connection */
    } else if (lcow_client_connect(rpc_address, 5000, &c, &err) != LCOW_OK) {
        a->errors++;
        snprintf(a->last_error, sizeof a->last_error, "%s", err.message);
        return NULL;
    }
    char buf[4096];
    uint64_t i = 0;
    while (now_ns() < a->deadline_ns) {
        uint64_t t0 = now_ns();
        lcow_code code = LCOW_OK;
        if (a->sc == SC_ECHO) {
            size_t len = stat_request.size, got = 0;
            if (write(fd, stat_request.data, len) != (ssize_t)len)
                code = LCOW_UNAVAILABLE;
            while (code == LCOW_OK && got < len) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n <= 0)
                    code = LCOW_UNAVAILABLE;
                else
                    got += (size_t)n;
            }
        } else if (a->sc == SC_STAT_DIRECT) {
            lcow_info info = {0};
            code = lcow_snapshotter_stat(direct_store, "bench/stat-target", &info, &err);
            lcow_info_free(&info);
        } else if (a->sc == SC_STAT) {
            lcow_info info = {0};
            code = lcow_client_stat(c, "bench/stat-target", &info, &err);
            lcow_info_free(&info);
        } else {
            char key[96], name[96];
            snprintf(key, sizeof key, "bench/%d/extract-%" PRIu64, a->index, i);
            snprintf(name, sizeof name, "bench/%d/layer-%" PRIu64, a->index, i);
            lcow_mounts m = {0};
            code = lcow_client_prepare(c, key, NULL, NULL, &m, &err);
            lcow_mounts_free(&m);
            if (code == LCOW_OK)
                code = lcow_client_commit(c, name, key, NULL, NULL, &err);
        }
        hist_add(a->h, now_ns() - t0);
        i++;
        if (code == LCOW_OK) {
            a->ops++;
        } else {
            a->errors++;
            snprintf(a->last_error, sizeof a->last_error, "%s: %s", lcow_code_name(code),
                     err.message);
            if (code == LCOW_UNAVAILABLE)
                break;
        }
    }
    if (fd >= 0)
        close(fd);
    lcow_client_close(c);
    return NULL;
}

/* What the rounds of one table cell add up to. */
typedef struct cell {
    hist h;
    uint64_t ops, errors;
    double seconds;
} cell;

typedef struct run_result {
    double ops_per_s, p50_us, p99_us;
    uint64_t errors;
} run_result;

/* One round: `clients` client threads for `seconds`, added to *acc. */
static void run(scenario sc, int clients, double seconds, hist *hists, placement pl, cell *acc)
{
    /* Server-side threads of a connection start on accept, so they inherit
     * the placement only if it is set before connecting and kept. */
    if (pl != PL_FREE)
        pin_all_threads(0);
    client_args args[MAX_CLIENTS];
    lcow_thread threads[MAX_CLIENTS];
    uint64_t start = now_ns();
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < clients; i++) {
        memset(&hists[i], 0, sizeof hists[i]);
        args[i] = (client_args){.pin_cpu = pl == PL_APART     ? 1
                                           : pl == PL_ONE_CPU ? 0
                                                              : -1,
                                .sc = sc,
                                .index = i,
                                .deadline_ns = deadline,
                                .h = &hists[i]};
        static unsigned round;
        if (sc == SC_PREPARE_COMMIT)
            args[i].index = (int)(round++ * MAX_CLIENTS + (unsigned)i);
        if (!lcow_thread_create(&threads[i], client_main, &args[i])) {
            fprintf(stderr, "cannot start client thread\n");
            exit(1);
        }
    }
    for (int i = 0; i < clients; i++) {
        lcow_thread_join(threads[i], NULL);
        acc->ops += args[i].ops;
        acc->errors += args[i].errors;
        if (args[i].errors)
            fprintf(stderr, "  client %d: %" PRIu64 " errors, last: %s\n", i, args[i].errors,
                    args[i].last_error);
        for (size_t b = 0; b < HIST_BUCKETS; b++)
            acc->h.bucket[b] += hists[i].bucket[b];
        acc->h.count += hists[i].count;
    }
    acc->seconds += (double)(now_ns() - start) / 1e9;
    if (pl != PL_FREE)
        pin_all_threads(-1);
}

static run_result cell_result(const cell *c)
{
    run_result r = {0};
    r.ops_per_s = c->seconds > 0 ? (double)c->ops / c->seconds : 0;
    r.p50_us = hist_percentile(&c->h, 0.50);
    r.p99_us = hist_percentile(&c->h, 0.99);
    r.errors = c->errors;
    return r;
}

static int parse_clients(const char *s, int *out)
{
    int n = 0;
    while (*s && n < 8) {
        int v = atoi(s);
        if (v < 1 || v > MAX_CLIENTS) {
            fprintf(stderr, "client counts are 1..%d\n", MAX_CLIENTS);
            exit(2);
        }
        out[n++] = v;
        const char *comma = strchr(s, ',');
        if (!comma)
            break;
        s = comma + 1;
    }
    return n;
}

int main(int argc, char **argv)
{
    double duration = 3;
    int rounds = 5;
    double soak = 0;
    int counts[8] = {1, 8, 32}, ncounts = 3;
    const char *only = NULL; /* comma-separated scenario list, all when NULL */
    static const char *const short_names[] = {"echo", "stat", "prepare", "direct"};
    const char *dir = getenv("LCOW_BENCH_TMP") ? getenv("LCOW_BENCH_TMP") : "./bench-tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
            duration = atof(argv[++i]);
        else if (strcmp(argv[i], "--soak") == 0 && i + 1 < argc)
            soak = atof(argv[++i]);
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            ncounts = parse_clients(argv[++i], counts);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
        else {
            fprintf(stderr,
                    "usage: %s [--duration S] [--clients 1,8,32] "
                    "[--only echo,stat,prepare,direct] [--rounds N] [--soak S] [--dir DIR]\n",
                    argv[0]);
            return 2;
        }
    }
    lcow_os_tune_allocator(); /* as the service does */
    lcow_log_set_level(LCOW_LOG_WARN);
    char work[512], root[600], cmd[700];
    snprintf(work, sizeof work, "%s/bench_rpc-%d", dir, (int)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", work);
    if (system(cmd) != 0)
        return 1;
    char *abs = realpath(work, NULL);
    snprintf(root, sizeof root, "%s/root", abs);
    snprintf(rpc_address, sizeof rpc_address, "%s/rpc.sock", abs);
    snprintf(echo_address, sizeof echo_address, "%s/echo.sock", abs);

    lcow_snapshotter_config scfg = {.root = root};
    lcow_snapshotter *store = NULL;
    lcow_error err;
    if (lcow_snapshotter_open(&scfg, &store, &err) != LCOW_OK) {
        fprintf(stderr, "open %s: %s\n", root, err.message);
        return 1;
    }
    direct_store = store;
    lcow_mounts m = {0};
    if (lcow_snapshotter_view(store, "bench/stat-target", NULL, NULL, &m, &err) != LCOW_OK) {
        fprintf(stderr, "view: %s\n", err.message);
        return 1;
    }
    lcow_mounts_free(&m);
    lcow_server_config cfg = {.address = rpc_address};
    lcow_server *server = NULL;
    if (lcow_server_start(&cfg, store, &server, &err) != LCOW_OK) {
        fprintf(stderr, "server: %s\n", err.message);
        return 1;
    }
    atomic_init(&echo_stop, false);
    lcow_thread echo_thread;
    lcow_thread_create(&echo_thread, echo_accept, (void *)(intptr_t)listen_unix(echo_address));

    /* The echo payload is a real Stat request frame. */
    msgpack_sbuffer_init(&stat_request);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &stat_request, msgpack_sbuffer_write);
    lcow_params params;
    memset(&params, 0, sizeof params);
    params.key = "bench/stat-target";
    lcow_proto_encode_request(&pk, 1, LCOW_METHOD_STAT, &params);

    hist *hists = calloc(MAX_CLIENTS + 1, sizeof *hists);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("bench_rpc: Unix socket, %ld CPUs, %.0f s per cell, server worker threads default\n\n",
           cpus, duration);
    printf("| operation | clients | placement | ops/s | p50 us | p99 us | p50 / echo p50 | errors "
           "| RSS MiB |\n|---|---:|---|---:|---:|---:|---:|---:|---:|\n");
    uint64_t total_errors = 0;
    cell *cells = malloc(4 * sizeof *cells);
    if (!cells)
        return 1;
    double echo_p50_of[8] = {0};
    /* First the echo and Stat cells, taking turns in short rounds so each
     * sees the same mix of thread placements and machine noise; then the
     * cells that write (whose LevelDB compactions would otherwise run
     * during later Stat rounds) and the in-process reference. */
    for (int phase = 0; phase < 2; phase++) {
        for (int k = 0; k < ncounts; k++) {
            int placements = phase == 0 && counts[k] == 1 && cpus >= 2 ? 3 : 1;
            for (int pl = PL_FREE; pl < placements; pl++) {
                memset(cells, 0, 4 * sizeof *cells);
                int first = phase == 0 ? SC_ECHO : SC_PREPARE_COMMIT;
                int last = phase == 0 ? SC_STAT : SC_STAT_DIRECT;
                int n = phase == 0 ? rounds : 1;
                for (int round = 0; round < n; round++) {
                    for (int sc = first; sc <= last; sc++) {
                        if (only && !strstr(only, short_names[sc]))
                            continue;
                        run((scenario)sc, counts[k], duration / n, hists, (placement)pl,
                            &cells[sc]);
                    }
                }
                for (int sc = first; sc <= last; sc++) {
                    if (cells[sc].h.count == 0 && cells[sc].errors == 0)
                        continue;
                    run_result r = cell_result(&cells[sc]);
                    double echo_p50 = pl == PL_FREE            ? echo_p50_of[k]
                                      : cells[SC_ECHO].h.count ? cell_result(&cells[SC_ECHO]).p50_us
                                                               : 0;
                    if (sc == SC_ECHO) {
                        echo_p50 = r.p50_us;
                        if (pl == PL_FREE)
                            echo_p50_of[k] = r.p50_us;
                    }
                    total_errors += r.errors;
                    printf("| %s | %d | %s | %.0f | %.1f | %.1f | %.2f | %" PRIu64 " | %.1f |\n",
                           scenario_names[sc], counts[k], placement_names[pl], r.ops_per_s,
                           r.p50_us, r.p99_us, echo_p50 > 0 ? r.p50_us / echo_p50 : 0.0, r.errors,
                           rss_kib() / 1024.0);
                }
                fflush(stdout);
            }
        }
    }
    if (soak > 0) {
        printf("\nsoak: Stat, 8 clients, %.0f s (RSS every 10 s)\n", soak);
        long first = -1;
        for (double done = 0; done < soak; done += 10) {
            double slice = soak - done < 10 ? soak - done : 10;
            memset(cells, 0, sizeof *cells);
            run(SC_STAT, 8, slice, hists, PL_FREE, cells);
            run_result r = cell_result(cells);
            total_errors += r.errors;
            long rss = rss_kib();
            if (first < 0)
                first = rss;
            printf("  t=%3.0f s: %.0f ops/s, p99 %.1f us, errors %" PRIu64 ", RSS %.1f MiB\n",
                   done + slice, r.ops_per_s, r.p99_us, r.errors, rss / 1024.0);
            fflush(stdout);
        }
        printf("  RSS growth after the first 10 s: %+.1f MiB\n", (rss_kib() - first) / 1024.0);
    }
    atomic_store(&echo_stop, true);
    lcow_thread_join(echo_thread, NULL);
    lcow_server_stop(server, 5000);
    lcow_server_destroy(server);
    lcow_snapshotter_free(store);
    free(hists);
    free(cells);
    msgpack_sbuffer_destroy(&stat_request);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", abs);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", abs);
    free(abs);
    if (total_errors) {
        fprintf(stderr, "bench_rpc: %" PRIu64 " errors\n", total_errors);
        return 1;
    }
    return 0;
}

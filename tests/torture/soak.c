/* Soak: N concurrent clients (default 64) run a mixed workload against a
 * running lcowsnap for a fixed time; the service's resident memory and open
 * descriptors (handles on Windows) are sampled once a second.
 *
 * Passes when: zero errors (transport or unexpected error codes), every call
 * answered within --max-latency-ms, the mean descriptor count of the last
 * --window seconds within 10% of the first --window seconds, and the mean RSS
 * within 10% plus --rss-allowance-kb (see below). With --warmup W the "first
 * window" starts at W s instead of 0 (the load runs and is sampled from the
 * start; the first W s are the caches filling), and the start-up window 0..W
 * is still printed beside it.
 *
 * POSIX:   soak --exe LCOWSNAP --dir DIR [options]   (starts and stops it)
 *          soak --address SOCK --pid PID [options]
 * Windows: soak.exe --address \\.\pipe\NAME --process-name lcowsnap.exe
 * Options: --clients N --seconds S --window S --warmup S --max-latency-ms MS --label TEXT
 *          --rss-allowance-kb KB (growth allowed on top of 10%, default 6144:
 *          what fills after start by design, LevelDB's 1 MiB memtable (two
 *          during a flush) and 4 MiB block cache, core/metastore.h) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/scratch.h"
#include "core/os/thread.h"
#include "rpc/client.h"

#ifdef _WIN32
#include <windows.h>

#include <psapi.h>
#include <tlhelp32.h>
#else
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "torture_util.h"
#endif

#define MAX_CLIENTS 256
#define MAX_KEYS 10

static uint64_t now_ns(void)
{
#ifdef _WIN32
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static void sleep_ms(unsigned ms)
{
#ifdef _WIN32
    Sleep(ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

typedef struct key {
    char name[80];
    lcow_kind kind;
    bool scratch;
    int children;
    int parent; /* index or -1 */
} key;

typedef struct client {
    int index;
    uint64_t rng;
    key keys[MAX_KEYS];
    int count;
    unsigned serial;
    uint32_t *lat_us;
    size_t lat_n, lat_cap;
    unsigned errors;
    char first_error[512];
} client;

static const char *g_address;
static atomic_bool g_stop;
static atomic_uint_fast64_t g_requests;

static void record(client *c, uint64_t t0, lcow_code rc, const char *what, const lcow_error *err)
{
    uint64_t us = (now_ns() - t0) / 1000;
    if (c->lat_n == c->lat_cap) {
        c->lat_cap = c->lat_cap ? c->lat_cap * 2 : 4096;
        c->lat_us = realloc(c->lat_us, c->lat_cap * sizeof *c->lat_us);
    }
    c->lat_us[c->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    atomic_fetch_add(&g_requests, 1);
    if (rc != LCOW_OK) {
        if (!c->errors)
            snprintf(c->first_error, sizeof c->first_error, "%s: %s %s", what, lcow_code_name(rc),
                     err ? err->message : "");
        c->errors++;
    }
}

static int pick(client *c, lcow_kind kind, bool leaf)
{
    int idx[MAX_KEYS], n = 0;
    for (int i = 0; i < c->count; i++)
        if ((kind == 0 || c->keys[i].kind == kind) && (!leaf || c->keys[i].children == 0))
            idx[n++] = i;
    return n ? idx[rnd(&c->rng) % (uint64_t)n] : -1;
}

static void forget(client *c, int i)
{
    if (c->keys[i].parent >= 0)
        c->keys[c->keys[i].parent].children--;
    int last = --c->count;
    if (i != last) {
        c->keys[i] = c->keys[last];
        for (int j = 0; j < c->count; j++)
            if (c->keys[j].parent == last)
                c->keys[j].parent = i;
    }
}

static void step(client *c, lcow_client *cl)
{
    lcow_error err;
    memset(&err, 0, sizeof err);
    uint64_t t0 = now_ns();
    lcow_code rc;
    unsigned r = (unsigned)(rnd(&c->rng) % 100);
    int i;
    if (r < 20 && (i = pick(c, 0, false)) >= 0) {
        lcow_info info = {0};
        rc = lcow_client_stat(cl, c->keys[i].name, &info, &err);
        lcow_info_free(&info);
        record(c, t0, rc, "Stat", &err);
    } else if (r < 32 && (i = pick(c, LCOW_KIND_ACTIVE, false)) >= 0) {
        lcow_mounts m = {0};
        rc = lcow_client_mounts(cl, c->keys[i].name, &m, &err);
        lcow_mounts_free(&m);
        record(c, t0, rc, "Mounts", &err);
    } else if (r < 40) {
        char filter[64];
        snprintf(filter, sizeof filter, "name~=\"^s%d/\"", c->index);
        const char *filters[] = {filter};
        lcow_infos infos = {0};
        char *next = NULL;
        rc = lcow_client_walk(cl, filters, 1, 0, NULL, &infos, &next, &err);
        if (rc == LCOW_OK && (int)infos.count != c->count) {
            rc = LCOW_INTERNAL;
            snprintf(err.message, sizeof err.message, "walk found %zu of %d snapshots", infos.count,
                     c->count);
        }
        lcow_infos_free(&infos);
        free(next);
        record(c, t0, rc, "Walk", &err);
    } else if (r < 48 && (i = pick(c, 0, false)) >= 0) {
        lcow_info info = {0}, out = {0};
        info.name = c->keys[i].name;
        char v[24];
        snprintf(v, sizeof v, "%u", c->serial++);
        lcow_labels_set(&info.labels, "soak/n", v);
        const char *fp = "labels.soak/n";
        rc = lcow_client_update(cl, &info, &fp, 1, &out, &err);
        lcow_labels_free(&info.labels);
        lcow_info_free(&out);
        record(c, t0, rc, "Update", &err);
    } else if (r < 53 && (i = pick(c, LCOW_KIND_ACTIVE, false)) >= 0) {
        lcow_usage u;
        rc = lcow_client_usage(cl, c->keys[i].name, &u, &err);
        record(c, t0, rc, "Usage", &err);
    } else if (r < 58) {
        lcow_result res;
        memset(&res, 0, sizeof res);
        rc = lcow_client_version(cl, &res, &err);
        lcow_result_free(&res);
        record(c, t0, rc, "Version", &err);
    } else if (r < 90 && c->count < MAX_KEYS - 1) {
        /* Create: container (own or shared scratch), layer, or view. */
        int parent = pick(c, LCOW_KIND_COMMITTED, false);
        key *k = &c->keys[c->count];
        memset(k, 0, sizeof *k);
        k->parent = parent;
        lcow_labels labels = {0};
        lcow_mounts m = {0};
        const char *what;
        unsigned kind = (unsigned)(rnd(&c->rng) % 4);
        if (kind <= 1) {
            int owner = -1;
            for (int j = 0; j < c->count && kind == 1; j++)
                if (c->keys[j].kind == LCOW_KIND_ACTIVE && c->keys[j].scratch)
                    owner = j;
            snprintf(k->name, sizeof k->name, "s%d/1/c%u", c->index, c->serial++);
            if (owner >= 0) {
                const char *ck = strrchr(c->keys[owner].name, '/') + 1;
                lcow_labels_set(&labels, LCOW_LABEL_REUSE, "true");
                lcow_labels_set(&labels, LCOW_LABEL_OWNER, ck);
            } else {
                lcow_labels_set(&labels, LCOW_LABEL_SIZE_GB, (rnd(&c->rng) & 1) ? "1" : "2");
            }
            k->kind = LCOW_KIND_ACTIVE;
            k->scratch = true;
            what = "Prepare";
            rc = lcow_client_prepare(cl, k->name, parent >= 0 ? c->keys[parent].name : NULL,
                                     &labels, &m, &err);
        } else if (kind == 2 || parent < 0) {
            char ex[80];
            snprintf(ex, sizeof ex, "s%d/1/extract-%u", c->index, c->serial++);
            rc = lcow_client_prepare(cl, ex, parent >= 0 ? c->keys[parent].name : NULL, NULL, &m,
                                     &err);
            record(c, t0, rc, "Prepare extract", &err);
            t0 = now_ns();
            snprintf(k->name, sizeof k->name, "s%d/1/layer-%u", c->index, c->serial++);
            lcow_labels_set(&labels, "soak/layer", "1");
            if (rc == LCOW_OK)
                rc = lcow_client_commit(cl, k->name, ex, &labels, NULL, &err);
            k->kind = LCOW_KIND_COMMITTED;
            what = "Commit";
        } else {
            snprintf(k->name, sizeof k->name, "s%d/1/v%u", c->index, c->serial++);
            k->kind = LCOW_KIND_VIEW;
            what = "View";
            rc = lcow_client_view(cl, k->name, c->keys[parent].name, NULL, &m, &err);
        }
        lcow_mounts_free(&m);
        lcow_labels_free(&labels);
        record(c, t0, rc, what, &err);
        if (rc == LCOW_OK) {
            c->count++;
            if (parent >= 0)
                c->keys[parent].children++;
        }
    } else if ((i = pick(c, 0, true)) >= 0) {
        rc = lcow_client_remove(cl, c->keys[i].name, &err);
        record(c, t0, rc, "Remove", &err);
        if (rc == LCOW_OK)
            forget(c, i);
    }
}

static void *client_main(void *arg)
{
    client *c = arg;
    lcow_client *cl = NULL;
    lcow_error err;
    uint64_t t0 = now_ns();
    lcow_code rc = lcow_client_connect(g_address, 10000, &cl, &err);
    record(c, t0, rc, "connect", &err);
    if (rc != LCOW_OK)
        return NULL;
    lcow_client_set_call_timeout(cl, 60000);
    while (!atomic_load(&g_stop)) {
        step(c, cl);
        if (c->errors > 20)
            break;
    }
    /* Leave nothing behind: remove leaves until empty. */
    for (int guard = 0; c->count > 0 && guard < 64; guard++) {
        int i = pick(c, 0, true);
        uint64_t t1 = now_ns();
        rc = lcow_client_remove(cl, c->keys[i].name, &err);
        record(c, t1, rc, "Remove", &err);
        if (rc != LCOW_OK)
            break;
        forget(c, i);
    }
    lcow_client_close(cl);
    return NULL;
}

/* ------------------------------------------------------------ sampling */

typedef struct sample {
    double t;
    long rss_kb;
    long anon_kb, file_kb; /* Linux: RssAnon, RssFile (LevelDB maps its tables) */
    long fds;              /* handles on Windows (other than events, where they are known) */
    long events;           /* Windows: Event handles, -1 when unknown; POSIX: -1 */
} sample;

/* Event handles a healthy service may hold. lcowsnap itself creates none (its
 * locks are SRWLOCK/CONDITION_VARIABLE); LevelDB is built with mingw's posix
 * thread model, whose winpthreads mutex creates its wait event on the mutex's
 * first contention and keeps it for the mutex's lifetime. LevelDB's block and
 * table caches have 16 shards + 1 each, plus the DB's and the environment's
 * mutexes: about 40 such events, created over the first minutes of load as
 * more shards meet contention. So events are judged against this bound, and
 * every other handle against 10%. */
#define MAX_EVENT_HANDLES 64

#ifdef _WIN32
static DWORD g_pid;

static DWORD find_process(const char *name)
{
    wchar_t wname[MAX_PATH];
    MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, MAX_PATH);
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE)
        return 0;
    PROCESSENTRY32W pe;
    pe.dwSize = sizeof pe;
    DWORD pid = 0;
    for (BOOL ok = Process32FirstW(snap, &pe); ok; ok = Process32NextW(snap, &pe))
        if (_wcsicmp(pe.szExeFile, wname) == 0)
            pid = pe.th32ProcessID;
    CloseHandle(snap);
    return pid;
}

/* Where the handle count comes from: the system handle table
 * (NtQuerySystemInformation, SystemExtendedHandleInformation), entries owned
 * by the process, split into Event handles and the rest by object type. Wine
 * fills it from wineserver; its GetProcessHandleCount returns success with 0
 * for every process, so that call is only the fallback (no split). Wine 8.0's
 * wineserver crashes on this request when a process in the prefix is just
 * starting (docs/reference/wine-mingw.md), so the Wine soaks run alone. */
static const char *g_handle_source = "the system handle table";

typedef struct {
    PVOID object;
    ULONG_PTR pid;
    ULONG_PTR handle;
    ULONG access;
    USHORT backtrace_index;
    USHORT type_index;
    ULONG attributes;
    ULONG reserved;
} handle_entry_ex;

typedef struct {
    ULONG_PTR count;
    ULONG_PTR reserved;
    handle_entry_ex handles[1];
} handle_info_ex;

#define SYSTEM_EXTENDED_HANDLE_INFORMATION 64
#define STATUS_INFO_LENGTH_MISMATCH_ ((LONG)0xC0000004L)

/* ObjectTypeIndex -> 0 not looked up yet, 1 Event, 2 another type. */
static unsigned char g_type_is_event[65536];

static bool type_is_event(HANDLE proc, const handle_entry_ex *e)
{
    typedef LONG(NTAPI * qo_fn)(HANDLE, ULONG, PVOID, ULONG, PULONG);
    static qo_fn qo;
    if (!g_type_is_event[e->type_index]) {
        if (!qo)
            qo = (qo_fn)(void (*)(void))GetProcAddress(GetModuleHandleW(L"ntdll.dll"),
                                                       "NtQueryObject");
        HANDLE dup = NULL;
        if (!qo || !proc ||
            !DuplicateHandle(proc, (HANDLE)e->handle, GetCurrentProcess(), &dup, 0, FALSE,
                             DUPLICATE_SAME_ACCESS))
            return false; /* not cached: the next sample tries again */
        union {
            struct { /* OBJECT_TYPE_INFORMATION starts with a UNICODE_STRING */
                USHORT length, maximum_length;
                PWSTR buffer;
            } name;
            unsigned char bytes[1024];
        } info;
        ULONG got = 0;
        bool event = false;
        if (qo(dup, 2 /* ObjectTypeInformation */, &info, sizeof info, &got) == 0)
            event = info.name.length == 10 && !memcmp(info.name.buffer, L"Event", 10);
        CloseHandle(dup);
        g_type_is_event[e->type_index] = event ? 1 : 2;
    }
    return g_type_is_event[e->type_index] == 1;
}

/* The process's handles in the system handle table: *events of type Event, the
 * return value all the others; -1 when the table cannot be read. */
static long handles_in_system_table(DWORD pid, long *events)
{
    typedef LONG(NTAPI * qsi_fn)(ULONG, PVOID, ULONG, PULONG);
    static qsi_fn qsi;
    static void *buf;
    static ULONG size = 1u << 20;
    if (!qsi)
        qsi = (qsi_fn)(void (*)(void))GetProcAddress(GetModuleHandleW(L"ntdll.dll"),
                                                     "NtQuerySystemInformation");
    if (!qsi)
        return -1;
    for (;;) {
        if (!buf && !(buf = malloc(size)))
            return -1;
        ULONG needed = 0;
        LONG st = qsi(SYSTEM_EXTENDED_HANDLE_INFORMATION, buf, size, &needed);
        if (st == STATUS_INFO_LENGTH_MISMATCH_ && size < (1u << 28)) {
            free(buf);
            buf = NULL;
            size *= 2;
            continue;
        }
        if (st != 0)
            return -1;
        break;
    }
    const handle_info_ex *info = buf;
    HANDLE proc = OpenProcess(PROCESS_DUP_HANDLE, FALSE, pid);
    long n = 0;
    *events = 0;
    for (ULONG_PTR i = 0; i < info->count; i++)
        if (info->handles[i].pid == pid) {
            if (type_is_event(proc, &info->handles[i]))
                ++*events;
            else
                n++;
        }
    if (proc)
        CloseHandle(proc);
    return n;
}

static bool take_sample(sample *s)
{
    HANDLE h = OpenProcess(PROCESS_QUERY_INFORMATION | PROCESS_VM_READ, FALSE, g_pid);
    if (!h)
        return false;
    DWORD handles = 0;
    s->fds = handles_in_system_table(g_pid, &s->events);
    if (s->fds < 0) {
        s->events = -1;
        s->fds = GetProcessHandleCount(h, &handles) ? (long)handles : -1;
        g_handle_source = "GetProcessHandleCount (all types)";
    }
    PROCESS_MEMORY_COUNTERS pmc;
    memset(&pmc, 0, sizeof pmc);
    s->rss_kb =
        K32GetProcessMemoryInfo(h, &pmc, sizeof pmc) ? (long)(pmc.WorkingSetSize / 1024) : -1;
    CloseHandle(h);
    return true;
}
#else
static pid_t g_pid;

static bool take_sample(sample *s)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)g_pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    s->rss_kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            s->rss_kb = strtol(line + 6, NULL, 10);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            s->anon_kb = strtol(line + 8, NULL, 10);
        else if (strncmp(line, "RssFile:", 8) == 0)
            s->file_kb = strtol(line + 8, NULL, 10);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/fd", (int)g_pid);
    DIR *d = opendir(path);
    s->fds = 0;
    s->events = -1;
    if (!d)
        return false;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            s->fds++;
    closedir(d);
    return true;
}
#endif

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

#ifndef _WIN32
static double window_mean_of(const sample *s, int n, double from, double to, int field)
{
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s[i].t >= from && s[i].t < to) {
            sum += field == 2 ? (double)s[i].anon_kb : (double)s[i].file_kb;
            k++;
        }
    return k ? sum / k : -1;
}
#endif

static double window_mean(const sample *s, int n, double from, double to, bool rss)
{
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (s[i].t >= from && s[i].t < to) {
            sum += rss ? (double)s[i].rss_kb : (double)s[i].fds;
            k++;
        }
    return k ? sum / k : -1;
}

int main(int argc, char **argv)
{
    unsigned nclients = 64, seconds = 60, window = 10, warmup = 0, max_latency_ms = 10000;
    double rss_allowance_kb = 6144;
    const char *label = "native", *exe = NULL, *dir = NULL, *process = NULL;
    long pid_arg = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--clients"))
            nclients = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seconds"))
            seconds = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--window"))
            window = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--warmup"))
            warmup = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--max-latency-ms"))
            max_latency_ms = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--rss-allowance-kb"))
            rss_allowance_kb = strtod(v, NULL);
        else if (!strcmp(a, "--label"))
            label = v;
        else if (!strcmp(a, "--address"))
            g_address = v;
        else if (!strcmp(a, "--exe"))
            exe = v;
        else if (!strcmp(a, "--dir"))
            dir = v;
        else if (!strcmp(a, "--process-name"))
            process = v;
        else if (!strcmp(a, "--pid"))
            pid_arg = strtol(v, NULL, 10);
    }
    if (nclients == 0 || nclients > MAX_CLIENTS || window == 0 || warmup + window * 2 > seconds) {
        fprintf(stderr, "soak: bad --clients / --seconds / --window / --warmup\n");
        return 2;
    }
#ifdef _WIN32
    (void)exe, (void)dir, (void)pid_arg;
    if (!g_address || !process) {
        fprintf(stderr, "usage: soak --address PIPE --process-name NAME.exe [options]\n");
        return 2;
    }
    g_pid = find_process(process);
    if (!g_pid) {
        fprintf(stderr, "soak: no process %s\n", process);
        return 1;
    }
#else
    (void)process;
    signal(SIGPIPE, SIG_IGN);
    static tsvc svc;
    if (exe && dir) {
        tfresh_dir(dir);
        snprintf(svc.exe, sizeof svc.exe, "%s", exe);
        snprintf(svc.root, sizeof svc.root, "%s/root", dir);
        snprintf(svc.address, sizeof svc.address, "%s/s.sock", dir);
        snprintf(svc.log, sizeof svc.log, "%s/service.log", dir);
        if (tsvc_start(&svc, NULL, NULL) != 0) {
            fprintf(stderr, "soak: service did not start (status %d), log %s\n", svc.status,
                    svc.log);
            return 1;
        }
        g_address = svc.address;
        g_pid = svc.pid;
    } else if (g_address && pid_arg > 0) {
        g_pid = (pid_t)pid_arg;
    } else {
        fprintf(stderr, "usage: soak --exe LCOWSNAP --dir DIR | --address SOCK --pid PID\n");
        return 2;
    }
#endif
    static client clients[MAX_CLIENTS];
    static lcow_thread threads[MAX_CLIENTS];
    for (unsigned i = 0; i < nclients; i++) {
        clients[i].index = (int)i;
        clients[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) + (uint64_t)now_ns();
    }
    sample *samples = calloc(seconds + 16, sizeof *samples);
    int nsamples = 0;
    uint64_t t0 = now_ns();
    for (unsigned i = 0; i < nclients; i++)
        lcow_thread_create(&threads[i], client_main, &clients[i]);
    bool sampling_ok = true;
    for (unsigned sec = 0; sec < seconds; sec++) {
        uint64_t due = t0 + (uint64_t)(sec + 1) * 1000000000ull;
        uint64_t now = now_ns();
        if (due > now)
            sleep_ms((unsigned)((due - now) / 1000000u));
        sample s = {.t = (double)(now_ns() - t0) / 1e9};
        if (take_sample(&s))
            samples[nsamples++] = s;
        else
            sampling_ok = false;
    }
    atomic_store(&g_stop, true);
    for (unsigned i = 0; i < nclients; i++)
        lcow_thread_join(threads[i], NULL);
    double elapsed = (double)(now_ns() - t0) / 1e9;

    size_t total = 0;
    unsigned errors = 0;
    const char *first_error = NULL;
    for (unsigned i = 0; i < nclients; i++) {
        total += clients[i].lat_n;
        errors += clients[i].errors;
        if (clients[i].errors && !first_error)
            first_error = clients[i].first_error;
    }
    uint32_t *all = malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (unsigned i = 0; i < nclients; i++) {
        memcpy(all + k, clients[i].lat_us, clients[i].lat_n * sizeof *all);
        k += clients[i].lat_n;
    }
    qsort(all, total, sizeof *all, cmp_u32);
    double p50 = total ? all[total / 2] / 1000.0 : 0;
    double p99 = total ? all[(size_t)((double)total * 0.99)] / 1000.0 : 0;
    double pmax = total ? all[total - 1] / 1000.0 : 0;

    double first_from = warmup ? warmup + 0.5 : 0, first_to = warmup + window + 0.5;
    double rss_first = window_mean(samples, nsamples, first_from, first_to, true);
    double rss_last = window_mean(samples, nsamples, seconds - window + 0.5, seconds + 60, true);
    double rss_startup = window_mean(samples, nsamples, 0, window + 0.5, true);
    double fd_first = window_mean(samples, nsamples, first_from, first_to, false);
    double fd_last = window_mean(samples, nsamples, seconds - window + 0.5, seconds + 60, false);
    /* LevelDB's memory fills with use: two 1 MiB write buffers (memtable +
     * the one being flushed) and the 4 MiB block cache (core/metastore.h).
     * Growth up to --rss-allowance-kb on top of 10% is the caches warming,
     * not a leak; anything beyond fails. */
    bool rss_flat = rss_first > 0 && rss_last <= rss_first * 1.10 + rss_allowance_kb &&
                    rss_last >= rss_first * 0.90;
    bool fd_flat = fd_first > 0 && fd_last <= fd_first * 1.10 && fd_last >= fd_first * 0.90;
    bool fd_known = fd_first > 0;
    long events_min = -1, events_max = -1;
    for (int i = 0; i < nsamples; i++)
        if (samples[i].events >= 0) {
            if (events_min < 0 || samples[i].events < events_min)
                events_min = samples[i].events;
            if (samples[i].events > events_max)
                events_max = samples[i].events;
        }
    bool events_ok = events_max <= MAX_EVENT_HANDLES;
    bool latency_ok = pmax <= max_latency_ms;
    int rc =
        errors == 0 && latency_ok && rss_flat && fd_flat && events_ok && sampling_ok && total > 0
            ? 0
            : 1;

#ifndef _WIN32
    if (exe && dir) {
        int st = tsvc_stop(&svc, SIGTERM, 30000);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "soak: service did not exit 0 on SIGTERM (status %d)\n", st);
            rc = 1;
        }
    }
#endif
    const char *what = "fds";
#ifdef _WIN32
    what = events_max >= 0 ? "handles other than events" : "handles";
#endif
    if (errors)
        fprintf(stderr, "soak: first error: %s\n", first_error);
    if (!latency_ok)
        fprintf(stderr, "soak: max latency %.1f ms above the %u ms bound\n", pmax, max_latency_ms);
    if (!sampling_ok)
        fprintf(stderr, "soak: could not sample the service process\n");
    if (!events_ok)
        fprintf(stderr, "soak: the service held %ld Event handles, above the bound of %d\n",
                events_max, MAX_EVENT_HANDLES);
    printf("soak %s: per-second samples (t, rss KiB, %s, anon KiB, file KiB, events):", label,
           what);
    for (int i = 0; i < nsamples; i++)
        printf(" %.0f:%ld:%ld:%ld:%ld:%ld", samples[i].t, samples[i].rss_kb, samples[i].fds,
               samples[i].anon_kb, samples[i].file_kb, samples[i].events);
    printf("\n");
    /* tsummary is POSIX-only (torture_util); write the line the same way. */
    char line[1400];
    int used = snprintf(
        line, sizeof line,
        "torture soak (%s): %s: %u clients x %.0f s: requests %zu (%.0f/s), errors %u; latency "
        "p50 %.2f ms, p99 %.2f ms, max %.1f ms; RSS first/last %us%s %.0f/%.0f KiB (%+.1f%%, "
        "allowed +10%% + %.0f KiB for LevelDB's buffers and cache)",
        label, rc ? "FAILED" : "ok", nclients, elapsed, total, (double)total / elapsed, errors, p50,
        p99, pmax, window, warmup ? " after the warm-up" : "", rss_first, rss_last,
        rss_first > 0 ? (rss_last / rss_first - 1) * 100 : 0, rss_allowance_kb);
    if (warmup && used > 0 && (size_t)used < sizeof line)
        used +=
            snprintf(line + used, sizeof line - (size_t)used,
                     "; warm-up %us, start-up window 0-%us %.0f KiB (%+.1f%% to the last)", warmup,
                     window, rss_startup, rss_startup > 0 ? (rss_last / rss_startup - 1) * 100 : 0);
#ifndef _WIN32
    double anon_first = window_mean_of(samples, nsamples, first_from, first_to, 2);
    double anon_last = window_mean_of(samples, nsamples, seconds - window + 0.5, seconds + 60, 2);
    double file_first = window_mean_of(samples, nsamples, first_from, first_to, 3);
    double file_last = window_mean_of(samples, nsamples, seconds - window + 0.5, seconds + 60, 3);
    used += snprintf(line + used, sizeof line - (size_t)used,
                     " [anon %.0f/%.0f, file-backed %.0f/%.0f]", anon_first, anon_last, file_first,
                     file_last);
#endif
    if (fd_known)
        used += snprintf(line + used, sizeof line - (size_t)used, ", %s %.1f/%.1f (%+.1f%%)", what,
                         fd_first, fd_last, (fd_last / fd_first - 1) * 100);
    else
        used += snprintf(line + used, sizeof line - (size_t)used, ", %s: no count", what);
#ifdef _WIN32
    if (used > 0 && (size_t)used < sizeof line)
        used += snprintf(line + used, sizeof line - (size_t)used, " from %s", g_handle_source);
    if (events_max >= 0 && used > 0 && (size_t)used < sizeof line)
        snprintf(line + used, sizeof line - (size_t)used, "; Event handles %ld..%ld (bound %d)",
                 events_min, events_max, MAX_EVENT_HANDLES);
#endif
    printf("%s\n", line);
    const char *file = getenv("LCOW_TORTURE_SUMMARY");
    if (file && *file) {
        FILE *f = fopen(file, "a");
        if (f) {
            fprintf(f, "%s\n", line);
            fclose(f);
        }
    }
    return rc;
}

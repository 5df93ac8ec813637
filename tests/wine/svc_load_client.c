/* Load client for the service drain test (Windows exe, run under Wine).
 *
 *   svc_load_client load PIPE THREADS COMMITTED_FILE READY_FILE
 *     THREADS connections each loop Prepare(extract-T-N) + Commit(layer-T-N),
 *     until the service goes away. Every Commit answered without error is
 *     appended to COMMITTED_FILE. READY_FILE is created once every connection
 *     has completed a few rounds (the moment to send the stop). A response
 *     cut off after some of its bytes, or one that does not parse, is a
 *     failure (exit 1); a connection closed with no byte of the pending
 *     response is the clean end of a drained stop.
 *   svc_load_client verify PIPE COMMITTED_FILE
 *     Stats every key of COMMITTED_FILE; each must be a committed snapshot.
 *   svc_load_client message EXE MESSAGE_ID INSERT
 *     Renders a message of EXE's message table the way Event Viewer does
 *     (FormatMessageW from the module loaded as a data file).
 *   svc_load_client version EXE
 *     Prints ProductVersion from EXE's version resource.
 *
 * It speaks raw MessagePack-RPC over the pipe (not the client library) so it
 * can see exactly how many bytes of a response arrived. */
#include <windows.h>

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS_BEFORE_READY 3

typedef struct conn {
    HANDLE pipe;
    msgpack_unpacker unpacker;
    uint32_t next_msgid;
} conn;

typedef enum call_result {
    CALL_OK,        /* complete response, no error */
    CALL_ERROR,     /* complete response carrying an error */
    CALL_CLOSED,    /* connection closed before any byte of the response */
    CALL_TRUNCATED, /* connection closed in the middle of the response */
    CALL_MALFORMED,
} call_result;

static volatile LONG ready_threads, truncated, malformed, closed_clean, error_responses, commits_ok;
static LONG thread_count;
static const char *ready_file;
static wchar_t pipe_name[256];
static CRITICAL_SECTION out_lock;
static FILE *committed_out;

static bool conn_open(conn *c, DWORD wait_ms)
{
    DWORD start = GetTickCount();
    for (;;) {
        c->pipe =
            CreateFileW(pipe_name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING, 0, NULL);
        if (c->pipe != INVALID_HANDLE_VALUE)
            break;
        if (GetTickCount() - start > wait_ms)
            return false;
        if (GetLastError() == ERROR_PIPE_BUSY)
            WaitNamedPipeW(pipe_name, 500);
        else
            Sleep(100);
    }
    msgpack_unpacker_init(&c->unpacker, 65536);
    c->next_msgid = 1;
    return true;
}

static void conn_close(conn *c)
{
    CloseHandle(c->pipe);
    msgpack_unpacker_destroy(&c->unpacker);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* params: NULL-terminated key/value pairs of strings. */
static call_result call(conn *c, const char *method, const char *const *params, char *kind_out)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t msgid = c->next_msgid++;
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 0);
    msgpack_pack_uint32(&pk, msgid);
    pack_str(&pk, method);
    msgpack_pack_array(&pk, 1);
    size_t pairs = 0;
    while (params[pairs * 2])
        pairs++;
    msgpack_pack_map(&pk, pairs);
    for (size_t i = 0; i < pairs; i++) {
        pack_str(&pk, params[i * 2]);
        pack_str(&pk, params[i * 2 + 1]);
    }
    DWORD written = 0;
    BOOL ok = WriteFile(c->pipe, sb.data, (DWORD)sb.size, &written, NULL);
    msgpack_sbuffer_destroy(&sb);
    if (!ok || written != sb.size)
        return CALL_CLOSED; /* nothing of a response can have arrived */

    size_t received = 0;
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    call_result outcome;
    for (;;) {
        msgpack_unpack_return ret = msgpack_unpacker_next(&c->unpacker, &result);
        if (ret == MSGPACK_UNPACK_SUCCESS)
            break;
        if (ret != MSGPACK_UNPACK_CONTINUE) {
            outcome = CALL_MALFORMED;
            goto done;
        }
        msgpack_unpacker_reserve_buffer(&c->unpacker, 4096);
        DWORD got = 0;
        if (!ReadFile(c->pipe, msgpack_unpacker_buffer(&c->unpacker), 4096, &got, NULL) ||
            got == 0) {
            outcome = received == 0 ? CALL_CLOSED : CALL_TRUNCATED;
            goto done;
        }
        received += got;
        msgpack_unpacker_buffer_consumed(&c->unpacker, got);
    }
    msgpack_object o = result.data;
    if (o.type != MSGPACK_OBJECT_ARRAY || o.via.array.size != 4 ||
        o.via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o.via.array.ptr[0].via.u64 != 1 || o.via.array.ptr[1].via.u64 != msgid) {
        outcome = CALL_MALFORMED;
        goto done;
    }
    if (o.via.array.ptr[2].type != MSGPACK_OBJECT_NIL) {
        outcome = CALL_ERROR;
        goto done;
    }
    outcome = CALL_OK;
    if (kind_out) {
        /* result.info.kind */
        kind_out[0] = '\0';
        msgpack_object res = o.via.array.ptr[3];
        for (uint32_t i = 0; res.type == MSGPACK_OBJECT_MAP && i < res.via.map.size; i++) {
            msgpack_object_kv *kv = &res.via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size != 4 ||
                memcmp(kv->key.via.str.ptr, "info", 4) != 0 || kv->val.type != MSGPACK_OBJECT_MAP)
                continue;
            for (uint32_t j = 0; j < kv->val.via.map.size; j++) {
                msgpack_object_kv *f = &kv->val.via.map.ptr[j];
                if (f->key.type == MSGPACK_OBJECT_STR && f->key.via.str.size == 4 &&
                    memcmp(f->key.via.str.ptr, "kind", 4) == 0 &&
                    f->val.type == MSGPACK_OBJECT_STR && f->val.via.str.size < 32) {
                    memcpy(kind_out, f->val.via.str.ptr, f->val.via.str.size);
                    kind_out[f->val.via.str.size] = '\0';
                }
            }
        }
    }
done:
    msgpack_unpacked_destroy(&result);
    return outcome;
}

static bool count(call_result r)
{
    switch (r) {
    case CALL_OK:
        return true;
    case CALL_ERROR:
        InterlockedIncrement(&error_responses);
        return true;
    case CALL_CLOSED:
        InterlockedIncrement(&closed_clean);
        return false;
    case CALL_TRUNCATED:
        InterlockedIncrement(&truncated);
        return false;
    default:
        InterlockedIncrement(&malformed);
        return false;
    }
}

static DWORD WINAPI load_thread(LPVOID arg)
{
    int t = (int)(intptr_t)arg;
    conn c;
    if (!conn_open(&c, 20000)) {
        fprintf(stderr, "client %d: cannot connect\n", t);
        InterlockedIncrement(&malformed);
        return 1;
    }
    for (int n = 0;; n++) {
        char extract[64], layer[64];
        snprintf(extract, sizeof extract, "extract-%d-%d", t, n);
        snprintf(layer, sizeof layer, "layer-%d-%d", t, n);
        const char *prepare[] = {"key", extract, NULL};
        call_result r = call(&c, "Prepare", prepare, NULL);
        if (!count(r))
            break;
        const char *commit[] = {"name", layer, "key", extract, NULL};
        r = call(&c, "Commit", commit, NULL);
        if (r == CALL_OK) {
            InterlockedIncrement(&commits_ok);
            EnterCriticalSection(&out_lock);
            fprintf(committed_out, "%s\n", layer);
            fflush(committed_out);
            LeaveCriticalSection(&out_lock);
        }
        if (!count(r))
            break;
        if (n + 1 == ROUNDS_BEFORE_READY && InterlockedIncrement(&ready_threads) == thread_count) {
            FILE *f = fopen(ready_file, "w");
            if (f)
                fclose(f);
        }
    }
    conn_close(&c);
    return 0;
}

static int load(int threads, const char *out_path)
{
    committed_out = fopen(out_path, "w");
    if (!committed_out) {
        fprintf(stderr, "cannot write %s\n", out_path);
        return 2;
    }
    InitializeCriticalSection(&out_lock);
    thread_count = threads;
    HANDLE *handles = calloc((size_t)threads, sizeof *handles);
    for (int i = 0; i < threads; i++)
        handles[i] = CreateThread(NULL, 0, load_thread, (LPVOID)(intptr_t)i, 0, NULL);
    for (int i = 0; i < threads; i++) {
        WaitForSingleObject(handles[i], INFINITE);
        CloseHandle(handles[i]);
    }
    fclose(committed_out);
    printf("load: %ld commits answered, %ld error responses, %ld connections closed cleanly, "
           "%ld truncated responses, %ld malformed responses\n",
           commits_ok, error_responses, closed_clean, truncated, malformed);
    if (truncated || malformed) {
        fprintf(stderr, "FAIL: a client got a truncated or malformed response\n");
        return 1;
    }
    if (commits_ok == 0) {
        fprintf(stderr, "FAIL: no commit was answered\n");
        return 1;
    }
    return 0;
}

static int verify(const char *in_path)
{
    FILE *in = fopen(in_path, "r");
    if (!in) {
        fprintf(stderr, "cannot read %s\n", in_path);
        return 2;
    }
    conn c;
    if (!conn_open(&c, 20000)) {
        fprintf(stderr, "verify: cannot connect\n");
        return 1;
    }
    char line[128];
    int checked = 0, missing = 0;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0])
            continue;
        const char *stat[] = {"key", line, NULL};
        char kind[32] = "";
        call_result r = call(&c, "Stat", stat, kind);
        checked++;
        if (r != CALL_OK || strcmp(kind, "committed") != 0) {
            fprintf(stderr, "missing after restart: %s (result %d, kind '%s')\n", line, (int)r,
                    kind);
            missing++;
        }
    }
    fclose(in);
    conn_close(&c);
    printf("verify: %d committed snapshots checked, %d missing\n", checked, missing);
    return missing || checked == 0 ? 1 : 0;
}

static wchar_t *widen(const char *s)
{
    static wchar_t buf[1024];
    MultiByteToWideChar(CP_UTF8, 0, s, -1, buf, 1024);
    return buf;
}

static int render_message(const char *exe, const char *id_text, const char *insert)
{
    HMODULE module = LoadLibraryExW(widen(exe), NULL, LOAD_LIBRARY_AS_DATAFILE);
    if (!module) {
        fprintf(stderr, "cannot load %s (error %lu)\n", exe, GetLastError());
        return 1;
    }
    wchar_t winsert[256];
    MultiByteToWideChar(CP_UTF8, 0, insert, -1, winsert, 256);
    DWORD_PTR args[1] = {(DWORD_PTR)winsert};
    wchar_t text[1024];
    DWORD id = (DWORD)strtoul(id_text, NULL, 0);
    DWORD n =
        FormatMessageW(FORMAT_MESSAGE_FROM_HMODULE | FORMAT_MESSAGE_ARGUMENT_ARRAY, module, id,
                       MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US), text, 1024, (va_list *)args);
    FreeLibrary(module);
    if (n == 0) {
        fprintf(stderr, "message 0x%lx not found in %s (error %lu)\n", id, exe, GetLastError());
        return 1;
    }
    printf("%ls\n", text);
    return 0;
}

static int print_version(const char *exe)
{
    DWORD handle = 0;
    DWORD size = GetFileVersionInfoSizeW(widen(exe), &handle);
    void *data = size ? malloc(size) : NULL;
    wchar_t *value = NULL;
    UINT len = 0;
    if (!data || !GetFileVersionInfoW(widen(exe), 0, size, data) ||
        !VerQueryValueW(data, L"\\StringFileInfo\\040904b0\\ProductVersion", (void **)&value,
                        &len)) {
        fprintf(stderr, "no version resource in %s\n", exe);
        free(data);
        return 1;
    }
    printf("%ls\n", value);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "message") == 0)
        return render_message(argv[2], argv[3], argv[4]);
    if (argc == 3 && strcmp(argv[1], "version") == 0)
        return print_version(argv[2]);
    if (argc >= 3)
        MultiByteToWideChar(CP_UTF8, 0, argv[2], -1, pipe_name, 256);
    if (argc == 6 && strcmp(argv[1], "load") == 0) {
        ready_file = argv[5];
        return load(atoi(argv[3]), argv[4]);
    }
    if (argc == 4 && strcmp(argv[1], "verify") == 0)
        return verify(argv[3]);
    fprintf(stderr, "usage: svc_load_client load PIPE THREADS COMMITTED_FILE READY_FILE\n"
                    "       svc_load_client verify PIPE COMMITTED_FILE\n");
    return 2;
}

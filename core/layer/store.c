/* The layer store (store.h; docs/layers.md, "The layer store").
 *
 * Durability: a stored layer is complete when its `info` exists; info is
 * written (temp + fsync + rename + directory sync) after layer.vhd is in
 * place and synced, and removed first when the layer goes. A blob entry is
 * written after its layer is complete and removed before the last variant
 * of its diffID goes. Links into snapshot directories are made only from
 * complete layers, under the lock that removal takes, so a link never
 * points at a layer the store does not know. */
#include "core/layer/store.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/os/thread.h"

#define INFO_NAME "info"
#define LAST_USE_NAME "last-use"
#define INFO_MAGIC "lcowsnap-layer 1"
#define VERITY_SUFFIX ".verity"
#define ENTRY_PREFIX "sha256-"
/* "sha256-" + 64 hex + ".verity" + NUL */
#define ENTRY_NAME_SIZE (7 + 64 + 7 + 1)

/* A conversion in progress: its temp name in tmp/ and, with a digest, the
 * blob it converts (others applying that blob wait for it). */
typedef struct conversion {
    char temp[17]; /* 16 hex digits */
    bool has_digest;
    uint8_t digest[LCOW_SHA256_SIZE];
    bool verity;
} conversion;

struct lcow_layer_store {
    char *dir;
    char *tmp_dir;
    char *blobs_dir;
    uint64_t max_bytes;
    bool no_sync;
    lcow_mutex lock;
    lcow_cond changed;
    conversion **convs;
    size_t conv_count, conv_cap;
    lcow_layer_store_stats stats;
};

static lcow_code oom(lcow_error *err)
{
    return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "out of memory");
}

/* ---------------------------------------------------------------- names */

static void entry_name(const uint8_t diff[LCOW_SHA256_SIZE], bool verity, char out[ENTRY_NAME_SIZE])
{
    char hex[LCOW_SHA256_HEX_SIZE];
    lcow_sha256_hex(diff, hex);
    snprintf(out, ENTRY_NAME_SIZE, ENTRY_PREFIX "%s%s", hex, verity ? VERITY_SUFFIX : "");
}

static bool is_hex64(const char *p)
{
    for (int i = 0; i < 64; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

/* "sha256-<hex>[.verity]" -> digest, verity. */
static bool parse_entry_name(const char *name, uint8_t diff[LCOW_SHA256_SIZE], bool *verity)
{
    size_t n = strlen(name), p = strlen(ENTRY_PREFIX);
    if (strncmp(name, ENTRY_PREFIX, p) != 0 || n < p + 64 || !is_hex64(name + p))
        return false;
    if (n == p + 64)
        *verity = false;
    else if (strcmp(name + p + 64, VERITY_SUFFIX) == 0)
        *verity = true;
    else
        return false;
    char text[LCOW_SHA256_DIGEST_STRING_SIZE];
    snprintf(text, sizeof text, "sha256:%.64s", name + p);
    return lcow_sha256_parse_digest(text, diff, NULL) == LCOW_OK;
}

static char *join3(const char *a, const char *b, const char *c)
{
    char *ab = lcow_path_join(a, b);
    char *abc = ab ? lcow_path_join(ab, c) : NULL;
    free(ab);
    return abc;
}

/* ---------------------------------------------------------------- small files */

static lcow_code read_small(const char *path, char *buf, size_t cap, size_t *len, lcow_error *err)
{
    lcow_file *f;
    lcow_code rc = lcow_file_open(path, LCOW_OPEN_READ | LCOW_OPEN_REGULAR, &f, err);
    if (rc != LCOW_OK)
        return rc;
    size_t got = 0;
    rc = lcow_file_pread(f, buf, cap - 1, 0, &got, err);
    lcow_file_close(f);
    if (rc != LCOW_OK)
        return rc;
    buf[got] = '\0';
    *len = got;
    return LCOW_OK;
}

/* path's content replaced atomically: a temp beside it, written, synced
 * (unless !durable), renamed, the directory synced. */
static lcow_code write_small(const char *dir, const char *name, const char *text, bool durable,
                             lcow_error *err)
{
    uint8_t rnd[4];
    lcow_code rc = lcow_os_random(rnd, sizeof rnd, err);
    if (rc != LCOW_OK)
        return rc;
    char tname[64];
    snprintf(tname, sizeof tname, ".%s.tmp-%02x%02x%02x%02x", name, rnd[0], rnd[1], rnd[2], rnd[3]);
    char *temp = lcow_path_join(dir, tname), *final = lcow_path_join(dir, name);
    if (!temp || !final) {
        free(temp);
        free(final);
        return oom(err);
    }
    lcow_file *f;
    rc = lcow_file_open(temp, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &f, err);
    if (rc == LCOW_OK) {
        rc = lcow_file_pwrite(f, text, strlen(text), 0, err);
        if (rc == LCOW_OK && durable)
            rc = lcow_file_sync(f, err);
        lcow_file_close(f);
        if (rc == LCOW_OK)
            rc = lcow_os_rename(temp, final, err);
        if (rc != LCOW_OK)
            lcow_os_remove(temp, NULL);
    }
    if (rc == LCOW_OK && durable)
        rc = lcow_os_sync_dir(dir, err);
    free(temp);
    free(final);
    return rc;
}

/* ---------------------------------------------------------------- records */

/* A layer directory's record, read from its files. */
typedef struct layer_rec {
    char name[ENTRY_NAME_SIZE];
    lcow_layer_store_info info;
    lcow_file_id id;
} layer_rec;

static lcow_code parse_info(const char *text, const char *name, lcow_layer_store_info *info,
                            lcow_error *err)
{
    memset(info, 0, sizeof *info);
    char diff[LCOW_SHA256_DIGEST_STRING_SIZE] = "", root[LCOW_SHA256_HEX_SIZE] = "";
    int verity = -1;
    unsigned long long bytes = 0;
    long long sec = 0;
    unsigned nsec = 0;
    int n = sscanf(
        text, INFO_MAGIC "\ndiff_id %71s\nverity %d\nroot_hash %64s\nbytes %llu\ncreated %lld.%u\n",
        diff, &verity, root, &bytes, &sec, &nsec);
    uint8_t d[LCOW_SHA256_SIZE], nd[LCOW_SHA256_SIZE];
    bool nv = false;
    if (n != 6 || (verity != 0 && verity != 1) ||
        lcow_sha256_parse_digest(diff, d, NULL) != LCOW_OK || !parse_entry_name(name, nd, &nv) ||
        memcmp(d, nd, sizeof d) != 0 || nv != (verity == 1) ||
        (verity == 1 ? (strlen(root) != 64 || !is_hex64(root)) : strcmp(root, "-") != 0) ||
        nsec >= 1000000000u)
        return lcow_error_set(err, LCOW_INTERNAL, "layer store: %s/" INFO_NAME " is malformed",
                              name);
    snprintf(info->diff_id, sizeof info->diff_id, "%s", diff);
    info->verity = verity == 1;
    if (info->verity)
        snprintf(info->verity_root_hash, sizeof info->verity_root_hash, "%s", root);
    info->bytes = bytes;
    info->created = (lcow_time){.sec = sec, .nsec = nsec};
    info->last_use = info->created;
    return LCOW_OK;
}

/* Reads the record of the layer directory `name`. NOT_FOUND when the
 * directory or its info is missing (absent or incomplete). */
static lcow_code read_rec(lcow_layer_store *st, const char *name, layer_rec *r, lcow_error *err)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    char *ldir = lcow_path_join(st->dir, name);
    char *info = ldir ? lcow_path_join(ldir, INFO_NAME) : NULL;
    char *vhd = ldir ? lcow_path_join(ldir, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
    char *use = ldir ? lcow_path_join(ldir, LAST_USE_NAME) : NULL;
    lcow_code rc = info && vhd && use ? LCOW_OK : oom(err);
    char text[512];
    size_t len = 0;
    if (rc == LCOW_OK)
        rc = read_small(info, text, sizeof text, &len, err);
    if (rc == LCOW_OK)
        rc = parse_info(text, name, &r->info, err);
    if (rc == LCOW_OK) {
        rc = lcow_os_file_id(vhd, &r->id, err);
        if (rc == LCOW_NOT_FOUND)
            rc = lcow_error_set(err, LCOW_INTERNAL,
                                "layer store: %s has an info but no " LCOW_LAYER_APPLY_VHD_NAME,
                                name);
    }
    if (rc == LCOW_OK) {
        r->info.references = r->id.links > 0 ? r->id.links - 1 : 0;
        /* Advisory: a torn or missing last-use keeps the creation time. */
        long long sec;
        unsigned nsec;
        if (read_small(use, text, sizeof text, &len, NULL) == LCOW_OK &&
            sscanf(text, "%lld.%u", &sec, &nsec) == 2 && nsec < 1000000000u) {
            lcow_time t = {.sec = sec, .nsec = nsec};
            if (lcow_time_cmp(t, r->info.created) > 0)
                r->info.last_use = t;
        }
    }
    free(ldir);
    free(info);
    free(vhd);
    free(use);
    return rc;
}

static void touch_last_use(lcow_layer_store *st, const char *name)
{
    char *ldir = lcow_path_join(st->dir, name);
    if (!ldir)
        return;
    char text[48];
    lcow_time now = lcow_os_time_now();
    snprintf(text, sizeof text, "%lld.%09u\n", (long long)now.sec, now.nsec);
    lcow_error e;
    if (write_small(ldir, LAST_USE_NAME, text, false, &e) != LCOW_OK)
        LCOW_LOGW("layer store: last use of %s not recorded: %s", name, e.message);
    free(ldir);
}

/* ---------------------------------------------------------------- listing */

typedef struct name_list {
    char **names;
    size_t count, cap;
    bool dirs; /* collect directories (else files) */
    bool failed;
} name_list;

static int collect_name(void *ctx, const char *name, bool is_dir)
{
    name_list *l = ctx;
    if (is_dir != l->dirs)
        return 0;
    if (!lcow_grow(&l->names, &l->cap, l->count + 1, sizeof *l->names) ||
        !(l->names[l->count] = strdup(name))) {
        l->failed = true;
        return 1;
    }
    l->count++;
    return 0;
}

static void name_list_free(name_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static lcow_code list_names(const char *dir, bool dirs, name_list *l, lcow_error *err)
{
    memset(l, 0, sizeof *l);
    l->dirs = dirs;
    lcow_code rc = lcow_os_list_dir(dir, collect_name, l, err);
    if (rc == LCOW_OK && l->failed)
        rc = oom(err);
    if (rc != LCOW_OK)
        name_list_free(l);
    else if (l->count > 1)
        qsort(l->names, l->count, sizeof *l->names, cmp_str);
    return rc;
}

/* The blob entry `name` ("sha256-<hex>") -> the diffID it names. */
static lcow_code read_blob_entry(lcow_layer_store *st, const char *name,
                                 uint8_t diff[LCOW_SHA256_SIZE], lcow_error *err)
{
    char *path = lcow_path_join(st->blobs_dir, name);
    if (!path)
        return oom(err);
    char text[128];
    size_t len = 0;
    lcow_code rc = read_small(path, text, sizeof text, &len, err);
    free(path);
    if (rc != LCOW_OK)
        return rc;
    if (len > 0 && text[len - 1] == '\n')
        text[--len] = '\0';
    if (lcow_sha256_parse_digest(text, diff, NULL) != LCOW_OK)
        return lcow_error_set(err, LCOW_INTERNAL, "layer store: blob entry %s is malformed", name);
    return LCOW_OK;
}

static bool layer_complete(lcow_layer_store *st, const char *name)
{
    char *info = join3(st->dir, name, INFO_NAME);
    lcow_stat sb;
    bool ok = info && lcow_os_stat(info, &sb, NULL) == LCOW_OK && sb.exists && !sb.is_dir;
    free(info);
    return ok;
}

static bool any_variant(lcow_layer_store *st, const uint8_t diff[LCOW_SHA256_SIZE])
{
    char name[ENTRY_NAME_SIZE];
    entry_name(diff, false, name);
    if (layer_complete(st, name))
        return true;
    entry_name(diff, true, name);
    return layer_complete(st, name);
}

/* ---------------------------------------------------------------- open / close */

static lcow_code sweep_locked(lcow_layer_store *st, bool at_open, lcow_error *err);

lcow_code lcow_layer_store_open(const char *root, const lcow_layer_store_options *opts,
                                lcow_layer_store **out, lcow_error *err)
{
    *out = NULL;
    lcow_layer_store *st = calloc(1, sizeof *st);
    if (!st)
        return oom(err);
    lcow_mutex_init(&st->lock);
    lcow_cond_init(&st->changed);
    st->max_bytes = opts && opts->max_unreferenced_bytes ? opts->max_unreferenced_bytes
                                                         : LCOW_LAYER_STORE_DEFAULT_MAX_BYTES;
    st->no_sync = opts && opts->no_sync;
    st->dir = lcow_path_join(root, LCOW_LAYER_STORE_DIR);
    st->tmp_dir = st->dir ? lcow_path_join(st->dir, "tmp") : NULL;
    st->blobs_dir = st->dir ? lcow_path_join(st->dir, "blobs") : NULL;
    lcow_code rc = st->dir && st->tmp_dir && st->blobs_dir ? LCOW_OK : oom(err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(st->tmp_dir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_mkdir_all(st->blobs_dir, err);
    if (rc == LCOW_OK)
        rc = sweep_locked(st, true, err);
    if (rc != LCOW_OK) {
        lcow_error_wrap(err, "layer store %s", st->dir ? st->dir : root);
        lcow_layer_store_close(st);
        return rc;
    }
    *out = st;
    return LCOW_OK;
}

void lcow_layer_store_close(lcow_layer_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->conv_count; i++)
        free(st->convs[i]);
    free(st->convs);
    lcow_cond_destroy(&st->changed);
    lcow_mutex_destroy(&st->lock);
    free(st->dir);
    free(st->tmp_dir);
    free(st->blobs_dir);
    free(st);
}

void lcow_layer_store_stats_get(lcow_layer_store *st, lcow_layer_store_stats *out)
{
    lcow_mutex_lock(&st->lock);
    *out = st->stats;
    lcow_mutex_unlock(&st->lock);
}

/* ---------------------------------------------------------------- find / link */

static lcow_code parse_diff(const char *diff_id, uint8_t out[LCOW_SHA256_SIZE], lcow_error *err)
{
    if (!diff_id)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer store: no diffID");
    lcow_code rc = lcow_sha256_parse_digest(diff_id, out, err);
    return rc == LCOW_OK ? rc : lcow_error_wrap(err, "diffID");
}

lcow_code lcow_layer_store_find(lcow_layer_store *st, const char *diff_id, bool verity, bool *found,
                                lcow_layer_store_info *info, lcow_error *err)
{
    *found = false;
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_code rc = parse_diff(diff_id, d, err);
    if (rc != LCOW_OK)
        return rc;
    char name[ENTRY_NAME_SIZE];
    entry_name(d, verity, name);
    layer_rec r;
    lcow_mutex_lock(&st->lock);
    rc = read_rec(st, name, &r, err);
    lcow_mutex_unlock(&st->lock);
    if (rc == LCOW_NOT_FOUND)
        return LCOW_OK;
    if (rc != LCOW_OK)
        return rc;
    *found = true;
    if (info)
        *info = r.info;
    return LCOW_OK;
}

/* Caller holds the lock: links the complete layer `name` into dir. The
 * directory sync is the caller's (outside the lock). */
static lcow_code link_locked(lcow_layer_store *st, const char *name, const char *dir, layer_rec *r,
                             lcow_error *err)
{
    lcow_code rc = read_rec(st, name, r, err);
    if (rc == LCOW_NOT_FOUND)
        return lcow_error_set(err, LCOW_NOT_FOUND, "layer %s is not stored", name);
    if (rc != LCOW_OK)
        return rc;
    char *src = join3(st->dir, name, LCOW_LAYER_APPLY_VHD_NAME);
    char *dst = lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME);
    rc = src && dst ? LCOW_OK : oom(err);
    if (rc == LCOW_OK) {
        rc = lcow_os_hardlink(src, dst, err);
        if (rc == LCOW_ALREADY_EXISTS)
            rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", dst);
    }
    if (rc == LCOW_OK) {
        st->stats.links++;
        r->info.references++;
        r->info.last_use = lcow_os_time_now();
        touch_last_use(st, name);
    }
    free(src);
    free(dst);
    return rc;
}

/* After a link: the snapshot directory durable (the link undone if not). */
static lcow_code link_finish(lcow_layer_store *st, const char *dir, lcow_error *err)
{
    lcow_code rc = st->no_sync ? LCOW_OK : lcow_os_sync_dir(dir, err);
    if (rc != LCOW_OK) {
        char *dst = lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME);
        if (dst)
            lcow_os_remove(dst, NULL);
        free(dst);
        return rc;
    }
    return LCOW_OK;
}

lcow_code lcow_layer_store_link(lcow_layer_store *st, const char *diff_id, bool verity,
                                const char *dir, lcow_layer_store_info *info, lcow_error *err)
{
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_code rc = parse_diff(diff_id, d, err);
    if (rc != LCOW_OK)
        return rc;
    if (!dir || !*dir)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer store: no directory to link into");
    char name[ENTRY_NAME_SIZE];
    entry_name(d, verity, name);
    layer_rec r;
    lcow_mutex_lock(&st->lock);
    rc = link_locked(st, name, dir, &r, err);
    lcow_mutex_unlock(&st->lock);
    if (rc == LCOW_OK)
        rc = link_finish(st, dir, err);
    if (rc == LCOW_OK && info)
        *info = r.info;
    return rc;
}

/* ---------------------------------------------------------------- removal */

/* Caller holds the lock: removes the blob entries naming diff. */
static lcow_code remove_blob_entries(lcow_layer_store *st, const uint8_t diff[LCOW_SHA256_SIZE],
                                     lcow_error *err)
{
    name_list l;
    lcow_code rc = list_names(st->blobs_dir, false, &l, err);
    bool removed = false;
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        uint8_t d[LCOW_SHA256_SIZE];
        if (l.names[i][0] == '.')
            continue;
        if (read_blob_entry(st, l.names[i], d, NULL) == LCOW_OK && memcmp(d, diff, sizeof d) != 0)
            continue;
        /* It names diff, or is unreadable: either way it goes. */
        char *path = lcow_path_join(st->blobs_dir, l.names[i]);
        rc = path ? lcow_os_remove(path, err) : oom(err);
        if (rc == LCOW_NOT_FOUND)
            rc = LCOW_OK;
        removed = true;
        free(path);
    }
    name_list_free(&l);
    if (rc == LCOW_OK && removed && !st->no_sync)
        rc = lcow_os_sync_dir(st->blobs_dir, err);
    return rc;
}

/* Caller holds the lock: removes the layer directory `name` (info first,
 * so a crash leaves an incomplete directory the next open removes), and
 * the blob entries of its diffID when no variant remains. */
static lcow_code remove_layer_locked(lcow_layer_store *st, const char *name, lcow_error *err)
{
    uint8_t d[LCOW_SHA256_SIZE];
    bool verity;
    if (!parse_entry_name(name, d, &verity))
        return lcow_error_set(err, LCOW_INTERNAL, "layer store: %s is not a layer name", name);
    char other[ENTRY_NAME_SIZE];
    entry_name(d, !verity, other);
    lcow_code rc = layer_complete(st, other) ? LCOW_OK : remove_blob_entries(st, d, err);
    char *ldir = lcow_path_join(st->dir, name);
    char *info = ldir ? lcow_path_join(ldir, INFO_NAME) : NULL;
    if (rc == LCOW_OK && !info)
        rc = oom(err);
    if (rc == LCOW_OK) {
        rc = lcow_os_remove(info, err);
        if (rc == LCOW_NOT_FOUND)
            rc = LCOW_OK;
    }
    if (rc == LCOW_OK && !st->no_sync)
        rc = lcow_os_sync_dir(ldir, err);
    if (rc == LCOW_OK)
        rc = lcow_os_remove_all(ldir, err);
    if (rc == LCOW_OK && !st->no_sync)
        rc = lcow_os_sync_dir(st->dir, err);
    free(info);
    free(ldir);
    return rc;
}

/* ---------------------------------------------------------------- prune / bound */

typedef struct cand {
    char name[ENTRY_NAME_SIZE];
    uint64_t bytes;
    lcow_time last_use;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    int c = lcow_time_cmp(x->last_use, y->last_use);
    return c ? c : strcmp(x->name, y->name);
}

/* Caller holds the lock. */
static lcow_code prune_locked(lcow_layer_store *st, const lcow_layer_store_prune_options *opts,
                              lcow_layer_store_prune_result *res, lcow_error *err)
{
    name_list l;
    lcow_code rc = list_names(st->dir, true, &l, err);
    if (rc != LCOW_OK)
        return rc;
    cand *c = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        uint8_t d[LCOW_SHA256_SIZE];
        bool v;
        if (!parse_entry_name(l.names[i], d, &v))
            continue;
        layer_rec r;
        if (read_rec(st, l.names[i], &r, NULL) != LCOW_OK || r.info.references > 0)
            continue;
        if (!lcow_grow(&c, &cap, n + 1, sizeof *c)) {
            rc = oom(err);
            break;
        }
        snprintf(c[n].name, sizeof c[n].name, "%s", l.names[i]);
        c[n].bytes = r.info.bytes;
        c[n].last_use = r.info.last_use;
        total += r.info.bytes;
        n++;
    }
    name_list_free(&l);
    if (rc == LCOW_OK && n > 1)
        qsort(c, n, sizeof *c, cmp_cand);
    int64_t now = lcow_os_time_now().sec;
    for (size_t i = 0; rc == LCOW_OK && i < n; i++) {
        bool go = total > st->max_bytes;
        if (opts && opts->all)
            go = true;
        if (opts && opts->older_than_sec > 0 && now - c[i].last_use.sec >= opts->older_than_sec)
            go = true;
        if (!go)
            continue;
        rc = remove_layer_locked(st, c[i].name, err);
        if (rc != LCOW_OK)
            break;
        LCOW_LOGI("layer store: removed unreferenced layer %s (%" PRIu64 " bytes)", c[i].name,
                  c[i].bytes);
        total -= c[i].bytes;
        st->stats.evictions++;
        if (res) {
            res->layers++;
            res->bytes += c[i].bytes;
        }
    }
    free(c);
    return rc;
}

lcow_code lcow_layer_store_prune(lcow_layer_store *st, const lcow_layer_store_prune_options *opts,
                                 lcow_layer_store_prune_result *res, lcow_error *err)
{
    if (res)
        memset(res, 0, sizeof *res);
    if (opts && opts->older_than_sec < 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "prune: a negative age");
    lcow_mutex_lock(&st->lock);
    lcow_code rc = prune_locked(st, opts, res, err);
    lcow_mutex_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- sweep */

/* Caller holds the lock (or it is open). */
static bool temp_owned(lcow_layer_store *st, const char *name)
{
    const char *p = name[0] == '.' ? name + 1 : name;
    for (size_t i = 0; i < st->conv_count; i++)
        if (strncmp(p, st->convs[i]->temp, 16) == 0)
            return true;
    return false;
}

static lcow_code sweep_locked(lcow_layer_store *st, bool at_open, lcow_error *err)
{
    lcow_code first = LCOW_OK;
#define KEEP_FIRST(rc_, e_)                                                                        \
    do {                                                                                           \
        if ((rc_) != LCOW_OK && first == LCOW_OK) {                                                \
            first = (rc_);                                                                         \
            if (err)                                                                               \
                *err = (e_);                                                                       \
        }                                                                                          \
    } while (0)
    lcow_error e;
    /* tmp/: whatever no running conversion owns. */
    name_list l;
    lcow_code rc = list_names(st->tmp_dir, false, &l, &e);
    KEEP_FIRST(rc, e);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        if (!at_open && temp_owned(st, l.names[i]))
            continue;
        char *p = lcow_path_join(st->tmp_dir, l.names[i]);
        lcow_code one = p ? lcow_os_remove(p, &e) : oom(&e);
        if (one == LCOW_OK)
            LCOW_LOGI("layer store: removed %s (left by an interrupted conversion)", p);
        else if (one != LCOW_NOT_FOUND)
            KEEP_FIRST(one, e);
        free(p);
    }
    name_list_free(&l);
    /* Incomplete layer directories (never while the lock is held by a
     * publish: publishes run under it) and stray names. */
    rc = list_names(st->dir, true, &l, &e);
    KEEP_FIRST(rc, e);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        uint8_t d[LCOW_SHA256_SIZE];
        bool v;
        if (strcmp(l.names[i], "tmp") == 0 || strcmp(l.names[i], "blobs") == 0)
            continue;
        if (parse_entry_name(l.names[i], d, &v) && layer_complete(st, l.names[i]))
            continue;
        char *p = lcow_path_join(st->dir, l.names[i]);
        lcow_code one = p ? lcow_os_remove_all(p, &e) : oom(&e);
        if (one == LCOW_OK)
            LCOW_LOGI("layer store: removed %s (an incomplete layer)", p);
        KEEP_FIRST(one, e);
        free(p);
    }
    name_list_free(&l);
    /* Blob entries: temps, malformed ones, and those naming no stored layer. */
    rc = list_names(st->blobs_dir, false, &l, &e);
    KEEP_FIRST(rc, e);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        uint8_t blob[LCOW_SHA256_SIZE], d[LCOW_SHA256_SIZE];
        bool v;
        if (parse_entry_name(l.names[i], blob, &v) && !v &&
            read_blob_entry(st, l.names[i], d, NULL) == LCOW_OK && any_variant(st, d))
            continue;
        char *p = lcow_path_join(st->blobs_dir, l.names[i]);
        lcow_code one = p ? lcow_os_remove(p, &e) : oom(&e);
        if (one != LCOW_OK && one != LCOW_NOT_FOUND)
            KEEP_FIRST(one, e);
        free(p);
    }
    name_list_free(&l);
#undef KEEP_FIRST
    return first;
}

lcow_code lcow_layer_store_sweep(lcow_layer_store *st, lcow_error *err)
{
    lcow_mutex_lock(&st->lock);
    lcow_code rc = sweep_locked(st, false, err);
    lcow_error e;
    lcow_code bound = prune_locked(st, NULL, NULL, &e);
    if (rc == LCOW_OK && bound != LCOW_OK) {
        rc = bound;
        if (err)
            *err = e;
    }
    lcow_mutex_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- apply */

static conversion *find_conv(lcow_layer_store *st, const uint8_t digest[LCOW_SHA256_SIZE],
                             bool verity)
{
    for (size_t i = 0; i < st->conv_count; i++)
        if (st->convs[i]->has_digest && st->convs[i]->verity == verity &&
            memcmp(st->convs[i]->digest, digest, LCOW_SHA256_SIZE) == 0)
            return st->convs[i];
    return NULL;
}

static void drop_conv(lcow_layer_store *st, conversion *c)
{
    for (size_t i = 0; i < st->conv_count; i++)
        if (st->convs[i] == c) {
            st->convs[i] = st->convs[--st->conv_count];
            break;
        }
    free(c);
    lcow_cond_broadcast(&st->changed);
}

static void fill_from_rec(lcow_layer_store_apply_result *res, const layer_rec *r)
{
    lcow_sha256_parse_digest(r->info.diff_id, res->apply.diff_id, NULL);
    res->apply.layer_bytes = r->info.bytes;
    res->apply.has_root_hash = r->info.verity;
    if (r->info.verity)
        for (size_t i = 0; i < LCOW_VERITY_HASH_SIZE; i++) {
            unsigned b = 0;
            sscanf(r->info.verity_root_hash + 2 * i, "%2x", &b);
            res->apply.root_hash[i] = (uint8_t)b;
        }
}

/* Caller holds the lock: publishes the converted temp file as the layer
 * `name` (unless it is stored meanwhile), records the blob entry, links. */
static lcow_code publish_locked(lcow_layer_store *st, const char *temp_path, const char *name,
                                const lcow_layer_apply_result *ar, bool verity, lcow_error *err)
{
    lcow_code rc = LCOW_OK;
    char *ldir = lcow_path_join(st->dir, name);
    char *vhd = ldir ? lcow_path_join(ldir, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
    if (!vhd)
        rc = oom(err);
    bool made = false;
    if (rc == LCOW_OK && !layer_complete(st, name)) {
        /* A leftover of a crash (no info): gone first. */
        rc = lcow_os_remove_all(ldir, err);
        if (rc == LCOW_OK)
            rc = lcow_os_mkdir(ldir, err);
        if (rc == LCOW_OK)
            rc = lcow_os_rename(temp_path, vhd, err);
        made = rc == LCOW_OK;
        char text[512], diff[LCOW_SHA256_DIGEST_STRING_SIZE], root[LCOW_SHA256_HEX_SIZE] = "-";
        lcow_sha256_digest_string(ar->diff_id, diff);
        if (verity)
            lcow_sha256_hex(ar->root_hash, root);
        lcow_time now = lcow_os_time_now();
        snprintf(text, sizeof text,
                 INFO_MAGIC "\ndiff_id %s\nverity %d\nroot_hash %s\nbytes %" PRIu64
                            "\ncreated %lld.%09u\n",
                 diff, verity ? 1 : 0, root, ar->layer_bytes, (long long)now.sec, now.nsec);
        if (rc == LCOW_OK)
            rc = write_small(ldir, INFO_NAME, text, !st->no_sync, err);
        if (rc == LCOW_OK && !st->no_sync)
            rc = lcow_os_sync_dir(st->dir, err);
        if (rc != LCOW_OK && made) {
            lcow_error e;
            if (lcow_os_remove_all(ldir, &e) != LCOW_OK)
                LCOW_LOGW("layer store: %s left behind: %s", ldir, e.message);
        }
        if (rc == LCOW_OK)
            st->stats.stored++;
    }
    /* The blob entry (a failure here loses only the shortcut). */
    if (rc == LCOW_OK) {
        char bname[ENTRY_NAME_SIZE], diff[LCOW_SHA256_DIGEST_STRING_SIZE + 1];
        entry_name(ar->digest, false, bname);
        uint8_t have[LCOW_SHA256_SIZE];
        if (read_blob_entry(st, bname, have, NULL) != LCOW_OK ||
            memcmp(have, ar->diff_id, sizeof have) != 0) {
            lcow_sha256_digest_string(ar->diff_id, diff);
            strcat(diff, "\n");
            lcow_error e;
            if (write_small(st->blobs_dir, bname, diff, !st->no_sync, &e) != LCOW_OK)
                LCOW_LOGW("layer store: blob entry %s not recorded: %s", bname, e.message);
        }
    }
    free(ldir);
    free(vhd);
    return rc;
}

lcow_code lcow_layer_store_apply(lcow_layer_store *st, const char *blob_path, const char *dir,
                                 const lcow_layer_apply_options *opts,
                                 lcow_layer_store_apply_result *res, lcow_error *err)
{
    static const lcow_layer_apply_options no_opts;
    lcow_layer_store_apply_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    lcow_layer_apply_options o = opts ? *opts : no_opts;
    o.replace = false;
    if (!blob_path || !*blob_path || !dir || !*dir)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer apply: empty blob or directory");
    lcow_stat sb;
    lcow_code rc = lcow_os_stat(blob_path, &sb, err);
    if (rc == LCOW_OK && !sb.exists)
        rc = lcow_error_set(err, LCOW_NOT_FOUND, "layer blob %s does not exist", blob_path);
    if (rc == LCOW_OK && sb.is_dir)
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "layer blob %s is a directory", blob_path);
    uint8_t want[LCOW_SHA256_SIZE];
    bool has_digest = o.digest && *o.digest;
    if (rc == LCOW_OK && has_digest)
        rc = lcow_sha256_parse_digest(o.digest, want, err);
    char *out = rc == LCOW_OK ? lcow_path_join(dir, LCOW_LAYER_APPLY_VHD_NAME) : NULL;
    if (rc == LCOW_OK && !out)
        rc = oom(err);
    lcow_stat ob;
    if (rc == LCOW_OK)
        rc = lcow_os_stat(out, &ob, err);
    if (rc == LCOW_OK && ob.exists)
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", out);
    free(out);
    if (rc != LCOW_OK)
        return rc;

    /* 1. A known blob is linked; the same blob being converted is waited for. */
    conversion *c = calloc(1, sizeof *c);
    if (!c)
        return oom(err);
    uint8_t rnd[8];
    rc = lcow_os_random(rnd, sizeof rnd, err);
    if (rc != LCOW_OK) {
        free(c);
        return rc;
    }
    for (int i = 0; i < 8; i++)
        snprintf(c->temp + 2 * i, 3, "%02x", rnd[i]);
    c->has_digest = has_digest;
    c->verity = o.verity;
    if (has_digest)
        memcpy(c->digest, want, sizeof want);
    layer_rec r;
    char name[ENTRY_NAME_SIZE];
    bool linked = false;
    lcow_mutex_lock(&st->lock);
    while (has_digest) {
        char bname[ENTRY_NAME_SIZE];
        uint8_t d[LCOW_SHA256_SIZE];
        entry_name(want, false, bname);
        if (read_blob_entry(st, bname, d, NULL) == LCOW_OK) {
            entry_name(d, o.verity, name);
            if (layer_complete(st, name)) {
                rc = link_locked(st, name, dir, &r, err);
                linked = rc == LCOW_OK;
                if (linked)
                    st->stats.known_blobs++;
                break;
            }
        }
        if (!find_conv(st, want, o.verity))
            break;
        lcow_cond_wait(&st->changed, &st->lock);
    }
    bool registered = false;
    if (rc == LCOW_OK && !linked) {
        registered = lcow_grow(&st->convs, &st->conv_cap, st->conv_count + 1, sizeof *st->convs);
        if (registered)
            st->convs[st->conv_count++] = c;
        else
            rc = oom(err);
    }
    lcow_mutex_unlock(&st->lock);
    if (!registered)
        free(c);
    if (linked) {
        rc = link_finish(st, dir, err);
        if (rc == LCOW_OK) {
            fill_from_rec(res, &r);
            memcpy(res->apply.digest, want, sizeof want);
            res->apply.blob_bytes = sb.size;
        }
        return rc;
    }
    if (rc != LCOW_OK)
        return rc;

    /* 2. Convert into tmp/, without the lock. */
    char tname[32];
    snprintf(tname, sizeof tname, "%s.vhd", c->temp);
    char *temp = lcow_path_join(st->tmp_dir, tname);
    rc = temp ? LCOW_OK : oom(err);
    lcow_layer_apply_format fmt = LCOW_LAYER_APPLY_DIFFER_FORMAT;
    fmt.verity = o.verity;
    if (rc == LCOW_OK)
        rc = lcow_layer_apply_file(blob_path, temp, &fmt, &o, &res->apply, err);

    /* 3. Publish and link, under the lock. */
    lcow_mutex_lock(&st->lock);
    if (rc == LCOW_OK) {
        st->stats.conversions++;
        entry_name(res->apply.diff_id, o.verity, name);
        rc = publish_locked(st, temp, name, &res->apply, o.verity, err);
        if (rc == LCOW_OK)
            rc = link_locked(st, name, dir, &r, err);
        linked = rc == LCOW_OK;
    }
    drop_conv(st, c);
    lcow_mutex_unlock(&st->lock);
    if (temp) {
        lcow_error e;
        lcow_code one = lcow_os_remove(temp, &e);
        if (one != LCOW_OK && one != LCOW_NOT_FOUND)
            LCOW_LOGW("layer store: %s left behind: %s", temp, e.message);
    }
    free(temp);
    if (linked) {
        rc = link_finish(st, dir, err);
        res->converted = rc == LCOW_OK;
        /* A layer stored before (same diffID from another blob) keeps its
         * own record: report what was linked. */
        if (rc == LCOW_OK)
            fill_from_rec(res, &r);
    }
    if (rc != LCOW_OK) {
        memset(res, 0, sizeof *res);
        return rc;
    }
    /* The bound: unreferenced layers beyond it go, oldest use first. */
    lcow_error e;
    lcow_mutex_lock(&st->lock);
    if (prune_locked(st, NULL, NULL, &e) != LCOW_OK)
        LCOW_LOGW("layer store: evicting to the bound: %s", e.message);
    lcow_mutex_unlock(&st->lock);
    return LCOW_OK;
}

/* ---------------------------------------------------------------- list */

lcow_code lcow_layer_store_list(lcow_layer_store *st, lcow_layer_store_list_fn fn, void *ctx,
                                lcow_error *err)
{
    lcow_mutex_lock(&st->lock);
    name_list layers, blobs;
    lcow_code rc = list_names(st->dir, true, &layers, err);
    if (rc == LCOW_OK) {
        rc = list_names(st->blobs_dir, false, &blobs, err);
        if (rc != LCOW_OK)
            name_list_free(&layers);
    }
    if (rc != LCOW_OK) {
        lcow_mutex_unlock(&st->lock);
        return rc;
    }
    /* blob name -> diffID, read once */
    uint8_t(*map)[LCOW_SHA256_SIZE] = calloc(blobs.count ? blobs.count : 1, sizeof *map);
    bool *ok = calloc(blobs.count ? blobs.count : 1, sizeof *ok);
    const char **digests = calloc(blobs.count ? blobs.count : 1, sizeof *digests);
    char(*text)[LCOW_SHA256_DIGEST_STRING_SIZE] =
        calloc(blobs.count ? blobs.count : 1, sizeof *text);
    if (!map || !ok || !digests || !text)
        rc = oom(err);
    for (size_t i = 0; rc == LCOW_OK && i < blobs.count; i++) {
        uint8_t b[LCOW_SHA256_SIZE];
        bool v;
        ok[i] = parse_entry_name(blobs.names[i], b, &v) && !v &&
                read_blob_entry(st, blobs.names[i], map[i], NULL) == LCOW_OK;
        if (ok[i])
            lcow_sha256_digest_string(b, text[i]);
    }
    for (size_t i = 0; rc == LCOW_OK && i < layers.count; i++) {
        uint8_t d[LCOW_SHA256_SIZE];
        bool v;
        layer_rec r;
        if (!parse_entry_name(layers.names[i], d, &v) ||
            read_rec(st, layers.names[i], &r, NULL) != LCOW_OK)
            continue;
        size_t n = 0;
        for (size_t j = 0; j < blobs.count; j++)
            if (ok[j] && memcmp(map[j], d, sizeof d) == 0)
                digests[n++] = text[j];
        if (fn(ctx, &r.info, digests, n) != 0)
            break;
    }
    free(map);
    free(ok);
    free(digests);
    free(text);
    name_list_free(&layers);
    name_list_free(&blobs);
    lcow_mutex_unlock(&st->lock);
    return rc;
}

/* ---------------------------------------------------------------- check */

static lcow_code violated(lcow_error *err, const char *fmt, ...) LCOW_PRINTF(2, 3);

static lcow_code violated(lcow_error *err, const char *fmt, ...)
{
    char msg[LCOW_ERROR_MESSAGE_MAX - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lcow_error_set(err, LCOW_INTERNAL, "invariant violated: layer store: %s", msg);
}

lcow_code lcow_layer_store_check(lcow_layer_store *st, lcow_error *err)
{
    lcow_mutex_lock(&st->lock);
    name_list l;
    lcow_code rc = list_names(st->dir, true, &l, err);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        if (strcmp(l.names[i], "tmp") == 0 || strcmp(l.names[i], "blobs") == 0)
            continue;
        uint8_t d[LCOW_SHA256_SIZE];
        bool v;
        if (!parse_entry_name(l.names[i], d, &v)) {
            rc = violated(err, "%s is not a layer directory", l.names[i]);
            break;
        }
        layer_rec r;
        lcow_error e;
        lcow_code one = read_rec(st, l.names[i], &r, &e);
        if (one == LCOW_NOT_FOUND)
            rc = violated(err, "%s is incomplete (no " INFO_NAME ")", l.names[i]);
        else if (one != LCOW_OK)
            rc = violated(err, "%s", e.message);
        if (rc != LCOW_OK)
            break;
        char *vhd = join3(st->dir, l.names[i], LCOW_LAYER_APPLY_VHD_NAME);
        lcow_stat sb;
        one = vhd ? lcow_os_stat(vhd, &sb, &e) : oom(&e);
        if (one != LCOW_OK)
            rc = violated(err, "%s", e.message);
        else if (sb.size != r.info.bytes)
            rc = violated(err,
                          "%s/" LCOW_LAYER_APPLY_VHD_NAME " has %" PRIu64
                          " bytes, its info says %" PRIu64,
                          l.names[i], sb.size, r.info.bytes);
        free(vhd);
    }
    name_list_free(&l);
    if (rc == LCOW_OK)
        rc = list_names(st->blobs_dir, false, &l, err);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++) {
        uint8_t b[LCOW_SHA256_SIZE], d[LCOW_SHA256_SIZE];
        bool v;
        lcow_error e;
        if (!parse_entry_name(l.names[i], b, &v) || v)
            rc = violated(err, "blobs/%s is not a blob entry", l.names[i]);
        else if (read_blob_entry(st, l.names[i], d, &e) != LCOW_OK)
            rc = violated(err, "%s", e.message);
        else if (!any_variant(st, d))
            rc = violated(err, "blobs/%s names a layer that is not stored", l.names[i]);
    }
    name_list_free(&l);
    if (rc == LCOW_OK)
        rc = list_names(st->tmp_dir, false, &l, err);
    for (size_t i = 0; rc == LCOW_OK && i < l.count; i++)
        if (!temp_owned(st, l.names[i]))
            rc = violated(err, "tmp/%s belongs to no running conversion", l.names[i]);
    name_list_free(&l);
    lcow_mutex_unlock(&st->lock);
    return rc;
}

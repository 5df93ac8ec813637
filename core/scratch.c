/* LCOW scratch policy, file side: label rules, the per-size template cache
 * and sandbox.vhdx creation. The metadata side (owner lookup, sharing
 * reference counts) lives in the snapshotter. */
#include "core/scratch.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/os/os.h"
#include "core/disk/scratchdisk.h"
#include "core/os/thread.h"
#include "core/disk/byteorder.h"
#include "core/disk/crc32c.h"
#include "core/disk/ext4.h"
#include "core/disk/vhdx.h"

/* Containerd's unpack prefix (snapshots.UnpackKeyPrefix + "-"). */
#define EXTRACT_PREFIX "extract-"
/* Template temp files: ".<final name>.tmp-<unique>", next to the final name. */
#define TEMP_MARK ".tmp-"

/* How sandbox.vhdx gets its bytes for a given size; bench/bench_scratch.c
 * measures both (docs/performance.md, "Scratch policy"). */
typedef enum fill_strategy {
    FILL_COPY,   /* sparse copy of the cached template */
    FILL_FORMAT, /* format the disk in place */
} fill_strategy;

/* A template being built: callers wanting the same file wait on it. */
typedef struct template_build {
    char *final_path;
    char *temp_path;
    struct template_build *next;
} template_build;

struct lcow_scratch {
    char *root;
    lcow_scratch_backend backend;
    char **allow; /* resolved --scratch-dir-allow directories */
    size_t allow_count;
    lcow_mutex lock; /* guards builds and locations */
    lcow_cond build_done;
    template_build *builds;
    char **locations; /* location directories used so far (for cleanup) */
    size_t location_count, location_cap;
    atomic_uint temp_seq;
    uint32_t format_from_gb; /* sizes from here on are formatted, 0 = never */
};

/* ------------------------------------------------------------ open/free */

static lcow_code oom(lcow_error *err, const char *what)
{
    return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "%s: out of memory", what);
}

void lcow_scratch_plan_free(lcow_scratch_plan *plan)
{
    if (!plan)
        return;
    free(plan->location);
    free(plan->owner_key);
    plan->location = NULL;
    plan->owner_key = NULL;
}

void lcow_scratch_destroy(lcow_scratch *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->allow_count; i++)
        free(sc->allow[i]);
    free(sc->allow);
    for (size_t i = 0; i < sc->location_count; i++)
        free(sc->locations[i]);
    free(sc->locations);
    lcow_cond_destroy(&sc->build_done);
    lcow_mutex_destroy(&sc->lock);
    free(sc->root);
    free(sc);
}

lcow_code lcow_scratch_create(const char *root, lcow_scratch_backend backend,
                              uint32_t format_from_gb, const char *const *allow, size_t allow_count,
                              lcow_scratch **out, lcow_error *err)
{
    *out = NULL;
    if (!root || !lcow_path_is_absolute(root))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "scratch root %s: must be an absolute path", root ? root : "(none)");
    lcow_scratch *sc = calloc(1, sizeof *sc);
    if (!sc)
        return oom(err, "scratch open");
    lcow_mutex_init(&sc->lock);
    lcow_cond_init(&sc->build_done);
    sc->backend = backend;
    if (format_from_gb > LCOW_SCRATCH_MAX_GB) {
        lcow_scratch_destroy(sc);
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "--scratch-format-from-gb %u: must be 1 to %u (0 = always copy)",
                              (unsigned)format_from_gb, LCOW_SCRATCH_MAX_GB);
    }
    sc->format_from_gb = format_from_gb;
    /* Canonical when it exists, so templates and locations compare equal. */
    lcow_code rc = lcow_os_realpath(root, &sc->root, NULL);
    if (rc != LCOW_OK && !(sc->root = strdup(root))) {
        lcow_scratch_destroy(sc);
        return oom(err, "scratch open");
    }
    rc = LCOW_OK;
    if (allow_count > 0) {
        sc->allow = calloc(allow_count, sizeof *sc->allow);
        if (!sc->allow) {
            lcow_scratch_destroy(sc);
            return oom(err, "scratch open");
        }
    }
    /* Allow-list entries are resolved once, so comparisons see canonical
     * paths on both sides. */
    for (size_t i = 0; i < allow_count; i++) {
        lcow_stat st;
        lcow_error e;
        if (!allow[i] || !lcow_path_is_absolute(allow[i])) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "--scratch-dir-allow %s: must be an absolute path",
                                allow[i] ? allow[i] : "(null)");
        } else if (lcow_os_realpath(allow[i], &sc->allow[i], &e) != LCOW_OK) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "--scratch-dir-allow %s: must be an existing directory (%s)",
                                allow[i], e.message);
        } else if (lcow_os_stat(sc->allow[i], &st, &e) == LCOW_OK && !st.is_dir) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "--scratch-dir-allow %s: not a directory", allow[i]);
        }
        if (rc != LCOW_OK) {
            sc->allow_count = i + 1;
            lcow_scratch_destroy(sc);
            return rc;
        }
    }
    sc->allow_count = allow_count;
    *out = sc;
    return LCOW_OK;
}

/* ------------------------------------------------------------ allow list */

static bool is_sep(char c)
{
    return c == '/' || c == LCOW_PATH_SEP;
}

/* True when path is dir or inside it (both canonical). Windows compares
 * case-insensitively, as NTFS does. */
static bool path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 0 && is_sep(dir[n - 1]))
        n--;
    for (size_t i = 0; i < n; i++) {
        char a = path[i], b = dir[i];
        if (LCOW_PATH_SEP == '\\') {
            if (a >= 'A' && a <= 'Z')
                a = (char)(a - 'A' + 'a');
            if (b >= 'A' && b <= 'Z')
                b = (char)(b - 'A' + 'a');
            if (a == '/')
                a = '\\';
            if (b == '/')
                b = '\\';
        }
        if (a != b || a == '\0')
            return false;
    }
    return path[n] == '\0' || is_sep(path[n]);
}

/* Canonical form of path: realpath of its longest existing prefix plus the
 * missing components, which may not be "." or "..". */
static lcow_code resolve_for_policy(const char *path, char **out, lcow_error *err)
{
    *out = NULL;
    char *prefix = strdup(path);
    if (!prefix)
        return oom(err, "resolve path");
    size_t len = strlen(prefix);
    while (len > 1 && is_sep(prefix[len - 1]))
        prefix[--len] = '\0';
    for (;;) {
        char *real = NULL;
        lcow_error e;
        lcow_code rc = lcow_os_realpath(prefix, &real, &e);
        if (rc == LCOW_OK) {
            const char *rest = path + strlen(prefix);
            while (*rest && is_sep(*rest))
                rest++;
            /* The missing tail may not climb out again. */
            for (const char *p = rest; *p;) {
                const char *end = p;
                while (*end && !is_sep(*end))
                    end++;
                size_t n = (size_t)(end - p);
                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
                    free(real);
                    free(prefix);
                    return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                          "%s: \".\" and \"..\" are not allowed below the existing "
                                          "part of the path",
                                          path);
                }
                p = *end ? end + 1 : end;
            }
            *out = *rest ? lcow_path_join(real, rest) : real;
            if (*rest)
                free(real);
            free(prefix);
            return *out ? LCOW_OK : oom(err, "resolve path");
        }
        if (rc != LCOW_NOT_FOUND) {
            free(prefix);
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: cannot be resolved (%s)", path,
                                  e.message);
        }
        /* Drop the last component and try its parent. */
        while (len > 0 && !is_sep(prefix[len - 1]))
            len--;
        while (len > 1 && is_sep(prefix[len - 1]))
            len--;
        if (len == 0) {
            free(prefix);
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: no part of it exists", path);
        }
        prefix[len] = '\0';
    }
}

lcow_code lcow_scratch_path_allowed(lcow_scratch *sc, const char *path, lcow_error *err)
{
    if (!path || !lcow_path_is_absolute(path))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "%s: must be an absolute path",
                              path ? path : "(null)");
    char *resolved;
    lcow_code rc = resolve_for_policy(path, &resolved, err);
    if (rc != LCOW_OK)
        return rc;
    /* Never inside the service's own root, whatever the allow list says: a
     * file there could stand at the next snapshot id or a template's name
     * (issue 14, item 6). */
    if (path_within(resolved, sc->root)) {
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "%s (resolved %s) is inside the service's root %s, which only "
                            "lcowsnap writes",
                            path, resolved, sc->root);
        free(resolved);
        return rc;
    }
    if (sc->allow_count == 0) {
        free(resolved);
        return LCOW_OK;
    }
    bool ok = false;
    for (size_t i = 0; i < sc->allow_count && !ok; i++)
        ok = path_within(resolved, sc->allow[i]);
    if (!ok)
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "%s (resolved %s) is outside every --scratch-dir-allow directory", path,
                            resolved);
    free(resolved);
    return rc;
}

/* ------------------------------------------------------------ plan */

/* The scratch size rule, checked here and nowhere below: the size labels
 * (through size_from_labels) and CreateScratch's size_gb are whole GiB,
 * 1..LCOW_SCRATCH_MAX_GB. A plan or a disk built from them is not checked
 * again (the ext4 and VHDX limits of core/disk stand behind it). */
static bool size_gb_valid(uint64_t gb)
{
    return gb >= 1 && gb <= LCOW_SCRATCH_MAX_GB;
}

/* Strict number: a non-empty string of decimal digits (no sign, space or
 * base prefix), 1..max. */
static bool parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s)
        return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return false; /* also stops overflow: max < UINT64_MAX / 10 */
    }
    if (v == 0)
        return false;
    *out = v;
    return true;
}

/* The three labels that size a scratch disk, in precedence order: the first
 * one present wins. Every one present is checked, so a malformed label is
 * refused even when a higher one decides the size. */
static const struct size_label {
    const char *key;
    bool bytes; /* decimal bytes, rounded up to whole GiB; else GiB */
} size_labels[] = {
    {LCOW_LABEL_SIZE_GB, false},
    {LCOW_LABEL_MAX_SIZE, true},
    {LCOW_LABEL_SIZE_BYTES, true},
};

static lcow_code size_from_labels(const lcow_labels *labels, uint32_t *size_gb, lcow_error *err)
{
    bool decided = false;
    for (size_t i = 0; i < sizeof size_labels / sizeof size_labels[0]; i++) {
        const struct size_label *l = &size_labels[i];
        const char *value = labels ? lcow_labels_get(labels, l->key) : NULL;
        if (!value)
            continue;
        const uint64_t max_bytes = (uint64_t)LCOW_SCRATCH_MAX_GB << 30;
        uint64_t v = 0;
        if (!parse_decimal(value, l->bytes ? max_bytes : LCOW_SCRATCH_MAX_GB, &v)) {
            if (l->bytes)
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "label %s=\"%.64s\": the scratch size must be a whole "
                                      "number of bytes from 1 to %llu (digits only; rounded up "
                                      "to whole GiB)",
                                      l->key, value, (unsigned long long)max_bytes);
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "label %s=\"%.64s\": the scratch size must be a whole number of "
                                  "GiB from 1 to %u (digits only)",
                                  l->key, value, LCOW_SCRATCH_MAX_GB);
        }
        /* 1..max_bytes rounds up to 1..LCOW_SCRATCH_MAX_GB GiB. */
        uint64_t gb = l->bytes ? (v + ((UINT64_C(1) << 30) - 1)) >> 30 : v;
        if (!decided) {
            *size_gb = (uint32_t)gb;
            decided = true;
        }
    }
    return LCOW_OK;
}

lcow_code lcow_scratch_plan_for(lcow_scratch *sc, lcow_kind kind, const char *key,
                                const lcow_labels *labels, lcow_scratch_plan *plan, lcow_error *err)
{
    memset(plan, 0, sizeof *plan);
    if (kind != LCOW_KIND_ACTIVE)
        return LCOW_OK; /* views and committed layers have no scratch */
    const char *client;
    size_t ns_len;
    lcow_key_split(key, &client, &ns_len);
    if (strncmp(client, EXTRACT_PREFIX, strlen(EXTRACT_PREFIX)) == 0)
        return LCOW_OK; /* a layer being unpacked */

    const char *reuse = labels ? lcow_labels_get(labels, LCOW_LABEL_REUSE) : NULL;
    const char *owner = labels ? lcow_labels_get(labels, LCOW_LABEL_OWNER) : NULL;
    if (reuse && strcmp(reuse, "true") == 0 && owner && *owner) {
        /* As upstream: size and location do not apply to a shared disk. */
        plan->mode = LCOW_META_SCRATCH_SHARED;
        plan->owner_key = strdup(owner);
        return plan->owner_key ? LCOW_OK : oom(err, "scratch plan");
    }

    plan->mode = LCOW_META_SCRATCH_OWN;
    plan->size_gb = LCOW_SCRATCH_DEFAULT_GB;
    lcow_code size_rc = size_from_labels(labels, &plan->size_gb, err);
    if (size_rc != LCOW_OK) {
        memset(plan, 0, sizeof *plan);
        return size_rc;
    }

    const char *location = labels ? lcow_labels_get(labels, LCOW_LABEL_LOCATION) : NULL;
    if (!location)
        return LCOW_OK;
    lcow_code rc = LCOW_OK;
    char *resolved = NULL;
    lcow_stat st = {0};
    lcow_error e;
    if (!lcow_path_is_absolute(location)) {
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "label %s=\"%.200s\": the location must be an absolute path",
                            LCOW_LABEL_LOCATION, location);
    } else if (lcow_os_realpath(location, &resolved, &e) != LCOW_OK ||
               lcow_os_stat(resolved, &st, &e) != LCOW_OK) {
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "label %s=\"%.200s\": the location must be an existing directory (%s)",
                            LCOW_LABEL_LOCATION, location, e.message);
    } else if (!st.is_dir) {
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                            "label %s=\"%.200s\": the location must be a directory",
                            LCOW_LABEL_LOCATION, location);
    } else if (lcow_scratch_path_allowed(sc, resolved, &e) != LCOW_OK) {
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "label %s: location not allowed: %s",
                            LCOW_LABEL_LOCATION, e.message);
    } else if (lcow_os_check_private_dir(resolved, &e) != LCOW_OK) {
        /* Templates there are copied into containers: others may not
         * write there (issue 14, item 8). */
        rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT, "label %s: location refused: %s",
                            LCOW_LABEL_LOCATION, e.message);
    }
    if (rc != LCOW_OK) {
        free(resolved);
        memset(plan, 0, sizeof *plan);
        return rc;
    }
    plan->location = resolved;
    return LCOW_OK;
}

/* ------------------------------------------------------------ templates */

/* bench_scratch (docs/performance.md): copying the template is as fast or
 * faster at every size from 1 GiB to 64 TiB (1.8-3.7x from 256 GiB up; the
 * small sizes tie within noise), so the default is to always copy.
 * --scratch-format-from-gb N formats sizes >= N directly instead, for hosts
 * whose storage measures differently (and for tests). */
static fill_strategy strategy_for(const lcow_scratch *sc, uint32_t size_gb)
{
    return sc->format_from_gb && size_gb >= sc->format_from_gb ? FILL_FORMAT : FILL_COPY;
}

static void template_name(uint32_t size_gb, char *buf, size_t size)
{
    if (size_gb == LCOW_SCRATCH_DEFAULT_GB)
        snprintf(buf, size, "scratch.vhdx");
    else
        snprintf(buf, size, "scratch_%u.vhdx", (unsigned)size_gb);
}

static bool is_template_temp(const char *name)
{
    /* Ours: ".scratch*.vhdx.tmp-*"; upstream's: "scratch-<digits>-tmp.vhdx". */
    if (strncmp(name, ".scratch", 8) == 0 && strstr(name, ".vhdx" TEMP_MARK))
        return true;
    size_t n = strlen(name);
    return strncmp(name, "scratch-", 8) == 0 && n > 17 && strcmp(name + n - 9, "-tmp.vhdx") == 0;
}

/* Records dir for cleanup; *is_new tells whether this process has not used
 * it before. */
static lcow_code remember_location(lcow_scratch *sc, const char *dir, bool *is_new)
{
    lcow_code rc = LCOW_OK;
    *is_new = false;
    lcow_mutex_lock(&sc->lock);
    bool known = strcmp(dir, sc->root) == 0;
    for (size_t i = 0; i < sc->location_count && !known; i++)
        known = strcmp(sc->locations[i], dir) == 0;
    if (!known) {
        char *copy = lcow_grow(&sc->locations, &sc->location_cap, sc->location_count + 1,
                               sizeof *sc->locations)
                         ? strdup(dir)
                         : NULL;
        if (copy) {
            sc->locations[sc->location_count++] = copy;
            *is_new = true;
        } else
            rc = LCOW_RESOURCE_EXHAUSTED;
    }
    lcow_mutex_unlock(&sc->lock);
    return rc;
}

static lcow_code sweep_dir(lcow_scratch *sc, const char *dir, lcow_error *err);

static template_build *find_build(lcow_scratch *sc, const char *final_path)
{
    for (template_build *b = sc->builds; b; b = b->next)
        if (strcmp(b->final_path, final_path) == 0)
            return b;
    return NULL;
}

/* The ext4 superblock (virtual bytes 1024..2047) of a template for a disk of
 * size_bytes: the magic, 4 KiB blocks, the block count the formatter writes
 * for that size and, with metadata_csum, its checksum. false with a reason in
 * err (INVALID_ARGUMENT) when it does not match; an I/O error keeps its code. */
static lcow_code check_template_ext4(lcow_vhdx_reader *r, uint64_t size_bytes, lcow_error *err)
{
    uint8_t sb[1024];
    lcow_code rc = lcow_vhdx_reader_read(r, 1024, sb, sizeof sb, err);
    if (rc != LCOW_OK)
        return rc;
    lcow_ext4_layout layout;
    rc = lcow_ext4_plan(size_bytes, &layout, err);
    if (rc != LCOW_OK)
        return rc;
    if (lcow_le_get16(sb + 0x38) != 0xEF53)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "no ext4 filesystem (bad magic)");
    if (lcow_le_get32(sb + 0x18) != 2)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "ext4 block size is not 4 KiB (log %" PRIu32 ")",
                              lcow_le_get32(sb + 0x18));
    uint64_t blocks = lcow_le_get32(sb + 0x04);
    if (lcow_le_get32(sb + 0x60) & 0x80u) /* INCOMPAT_64BIT */
        blocks |= (uint64_t)lcow_le_get32(sb + 0x150) << 32;
    if (blocks != layout.block_count)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "ext4 filesystem of %" PRIu64 " blocks, not the %" PRIu64
                              " of this size",
                              blocks, layout.block_count);
    if ((lcow_le_get32(sb + 0x64) & 0x400u) && /* RO_COMPAT_METADATA_CSUM */
        lcow_crc32c_update(0xffffffffu, sb, 0x3fc) != lcow_le_get32(sb + 0x3fc))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "ext4 superblock checksum mismatch");
    return LCOW_OK;
}

/* An existing template is used only when it is a regular file holding a
 * fully valid VHDX (headers, regions, metadata, every BAT entry inside the
 * file: lcow_vhdx_reader_check) of the size its name promises, whose ext4
 * superblock matches that size (issue 14, item 4). Anything else sets *bad:
 * a file of the wrong type, a truncated, foreign, misnamed or crafted file,
 * a VHDX the reader cannot fully interpret (a log to replay, unknown
 * required items: the template would be copied into every new container
 * unchecked). The caller moves a bad template aside and rebuilds it. An I/O
 * error reading a good one keeps its own code (EIO, ENOSPC...). A good one
 * is handed back open in *checked: the file that was checked is the one
 * copied, whatever the name leads to afterwards (issue 14, item 5). */
static lcow_code check_template(const char *path, uint32_t size_gb, bool *bad, lcow_file **checked,
                                lcow_error *err)
{
    lcow_file *f;
    *bad = false;
    *checked = NULL;
    /* Never waited on (a FIFO), never followed (a symbolic link): a regular
     * file or nothing (issue 14, item 3). */
    lcow_code rc = lcow_file_open(path, LCOW_OPEN_READ | LCOW_OPEN_REGULAR, &f, err);
    if (rc == LCOW_FAILED_PRECONDITION)
        *bad = true;
    if (rc != LCOW_OK)
        return rc;
    uint64_t want = (uint64_t)size_gb << 30;
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_vhdx_reader *r = NULL;
    lcow_error e;
    lcow_vhdx_check_report report;
    rc = lcow_vhdx_reader_open(&io, &r, &e);
    if (rc == LCOW_OK && lcow_vhdx_reader_info(r)->virtual_size != want)
        rc = lcow_error_set(&e, LCOW_INVALID_ARGUMENT, "holds a %" PRIu64 "-byte disk, not %u GiB",
                            lcow_vhdx_reader_info(r)->virtual_size, (unsigned)size_gb);
    if (rc == LCOW_OK)
        rc = lcow_vhdx_reader_check(r, &report, &e);
    if (rc == LCOW_OK)
        rc = check_template_ext4(r, want, &e);
    lcow_vhdx_reader_free(r);
    if (rc == LCOW_OK) {
        *checked = f;
        return LCOW_OK;
    }
    lcow_file_close(f);
    /* The reader reports a malformed file as InvalidArgument and one it
     * cannot fully interpret as NotImplemented; anything else is the I/O
     * underneath and keeps its own code. */
    if (rc == LCOW_INVALID_ARGUMENT || rc == LCOW_NOT_IMPLEMENTED) {
        *bad = true;
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "not a usable %u GiB template (%s)",
                              (unsigned)size_gb, e.message);
    }
    return lcow_error_set(err, rc, "reading scratch template %s: %s", path, e.message);
}

/* ------------------------------------------------------------ build and publish */

/* A build in sc->builds: get_template waits for one of the same final path,
 * and cleanup leaves its temp file alone. Caller holds sc->lock. */
static template_build *build_register(lcow_scratch *sc, const char *final_path)
{
    template_build *b = calloc(1, sizeof *b);
    if (!b || !(b->final_path = strdup(final_path))) {
        free(b);
        return NULL;
    }
    b->next = sc->builds;
    sc->builds = b;
    return b;
}

static void build_unregister(lcow_scratch *sc, template_build *b)
{
    lcow_mutex_lock(&sc->lock);
    for (template_build **p = &sc->builds; *p; p = &(*p)->next) {
        if (*p == b) {
            *p = b->next;
            break;
        }
    }
    lcow_cond_broadcast(&sc->build_done);
    lcow_mutex_unlock(&sc->lock);
    free(b->final_path);
    free(b->temp_path);
    free(b);
}

/* Publishes temp as name (both in d) without replacing anything: a hard
 * link fails if someone got there first; rename (which replaces) only where
 * the file system has no hard links, after a check. */
static lcow_code publish_exclusive(lcow_dir *d, const char *temp, const char *name,
                                   const char *final_path, lcow_error *err)
{
    lcow_code rc = lcow_dir_link(d, temp, name, err);
    if (rc != LCOW_OK && rc != LCOW_ALREADY_EXISTS) {
        LCOW_LOGD("scratch disk %s: no hard link (%s); renaming", final_path,
                  err ? err->message : "");
        lcow_stat st;
        rc = lcow_os_stat(final_path, &st, err);
        if (rc == LCOW_OK && st.exists)
            rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s already exists", final_path);
        if (rc == LCOW_OK)
            rc = lcow_dir_rename(d, temp, name, err);
    }
    return rc;
}

/* dir opened as a handle, and checked to still be dir (the canonical path
 * that was resolved and checked against the policy): every later step
 * works through the handle, so a directory swapped for a link meanwhile
 * redirects nothing (issue 14, item 5). */
static lcow_code open_checked_dir(const char *dir, lcow_dir **out, lcow_error *err)
{
    lcow_code rc = lcow_dir_open(dir, out, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "scratch directory");
    char *real = NULL;
    lcow_error e;
    if (lcow_dir_real_path(*out, &real, &e) != LCOW_OK) {
        rc = lcow_error_set(err, e.code, "scratch directory %s: %s", dir, e.message);
    } else if (!path_within(real, dir) || !path_within(dir, real)) {
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "scratch directory %s was replaced while in use (the name now leads "
                            "to %s); nothing was written",
                            dir, real);
    }
    free(real);
    if (rc != LCOW_OK) {
        lcow_dir_close(*out);
        *out = NULL;
    }
    return rc;
}

/* CreateScratch's temp files are made in the target's directory, outside
 * the root, where no sweep looks: each is recorded first in
 * <root>/scratch-inflight/<unique> (the temp's absolute path; the record
 * and its directory fsynced before the temp file exists) and the record is
 * removed once the temp name is gone. lcow_scratch_cleanup (at open and in
 * Cleanup) removes the temp files that records a crash left name, and the
 * records (issue 14, item 9). */
#define INFLIGHT_DIR "scratch-inflight"

static lcow_code inflight_dir(lcow_scratch *sc, char **out, lcow_error *err)
{
    *out = lcow_path_join(sc->root, INFLIGHT_DIR);
    if (!*out)
        return oom(err, "scratch in-flight record");
    lcow_error e;
    lcow_code rc = lcow_os_mkdir(*out, &e);
    if (rc == LCOW_OK)
        rc = lcow_os_sync_dir(sc->root, err);
    else if (rc == LCOW_ALREADY_EXISTS)
        rc = LCOW_OK;
    else if (err)
        *err = e;
    lcow_stat st;
    if (rc == LCOW_OK && (rc = lcow_os_stat(*out, &st, err)) == LCOW_OK && !st.is_dir)
        rc =
            lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                           "%s is %s, not a directory; lcowsnap does not follow or replace what it "
                           "did not create in its root: remove it",
                           *out, lcow_os_stat_kind(&st));
    if (rc != LCOW_OK) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Writes the record of temp (durably) and returns its path in *record. On
 * failure no record is left. */
static lcow_code inflight_add(lcow_scratch *sc, const char *temp, const char *unique, char **record,
                              lcow_error *err)
{
    *record = NULL;
    char *dir;
    lcow_code rc = inflight_dir(sc, &dir, err);
    if (rc != LCOW_OK)
        return rc;
    char *path = lcow_path_join(dir, unique);
    lcow_file *f = NULL;
    if (!path)
        rc = oom(err, "scratch in-flight record");
    if (rc == LCOW_OK)
        rc =
            lcow_file_open(path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &f, err);
    bool made = rc == LCOW_OK;
    if (rc == LCOW_OK)
        rc = lcow_file_pwrite(f, temp, strlen(temp), 0, err);
    if (rc == LCOW_OK)
        rc = lcow_file_sync(f, err);
    lcow_file_close(f);
    if (rc == LCOW_OK)
        rc = lcow_os_sync_dir(dir, err);
    if (rc != LCOW_OK && made) {
        lcow_error e;
        if (lcow_os_remove(path, &e) != LCOW_OK)
            LCOW_LOGW("scratch in-flight record %s left behind: %s", path, e.message);
    }
    free(dir);
    if (rc != LCOW_OK) {
        free(path);
        return lcow_error_wrap(err, "recording the temp file %s", temp);
    }
    *record = path;
    return LCOW_OK;
}

/* Drops a record whose temp name is gone; a record left behind only names
 * a file that no longer exists. */
static void inflight_drop(char *record)
{
    if (!record)
        return;
    lcow_error e;
    lcow_code rc = lcow_os_remove(record, &e);
    if (rc != LCOW_OK && rc != LCOW_NOT_FOUND)
        LCOW_LOGW("scratch in-flight record %s left behind: %s", record, e.message);
    free(record);
}

/* The one way a scratch disk file reaches its name (templates and
 * CreateScratch): the disk opts describes is built at a temp name next to
 * b->final_path (the file `name` in dir), ".<name>.tmp-<unique>", formatted
 * and fsynced by lcow_scratch_disk_create; then published and dir synced.
 * b is registered (build_register) and names the temp while it exists, so
 * cleanup leaves it alone.
 *
 * exclusive: never replace an existing final_path (publish_exclusive), and
 * a failure after publishing removes the file again, so a retry does not
 * trip over it. Otherwise rename over final_path (templates, whose names the
 * build registry guards), and a failed directory sync keeps the complete
 * file: only its durability is in doubt. On failure no temp file is left. */
static lcow_code build_and_publish(lcow_scratch *sc, const char *dir, const char *name,
                                   const lcow_scratch_disk_options *opts, bool exclusive,
                                   template_build *b, lcow_error *err)
{
    lcow_dir *d = NULL;
    lcow_code rc = open_checked_dir(dir, &d, err);
    if (rc != LCOW_OK)
        return rc;
    size_t temp_len = strlen(name) + 64;
    char *temp_name = malloc(temp_len);
    if (!temp_name) {
        lcow_dir_close(d);
        return oom(err, "scratch disk");
    }
    rc = LCOW_ALREADY_EXISTS;
    char *record = NULL;
    for (int attempt = 0; attempt < 8 && rc == LCOW_ALREADY_EXISTS; attempt++) {
        lcow_time now = lcow_os_time_now();
        snprintf(temp_name, temp_len, ".%s" TEMP_MARK "%lld%09u-%u", name, (long long)now.sec,
                 (unsigned)now.nsec, atomic_fetch_add(&sc->temp_seq, 1));
        char *temp = lcow_path_join(dir, temp_name);
        if (!temp) {
            rc = oom(err, "scratch disk");
            break;
        }
        lcow_mutex_lock(&sc->lock);
        free(b->temp_path);
        b->temp_path = temp;
        lcow_mutex_unlock(&sc->lock);
        inflight_drop(record);
        record = NULL;
        /* A CreateScratch temp file is recorded before it exists. */
        rc = exclusive ? inflight_add(sc, temp, strstr(temp_name, TEMP_MARK) + strlen(TEMP_MARK),
                                      &record, err)
                       : LCOW_OK;
        if (rc == LCOW_OK)
            rc = lcow_scratch_disk_create_in(d, temp_name, opts, err);
    }
    if (rc != LCOW_OK) {
        /* lcow_scratch_disk_create_in leaves nothing behind */
        inflight_drop(record);
        free(temp_name);
        lcow_dir_close(d);
        return rc;
    }
    rc = exclusive ? publish_exclusive(d, temp_name, name, b->final_path, err)
                   : lcow_dir_rename(d, temp_name, name, err);
    /* A rename took the temp name away; a hard link or a failure left it. */
    if (exclusive || rc != LCOW_OK) {
        lcow_error e;
        lcow_code gone = lcow_dir_remove(d, temp_name, &e);
        if (gone != LCOW_OK && gone != LCOW_NOT_FOUND) {
            LCOW_LOGW("scratch disk temp file %s left behind: %s", b->temp_path, e.message);
            free(record); /* kept: the next sweep removes the file and it */
            record = NULL;
        }
    }
    free(temp_name);
    if (rc != LCOW_OK) {
        inflight_drop(record);
        lcow_dir_close(d);
        return rc;
    }
    rc = lcow_dir_sync(d, err);
    /* The temp name's removal is durable with the directory: the record
     * goes after it (on a failed sync too: the name is gone either way). */
    inflight_drop(record);
    if (rc != LCOW_OK && exclusive) {
        lcow_error e;
        lcow_code gone = lcow_dir_remove(d, name, &e);
        if (gone != LCOW_OK && gone != LCOW_NOT_FOUND)
            LCOW_LOGW("scratch disk %s left behind after a failed sync: %s", b->final_path,
                      e.message);
    }
    lcow_dir_close(d);
    return rc;
}

/* Builds the template final_path (b) in dir. On failure final_path is
 * untouched (or complete, when only the directory sync failed). */
static lcow_code build_template(lcow_scratch *sc, const char *dir, const char *name,
                                uint32_t size_gb, template_build *b, lcow_error *err)
{
    lcow_scratch_disk_options opts = {
        .geometry.size_bytes = (uint64_t)size_gb << 30,
        .backend = sc->backend,
    };
    lcow_code rc = build_and_publish(sc, dir, name, &opts, false, b, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "build scratch template %s (%u GiB)", b->final_path,
                               (unsigned)size_gb);
    LCOW_LOGI("built scratch template %s (%u GiB)", b->final_path, (unsigned)size_gb);
    return LCOW_OK;
}

/* Returns the template for size_gb in dir, building it first when missing,
 * as the open file that was checked (check_template; a template just built
 * is checked too, as it is opened again by name). One build per file at a
 * time; other sizes never wait. */
static lcow_code get_template(lcow_scratch *sc, const char *dir, uint32_t size_gb, lcow_file **out,
                              lcow_error *err)
{
    *out = NULL;
    char name[64];
    template_name(size_gb, name, sizeof name);
    char *final_path = lcow_path_join(dir, name);
    if (!final_path)
        return oom(err, "scratch template");
    bool new_location = false;
    if (strcmp(dir, sc->root) != 0 && remember_location(sc, dir, &new_location) != LCOW_OK) {
        free(final_path);
        return oom(err, "scratch template");
    }
    if (new_location) {
        /* Crash leftovers of an earlier run in this location: the root is
         * swept at open, a location only once this process uses it. */
        lcow_error e;
        if (sweep_dir(sc, dir, &e) != LCOW_OK)
            LCOW_LOGW("scratch location %s: stale temp files not removed (%s)", dir, e.message);
    }
    lcow_code rc = LCOW_OK;
    template_build *mine = NULL;
    lcow_file *checked = NULL;
    /* Pass 0 checks an existing template; after a bad one was moved aside,
     * pass 1 builds it, or checks what another caller built meanwhile. */
    for (int pass = 0; pass < 3 && rc == LCOW_OK && !mine && !checked; pass++) {
        bool set_aside = false;
        lcow_mutex_lock(&sc->lock);
        for (;;) {
            if (find_build(sc, final_path)) {
                lcow_cond_wait(&sc->build_done, &sc->lock);
                continue;
            }
            lcow_stat st;
            rc = lcow_os_stat(final_path, &st, err);
            if (rc != LCOW_OK)
                break;
            if (st.exists && pass < 2) {
                /* Checked outside the lock; moved aside and built in a
                 * later round when it is not a usable template. */
                break;
            }
            if (st.exists)
                set_aside = true;
            else if (!(mine = build_register(sc, final_path)))
                rc = oom(err, "scratch template");
            break;
        }
        lcow_mutex_unlock(&sc->lock);
        if (rc != LCOW_OK || mine || set_aside)
            break;
        bool bad = false;
        lcow_error e;
        rc = check_template(final_path, size_gb, &bad, &checked, &e);
        if (rc == LCOW_OK) /* checked: the loop ends */
            break;
        if (bad) {
            /* A FIFO, socket, device, directory or link where the template
             * belongs, or a file that is not a valid template of this size:
             * moved aside (never waited on, never followed, never copied)
             * and a template built in its place (issue 14, items 3 and 4). */
            lcow_time now = lcow_os_time_now();
            char aside[96];
            snprintf(aside, sizeof aside, "%s.bad-%" PRId64 "-%09" PRIu32, name, now.sec, now.nsec);
            char *aside_path = lcow_path_join(dir, aside);
            lcow_error re;
            if (!aside_path) {
                rc = oom(err, "scratch template");
            } else if ((rc = lcow_os_rename(final_path, aside_path, &re)) == LCOW_NOT_FOUND) {
                rc = LCOW_OK; /* another caller moved it aside first */
            } else if (rc != LCOW_OK) {
                rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                                    "scratch template %s: %s; it could not be moved aside (%s): "
                                    "remove it and it will be rebuilt",
                                    final_path, e.message, re.message);
            } else {
                LCOW_LOGW("scratch template %s: %s; moved aside to %s and rebuilt", final_path,
                          e.message, aside_path);
            }
            free(aside_path);
        } else if (err) {
            *err = e;
        }
    }
    if (rc == LCOW_OK && !mine && !checked)
        rc = lcow_error_set(err, LCOW_UNAVAILABLE,
                            "scratch template %s keeps being replaced; try again", final_path);

    if (rc == LCOW_OK && mine) {
        rc = build_template(sc, dir, name, size_gb, mine, err);
        build_unregister(sc, mine);
        bool bad = false;
        lcow_error e;
        if (rc == LCOW_OK &&
            (rc = check_template(final_path, size_gb, &bad, &checked, &e)) != LCOW_OK)
            rc = lcow_error_set(err, bad ? LCOW_UNAVAILABLE : rc,
                                "scratch template %s was built but %s; try again", final_path,
                                e.message);
    }
    free(final_path);
    if (rc != LCOW_OK) {
        lcow_file_close(checked);
        return rc;
    }
    *out = checked;
    return LCOW_OK;
}

/* ------------------------------------------------------------ create / link */

/* sandbox.vhdx is made inside the snapshot directory opened as a handle,
 * not followed if it is a link (issue 14, item 5): the file is created
 * exclusively through it, filled from the template file that was checked
 * (lcow_file_copy_sparse from the open handle) or formatted in place, and
 * removed through it on failure. The directories above it are the store's
 * own (<root>/snapshots, under a root lcow_os_check_private_dir accepted at
 * open: nobody else can swap them). */
lcow_code lcow_scratch_create_own(lcow_scratch *sc, const lcow_scratch_plan *plan,
                                  const char *snapshot_dir, lcow_error *err)
{
    /* The plan comes from lcow_scratch_plan_for, which validated the size. */
    if (plan->mode != LCOW_META_SCRATCH_OWN)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "scratch create: not an own scratch");
    const char *dir = plan->location ? plan->location : sc->root;
    lcow_dir *d = NULL;
    lcow_code rc = lcow_dir_open(snapshot_dir, &d, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "create %s in %s", LCOW_SANDBOX_NAME, snapshot_dir);
    /* The template is kept up to date either way: users rely on the files. */
    lcow_file *tpl = NULL;
    rc = get_template(sc, dir, plan->size_gb, &tpl, err);
    if (rc != LCOW_OK) {
        lcow_dir_close(d);
        return rc;
    }
    if (strategy_for(sc, plan->size_gb) == FILL_COPY) {
        lcow_file *out = NULL;
        rc =
            lcow_dir_file_open(d, LCOW_SANDBOX_NAME,
                               LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE, &out, err);
        if (rc == LCOW_OK) {
            rc = lcow_file_copy_sparse(tpl, out, err);
            lcow_file_close(out);
            if (rc != LCOW_OK) {
                /* a failed copy leaves nothing behind */
                lcow_error e;
                lcow_code gone = lcow_dir_remove(d, LCOW_SANDBOX_NAME, &e);
                if (gone != LCOW_OK && gone != LCOW_NOT_FOUND)
                    LCOW_LOGW("partial %s left in %s: %s", LCOW_SANDBOX_NAME, snapshot_dir,
                              e.message);
            }
        }
    } else {
        lcow_scratch_disk_options opts = {
            .geometry.size_bytes = (uint64_t)plan->size_gb << 30,
            .backend = sc->backend,
        };
        rc = lcow_scratch_disk_create_in(d, LCOW_SANDBOX_NAME, &opts, err);
    }
    if (rc != LCOW_OK)
        lcow_error_wrap(err, "create %s in %s", LCOW_SANDBOX_NAME, snapshot_dir);
    lcow_file_close(tpl);
    lcow_dir_close(d);
    return rc;
}

lcow_code lcow_scratch_create_at(lcow_scratch *sc, const char *path, uint32_t size_gb,
                                 uint32_t block_size_mb, lcow_error *err)
{
    if (!path || !lcow_path_is_absolute(path))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "scratch path must be absolute (got \"%s\")", path ? path : "");
    if (size_gb == 0)
        size_gb = LCOW_SCRATCH_DEFAULT_GB;
    if (!size_gb_valid(size_gb))
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "scratch size %" PRIu32 " GiB is out of range (1..%u)", size_gb,
                              LCOW_SCRATCH_MAX_GB);
    if (block_size_mb == 0)
        block_size_mb = LCOW_SCRATCH_DEFAULT_BLOCK_MB;
    if (block_size_mb > 256 || (block_size_mb & (block_size_mb - 1)) != 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "block size %" PRIu32 " MiB must be a power of two in 1..256",
                              block_size_mb);
    /* The directory part: everything before the last separator; the name
     * after it is a new file's, never "." or "..". */
    size_t n = strlen(path), cut = n;
    while (cut > 0 && !is_sep(path[cut - 1]))
        cut--;
    const char *name = path + cut;
    if (cut == 0 || cut == n || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "scratch path %s names no file", path);
    char *given_dir = malloc(cut + 1);
    if (!given_dir)
        return oom(err, "create scratch");
    memcpy(given_dir, path, cut);
    given_dir[cut] = '\0';
    if (cut > 1 && is_sep(given_dir[cut - 1]) && given_dir[cut - 2] != ':')
        given_dir[cut - 1] = '\0';

    /* Whatever is at the name itself is never followed or replaced: a
     * symbolic link (even a dangling one), a directory, a FIFO, a device or
     * a file there is refused and left as it is (issue 14, item 3). */
    char *dir = NULL, *target = NULL;
    lcow_stat st;
    lcow_error e;
    lcow_code rc = lcow_scratch_path_allowed(sc, path, err);
    if (rc == LCOW_OK)
        rc = lcow_os_stat(path, &st, err);
    if (rc == LCOW_OK && st.exists)
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS,
                            "%s already exists (%s); CreateScratch never replaces or follows "
                            "anything, nothing was changed",
                            path, lcow_os_stat_kind(&st));
    /* Then the directory is resolved once and everything below works on
     * the resolved path, checked against the policy. */
    if (rc == LCOW_OK && lcow_os_realpath(given_dir, &dir, &e) != LCOW_OK)
        rc = lcow_error_set(err, e.code, "directory %s of scratch path %s does not exist (%s)",
                            given_dir, path, e.message);
    if (rc == LCOW_OK && lcow_os_stat(dir, &st, err) == LCOW_OK && !st.is_dir)
        rc = lcow_error_set(err, LCOW_NOT_FOUND,
                            "directory %s of scratch path %s is %s, not a directory", given_dir,
                            path, lcow_os_stat_kind(&st));
    if (rc == LCOW_OK && !(target = lcow_path_join(dir, name)))
        rc = oom(err, "create scratch");
    if (rc == LCOW_OK)
        rc = lcow_scratch_path_allowed(sc, target, err);
    if (rc == LCOW_OK)
        rc = lcow_os_stat(target, &st, err);
    if (rc == LCOW_OK && st.exists)
        rc = lcow_error_set(err, LCOW_ALREADY_EXISTS, "%s (%s) already exists (%s)", path, target,
                            lcow_os_stat_kind(&st));
    free(given_dir);
    template_build *b = NULL;
    if (rc == LCOW_OK) {
        lcow_mutex_lock(&sc->lock);
        b = build_register(sc, target);
        lcow_mutex_unlock(&sc->lock);
        if (!b)
            rc = oom(err, "create scratch");
    }
    if (rc == LCOW_OK) {
        lcow_scratch_disk_options o = {
            .geometry.size_bytes = (uint64_t)size_gb << 30,
            .geometry.block_size = block_size_mb << 20,
            .backend = sc->backend,
        };
        rc = build_and_publish(sc, dir, name, &o, true, b, err);
    }
    if (b)
        build_unregister(sc, b);
    free(target);
    free(dir);
    return rc;
}

lcow_code lcow_scratch_link_shared(lcow_scratch *sc, const char *owner_disk,
                                   const char *snapshot_dir, lcow_error *err)
{
    /* The shared disk is a regular file the store made in its root (or a
     * member's link to one): a FIFO, device or directory in its place, or a
     * link leading out of the root, is refused, never followed or shared
     * (issue 14, item 3). Link to the canonical file, never to another
     * link: a chain would dangle as soon as any link in it goes. */
    lcow_stat st;
    lcow_code rc = lcow_os_stat(owner_disk, &st, err);
    if (rc == LCOW_OK && !st.exists)
        rc = lcow_error_set(err, LCOW_NOT_FOUND, "shared scratch disk %s is missing", owner_disk);
    if (rc != LCOW_OK)
        return rc;
    char *target = NULL;
    rc = lcow_os_realpath(owner_disk, &target, err);
    if (rc != LCOW_OK)
        return lcow_error_wrap(err, "shared scratch disk");
    if (!path_within(target, sc->root))
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "shared scratch disk %s resolves to %s, outside the service's root %s: "
                            "lcowsnap does not follow links out of its root",
                            owner_disk, target, sc->root);
    if (rc == LCOW_OK && (rc = lcow_os_stat(target, &st, err)) == LCOW_OK && !st.is_regular)
        rc = lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                            "shared scratch disk %s is %s, not a regular file: lcowsnap does not "
                            "share what it did not create",
                            owner_disk, lcow_os_stat_kind(&st));
    /* The link is made inside the snapshot directory opened as a handle,
     * as create_own makes its disk (issue 14, item 5). */
    lcow_dir *d = NULL;
    if (rc == LCOW_OK && (rc = lcow_dir_open(snapshot_dir, &d, err)) != LCOW_OK)
        lcow_error_wrap(err, "scratch link");
    if (rc == LCOW_OK) {
        lcow_error sym_err;
        rc = lcow_dir_symlink(d, target, LCOW_SANDBOX_NAME, &sym_err);
        if (rc == LCOW_NOT_IMPLEMENTED) {
            LCOW_LOGW("symbolic links unavailable (%s); sharing %s through a hard link",
                      sym_err.message, target);
            rc = lcow_dir_hardlink_from(d, target, LCOW_SANDBOX_NAME, err);
        } else if (rc != LCOW_OK && err) {
            *err = sym_err;
        }
    }
    lcow_dir_close(d);
    free(target);
    return rc;
}

/* ------------------------------------------------------------ cleanup */

typedef struct temp_sweep {
    lcow_scratch *sc;
    const char *dir;
    int removed;
    lcow_code rc;
    lcow_error err;
} temp_sweep;

static bool temp_in_flight(lcow_scratch *sc, const char *path)
{
    for (template_build *b = sc->builds; b; b = b->next)
        if (b->temp_path && strcmp(b->temp_path, path) == 0)
            return true;
    return false;
}

static int sweep_entry(void *ctx, const char *name, bool is_dir)
{
    temp_sweep *s = ctx;
    if (is_dir || !is_template_temp(name))
        return 0;
    char *path = lcow_path_join(s->dir, name);
    if (!path)
        return 0;
    lcow_mutex_lock(&s->sc->lock);
    bool busy = temp_in_flight(s->sc, path);
    lcow_mutex_unlock(&s->sc->lock);
    if (!busy) {
        lcow_error e;
        lcow_code rc = lcow_os_remove(path, &e);
        if (rc == LCOW_OK) {
            s->removed++;
            LCOW_LOGI("removed stale scratch template temp file %s", path);
        } else if (rc != LCOW_NOT_FOUND && s->rc == LCOW_OK) {
            s->rc = rc;
            s->err = e;
        }
    }
    free(path);
    return 0;
}

static lcow_code sweep_dir(lcow_scratch *sc, const char *dir, lcow_error *err)
{
    temp_sweep s = {.sc = sc, .dir = dir};
    lcow_code rc = lcow_os_list_dir(dir, sweep_entry, &s, err);
    if (rc == LCOW_NOT_FOUND)
        return LCOW_OK; /* a location directory removed meanwhile */
    if (rc == LCOW_OK && s.rc != LCOW_OK) {
        if (err)
            *err = s.err;
        rc = s.rc;
    }
    return rc;
}

/* One record of scratch-inflight: removes the CreateScratch temp file it
 * names (only a regular file whose name is one of our temp names; links
 * are removed, never followed), then the record. Records of builds still
 * running are left alone; a torn record (a crash while writing it, before
 * its temp file existed) is just removed. */
typedef struct inflight_sweep {
    lcow_scratch *sc;
    const char *dir;
    lcow_code rc;
    lcow_error err;
} inflight_sweep;

static bool names_a_temp(const char *path)
{
    size_t n = strlen(path), base = n;
    while (base > 0 && !is_sep(path[base - 1]))
        base--;
    return lcow_path_is_absolute(path) && path[base] == '.' && strstr(path + base, TEMP_MARK);
}

static int inflight_entry(void *ctx, const char *name, bool is_dir)
{
    inflight_sweep *w = ctx;
    if (is_dir)
        return 0;
    char *record = lcow_path_join(w->dir, name);
    if (!record)
        return 0;
    lcow_file *f = NULL;
    char temp[4096];
    size_t got = 0;
    lcow_error e;
    lcow_code rc = lcow_file_open(record, LCOW_OPEN_READ | LCOW_OPEN_REGULAR, &f, &e);
    if (rc == LCOW_OK)
        rc = lcow_file_pread(f, temp, sizeof temp - 1, 0, &got, &e);
    lcow_file_close(f);
    temp[rc == LCOW_OK ? got : 0] = '\0';
    bool valid = rc == LCOW_OK && strlen(temp) == got && names_a_temp(temp);
    lcow_mutex_lock(&w->sc->lock);
    bool busy = valid && temp_in_flight(w->sc, temp);
    lcow_mutex_unlock(&w->sc->lock);
    if (busy) {
        free(record);
        return 0;
    }
    lcow_stat st;
    if (valid && lcow_os_stat(temp, &st, &e) == LCOW_OK && st.exists) {
        rc = lcow_os_remove(temp, &e);
        if (rc == LCOW_OK)
            LCOW_LOGI("removed the temp file %s of an interrupted CreateScratch", temp);
    } else {
        rc = LCOW_OK;
    }
    if (rc == LCOW_OK || rc == LCOW_NOT_FOUND)
        rc = lcow_os_remove(record, &e);
    if (rc != LCOW_OK && rc != LCOW_NOT_FOUND && w->rc == LCOW_OK) {
        w->rc = rc;
        w->err = e;
    }
    free(record);
    return 0;
}

static lcow_code sweep_inflight(lcow_scratch *sc, lcow_error *err)
{
    char *dir = lcow_path_join(sc->root, INFLIGHT_DIR);
    if (!dir)
        return oom(err, "scratch cleanup");
    inflight_sweep w = {.sc = sc, .dir = dir};
    lcow_stat st;
    lcow_code rc = lcow_os_stat(dir, &st, err);
    if (rc == LCOW_OK && st.is_dir)
        rc = lcow_os_list_dir(dir, inflight_entry, &w, err);
    if (rc == LCOW_OK && w.rc != LCOW_OK) {
        if (err)
            *err = w.err;
        rc = w.rc;
    }
    free(dir);
    return rc == LCOW_NOT_FOUND ? LCOW_OK : rc;
}

lcow_code lcow_scratch_cleanup(lcow_scratch *sc, lcow_error *err)
{
    lcow_code first = sweep_dir(sc, sc->root, err);
    if (first == LCOW_OK)
        first = sweep_inflight(sc, err);
    lcow_mutex_lock(&sc->lock);
    size_t n = sc->location_count;
    char **dirs = n ? calloc(n, sizeof *dirs) : NULL;
    for (size_t i = 0; dirs && i < n; i++)
        dirs[i] = strdup(sc->locations[i]);
    lcow_mutex_unlock(&sc->lock);
    if (n && !dirs)
        return oom(err, "scratch cleanup");
    for (size_t i = 0; i < n; i++) {
        lcow_error e;
        lcow_code rc = dirs[i] ? sweep_dir(sc, dirs[i], &e) : LCOW_RESOURCE_EXHAUSTED;
        if (rc != LCOW_OK && first == LCOW_OK) {
            first = rc;
            if (err)
                *err = e;
        }
        free(dirs[i]);
    }
    free(dirs);
    return first;
}

/* Crash campaign: the real lcowsnap under a random workload from several
 * clients, SIGKILLed at random instants (also while a Prepare is creating a
 * scratch disk and while a Remove runs), restarted, and checked after every
 * restart:
 *   - every acknowledged Prepare/View/Commit/Update/Remove is reflected,
 *     commits with exactly their labels;
 *   - an unacknowledged call is either fully applied or not at all (never
 *     half-visible: for a Commit, exactly one of key and name exists);
 *   - no snapshot appears that no client asked for;
 *   - every active's mounts exist (with its sandbox.vhdx when it has one);
 *   - Apply (issue 16: a layer blob converted into the layer store and
 *     hard-linked as layer.vhd, or linked when the blob is known) is killed
 *     too (every fourth kill waits for one): an applied active has its
 *     layer.vhd and diff-id label, an unacknowledged Apply is all or
 *     nothing in the metadata, Commit carries the diff-id label; Cleanup runs
 *     in the workload; the service runs with a small layer cache bound
 *     (--layer-cache-max-bytes 24M) so evictions happen as well;
 *   - every other kill, the killed root opened (recovery) and checked at
 *     once, before any Cleanup: lcow_snapshotter_check passes;
 *   - Cleanup leaves no directory without a record, and the store passes
 *     lcow_snapshotter_check (tstore_check on the stopped service's root);
 *   - every scratch disk referenced (and every template) passes qemu-img check.
 *
 * crash_campaign --exe LCOWSNAP --dir WORKDIR --kills N [--clients C] [--seed S]
 * Exit 0 when every check passed; prints one summary line. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/disk/sha256.h"
#include "core/layer/store.h"
#include "core/scratch.h"
#include "core/snapshotter.h"
#include "rpc/client.h"
#include "support/layerblob.h"
#include "torture_util.h"

#define MAX_CLIENTS 16
#define MAX_SNAPS 256
#define KEY_LEN 96
#define LABELS_LEN 1024

typedef struct snap {
    char key[KEY_LEN];
    char parent[KEY_LEN];
    lcow_kind kind;
    char labels[LABELS_LEN]; /* canonical: k=v\n ... sorted by key */
    bool scratch;            /* an active that should have a sandbox.vhdx */
    bool acked;              /* its current state was acknowledged to a client */
    bool apply_tried;        /* an Apply to this active was sent (it gets no second) */
} snap;

enum op_type {
    OP_NONE,
    OP_PREPARE,
    OP_PREPARE_SCRATCH,
    OP_VIEW,
    OP_COMMIT,
    OP_REMOVE,
    OP_UPDATE,
    OP_APPLY,
    OP_CLEANUP
};

/* The layer blobs Apply imports: uncompressed tars (diffID = digest), 1 to
 * 8 MiB of random bytes, so a conversion takes a while. */
#define NBLOBS 16
static char g_blob_path[NBLOBS][1100];
static char g_blob_digest[NBLOBS][LCOW_SHA256_DIGEST_STRING_SIZE];

/* An unacknowledged call: up to two keys, each with the state before and
 * after (present=false: absent). */
typedef struct uncertain {
    int type;
    int nkeys;
    char key[2][KEY_LEN];
    bool before_present[2], after_present[2];
    snap before[2], after[2];
} uncertain;

typedef struct client_state {
    int index;
    char ns[16];
    snap snaps[MAX_SNAPS];
    int count;
    unsigned next_name;
    bool has_uncertain;
    uncertain u;
    atomic_int inflight; /* enum op_type */
    uint64_t rng;
    unsigned ops;
    char failure[1024];
} client_state;

static const char *g_address;
static char g_locdir[1024];
static atomic_bool g_killed;
static atomic_bool g_stop;
static atomic_int g_failed;
static char g_failure[2048];
static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
    pthread_mutex_lock(&g_fail_lock);
    if (!atomic_load(&g_failed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_failure, sizeof g_failure, fmt, ap);
        va_end(ap);
        atomic_store(&g_failed, 1);
    }
    pthread_mutex_unlock(&g_fail_lock);
}

static void canon_labels(const lcow_labels *l, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < l->count && used < len; i++)
        used +=
            (size_t)snprintf(out + used, len - used, "%s=%s\n", l->items[i].key, l->items[i].value);
}

static snap *find(client_state *c, const char *key)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->snaps[i].key, key) == 0)
            return &c->snaps[i];
    return NULL;
}

static void drop(client_state *c, const char *key)
{
    snap *s = find(c, key);
    if (s)
        *s = c->snaps[--c->count];
}

/* The layer labels Apply put in canonical labels ("k=v\n" lines) into l. */
static void copy_layer_labels(const char *canon, lcow_labels *l)
{
    static const char *const keys[] = {LCOW_LAYER_STORE_LABEL_DIFF_ID,
                                       LCOW_LAYER_STORE_LABEL_VERITY_ROOT};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(keys[k]);
        for (const char *p = canon; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
            if (strncmp(p, keys[k], n) == 0 && p[n] == '=') {
                const char *v = p + n + 1, *e = strchr(v, '\n');
                char val[128];
                snprintf(val, sizeof val, "%.*s", e ? (int)(e - v) : (int)strlen(v), v);
                lcow_labels_set(l, keys[k], val);
            }
        }
    }
}

/* A random extract-* active no Apply was sent to; NULL if none. */
static snap *pick_unapplied(client_state *c)
{
    int idx[MAX_SNAPS], n = 0;
    for (int i = 0; i < c->count; i++)
        if (c->snaps[i].kind == LCOW_KIND_ACTIVE && !c->snaps[i].scratch &&
            !c->snaps[i].apply_tried && strstr(c->snaps[i].key, "/extract-"))
            idx[n++] = i;
    return n ? &c->snaps[idx[trand_below(&c->rng, (uint32_t)n)]] : NULL;
}

static bool has_children(client_state *c, const char *key)
{
    for (int i = 0; i < c->count; i++)
        if (strcmp(c->snaps[i].parent, key) == 0)
            return true;
    return false;
}

/* A random snapshot of kind k (0 = any); NULL if none. */
static snap *pick(client_state *c, lcow_kind k, bool leaf_only)
{
    int idx[MAX_SNAPS], n = 0;
    for (int i = 0; i < c->count; i++)
        if ((k == 0 || c->snaps[i].kind == k) && (!leaf_only || !has_children(c, c->snaps[i].key)))
            idx[n++] = i;
    return n ? &c->snaps[idx[trand_below(&c->rng, (uint32_t)n)]] : NULL;
}

static const char *client_key_of(const char *key)
{
    const char *p = strchr(key, '/');
    p = p ? strchr(p + 1, '/') : NULL;
    return p ? p + 1 : key;
}

static void random_labels(client_state *c, lcow_labels *l)
{
    char k[32], v[48];
    int n = (int)trand_below(&c->rng, 3);
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "torture/l%u", trand_below(&c->rng, 4));
        snprintf(v, sizeof v, "v%" PRIu64, trand(&c->rng) % 100000);
        lcow_labels_set(l, k, v);
    }
}

/* Runs one random operation. Returns false when the client must stop. */
static bool step(client_state *c, lcow_client *cl)
{
    lcow_error err;
    memset(&err, 0, sizeof err);
    lcow_labels labels = {0};
    uncertain u;
    memset(&u, 0, sizeof u);
    lcow_code rc = LCOW_OK;
    uint32_t r = trand_below(&c->rng, 100);
    bool crowded = c->count > 40;
    snap *target = NULL;
    char name[KEY_LEN];

    if (crowded && r < 60)
        r = 60 + trand_below(&c->rng, 15); /* -> remove */

    if (r < 18 || c->count == 0) {
        /* Layer being unpacked: extract-* active, no scratch. */
        snap *parent = trand_below(&c->rng, 3) ? pick(c, LCOW_KIND_COMMITTED, false) : NULL;
        snprintf(name, sizeof name, "%s/1/extract-%u", c->ns, c->next_name++);
        random_labels(c, &labels);
        u.type = OP_PREPARE;
        u.nkeys = 1;
        strcpy(u.key[0], name);
        u.after_present[0] = true;
        snap *a = &u.after[0];
        strcpy(a->key, name);
        strcpy(a->parent, parent ? parent->key : "");
        a->kind = LCOW_KIND_ACTIVE;
        canon_labels(&labels, a->labels, sizeof a->labels);
        atomic_store(&c->inflight, OP_PREPARE);
        lcow_mounts m = {0};
        rc = lcow_client_prepare(cl, name, a->parent, &labels, &m, &err);
        lcow_mounts_free(&m);
    } else if (r < 40) {
        /* Container: own scratch of 1..4 GiB (sometimes in a fresh template
         * directory), or a share of an existing active's scratch. */
        snap *parent = trand_below(&c->rng, 4) ? pick(c, LCOW_KIND_COMMITTED, false) : NULL;
        snprintf(name, sizeof name, "%s/1/c%u", c->ns, c->next_name++);
        snap *owner = NULL;
        if (trand_below(&c->rng, 3) == 0) {
            for (int tries = 0; tries < 8 && !owner; tries++) {
                snap *o = pick(c, LCOW_KIND_ACTIVE, false);
                if (o && o->scratch)
                    owner = o;
            }
        }
        int type = OP_PREPARE_SCRATCH;
        if (owner) {
            lcow_labels_set(&labels, LCOW_LABEL_REUSE, "true");
            lcow_labels_set(&labels, LCOW_LABEL_OWNER, client_key_of(owner->key));
            type = OP_PREPARE; /* a link, no disk work */
        } else {
            char size[8];
            snprintf(size, sizeof size, "%u", 1 + trand_below(&c->rng, 4));
            lcow_labels_set(&labels, LCOW_LABEL_SIZE_GB, size);
            if (g_locdir[0] && trand_below(&c->rng, 4) == 0)
                lcow_labels_set(&labels, LCOW_LABEL_LOCATION, g_locdir);
        }
        random_labels(c, &labels);
        u.type = type;
        u.nkeys = 1;
        strcpy(u.key[0], name);
        u.after_present[0] = true;
        snap *a = &u.after[0];
        strcpy(a->key, name);
        strcpy(a->parent, parent ? parent->key : "");
        a->kind = LCOW_KIND_ACTIVE;
        a->scratch = true;
        canon_labels(&labels, a->labels, sizeof a->labels);
        atomic_store(&c->inflight, type);
        lcow_mounts m = {0};
        rc = lcow_client_prepare(cl, name, a->parent, &labels, &m, &err);
        lcow_mounts_free(&m);
    } else if (r < 48 && (target = pick(c, LCOW_KIND_COMMITTED, false))) {
        snprintf(name, sizeof name, "%s/1/v%u", c->ns, c->next_name++);
        random_labels(c, &labels);
        u.type = OP_VIEW;
        u.nkeys = 1;
        strcpy(u.key[0], name);
        u.after_present[0] = true;
        snap *a = &u.after[0];
        strcpy(a->key, name);
        strcpy(a->parent, target->key);
        a->kind = LCOW_KIND_VIEW;
        canon_labels(&labels, a->labels, sizeof a->labels);
        atomic_store(&c->inflight, OP_VIEW);
        lcow_mounts m = {0};
        rc = lcow_client_view(cl, name, a->parent, &labels, &m, &err);
        lcow_mounts_free(&m);
    } else if (r < 62 && (target = pick(c, LCOW_KIND_ACTIVE, false))) {
        const char *base = client_key_of(target->key);
        snprintf(name, sizeof name, "%s/1/layer-%u-%.40s", c->ns, c->next_name++, base);
        random_labels(c, &labels);
        lcow_labels_set(&labels, "torture/commit", name);
        /* Commit keeps the layer labels Apply put on the active. */
        lcow_labels merged = {0};
        lcow_labels_copy(&merged, &labels);
        copy_layer_labels(target->labels, &merged);
        u.type = OP_COMMIT;
        u.nkeys = 2;
        strcpy(u.key[0], target->key);
        u.before_present[0] = true;
        u.before[0] = *target;
        u.after_present[0] = false;
        strcpy(u.key[1], name);
        u.before_present[1] = false;
        u.after_present[1] = true;
        snap *a = &u.after[1];
        strcpy(a->key, name);
        strcpy(a->parent, target->parent);
        a->kind = LCOW_KIND_COMMITTED;
        canon_labels(&merged, a->labels, sizeof a->labels);
        lcow_labels_free(&merged);
        atomic_store(&c->inflight, OP_COMMIT);
        rc = lcow_client_commit(cl, name, target->key, &labels, NULL, &err);
    } else if (r < 72 && (target = pick_unapplied(c))) {
        /* Apply a layer blob (by digest: a known blob is only linked). */
        unsigned b = trand_below(&c->rng, NBLOBS);
        target->apply_tried = true;
        u.type = OP_APPLY;
        u.nkeys = 1;
        strcpy(u.key[0], target->key);
        u.before_present[0] = u.after_present[0] = true;
        u.before[0] = *target;
        u.after[0] = *target;
        lcow_labels l = {0};
        /* the model's labels back into a map, plus the diffID label */
        for (const char *p = target->labels; *p;) {
            const char *eq = strchr(p, '='), *nl = strchr(p, '\n');
            if (!eq || !nl)
                break;
            char k[256], v[256];
            snprintf(k, sizeof k, "%.*s", (int)(eq - p), p);
            snprintf(v, sizeof v, "%.*s", (int)(nl - eq - 1), eq + 1);
            lcow_labels_set(&l, k, v);
            p = nl + 1;
        }
        lcow_labels_set(&l, LCOW_LAYER_STORE_LABEL_DIFF_ID, g_blob_digest[b]);
        canon_labels(&l, u.after[0].labels, sizeof u.after[0].labels);
        lcow_labels_free(&l);
        atomic_store(&c->inflight, OP_APPLY);
        lcow_result res = {0};
        rc = lcow_client_apply(cl, target->key, g_blob_path[b], NULL, g_blob_digest[b], false, &res,
                               &err);
        if (rc == LCOW_OK && (!res.diff_id || strcmp(res.diff_id, g_blob_digest[b]) != 0))
            snprintf(c->failure, sizeof c->failure, "Apply %s answered diff_id %s, want %s",
                     target->key, res.diff_id ? res.diff_id : "(none)", g_blob_digest[b]);
        lcow_result_free(&res);
    } else if (r < 84 && (target = pick(c, 0, true))) {
        u.type = OP_REMOVE;
        u.nkeys = 1;
        strcpy(u.key[0], target->key);
        u.before_present[0] = true;
        u.before[0] = *target;
        atomic_store(&c->inflight, OP_REMOVE);
        rc = lcow_client_remove(cl, target->key, &err);
    } else if (r < 90 && (target = pick(c, 0, false))) {
        lcow_info info = {0};
        info.name = target->key;
        random_labels(c, &info.labels);
        lcow_labels_set(&info.labels, "torture/updated", "1");
        const char *fp = "labels";
        u.type = OP_UPDATE;
        u.nkeys = 1;
        strcpy(u.key[0], target->key);
        u.before_present[0] = u.after_present[0] = true;
        u.before[0] = *target;
        u.after[0] = *target;
        canon_labels(&info.labels, u.after[0].labels, sizeof u.after[0].labels);
        atomic_store(&c->inflight, OP_UPDATE);
        lcow_info out = {0};
        rc = lcow_client_update(cl, &info, &fp, 1, &out, &err);
        if (rc == LCOW_OK) {
            char got[LABELS_LEN];
            canon_labels(&out.labels, got, sizeof got);
            if (strcmp(got, u.after[0].labels) != 0)
                snprintf(c->failure, sizeof c->failure, "Update %s answered labels %s, sent %s",
                         target->key, got, u.after[0].labels);
        }
        lcow_info_free(&out);
        lcow_labels_free(&info.labels);
    } else if (r < 93) {
        /* Cleanup (the layer store's sweep and bound too); no model change. */
        atomic_store(&c->inflight, OP_CLEANUP);
        rc = lcow_client_cleanup(cl, &err);
        atomic_store(&c->inflight, OP_NONE);
        lcow_labels_free(&labels);
        c->ops++;
        if (rc != LCOW_OK && !atomic_load(&g_killed))
            snprintf(c->failure, sizeof c->failure, "Cleanup failed: %s %s", lcow_code_name(rc),
                     err.message);
        return rc == LCOW_OK && !c->failure[0];
    } else {
        /* Walk this client's namespace and compare with the model. */
        char filter[64];
        snprintf(filter, sizeof filter, "name~=\"^%s/\"", c->ns);
        const char *filters[] = {filter};
        lcow_infos infos = {0};
        char *next = NULL;
        atomic_store(&c->inflight, OP_NONE);
        rc = lcow_client_walk(cl, filters, 1, 0, NULL, &infos, &next, &err);
        if (rc == LCOW_OK) {
            if ((int)infos.count != c->count)
                snprintf(c->failure, sizeof c->failure,
                         "Walk of %s returned %zu snapshots, the client made %d", c->ns,
                         infos.count, c->count);
            for (size_t i = 0; i < infos.count && !c->failure[0]; i++) {
                snap *s = find(c, infos.items[i].name);
                char got[LABELS_LEN];
                canon_labels(&infos.items[i].labels, got, sizeof got);
                if (!s || s->kind != infos.items[i].kind || strcmp(s->labels, got) != 0)
                    snprintf(c->failure, sizeof c->failure,
                             "Walk returned %s (%s) unlike the acknowledged state",
                             infos.items[i].name, lcow_kind_name(infos.items[i].kind));
            }
        }
        lcow_infos_free(&infos);
        free(next);
        lcow_labels_free(&labels);
        if (rc != LCOW_OK && !atomic_load(&g_killed))
            snprintf(c->failure, sizeof c->failure, "Walk failed: %s %s", lcow_code_name(rc),
                     err.message);
        c->ops++;
        return rc == LCOW_OK && !c->failure[0];
    }
    atomic_store(&c->inflight, OP_NONE);
    lcow_labels_free(&labels);
    c->ops++;
    if (rc != LCOW_OK) {
        if (atomic_load(&g_killed)) {
            c->u = u;
            c->has_uncertain = true;
            return false;
        }
        snprintf(c->failure, sizeof c->failure, "op %d on %s failed: %s %s", u.type, u.key[0],
                 lcow_code_name(rc), err.message);
        return false;
    }
    if (c->failure[0])
        return false;
    /* Acknowledged: apply to the model. */
    for (int i = 0; i < u.nkeys; i++) {
        if (u.after_present[i]) {
            snap *s = find(c, u.key[i]);
            if (!s) {
                if (c->count == MAX_SNAPS) {
                    snprintf(c->failure, sizeof c->failure, "model full");
                    return false;
                }
                s = &c->snaps[c->count++];
            }
            *s = u.after[i];
            s->acked = true;
        } else {
            drop(c, u.key[i]);
        }
    }
    return true;
}

static void *client_main(void *arg)
{
    client_state *c = arg;
    lcow_client *cl = NULL;
    lcow_error err;
    if (lcow_client_connect(g_address, 5000, &cl, &err) != LCOW_OK) {
        if (!atomic_load(&g_killed))
            snprintf(c->failure, sizeof c->failure, "connect: %s", err.message);
        return NULL;
    }
    lcow_client_set_call_timeout(cl, 30000);
    while (!atomic_load(&g_stop) && step(c, cl)) {
    }
    lcow_client_close(cl);
    return NULL;
}

/* ------------------------------------------------------------ verification */

static bool same(const snap *want, const lcow_info *got)
{
    char labels[LABELS_LEN];
    canon_labels(&got->labels, labels, sizeof labels);
    return want->kind == got->kind && strcmp(want->parent, got->parent ? got->parent : "") == 0 &&
           strcmp(want->labels, labels) == 0;
}

static const lcow_info *actual_of(const lcow_infos *all, const char *key)
{
    for (size_t i = 0; i < all->count; i++)
        if (strcmp(all->items[i].name, key) == 0)
            return &all->items[i];
    return NULL;
}

typedef struct stats {
    unsigned kills, acked_commits_checked, acked_checked, disks_checked, uncertain_applied,
        uncertain_not_applied, kill_scratch, kill_remove, kill_commit, kill_other, kill_idle, ops,
        restarts, kill_apply, applied_checked, checked_after_kill, kill_conversion;
} stats;

static int collect(void *ctx, const lcow_info *info)
{
    lcow_infos_push_copy(ctx, info);
    return 0;
}

/* Compares every client's model with the restarted service; adopts the
 * outcome of unacknowledged calls. 0 = consistent. */
static int verify(client_state *cs, int nclients, lcow_client *cl, stats *st)
{
    lcow_infos all = {0};
    lcow_error err;
    if (lcow_client_walk_all(cl, NULL, 0, collect, &all, &err) != LCOW_OK) {
        failf("walk after restart: %s", err.message);
        return -1;
    }
    int bad = 0;
    for (int ci = 0; ci < nclients && !bad; ci++) {
        client_state *c = &cs[ci];
        if (c->has_uncertain) {
            uncertain *u = &c->u;
            bool before = true, after = true;
            for (int k = 0; k < u->nkeys; k++) {
                const lcow_info *a = actual_of(&all, u->key[k]);
                if (u->before_present[k] ? !(a && same(&u->before[k], a)) : a != NULL)
                    before = false;
                if (u->after_present[k] ? !(a && same(&u->after[k], a)) : a != NULL)
                    after = false;
            }
            if (!before && !after) {
                const lcow_info *a0 = actual_of(&all, u->key[0]);
                const lcow_info *a1 = u->nkeys > 1 ? actual_of(&all, u->key[1]) : NULL;
                failf("unacknowledged op %d is half-visible: %s %s, %s %s", u->type, u->key[0],
                      a0 ? lcow_kind_name(a0->kind) : "absent", u->nkeys > 1 ? u->key[1] : "",
                      u->nkeys > 1 ? (a1 ? lcow_kind_name(a1->kind) : "absent") : "");
                bad = 1;
                break;
            }
            if (after && !before)
                st->uncertain_applied++;
            else
                st->uncertain_not_applied++;
            /* Adopt what the service has. */
            for (int k = 0; k < u->nkeys; k++) {
                bool present = after && !before ? u->after_present[k] : u->before_present[k];
                drop(c, u->key[k]);
                if (present) {
                    snap *s = &c->snaps[c->count++];
                    *s = after && !before ? u->after[k] : u->before[k];
                    s->acked = false;
                }
            }
            c->has_uncertain = false;
        }
        for (int i = 0; i < c->count && !bad; i++) {
            snap *s = &c->snaps[i];
            const lcow_info *a = actual_of(&all, s->key);
            if (!a || !same(s, a)) {
                failf("%s %s (%s) is %s after the restart", s->acked ? "acknowledged" : "observed",
                      s->key, lcow_kind_name(s->kind),
                      a ? "different (kind, parent or labels)" : "missing");
                bad = 1;
                break;
            }
            if (s->acked) {
                st->acked_checked++;
                if (s->kind == LCOW_KIND_COMMITTED)
                    st->acked_commits_checked++;
            }
            if (s->kind == LCOW_KIND_ACTIVE) {
                lcow_mounts m = {0};
                if (lcow_client_mounts(cl, s->key, &m, &err) != LCOW_OK || m.count != 1) {
                    failf("Mounts %s after restart: %s", s->key, err.message);
                    bad = 1;
                } else {
                    char path[2048];
                    struct stat sb;
                    snprintf(path, sizeof path, "%s%s", m.items[0].source,
                             s->scratch ? "/" LCOW_SANDBOX_NAME : "");
                    if (stat(path, &sb) != 0) {
                        failf("active %s: %s is missing after restart", s->key, path);
                        bad = 1;
                    }
                    /* An applied layer (its diff-id label is there): its
                     * layer.vhd is, and is a link of the stored layer. */
                    snprintf(path, sizeof path, "%s/layer.vhd", m.items[0].source);
                    if (!bad && strstr(s->labels, LCOW_LAYER_STORE_LABEL_DIFF_ID "=")) {
                        if (stat(path, &sb) != 0 || sb.st_nlink < 2) {
                            failf("applied active %s: %s is %s after restart", s->key, path,
                                  stat(path, &sb) != 0 ? "missing" : "not linked to the store");
                            bad = 1;
                        } else {
                            st->applied_checked++;
                        }
                    }
                }
                lcow_mounts_free(&m);
            }
        }
    }
    /* Nothing that no client asked for. */
    for (size_t i = 0; i < all.count && !bad; i++) {
        bool known = false;
        for (int ci = 0; ci < nclients && !known; ci++)
            known = find(&cs[ci], all.items[i].name) != NULL;
        if (!known) {
            failf("%s (%s) exists but no acknowledged or in-flight call created it",
                  all.items[i].name, lcow_kind_name(all.items[i].kind));
            bad = 1;
        }
    }
    lcow_infos_free(&all);
    return bad ? -1 : 0;
}

/* --self-test: the verification must catch a wrong model. Each tamper is
 * applied to a copy of the clients' state and must make verify fail. */
static unsigned g_tampers, g_tampers_caught;

static void tamper_check(client_state *cs, int n, lcow_client *cl, const char *what,
                         void (*tamper)(client_state *c))
{
    static client_state saved[MAX_CLIENTS];
    int ci = -1;
    for (int i = 0; i < n && ci < 0; i++)
        if (cs[i].count > 0)
            ci = i;
    if (ci < 0)
        return;
    memcpy(saved, cs, sizeof saved[0] * (size_t)n);
    tamper(&cs[ci]);
    stats st = {0};
    int rc = verify(cs, n, cl, &st);
    g_tampers++;
    g_tampers_caught += rc != 0;
    printf("  self-test: %s -> %s%s%s\n", what, rc ? "detected: " : "NOT detected",
           rc ? g_failure : "", "");
    memcpy(cs, saved, sizeof saved[0] * (size_t)n);
    atomic_store(&g_failed, 0);
    g_failure[0] = '\0';
}

static void tamper_labels(client_state *c)
{
    strcat(c->snaps[0].labels, "torture/phantom=1\n");
}

static void tamper_phantom(client_state *c)
{
    snap *s = &c->snaps[c->count++];
    memset(s, 0, sizeof *s);
    snprintf(s->key, sizeof s->key, "%s/1/never-created", c->ns);
    s->kind = LCOW_KIND_COMMITTED;
    s->acked = true;
}

static void tamper_forget(client_state *c)
{
    c->count--; /* the service has a snapshot no call made */
}

static void tamper_kind(client_state *c)
{
    c->snaps[0].kind =
        c->snaps[0].kind == LCOW_KIND_COMMITTED ? LCOW_KIND_ACTIVE : LCOW_KIND_COMMITTED;
}

static void self_test(client_state *cs, int n, lcow_client *cl)
{
    tamper_check(cs, n, cl, "labels of an acknowledged snapshot differ", tamper_labels);
    tamper_check(cs, n, cl, "an acknowledged snapshot is missing", tamper_phantom);
    tamper_check(cs, n, cl, "an unrequested snapshot is visible", tamper_forget);
    tamper_check(cs, n, cl, "a snapshot has the wrong kind", tamper_kind);
}

/* ------------------------------------------------------------ main loop */

typedef struct checked {
    char **paths;
    size_t n, cap;
} checked;

static bool was_checked(checked *ck, const char *p)
{
    for (size_t i = 0; i < ck->n; i++)
        if (strcmp(ck->paths[i], p) == 0)
            return true;
    if (ck->n == ck->cap) {
        ck->cap = ck->cap ? ck->cap * 2 : 64;
        ck->paths = realloc(ck->paths, ck->cap * sizeof *ck->paths);
    }
    ck->paths[ck->n++] = strdup(p);
    return false;
}

static int check_disks(char **disks, size_t n, checked *ck, stats *st)
{
    for (size_t i = 0; i < n; i++) {
        if (was_checked(ck, disks[i]))
            continue;
        char msg[2048];
        int rc = tqemu_check(disks[i], msg, sizeof msg);
        if (rc != 0) {
            failf("qemu-img check %s: %s", disks[i], rc == 2 ? "cannot run qemu-img" : msg);
            return -1;
        }
        st->disks_checked++;
    }
    return 0;
}

/* Every other kill: what the killed service left, opened as a restart opens
 * it (recovery: sweeps of temps, incomplete layers, orphan directories)
 * and checked at once, before the service or a Cleanup touches it (the
 * others let the restarted service recover it). 0 when the check passes. */
static int check_after_kill(const char *root, char *msg, size_t len)
{
    lcow_snapshotter_config cfg = {.root = root, .scratch_backend = LCOW_SCRATCH_NATIVE};
    lcow_snapshotter *s = NULL;
    lcow_error err;
    if (lcow_snapshotter_open(&cfg, &s, &err) != LCOW_OK) {
        snprintf(msg, len, "open after the kill: %s", err.message);
        return -1;
    }
    int rc = 0;
    if (lcow_snapshotter_check(s, &err) != LCOW_OK) {
        snprintf(msg, len, "check after the kill and open: %s", err.message);
        rc = -1;
    }
    lcow_snapshotter_free(s);
    return rc;
}

int main(int argc, char **argv)
{
    const char *exe = NULL, *dir = NULL;
    unsigned kills = 20, nclients = 4;
    bool selftest = false;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--exe"))
            exe = argv[i + 1];
        else if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "--kills"))
            kills = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--clients"))
            nclients = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--self-test"))
            selftest = strcmp(argv[i + 1], "0") != 0;
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[i + 1], NULL, 10);
    }
    if (!exe || !dir || nclients == 0 || nclients > MAX_CLIENTS) {
        fprintf(stderr, "usage: %s --exe LCOWSNAP --dir DIR --kills N [--clients C] [--seed S]\n",
                argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("crash campaign: %u kills, %u clients, seed %" PRIu64 "\n", kills, nclients, seed);
    uint64_t t0 = tnow_ns();
    tfresh_dir(dir);
    tsvc svc;
    memset(&svc, 0, sizeof svc);
    snprintf(svc.exe, sizeof svc.exe, "%s", exe);
    snprintf(svc.root, sizeof svc.root, "%s/root", dir);
    snprintf(svc.address, sizeof svc.address, "%s/s.sock", dir);
    snprintf(svc.log, sizeof svc.log, "%s/service.log", dir);
    g_address = svc.address;

    static client_state cs[MAX_CLIENTS];
    for (unsigned i = 0; i < nclients; i++) {
        cs[i].index = (int)i;
        snprintf(cs[i].ns, sizeof cs[i].ns, "t%u", i);
        cs[i].rng = seed * 7919 + i + 1;
    }
    uint64_t rng = seed;
    char blobdir[1100];
    snprintf(blobdir, sizeof blobdir, "%s/blobs", dir);
    tfresh_dir(blobdir);
    for (unsigned b = 0; b < NBLOBS; b++) {
        snprintf(g_blob_path[b], sizeof g_blob_path[b], "%s/layer%u.tar", blobdir, b);
        if (lb_write_random_tar(g_blob_path[b], (size_t)(1 + b % 8) << 20, &rng,
                                g_blob_digest[b]) != 0) {
            fprintf(stderr, "cannot write %s\n", g_blob_path[b]);
            return 2;
        }
    }
    /* A small layer cache: evictions happen under the kills too. */
    static const char *const svc_flags[] = {"--layer-cache-max-bytes", "8M", NULL};
    stats st = {0};
    checked ck = {0};
    char locdirs[8][1024];
    unsigned nloc = 0;
    int rc = 0;

    for (unsigned cycle = 0; cycle < kills && !atomic_load(&g_failed); cycle++) {
        /* A fresh template directory now and then: the next Prepare that uses
         * it formats a disk (not a copy), a longer window for the kill. */
        if (cycle % 4 == 0) {
            snprintf(g_locdir, sizeof g_locdir, "%s/loc-%u", dir, cycle);
            tfresh_dir(g_locdir);
            if (nloc < 8)
                snprintf(locdirs[nloc++], sizeof locdirs[0], "%s", g_locdir);
        }
        if (tsvc_start(&svc, NULL, svc_flags) != 0) {
            failf("cycle %u: service did not start (status %d); see %s", cycle, svc.status,
                  svc.log);
            break;
        }
        st.restarts++;
        atomic_store(&g_killed, false);
        atomic_store(&g_stop, false);
        pthread_t th[MAX_CLIENTS];
        for (unsigned i = 0; i < nclients; i++)
            pthread_create(&th[i], NULL, client_main, &cs[i]);

        /* Choose the instant. */
        unsigned mode = cycle % 4;
        uint64_t start = tnow_ns();
        if (mode == 0) {
            tsleep_ms(5 + trand_below(&rng, 500));
        } else if (mode == 3) {
            /* Inside an Apply: its conversion, publication, link or labels
             * (a known blob's Apply is only a link: a short window). */
            tsleep_ms(50 + trand_below(&rng, 200));
            /* Every other time, a conversion: its file in <root>/layers/tmp. */
            bool conversion = trand_below(&rng, 2) == 0, seen = false;
            char tmpdir[1100];
            snprintf(tmpdir, sizeof tmpdir, "%s/layers/tmp", svc.root);
            while (!seen && tnow_ns() - start < 5000000000ull) {
                for (unsigned i = 0; i < nclients && !seen; i++)
                    seen = atomic_load(&cs[i].inflight) == OP_APPLY;
                if (seen && conversion) {
                    DIR *d = opendir(tmpdir);
                    bool any = false;
                    for (struct dirent *e; d && !any && (e = readdir(d));)
                        any = e->d_name[0] != '.' || strstr(e->d_name, ".tmp-apply-");
                    if (d)
                        closedir(d);
                    seen = any;
                }
                if (!seen)
                    sched_yield();
            }
            st.kill_conversion += seen && conversion;
            uint32_t us = trand_below(&rng, 20000);
            struct timespec ts = {0, (long)us * 1000};
            nanosleep(&ts, NULL);
        } else {
            tsleep_ms(50 + trand_below(&rng, 200)); /* let the workload build up */
            int want = mode == 1 ? OP_PREPARE_SCRATCH : OP_REMOVE;
            bool seen = false;
            while (!seen && tnow_ns() - start < 3000000000ull) {
                for (unsigned i = 0; i < nclients && !seen; i++)
                    seen = atomic_load(&cs[i].inflight) == want;
                if (!seen)
                    sched_yield();
            }
            /* Somewhere inside the call: up to 3 ms for a scratch, 300 us
             * for a remove. */
            uint32_t us = trand_below(&rng, mode == 1 ? 3000 : 300);
            struct timespec ts = {0, (long)us * 1000};
            nanosleep(&ts, NULL);
        }
        int at_kill[MAX_CLIENTS];
        atomic_store(&g_killed, true);
        for (unsigned i = 0; i < nclients; i++)
            at_kill[i] = atomic_load(&cs[i].inflight);
        kill(svc.pid, SIGKILL);
        tsvc_stop(&svc, SIGKILL, 5000);
        atomic_store(&g_stop, true);
        for (unsigned i = 0; i < nclients; i++)
            pthread_join(th[i], NULL);
        st.kills++;
        bool any = false, scratch = false, remove = false, commit = false, apply = false;
        for (unsigned i = 0; i < nclients; i++) {
            any |= at_kill[i] != OP_NONE;
            scratch |= at_kill[i] == OP_PREPARE_SCRATCH;
            remove |= at_kill[i] == OP_REMOVE;
            commit |= at_kill[i] == OP_COMMIT;
            apply |= at_kill[i] == OP_APPLY;
            st.ops += cs[i].ops;
            cs[i].ops = 0;
            if (cs[i].failure[0])
                failf("cycle %u, client %s: %s", cycle, cs[i].ns, cs[i].failure);
        }
        st.kill_scratch += scratch;
        st.kill_remove += remove;
        st.kill_commit += commit;
        st.kill_apply += apply;
        st.kill_idle += !any;
        st.kill_other += any && !scratch && !remove && !commit && !apply;
        if (atomic_load(&g_failed))
            break;

        if (cycle % 2 == 1) {
            char msg[2048];
            if (check_after_kill(svc.root, msg, sizeof msg) != 0) {
                failf("cycle %u: %s", cycle, msg);
                break;
            }
            st.checked_after_kill++;
        }

        /* Restart and check through the service. */
        if (tsvc_start(&svc, NULL, svc_flags) != 0) {
            failf("cycle %u: service did not restart after the kill (status %d); see %s", cycle,
                  svc.status, svc.log);
            break;
        }
        st.restarts++;
        lcow_client *cl = NULL;
        lcow_error err;
        if (lcow_client_connect(svc.address, 5000, &cl, &err) != LCOW_OK) {
            failf("connect after restart: %s", err.message);
        } else {
            if (verify(cs, (int)nclients, cl, &st) == 0 && lcow_client_cleanup(cl, &err) != LCOW_OK)
                failf("Cleanup after restart: %s %s", lcow_code_name(err.code), err.message);
            if (selftest && !atomic_load(&g_failed))
                self_test(cs, (int)nclients, cl);
            lcow_client_close(cl);
        }
        int status = tsvc_stop(&svc, SIGTERM, 20000);
        if (!atomic_load(&g_failed) && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
            failf("cycle %u: service did not stop cleanly on SIGTERM (status %d)", cycle, status);
        if (atomic_load(&g_failed))
            break;

        /* The stopped service's root: invariants, orphans, disks. */
        char **disks = NULL;
        size_t ndisks = 0;
        char msg[2048];
        if (tstore_check(svc.root, &disks, &ndisks, msg, sizeof msg) != 0) {
            failf("cycle %u: store check: %s", cycle, msg);
            tstrv_free(disks, ndisks);
            break;
        }
        /* Templates in the location directories too. */
        for (unsigned l = 0; l < nloc; l++) {
            for (unsigned gb = 1; gb <= 4; gb++) {
                char p[1200];
                struct stat sb;
                snprintf(p, sizeof p, "%s/scratch_%u.vhdx", locdirs[l], gb);
                if (stat(p, &sb) == 0) {
                    disks = realloc(disks, (ndisks + 1) * sizeof *disks);
                    disks[ndisks++] = strdup(p);
                }
            }
        }
        check_disks(disks, ndisks, &ck, &st);
        tstrv_free(disks, ndisks);
        if (kills >= 50 && (cycle + 1) % 50 == 0)
            printf("  %u kills, %u acknowledged commits checked, %u disks checked, %.0f s\n",
                   cycle + 1, st.acked_commits_checked, st.disks_checked,
                   (double)(tnow_ns() - t0) / 1e9);
        fflush(stdout);
    }
    if (svc.pid > 0)
        tsvc_stop(&svc, SIGKILL, 1000);
    double secs = (double)(tnow_ns() - t0) / 1e9;
    if (atomic_load(&g_failed)) {
        fprintf(stderr, "crash campaign FAILED after %u kills: %s\n(service log: %s)\n", st.kills,
                g_failure, svc.log);
        rc = 1;
    }
    tsummary("torture crash%s: %s: kills survived %u/%u, acknowledged commits checked %u "
             "(acknowledged states %u), unacknowledged calls resolved applied %u / not applied "
             "%u, kills during scratch creation %u, during Remove %u, during Commit %u, during "
             "Apply %u (%u aimed at a conversion), other call %u, idle %u; %u applied layers "
             "checked; %u stores checked "
             "right after the kill; %u client calls; %u disks passed qemu-img check; %u service "
             "starts; %.1f s",
             selftest ? " (self-test run)" : "", rc ? "FAILED" : "ok", rc ? st.kills - 1 : st.kills,
             kills, st.acked_commits_checked, st.acked_checked, st.uncertain_applied,
             st.uncertain_not_applied, st.kill_scratch, st.kill_remove, st.kill_commit,
             st.kill_apply, st.kill_conversion, st.kill_other, st.kill_idle, st.applied_checked,
             st.checked_after_kill, st.ops, st.disks_checked, st.restarts, secs);
    tstrv_free(ck.paths, ck.n);
    if (selftest) {
        tsummary("torture crash self-test: %s: %u of %u wrong models detected",
                 g_tampers_caught == g_tampers && g_tampers > 0 ? "ok" : "FAILED", g_tampers_caught,
                 g_tampers);
        if (g_tampers_caught != g_tampers || g_tampers == 0)
            rc = 1;
    }
    return rc;
}

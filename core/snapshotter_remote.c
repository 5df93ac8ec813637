/* containerd's remote-snapshot protocol over the layer store (issue 16).
 *
 * containerd's unpacker prepares each layer's extraction snapshot with the
 * label containerd.io/snapshot.ref=<chainID> (and, from containerd 2.x,
 * containerd.io/snapshot/diff-id=<diffID>); its metadata layer
 * (core/metadata/snapshot.go) treats an AlreadyExists answer to such a
 * Prepare as "the snapshotter has this layer": it walks the backend with
 * labels."containerd.io/snapshot.ref"==<chainID>,parent==<backend parent>,
 * adopts the committed snapshot it finds, and skips fetching and applying
 * the layer.
 *
 * So an extraction Prepare (an extract-* key) carrying the ref becomes:
 *
 *   0. if a committed snapshot with that ref on that parent is here (a
 *      second pull, another namespace: found with containerd's own filter),
 *      the answer AlreadyExists at once;
 *
 * and otherwise, for a layer the layer store holds:
 *
 *   1. the layer's diffID: the diff-id label, checked against the ref when
 *      the parent's chain is known; or, from containerd 1.6 and 1.7 (the
 *      ref alone), the stored diffID d for which
 *      chainID(parent) + " " + d hashes to the ref (chainID(1) = diffID(1));
 *      the parent's chainID comes from its ancestors' diff-id labels, else
 *      its own ref label;
 *   2. a committed snapshot <ref> on that parent, recorded whole: its new
 *      directory made, the stored layer.vhd hard-linked into it and synced,
 *      then one synced metadata batch with the Prepare's labels plus the
 *      diff-id (and verity root hash) labels (Prepare's checks and crash
 *      safety: a crash before the batch leaves a directory Cleanup
 *      removes); the extraction key itself is never created, as containerd
 *      does not create it either;
 *   3. the answer AlreadyExists.
 *
 * Any other case (no ref, not an extract key, an unknown layer, a ref that does
 * not match, a name taken by something else) is the ordinary Prepare.
 *
 * Not matched on purpose: a parentless Prepare that carries
 * containerd.io/snapshot/parent-chain-id is a layer above the first in
 * containerd's parallel (rebase) unpack, which gives the parent only at
 * Commit; a layer committed now would have no parent and containerd would
 * adopt it as the base of the image. Such a Prepare is an ordinary one (the
 * Apply then links the stored layer without converting it). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/disk/sha256.h"
#include "core/snapshotter_internal.h"

#define LABEL_REF "containerd.io/snapshot.ref"
#define LABEL_PARENT_CHAIN "containerd.io/snapshot/parent-chain-id"
#define EXTRACT_PREFIX "extract-"
/* Ancestors followed to compute a parent's chainID (LCOW allows 127
 * parent layers). */
#define MAX_CHAIN 256

typedef char digest_str[LCOW_SHA256_DIGEST_STRING_SIZE];

static bool valid_digest(const char *s)
{
    uint8_t d[LCOW_SHA256_SIZE];
    return s && lcow_sha256_parse_digest(s, d, NULL) == LCOW_OK;
}

/* chainID(n) = sha256(chainID(n-1) + " " + diffID(n)), "sha256:<hex>". */
static void chain_next(const char *parent_chain, const char *diff_id, digest_str out)
{
    lcow_sha256_ctx c;
    lcow_sha256_init(&c);
    lcow_sha256_update(&c, parent_chain, strlen(parent_chain));
    lcow_sha256_update(&c, " ", 1);
    lcow_sha256_update(&c, diff_id, strlen(diff_id));
    uint8_t d[LCOW_SHA256_SIZE];
    lcow_sha256_final(&c, d);
    lcow_sha256_digest_string(d, out);
}

/* The chainID of the committed snapshot `parent`: from its and its
 * ancestors' diff-id labels when every one has one, else its ref label.
 * False when neither is known. */
static bool chain_of(lcow_snapshotter *s, const char *parent, digest_str out)
{
    char *diffs[MAX_CHAIN];
    size_t n = 0;
    bool complete = true;
    char ref[LCOW_SHA256_DIGEST_STRING_SIZE] = "";
    char *key = strdup(parent);
    while (key && *key && n < MAX_CHAIN) {
        lcow_meta_record rec;
        if (lcow_metastore_get(s->ms, NULL, key, &rec, NULL) != LCOW_OK) {
            complete = false;
            break;
        }
        const char *d = lcow_labels_get(&rec.labels, LCOW_LAYER_STORE_LABEL_DIFF_ID);
        if (n == 0) {
            const char *r = lcow_labels_get(&rec.labels, LABEL_REF);
            if (valid_digest(r))
                snprintf(ref, sizeof ref, "%s", r);
        }
        if (!valid_digest(d)) {
            complete = false;
            lcow_meta_record_free(&rec);
            break;
        }
        diffs[n] = strdup(d);
        if (!diffs[n]) {
            complete = false;
            lcow_meta_record_free(&rec);
            break;
        }
        n++;
        free(key);
        key = rec.parent && *rec.parent ? strdup(rec.parent) : NULL;
        lcow_meta_record_free(&rec);
    }
    if (key) { /* stopped early: too deep, a record or a label missing */
        complete = false;
        free(key);
    }
    if (complete && n > 0) {
        snprintf(out, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", diffs[n - 1]);
        for (size_t i = n - 1; i-- > 0;) {
            digest_str next;
            chain_next(out, diffs[i], next);
            memcpy(out, next, sizeof next);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(diffs[i]);
    if (complete && n > 0)
        return true;
    if (*ref) {
        snprintf(out, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", ref);
        return true;
    }
    return false;
}

typedef struct chain_search {
    const char *parent_chain;
    const char *ref;
    digest_str found;
    bool hit;
} chain_search;

static int try_stored(void *ctx, const lcow_layer_store_info *info, const char *const *blob_digests,
                      size_t blob_count)
{
    (void)blob_digests, (void)blob_count;
    chain_search *cs = ctx;
    digest_str c;
    chain_next(cs->parent_chain, info->diff_id, c);
    if (strcmp(c, cs->ref) != 0)
        return 0;
    snprintf(cs->found, sizeof cs->found, "%s", info->diff_id);
    cs->hit = true;
    return 1;
}

/* The diffID of the layer the Prepare names (see the top of the file);
 * false when it cannot be told or does not match the ref. */
static bool layer_of(lcow_snapshotter *s, const char *ref, const char *parent,
                     const lcow_labels *labels, digest_str diff)
{
    const char *given = lcow_labels_get(labels, LCOW_LAYER_STORE_LABEL_DIFF_ID);
    if (given && !valid_digest(given))
        return false;
    digest_str parent_chain;
    bool have_chain = parent && *parent ? chain_of(s, parent, parent_chain) : false;
    if (given) {
        digest_str c;
        if (!parent || !*parent)
            snprintf(c, sizeof c, "%s", given);
        else if (have_chain)
            chain_next(parent_chain, given, c);
        else
            snprintf(c, sizeof c, "%s", ref); /* the parent's chain is unknown: trust it */
        if (strcmp(c, ref) != 0) {
            LCOW_LOGW("prepare: %s=%s does not follow from %s=%s on parent %s; not reusing a "
                      "stored layer",
                      LABEL_REF, ref, LCOW_LAYER_STORE_LABEL_DIFF_ID, given,
                      parent && *parent ? parent : "(none)");
            return false;
        }
        snprintf(diff, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", given);
        return true;
    }
    if (!parent || !*parent) {
        snprintf(diff, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", ref);
        return true;
    }
    if (!have_chain)
        return false;
    chain_search cs = {.parent_chain = parent_chain, .ref = ref};
    lcow_error e;
    if (lcow_layer_store_list(s->layers, try_stored, &cs, &e) != LCOW_OK) {
        LCOW_LOGW("prepare: listing the layer store: %s", e.message);
        return false;
    }
    if (cs.hit)
        snprintf(diff, LCOW_SHA256_DIGEST_STRING_SIZE, "%s", cs.found);
    return cs.hit;
}

/* Whether `name` is a committed snapshot on `parent` carrying ref. */
static bool is_the_target(lcow_snapshotter *s, const char *name, const char *parent,
                          const char *ref, bool *exists)
{
    lcow_meta_record rec;
    *exists = false;
    if (lcow_metastore_get(s->ms, NULL, name, &rec, NULL) != LCOW_OK)
        return false;
    *exists = true;
    const char *r = lcow_labels_get(&rec.labels, LABEL_REF);
    bool same = rec.kind == LCOW_KIND_COMMITTED && r && strcmp(r, ref) == 0 &&
                strcmp(rec.parent ? rec.parent : "", parent ? parent : "") == 0;
    lcow_meta_record_free(&rec);
    return same;
}

static lcow_code already_there(const char *ref, const char *diff, lcow_error *err)
{
    return lcow_error_set(err, LCOW_ALREADY_EXISTS,
                          "target snapshot %s: layer %s is already here (committed from the "
                          "layer store; containerd finds it by its ref)",
                          ref, diff);
}

static int first_committed(void *ctx, const lcow_info *info)
{
    if (info->kind != LCOW_KIND_COMMITTED)
        return 0;
    char **name = ctx;
    *name = strdup(info->name);
    return 1;
}

/* The committed snapshot containerd's metadata layer will adopt: the first
 * one its own filter finds (NULL if none; malloc'd). */
static char *find_committed(lcow_snapshotter *s, const char *ref, const char *parent)
{
    size_t len = strlen(ref) + strlen(parent ? parent : "") + 128;
    char *filter = malloc(len);
    if (!filter)
        return NULL;
    /* containerd's: labels.%q==%s,parent==%q (the parent has no quotes or
     * backslashes: it is a key). */
    snprintf(filter, len, "labels.\"%s\"==%s,parent==\"%s\"", LABEL_REF, ref, parent ? parent : "");
    const char *filters[] = {filter};
    lcow_walk_options wo = {.filters = filters, .filter_count = 1};
    char *name = NULL;
    lcow_error e;
    if (lcow_snapshotter_walk(s, &wo, first_committed, &name, NULL, &e) != LCOW_OK)
        LCOW_LOGW("prepare: looking for %s: %s", ref, e.message);
    free(filter);
    return name;
}

typedef struct link_ctx {
    lcow_snapshotter *s;
    const char *diff;
    bool verity;
    bool link_failed;
} link_ctx;

/* Fills the new snapshot's directory: the stored layer.vhd, hard-linked
 * (the link and the directory are synced by the layer store). */
static lcow_code link_layer(void *ctx, const char *dir, lcow_error *err)
{
    link_ctx *lc = ctx;
    lcow_code rc = lcow_layer_store_link(lc->s->layers, lc->diff, lc->verity, dir, NULL, err);
    lc->link_failed = rc != LCOW_OK;
    return rc;
}

lcow_code lcow_snapshotter_remote_prepare(lcow_snapshotter *s, const char *key, const char *parent,
                                          const lcow_labels *labels, bool *handled, lcow_error *err)
{
    *handled = false;
    const char *ref = labels ? lcow_labels_get(labels, LABEL_REF) : NULL;
    if (!ref || !valid_digest(ref))
        return LCOW_OK;
    const char *client;
    size_t ns_len;
    lcow_key_split(key, &client, &ns_len);
    if (strncmp(client, EXTRACT_PREFIX, strlen(EXTRACT_PREFIX)) != 0)
        return LCOW_OK;
    if (parent && (strchr(parent, '"') || strchr(parent, '\\')))
        return LCOW_OK; /* not a key containerd sends; keeps the filter simple */

    /* 0. The layer is committed with this ref on this parent already (a
     * second pull, another namespace): containerd adopts that one. */
    char *existing = find_committed(s, ref, parent);
    if (existing) {
        LCOW_LOGI("prepare %s: %s is there already as %s", key, ref, existing);
        free(existing);
        *handled = true;
        return lcow_error_set(err, LCOW_ALREADY_EXISTS,
                              "target snapshot %s: already committed here (containerd finds it "
                              "by its ref)",
                              ref);
    }
    if (!s->layers)
        return LCOW_OK;
    if ((!parent || !*parent) && lcow_labels_get(labels, LABEL_PARENT_CHAIN))
        return LCOW_OK; /* parallel unpack: the parent comes at Commit */

    /* 1. The layer, and whether the store has it. */
    digest_str diff;
    if (!layer_of(s, ref, parent, labels, diff))
        return LCOW_OK;
    bool exists;
    if (is_the_target(s, ref, parent, ref, &exists)) {
        *handled = true;
        return already_there(ref, diff, err);
    }
    if (exists)
        return LCOW_OK; /* the name is something else's: an ordinary Prepare */
    bool verity = false, found = false;
    lcow_layer_store_info info;
    lcow_error e;
    if (lcow_layer_store_find(s->layers, diff, false, &found, &info, &e) != LCOW_OK)
        return LCOW_OK;
    if (!found) {
        verity = true;
        if (lcow_layer_store_find(s->layers, diff, true, &found, &info, &e) != LCOW_OK || !found)
            return LCOW_OK;
    }

    /* 2. The layer committed as <ref> on parent: its directory made, the
     * stored layer.vhd linked into it, one synced batch. From here the
     * answer is this path's. */
    *handled = true;
    lcow_labels committed = {0};
    if (!lcow_labels_copy(&committed, labels) ||
        !lcow_labels_set(&committed, LCOW_LAYER_STORE_LABEL_DIFF_ID, diff) ||
        (verity &&
         !lcow_labels_set(&committed, LCOW_LAYER_STORE_LABEL_VERITY_ROOT, info.verity_root_hash))) {
        lcow_labels_free(&committed);
        return lcow_snapshotter_oom(err);
    }
    link_ctx lc = {.s = s, .diff = diff, .verity = verity};
    lcow_code rc =
        lcow_snapshotter_insert_layer_in_call(s, ref, parent, &committed, link_layer, &lc, err);
    lcow_labels_free(&committed);
    if (rc != LCOW_OK) {
        /* Another Prepare of the same ref recorded it first: the same answer. */
        if (rc == LCOW_ALREADY_EXISTS && is_the_target(s, ref, parent, ref, &exists))
            return already_there(ref, diff, err);
        /* The layer was pruned since the find: an ordinary Prepare. */
        if (lc.link_failed && rc == LCOW_NOT_FOUND) {
            *handled = false;
            return LCOW_OK;
        }
        return rc;
    }
    LCOW_LOGI("prepare %s: layer %s%s committed as %s (parent %s) from the layer store: no "
              "fetch, no conversion",
              key, diff, verity ? " (verity)" : "", ref, parent && *parent ? parent : "none");
    return already_there(ref, diff, err);
}

/* dm-verity hash tree (see verity.h for the layout and the contract).
 *
 * Level 0 lives in pages of 128 hashes (one hash block each), indexed by
 * data block / 128 and allocated when a block of theirs first arrives,
 * pre-filled with the zero block's hash so that blocks never reported need
 * no bookkeeping. A page that never received a block stays NULL and stands
 * for 128 zero-block hashes. The upper levels are built at finish into one
 * buffer, top level first, which is also their order on disk.
 *
 * Threaded mode: the caller (producer) copies blocks into the slot it owns;
 * a full slot goes to the worker through a small queue, and the worker gives
 * hashed slots back. Only the worker touches level 0 until it is joined. */
#include "core/disk/verity.h"

#include <stdlib.h>
#include <string.h>

#include "core/disk/byteorder.h"
#include "core/disk/sha256.h"
#include "core/os/thread.h"

#define BLOCK LCOW_VERITY_BLOCK_SIZE
#define HASH LCOW_VERITY_HASH_SIZE
#define PER_PAGE LCOW_VERITY_HASHES_PER_BLOCK
#define DEFAULT_QUEUE_BYTES (4u << 20)
#define SLOT_BYTES (1u << 20)
#define WRITE_CHUNK (1u << 20)

typedef struct segment {
    uint64_t block; /* first data block */
    uint32_t count; /* blocks, stored back to back in the slot */
} segment;

typedef struct slot {
    uint8_t *data;
    segment *segs;
    size_t nsegs;
    size_t used; /* blocks */
} slot;

struct lcow_verity_hasher {
    bool threaded;
    bool finished;
    lcow_sha256_ctx salted; /* state after the salt: copied for every block */
    uint8_t zero_hash[HASH];

    /* level 0: touched only by whoever hashes (the worker when threaded) */
    uint8_t **pages;
    uint64_t npages;     /* entries in pages[] */
    uint64_t blocks_end; /* one past the highest block fed */
    lcow_code level0_rc;
    lcow_error level0_err;
    lcow_code callback_rc; /* first failure of a feed through lcow_verity_on_final */
    lcow_error callback_err;

    /* threaded queue, under mu */
    lcow_mutex mu;
    lcow_cond cv_work; /* worker: a slot is full, or closing */
    lcow_cond cv_free; /* producer: a slot is free */
    slot *slots;
    size_t nslots;
    size_t slot_blocks;
    size_t *fifo; /* full slots, in order */
    size_t fifo_head, fifo_count;
    size_t *free_list;
    size_t free_count;
    bool closing;
    bool sync_ready; /* mu and the conds are initialised */
    bool worker_running;
    lcow_thread worker;
    slot *cur; /* the slot the producer is filling (producer-owned) */

    /* after finish */
    uint64_t data_blocks;
    uint64_t level0_blocks;
    uint8_t *upper; /* levels >= 1, top level first */
    uint64_t upper_bytes;
    uint8_t root[HASH];
};

/* sha256(salt || block) with the salt already absorbed in h->salted. */
static void hash_block(const lcow_verity_hasher *h, const uint8_t *block, uint8_t out[HASH])
{
    lcow_sha256_ctx s = h->salted;
    lcow_sha256_update(&s, block, BLOCK);
    lcow_sha256_final(&s, out);
}

uint64_t lcow_verity_tree_bytes(uint64_t data_blocks)
{
    if (data_blocks == 0)
        return 0;
    uint64_t total = 0, n = data_blocks;
    for (;;) {
        uint64_t blocks = (n + PER_PAGE - 1) / PER_PAGE;
        total += blocks * BLOCK;
        if (blocks == 1)
            return total;
        n = blocks;
    }
}

/* ---- superblock ---- */

lcow_code lcow_verity_superblock_make(uint64_t data_blocks, const uint8_t uuid[16],
                                      uint8_t out[LCOW_VERITY_SUPERBLOCK_SIZE], lcow_error *err)
{
    memset(out, 0, LCOW_VERITY_SUPERBLOCK_SIZE);
    memcpy(out, "verity", 6);
    lcow_le_put32(out + 8, 1);  /* version */
    lcow_le_put32(out + 12, 1); /* hash type: normal */
    if (uuid) {
        memcpy(out + 16, uuid, 16);
    } else {
        lcow_code rc = lcow_os_random(out + 16, 16, err);
        if (rc)
            return lcow_error_wrap(err, "verity superblock uuid");
        out[16 + 6] = (uint8_t)((out[16 + 6] & 0x0f) | 0x40); /* version 4 */
        out[16 + 8] = (uint8_t)((out[16 + 8] & 0x3f) | 0x80); /* RFC 4122 variant */
    }
    memcpy(out + 32, "sha256", 6);
    lcow_le_put32(out + 64, BLOCK);
    lcow_le_put32(out + 68, BLOCK);
    lcow_le_put64(out + 72, data_blocks);
    lcow_le_put16(out + 80, LCOW_VERITY_SALT_SIZE);
    /* salt (88..): 32 zero bytes, already zero */
    return LCOW_OK;
}

lcow_code lcow_verity_superblock_parse(const uint8_t in[LCOW_VERITY_SUPERBLOCK_SIZE],
                                       lcow_verity_superblock *out, lcow_error *err)
{
    memset(out, 0, sizeof *out);
    memcpy(out->signature, in, 8);
    out->version = lcow_le_get32(in + 8);
    out->hash_type = lcow_le_get32(in + 12);
    memcpy(out->uuid, in + 16, 16);
    memcpy(out->algorithm, in + 32, 32);
    out->data_block_size = lcow_le_get32(in + 64);
    out->hash_block_size = lcow_le_get32(in + 68);
    out->data_blocks = lcow_le_get64(in + 72);
    out->salt_size = lcow_le_get16(in + 80);
    memcpy(out->salt, in + 88, 256);
    out->padding_zero = true;
    for (size_t i = 82; i < 88; i++)
        out->padding_zero &= in[i] == 0;
    size_t salt_end = 88 + (out->salt_size < 256 ? out->salt_size : 256);
    for (size_t i = salt_end; i < LCOW_VERITY_SUPERBLOCK_SIZE; i++)
        out->padding_zero &= in[i] == 0;
    if (memcmp(out->signature, "verity\0\0", 8) != 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "not a dm-verity superblock (no 'verity' signature)");
    return LCOW_OK;
}

lcow_code lcow_verity_superblock_check(const uint8_t in[LCOW_VERITY_SUPERBLOCK_SIZE],
                                       uint64_t data_blocks, lcow_verity_superblock *out,
                                       lcow_error *err)
{
    lcow_verity_superblock local;
    lcow_verity_superblock *sb = out ? out : &local;
    lcow_code rc = lcow_verity_superblock_parse(in, sb, err);
    if (rc)
        return rc;
    static const uint8_t zero_salt[LCOW_VERITY_SALT_SIZE];
    const char *bad = NULL;
    if (sb->version != 1)
        bad = "version is not 1";
    else if (sb->hash_type != 1)
        bad = "hash type is not 1 (normal)";
    else if (strcmp(sb->algorithm, "sha256") != 0)
        bad = "algorithm is not sha256";
    else if (sb->data_block_size != BLOCK || sb->hash_block_size != BLOCK)
        bad = "block sizes are not 4096";
    else if (sb->data_blocks != data_blocks)
        bad = "data block count differs";
    else if (sb->salt_size != LCOW_VERITY_SALT_SIZE ||
             memcmp(sb->salt, zero_salt, sizeof zero_salt) != 0)
        bad = "salt is not 32 zero bytes";
    else if (!sb->padding_zero)
        bad = "padding is not zero";
    if (bad)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "dm-verity superblock: %s", bad);
    return LCOW_OK;
}

/* ---- level 0 ---- */

static lcow_code grow_pages(lcow_verity_hasher *h, uint64_t need)
{
    uint64_t n = h->npages ? h->npages : 64;
    while (n < need)
        n *= 2;
    uint8_t **p = realloc(h->pages, (size_t)n * sizeof *p);
    if (!p)
        return lcow_error_set(&h->level0_err, LCOW_RESOURCE_EXHAUSTED,
                              "dm-verity: out of memory for %llu level-0 pages",
                              (unsigned long long)n);
    memset(p + h->npages, 0, (size_t)(n - h->npages) * sizeof *p);
    h->pages = p;
    h->npages = n;
    return LCOW_OK;
}

static uint8_t *page_for(lcow_verity_hasher *h, uint64_t block)
{
    uint64_t index = block / PER_PAGE;
    if (index >= h->npages && grow_pages(h, index + 1))
        return NULL;
    if (!h->pages[index]) {
        uint8_t *page = malloc(BLOCK);
        if (!page) {
            lcow_error_set(&h->level0_err, LCOW_RESOURCE_EXHAUSTED,
                           "dm-verity: out of memory for a level-0 page");
            return NULL;
        }
        for (unsigned i = 0; i < PER_PAGE; i++)
            memcpy(page + i * HASH, h->zero_hash, HASH);
        h->pages[index] = page;
    }
    return h->pages[index];
}

/* Hashes count blocks starting at data block first into level 0. After a
 * failure the blocks are dropped; the error is kept for finish. */
static void hash_run(lcow_verity_hasher *h, uint64_t first, const uint8_t *data, uint64_t count)
{
    if (h->level0_rc)
        return;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t block = first + i;
        uint8_t *page = page_for(h, block);
        if (!page) {
            h->level0_rc = h->level0_err.code;
            return;
        }
        hash_block(h, data + i * BLOCK, page + (block % PER_PAGE) * HASH);
    }
    if (first + count > h->blocks_end)
        h->blocks_end = first + count;
}

/* ---- worker and queue ---- */

static void *worker_main(void *arg)
{
    lcow_verity_hasher *h = arg;
    lcow_mutex_lock(&h->mu);
    for (;;) {
        while (h->fifo_count == 0 && !h->closing)
            lcow_cond_wait(&h->cv_work, &h->mu);
        if (h->fifo_count == 0)
            break; /* closing and drained */
        size_t index = h->fifo[h->fifo_head];
        h->fifo_head = (h->fifo_head + 1) % h->nslots;
        h->fifo_count--;
        lcow_mutex_unlock(&h->mu);

        slot *s = &h->slots[index];
        const uint8_t *p = s->data;
        for (size_t i = 0; i < s->nsegs; i++) {
            hash_run(h, s->segs[i].block, p, s->segs[i].count);
            p += (size_t)s->segs[i].count * BLOCK;
        }
        s->nsegs = 0;
        s->used = 0;

        lcow_mutex_lock(&h->mu);
        h->free_list[h->free_count++] = index;
        lcow_cond_signal(&h->cv_free);
    }
    lcow_mutex_unlock(&h->mu);
    return NULL;
}

static void submit_current(lcow_verity_hasher *h)
{
    if (!h->cur)
        return;
    size_t index = (size_t)(h->cur - h->slots);
    lcow_mutex_lock(&h->mu);
    h->fifo[(h->fifo_head + h->fifo_count) % h->nslots] = index;
    h->fifo_count++;
    lcow_cond_signal(&h->cv_work);
    lcow_mutex_unlock(&h->mu);
    h->cur = NULL;
}

static void take_free_slot(lcow_verity_hasher *h)
{
    lcow_mutex_lock(&h->mu);
    while (h->free_count == 0)
        lcow_cond_wait(&h->cv_free, &h->mu);
    h->cur = &h->slots[h->free_list[--h->free_count]];
    lcow_mutex_unlock(&h->mu);
}

/* Stops the worker after it has hashed everything queued. */
static void stop_worker(lcow_verity_hasher *h)
{
    if (!h->worker_running)
        return;
    submit_current(h);
    lcow_mutex_lock(&h->mu);
    h->closing = true;
    lcow_cond_broadcast(&h->cv_work);
    lcow_mutex_unlock(&h->mu);
    lcow_thread_join(h->worker, NULL);
    h->worker_running = false;
}

static void free_queue(lcow_verity_hasher *h)
{
    if (h->slots) {
        for (size_t i = 0; i < h->nslots; i++) {
            free(h->slots[i].data);
            free(h->slots[i].segs);
        }
    }
    free(h->slots);
    free(h->fifo);
    free(h->free_list);
    h->slots = NULL;
    h->fifo = h->free_list = NULL;
}

lcow_code lcow_verity_hasher_create(const lcow_verity_options *opts, lcow_verity_hasher **out,
                                    lcow_error *err)
{
    *out = NULL;
    lcow_verity_options o = opts ? *opts : (lcow_verity_options){.threaded = true};
    lcow_verity_hasher *h = calloc(1, sizeof *h);
    if (!h)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "dm-verity: out of memory");
    h->threaded = o.threaded;
    static const uint8_t salt[LCOW_VERITY_SALT_SIZE];
    lcow_sha256_init(&h->salted);
    lcow_sha256_update(&h->salted, salt, sizeof salt);
    uint8_t *zero = calloc(1, BLOCK);
    if (!zero) {
        free(h);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "dm-verity: out of memory");
    }
    hash_block(h, zero, h->zero_hash);
    free(zero);
    if (!h->threaded) {
        *out = h;
        return LCOW_OK;
    }

    size_t queue = o.queue_bytes ? o.queue_bytes : DEFAULT_QUEUE_BYTES;
    size_t slot_bytes = queue / 2 < SLOT_BYTES ? queue / 2 : SLOT_BYTES;
    slot_bytes -= slot_bytes % BLOCK;
    if (slot_bytes < BLOCK)
        slot_bytes = BLOCK;
    h->slot_blocks = slot_bytes / BLOCK;
    h->nslots = queue / slot_bytes < 2 ? 2 : queue / slot_bytes;
    h->slots = calloc(h->nslots, sizeof *h->slots);
    h->fifo = calloc(h->nslots, sizeof *h->fifo);
    h->free_list = calloc(h->nslots, sizeof *h->free_list);
    bool ok = h->slots && h->fifo && h->free_list;
    for (size_t i = 0; ok && i < h->nslots; i++) {
        h->slots[i].data = malloc(slot_bytes);
        h->slots[i].segs = malloc(h->slot_blocks * sizeof(segment));
        ok = h->slots[i].data && h->slots[i].segs;
        h->free_list[h->free_count++] = i;
    }
    if (!ok) {
        free_queue(h);
        free(h);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "dm-verity: out of memory for a %zu-byte queue", queue);
    }
    lcow_mutex_init(&h->mu);
    lcow_cond_init(&h->cv_work);
    lcow_cond_init(&h->cv_free);
    h->sync_ready = true;
    if (!lcow_thread_create(&h->worker, worker_main, h)) {
        lcow_verity_hasher_free(h);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "dm-verity: cannot start a thread");
    }
    h->worker_running = true;
    *out = h;
    return LCOW_OK;
}

lcow_code lcow_verity_hasher_feed(lcow_verity_hasher *h, uint64_t offset, const void *data,
                                  size_t len, lcow_error *err)
{
    if (h->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "dm-verity: feed after finish");
    if (offset % BLOCK || len % BLOCK)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "dm-verity: range at %llu of %zu bytes is not 4096-aligned",
                              (unsigned long long)offset, len);
    if (offset > LCOW_VERITY_MAX_DATA_BYTES || len > LCOW_VERITY_MAX_DATA_BYTES - offset)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "dm-verity: range at %llu of %zu bytes is beyond %llu bytes",
                              (unsigned long long)offset, len,
                              (unsigned long long)LCOW_VERITY_MAX_DATA_BYTES);
    const uint8_t *p = data;
    uint64_t block = offset / BLOCK;
    uint64_t count = len / BLOCK;
    if (!h->threaded) {
        hash_run(h, block, p, count);
        if (h->level0_rc) {
            if (err)
                *err = h->level0_err;
            return h->level0_rc;
        }
        return LCOW_OK;
    }
    while (count) {
        if (!h->cur)
            take_free_slot(h);
        slot *s = h->cur;
        uint64_t room = h->slot_blocks - s->used;
        uint64_t n = count < room ? count : room;
        memcpy(s->data + s->used * BLOCK, p, (size_t)n * BLOCK);
        segment *last = s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
        if (last && last->block + last->count == block)
            last->count += (uint32_t)n;
        else
            s->segs[s->nsegs++] = (segment){.block = block, .count = (uint32_t)n};
        s->used += (size_t)n;
        if (s->used == h->slot_blocks)
            submit_current(h);
        block += n;
        count -= n;
        p += n * BLOCK;
    }
    return LCOW_OK;
}

void lcow_verity_on_final(void *ctx, uint64_t offset, const void *data, size_t len)
{
    lcow_verity_hasher *h = ctx;
    if (h->callback_rc == LCOW_OK)
        h->callback_rc = lcow_verity_hasher_feed(h, offset, data, len, &h->callback_err);
}

/* Level-0 page i as 4096 bytes: NULL pages are all zero-block hashes. */
static const uint8_t *level0_page(const lcow_verity_hasher *h, uint64_t i, const uint8_t *zero_page)
{
    return i < h->npages && h->pages[i] ? h->pages[i] : zero_page;
}

lcow_code lcow_verity_hasher_finish(lcow_verity_hasher *h, uint64_t data_bytes,
                                    uint8_t root[LCOW_VERITY_HASH_SIZE], lcow_error *err)
{
    if (h->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "dm-verity: finished twice");
    stop_worker(h);
    free_queue(h);
    h->finished = true;
    if (h->callback_rc) {
        if (err)
            *err = h->callback_err;
        return h->callback_rc;
    }
    if (h->level0_rc) {
        if (err)
            *err = h->level0_err;
        return h->level0_rc;
    }
    if (data_bytes == 0 || data_bytes % BLOCK || data_bytes > LCOW_VERITY_MAX_DATA_BYTES)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "dm-verity: data size %llu is not a non-zero multiple of 4096 "
                              "up to %llu",
                              (unsigned long long)data_bytes,
                              (unsigned long long)LCOW_VERITY_MAX_DATA_BYTES);
    uint64_t blocks = data_bytes / BLOCK;
    if (h->blocks_end > blocks)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "dm-verity: block %llu was fed, but the data has %llu blocks",
                              (unsigned long long)(h->blocks_end - 1), (unsigned long long)blocks);
    h->data_blocks = blocks;
    h->level0_blocks = (blocks + PER_PAGE - 1) / PER_PAGE;

    /* The last level-0 page is padded with zeros, not zero-block hashes. */
    uint64_t last = h->level0_blocks - 1;
    unsigned tail = (unsigned)(blocks % PER_PAGE);
    if (tail) {
        uint8_t *page = page_for(h, last * PER_PAGE);
        if (!page) {
            if (err)
                *err = h->level0_err;
            return h->level0_err.code;
        }
        memset(page + tail * HASH, 0, (PER_PAGE - tail) * HASH);
    }

    h->upper_bytes = lcow_verity_tree_bytes(blocks) - h->level0_blocks * BLOCK;
    uint8_t *zero_page = malloc(BLOCK);
    h->upper = h->upper_bytes ? calloc(1, (size_t)h->upper_bytes) : NULL;
    if (!zero_page || (h->upper_bytes && !h->upper)) {
        free(zero_page);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED,
                              "dm-verity: out of memory for the upper levels");
    }
    for (unsigned i = 0; i < PER_PAGE; i++)
        memcpy(zero_page + i * HASH, h->zero_hash, HASH);
    uint8_t zero_page_hash[HASH];
    hash_block(h, zero_page, zero_page_hash);

    /* Level 1 sits at the end of `upper`, the top level at its start. */
    uint64_t below_blocks = h->level0_blocks;
    uint64_t end = h->upper_bytes;
    const uint8_t *below = NULL; /* NULL: level 0 pages */
    while (below_blocks > 1) {
        uint64_t level_blocks = (below_blocks + PER_PAGE - 1) / PER_PAGE;
        uint8_t *level = h->upper + end - level_blocks * BLOCK;
        for (uint64_t i = 0; i < below_blocks; i++) {
            if (!below) {
                const uint8_t *page = level0_page(h, i, zero_page);
                if (page == zero_page)
                    memcpy(level + i * HASH, zero_page_hash, HASH);
                else
                    hash_block(h, page, level + i * HASH);
            } else {
                hash_block(h, below + i * BLOCK, level + i * HASH);
            }
        }
        below = level;
        below_blocks = level_blocks;
        end -= level_blocks * BLOCK;
    }
    const uint8_t *top = below ? below : level0_page(h, 0, zero_page);
    hash_block(h, top, h->root);
    free(zero_page);
    if (root)
        memcpy(root, h->root, HASH);
    return LCOW_OK;
}

uint64_t lcow_verity_hasher_tree_bytes(const lcow_verity_hasher *h)
{
    return h->finished ? lcow_verity_tree_bytes(h->data_blocks) : 0;
}

uint64_t lcow_verity_hasher_data_blocks(const lcow_verity_hasher *h)
{
    return h->finished ? h->data_blocks : 0;
}

void lcow_verity_hasher_root(const lcow_verity_hasher *h, uint8_t root[LCOW_VERITY_HASH_SIZE])
{
    memcpy(root, h->root, HASH);
}

lcow_code lcow_verity_hasher_write(lcow_verity_hasher *h, lcow_verity_write_fn write, void *ctx,
                                   uint64_t offset, const uint8_t uuid[16], lcow_error *err)
{
    if (!h->finished || h->data_blocks == 0)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "dm-verity: write before a successful finish");
    uint8_t *buf = malloc(WRITE_CHUNK);
    if (!buf)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "dm-verity: out of memory");
    lcow_code rc = lcow_verity_superblock_make(h->data_blocks, uuid, buf, err);
    size_t fill = LCOW_VERITY_SUPERBLOCK_SIZE;
    uint64_t pos = offset;

    /* The upper levels are contiguous and already in disk order. */
    for (uint64_t done = 0; rc == LCOW_OK && done < h->upper_bytes;) {
        size_t n = (size_t)(h->upper_bytes - done < WRITE_CHUNK - fill ? h->upper_bytes - done
                                                                       : WRITE_CHUNK - fill);
        memcpy(buf + fill, h->upper + done, n);
        fill += n;
        done += n;
        if (fill == WRITE_CHUNK) {
            rc = write(ctx, pos, buf, fill, err);
            pos += fill;
            fill = 0;
        }
    }
    for (uint64_t i = 0; rc == LCOW_OK && i < h->level0_blocks; i++) {
        const uint8_t *page = i < h->npages ? h->pages[i] : NULL;
        if (page)
            memcpy(buf + fill, page, BLOCK);
        else
            for (unsigned k = 0; k < PER_PAGE; k++)
                memcpy(buf + fill + k * HASH, h->zero_hash, HASH);
        fill += BLOCK;
        if (fill == WRITE_CHUNK) {
            rc = write(ctx, pos, buf, fill, err);
            pos += fill;
            fill = 0;
        }
    }
    if (rc == LCOW_OK && fill)
        rc = write(ctx, pos, buf, fill, err);
    free(buf);
    return rc;
}

static lcow_code write_to_file(void *ctx, uint64_t off, const void *buf, size_t len,
                               lcow_error *err)
{
    return lcow_file_pwrite(ctx, buf, len, off, err);
}

lcow_code lcow_verity_hasher_write_file(lcow_verity_hasher *h, lcow_file *f, uint64_t offset,
                                        const uint8_t uuid[16], lcow_error *err)
{
    return lcow_verity_hasher_write(h, write_to_file, f, offset, uuid, err);
}

void lcow_verity_hasher_free(lcow_verity_hasher *h)
{
    if (!h)
        return;
    stop_worker(h);
    free_queue(h);
    if (h->sync_ready) {
        lcow_cond_destroy(&h->cv_free);
        lcow_cond_destroy(&h->cv_work);
        lcow_mutex_destroy(&h->mu);
    }
    for (uint64_t i = 0; i < h->npages; i++)
        free(h->pages[i]);
    free(h->pages);
    free(h->upper);
    free(h);
}

lcow_code lcow_verity_hash_file(lcow_file *f, uint64_t data_bytes, lcow_verity_hasher **out,
                                uint8_t root[LCOW_VERITY_HASH_SIZE], lcow_error *err)
{
    if (out)
        *out = NULL;
    uint64_t file_bytes;
    lcow_code rc = lcow_file_size(f, &file_bytes, err);
    if (rc)
        return rc;
    if (data_bytes == 0)
        data_bytes = file_bytes;
    if (data_bytes == 0 || data_bytes % BLOCK || data_bytes > file_bytes)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "dm-verity: %llu bytes of a %llu-byte file is not a non-zero "
                              "multiple of 4096 within it",
                              (unsigned long long)data_bytes, (unsigned long long)file_bytes);
    lcow_verity_hasher *h;
    rc = lcow_verity_hasher_create(NULL, &h, err);
    if (rc)
        return rc;
    uint8_t *buf = malloc(SLOT_BYTES);
    if (!buf) {
        lcow_verity_hasher_free(h);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "dm-verity: out of memory");
    }
    for (uint64_t off = 0; rc == LCOW_OK && off < data_bytes;) {
        size_t n = data_bytes - off < SLOT_BYTES ? (size_t)(data_bytes - off) : SLOT_BYTES;
        rc = lcow_file_pread(f, buf, n, off, NULL, err);
        if (rc == LCOW_OK)
            rc = lcow_verity_hasher_feed(h, off, buf, n, err);
        off += n;
    }
    free(buf);
    if (rc == LCOW_OK)
        rc = lcow_verity_hasher_finish(h, data_bytes, root, err);
    if (rc || !out)
        lcow_verity_hasher_free(h);
    else
        *out = h;
    return rc;
}

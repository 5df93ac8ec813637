/* dm-verity hash tree: layout, superblock, the hasher against a direct
 * transcription of tar2ext4's MerkleTree in every feeding order and mode,
 * against `veritysetup format` (natively, when installed), `veritysetup
 * verify` of what we write (natively; the win64 build exports its files for
 * tests/layer/check-verity.sh), and against tar2ext4-ref's output for every
 * golden layer case (tests/layer/make-golden.sh, skipped without ../shared). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/sha256.h"
#include "core/disk/verity.h"
#include "core/disk/vhd.h"
#include "disk/disk_test_util.h"
#include "layer/layer_test_util.h"

#define BS 4096u

/* ---- reference: tar2ext4's dmverity.MerkleTree, transcribed naively ---- */

static void ref_hash(const uint8_t *block, uint8_t out[32])
{
    static const uint8_t salt[32];
    uint8_t *buf = malloc(32 + BS);
    assert_non_null(buf);
    memcpy(buf, salt, 32);
    memcpy(buf + 32, block, BS);
    lcow_sha256(buf, 32 + BS, out);
    free(buf);
}

/* Tree of data (blocks * 4096 bytes): levels top first; *len its size. */
static uint8_t *ref_tree(const uint8_t *data, size_t blocks, size_t *len, uint8_t root[32])
{
    uint8_t *layers[16];
    size_t layer_len[16], nlayers = 0;
    const uint8_t *level = data;
    size_t n = blocks;
    for (;;) {
        size_t bytes = (n * 32 + BS - 1) / BS * BS;
        uint8_t *next = calloc(1, bytes);
        assert_non_null(next);
        for (size_t i = 0; i < n; i++)
            ref_hash(level + i * BS, next + i * 32);
        layers[nlayers] = next;
        layer_len[nlayers++] = bytes;
        if (bytes == BS)
            break;
        level = next;
        n = bytes / BS;
    }
    size_t total = 0;
    for (size_t i = 0; i < nlayers; i++)
        total += layer_len[i];
    uint8_t *tree = malloc(total);
    assert_non_null(tree);
    size_t at = 0;
    for (size_t i = nlayers; i-- > 0;) {
        memcpy(tree + at, layers[i], layer_len[i]);
        at += layer_len[i];
        free(layers[i]);
    }
    ref_hash(tree, root);
    *len = total;
    return tree;
}

/* ---- capturing what the hasher writes ---- */

typedef struct capture {
    uint64_t base;
    uint64_t next; /* writes must be ascending and contiguous */
    uint8_t *buf;
    size_t len, cap;
    unsigned writes;
} capture;

static lcow_code capture_write(void *ctx, uint64_t off, const void *buf, size_t len,
                               lcow_error *err)
{
    capture *c = ctx;
    assert_int_equal(off, c->next);
    assert_true(len <= (1u << 20));
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    memcpy(c->buf + c->len, buf, len);
    c->len += len;
    c->next += len;
    c->writes++;
    return LCOW_OK;
}

static capture write_out(lcow_verity_hasher *h, uint64_t offset, const uint8_t *uuid)
{
    capture c = {.base = offset, .next = offset};
    lcow_error err;
    lcow_code rc = lcow_verity_hasher_write(h, capture_write, &c, offset, uuid, &err);
    if (rc)
        fail_msg("write: %s", err.message);
    assert_int_equal(c.len, LCOW_VERITY_SUPERBLOCK_SIZE + lcow_verity_hasher_tree_bytes(h));
    return c;
}

/* ---- test data: random blocks with runs of zero blocks ---- */

static uint8_t *make_data(size_t blocks, uint64_t seed)
{
    uint8_t *d = malloc(blocks * BS);
    assert_non_null(d);
    fill_random(d, blocks * BS, seed);
    for (size_t i = 0; i < blocks; i++)
        if (i % 7 == 3 || (i >= 200 && i < 460) || i % 997 == 0)
            memset(d + i * BS, 0, BS);
    return d;
}

static bool is_zero_block(const uint8_t *b)
{
    for (size_t i = 0; i < BS; i++)
        if (b[i])
            return false;
    return true;
}

typedef enum order {
    ORDER_ONE_CALL,      /* the whole image in one feed */
    ORDER_BLOCKS,        /* block by block, in order, zero blocks too */
    ORDER_SHUFFLED,      /* single blocks in a random order, zero blocks left out */
    ORDER_RUNS_REVERSED, /* runs of 1..40 blocks from the end, zero blocks left out */
} order;

static void feed(lcow_verity_hasher *h, const uint8_t *d, size_t blocks, order o, uint64_t seed)
{
    lcow_error err;
    if (o == ORDER_ONE_CALL) {
        assert_int_equal(lcow_verity_hasher_feed(h, 0, d, blocks * BS, &err), LCOW_OK);
        return;
    }
    if (o == ORDER_BLOCKS) { /* through the ext4 writer's callback */
        for (size_t i = 0; i < blocks; i++)
            lcow_verity_on_final(h, i * BS, d + i * BS, BS);
        return;
    }
    if (o == ORDER_SHUFFLED) {
        size_t *perm = malloc(blocks * sizeof *perm);
        assert_non_null(perm);
        for (size_t i = 0; i < blocks; i++)
            perm[i] = i;
        uint64_t x = seed | 1;
        for (size_t i = blocks; i > 1; i--) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t j = (size_t)(x % i), t = perm[i - 1];
            perm[i - 1] = perm[j];
            perm[j] = t;
        }
        for (size_t k = 0; k < blocks; k++) {
            size_t i = perm[k];
            if (!is_zero_block(d + i * BS))
                assert_int_equal(lcow_verity_hasher_feed(h, i * BS, d + i * BS, BS, &err), LCOW_OK);
        }
        free(perm);
        return;
    }
    /* runs from the end */
    size_t end = blocks;
    uint64_t x = seed | 1;
    while (end) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t run = 1 + (size_t)(x % 40);
        size_t start = end > run ? end - run : 0;
        size_t i = start;
        while (i < end) { /* split each run at zero blocks, which stay unreported */
            if (is_zero_block(d + i * BS)) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < end && !is_zero_block(d + j * BS))
                j++;
            assert_int_equal(lcow_verity_hasher_feed(h, i * BS, d + i * BS, (j - i) * BS, &err),
                             LCOW_OK);
            i = j;
        }
        end = start;
    }
}

static void check_against_reference(size_t blocks, uint64_t seed, bool threaded, size_t queue,
                                    order o)
{
    uint8_t *d = make_data(blocks, seed);
    size_t ref_len;
    uint8_t ref_root[32];
    uint8_t *ref = ref_tree(d, blocks, &ref_len, ref_root);
    assert_int_equal(ref_len, lcow_verity_tree_bytes(blocks));

    lcow_verity_options opts = {.threaded = threaded, .queue_bytes = queue};
    lcow_verity_hasher *h;
    lcow_error err;
    assert_int_equal(lcow_verity_hasher_create(&opts, &h, &err), LCOW_OK);
    feed(h, d, blocks, o, seed);
    uint8_t root[32], root2[32];
    lcow_code rc = lcow_verity_hasher_finish(h, blocks * BS, root, &err);
    if (rc)
        fail_msg("finish: %s", err.message);
    if (memcmp(root, ref_root, 32) != 0) {
        char a[65], b[65];
        fail_msg("%u blocks, threaded %d, order %d: root %s, reference %s", (unsigned)blocks,
                 threaded, o, hex32(root, a), hex32(ref_root, b));
    }
    lcow_verity_hasher_root(h, root2);
    assert_memory_equal(root, root2, 32);
    assert_int_equal(lcow_verity_hasher_data_blocks(h), blocks);
    capture c = write_out(h, 12345 * BS, NULL);
    assert_memory_equal(c.buf + LCOW_VERITY_SUPERBLOCK_SIZE, ref, ref_len);
    assert_int_equal(lcow_verity_superblock_check(c.buf, blocks, NULL, &err), LCOW_OK);
    free(c.buf);
    lcow_verity_hasher_free(h);
    free(ref);
    free(d);
}

/* ---- tests ---- */

static void tree_layout(void **state)
{
    assert_int_equal(lcow_verity_tree_bytes(0), 0);
    assert_int_equal(lcow_verity_tree_bytes(1), BS);
    assert_int_equal(lcow_verity_tree_bytes(128), BS);
    assert_int_equal(lcow_verity_tree_bytes(129), 3 * BS);
    assert_int_equal(lcow_verity_tree_bytes(311), 4 * BS); /* golden "basic": 16384 */
    assert_int_equal(lcow_verity_tree_bytes(128 * 128), 129 * BS);
    assert_int_equal(lcow_verity_tree_bytes(128 * 128 + 1), (129 + 2 + 1) * BS);
    /* 128 GiB: 32 Mi blocks -> 256 Ki + 2 Ki + 16 + 1 hash blocks */
    assert_int_equal(lcow_verity_tree_bytes(32ull << 20), (262144ull + 2048 + 16 + 1) * BS);
}

static void superblock_fields(void **state)
{
    uint8_t sb[LCOW_VERITY_SUPERBLOCK_SIZE], uuid[16];
    for (int i = 0; i < 16; i++)
        uuid[i] = (uint8_t)(0xa0 + i);
    lcow_error err;
    assert_int_equal(lcow_verity_superblock_make(311, uuid, sb, &err), LCOW_OK);
    /* veritysetup's and tar2ext4's bytes for 311 blocks (see the golden basic case) */
    static const uint8_t head[88] = {
        'v',  'e',  'r',  'i',  't',  'y',  0,    0,    1,           0,    0,    0,    1,    0,
        0,    0, /* sig, version, type */
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8,        0xa9, 0xaa, 0xab, 0xac, 0xad,
        0xae, 0xaf, 's',  'h',  'a',  '2',  '5',  '6',  [64] = 0x00, 0x10, 0,    0,    0x00, 0x10,
        0,    0,    0x37, 0x01, 0,    0,    0,    0,    0,           0,    0x20, 0};
    assert_memory_equal(sb, head, sizeof head);
    for (size_t i = sizeof head; i < sizeof sb; i++)
        assert_int_equal(sb[i], 0);

    lcow_verity_superblock p;
    assert_int_equal(lcow_verity_superblock_check(sb, 311, &p, &err), LCOW_OK);
    assert_int_equal(p.version, 1);
    assert_int_equal(p.hash_type, 1);
    assert_string_equal(p.algorithm, "sha256");
    assert_int_equal(p.data_block_size, 4096);
    assert_int_equal(p.hash_block_size, 4096);
    assert_int_equal(p.data_blocks, 311);
    assert_int_equal(p.salt_size, 32);
    assert_memory_equal(p.uuid, uuid, 16);
    assert_true(p.padding_zero);

    /* Random UUIDs are version 4 and differ. */
    uint8_t a[LCOW_VERITY_SUPERBLOCK_SIZE], b[LCOW_VERITY_SUPERBLOCK_SIZE];
    assert_int_equal(lcow_verity_superblock_make(1, NULL, a, &err), LCOW_OK);
    assert_int_equal(lcow_verity_superblock_make(1, NULL, b, &err), LCOW_OK);
    assert_memory_not_equal(a + 16, b + 16, 16);
    assert_int_equal(a[16 + 6] >> 4, 4);

    /* Every field is checked. */
    struct {
        size_t off;
        uint8_t value;
        const char *what;
    } bad[] = {{0, 'V', "signature"},  {8, 2, "version"},   {12, 0, "hash type"},
               {32, 'S', "algorithm"}, {65, 0x20, "block"}, {72, 0x38, "data block"},
               {80, 0x40, "salt"},     {100, 1, "salt"},    {4000, 1, "padding"},
               {84, 1, "padding"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t c[LCOW_VERITY_SUPERBLOCK_SIZE];
        memcpy(c, sb, sizeof c);
        c[bad[i].off] = bad[i].value;
        assert_int_equal(lcow_verity_superblock_check(c, 311, NULL, &err), LCOW_INVALID_ARGUMENT);
        if (!strstr(err.message, bad[i].what) && !strstr(err.message, "signature"))
            fail_msg("byte %u: '%s' does not name %s", (unsigned)bad[i].off, err.message,
                     bad[i].what);
    }
    assert_int_equal(lcow_verity_superblock_check(sb, 312, NULL, &err), LCOW_INVALID_ARGUMENT);
}

static void zero_image_hashes(void **state)
{
    /* Nothing fed at all: every block is a zero block. */
    for (size_t blocks = 1; blocks <= 300; blocks += 299) {
        uint8_t *zeros = calloc(blocks, BS);
        assert_non_null(zeros);
        size_t ref_len;
        uint8_t ref_root[32], root[32];
        uint8_t *ref = ref_tree(zeros, blocks, &ref_len, ref_root);
        for (int threaded = 0; threaded < 2; threaded++) {
            lcow_verity_options o = {.threaded = threaded};
            lcow_verity_hasher *h;
            lcow_error err;
            assert_int_equal(lcow_verity_hasher_create(&o, &h, &err), LCOW_OK);
            assert_int_equal(lcow_verity_hasher_finish(h, blocks * BS, root, &err), LCOW_OK);
            assert_memory_equal(root, ref_root, 32);
            capture c = write_out(h, 0, NULL);
            assert_memory_equal(c.buf + BS, ref, ref_len);
            free(c.buf);
            lcow_verity_hasher_free(h);
        }
        free(ref);
        free(zeros);
    }
}

static void any_order_any_mode_matches_reference(void **state)
{
    static const size_t sizes[] = {1, 2, 127, 128, 129, 300, 1000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (order o = ORDER_ONE_CALL; o <= ORDER_RUNS_REVERSED; o++) {
            check_against_reference(sizes[i], 1 + i, false, 0, o);
            check_against_reference(sizes[i], 1 + i, true, 0, o);
            check_against_reference(sizes[i], 1 + i, true, 8192, o); /* 2 one-block slots */
        }
    }
}

static void three_levels(void **state)
{
    /* 128 * 128 + 1 blocks (64 MiB + 4 KiB): three levels above the data. */
    size_t blocks = 128 * 128 + 1;
    check_against_reference(blocks, 99, true, 0, ORDER_ONE_CALL);
    check_against_reference(blocks, 99, true, 64 << 10, ORDER_RUNS_REVERSED);
}

static void bad_calls(void **state)
{
    lcow_verity_hasher *h;
    lcow_error err;
    uint8_t block[BS] = {1};
    for (int threaded = 0; threaded < 2; threaded++) {
        lcow_verity_options o = {.threaded = threaded};
        assert_int_equal(lcow_verity_hasher_create(&o, &h, &err), LCOW_OK);
        assert_int_equal(lcow_verity_hasher_feed(h, 100, block, BS, &err), LCOW_INVALID_ARGUMENT);
        assert_int_equal(lcow_verity_hasher_feed(h, 0, block, 100, &err), LCOW_INVALID_ARGUMENT);
        assert_int_equal(lcow_verity_hasher_feed(h, LCOW_VERITY_MAX_DATA_BYTES, block, BS, &err),
                         LCOW_INVALID_ARGUMENT);
        assert_int_equal(lcow_verity_hasher_write(h, capture_write, NULL, 0, NULL, &err),
                         LCOW_FAILED_PRECONDITION);
        assert_int_equal(lcow_verity_hasher_feed(h, 5 * BS, block, BS, &err), LCOW_OK);
        /* block 5 fed, but the data is said to have 5 blocks */
        assert_int_equal(lcow_verity_hasher_finish(h, 5 * BS, NULL, &err), LCOW_INVALID_ARGUMENT);
        assert_non_null(strstr(err.message, "block 5"));
        assert_int_equal(lcow_verity_hasher_feed(h, 0, block, BS, &err), LCOW_FAILED_PRECONDITION);
        assert_int_equal(lcow_verity_hasher_finish(h, 6 * BS, NULL, &err),
                         LCOW_FAILED_PRECONDITION);
        lcow_verity_hasher_free(h);

        assert_int_equal(lcow_verity_hasher_create(&o, &h, &err), LCOW_OK);
        assert_int_equal(lcow_verity_hasher_finish(h, 0, NULL, &err), LCOW_INVALID_ARGUMENT);
        lcow_verity_hasher_free(h);
        assert_int_equal(lcow_verity_hasher_create(&o, &h, &err), LCOW_OK);
        assert_int_equal(lcow_verity_hasher_finish(h, BS + 512, NULL, &err), LCOW_INVALID_ARGUMENT);
        lcow_verity_hasher_free(h);
    }
    /* Through the writer's callback (no return value): the first bad range
     * surfaces at finish. */
    assert_int_equal(lcow_verity_hasher_create(NULL, &h, &err), LCOW_OK);
    lcow_verity_on_final(h, 0, block, BS);
    lcow_verity_on_final(h, 100, block, BS);
    lcow_verity_on_final(h, 3 * BS, block, 7);
    assert_int_equal(lcow_verity_hasher_finish(h, 3 * BS, NULL, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "at 100 of 4096 bytes is not 4096-aligned"));
    lcow_verity_hasher_free(h);

    /* Abandoned mid-way with a full queue: free stops the worker. */
    lcow_verity_options o = {.threaded = true, .queue_bytes = 8192};
    assert_int_equal(lcow_verity_hasher_create(&o, &h, &err), LCOW_OK);
    for (int i = 0; i < 64; i++)
        assert_int_equal(lcow_verity_hasher_feed(h, (uint64_t)i * BS, block, BS, &err), LCOW_OK);
    lcow_verity_hasher_free(h);
    lcow_verity_hasher_free(NULL);
}

/* [data][superblock][tree] in one file, as layer.vhd has it before the footer. */
static char *write_verity_image(const char *name, size_t blocks, uint64_t seed, uint8_t root[32])
{
    uint8_t *d = make_data(blocks, seed);
    lcow_verity_hasher *h;
    lcow_error err;
    assert_int_equal(lcow_verity_hasher_create(NULL, &h, &err), LCOW_OK);
    feed(h, d, blocks, ORDER_SHUFFLED, seed);
    assert_int_equal(lcow_verity_hasher_finish(h, blocks * BS, root, &err), LCOW_OK);
    char *path = test_path(name);
    lcow_file *f;
    assert_int_equal(
        lcow_file_open(path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_TRUNCATE, &f, &err),
        LCOW_OK);
    assert_int_equal(lcow_file_pwrite(f, d, blocks * BS, 0, &err), LCOW_OK);
    assert_int_equal(lcow_verity_hasher_write_file(h, f, blocks * BS, NULL, &err), LCOW_OK);
    lcow_file_close(f);
    lcow_verity_hasher_free(h);
    free(d);
    return path;
}

static const char *veritysetup(void)
{
    const char *v = tool("LCOW_VERITYSETUP");
    if (!v)
        print_message("veritysetup not available (natively: apt-get install cryptsetup-bin; "
                      "win64: tests/layer/check-verity.sh checks the exported files): skipped\n");
    return v;
}

static void veritysetup_format_agrees(void **state)
{
    const char *vs = veritysetup();
    if (!vs)
        skip();
    /* Not 1 block: see single_block_is_tar2ext4s_layout. */
    static const size_t sizes[] = {2, 128, 129, 311, 5000, 128 * 128 + 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t blocks = sizes[i];
        uint8_t *d = make_data(blocks, 7 + i);
        char *data = test_path("vs-data.img"), *hash = test_path("vs-hash.img");
        write_all(data, d, blocks * BS);
        write_all(hash, "", 0);
        char *out = NULL;
        int rc = run_cmd(&out,
                         "'%s' format --data-block-size 4096 --hash-block-size 4096 --hash sha256 "
                         "--salt %064d --uuid 01234567-89ab-4cde-8f01-23456789abcd '%s' '%s'",
                         vs, 0, data, hash);
        if (rc != 0)
            fail_msg("veritysetup format: %s", out ? out : "?");
        const char *line = out ? strstr(out, "Root hash:") : NULL;
        assert_non_null(line);
        char vs_root[65];
        assert_int_equal(sscanf(line, "Root hash: %64s", vs_root), 1);

        lcow_verity_hasher *h;
        lcow_error err;
        assert_int_equal(lcow_verity_hasher_create(NULL, &h, &err), LCOW_OK);
        feed(h, d, blocks, ORDER_RUNS_REVERSED, i);
        uint8_t root[32];
        char hex[65];
        assert_int_equal(lcow_verity_hasher_finish(h, blocks * BS, root, &err), LCOW_OK);
        assert_string_equal(hex32(root, hex), vs_root);

        static const uint8_t uuid[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde,
                                         0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd};
        capture c = write_out(h, 0, uuid);
        size_t vs_len;
        uint8_t *vs_bytes = read_all(hash, &vs_len);
        /* veritysetup's hash device is superblock + tree: byte for byte ours. */
        assert_int_equal(vs_len, c.len);
        assert_memory_equal(vs_bytes, c.buf, c.len);
        print_message("%u blocks: root %s = veritysetup's, hash device identical\n",
                      (unsigned)blocks, vs_root);
        free(vs_bytes);
        free(c.buf);
        lcow_verity_hasher_free(h);
        free(out);
        test_remove(data);
        test_remove(hash);
        free(data);
        free(hash);
        free(d);
    }
}

/* Writes MANIFEST lines "FILE DATA_BYTES ROOT" for check-verity.sh. */
static void export_for_check(const char *file, uint64_t data_bytes, const uint8_t root[32])
{
    char *dir = test_path("export");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir_all(dir, &err), LCOW_OK);
    char *manifest = lcow_path_join(dir, "MANIFEST");
    FILE *m = fopen(manifest, "ab"); /* binary: no CRLF under Windows */
    assert_non_null(m);
    char hex[65];
    const char *base = strrchr(file, LCOW_PATH_SEP);
    fprintf(m, "%s %llu %s\n", base ? base + 1 : file, (unsigned long long)data_bytes,
            hex32(root, hex));
    fclose(m);
    char *dst = lcow_path_join(dir, base ? base + 1 : file);
    assert_int_equal(lcow_os_rename(file, dst, &err), LCOW_OK);
    free(dst);
    free(manifest);
    free(dir);
}

/* One data block is where tar2ext4 and veritysetup part: tar2ext4 always
 * writes a level-0 block and hashes it for the root; veritysetup (cryptsetup
 * hash_levels: no level for a single block) takes the data block's own hash
 * as the root and writes no tree. lcowsnap follows tar2ext4, whose layers
 * are never one block (the smallest ext4 image it makes is 14 blocks). */
static void single_block_is_tar2ext4s_layout(void **state)
{
    uint8_t block[BS];
    fill_random(block, BS, 5);
    lcow_verity_hasher *h;
    lcow_error err;
    assert_int_equal(lcow_verity_hasher_create(NULL, &h, &err), LCOW_OK);
    assert_int_equal(lcow_verity_hasher_feed(h, 0, block, BS, &err), LCOW_OK);
    uint8_t root[32], level0[BS] = {0}, want[32];
    assert_int_equal(lcow_verity_hasher_finish(h, BS, root, &err), LCOW_OK);
    assert_int_equal(lcow_verity_hasher_tree_bytes(h), BS);
    ref_hash(block, level0);
    ref_hash(level0, want);
    assert_memory_equal(root, want, 32);
    lcow_verity_hasher_free(h);

    const char *vs = tool("LCOW_VERITYSETUP");
    if (!vs)
        return;
    char *data = test_path("vs-one.img"), *hash = test_path("vs-one-hash.img");
    write_all(data, block, BS);
    write_all(hash, "", 0);
    char *out = NULL;
    assert_int_equal(run_cmd(&out,
                             "'%s' format --data-block-size 4096 --hash-block-size 4096 --hash "
                             "sha256 --salt %064d '%s' '%s'",
                             vs, 0, data, hash),
                     0);
    char vs_root[65], hex[65];
    assert_int_equal(sscanf(strstr(out, "Root hash:"), "Root hash: %64s", vs_root), 1);
    assert_string_equal(vs_root, hex32(level0, hex)); /* H(salt || data block) */
    print_message("1 block: veritysetup's root is the data block's hash, tar2ext4's (ours) the "
                  "level-0 block's\n");
    free(out);
    test_remove(data);
    test_remove(hash);
    free(data);
    free(hash);
}

static void veritysetup_verify_accepts_ours(void **state)
{
    static const size_t sizes[] = {2, 311, 128 * 128 + 1};
    char *dir = test_path("export");
    lcow_error err;
    assert_int_equal(lcow_os_remove_all(dir, &err), LCOW_OK);
    free(dir);
    const char *vs = tool("LCOW_VERITYSETUP");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "ours-%zu.img", sizes[i]);
        uint8_t root[32];
        char hex[65];
        char *path = write_verity_image(name, sizes[i], 40 + i, root);
        hex32(root, hex);
        if (vs) {
            char *out = NULL;
            int rc = run_cmd(&out, "'%s' verify --hash-offset=%zu '%s' '%s' %s", vs, sizes[i] * BS,
                             path, path, hex);
            if (rc != 0)
                fail_msg("veritysetup verify refused ours (%u blocks): %s", (unsigned)sizes[i],
                         out ? out : "?");
            free(out);
            /* and it does check: another root hash is refused */
            hex[0] = hex[0] == '0' ? '1' : '0';
            rc = run_cmd(NULL, "'%s' verify --hash-offset=%zu '%s' '%s' %s", vs, sizes[i] * BS,
                         path, path, hex);
            assert_int_not_equal(rc, 0);
        }
        export_for_check(path, sizes[i] * BS, root);
        free(path);
    }
    if (!vs)
        print_message("veritysetup not run here: files exported for tests/layer/check-verity.sh\n");
}

/* ---- golden cases: tar2ext4-ref's images and trees ---- */

typedef struct tree_hash {
    lcow_sha256_ctx sha;
    uint64_t seen;
    uint8_t sb[LCOW_VERITY_SUPERBLOCK_SIZE];
} tree_hash;

static lcow_code hash_tree_write(void *ctx, uint64_t off, const void *buf, size_t len,
                                 lcow_error *err)
{
    tree_hash *t = ctx;
    const uint8_t *p = buf;
    assert_int_equal(off, t->seen);
    if (t->seen < LCOW_VERITY_SUPERBLOCK_SIZE) { /* the first write starts with it */
        assert_true(len >= LCOW_VERITY_SUPERBLOCK_SIZE);
        memcpy(t->sb, p, LCOW_VERITY_SUPERBLOCK_SIZE);
        p += LCOW_VERITY_SUPERBLOCK_SIZE;
        len -= LCOW_VERITY_SUPERBLOCK_SIZE;
        t->seen += LCOW_VERITY_SUPERBLOCK_SIZE;
    }
    lcow_sha256_update(&t->sha, p, len);
    t->seen += len;
    return LCOW_OK;
}

static void golden_trees_match(void **state)
{
    const char *dir = golden_dir();
    if (!dir)
        skip();
    char *json_path = lcow_path_join(dir, "golden.json");
    size_t json_len;
    char *json = (char *)read_all(json_path, &json_len);
    json = realloc(json, json_len + 1);
    json[json_len] = '\0';
    for (size_t i = 0; i < GOLDEN_CASES; i++) {
        const char *c = golden_cases[i];
        char want_root[80], want_tree[80], hex[65], file_root[80] = "";
        golden_value(json, c, "verity_root_hash", want_root, sizeof want_root);
        golden_value(json, c, "verity_tree_sha256", want_tree, sizeof want_tree);
        uint64_t ext4_bytes = golden_u64(json, c, "ext4_bytes");
        uint64_t tree_bytes = golden_u64(json, c, "verity_tree_bytes");

        /* tar2ext4-ref -roothash agrees with golden.json */
        char *rh = golden_path(dir, c, ".roothash");
        size_t rh_len;
        char *rh_text = (char *)read_all(rh, &rh_len);
        memcpy(file_root, rh_text, rh_len < 64 ? rh_len : 64);
        assert_string_equal(file_root, want_root);
        free(rh_text);
        free(rh);

        /* Hash the ext4 part of the differ-profile image (footer stripped). */
        char *vhd = golden_path(dir, c, ".vhd");
        lcow_file *f;
        lcow_error err;
        assert_int_equal(lcow_file_open(vhd, LCOW_OPEN_READ, &f, &err), LCOW_OK);
        uint64_t disk_bytes;
        assert_int_equal(lcow_vhd_check_file(f, NULL, &disk_bytes, &err), LCOW_OK);
        assert_int_equal(disk_bytes, ext4_bytes);
        lcow_verity_hasher *h;
        uint8_t root[32];
        lcow_code rc = lcow_verity_hash_file(f, ext4_bytes, &h, root, &err);
        if (rc)
            fail_msg("%s: %s", c, err.message);
        if (strcmp(hex32(root, hex), want_root) != 0)
            fail_msg("%s: root %s, tar2ext4 %s", c, hex, want_root);
        assert_int_equal(lcow_verity_hasher_tree_bytes(h), tree_bytes);
        tree_hash t = {0};
        lcow_sha256_init(&t.sha);
        assert_int_equal(lcow_verity_hasher_write(h, hash_tree_write, &t, 0, NULL, &err), LCOW_OK);
        uint8_t tree_sha[32];
        lcow_sha256_final(&t.sha, tree_sha);
        if (strcmp(hex32(tree_sha, hex), want_tree) != 0)
            fail_msg("%s: tree sha256 %s, tar2ext4 %s", c, hex, want_tree);

        /* The same image fed block by block in a shuffled order, zero blocks
         * left out (as the ext4 writer's on_final leaves them out). */
        size_t blocks = (size_t)(ext4_bytes / BS);
        uint8_t *img = malloc((size_t)ext4_bytes);
        assert_non_null(img);
        assert_int_equal(lcow_file_pread(f, img, (size_t)ext4_bytes, 0, NULL, &err), LCOW_OK);
        lcow_verity_hasher *h2;
        assert_int_equal(lcow_verity_hasher_create(NULL, &h2, &err), LCOW_OK);
        feed(h2, img, blocks, ORDER_SHUFFLED, i + 1);
        uint8_t root2[32];
        assert_int_equal(lcow_verity_hasher_finish(h2, ext4_bytes, root2, &err), LCOW_OK);
        assert_memory_equal(root2, root, 32);

        /* tar2ext4's own verity layout: superblock (random UUID) and tree as ours. */
        char *vvhd = golden_path(dir, c, ".verity.vhd");
        size_t vlen;
        uint8_t *v = read_all(vvhd, &vlen);
        assert_int_equal(vlen, golden_u64(json, c, "verity_vhd_bytes"));
        assert_int_equal(vlen, ext4_bytes + LCOW_VERITY_SUPERBLOCK_SIZE + tree_bytes + 512);
        assert_memory_equal(v, img, (size_t)ext4_bytes);
        lcow_verity_superblock sb;
        rc = lcow_verity_superblock_check(v + ext4_bytes, blocks, &sb, &err);
        if (rc)
            fail_msg("%s: tar2ext4's superblock: %s", c, err.message);
        capture cap = write_out(h2, ext4_bytes, sb.uuid);
        assert_int_equal(cap.len, LCOW_VERITY_SUPERBLOCK_SIZE + tree_bytes);
        assert_memory_equal(cap.buf, v + ext4_bytes, cap.len); /* byte for byte, given the UUID */
        print_message("%-16s %6u blocks  root %s  tree %llu bytes: = tar2ext4\n", c,
                      (unsigned)blocks, want_root, (unsigned long long)tree_bytes);
        free(cap.buf);
        free(v);
        free(vvhd);
        free(img);
        lcow_verity_hasher_free(h2);
        lcow_verity_hasher_free(h);
        lcow_file_close(f);
        free(vhd);
    }
    free(json);
    free(json_path);
}

static void hash_file_errors(void **state)
{
    char *path = test_path("odd.img");
    uint8_t buf[5000] = {0};
    write_all(path, buf, sizeof buf);
    lcow_file *f;
    lcow_error err;
    assert_int_equal(lcow_file_open(path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    uint8_t root[32];
    assert_int_equal(lcow_verity_hash_file(f, 0, NULL, root, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_verity_hash_file(f, 8192, NULL, root, &err), LCOW_INVALID_ARGUMENT);
    assert_int_equal(lcow_verity_hash_file(f, 4096, NULL, root, &err), LCOW_OK);
    lcow_file_close(f);
    test_remove(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_layout),
        cmocka_unit_test(superblock_fields),
        cmocka_unit_test(zero_image_hashes),
        cmocka_unit_test(any_order_any_mode_matches_reference),
        cmocka_unit_test(three_levels),
        cmocka_unit_test(bad_calls),
        cmocka_unit_test(hash_file_errors),
        cmocka_unit_test(single_block_is_tar2ext4s_layout),
        cmocka_unit_test(veritysetup_format_agrees),
        cmocka_unit_test(veritysetup_verify_accepts_ours),
        cmocka_unit_test(golden_trees_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

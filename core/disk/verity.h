/* dm-verity hash tree for read-only LCOW layers, exactly as hcsshim's
 * tar2ext4 (ext4/dmverity, commit 7c9ff7f) and `veritysetup format
 * --data-block-size 4096 --hash-block-size 4096 --hash sha256 --salt 0*64`
 * make it: sha256, 4096-byte data and hash blocks, version-1 hashing
 * sha256(salt || block) with a 32-byte zero salt.
 *
 * layer.vhd with verity is
 *   [ext4 image: N blocks][superblock: 4096][tree][VHD footer: 512]
 * and the tree is its levels from the top (one block, whose hash is the
 * root hash) down to level 0 (one 32-byte hash per data block), each level
 * zero-padded to whole blocks; this is veritysetup's layout with the
 * superblock at --hash-offset = ext4 bytes.
 *
 * The hasher takes data blocks in ANY order (the ext4 writer reports each
 * block when it becomes final, not in file order); blocks never reported
 * read as zero and get the precomputed hash of a zero block. With
 * `threaded`, blocks are copied into a bounded queue and hashed on a second
 * thread while the caller goes on converting; finish() then only has the
 * upper levels left (1/128 of the work). Memory: the queue plus 32 bytes per
 * data block (level 0), allocated in 4 KiB pages as blocks arrive. */
#ifndef LCOW_DISK_VERITY_H
#define LCOW_DISK_VERITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/os/os.h"

#define LCOW_VERITY_BLOCK_SIZE 4096u
#define LCOW_VERITY_HASH_SIZE 32u
#define LCOW_VERITY_SALT_SIZE 32u
#define LCOW_VERITY_HASHES_PER_BLOCK (LCOW_VERITY_BLOCK_SIZE / LCOW_VERITY_HASH_SIZE)
/* The superblock occupies one whole hash block on disk (512 bytes + zeros). */
#define LCOW_VERITY_SUPERBLOCK_SIZE 4096u
/* Largest data area a hasher accepts (tar2ext4's layers stop at 128 GiB). */
#define LCOW_VERITY_MAX_DATA_BYTES (1ull << 40)

/* ---- layout ---- */

/* Bytes of the hash tree (without the superblock) over data_blocks blocks;
 * 0 for 0 blocks (tar2ext4 cannot hash an empty image, nor can we). */
uint64_t lcow_verity_tree_bytes(uint64_t data_blocks);

/* ---- superblock ---- */

/* The on-disk superblock (veritysetup's struct verity_sb), host byte order. */
typedef struct lcow_verity_superblock {
    uint8_t signature[8]; /* "verity\0\0" */
    uint32_t version;     /* 1 */
    uint32_t hash_type;   /* 1: normal (0 is Chrome OS) */
    uint8_t uuid[16];
    char algorithm[33]; /* NUL-terminated copy of the 32-byte field */
    uint32_t data_block_size;
    uint32_t hash_block_size;
    uint64_t data_blocks;
    uint16_t salt_size;
    uint8_t salt[256];
    bool padding_zero; /* parse: every reserved/padding byte up to 4096 is zero */
} lcow_verity_superblock;

/* The 4096 bytes tar2ext4 and veritysetup write before the tree for
 * data_blocks blocks. uuid NULL: a fresh random (version 4) UUID. */
lcow_code lcow_verity_superblock_make(uint64_t data_blocks, const uint8_t uuid[16],
                                      uint8_t out[LCOW_VERITY_SUPERBLOCK_SIZE], lcow_error *err);

/* Decodes every field; INVALID_ARGUMENT unless the signature is "verity". */
lcow_code lcow_verity_superblock_parse(const uint8_t in[LCOW_VERITY_SUPERBLOCK_SIZE],
                                       lcow_verity_superblock *out, lcow_error *err);

/* parse, then requires exactly what lcowsnap and tar2ext4 write: version 1,
 * hash type 1, sha256, 4096/4096-byte blocks, data_blocks as given, a
 * 32-byte zero salt and zero padding. INVALID_ARGUMENT naming the field. */
lcow_code lcow_verity_superblock_check(const uint8_t in[LCOW_VERITY_SUPERBLOCK_SIZE],
                                       uint64_t data_blocks, lcow_verity_superblock *out,
                                       lcow_error *err);

/* ---- hasher ---- */

typedef struct lcow_verity_hasher lcow_verity_hasher;

typedef struct lcow_verity_options {
    /* Hash on a worker thread fed through a bounded queue (feed copies the
     * blocks); false: feed hashes in the caller's thread, without copying. */
    bool threaded;
    /* Bytes of block copies in flight when threaded; 0 = 4 MiB. */
    size_t queue_bytes;
} lcow_verity_options;

/* opts NULL: threaded with the default queue. */
lcow_code lcow_verity_hasher_create(const lcow_verity_options *opts, lcow_verity_hasher **out,
                                    lcow_error *err);

/* Data bytes [offset, offset+len) are final: both multiples of 4096, inside
 * LCOW_VERITY_MAX_DATA_BYTES, any order; a block fed twice keeps the later
 * content. The data is not referenced after the call returns. Its shape fits
 * the ext4 writer's on_final callback (ctx = the hasher). Errors:
 * INVALID_ARGUMENT for a bad range, FAILED_PRECONDITION after finish,
 * RESOURCE_EXHAUSTED when level-0 memory cannot be had (threaded: from
 * finish, since the worker meets it). */
lcow_code lcow_verity_hasher_feed(lcow_verity_hasher *h, uint64_t offset, const void *data,
                                  size_t len, lcow_error *err);

/* The ext4 writer's on_final callback (lcow_ext4_final_fn) with ctx = the
 * hasher: lcow_verity_hasher_feed, whose first error (the callback returns
 * nothing) is kept and returned by lcow_verity_hasher_finish. */
void lcow_verity_on_final(void *ctx, uint64_t offset, const void *data, size_t len);

/* The data area is data_bytes long (a non-zero multiple of 4096, no block fed
 * beyond it): waits for the queue to drain, stops the worker, builds the
 * upper levels and writes the root hash to root (may be NULL). Once only. */
lcow_code lcow_verity_hasher_finish(lcow_verity_hasher *h, uint64_t data_bytes,
                                    uint8_t root[LCOW_VERITY_HASH_SIZE], lcow_error *err);

/* After finish: the tree's size, the data block count and the root hash. */
uint64_t lcow_verity_hasher_tree_bytes(const lcow_verity_hasher *h);
uint64_t lcow_verity_hasher_data_blocks(const lcow_verity_hasher *h);
void lcow_verity_hasher_root(const lcow_verity_hasher *h, uint8_t root[LCOW_VERITY_HASH_SIZE]);

/* Positional writer: the same shape as lcow_block_sink_write_fn. */
typedef lcow_code (*lcow_verity_write_fn)(void *ctx, uint64_t off, const void *buf, size_t len,
                                          lcow_error *err);

/* After finish: writes the superblock at offset and the tree right after it
 * (4096 + tree_bytes in all), in ascending order, in pieces of at most
 * 1 MiB. uuid NULL: random. For layer.vhd, offset = the ext4 image size. */
lcow_code lcow_verity_hasher_write(lcow_verity_hasher *h, lcow_verity_write_fn write, void *ctx,
                                   uint64_t offset, const uint8_t uuid[16], lcow_error *err);

/* The same into an open file (not synced). */
lcow_code lcow_verity_hasher_write_file(lcow_verity_hasher *h, lcow_file *f, uint64_t offset,
                                        const uint8_t uuid[16], lcow_error *err);

/* Stops the worker if finish was never called (an abandoned conversion) and
 * frees everything; NULL is a no-op. */
void lcow_verity_hasher_free(lcow_verity_hasher *h);

/* Hashes the first data_bytes of an existing file (0 = all of it; either way
 * a non-zero multiple of 4096): reading on the calling thread, hashing on a
 * worker. Returns the finished hasher in *out (may be NULL) for the tree,
 * and the root hash in root (may be NULL). This is tar2ext4's -roothash
 * over an ext4 image, and how tests hash reference images. */
lcow_code lcow_verity_hash_file(lcow_file *f, uint64_t data_bytes, lcow_verity_hasher **out,
                                uint8_t root[LCOW_VERITY_HASH_SIZE], lcow_error *err);

#endif

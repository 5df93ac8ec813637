/* Dynamic VHDX writer and reader (MS-VHDX v1). Field tables and measured
 * qemu behaviour: docs/reference/vhdx-ext4.md; our choices:
 * docs/disk-format.md. Everything on disk is little-endian. */
#include "core/disk/vhdx.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/types.h"
#include "core/disk/byteorder.h"
#include "core/disk/crc32c.h"
#include "core/os/os.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

#define HEADER1_OFFSET (64u * KiB)
#define HEADER2_OFFSET (128u * KiB)
#define HEADER_SIZE (4u * KiB)
#define REGION1_OFFSET (192u * KiB)
#define REGION2_OFFSET (256u * KiB)
#define REGION_SIZE (64u * KiB)
#define REGION_MAX_ENTRIES 2047u
#define META_TABLE_SIZE (64u * KiB)
#define META_MAX_ENTRIES 2047u
#define META_ITEM_MAX (1u * MiB)

/* Our layout. */
#define LOG_OFFSET (1u * MiB)
#define LOG_LENGTH (1u * MiB)
#define META_OFFSET (2u * MiB)
#define META_LENGTH (1u * MiB)
#define BAT_OFFSET (3u * MiB)

#define BAT_STATE_MASK 7u
#define BAT_OFFSET_MASK (~(uint64_t)(MiB - 1))

/* GUIDs in on-disk byte order (Data1..3 little-endian). */
static const uint8_t GUID_BAT[16] = {0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
                                     0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
static const uint8_t GUID_METADATA[16] = {0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
                                          0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
static const uint8_t GUID_FILE_PARAMS[16] = {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
                                             0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
static const uint8_t GUID_VIRTUAL_SIZE[16] = {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
                                              0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8};
static const uint8_t GUID_DISK_ID[16] = {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
                                         0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46};
static const uint8_t GUID_LOGICAL_SECTOR[16] = {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47,
                                                0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
static const uint8_t GUID_PHYSICAL_SECTOR[16] = {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44,
                                                 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56};
static const uint8_t GUID_PARENT_LOCATOR[16] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
                                                0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};

static bool is_pow2(uint64_t v)
{
    return v && !(v & (v - 1));
}

static bool all_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    /* Word-at-a-time after aligning: this runs over every formatter block. */
    while (len && ((uintptr_t)p & 7u)) {
        if (*p)
            return false;
        p++;
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w)
            return false;
        p += 8;
        len -= 8;
    }
    while (len--)
        if (*p++)
            return false;
    return true;
}

static bool guid_is_zero(const uint8_t g[16])
{
    return all_zero(g, 16);
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

/* ---- io over lcow_file ---- */

static lcow_code file_pread(void *ctx, void *buf, size_t len, uint64_t off, size_t *got,
                            lcow_error *err)
{
    return lcow_file_pread(ctx, buf, len, off, got, err);
}

static lcow_code file_pwrite(void *ctx, const void *buf, size_t len, uint64_t off, lcow_error *err)
{
    return lcow_file_pwrite(ctx, buf, len, off, err);
}

static lcow_code file_size(void *ctx, uint64_t *size, lcow_error *err)
{
    return lcow_file_size(ctx, size, err);
}

static lcow_code file_truncate(void *ctx, uint64_t size, lcow_error *err)
{
    return lcow_file_truncate(ctx, size, err);
}

static lcow_code file_sync(void *ctx, lcow_error *err)
{
    return lcow_file_sync(ctx, err);
}

lcow_vhdx_io lcow_vhdx_io_file(lcow_file *f)
{
    lcow_vhdx_io io = {f, file_pread, file_pwrite, file_size, file_truncate, file_sync};
    return io;
}

/* ---- geometry ---- */

static uint32_t chunk_ratio(uint32_t block_size, uint32_t logical_sector_size)
{
    return (uint32_t)(((uint64_t)1 << 23) * logical_sector_size / block_size);
}

uint64_t lcow_vhdx_bat_entries(uint64_t virtual_size, uint32_t block_size,
                               uint32_t logical_sector_size)
{
    uint64_t blocks = (virtual_size + block_size - 1) / block_size;
    if (blocks == 0)
        return 0;
    return blocks + (blocks - 1) / chunk_ratio(block_size, logical_sector_size);
}

static uint64_t bat_index(uint64_t block, uint32_t ratio)
{
    return block + block / ratio;
}

lcow_code lcow_vhdx_params_normalize(const lcow_vhdx_params *in, lcow_vhdx_params *out,
                                     lcow_error *err)
{
    lcow_vhdx_params p = *in;
    if (!p.geometry.block_size)
        p.geometry.block_size = LCOW_VHDX_MIN_BLOCK;
    if (!p.geometry.logical_sector_size)
        p.geometry.logical_sector_size = 512;
    if (!p.geometry.physical_sector_size)
        p.geometry.physical_sector_size = 4096;
    if (!is_pow2(p.geometry.block_size) || p.geometry.block_size < LCOW_VHDX_MIN_BLOCK ||
        p.geometry.block_size > LCOW_VHDX_MAX_BLOCK)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: block size %u is not a power of two between 1 and 256 MiB",
                              p.geometry.block_size);
    if (p.geometry.logical_sector_size != 512 && p.geometry.logical_sector_size != 4096)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: logical sector size %u is not 512 or 4096",
                              p.geometry.logical_sector_size);
    if (p.geometry.physical_sector_size != 512 && p.geometry.physical_sector_size != 4096)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: physical sector size %u is not 512 or 4096",
                              p.geometry.physical_sector_size);
    if (p.geometry.size_bytes == 0 || p.geometry.size_bytes > LCOW_VHDX_MAX_SIZE ||
        p.geometry.size_bytes % p.geometry.logical_sector_size)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: virtual size %llu is not a non-zero multiple of %u bytes up "
                              "to 64 TiB",
                              (unsigned long long)p.geometry.size_bytes,
                              p.geometry.logical_sector_size);
    *out = p;
    return LCOW_OK;
}

/* Random version-4 GUID in on-disk order (Data3 is little-endian, so the
 * version nibble sits in byte 7). */
static lcow_code random_guid(uint8_t g[16], lcow_error *err)
{
    lcow_code rc = lcow_os_random(g, 16, err);
    if (rc)
        return rc;
    g[7] = (uint8_t)((g[7] & 0x0f) | 0x40);
    g[8] = (uint8_t)((g[8] & 0x3f) | 0x80);
    return LCOW_OK;
}

/* ---- writer ---- */

/* Allocated payload blocks: open-addressing map virtual block -> file MiB. */
typedef struct block_slot {
    uint64_t block_plus1; /* 0 = empty */
    uint64_t file_offset;
} block_slot;

struct lcow_vhdx_writer {
    lcow_vhdx_io io;
    lcow_vhdx_params p;
    uint64_t blocks; /* payload blocks */
    uint32_t ratio;
    uint64_t bat_entries;
    uint64_t bat_length; /* region length, 1 MiB multiple */
    uint64_t eof;        /* next payload offset */
    block_slot *slots;
    size_t slot_cap;
    size_t slot_count;
    bool finished;
};

static size_t slot_hash(uint64_t block, size_t cap)
{
    uint64_t h = block * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (cap - 1);
}

static block_slot *slot_find(const lcow_vhdx_writer *w, uint64_t block)
{
    if (!w->slot_cap)
        return NULL;
    for (size_t i = slot_hash(block, w->slot_cap);; i = (i + 1) & (w->slot_cap - 1)) {
        block_slot *s = &w->slots[i];
        if (s->block_plus1 == block + 1)
            return s;
        if (!s->block_plus1)
            return NULL;
    }
}

static lcow_code slot_insert(lcow_vhdx_writer *w, uint64_t block, uint64_t file_offset,
                             lcow_error *err)
{
    if ((w->slot_count + 1) * 2 > w->slot_cap) {
        size_t cap = w->slot_cap ? w->slot_cap * 2 : 64;
        block_slot *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
        for (size_t i = 0; i < w->slot_cap; i++) {
            if (!w->slots[i].block_plus1)
                continue;
            size_t j = slot_hash(w->slots[i].block_plus1 - 1, cap);
            while (slots[j].block_plus1)
                j = (j + 1) & (cap - 1);
            slots[j] = w->slots[i];
        }
        free(w->slots);
        w->slots = slots;
        w->slot_cap = cap;
    }
    size_t i = slot_hash(block, w->slot_cap);
    while (w->slots[i].block_plus1)
        i = (i + 1) & (w->slot_cap - 1);
    w->slots[i].block_plus1 = block + 1;
    w->slots[i].file_offset = file_offset;
    w->slot_count++;
    return LCOW_OK;
}

lcow_code lcow_vhdx_writer_create(const lcow_vhdx_io *io, const lcow_vhdx_params *params,
                                  lcow_vhdx_writer **out, lcow_error *err)
{
    *out = NULL;
    lcow_vhdx_params p;
    lcow_code rc = lcow_vhdx_params_normalize(params, &p, err);
    if (rc)
        return rc;
    if (guid_is_zero(p.disk_id) && (rc = random_guid(p.disk_id, err)))
        return rc;
    if (guid_is_zero(p.file_write_guid) && (rc = random_guid(p.file_write_guid, err)))
        return rc;
    if (guid_is_zero(p.data_write_guid) && (rc = random_guid(p.data_write_guid, err)))
        return rc;
    lcow_vhdx_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    w->io = *io;
    w->p = p;
    w->blocks = (p.geometry.size_bytes + p.geometry.block_size - 1) / p.geometry.block_size;
    w->ratio = chunk_ratio(p.geometry.block_size, p.geometry.logical_sector_size);
    w->bat_entries = lcow_vhdx_bat_entries(p.geometry.size_bytes, p.geometry.block_size,
                                           p.geometry.logical_sector_size);
    w->bat_length = round_up(w->bat_entries * 8, MiB);
    w->eof = BAT_OFFSET + w->bat_length;
    *out = w;
    return LCOW_OK;
}

lcow_code lcow_vhdx_writer_write(lcow_vhdx_writer *w, uint64_t off, const void *buf, size_t len,
                                 lcow_error *err)
{
    if (w->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "vhdx: write after finish");
    if (off > w->p.geometry.size_bytes || len > w->p.geometry.size_bytes - off)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: write of %zu bytes at %llu is past the virtual size %llu", len,
                              (unsigned long long)off,
                              (unsigned long long)w->p.geometry.size_bytes);
    const uint8_t *src = buf;
    while (len) {
        uint64_t block = off / w->p.geometry.block_size;
        uint64_t in_block = off % w->p.geometry.block_size;
        size_t n = len;
        if (n > w->p.geometry.block_size - in_block)
            n = (size_t)(w->p.geometry.block_size - in_block);
        block_slot *slot = slot_find(w, block);
        uint64_t file_offset;
        if (slot) {
            file_offset = slot->file_offset;
        } else if (all_zero(src, n)) {
            file_offset = 0; /* stays absent: reads as zero already */
        } else {
            file_offset = w->eof;
            lcow_code rc = slot_insert(w, block, file_offset, err);
            if (rc)
                return rc;
            w->eof += w->p.geometry.block_size;
        }
        if (file_offset) {
            lcow_code rc = w->io.pwrite(w->io.ctx, src, n, file_offset + in_block, err);
            if (rc)
                return lcow_error_wrap_code(err, rc, "vhdx: payload block %llu",
                                            (unsigned long long)block);
        }
        src += n;
        off += n;
        len -= n;
    }
    return LCOW_OK;
}

static int slot_cmp(const void *a, const void *b)
{
    const block_slot *x = a, *y = b;
    return x->block_plus1 < y->block_plus1 ? -1 : x->block_plus1 > y->block_plus1;
}

/* Streams the BAT in 1 MiB pieces, merging the sorted allocated blocks. With
 * NOT_PRESENT for absent blocks, all-zero pieces are skipped. */
static lcow_code write_bat(lcow_vhdx_writer *w, lcow_error *err)
{
    block_slot *sorted = NULL;
    size_t n_sorted = 0;
    if (w->slot_count) {
        sorted = malloc(w->slot_count * sizeof *sorted);
        if (!sorted)
            return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
        for (size_t i = 0; i < w->slot_cap; i++)
            if (w->slots[i].block_plus1)
                sorted[n_sorted++] = w->slots[i];
        qsort(sorted, n_sorted, sizeof *sorted, slot_cmp);
    }
    const size_t piece_entries = MiB / 8;
    uint8_t *piece = malloc(MiB);
    if (!piece) {
        free(sorted);
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    }
    uint64_t absent = w->p.absent_not_present ? LCOW_VHDX_BLOCK_NOT_PRESENT : LCOW_VHDX_BLOCK_ZERO;
    size_t next = 0;
    lcow_code rc = LCOW_OK;
    for (uint64_t first = 0; first < w->bat_entries && !rc; first += piece_entries) {
        uint64_t count = w->bat_entries - first;
        if (count > piece_entries)
            count = piece_entries;
        bool any = false;
        for (uint64_t k = 0; k < count; k++) {
            uint64_t idx = first + k;
            uint64_t entry;
            if ((idx + 1) % ((uint64_t)w->ratio + 1) == 0) {
                entry = 0; /* sector bitmap: not present in a dynamic disk */
            } else {
                uint64_t block = idx - idx / ((uint64_t)w->ratio + 1);
                while (next < n_sorted && sorted[next].block_plus1 - 1 < block)
                    next++;
                if (next < n_sorted && sorted[next].block_plus1 - 1 == block)
                    entry = sorted[next].file_offset | LCOW_VHDX_BLOCK_FULLY_PRESENT;
                else
                    entry = absent;
            }
            any |= entry != 0;
            lcow_le_put64(piece + k * 8, entry);
        }
        if (any)
            rc = w->io.pwrite(w->io.ctx, piece, (size_t)count * 8, BAT_OFFSET + first * 8, err);
    }
    free(piece);
    free(sorted);
    return rc ? lcow_error_wrap_code(err, rc, "vhdx: BAT") : LCOW_OK;
}

static lcow_code write_metadata(lcow_vhdx_writer *w, lcow_error *err)
{
    /* Table plus the items packed at 64 KiB, as qemu and Hyper-V do. */
    uint8_t buf[META_TABLE_SIZE + 64];
    memset(buf, 0, sizeof buf);
    memcpy(buf, "metadata", 8);
    struct {
        const uint8_t *guid;
        uint32_t offset, length, flags;
    } items[] = {
        {GUID_FILE_PARAMS, META_TABLE_SIZE + 0, 8, 0x4},
        {GUID_VIRTUAL_SIZE, META_TABLE_SIZE + 8, 8, 0x6},
        {GUID_DISK_ID, META_TABLE_SIZE + 16, 16, 0x6},
        {GUID_LOGICAL_SECTOR, META_TABLE_SIZE + 32, 4, 0x6},
        {GUID_PHYSICAL_SECTOR, META_TABLE_SIZE + 36, 4, 0x6},
    };
    const size_t n = sizeof items / sizeof items[0];
    lcow_le_put16(buf + 10, (uint16_t)n);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = buf + 32 + 32 * i;
        memcpy(e, items[i].guid, 16);
        lcow_le_put32(e + 16, items[i].offset);
        lcow_le_put32(e + 20, items[i].length);
        lcow_le_put32(e + 24, items[i].flags);
    }
    uint8_t *v = buf + META_TABLE_SIZE;
    lcow_le_put32(v + 0, w->p.geometry.block_size);
    lcow_le_put32(v + 4, 0); /* LeaveBlocksAllocated = 0, HasParent = 0 */
    lcow_le_put64(v + 8, w->p.geometry.size_bytes);
    memcpy(v + 16, w->p.disk_id, 16);
    lcow_le_put32(v + 32, w->p.geometry.logical_sector_size);
    lcow_le_put32(v + 36, w->p.geometry.physical_sector_size);
    lcow_code rc = w->io.pwrite(w->io.ctx, buf, META_TABLE_SIZE + 40, META_OFFSET, err);
    return rc ? lcow_error_wrap_code(err, rc, "vhdx: metadata") : LCOW_OK;
}

static lcow_code write_header_section(lcow_vhdx_writer *w, lcow_error *err)
{
    uint8_t *buf = calloc(1, REGION_SIZE);
    if (!buf)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    lcow_code rc;
    /* Region tables first, identical copies. */
    memcpy(buf, "regi", 4);
    lcow_le_put32(buf + 8, 2);
    memcpy(buf + 16, GUID_BAT, 16);
    lcow_le_put64(buf + 32, BAT_OFFSET);
    lcow_le_put32(buf + 40, (uint32_t)w->bat_length);
    lcow_le_put32(buf + 44, 1);
    memcpy(buf + 48, GUID_METADATA, 16);
    lcow_le_put64(buf + 64, META_OFFSET);
    lcow_le_put32(buf + 72, META_LENGTH);
    lcow_le_put32(buf + 76, 1);
    lcow_le_put32(buf + 4, lcow_crc32c(buf, REGION_SIZE));
    if ((rc = w->io.pwrite(w->io.ctx, buf, REGION_SIZE, REGION1_OFFSET, err)) ||
        (rc = w->io.pwrite(w->io.ctx, buf, REGION_SIZE, REGION2_OFFSET, err)))
        goto out;

    /* File type identifier. */
    memset(buf, 0, REGION_SIZE);
    memcpy(buf, "vhdxfile", 8);
    static const char creator[] = "lcowsnap " LCOW_VERSION;
    for (size_t i = 0; creator[i] && i < 255; i++)
        lcow_le_put16(buf + 8 + 2 * i, (uint8_t)creator[i]);
    if ((rc = w->io.pwrite(w->io.ctx, buf, 8 + 512, 0, err)))
        goto out;

    /* Headers last: until they exist the file is not a VHDX. Distinct
     * sequence numbers, because qemu rejects equal ones that differ. */
    for (int h = 0; h < 2; h++) {
        memset(buf, 0, HEADER_SIZE);
        memcpy(buf, "head", 4);
        lcow_le_put64(buf + 8, (uint64_t)h + 1);
        memcpy(buf + 16, w->p.file_write_guid, 16);
        memcpy(buf + 32, w->p.data_write_guid, 16);
        /* LogGuid (48) stays zero: no log to replay. */
        lcow_le_put16(buf + 64, 0);
        lcow_le_put16(buf + 66, 1);
        lcow_le_put32(buf + 68, LOG_LENGTH);
        lcow_le_put64(buf + 72, LOG_OFFSET);
        lcow_le_put32(buf + 4, lcow_crc32c(buf, HEADER_SIZE));
        if ((rc = w->io.pwrite(w->io.ctx, buf, HEADER_SIZE, h ? HEADER2_OFFSET : HEADER1_OFFSET,
                               err)))
            goto out;
    }
out:
    free(buf);
    return rc ? lcow_error_wrap_code(err, rc, "vhdx: header section") : LCOW_OK;
}

lcow_code lcow_vhdx_writer_finish(lcow_vhdx_writer *w, bool sync, lcow_error *err)
{
    if (w->finished)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "vhdx: finished twice");
    lcow_code rc;
    if ((rc = write_bat(w, err)) || (rc = write_metadata(w, err)) ||
        (rc = write_header_section(w, err)))
        return rc;
    if ((rc = w->io.truncate(w->io.ctx, w->eof, err)))
        return lcow_error_wrap_code(err, rc, "vhdx: set file length");
    if (sync && (rc = w->io.sync(w->io.ctx, err)))
        return lcow_error_wrap_code(err, rc, "vhdx: sync");
    w->finished = true;
    return LCOW_OK;
}

uint64_t lcow_vhdx_writer_allocated_blocks(const lcow_vhdx_writer *w)
{
    return w->slot_count;
}

uint64_t lcow_vhdx_writer_file_size(const lcow_vhdx_writer *w)
{
    return w->eof;
}

void lcow_vhdx_writer_free(lcow_vhdx_writer *w)
{
    if (!w)
        return;
    free(w->slots);
    free(w);
}

/* ---- reader ---- */

#define BAT_CACHE_ENTRIES 512u /* one 4 KiB page of the BAT */

struct lcow_vhdx_reader {
    lcow_vhdx_io io;
    lcow_vhdx_info info;
    uint8_t header[HEADER_SIZE]; /* the current header, as read */
    bool updating;
    uint64_t log_offset, log_length;
    uint64_t blocks;
    uint64_t bat_cache_first; /* first entry index cached, or UINT64_MAX */
    uint64_t bat_cache[BAT_CACHE_ENTRIES];
};

static lcow_code bad(lcow_error *err, const char *what)
{
    return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "vhdx: %s", what);
}

/* Reads exactly len bytes at off; a file too short is a format error. */
static lcow_code read_exact(lcow_vhdx_reader *r, void *buf, size_t len, uint64_t off,
                            const char *what, lcow_error *err)
{
    if (off > r->info.file_size || len > r->info.file_size - off)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: %s at %llu+%zu lies past the end of the file (%llu bytes)",
                              what, (unsigned long long)off, len,
                              (unsigned long long)r->info.file_size);
    size_t got = 0;
    lcow_code rc = r->io.pread(r->io.ctx, buf, len, off, &got, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "vhdx: read %s", what);
    if (got != len)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "vhdx: %s is truncated", what);
    return LCOW_OK;
}

static bool header_valid(const uint8_t *h)
{
    if (memcmp(h, "head", 4) != 0)
        return false;
    uint32_t stored = lcow_le_get32(h + 4);
    uint8_t copy[HEADER_SIZE];
    memcpy(copy, h, HEADER_SIZE);
    memset(copy + 4, 0, 4);
    return lcow_crc32c(copy, HEADER_SIZE) == stored;
}

static bool region_table_valid(uint8_t *t)
{
    if (memcmp(t, "regi", 4) != 0)
        return false;
    uint32_t stored = lcow_le_get32(t + 4);
    memset(t + 4, 0, 4);
    uint32_t crc = lcow_crc32c(t, REGION_SIZE);
    lcow_le_put32(t + 4, stored);
    return crc == stored && lcow_le_get32(t + 8) <= REGION_MAX_ENTRIES;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static lcow_code read_headers(lcow_vhdx_reader *r, lcow_error *err)
{
    uint8_t sig[8];
    lcow_code rc = read_exact(r, sig, 8, 0, "file identifier", err);
    if (rc)
        return rc;
    if (memcmp(sig, "vhdxfile", 8) != 0)
        return bad(err, "not a VHDX file (no \"vhdxfile\" signature)");
    uint8_t creator[512];
    if ((rc = read_exact(r, creator, sizeof creator, 8, "creator", err)))
        return rc;
    size_t n = 0;
    for (size_t i = 0; i < 256 && n + 1 < sizeof r->info.creator; i++) {
        uint16_t c = lcow_le_get16(creator + 2 * i);
        if (!c)
            break;
        r->info.creator[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    r->info.creator[n] = '\0';

    static uint8_t zero_guid[16];
    uint8_t h[2][HEADER_SIZE];
    bool valid[2];
    for (int i = 0; i < 2; i++) {
        if ((rc = read_exact(r, h[i], HEADER_SIZE, i ? HEADER2_OFFSET : HEADER1_OFFSET, "header",
                             err)))
            return rc;
        valid[i] = header_valid(h[i]);
    }
    int cur;
    if (valid[0] && valid[1]) {
        uint64_t s0 = lcow_le_get64(h[0] + 8), s1 = lcow_le_get64(h[1] + 8);
        if (s0 == s1 && memcmp(h[0], h[1], HEADER_SIZE) != 0)
            return bad(err, "both headers have the same sequence number but differ");
        cur = s1 > s0 ? 1 : 0;
    } else if (valid[0] || valid[1]) {
        cur = valid[0] ? 0 : 1;
    } else {
        return bad(err, "no valid header (bad signature or CRC-32C in both copies)");
    }
    const uint8_t *hd = h[cur];
    memcpy(r->header, hd, HEADER_SIZE);
    r->info.current_header = cur + 1;
    r->info.sequence_number = lcow_le_get64(hd + 8);
    if (lcow_le_get16(hd + 66) != 1)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED, "vhdx: header version %u is not 1",
                              lcow_le_get16(hd + 66));
    if (memcmp(hd + 48, zero_guid, 16) != 0)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                              "vhdx: the file has a log to replay (LogGuid set); open it once "
                              "with Hyper-V or qemu to replay it");
    r->log_length = lcow_le_get32(hd + 68);
    r->log_offset = lcow_le_get64(hd + 72);
    if (r->log_length % MiB || r->log_offset % MiB)
        return bad(err, "log offset or length is not a multiple of 1 MiB");
    return LCOW_OK;
}

static lcow_code read_regions(lcow_vhdx_reader *r, lcow_error *err)
{
    uint8_t *t = malloc(REGION_SIZE);
    if (!t)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    lcow_code rc = read_exact(r, t, REGION_SIZE, REGION1_OFFSET, "region table", err);
    if (!rc && !region_table_valid(t))
        rc = read_exact(r, t, REGION_SIZE, REGION2_OFFSET, "region table 2", err);
    if (!rc && !region_table_valid(t))
        rc = bad(err, "no valid region table (bad signature, CRC-32C or entry count)");
    bool have_bat = false, have_meta = false;
    uint32_t count = rc ? 0 : lcow_le_get32(t + 8);
    for (uint32_t i = 0; i < count && !rc; i++) {
        const uint8_t *e = t + 16 + 32 * i;
        uint64_t off = lcow_le_get64(e + 16);
        uint32_t len = lcow_le_get32(e + 24);
        uint32_t required = lcow_le_get32(e + 28) & 1;
        bool is_bat = memcmp(e, GUID_BAT, 16) == 0, is_meta = memcmp(e, GUID_METADATA, 16) == 0;
        if (!is_bat && !is_meta) {
            if (required)
                rc = lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                                    "vhdx: unknown required region in the region table");
            continue;
        }
        if ((is_bat && have_bat) || (is_meta && have_meta))
            rc = bad(err, "duplicate region table entry");
        else if (off % MiB || off < MiB || len % MiB || len == 0)
            rc = bad(err, "region offset or length is not a non-zero multiple of 1 MiB");
        else if (is_bat) {
            have_bat = true;
            r->info.bat_offset = off;
            r->info.bat_length = len;
        } else {
            have_meta = true;
            r->info.metadata_offset = off;
            r->info.metadata_length = len;
        }
    }
    if (!rc && (!have_bat || !have_meta))
        rc = bad(err, "region table lacks the BAT or the metadata region");
    if (!rc && ranges_overlap(r->info.bat_offset, r->info.bat_length, r->info.metadata_offset,
                              r->info.metadata_length))
        rc = bad(err, "BAT and metadata regions overlap");
    if (!rc && r->log_length &&
        (ranges_overlap(r->log_offset, r->log_length, r->info.bat_offset, r->info.bat_length) ||
         ranges_overlap(r->log_offset, r->log_length, r->info.metadata_offset,
                        r->info.metadata_length)))
        rc = bad(err, "log overlaps the BAT or the metadata region");
    free(t);
    return rc;
}

static lcow_code read_metadata(lcow_vhdx_reader *r, lcow_error *err)
{
    uint8_t *t = malloc(META_TABLE_SIZE);
    if (!t)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    lcow_code rc =
        read_exact(r, t, META_TABLE_SIZE, r->info.metadata_offset, "metadata table", err);
    if (!rc && memcmp(t, "metadata", 8) != 0)
        rc = bad(err, "metadata table signature is not \"metadata\"");
    uint16_t count = rc ? 0 : lcow_le_get16(t + 10);
    if (!rc && count > META_MAX_ENTRIES)
        rc = bad(err, "metadata table has more than 2047 entries");
    enum { FP, VS, ID, LS, PS, NITEMS };
    const uint8_t *guids[NITEMS] = {GUID_FILE_PARAMS, GUID_VIRTUAL_SIZE, GUID_DISK_ID,
                                    GUID_LOGICAL_SECTOR, GUID_PHYSICAL_SECTOR};
    const uint32_t sizes[NITEMS] = {8, 8, 16, 4, 4};
    uint8_t values[NITEMS][16];
    bool seen[NITEMS] = {false};
    for (uint16_t i = 0; i < count && !rc; i++) {
        const uint8_t *e = t + 32 + 32 * (size_t)i;
        uint32_t off = lcow_le_get32(e + 16), len = lcow_le_get32(e + 20),
                 flags = lcow_le_get32(e + 24);
        bool required = flags & 0x4;
        if (len == 0) {
            if (off != 0)
                rc = bad(err, "metadata item of length 0 has a non-zero offset");
            continue;
        }
        if (off < META_TABLE_SIZE || len > META_ITEM_MAX ||
            (uint64_t)off + len > r->info.metadata_length) {
            rc = bad(err, "metadata item lies outside the metadata region");
            break;
        }
        int k = -1;
        for (int j = 0; j < NITEMS; j++)
            if (memcmp(e, guids[j], 16) == 0)
                k = j;
        if (k < 0) {
            if (memcmp(e, GUID_PARENT_LOCATOR, 16) == 0)
                rc = lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                                    "vhdx: differencing disks (parent locator) are not supported");
            else if (required)
                rc = lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                                    "vhdx: unknown required metadata item");
            continue;
        }
        if (seen[k]) {
            rc = bad(err, "duplicate metadata item");
            break;
        }
        if (len < sizes[k]) {
            rc = bad(err, "metadata item is too short");
            break;
        }
        seen[k] = true;
        rc =
            read_exact(r, values[k], sizes[k], r->info.metadata_offset + off, "metadata item", err);
    }
    free(t);
    if (rc)
        return rc;
    for (int j = 0; j < NITEMS; j++)
        if (!seen[j])
            return bad(err, "a required metadata item (file parameters, virtual size, disk id "
                            "or sector sizes) is missing");
    lcow_vhdx_info *in = &r->info;
    in->block_size = lcow_le_get32(values[FP]);
    uint32_t fp_flags = lcow_le_get32(values[FP] + 4);
    in->leave_blocks_allocated = fp_flags & 1;
    if (fp_flags & 2)
        return lcow_error_set(err, LCOW_NOT_IMPLEMENTED,
                              "vhdx: differencing disks (HasParent) are not supported");
    in->virtual_size = lcow_le_get64(values[VS]);
    memcpy(in->disk_id, values[ID], 16);
    in->logical_sector_size = lcow_le_get32(values[LS]);
    in->physical_sector_size = lcow_le_get32(values[PS]);
    if (!is_pow2(in->block_size) || in->block_size < LCOW_VHDX_MIN_BLOCK ||
        in->block_size > LCOW_VHDX_MAX_BLOCK)
        return bad(err, "block size is not a power of two between 1 and 256 MiB");
    if (in->logical_sector_size != 512 && in->logical_sector_size != 4096)
        return bad(err, "logical sector size is not 512 or 4096");
    if (in->physical_sector_size != 512 && in->physical_sector_size != 4096)
        return bad(err, "physical sector size is not 512 or 4096");
    if (in->virtual_size == 0 || in->virtual_size > LCOW_VHDX_MAX_SIZE ||
        in->virtual_size % in->logical_sector_size)
        return bad(err, "virtual size is zero, above 64 TiB or not a multiple of the sector size");
    in->chunk_ratio = chunk_ratio(in->block_size, in->logical_sector_size);
    in->bat_entries =
        lcow_vhdx_bat_entries(in->virtual_size, in->block_size, in->logical_sector_size);
    if (in->bat_entries * 8 > in->bat_length)
        return bad(err, "BAT region is too small for the virtual size");
    /* Every entry must be readable: bounds the work of check() by the file
     * size rather than by header fields. */
    if (in->bat_offset + in->bat_entries * 8 > in->file_size)
        return bad(err, "BAT lies past the end of the file");
    r->blocks = (in->virtual_size + in->block_size - 1) / in->block_size;
    return LCOW_OK;
}

lcow_code lcow_vhdx_reader_open(const lcow_vhdx_io *io, lcow_vhdx_reader **out, lcow_error *err)
{
    *out = NULL;
    lcow_vhdx_reader *r = calloc(1, sizeof *r);
    if (!r)
        return lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
    r->io = *io;
    r->bat_cache_first = UINT64_MAX;
    lcow_code rc = io->size(io->ctx, &r->info.file_size, err);
    if (!rc)
        rc = read_headers(r, err);
    if (!rc)
        rc = read_regions(r, err);
    if (!rc)
        rc = read_metadata(r, err);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return LCOW_OK;
}

const lcow_vhdx_info *lcow_vhdx_reader_info(const lcow_vhdx_reader *r)
{
    return &r->info;
}

static lcow_code bat_entry(lcow_vhdx_reader *r, uint64_t idx, uint64_t *entry, lcow_error *err)
{
    uint64_t first = idx - idx % BAT_CACHE_ENTRIES;
    if (first != r->bat_cache_first) {
        uint64_t count = r->info.bat_entries - first;
        if (count > BAT_CACHE_ENTRIES)
            count = BAT_CACHE_ENTRIES;
        uint8_t raw[BAT_CACHE_ENTRIES * 8];
        r->bat_cache_first = UINT64_MAX;
        lcow_code rc =
            read_exact(r, raw, (size_t)count * 8, r->info.bat_offset + first * 8, "BAT", err);
        if (rc)
            return rc;
        for (uint64_t i = 0; i < count; i++)
            r->bat_cache[i] = lcow_le_get64(raw + i * 8);
        r->bat_cache_first = first;
    }
    *entry = r->bat_cache[idx - first];
    return LCOW_OK;
}

lcow_code lcow_vhdx_reader_block(lcow_vhdx_reader *r, uint64_t block, lcow_vhdx_block_state *state,
                                 uint64_t *file_offset, lcow_error *err)
{
    if (block >= r->blocks)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "vhdx: block %llu is past the end",
                              (unsigned long long)block);
    uint64_t e;
    lcow_code rc = bat_entry(r, bat_index(block, r->info.chunk_ratio), &e, err);
    if (rc)
        return rc;
    *state = (lcow_vhdx_block_state)(e & BAT_STATE_MASK);
    if (file_offset)
        *file_offset = e & BAT_OFFSET_MASK;
    return LCOW_OK;
}

/* Where a present block may lie: after the header section, inside the file,
 * clear of the log, metadata and BAT. */
static bool present_block_placement_ok(const lcow_vhdx_reader *r, uint64_t off)
{
    uint64_t bs = r->info.block_size;
    if (off < MiB || off > r->info.file_size || bs > r->info.file_size - off)
        return false;
    if (r->log_length && ranges_overlap(off, bs, r->log_offset, r->log_length))
        return false;
    return !ranges_overlap(off, bs, r->info.metadata_offset, r->info.metadata_length) &&
           !ranges_overlap(off, bs, r->info.bat_offset, r->info.bat_length);
}

lcow_code lcow_vhdx_reader_read(lcow_vhdx_reader *r, uint64_t off, void *buf, size_t len,
                                lcow_error *err)
{
    if (off > r->info.virtual_size || len > r->info.virtual_size - off)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "vhdx: read of %zu bytes at %llu is past the virtual size %llu", len,
                              (unsigned long long)off, (unsigned long long)r->info.virtual_size);
    uint8_t *dst = buf;
    while (len) {
        uint64_t block = off / r->info.block_size;
        uint64_t in_block = off % r->info.block_size;
        size_t n = len;
        if (n > r->info.block_size - in_block)
            n = (size_t)(r->info.block_size - in_block);
        lcow_vhdx_block_state st = LCOW_VHDX_BLOCK_NOT_PRESENT;
        uint64_t foff = 0;
        lcow_code rc = lcow_vhdx_reader_block(r, block, &st, &foff, err);
        if (rc)
            return rc;
        switch (st) {
        case LCOW_VHDX_BLOCK_NOT_PRESENT:
        case LCOW_VHDX_BLOCK_UNDEFINED:
        case LCOW_VHDX_BLOCK_ZERO:
        case LCOW_VHDX_BLOCK_UNMAPPED:
            memset(dst, 0, n);
            break;
        case LCOW_VHDX_BLOCK_FULLY_PRESENT:
            if (!present_block_placement_ok(r, foff))
                return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                      "vhdx: block %llu points at %llu, outside the payload area",
                                      (unsigned long long)block, (unsigned long long)foff);
            if ((rc = read_exact(r, dst, n, foff + in_block, "payload block", err)))
                return rc;
            break;
        default:
            return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                  "vhdx: block %llu has state %u, invalid for a dynamic disk",
                                  (unsigned long long)block, (unsigned)st);
        }
        dst += n;
        off += n;
        len -= n;
    }
    return LCOW_OK;
}

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

lcow_code lcow_vhdx_reader_check(lcow_vhdx_reader *r, lcow_vhdx_check_report *report,
                                 lcow_error *err)
{
    memset(report, 0, sizeof *report);
    /* Present blocks must fit in the file, so this array is bounded by the
     * file size, never by the BAT's claims. */
    uint64_t *offsets = NULL;
    size_t n = 0, cap = 0;
    lcow_code rc = LCOW_OK;
    uint32_t period = r->info.chunk_ratio + 1;
    for (uint64_t idx = 0; idx < r->info.bat_entries && !rc; idx++) {
        uint64_t e;
        if ((rc = bat_entry(r, idx, &e, err)))
            break;
        if ((idx + 1) % period == 0) {
            if (e != 0)
                rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                    "vhdx: sector bitmap entry %llu is not empty in a dynamic "
                                    "disk",
                                    (unsigned long long)idx);
            continue;
        }
        uint64_t block = idx - idx / period;
        unsigned st = (unsigned)(e & BAT_STATE_MASK);
        if (e & ~BAT_OFFSET_MASK & ~(uint64_t)BAT_STATE_MASK) {
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "vhdx: BAT entry of block %llu has reserved bits set",
                                (unsigned long long)block);
            break;
        }
        switch (st) {
        case LCOW_VHDX_BLOCK_NOT_PRESENT:
            report->absent_blocks++;
            break;
        case LCOW_VHDX_BLOCK_UNDEFINED:
        case LCOW_VHDX_BLOCK_ZERO:
        case LCOW_VHDX_BLOCK_UNMAPPED:
            report->zero_blocks++;
            break;
        case LCOW_VHDX_BLOCK_FULLY_PRESENT: {
            uint64_t off = e & BAT_OFFSET_MASK;
            if (!present_block_placement_ok(r, off)) {
                rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                    "vhdx: block %llu at %llu is past the end of the file or "
                                    "overlaps the headers, log, metadata or BAT",
                                    (unsigned long long)block, (unsigned long long)off);
                break;
            }
            if (!lcow_grow(&offsets, &cap, n + 1, sizeof *offsets)) {
                rc = lcow_error_set(err, LCOW_RESOURCE_EXHAUSTED, "vhdx: out of memory");
                break;
            }
            offsets[n++] = off;
            report->present_blocks++;
            break;
        }
        default:
            rc = lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                                "vhdx: block %llu has state %u, invalid for a dynamic disk",
                                (unsigned long long)block, st);
        }
    }
    if (!rc && n > 1) {
        qsort(offsets, n, sizeof *offsets, u64_cmp);
        for (size_t i = 1; i < n && !rc; i++)
            if (offsets[i] - offsets[i - 1] < r->info.block_size)
                rc = lcow_error_set(
                    err, LCOW_INVALID_ARGUMENT, "vhdx: payload blocks at %llu and %llu overlap",
                    (unsigned long long)offsets[i - 1], (unsigned long long)offsets[i]);
    }
    free(offsets);
    return rc;
}

lcow_code lcow_vhdx_reader_begin_update(lcow_vhdx_reader *r, lcow_error *err)
{
    if (r->updating)
        return LCOW_OK;
    if (!r->io.pwrite || !r->io.sync)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION, "vhdx: opened read-only");
    uint8_t h[HEADER_SIZE];
    memcpy(h, r->header, HEADER_SIZE);
    uint64_t seq = r->info.sequence_number + 1;
    lcow_le_put64(h + 8, seq);
    lcow_code rc;
    if ((rc = random_guid(h + 16, err)) || (rc = random_guid(h + 32, err)))
        return rc;
    memset(h + 4, 0, 4);
    lcow_le_put32(h + 4, lcow_crc32c(h, HEADER_SIZE));
    /* The other copy: until it is complete the current one stays valid. */
    uint64_t at = r->info.current_header == 1 ? HEADER2_OFFSET : HEADER1_OFFSET;
    if ((rc = r->io.pwrite(r->io.ctx, h, HEADER_SIZE, at, err)) ||
        (rc = r->io.sync(r->io.ctx, err)))
        return lcow_error_wrap_code(err, rc, "vhdx: header update");
    memcpy(r->header, h, HEADER_SIZE);
    r->info.sequence_number = seq;
    r->info.current_header = r->info.current_header == 1 ? 2 : 1;
    r->updating = true;
    return LCOW_OK;
}

lcow_code lcow_vhdx_reader_set_block(lcow_vhdx_reader *r, uint64_t block,
                                     lcow_vhdx_block_state state, uint64_t file_offset,
                                     lcow_error *err)
{
    if (!r->updating)
        return lcow_error_set(err, LCOW_FAILED_PRECONDITION,
                              "vhdx: BAT write before the header update");
    if (block >= r->blocks || file_offset % MiB)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "vhdx: bad BAT update of block %llu",
                              (unsigned long long)block);
    uint64_t idx = bat_index(block, r->info.chunk_ratio);
    uint64_t e = file_offset | ((uint64_t)state & BAT_STATE_MASK);
    uint8_t raw[8];
    lcow_le_put64(raw, e);
    lcow_code rc = r->io.pwrite(r->io.ctx, raw, 8, r->info.bat_offset + idx * 8, err);
    if (rc)
        return lcow_error_wrap_code(err, rc, "vhdx: BAT entry of block %llu",
                                    (unsigned long long)block);
    if (r->bat_cache_first != UINT64_MAX && idx >= r->bat_cache_first &&
        idx - r->bat_cache_first < BAT_CACHE_ENTRIES)
        r->bat_cache[idx - r->bat_cache_first] = e;
    return LCOW_OK;
}

uint64_t lcow_vhdx_reader_payload_start(const lcow_vhdx_reader *r)
{
    uint64_t end = MiB;
    uint64_t ends[3] = {r->log_length ? r->log_offset + r->log_length : 0,
                        r->info.metadata_offset + r->info.metadata_length,
                        r->info.bat_offset + r->info.bat_length};
    for (int i = 0; i < 3; i++)
        if (ends[i] > end)
            end = ends[i];
    return round_up(end, MiB);
}

void lcow_vhdx_reader_free(lcow_vhdx_reader *r)
{
    free(r);
}

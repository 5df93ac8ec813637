/* Dynamic VHDX files (MS-VHDX v1): a writer that stores only the payload
 * blocks holding non-zero data, and a reader that opens what it writes and
 * what qemu-img writes (no log replay, no differencing disks).
 *
 * Layout of written files (docs/disk-format.md has the reasoning):
 *   0       file type identifier, headers 1/2, region tables 1/2
 *   1 MiB   log (empty: LogGuid is zero)
 *   2 MiB   metadata region (1 MiB)
 *   3 MiB   BAT (rounded up to 1 MiB)
 *   then    payload blocks in allocation order, each 1 MiB aligned
 * so an empty disk is 4 MiB for anything up to ~512 GiB at 1 MiB blocks.
 *
 * Both sides do file I/O through lcow_vhdx_io, so tests and the fuzzer can run
 * them over memory; lcow_vhdx_io_file() adapts a core/os file. */
#ifndef LCOW_VHDX_H
#define LCOW_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/geometry.h"
#include "core/os/os.h"

#define LCOW_VHDX_MAX_SIZE (64ull << 40)
#define LCOW_VHDX_MIN_BLOCK (1u << 20)
#define LCOW_VHDX_MAX_BLOCK (256u << 20)
#define LCOW_VHDX_MiB (1u << 20)

/* BAT payload block states (MS-VHDX 2.5.1.1). */
typedef enum lcow_vhdx_block_state {
    LCOW_VHDX_BLOCK_NOT_PRESENT = 0,
    LCOW_VHDX_BLOCK_UNDEFINED = 1,
    LCOW_VHDX_BLOCK_ZERO = 2,
    LCOW_VHDX_BLOCK_UNMAPPED = 3,
    LCOW_VHDX_BLOCK_FULLY_PRESENT = 6,
    LCOW_VHDX_BLOCK_PARTIALLY_PRESENT = 7,
} lcow_vhdx_block_state;

/* Positional I/O over a file or a memory buffer. pread reports in *got how
 * many bytes exist at off (fewer at EOF); truncate and sync may be NULL for
 * read-only use. */
typedef struct lcow_vhdx_io {
    void *ctx;
    lcow_code (*pread)(void *ctx, void *buf, size_t len, uint64_t off, size_t *got,
                       lcow_error *err);
    lcow_code (*pwrite)(void *ctx, const void *buf, size_t len, uint64_t off, lcow_error *err);
    lcow_code (*size)(void *ctx, uint64_t *size, lcow_error *err);
    lcow_code (*truncate)(void *ctx, uint64_t size, lcow_error *err);
    lcow_code (*sync)(void *ctx, lcow_error *err);
} lcow_vhdx_io;

/* An io over an open lcow_file (not owned). */
lcow_vhdx_io lcow_vhdx_io_file(lcow_file *f);

/* ---- writer ---- */

typedef struct lcow_vhdx_params {
    lcow_disk_geometry geometry;
    /* State of blocks never written. false (default): ZERO, which the spec
     * defines to read as zeros; true: NOT_PRESENT, as a fresh dynamic disk
     * from virtdisk or `qemu-img create -o block_state_zero=off`. */
    bool absent_not_present;
    /* GUIDs in on-disk (mixed-endian) byte order; all zero = random. */
    uint8_t disk_id[16];
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
} lcow_vhdx_params;

/* Fills defaults (zero fields) into *out and validates; INVALID_ARGUMENT
 * with the offending field otherwise. */
lcow_code lcow_vhdx_params_normalize(const lcow_vhdx_params *in, lcow_vhdx_params *out,
                                     lcow_error *err);

/* Number of BAT entries (payload + sector bitmap) for the geometry. */
uint64_t lcow_vhdx_bat_entries(uint64_t virtual_size, uint32_t block_size,
                               uint32_t logical_sector_size);

typedef struct lcow_vhdx_writer lcow_vhdx_writer;

/* Starts a new VHDX on io, which must be empty (a new file). Nothing is
 * written until the first non-zero data or lcow_vhdx_writer_finish(). */
lcow_code lcow_vhdx_writer_create(const lcow_vhdx_io *io, const lcow_vhdx_params *params,
                                  lcow_vhdx_writer **out, lcow_error *err);
/* Writes virtual disk bytes [off, off+len). Ranges of unallocated blocks that
 * are all zero are skipped; any other block touched is allocated at the end
 * of the file (its untouched bytes read as zero). */
lcow_code lcow_vhdx_writer_write(lcow_vhdx_writer *w, uint64_t off, const void *buf, size_t len,
                                 lcow_error *err);
/* Writes BAT, metadata, region tables, file identifier and headers (in that
 * order, headers last), sets the file length, then syncs if sync is true. */
lcow_code lcow_vhdx_writer_finish(lcow_vhdx_writer *w, bool sync, lcow_error *err);
/* Payload blocks allocated so far, and the file length finish() sets. */
uint64_t lcow_vhdx_writer_allocated_blocks(const lcow_vhdx_writer *w);
uint64_t lcow_vhdx_writer_file_size(const lcow_vhdx_writer *w);
void lcow_vhdx_writer_free(lcow_vhdx_writer *w);

/* ---- reader ---- */

typedef struct lcow_vhdx_info {
    uint64_t virtual_size;
    uint32_t block_size;
    uint32_t logical_sector_size;
    uint32_t physical_sector_size;
    bool leave_blocks_allocated;
    uint8_t disk_id[16];
    uint64_t sequence_number; /* of the current header */
    int current_header;       /* 1 or 2 */
    uint64_t bat_offset;
    uint64_t bat_length;
    uint64_t bat_entries;
    uint32_t chunk_ratio;
    uint64_t metadata_offset;
    uint64_t metadata_length;
    uint64_t file_size;
    char creator[128]; /* file identifier creator, UTF-16 reduced to ASCII */
} lcow_vhdx_info;

typedef struct lcow_vhdx_reader lcow_vhdx_reader;

/* Opens and validates a VHDX: file identifier, header checksums and choice,
 * region tables, metadata items, BAT placement. Refuses files with a log to
 * replay, a parent, or unknown required regions/items (NOT_IMPLEMENTED), and
 * malformed ones (INVALID_ARGUMENT naming the structure). Allocates only
 * fixed small buffers, whatever the header fields say. */
lcow_code lcow_vhdx_reader_open(const lcow_vhdx_io *io, lcow_vhdx_reader **out, lcow_error *err);
const lcow_vhdx_info *lcow_vhdx_reader_info(const lcow_vhdx_reader *r);
/* State and file offset of payload block `block` (0-based virtual block). */
lcow_code lcow_vhdx_reader_block(lcow_vhdx_reader *r, uint64_t block, lcow_vhdx_block_state *state,
                                 uint64_t *file_offset, lcow_error *err);
/* Reads virtual bytes [off, off+len); absent blocks read as zero. */
lcow_code lcow_vhdx_reader_read(lcow_vhdx_reader *r, uint64_t off, void *buf, size_t len,
                                lcow_error *err);

typedef struct lcow_vhdx_check_report {
    uint64_t present_blocks; /* FULLY_PRESENT payload blocks */
    uint64_t zero_blocks;    /* ZERO, UNMAPPED, UNDEFINED */
    uint64_t absent_blocks;  /* NOT_PRESENT */
} lcow_vhdx_check_report;

/* Walks the whole BAT like `qemu-img check`: every state valid for a dynamic
 * disk, sector-bitmap entries empty, present blocks inside the file, 1 MiB
 * aligned, unique and clear of the headers, log, metadata and BAT. */
lcow_code lcow_vhdx_reader_check(lcow_vhdx_reader *r, lcow_vhdx_check_report *report,
                                 lcow_error *err);

/* ---- in-place updates (core/disk/compact.c) ----
 * The io given to lcow_vhdx_reader_open must then have pwrite and sync.
 *
 * Starts modifying the file, as MS-VHDX 2.2.2 asks before the first change:
 * writes the non-current header with the next sequence number and new
 * FileWriteGuid and DataWriteGuid (LogGuid stays zero: no log), then syncs.
 * A crash leaves either header current, both valid. Once per open. */
lcow_code lcow_vhdx_reader_begin_update(lcow_vhdx_reader *r, lcow_error *err);
/* Writes the BAT entry of payload block `block`: state with file_offset (a
 * 1 MiB multiple; 0 for a state without data). Only after begin_update; the
 * caller syncs (io.sync) when its ordering needs the entry durable. One
 * aligned 8-byte write: a crash leaves the old or the new entry. */
lcow_code lcow_vhdx_reader_set_block(lcow_vhdx_reader *r, uint64_t block,
                                     lcow_vhdx_block_state state, uint64_t file_offset,
                                     lcow_error *err);
/* Where the first payload block may start: past the headers, log, metadata
 * and BAT regions (1 MiB aligned). */
uint64_t lcow_vhdx_reader_payload_start(const lcow_vhdx_reader *r);

void lcow_vhdx_reader_free(lcow_vhdx_reader *r);

#endif

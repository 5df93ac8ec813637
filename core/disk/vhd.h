/* The 512-byte footer of a fixed VHD (Microsoft "Virtual Hard Disk Image
 * Format Specification" 1.0), as hcsshim's tar2ext4 appends it to layer.vhd:
 * the disk is the file itself minus the footer, so a raw ext4 image becomes
 * a VHD by appending 512 bytes.
 *
 * What tar2ext4 (hcsshim 7c9ff7f, ext4/tar2ext4/vhdfooter.go) writes, all
 * integers big-endian:
 *   0   cookie "conectix"          36  creator host OS: zero
 *   8   features 2 (reserved bit)  40  original size = disk bytes
 *   12  format version 0x00010000  48  current size  = disk bytes
 *   16  data offset ~0 (fixed)     56  disk geometry: zero (not computed)
 *   24  time stamp: zero           60  disk type 2 (fixed)
 *   28  creator application: zero  64  checksum: ~(byte sum, field zeroed)
 *   32  creator version 0x000a0000 68  unique id: 16 random bytes
 *                                  84  saved state 0, then 427 zero bytes
 * Without geometry `qemu-img info` needs
 * `--image-opts driver=vpc,force_size_calc=current_size` to see the size. */
#ifndef LCOW_DISK_VHD_H
#define LCOW_DISK_VHD_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/base/errors.h"
#include "core/os/os.h"

#define LCOW_VHD_FOOTER_SIZE 512
#define LCOW_VHD_COOKIE "conectix"
#define LCOW_VHD_FEATURES_RESERVED 0x2u
#define LCOW_VHD_FORMAT_VERSION 0x00010000u
#define LCOW_VHD_FIXED_DATA_OFFSET UINT64_MAX
#define LCOW_VHD_CREATOR_VERSION_TAR2EXT4 0x000a0000u
#define LCOW_VHD_DISK_TYPE_FIXED 2u
#define LCOW_VHD_DISK_TYPE_DYNAMIC 3u
#define LCOW_VHD_DISK_TYPE_DIFFERENCING 4u

/* A footer, field by field, in host byte order. */
typedef struct lcow_vhd_footer {
    uint8_t cookie[8];
    uint32_t features;
    uint32_t format_version;
    uint64_t data_offset;
    uint32_t timestamp; /* seconds since 2000-01-01 00:00:00 UTC */
    uint8_t creator_application[4];
    uint32_t creator_version;
    uint8_t creator_host_os[4];
    uint64_t original_size;
    uint64_t current_size;
    uint32_t disk_geometry; /* cylinders:16 heads:8 sectors-per-track:8 */
    uint32_t disk_type;
    uint32_t checksum;
    uint8_t unique_id[16];
    uint8_t saved_state;
    bool reserved_zero; /* parse: the 427 reserved bytes are all zero */
} lcow_vhd_footer;

/* The footer tar2ext4 writes for a fixed disk of disk_bytes (the length of
 * everything before the footer: ext4 image, and verity superblock and tree
 * when present). unique_id NULL: a fresh random (version 4) UUID. timestamp
 * is stored as given: tar2ext4 leaves it 0, and so does the converter, so
 * that two conversions differ only in the UUID (lcow_vhd_timestamp() turns
 * a time_t into the footer's epoch for callers that want one). */
lcow_code lcow_vhd_footer_fixed(uint64_t disk_bytes, const uint8_t unique_id[16],
                                uint32_t timestamp, uint8_t out[LCOW_VHD_FOOTER_SIZE],
                                lcow_error *err);

/* Serialises f (its checksum field is ignored and computed). */
void lcow_vhd_footer_encode(const lcow_vhd_footer *f, uint8_t out[LCOW_VHD_FOOTER_SIZE]);

/* The footer checksum: the one's complement of the sum of all 512 bytes,
 * taking the checksum field (bytes 64..67) as zero. */
uint32_t lcow_vhd_checksum(const uint8_t footer[LCOW_VHD_FOOTER_SIZE]);

/* Decodes every field; INVALID_ARGUMENT unless the cookie is "conectix" and
 * the checksum matches. Other fields are reported, not judged. */
lcow_code lcow_vhd_footer_parse(const uint8_t in[LCOW_VHD_FOOTER_SIZE], lcow_vhd_footer *out,
                                lcow_error *err);

/* Validates a fixed VHD whose file is file_bytes long and ends with footer:
 * parse, then the reserved feature bit, format version 1.0, disk type fixed,
 * data offset ~0, current size == original size == file_bytes - 512
 * (a multiple of 512), reserved bytes zero, saved state 0. INVALID_ARGUMENT
 * naming the first field that is wrong. */
lcow_code lcow_vhd_check_fixed(const uint8_t footer[LCOW_VHD_FOOTER_SIZE], uint64_t file_bytes,
                               lcow_vhd_footer *out, lcow_error *err);

/* Reads the last 512 bytes of f and runs lcow_vhd_check_fixed() on them;
 * *disk_bytes (may be NULL) receives the size of the disk before the footer. */
lcow_code lcow_vhd_check_file(lcow_file *f, lcow_vhd_footer *out, uint64_t *disk_bytes,
                              lcow_error *err);

/* Seconds since the VHD epoch (2000-01-01 00:00:00 UTC) for a Unix time;
 * 0 before the epoch, saturated at UINT32_MAX. */
uint32_t lcow_vhd_timestamp(time_t unix_time);

#endif

/* Fixed VHD footer (see vhd.h for the field table). */
#include "core/disk/vhd.h"

#include <string.h>

#define VHD_EPOCH_UNIX 946684800 /* 2000-01-01 00:00:00 UTC */
#define OFF_CHECKSUM 64
#define OFF_RESERVED 85

static void be_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void be_put64(uint8_t *p, uint64_t v)
{
    be_put32(p, (uint32_t)(v >> 32));
    be_put32(p + 4, (uint32_t)v);
}

static uint32_t be_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be_get64(const uint8_t *p)
{
    return (uint64_t)be_get32(p) << 32 | be_get32(p + 4);
}

uint32_t lcow_vhd_checksum(const uint8_t footer[LCOW_VHD_FOOTER_SIZE])
{
    uint32_t sum = 0;
    for (int i = 0; i < LCOW_VHD_FOOTER_SIZE; i++)
        if (i < OFF_CHECKSUM || i >= OFF_CHECKSUM + 4)
            sum += footer[i];
    return ~sum;
}

void lcow_vhd_footer_encode(const lcow_vhd_footer *f, uint8_t out[LCOW_VHD_FOOTER_SIZE])
{
    memset(out, 0, LCOW_VHD_FOOTER_SIZE);
    memcpy(out + 0, f->cookie, 8);
    be_put32(out + 8, f->features);
    be_put32(out + 12, f->format_version);
    be_put64(out + 16, f->data_offset);
    be_put32(out + 24, f->timestamp);
    memcpy(out + 28, f->creator_application, 4);
    be_put32(out + 32, f->creator_version);
    memcpy(out + 36, f->creator_host_os, 4);
    be_put64(out + 40, f->original_size);
    be_put64(out + 48, f->current_size);
    be_put32(out + 56, f->disk_geometry);
    be_put32(out + 60, f->disk_type);
    memcpy(out + 68, f->unique_id, 16);
    out[84] = f->saved_state;
    be_put32(out + OFF_CHECKSUM, lcow_vhd_checksum(out));
}

lcow_code lcow_vhd_footer_fixed(uint64_t disk_bytes, const uint8_t unique_id[16],
                                uint32_t timestamp, uint8_t out[LCOW_VHD_FOOTER_SIZE],
                                lcow_error *err)
{
    if (disk_bytes > INT64_MAX) /* tar2ext4's sizes are int64 */
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "VHD disk size %llu too large",
                              (unsigned long long)disk_bytes);
    lcow_vhd_footer f = {
        .features = LCOW_VHD_FEATURES_RESERVED,
        .format_version = LCOW_VHD_FORMAT_VERSION,
        .data_offset = LCOW_VHD_FIXED_DATA_OFFSET,
        .timestamp = timestamp,
        .creator_version = LCOW_VHD_CREATOR_VERSION_TAR2EXT4,
        .original_size = disk_bytes,
        .current_size = disk_bytes,
        .disk_type = LCOW_VHD_DISK_TYPE_FIXED,
    };
    memcpy(f.cookie, LCOW_VHD_COOKIE, 8);
    if (unique_id) {
        memcpy(f.unique_id, unique_id, 16);
    } else {
        lcow_code rc = lcow_os_random(f.unique_id, sizeof f.unique_id, err);
        if (rc)
            return lcow_error_wrap(err, "VHD footer unique id");
        f.unique_id[6] = (uint8_t)((f.unique_id[6] & 0x0f) | 0x40); /* version 4 */
        f.unique_id[8] = (uint8_t)((f.unique_id[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    }
    lcow_vhd_footer_encode(&f, out);
    return LCOW_OK;
}

lcow_code lcow_vhd_footer_parse(const uint8_t in[LCOW_VHD_FOOTER_SIZE], lcow_vhd_footer *out,
                                lcow_error *err)
{
    memset(out, 0, sizeof *out);
    memcpy(out->cookie, in, 8);
    out->features = be_get32(in + 8);
    out->format_version = be_get32(in + 12);
    out->data_offset = be_get64(in + 16);
    out->timestamp = be_get32(in + 24);
    memcpy(out->creator_application, in + 28, 4);
    out->creator_version = be_get32(in + 32);
    memcpy(out->creator_host_os, in + 36, 4);
    out->original_size = be_get64(in + 40);
    out->current_size = be_get64(in + 48);
    out->disk_geometry = be_get32(in + 56);
    out->disk_type = be_get32(in + 60);
    out->checksum = be_get32(in + OFF_CHECKSUM);
    memcpy(out->unique_id, in + 68, 16);
    out->saved_state = in[84];
    out->reserved_zero = true;
    for (int i = OFF_RESERVED; i < LCOW_VHD_FOOTER_SIZE; i++)
        if (in[i])
            out->reserved_zero = false;

    if (memcmp(out->cookie, LCOW_VHD_COOKIE, 8) != 0)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "VHD footer: no 'conectix' cookie");
    uint32_t want = lcow_vhd_checksum(in);
    if (out->checksum != want)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "VHD footer: checksum 0x%08x, computed 0x%08x", out->checksum, want);
    return LCOW_OK;
}

lcow_code lcow_vhd_check_fixed(const uint8_t footer[LCOW_VHD_FOOTER_SIZE], uint64_t file_bytes,
                               lcow_vhd_footer *out, lcow_error *err)
{
    lcow_vhd_footer local;
    lcow_vhd_footer *f = out ? out : &local;
    lcow_code rc = lcow_vhd_footer_parse(footer, f, err);
    if (rc)
        return rc;
    const char *bad = NULL;
    if (!(f->features & LCOW_VHD_FEATURES_RESERVED))
        bad = "features lack the reserved bit 0x2";
    else if (f->format_version != LCOW_VHD_FORMAT_VERSION)
        bad = "file format version is not 1.0";
    else if (f->disk_type != LCOW_VHD_DISK_TYPE_FIXED)
        bad = "disk type is not fixed (2)";
    else if (f->data_offset != LCOW_VHD_FIXED_DATA_OFFSET)
        bad = "data offset of a fixed disk is not 0xffffffffffffffff";
    else if (file_bytes < LCOW_VHD_FOOTER_SIZE || (file_bytes - LCOW_VHD_FOOTER_SIZE) % 512)
        bad = "file length is not a whole number of sectors plus the footer";
    else if (f->current_size != file_bytes - LCOW_VHD_FOOTER_SIZE)
        bad = "current size is not the file length minus the footer";
    else if (f->original_size != f->current_size)
        bad = "original size differs from current size";
    else if (f->saved_state != 0)
        bad = "saved state is set";
    else if (!f->reserved_zero)
        bad = "reserved bytes are not zero";
    if (bad)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT, "fixed VHD footer: %s", bad);
    return LCOW_OK;
}

lcow_code lcow_vhd_check_file(lcow_file *f, lcow_vhd_footer *out, uint64_t *disk_bytes,
                              lcow_error *err)
{
    uint64_t size;
    lcow_code rc = lcow_file_size(f, &size, err);
    if (rc)
        return rc;
    if (size < LCOW_VHD_FOOTER_SIZE)
        return lcow_error_set(err, LCOW_INVALID_ARGUMENT,
                              "file of %llu bytes is too short for a VHD footer",
                              (unsigned long long)size);
    uint8_t footer[LCOW_VHD_FOOTER_SIZE];
    rc = lcow_file_pread(f, footer, sizeof footer, size - LCOW_VHD_FOOTER_SIZE, NULL, err);
    if (rc)
        return rc;
    rc = lcow_vhd_check_fixed(footer, size, out, err);
    if (rc == LCOW_OK && disk_bytes)
        *disk_bytes = size - LCOW_VHD_FOOTER_SIZE;
    return rc;
}

uint32_t lcow_vhd_timestamp(time_t unix_time)
{
    if (unix_time <= VHD_EPOCH_UNIX)
        return 0;
    uint64_t s = (uint64_t)unix_time - VHD_EPOCH_UNIX;
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

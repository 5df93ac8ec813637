/* Fixed VHD footer: a known answer taken from tar2ext4-ref's output, every
 * field through encode/parse, the validator's refusals, every golden case's
 * footers (tar2ext4-ref's files, tests/layer/make-golden.sh) against ours
 * field by field, and natively qemu-img reading what we write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/sha256.h"
#include "core/disk/vhd.h"
#include "disk/disk_test_util.h"
#include "layer/layer_test_util.h"

/* The footer tar2ext4-ref -overlay -verity -vhd -max-gb 128 appended to the
 * golden "basic" layer (1294336 bytes before it): everything after byte 84 is
 * zero. Its unique id is 8f58608b-a7d2-d91d-a65a-f17463c57f09. */
static const uint8_t tar2ext4_basic_footer[85] = {
    0x63, 0x6f, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x78, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00,
    0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x13, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x02, 0xff, 0xff, 0xea, 0x9f, 0x8f, 0x58, 0x60, 0x8b, 0xa7, 0xd2, 0xd9,
    0x1d, 0xa6, 0x5a, 0xf1, 0x74, 0x63, 0xc5, 0x7f, 0x09, 0x00};

static void known_answer_from_tar2ext4(void **state)
{
    uint8_t want[LCOW_VHD_FOOTER_SIZE] = {0}, got[LCOW_VHD_FOOTER_SIZE];
    memcpy(want, tar2ext4_basic_footer, sizeof tar2ext4_basic_footer);
    lcow_error err;
    assert_int_equal(lcow_vhd_footer_fixed(1294336, want + 68, 0, got, &err), LCOW_OK);
    assert_memory_equal(got, want, sizeof want);
    assert_int_equal(lcow_vhd_checksum(want), 0xffffea9fu);
}

static void fields_round_trip(void **state)
{
    lcow_vhd_footer f = {
        .features = 0x12345678,
        .format_version = 0x00010000,
        .data_offset = 0x0102030405060708ull,
        .timestamp = 0x9abcdef0,
        .creator_application = {'l', 'c', 'o', 'w'},
        .creator_version = 0x00020003,
        .creator_host_os = {'W', 'i', '2', 'k'},
        .original_size = 0x1122334455667788ull,
        .current_size = 0x99aabbccddeeff00ull,
        .disk_geometry = 0x04000311,
        .disk_type = 3,
        .unique_id = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
        .saved_state = 1,
    };
    memcpy(f.cookie, "conectix", 8);
    uint8_t buf[LCOW_VHD_FOOTER_SIZE];
    lcow_vhd_footer_encode(&f, buf);
    /* big-endian at the documented offsets */
    assert_int_equal(buf[8], 0x12);
    assert_int_equal(buf[23], 0x08);
    assert_int_equal(buf[24], 0x9a);
    assert_memory_equal(buf + 28, "lcow", 4);
    assert_memory_equal(buf + 36, "Wi2k", 4);
    assert_int_equal(buf[40], 0x11);
    assert_int_equal(buf[55], 0x00);
    assert_int_equal(buf[56], 0x04);
    assert_int_equal(buf[63], 3);
    assert_int_equal(buf[68], 1);
    assert_int_equal(buf[84], 1);

    lcow_vhd_footer p;
    lcow_error err;
    assert_int_equal(lcow_vhd_footer_parse(buf, &p, &err), LCOW_OK);
    assert_memory_equal(p.cookie, f.cookie, 8);
    assert_int_equal(p.features, f.features);
    assert_int_equal(p.format_version, f.format_version);
    assert_int_equal(p.data_offset, f.data_offset);
    assert_int_equal(p.timestamp, f.timestamp);
    assert_memory_equal(p.creator_application, f.creator_application, 4);
    assert_int_equal(p.creator_version, f.creator_version);
    assert_memory_equal(p.creator_host_os, f.creator_host_os, 4);
    assert_int_equal(p.original_size, f.original_size);
    assert_int_equal(p.current_size, f.current_size);
    assert_int_equal(p.disk_geometry, f.disk_geometry);
    assert_int_equal(p.disk_type, f.disk_type);
    assert_int_equal(p.checksum, lcow_vhd_checksum(buf));
    assert_memory_equal(p.unique_id, f.unique_id, 16);
    assert_int_equal(p.saved_state, 1);
    assert_true(p.reserved_zero);
}

static void validator_refuses(void **state)
{
    uint8_t good[LCOW_VHD_FOOTER_SIZE];
    lcow_error err;
    assert_int_equal(lcow_vhd_footer_fixed(8192, NULL, 0, good, &err), LCOW_OK);
    lcow_vhd_footer f;
    assert_int_equal(lcow_vhd_check_fixed(good, 8192 + 512, &f, &err), LCOW_OK);
    assert_int_equal(f.unique_id[6] >> 4, 4); /* a random version-4 UUID */
    assert_int_equal(f.timestamp, 0);         /* as tar2ext4 */

    /* wrong file length */
    assert_int_equal(lcow_vhd_check_fixed(good, 8192, NULL, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "current size"));
    assert_int_equal(lcow_vhd_check_fixed(good, 100, NULL, &err), LCOW_INVALID_ARGUMENT);

    struct {
        size_t off;
        uint8_t value;
        bool fix_checksum;
        const char *what;
    } bad[] = {
        {0, 'C', true, "cookie"},          {64, 0x00, false, "checksum"},
        {11, 0x00, true, "reserved bit"},  {13, 0x02, true, "version"},
        {63, 0x03, true, "disk type"},     {23, 0xfe, true, "data offset"},
        {47, 0x01, true, "original size"}, {55, 0x01, true, "current size"},
        {84, 0x01, true, "saved state"},   {300, 0x01, true, "reserved bytes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t b[LCOW_VHD_FOOTER_SIZE];
        memcpy(b, good, sizeof b);
        b[bad[i].off] = bad[i].value;
        if (bad[i].fix_checksum) {
            uint32_t c = lcow_vhd_checksum(b);
            b[64] = (uint8_t)(c >> 24), b[65] = (uint8_t)(c >> 16);
            b[66] = (uint8_t)(c >> 8), b[67] = (uint8_t)c;
        }
        assert_int_equal(lcow_vhd_check_fixed(b, 8192 + 512, NULL, &err), LCOW_INVALID_ARGUMENT);
        if (!strstr(err.message, bad[i].what))
            fail_msg("byte %u: '%s' does not name %s", (unsigned)bad[i].off, err.message,
                     bad[i].what);
    }
}

static void timestamps(void **state)
{
    assert_int_equal(lcow_vhd_timestamp(0), 0);
    assert_int_equal(lcow_vhd_timestamp(946684800), 0);
    assert_int_equal(lcow_vhd_timestamp(946684801), 1);
    assert_int_equal(lcow_vhd_timestamp(1700000000), 1700000000u - 946684800u);
}

/* Our footer for the same size and UUID is byte for byte tar2ext4's. */
static void check_against_file(const char *path, const char *label)
{
    lcow_file *f;
    lcow_error err;
    assert_int_equal(lcow_file_open(path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    lcow_vhd_footer theirs;
    uint64_t disk_bytes;
    lcow_code rc = lcow_vhd_check_file(f, &theirs, &disk_bytes, &err);
    if (rc)
        fail_msg("%s: %s", label, err.message);
    uint8_t raw[LCOW_VHD_FOOTER_SIZE], ours[LCOW_VHD_FOOTER_SIZE];
    assert_int_equal(lcow_file_pread(f, raw, sizeof raw, disk_bytes, NULL, &err), LCOW_OK);
    lcow_file_close(f);
    assert_int_equal(
        lcow_vhd_footer_fixed(disk_bytes, theirs.unique_id, theirs.timestamp, ours, &err), LCOW_OK);
    assert_memory_equal(ours, raw, sizeof raw);
    /* and, field by field, what tar2ext4 writes */
    assert_int_equal(theirs.features, 2);
    assert_int_equal(theirs.format_version, 0x00010000);
    assert_int_equal(theirs.creator_version, 0x000a0000);
    assert_int_equal(theirs.disk_geometry, 0);
    assert_int_equal(theirs.timestamp, 0);
    assert_memory_equal(theirs.creator_application, "\0\0\0\0", 4);
    assert_memory_equal(theirs.creator_host_os, "\0\0\0\0", 4);
}

static void golden_footers_match(void **state)
{
    const char *dir = golden_dir();
    if (!dir)
        skip();
    for (size_t i = 0; i < GOLDEN_CASES; i++) {
        char *vhd = golden_path(dir, golden_cases[i], ".vhd");
        char *vvhd = golden_path(dir, golden_cases[i], ".verity.vhd");
        check_against_file(vhd, vhd);
        check_against_file(vvhd, vvhd);
        free(vhd);
        free(vvhd);
    }
    print_message("%u x 2 tar2ext4 footers: ours byte for byte given their UUID\n",
                  (unsigned)GOLDEN_CASES);
}

static void qemu_reads_ours(void **state)
{
    const char *qemu = tool("LCOW_QEMU_IMG");
    if (!qemu) {
        print_message("qemu-img not available here: skipped\n");
        skip();
    }
    const uint64_t disk = 3 << 20;
    uint8_t *img = calloc(1, disk + LCOW_VHD_FOOTER_SIZE);
    assert_non_null(img);
    fill_random(img, 4096, 3);
    lcow_error err;
    assert_int_equal(lcow_vhd_footer_fixed(disk, NULL, 0, img + disk, &err), LCOW_OK);
    char *path = test_path("ours.vhd");
    write_all(path, img, disk + LCOW_VHD_FOOTER_SIZE);
    char *out = NULL;
    /* No geometry (as tar2ext4): qemu must be told to use current_size. */
    int rc = run_cmd(&out,
                     "'%s' info --output=json --image-opts "
                     "driver=vpc,force_size_calc=current_size,file.filename='%s'",
                     qemu, path);
    if (rc != 0 || !strstr(out, "\"virtual-size\": 3145728"))
        fail_msg("qemu-img info: %s", out ? out : "?");
    free(out);
    char *raw = test_path("ours.raw");
    rc = run_cmd(&out,
                 "'%s' convert --image-opts driver=vpc,force_size_calc=current_size,"
                 "file.filename='%s' -O raw '%s'",
                 qemu, path, raw);
    if (rc != 0)
        fail_msg("qemu-img convert: %s", out ? out : "?");
    free(out);
    size_t n;
    uint8_t *back = read_all(raw, &n);
    assert_int_equal(n, disk);
    assert_memory_equal(back, img, disk);
    free(back);
    test_remove(raw);
    test_remove(path);
    free(raw);
    free(path);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answer_from_tar2ext4), cmocka_unit_test(fields_round_trip),
        cmocka_unit_test(validator_refuses),          cmocka_unit_test(timestamps),
        cmocka_unit_test(golden_footers_match),       cmocka_unit_test(qemu_reads_ours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

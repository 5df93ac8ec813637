/* VHDX writer and reader: round trips in memory, corruption handling, and
 * (natively) qemu-img check / info / compare against raw images, plus
 * qemu-made files read through our reader. Under Wine the external checks
 * are skipped and the reader's structure check stands in; the win64 build
 * also exports images for tests/disk/check-images.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/blocksink.h"
#include "core/disk/crc32c.h"
#include "core/disk/vhdx.h"
#include "disk/disk_test_util.h"

#define MiB (1024ull * 1024)
#define GiB (1024ull * MiB)

static lcow_vhdx_writer *new_writer(mem_io *m, uint64_t size, uint32_t block)
{
    lcow_vhdx_io io = mem_io_of(m);
    lcow_vhdx_params p = {.geometry.size_bytes = size, .geometry.block_size = block};
    lcow_vhdx_writer *w = NULL;
    lcow_error err;
    assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
    return w;
}

static lcow_vhdx_reader *open_mem(mem_io *m)
{
    lcow_vhdx_io io = mem_io_of(m);
    lcow_vhdx_reader *r = NULL;
    lcow_error err;
    lcow_code rc = lcow_vhdx_reader_open(&io, &r, &err);
    if (rc)
        fail_msg("open: %s", err.message);
    return r;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

static void params_are_validated(void **state)
{
    lcow_vhdx_params out;
    lcow_error err;
    struct {
        uint64_t size;
        uint32_t block, lss, pss;
    } bad[] = {
        {0, 0, 0, 0},
        {(64ull << 40) + 512, 0, 0, 0},
        {GiB + 100, 0, 0, 0},
        {GiB, 3u << 20, 0, 0},
        {GiB, 512u << 20, 0, 0},
        {GiB, 512u << 10, 0, 0},
        {GiB, 0, 1024, 0},
        {GiB, 0, 0, 2048},
        {GiB + 512, 0, 4096, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lcow_vhdx_params p = {.geometry.size_bytes = bad[i].size,
                              .geometry.block_size = bad[i].block,
                              .geometry.logical_sector_size = bad[i].lss,
                              .geometry.physical_sector_size = bad[i].pss};
        assert_int_equal(lcow_vhdx_params_normalize(&p, &out, &err), LCOW_INVALID_ARGUMENT);
    }
    lcow_vhdx_params ok = {.geometry.size_bytes = 64ull << 40};
    assert_int_equal(lcow_vhdx_params_normalize(&ok, &out, &err), LCOW_OK);
    assert_int_equal(out.geometry.block_size, 1u << 20);
    assert_int_equal(out.geometry.logical_sector_size, 512);
    assert_int_equal(out.geometry.physical_sector_size, 4096);
}

static void bat_geometry_matches_the_spec(void **state)
{
    /* 20 GiB, 1 MiB blocks: 20480 payload + 4 sector-bitmap entries. */
    assert_int_equal(lcow_vhdx_bat_entries(20 * GiB, 1 << 20, 512), 20484);
    /* 16 TiB, 32 MiB blocks: chunk ratio 128. */
    assert_int_equal(lcow_vhdx_bat_entries(16384 * GiB, 32 << 20, 512), 524288 + 4095);
    /* 4096-byte sectors: chunk ratio 32768. */
    assert_int_equal(lcow_vhdx_bat_entries(64 * GiB, 1 << 20, 4096), 65536 + 1);
    /* 256 MiB blocks: ratio 16; partial last block counts. */
    assert_int_equal(lcow_vhdx_bat_entries(3 * GiB + 5 * MiB, 256 << 20, 512), 13);
}

static void empty_disk_is_4_mib_and_reads_zero(void **state)
{
    mem_io m = {0};
    lcow_vhdx_writer *w = new_writer(&m, 20 * GiB, 0);
    lcow_error err;
    uint8_t zeros[8192] = {0};
    assert_int_equal(lcow_vhdx_writer_write(w, 5 * GiB, zeros, sizeof zeros, &err), LCOW_OK);
    assert_int_equal(lcow_vhdx_writer_allocated_blocks(w), 0);
    assert_int_equal(lcow_vhdx_writer_finish(w, true, &err), LCOW_OK);
    assert_int_equal(m.size, 4 * MiB);
    assert_int_equal(lcow_vhdx_writer_write(w, 0, "x", 1, &err), LCOW_FAILED_PRECONDITION);
    lcow_vhdx_writer_free(w);

    assert_memory_equal(m.data, "vhdxfile", 8);
    lcow_vhdx_reader *r = open_mem(&m);
    const lcow_vhdx_info *in = lcow_vhdx_reader_info(r);
    assert_int_equal(in->virtual_size, 20 * GiB);
    assert_int_equal(in->block_size, 1u << 20);
    assert_int_equal(in->chunk_ratio, 4096);
    assert_int_equal(in->bat_entries, 20484);
    assert_int_equal(in->current_header, 2);
    assert_int_equal(in->sequence_number, 2);
    lcow_vhdx_check_report rep;
    assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
    assert_int_equal(rep.present_blocks, 0);
    assert_int_equal(rep.zero_blocks, 20480);
    uint8_t buf[4096];
    memset(buf, 0xee, sizeof buf);
    assert_int_equal(lcow_vhdx_reader_read(r, 20 * GiB - 4096, buf, 4096, &err), LCOW_OK);
    assert_memory_equal(buf, zeros, 4096);
    assert_int_equal(lcow_vhdx_reader_read(r, 20 * GiB - 4095, buf, 4096, &err),
                     LCOW_INVALID_ARGUMENT);
    lcow_vhdx_reader_free(r);
    free(m.data);
}

static void data_round_trips_across_blocks_and_sector_bitmaps(void **state)
{
    const uint64_t size = 3 * GiB + 5 * MiB + 12 * 1024; /* partial last block */
    const uint32_t blocks[] = {1u << 20, 2u << 20, 8u << 20};
    for (size_t b = 0; b < 3; b++) {
        mem_io m = {0};
        lcow_vhdx_writer *w = new_writer(&m, size, blocks[b]);
        lcow_error err;
        struct {
            uint64_t off;
            size_t len;
        } writes[] = {
            {0, 4096},
            {blocks[b] - 100, 300},         /* crosses a block boundary */
            {(uint64_t)4096 * MiB - 7, 20}, /* 512-byte sectors: beyond the first chunk */
            {size - 4096, 4096},            /* the last, partial block */
            {2 * GiB, 3 * MiB},
            {100, 50}, /* rewrite inside an allocated block */
        };
        const size_t n = sizeof writes / sizeof writes[0];
        uint8_t *data = malloc(3 * MiB);
        for (size_t i = 0; i < n; i++) {
            if (writes[i].off + writes[i].len > size)
                continue;
            fill(data, writes[i].len, (unsigned)i + 1);
            assert_int_equal(lcow_vhdx_writer_write(w, writes[i].off, data, writes[i].len, &err),
                             LCOW_OK);
        }
        assert_int_equal(lcow_vhdx_writer_finish(w, false, &err), LCOW_OK);
        uint64_t allocated = lcow_vhdx_writer_allocated_blocks(w);
        assert_int_equal(m.size, lcow_vhdx_writer_file_size(w));
        lcow_vhdx_writer_free(w);

        lcow_vhdx_reader *r = open_mem(&m);
        lcow_vhdx_check_report rep;
        assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
        assert_int_equal(rep.present_blocks, allocated);
        uint8_t *got = malloc(3 * MiB);
        for (size_t i = 0; i < n; i++) {
            if (writes[i].off + writes[i].len > size)
                continue;
            fill(data, writes[i].len, (unsigned)i + 1);
            assert_int_equal(lcow_vhdx_reader_read(r, writes[i].off, got, writes[i].len, &err),
                             LCOW_OK);
            if (i == 0) /* bytes 100..149 were rewritten by the last write */
                fill(data + 100, 50, (unsigned)n);
            assert_memory_equal(got, data, writes[i].len);
        }
        /* Around the data: zeros. */
        assert_int_equal(lcow_vhdx_reader_read(r, 2 * GiB + 3 * MiB, got, 4096, &err), LCOW_OK);
        for (int i = 0; i < 4096; i++)
            assert_int_equal(got[i], 0);
        lcow_vhdx_reader_free(r);
        free(got);
        free(data);
        free(m.data);
    }
}

static void absent_block_state_is_selectable(void **state)
{
    for (int np = 0; np < 2; np++) {
        mem_io m = {0};
        lcow_vhdx_io io = mem_io_of(&m);
        lcow_vhdx_params p = {.geometry.size_bytes = 10 * GiB, .absent_not_present = np};
        lcow_vhdx_writer *w;
        lcow_error err;
        assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
        assert_int_equal(lcow_vhdx_writer_write(w, 7 * MiB, "data", 4, &err), LCOW_OK);
        assert_int_equal(lcow_vhdx_writer_finish(w, false, &err), LCOW_OK);
        lcow_vhdx_writer_free(w);
        lcow_vhdx_reader *r = open_mem(&m);
        lcow_vhdx_block_state st;
        uint64_t off;
        assert_int_equal(lcow_vhdx_reader_block(r, 0, &st, &off, &err), LCOW_OK);
        assert_int_equal(st, np ? LCOW_VHDX_BLOCK_NOT_PRESENT : LCOW_VHDX_BLOCK_ZERO);
        assert_int_equal(lcow_vhdx_reader_block(r, 7, &st, &off, &err), LCOW_OK);
        assert_int_equal(st, LCOW_VHDX_BLOCK_FULLY_PRESENT);
        assert_int_equal(off, 4 * MiB); /* first payload right after the 1 MiB BAT */
        lcow_vhdx_check_report rep;
        assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
        assert_int_equal(np ? rep.absent_blocks : rep.zero_blocks, 10239);
        lcow_vhdx_reader_free(r);
        free(m.data);
    }
}

static void fix_crc(uint8_t *p, size_t len)
{
    memset(p + 4, 0, 4);
    uint32_t c = lcow_crc32c(p, len);
    for (int i = 0; i < 4; i++)
        p[4 + i] = (uint8_t)(c >> (8 * i));
}

static void reader_survives_damage_and_refuses_what_it_cannot_read(void **state)
{
    mem_io m = {0};
    lcow_vhdx_writer *w = new_writer(&m, 2 * GiB, 0);
    lcow_error err;
    assert_int_equal(lcow_vhdx_writer_write(w, 0, "abc", 3, &err), LCOW_OK);
    assert_int_equal(lcow_vhdx_writer_finish(w, false, &err), LCOW_OK);
    lcow_vhdx_writer_free(w);
    uint8_t *orig = malloc(m.size);
    memcpy(orig, m.data, m.size);
    lcow_vhdx_io io = mem_io_of(&m);
    lcow_vhdx_reader *r = NULL;

    /* Header 2 (current) damaged: header 1 takes over. */
    m.data[128 * 1024 + 200] ^= 1;
    r = open_mem(&m);
    assert_int_equal(lcow_vhdx_reader_info(r)->current_header, 1);
    lcow_vhdx_reader_free(r);
    /* Both damaged. */
    m.data[64 * 1024 + 200] ^= 1;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "header"));
    memcpy(m.data, orig, m.size);

    /* Region table 1 damaged: the copy is used. */
    m.data[192 * 1024 + 20] ^= 0xff;
    r = open_mem(&m);
    lcow_vhdx_reader_free(r);
    m.data[256 * 1024 + 20] ^= 0xff;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    memcpy(m.data, orig, m.size);

    /* A pending log: refuse rather than read stale data. */
    for (int h = 0; h < 2; h++) {
        uint8_t *hd = m.data + (h ? 128 : 64) * 1024;
        hd[48] = 1;
        fix_crc(hd, 4096);
    }
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_NOT_IMPLEMENTED);
    memcpy(m.data, orig, m.size);

    /* Equal sequence numbers with different contents: ambiguous. */
    uint8_t *h2 = m.data + 128 * 1024;
    h2[8] = 1;
    h2[16] ^= 1; /* a different FileWriteGuid */
    fix_crc(h2, 4096);
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    memcpy(m.data, orig, m.size);

    /* Metadata: HasParent (differencing) is refused; bad block size too. */
    uint8_t *fp = m.data + 2 * MiB + 64 * 1024;
    fp[4] = 2;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_NOT_IMPLEMENTED);
    fp[4] = 0;
    fp[0] = 1; /* block size 1 MiB + 1 */
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    memcpy(m.data, orig, m.size);

    /* A BAT entry pointing into the metadata region: read and check fail. */
    uint8_t *bat = m.data + 3 * MiB;
    uint64_t bad_entry = 2 * MiB | 6;
    for (int i = 0; i < 8; i++)
        bat[8 + i] = (uint8_t)(bad_entry >> (8 * i));
    r = open_mem(&m);
    uint8_t buf[16];
    assert_int_equal(lcow_vhdx_reader_read(r, MiB, buf, 16, &err), LCOW_INVALID_ARGUMENT);
    lcow_vhdx_check_report rep;
    assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_INVALID_ARGUMENT);
    lcow_vhdx_reader_free(r);
    memcpy(m.data, orig, m.size);

    /* Truncated file: the BAT is gone. */
    m.size = 3 * MiB + 100;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    m.size = 7;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_INVALID_ARGUMENT);
    free(orig);
    free(m.data);
}

static void write_failures_propagate(void **state)
{
    for (unsigned at = 1; at <= 9; at++) {
        mem_io m = {.fail_write_at = at};
        lcow_vhdx_writer *w = new_writer(&m, 4 * GiB, 0);
        lcow_error err;
        lcow_code rc = lcow_vhdx_writer_write(w, 0, "abc", 3, &err);
        if (!rc)
            rc = lcow_vhdx_writer_write(w, 3 * GiB, "abc", 3, &err);
        if (!rc)
            rc = lcow_vhdx_writer_finish(w, true, &err);
        /* 2 payload + BAT + metadata + 2 region tables + identifier + 2 headers */
        assert_int_equal(rc, LCOW_RESOURCE_EXHAUSTED);
        assert_non_null(strstr(err.message, "injected"));
        lcow_vhdx_writer_free(w);
        free(m.data);
    }
}

/* ---- files and qemu-img ---- */

typedef struct image_case {
    const char *name;
    uint64_t size;
    uint32_t block;
    bool with_data;
} image_case;

static const image_case cases[] = {
    {"v1g-empty", 1 * GiB, 1 << 20, false},
    {"v1g-data", 1 * GiB, 1 << 20, true},
    {"v20g-empty", 20 * GiB, 1 << 20, false},
    {"v20g-data", 20 * GiB, 1 << 20, true},
    {"v100g-empty", 100 * GiB, 1 << 20, false},
    {"v100g-data", 100 * GiB, 1 << 20, true},
    {"v16t-empty", 16384 * GiB, 32u << 20, false},
    {"v16t-data", 16384 * GiB, 32u << 20, true},
    {"v5g-256m-data", 5 * GiB + 12 * 1024, 256u << 20, true},
};

/* Data placed at the start, across block and chunk boundaries, and near the
 * end. The raw twin stops 1 MiB short of 16 TiB (ext4's file size limit);
 * qemu-img compare then checks the VHDX's excess reads as zero. */
static uint64_t data_offsets(const image_case *c, uint64_t *offs)
{
    offs[0] = 0;
    offs[1] = c->block - 2048;
    offs[2] = c->size / 2 + 12345 * 512;
    offs[3] = c->size - 2 * MiB;
    return 4;
}

static void write_image(const image_case *c, const char *vhdx_path, const char *raw_path)
{
    lcow_error err;
    lcow_file *vf = NULL, *rf = NULL;
    test_remove(vhdx_path);
    assert_int_equal(
        lcow_file_open(vhdx_path,
                       LCOW_OPEN_READ | LCOW_OPEN_WRITE | LCOW_OPEN_CREATE | LCOW_OPEN_EXCLUSIVE,
                       &vf, &err),
        LCOW_OK);
    if (raw_path) {
        test_remove(raw_path);
        assert_int_equal(lcow_file_open(raw_path, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &rf, &err),
                         LCOW_OK);
    }
    lcow_vhdx_io io = lcow_vhdx_io_file(vf);
    lcow_vhdx_params p = {.geometry.size_bytes = c->size, .geometry.block_size = c->block};
    lcow_vhdx_writer *w;
    assert_int_equal(lcow_vhdx_writer_create(&io, &p, &w, &err), LCOW_OK);
    uint8_t *buf = malloc(64 * 1024);
    if (c->with_data) {
        uint64_t offs[8];
        uint64_t n = data_offsets(c, offs);
        for (uint64_t i = 0; i < n; i++) {
            fill(buf, 64 * 1024, (unsigned)i + 7);
            assert_int_equal(lcow_vhdx_writer_write(w, offs[i], buf, 64 * 1024, &err), LCOW_OK);
            if (rf)
                assert_int_equal(lcow_file_pwrite(rf, buf, 64 * 1024, offs[i], &err), LCOW_OK);
        }
    }
    assert_int_equal(lcow_vhdx_writer_finish(w, true, &err), LCOW_OK);
    lcow_vhdx_writer_free(w);
    if (rf) {
        uint64_t raw_size = c->size > (16383 * GiB) ? c->size - MiB : c->size;
        assert_int_equal(lcow_file_truncate(rf, raw_size, &err), LCOW_OK);
        lcow_file_close(rf);
    }
    lcow_file_close(vf);
    free(buf);
}

static void verify_with_reader(const image_case *c, const char *vhdx_path)
{
    lcow_error err;
    lcow_file *f;
    assert_int_equal(lcow_file_open(vhdx_path, LCOW_OPEN_READ, &f, &err), LCOW_OK);
    lcow_vhdx_io io = lcow_vhdx_io_file(f);
    lcow_vhdx_reader *r;
    assert_int_equal(lcow_vhdx_reader_open(&io, &r, &err), LCOW_OK);
    assert_int_equal(lcow_vhdx_reader_info(r)->virtual_size, c->size);
    assert_int_equal(lcow_vhdx_reader_info(r)->block_size, c->block);
    lcow_vhdx_check_report rep;
    assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
    uint8_t *want = malloc(64 * 1024), *got = malloc(64 * 1024);
    if (c->with_data) {
        uint64_t offs[8];
        uint64_t n = data_offsets(c, offs);
        assert_true(rep.present_blocks >= 3 && rep.present_blocks <= n + 1);
        for (uint64_t i = 0; i < n; i++) {
            fill(want, 64 * 1024, (unsigned)i + 7);
            assert_int_equal(lcow_vhdx_reader_read(r, offs[i], got, 64 * 1024, &err), LCOW_OK);
            assert_memory_equal(got, want, 64 * 1024);
        }
    } else {
        assert_int_equal(rep.present_blocks, 0);
    }
    free(want);
    free(got);
    lcow_vhdx_reader_free(r);
    lcow_file_close(f);
}

static void qemu_checks(const image_case *c, const char *vhdx, const char *raw)
{
    const char *qemu = tool("LCOW_QEMU_IMG");
    if (!qemu)
        return;
    char *out = NULL;
    int rc = run_cmd(&out, "'%s' check -f vhdx '%s'", qemu, vhdx);
    if (rc != 0 || !strstr(out, "No errors were found"))
        fail_msg("qemu-img check %s: rc %d\n%s", c->name, rc, out);
    free(out);
    rc = run_cmd(&out, "'%s' info -f vhdx --output=json '%s'", qemu, vhdx);
    char want[64];
    snprintf(want, sizeof want, "\"virtual-size\": %llu", (unsigned long long)c->size);
    char cluster[64];
    snprintf(cluster, sizeof cluster, "\"cluster-size\": %u", c->block);
    if (rc != 0 || !strstr(out, want) || !strstr(out, "\"format\": \"vhdx\"") ||
        !strstr(out, cluster))
        fail_msg("qemu-img info %s: rc %d, want %s\n%s", c->name, rc, want, out);
    free(out);
    if (c->size <= 1 * GiB) {
        rc = run_cmd(&out, "'%s' compare -f raw -F vhdx '%s' '%s'", qemu, raw, vhdx);
        if (rc != 0 || !strstr(out, "Images are identical"))
            fail_msg("qemu-img compare %s: rc %d\n%s", c->name, rc, out);
        free(out);
        return;
    }
    /* qemu's vhdx driver has no block-status, so a whole-disk compare reads
     * every byte (~15 s per 20 GiB of zeros, days for 16 TiB). Larger disks are
     * compared in windows: the start, around each write, and the end. */
    uint64_t offs[8], win[16][2];
    size_t n = 0;
    uint64_t raw_size = c->size > 16383 * GiB ? c->size - MiB : c->size;
    win[n][0] = 0, win[n++][1] = 64 * MiB;
    win[n][0] = raw_size - 64 * MiB, win[n++][1] = 64 * MiB;
    uint64_t nd = c->with_data ? data_offsets(c, offs) : 0;
    for (uint64_t i = 0; i < nd; i++) {
        uint64_t start = offs[i] > 32 * MiB ? (offs[i] - 32 * MiB) & ~(MiB - 1) : 0;
        uint64_t len = 64 * MiB;
        if (start + len > raw_size)
            len = raw_size - start;
        win[n][0] = start, win[n++][1] = len;
    }
    for (size_t i = 0; i < n; i++) {
        rc = run_cmd(&out,
                     "'%s' compare --image-opts "
                     "'driver=raw,offset=%llu,size=%llu,file.driver=file,file.filename=%s' "
                     "'driver=raw,offset=%llu,size=%llu,file.driver=vhdx,file.file.driver=file,"
                     "file.file.filename=%s'",
                     qemu, (unsigned long long)win[i][0], (unsigned long long)win[i][1], raw,
                     (unsigned long long)win[i][0], (unsigned long long)win[i][1], vhdx);
        if (rc != 0 || !strstr(out, "Images are identical"))
            fail_msg("qemu-img compare %s at %llu+%llu: rc %d\n%s", c->name,
                     (unsigned long long)win[i][0], (unsigned long long)win[i][1], rc, out);
        free(out);
    }
}

static void images_pass_reader_and_qemu_checks(void **state)
{
    bool native_tools = tool("LCOW_QEMU_IMG") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const image_case *c = &cases[i];
        char name[64];
        snprintf(name, sizeof name, "%s.vhdx", c->name);
        char *vhdx = test_path(name);
        snprintf(name, sizeof name, "%s.raw", c->name);
        char *raw = native_tools ? test_path(name) : NULL;
        write_image(c, vhdx, raw);
        verify_with_reader(c, vhdx);
        if (raw) {
            qemu_checks(c, vhdx, raw);
            test_remove(raw);
        }
        test_remove(vhdx);
        free(vhdx);
        free(raw);
    }
}

static void qemu_made_vhdx_reads_back(void **state)
{
    const char *qemu = tool("LCOW_QEMU_IMG");
    if (!qemu)
        skip();
    char *raw = test_path("qemu-src.raw"), *vhdx = test_path("qemu-made.vhdx");
    lcow_error err;
    const uint64_t size = 3 * GiB + 5 * MiB;
    for (int zero_state = 0; zero_state < 2; zero_state++) {
        for (int bs = 0; bs < 2; bs++) {
            test_remove(raw);
            test_remove(vhdx);
            lcow_file *f;
            assert_int_equal(lcow_file_open(raw, LCOW_OPEN_WRITE | LCOW_OPEN_CREATE, &f, &err),
                             LCOW_OK);
            uint8_t *buf = malloc(MiB);
            const uint64_t offs[] = {0, 5 * MiB - 4096, 2 * GiB + 77 * 512, size - MiB};
            for (int i = 0; i < 4; i++) {
                fill(buf, MiB, (unsigned)i + 40);
                assert_int_equal(lcow_file_pwrite(f, buf, MiB, offs[i], &err), LCOW_OK);
            }
            assert_int_equal(lcow_file_truncate(f, size, &err), LCOW_OK);
            lcow_file_close(f);
            char *out;
            int rc = run_cmd(&out,
                             "'%s' convert -f raw -O vhdx -o subformat=dynamic,block_size=%s,"
                             "block_state_zero=%s '%s' '%s'",
                             qemu, bs ? "8M" : "1M", zero_state ? "on" : "off", raw, vhdx);
            if (rc)
                fail_msg("qemu-img convert: %s", out);
            free(out);
            assert_int_equal(lcow_file_open(vhdx, LCOW_OPEN_READ, &f, &err), LCOW_OK);
            lcow_vhdx_io io = lcow_vhdx_io_file(f);
            lcow_vhdx_reader *r;
            if (lcow_vhdx_reader_open(&io, &r, &err))
                fail_msg("reading qemu's VHDX: %s", err.message);
            assert_int_equal(lcow_vhdx_reader_info(r)->virtual_size, size);
            assert_int_equal(lcow_vhdx_reader_info(r)->block_size, bs ? 8u << 20 : 1u << 20);
            assert_non_null(strstr(lcow_vhdx_reader_info(r)->creator, "QEMU"));
            lcow_vhdx_check_report rep;
            assert_int_equal(lcow_vhdx_reader_check(r, &rep, &err), LCOW_OK);
            uint8_t *got = malloc(MiB);
            for (int i = 0; i < 4; i++) {
                fill(buf, MiB, (unsigned)i + 40);
                assert_int_equal(lcow_vhdx_reader_read(r, offs[i], got, MiB, &err), LCOW_OK);
                assert_memory_equal(got, buf, MiB);
            }
            assert_int_equal(lcow_vhdx_reader_read(r, 1 * GiB, got, MiB, &err), LCOW_OK);
            for (size_t i = 0; i < MiB; i++)
                if (got[i])
                    fail_msg("byte %zu of a hole is not zero", i);
            free(got);
            free(buf);
            lcow_vhdx_reader_free(r);
            lcow_file_close(f);
        }
    }
    test_remove(raw);
    test_remove(vhdx);
    free(raw);
    free(vhdx);
}

/* Leaves VHDX files and their raw twins for tests/disk/check-images.sh
 * (qemu-img check/info/whole-disk compare): the Windows-built writer's
 * output is checked by the Linux tools after the Wine run. Small sizes:
 * qemu's whole-disk compare reads every byte. */
static void export_images_for_external_checks(void **state)
{
    char *dir = test_path("export");
    lcow_error err;
    assert_int_equal(lcow_os_mkdir_all(dir, &err), LCOW_OK);
    char *manifest_path = lcow_path_join(dir, "MANIFEST");
    FILE *manifest = fopen(manifest_path, "wb");
    assert_non_null(manifest);
    const image_case exports[] = {{"x1g-data", 1 * GiB + 12 * 1024, 1u << 20, true},
                                  {"x1g-empty", 1 * GiB, 1u << 20, false},
                                  {"x2g-8m-data", 2 * GiB, 8u << 20, true}};
    for (size_t i = 0; i < sizeof exports / sizeof exports[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.vhdx", exports[i].name);
        char *vhdx = lcow_path_join(dir, name);
        snprintf(name, sizeof name, "%s.raw", exports[i].name);
        char *raw = lcow_path_join(dir, name);
        write_image(&exports[i], vhdx, raw);
        verify_with_reader(&exports[i], vhdx);
        fprintf(manifest, "vhdx-raw %s.vhdx %llu %u %s.raw\n", exports[i].name,
                (unsigned long long)exports[i].size, exports[i].block, exports[i].name);
        free(vhdx);
        free(raw);
    }
    fclose(manifest);
    free(manifest_path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(params_are_validated),
        cmocka_unit_test(bat_geometry_matches_the_spec),
        cmocka_unit_test(empty_disk_is_4_mib_and_reads_zero),
        cmocka_unit_test(data_round_trips_across_blocks_and_sector_bitmaps),
        cmocka_unit_test(absent_block_state_is_selectable),
        cmocka_unit_test(reader_survives_damage_and_refuses_what_it_cannot_read),
        cmocka_unit_test(write_failures_propagate),
        cmocka_unit_test(images_pass_reader_and_qemu_checks),
        cmocka_unit_test(qemu_made_vhdx_reads_back),
        cmocka_unit_test(export_images_for_external_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

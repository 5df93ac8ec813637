/* Fuzzes the VHDX reader: open, info, BAT walk (check) and reads.
 *
 * A VHDX keeps its structures megabytes apart, so the input describes a
 * sparse file instead of being one:
 *   byte 0     flags; bit 0: recompute header and region-table CRC-32Cs
 *              (lets mutations get past the checksums)
 *   bytes 1-2  file size in 64 KiB units (little-endian, at most 256)
 *   then       records: u8 page, u16 length (LE), data; the data lands at
 *              page * 64 KiB; everything else reads as zero
 *   the last 8 bytes of the input also pick a read offset.
 * Memory is bounded by the input (64 KiB pages, allocated when written);
 * the reader itself must never allocate from header fields, crash, or read
 * outside what io reports. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/disk/crc32c.h"
#include "core/disk/vhdx.h"

#define PAGE (64u * 1024u)
#define MAX_PAGES 256u

typedef struct vfile {
    uint8_t *pages[MAX_PAGES];
    uint64_t size;
} vfile;

static uint8_t *page_for_write(vfile *v, size_t p)
{
    if (p >= MAX_PAGES)
        return NULL;
    if (!v->pages[p])
        v->pages[p] = calloc(1, PAGE);
    return v->pages[p];
}

static lcow_code v_pread(void *ctx, void *buf, size_t len, uint64_t off, size_t *got,
                         lcow_error *err)
{
    vfile *v = ctx;
    size_t n = 0;
    if (off < v->size)
        n = (size_t)(v->size - off < len ? v->size - off : len);
    for (size_t i = 0; i < n;) {
        uint64_t pos = off + i;
        size_t p = (size_t)(pos / PAGE), in = (size_t)(pos % PAGE);
        size_t chunk = PAGE - in < n - i ? PAGE - in : n - i;
        if (p < MAX_PAGES && v->pages[p])
            memcpy((uint8_t *)buf + i, v->pages[p] + in, chunk);
        else
            memset((uint8_t *)buf + i, 0, chunk);
        i += chunk;
    }
    if (got)
        *got = n;
    else if (n < len)
        return lcow_error_set(err, LCOW_INTERNAL, "short read");
    return LCOW_OK;
}

static lcow_code v_pwrite(void *ctx, const void *buf, size_t len, uint64_t off, lcow_error *err)
{
    return lcow_error_set(err, LCOW_INTERNAL, "read-only");
}

static lcow_code v_size(void *ctx, uint64_t *size, lcow_error *err)
{
    *size = ((vfile *)ctx)->size;
    return LCOW_OK;
}

static void fix_crc(vfile *v, size_t page, size_t in_page, size_t len)
{
    uint8_t *p = v->pages[page];
    if (!p)
        return;
    p += in_page;
    memset(p + 4, 0, 4);
    uint32_t c = lcow_crc32c(p, len);
    for (int i = 0; i < 4; i++)
        p[4 + i] = (uint8_t)(c >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    vfile v;
    memset(&v, 0, sizeof v);
    uint8_t flags = data[0];
    uint64_t pages = (uint64_t)data[1] | (uint64_t)data[2] << 8;
    if (pages > MAX_PAGES)
        pages = MAX_PAGES;
    v.size = pages * PAGE;
    size_t pos = 3;
    while (pos + 3 <= size) {
        size_t page = data[pos];
        size_t len = (size_t)data[pos + 1] | (size_t)data[pos + 2] << 8;
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        for (size_t i = 0; i < len;) {
            size_t p = page + i / PAGE, in = i % PAGE;
            size_t chunk = PAGE - in < len - i ? PAGE - in : len - i;
            uint8_t *dst = page_for_write(&v, p);
            if (!dst)
                break;
            memcpy(dst + in, data + pos + i, chunk);
            i += chunk;
        }
        pos += len;
    }
    if (flags & 1) {
        fix_crc(&v, 1, 0, 4096); /* header 1 at 64 KiB */
        fix_crc(&v, 2, 0, 4096); /* header 2 at 128 KiB */
        fix_crc(&v, 3, 0, PAGE); /* region table 1 at 192 KiB */
        fix_crc(&v, 4, 0, PAGE); /* region table 2 at 256 KiB */
    }

    lcow_vhdx_io io = {&v, v_pread, v_pwrite, v_size, NULL, NULL};
    lcow_vhdx_reader *r = NULL;
    lcow_error err;
    if (lcow_vhdx_reader_open(&io, &r, &err) == LCOW_OK) {
        const lcow_vhdx_info *in = lcow_vhdx_reader_info(r);
        lcow_vhdx_check_report rep;
        lcow_vhdx_reader_check(r, &rep, &err);
        uint8_t buf[8192];
        uint64_t pick = 0;
        if (size >= 8)
            memcpy(&pick, data + size - 8, 8);
        uint64_t offs[3] = {0, pick % in->virtual_size, in->virtual_size - 1};
        for (int i = 0; i < 3; i++) {
            size_t len = sizeof buf;
            if (offs[i] + len > in->virtual_size)
                len = (size_t)(in->virtual_size - offs[i]);
            lcow_vhdx_reader_read(r, offs[i], buf, len, &err);
        }
        lcow_vhdx_block_state st;
        uint64_t foff;
        lcow_vhdx_reader_block(r, pick % (in->virtual_size / in->block_size + 1), &st, &foff, &err);
        lcow_vhdx_reader_free(r);
    }
    for (size_t i = 0; i < MAX_PAGES; i++)
        free(v.pages[i]);
    return 0;
}

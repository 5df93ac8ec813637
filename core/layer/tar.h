/* Streaming tar reader with the interpretation of Go's archive/tar (Go
 * 1.19, the version hcsshim's tar2ext4-ref was built with), because that
 * interpretation decides what tar2ext4 puts in a layer and libarchive's
 * differs where it matters (tests/layer/libarchive_vs_go.c shows where):
 *
 *   - a PAX global header ('g') is returned as an entry of its own (its name,
 *     its SCHILY.xattr records, no data); tar2ext4 makes a regular file of it;
 *   - header-only types (hard link, symlink, devices, directory, FIFO) have
 *     no data whatever their size field says: the next header follows;
 *   - numeric fields are octal (trimmed of spaces and NULs) or base-256, and
 *     anything else is a bad header, not a number read up to the first junk;
 *   - PAX records: the last 'x' header before an entry applies (records of a
 *     repeated key: the later wins), empty values keep the header's field,
 *     every record is kept for the caller (SCHILY.xattr.* are xattrs;
 *     LIBARCHIVE.xattr.* and RHT.* are not);
 *   - GNU long names and links ('L', 'K'), prefixes of USTAR and star, old
 *     GNU and PAX (0.0, 0.1, 1.0) sparse files (holes read as zeros);
 *   - typeflag NUL is a directory if the name ends in '/', else a file;
 *   - the end: two zero blocks, one zero block then the end of the stream, or
 *     the end of the stream at a header boundary or inside the padding after
 *     an entry's data. The end anywhere else (inside a header or data) is a
 *     truncated archive.
 *
 * Memory: a 64 KiB input buffer when reading through read(), the current
 * header's strings (PAX data and GNU long names are limited to 1 MiB each
 * as in Go) and a sparse map (limited by the PAX data or by the extension
 * headers actually present). Entry data is handed out as views of the input,
 * never copied.
 *
 * Errors are INVALID_ARGUMENT "tar: <what> (entry <name>, offset <n>)";
 * the reader refuses every call after one. */
#ifndef LCOW_LAYER_TAR_H
#define LCOW_LAYER_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/errors.h"

/* The source of the tar bytes: read() fills buf with 1..len bytes (*got = 0
 * at the end), or view() points at the next bytes in the source's own
 * memory, valid until the next call (*len = 0 at the end). Give one. */
typedef lcow_code (*lcow_tar_read_fn)(void *ctx, void *buf, size_t len, size_t *got,
                                      lcow_error *err);
typedef lcow_code (*lcow_tar_view_fn)(void *ctx, const void **data, size_t *len, lcow_error *err);

typedef struct lcow_tar_source {
    lcow_tar_read_fn read;
    lcow_tar_view_fn view;
    void *ctx;
} lcow_tar_source;

/* A Go time.Time: set = false is the zero time. */
typedef struct lcow_tar_time {
    int64_t sec;
    uint32_t nsec; /* < 10^9 */
    bool set;
} lcow_tar_time;

typedef struct lcow_tar_record {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} lcow_tar_record;

typedef enum lcow_tar_type {
    LCOW_TAR_REG = '0',
    LCOW_TAR_LINK = '1',
    LCOW_TAR_SYMLINK = '2',
    LCOW_TAR_CHAR = '3',
    LCOW_TAR_BLOCK = '4',
    LCOW_TAR_DIR = '5',
    LCOW_TAR_FIFO = '6',
    LCOW_TAR_GLOBAL = 'g',
} lcow_tar_type;

/* One entry. Strings are not NUL-terminated (a GNU sparse name may even
 * contain NUL) and stay valid until the next lcow_tar_next. */
typedef struct lcow_tar_header {
    uint8_t typeflag;
    const char *name;
    size_t name_len;
    const char *linkname;
    size_t linkname_len;
    int64_t size; /* logical size (a sparse file's expanded size) */
    int64_t mode, uid, gid, devmajor, devminor;
    lcow_tar_time mtime, atime, ctime;
    const lcow_tar_record *records; /* the PAX records that applied (Go's PAXRecords) */
    size_t record_count;
    uint64_t offset; /* stream offset of the entry's first header block */
} lcow_tar_header;

typedef struct lcow_tar_reader lcow_tar_reader;

lcow_code lcow_tar_reader_create(const lcow_tar_source *src, lcow_tar_reader **out,
                                 lcow_error *err);

/* The next entry, or *hdr = NULL at the end of the archive. Unread data of
 * the previous entry is skipped. */
lcow_code lcow_tar_next(lcow_tar_reader *r, const lcow_tar_header **hdr, lcow_error *err);

/* The next piece of the current entry's data (holes of a sparse file as
 * zeros): *data valid until the next call; *len = 0 when the entry's data is
 * complete. Header-only types have none. */
lcow_code lcow_tar_read(lcow_tar_reader *r, const void **data, size_t *len, lcow_error *err);

/* Bytes of the stream consumed so far. */
uint64_t lcow_tar_offset(const lcow_tar_reader *r);

void lcow_tar_reader_free(lcow_tar_reader *r);

#endif

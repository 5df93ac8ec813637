/* tar2ext4's driver: an uncompressed OCI layer tar to an ext4 image that is
 * byte-identical to what hcsshim's tar2ext4 (commit 7c9ff7f) makes of it
 * with the same options. The tar is read with Go archive/tar's
 * interpretation (core/layer/tar.h), the image written by
 * core/disk/ext4_writer.h. Per entry, as tar2ext4 does:
 *
 *   1. '\' becomes '/' in the name and link target (convert_backslash);
 *   2. the missing parents of the name are created (each with its parent's
 *      metadata);
 *   3. with convert_whiteouts, a base name ".wh..wh..opq" sets
 *      trusted.overlay.opaque=y on its directory, any other ".wh.<name>"
 *      becomes a 0/0 character device <name> (mode 0, owner 0, no times);
 *   4. a hard link links; anything else is created with the header's mode
 *      bits (type from the typeflag, unknown types as regular files), owner,
 *      atime/mtime/ctime (crtime = mtime), device numbers, symlink target and
 *      the SCHILY.xattr.* PAX records as xattrs, and its data is copied.
 *
 * Deliberate differences from tar2ext4 (docs/layers.md): a path that comes
 * again as a file replaces the earlier one, as tar -x does (tar2ext4 fails
 * when the earlier one has data blocks); a hard link over an existing file
 * replaces it; a ".." that would leave the root is INVALID_ARGUMENT (tar2ext4
 * drops it). Absolute names are taken relative to the root, as tar2ext4 does.
 *
 * Errors name the entry: INVALID_ARGUMENT for a bad or truncated tar, a
 * hard link to a missing target, a name component over 255 bytes, conflicting
 * entries; RESOURCE_EXHAUSTED when the image would pass max_disk_size or a
 * file 128 GiB; the source's own error (e.g. a gzip CRC) as it reported it. */
#ifndef LCOW_LAYER_CONVERT_H
#define LCOW_LAYER_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/ext4_writer.h"
#include "core/layer/tar.h"

/* containerd's windows-lcow differ: -overlay -vhd -max-gb 128. */
#define LCOW_LAYER_MAX_DISK_SIZE (128ull << 30)

typedef struct lcow_layer_convert_options {
    bool convert_whiteouts;      /* tar2ext4 -overlay */
    bool inline_data;            /* tar2ext4 -inline */
    bool convert_backslash;      /* tar2ext4 -convert-slash */
    uint64_t max_disk_size;      /* bytes; 0 = tar2ext4's default of 16 GiB */
    lcow_ext4_final_fn on_final; /* see ext4_writer.h */
    void *on_final_ctx;
    lcow_ext4_written_fn on_written; /* see ext4_writer.h */
    void *on_written_ctx;
    bool exclusive; /* the output must not exist yet */
} lcow_layer_convert_options;

typedef struct lcow_layer_convert_result {
    uint64_t image_size; /* ext4 bytes (a multiple of 4096) */
    uint64_t tar_bytes;  /* of the stream, up to the end-of-archive marker */
    uint64_t entries;    /* tar entries seen (extended headers not counted) */
    uint32_t inodes;
} lcow_layer_convert_result;

/* Feeds every entry of src into w (open, not finished): the driver alone,
 * for callers that own the writer (e.g. to append a verity tree and a VHD
 * footer to its file after lcow_ext4_writer_finish). res may be NULL; it
 * gets tar_bytes and entries. */
lcow_code lcow_layer_convert_entries(lcow_ext4_writer *w, const lcow_tar_source *src,
                                     const lcow_layer_convert_options *opts,
                                     lcow_layer_convert_result *res, lcow_error *err);

/* The whole conversion into a new file at out_path: writer, entries,
 * finish, close (not synced). On failure out_path is removed. opts may be
 * NULL (tar2ext4 without options); res may be NULL. */
lcow_code lcow_layer_convert(const lcow_tar_source *src, const char *out_path,
                             const lcow_layer_convert_options *opts, lcow_layer_convert_result *res,
                             lcow_error *err);

#endif

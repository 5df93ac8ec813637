/* A layer blob file to an LCOW layer image, published atomically: what the
 * Apply RPC does to `<dir>/layer.vhd` and what lcowsnap-tar2ext4 does to
 * its -o file.
 *
 *   blob (tar, gzip or zstd; core/layer/blob.h: digest and diffID)
 *     -> tar reader -> tar2ext4's driver -> ext4 writer   (core/layer/convert.h)
 *                                              \-> on_final -> dm-verity hasher
 *   -> blob finish (a declared digest is checked here, before anything is published)
 *   -> ext4 finish -> [verity superblock + tree at the image size] -> [VHD footer]
 *   -> fsync -> publish (hard link / rename) -> directory sync
 *
 * The image is written to a temporary file in the output's own directory,
 * `.<name>.tmp-apply-<16 hex digits>`, so the rename never crosses a volume;
 * every failure (bad input, a digest mismatch, I/O, cancellation) removes it
 * and leaves the output name as it was. A crash can leave the temporary file:
 * lcow_layer_apply_sweep removes those (the snapshotter runs it at open and
 * in Cleanup).
 *
 * Cancellation: `cancelled` is polled before each piece of the decoded tar
 * stream is taken (at most the blob reader's 4 MiB ring apart) and between
 * the steps after the entries; once it returns true the call stops,
 * removes its temporary file and returns UNAVAILABLE "cancelled".
 *
 * Errors: the blob's and the converter's (INVALID_ARGUMENT naming the entry
 * and the offset, RESOURCE_EXHAUSTED past the maximum disk size or a file
 * over 128 GiB); NOT_FOUND for a missing blob file, INVALID_ARGUMENT when it
 * is a directory; ALREADY_EXISTS when the output exists and
 * `replace` is off; the os layer's codes for I/O. */
#ifndef LCOW_LAYER_APPLY_H
#define LCOW_LAYER_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/disk/sha256.h"
#include "core/disk/verity.h"
#include "core/layer/blob.h"

/* The file an LCOW read-only layer directory holds. */
#define LCOW_LAYER_APPLY_VHD_NAME "layer.vhd"
/* What follows ".<name>" in a temporary file's name. */
#define LCOW_LAYER_APPLY_TEMP_MARK ".tmp-apply-"

/* Polled during the conversion; true stops it. */
typedef bool (*lcow_layer_apply_cancel_fn)(void *ctx);

/* The image: tar2ext4's options. lcow_layer_apply_blob uses
 * LCOW_LAYER_APPLY_DIFFER_FORMAT, containerd's windows-lcow differ
 * (`tar2ext4 -overlay -vhd -max-gb 128`). */
typedef struct lcow_layer_apply_format {
    bool convert_whiteouts; /* -overlay */
    bool inline_data;       /* -inline */
    bool convert_backslash; /* -convert-slash */
    bool vhd_footer;        /* -vhd */
    bool verity;            /* -verity: superblock and hash tree after the ext4 image */
    uint64_t max_disk_size; /* -max-gb, in bytes; 0 = tar2ext4's default (16 GiB) */
} lcow_layer_apply_format;

#define LCOW_LAYER_APPLY_DIFFER_FORMAT                                                             \
    ((lcow_layer_apply_format){.convert_whiteouts = true,                                          \
                               .vhd_footer = true,                                                 \
                               .max_disk_size = 128ull << 30})

typedef struct lcow_layer_apply_options {
    const char *media_type; /* NULL or "": detect by magic bytes (blob.h) */
    const char *digest;     /* "sha256:<hex>" the blob must have; NULL: not checked */
    bool verity;            /* lcow_layer_apply_blob only: the format's verity */
    /* Publish by rename over an existing output (lcowsnap-tar2ext4, as
     * tar2ext4 truncates its -o file); otherwise an existing output is
     * ALREADY_EXISTS and is never replaced. */
    bool replace;
    lcow_layer_apply_cancel_fn cancelled; /* NULL: not cancellable */
    void *cancel_ctx;
} lcow_layer_apply_options;

typedef struct lcow_layer_apply_result {
    lcow_blob_format format;
    uint8_t digest[LCOW_SHA256_SIZE];  /* of the blob file */
    uint8_t diff_id[LCOW_SHA256_SIZE]; /* of the uncompressed tar stream */
    uint64_t blob_bytes;               /* the blob file's size */
    uint64_t tar_bytes;                /* the uncompressed stream's size */
    uint64_t image_bytes;              /* the ext4 part */
    uint64_t layer_bytes;              /* the whole output file */
    uint64_t entries;                  /* tar entries converted */
    bool has_root_hash;                /* with verity */
    uint8_t root_hash[LCOW_VERITY_HASH_SIZE];
} lcow_layer_apply_result;

/* Converts the blob file at blob_path into `<dir>/layer.vhd` with the
 * differ's format (plus dm-verity when opts->verity), never replacing an
 * existing layer.vhd. opts and res may be NULL. */
lcow_code lcow_layer_apply_blob(const char *blob_path, const char *dir,
                                const lcow_layer_apply_options *opts, lcow_layer_apply_result *res,
                                lcow_error *err);

/* The same into any output path with any format (opts->verity is ignored:
 * fmt says). */
lcow_code lcow_layer_apply_file(const char *blob_path, const char *out_path,
                                const lcow_layer_apply_format *fmt,
                                const lcow_layer_apply_options *opts, lcow_layer_apply_result *res,
                                lcow_error *err);

/* True when name (a directory entry) is a temporary file of an apply to
 * final_name: ".<final_name>.tmp-apply-..." */
bool lcow_layer_apply_is_temp(const char *name, const char *final_name);

/* Removes the temporary files an interrupted apply to final_name (NULL:
 * layer.vhd) left in dir. Only for directories where no apply is running. A
 * missing dir is fine. *removed (may be NULL) counts them. */
lcow_code lcow_layer_apply_sweep(const char *dir, const char *final_name, unsigned *removed,
                                 lcow_error *err);

#endif

/* LCOW scratch policy: which scratch disk an active snapshot gets and where
 * its bytes come from. The snapshotter owns the metadata side (owner lookup
 * by exact client key, sharing reference counts, retained disks); this module
 * owns the file side: label parsing, the per-size template cache, copying or
 * formatting sandbox.vhdx, and linking a shared disk.
 *
 * Label keys (exact): */
#ifndef LCOW_SCRATCH_H
#define LCOW_SCRATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/errors.h"
#include "core/base/types.h"
#include "core/disk/scratchdisk.h" /* lcow_scratch_backend */
#include "core/metastore.h"        /* lcow_meta_scratch */

#define LCOW_LABEL_SIZE_GB "containerd.io/snapshot/io.microsoft.container.storage.rootfs.size-gb"
/* Also sizing a container's scratch, after size-gb in precedence: bytes,
 * rounded up to whole GiB (containerd's generic label, and what its CRI
 * plugin sets for a Windows container's rootfs size). */
#define LCOW_LABEL_MAX_SIZE "containerd.io/snapshot/max-size"
#define LCOW_LABEL_SIZE_BYTES "containerd.io/snapshot/windows/rootfs.sizebytes"
#define LCOW_LABEL_LOCATION "containerd.io/snapshot/io.microsoft.container.storage.rootfs.location"
#define LCOW_LABEL_REUSE "containerd.io/snapshot/io.microsoft.container.storage.reuse-scratch"
#define LCOW_LABEL_OWNER "containerd.io/snapshot/io.microsoft.owner.key"

#define LCOW_SANDBOX_NAME "sandbox.vhdx"

typedef struct lcow_scratch_plan {
    /* The persisted mode of the record (core/metastore.h): NONE for views
     * and extract-* layers, OWN for a fresh sandbox.vhdx, SHARED for a link
     * to the owner's. */
    lcow_meta_scratch mode;
    uint32_t size_gb; /* OWN: 1..65536, default 20 */
    char *location;   /* OWN: resolved template directory (malloc'd), NULL = root */
    char *owner_key;  /* SHARED: owner's client key (malloc'd) */
} lcow_scratch_plan;

void lcow_scratch_plan_free(lcow_scratch_plan *plan);

typedef struct lcow_scratch lcow_scratch;

/* root: the snapshotter root (templates default there). format_from_gb:
 * own disks of this size and more are formatted in place, not copied from
 * the template (--scratch-format-from-gb; 0 = always copy; at most
 * LCOW_SCRATCH_MAX_GB). allow: the --scratch-dir-allow list (NULL/0 = any
 * existing absolute directory). */
lcow_code lcow_scratch_create(const char *root, lcow_scratch_backend backend,
                              uint32_t format_from_gb, const char *const *allow, size_t allow_count,
                              lcow_scratch **out, lcow_error *err);
void lcow_scratch_destroy(lcow_scratch *sc);

/* Decides from kind, key and labels, validating every label (the size from
 * size-gb, else max-size, else sizebytes; any of them malformed or out of
 * range -> InvalidArgument; relative, missing, non-directory or disallowed location ->
 * InvalidArgument). No files are created. */
lcow_code lcow_scratch_plan_for(lcow_scratch *sc, lcow_kind kind, const char *key,
                                const lcow_labels *labels, lcow_scratch_plan *plan,
                                lcow_error *err);

/* Checks a path against the allow list (after resolving "..", links and
 * junctions of its existing part); a path inside the service's root is
 * refused whatever the list says (InvalidArgument naming it). */
lcow_code lcow_scratch_path_allowed(lcow_scratch *sc, const char *path, lcow_error *err);

/* MODE_OWN: creates <snapshot_dir>/sandbox.vhdx from the template of
 * plan->size_gb (building the template once if missing, temp file + rename in
 * its own directory; concurrent callers of one size wait for one build,
 * different sizes do not wait for each other), by sparse copy or by direct
 * formatting, whichever the benchmark found faster for that size. Slow: call
 * without holding the metadata lock. On failure nothing is left behind. */
lcow_code lcow_scratch_create_own(lcow_scratch *sc, const lcow_scratch_plan *plan,
                                  const char *snapshot_dir, lcow_error *err);

/* CreateScratch (runhcs's standalone scratch): a formatted ext4 scratch VHDX
 * of size_gb GiB (0 = 20, at most LCOW_SCRATCH_MAX_GB) with block_size_mb
 * MiB blocks (0 = 1; a power of two up to 256) at path, which must be
 * absolute, allowed by the allow list, not exist yet and lie in an existing
 * directory. Built with the configured backend at a temp name next to path
 * and published without replacing anything (the build-and-publish step of
 * the templates). On failure nothing is left behind. */
lcow_code lcow_scratch_create_at(lcow_scratch *sc, const char *path, uint32_t size_gb,
                                 uint32_t block_size_mb, lcow_error *err);

/* MODE_SHARED: makes <snapshot_dir>/sandbox.vhdx a symbolic link to
 * owner_disk (falling back to a hard link, logged, where symlinks are not
 * available). */
lcow_code lcow_scratch_link_shared(lcow_scratch *sc, const char *owner_disk,
                                   const char *snapshot_dir, lcow_error *err);

/* Removes stale template temp files (crash leftovers) in the root and the
 * given location directories. */
lcow_code lcow_scratch_cleanup(lcow_scratch *sc, lcow_error *err);

#endif

/* Internals of the snapshotter shared with its tests and benchmark (not a
 * public contract). */
#ifndef LCOW_SNAPSHOTTER_INTERNAL_H
#define LCOW_SNAPSHOTTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/snapshotter.h"

/* <root>/snapshots/<id>, malloc'd. */
char *lcow_snapshotter_dir_of(const lcow_snapshotter *s, uint64_t id);

/* paths as a JSON array the way Go's encoding/json writes []string (never
 * null: an empty list is "[]"), malloc'd. */
char *lcow_snapshotter_json_paths(const char *const *paths, size_t count);

#endif

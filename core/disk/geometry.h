/* The shape of a virtual disk, one struct from the scratch policy down to
 * the VHDX writer and the virtdisk backend: each layer passes it on
 * unchanged, and lcow_vhdx_params_normalize (core/disk/vhdx.h) fills in the
 * defaults and checks the ranges once. */
#ifndef LCOW_DISK_GEOMETRY_H
#define LCOW_DISK_GEOMETRY_H

#include <stdint.h>

typedef struct lcow_disk_geometry {
    uint64_t size_bytes;           /* virtual size; a multiple of the logical sector, <= 64 TiB */
    uint32_t block_size;           /* bytes; 0 = 1 MiB; a power of two, 1..256 MiB */
    uint32_t logical_sector_size;  /* 0 = 512; 512 or 4096 */
    uint32_t physical_sector_size; /* 0 = 4096; 512 or 4096 */
} lcow_disk_geometry;

#endif

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), shared by the VHDX
 * writer/reader and the ext4 formatter.
 *
 * The two formats finalise differently, which is the classic pitfall:
 *   VHDX:  standard CRC-32C, lcow_crc32c(): init ~0, final XOR ~0;
 *   ext4:  ext2fs_crc32c_le(seed, ...), lcow_crc32c_update(): the caller's
 *          seed in, the raw register out, no final XOR. */
#ifndef LCOW_CRC32C_H
#define LCOW_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Runs the CRC register over data starting from crc; no inversion at either
 * end (ext4's crc32c_le). Chaining calls equals one call over the concatenation. */
uint32_t lcow_crc32c_update(uint32_t crc, const void *data, size_t len);

/* Standard CRC-32C of data: ~lcow_crc32c_update(~0, data, len).
 * lcow_crc32c("123456789", 9) == 0xE3069283. */
uint32_t lcow_crc32c(const void *data, size_t len);

#endif

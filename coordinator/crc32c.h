/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), the checksum of the
 * journal's frames: the SSE4.2 crc32 instruction where the CPU has it (chosen
 * at run time), the ARMv8 CRC instructions where the compiler targets them,
 * slicing-by-8 tables otherwise. All three give the same value; the check
 * value of "123456789" is 0xe3069283. */
#ifndef DP_COORDINATOR_CRC32C_H
#define DP_COORDINATOR_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes at buf, zlib-style:
 * dp_crc32c(dp_crc32c(0, a, n), b, m) is the CRC of a then b. */
uint32_t dp_crc32c(uint32_t crc, const void *buf, size_t n);

/* The table version, whatever the CPU: for tests. */
uint32_t dp_crc32c_portable(uint32_t crc, const void *buf, size_t n);

#endif

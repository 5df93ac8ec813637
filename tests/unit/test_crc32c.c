/* CRC-32C: standard check values and the ext4/VHDX finalisation split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/disk/crc32c.h"

static void standard_check_value(void **state)
{
    assert_int_equal(lcow_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(lcow_crc32c("", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros, of 0xff, ascending. */
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    assert_int_equal(lcow_crc32c(buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(lcow_crc32c(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(lcow_crc32c(buf, 32), 0x46DD794Eu);
}

static void update_is_unfinalised_and_chains(void **state)
{
    /* ext4 style: no final inversion. */
    assert_int_equal(lcow_crc32c_update(0xffffffffu, "123456789", 9), ~0xE3069283u);
    uint32_t split = lcow_crc32c_update(lcow_crc32c_update(7, "1234", 4), "56789", 5);
    assert_int_equal(split, lcow_crc32c_update(7, "123456789", 9));
    /* Odd lengths and unaligned starts hit the tail loop. */
    const char *s = "xthe quick brown fox jumps over the lazy dog";
    uint32_t whole = lcow_crc32c_update(0, s + 1, strlen(s) - 1);
    uint32_t parts = 0;
    for (size_t i = 1; i < strlen(s); i++)
        parts = lcow_crc32c_update(parts, s + i, 1);
    assert_int_equal(whole, parts);
}

/* Long inputs take the SSE4.2 instruction where the processor has it; byte
 * pieces always take the table: both must agree, at every alignment. */
static void long_inputs_match_the_table(void **state)
{
    static uint8_t buf[70000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    const size_t lens[] = {64, 65, 127, 4096, 65536, 69999};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        for (size_t start = 0; start < 8; start++) {
            size_t len = lens[k] - (start && lens[k] + start > sizeof buf ? start : 0);
            uint32_t whole = lcow_crc32c_update(0xffffffffu, buf + start, len);
            uint32_t parts = 0xffffffffu;
            for (size_t i = 0; i < len; i += 7)
                parts = lcow_crc32c_update(parts, buf + start + i, len - i < 7 ? len - i : 7);
            assert_int_equal(whole, parts);
        }
    }
    /* And the standard check value through a long buffer's prefix. */
    uint8_t msg[128];
    memset(msg, 0, sizeof msg);
    memcpy(msg, "123456789", 9);
    assert_int_equal(lcow_crc32c(msg, 9), 0xE3069283u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(standard_check_value),
        cmocka_unit_test(update_is_unfinalised_and_chains),
        cmocka_unit_test(long_inputs_match_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

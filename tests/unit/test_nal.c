/*
 * Unit tests for libcommon/nal: both framings, short and hostile input.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bits.h"
#include "nal.h"

static void test_annexb(void **state)
{
    /* AUD with a 4-byte start code, SPS with a 3-byte one, a slice, trailing zeros */
    static const uint8_t au[] = { 0,    0, 0, 1, 0x09, 0xf0, 0,    0,    1, 0x67,
                                  0x42, 0, 0, 0, 1,    0x65, 0x88, 0x84, 0, 0 };
    const uint8_t *nal;
    size_t n, pos = 0;

    (void) state;
    assert_true(cb_nal_is_annexb(au, sizeof(au)));
    assert_true(cb_nal_is_annexb(au + 1, sizeof(au) - 1));
    assert_false(cb_nal_is_annexb(au + 4, sizeof(au) - 4));
    assert_false(cb_nal_is_annexb(au, 2));
    assert_true(cb_nal_next_annexb(au, sizeof(au), &pos, &nal, &n));
    assert_int_equal(n, 2);
    assert_int_equal(nal[0], 0x09);
    assert_true(cb_nal_next_annexb(au, sizeof(au), &pos, &nal, &n));
    assert_int_equal(n, 2);
    assert_int_equal(nal[0], 0x67);
    assert_true(cb_nal_next_annexb(au, sizeof(au), &pos, &nal, &n));
    assert_int_equal(n, 3); /* the trailing zeros are not the slice's */
    assert_int_equal(nal[0], 0x65);
    assert_false(cb_nal_next_annexb(au, sizeof(au), &pos, &nal, &n));
    pos = 0;
    assert_false(cb_nal_next_annexb(au + 4, 2, &pos, &nal, &n));
}

static void test_prefixed(void **state)
{
    static const uint8_t au[] = { 0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84, 0 };
    static const uint8_t bad[] = { 0, 0, 0, 9, 0x65 };
    static const uint8_t zero[] = { 0, 0, 0, 0 };
    const uint8_t *nal;
    size_t n, pos = 0;

    (void) state;
    assert_int_equal(cb_nal_next_prefixed(au, sizeof(au), 4, &pos, &nal, &n), 1);
    assert_int_equal(n, 2);
    assert_int_equal(nal[0], 0x09);
    assert_int_equal(cb_nal_next_prefixed(au, sizeof(au), 4, &pos, &nal, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(nal[0], 0x65);
    /* one byte left: fewer than a length field, the end */
    assert_int_equal(cb_nal_next_prefixed(au, sizeof(au), 4, &pos, &nal, &n), 0);
    pos = 0;
    assert_int_equal(cb_nal_next_prefixed(bad, sizeof(bad), 4, &pos, &nal, &n), -EINVAL);
    pos = 0;
    assert_int_equal(cb_nal_next_prefixed(zero, sizeof(zero), 4, &pos, &nal, &n), -EINVAL);
    pos = 0;
    assert_int_equal(cb_nal_next_prefixed(au + 3, 3, 1, &pos, &nal, &n), 1); /* 1-byte lengths */
    assert_int_equal(n, 2);
}

static void test_unescape(void **state)
{
    /* 00 00 03 loses its 03; a 03 after a single zero, or after 00 00 03, stays */
    static const uint8_t in[] = { 0x42, 0, 0, 3, 1, 0, 3, 0, 0, 3, 3, 0xff };
    static const uint8_t want[] = { 0x42, 0, 0, 1, 0, 3, 0, 0, 3, 0xff };
    uint8_t out[16];

    (void) state;
    assert_int_equal(cb_nal_unescape(in, sizeof(in), out, sizeof(out)), sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(cb_nal_unescape(in, sizeof(in), out, 3), 3); /* bounded by cap */
}

static void test_bits(void **state)
{
    /* 101 | 1 (ue 0) | 010 (ue 1) | 011 (ue 2: se -1) | 00100 (ue 3: se +2) | 0, 8 zeros */
    static const uint8_t p[] = { 0xb4, 0xc8, 0x00 };
    static const uint8_t zeros[5] = { 0 };
    cb_bits_t b = { .p = p, .len = sizeof(p) };

    (void) state;
    assert_int_equal(cb_bits_read(&b, 3), 5);
    assert_int_equal(cb_bits_ue(&b), 0);
    assert_int_equal(cb_bits_ue(&b), 1);
    assert_int_equal(cb_bits_se(&b), -1);
    assert_int_equal(cb_bits_se(&b), 2);
    assert_int_equal(cb_bits_read(&b, 9), 0);
    assert_false(b.overrun);
    assert_int_equal(cb_bits_read(&b, 1), 0); /* past the end: a zero, and overrun */
    assert_true(b.overrun);

    b = (cb_bits_t){ .p = p, .len = sizeof(p) };
    assert_int_equal(cb_bits_read(&b, 24), 0xb4c800);
    b = (cb_bits_t){ .p = zeros, .len = sizeof(zeros) };
    assert_int_equal(cb_bits_ue(&b), 0); /* 32 leading zeros: not a valid code */
    assert_true(b.overrun);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_annexb),
        cmocka_unit_test(test_prefixed),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_bits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

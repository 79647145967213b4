/* Unit tests for services/ingest/ingest_amf0. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ingest_amf0.h"

static void test_round_trip_command(void **state)
{
    ingest_amf0_t *v[8];
    const ingest_amf0_t *o;
    cb_buf_t b;
    int n;

    (void) state;
    cb_buf_init(&b, 4096);
    assert_int_equal(ingest_amf0_put_string(&b, "connect"), 0);
    assert_int_equal(ingest_amf0_put_number(&b, 1), 0);
    assert_int_equal(ingest_amf0_put_object_start(&b), 0);
    assert_int_equal(ingest_amf0_put_key(&b, "app"), 0);
    assert_int_equal(ingest_amf0_put_string(&b, "live"), 0);
    assert_int_equal(ingest_amf0_put_key(&b, "videoCodecs"), 0);
    assert_int_equal(ingest_amf0_put_number(&b, 252.5), 0);
    assert_int_equal(ingest_amf0_put_key(&b, "fpad"), 0);
    assert_int_equal(ingest_amf0_put_bool(&b, true), 0);
    assert_int_equal(ingest_amf0_put_object_end(&b), 0);
    assert_int_equal(ingest_amf0_put_null(&b), 0);
    n = ingest_amf0_decode_all((const uint8_t *) b.data, b.len, v, 8);
    assert_int_equal(n, 4);
    assert_int_equal(v[0]->type, AMF0_STRING);
    assert_string_equal(v[0]->string, "connect");
    assert_true(v[1]->number == 1.0);
    o = v[2];
    assert_string_equal(ingest_amf0_get_string(o, "app"), "live");
    assert_true(ingest_amf0_get_number(o, "videoCodecs", 0) == 252.5);
    assert_true(ingest_amf0_get(o, "fpad")->boolean);
    assert_null(ingest_amf0_get_string(o, "missing"));
    assert_int_equal(v[3]->type, AMF0_NULL);
    for (int i = 0; i < n; i++)
        ingest_amf0_free(v[i]);
    cb_buf_release(&b);
}

static void test_ecma_array_strict_array_and_date(void **state)
{
    /* ECMA array {"w": 1.0}, strict array ["a"], date */
    const uint8_t ecma[] = { 0x08, 0, 0, 0, 1, 0, 1, 'w', 0x00, 0x3F,
                             0xF0, 0, 0, 0, 0, 0, 0, 0,   0,    9 };
    const uint8_t strict[] = { 0x0A, 0, 0, 0, 1, 0x02, 0, 1, 'a' };
    const uint8_t date[] = { 0x0B, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0, 0 };
    ingest_amf0_t *v;

    (void) state;
    assert_int_equal(ingest_amf0_decode(ecma, sizeof(ecma), &v), (int) sizeof(ecma));
    assert_int_equal(v->type, AMF0_OBJECT);
    assert_true(ingest_amf0_get_number(v, "w", 0) == 1.0);
    ingest_amf0_free(v);
    assert_int_equal(ingest_amf0_decode(strict, sizeof(strict), &v), (int) sizeof(strict));
    assert_string_equal(v->child->string, "a");
    ingest_amf0_free(v);
    assert_int_equal(ingest_amf0_decode(date, sizeof(date), &v), (int) sizeof(date));
    assert_int_equal(v->type, AMF0_NUMBER);
    ingest_amf0_free(v);
}

static void test_hostile_input(void **state)
{
    const uint8_t truncated[] = { 0x02, 0, 10, 'a' };
    const uint8_t nul[] = { 0x02, 0, 2, 'a', 0 };
    const uint8_t reference[] = { 0x07, 0, 1 };
    const uint8_t huge_array[] = { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05 };
    const uint8_t no_end[] = { 0x03, 0, 1, 'k', 0x05 };
    uint8_t deep[160];
    ingest_amf0_t *v;
    size_t i;

    (void) state;
    assert_int_equal(ingest_amf0_decode(truncated, sizeof(truncated), &v), -EINVAL);
    assert_int_equal(ingest_amf0_decode(nul, sizeof(nul), &v), -EINVAL);
    assert_int_equal(ingest_amf0_decode(reference, sizeof(reference), &v), -EINVAL);
    assert_int_equal(ingest_amf0_decode(huge_array, sizeof(huge_array), &v), -EINVAL);
    assert_int_equal(ingest_amf0_decode(no_end, sizeof(no_end), &v), -EINVAL);
    /* nesting deeper than the limit: strict arrays of one element inside each other */
    for (i = 0; i + 5 <= sizeof(deep); i += 5) {
        deep[i] = 0x0A;
        deep[i + 1] = deep[i + 2] = deep[i + 3] = 0;
        deep[i + 4] = 1;
    }
    assert_int_equal(ingest_amf0_decode(deep, sizeof(deep) - sizeof(deep) % 5, &v), -E2BIG);
    assert_int_equal(ingest_amf0_decode((const uint8_t *) "", 0, &v), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_command),
        cmocka_unit_test(test_ecma_array_strict_array_and_date),
        cmocka_unit_test(test_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

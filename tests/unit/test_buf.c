/* Unit tests for libcommon/buf. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_append_and_limit(void **state)
{
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 8);
    assert_int_equal(cb_buf_append(&b, "abcd", 4), 0);
    assert_int_equal(cb_buf_append_str(&b, "efgh"), 0);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    /* one byte past the maximum fails and leaves the content alone */
    assert_int_equal(cb_buf_append(&b, "i", 1), -E2BIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcdefgh");
    assert_true(b.cap <= 9);
    cb_buf_release(&b);
    assert_null(b.data);
}

static void test_appendf(void **state)
{
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 64);
    assert_int_equal(cb_buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(cb_buf_appendf(&b, "%0100d", 1), -E2BIG);
    assert_string_equal(b.data, "42-x");
    cb_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    cb_buf_release(&b);
}

static void test_json_string(void **state)
{
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 1024);
    assert_int_equal(cb_buf_append_json_string(&b, "a\"b\\c\n\t\x01", 8), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\"");
    cb_buf_reset(&b);
    /* valid UTF-8 passes, invalid bytes become U+FFFD */
    assert_int_equal(cb_buf_append_json_string(&b, "\xc3\xa9\xff", 3), 0);
    assert_string_equal(b.data, "\"\xc3\xa9\xef\xbf\xbd\"");
    cb_buf_reset(&b);
    /* overlong encoding of '/' is invalid */
    assert_int_equal(cb_buf_append_json_string(&b, "\xc0\xaf", 2), 0);
    assert_string_equal(b.data, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    cb_buf_release(&b);
}

static void test_json_string_too_big_is_atomic(void **state)
{
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 6);
    assert_int_equal(cb_buf_append_str(&b, "x"), 0);
    assert_int_equal(cb_buf_append_json_string(&b, "abcdef", 6), -E2BIG);
    assert_string_equal(b.data, "x");
    cb_buf_release(&b);
}

static void test_steal(void **state)
{
    cb_buf_t b;
    size_t len;
    char *s;

    (void) state;
    cb_buf_init(&b, 16);
    s = cb_buf_steal(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
    cb_buf_append_str(&b, "hello");
    s = cb_buf_steal(&b, &len);
    assert_string_equal(s, "hello");
    assert_int_equal(len, 5);
    assert_null(b.data);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_limit),
        cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_json_string_too_big_is_atomic),
        cmocka_unit_test(test_steal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

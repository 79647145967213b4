/* Unit tests for libcommon/route. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static void test_literal_and_params(void **state)
{
    cb_route_params_t p;

    (void) state;
    assert_true(cb_route_match("/v1/info", "/v1/info", &p));
    assert_int_equal(p.n, 0);
    assert_false(cb_route_match("/v1/info", "/v1/info/", &p));
    assert_false(cb_route_match("/v1/info", "/v1", &p));
    assert_true(cb_route_match("/v1/streams/{id}/kick", "/v1/streams/abc-1/kick", &p));
    assert_string_equal(cb_route_param(&p, "id"), "abc-1");
    assert_null(cb_route_param(&p, "other"));
    assert_false(cb_route_match("/v1/streams/{id}", "/v1/streams/", &p));
    assert_false(cb_route_match("/v1/streams/{id}", "/v1/streams/a/b", &p));
    assert_true(cb_route_match("/a/{x}/{y}", "/a/1/2", &p));
    assert_string_equal(cb_route_param(&p, "y"), "2");
}

static void test_param_decoding(void **state)
{
    cb_route_params_t p;

    (void) state;
    assert_true(cb_route_match("/f/{name}", "/f/a%20b", &p));
    assert_string_equal(cb_route_param(&p, "name"), "a b");
    assert_false(cb_route_match("/f/{name}", "/f/a%2Fb", &p)); /* no '/' smuggling */
    assert_false(cb_route_match("/f/{name}", "/f/a%00b", &p));
    assert_false(cb_route_match("/f/{name}", "/f/a%0ab", &p));
    assert_false(cb_route_match("/f/{name}", "/f/a%zz", &p));
    assert_false(cb_route_match("/f/{name}", "/f/a%2", &p));
}

static void test_rest_of_path(void **state)
{
    cb_route_params_t p;

    (void) state;
    assert_true(cb_route_match("/live/{path...}", "/live/s1/720p/123.m4s", &p));
    assert_string_equal(cb_route_param(&p, "path"), "s1/720p/123.m4s");
    assert_true(cb_route_match("/live/{path...}", "/live/master.m3u8", &p));
    assert_string_equal(cb_route_param(&p, "path"), "master.m3u8");
    assert_true(cb_route_match("/v/{id}/{rest...}", "/v/a/b%20c/d", &p));
    assert_string_equal(cb_route_param(&p, "id"), "a");
    assert_string_equal(cb_route_param(&p, "rest"), "b c/d");
    assert_false(cb_route_match("/live/{path...}", "/live", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/a/", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/a//b", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/a/../b", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/./b", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/a/%2e%2e/b", &p));
    assert_false(cb_route_match("/live/{path...}", "/live/a%2Fb", &p)); /* no '/' smuggling */
    assert_false(cb_route_match("/live/{path...}", "/live/a%00b", &p));
    assert_false(cb_route_match("/live/{path...}/x", "/live/a/x", &p)); /* only last */
}

static void test_pct_decode(void **state)
{
    char out[8];

    (void) state;
    assert_int_equal(cb_route_pct_decode("a+b", 3, out, sizeof(out), true), 3);
    assert_string_equal(out, "a b");
    assert_int_equal(cb_route_pct_decode("a+b", 3, out, sizeof(out), false), 3);
    assert_string_equal(out, "a+b");
    assert_int_equal(cb_route_pct_decode("12345678", 8, out, sizeof(out), false), -EINVAL);
    assert_int_equal(cb_route_pct_decode("%41", 3, out, sizeof(out), false), 1);
    assert_string_equal(out, "A");
}

static void test_query(void **state)
{
    char v[32];

    (void) state;
    assert_int_equal(cb_route_query_get("a=1&status=pending&x", "status", v, sizeof(v)), 7);
    assert_string_equal(v, "pending");
    assert_int_equal(cb_route_query_get("a=1&x", "x", v, sizeof(v)), 0);
    assert_string_equal(v, "");
    assert_int_equal(cb_route_query_get("a=1", "b", v, sizeof(v)), -ENOENT);
    assert_int_equal(cb_route_query_get("q=a%20b+c", "q", v, sizeof(v)), 5);
    assert_string_equal(v, "a b c");
    assert_int_equal(cb_route_query_get("", "q", v, sizeof(v)), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_and_params),
        cmocka_unit_test(test_param_decoding),
        cmocka_unit_test(test_rest_of_path),
        cmocka_unit_test(test_pct_decode),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

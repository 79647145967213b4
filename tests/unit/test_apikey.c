/* Unit tests for libcommon/apikey. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "apikey.h"

static void test_parse_and_lookup(void **state)
{
    cb_apikeys_t *k;
    char err[256];

    (void) state;
    assert_int_equal(
        cb_apikeys_parse("admin:s3cret, viewer:guest ,editor:ed1", &k, err, sizeof(err)), 0);
    assert_int_equal(cb_apikeys_count(k), 3);
    assert_int_equal(cb_apikeys_lookup(k, "s3cret", 6), CB_ROLE_ADMIN);
    assert_int_equal(cb_apikeys_lookup(k, "guest", 5), CB_ROLE_VIEWER);
    assert_int_equal(cb_apikeys_lookup(k, "ed1", 3), CB_ROLE_EDITOR);
    assert_int_equal(cb_apikeys_lookup(k, "s3cre", 5), CB_ROLE_NONE);
    assert_int_equal(cb_apikeys_lookup(k, "", 0), CB_ROLE_NONE);
    assert_int_equal(cb_apikeys_authorize(k, "Bearer s3cret"), CB_ROLE_ADMIN);
    assert_int_equal(cb_apikeys_authorize(k, "bearer  guest "), CB_ROLE_VIEWER);
    assert_int_equal(cb_apikeys_authorize(k, "Basic Z3Vlc3Q="), CB_ROLE_NONE);
    assert_int_equal(cb_apikeys_authorize(k, NULL), CB_ROLE_NONE);
    assert_true(CB_ROLE_ADMIN > CB_ROLE_EDITOR && CB_ROLE_EDITOR > CB_ROLE_VIEWER);
    cb_apikeys_free(k);
}

static void test_empty(void **state)
{
    cb_apikeys_t *k;
    char err[256];

    (void) state;
    assert_int_equal(cb_apikeys_parse("", &k, err, sizeof(err)), 0);
    assert_int_equal(cb_apikeys_count(k), 0);
    assert_int_equal(cb_apikeys_authorize(k, "Bearer x"), CB_ROLE_NONE);
    cb_apikeys_free(k);
    assert_int_equal(cb_apikeys_parse(NULL, &k, err, sizeof(err)), 0);
    cb_apikeys_free(k);
}

static void test_errors_never_show_the_secret(void **state)
{
    cb_apikeys_t *k = NULL;
    char err[256];

    (void) state;
    assert_int_equal(cb_apikeys_parse("admin:ok,root:topsecret", &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "entry 2"));
    assert_null(strstr(err, "topsecret"));
    assert_int_equal(cb_apikeys_parse("admin:", &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "empty key"));
    assert_int_equal(cb_apikeys_parse("admin:a b", &k, err, sizeof(err)), -EINVAL);
    assert_int_equal(cb_apikeys_parse("admin:dup,viewer:dup", &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(cb_apikeys_parse("nokey", &k, err, sizeof(err)), -EINVAL);
}

static void test_roles(void **state)
{
    cb_role_t r;

    (void) state;
    assert_int_equal(cb_role_parse("editor", 6, &r), 0);
    assert_int_equal(r, CB_ROLE_EDITOR);
    assert_int_not_equal(cb_role_parse("none", 4, &r), 0);
    assert_string_equal(cb_role_name(CB_ROLE_ADMIN), "admin");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_lookup),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_errors_never_show_the_secret),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

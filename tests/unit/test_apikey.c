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

static void test_key_ids_name_keys_without_showing_them(void **state)
{
    cb_apikeys_t *k;
    char err[256], a[CB_APIKEY_ID_LEN + 1], b[CB_APIKEY_ID_LEN + 1], c[CB_APIKEY_ID_LEN + 1];

    (void) state;
    assert_int_equal(cb_apikeys_parse("admin:s3cret,editor:ed1", &k, err, sizeof(err)), 0);
    assert_int_equal(cb_apikeys_authorize_id(k, "Bearer s3cret", a), CB_ROLE_ADMIN);
    assert_int_equal(cb_apikeys_authorize_id(k, "bearer s3cret ", b), CB_ROLE_ADMIN);
    assert_int_equal(strlen(a), CB_APIKEY_ID_LEN);
    assert_string_equal(a, b);
    assert_string_equal(a, "1ec1c26b50d5d3c5"); /* SHA-256("s3cret"), its first 8 bytes */
    assert_int_equal(cb_apikeys_authorize_id(k, "Bearer ed1", c), CB_ROLE_EDITOR);
    assert_string_not_equal(a, c);
    assert_int_equal(cb_apikeys_authorize_id(k, "Bearer nope", c), CB_ROLE_NONE);
    assert_string_equal(c, "");
    assert_int_equal(cb_apikeys_authorize_id(k, NULL, c), CB_ROLE_NONE);
    assert_string_equal(c, "");
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
        cmocka_unit_test(test_key_ids_name_keys_without_showing_them),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_errors_never_show_the_secret),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

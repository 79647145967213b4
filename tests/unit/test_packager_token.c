/* Unit tests for services/packager/packager_token (signed playback URLs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "packager_token.h"

#define KEY "unit-test-key"
#define NOW INT64_C(1800000000)

static void test_mint_and_check(void **state)
{
    char tok[PK_TOKEN_MAX];

    (void) state;
    assert_int_equal(pk_token_mint(KEY, "live/cam1", NOW + 60, NULL, tok), 0);
    assert_true(tok[0] == '~');
    assert_non_null(strstr(tok, "_any_"));
    assert_int_equal(pk_token_check(KEY, "live/cam1", tok, NOW, "192.0.2.1"), PK_TOKEN_OK);
    /* the same token for another stream, key, or after its time */
    assert_int_equal(pk_token_check(KEY, "live/cam2", tok, NOW, "192.0.2.1"), PK_TOKEN_INVALID);
    assert_int_equal(pk_token_check("other", "live/cam1", tok, NOW, "192.0.2.1"), PK_TOKEN_INVALID);
    assert_int_equal(pk_token_check(KEY, "live/cam1", tok, NOW + 61, "192.0.2.1"),
                     PK_TOKEN_EXPIRED);
    assert_int_equal(pk_token_check(KEY, "live/cam1", tok, NOW + 60, "192.0.2.1"), PK_TOKEN_OK);
}

static void test_ip_binding(void **state)
{
    char tok[PK_TOKEN_MAX];

    (void) state;
    assert_int_equal(pk_token_mint(KEY, "vod/a-1", NOW + 60, "192.0.2.7", tok), 0);
    assert_int_equal(pk_token_check(KEY, "vod/a-1", tok, NOW, "192.0.2.7"), PK_TOKEN_OK);
    assert_int_equal(pk_token_check(KEY, "vod/a-1", tok, NOW, "192.0.2.8"), PK_TOKEN_WRONG_IP);
    assert_int_equal(pk_token_check(KEY, "vod/a-1", tok, NOW, NULL), PK_TOKEN_WRONG_IP);
    assert_int_equal(pk_token_mint(KEY, "vod/a-1", NOW, "not-an-ip", tok), -22);
    assert_int_equal(pk_token_mint(KEY, "vod/a-1", 0, NULL, tok), -22);
}

static void test_malformed(void **state)
{
    char tok[PK_TOKEN_MAX], bad[PK_TOKEN_MAX];
    static const char *const broken[] = {
        "",
        "~",
        "~_",
        "~__",
        "x1800000060_any_00",
        "~-5_any_" /* short signature */,
        "~1800000060_any_zz",
        "~18e8_any_0000000000000000000000000000000000000000000000000000000000000000",
        "~1800000060_1.2.3_0000000000000000000000000000000000000000000000000000000000000000",
        "~99999999999999999999999_any_"
        "0000000000000000000000000000000000000000000000000000000000000000",
    };
    size_t i;

    (void) state;
    for (i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
        assert_int_equal(pk_token_check(KEY, "live/cam1", broken[i], NOW, "192.0.2.1"),
                         PK_TOKEN_INVALID);
    assert_int_equal(pk_token_check(KEY, "live/cam1", NULL, NOW, "192.0.2.1"), PK_TOKEN_INVALID);
    /* one hex digit changed, or the expiry moved: the signature no longer holds */
    assert_int_equal(pk_token_mint(KEY, "live/cam1", NOW + 60, NULL, tok), 0);
    snprintf(bad, sizeof(bad), "%s", tok);
    bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == '0' ? '1' : '0';
    assert_int_equal(pk_token_check(KEY, "live/cam1", bad, NOW, "192.0.2.1"), PK_TOKEN_INVALID);
    snprintf(bad, sizeof(bad), "%s", tok);
    bad[1] = bad[1] == '9' ? '8' : '9';
    assert_int_equal(pk_token_check(KEY, "live/cam1", bad, NOW, "192.0.2.1"), PK_TOKEN_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mint_and_check),
        cmocka_unit_test(test_ip_binding),
        cmocka_unit_test(test_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

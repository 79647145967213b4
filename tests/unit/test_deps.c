/*
 * Unit tests for libcommon/deps: which config tables a daemon gets for the dependencies it wants.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <stdlib.h>

#include "deps.h"

static void test_deps_add_only_what_is_wanted(void **state)
{
    cb_deps_t deps = { .want = CB_DEP_NATS | CB_DEP_REDIS };
    cb_daemon_t *d;
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    (void) state;
    assert_int_equal(cb_daemon_new("unit", "unit", 1, &d), 0);
    assert_int_equal(cb_deps_add_config(&deps, d), 0);
    f = open_memstream(&text, &len);
    cb_config_print_help(cb_daemon_config(d), f);
    fclose(f);
    assert_non_null(strstr(text, "CASTBUS_NATS_URL"));
    assert_non_null(strstr(text, "CASTBUS_REDIS_URL"));
    assert_null(strstr(text, "CASTBUS_KAFKA_BROKERS"));
    assert_null(strstr(text, "CASTBUS_PG_DSN"));
    free(text);
    cb_daemon_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deps_add_only_what_is_wanted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for libcommon/pg with no server running: configuration errors
 * name the key and calls fail fast with the right errno instead of hanging.
 * Behaviour against a real server is covered by tests/integration.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"
#include "pg.h"

/* a loopback port nothing listens on */
#define DEAD_PORT "1"

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

static void test_pg(void **state)
{
    cb_pg_config_t cfg = { .dsn = "postgresql://a:b@127.0.0.1:" DEAD_PORT "/db",
                           .pool_size = 2,
                           .connect_timeout_ms = 1000,
                           .statement_timeout_ms = 1000 };
    cb_pg_t *pg;
    cb_metrics_t *m;
    PGresult *r = NULL;
    char err[512];

    (void) state;
    cb_metrics_new(&m);
    cfg.dsn = "postgresql://[bad";
    assert_int_equal(cb_pg_new(&cfg, "unit", NULL, 0, m, &pg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_PG_DSN"));
    cfg.dsn = "postgresql://a:b@127.0.0.1:" DEAD_PORT "/db";
    assert_int_equal(cb_pg_new(&cfg, "unit", NULL, 0, m, &pg, err, sizeof(err)), 0);
    assert_int_equal(cb_pg_exec(pg, "SELECT 1", 0, NULL, &r, err, sizeof(err)), -ECONNREFUSED);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    /* right after a failure the next attempt waits for its backoff instead of reconnecting */
    assert_int_equal(cb_pg_exec(pg, "SELECT 1", 0, NULL, &r, err, sizeof(err)), -ECONNREFUSED);
    assert_non_null(strstr(err, "next connection attempt in"));
    cb_pg_free(pg);
    cb_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg),
    };

    cb_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for libcommon/redis with no server running: configuration errors
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
#include "redis.h"

/* a loopback port nothing listens on */
#define DEAD_PORT "1"

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

static void test_redis_urls(void **state)
{
    cb_redis_url_t u;

    (void) state;
    assert_int_equal(cb_redis_parse_url("redis://127.0.0.1:6380/2", &u), 0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_int_equal(cb_redis_parse_url("redis://:p%40ss@cache", &u), 0);
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "cache");
    assert_int_equal(u.port, 6379);
    assert_int_equal(cb_redis_parse_url("redis://user:pw@h:1/0", &u), 0);
    assert_string_equal(u.password, "pw");
    assert_int_not_equal(cb_redis_parse_url("http://h", &u), 0);
    assert_int_not_equal(cb_redis_parse_url("redis://h:99999", &u), 0);
    assert_int_not_equal(cb_redis_parse_url("redis://h/16", &u), 0);
    assert_int_not_equal(cb_redis_parse_url("redis://", &u), 0);
}

static void test_redis_without_server(void **state)
{
    cb_redis_config_t cfg = { .url = "redis://127.0.0.1:" DEAD_PORT, .timeout_ms = 200 };
    cb_redis_t *r;
    cb_metrics_t *m;
    redisReply *rep = NULL;
    char err[256];

    (void) state;
    cb_metrics_new(&m);
    assert_int_equal(cb_redis_new(&cfg, m, &r, err, sizeof(err)), 0);
    assert_int_equal(cb_redis_command(r, &rep, err, sizeof(err), "PING"), -ECONNREFUSED);
    assert_non_null(strstr(err, "cannot connect to Redis"));
    {
        long long n = 42;
        assert_int_equal(cb_redis_exec(r, &n, err, sizeof(err), "INCR %s", "k"), -ECONNREFUSED);
        assert_int_equal(n, 42); /* untouched on failure */
    }
    cb_redis_free(r);
    cfg.url = "nonsense";
    assert_int_equal(cb_redis_new(&cfg, m, &r, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_REDIS_URL"));
    cb_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_redis_without_server),
    };

    cb_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for the infrastructure clients (kafka, nats, pg, redis, deps)
 * with no server running: configuration errors name the key, calls fail
 * fast with the right errno instead of hanging, and nothing leaks. Their
 * behaviour against real servers is covered by tests/integration.
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "deps.h"
#include "log.h"

/* a loopback port nothing listens on */
#define DEAD_PORT "1"

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

static void test_kafka_errno(void **state)
{
    (void) state;
    assert_int_equal(cb_kafka_errno(RD_KAFKA_RESP_ERR_NO_ERROR), 0);
    assert_int_equal(cb_kafka_errno(RD_KAFKA_RESP_ERR__QUEUE_FULL), -ENOBUFS);
    assert_int_equal(cb_kafka_errno(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), -ETIMEDOUT);
    assert_int_equal(cb_kafka_errno(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), -ENOENT);
    assert_int_equal(cb_kafka_errno(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), -EMSGSIZE);
}

static void test_kafka_bad_extra_names_the_key(void **state)
{
    cb_kafka_config_t cfg = { .brokers = "127.0.0.1:" DEAD_PORT,
                              .message_timeout_ms = 1000,
                              .queue_max_messages = 10,
                              .extra = "no.such.property=1" };
    cb_kafka_producer_t *p;
    cb_metrics_t *m;
    char err[256];

    (void) state;
    cb_metrics_new(&m);
    cfg.sasl_mechanism = cfg.sasl_username = cfg.sasl_password = cfg.ssl_ca_location = "";
    assert_int_equal(cb_kafka_producer_new(&cfg, "unit", m, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no.such.property"));
    cfg.extra = "garbage";
    assert_int_equal(cb_kafka_producer_new(&cfg, "unit", m, &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_KAFKA_EXTRA"));
    cb_metrics_free(m);
}

static void test_kafka_without_brokers(void **state)
{
    cb_kafka_config_t cfg = { .brokers = "127.0.0.1:" DEAD_PORT,
                              .message_timeout_ms = 1000,
                              .queue_max_messages = 2,
                              .extra = "" };
    cb_kafka_producer_t *p;
    cb_metrics_t *m;
    char err[256];

    (void) state;
    cfg.sasl_mechanism = cfg.sasl_username = cfg.sasl_password = cfg.ssl_ca_location = "";
    cb_metrics_new(&m);
    assert_int_equal(cb_kafka_producer_new(&cfg, "unit", m, &p, err, sizeof(err)), 0);
    assert_int_not_equal(cb_kafka_producer_component.ready(p, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "no answer from the brokers"));
    /* the local queue is bounded: the third message is refused at once */
    assert_int_equal(cb_kafka_produce(p, "t", "k", 1, "v", 1, NULL, 0, NULL, NULL), 0);
    assert_int_equal(cb_kafka_produce(p, "t", "k", 1, "v", 1, NULL, 0, NULL, NULL), 0);
    assert_int_equal(cb_kafka_produce(p, "t", "k", 1, "v", 1, NULL, 0, NULL, NULL), -ENOBUFS);
    /* a synchronous produce reports the failed delivery (kafka_message_timeout, 1 s here) */
    assert_int_equal(cb_kafka_producer_flush(p, 3000), 0);
    assert_int_not_equal(
        cb_kafka_produce_sync(p, "t", NULL, 0, "v", 1, NULL, 0, 60000, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "delivery to 't' failed"));
    cb_kafka_producer_free(p);
    cb_metrics_free(m);
}

static void test_nats_without_server(void **state)
{
    cb_nats_config_t cfg = { .url = "nats://127.0.0.1:" DEAD_PORT,
                             .user = "",
                             .password = "",
                             .token = "",
                             .request_timeout_ms = 200 };
    cb_nats_t *n;
    cb_metrics_t *m;
    cb_buf_t reply;
    char err[256];

    (void) state;
    cb_metrics_new(&m);
    assert_int_equal(cb_nats_new(&cfg, "unit", m, &n, err, sizeof(err)), 0);
    assert_int_equal(cb_nats_component.ready(n, err, sizeof(err)), -ENOTCONN);
    cb_buf_init(&reply, 1024);
    assert_int_not_equal(cb_nats_request(n, "entitlement.check", "{}", 2, 100, &reply), 0);
    cb_buf_release(&reply);
    cb_nats_free(n);
    cb_metrics_free(m);
}

static void test_nats_error_reply(void **state)
{
    cb_buf_t b;
    json_t *j;

    (void) state;
    cb_buf_init(&b, 1024);
    assert_int_equal(cb_nats_error_reply(&b, "invalid_request", "content_id", "field 'x': \"q\""),
                     0);
    j = json_loads(b.data, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "v")), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "field")),
                        "content_id");
    json_decref(j);
    cb_buf_release(&b);
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
    cb_redis_free(r);
    cfg.url = "nonsense";
    assert_int_equal(cb_redis_new(&cfg, m, &r, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "CASTBUS_REDIS_URL"));
    cb_metrics_free(m);
}

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
        cmocka_unit_test(test_kafka_errno),
        cmocka_unit_test(test_kafka_bad_extra_names_the_key),
        cmocka_unit_test(test_kafka_without_brokers),
        cmocka_unit_test(test_nats_without_server),
        cmocka_unit_test(test_nats_error_reply),
        cmocka_unit_test(test_pg),
        cmocka_unit_test(test_redis_urls),
        cmocka_unit_test(test_redis_without_server),
        cmocka_unit_test(test_deps_add_only_what_is_wanted),
    };

    cb_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

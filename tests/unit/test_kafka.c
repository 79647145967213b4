/*
 * Unit tests for libcommon/kafka with no server running: configuration errors
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

#include <librdkafka/rdkafka.h>

#include "kafka.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_errno),
        cmocka_unit_test(test_kafka_bad_extra_names_the_key),
        cmocka_unit_test(test_kafka_without_brokers),
    };

    cb_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

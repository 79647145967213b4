/*
 * Unit tests for libcommon/nats with no server running: configuration errors
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

#include <jansson.h>

#include "log.h"
#include "nats.h"

/* a loopback port nothing listens on */
#define DEAD_PORT "1"

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nats_without_server),
        cmocka_unit_test(test_nats_error_reply),
    };

    cb_log_set_sink(quiet, NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

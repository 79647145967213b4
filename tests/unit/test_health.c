/* Unit tests for libcommon/health. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "health.h"
#include "log.h"

static int up = 1;

static int check_flag(void *arg, char *err, size_t errlen)
{
    (void) arg;
    if (up)
        return 0;
    snprintf(err, errlen, "broker unreachable");
    return -ECONNREFUSED;
}

static int check_ok(void *arg, char *err, size_t errlen)
{
    (void) arg;
    (void) err;
    (void) errlen;
    return 0;
}

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

static void test_states(void **state)
{
    cb_metrics_t *m;
    cb_health_t *h;
    json_t *r;

    (void) state;
    cb_log_set_sink(quiet, NULL);
    assert_int_equal(cb_metrics_new(&m), 0);
    assert_int_equal(cb_health_new(1000, m, &h), 0);
    assert_int_equal(cb_health_add(h, "kafka", check_flag, NULL), 0);
    assert_int_equal(cb_health_add(h, "storage", check_ok, NULL), 0);

    assert_false(cb_health_ready(h, &r));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "starting");
    json_decref(r);

    up = 1;
    cb_health_run_once(h);
    assert_true(cb_health_ready(h, &r));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "ready");
    assert_true(json_is_true(
        json_object_get(json_object_get(json_object_get(r, "checks"), "kafka"), "ok")));
    json_decref(r);

    up = 0;
    cb_health_run_once(h);
    assert_false(cb_health_ready(h, &r));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "unready");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(r, "checks"), "kafka"), "error")),
                        "broker unreachable");
    json_decref(r);

    up = 1;
    cb_health_run_once(h);
    assert_true(cb_health_ready(h, NULL));
    cb_health_set_draining(h);
    assert_false(cb_health_ready(h, &r));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "draining");
    json_decref(r);
    assert_true(cb_health_alive(h));
    cb_health_free(h);
    cb_metrics_free(m);
    cb_log_set_sink(NULL, NULL);
}

static void test_thread_runs_rounds(void **state)
{
    cb_metrics_t *m;
    cb_health_t *h;
    int i;

    (void) state;
    cb_log_set_sink(quiet, NULL);
    up = 1;
    assert_int_equal(cb_metrics_new(&m), 0);
    assert_int_equal(cb_health_new(100, m, &h), 0);
    assert_int_equal(cb_health_add(h, "kafka", check_flag, NULL), 0);
    assert_int_equal(cb_health_start(h), 0);
    for (i = 0; i < 200 && !cb_health_ready(h, NULL); i++)
        usleep(10000);
    assert_true(cb_health_ready(h, NULL));
    up = 0;
    for (i = 0; i < 200 && cb_health_ready(h, NULL); i++)
        usleep(10000);
    assert_false(cb_health_ready(h, NULL));
    cb_health_free(h);
    cb_metrics_free(m);
    cb_log_set_sink(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),
        cmocka_unit_test(test_thread_runs_rounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for libcommon/log. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static char last[16384];
static int nlines;

static void sink(const char *line, size_t len, void *arg)
{
    (void) arg;
    assert_true(len < sizeof(last));
    memcpy(last, line, len);
    last[len] = '\0';
    nlines++;
}

static json_t *parse_last(void)
{
    json_error_t e;
    size_t n = strlen(last);
    json_t *j;

    assert_true(n > 0 && last[n - 1] == '\n');
    j = json_loads(last, 0, &e);
    assert_non_null(j);
    return j;
}

static int setup(void **state)
{
    (void) state;
    cb_log_init("unit", CB_LOG_DEBUG);
    cb_log_set_sink(sink, NULL);
    nlines = 0;
    return 0;
}

static void test_json_line(void **state)
{
    json_t *j;

    (void) state;
    cb_log_info("open('%s') failed: %d", "/tmp/\"x\"", 13);
    j = parse_last();
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "daemon")), "unit");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "open('/tmp/\"x\"') failed: 13");
    assert_non_null(json_object_get(j, "ts"));
    assert_null(json_object_get(j, "stream_id"));
    json_decref(j);
}

static void test_levels(void **state)
{
    (void) state;
    cb_log_set_level(CB_LOG_WARN);
    cb_log_info("hidden");
    cb_log_debug("hidden");
    assert_int_equal(nlines, 0);
    cb_log_warn("shown");
    cb_log_error("shown");
    assert_int_equal(nlines, 2);
    cb_log_set_level(CB_LOG_DEBUG);
}

static void test_ids_scope_and_explicit(void **state)
{
    cb_log_ids_t scope = { .request_id = "r1", .stream_id = "s-scope" };
    cb_log_ids_t explicit = { .stream_id = "s1", .job_id = "s1:7" };
    json_t *j;

    (void) state;
    cb_log_scope_set(&scope);
    CB_LOG(CB_LOG_INFO, &explicit, "segment %d written", 7);
    cb_log_scope_set(NULL);
    j = parse_last();
    assert_string_equal(json_string_value(json_object_get(j, "request_id")), "r1");
    assert_string_equal(json_string_value(json_object_get(j, "stream_id")), "s1");
    assert_string_equal(json_string_value(json_object_get(j, "job_id")), "s1:7");
    json_decref(j);
}

static void test_long_message_is_cut(void **state)
{
    char *big = malloc(3 * CB_LOG_MSG_MAX);
    json_t *j;
    const char *msg;

    (void) state;
    memset(big, 'x', 3 * CB_LOG_MSG_MAX - 1);
    big[3 * CB_LOG_MSG_MAX - 1] = '\0';
    cb_log_info("%s", big);
    j = parse_last();
    msg = json_string_value(json_object_get(j, "msg"));
    assert_int_equal(strlen(msg), CB_LOG_MSG_MAX + strlen("...(truncated)"));
    assert_non_null(strstr(msg, "...(truncated)"));
    json_decref(j);
    free(big);
}

static void test_control_bytes_stay_json(void **state)
{
    json_t *j;

    (void) state;
    cb_log_warn("bad input: %s", "\x01\xff\n");
    j = parse_last();
    assert_non_null(json_object_get(j, "msg"));
    json_decref(j);
}

static void test_level_names(void **state)
{
    cb_log_level_t l;

    (void) state;
    assert_int_equal(cb_log_level_parse("warning", &l), 0);
    assert_int_equal(l, CB_LOG_WARN);
    assert_int_equal(cb_log_level_parse("error", &l), 0);
    assert_int_equal(l, CB_LOG_ERROR);
    assert_int_not_equal(cb_log_level_parse("loud", &l), 0);
    assert_string_equal(cb_log_level_name(CB_LOG_DEBUG), "debug");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_json_line, setup),
        cmocka_unit_test_setup(test_levels, setup),
        cmocka_unit_test_setup(test_ids_scope_and_explicit, setup),
        cmocka_unit_test_setup(test_long_message_is_cut, setup),
        cmocka_unit_test_setup(test_control_bytes_stay_json, setup),
        cmocka_unit_test_setup(test_level_names, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

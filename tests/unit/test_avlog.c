/*
 * Unit tests for libcommon/avlog: FFmpeg's messages arrive in cb_log as
 * whole lines, warnings and errors only.
 */
#include <jansson.h>
#include <libavutil/log.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "avlog.h"
#include "log.h"

static char last[4096];
static int nlines;

static void sink(const char *line, size_t len, void *arg)
{
    (void) arg;
    assert_true(len < sizeof(last));
    memcpy(last, line, len);
    last[len] = '\0';
    nlines++;
}

static void expect_last(const char *level, const char *msg)
{
    json_error_t e;
    json_t *j = json_loads(last, 0, &e);

    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), level);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), msg);
    json_decref(j);
}

static int setup(void **state)
{
    (void) state;
    cb_log_init("unit", CB_LOG_DEBUG);
    cb_log_set_sink(sink, NULL);
    cb_avlog_install();
    nlines = 0;
    return 0;
}

static void test_levels_and_lines(void **state)
{
    (void) state;
    av_log(NULL, AV_LOG_INFO, "encoder statistics nobody asked for\n");
    av_log(NULL, AV_LOG_VERBOSE, "more of them\n");
    assert_int_equal(nlines, 0);
    av_log(NULL, AV_LOG_WARNING, "non-monotonic dts %d\n", 42);
    assert_int_equal(nlines, 1);
    expect_last("warn", "ffmpeg: non-monotonic dts 42");
    av_log(NULL, AV_LOG_ERROR, "invalid data found\n");
    expect_last("error", "ffmpeg: invalid data found");
}

static void test_pieces_make_one_line(void **state)
{
    (void) state;
    av_log(NULL, AV_LOG_WARNING, "first half, ");
    assert_int_equal(nlines, 0);
    av_log(NULL, AV_LOG_WARNING, "second half\n");
    assert_int_equal(nlines, 1);
    expect_last("warn", "ffmpeg: first half, second half");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_levels_and_lines, setup),
        cmocka_unit_test_setup(test_pieces_make_one_line, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

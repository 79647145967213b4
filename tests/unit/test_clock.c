/*
 * Unit tests for libcommon/clock: units agree, deadlines are normalised.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "clock.h"

static void test_units_agree(void **state)
{
    int64_t us = cb_clock_mono_us(), ms = cb_clock_mono_ms(), us2 = cb_clock_mono_us();
    struct timespec ts;

    (void) state;
    assert_true(us <= us2);
    assert_true(ms >= us / 1000 && ms <= us2 / 1000);
    clock_gettime(CLOCK_REALTIME, &ts);
    assert_true(cb_clock_wall_ms() >= (int64_t) ts.tv_sec * 1000);
    assert_true(cb_clock_wall_ms() > 1600000000000LL); /* after 2020: milliseconds since 1970 */
}

static void test_deadline(void **state)
{
    struct timespec before, d;
    int64_t b, t;

    (void) state;
    clock_gettime(CLOCK_REALTIME, &before);
    cb_clock_deadline(&d, 2999999); /* carries into the seconds whatever now is */
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000);
    b = (int64_t) before.tv_sec * 1000000 + before.tv_nsec / 1000;
    t = (int64_t) d.tv_sec * 1000000 + d.tv_nsec / 1000;
    assert_true(t - b >= 2999999);
    cb_clock_deadline(&d, 0);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units_agree),
        cmocka_unit_test(test_deadline),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for libcommon/workq. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "workq.h"

static atomic_int ran;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;

static void count_job(void *arg)
{
    (void) arg;
    atomic_fetch_add(&ran, 1);
}

static void blocked_job(void *arg)
{
    (void) arg;
    pthread_mutex_lock(&gate);
    pthread_mutex_unlock(&gate);
    atomic_fetch_add(&ran, 1);
}

static void test_runs_everything_before_free(void **state)
{
    cb_workq_t *q;
    int i;

    (void) state;
    atomic_store(&ran, 0);
    assert_int_equal(cb_workq_new("t", 3, 1000, &q), 0);
    for (i = 0; i < 500; i++)
        assert_int_equal(cb_workq_submit(q, count_job, NULL), 0);
    cb_workq_free(q);
    assert_int_equal(atomic_load(&ran), 500);
}

static void test_full_queue_says_eagain(void **state)
{
    cb_workq_t *q;
    int i, accepted = 0;

    (void) state;
    atomic_store(&ran, 0);
    pthread_mutex_lock(&gate);
    assert_int_equal(cb_workq_new("t", 1, 4, &q), 0);
    for (i = 0; i < 10; i++) {
        int rc = cb_workq_submit(q, blocked_job, NULL);
        assert_true(rc == 0 || rc == -EAGAIN);
        accepted += rc == 0;
    }
    /* one running (maybe) plus four queued */
    assert_true(accepted >= 4 && accepted <= 5);
    assert_true(cb_workq_pending(q) >= 4);
    pthread_mutex_unlock(&gate);
    cb_workq_free(q);
    assert_int_equal(atomic_load(&ran), accepted);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_everything_before_free),
        cmocka_unit_test(test_full_queue_says_eagain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

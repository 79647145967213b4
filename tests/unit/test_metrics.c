/* Unit tests for libcommon/metrics. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(cb_metrics_t *m)
{
    static cb_buf_t b;

    cb_buf_release(&b);
    cb_buf_init(&b, 1 << 22);
    assert_int_equal(cb_metrics_render(m, &b), 0);
    return b.data ? b.data : "";
}

static void test_counter_and_gauge(void **state)
{
    cb_metrics_t *m;
    cb_metric_t *c, *g;
    char *out;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    c = cb_metrics_counter(m, "t_requests_total", "Requests.",
                           (const char *[]){ "method", "code", NULL });
    g = cb_metrics_gauge(m, "t_temperature", "A gauge without labels.", NULL);
    cb_metric_add(c, (const char *[]){ "GET", "200" }, 1);
    cb_metric_add(c, (const char *[]){ "GET", "200" }, 2);
    cb_metric_add(c, (const char *[]){ "POST", "500" }, 1);
    cb_metric_set(g, NULL, -1.5);
    out = render(m);
    assert_non_null(strstr(out, "# HELP t_requests_total Requests.\n"
                                "# TYPE t_requests_total counter\n"
                                "t_requests_total{method=\"GET\",code=\"200\"} 3\n"
                                "t_requests_total{method=\"POST\",code=\"500\"} 1\n"));
    assert_non_null(strstr(out, "# TYPE t_temperature gauge\nt_temperature -1.5\n"));
    /* the same name again returns the same family */
    assert_ptr_equal(cb_metrics_counter(m, "t_requests_total", "x", NULL), c);
    cb_metrics_free(m);
}

static void test_unlabelled_metric_is_exported_at_zero(void **state)
{
    cb_metrics_t *m;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    cb_metrics_counter(m, "t_events_total", "Events.", NULL);
    cb_metrics_counter(m, "t_labelled_total", "Labelled.", (const char *[]){ "x", NULL });
    assert_non_null(strstr(render(m), "t_events_total 0\n"));
    assert_null(strstr(render(m), "t_labelled_total"));
    cb_metrics_free(m);
}

static void test_histogram(void **state)
{
    const double bounds[] = { 0.1, 1, 10 };
    cb_metrics_t *m;
    cb_metric_t *h;
    char *out;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    h = cb_metrics_histogram(m, "t_latency_seconds", "Latency.", (const char *[]){ "route", NULL },
                             bounds, 3);
    cb_metric_observe(h, (const char *[]){ "/a" }, 0.05);
    cb_metric_observe(h, (const char *[]){ "/a" }, 0.5);
    cb_metric_observe(h, (const char *[]){ "/a" }, 0.5);
    cb_metric_observe(h, (const char *[]){ "/a" }, 100);
    out = render(m);
    assert_non_null(strstr(out, "t_latency_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
                                "t_latency_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
                                "t_latency_seconds_bucket{route=\"/a\",le=\"10\"} 3\n"
                                "t_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
                                "t_latency_seconds_sum{route=\"/a\"} 101.05\n"
                                "t_latency_seconds_count{route=\"/a\"} 4\n"));
    cb_metrics_free(m);
}

static void test_escaping(void **state)
{
    cb_metrics_t *m;
    cb_metric_t *c;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    c = cb_metrics_counter(m, "t_x_total", "Help with \\ and\nnewline.",
                           (const char *[]){ "v", NULL });
    cb_metric_add(c, (const char *[]){ "a\"b\\c\nd" }, 1);
    assert_non_null(strstr(render(m), "# HELP t_x_total Help with \\\\ and\\nnewline.\n"));
    assert_non_null(strstr(render(m), "t_x_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
    cb_metrics_free(m);
}

static void test_series_limit(void **state)
{
    cb_metrics_t *m;
    cb_metric_t *c;
    char label[32], *out;
    int i;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    c = cb_metrics_counter(m, "t_by_stream_total", "Per stream.", (const char *[]){ "s", NULL });
    for (i = 0; i < CB_METRICS_MAX_SERIES + 10; i++) {
        snprintf(label, sizeof(label), "s%d", i);
        cb_metric_add(c, (const char *[]){ label }, 1);
    }
    out = render(m);
    assert_non_null(strstr(out, "t_by_stream_total{s=\"s0\"} 1\n"));
    assert_null(strstr(out, "{s=\"s4100\"}"));
    assert_non_null(
        strstr(out, "castbus_metrics_series_dropped_total{metric=\"t_by_stream_total\"} 10\n"));
    cb_metrics_free(m);
}

static cb_metric_t *shared;

static void *hammer(void *arg)
{
    cb_series_t *s = cb_metric_series(shared, (const char *[]){ "x" });
    int i;

    (void) arg;
    for (i = 0; i < 100000; i++)
        cb_series_add(s, 1);
    return NULL;
}

static void test_concurrent_adds(void **state)
{
    pthread_t t[4];
    cb_metrics_t *m;
    int i;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    shared = cb_metrics_counter(m, "t_hits_total", "Hits.", (const char *[]){ "k", NULL });
    for (i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(cb_series_value(cb_metric_series(shared, (const char *[]){ "x" })) == 400000.0);
    cb_metrics_free(m);
}

static void test_process_collector(void **state)
{
    cb_metrics_t *m;
    char *out;

    (void) state;
    assert_int_equal(cb_metrics_new(&m), 0);
    assert_int_equal(cb_metrics_add_process_collector(m), 0);
    out = render(m);
    assert_non_null(strstr(out, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(out, "process_resident_memory_bytes "));
    assert_non_null(strstr(out, "process_open_fds "));
    cb_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_and_gauge),
        cmocka_unit_test(test_unlabelled_metric_is_exported_at_zero),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_series_limit),
        cmocka_unit_test(test_concurrent_adds),
        cmocka_unit_test(test_process_collector),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);

    return rc;
}

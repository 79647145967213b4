/*
 * Unit tests for libcommon/daemon: configuration results, readiness made of
 * the attached components' checks, and the shutdown sequence (readiness
 * flips to draining, drains in reverse order within the grace period, the
 * HTTP server keeps answering until the end).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "daemon.h"
#include "log.h"

static char order[64];
static atomic_int ready_a = 1;
static int port;
static int64_t drain_deadline;
static long readyz_during_drain, healthz_during_drain;

static long http_status(const char *path)
{
    CURL *c = curl_easy_init();
    char url[128];
    long status = 0;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, fopen("/dev/null", "w"));
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static int ready(void *obj, char *err, size_t errlen)
{
    if (strcmp(obj, "a") == 0 && !atomic_load(&ready_a)) {
        snprintf(err, errlen, "a is down");
        return -ECONNREFUSED;
    }
    return 0;
}

static void drain(void *obj, int64_t deadline_ms)
{
    strcat(order, "d");
    strcat(order, obj);
    drain_deadline = deadline_ms;
    if (strcmp(obj, "b") == 0) {
        /* the last component drains slowly: probes must still be answered */
        readyz_during_drain = http_status("/readyz");
        healthz_during_drain = http_status("/healthz");
    }
}

static void free_obj(void *obj)
{
    strcat(order, "f");
    strcat(order, obj);
}

static const cb_component_ops_t ops = {
    .name = "fake", .ready = ready, .drain = drain, .free = free_obj
};
static const cb_component_ops_t ops_b = {
    .name = "fake-b", .ready = ready, .drain = drain, .free = free_obj
};

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

typedef struct probe {
    cb_daemon_t *d;
    long ready_ok, ready_down;
} probe_t;

static void *prober(void *arg)
{
    probe_t *p = arg;
    int i;

    for (i = 0; i < 500 && (port = cb_http_port(cb_daemon_http(p->d))) == 0; i++)
        usleep(10000);
    for (i = 0; i < 500 && http_status("/readyz") != 200; i++)
        usleep(10000);
    p->ready_ok = http_status("/readyz");
    atomic_store(&ready_a, 0);
    for (i = 0; i < 500 && http_status("/readyz") != 503; i++)
        usleep(10000);
    p->ready_down = http_status("/readyz");
    atomic_store(&ready_a, 1);
    kill(getpid(), SIGTERM);
    return NULL;
}

static void test_lifecycle(void **state)
{
    char *argv[] = { "x", "--http-host=127.0.0.1", "--http-port=0", "--health-interval=100ms",
                     "--shutdown-grace=5s" };
    cb_daemon_t *d;
    pthread_t t;
    probe_t p = { 0 };
    int64_t before;

    (void) state;
    cb_log_set_sink(quiet, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    assert_int_equal(cb_daemon_new("unit", "unit daemon", 1, &d), 0);
    assert_int_equal(cb_daemon_configure(d, 5, argv), CB_DAEMON_CONTINUE);
    assert_int_equal(cb_daemon_attach(d, &ops_b, "b"), 0);
    assert_int_equal(cb_daemon_attach(d, &ops, "a"), 0);
    p.d = d;
    pthread_create(&t, NULL, prober, &p);
    before = cb_clock_mono_ms();
    assert_int_equal(cb_daemon_run(d), 0);
    pthread_join(t, NULL);
    assert_int_equal(p.ready_ok, 200);
    assert_int_equal(p.ready_down, 503);
    /* reverse order of attachment, then frees in reverse too */
    assert_string_equal(order, "dadb");
    assert_true(drain_deadline >= before + 5000 && drain_deadline <= cb_clock_mono_ms() + 5000);
    assert_int_equal(readyz_during_drain, 503);
    assert_int_equal(healthz_during_drain, 200);
    cb_daemon_free(d);
    assert_string_equal(order, "dadbfafb");
    curl_global_cleanup();
    cb_log_set_sink(NULL, NULL);
}

static void test_configure_results(void **state)
{
    char *help[] = { "x", "--help" };
    char *bad[] = { "x", "--http-port=notaport" };
    char *keys[] = { "x", "--api-keys=root:x" };
    cb_daemon_t *d;
    FILE *saved = stdout;

    (void) state;
    cb_log_set_sink(quiet, NULL);
    assert_int_equal(cb_daemon_new("unit", "unit daemon", 8099, &d), 0);
    stdout = fopen("/dev/null", "w");
    assert_int_equal(cb_daemon_configure(d, 2, help), CB_DAEMON_EXIT);
    fclose(stdout);
    stdout = saved;
    assert_int_equal(cb_daemon_exit_code(d, CB_DAEMON_EXIT), 0);
    cb_daemon_free(d);

    assert_int_equal(cb_daemon_new("unit", "unit daemon", 8099, &d), 0);
    assert_int_equal(cb_daemon_configure(d, 2, bad), -EINVAL);
    assert_int_equal(cb_daemon_exit_code(d, -EINVAL), 2);
    cb_daemon_free(d);

    assert_int_equal(cb_daemon_new("unit", "unit daemon", 8099, &d), 0);
    assert_int_equal(cb_daemon_configure(d, 2, keys), -EINVAL);
    cb_daemon_free(d);
    cb_log_set_sink(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configure_results),
        cmocka_unit_test(test_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * health.c - cached readiness checks; see health.h.
 *
 * DESIGN: one thread loops over the checks, then sleeps on a condition
 * variable until the next interval (or until it is told to stop). Results
 * are copied under a mutex; readers only ever take that mutex briefly.
 * Transitions are logged once (ok -> failing as a warning, failing -> ok as
 * info) so a flapping dependency is visible without flooding the log.
 */
#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#define MAX_CHECKS 16
/* liveness fails when no round completed for this long */
#define STALL_MS 60000

typedef struct check {
    char name[32];
    cb_health_check_fn fn;
    void *arg;
    bool ran;
    bool ok;
    char error[256];
    double latency_ms;
    cb_series_t *up; /* castbus_dependency_up{dependency} */
} check_t;

struct cb_health {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool started, stopping;
    int64_t interval_ms;
    check_t checks[MAX_CHECKS];
    size_t nchecks;
    bool round_done;
    int64_t last_round_ms;
    atomic_bool draining;
    cb_series_t *ready_gauge;
    cb_metric_t *dependency_up;
};

int cb_health_new(int64_t interval_ms, cb_metrics_t *metrics, cb_health_t **out)
{
    cb_health_t *h = calloc(1, sizeof(*h));
    pthread_condattr_t ca;

    if (!h)
        return -ENOMEM;
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    h->interval_ms = interval_ms > 0 ? interval_ms : 1000;
    h->last_round_ms = cb_clock_mono_ms();
    h->ready_gauge =
        cb_metric_series(cb_metrics_gauge(metrics, "castbus_ready",
                                          "1 when the daemon reports ready, else 0.", NULL),
                         NULL);
    h->dependency_up =
        cb_metrics_gauge(metrics, "castbus_dependency_up",
                         "1 when the last readiness check of a dependency passed, else 0.",
                         (const char *[]){ "dependency", NULL });
    *out = h;
    return 0;
}

int cb_health_add(cb_health_t *h, const char *name, cb_health_check_fn fn, void *arg)
{
    check_t *c;

    CB_ASSERT(!h->started);
    if (h->nchecks >= MAX_CHECKS)
        return -ENOSPC;
    c = &h->checks[h->nchecks++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->fn = fn;
    c->arg = arg;
    c->up = cb_metric_series(h->dependency_up, (const char *[]){ c->name });
    return 0;
}

static void run_round(cb_health_t *h)
{
    size_t i;

    for (i = 0; i < h->nchecks; i++) {
        check_t *c = &h->checks[i];
        char err[256] = "";
        int64_t t0 = cb_clock_mono_ms();
        int rc = c->fn(c->arg, err, sizeof(err));
        bool ok = rc == 0;

        pthread_mutex_lock(&h->lock);
        if (c->ran && c->ok && !ok)
            cb_log_warn("%s is not ready: %s", c->name, err[0] ? err : strerror(-rc));
        else if ((!c->ran || !c->ok) && ok)
            cb_log_info("%s is ready", c->name);
        else if (!c->ran && !ok)
            cb_log_warn("%s is not ready yet: %s", c->name, err[0] ? err : strerror(-rc));
        c->ran = true;
        c->ok = ok;
        snprintf(c->error, sizeof(c->error), "%s", ok ? "" : (err[0] ? err : strerror(-rc)));
        c->latency_ms = (double) (cb_clock_mono_ms() - t0);
        pthread_mutex_unlock(&h->lock);
        cb_series_set(c->up, ok ? 1 : 0);
    }
    pthread_mutex_lock(&h->lock);
    h->round_done = true;
    h->last_round_ms = cb_clock_mono_ms();
    pthread_mutex_unlock(&h->lock);
    cb_series_set(h->ready_gauge, cb_health_ready(h, NULL) ? 1 : 0);
}

void cb_health_run_once(cb_health_t *h)
{
    run_round(h);
}

static void *health_main(void *arg)
{
    cb_health_t *h = arg;
    struct timespec until;

    pthread_setname_np(pthread_self(), "health");
    for (;;) {
        run_round(h);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += h->interval_ms / 1000;
        until.tv_nsec += (h->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&h->lock);
        while (!h->stopping && pthread_cond_timedwait(&h->wake, &h->lock, &until) != ETIMEDOUT)
            ;
        if (h->stopping) {
            pthread_mutex_unlock(&h->lock);
            break;
        }
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

int cb_health_start(cb_health_t *h)
{
    int rc;

    h->started = true;
    rc = pthread_create(&h->thread, NULL, health_main, h);
    if (rc) {
        h->started = false;
        return -rc;
    }
    return 0;
}

void cb_health_set_draining(cb_health_t *h)
{
    atomic_store(&h->draining, true);
    cb_series_set(h->ready_gauge, 0);
}

bool cb_health_draining(cb_health_t *h)
{
    return atomic_load(&h->draining);
}

bool cb_health_ready(cb_health_t *h, json_t **report)
{
    json_t *checks = report ? json_object() : NULL;
    bool ready, all_ok = true;
    const char *status;
    size_t i;

    pthread_mutex_lock(&h->lock);
    for (i = 0; i < h->nchecks; i++) {
        const check_t *c = &h->checks[i];
        if (!c->ran || !c->ok)
            all_ok = false;
        if (checks) {
            json_t *o = json_pack("{s:b, s:f}", "ok", c->ran && c->ok, "latency_ms", c->latency_ms);
            if (o && !c->ran)
                json_object_set_new(o, "error", json_string("not checked yet"));
            else if (o && !c->ok)
                json_object_set_new(o, "error", json_string(c->error));
            json_object_set_new(checks, c->name, o);
        }
    }
    if (atomic_load(&h->draining))
        status = "draining";
    else if (!h->round_done)
        status = "starting";
    else if (!all_ok)
        status = "unready";
    else
        status = "ready";
    pthread_mutex_unlock(&h->lock);
    ready = strcmp(status, "ready") == 0;
    if (report)
        *report = json_pack("{s:s, s:o}", "status", status, "checks", checks);
    return ready;
}

bool cb_health_alive(cb_health_t *h)
{
    bool alive;

    pthread_mutex_lock(&h->lock);
    alive = !h->started ||
            cb_clock_mono_ms() - h->last_round_ms < CB_MAX(STALL_MS, 10 * h->interval_ms);
    pthread_mutex_unlock(&h->lock);
    return alive;
}

void cb_health_free(cb_health_t *h)
{
    if (!h)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->lock);
        h->stopping = true;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

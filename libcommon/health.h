/*
 * health.h - readiness checks for a daemon's dependencies.
 *
 * Each dependency (Kafka, NATS, Postgres, Redis, storage) registers a check.
 * A health thread runs all checks every interval and caches the results, so
 * /readyz answers at once from the cache and never blocks the HTTP loop on
 * a slow dependency. A daemon is ready when every check passed in the last
 * round and it is not shutting down. Liveness (/healthz) fails only when the
 * health thread itself stops making progress (a hung check or deadlock).
 *
 * Thread safety: add checks before cb_health_start(); everything else may
 * be called from any thread. Checks run on the health thread.
 */
#ifndef CB_HEALTH_H
#define CB_HEALTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

typedef struct cb_health cb_health_t;

/*
 * A check returns 0 when the dependency is usable, a negative errno with a
 * message in err otherwise. It may block, but should bound itself (about a
 * second): a check that hangs makes the daemon look dead.
 */
typedef int (*cb_health_check_fn)(void *arg, char *err, size_t errlen);

int cb_health_new(int64_t interval_ms, cb_metrics_t *metrics, cb_health_t **out);
int cb_health_add(cb_health_t *h, const char *name, cb_health_check_fn fn, void *arg);
int cb_health_start(cb_health_t *h);

/* Run one round of checks now, on the calling thread (tests, start-up). */
void cb_health_run_once(cb_health_t *h);

/* Once draining, the daemon reports unready whatever the checks say. */
void cb_health_set_draining(cb_health_t *h);
bool cb_health_draining(cb_health_t *h);

/*
 * Readiness with a JSON report (new reference) for /readyz:
 * {"status":"ready|unready|starting|draining",
 *  "checks":{"kafka":{"ok":true,"latency_ms":2}, "postgres":{"ok":false,"error":"..."}}}
 */
bool cb_health_ready(cb_health_t *h, json_t **report);

/* False when no round of checks has completed for a long time (stuck). */
bool cb_health_alive(cb_health_t *h);

/* Stop the thread and free. */
void cb_health_free(cb_health_t *h);

#endif /* CB_HEALTH_H */

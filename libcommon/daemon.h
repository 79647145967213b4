/*
 * daemon.h - what every castbus daemon is: configuration, JSON logs,
 * metrics, the admin HTTP server with /healthz, /readyz, /metrics and
 * /v1/info, readiness checks, signals and graceful drain.
 *
 * Built-in routes: GET /healthz, /readyz, /metrics (no key: probes and
 * scrapers), GET /v1/info (viewer), GET /v1/config (admin: the effective
 * configuration, secrets masked), PUT /v1/log-level {"level":"debug"}
 * (admin).
 *
 * A daemon's main.c wires it up, usually through cb_daemon_main():
 *
 *   cb_daemon_new("ingest", "RTMP/SRT publish -> segments -> jobs", 8081, &d);
 *   cb_config_add(cb_daemon_config(d), "kafka", cb_kafka_config_keys, &app.kafka);
 *   rc = cb_daemon_configure(d, argc, argv);       (--help, --version, errors)
 *   if (rc != CB_DAEMON_CONTINUE) return cb_daemon_exit_code(d, rc);
 *   cb_kafka_producer_new(..., &app.producer);
 *   cb_daemon_attach(d, &cb_kafka_producer_component, app.producer);
 *   cb_daemon_add_routes(d, routes, n);
 *   rc = cb_daemon_run(d);                          (serves until SIGTERM/SIGINT)
 *   cb_daemon_free(d);                              (frees components in reverse)
 *
 * Shutdown: the first SIGTERM or SIGINT flips readiness to "draining",
 * waits shutdown_delay (time for load balancers to notice), then drains
 * attached components in reverse order of attachment, all within
 * shutdown_grace from the signal, and stops the HTTP server. The HTTP
 * server keeps answering /healthz, /readyz and /metrics while draining.
 * A second signal exits at once with status 1.
 *
 * Threads: the main thread runs the HTTP loop; a signal thread runs the
 * shutdown sequence; the health thread runs readiness checks.
 */
#ifndef CB_DAEMON_H
#define CB_DAEMON_H

#include <jansson.h>
#include <stdint.h>

#include "config.h"
#include "health.h"
#include "http.h"
#include "metrics.h"

typedef struct cb_daemon cb_daemon_t;

/*
 * Something the daemon owns that has a readiness check and must be drained
 * and freed on shutdown (a Kafka consumer, a NATS connection, a database).
 */
typedef struct cb_component_ops {
    const char *name; /* readiness check name: "kafka", "postgres" */
    /* health thread; 0 when usable (see cb_health_check_fn); NULL: no check */
    int (*ready)(void *obj, char *err, size_t errlen);
    /* signal thread; stop taking work and finish what is in hand by
     * deadline_ms (CLOCK_MONOTONIC milliseconds); NULL: nothing to drain */
    void (*drain)(void *obj, int64_t deadline_ms);
    /* main thread, after the HTTP loop has stopped; NULL: nothing to free */
    void (*free)(void *obj);
} cb_component_ops_t;

#define CB_DAEMON_CONTINUE 0 /* cb_daemon_configure: go on and run */
#define CB_DAEMON_EXIT     1 /* cb_daemon_configure: printed what was asked, exit 0 */

/* name: "ingest"; summary: one line for --help; http_port: its default. */
int cb_daemon_new(const char *name, const char *summary, int http_port, cb_daemon_t **out);

/* The config, to add the daemon's own tables before cb_daemon_configure(). */
cb_config_t *cb_daemon_config(cb_daemon_t *d);

/*
 * Load configuration (see config.h), set up logging, metrics and the HTTP
 * server. Handles --help, --version, --print-config, --help-markdown.
 * Returns CB_DAEMON_CONTINUE, CB_DAEMON_EXIT, or a negative errno after
 * logging why (a config error names the key).
 */
int cb_daemon_configure(cb_daemon_t *d, int argc, char **argv);

/* Process exit status for a cb_daemon_configure() result. */
int cb_daemon_exit_code(cb_daemon_t *d, int rc);

cb_metrics_t *cb_daemon_metrics(cb_daemon_t *d);
cb_http_t *cb_daemon_http(cb_daemon_t *d);
const char *cb_daemon_name(const cb_daemon_t *d);

/* Attach a component: its check joins /readyz; it is drained and freed on shutdown. */
int cb_daemon_attach(cb_daemon_t *d, const cb_component_ops_t *ops, void *obj);

/* Add REST routes (see http.h). */
int cb_daemon_add_routes(cb_daemon_t *d, const cb_http_route_t *routes, size_t n);

/* Add a member to the /v1/info answer (takes the reference). */
int cb_daemon_add_info(cb_daemon_t *d, const char *key, json_t *value);

/* True once shutdown has begun (any thread). */
bool cb_daemon_draining(cb_daemon_t *d);

/*
 * Listen, start the health and signal threads, serve until shut down.
 * Returns the process exit status (0 after a clean drain).
 */
int cb_daemon_run(cb_daemon_t *d);

/* Free components in reverse order of attachment, then everything else. */
void cb_daemon_free(cb_daemon_t *d);

/*
 * The whole life of a daemon, for main():
 *   new -> add_config -> configure -> setup -> run -> free.
 * add_config adds the daemon's own config tables; setup, called once the
 * configuration is loaded, connects, starts consumers and adds routes.
 * Returns the process exit status.
 */
typedef struct cb_daemon_spec {
    const char *name;    /* "ingest" */
    const char *summary; /* one line for --help */
    int http_port;       /* default admin port */
    int (*add_config)(cb_daemon_t *d, void *app);
    int (*setup)(cb_daemon_t *d, void *app);
    void *app; /* the daemon's state, passed to the hooks */
} cb_daemon_spec_t;

int cb_daemon_main(const cb_daemon_spec_t *spec, int argc, char **argv);

#endif /* CB_DAEMON_H */

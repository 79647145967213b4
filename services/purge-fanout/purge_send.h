/*
 * purge_send.h - the requests of purge jobs sent to every edge at once,
 * on libcurl multi handles.
 *
 * `threads` engines, each a thread with its own multi handle; an edge
 * always goes to the same one (sharded by URL). Connections to each edge stay open
 * between jobs (keep-alive), at most `per_edge` requests go to one edge at
 * a time and at most `max_inflight` overall. A request that fails in a way
 * that may pass (no connection, timeout, 5xx, 408, 429) is tried again
 * after a backoff that doubles up to `backoff_max_ms`, `retries` times; a
 * 4xx other than those is final (the edge refuses: fix its config). An
 * edge's result is ok when every request for it got a 2xx.
 *
 * pf_send_run() blocks the calling thread (a Kafka worker) until every
 * edge has answered or given up: bounded by timeout x (retries + 1) plus
 * the backoffs, so a dead edge never makes a job hang.
 */
#ifndef PF_SEND_H
#define PF_SEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon.h"
#include "metrics.h"
#include "purge_plan.h"

typedef struct pf_send_config {
    int64_t timeout_ms;     /* one request, connecting included */
    int64_t retries;        /* attempts after the first */
    int64_t backoff_ms;     /* before the first retry; doubled each time */
    int64_t backoff_max_ms; /* largest backoff */
    int64_t per_edge;       /* requests in flight to one edge */
    int64_t max_inflight;   /* requests in flight overall (and connections kept) */
    int64_t threads;        /* engines */
} pf_send_config_t;

typedef struct pf_target {
    const char *edge;      /* edge name (borrowed) */
    const char *base_url;  /* "http://10.0.0.5:6081" (borrowed) */
    const pf_plan_t *plan; /* what to send it (borrowed) */
} pf_target_t;

typedef struct pf_result {
    bool ok;            /* every request answered 2xx */
    long status;        /* the last HTTP status seen, 0 if none */
    int attempts;       /* the most attempts one request took */
    int64_t latency_ms; /* from the run's start to the edge's last answer */
    char error[192];    /* why not ok */
} pf_result_t;

typedef struct pf_send pf_send_t;

int pf_send_new(const pf_send_config_t *cfg, cb_metrics_t *metrics, pf_send_t **out, char *err,
                size_t errlen);

/*
 * Send every target its plan; fill results[i] for targets[i]. Blocks until
 * all are done. Returns 0, or -ESHUTDOWN when the sender stopped first
 * (the results are then incomplete). Any thread but the sender's own.
 */
int pf_send_run(pf_send_t *s, const pf_target_t *targets, size_t n, pf_result_t *results);

/* Stop: runs in progress end with -ESHUTDOWN. */
void pf_send_free(pf_send_t *s);

/* drain: abort what is in flight (the Kafka consumer drained before it). */
extern const cb_component_ops_t pf_send_component;

#endif /* PF_SEND_H */

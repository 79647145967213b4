/*
 * castbus-purge-fanout: purge API on cdn.purges, fanned out to every CDN edge
 * with per-edge status.
 *
 * POST /v1/purges records a job and puts it on cdn.purges (purge_api.c,
 * purge_jobs.c); the consumer group purge-fanout turns each job into the
 * requests every edge of its group understands (purge_plan.c) and sends
 * them all at once (purge_send.c), then records what each edge answered.
 * The edge inventory (purge_edges.c) is kept by the REST API and by edges
 * heartbeating over NATS.
 */
#include <errno.h>
#include <inttypes.h>

#include "daemon.h"
#include "deps.h"
#include "log.h"
#include "purge_api.h"
#include "purge_edges.h"
#include "purge_jobs.h"
#include "purge_send.h"

typedef struct purge_fanout_config {
    int64_t workers;
    int64_t edge_expiry_ms;
    pf_send_config_t send;
    pf_jobs_config_t jobs;
    int64_t rate_limit;
} purge_fanout_config_t;

typedef struct purge_fanout_app {
    cb_deps_t deps;
    purge_fanout_config_t cfg;
    pf_edges_t *edges;
    pf_send_t *send;
    pf_jobs_t *jobs;
    pf_api_t api;
} purge_fanout_app_t;

static purge_fanout_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_NATS | CB_DEP_REDIS,
    },
};

#define CFG(f) offsetof(purge_fanout_config_t, f)

static const cb_config_key_t config_keys[] = {
    { .name = "workers",
      .type = CB_CONFIG_INT,
      .def = "16",
      .min = 1,
      .max = 256,
      .offset = CFG(workers),
      .help = "Purge jobs fanned out at once (each waits for all its edges)." },
    { .name = "edge_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 50,
      .max = 60000,
      .offset = CFG(send.timeout_ms),
      .help = "One purge request to one edge, connecting included." },
    { .name = "edge_retries",
      .type = CB_CONFIG_INT,
      .def = "3",
      .min = 0,
      .max = 20,
      .offset = CFG(send.retries),
      .help = "Attempts after the first for a request that failed in a way that may pass (no "
              "connection, timeout, 5xx); then the edge counts as failed for that job." },
    { .name = "edge_backoff",
      .type = CB_CONFIG_DURATION,
      .def = "100ms",
      .min = 1,
      .max = 60000,
      .offset = CFG(send.backoff_ms),
      .help = "Wait before the first retry; doubled for each next one." },
    { .name = "edge_backoff_max",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 1,
      .max = 300000,
      .offset = CFG(send.backoff_max_ms),
      .help = "Longest wait between retries." },
    { .name = "edge_concurrency",
      .type = CB_CONFIG_INT,
      .def = "4",
      .min = 1,
      .max = 256,
      .offset = CFG(send.per_edge),
      .help = "Purge requests in flight to one edge (and keep-alive connections kept to it)." },
    { .name = "max_inflight",
      .type = CB_CONFIG_INT,
      .def = "1024",
      .min = 1,
      .max = 65536,
      .offset = CFG(send.max_inflight),
      .help = "Purge requests in flight to all edges together (bounded by open files)." },
    { .name = "send_threads",
      .type = CB_CONFIG_INT,
      .def = "2",
      .min = 1,
      .max = 64,
      .offset = CFG(send.threads),
      .help = "Threads sending purges to edges, each with its own connections; an edge always "
              "goes to the same one. About one per core the daemon may use." },
    { .name = "edge_expiry",
      .type = CB_CONFIG_DURATION,
      .def = "10m",
      .min = 1000,
      .max = 604800000,
      .offset = CFG(edge_expiry_ms),
      .help = "An edge that registered over NATS and stopped heartbeating leaves the inventory "
              "after this (it is reported unhealthy from its ttl on)." },
    { .name = "rate_limit",
      .type = CB_CONFIG_INT,
      .def = "50",
      .min = 0,
      .max = 1000000,
      .offset = CFG(rate_limit),
      .help = "POST /v1/purges per API key per second, over every replica; more get 429 with "
              "Retry-After. 0: no limit." },
    { .name = "job_retention",
      .type = CB_CONFIG_DURATION,
      .def = "168h",
      .min = 60000,
      .max = 7776000000,
      .offset = CFG(jobs.retention_ms),
      .help = "How long purge job records (and their per-edge results) are kept." },
    { .name = "job_index_max",
      .type = CB_CONFIG_INT,
      .def = "10000",
      .min = 100,
      .max = 10000000,
      .offset = CFG(jobs.index_max),
      .help = "How many recent jobs GET /v1/purges can list." },
    { 0 },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    purge_fanout_app_t *a = arg;
    int rc = cb_deps_add_config(&a->deps, d);

    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "purge-fanout", config_keys, &a->cfg);
    return rc;
}

static void edges_free(void *obj)
{
    pf_edges_free(obj);
}

static void jobs_free(void *obj)
{
    pf_jobs_free(obj);
}

static const cb_component_ops_t edges_component = { .name = "edges", .free = edges_free };
static const cb_component_ops_t jobs_component = { .name = "jobs", .free = jobs_free };

static int setup(cb_daemon_t *d, void *arg)
{
    purge_fanout_app_t *a = arg;
    cb_metrics_t *metrics = cb_daemon_metrics(d);
    static const char *const topics[] = { CB_PROTO_TOPIC_CDN_PURGES, NULL };
    cb_kafka_consumer_t *consumer;
    char err[512];
    int rc;

    rc = cb_deps_connect(&a->deps, d);
    if (rc)
        return rc;
    if (a->cfg.send.backoff_max_ms < a->cfg.send.backoff_ms) {
        cb_log_error("config: edge_backoff_max (%" PRId64 " ms) is below edge_backoff (%" PRId64
                     " ms)",
                     a->cfg.send.backoff_max_ms, a->cfg.send.backoff_ms);
        return -EINVAL;
    }
    /* attached in this order, so drained the other way: the consumer stops
     * taking jobs first, then the sender ends what is still in flight */
    rc = pf_edges_new(a->deps.redis, metrics, a->cfg.edge_expiry_ms, &a->edges);
    if (rc == 0 && (rc = cb_daemon_attach(d, &edges_component, a->edges)) != 0)
        pf_edges_free(a->edges);
    if (rc)
        return rc;
    rc = pf_send_new(&a->cfg.send, metrics, &a->send, err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return rc;
    }
    if ((rc = cb_daemon_attach(d, &pf_send_component, a->send)) != 0) {
        pf_send_free(a->send);
        return rc;
    }
    rc = pf_jobs_new(&a->cfg.jobs, a->deps.redis, a->deps.producer, a->edges, a->send, metrics,
                     &a->jobs);
    if (rc == 0 && (rc = cb_daemon_attach(d, &jobs_component, a->jobs)) != 0)
        pf_jobs_free(a->jobs);
    if (rc)
        return rc;
    rc = cb_kafka_consumer_new(&a->deps.kafka_cfg,
                               &(cb_kafka_consumer_opts_t){
                                   .group = "purge-fanout",
                                   .topics = topics,
                                   .handler = pf_jobs_handle,
                                   .arg = a->jobs,
                                   .workers = (int) a->cfg.workers,
                                   .prefetch = 256,
                                   .dlq = a->deps.producer,
                               },
                               metrics, &consumer, err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return rc;
    }
    if ((rc = cb_daemon_attach(d, &cb_kafka_consumer_component, consumer)) != 0) {
        cb_kafka_consumer_free(consumer);
        return rc;
    }
    rc = pf_edges_serve(a->edges, a->deps.nats);
    if (rc)
        return rc;
    a->api.rate_limit = a->cfg.rate_limit;
    a->api.jobs = a->jobs;
    a->api.edges = a->edges;
    a->api.redis = a->deps.redis;
    rc = pf_api_add_routes(&a->api, d);
    if (rc)
        return rc;
    return cb_kafka_consumer_start(consumer);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "purge-fanout",
        .summary = "castbus purge-fanout: Purge API on cdn.purges, fanned out to every CDN edge "
                   "with per-edge status.",
        .http_port = 8084,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    return cb_daemon_main(&spec, argc, argv);
}

/*
 * purge_api.h - the REST API of purge-fanout.
 *
 *   POST   /v1/purges          editor (admin for "all"): accept a purge, 202
 *   GET    /v1/purges/{id}     viewer: status and per-edge results
 *   GET    /v1/purges          viewer: recent jobs, ?status=&limit=
 *   GET    /v1/edges           viewer: the inventory with health
 *   GET    /v1/edges/{name}    viewer
 *   POST   /v1/edges           admin: add or replace an edge
 *   DELETE /v1/edges/{name}    admin
 *
 * POST /v1/purges is rate limited per API key (a fixed one-second window
 * counted in Redis, so shared by every replica): past `rate_limit`
 * requests in a second, 429 with Retry-After.
 */
#ifndef PF_API_H
#define PF_API_H

#include <stdint.h>

#include "daemon.h"
#include "purge_edges.h"
#include "purge_jobs.h"
#include "redis.h"

typedef struct pf_api {
    int64_t rate_limit; /* POST /v1/purges per API key per second; 0: no limit */
    pf_jobs_t *jobs;    /* borrowed */
    pf_edges_t *edges;  /* borrowed */
    cb_redis_t *redis;  /* borrowed */
    cb_metric_t *m_limited;
} pf_api_t;

/* Add the routes; api must outlive the daemon's HTTP server. */
int pf_api_add_routes(pf_api_t *api, cb_daemon_t *d);

#endif /* PF_API_H */

/*
 * purge_edges.h - the edge inventory: which caches a purge must reach.
 *
 * Edges come from the REST API (POST/DELETE /v1/edges) or announce
 * themselves over NATS (cdn.edges.heartbeat), so an autoscaled fleet is
 * tracked without config edits. The inventory lives in Redis, shared by
 * every purge-fanout replica:
 *   castbus:purge:edges        hash  name -> {"name","url","kind","group",
 *                                     "source","ttl_ms","seen_at_ms","added_at_ms"}
 *   castbus:purge:edge-health  hash  name -> {"consecutive_failures",
 *                                     "last_ok_at_ms","last_failure_at_ms","last_error"}
 * Each replica keeps a copy refreshed at most once a second (and at once
 * after its own changes).
 *
 * Health: an edge is unhealthy while its last purge failed (after the
 * retries) or, for an edge that heartbeats, when a heartbeat is overdue.
 * Unhealthy edges are still purged (and counted failed if they do not
 * answer); a heartbeating edge silent for `expiry_ms` leaves the inventory.
 *
 * Threads: any; one lock around the copy.
 */
#ifndef PF_EDGES_H
#define PF_EDGES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "nats.h"
#include "purge_plan.h"
#include "redis.h"

#define PF_EDGE_NAME_MAX      64
#define PF_EDGE_URL_MAX       512
#define PF_EDGE_GROUP_DEFAULT "default"

typedef enum pf_edge_source {
    PF_EDGE_API = 0, /* added with POST /v1/edges: stays until deleted */
    PF_EDGE_NATS,    /* heartbeats: expires when silent */
} pf_edge_source_t;

typedef struct pf_edge {
    char name[PF_EDGE_NAME_MAX + 1];
    char url[PF_EDGE_URL_MAX + 1]; /* "http://10.0.0.5:6081" */
    pf_edge_kind_t kind;
    char group[PF_EDGE_NAME_MAX + 1];
    pf_edge_source_t source;
    int64_t ttl_ms;      /* NATS: the next heartbeat is due within this */
    int64_t seen_at_ms;  /* NATS: last heartbeat; API: when added (wall clock) */
    int64_t added_at_ms; /* first seen */
} pf_edge_t;

typedef struct pf_edges pf_edges_t;

/* redis and metrics are borrowed. */
int pf_edges_new(cb_redis_t *redis, cb_metrics_t *metrics, int64_t expiry_ms, pf_edges_t **out);
void pf_edges_free(pf_edges_t *e);

/*
 * Check an edge's URL: http(s)://host[:port], no path beyond "/", at most
 * PF_EDGE_URL_MAX bytes. -EINVAL with err saying why.
 */
int pf_edges_check_url(const char *url, char *err, size_t errlen);

/*
 * Copies of the edges of `group` (NULL or "": every edge), sorted by name,
 * into *out (free() it). Reads Redis when the copy is over a second old;
 * when Redis is down, the last copy is used (-EAGAIN only if there never
 * was one).
 */
int pf_edges_select(pf_edges_t *e, const char *group, pf_edge_t **out, size_t *n);

/* How many edges pf_edges_select() would give, without the copies. */
int pf_edges_count(pf_edges_t *e, const char *group, size_t *n);

/* Add or replace an edge (seen/added times are set here). *created may be NULL. */
int pf_edges_put(pf_edges_t *e, const pf_edge_t *edge, bool *created, char *err, size_t errlen);

/* Remove an edge: 0, -ENOENT, or a Redis error. */
int pf_edges_remove(pf_edges_t *e, const char *name, char *err, size_t errlen);

/* What a purge found: the edge answered every request (ok), or `error`. */
void pf_edges_outcome(pf_edges_t *e, const char *name, bool ok, const char *error);

/*
 * The inventory as JSON with each edge's health: {"edges":[...]} (name
 * NULL), or the one edge (-ENOENT when there is none). New reference.
 */
json_t *pf_edges_json(pf_edges_t *e, const char *name, int *rc);

/* Answer cdn.edges.heartbeat on this connection (queue group purge-fanout). */
int pf_edges_serve(pf_edges_t *e, cb_nats_t *nats);

#endif /* PF_EDGES_H */

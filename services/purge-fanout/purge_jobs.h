/*
 * purge_jobs.h - purge jobs: accepted by the API onto cdn.purges, fanned
 * out by the consumer group purge-fanout, recorded in Redis for the status
 * API.
 *
 * A job's record (castbus:purge:job:<id>, kept `retention_ms`) is the
 * request plus its state: "pending" until every edge of its group has
 * answered or given up, then "done" (all ok, or no edges), "partial" (some
 * failed: they are named in `results`) or "failed" (all failed). Jobs are
 * listed newest first from the sorted set castbus:purge:jobs (at most
 * `index_max`).
 *
 * At least once: the Kafka offset of a job is committed only after its
 * record is final, so a purge-fanout killed in the middle of a job does it
 * again after the restart (purges are idempotent). A record already final
 * is not redone. Jobs other daemons put on cdn.purges (the packager's)
 * get records too.
 */
#ifndef PF_JOBS_H
#define PF_JOBS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_proto.h"
#include "kafka.h"
#include "metrics.h"
#include "purge_edges.h"
#include "purge_send.h"
#include "redis.h"

typedef enum pf_status {
    PF_PENDING = 0,
    PF_DONE,
    PF_PARTIAL,
    PF_FAILED,
} pf_status_t;

/* "pending", "done", "partial", "failed"; NULL-terminated. */
extern const char *const pf_status_names[];

typedef struct pf_jobs_config {
    int64_t retention_ms; /* how long job records are kept */
    int64_t index_max;    /* how many jobs the list remembers */
} pf_jobs_config_t;

typedef struct pf_jobs pf_jobs_t;

/* Everything is borrowed. */
int pf_jobs_new(const pf_jobs_config_t *cfg, cb_redis_t *redis, cb_kafka_producer_t *producer,
                pf_edges_t *edges, pf_send_t *send, cb_metrics_t *metrics, pf_jobs_t **out);
void pf_jobs_free(pf_jobs_t *j);

/*
 * Accept a checked request: record it pending, put it on cdn.purges and
 * wait for Kafka's acknowledgement. With an idempotency key (scoped by the
 * caller) already used, nothing is sent and the earlier job is returned
 * with *replayed set. *job is the record (new reference). -EAGAIN with err
 * when Redis or Kafka cannot take it (nothing was accepted).
 */
int pf_jobs_submit(pf_jobs_t *j, cb_proto_purge_request_t *m, int64_t nedges,
                   const char *idempotency_key, json_t **job, bool *replayed, char *err,
                   size_t errlen);

/* A job's record, or NULL with *rc -ENOENT (or a Redis error). New reference. */
json_t *pf_jobs_get(pf_jobs_t *j, const char *id, int *rc);

/* The newest jobs (status < 0: any), {"purges":[...]} without per-edge results. */
json_t *pf_jobs_list(pf_jobs_t *j, int status, size_t limit, int *rc);

/* The cdn.purges consumer's handler. */
cb_kafka_result_t pf_jobs_handle(void *arg, const cb_kafka_msg_t *msg, char *reason,
                                 size_t reasonlen);

#endif /* PF_JOBS_H */

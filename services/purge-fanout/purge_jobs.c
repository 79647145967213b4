/*
 * purge_jobs.c - purge jobs from the API to Kafka, from Kafka to the edges,
 * and their records in Redis.
 */
#include "purge_jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

#define JOB_KEY   "castbus:purge:job:"
#define INDEX_KEY "castbus:purge:jobs"
#define IDEM_KEY  "castbus:purge:idem:"
#define LIST_SCAN 1000 /* jobs looked at to answer a filtered list */
/* A key claimed this long ago whose job has no record was abandoned: its
 * submitter died between the claim and the record (moments apart; the
 * submission as a whole waits 10 s at most for Kafka). */
#define IDEM_ABANDONED_MS 15000

const char *const pf_status_names[] = { "pending", "done", "partial", "failed", NULL };

struct pf_jobs {
    pf_jobs_config_t cfg;
    cb_redis_t *redis;
    cb_kafka_producer_t *producer;
    pf_edges_t *edges;
    pf_send_t *send;
    cb_metric_t *m_jobs;
    cb_series_t *m_propagation;
    cb_series_t *m_running;
};

/* ---- records ---- */

static int record_put(pf_jobs_t *j, const char *id, json_t *doc, bool index, char *err,
                      size_t errlen)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    int rc;

    if (!text)
        return -ENOMEM;
    rc = cb_redis_exec(j->redis, NULL, err, errlen, "SET %s%s %s PX %lld", JOB_KEY, id, text,
                       (long long) j->cfg.retention_ms);
    free(text);
    if (rc == 0 && index) {
        rc = cb_redis_exec(j->redis, NULL, err, errlen, "ZADD %s %lld %s", INDEX_KEY,
                           (long long) json_integer_value(json_object_get(doc, "requested_at_ms")),
                           id);
        if (rc == 0)
            cb_redis_exec(j->redis, NULL, err, errlen, "ZREMRANGEBYRANK %s 0 %lld", INDEX_KEY,
                          (long long) -(j->cfg.index_max + 1));
    }
    return rc;
}

json_t *pf_jobs_get(pf_jobs_t *j, const char *id, int *rc)
{
    redisReply *r = NULL;
    json_t *doc = NULL;
    char err[256];

    *rc = cb_redis_command(j->redis, &r, err, sizeof(err), "GET %s%s", JOB_KEY, id);
    if (*rc) {
        cb_log_warn("purge job '%s': reading its record failed: %s", id, err);
        return NULL;
    }
    if (r->type == REDIS_REPLY_STRING)
        doc = json_loadb(r->str, r->len, 0, NULL);
    if (!doc)
        *rc = -ENOENT;
    freeReplyObject(r);
    return doc;
}

/* The record of a job as first accepted: the message plus its state. */
static json_t *record_new(const char *text, size_t len, int64_t nedges)
{
    json_t *doc = json_loadb(text, len, 0, NULL);

    if (!doc)
        return NULL;
    json_object_del(doc, "v");
    if (!json_object_get(doc, "soft"))
        json_object_set_new(doc, "soft", json_false());
    json_object_set_new(doc, "status", json_string("pending"));
    json_object_set_new(doc, "edges", json_integer(nedges));
    return doc;
}

static int status_of(const json_t *doc)
{
    return pf_name_index(pf_status_names, json_string_value(json_object_get(doc, "status")));
}

json_t *pf_jobs_list(pf_jobs_t *j, int status, size_t limit, int *rc)
{
    redisReply *ids = NULL;
    json_t *out = json_array();
    char err[256];
    size_t scan = status < 0 ? limit : LIST_SCAN;

    *rc = cb_redis_command(j->redis, &ids, err, sizeof(err), "ZREVRANGE %s 0 %lld", INDEX_KEY,
                           (long long) (scan ? scan - 1 : 0));
    if (*rc) {
        cb_log_warn("purge jobs: listing failed: %s", err);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < ids->elements && json_array_size(out) < limit; i++) {
        int grc;
        json_t *doc;

        if (ids->element[i]->type != REDIS_REPLY_STRING)
            continue;
        doc = pf_jobs_get(j, ids->element[i]->str, &grc);
        if (!doc)
            continue; /* expired */
        if (status < 0 || status_of(doc) == status) {
            json_object_del(doc, "results");
            json_array_append(out, doc);
        }
        json_decref(doc);
    }
    freeReplyObject(ids);
    return json_pack("{s:o}", "purges", out);
}

/* ---- the API side ---- */

/* Atomically: the key still names `old`, `old` has no record and the key
 * was claimed over IDEM_ABANDONED_MS ago: it now names `id`. 1 when it does. */
static const char IDEM_TAKE_OVER[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 or "
    "tonumber(ARGV[3]) - redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1";

static bool idem_take_over(pf_jobs_t *j, const char *key, const char *old, const char *id)
{
    long long taken = 0;
    char err[256];

    if (cb_redis_exec(j->redis, &taken, err, sizeof(err), "EVAL %s 2 %s%s %s%s %s %s %lld %d",
                      IDEM_TAKE_OVER, IDEM_KEY, key, JOB_KEY, old, old, id,
                      (long long) j->cfg.retention_ms, IDEM_ABANDONED_MS))
        cb_log_warn("idempotency key '%s': taking it over from job '%s' failed: %s", key, old, err);
    else if (taken)
        cb_log_warn("idempotency key '%s': job '%s' was never accepted; the key is job '%s''s now",
                    key, old, id);
    return taken == 1;
}

int pf_jobs_submit(pf_jobs_t *j, cb_proto_purge_request_t *m, int64_t nedges,
                   const char *idempotency_key, json_t **job, bool *replayed, char *err,
                   size_t errlen)
{
    redisReply *r = NULL;
    json_t *doc;
    char *text;
    size_t len;
    int rc;

    *job = NULL;
    *replayed = false;
    if (idempotency_key) {
        /* the key lives as long as its job's record */
        rc = cb_redis_command(j->redis, &r, err, errlen, "SET %s%s %s NX PX %lld GET", IDEM_KEY,
                              idempotency_key, m->id, (long long) j->cfg.retention_ms);
        if (rc)
            return -EAGAIN;
        if (r->type == REDIS_REPLY_STRING) { /* used before: that job */
            int grc;
            doc = pf_jobs_get(j, r->str, &grc);
            if (doc || grc != -ENOENT || !idem_take_over(j, idempotency_key, r->str, m->id)) {
                /* that job; without a record yet, its submission is under way */
                if (!doc)
                    doc = json_pack("{s:s, s:s, s:I}", "id", r->str, "status", "pending", "edges",
                                    (json_int_t) nedges);
                freeReplyObject(r);
                *job = doc;
                *replayed = true;
                return doc ? 0 : -ENOMEM;
            }
        }
        freeReplyObject(r);
        r = NULL;
    }
    text = cb_proto_purge_request_encode(m, &len);
    doc = text ? record_new(text, len, nedges) : NULL;
    if (!doc) {
        free(text);
        return -ENOMEM;
    }
    rc = record_put(j, m->id, doc, true, err, errlen);
    if (rc == 0)
        rc = cb_kafka_produce_sync(j->producer, CB_PROTO_TOPIC_CDN_PURGES, m->id, strlen(m->id),
                                   text, len, NULL, 0, 10000, err, errlen);
    free(text);
    if (rc) {
        /* not accepted: leave nothing that says it was */
        char e2[128];
        cb_redis_exec(j->redis, NULL, e2, sizeof(e2), "DEL %s%s", JOB_KEY, m->id);
        cb_redis_exec(j->redis, NULL, e2, sizeof(e2), "ZREM %s %s", INDEX_KEY, m->id);
        if (idempotency_key)
            cb_redis_exec(j->redis, NULL, e2, sizeof(e2), "DEL %s%s", IDEM_KEY, idempotency_key);
        json_decref(doc);
        return -EAGAIN;
    }
    *job = doc;
    return 0;
}

/* ---- the consumer side ---- */

static pf_status_t verdict(const pf_result_t *res, size_t n)
{
    size_t ok = 0;

    for (size_t i = 0; i < n; i++)
        ok += res[i].ok;
    if (ok == n)
        return PF_DONE;
    return ok == 0 ? PF_FAILED : PF_PARTIAL;
}

static json_t *results_json(const pf_edge_t *edges, const pf_result_t *res, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++) {
        json_t *o =
            json_pack("{s:s, s:s, s:b, s:i, s:i, s:I}", "edge", edges[i].name, "url", edges[i].url,
                      "ok", res[i].ok, "http_status", (int) res[i].status, "attempts",
                      res[i].attempts, "latency_ms", (json_int_t) res[i].latency_ms);
        if (o && !res[i].ok)
            json_object_set_new(o, "error", json_string(res[i].error));
        json_array_append_new(a, o);
    }
    return a;
}

/* Send the job to its edges; fill its record. */
static cb_kafka_result_t fan_out(pf_jobs_t *j, const cb_proto_purge_request_t *m, json_t *doc,
                                 char *reason, size_t reasonlen)
{
    pf_edge_t *edges = NULL;
    size_t n = 0;
    pf_plan_t plans[PF_EDGE_KINDS] = { 0 };
    bool built[PF_EDGE_KINDS] = { false };
    pf_target_t *targets = NULL;
    pf_result_t *res = NULL;
    cb_kafka_result_t out = CB_KAFKA_OK;
    int64_t started = cb_clock_wall_ms(), finished;
    pf_status_t st;
    size_t ok = 0;
    int rc;

    rc = pf_edges_select(j->edges, m->group, &edges, &n);
    if (rc) {
        snprintf(reason, reasonlen, "edge inventory unavailable: %s", strerror(-rc));
        return CB_KAFKA_RETRY;
    }
    targets = calloc(n ? n : 1, sizeof(*targets));
    res = calloc(n ? n : 1, sizeof(*res));
    if (!targets || !res) {
        snprintf(reason, reasonlen, "out of memory");
        out = CB_KAFKA_RETRY;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        pf_edge_kind_t k = edges[i].kind;
        if (!built[k]) {
            if (pf_plan_build(k, m, &plans[k])) {
                snprintf(reason, reasonlen, "out of memory");
                out = CB_KAFKA_RETRY;
                goto done;
            }
            built[k] = true;
        }
        targets[i] = (pf_target_t){ edges[i].name, edges[i].url, &plans[k] };
    }
    cb_series_add(j->m_running, 1);
    rc = pf_send_run(j->send, targets, n, res);
    cb_series_add(j->m_running, -1);
    if (rc) {
        snprintf(reason, reasonlen, "purge-fanout stopping before every edge answered");
        out = CB_KAFKA_RETRY;
        goto done;
    }
    finished = cb_clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        pf_edges_outcome(j->edges, edges[i].name, res[i].ok, res[i].error);
        ok += res[i].ok;
    }
    st = verdict(res, n);
    json_object_set_new(doc, "status", json_string(pf_status_names[st]));
    json_object_set_new(doc, "edges", json_integer((json_int_t) n));
    json_object_set_new(doc, "edges_ok", json_integer((json_int_t) ok));
    json_object_set_new(doc, "started_at_ms", json_integer(started));
    json_object_set_new(doc, "finished_at_ms", json_integer(finished));
    json_object_set_new(doc, "propagation_ms", json_integer(finished - m->requested_at_ms));
    json_object_set_new(doc, "results", results_json(edges, res, n));
    rc = record_put(j, m->id, doc, false, reason, reasonlen);
    if (rc) {
        out = CB_KAFKA_RETRY; /* the purges are done again: harmless */
        goto done;
    }
    cb_metric_add(j->m_jobs, (const char *[]){ pf_status_names[st] }, 1);
    cb_series_observe(j->m_propagation, (double) (finished - m->requested_at_ms) / 1000.0);
    cb_log_info("purge job '%s' %s: %zu of %zu edges in %" PRId64 " ms", m->id, pf_status_names[st],
                ok, n, finished - m->requested_at_ms);
done:
    for (size_t k = 0; k < CB_ARRAY_LEN(plans); k++)
        if (built[k])
            pf_plan_release(&plans[k]);
    free(targets);
    free(res);
    free(edges);
    return out;
}

cb_kafka_result_t pf_jobs_handle(void *arg, const cb_kafka_msg_t *msg, char *reason,
                                 size_t reasonlen)
{
    pf_jobs_t *j = arg;
    cb_proto_purge_request_t m;
    cb_jsonv_error_t jerr;
    char field[64], why[256];
    cb_kafka_result_t out;
    json_t *doc;
    int rc, st;

    if (cb_proto_purge_request_decode(msg->value, msg->len, &m, &jerr)) {
        snprintf(reason, reasonlen, "invalid PurgeRequest: %s", jerr.text);
        cb_proto_purge_request_release(&m);
        return CB_KAFKA_INVALID;
    }
    if (pf_plan_check(&m, field, sizeof(field), why, sizeof(why))) {
        snprintf(reason, reasonlen, "invalid PurgeRequest: field '%s': %s", field, why);
        cb_proto_purge_request_release(&m);
        return CB_KAFKA_INVALID;
    }
    doc = pf_jobs_get(j, m.id, &rc);
    if (rc && rc != -ENOENT) {
        snprintf(reason, reasonlen, "job records unavailable");
        cb_proto_purge_request_release(&m);
        return CB_KAFKA_RETRY;
    }
    st = doc ? status_of(doc) : PF_PENDING;
    if (st > PF_PENDING) {
        /* a redelivery of a job that was finished: its record says so */
        cb_log_debug("purge job '%s' already %s", m.id, pf_status_names[st]);
        json_decref(doc);
        cb_proto_purge_request_release(&m);
        return CB_KAFKA_OK;
    }
    if (!doc) {
        /* put on the topic by another daemon: record it like an API job */
        doc = record_new(msg->value, msg->len, 0);
        if (!doc || record_put(j, m.id, doc, true, reason, reasonlen)) {
            json_decref(doc);
            cb_proto_purge_request_release(&m);
            return CB_KAFKA_RETRY;
        }
    }
    out = fan_out(j, &m, doc, reason, reasonlen);
    json_decref(doc);
    cb_proto_purge_request_release(&m);
    return out;
}

/* ---- life ---- */

int pf_jobs_new(const pf_jobs_config_t *cfg, cb_redis_t *redis, cb_kafka_producer_t *producer,
                pf_edges_t *edges, pf_send_t *send, cb_metrics_t *metrics, pf_jobs_t **out)
{
    pf_jobs_t *j = calloc(1, sizeof(*j));

    if (!j)
        return -ENOMEM;
    j->cfg = *cfg;
    j->redis = redis;
    j->producer = producer;
    j->edges = edges;
    j->send = send;
    j->m_jobs = cb_metrics_counter(metrics, "castbus_purge_jobs_total",
                                   "Purge jobs finished, by status (done, partial, failed).",
                                   (const char *[]){ "status", NULL });
    j->m_propagation = cb_metric_series(
        cb_metrics_histogram(metrics, "castbus_purge_propagation_seconds",
                             "From a purge's request (requested_at_ms) to the last edge's "
                             "answer.",
                             NULL, cb_metrics_latency_buckets, cb_metrics_latency_nbuckets),
        NULL);
    j->m_running = cb_metric_series(cb_metrics_gauge(metrics, "castbus_purge_jobs_running",
                                                     "Purge jobs being fanned out now.", NULL),
                                    NULL);
    *out = j;
    return 0;
}

void pf_jobs_free(pf_jobs_t *j)
{
    free(j);
}

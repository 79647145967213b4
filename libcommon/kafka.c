/*
 * kafka.c - producer and consumer group on librdkafka; see kafka.h.
 *
 * DESIGN
 * Producer: librdkafka queues and sends; a poll thread serves delivery
 * reports, which call the caller's callback from that thread.
 *
 * Consumer: a poll thread owns the rd_kafka_t consumer handle (polling,
 * rebalances, commits, pause/resume). It hands messages to worker threads
 * through a small ring. Per partition it records which offsets are in
 * flight; the offset it may commit is the lowest offset still in flight, or
 * one past the last dispatched when none is. So a message is never
 * committed over while an earlier one is unfinished, whatever order the
 * workers finish in. Partition states live as long as the consumer; a
 * generation number, bumped on revocation, keeps a late worker from
 * touching the state of a partition that has moved to another member.
 * All shared consumer state is under one mutex (c->lock).
 */
#include "kafka.h"

#include <errno.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define MAX_PARTITIONS  1024
#define COMMIT_EVERY_MS 200
#define REVOKE_WAIT_MS  30000
#define DLQ_TIMEOUT_MS  30000

const cb_config_key_t cb_kafka_config_keys[] = {
    { .name = "kafka_brokers",
      .type = CB_CONFIG_STRING,
      .def = "127.0.0.1:9092",
      .flags = CB_CONFIG_REQUIRED,
      .offset = offsetof(cb_kafka_config_t, brokers),
      .help = "Kafka bootstrap servers, host:port separated by commas." },
    { .name = "kafka_security_protocol",
      .type = CB_CONFIG_ENUM,
      .def = "plaintext",
      .choices = "plaintext|ssl|sasl_plaintext|sasl_ssl",
      .offset = offsetof(cb_kafka_config_t, security_protocol),
      .help = "How to talk to the brokers." },
    { .name = "kafka_sasl_mechanism",
      .type = CB_CONFIG_STRING,
      .def = "SCRAM-SHA-512",
      .offset = offsetof(cb_kafka_config_t, sasl_mechanism),
      .help = "SASL mechanism when SASL is used: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512." },
    { .name = "kafka_sasl_username",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(cb_kafka_config_t, sasl_username),
      .help = "SASL user name." },
    { .name = "kafka_sasl_password",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(cb_kafka_config_t, sasl_password),
      .help = "SASL password." },
    { .name = "kafka_ssl_ca_location",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(cb_kafka_config_t, ssl_ca_location),
      .help = "CA certificate file for TLS to the brokers (system store when empty)." },
    { .name = "kafka_message_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "5m",
      .min = 1000,
      .max = 86400000,
      .offset = offsetof(cb_kafka_config_t, message_timeout_ms),
      .help = "How long a produced message may wait for the brokers before it fails." },
    { .name = "kafka_queue_max_messages",
      .type = CB_CONFIG_INT,
      .def = "100000",
      .min = 1,
      .max = 10000000,
      .offset = offsetof(cb_kafka_config_t, queue_max_messages),
      .help = "Producer messages held locally while the brokers are slow or away." },
    { .name = "kafka_max_retries",
      .type = CB_CONFIG_INT,
      .def = "5",
      .min = 0,
      .max = 1000,
      .offset = offsetof(cb_kafka_config_t, max_retries),
      .help = "Times a failing message is retried before it goes to the dead-letter topic." },
    { .name = "kafka_retry_backoff",
      .type = CB_CONFIG_DURATION,
      .def = "200ms",
      .min = 1,
      .max = 600000,
      .offset = offsetof(cb_kafka_config_t, retry_backoff_ms),
      .help = "First delay before a retry; doubled on each further retry." },
    { .name = "kafka_retry_backoff_max",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 1,
      .max = 3600000,
      .offset = offsetof(cb_kafka_config_t, retry_backoff_max_ms),
      .help = "Longest delay between retries." },
    { .name = "kafka_extra",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(cb_kafka_config_t, extra),
      .help = "Extra librdkafka properties, prop=value separated by commas." },
    { .name = NULL },
};

static const char *const security_protocols[] = { "plaintext", "ssl", "sasl_plaintext",
                                                  "sasl_ssl" };

int cb_kafka_errno(int code)
{
    switch ((rd_kafka_resp_err_t) code) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return -ENOBUFS;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return -EMSGSIZE;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return -ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return -ENOENT;
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
        return -ECONNREFUSED;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return -EINVAL;
    case RD_KAFKA_RESP_ERR__FATAL:
        return -EIO;
    default:
        return -EIO;
    }
}

/* librdkafka's own log lines, into ours (its thread). */
static void on_rd_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void) rk;
    if (level <= 3)
        cb_log_error("kafka: %s: %s", fac, buf);
    else if (level <= 4)
        cb_log_warn("kafka: %s: %s", fac, buf);
    else
        cb_log_debug("kafka: %s: %s", fac, buf);
}

static void on_rd_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void) rk;
    (void) opaque;
    /* broker connection churn is reported by readiness; keep it at warn */
    cb_log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t errlen)
{
    char rderr[256];

    if (rd_kafka_conf_set(conf, name, value, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka: property '%s': %s", name, rderr);
        return -EINVAL;
    }
    return 0;
}

/* kafka_extra ("prop=value,..."), applied last so that it can override any default of ours. */
static int apply_extra(rd_kafka_conf_t *conf, const cb_kafka_config_t *cfg, char *err,
                       size_t errlen)
{
    char *copy, *save = NULL, *tok;
    int rc = 0;

    if (!cfg->extra || !*cfg->extra)
        return 0;
    copy = strdup(cfg->extra);
    if (!copy)
        return -ENOMEM;
    for (tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errlen, "CASTBUS_KAFKA_EXTRA: '%s' is not prop=value", tok);
            rc = -EINVAL;
            break;
        }
        *eq = '\0';
        rc = conf_set(conf, tok, eq + 1, err, errlen);
    }
    free(copy);
    return rc;
}

typedef struct conf_kv {
    const char *name, *value;
} conf_kv_t;

/*
 * A client configuration: what every client gets from our config table,
 * then the role's own settings (a list ending with a NULL name; NULL for
 * none), then kafka_extra last, so an operator can override any of them.
 */
static rd_kafka_conf_t *make_conf(const cb_kafka_config_t *cfg, const char *client_id,
                                  const conf_kv_t *role, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *proto = security_protocols[cfg->security_protocol];
    int rc = 0;

    rc |= conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen);
    rc |= conf_set(conf, "client.id", client_id, err, errlen);
    rc |= conf_set(conf, "security.protocol", proto, err, errlen);
    rc |= conf_set(conf, "log.connection.close", "false", err, errlen);
    rc |= conf_set(conf, "socket.keepalive.enable", "true", err, errlen);
    if (strncmp(proto, "sasl", 4) == 0) {
        rc |= conf_set(conf, "sasl.mechanism", cfg->sasl_mechanism, err, errlen);
        rc |= conf_set(conf, "sasl.username", cfg->sasl_username, err, errlen);
        rc |= conf_set(conf, "sasl.password", cfg->sasl_password, err, errlen);
    }
    if (cfg->ssl_ca_location && *cfg->ssl_ca_location)
        rc |= conf_set(conf, "ssl.ca.location", cfg->ssl_ca_location, err, errlen);
    for (; role && role->name; role++)
        rc |= conf_set(conf, role->name, role->value, err, errlen);
    if (rc == 0)
        rc = apply_extra(conf, cfg, err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_rd_log);
    rd_kafka_conf_set_error_cb(conf, on_rd_error);
    return conf;
}

/* A metadata round trip: the cheapest proof that a broker answers. */
static int check_cluster(rd_kafka_t *rk, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, 1500);
    int rc = 0;

    if (e) {
        snprintf(err, errlen, "no answer from the brokers: %s", rd_kafka_err2str(e));
        return cb_kafka_errno(e) ? cb_kafka_errno(e) : -EIO;
    }
    if (md->broker_cnt == 0) {
        snprintf(err, errlen, "cluster metadata lists no brokers");
        rc = -ECONNREFUSED;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* ================= producer ================= */

struct cb_kafka_producer {
    rd_kafka_t *rk;
    pthread_t poll_thread;
    atomic_bool stop;
    cb_metric_t *m_produced;
    cb_metric_t *m_queue;
};

typedef struct delivery {
    cb_kafka_delivery_fn cb;
    void *opaque;
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cb_kafka_producer_t *p = opaque;
    delivery_t *d = m->_private;
    const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";

    (void) rk;
    cb_metric_add(p->m_produced, (const char *[]){ topic, m->err ? "error" : "ok" }, 1);
    if (m->err)
        cb_log_warn("kafka: delivery to '%s' failed: %s", topic, rd_kafka_err2str(m->err));
    if (d) {
        if (d->cb)
            d->cb(d->opaque, cb_kafka_errno(m->err), m->err ? rd_kafka_err2str(m->err) : "");
        free(d);
    }
}

static void *producer_poll_main(void *arg)
{
    cb_kafka_producer_t *p = arg;

    pthread_setname_np(pthread_self(), "kafka-producer");
    while (!atomic_load(&p->stop))
        rd_kafka_poll(p->rk, 100);
    return NULL;
}

static void producer_collect(cb_metrics_t *m, void *arg)
{
    cb_kafka_producer_t *p = arg;

    (void) m;
    cb_metric_set(p->m_queue, NULL, rd_kafka_outq_len(p->rk));
}

int cb_kafka_producer_new(const cb_kafka_config_t *cfg, const char *client_id,
                          cb_metrics_t *metrics, cb_kafka_producer_t **out, char *err,
                          size_t errlen)
{
    cb_kafka_producer_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf;
    char rderr[512], timeout[32], queue[32];
    int rc;
    const conf_kv_t role[] = {
        { "enable.idempotence", "true" },
        { "acks", "all" },
        { "linger.ms", "5" },
        { "compression.type", "lz4" },
        { "message.timeout.ms", timeout },
        { "queue.buffering.max.messages", queue },
        { NULL, NULL },
    };

    if (!p)
        return -ENOMEM;
    snprintf(timeout, sizeof(timeout), "%lld", (long long) cfg->message_timeout_ms);
    snprintf(queue, sizeof(queue), "%lld", (long long) cfg->queue_max_messages);
    conf = make_conf(cfg, client_id, role, err, errlen);
    if (!conf) {
        free(p);
        return -EINVAL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (!p->rk) {
        snprintf(err, errlen, "kafka: cannot create producer: %s", rderr);
        rd_kafka_conf_destroy(conf);
        free(p);
        return -EINVAL;
    }
    p->m_produced = cb_metrics_counter(metrics, "castbus_kafka_produced_total",
                                       "Messages produced, by topic and delivery result.",
                                       (const char *[]){ "topic", "result", NULL });
    p->m_queue = cb_metrics_gauge(metrics, "castbus_kafka_producer_queue_messages",
                                  "Messages waiting in the producer for delivery.", NULL);
    cb_metrics_add_collector(metrics, producer_collect, p);
    rc = pthread_create(&p->poll_thread, NULL, producer_poll_main, p);
    if (rc) {
        rd_kafka_destroy(p->rk);
        free(p);
        return -rc;
    }
    *out = p;
    return 0;
}

int cb_kafka_produce(cb_kafka_producer_t *p, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t len, const cb_kafka_header_t *headers,
                     size_t nheaders, cb_kafka_delivery_fn cb, void *opaque)
{
    rd_kafka_vu_t vu[6];
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_error_t *e;
    delivery_t *d = NULL;
    size_t i, n = 0;
    int rc;

    if (cb) {
        d = malloc(sizeof(*d));
        if (!d)
            return -ENOMEM;
        d->cb = cb;
        d->opaque = opaque;
    }
    if (nheaders) {
        hdrs = rd_kafka_headers_new(nheaders);
        for (i = 0; i < nheaders; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t) headers[i].len);
    }
    vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[n++].u.cstr = topic;
    vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n].u.mem.ptr = (void *) value;
    vu[n++].u.mem.size = len;
    vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n++].u.i = RD_KAFKA_MSG_F_COPY;
    vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n++].u.ptr = d;
    if (key) {
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *) key;
        vu[n++].u.mem.size = key_len;
    }
    if (hdrs) {
        vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
        vu[n++].u.headers = hdrs;
    }
    e = rd_kafka_produceva(p->rk, vu, n);
    if (!e)
        return 0;
    rc = cb_kafka_errno(rd_kafka_error_code(e));
    cb_log_warn("kafka: produce to '%s' refused: %s", topic, rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    free(d);
    cb_metric_add(p->m_produced, (const char *[]){ topic, "refused" }, 1);
    return rc ? rc : -EIO;
}

typedef struct sync_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int err;
    char reason[256];
    atomic_int refs;
} sync_wait_t;

static void sync_unref(sync_wait_t *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
    }
}

static void on_sync_delivery(void *opaque, int err, const char *reason)
{
    sync_wait_t *w = opaque;

    pthread_mutex_lock(&w->lock);
    w->done = true;
    w->err = err;
    snprintf(w->reason, sizeof(w->reason), "%s", reason);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    sync_unref(w);
}

int cb_kafka_produce_sync(cb_kafka_producer_t *p, const char *topic, const void *key,
                          size_t key_len, const void *value, size_t len,
                          const cb_kafka_header_t *headers, size_t nheaders, int64_t timeout_ms,
                          char *err, size_t errlen)
{
    sync_wait_t *w = calloc(1, sizeof(*w));
    struct timespec until;
    int rc;

    if (!w)
        return -ENOMEM;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    atomic_init(&w->refs, 2); /* ours and the delivery callback's */
    rc = cb_kafka_produce(p, topic, key, key_len, value, len, headers, nheaders, on_sync_delivery,
                          w);
    if (rc) {
        snprintf(err, errlen, "produce to '%s' refused: %s", topic, strerror(-rc));
        atomic_store(&w->refs, 1);
        sync_unref(w);
        return rc;
    }
    cb_clock_deadline(&until, timeout_ms * 1000);
    pthread_mutex_lock(&w->lock);
    while (!w->done && pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
        ;
    if (!w->done) {
        rc = -ETIMEDOUT;
        snprintf(err, errlen, "no acknowledgement for '%s' within %lldms", topic,
                 (long long) timeout_ms);
    } else if (w->err) {
        rc = w->err;
        snprintf(err, errlen, "delivery to '%s' failed: %s", topic, w->reason);
    }
    pthread_mutex_unlock(&w->lock);
    sync_unref(w);
    return rc;
}

int cb_kafka_producer_flush(cb_kafka_producer_t *p, int64_t timeout_ms)
{
    rd_kafka_flush(p->rk, (int) timeout_ms);
    return rd_kafka_outq_len(p->rk);
}

void cb_kafka_producer_free(cb_kafka_producer_t *p)
{
    int left;

    if (!p)
        return;
    left = cb_kafka_producer_flush(p, 10000);
    if (left > 0)
        cb_log_error("kafka: %d messages were still undelivered at shutdown", left);
    atomic_store(&p->stop, true);
    pthread_join(p->poll_thread, NULL);
    rd_kafka_destroy(p->rk);
    free(p);
}

static int producer_ready(void *obj, char *err, size_t errlen)
{
    cb_kafka_producer_t *p = obj;

    return check_cluster(p->rk, err, errlen);
}

static void producer_drain(void *obj, int64_t deadline_ms)
{
    cb_kafka_producer_t *p = obj;
    int64_t left_ms = deadline_ms - cb_clock_mono_ms();
    int left = cb_kafka_producer_flush(p, left_ms > 0 ? left_ms : 0);

    if (left > 0)
        cb_log_warn("kafka: %d messages not yet delivered at the drain deadline", left);
}

static void producer_free(void *obj)
{
    cb_kafka_producer_free(obj);
}

const cb_component_ops_t cb_kafka_producer_component = {
    .name = "kafka",
    .ready = producer_ready,
    .drain = producer_drain,
    .free = producer_free,
};

/* ================= consumer ================= */

typedef struct part_state {
    char *topic;
    int32_t partition;
    bool assigned;
    uint64_t generation;
    int64_t *inflight; /* offsets dispatched and unfinished, ascending */
    size_t ninflight, cap;
    size_t nrunning;     /* of those, taken by a worker right now */
    int64_t next_offset; /* one past the highest offset dispatched, -1 before any */
    int64_t commit_to;   /* offset we may commit (the next to read), -1 none */
    int64_t committed;   /* last offset handed to a commit, -1 none */
} part_state_t;

typedef struct work {
    rd_kafka_message_t *rkm;
    part_state_t *ps;
    uint64_t generation;
    bool skip; /* its partition was revoked before a worker took it */
} work_t;

struct cb_kafka_consumer {
    rd_kafka_t *rk;
    cb_kafka_config_t cfg; /* shallow copy; strings borrowed from the daemon config */
    cb_kafka_consumer_opts_t opts;
    char group[128];
    char **topics;
    size_t ntopics;

    pthread_mutex_t lock;
    pthread_cond_t work_cond; /* work queued, or stopping */
    pthread_cond_t idle_cond; /* a message finished */
    pthread_cond_t stop_cond; /* wakes retry backoffs on stop */
    work_t *ring;
    size_t ring_cap, ring_head, ring_count;
    size_t running;
    part_state_t *parts[MAX_PARTITIONS];
    size_t nparts;
    bool dirty;

    pthread_t poll_thread;
    pthread_t *workers;
    size_t nworkers;
    size_t prefetch;
    bool started, paused;
    atomic_bool stopping;
    atomic_bool closed;

    cb_metric_t *m_consumed, *m_lag, *m_inflight, *m_duration, *m_commit_errors;
};

const void *cb_kafka_msg_header(const cb_kafka_msg_t *m, const char *name, size_t *len)
{
    const rd_kafka_message_t *rkm = m->internal;
    rd_kafka_headers_t *hdrs = NULL;
    const void *v = NULL;
    size_t n = 0;

    if (!rkm || rd_kafka_message_headers(rkm, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (rd_kafka_header_get_last(hdrs, name, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    if (len)
        *len = n;
    return v;
}

/* Locked. */
static part_state_t *part_get(cb_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    part_state_t *ps;
    size_t i;

    for (i = 0; i < c->nparts; i++) {
        ps = c->parts[i];
        if (ps->partition == partition && strcmp(ps->topic, topic) == 0)
            return ps;
    }
    if (c->nparts >= MAX_PARTITIONS)
        return NULL;
    ps = calloc(1, sizeof(*ps));
    if (!ps)
        return NULL;
    ps->topic = strdup(topic);
    if (!ps->topic) {
        free(ps);
        return NULL;
    }
    ps->partition = partition;
    ps->next_offset = -1;
    ps->commit_to = -1;
    ps->committed = -1;
    c->parts[c->nparts++] = ps;
    return ps;
}

/* Locked. Record a dispatched offset. */
static int part_add_inflight(part_state_t *ps, int64_t offset)
{
    if (ps->ninflight == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        int64_t *p = realloc(ps->inflight, cap * sizeof(int64_t));
        if (!p)
            return -ENOMEM;
        ps->inflight = p;
        ps->cap = cap;
    }
    /* offsets arrive in order per partition, so appending keeps it sorted */
    ps->inflight[ps->ninflight++] = offset;
    if (offset + 1 > ps->next_offset)
        ps->next_offset = offset + 1;
    return 0;
}

/* Locked. A message is finished: move the commit point if it can move. */
static void part_finish(cb_kafka_consumer_t *c, part_state_t *ps, int64_t offset)
{
    size_t i;
    int64_t to;

    for (i = 0; i < ps->ninflight; i++) {
        if (ps->inflight[i] == offset) {
            memmove(&ps->inflight[i], &ps->inflight[i + 1],
                    (ps->ninflight - i - 1) * sizeof(int64_t));
            ps->ninflight--;
            break;
        }
    }
    to = ps->ninflight ? ps->inflight[0] : ps->next_offset;
    if (to > ps->commit_to) {
        ps->commit_to = to;
        c->dirty = true;
    }
}

/* Commit every partition whose commit point moved. Poll/drain thread. */
static void commit_offsets(cb_kafka_consumer_t *c, bool sync)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t e;
    size_t i;

    pthread_mutex_lock(&c->lock);
    if (!c->dirty) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    list = rd_kafka_topic_partition_list_new((int) c->nparts);
    for (i = 0; i < c->nparts; i++) {
        part_state_t *ps = c->parts[i];
        if (ps->assigned && ps->commit_to > ps->committed) {
            rd_kafka_topic_partition_list_add(list, ps->topic, ps->partition)->offset =
                ps->commit_to;
            ps->committed = ps->commit_to;
        }
    }
    c->dirty = false;
    pthread_mutex_unlock(&c->lock);
    if (list->cnt > 0) {
        e = rd_kafka_commit(c->rk, list, sync ? 0 : 1);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) {
            cb_log_warn("kafka: commit for group '%s' failed: %s", c->group, rd_kafka_err2str(e));
            cb_metric_add(c->m_commit_errors, NULL, 1);
            /* try again on the next round */
            pthread_mutex_lock(&c->lock);
            for (i = 0; i < (size_t) list->cnt; i++) {
                part_state_t *ps = part_get(c, list->elems[i].topic, list->elems[i].partition);
                if (ps)
                    ps->committed = -1;
            }
            c->dirty = true;
            pthread_mutex_unlock(&c->lock);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    cb_kafka_consumer_t *c = opaque;

    (void) rk;
    (void) offsets;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        cb_log_warn("kafka: async commit for group '%s' failed: %s", c->group,
                    rd_kafka_err2str(err));
        cb_metric_add(c->m_commit_errors, NULL, 1);
    }
}

/* Does a worker still run a message of these partitions? Locked. */
static bool revoked_busy(cb_kafka_consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
    int i;

    for (i = 0; i < parts->cnt; i++) {
        part_state_t *ps = part_get(c, parts->elems[i].topic, parts->elems[i].partition);
        if (ps && ps->nrunning > 0)
            return true;
    }
    return false;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    cb_kafka_consumer_t *c = opaque;
    struct timespec until;
    size_t i, j;
    int k;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        pthread_mutex_lock(&c->lock);
        for (k = 0; k < parts->cnt; k++) {
            part_state_t *ps = part_get(c, parts->elems[k].topic, parts->elems[k].partition);
            if (!ps)
                continue;
            ps->assigned = true;
            ps->ninflight = 0;
            ps->nrunning = 0;
            ps->next_offset = -1;
            ps->commit_to = -1;
            ps->committed = -1;
        }
        pthread_mutex_unlock(&c->lock);
        cb_log_info("kafka: group '%s' assigned %d partitions", c->group, parts->cnt);
        rd_kafka_assign(rk, parts);
        /* librdkafka keeps a partition paused when it is assigned back to this
         * member (a pause of ours taken before the rebalance): resume them all,
         * so the poll loop's `paused` says what librdkafka does */
        rd_kafka_resume_partitions(rk, parts);
        c->paused = false;
        return;
    }

    /*
     * Revoked: drop queued work of these partitions (it stays unfinished, so
     * the commit point cannot pass it) and wait for the running work.
     */
    pthread_mutex_lock(&c->lock);
    for (i = 0, j = c->ring_head; i < c->ring_count; i++, j = (j + 1) % c->ring_cap) {
        work_t *w = &c->ring[j];
        for (k = 0; k < parts->cnt; k++) {
            if (w->ps->partition == parts->elems[k].partition &&
                strcmp(w->ps->topic, parts->elems[k].topic) == 0)
                w->skip = true;
        }
    }
    cb_clock_deadline(&until, atomic_load(&c->stopping) ? 0 : REVOKE_WAIT_MS * 1000);
    while (revoked_busy(c, parts) &&
           pthread_cond_timedwait(&c->idle_cond, &c->lock, &until) != ETIMEDOUT)
        ;
    if (revoked_busy(c, parts))
        cb_log_warn("kafka: group '%s': partitions revoked with messages still in flight; "
                    "they will be redelivered",
                    c->group);
    pthread_mutex_unlock(&c->lock);
    commit_offsets(c, true);
    pthread_mutex_lock(&c->lock);
    for (k = 0; k < parts->cnt; k++) {
        part_state_t *ps = part_get(c, parts->elems[k].topic, parts->elems[k].partition);
        if (!ps)
            continue;
        ps->assigned = false;
        ps->generation++;
        ps->ninflight = 0;
        ps->nrunning = 0;
    }
    pthread_mutex_unlock(&c->lock);
    cb_log_info("kafka: group '%s' revoked %d partitions", c->group, parts->cnt);
    rd_kafka_assign(rk, NULL);
}

static void on_stats(cb_kafka_consumer_t *c, const char *json, size_t len)
{
    json_t *root = json_loadb(json, len, 0, NULL), *topics, *t, *parts, *p;
    const char *tname, *pname;

    if (!root)
        return;
    topics = json_object_get(root, "topics");
    json_object_foreach(topics, tname, t)
    {
        parts = json_object_get(t, "partitions");
        json_object_foreach(parts, pname, p)
        {
            json_t *lag = json_object_get(p, "consumer_lag");
            if (strcmp(pname, "-1") == 0 || !json_is_integer(lag) || json_integer_value(lag) < 0)
                continue;
            cb_metric_set(c->m_lag, (const char *[]){ c->group, tname, pname },
                          (double) json_integer_value(lag));
        }
    }
    json_decref(root);
}

static int on_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void) rk;
    on_stats(opaque, json, len);
    return 0; /* librdkafka frees json */
}

/* ---- workers ---- */

/* Sleep up to ms unless stopping; returns false when stopping. */
static bool backoff_sleep(cb_kafka_consumer_t *c, int64_t ms)
{
    struct timespec until;

    cb_clock_deadline(&until, ms * 1000);
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->stopping) &&
           pthread_cond_timedwait(&c->stop_cond, &c->lock, &until) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&c->lock);
    return !atomic_load(&c->stopping);
}

/* Copy the message to "<topic>.dlq" with the reason; 0 once acknowledged. */
static int dead_letter(cb_kafka_consumer_t *c, const rd_kafka_message_t *rkm, const char *reason,
                       int attempts)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    char dlq[300], part[16], off[32], att[16], at[32], err[256];
    cb_kafka_header_t hdrs[32];
    rd_kafka_headers_t *orig = NULL;
    size_t n = 0, i;
    int64_t backoff = c->cfg.retry_backoff_ms;
    int rc;

    snprintf(dlq, sizeof(dlq), "%s.dlq", topic);
    snprintf(part, sizeof(part), "%d", (int) rkm->partition);
    snprintf(off, sizeof(off), "%lld", (long long) rkm->offset);
    snprintf(att, sizeof(att), "%d", attempts);
    snprintf(at, sizeof(at), "%lld", (long long) cb_clock_wall_ms());
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-reason", reason, strlen(reason) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-topic", topic, strlen(topic) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-partition", part, strlen(part) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-offset", off, strlen(off) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-group", c->group, strlen(c->group) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-attempts", att, strlen(att) };
    hdrs[n++] = (cb_kafka_header_t){ "castbus-dlq-at-ms", at, strlen(at) };
    if (rd_kafka_message_headers(rkm, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *v;
        size_t vlen;
        for (i = 0; n < CB_ARRAY_LEN(hdrs) && rd_kafka_header_get_all(orig, i, &name, &v, &vlen) ==
                                                  RD_KAFKA_RESP_ERR_NO_ERROR;
             i++)
            hdrs[n++] = (cb_kafka_header_t){ name, v, vlen };
    }
    for (;;) {
        rc = cb_kafka_produce_sync(c->opts.dlq, dlq, rkm->key, rkm->key_len, rkm->payload, rkm->len,
                                   hdrs, n, DLQ_TIMEOUT_MS, err, sizeof(err));
        if (rc == 0)
            return 0;
        cb_log_error("kafka: dead letter for '%s' [%d] @%lld not stored: %s; retrying", topic,
                     (int) rkm->partition, (long long) rkm->offset, err);
        if (!backoff_sleep(c, backoff))
            return -ECANCELED;
        backoff = CB_MIN(backoff * 2, c->cfg.retry_backoff_max_ms);
    }
}

/* Run the handler with retries. Returns true when the message is finished. */
static bool handle_message(cb_kafka_consumer_t *c, rd_kafka_message_t *rkm)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    cb_kafka_msg_t msg = {
        .topic = topic,
        .partition = rkm->partition,
        .offset = rkm->offset,
        .key = rkm->key,
        .key_len = rkm->key_len,
        .value = rkm->payload,
        .len = rkm->len,
        .timestamp_ms = rd_kafka_message_timestamp(rkm, NULL),
        .internal = rkm,
    };
    int64_t backoff = c->cfg.retry_backoff_ms;
    char reason[512];
    int attempt;

    for (attempt = 1;; attempt++) {
        int64_t t0 = cb_clock_mono_ms();
        cb_kafka_result_t r;

        reason[0] = '\0';
        msg.attempt = attempt;
        r = c->opts.handler(c->opts.arg, &msg, reason, sizeof(reason));
        cb_metric_observe(c->m_duration, (const char *[]){ topic },
                          (double) (cb_clock_mono_ms() - t0) / 1000.0);
        if (r == CB_KAFKA_OK) {
            cb_metric_add(c->m_consumed, (const char *[]){ topic, "ok" }, 1);
            return true;
        }
        if (r == CB_KAFKA_INVALID) {
            cb_metric_add(c->m_consumed, (const char *[]){ topic, "invalid" }, 1);
            cb_log_warn("kafka: '%s' [%d] @%lld is invalid, dead-lettering: %s", topic,
                        (int) rkm->partition, (long long) rkm->offset, reason);
            break;
        }
        cb_metric_add(c->m_consumed, (const char *[]){ topic, "retry" }, 1);
        if (attempt > c->cfg.max_retries) {
            char why[sizeof(reason)];
            snprintf(why, sizeof(why), "retries exhausted after %d attempts: %.440s", attempt,
                     reason);
            memcpy(reason, why, sizeof(reason));
            cb_log_warn("kafka: '%s' [%d] @%lld: %s; dead-lettering", topic, (int) rkm->partition,
                        (long long) rkm->offset, reason);
            break;
        }
        cb_log_warn("kafka: '%s' [%d] @%lld failed (attempt %d), retrying in %lldms: %s", topic,
                    (int) rkm->partition, (long long) rkm->offset, attempt, (long long) backoff,
                    reason);
        if (!backoff_sleep(c, backoff)) {
            cb_metric_add(c->m_consumed, (const char *[]){ topic, "abandoned" }, 1);
            return false;
        }
        backoff = CB_MIN(backoff * 2, c->cfg.retry_backoff_max_ms);
    }
    if (dead_letter(c, rkm, reason, attempt)) {
        cb_metric_add(c->m_consumed, (const char *[]){ topic, "abandoned" }, 1);
        return false;
    }
    cb_metric_add(c->m_consumed, (const char *[]){ topic, "dead_lettered" }, 1);
    return true;
}

static void *worker_main(void *arg)
{
    cb_kafka_consumer_t *c = arg;

    pthread_setname_np(pthread_self(), "kafka-worker");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        work_t w;
        bool finished;

        while (c->ring_count == 0 && !atomic_load(&c->stopping))
            pthread_cond_wait(&c->work_cond, &c->lock);
        if (atomic_load(&c->stopping))
            break; /* queued work stays uncommitted and is redelivered */
        w = c->ring[c->ring_head];
        c->ring_head = (c->ring_head + 1) % c->ring_cap;
        c->ring_count--;
        pthread_cond_broadcast(&c->idle_cond); /* room in the ring */
        if (w.skip || w.generation != w.ps->generation) {
            pthread_mutex_unlock(&c->lock);
            rd_kafka_message_destroy(w.rkm);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        c->running++;
        w.ps->nrunning++;
        cb_metric_set(c->m_inflight, (const char *[]){ c->group },
                      (double) (c->running + c->ring_count));
        pthread_mutex_unlock(&c->lock);

        finished = handle_message(c, w.rkm);

        pthread_mutex_lock(&c->lock);
        c->running--;
        if (w.generation == w.ps->generation) {
            w.ps->nrunning--;
            if (finished)
                part_finish(c, w.ps, w.rkm->offset);
        }
        cb_metric_set(c->m_inflight, (const char *[]){ c->group },
                      (double) (c->running + c->ring_count));
        pthread_cond_broadcast(&c->idle_cond);
        pthread_mutex_unlock(&c->lock);
        rd_kafka_message_destroy(w.rkm);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- poll thread ---- */

static void set_paused(cb_kafka_consumer_t *c, bool pause)
{
    rd_kafka_topic_partition_list_t *list = NULL;

    if (c->paused == pause)
        return;
    if (rd_kafka_assignment(c->rk, &list) == RD_KAFKA_RESP_ERR_NO_ERROR && list) {
        if (pause)
            rd_kafka_pause_partitions(c->rk, list);
        else
            rd_kafka_resume_partitions(c->rk, list);
        rd_kafka_topic_partition_list_destroy(list);
    }
    c->paused = pause;
}

static void enqueue(cb_kafka_consumer_t *c, rd_kafka_message_t *rkm)
{
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    part_state_t *ps;

    pthread_mutex_lock(&c->lock);
    /* the ring holds more than `workers` so that messages fetched just
     * before a pause never have to wait here for long */
    while (c->ring_count == c->ring_cap && !atomic_load(&c->stopping))
        pthread_cond_wait(&c->idle_cond, &c->lock);
    ps = part_get(c, topic, rkm->partition);
    if (atomic_load(&c->stopping) || !ps || part_add_inflight(ps, rkm->offset)) {
        if (!atomic_load(&c->stopping))
            cb_log_error("kafka: no room to track '%s' [%d]; message left uncommitted", topic,
                         (int) rkm->partition);
        pthread_mutex_unlock(&c->lock);
        rd_kafka_message_destroy(rkm);
        return;
    }
    c->ring[(c->ring_head + c->ring_count) % c->ring_cap] =
        (work_t){ .rkm = rkm, .ps = ps, .generation = ps->generation, .skip = false };
    c->ring_count++;
    pthread_cond_signal(&c->work_cond);
    pthread_mutex_unlock(&c->lock);
}

static void *poll_main(void *arg)
{
    cb_kafka_consumer_t *c = arg;
    int64_t last_commit = cb_clock_mono_ms();

    pthread_setname_np(pthread_self(), "kafka-consumer");
    while (!atomic_load(&c->stopping)) {
        rd_kafka_message_t *rkm;
        bool busy;

        pthread_mutex_lock(&c->lock);
        busy = c->running + c->ring_count >= c->nworkers + c->prefetch;
        pthread_mutex_unlock(&c->lock);
        set_paused(c, busy);

        rkm = rd_kafka_consumer_poll(c->rk, 100);
        if (rkm) {
            if (rkm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                rd_kafka_message_destroy(rkm);
            } else if (rkm->err) {
                cb_log_warn("kafka: consumer group '%s': %s", c->group,
                            rd_kafka_message_errstr(rkm));
                rd_kafka_message_destroy(rkm);
            } else {
                enqueue(c, rkm);
            }
        }
        if (cb_clock_mono_ms() - last_commit >= COMMIT_EVERY_MS) {
            commit_offsets(c, false);
            last_commit = cb_clock_mono_ms();
        }
    }
    return NULL;
}

int cb_kafka_consumer_new(const cb_kafka_config_t *cfg, const cb_kafka_consumer_opts_t *opts,
                          cb_metrics_t *metrics, cb_kafka_consumer_t **out, char *err,
                          size_t errlen)
{
    cb_kafka_consumer_t *c;
    rd_kafka_conf_t *conf;
    char rderr[512], client_id[160];
    size_t i;

    CB_ASSERT(opts->handler && opts->topics && opts->topics[0] && opts->group && opts->dlq);
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cfg = *cfg;
    c->opts = *opts;
    c->nworkers = (size_t) (opts->workers > 0 ? opts->workers : 1);
    c->prefetch = (size_t) (opts->prefetch > 0 ? opts->prefetch : 0);
    snprintf(c->group, sizeof(c->group), "%s", opts->group);
    for (i = 0; opts->topics[i]; i++)
        c->ntopics++;
    c->topics = calloc(c->ntopics, sizeof(char *));
    c->ring_cap = c->nworkers * 2 + 64 + c->prefetch;
    c->ring = calloc(c->ring_cap, sizeof(work_t));
    c->workers = calloc(c->nworkers, sizeof(pthread_t));
    if (!c->topics || !c->ring || !c->workers) {
        cb_kafka_consumer_free(c);
        return -ENOMEM;
    }
    for (i = 0; i < c->ntopics; i++)
        c->topics[i] = strdup(opts->topics[i]);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->work_cond, NULL);
    pthread_cond_init(&c->idle_cond, NULL);
    pthread_cond_init(&c->stop_cond, NULL);

    snprintf(client_id, sizeof(client_id), "%s", opts->group);
    {
        const conf_kv_t role[] = {
            { "group.id", opts->group },
            { "enable.auto.commit", "false" },
            { "enable.auto.offset.store", "false" },
            { "auto.offset.reset", "earliest" },
            { "enable.partition.eof", "false" },
            { "statistics.interval.ms", "10000" },
            /* a handler may run long (transcoding): do not leave the group meanwhile */
            { "max.poll.interval.ms", "600000" },
            { "session.timeout.ms", "10000" },
            { NULL, NULL },
        };

        conf = make_conf(cfg, client_id, role, err, errlen);
    }
    if (!conf) {
        cb_kafka_consumer_free(c);
        return -EINVAL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, on_commit);
    rd_kafka_conf_set_stats_cb(conf, on_stats_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rderr, sizeof(rderr));
    if (!c->rk) {
        snprintf(err, errlen, "kafka: cannot create consumer: %s", rderr);
        rd_kafka_conf_destroy(conf);
        cb_kafka_consumer_free(c);
        return -EINVAL;
    }
    rd_kafka_poll_set_consumer(c->rk);

    c->m_consumed = cb_metrics_counter(metrics, "castbus_kafka_consumed_total",
                                       "Messages handled, by topic and outcome "
                                       "(ok, retry, invalid, dead_lettered, abandoned).",
                                       (const char *[]){ "topic", "result", NULL });
    c->m_duration = cb_metrics_histogram(metrics, "castbus_kafka_handler_duration_seconds",
                                         "Time a handler took for one attempt, by topic.",
                                         (const char *[]){ "topic", NULL },
                                         cb_metrics_latency_buckets, cb_metrics_latency_nbuckets);
    c->m_inflight = cb_metrics_gauge(metrics, "castbus_kafka_in_flight_messages",
                                     "Messages taken from Kafka and not yet finished, by group.",
                                     (const char *[]){ "group", NULL });
    c->m_lag = cb_metrics_gauge(metrics, "castbus_kafka_consumer_lag",
                                "Messages behind the end of each partition, by group.",
                                (const char *[]){ "group", "topic", "partition", NULL });
    c->m_commit_errors = cb_metrics_counter(metrics, "castbus_kafka_commit_errors_total",
                                            "Offset commits that failed (they are retried).", NULL);
    *out = c;
    return 0;
}

int cb_kafka_consumer_start(cb_kafka_consumer_t *c)
{
    rd_kafka_topic_partition_list_t *subs;
    rd_kafka_resp_err_t e;
    size_t i;
    int rc;

    subs = rd_kafka_topic_partition_list_new((int) c->ntopics);
    for (i = 0; i < c->ntopics; i++)
        rd_kafka_topic_partition_list_add(subs, c->topics[i], RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(c->rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (e) {
        cb_log_error("kafka: subscribe for group '%s' failed: %s", c->group, rd_kafka_err2str(e));
        return cb_kafka_errno(e);
    }
    for (i = 0; i < c->nworkers; i++) {
        rc = pthread_create(&c->workers[i], NULL, worker_main, c);
        if (rc) {
            atomic_store(&c->stopping, true);
            return -rc;
        }
    }
    rc = pthread_create(&c->poll_thread, NULL, poll_main, c);
    if (rc) {
        atomic_store(&c->stopping, true);
        return -rc;
    }
    c->started = true;
    cb_log_info("kafka: consumer group '%s' started on %zu topics with %zu workers", c->group,
                c->ntopics, c->nworkers);
    return 0;
}

void cb_kafka_consumer_drain(cb_kafka_consumer_t *c, int64_t deadline_ms)
{
    struct timespec until;
    int64_t left;
    size_t i;

    if (!c->started || atomic_load(&c->closed))
        return;
    atomic_store(&c->stopping, true);
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->work_cond);
    pthread_cond_broadcast(&c->stop_cond);
    pthread_cond_broadcast(&c->idle_cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->poll_thread, NULL);

    /* let running handlers finish until the deadline */
    left = deadline_ms - cb_clock_mono_ms();
    cb_clock_deadline(&until, left > 0 ? left * 1000 : 0);
    pthread_mutex_lock(&c->lock);
    while (c->running > 0 && pthread_cond_timedwait(&c->idle_cond, &c->lock, &until) != ETIMEDOUT)
        ;
    if (c->running > 0)
        cb_log_warn("kafka: group '%s': %zu messages unfinished at the deadline; left "
                    "uncommitted for redelivery",
                    c->group, c->running);
    /* queued, never started: let go (uncommitted, so redelivered) */
    while (c->ring_count > 0) {
        rd_kafka_message_destroy(c->ring[c->ring_head].rkm);
        c->ring_head = (c->ring_head + 1) % c->ring_cap;
        c->ring_count--;
    }
    pthread_mutex_unlock(&c->lock);

    commit_offsets(c, true);
    rd_kafka_consumer_close(c->rk);
    atomic_store(&c->closed, true);
    for (i = 0; i < c->nworkers; i++) {
        struct timespec jt;
        cb_clock_deadline(&jt, 1000 * 1000);
        if (pthread_timedjoin_np(c->workers[i], NULL, &jt) != 0) {
            cb_log_warn("kafka: group '%s': a handler did not return; leaving it", c->group);
            pthread_detach(c->workers[i]);
        }
    }
    c->started = false;
    cb_log_info("kafka: consumer group '%s' closed", c->group);
}

void cb_kafka_consumer_free(cb_kafka_consumer_t *c)
{
    size_t i;

    if (!c)
        return;
    if (c->started)
        cb_kafka_consumer_drain(c, cb_clock_mono_ms() + 10000);
    if (c->rk)
        rd_kafka_destroy(c->rk);
    for (i = 0; i < c->nparts; i++) {
        free(c->parts[i]->topic);
        free(c->parts[i]->inflight);
        free(c->parts[i]);
    }
    for (i = 0; c->topics && i < c->ntopics; i++)
        free(c->topics[i]);
    free(c->topics);
    free(c->ring);
    free(c->workers);
    free(c);
}

static int consumer_ready(void *obj, char *err, size_t errlen)
{
    cb_kafka_consumer_t *c = obj;

    if (atomic_load(&c->stopping)) {
        snprintf(err, errlen, "consumer is stopping");
        return -ESHUTDOWN;
    }
    return check_cluster(c->rk, err, errlen);
}

static void consumer_drain(void *obj, int64_t deadline_ms)
{
    cb_kafka_consumer_drain(obj, deadline_ms);
}

static void consumer_free(void *obj)
{
    cb_kafka_consumer_free(obj);
}

const cb_component_ops_t cb_kafka_consumer_component = {
    .name = "kafka-consumer",
    .ready = consumer_ready,
    .drain = consumer_drain,
    .free = consumer_free,
};

/* ================= administration ================= */

int cb_kafka_ensure_topics(const cb_kafka_config_t *cfg, const cb_kafka_topic_spec_t *specs,
                           size_t n, int64_t timeout_ms, size_t *created, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = make_conf(cfg, "castbus-admin", NULL, err, errlen);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_NewTopic_t **newt = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_t *rk;
    char rderr[512];
    size_t i, ncreate = 0;
    int t, rc = 0;

    if (created)
        *created = 0;
    if (!conf)
        return -EINVAL;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof(rderr));
    if (!rk) {
        snprintf(err, errlen, "kafka: cannot create admin client: %s", rderr);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
    }
    if (rd_kafka_metadata(rk, 1, NULL, &md, (int) timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: no metadata from %s within %lldms", cfg->brokers,
                 (long long) timeout_ms);
        rd_kafka_destroy(rk);
        return -ETIMEDOUT;
    }
    newt = calloc(n ? n : 1, sizeof(*newt));
    for (i = 0; newt && i < n; i++) {
        bool exists = false;
        for (t = 0; t < md->topic_cnt; t++) {
            if (strcmp(md->topics[t].topic, specs[i].name) == 0 && !md->topics[t].err) {
                exists = true;
                if (md->topics[t].partition_cnt != specs[i].partitions)
                    cb_log_warn("kafka: topic '%s' has %d partitions, proto/ says %d",
                                specs[i].name, md->topics[t].partition_cnt, specs[i].partitions);
            }
        }
        if (exists)
            continue;
        newt[ncreate] = rd_kafka_NewTopic_new(specs[i].name, specs[i].partitions,
                                              specs[i].replication, rderr, sizeof(rderr));
        if (!newt[ncreate]) {
            snprintf(err, errlen, "kafka: topic '%s': %s", specs[i].name, rderr);
            rc = -EINVAL;
            break;
        }
        ncreate++;
    }
    rd_kafka_metadata_destroy(md);
    if (rc == 0 && ncreate > 0) {
        const rd_kafka_CreateTopics_result_t *res;
        const rd_kafka_topic_result_t **tr;
        size_t ntr;

        q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, newt, ncreate, NULL, q);
        ev = rd_kafka_queue_poll(q, (int) timeout_ms + 1000);
        res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        if (!res) {
            snprintf(err, errlen, "kafka: no answer to CreateTopics within %lldms",
                     (long long) timeout_ms);
            rc = -ETIMEDOUT;
        } else {
            tr = rd_kafka_CreateTopics_result_topics(res, &ntr);
            for (i = 0; i < ntr; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    cb_log_info("kafka: created topic '%s'", rd_kafka_topic_result_name(tr[i]));
                    if (created)
                        (*created)++;
                } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                    snprintf(err, errlen, "kafka: creating topic '%s' failed: %s",
                             rd_kafka_topic_result_name(tr[i]),
                             rd_kafka_topic_result_error_string(tr[i]));
                    rc = -EIO;
                }
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    for (i = 0; newt && i < ncreate; i++)
        rd_kafka_NewTopic_destroy(newt[i]);
    free(newt);
    rd_kafka_destroy(rk);
    return rc;
}

/*
 * kafka.h - Kafka producer and consumer group on librdkafka, with the
 * delivery guarantees castbus relies on.
 *
 * Producer: asynchronous produce with a delivery callback, or synchronous
 * produce that waits for the broker's acknowledgement; idempotent, acks=all;
 * a bounded local queue (-ENOBUFS when full); flush on drain.
 *
 * Consumer group, at least once:
 *  - the handler runs on one of `workers` threads, so at most `workers`
 *    messages are in flight; when all are busy the consumer pauses its
 *    partitions (the group membership keeps being served) and resumes when
 *    a worker is free;
 *  - an offset is committed only when the handler has finished with the
 *    message and with every earlier message of that partition: a crash at
 *    any point redelivers, never skips;
 *  - CB_KAFKA_RETRY retries with exponential backoff up to max_retries,
 *    then the message goes to the dead-letter topic; CB_KAFKA_INVALID goes
 *    there at once;
 *  - the dead-letter topic is "<topic>.dlq"; a dead letter carries the
 *    original key, value and headers plus castbus-dlq-* headers (reason,
 *    source topic, partition, offset, group, attempts, time). The source
 *    offset is committed only after the dead letter is acknowledged.
 *
 * Threads: each producer has a poll thread that runs delivery callbacks;
 * each consumer has a poll thread and its worker threads.
 */
#ifndef CB_KAFKA_H
#define CB_KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "metrics.h"

typedef struct cb_kafka_config {
    char *brokers;         /* "host:port,host:port" */
    int security_protocol; /* index into "plaintext|ssl|sasl_plaintext|sasl_ssl" */
    char *sasl_mechanism;  /* "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512" */
    char *sasl_username;
    char *sasl_password;
    char *ssl_ca_location;      /* CA bundle file for ssl/sasl_ssl */
    int64_t message_timeout_ms; /* producer: give up on a message after this */
    int64_t queue_max_messages; /* producer: local queue bound */
    int64_t max_retries;        /* consumer: handler retries before dead-lettering */
    int64_t retry_backoff_ms;   /* consumer: first retry delay, doubled each time */
    int64_t retry_backoff_max_ms;
    char *extra; /* "prop=value,prop=value" passed to librdkafka as is */
} cb_kafka_config_t;

extern const cb_config_key_t cb_kafka_config_keys[];

typedef struct cb_kafka_header {
    const char *name;
    const void *value;
    size_t len;
} cb_kafka_header_t;

/* ---- producer ---- */

typedef struct cb_kafka_producer cb_kafka_producer_t;

/* Delivery result: err 0, or a negative errno with the broker's reason. Poll thread. */
typedef void (*cb_kafka_delivery_fn)(void *opaque, int err, const char *reason);

int cb_kafka_producer_new(const cb_kafka_config_t *cfg, const char *client_id,
                          cb_metrics_t *metrics, cb_kafka_producer_t **out, char *err,
                          size_t errlen);

/*
 * Queue a message (bytes are copied). cb may be NULL. Returns 0, -ENOBUFS
 * when the local queue is full, -EMSGSIZE, or -EINVAL. Any thread.
 */
int cb_kafka_produce(cb_kafka_producer_t *p, const char *topic, const void *key, size_t key_len,
                     const void *value, size_t len, const cb_kafka_header_t *headers,
                     size_t nheaders, cb_kafka_delivery_fn cb, void *opaque);

/*
 * Produce and wait until the broker acknowledged it (0) or failed/timed out
 * (-ETIMEDOUT, or another negative errno with err filled). Any thread but
 * the producer's own poll thread.
 */
int cb_kafka_produce_sync(cb_kafka_producer_t *p, const char *topic, const void *key,
                          size_t key_len, const void *value, size_t len,
                          const cb_kafka_header_t *headers, size_t nheaders, int64_t timeout_ms,
                          char *err, size_t errlen);

/* Wait until everything queued is delivered; returns how many are left. */
int cb_kafka_producer_flush(cb_kafka_producer_t *p, int64_t timeout_ms);

/* Flushes (up to 10 s) and frees. */
void cb_kafka_producer_free(cb_kafka_producer_t *p);

/* ready: a metadata round trip to the cluster; drain: flush until the deadline. */
extern const cb_component_ops_t cb_kafka_producer_component;

/* ---- consumer group ---- */

typedef enum cb_kafka_result {
    CB_KAFKA_OK = 0,  /* done with the message: it may be committed */
    CB_KAFKA_RETRY,   /* transient failure: try again later */
    CB_KAFKA_INVALID, /* the message can never be handled: dead-letter it */
} cb_kafka_result_t;

typedef struct cb_kafka_msg {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t key_len;
    const void *value;
    size_t len;
    int64_t timestamp_ms;
    int attempt; /* 1 on first delivery to the handler, 2 on the first retry... */
    const void *internal;
} cb_kafka_msg_t;

/* A header of the message by name, or NULL. */
const void *cb_kafka_msg_header(const cb_kafka_msg_t *m, const char *name, size_t *len);

/*
 * Handle one message. Runs on a worker thread; several run at once when
 * workers > 1. For RETRY and INVALID, write the reason (it goes into the
 * log and the dead letter).
 */
typedef cb_kafka_result_t (*cb_kafka_handler_fn)(void *arg, const cb_kafka_msg_t *msg, char *reason,
                                                 size_t reasonlen);

typedef struct cb_kafka_consumer_opts {
    const char *group;         /* consumer group id */
    const char *const *topics; /* NULL-terminated */
    cb_kafka_handler_fn handler;
    void *arg;
    int workers;              /* handler threads = most messages in flight; >= 1 */
    int prefetch;             /* messages fetched ahead of the workers; 0: fetching pauses
                               * while every worker is busy, so others in the group see the
                               * lag (long jobs); short handlers want a few hundred */
    cb_kafka_producer_t *dlq; /* producer for dead letters (borrowed, required) */
} cb_kafka_consumer_opts_t;

typedef struct cb_kafka_consumer cb_kafka_consumer_t;

int cb_kafka_consumer_new(const cb_kafka_config_t *cfg, const cb_kafka_consumer_opts_t *opts,
                          cb_metrics_t *metrics, cb_kafka_consumer_t **out, char *err,
                          size_t errlen);

/* Subscribe and start consuming. */
int cb_kafka_consumer_start(cb_kafka_consumer_t *c);

/*
 * Stop fetching, let in-flight handlers finish until deadline_ms (see
 * cb_clock_mono_ms), commit what finished, leave the group. Handlers still
 * running at the deadline are abandoned: their messages stay uncommitted
 * and are redelivered to another member.
 */
void cb_kafka_consumer_drain(cb_kafka_consumer_t *c, int64_t deadline_ms);

/* Drains with a 10 s deadline if still running, then frees. */
void cb_kafka_consumer_free(cb_kafka_consumer_t *c);

extern const cb_component_ops_t cb_kafka_consumer_component;

/* ---- administration ---- */

typedef struct cb_kafka_topic_spec {
    const char *name;
    int partitions;
    int replication;
} cb_kafka_topic_spec_t;

/*
 * Create the topics that do not exist yet. Existing topics are left alone
 * (partition counts are reported if they differ). Returns 0 when all exist;
 * *created (may be NULL) says how many this call created.
 */
int cb_kafka_ensure_topics(const cb_kafka_config_t *cfg, const cb_kafka_topic_spec_t *specs,
                           size_t n, int64_t timeout_ms, size_t *created, char *err, size_t errlen);

/* Map a librdkafka error code to a negative errno (exposed for tests). */
int cb_kafka_errno(int rd_kafka_resp_err);

#endif /* CB_KAFKA_H */

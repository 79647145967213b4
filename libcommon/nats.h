/*
 * nats.h - NATS connection, request/reply, and validated responders (cnats).
 *
 * The connection reconnects forever, and a daemon may start before the
 * NATS server does: it connects in the background and reports unready
 * until it has. Requests have a timeout and tell "nobody is serving this
 * subject" (-ENOENT) apart from "no answer in time" (-ETIMEDOUT).
 *
 * A responder subscribes to a subject in a queue group, so replicas share
 * the load. Each request is checked with the subject's validate function
 * (generated from proto/) before the handler runs; an invalid request gets
 * the error reply {"v":1,"error":{"code":"invalid_request","message":...,
 * "field":...}} and never reaches the handler.
 *
 * Threads: handlers run on cnats delivery threads (one per subscription).
 * Requests may be made from any thread.
 */
#ifndef CB_NATS_H
#define CB_NATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "daemon.h"
#include "jsonv.h"
#include "metrics.h"

typedef struct cb_nats_config {
    char *url; /* "nats://host:4222[,nats://...]" */
    char *user;
    char *password;
    char *token;
    int64_t request_timeout_ms; /* default for cb_nats_request() with timeout 0 */
} cb_nats_config_t;

extern const cb_config_key_t cb_nats_config_keys[];

typedef struct cb_nats cb_nats_t;

/* name: the connection name the server shows ("castbus-entitlement"). */
int cb_nats_new(const cb_nats_config_t *cfg, const char *name, cb_metrics_t *metrics,
                cb_nats_t **out, char *err, size_t errlen);

/*
 * Send a request and wait for one reply, appended to `reply`. timeout_ms 0
 * means the configured default. Returns 0, -ETIMEDOUT, -ENOENT (no
 * responder), -ENOTCONN (not connected), -E2BIG (reply over the buffer's
 * maximum) or -EIO.
 */
int cb_nats_request(cb_nats_t *n, const char *subject, const void *data, size_t len,
                    int64_t timeout_ms, cb_buf_t *reply);

int cb_nats_publish(cb_nats_t *n, const char *subject, const void *data, size_t len);

/* Check a request's bytes against the subject's contract. */
typedef int (*cb_nats_validate_fn)(const void *data, size_t len, cb_jsonv_error_t *err);

/*
 * Answer one valid request: append the reply JSON to `reply` and return 0,
 * or return a negative errno with a message in err (it becomes an error
 * reply with code "internal", or "unavailable" for -EAGAIN).
 */
typedef int (*cb_nats_handler_fn)(void *arg, const char *subject, const void *data, size_t len,
                                  cb_buf_t *reply, char *err, size_t errlen);

/* Serve `subject` in `queue` (usually the daemon name). validate may be NULL. */
int cb_nats_serve(cb_nats_t *n, const char *subject, const char *queue,
                  cb_nats_validate_fn validate, cb_nats_handler_fn handler, void *arg);

/* Build the standard error reply into out. */
int cb_nats_error_reply(cb_buf_t *out, const char *code, const char *field, const char *message);

void cb_nats_free(cb_nats_t *n);

/* ready: connected and a ping round trip; drain: finish in-flight requests, close. */
extern const cb_component_ops_t cb_nats_component;

#endif /* CB_NATS_H */

/*
 * nats.c - NATS client wrapper; see nats.h.
 *
 * DESIGN: one natsConnection per daemon, created with retry-on-failed-
 * connect so start-up order does not matter. Responders keep a small
 * record (handler, validator, metrics) passed as the subscription closure;
 * records live until the connection is freed, after cnats has stopped
 * delivering.
 */
#include "nats.h"

#include <errno.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define MAX_SERVICES    16
#define REPLY_MAX_BYTES (1 << 20)

const cb_config_key_t cb_nats_config_keys[] = {
    { .name = "nats_url",
      .type = CB_CONFIG_STRING,
      .def = "nats://127.0.0.1:4222",
      .flags = CB_CONFIG_REQUIRED,
      .offset = offsetof(cb_nats_config_t, url),
      .help = "NATS server URLs, separated by commas." },
    { .name = "nats_user",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(cb_nats_config_t, user),
      .help = "NATS user name, if the server wants one." },
    { .name = "nats_password",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(cb_nats_config_t, password),
      .help = "NATS password." },
    { .name = "nats_token",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(cb_nats_config_t, token),
      .help = "NATS authentication token." },
    { .name = "nats_request_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 10,
      .max = 600000,
      .offset = offsetof(cb_nats_config_t, request_timeout_ms),
      .help = "How long a NATS request waits for its reply by default." },
    { .name = NULL },
};

typedef struct service {
    cb_nats_t *n;
    char subject[128];
    natsSubscription *sub;
    cb_nats_validate_fn validate;
    cb_nats_handler_fn handler;
    void *arg;
} service_t;

struct cb_nats {
    natsConnection *nc;
    pthread_mutex_t lock;
    pthread_cond_t closed_cond;
    bool closing; /* cb_nats_free() began: a disconnect is expected */
    bool closed;  /* cnats delivered its last callback */
    natsOptions *opts;
    int64_t request_timeout_ms;
    service_t services[MAX_SERVICES];
    size_t nservices;
    cb_metric_t *m_requests, *m_duration, *m_served, *m_reconnects;
    cb_series_t *connected;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int nats_errno(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return 0;
    case NATS_TIMEOUT:
        return -ETIMEDOUT;
    case NATS_NO_RESPONDERS:
        return -ENOENT;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_NO_SERVER:
        return -ENOTCONN;
    case NATS_NO_MEMORY:
        return -ENOMEM;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static void on_connected(natsConnection *nc, void *closure)
{
    cb_nats_t *n = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    cb_log_info("nats: connected to %s", url);
    cb_series_set(n->connected, 1);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    cb_nats_t *n = closure;
    bool closing;

    (void) nc;
    pthread_mutex_lock(&n->lock);
    closing = n->closing;
    pthread_mutex_unlock(&n->lock);
    if (!closing)
        cb_log_warn("nats: disconnected, reconnecting");
    cb_series_set(n->connected, 0);
}

/* cnats' last callback for a connection: after it, `n` may be freed. */
static void on_closed(natsConnection *nc, void *closure)
{
    cb_nats_t *n = closure;

    (void) nc;
    pthread_mutex_lock(&n->lock);
    n->closed = true;
    pthread_cond_signal(&n->closed_cond);
    pthread_mutex_unlock(&n->lock);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    cb_nats_t *n = closure;

    cb_metric_add(n->m_reconnects, NULL, 1);
    on_connected(nc, closure);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void) nc;
    (void) sub;
    (void) closure;
    cb_log_warn("nats: asynchronous error: %s", natsStatus_GetText(err));
}

int cb_nats_new(const cb_nats_config_t *cfg, const char *name, cb_metrics_t *metrics,
                cb_nats_t **out, char *err, size_t errlen)
{
    cb_nats_t *n = calloc(1, sizeof(*n));
    natsStatus s;

    if (!n)
        return -ENOMEM;
    pthread_mutex_init(&n->lock, NULL);
    pthread_cond_init(&n->closed_cond, NULL);
    n->request_timeout_ms = cfg->request_timeout_ms;
    n->m_requests = cb_metrics_counter(metrics, "castbus_nats_requests_total",
                                       "NATS requests made, by subject and result.",
                                       (const char *[]){ "subject", "result", NULL });
    n->m_duration = cb_metrics_histogram(metrics, "castbus_nats_request_duration_seconds",
                                         "Time to a NATS reply, by subject.",
                                         (const char *[]){ "subject", NULL },
                                         cb_metrics_latency_buckets, cb_metrics_latency_nbuckets);
    n->m_served = cb_metrics_counter(metrics, "castbus_nats_served_total",
                                     "NATS requests answered, by subject and result.",
                                     (const char *[]){ "subject", "result", NULL });
    n->m_reconnects = cb_metrics_counter(metrics, "castbus_nats_reconnects_total",
                                         "Times the NATS connection was re-established.", NULL);
    n->connected = cb_metric_series(
        cb_metrics_gauge(metrics, "castbus_nats_connected", "1 while connected to NATS.", NULL),
        NULL);

    s = natsOptions_Create(&n->opts);
    if (s == NATS_OK)
        s = natsOptions_SetServers(n->opts, NULL, 0);
    if (s == NATS_OK) {
        /* natsOptions_SetURL accepts a comma-separated list */
        s = natsOptions_SetURL(n->opts, cfg->url);
    }
    if (s == NATS_OK)
        s = natsOptions_SetName(n->opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(n->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(n->opts, 500);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(n->opts, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(n->opts, true, on_connected, n);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(n->opts, on_disconnected, n);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(n->opts, on_reconnected, n);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(n->opts, on_closed, n);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(n->opts, on_async_error, n);
    if (s == NATS_OK && cfg->user && *cfg->user)
        s = natsOptions_SetUserInfo(n->opts, cfg->user, cfg->password);
    if (s == NATS_OK && cfg->token && *cfg->token)
        s = natsOptions_SetToken(n->opts, cfg->token);
    if (s != NATS_OK) {
        snprintf(err, errlen, "CASTBUS_NATS_URL: %s", natsStatus_GetText(s));
        cb_nats_free(n);
        return -EINVAL;
    }
    s = natsConnection_Connect(&n->nc, n->opts);
    if (s == NATS_OK) {
        on_connected(n->nc, n);
    } else if (s == NATS_NOT_YET_CONNECTED) {
        cb_log_warn("nats: %s not reachable yet; connecting in the background", cfg->url);
    } else {
        snprintf(err, errlen, "nats: connect to %s: %s", cfg->url, natsStatus_GetText(s));
        cb_nats_free(n);
        return nats_errno(s);
    }
    *out = n;
    return 0;
}

int cb_nats_request(cb_nats_t *n, const char *subject, const void *data, size_t len,
                    int64_t timeout_ms, cb_buf_t *reply)
{
    natsMsg *msg = NULL;
    double t0 = now_s();
    natsStatus s;
    int rc;

    if (timeout_ms <= 0)
        timeout_ms = n->request_timeout_ms;
    s = natsConnection_Request(&msg, n->nc, subject, data, (int) len, timeout_ms);
    rc = nats_errno(s);
    if (rc == 0) {
        rc = cb_buf_append(reply, natsMsg_GetData(msg), (size_t) natsMsg_GetDataLength(msg));
        natsMsg_Destroy(msg);
    }
    cb_metric_observe(n->m_duration, (const char *[]){ subject }, now_s() - t0);
    cb_metric_add(n->m_requests,
                  (const char *[]){ subject, rc == 0            ? "ok"
                                             : rc == -ETIMEDOUT ? "timeout"
                                             : rc == -ENOENT    ? "no_responders"
                                                                : "error" },
                  1);
    return rc;
}

int cb_nats_publish(cb_nats_t *n, const char *subject, const void *data, size_t len)
{
    return nats_errno(natsConnection_Publish(n->nc, subject, data, (int) len));
}

int cb_nats_error_reply(cb_buf_t *out, const char *code, const char *field, const char *message)
{
    int rc = cb_buf_append_str(out, "{\"v\":1,\"error\":{\"code\":");

    if (rc == 0)
        rc = cb_buf_append_json_string(out, code, strlen(code));
    if (rc == 0)
        rc = cb_buf_append_str(out, ",\"message\":");
    if (rc == 0)
        rc = cb_buf_append_json_string(out, message, strlen(message));
    if (rc == 0 && field && *field) {
        rc = cb_buf_append_str(out, ",\"field\":");
        if (rc == 0)
            rc = cb_buf_append_json_string(out, field, strlen(field));
    }
    if (rc == 0)
        rc = cb_buf_append_str(out, "}}");
    return rc;
}

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    service_t *svc = closure;
    const char *reply_to = natsMsg_GetReply(msg);
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t) natsMsg_GetDataLength(msg);
    const char *result = "ok";
    cb_jsonv_error_t verr;
    char err[256] = "";
    cb_buf_t reply;
    int rc;

    (void) sub;
    cb_buf_init(&reply, REPLY_MAX_BYTES);
    if (svc->validate && svc->validate(data, len, &verr) != 0) {
        cb_nats_error_reply(&reply, "invalid_request", verr.field, verr.text);
        result = "invalid";
    } else {
        rc = svc->handler(svc->arg, svc->subject, data, len, &reply, err, sizeof(err));
        if (rc) {
            cb_buf_reset(&reply);
            cb_nats_error_reply(&reply, rc == -EAGAIN ? "unavailable" : "internal", NULL,
                                err[0] ? err : strerror(-rc));
            cb_log_warn("nats: handling '%s' failed: %s", svc->subject,
                        err[0] ? err : strerror(-rc));
            result = "error";
        }
    }
    if (reply_to && reply.len) {
        natsStatus s = natsConnection_Publish(nc, reply_to, reply.data, (int) reply.len);
        if (s != NATS_OK)
            cb_log_warn("nats: reply on '%s' not sent: %s", svc->subject, natsStatus_GetText(s));
    }
    cb_metric_add(svc->n->m_served, (const char *[]){ svc->subject, result }, 1);
    cb_buf_release(&reply);
    natsMsg_Destroy(msg);
}

int cb_nats_serve(cb_nats_t *n, const char *subject, const char *queue,
                  cb_nats_validate_fn validate, cb_nats_handler_fn handler, void *arg)
{
    service_t *svc;
    natsStatus s;

    if (n->nservices >= MAX_SERVICES)
        return -ENOSPC;
    svc = &n->services[n->nservices];
    svc->n = n;
    snprintf(svc->subject, sizeof(svc->subject), "%s", subject);
    svc->validate = validate;
    svc->handler = handler;
    svc->arg = arg;
    s = natsConnection_QueueSubscribe(&svc->sub, n->nc, subject, queue, on_request, svc);
    if (s != NATS_OK) {
        cb_log_error("nats: subscribe to '%s' failed: %s", subject, natsStatus_GetText(s));
        return nats_errno(s);
    }
    n->nservices++;
    cb_log_info("nats: serving '%s' in queue group '%s'", subject, queue);
    return 0;
}

void cb_nats_free(cb_nats_t *n)
{
    struct timespec until;
    size_t i;

    if (!n)
        return;
    if (n->nc) {
        pthread_mutex_lock(&n->lock);
        n->closing = true;
        pthread_mutex_unlock(&n->lock);
        natsConnection_Close(n->nc);
        /*
         * cnats runs connection callbacks on its own thread, in order, and
         * the closed callback last: wait for it before freeing what the
         * callbacks use (bounded, in case the library never calls it).
         */
        cb_clock_deadline(&until, 5 * 1000000);
        pthread_mutex_lock(&n->lock);
        while (!n->closed && pthread_cond_timedwait(&n->closed_cond, &n->lock, &until) == 0)
            ;
        if (!n->closed)
            cb_log_warn("nats: no closed callback within 5s; freeing anyway");
        pthread_mutex_unlock(&n->lock);
        for (i = 0; i < n->nservices; i++)
            natsSubscription_Destroy(n->services[i].sub);
        natsConnection_Destroy(n->nc);
    }
    natsOptions_Destroy(n->opts);
    pthread_cond_destroy(&n->closed_cond);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

static int nats_ready(void *obj, char *err, size_t errlen)
{
    cb_nats_t *n = obj;
    natsStatus s;

    if (natsConnection_Status(n->nc) != NATS_CONN_STATUS_CONNECTED) {
        snprintf(err, errlen, "not connected to NATS");
        return -ENOTCONN;
    }
    s = natsConnection_FlushTimeout(n->nc, 1000);
    if (s != NATS_OK) {
        snprintf(err, errlen, "no ping reply from NATS: %s", natsStatus_GetText(s));
        return nats_errno(s);
    }
    return 0;
}

static void nats_drain(void *obj, int64_t deadline_ms)
{
    cb_nats_t *n = obj;
    struct timespec ts = { 0, 20 * 1000000 };
    int64_t left = deadline_ms - cb_clock_mono_ms();

    if (natsConnection_Status(n->nc) != NATS_CONN_STATUS_CONNECTED)
        return;
    pthread_mutex_lock(&n->lock);
    n->closing = true;
    pthread_mutex_unlock(&n->lock);
    /* stop taking requests, finish those in hand, then close */
    if (natsConnection_DrainTimeout(n->nc, left > 100 ? left : 100) != NATS_OK)
        return;
    while (!natsConnection_IsClosed(n->nc) && cb_clock_mono_ms() < deadline_ms)
        nanosleep(&ts, NULL);
}

static void nats_free_obj(void *obj)
{
    cb_nats_free(obj);
}

const cb_component_ops_t cb_nats_component = {
    .name = "nats",
    .ready = nats_ready,
    .drain = nats_drain,
    .free = nats_free_obj,
};

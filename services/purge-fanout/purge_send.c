/*
 * purge_send.c - the fan-out engine: one thread, one curl multi handle.
 *
 * Ownership: a batch (one pf_send_run() call) belongs to its caller, who
 * waits on the batch's condition; the engine thread works on it until the
 * last edge is done, sets `done` under the lock and never touches it
 * again. Transfers (one attempt of one request) belong to the engine
 * thread alone; so do the runnable and retry lists.
 */
#include "purge_send.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "version.h"

typedef struct batch batch_t;

typedef struct edge_run {
    batch_t *b;
    const pf_target_t *t;
    pf_result_t *res;
    size_t next;  /* the next request not started */
    size_t done;  /* requests answered or given up */
    int inflight; /* in the multi handle or waiting to retry */
    bool queued;  /* on the runnable list */
    bool finished;
    struct edge_run *next_runnable;
} edge_run_t;

struct batch {
    pthread_cond_t cond;
    edge_run_t *runs;
    size_t n;
    size_t left; /* edges not finished */
    int64_t t0_ms;
    bool done;    /* the engine is finished with it (under the lock) */
    bool aborted; /* some edges were cut short by a stop */
    batch_t *next, *prev;
};

typedef struct xfer {
    edge_run_t *er;
    size_t idx;
    int attempt;
    int64_t due_ms;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *next, *prev; /* the live list (in the multi) or the retry list */
} xfer_t;

struct pf_send {
    pf_send_config_t cfg;
    CURLM *multi;
    pthread_t thread;
    bool started;

    pthread_mutex_t lock;
    batch_t *incoming; /* handed over by pf_send_run(), under the lock */
    bool stopping;

    /* engine thread only */
    batch_t *batches; /* accepted, not done */
    edge_run_t *run_head, *run_tail;
    xfer_t *live;  /* in the multi handle */
    xfer_t *retry; /* waiting for due_ms */
    CURL **pool;   /* easy handles to reuse */
    size_t npool;
    int64_t inflight;

    cb_series_t *m_ok, *m_retried, *m_failed, *m_inflight;
};

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void) p;
    (void) arg;
    return size * n;
}

/* ---- lists ---- */

static void runnable_push(pf_send_t *s, edge_run_t *er)
{
    if (er->queued || er->finished || er->next >= er->t->plan->n)
        return;
    er->queued = true;
    er->next_runnable = NULL;
    if (s->run_tail)
        s->run_tail->next_runnable = er;
    else
        s->run_head = er;
    s->run_tail = er;
}

static edge_run_t *runnable_pop(pf_send_t *s)
{
    edge_run_t *er = s->run_head;

    if (er) {
        s->run_head = er->next_runnable;
        if (!s->run_head)
            s->run_tail = NULL;
        er->queued = false;
    }
    return er;
}

static void xfer_link(xfer_t **head, xfer_t *x)
{
    x->prev = NULL;
    x->next = *head;
    if (*head)
        (*head)->prev = x;
    *head = x;
}

static void xfer_unlink(xfer_t **head, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        *head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->next = x->prev = NULL;
}

/* ---- transfers ---- */

static void xfer_free(pf_send_t *s, xfer_t *x)
{
    if (x->easy) {
        if ((int64_t) s->npool < s->cfg.max_inflight)
            s->pool[s->npool++] = x->easy;
        else
            curl_easy_cleanup(x->easy);
    }
    curl_slist_free_all(x->hdrs);
    free(x->url);
    free(x);
}

/* Put an attempt of the transfer into the multi handle. */
static int xfer_add(pf_send_t *s, xfer_t *x)
{
    CURL *e = x->easy;

    curl_easy_reset(e);
    x->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->er->t->plan->reqs[x->idx].method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) s->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) s->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "castbus-purge-fanout");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (curl_multi_add_handle(s->multi, e) != CURLM_OK)
        return -ENOMEM;
    xfer_link(&s->live, x);
    s->inflight++;
    return 0;
}

static xfer_t *xfer_new(pf_send_t *s, edge_run_t *er, size_t idx)
{
    const pf_http_t *r = &er->t->plan->reqs[idx];
    const char *base = er->t->base_url;
    size_t blen = strlen(base);
    xfer_t *x = calloc(1, sizeof(*x));

    if (!x)
        return NULL;
    x->er = er;
    x->idx = idx;
    x->attempt = 1;
    while (blen && base[blen - 1] == '/')
        blen--;
    if (asprintf(&x->url, "%.*s%s", (int) blen, base, r->target) < 0) {
        x->url = NULL;
        goto fail;
    }
    for (size_t h = 0; r->headers[h]; h++) {
        struct curl_slist *l = curl_slist_append(x->hdrs, r->headers[h]);
        if (!l)
            goto fail;
        x->hdrs = l;
    }
    x->easy = s->npool ? s->pool[--s->npool] : curl_easy_init();
    if (!x->easy)
        goto fail;
    return x;
fail:
    xfer_free(s, x);
    return NULL;
}

/* ---- edges and batches ---- */

/* The edge is done; true when that ended its batch (which the caller may
 * free at once: touch nothing of it after). */
static bool edge_finish(pf_send_t *s, edge_run_t *er, int64_t now)
{
    batch_t *b = er->b;

    er->finished = true;
    er->res->latency_ms = now - b->t0_ms;
    if (--b->left > 0)
        return false;
    if (b->prev)
        b->prev->next = b->next;
    else
        s->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    pthread_mutex_lock(&s->lock);
    b->done = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&s->lock);
    return true;
}

static void edge_fail(edge_run_t *er, const char *why)
{
    er->res->ok = false;
    snprintf(er->res->error, sizeof(er->res->error), "%.*s", (int) sizeof(er->res->error) - 1, why);
}

/* A request is over (answered or given up); true when that ended the batch. */
static bool request_done(pf_send_t *s, edge_run_t *er, int64_t now)
{
    er->inflight--;
    er->done++;
    if (er->done == er->t->plan->n)
        return edge_finish(s, er, now);
    runnable_push(s, er);
    return false;
}

static void accept_batches(pf_send_t *s, batch_t *in, int64_t now)
{
    while (in) {
        batch_t *b = in;
        in = in->next;
        b->prev = NULL;
        b->next = s->batches;
        if (s->batches)
            s->batches->prev = b;
        s->batches = b;
        b->t0_ms = now;
        for (size_t i = 0, n = b->n; i < n; i++) {
            if (b->runs[i].t->plan->n > 0)
                runnable_push(s, &b->runs[i]);
            else if (edge_finish(s, &b->runs[i], now))
                break; /* nothing to send anywhere: the batch is over */
        }
    }
}

/* Start what the limits allow. */
static void start_requests(pf_send_t *s, int64_t now)
{
    /* due retries first: they are older */
    for (xfer_t *x = s->retry, *nx; x; x = nx) {
        nx = x->next;
        if (x->due_ms > now || s->inflight >= s->cfg.max_inflight)
            continue;
        xfer_unlink(&s->retry, x);
        if (xfer_add(s, x)) {
            edge_run_t *er = x->er;
            edge_fail(er, "out of memory");
            xfer_free(s, x);
            request_done(s, er, now);
        }
    }
    while (s->inflight < s->cfg.max_inflight && s->run_head) {
        edge_run_t *er = runnable_pop(s);
        bool over = false;

        while (er->inflight < s->cfg.per_edge && er->next < er->t->plan->n &&
               s->inflight < s->cfg.max_inflight) {
            size_t idx = er->next++;
            xfer_t *x = xfer_new(s, er, idx);

            er->inflight++;
            if (!x || xfer_add(s, x)) {
                edge_fail(er, "out of memory");
                if (x)
                    xfer_free(s, x);
                over = request_done(s, er, now);
                if (over || er->finished)
                    break;
            }
        }
        if (!over && er->inflight < s->cfg.per_edge)
            runnable_push(s, er); /* more to send once the limit allows */
    }
}

static int64_t backoff_ms(const pf_send_t *s, int attempt)
{
    int64_t d = s->cfg.backoff_ms;

    for (int i = 2; i < attempt && d < s->cfg.backoff_max_ms; i++)
        d *= 2;
    if (d > s->cfg.backoff_max_ms)
        d = s->cfg.backoff_max_ms;
    return d - d / 4 + (d > 4 ? rand() % (d / 2 + 1) : 0); /* +-25% against lockstep */
}

static void xfer_complete(pf_send_t *s, xfer_t *x, CURLcode code, int64_t now)
{
    edge_run_t *er = x->er;
    long status = 0;
    bool ok, again;
    char why[512];

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->multi, x->easy);
    xfer_unlink(&s->live, x);
    s->inflight--;
    if (status > 0)
        er->res->status = status;
    if (x->attempt > er->res->attempts)
        er->res->attempts = x->attempt;
    ok = code == CURLE_OK && status >= 200 && status < 300;
    if (ok) {
        cb_series_add(s->m_ok, 1);
        xfer_free(s, x);
        request_done(s, er, now);
        return;
    }
    if (code != CURLE_OK)
        snprintf(why, sizeof(why), "%s %s: %s", er->t->plan->reqs[x->idx].method,
                 er->t->plan->reqs[x->idx].target,
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
    else
        snprintf(why, sizeof(why), "%s %s: HTTP %ld", er->t->plan->reqs[x->idx].method,
                 er->t->plan->reqs[x->idx].target, status);
    again = code != CURLE_OK || status >= 500 || status == 408 || status == 429;
    if (again && x->attempt <= s->cfg.retries) {
        cb_series_add(s->m_retried, 1);
        x->due_ms = now + backoff_ms(s, x->attempt);
        x->attempt++;
        xfer_link(&s->retry, x);
        return;
    }
    cb_series_add(s->m_failed, 1);
    cb_log_debug("purge to edge '%s' failed after %d attempts: %s", er->t->edge, x->attempt, why);
    edge_fail(er, why);
    xfer_free(s, x);
    request_done(s, er, now);
}

/* Stop: everything in hand ends now. */
static void abort_all(pf_send_t *s, int64_t now)
{
    while (s->live) {
        xfer_t *x = s->live;
        curl_multi_remove_handle(s->multi, x->easy);
        xfer_unlink(&s->live, x);
        xfer_free(s, x);
    }
    while (s->retry) {
        xfer_t *x = s->retry;
        xfer_unlink(&s->retry, x);
        xfer_free(s, x);
    }
    s->inflight = 0;
    s->run_head = s->run_tail = NULL;
    while (s->batches) {
        batch_t *b = s->batches;
        b->aborted = true;
        for (size_t i = 0, n = b->n; i < n; i++) {
            if (!b->runs[i].finished) {
                edge_fail(&b->runs[i], "purge-fanout stopped before the edge answered");
                if (edge_finish(s, &b->runs[i], now))
                    break;
            }
        }
    }
}

static void *engine(void *arg)
{
    pf_send_t *s = arg;

    for (;;) {
        batch_t *in;
        bool stop;
        int running = 0, nmsg;
        CURLMsg *msg;
        int64_t now, wait_ms = 1000;
        bool progressed = false;

        pthread_mutex_lock(&s->lock);
        in = s->incoming;
        s->incoming = NULL;
        stop = s->stopping;
        pthread_mutex_unlock(&s->lock);
        now = cb_clock_mono_ms();
        accept_batches(s, in, now);
        if (stop) {
            abort_all(s, now);
            break;
        }
        start_requests(s, now);
        curl_multi_perform(s->multi, &running);
        while ((msg = curl_multi_info_read(s->multi, &nmsg))) {
            xfer_t *x;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x);
            xfer_complete(s, x, msg->data.result, cb_clock_mono_ms());
            progressed = true;
        }
        cb_series_set(s->m_inflight, (double) s->inflight);
        if (progressed)
            continue; /* start what those made room for */
        for (xfer_t *x = s->retry; x; x = x->next)
            if (x->due_ms - now < wait_ms)
                wait_ms = x->due_ms - now > 0 ? x->due_ms - now : 0;
        curl_multi_poll(s->multi, NULL, 0, (int) wait_ms, NULL);
    }
    return NULL;
}

/* ---- API ---- */

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int pf_send_new(const pf_send_config_t *cfg, cb_metrics_t *metrics, pf_send_t **out, char *err,
                size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pf_send_t *s;
    cb_metric_t *reqs;

    pthread_once(&once, curl_init);
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    pthread_mutex_init(&s->lock, NULL);
    s->pool = calloc((size_t) cfg->max_inflight, sizeof(*s->pool));
    s->multi = curl_multi_init();
    if (!s->pool || !s->multi) {
        pf_send_free(s);
        return -ENOMEM;
    }
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) cfg->per_edge);
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long) cfg->max_inflight);
    reqs = cb_metrics_counter(metrics, "castbus_purge_edge_requests_total",
                              "Purge requests sent to edges, by outcome (ok; retried: failed and "
                              "tried again; failed: given up).",
                              (const char *[]){ "result", NULL });
    s->m_ok = cb_metric_series(reqs, (const char *[]){ "ok" });
    s->m_retried = cb_metric_series(reqs, (const char *[]){ "retried" });
    s->m_failed = cb_metric_series(reqs, (const char *[]){ "failed" });
    s->m_inflight = cb_metric_series(
        cb_metrics_gauge(metrics, "castbus_purge_edge_requests_inflight",
                         "Purge requests to edges in flight or waiting to retry.", NULL),
        NULL);
    if (pthread_create(&s->thread, NULL, engine, s)) {
        snprintf(err, errlen, "purge sender: cannot start its thread");
        pf_send_free(s);
        return -EAGAIN;
    }
    s->started = true;
    *out = s;
    return 0;
}

int pf_send_run(pf_send_t *s, const pf_target_t *targets, size_t n, pf_result_t *results)
{
    batch_t *b;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        results[i].ok = true;
    }
    if (n == 0)
        return 0;
    b = calloc(1, sizeof(*b));
    if (!b || !(b->runs = calloc(n, sizeof(*b->runs)))) {
        free(b);
        return -ENOMEM;
    }
    pthread_cond_init(&b->cond, NULL);
    b->n = b->left = n;
    for (size_t i = 0; i < n; i++) {
        b->runs[i].b = b;
        b->runs[i].t = &targets[i];
        b->runs[i].res = &results[i];
    }
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        rc = -ESHUTDOWN;
    } else {
        b->next = s->incoming;
        s->incoming = b;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0) {
        curl_multi_wakeup(s->multi);
        pthread_mutex_lock(&s->lock);
        while (!b->done)
            pthread_cond_wait(&b->cond, &s->lock);
        rc = b->aborted ? -ESHUTDOWN : 0;
        pthread_mutex_unlock(&s->lock);
    }
    pthread_cond_destroy(&b->cond);
    free(b->runs);
    free(b);
    return rc;
}

static void send_stop(pf_send_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    if (s->started) {
        curl_multi_wakeup(s->multi);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
}

void pf_send_free(pf_send_t *s)
{
    if (!s)
        return;
    send_stop(s);
    for (size_t i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    free(s->pool);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void send_drain(void *obj, int64_t deadline_ms)
{
    (void) deadline_ms;
    send_stop(obj);
}

static void send_free(void *obj)
{
    pf_send_free(obj);
}

const cb_component_ops_t pf_send_component = {
    .name = "purge-sender",
    .drain = send_drain,
    .free = send_free,
};

/*
 * purge_send.c - the fan-out engines: each one thread, one curl multi
 * handle; edges are sharded over them by URL.
 *
 * The loop is epoll with curl's socket interface (CURLMOPT_SOCKETFUNCTION,
 * curl_multi_socket_action): only sockets with something to do are
 * visited, so a thousand edges cost what the busy ones cost.
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "version.h"

typedef struct batch batch_t;
typedef struct edge_run edge_run_t;

/* One edge (by base URL) across all jobs: the per-edge limit counts here,
 * and runs that would exceed it wait here, outside curl (whose own
 * pending queue costs time per handle). */
typedef struct host {
    char *url;
    int inflight; /* requests in the multi handle */
    int runs;     /* unfinished edge runs for it */
    edge_run_t *wait_head, *wait_tail;
    struct host *next; /* bucket chain */
} host_t;

#define HOST_BUCKETS 1024

struct edge_run {
    batch_t *b;
    const pf_target_t *t;
    pf_result_t *res;
    host_t *host;
    size_t next; /* the next request not started */
    size_t done; /* requests answered or given up */
    bool queued; /* on the runnable list */
    bool parked; /* on its host's wait list */
    bool finished;
    struct edge_run *next_runnable; /* either list */
};

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

typedef struct engine {
    pf_send_config_t cfg; /* max_inflight: this engine's share */
    CURLM *multi;
    int epfd;             /* the engine's sockets, and wakefd */
    int wakefd;           /* eventfd: new batches, or stop */
    int64_t timer_due_ms; /* curl's timer (monotonic), -1: none */
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
    host_t *hosts[HOST_BUCKETS];
    CURL **pool; /* easy handles to reuse */
    size_t npool;
    int64_t inflight;

    int64_t inflight_shown;                                /* this engine's part of m_inflight */
    cb_series_t *m_ok, *m_retried, *m_failed, *m_inflight; /* shared by the engines */
} engine_t;

/* Edges are sharded over the engines by URL, so one edge's requests (and
 * its per-edge limit) always live on one thread. */
struct pf_send {
    engine_t **eng;
    size_t n;
};

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void) p;
    (void) arg;
    return size * n;
}

/* ---- lists ---- */

static void runnable_push(engine_t *s, edge_run_t *er)
{
    if (er->queued || er->parked || er->finished || er->next >= er->t->plan->n)
        return;
    er->queued = true;
    er->next_runnable = NULL;
    if (s->run_tail)
        s->run_tail->next_runnable = er;
    else
        s->run_head = er;
    s->run_tail = er;
}

static edge_run_t *runnable_pop(engine_t *s)
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

/* ---- hosts ---- */

static size_t url_hash(const char *url)
{
    size_t h = 5381;

    for (const unsigned char *p = (const unsigned char *) url; *p; p++)
        h = h * 33 + *p;
    return h;
}

static size_t host_hash(const char *url)
{
    return url_hash(url) % HOST_BUCKETS;
}

static host_t *host_get(engine_t *s, const char *url)
{
    size_t b = host_hash(url);
    host_t *h;

    for (h = s->hosts[b]; h; h = h->next)
        if (strcmp(h->url, url) == 0)
            return h;
    h = calloc(1, sizeof(*h));
    if (h && !(h->url = strdup(url))) {
        free(h);
        h = NULL;
    }
    if (h) {
        h->next = s->hosts[b];
        s->hosts[b] = h;
    }
    return h;
}

/* Forget a host nobody uses any more. */
static void host_put(engine_t *s, host_t *h)
{
    host_t **pp;

    if (h->runs > 0 || h->inflight > 0)
        return;
    for (pp = &s->hosts[host_hash(h->url)]; *pp != h; pp = &(*pp)->next)
        ;
    *pp = h->next;
    free(h->url);
    free(h);
}

static void host_park(host_t *h, edge_run_t *er)
{
    er->parked = true;
    er->next_runnable = NULL;
    if (h->wait_tail)
        h->wait_tail->next_runnable = er;
    else
        h->wait_head = er;
    h->wait_tail = er;
}

/* A request to h is over: a run waiting for it may go. */
static void host_release(engine_t *s, host_t *h)
{
    edge_run_t *er = h->wait_head;

    h->inflight--;
    if (er) {
        h->wait_head = er->next_runnable;
        if (!h->wait_head)
            h->wait_tail = NULL;
        er->parked = false;
        runnable_push(s, er);
    }
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

static void xfer_free(engine_t *s, xfer_t *x)
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

/* An easy handle with what every purge request shares (pooled handles keep it). */
static CURL *easy_new(engine_t *s)
{
    CURL *e = curl_easy_init();

    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) s->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) s->cfg.timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "castbus-purge-fanout");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    /* No DNS cache: connections are kept alive, so a name is resolved once
     * per connection anyway (and an edge fleet's addresses change), while
     * libcurl walks the whole cache after every transfer (one entry per
     * edge: a thousand at a thousand edges). */
    curl_easy_setopt(e, CURLOPT_DNS_CACHE_TIMEOUT, 0L);
    return e;
}

/* Put an attempt of the transfer into the multi handle. */
static int xfer_add(engine_t *s, xfer_t *x)
{
    CURL *e = x->easy;

    x->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->er->t->plan->reqs[x->idx].method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    if (curl_multi_add_handle(s->multi, e) != CURLM_OK)
        return -ENOMEM;
    xfer_link(&s->live, x);
    s->inflight++;
    x->er->host->inflight++;
    return 0;
}

static xfer_t *xfer_new(engine_t *s, edge_run_t *er, size_t idx)
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
    x->easy = s->npool ? s->pool[--s->npool] : easy_new(s);
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
static bool edge_finish(engine_t *s, edge_run_t *er, int64_t now)
{
    batch_t *b = er->b;

    er->finished = true;
    er->res->latency_ms = now - b->t0_ms;
    if (er->host) {
        er->host->runs--;
        host_put(s, er->host);
        er->host = NULL;
    }
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
static bool request_done(engine_t *s, edge_run_t *er, int64_t now)
{
    er->done++;
    if (er->done == er->t->plan->n)
        return edge_finish(s, er, now);
    runnable_push(s, er);
    return false;
}

static void accept_batches(engine_t *s, batch_t *in, int64_t now)
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
            edge_run_t *er = &b->runs[i];
            if (er->t->plan->n > 0 && !(er->host = host_get(s, er->t->base_url)))
                edge_fail(er, "out of memory");
            if (er->host) {
                er->host->runs++;
                runnable_push(s, er);
            } else if (edge_finish(s, er, now))
                break; /* nothing (more) to send anywhere: the batch is over */
        }
    }
}

/* Start what the limits allow. */
static void start_requests(engine_t *s, int64_t now)
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
        host_t *h = er->host;
        bool over = false;

        while (h->inflight < s->cfg.per_edge && er->next < er->t->plan->n &&
               s->inflight < s->cfg.max_inflight) {
            size_t idx = er->next++;
            xfer_t *x = xfer_new(s, er, idx);

            if (!x || xfer_add(s, x)) {
                edge_fail(er, "out of memory");
                if (x)
                    xfer_free(s, x);
                over = request_done(s, er, now);
                if (over || er->finished)
                    break;
            }
        }
        if (over || er->finished || er->next >= er->t->plan->n)
            continue;
        if (h->inflight >= s->cfg.per_edge)
            host_park(h, er); /* more to send once the edge has room */
        else
            runnable_push(s, er); /* more once the overall limit allows */
    }
}

static int64_t backoff_ms(const engine_t *s, int attempt)
{
    int64_t d = s->cfg.backoff_ms;

    for (int i = 2; i < attempt && d < s->cfg.backoff_max_ms; i++)
        d *= 2;
    if (d > s->cfg.backoff_max_ms)
        d = s->cfg.backoff_max_ms;
    return d - d / 4 + (d > 4 ? rand() % (d / 2 + 1) : 0); /* +-25% against lockstep */
}

static void xfer_complete(engine_t *s, xfer_t *x, CURLcode code, int64_t now)
{
    edge_run_t *er = x->er;
    long status = 0;
    bool ok, again;
    char why[512];

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->multi, x->easy);
    xfer_unlink(&s->live, x);
    s->inflight--;
    host_release(s, er->host);
    if (status > 0)
        er->res->status = status;
    if (x->attempt > er->res->attempts)
        er->res->attempts = x->attempt;
    /* a PURGE of what that cache does not hold (Traffic Server, nginx) is done */
    ok = code == CURLE_OK &&
         ((status >= 200 && status < 300) ||
          (status == 404 && strcmp(er->t->plan->reqs[x->idx].method, "PURGE") == 0));
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
static void abort_all(engine_t *s, int64_t now)
{
    while (s->live) {
        xfer_t *x = s->live;
        curl_multi_remove_handle(s->multi, x->easy);
        xfer_unlink(&s->live, x);
        x->er->host->inflight--;
        xfer_free(s, x);
    }
    for (size_t i = 0; i < HOST_BUCKETS; i++)
        for (host_t *h = s->hosts[i]; h; h = h->next)
            h->wait_head = h->wait_tail = NULL;
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

/* ---- the event loop: epoll, and curl told which sockets are ready ---- */

/* curl wants fd watched for `what` (CURLMOPT_SOCKETFUNCTION). */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    engine_t *s = userp;
    struct epoll_event ev = { .data.fd = fd };

    (void) e;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, fd, NULL);
        return 0;
    }
    ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
    if (socketp) {
        epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev);
    } else {
        epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
        curl_multi_assign(s->multi, fd, s); /* marks it added */
    }
    return 0;
}

/* curl wants to be called back in timeout_ms (-1: no timer). */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
    engine_t *s = userp;

    (void) m;
    s->timer_due_ms = timeout_ms < 0 ? -1 : cb_clock_mono_ms() + timeout_ms;
    return 0;
}

/* Finished transfers. The messages are all read before any handle is
 * removed: a removal scans the messages still unread (quadratic when a
 * few hundred answers arrive in one wakeup). */
static void read_done(engine_t *s)
{
    struct {
        xfer_t *x;
        CURLcode code;
    } done[256];
    size_t n;

    do {
        CURLMsg *msg;
        int nmsg;
        int64_t now;

        n = 0;
        while (n < CB_ARRAY_LEN(done) && (msg = curl_multi_info_read(s->multi, &nmsg))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &done[n].x);
            done[n++].code = msg->data.result;
        }
        now = cb_clock_mono_ms();
        for (size_t i = 0; i < n; i++)
            xfer_complete(s, done[i].x, done[i].code, now);
    } while (n == CB_ARRAY_LEN(done));
}

static void *engine_main(void *arg)
{
    engine_t *s = arg;
    struct epoll_event evs[256];

    pthread_setname_np(pthread_self(), "purge-send");

    for (;;) {
        batch_t *in;
        bool stop;
        int running = 0, n;
        int64_t now, wait_ms = 1000;

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
        cb_series_add(s->m_inflight, (double) (s->inflight - s->inflight_shown));
        s->inflight_shown = s->inflight;
        if (s->timer_due_ms >= 0)
            wait_ms = s->timer_due_ms > now ? s->timer_due_ms - now : 0;
        for (xfer_t *x = s->retry; x; x = x->next)
            if (x->due_ms - now < wait_ms)
                wait_ms = x->due_ms > now ? x->due_ms - now : 0;
        n = epoll_wait(s->epfd, evs, (int) CB_ARRAY_LEN(evs), (int) wait_ms);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd, flags = 0;
            if (fd == s->wakefd) {
                uint64_t v;
                if (read(s->wakefd, &v, sizeof(v)) < 0) { /* nothing: level-triggered retry */
                }
                continue;
            }
            if (evs[i].events & EPOLLIN)
                flags |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(s->multi, fd, flags, &running);
        }
        if (s->timer_due_ms >= 0 && cb_clock_mono_ms() >= s->timer_due_ms) {
            s->timer_due_ms = -1;
            curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        read_done(s);
    }
    return NULL;
}

static void wake(engine_t *s)
{
    uint64_t one = 1;

    if (write(s->wakefd, &one, sizeof(one)) < 0) { /* the counter is full: it is awake anyway */
    }
}

/* ---- API ---- */

static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void engine_free(engine_t *s);

static int engine_new(const pf_send_config_t *cfg, engine_t **out)
{
    engine_t *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->epfd = s->wakefd = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->pool = calloc((size_t) cfg->max_inflight, sizeof(*s->pool));
    s->multi = curl_multi_init();
    s->timer_due_ms = -1;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!s->pool || !s->multi || s->epfd < 0 || s->wakefd < 0) {
        engine_free(s);
        return -ENOMEM;
    }
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wakefd,
              &(struct epoll_event){ .events = EPOLLIN, .data.fd = s->wakefd });
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) cfg->per_edge);
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long) cfg->max_inflight);
    *out = s;
    return 0;
}

static void engine_stop(engine_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    if (s->started) {
        wake(s);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
}

static void engine_free(engine_t *s)
{
    if (!s)
        return;
    engine_stop(s);
    for (size_t i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    for (size_t i = 0; i < HOST_BUCKETS; i++) {
        while (s->hosts[i]) { /* none are left after a stop; a failed start may */
            host_t *h = s->hosts[i];
            s->hosts[i] = h->next;
            free(h->url);
            free(h);
        }
    }
    free(s->pool);
    if (s->multi)
        curl_multi_cleanup(s->multi);
    if (s->epfd >= 0)
        close(s->epfd);
    if (s->wakefd >= 0)
        close(s->wakefd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int pf_send_new(const pf_send_config_t *cfg, cb_metrics_t *metrics, pf_send_t **out, char *err,
                size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pf_send_t *p;
    pf_send_config_t share = *cfg;
    cb_metric_t *reqs;
    cb_series_t *ok, *retried, *failed, *inflight;
    size_t n = cfg->threads > 0 ? (size_t) cfg->threads : 1;

    pthread_once(&once, curl_init);
    reqs = cb_metrics_counter(metrics, "castbus_purge_edge_requests_total",
                              "Purge requests sent to edges, by outcome (ok; retried: failed and "
                              "tried again; failed: given up).",
                              (const char *[]){ "result", NULL });
    ok = cb_metric_series(reqs, (const char *[]){ "ok" });
    retried = cb_metric_series(reqs, (const char *[]){ "retried" });
    failed = cb_metric_series(reqs, (const char *[]){ "failed" });
    inflight = cb_metric_series(
        cb_metrics_gauge(metrics, "castbus_purge_edge_requests_inflight",
                         "Purge requests to edges in flight or waiting to retry.", NULL),
        NULL);
    /* the overall bound, shared out */
    share.max_inflight = cfg->max_inflight / (int64_t) n > 0 ? cfg->max_inflight / (int64_t) n : 1;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->eng = calloc(n, sizeof(*p->eng)))) {
        free(p);
        return -ENOMEM;
    }
    for (; p->n < n; p->n++) {
        engine_t *s;
        if (engine_new(&share, &s)) {
            pf_send_free(p);
            return -ENOMEM;
        }
        p->eng[p->n] = s;
        s->m_ok = ok;
        s->m_retried = retried;
        s->m_failed = failed;
        s->m_inflight = inflight;
        if (pthread_create(&s->thread, NULL, engine_main, s)) {
            snprintf(err, errlen, "purge sender: cannot start its threads");
            p->n++;
            pf_send_free(p);
            return -EAGAIN;
        }
        s->started = true;
    }
    *out = p;
    return 0;
}

/* One engine's share of a run: its own batch, waited on under its lock. */
static int batch_submit(engine_t *s, batch_t *b)
{
    int rc = 0;

    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        rc = -ESHUTDOWN;
    } else {
        b->next = s->incoming;
        s->incoming = b;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        wake(s);
    return rc;
}

static int batch_wait(engine_t *s, batch_t *b)
{
    int rc;

    pthread_mutex_lock(&s->lock);
    while (!b->done)
        pthread_cond_wait(&b->cond, &s->lock);
    rc = b->aborted ? -ESHUTDOWN : 0;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static size_t shard_of(const pf_send_t *p, const char *url)
{
    return (url_hash(url) / HOST_BUCKETS) % p->n;
}

int pf_send_run(pf_send_t *p, const pf_target_t *targets, size_t n, pf_result_t *results)
{
    batch_t *bs;
    bool *sent;
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof(results[i]));
        results[i].ok = true;
    }
    if (n == 0)
        return 0;
    bs = calloc(p->n, sizeof(*bs));
    sent = calloc(p->n, sizeof(*sent));
    if (!bs || !sent) {
        free(bs);
        free(sent);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        bs[shard_of(p, targets[i].base_url)].n++;
    for (size_t k = 0; k < p->n && rc == 0; k++) {
        pthread_cond_init(&bs[k].cond, NULL);
        if (bs[k].n && !(bs[k].runs = calloc(bs[k].n, sizeof(*bs[k].runs))))
            rc = -ENOMEM;
        bs[k].left = bs[k].n;
        bs[k].n = 0; /* counts the runs filled in, below */
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        batch_t *b = &bs[shard_of(p, targets[i].base_url)];
        edge_run_t *er = &b->runs[b->n++];
        er->b = b;
        er->t = &targets[i];
        er->res = &results[i];
    }
    for (size_t k = 0; k < p->n && rc == 0; k++)
        if (bs[k].n)
            sent[k] = (rc = batch_submit(p->eng[k], &bs[k])) == 0;
    for (size_t k = 0; k < p->n; k++) {
        if (sent[k]) {
            int wrc = batch_wait(p->eng[k], &bs[k]);
            if (rc == 0)
                rc = wrc;
        }
        pthread_cond_destroy(&bs[k].cond);
        free(bs[k].runs);
    }
    free(bs);
    free(sent);
    return rc;
}

static void send_stop(pf_send_t *p)
{
    for (size_t k = 0; k < p->n; k++)
        if (p->eng[k])
            engine_stop(p->eng[k]);
}

void pf_send_free(pf_send_t *p)
{
    if (!p)
        return;
    send_stop(p); /* all stop first: none waits on another's drain */
    for (size_t k = 0; k < p->n; k++)
        engine_free(p->eng[k]);
    free(p->eng);
    free(p);
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

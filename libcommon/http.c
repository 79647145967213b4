/*
 * http.c - REST server on libwebsockets; see http.h.
 *
 * DESIGN: lws owns the sockets and calls http_callback() on the loop
 * thread. Each HTTP transaction gets a cb_http_req_t, reference counted:
 * one reference for the connection (dropped when the transaction completes
 * or the connection closes) and one for a handler that runs on a worker
 * thread or answers later. A reply only fills the request's response
 * fields; writing happens on the loop thread in the WRITEABLE callback.
 * Replies given on other threads put the request on an intrusive "ready"
 * list (a request is on it at most once, so it is bounded by the number of
 * live requests) and wake the loop with lws_cancel_service(). Generic posts
 * go through a bounded ring.
 */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <unistd.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "route.h"
#include "workq.h"

#define MAX_ROUTES        128
#define POST_QUEUE_MAX    4096
#define WORK_QUEUE_MAX    256
#define PATH_MAX_LEN      2048
#define HEADERS_MAX_BYTES 16384
#define RESP_HEADERS_MAX  8192
#define WRITE_CHUNK       (256 * 1024) /* a 100 KB segment in one writable callback */
/* one write buffer per server, used by the loop thread for headers and body chunks
 * (a body that fits goes out with its headers) */
#define WRITE_BUF_SIZE (LWS_PRE + WRITE_CHUNK + RESP_HEADERS_MAX + 1024)
#define REQUEST_ID_MAX 64

const cb_config_key_t cb_http_config_keys[] = {
    { .name = "http_host",
      .type = CB_CONFIG_STRING,
      .def = "0.0.0.0",
      .offset = offsetof(cb_http_config_t, host),
      .help = "Address the admin/REST HTTP server binds to." },
    { .name = "http_port",
      .type = CB_CONFIG_INT,
      .def = "8080",
      .min = 0,
      .max = 65535,
      .offset = offsetof(cb_http_config_t, port),
      .help = "Port of the admin/REST HTTP server (/healthz, /readyz, /metrics, /v1/...)." },
    { .name = "http_max_body",
      .type = CB_CONFIG_BYTES,
      .def = "1MiB",
      .min = 1024,
      .max = 1 << 30,
      .offset = offsetof(cb_http_config_t, max_body_bytes),
      .help = "Largest request body accepted; larger requests get 413." },
    { .name = "http_workers",
      .type = CB_CONFIG_INT,
      .def = "4",
      .min = 1,
      .max = 256,
      .offset = offsetof(cb_http_config_t, workers),
      .help = "Worker threads for REST handlers that block (database calls)." },
    { .name = "api_keys",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(cb_http_config_t, api_keys),
      .help = "API keys as role:key pairs separated by commas (roles: admin, editor, viewer)." },
    { .name = NULL },
};

typedef struct route_entry {
    cb_http_route_t r;
    cb_series_t *hist; /* duration histogram series of this route */
} route_entry_t;

typedef struct post {
    void (*fn)(void *arg);
    void *arg;
} post_t;

struct cb_http_req {
    cb_http_t *http;
    struct lws *wsi; /* loop thread only; NULL once the connection is gone */
    _Atomic int refs;
    struct cb_http_req *next_ready;
    bool on_ready; /* guarded by http->lock */

    char method[8];
    char path[PATH_MAX_LEN];
    cb_buf_t args;    /* query fragments "k=v\0k2=v2\0" as lws decoded them */
    cb_buf_t headers; /* "name\0value\0" pairs, names lower case */
    cb_route_params_t params;
    const route_entry_t *route;
    cb_role_t role;
    char key_id[CB_APIKEY_ID_LEN + 1]; /* the API key, named (see apikey.h) */
    char id[REQUEST_ID_MAX + 1];
    char peer[64];
    cb_log_ids_t log_ids;
    bool quiet;
    bool head; /* HEAD: headers only */

    cb_buf_t body;
    bool waiting_body;

    /* response, written once by the reply, then read by the loop thread */
    _Atomic bool replied;
    int status;
    char content_type[96];
    cb_buf_t resp_headers; /* "name\0value\0" pairs */
    cb_buf_t resp_body;
    bool headers_sent;
    bool corked; /* TCP_CORK set for the headers and a sendfile() body */
    bool ended;  /* HTTP/2: the stream's last frame is written */
    size_t body_sent;
    int file_fd;      /* cb_http_reply_file(): the body is this file's range, -1 none */
    off_t file_off;   /* next byte of the file to send */
    size_t file_left; /* bytes of it still to send */
    size_t file_len;
    bool close_after;

    struct timespec start;
};

struct cb_http {
    char daemon[32];
    char host[64];
    int port;
    bool no_listen;
    char tls_cert[256], tls_key[256]; /* both set: TLS with ALPN h2, http/1.1 */
    int64_t max_body;
    cb_apikeys_t *keys;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws_vhost *vh_h2; /* no_listen, no TLS: HTTP/2 by prior knowledge */
    char vh_h2_name[48];     /* lws keeps the pointer */
    struct lws_protocols protocols[2];
    route_entry_t routes[MAX_ROUTES];
    size_t nroutes;
    cb_workq_t *workers;
    size_t nworkers;
    unsigned char *wbuf; /* WRITE_BUF_SIZE bytes, loop thread only */
    int corked[64];      /* HTTP/2 connections corked in this pass of the loop */
    size_t ncorked;
    char date[CB_HTTP_DATE_LEN]; /* the Date header of this second, loop thread only */
    char server[48];             /* the Server header */
    time_t date_sec;

    pthread_mutex_t lock; /* posts and ready list */
    post_t posts[POST_QUEUE_MAX];
    size_t post_head, post_count;
    cb_http_req_t *ready_head, *ready_tail;
    atomic_bool stopping;
    bool running;
    pthread_t loop_thread;

    cb_metric_t *m_requests, *m_duration, *m_inflight, *m_rejected;
};

typedef struct pss {
    cb_http_req_t *req;
    char peer[64]; /* the connection's (an HTTP/2 stream's) peer, once known */
} pss_t;

static const char *const status_codes[][2] = {
    { "400", "bad_request" },
    { "401", "unauthorized" },
    { "403", "forbidden" },
    { "404", "not_found" },
    { "405", "method_not_allowed" },
    { "409", "conflict" },
    { "410", "gone" },
    { "413", "payload_too_large" },
    { "415", "unsupported_media_type" },
    { "429", "too_many_requests" },
    { "500", "internal" },
    { "503", "unavailable" },
};

/* ---- helpers ---- */

static double elapsed_s(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double) (now.tv_sec - since->tv_sec) + (double) (now.tv_nsec - since->tv_nsec) / 1e9;
}

static bool in_loop_thread(const cb_http_t *h)
{
    return h->running && pthread_equal(pthread_self(), h->loop_thread);
}

static void req_ref(cb_http_req_t *req)
{
    atomic_fetch_add(&req->refs, 1);
}

static void req_unref(cb_http_req_t *req)
{
    if (atomic_fetch_sub(&req->refs, 1) != 1)
        return;
    cb_buf_release(&req->args);
    cb_buf_release(&req->headers);
    cb_buf_release(&req->body);
    cb_buf_release(&req->resp_headers);
    cb_buf_release(&req->resp_body);
    if (req->file_fd >= 0)
        close(req->file_fd);
    cb_series_add(cb_metric_series(req->http->m_inflight, NULL), -1);
    free(req);
}

static const char *pairs_get(const cb_buf_t *b, const char *name)
{
    size_t pos = 0;

    while (b->data && pos < b->len) {
        const char *k = b->data + pos;
        const char *v = k + strlen(k) + 1;
        if (strcmp(k, name) == 0)
            return v;
        pos = (size_t) (v - b->data) + strlen(v) + 1;
    }
    return NULL;
}

static int pairs_add(cb_buf_t *b, const char *name, const char *value)
{
    int rc = cb_buf_append(b, name, strlen(name) + 1);

    if (rc == 0)
        rc = cb_buf_append(b, value, strlen(value) + 1);
    return rc;
}

/*
 * 16 hex digits, unique in the process and unlike another process's: a
 * random start (read once) plus a counter, through splitmix64's finaliser
 * (a bijection), so no system call per request.
 */
static void new_request_id(char *dst, size_t dstlen)
{
    static _Atomic uint64_t counter;
    static _Atomic uint64_t seed;
    uint64_t s = atomic_load(&seed), z;

    if (s == 0) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r))
            r = (uint64_t) time(NULL) * 0x9e3779b97f4a7c15ull; /* cannot fail after boot */
        r |= 1;
        atomic_compare_exchange_strong(&seed, &s, r);
        s = atomic_load(&seed);
    }
    z = s + atomic_fetch_add(&counter, 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    if (dstlen < 17)
        return;
    for (int i = 15; i >= 0; i--, z >>= 4) /* %016llx, without printf's cost per request */
        dst[i] = "0123456789abcdef"[z & 15];
    dst[16] = '\0';
}

/* ---- waking the loop ---- */

static void ready_push(cb_http_req_t *req)
{
    cb_http_t *h = req->http;

    pthread_mutex_lock(&h->lock);
    if (!req->on_ready) {
        req->on_ready = true;
        req_ref(req); /* held by the ready list */
        req->next_ready = NULL;
        if (h->ready_tail)
            h->ready_tail->next_ready = req;
        else
            h->ready_head = req;
        h->ready_tail = req;
    }
    pthread_mutex_unlock(&h->lock);
    if (h->ctx)
        lws_cancel_service(h->ctx);
}

int cb_http_post(cb_http_t *h, void (*fn)(void *arg), void *arg)
{
    int rc = 0;

    pthread_mutex_lock(&h->lock);
    if (atomic_load(&h->stopping))
        rc = -ESHUTDOWN;
    else if (h->post_count == POST_QUEUE_MAX)
        rc = -EAGAIN;
    else
        h->posts[(h->post_head + h->post_count++) % POST_QUEUE_MAX] = (post_t){ fn, arg };
    pthread_mutex_unlock(&h->lock);
    if (rc == 0 && h->ctx)
        lws_cancel_service(h->ctx);
    return rc;
}

typedef struct adoption {
    cb_http_t *h;
    int fd;
    bool h2;
} adoption_t;

static void adopt_on_loop(void *arg)
{
    adoption_t *a = arg;
    lws_sock_file_fd_type fd;
    int type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | (a->h->tls_cert[0] ? LWS_ADOPT_ALLOW_SSL : 0);

    fd.sockfd = a->fd;
    /* on failure lws has closed the socket */
    if (!lws_adopt_descriptor_vhost(a->h2 ? a->h->vh_h2 : a->h->vh, (lws_adoption_type) type, fd,
                                    NULL, NULL))
        cb_log_warn("http: a connection could not be adopted");
    free(a);
}

static int adopt(cb_http_t *h, int fd, bool h2)
{
    adoption_t *a = malloc(sizeof(*a));
    int rc;

    if (!a) {
        close(fd);
        return -ENOMEM;
    }
    *a = (adoption_t){ h, fd, h2 };
    rc = cb_http_post(h, adopt_on_loop, a);
    if (rc) {
        close(fd);
        free(a);
    }
    return rc;
}

int cb_http_adopt(cb_http_t *h, int fd)
{
    return adopt(h, fd, false);
}

int cb_http_adopt_h2(cb_http_t *h, int fd)
{
    if (!h->vh_h2) {
        close(fd);
        return -ENOTSUP;
    }
    return adopt(h, fd, true);
}

int cb_http_sniff(const void *buf, size_t len)
{
    static const char preface[] = "PRI ";
    size_t n = CB_MIN(len, sizeof(preface) - 1);

    if (memcmp(buf, preface, n) != 0)
        return CB_HTTP_SNIFF_H1;
    return n == sizeof(preface) - 1 ? CB_HTTP_SNIFF_H2 : CB_HTTP_SNIFF_MORE;
}

/* Loop thread: run posts and schedule writes for requests answered elsewhere. */
static void process_wakeups(cb_http_t *h)
{
    for (;;) {
        post_t p = { NULL, NULL };
        cb_http_req_t *req = NULL;

        pthread_mutex_lock(&h->lock);
        if (h->post_count) {
            p = h->posts[h->post_head];
            h->post_head = (h->post_head + 1) % POST_QUEUE_MAX;
            h->post_count--;
        } else if (h->ready_head) {
            req = h->ready_head;
            h->ready_head = req->next_ready;
            if (!h->ready_head)
                h->ready_tail = NULL;
            req->on_ready = false;
        }
        pthread_mutex_unlock(&h->lock);
        if (p.fn) {
            p.fn(p.arg);
        } else if (req) {
            if (req->wsi)
                lws_callback_on_writable(req->wsi);
            req_unref(req);
        } else {
            break;
        }
    }
}

/* ---- replies ---- */

static int finish_reply(cb_http_req_t *req)
{
    bool expected = false;

    if (!atomic_compare_exchange_strong(&req->replied, &expected, true)) {
        cb_log_error("http: second reply to request '%s' ignored (bug)", req->id);
        return -EALREADY;
    }
    if (in_loop_thread(req->http)) {
        if (req->wsi)
            lws_callback_on_writable(req->wsi);
    } else {
        ready_push(req);
    }
    return 0;
}

int cb_http_add_header(cb_http_req_t *req, const char *name, const char *value)
{
    char lname[128];
    size_t i;

    if (strlen(name) + 1 >= sizeof(lname) || strchr(value, '\n') || strchr(value, '\r'))
        return -EINVAL;
    for (i = 0; name[i]; i++)
        lname[i] = (char) (name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    lname[i] = '\0';
    return pairs_add(&req->resp_headers, lname, value);
}

/* The status line and type of a reply, and no body yet. */
static void reply_start(cb_http_req_t *req, int status, const char *content_type)
{
    req->status = status;
    snprintf(req->content_type, sizeof(req->content_type), "%s",
             content_type ? content_type : "application/octet-stream");
    cb_buf_reset(&req->resp_body);
}

int cb_http_reply(cb_http_req_t *req, int status, const char *content_type, const void *body,
                  size_t len)
{
    if (atomic_load(&req->replied))
        return finish_reply(req);
    reply_start(req, status, content_type);
    if (len && cb_buf_append(&req->resp_body, body, len)) {
        req->status = 500;
        snprintf(req->content_type, sizeof(req->content_type), "text/plain");
        cb_buf_reset(&req->resp_body);
    }
    return finish_reply(req);
}

int cb_http_reply_buf(cb_http_req_t *req, int status, const char *content_type, cb_buf_t *body)
{
    cb_buf_t tmp;

    if (atomic_load(&req->replied))
        return finish_reply(req);
    reply_start(req, status, content_type);
    /* swap: the request's (empty) buffer goes back to the caller */
    tmp = req->resp_body;
    req->resp_body = *body;
    req->resp_body.max = tmp.max;
    *body = tmp;
    return finish_reply(req);
}

int cb_http_reply_file(cb_http_req_t *req, int status, const char *content_type, int fd,
                       uint64_t offset, uint64_t len)
{
    if (atomic_load(&req->replied)) {
        close(fd);
        return finish_reply(req);
    }
    reply_start(req, status, content_type);
    if (req->file_fd >= 0)
        close(req->file_fd);
    req->file_fd = fd;
    req->file_off = (off_t) offset;
    req->file_left = req->file_len = (size_t) len;
    return finish_reply(req);
}

int cb_http_reply_json(cb_http_req_t *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int rc;

    json_decref(body);
    if (!text)
        return cb_http_reply(req, 500, "application/json",
                             "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}",
                             58);
    rc = cb_http_reply(req, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

static const char *code_for_status(int status)
{
    char s[8];
    size_t i;

    snprintf(s, sizeof(s), "%d", status);
    for (i = 0; i < CB_ARRAY_LEN(status_codes); i++) {
        if (strcmp(status_codes[i][0], s) == 0)
            return status_codes[i][1];
    }
    return status >= 500 ? "internal" : "bad_request";
}

int cb_http_reply_error(cb_http_req_t *req, int status, const char *code, const char *field,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_t *err, *body;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    err = json_pack("{s:s, s:s}", "code", code ? code : code_for_status(status), "message", msg);
    if (err && field && *field)
        json_object_set_new(err, "field", json_string(field));
    if (err)
        json_object_set_new(err, "request_id", json_string(req->id));
    body = err ? json_pack("{s:o}", "error", err) : NULL;
    return cb_http_reply_json(req, status, body);
}

/* ---- request accessors ---- */

const char *cb_http_req_method(const cb_http_req_t *req)
{
    return req->method;
}

const char *cb_http_req_path(const cb_http_req_t *req)
{
    return req->path;
}

const char *cb_http_req_param(const cb_http_req_t *req, const char *name)
{
    return cb_route_param(&req->params, name);
}

int cb_http_req_query(const cb_http_req_t *req, const char *name, char *dst, size_t dstlen)
{
    size_t pos = 0, nlen = strlen(name);

    /* lws has split the query at '&' and percent-decoded each "name=value" */
    while (req->args.data && pos < req->args.len) {
        const char *frag = req->args.data + pos;
        size_t flen = strlen(frag);
        if (strncmp(frag, name, nlen) == 0 && (frag[nlen] == '=' || frag[nlen] == '\0')) {
            const char *v = frag[nlen] == '=' ? frag + nlen + 1 : "";
            size_t vlen = strlen(v);
            if (vlen + 1 > dstlen)
                return -EINVAL;
            memcpy(dst, v, vlen + 1);
            return (int) vlen;
        }
        pos += flen + 1;
    }
    return -ENOENT;
}

int cb_http_req_query_int(cb_http_req_t *req, const char *name, int64_t min, int64_t max,
                          int64_t *out)
{
    char text[16], *end;
    long long v;
    int rc = cb_http_req_query(req, name, text, sizeof(text));

    if (rc == -ENOENT)
        return rc;
    if (rc < 0) {
        cb_http_reply_error(req, 400, "invalid_field", name, "malformed %s", name);
        return -EINVAL;
    }
    v = strtoll(text, &end, 10);
    if (*end || v < min || v > max) {
        cb_http_reply_error(req, 400, "invalid_field", name,
                            "%s must be an integer from %" PRId64 " to %" PRId64, name, min, max);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

const char *cb_http_req_header(const cb_http_req_t *req, const char *name)
{
    return pairs_get(&req->headers, name);
}

const char *cb_http_req_body(const cb_http_req_t *req, size_t *len)
{
    *len = req->body.len;
    return req->body.data ? req->body.data : "";
}

const char *cb_http_req_id(const cb_http_req_t *req)
{
    return req->id;
}

const char *cb_http_req_peer(const cb_http_req_t *req)
{
    return req->peer;
}

cb_role_t cb_http_req_role(const cb_http_req_t *req)
{
    return req->role;
}

const char *cb_http_req_key_id(const cb_http_req_t *req)
{
    return req->key_id;
}

int cb_http_req_json(cb_http_req_t *req, const cb_jsonv_field_t *fields, void *dst)
{
    const char *ct = cb_http_req_header(req, "content-type");
    cb_jsonv_error_t err;

    cb_jsonv_init(fields, dst); /* releasable whatever happens below */
    if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
        cb_http_reply_error(req, 415, NULL, NULL, "request body must be application/json");
        return -EINVAL;
    }
    if (cb_jsonv_decode_buf(fields, req->body.data ? req->body.data : "", req->body.len, dst,
                            &err)) {
        cb_http_reply_error(req, 400, err.field[0] ? "invalid_field" : "invalid_json", err.field,
                            "%s", err.text);
        return -EINVAL;
    }
    return 0;
}

/* ---- dispatch ---- */

static void run_handler(cb_http_req_t *req)
{
    int rc;

    cb_log_scope_set(&req->log_ids);
    rc = req->route->r.handler(req, req->route->r.arg);
    if (rc == CB_HTTP_DONE && !atomic_load(&req->replied)) {
        cb_log_error("http: handler for %s %s returned without a reply (bug)", req->method,
                     req->route->r.pattern);
        cb_http_reply_error(req, 500, NULL, NULL, "handler gave no answer");
    }
    cb_log_scope_set(NULL);
}

static void worker_job(void *arg)
{
    cb_http_req_t *req = arg;

    run_handler(req);
    req_unref(req);
}

static void dispatch(cb_http_req_t *req)
{
    cb_http_t *h = req->http;
    int rc;

    if (!(req->route->r.flags & CB_HTTP_BLOCKING)) {
        run_handler(req);
        return;
    }
    req_ref(req);
    rc = cb_workq_submit(h->workers, worker_job, req);
    if (rc) {
        req_unref(req);
        cb_series_add(cb_metric_series(h->m_rejected, (const char *[]){ "workers_busy" }), 1);
        cb_http_add_header(req, "retry-after", "1");
        cb_http_reply_error(req, 503, NULL, NULL, "server busy, retry later");
    }
}

/* Find the route; answers 404/405/401/403 itself and returns false then. */
static bool resolve(cb_http_req_t *req)
{
    cb_http_t *h = req->http;
    const route_entry_t *match = NULL;
    char allow[128] = "";
    bool path_known = false;
    size_t i;

    for (i = 0; i < h->nroutes; i++) {
        const route_entry_t *e = &h->routes[i];
        cb_route_params_t params;
        const char *m = req->head ? "GET" : req->method;

        if (!cb_route_match(e->r.pattern, req->path, &params))
            continue;
        path_known = true;
        if (strcmp(e->r.method, m) == 0) {
            match = e;
            req->params = params;
            break;
        }
        if (!strstr(allow, e->r.method)) {
            size_t len = strlen(allow);
            snprintf(allow + len, sizeof(allow) - len, "%s%s", len ? ", " : "", e->r.method);
        }
    }
    if (!match) {
        if (path_known) {
            cb_http_add_header(req, "allow", allow);
            cb_http_reply_error(req, 405, NULL, NULL, "method %s not allowed on %s (allowed: %s)",
                                req->method, req->path, allow);
        } else {
            cb_http_reply_error(req, 404, NULL, NULL, "no such resource: %s", req->path);
        }
        return false;
    }
    req->route = match;
    req->quiet = (match->r.flags & CB_HTTP_QUIET) != 0;
    if (match->r.role == CB_ROLE_NONE)
        return true;
    if (req->role == CB_ROLE_NONE) {
        cb_http_add_header(req, "www-authenticate", "Bearer realm=\"castbus\"");
        cb_http_reply_error(req, 401, NULL, NULL,
                            "missing or unknown API key (send 'Authorization: Bearer <key>')");
        return false;
    }
    if (req->role < match->r.role) {
        cb_http_reply_error(req, 403, NULL, NULL, "this needs the %s role, the key has %s",
                            cb_role_name(match->r.role), cb_role_name(req->role));
        return false;
    }
    return true;
}

/* ---- lws glue ---- */

static const struct {
    enum lws_token_indexes token;
    const char *name;
} copied_headers[] = {
    { WSI_TOKEN_HOST, "host" },
    { WSI_TOKEN_ORIGIN, "origin" },
    { WSI_TOKEN_HTTP_ACCEPT, "accept" },
    { WSI_TOKEN_HTTP_ACCEPT_ENCODING, "accept-encoding" },
    { WSI_TOKEN_HTTP_CONTENT_TYPE, "content-type" },
    { WSI_TOKEN_HTTP_CONTENT_LENGTH, "content-length" },
    { WSI_TOKEN_HTTP_IF_NONE_MATCH, "if-none-match" },
    { WSI_TOKEN_HTTP_IF_MODIFIED_SINCE, "if-modified-since" },
    { WSI_TOKEN_HTTP_RANGE, "range" },
    { WSI_TOKEN_HTTP_IF_RANGE, "if-range" },
    { WSI_TOKEN_HTTP_CACHE_CONTROL, "cache-control" },
    { WSI_TOKEN_HTTP_TRANSFER_ENCODING, "transfer-encoding" },
    { WSI_TOKEN_HTTP_USER_AGENT, "user-agent" },
    { WSI_TOKEN_HTTP_REFERER, "referer" },
    { WSI_TOKEN_X_FORWARDED_FOR, "x-forwarded-for" },
};

/* Custom (non-lws-token) request headers we read. */
static const char *const custom_headers[] = { "x-request-id", "idempotency-key" };

static void copy_headers(cb_http_req_t *req, struct lws *wsi)
{
    char val[2048];
    size_t i;

    for (i = 0; i < CB_ARRAY_LEN(copied_headers); i++) {
        int n = lws_hdr_total_length(wsi, copied_headers[i].token);
        if (n <= 0 || n >= (int) sizeof(val))
            continue;
        if (lws_hdr_copy(wsi, val, sizeof(val), copied_headers[i].token) < 0)
            continue;
        pairs_add(&req->headers, copied_headers[i].name, val);
    }
    for (i = 0; i < CB_ARRAY_LEN(custom_headers); i++) {
        char name[64];
        int n;

        snprintf(name, sizeof(name), "%s:", custom_headers[i]);
        n = lws_hdr_custom_length(wsi, name, (int) strlen(name));
        if (n <= 0 || n >= (int) sizeof(val))
            continue;
        if (lws_hdr_custom_copy(wsi, val, sizeof(val), name, (int) strlen(name)) < 0)
            continue;
        pairs_add(&req->headers, custom_headers[i], val);
    }
}

static void copy_args(cb_http_req_t *req, struct lws *wsi)
{
    char frag[1024];
    int i;

    for (i = 0; i < 64; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        cb_buf_append(&req->args, frag, (size_t) n + 1);
    }
}

static const char *method_name(int m)
{
    switch (m) {
    case LWSHUMETH_GET:
        return "GET";
    case LWSHUMETH_POST:
        return "POST";
    case LWSHUMETH_OPTIONS:
        return "OPTIONS";
    case LWSHUMETH_PUT:
        return "PUT";
    case LWSHUMETH_PATCH:
        return "PATCH";
    case LWSHUMETH_DELETE:
        return "DELETE";
    case LWSHUMETH_HEAD:
        return "HEAD";
    default:
        return NULL;
    }
}

static cb_http_req_t *req_new(cb_http_t *h, struct lws *wsi)
{
    cb_http_req_t *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->http = h;
    req->wsi = wsi;
    atomic_init(&req->refs, 1);
    cb_buf_init(&req->args, 8192);
    cb_buf_init(&req->headers, HEADERS_MAX_BYTES);
    cb_buf_init(&req->body, (size_t) h->max_body);
    cb_buf_init(&req->resp_headers, RESP_HEADERS_MAX);
    cb_buf_init(&req->resp_body, SIZE_MAX / 2);
    req->file_fd = -1;
    clock_gettime(CLOCK_MONOTONIC, &req->start);
    cb_series_add(cb_metric_series(h->m_inflight, NULL), 1);
    return req;
}

/* LWS_CALLBACK_HTTP: a request line and headers have arrived. */
static int on_request(cb_http_t *h, struct lws *wsi, pss_t *pss)
{
    cb_http_req_t *req;
    char *uri = NULL, auth[1024], cl[32];
    int ulen = 0, m;
    const char *mname, *xrid;
    bool has_body;

    req = req_new(h, wsi);
    if (!req)
        return -1;
    pss->req = req;
    m = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    if (m == LWSHUMETH_COLON_PATH) {
        char cm[16];
        if (lws_hdr_copy(wsi, cm, sizeof(cm), WSI_TOKEN_HTTP_COLON_METHOD) > 0)
            snprintf(req->method, sizeof(req->method), "%.7s", cm);
    } else if ((mname = method_name(m)) != NULL) {
        snprintf(req->method, sizeof(req->method), "%s", mname);
    }
    req->head = strcmp(req->method, "HEAD") == 0;
    copy_headers(req, wsi);
    copy_args(req, wsi);
    if (!pss->peer[0])
        lws_get_peer_simple(wsi, pss->peer, sizeof(pss->peer));
    memcpy(req->peer, pss->peer, sizeof(req->peer));

    xrid = cb_http_req_header(req, "x-request-id");
    if (xrid && cb_jsonv_is_ident(xrid, REQUEST_ID_MAX))
        snprintf(req->id, sizeof(req->id), "%s", xrid);
    else
        new_request_id(req->id, sizeof(req->id));
    req->log_ids.request_id = req->id;

    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) > 0)
        req->role = cb_apikeys_authorize_id(h->keys, auth, req->key_id);
    memset(auth, 0, sizeof(auth));

    if (!req->method[0] || !uri || ulen <= 0 || ulen >= (int) sizeof(req->path)) {
        snprintf(req->path, sizeof(req->path), "%s", "-");
        req->close_after = true;
        cb_http_reply_error(req, 400, NULL, NULL, "malformed request line");
        return 0;
    }
    memcpy(req->path, uri, (size_t) ulen);
    req->path[ulen] = '\0';

    has_body = false;
    if (lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        char *end;
        long long n = strtoll(cl, &end, 10);
        if (*end || n < 0) {
            req->close_after = true;
            cb_http_reply_error(req, 400, NULL, NULL, "malformed content-length");
            return 0;
        }
        if (n > h->max_body) {
            req->close_after = true;
            cb_http_reply_error(req, 413, NULL, NULL,
                                "request body of %lld bytes is over the "
                                "limit of %lld",
                                n, (long long) h->max_body);
            return 0;
        }
        has_body = n > 0;
    } else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        has_body = true;
    }

    if (!resolve(req)) {
        /* an unread body would be parsed as the next request: close instead */
        if (has_body)
            req->close_after = true;
        return 0;
    }
    if (has_body) {
        req->waiting_body = true;
        return 0;
    }
    dispatch(req);
    return 0;
}

/* TCP_CORK on or off for the request's socket (plain HTTP/1.1 only). */
static void cork(cb_http_req_t *req, struct lws *wsi, bool on)
{
    int v = on;

    if (req->corked != on &&
        setsockopt((int) lws_get_socket_fd(wsi), IPPROTO_TCP, TCP_CORK, &v, sizeof(v)) == 0)
        req->corked = on;
}

/* sendfile() what the socket takes now; -1 on a broken connection. The
 * last of it uncorks the socket: headers and body leave in full packets. */
static int send_file(cb_http_req_t *req, struct lws *wsi)
{
    int sock = (int) lws_get_socket_fd(wsi);

    while (req->file_left) {
        ssize_t n = sendfile(sock, req->file_fd, &req->file_off, req->file_left);
        if (n > 0) {
            req->file_left -= (size_t) n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            /* 0: the file shrank under us; the length promised cannot be kept */
            return -1;
        }
    }
    cork(req, wsi, false);
    return 0;
}

/*
 * Content-Length written as text, so lws counts nothing against it: the
 * reply may go out in one send with its headers, by sendfile, or not at
 * all (HEAD, which still tells the length a GET would have).
 */
static int add_length_text(struct lws *wsi, size_t len, unsigned char **p, unsigned char *end)
{
    char cl[24];

    snprintf(cl, sizeof(cl), "%zu", len);
    return lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                        (const unsigned char *) cl, (int) strlen(cl), p, end);
}

/*
 * How a reply may reach the socket. An HTTP/2 stream (a child of the
 * connection's wsi: h2c upgrade, or ALPN over TLS) is framed by lws: no
 * bytes of ours go to the socket around it, one write per writable
 * callback, the peer's flow-control window respected, and no Connection
 * header. TLS takes no sendfile().
 */
static bool is_h2(struct lws *wsi)
{
    return lws_get_network_wsi(wsi) != wsi;
}

static bool raw_socket(struct lws *wsi)
{
    struct lws *net = lws_get_network_wsi(wsi);

    return net == wsi && !lws_is_ssl(net);
}

#define H2_DATA_MAX 16384 /* the frame size every HTTP/2 peer takes */
/* DATA frames of one stream per writable callback while the connection
 * takes them: a 100 KB segment in two callbacks rather than seven */
#define H2_FRAMES_PER_CALLBACK 4

/*
 * How much of a body may go in the next DATA frame of an HTTP/2 stream; 0:
 * wait for the peer's WINDOW_UPDATE. libwebsockets 4.1 counts the window
 * of a stream upgraded from h2c wrongly (zero or below from the start) and
 * sends regardless, so there a count not above zero is not believed; over
 * TLS (ALPN) and with prior knowledge (the vhost with a user) it is right,
 * and peers with a small window (h2load -w 16: 64 KB) depend on it.
 */
static size_t h2_room(struct lws *wsi)
{
    struct lws *net = lws_get_network_wsi(wsi);
    lws_fileofs_t allow = lws_get_peer_write_allowance(wsi);

    if (allow > 0)
        return (size_t) CB_MIN(allow, (lws_fileofs_t) H2_DATA_MAX);
    return lws_is_ssl(net) || lws_get_vhost_user(lws_get_vhost(net)) ? 0 : H2_DATA_MAX;
}

/* One write of a file body through lws: 0 when all is sent, 1 when more
 * follows on a writable callback (asked for), -1 on a broken connection or
 * a file that shrank. */
static int file_write(cb_http_req_t *req, struct lws *wsi, unsigned char *buf, size_t room)
{
    bool h2 = is_h2(wsi);
    int frames = h2 ? H2_FRAMES_PER_CALLBACK : 1;

    for (;;) {
        size_t want = CB_MIN(req->file_left, room);
        ssize_t n;

        if (h2) {
            want = CB_MIN(want, h2_room(wsi));
            if (want == 0) {
                lws_callback_on_writable(wsi);
                return 1;
            }
        }
        do
            n = pread(req->file_fd, buf, want, req->file_off);
        while (n < 0 && errno == EINTR);
        if (n <= 0)
            return -1;
        if (lws_write(wsi, buf, (size_t) n,
                      (size_t) n == req->file_left ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != n)
            return -1;
        req->file_off += n;
        req->file_left -= (size_t) n;
        if (!req->file_left)
            break;
        if (--frames == 0 || lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            return 1;
        }
    }
    return 0;
}

/* More of a file body: 0 when all is sent, 1 when the socket wants a
 * writable callback first (asked for), -1 on a broken connection. */
static int file_progress(cb_http_req_t *req, struct lws *wsi, unsigned char *buf, size_t room)
{
    if (req->file_left && !raw_socket(wsi))
        return file_write(req, wsi, buf, room);
    if (req->file_left && lws_partial_buffered(wsi)) {
        lws_callback_on_writable(wsi);
        return 1;
    }
    if (send_file(req, wsi) < 0)
        return -1;
    if (req->file_left) {
        lws_callback_on_writable(wsi);
        return 1;
    }
    return 0;
}

void cb_http_date(int64_t ms, char out[CB_HTTP_DATE_LEN])
{
    time_t t = (time_t) (ms / 1000);
    struct tm tm;

    static const char days[] = "SunMonTueWedThuFriSat",
                      months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char *p = out;

    /* "%a, %d %b %Y %H:%M:%S GMT" by hand: strftime() is costly per request */
    gmtime_r(&t, &tm);
    if (tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        strftime(out, CB_HTTP_DATE_LEN, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        return;
    }
    memcpy(p, days + 3 * tm.tm_wday, 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    *p++ = (char) ('0' + tm.tm_mday / 10);
    *p++ = (char) ('0' + tm.tm_mday % 10);
    *p++ = ' ';
    memcpy(p, months + 3 * tm.tm_mon, 3);
    p += 3;
    *p++ = ' ';
    for (int y = tm.tm_year + 1900, d = 1000; d; d /= 10)
        *p++ = (char) ('0' + y / d % 10);
    for (int i = 0, v[3] = { tm.tm_hour, tm.tm_min, tm.tm_sec }; i < 3; i++) {
        *p++ = i ? ':' : ' ';
        *p++ = (char) ('0' + v[i] / 10);
        *p++ = (char) ('0' + v[i] % 10);
    }
    memcpy(p, " GMT", 5);
}

/* More of an in-memory body: 0 when all is sent, 1 when more follows on a
 * writable callback (asked for), -1 on a broken connection. */
static int body_progress(cb_http_req_t *req, struct lws *wsi, unsigned char *buf, bool h2)
{
    size_t remaining = req->resp_body.len - req->body_sent;
    int n = (int) CB_MIN(remaining, h2 ? h2_room(wsi) : (size_t) WRITE_CHUNK);

    if (n == 0) {
        lws_callback_on_writable(wsi);
        return 1;
    }
    memcpy(buf, req->resp_body.data + req->body_sent, (size_t) n);
    if (lws_write(wsi, buf, (size_t) n,
                  (size_t) n == remaining ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != n)
        return -1;
    req->body_sent += (size_t) n;
    if (req->body_sent < req->resp_body.len) {
        lws_callback_on_writable(wsi);
        return 1;
    }
    return 0;
}

/* An HTTP/2 connection corked until the end of this pass of the loop. */
static void h2_cork(cb_http_t *h, struct lws *wsi)
{
    int fd = (int) lws_get_socket_fd(lws_get_network_wsi(wsi)), on = 1;
    size_t i;

    for (i = 0; i < h->ncorked; i++)
        if (h->corked[i] == fd)
            return;
    if (fd >= 0 && h->ncorked < sizeof(h->corked) / sizeof(h->corked[0]) &&
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) == 0)
        h->corked[h->ncorked++] = fd;
}

/* Write the response: headers on the first call, then the body in chunks. */
static int on_writeable(cb_http_t *h, struct lws *wsi, pss_t *pss)
{
    cb_http_req_t *req = pss->req;
    unsigned char *start = h->wbuf + LWS_PRE, *p = start, *end = h->wbuf + WRITE_BUF_SIZE - 1;
    size_t pos = 0;
    bool h2 = is_h2(wsi);
    int n;

    if (!req || !atomic_load(&req->replied))
        return 0;
    if (h2)
        h2_cork(h, wsi);
    if (req->ended) {
        /* see below: wait for the connection to take what lws holds of the stream */
        if (lws_partial_buffered(lws_get_network_wsi(wsi))) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (!req->headers_sent) {
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec != h->date_sec) {
            h->date_sec = now.tv_sec;
            cb_http_date((int64_t) now.tv_sec * 1000, h->date);
        }
        if (lws_add_http_header_status(wsi, (unsigned int) req->status, &p, end) ||
            lws_add_http_header_by_name(
                wsi, (const unsigned char *) "server:", (const unsigned char *) h->server,
                (int) strlen(h->server), &p, end) ||
            lws_add_http_header_by_name(
                wsi, (const unsigned char *) "date:", (const unsigned char *) h->date,
                (int) strlen(h->date), &p, end) ||
            lws_add_http_header_by_name(
                wsi, (const unsigned char *) "x-request-id:", (const unsigned char *) req->id,
                (int) strlen(req->id), &p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                         (const unsigned char *) req->content_type,
                                         (int) strlen(req->content_type), &p, end))
            return -1;
        while (req->resp_headers.data && pos < req->resp_headers.len) {
            char name[136];
            const char *k = req->resp_headers.data + pos;
            size_t klen = strlen(k);
            const char *v = k + klen + 1;
            if (klen + 2 > sizeof(name))
                return -1;
            memcpy(name, k, klen); /* lws wants "name:" */
            memcpy(name + klen, ":", 2);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *) name,
                                            (const unsigned char *) v, (int) strlen(v), &p, end))
                return -1;
            pos = (size_t) (v - req->resp_headers.data) + strlen(v) + 1;
        }
        if (req->close_after && !h2 &&
            lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *) "close",
                                         5, &p, end))
            return -1;
        if (req->file_fd >= 0 || req->head) {
            /* the headers through lws; a file's body then straight to the socket,
             * corked so that the headers do not leave in a packet of their own */
            if (req->file_fd >= 0 && !req->head && req->file_left && raw_socket(wsi))
                cork(req, wsi, true);
            if (add_length_text(wsi, req->file_fd >= 0 ? req->file_len : req->resp_body.len, &p,
                                end) ||
                lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
            req->headers_sent = true;
            if (req->head)
                req->file_left = 0;
            if (h2) {
                /* the body's first frames now when the connection takes them;
                 * the end of an empty stream on the next callback */
                req->body_sent = req->resp_body.len;
                if (req->file_fd < 0 || !req->file_left || lws_send_pipe_choked(wsi)) {
                    lws_callback_on_writable(wsi);
                    return 0;
                }
            }
            if (req->file_fd >= 0 && (n = file_progress(req, wsi, start, WRITE_CHUNK)) != 0)
                return n < 0 ? -1 : 0;
        } else if (!h2 && req->resp_body.len && req->resp_body.len + 64 < (size_t) (end - p)) {
            /* headers and body in one send */
            int hlen;
            if (add_length_text(wsi, req->resp_body.len, &p, end) ||
                lws_finalize_http_header(wsi, &p, end))
                return -1;
            memcpy(p, req->resp_body.data, req->resp_body.len);
            hlen = (int) (p - start);
            n = hlen + (int) req->resp_body.len;
            if (lws_write(wsi, start, (size_t) n, LWS_WRITE_HTTP_FINAL) != n)
                return -1;
            req->headers_sent = true;
            req->body_sent = req->resp_body.len;
        } else {
            if (lws_add_http_header_content_length(wsi, req->resp_body.len, &p, end))
                return -1;
            if (lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
            req->headers_sent = true;
            /* HTTP/2: the body's first frame in the same callback while the
             * connection takes it (a playlist: HEADERS and DATA in one pass of
             * the loop, not a poll() each) */
            if (!h2 ? req->resp_body.len > 0 : !req->resp_body.len || lws_send_pipe_choked(wsi)) {
                lws_callback_on_writable(wsi);
                return 0;
            }
            if (h2 && (n = body_progress(req, wsi, start, true)) != 0)
                return n < 0 ? -1 : 0;
        }
    } else if (req->file_fd >= 0 && (req->file_left || !h2)) {
        if ((n = file_progress(req, wsi, start, WRITE_CHUNK)) != 0)
            return n < 0 ? -1 : 0;
    } else if (h2 && req->body_sent == req->resp_body.len) {
        /* HTTP/2: an empty body still ends the stream */
        if (lws_write(wsi, start, 0, LWS_WRITE_HTTP_FINAL) != 0)
            return -1;
    } else if ((n = body_progress(req, wsi, start, h2)) != 0) {
        return n < 0 ? -1 : 0;
    }

    /*
     * HTTP/2: the last frame may be held by lws on the connection when the
     * socket took only part of it, and lws 4.1 flushes that only while a
     * stream still asks to write. Ask until it is out, then complete.
     */
    if (h2 && !req->ended) {
        req->ended = true;
        if (lws_partial_buffered(lws_get_network_wsi(wsi))) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    }

    /* complete: account, log, and get ready for the next request on this connection */
    {
        char code[8];
        const char *route = req->route ? req->route->r.pattern : "unmatched";
        double secs = elapsed_s(&req->start);
        bool close = req->close_after;

        snprintf(code, sizeof(code), "%d", req->status);
        cb_metric_add(h->m_requests, (const char *[]){ req->method, route, code }, 1);
        if (req->route)
            cb_series_observe(req->route->hist, secs);
        CB_LOG(req->quiet && req->status < 400 ? CB_LOG_DEBUG : CB_LOG_INFO, &req->log_ids,
               "http %s %s %d %zuB %.1fms peer %s role %s", req->method, req->path, req->status,
               req->file_fd >= 0 ? req->file_len : req->resp_body.len, secs * 1000, req->peer,
               cb_role_name(req->role));
        req->wsi = NULL;
        pss->req = NULL;
        req_unref(req);
        if (h2) {
            /* the stream is over (its last frame is out): closing it frees what
             * lws holds for it; the connection and its other streams go on */
            return lws_http_transaction_completed(wsi) ? -1 : 0;
        }
        if (close)
            return -1;
        if (lws_http_transaction_completed(wsi))
            return -1;
    }
    return 0;
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    cb_http_t *h = ctx ? lws_context_user(ctx) : NULL;
    pss_t *pss = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (pss->req) { /* a previous transaction never completed: drop it */
            pss->req->wsi = NULL;
            req_unref(pss->req);
            pss->req = NULL;
        }
        return on_request(h, wsi, pss);
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->req && pss->req->waiting_body && cb_buf_append(&pss->req->body, in, len)) {
            /*
             * Over the limit without a Content-Length (chunked): answer now
             * and close, instead of reading an endless body to its end.
             */
            pss->req->waiting_body = false;
            pss->req->close_after = true;
            cb_http_reply_error(pss->req, 413, NULL, NULL,
                                "request body over the limit of %lld bytes",
                                (long long) h->max_body);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!pss->req || !pss->req->waiting_body)
            return 0;
        pss->req->waiting_body = false;
        dispatch(pss->req);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return on_writeable(h, wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && pss->req) {
            pss->req->wsi = NULL;
            req_unref(pss->req);
            pss->req = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (h)
            process_wakeups(h);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void lws_log_emit(int level, const char *line)
{
    size_t n = strlen(line);

    while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
        n--;
    if (level & LLL_ERR)
        cb_log_error("lws: %.*s", (int) n, line);
    else
        cb_log_warn("lws: %.*s", (int) n, line);
}

/* ---- lifecycle ---- */

int cb_http_new(const char *daemon, const cb_http_config_t *cfg, cb_metrics_t *metrics,
                cb_http_t **out, char *err, size_t errlen)
{
    cb_http_t *h = calloc(1, sizeof(*h));
    int rc;

    if (!h)
        return -ENOMEM;
    snprintf(h->daemon, sizeof(h->daemon), "%s", daemon);
    snprintf(h->server, sizeof(h->server), "castbus-%s", daemon);
    snprintf(h->host, sizeof(h->host), "%s", cfg->host && *cfg->host ? cfg->host : "0.0.0.0");
    h->port = (int) cfg->port;
    h->no_listen = cfg->no_listen;
    h->max_body = cfg->max_body_bytes;
    h->nworkers = (size_t) (cfg->workers > 0 ? cfg->workers : 1);
    pthread_mutex_init(&h->lock, NULL);
    h->wbuf = malloc(WRITE_BUF_SIZE);
    if (!h->wbuf) {
        cb_http_free(h);
        return -ENOMEM;
    }
    rc = cb_apikeys_parse(cfg->api_keys, &h->keys, err, errlen);
    if (rc) {
        cb_http_free(h);
        return rc;
    }
    if (cfg->tls_cert && cfg->tls_cert[0] && cfg->tls_key && cfg->tls_key[0]) {
        if (strlen(cfg->tls_cert) >= sizeof(h->tls_cert) ||
            strlen(cfg->tls_key) >= sizeof(h->tls_key)) {
            snprintf(err, errlen, "http: TLS certificate or key path too long");
            cb_http_free(h);
            return -EINVAL;
        }
        snprintf(h->tls_cert, sizeof(h->tls_cert), "%s", cfg->tls_cert);
        snprintf(h->tls_key, sizeof(h->tls_key), "%s", cfg->tls_key);
    }
    h->m_requests = cb_metrics_counter(metrics, "castbus_http_requests_total",
                                       "HTTP requests answered, by method, route and status.",
                                       (const char *[]){ "method", "route", "code", NULL });
    h->m_duration = cb_metrics_histogram(
        metrics, "castbus_http_request_duration_seconds",
        "Time from request headers to the last byte of the response, by route.",
        (const char *[]){ "method", "route", NULL }, cb_metrics_latency_buckets,
        cb_metrics_latency_nbuckets);
    h->m_inflight = cb_metrics_gauge(metrics, "castbus_http_requests_in_flight",
                                     "HTTP requests received and not yet answered.", NULL);
    h->m_rejected = cb_metrics_counter(metrics, "castbus_http_rejected_total",
                                       "HTTP requests shed before a handler ran, by reason.",
                                       (const char *[]){ "reason", NULL });
    if (!h->m_requests || !h->m_duration || !h->m_inflight || !h->m_rejected) {
        cb_http_free(h);
        return -ENOMEM;
    }
    *out = h;
    return 0;
}

int cb_http_add_routes(cb_http_t *h, const cb_http_route_t *routes, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        route_entry_t *e;

        if (h->nroutes >= MAX_ROUTES)
            return -ENOSPC;
        e = &h->routes[h->nroutes++];
        e->r = routes[i];
        e->hist = cb_metric_series(h->m_duration,
                                   (const char *[]){ routes[i].method, routes[i].pattern });
    }
    return 0;
}

int cb_http_start(cb_http_t *h, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    int rc;

    rc = cb_workq_new("http-worker", h->nworkers, WORK_QUEUE_MAX, &h->workers);
    if (rc) {
        snprintf(err, errlen, "http: cannot start worker threads: %s", strerror(-rc));
        return rc;
    }
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    h->protocols[0] = (struct lws_protocols){
        .name = "http",
        .callback = http_callback,
        .per_session_data_size = sizeof(pss_t),
        .rx_buffer_size = 0,
        /* lws would cut each write into 4 KB sends, a poll apiece */
        .tx_packet_size = WRITE_CHUNK,
    };
    h->protocols[1] = (struct lws_protocols){ NULL, NULL, 0, 0, 0, NULL, 0 };

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.user = h;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.count_threads = 1;
    info.max_http_header_data = 4096;
    info.timeout_secs = 30;
    info.keepalive_timeout = 30;
    h->ctx = lws_create_context(&info);
    if (!h->ctx) {
        snprintf(err, errlen, "http: cannot create the libwebsockets context");
        return -ENOMEM;
    }

    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.port = h->no_listen ? CONTEXT_PORT_NO_LISTEN_SERVER : h->port;
    info.iface = h->host;
    info.protocols = h->protocols;
    info.vhost_name = h->daemon;
    info.server_string = "castbus";
    if (h->tls_cert[0]) {
        /* lws offers h2 and http/1.1 by ALPN */
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = h->tls_cert;
        info.ssl_private_key_filepath = h->tls_key;
    }
    h->vh = lws_create_vhost(h->ctx, &info);
    if (!h->vh) {
        snprintf(err, errlen, "http: cannot listen on %s:%d (address in use or not available)",
                 h->host, h->port);
        return -EADDRINUSE;
    }
    if (!h->no_listen)
        h->port = lws_get_vhost_listen_port(h->vh);
    if (h->no_listen && !h->tls_cert[0]) {
        /* connections the owner saw open with the HTTP/2 preface */
        snprintf(h->vh_h2_name, sizeof(h->vh_h2_name), "%s-h2", h->daemon);
        info.vhost_name = h->vh_h2_name;
        info.user = h; /* marks it for h2_room() */
        info.options |= LWS_SERVER_OPTION_H2_PRIOR_KNOWLEDGE;
        h->vh_h2 = lws_create_vhost(h->ctx, &info);
        if (!h->vh_h2) {
            snprintf(err, errlen, "http: cannot create the HTTP/2 prior-knowledge vhost");
            return -ENOMEM;
        }
    }
    return 0;
}

int cb_http_port(const cb_http_t *h)
{
    return h->port;
}

int cb_http_run(cb_http_t *h)
{
    h->loop_thread = pthread_self();
    h->running = true;
    while (!atomic_load(&h->stopping)) {
        int rc = lws_service(h->ctx, 0), off = 0;

        while (h->ncorked) /* what the pass wrote leaves together */
            setsockopt(h->corked[--h->ncorked], IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
        if (rc < 0)
            break;
    }
    h->running = false;
    return 0;
}

void cb_http_stop(cb_http_t *h)
{
    atomic_store(&h->stopping, true);
    if (h->ctx)
        lws_cancel_service(h->ctx);
}

void cb_http_free(cb_http_t *h)
{
    cb_http_req_t *req;

    if (!h)
        return;
    atomic_store(&h->stopping, true);
    /* workers may still answer: their replies land on the ready list */
    cb_workq_free(h->workers);
    if (h->ctx)
        lws_context_destroy(h->ctx);
    h->ctx = NULL;
    while ((req = h->ready_head) != NULL) {
        h->ready_head = req->next_ready;
        req_unref(req);
    }
    cb_apikeys_free(h->keys);
    pthread_mutex_destroy(&h->lock);
    free(h->wbuf);
    free(h);
}

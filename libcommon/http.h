/*
 * http.h - the REST/admin HTTP server of every daemon, on libwebsockets.
 *
 * Routes are a table of method + path pattern ("/v1/streams/{id}") + the
 * least role allowed + handler. The server answers by itself what no
 * handler needs to see: 404 for unknown paths, 405 (with Allow) for a known
 * path and another method, 401 without a valid API key, 403 when the key's
 * role is too low, 413 for bodies over the limit, 503 when the worker queue
 * is full. Errors are JSON:
 *   {"error":{"code":"invalid_field","message":"field 'name': required",
 *             "field":"name","request_id":"..."}}
 * Every response carries X-Request-Id (taken from the request when it has a
 * sane one, generated otherwise), and one access-log line is written per
 * request (health, readiness and metrics probes at debug level).
 *
 * Threads: one loop thread runs cb_http_run() and owns all connections.
 * A handler runs on the loop thread unless its route is CB_HTTP_BLOCKING,
 * in which case it runs on a worker thread of the server's pool (it may
 * call libpq and other blocking APIs there). A handler may also answer
 * later, from any thread, by returning CB_HTTP_DEFERRED and calling one of
 * the cb_http_reply*() functions once. The request stays valid until the
 * reply is given, even if the client has gone.
 *
 * Protocols: HTTP/1.1, and HTTP/2 after an h2c upgrade; with tls_cert and
 * tls_key, TLS with h2 or http/1.1 by ALPN. On plain HTTP/1.1 a reply goes
 * out in one send with its headers when small, and a file by sendfile();
 * an HTTP/2 stream is framed by libwebsockets (DATA frames of at most
 * 16 KB, the peer's window respected), and TLS reads files into writes.
 */
#ifndef CB_HTTP_H
#define CB_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apikey.h"
#include "config.h"
#include "defs.h"
#include "jsonv.h"
#include "metrics.h"

typedef struct cb_http cb_http_t;
typedef struct cb_http_req cb_http_req_t;

/* Server settings; a daemon adds cb_http_config_keys to its config. */
typedef struct cb_http_config {
    char *host;             /* bind address, "0.0.0.0" */
    int64_t port;           /* admin/REST port */
    int64_t max_body_bytes; /* largest request body accepted */
    int64_t workers;        /* threads for CB_HTTP_BLOCKING routes */
    char *api_keys;         /* "role:key,..." */
    bool no_listen;         /* not a config key: listen nowhere, serve only the
                             * connections handed over with cb_http_adopt() */
    const char *tls_cert;   /* not config keys: PEM files; both set: TLS, and HTTP/2 */
    const char *tls_key;    /* by ALPN (plain connections may upgrade with h2c) */
} cb_http_config_t;

extern const cb_config_key_t cb_http_config_keys[];

/* Handler results. */
#define CB_HTTP_DONE     0 /* a reply was given */
#define CB_HTTP_DEFERRED 1 /* a reply will be given later, from any thread */

typedef int (*cb_http_handler_fn)(cb_http_req_t *req, void *arg);

#define CB_HTTP_BLOCKING 0x1u /* run the handler on a worker thread */
#define CB_HTTP_QUIET    0x2u /* log access at debug level (probes, scrapes) */

typedef struct cb_http_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/v1/streams/{id}" */
    cb_role_t role;      /* least role allowed; CB_ROLE_NONE: no key needed */
    unsigned flags;      /* CB_HTTP_* */
    cb_http_handler_fn handler;
    void *arg;
} cb_http_route_t;

/*
 * Create a server (not listening yet). `daemon` names it in the Server
 * header; metrics is borrowed. Errors: -EINVAL (bad API keys; err says
 * which entry), -ENOMEM.
 */
int cb_http_new(const char *daemon, const cb_http_config_t *cfg, cb_metrics_t *metrics,
                cb_http_t **out, char *err, size_t errlen);

/* Add routes (copied). Call before cb_http_start(). */
int cb_http_add_routes(cb_http_t *h, const cb_http_route_t *routes, size_t n);

/* Bind and listen. -EADDRINUSE etc. with err naming host:port. */
int cb_http_start(cb_http_t *h, char *err, size_t errlen);

/* The port actually bound (useful when configured as 0). */
int cb_http_port(const cb_http_t *h);

/* Serve on the calling thread until cb_http_stop(). */
int cb_http_run(cb_http_t *h);

/*
 * Serve an accepted connection (a server made with no_listen): the socket
 * is handed to the loop thread, which owns it from then on; on failure it
 * is closed. Any thread. 0, -ESHUTDOWN, -EAGAIN (queue full), -ENOMEM.
 */
int cb_http_adopt(cb_http_t *h, int fd);

/*
 * The same for a plain connection that opened with the HTTP/2 client
 * preface (prior knowledge, RFC 9113 3.3): it is served as HTTP/2 from its
 * first byte. -ENOTSUP on a server with TLS (HTTP/2 comes by ALPN there).
 */
int cb_http_adopt_h2(cb_http_t *h, int fd);

/*
 * What the first bytes of a plain connection say, without consuming them:
 * CB_HTTP_SNIFF_H2 (the HTTP/2 preface, "PRI * HTTP/2.0..."; no HTTP/1
 * method is PRI), CB_HTTP_SNIFF_H1 (anything else) or CB_HTTP_SNIFF_MORE (too
 * few bytes to tell). Decided by the first 4 bytes at most.
 */
#define CB_HTTP_SNIFF_MORE 0
#define CB_HTTP_SNIFF_H1   1
#define CB_HTTP_SNIFF_H2   2
int cb_http_sniff(const void *buf, size_t len);

/* Make cb_http_run() return soon. Any thread. */
void cb_http_stop(cb_http_t *h);

/*
 * Run fn(arg) on the loop thread. Any thread. Returns -EAGAIN when the
 * bounded post queue is full, -ESHUTDOWN once stopped.
 */
int cb_http_post(cb_http_t *h, void (*fn)(void *arg), void *arg);

/* Stop (if running), finish worker jobs, close connections, free. Main thread. */
void cb_http_free(cb_http_t *h);

/* ---- request (valid inside the handler, or until the reply when deferred) ---- */

const char *cb_http_req_method(const cb_http_req_t *req);
const char *cb_http_req_path(const cb_http_req_t *req);
/* A "{name}" captured by the route pattern, or NULL. */
const char *cb_http_req_param(const cb_http_req_t *req, const char *name);
/* Decode query parameter `name` into dst; returns length, -ENOENT, -EINVAL. */
int cb_http_req_query(const cb_http_req_t *req, const char *name, char *dst, size_t dstlen);
/*
 * An integer query parameter from min to max into *out, left alone when
 * absent (-ENOENT). Anything else gets the 400 naming the parameter here,
 * and -EINVAL: the handler just returns CB_HTTP_DONE.
 */
int cb_http_req_query_int(cb_http_req_t *req, const char *name, int64_t min, int64_t max,
                          int64_t *out);
/* A request header by lower-case name ("content-type"), or NULL. */
const char *cb_http_req_header(const cb_http_req_t *req, const char *name);
const char *cb_http_req_body(const cb_http_req_t *req, size_t *len);
const char *cb_http_req_id(const cb_http_req_t *req);
const char *cb_http_req_peer(const cb_http_req_t *req);
cb_role_t cb_http_req_role(const cb_http_req_t *req);
/* The API key presented, named without giving it away (see cb_apikeys_authorize_id); "" if none. */
const char *cb_http_req_key_id(const cb_http_req_t *req);

/*
 * Decode the JSON body against a field table into dst. On failure replies
 * 400 (naming the field) or 415 itself and returns -EINVAL: the handler
 * just returns CB_HTTP_DONE. Either way dst must be cb_jsonv_release()d.
 */
int cb_http_req_json(cb_http_req_t *req, const cb_jsonv_field_t *fields, void *dst);

/* ---- replies: exactly one per request; any thread ---- */

/* An HTTP date (RFC 9110 IMF-fixdate) of a time in Unix ms: Last-Modified, Date. */
#define CB_HTTP_DATE_LEN 32
void cb_http_date(int64_t ms, char out[CB_HTTP_DATE_LEN]);

/* Extra response header; call before the reply. Copied. Every reply
 * carries Date, Server and X-Request-Id already. */
int cb_http_add_header(cb_http_req_t *req, const char *name, const char *value);

/* body is copied. */
int cb_http_reply(cb_http_req_t *req, int status, const char *content_type, const void *body,
                  size_t len);
/* Takes body's bytes (no copy); body is left empty, to release as usual. */
int cb_http_reply_buf(cb_http_req_t *req, int status, const char *content_type, cb_buf_t *body);
/*
 * Send len bytes of an open file from offset (sendfile: no copy); takes the
 * fd, closed when done. The file must not shrink meanwhile (segments and
 * manifests are replaced by rename, never truncated).
 */
int cb_http_reply_file(cb_http_req_t *req, int status, const char *content_type, int fd,
                       uint64_t offset, uint64_t len);
/* Takes the reference to body. */
int cb_http_reply_json(cb_http_req_t *req, int status, json_t *body);
int cb_http_reply_error(cb_http_req_t *req, int status, const char *code, const char *field,
                        const char *fmt, ...) CB_PRINTF(5, 6);

#endif /* CB_HTTP_H */

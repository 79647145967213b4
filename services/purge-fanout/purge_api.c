/*
 * purge_api.c - REST: purges and the edge inventory.
 */
#include "purge_api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"

#define IDEM_MAX 128

/* ---- POST /v1/purges ---- */

typedef struct purge_body {
    char **urls;
    size_t urls_count;
    char **prefixes;
    size_t prefixes_count;
    char **tags;
    size_t tags_count;
    bool all;
    bool soft;
    char *group;
    char *reason;
    char *idempotency_key;
} purge_body_t;

#define LIST_FIELD(n)                                                                              \
    {                                                                                              \
        .name = #n, .type = CB_JSONV_ARRAY, .offset = offsetof(purge_body_t, n), .max = 256,       \
        .elem_type = CB_JSONV_STRING, .elem_size = sizeof(char *),                                 \
        .count_offset = offsetof(purge_body_t, n##_count)                                          \
    }

static const cb_jsonv_field_t purge_body_fields[] = {
    LIST_FIELD(urls),
    LIST_FIELD(prefixes),
    LIST_FIELD(tags),
    { .name = "all", .type = CB_JSONV_BOOL, .offset = offsetof(purge_body_t, all) },
    /* the default: mark stale, revalidate, serve stale while the origin is down */
    { .name = "soft", .type = CB_JSONV_BOOL, .offset = offsetof(purge_body_t, soft), .def = 1 },
    { .name = "group",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_IDENT,
      .offset = offsetof(purge_body_t, group),
      .max = PF_EDGE_NAME_MAX },
    { .name = "reason",
      .type = CB_JSONV_STRING,
      .offset = offsetof(purge_body_t, reason),
      .max = 512 },
    { .name = "idempotency_key",
      .type = CB_JSONV_STRING,
      .offset = offsetof(purge_body_t, idempotency_key),
      .min = 1,
      .max = IDEM_MAX },
    { 0 },
};

/* Who is asking, without their secret: the key's name, "anonymous" without one. */
static void caller_id(cb_http_req_t *req, char out[CB_APIKEY_ID_LEN + 1])
{
    const char *id = cb_http_req_key_id(req);

    snprintf(out, CB_APIKEY_ID_LEN + 1, "%s", id[0] ? id : "anonymous");
}

/* 0 to go on; 1 when over the limit (answered 429). Redis down: let it through. */
static int rate_limited(pf_api_t *a, cb_http_req_t *req, const char *caller)
{
    char err[256];
    long long n = 0;
    int64_t now = cb_clock_wall_ms();

    if (a->rate_limit <= 0)
        return 0;
    if (cb_redis_exec(a->redis, &n, err, sizeof(err), "INCR castbus:purge:rate:%s:%lld", caller,
                      (long long) (now / 1000)))
        return 0;
    if (n == 1)
        cb_redis_exec(a->redis, NULL, err, sizeof(err), "EXPIRE castbus:purge:rate:%s:%lld 2",
                      caller, (long long) (now / 1000));
    if (n <= a->rate_limit)
        return 0;
    cb_metric_add(a->m_limited, NULL, 1);
    cb_http_add_header(req, "Retry-After", "1");
    cb_http_reply_error(req, 429, "rate_limited", NULL,
                        "more than %" PRId64 " purge requests in a second with this API key; "
                        "retry after 1 s, or batch URLs (256 per request)",
                        a->rate_limit);
    return 1;
}

static int post_purge(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    purge_body_t b;
    char field[64], why[256], caller[17], by[64], id[40], idem[IDEM_MAX + 24];
    uint32_t rnd = 0;
    size_t nedges = 0;
    json_t *job = NULL;
    bool replayed = false;
    int rc;

    if (cb_http_req_json(req, purge_body_fields, &b)) {
        cb_jsonv_release(purge_body_fields, &b);
        return CB_HTTP_DONE;
    }
    snprintf(id, sizeof(id), "pf-%011" PRIx64, (uint64_t) cb_clock_wall_ms());
    if (getrandom(&rnd, sizeof(rnd), 0) == (ssize_t) sizeof(rnd))
        snprintf(id + strlen(id), sizeof(id) - strlen(id), "-%08" PRIx32, rnd);
    caller_id(req, caller);
    snprintf(by, sizeof(by), "api:%s:%s", cb_role_name(cb_http_req_role(req)), caller);
    cb_proto_purge_request_t m = {
        .id = id,
        .urls = b.urls,
        .urls_count = b.urls_count,
        .prefixes = b.prefixes,
        .prefixes_count = b.prefixes_count,
        .tags = b.tags,
        .tags_count = b.tags_count,
        .all = b.all,
        .soft = b.soft,
        .group = b.group,
        .requested_by = by,
        .requested_at_ms = cb_clock_wall_ms(),
        .reason = b.reason,
    };
    if (pf_plan_check(&m, field, sizeof(field), why, sizeof(why))) {
        rc = cb_http_reply_error(req, 400, "invalid_field", field, "%s", why);
        goto out;
    }
    if (b.all && cb_http_req_role(req) < CB_ROLE_ADMIN) {
        rc = cb_http_reply_error(req, 403, "forbidden", "all",
                                 "purging everything needs the admin role");
        goto out;
    }
    if (b.idempotency_key) {
        for (const char *c = b.idempotency_key; *c; c++) {
            if ((unsigned char) *c <= 0x20 || *c == 0x7f) {
                rc = cb_http_reply_error(req, 400, "invalid_field", "idempotency_key",
                                         "blanks and control bytes are not allowed");
                goto out;
            }
        }
        snprintf(idem, sizeof(idem), "%s:%s", caller, b.idempotency_key);
    }
    if (rate_limited(a, req, caller)) {
        rc = CB_HTTP_DONE;
        goto out;
    }
    rc = pf_edges_count(a->edges, b.group, &nedges);
    if (rc) {
        rc = cb_http_reply_error(req, 503, "unavailable", NULL, "edge inventory unavailable");
        goto out;
    }
    rc = pf_jobs_submit(a->jobs, &m, (int64_t) nedges, b.idempotency_key ? idem : NULL, &job,
                        &replayed, why, sizeof(why));
    if (rc) {
        cb_log_warn("purge not accepted: %s", why);
        rc = cb_http_reply_error(req, 503, "unavailable", NULL, "purge not accepted: %s", why);
        goto out;
    }
    {
        const char *jid = json_string_value(json_object_get(job, "id"));
        char loc[96];
        snprintf(loc, sizeof(loc), "/v1/purges/%s", jid ? jid : id);
        cb_http_add_header(req, "Location", loc);
        if (!replayed)
            cb_log_info("purge job '%s' accepted from %s: %zu edges", id, by, nedges);
        rc = cb_http_reply_json(req, 202,
                                json_pack("{s:O, s:O, s:O, s:b}", "id", json_object_get(job, "id"),
                                          "status", json_object_get(job, "status"), "edges",
                                          json_object_get(job, "edges"), "replayed", replayed));
    }
out:
    json_decref(job);
    cb_jsonv_release(purge_body_fields, &b);
    return rc;
}

/* ---- GET /v1/purges ---- */

static int get_purge(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    const char *id = cb_http_req_param(req, "id");
    json_t *doc;
    int rc;

    if (!cb_jsonv_is_ident(id, 64))
        return cb_http_reply_error(req, 404, "not_found", "id", "no purge job '%s'", id);
    doc = pf_jobs_get(a->jobs, id, &rc);
    if (!doc && rc == -ENOENT)
        return cb_http_reply_error(req, 404, "not_found", "id", "no purge job '%s'", id);
    if (!doc)
        return cb_http_reply_error(req, 503, "unavailable", NULL, "job records unavailable");
    return cb_http_reply_json(req, 200, doc);
}

static int list_purges(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    char status[16];
    int st = -1, rc;
    int64_t limit = 50;
    json_t *out;

    rc = cb_http_req_query(req, "status", status, sizeof(status));
    if (rc >= 0) {
        st = pf_name_index(pf_status_names, status);
        if (st < 0)
            return cb_http_reply_error(req, 400, "invalid_field", "status",
                                       "status must be pending, done, partial or failed");
    } else if (rc != -ENOENT) {
        return cb_http_reply_error(req, 400, "invalid_field", "status", "malformed status");
    }
    if (cb_http_req_query_int(req, "limit", 1, 500, &limit) == -EINVAL)
        return CB_HTTP_DONE;
    out = pf_jobs_list(a->jobs, st, (size_t) limit, &rc);
    if (!out)
        return cb_http_reply_error(req, 503, "unavailable", NULL, "job records unavailable");
    return cb_http_reply_json(req, 200, out);
}

/* ---- /v1/edges ---- */

typedef struct edge_body {
    char *name;
    char *url;
    int kind;
    char *group;
} edge_body_t;

static const cb_jsonv_field_t edge_body_fields[] = {
    { .name = "name",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED | CB_JSONV_IDENT,
      .offset = offsetof(edge_body_t, name),
      .max = PF_EDGE_NAME_MAX },
    { .name = "url",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(edge_body_t, url),
      .max = PF_EDGE_URL_MAX },
    { .name = "kind",
      .type = CB_JSONV_ENUM,
      .offset = offsetof(edge_body_t, kind),
      .enum_values = pf_edge_kind_names },
    { .name = "group",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_IDENT,
      .offset = offsetof(edge_body_t, group),
      .max = PF_EDGE_NAME_MAX },
    { 0 },
};

static int edges_error(cb_http_req_t *req, int rc, const char *name)
{
    if (rc == -ENOENT && name)
        return cb_http_reply_error(req, 404, "not_found", "name", "no edge '%s'", name);
    return cb_http_reply_error(req, 503, "unavailable", NULL, "edge inventory unavailable");
}

static int list_edges(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    int rc;
    json_t *out = pf_edges_json(a->edges, NULL, &rc);

    return out ? cb_http_reply_json(req, 200, out) : edges_error(req, rc, NULL);
}

static int get_edge(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    const char *name = cb_http_req_param(req, "name");
    int rc;
    json_t *out = pf_edges_json(a->edges, name, &rc);

    return out ? cb_http_reply_json(req, 200, out) : edges_error(req, rc, name);
}

static int post_edge(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    edge_body_t b;
    pf_edge_t d = { .source = PF_EDGE_API };
    char why[256];
    bool created = false;
    json_t *out;
    int rc;

    if (cb_http_req_json(req, edge_body_fields, &b)) {
        cb_jsonv_release(edge_body_fields, &b);
        return CB_HTTP_DONE;
    }
    if (pf_edges_check_url(b.url, why, sizeof(why))) {
        rc = cb_http_reply_error(req, 400, "invalid_field", "url", "%s", why);
        cb_jsonv_release(edge_body_fields, &b);
        return rc;
    }
    snprintf(d.name, sizeof(d.name), "%s", b.name);
    snprintf(d.url, sizeof(d.url), "%s", b.url);
    snprintf(d.group, sizeof(d.group), "%s", b.group ? b.group : "");
    d.kind = (pf_edge_kind_t) b.kind;
    cb_jsonv_release(edge_body_fields, &b);
    rc = pf_edges_put(a->edges, &d, &created, why, sizeof(why));
    if (rc)
        return cb_http_reply_error(req, 503, "unavailable", NULL, "edge inventory: %s", why);
    cb_log_info("edge '%s' %s: %s", d.name, created ? "added" : "replaced", d.url);
    out = pf_edges_json(a->edges, d.name, &rc);
    return out ? cb_http_reply_json(req, created ? 201 : 200, out) : edges_error(req, rc, d.name);
}

static int delete_edge(cb_http_req_t *req, void *arg)
{
    pf_api_t *a = arg;
    const char *name = cb_http_req_param(req, "name");
    char why[256];
    int rc = pf_edges_remove(a->edges, name, why, sizeof(why));

    if (rc)
        return edges_error(req, rc, name);
    cb_log_info("edge '%s' removed", name);
    return cb_http_reply(req, 204, NULL, NULL, 0);
}

int pf_api_add_routes(pf_api_t *a, cb_daemon_t *d)
{
    const cb_http_route_t routes[] = {
        { "POST", "/v1/purges", CB_ROLE_EDITOR, CB_HTTP_BLOCKING, post_purge, a },
        { "GET", "/v1/purges", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, list_purges, a },
        { "GET", "/v1/purges/{id}", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, get_purge, a },
        { "GET", "/v1/edges", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, list_edges, a },
        { "POST", "/v1/edges", CB_ROLE_ADMIN, CB_HTTP_BLOCKING, post_edge, a },
        { "GET", "/v1/edges/{name}", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, get_edge, a },
        { "DELETE", "/v1/edges/{name}", CB_ROLE_ADMIN, CB_HTTP_BLOCKING, delete_edge, a },
    };

    a->m_limited =
        cb_metrics_counter(cb_daemon_metrics(d), "castbus_purge_rate_limited_total",
                           "POST /v1/purges answered 429 (rate limit per API key).", NULL);
    return cb_daemon_add_routes(d, routes, CB_ARRAY_LEN(routes));
}

/*
 * purge_edges.c - the edge inventory in Redis, a copy in memory.
 */
#include "purge_edges.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_proto.h"
#include "clock.h"
#include "log.h"

#define EDGES_KEY      "castbus:purge:edges"
#define HEALTH_KEY     "castbus:purge:edge-health"
#define REFRESH_MS     1000
#define OK_REFRESH_MS  10000 /* how stale last_ok_at_ms may get in Redis */
#define DEFAULT_TTL_MS 15000

static const char *const source_names[] = { "api", "nats", NULL };

typedef struct health {
    int64_t failures; /* consecutive */
    int64_t last_ok_ms, last_fail_ms;
    char error[192];
} health_t;

typedef struct slot {
    pf_edge_t edge;
    health_t h;
} slot_t;

struct pf_edges {
    cb_redis_t *redis;
    int64_t expiry_ms;
    pthread_mutex_t lock;
    slot_t *slots; /* sorted by name */
    size_t n;
    bool loaded;
    int64_t loaded_ms; /* monotonic */
    cb_metric_t *m_edges;
    cb_metric_t *m_failures;
};

static int slot_cmp(const void *a, const void *b)
{
    return strcmp(((const slot_t *) a)->edge.name, ((const slot_t *) b)->edge.name);
}

static slot_t *find_locked(pf_edges_t *e, const char *name)
{
    slot_t key;

    snprintf(key.edge.name, sizeof(key.edge.name), "%s", name);
    return e->n ? bsearch(&key, e->slots, e->n, sizeof(*e->slots), slot_cmp) : NULL;
}

int pf_edges_check_url(const char *url, char *err, size_t errlen)
{
    const char *p, *slash;

    if (strlen(url) > PF_EDGE_URL_MAX) {
        snprintf(err, errlen, "at most %d bytes", PF_EDGE_URL_MAX);
        return -EINVAL;
    }
    if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else {
        snprintf(err, errlen, "expected http://host:port or https://host:port");
        return -EINVAL;
    }
    for (const char *c = url; *c; c++) {
        if ((unsigned char) *c <= 0x20 || *c == 0x7f) {
            snprintf(err, errlen, "blanks and control bytes are not allowed");
            return -EINVAL;
        }
    }
    slash = strchr(p, '/');
    if (slash == p || *p == '\0' || (slash && slash[1] != '\0')) {
        snprintf(err, errlen, "expected http(s)://host[:port], without a path");
        return -EINVAL;
    }
    return 0;
}

/* ---- JSON <-> structs ---- */

static json_t *edge_to_json(const pf_edge_t *d)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "name", d->name, "url", d->url,
                          "kind", pf_edge_kind_names[d->kind], "group", d->group, "source",
                          source_names[d->source], "seen_at_ms", (json_int_t) d->seen_at_ms,
                          "added_at_ms", (json_int_t) d->added_at_ms);

    if (o && d->source == PF_EDGE_NATS)
        json_object_set_new(o, "ttl_ms", json_integer(d->ttl_ms));
    return o;
}

static int edge_from_json(const char *text, size_t len, pf_edge_t *d)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *url = json_string_value(json_object_get(o, "url"));
    const char *group = json_string_value(json_object_get(o, "group"));
    int kind = pf_name_index(pf_edge_kind_names, json_string_value(json_object_get(o, "kind")));
    int source = pf_name_index(source_names, json_string_value(json_object_get(o, "source")));
    int rc = -EINVAL;

    memset(d, 0, sizeof(*d));
    if (name && url && kind >= 0 && source >= 0 && strlen(name) <= PF_EDGE_NAME_MAX &&
        strlen(url) <= PF_EDGE_URL_MAX && (!group || strlen(group) <= PF_EDGE_NAME_MAX)) {
        snprintf(d->name, sizeof(d->name), "%s", name);
        snprintf(d->url, sizeof(d->url), "%s", url);
        snprintf(d->group, sizeof(d->group), "%s", group ? group : PF_EDGE_GROUP_DEFAULT);
        d->kind = (pf_edge_kind_t) kind;
        d->source = (pf_edge_source_t) source;
        d->ttl_ms = json_integer_value(json_object_get(o, "ttl_ms"));
        d->seen_at_ms = json_integer_value(json_object_get(o, "seen_at_ms"));
        d->added_at_ms = json_integer_value(json_object_get(o, "added_at_ms"));
        rc = 0;
    }
    json_decref(o);
    return rc;
}

static void health_from_json(const char *text, size_t len, health_t *h)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    const char *error = json_string_value(json_object_get(o, "last_error"));

    h->failures = json_integer_value(json_object_get(o, "consecutive_failures"));
    h->last_ok_ms = json_integer_value(json_object_get(o, "last_ok_at_ms"));
    h->last_fail_ms = json_integer_value(json_object_get(o, "last_failure_at_ms"));
    snprintf(h->error, sizeof(h->error), "%s", error ? error : "");
    json_decref(o);
}

static json_t *health_to_json(const health_t *h)
{
    return json_pack("{s:I, s:I, s:I, s:s}", "consecutive_failures", (json_int_t) h->failures,
                     "last_ok_at_ms", (json_int_t) h->last_ok_ms, "last_failure_at_ms",
                     (json_int_t) h->last_fail_ms, "last_error", h->error);
}

/* ---- Redis ---- */

/* HSET key field <doc> (taken); *added (may be NULL): the field is new. */
static int hset_json(pf_edges_t *e, const char *key, const char *field, json_t *doc, bool *added,
                     char *err, size_t errlen)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    long long n = 0;
    int rc;

    json_decref(doc);
    if (!text)
        return -ENOMEM;
    rc = cb_redis_exec(e->redis, &n, err, errlen, "HSET %s %s %s", key, field, text);
    free(text);
    if (rc == 0 && added)
        *added = n == 1;
    return rc;
}

/* An edge out of Redis (and its health): 0, -ENOENT, or a Redis error. */
static int hdel(pf_edges_t *e, const char *name, char *err, size_t errlen)
{
    long long n = 0;
    int rc = cb_redis_exec(e->redis, &n, err, errlen, "HDEL %s %s", EDGES_KEY, name);

    if (rc == 0 && n == 0)
        rc = -ENOENT;
    if (rc == 0)
        cb_redis_exec(e->redis, NULL, err, errlen, "HDEL %s %s", HEALTH_KEY, name);
    return rc;
}

static int refresh_locked(pf_edges_t *e)
{
    redisReply *edges = NULL, *health = NULL;
    char err[256];
    slot_t *slots;
    size_t n = 0;
    int64_t now = cb_clock_wall_ms();
    int rc;

    rc = cb_redis_command(e->redis, &edges, err, sizeof(err), "HGETALL %s", EDGES_KEY);
    if (rc == 0)
        rc = cb_redis_command(e->redis, &health, err, sizeof(err), "HGETALL %s", HEALTH_KEY);
    if (rc) {
        cb_log_warn("edge inventory: reading Redis failed: %s", err);
        freeReplyObject(edges);
        return e->loaded ? 0 : -EAGAIN;
    }
    slots = calloc(edges->elements / 2 + 1, sizeof(*slots));
    if (!slots) {
        freeReplyObject(edges);
        freeReplyObject(health);
        return -ENOMEM;
    }
    for (size_t i = 0; i + 1 < edges->elements; i += 2) {
        redisReply *v = edges->element[i + 1];
        slot_t *s = &slots[n];

        if (v->type != REDIS_REPLY_STRING || edge_from_json(v->str, v->len, &s->edge)) {
            cb_log_warn("edge inventory: entry '%s' is unreadable: skipped",
                        edges->element[i]->str);
            continue;
        }
        if (s->edge.source == PF_EDGE_NATS && now - s->edge.seen_at_ms > e->expiry_ms) {
            cb_log_info("edge '%s' removed: no heartbeat for %" PRId64 " s", s->edge.name,
                        (now - s->edge.seen_at_ms) / 1000);
            hdel(e, s->edge.name, err, sizeof(err));
            continue;
        }
        n++;
    }
    qsort(slots, n, sizeof(*slots), slot_cmp);
    for (size_t i = 0; i + 1 < health->elements; i += 2) {
        slot_t key, *s;
        if (health->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(key.edge.name, sizeof(key.edge.name), "%s", health->element[i]->str);
        s = n ? bsearch(&key, slots, n, sizeof(*slots), slot_cmp) : NULL;
        if (s)
            health_from_json(health->element[i + 1]->str, health->element[i + 1]->len, &s->h);
    }
    freeReplyObject(edges);
    freeReplyObject(health);
    free(e->slots);
    e->slots = slots;
    e->n = n;
    e->loaded = true;
    e->loaded_ms = cb_clock_mono_ms();
    return 0;
}

static int fresh_locked(pf_edges_t *e)
{
    if (e->loaded && cb_clock_mono_ms() - e->loaded_ms < REFRESH_MS)
        return 0;
    return refresh_locked(e);
}

/* Healthy, or why not. */
static bool healthy(const slot_t *s, int64_t now, char *why, size_t whylen)
{
    if (s->edge.source == PF_EDGE_NATS && now - s->edge.seen_at_ms > s->edge.ttl_ms) {
        snprintf(why, whylen, "no heartbeat for %" PRId64 " ms (due every %" PRId64 " ms)",
                 now - s->edge.seen_at_ms, s->edge.ttl_ms);
        return false;
    }
    if (s->h.failures > 0) {
        snprintf(why, whylen, "%" PRId64 " purge(s) in a row failed: %s", s->h.failures,
                 s->h.error);
        return false;
    }
    why[0] = '\0';
    return true;
}

static void collect(cb_metrics_t *m, void *arg)
{
    pf_edges_t *e = arg;
    size_t up = 0, down = 0;
    int64_t now = cb_clock_wall_ms();
    char why[256];

    (void) m;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n; i++)
        healthy(&e->slots[i], now, why, sizeof(why)) ? up++ : down++;
    pthread_mutex_unlock(&e->lock);
    cb_metric_set(e->m_edges, (const char *[]){ "healthy" }, (double) up);
    cb_metric_set(e->m_edges, (const char *[]){ "unhealthy" }, (double) down);
}

/* ---- API ---- */

int pf_edges_new(cb_redis_t *redis, cb_metrics_t *metrics, int64_t expiry_ms, pf_edges_t **out)
{
    pf_edges_t *e = calloc(1, sizeof(*e));

    if (!e)
        return -ENOMEM;
    e->redis = redis;
    e->expiry_ms = expiry_ms;
    pthread_mutex_init(&e->lock, NULL);
    e->m_edges =
        cb_metrics_gauge(metrics, "castbus_purge_edges", "Edges in the inventory, by health.",
                         (const char *[]){ "health", NULL });
    e->m_failures = cb_metrics_counter(metrics, "castbus_purge_edge_failures_total",
                                       "Purge jobs an edge did not complete (after retries).",
                                       (const char *[]){ "edge", NULL });
    cb_metrics_add_collector(metrics, collect, e);
    *out = e;
    return 0;
}

void pf_edges_free(pf_edges_t *e)
{
    if (!e)
        return;
    pthread_mutex_destroy(&e->lock);
    free(e->slots);
    free(e);
}

/* NULL or "": every group. */
static bool in_group(const pf_edge_t *d, const char *group)
{
    return !group || !group[0] || strcmp(group, d->group) == 0;
}

int pf_edges_select(pf_edges_t *e, const char *group, pf_edge_t **out, size_t *n)
{
    pf_edge_t *v;
    int rc;

    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&e->lock);
    rc = fresh_locked(e);
    if (rc == 0 && e->n > 0) {
        v = calloc(e->n, sizeof(*v));
        if (!v)
            rc = -ENOMEM;
        for (size_t i = 0; v && i < e->n; i++)
            if (in_group(&e->slots[i].edge, group))
                v[(*n)++] = e->slots[i].edge;
        *out = v;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int pf_edges_count(pf_edges_t *e, const char *group, size_t *n)
{
    int rc;

    *n = 0;
    pthread_mutex_lock(&e->lock);
    rc = fresh_locked(e);
    for (size_t i = 0; rc == 0 && i < e->n; i++)
        if (in_group(&e->slots[i].edge, group))
            (*n)++;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int pf_edges_put(pf_edges_t *e, const pf_edge_t *edge, bool *created, char *err, size_t errlen)
{
    pf_edge_t d = *edge;
    slot_t *s;
    int rc;

    pthread_mutex_lock(&e->lock);
    fresh_locked(e);
    s = find_locked(e, d.name);
    d.seen_at_ms = cb_clock_wall_ms();
    d.added_at_ms = s ? s->edge.added_at_ms : d.seen_at_ms;
    if (!d.group[0])
        snprintf(d.group, sizeof(d.group), "%s", PF_EDGE_GROUP_DEFAULT);
    if (d.source == PF_EDGE_NATS && d.ttl_ms <= 0)
        d.ttl_ms = DEFAULT_TTL_MS;
    rc = hset_json(e, EDGES_KEY, d.name, edge_to_json(&d), created, err, errlen);
    if (rc == 0) {
        if (s) {
            s->edge = d;
        } else {
            slot_t *ns = realloc(e->slots, (e->n + 1) * sizeof(*ns));
            if (ns) {
                e->slots = ns;
                memset(&ns[e->n], 0, sizeof(*ns));
                ns[e->n++].edge = d;
                qsort(e->slots, e->n, sizeof(*e->slots), slot_cmp);
            } else {
                e->loaded_ms = 0; /* read it back next time */
            }
        }
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int pf_edges_remove(pf_edges_t *e, const char *name, char *err, size_t errlen)
{
    slot_t *s;
    int rc;

    pthread_mutex_lock(&e->lock);
    rc = hdel(e, name, err, errlen);
    if (rc == 0 && (s = find_locked(e, name)) != NULL) {
        size_t i = (size_t) (s - e->slots);
        memmove(&e->slots[i], &e->slots[i + 1], (e->n - i - 1) * sizeof(*s));
        e->n--;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

void pf_edges_outcome(pf_edges_t *e, const char *name, bool ok, const char *error)
{
    int64_t now = cb_clock_wall_ms();
    json_t *doc = NULL;
    char err[256];
    slot_t *s;

    if (!ok)
        cb_metric_add(e->m_failures, (const char *[]){ name }, 1);
    pthread_mutex_lock(&e->lock);
    s = find_locked(e, name);
    if (s && ok && (s->h.failures > 0 || now - s->h.last_ok_ms > OK_REFRESH_MS)) {
        if (s->h.failures > 0)
            cb_log_info("edge '%s' answers purges again", name);
        s->h.failures = 0;
        s->h.last_ok_ms = now;
        doc = health_to_json(&s->h);
    } else if (s && !ok) {
        if (s->h.failures == 0)
            cb_log_warn("edge '%s' failed a purge: %s", name, error);
        s->h.failures++;
        s->h.last_fail_ms = now;
        snprintf(s->h.error, sizeof(s->h.error), "%s", error ? error : "");
        doc = health_to_json(&s->h);
    }
    if (doc && hset_json(e, HEALTH_KEY, name, doc, NULL, err, sizeof(err)))
        cb_log_warn("edge inventory: writing '%s' failed: %s", name, err);
    pthread_mutex_unlock(&e->lock);
}

static json_t *slot_json(const slot_t *s, int64_t now)
{
    char why[300];
    json_t *o = edge_to_json(&s->edge);
    bool up = healthy(s, now, why, sizeof(why));

    json_object_set_new(o, "healthy", json_boolean(up));
    if (!up)
        json_object_set_new(o, "unhealthy_reason", json_string(why));
    json_object_set_new(o, "health", health_to_json(&s->h));
    return o;
}

json_t *pf_edges_json(pf_edges_t *e, const char *name, int *rc)
{
    int64_t now = cb_clock_wall_ms();
    json_t *out = NULL;

    pthread_mutex_lock(&e->lock);
    *rc = refresh_locked(e); /* an operator asking wants the current truth */
    if (*rc == 0 && name) {
        slot_t *s = find_locked(e, name);
        out = s ? slot_json(s, now) : NULL;
        if (!s)
            *rc = -ENOENT;
    } else if (*rc == 0) {
        json_t *list = json_array();
        for (size_t i = 0; i < e->n; i++)
            json_array_append_new(list, slot_json(&e->slots[i], now));
        out = json_pack("{s:o}", "edges", list);
    }
    pthread_mutex_unlock(&e->lock);
    return out;
}

/* ---- NATS: cdn.edges.heartbeat ---- */

static int on_heartbeat(void *arg, const char *subject, const void *data, size_t len,
                        cb_buf_t *reply, char *err, size_t errlen)
{
    pf_edges_t *e = arg;
    cb_proto_edge_heartbeat_t m;
    cb_proto_edge_ack_t ack = { .ok = true };
    cb_jsonv_error_t jerr;
    pf_edge_t d = { .source = PF_EDGE_NATS };
    char why[256];
    char *text;
    size_t n;
    int rc;

    (void) subject;
    rc = cb_proto_edge_heartbeat_decode(data, len, &m, &jerr);
    if (rc) { /* validated before; only ENOMEM gets here */
        cb_proto_edge_heartbeat_release(&m);
        snprintf(err, errlen, "%s", jerr.text);
        return rc;
    }
    if (m.leaving) {
        rc = pf_edges_remove(e, m.name, why, sizeof(why));
        if (rc == 0)
            cb_log_info("edge '%s' left", m.name);
        rc = rc == -ENOENT ? 0 : rc;
    } else if (pf_edges_check_url(m.url, why, sizeof(why))) {
        cb_proto_edge_heartbeat_release(&m);
        return cb_nats_error_reply(reply, "invalid_request", "url", why);
    } else {
        bool created = false;
        snprintf(d.name, sizeof(d.name), "%s", m.name);
        snprintf(d.url, sizeof(d.url), "%s", m.url);
        snprintf(d.group, sizeof(d.group), "%s", m.group ? m.group : "");
        d.kind = (pf_edge_kind_t) m.kind;
        d.ttl_ms = m.ttl_ms;
        rc = pf_edges_put(e, &d, &created, why, sizeof(why));
        if (rc == 0 && created)
            cb_log_info("edge '%s' registered: %s (group %s)", d.name, d.url,
                        d.group[0] ? d.group : PF_EDGE_GROUP_DEFAULT);
    }
    cb_proto_edge_heartbeat_release(&m);
    if (rc) {
        snprintf(err, errlen, "edge inventory: %s", why);
        return -EAGAIN;
    }
    pthread_mutex_lock(&e->lock);
    ack.edges = (int64_t) e->n;
    pthread_mutex_unlock(&e->lock);
    text = cb_proto_edge_ack_encode(&ack, &n);
    if (!text)
        return -ENOMEM;
    rc = cb_buf_append(reply, text, n);
    free(text);
    return rc;
}

int pf_edges_serve(pf_edges_t *e, cb_nats_t *nats)
{
    return cb_nats_serve(nats, CB_PROTO_SUBJECT_CDN_EDGES_HEARTBEAT, "purge-fanout",
                         cb_proto_edge_heartbeat_validate, on_heartbeat, e);
}

/*
 * redis.c - hiredis wrapper with reconnect; see redis.h.
 */
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "route.h"

const cb_config_key_t cb_redis_config_keys[] = {
    { .name = "redis_url",
      .type = CB_CONFIG_STRING,
      .def = "redis://127.0.0.1:6379/0",
      .flags = CB_CONFIG_REQUIRED | CB_CONFIG_SECRET,
      .offset = offsetof(cb_redis_config_t, url),
      .help = "Redis server as redis://[:password@]host[:port][/db]." },
    { .name = "redis_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "1s",
      .min = 10,
      .max = 60000,
      .offset = offsetof(cb_redis_config_t, timeout_ms),
      .help = "Connect and command timeout for Redis." },
    { .name = NULL },
};

struct cb_redis {
    cb_redis_url_t url;
    struct timeval timeout;
    pthread_mutex_t lock;
    redisContext *ctx;
    cb_metric_t *m_commands;
};

int cb_redis_parse_url(const char *url, cb_redis_url_t *out)
{
    const char *p, *at, *hostend, *slash;
    size_t hlen;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (strncmp(url, "redis://", 8) != 0)
        return -EINVAL;
    p = url + 8;
    slash = strchr(p, '/');
    at = memchr(p, '@', slash ? (size_t) (slash - p) : strlen(p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t) (at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t pwlen = (size_t) (at - pw);
        if (pwlen >= sizeof(out->password) ||
            cb_route_pct_decode(pw, pwlen, out->password, sizeof(out->password), false) < 0)
            return -EINVAL;
        p = at + 1;
    }
    hostend = p;
    while (*hostend && *hostend != ':' && *hostend != '/')
        hostend++;
    hlen = (size_t) (hostend - p);
    if (hlen == 0 || hlen >= sizeof(out->host))
        return -EINVAL;
    memcpy(out->host, p, hlen);
    out->host[hlen] = '\0';
    p = hostend;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return -EINVAL;
        out->port = (int) port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || db < 0 || db > 15)
            return -EINVAL;
        out->db = (int) db;
    } else if (*p && strcmp(p, "/") != 0) {
        return -EINVAL;
    }
    return 0;
}

int cb_redis_new(const cb_redis_config_t *cfg, cb_metrics_t *metrics, cb_redis_t **out, char *err,
                 size_t errlen)
{
    cb_redis_t *r = calloc(1, sizeof(*r));

    if (!r)
        return -ENOMEM;
    if (cb_redis_parse_url(cfg->url, &r->url)) {
        snprintf(err, errlen, "CASTBUS_REDIS_URL: not a redis://[:password@]host[:port][/db] URL");
        free(r);
        return -EINVAL;
    }
    r->timeout.tv_sec = cfg->timeout_ms / 1000;
    r->timeout.tv_usec = (cfg->timeout_ms % 1000) * 1000;
    pthread_mutex_init(&r->lock, NULL);
    r->m_commands =
        cb_metrics_counter(metrics, "castbus_redis_commands_total",
                           "Redis commands run, by result.", (const char *[]){ "result", NULL });
    *out = r;
    return 0;
}

/* Locked. */
static int redis_connect(cb_redis_t *r, char *err, size_t errlen)
{
    redisReply *rep;

    if (r->ctx && !r->ctx->err)
        return 0;
    if (r->ctx)
        redisFree(r->ctx);
    r->ctx = redisConnectWithTimeout(r->url.host, r->url.port, r->timeout);
    if (!r->ctx || r->ctx->err) {
        snprintf(err, errlen, "cannot connect to Redis at %s:%d: %s", r->url.host, r->url.port,
                 r->ctx ? r->ctx->errstr : "out of memory");
        if (r->ctx)
            redisFree(r->ctx);
        r->ctx = NULL;
        return -ECONNREFUSED;
    }
    redisSetTimeout(r->ctx, r->timeout);
    if (r->url.password[0]) {
        rep = redisCommand(r->ctx, "AUTH %s", r->url.password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis AUTH failed: %s", rep ? rep->str : r->ctx->errstr);
            if (rep)
                freeReplyObject(rep);
            redisFree(r->ctx);
            r->ctx = NULL;
            return -EACCES;
        }
        freeReplyObject(rep);
    }
    if (r->url.db) {
        rep = redisCommand(r->ctx, "SELECT %d", r->url.db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "Redis SELECT %d failed", r->url.db);
            if (rep)
                freeReplyObject(rep);
            redisFree(r->ctx);
            r->ctx = NULL;
            return -EIO;
        }
        freeReplyObject(rep);
    }
    return 0;
}

static int redis_vcommand(cb_redis_t *r, redisReply **reply, char *err, size_t errlen,
                          const char *fmt, va_list args)
{
    redisReply *rep = NULL;
    va_list ap;
    int attempt, rc = 0;

    pthread_mutex_lock(&r->lock);
    for (attempt = 0; attempt < 2; attempt++) {
        rc = redis_connect(r, err, errlen);
        if (rc)
            break;
        va_copy(ap, args);
        rep = redisvCommand(r->ctx, fmt, ap);
        va_end(ap);
        if (rep)
            break;
        /* I/O error: the connection is unusable; retry once on a new one */
        snprintf(err, errlen, "Redis command failed: %s", r->ctx->errstr);
        redisFree(r->ctx);
        r->ctx = NULL;
        rc = -ECONNREFUSED;
    }
    pthread_mutex_unlock(&r->lock);
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "Redis: %s", rep->str);
        freeReplyObject(rep);
        rep = NULL;
        rc = -EIO;
    } else if (rep) {
        rc = 0;
    }
    cb_metric_add(r->m_commands, (const char *[]){ rc == 0 ? "ok" : "error" }, 1);
    if (rc == 0)
        *reply = rep;
    return rc;
}

int cb_redis_command(cb_redis_t *r, redisReply **reply, char *err, size_t errlen, const char *fmt,
                     ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = redis_vcommand(r, reply, err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

int cb_redis_exec(cb_redis_t *r, long long *integer, char *err, size_t errlen, const char *fmt, ...)
{
    redisReply *rep = NULL;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = redis_vcommand(r, &rep, err, errlen, fmt, ap);
    va_end(ap);
    if (rc == 0 && integer)
        *integer = rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
    freeReplyObject(rep);
    return rc;
}

void cb_redis_free(cb_redis_t *r)
{
    if (!r)
        return;
    if (r->ctx)
        redisFree(r->ctx);
    pthread_mutex_destroy(&r->lock);
    memset(r->url.password, 0, sizeof(r->url.password));
    free(r);
}

static int redis_ready(void *obj, char *err, size_t errlen)
{
    redisReply *rep = NULL;
    int rc = cb_redis_command(obj, &rep, err, errlen, "PING");

    if (rc == 0 && !(rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0)) {
        snprintf(err, errlen, "unexpected answer to PING");
        rc = -EIO;
    }
    if (rep)
        freeReplyObject(rep);
    return rc;
}

static void redis_free_obj(void *obj)
{
    cb_redis_free(obj);
}

const cb_component_ops_t cb_redis_component = {
    .name = "redis",
    .ready = redis_ready,
    .drain = NULL,
    .free = redis_free_obj,
};

/*
 * redis.h - a Redis connection (hiredis) that reconnects by itself.
 *
 * Commands are synchronous with a timeout; a command that fails on a
 * broken connection is retried once on a fresh connection. A daemon may
 * start before Redis: it reports unready until a PING answers.
 *
 * Threads: any thread; commands are serialised on one connection.
 */
#ifndef CB_REDIS_H
#define CB_REDIS_H

#include <hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "metrics.h"

typedef struct cb_redis_config {
    char *url;          /* "redis://[:password@]host[:port][/db]" */
    int64_t timeout_ms; /* connect and command timeout */
} cb_redis_config_t;

extern const cb_config_key_t cb_redis_config_keys[];

typedef struct cb_redis_url {
    char host[256];
    int port;
    char password[256];
    int db;
} cb_redis_url_t;

/* Parse a redis:// URL. -EINVAL for anything else. */
int cb_redis_parse_url(const char *url, cb_redis_url_t *out);

typedef struct cb_redis cb_redis_t;

int cb_redis_new(const cb_redis_config_t *cfg, cb_metrics_t *metrics, cb_redis_t **out, char *err,
                 size_t errlen);

/*
 * Run a command (hiredis format). On success *reply is a reply to
 * freeReplyObject(); an error reply from Redis is returned as -EIO with its
 * text in err. -ECONNREFUSED when Redis cannot be reached.
 */
int cb_redis_command(cb_redis_t *r, redisReply **reply, char *err, size_t errlen, const char *fmt,
                     ...);

/*
 * The same for a command whose reply is only success, or an integer (into
 * *integer when not NULL; 0 for a reply of another type): no reply to free.
 */
int cb_redis_exec(cb_redis_t *r, long long *integer, char *err, size_t errlen, const char *fmt,
                  ...);

void cb_redis_free(cb_redis_t *r);

/* ready: PING answers PONG. */
extern const cb_component_ops_t cb_redis_component;

#endif /* CB_REDIS_H */

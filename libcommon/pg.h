/*
 * pg.h - PostgreSQL access for a daemon: a small pool of connections that
 * reconnect by themselves, one schema per daemon, and migrations.
 *
 * Each daemon owns one schema (its name, e.g. "ingest"); no daemon reads
 * another's tables (proto/ is the only contract between daemons). Every
 * connection has search_path set to that schema and a statement timeout.
 *
 * Migrations are numbered SQL files (services/<daemon>/migrations/
 * 001_streams.sql ...) embedded into the binary at build time. They run
 * once, in order, each in its own transaction, under an advisory lock so
 * that replicas starting together do not race; applied versions are
 * recorded in <schema>.schema_migrations. A daemon that starts before the
 * database keeps trying, reports unready meanwhile, and migrates as soon as
 * it can connect.
 *
 * Threads: any thread may run queries; each takes a pooled connection for
 * the duration of the call (blocking: not for an event-loop thread).
 */
#ifndef CB_PG_H
#define CB_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "metrics.h"

typedef struct cb_pg_config {
    char *dsn; /* "postgresql://user:pass@host:port/db" */
    int64_t pool_size;
    int64_t connect_timeout_ms;
    int64_t statement_timeout_ms;
} cb_pg_config_t;

extern const cb_config_key_t cb_pg_config_keys[];

typedef struct cb_pg_migration {
    int version;      /* from the file name: 001_x.sql -> 1 */
    const char *name; /* "001_streams" */
    const char *sql;
} cb_pg_migration_t;

typedef struct cb_pg cb_pg_t;

/*
 * Create the pool (connections are made on first use). schema: lower-case
 * letters, digits and '_'. migrations: borrowed, sorted by version.
 */
int cb_pg_new(const cb_pg_config_t *cfg, const char *schema, const cb_pg_migration_t *migrations,
              size_t nmigrations, cb_metrics_t *metrics, cb_pg_t **out, char *err, size_t errlen);

/*
 * Run one statement with text parameters ($1, $2...). On success *res is a
 * result to PQclear() (tuples or command OK). Errors: -ECONNREFUSED (no
 * database), -ETIMEDOUT (no free connection in time, or statement timeout),
 * -EIO (the server said no; err has its message and SQLSTATE).
 */
int cb_pg_exec(cb_pg_t *pg, const char *sql, int nparams, const char *const *params, PGresult **res,
               char *err, size_t errlen);

/* Connect if needed and apply pending migrations now. */
int cb_pg_migrate(cb_pg_t *pg, char *err, size_t errlen);

/* Versions applied so far (after a successful migrate), for /v1/info. */
int cb_pg_schema_version(cb_pg_t *pg);

void cb_pg_free(cb_pg_t *pg);

/* Send a notification on a channel (any thread). */
int cb_pg_notify(cb_pg_t *pg, const char *channel, const char *payload, char *err, size_t errlen);

/*
 * Receive the notifications of a channel: a thread with its own connection
 * LISTENs and calls fn(arg, payload) for each (on that thread). It
 * reconnects by itself; notifications sent while it is disconnected are
 * lost, as PostgreSQL does not keep them.
 */
typedef struct cb_pg_listener cb_pg_listener_t;
int cb_pg_listen_start(const cb_pg_config_t *cfg, const char *channel,
                       void (*fn)(void *arg, const char *payload), void *arg,
                       cb_pg_listener_t **out);
void cb_pg_listen_stop(cb_pg_listener_t *l);

/* ready: connected, migrated, SELECT 1 answers. */
extern const cb_component_ops_t cb_pg_component;

#endif /* CB_PG_H */

/*
 * deps.h - a daemon's connections to the shared infrastructure: Kafka
 * producer, NATS, PostgreSQL, Redis and media storage.
 *
 * A daemon says which it needs; deps adds their config tables, connects
 * them, and attaches each to the daemon (readiness check, drain, free):
 *
 *   static cb_deps_t deps = { .want = CB_DEP_KAFKA | CB_DEP_PG,
 *                             .pg_schema = "ingest",
 *                             .migrations = ingest_migrations,
 *                             .nmigrations = ingest_migrations_count };
 *   cb_deps_add_config(&deps, d);      before cb_daemon_configure()
 *   cb_deps_connect(&deps, d);         after it
 *   ... deps.producer, deps.db ...
 *
 * Nothing here waits for a server: a daemon starts whatever is up, and
 * reports unready on /readyz until its dependencies answer.
 */
#ifndef CB_DEPS_H
#define CB_DEPS_H

#include <stddef.h>

#include "daemon.h"
#include "kafka.h"
#include "nats.h"
#include "pg.h"
#include "redis.h"
#include "storage.h"

#define CB_DEP_KAFKA   0x01u /* a producer (also what consumers dead-letter with) */
#define CB_DEP_NATS    0x02u
#define CB_DEP_PG      0x04u
#define CB_DEP_REDIS   0x08u
#define CB_DEP_STORAGE 0x10u

typedef struct cb_deps {
    unsigned want;                       /* CB_DEP_* */
    const char *pg_schema;               /* CB_DEP_PG: the daemon's schema */
    const cb_pg_migration_t *migrations; /* CB_DEP_PG: embedded migrations */
    size_t nmigrations;

    /* configuration, filled by cb_daemon_configure() */
    cb_kafka_config_t kafka_cfg;
    cb_nats_config_t nats_cfg;
    cb_pg_config_t pg_cfg;
    cb_redis_config_t redis_cfg;
    cb_storage_config_t storage_cfg;

    /* connections, owned by the daemon once attached */
    cb_kafka_producer_t *producer;
    cb_nats_t *nats;
    cb_pg_t *db;
    cb_redis_t *redis;
    cb_storage_t *storage;
} cb_deps_t;

/* Add the config tables of the wanted dependencies. */
int cb_deps_add_config(cb_deps_t *deps, cb_daemon_t *d);

/* Create and attach the wanted connections; logs and returns an error on bad config. */
int cb_deps_connect(cb_deps_t *deps, cb_daemon_t *d);

/* Declare the migrations array tools/embed-sql generates for a daemon. */
#define CB_PG_MIGRATIONS_DECLARE(name)                                                             \
    extern const cb_pg_migration_t name[];                                                         \
    extern const size_t name##_count

#endif /* CB_DEPS_H */

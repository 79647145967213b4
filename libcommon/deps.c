/*
 * deps.c - connect a daemon to Kafka, NATS, Postgres, Redis, storage; see deps.h.
 */
#include "deps.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

int cb_deps_add_config(cb_deps_t *deps, cb_daemon_t *d)
{
    cb_config_t *c = cb_daemon_config(d);
    int rc = 0;

    if (deps->want & CB_DEP_KAFKA)
        rc = rc ? rc : cb_config_add(c, "kafka", cb_kafka_config_keys, &deps->kafka_cfg);
    if (deps->want & CB_DEP_NATS)
        rc = rc ? rc : cb_config_add(c, "nats", cb_nats_config_keys, &deps->nats_cfg);
    if (deps->want & CB_DEP_PG)
        rc = rc ? rc : cb_config_add(c, "postgres", cb_pg_config_keys, &deps->pg_cfg);
    if (deps->want & CB_DEP_REDIS)
        rc = rc ? rc : cb_config_add(c, "redis", cb_redis_config_keys, &deps->redis_cfg);
    if (deps->want & CB_DEP_STORAGE)
        rc = rc ? rc : cb_config_add(c, "storage", cb_storage_config_keys, &deps->storage_cfg);
    return rc;
}

int cb_deps_connect(cb_deps_t *deps, cb_daemon_t *d)
{
    cb_metrics_t *m = cb_daemon_metrics(d);
    char err[512] = "", client[64];
    int rc = 0;

    snprintf(client, sizeof(client), "castbus-%s", cb_daemon_name(d));
    if (deps->want & CB_DEP_STORAGE) {
        rc = cb_storage_open(&deps->storage_cfg, m, &deps->storage, err, sizeof(err));
        if (rc == 0)
            rc = cb_daemon_attach(d, &cb_storage_component, deps->storage);
    }
    if (rc == 0 && (deps->want & CB_DEP_PG)) {
        CB_ASSERT(deps->pg_schema);
        rc = cb_pg_new(&deps->pg_cfg, deps->pg_schema, deps->migrations, deps->nmigrations, m,
                       &deps->db, err, sizeof(err));
        if (rc == 0)
            rc = cb_daemon_attach(d, &cb_pg_component, deps->db);
    }
    if (rc == 0 && (deps->want & CB_DEP_REDIS)) {
        rc = cb_redis_new(&deps->redis_cfg, m, &deps->redis, err, sizeof(err));
        if (rc == 0)
            rc = cb_daemon_attach(d, &cb_redis_component, deps->redis);
    }
    if (rc == 0 && (deps->want & CB_DEP_NATS)) {
        rc = cb_nats_new(&deps->nats_cfg, client, m, &deps->nats, err, sizeof(err));
        if (rc == 0)
            rc = cb_daemon_attach(d, &cb_nats_component, deps->nats);
    }
    if (rc == 0 && (deps->want & CB_DEP_KAFKA)) {
        rc = cb_kafka_producer_new(&deps->kafka_cfg, client, m, &deps->producer, err, sizeof(err));
        if (rc == 0)
            rc = cb_daemon_attach(d, &cb_kafka_producer_component, deps->producer);
    }
    if (rc)
        cb_log_error("cannot set up dependencies: %s", err[0] ? err : strerror(-rc));
    return rc;
}

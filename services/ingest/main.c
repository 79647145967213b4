/*
 * castbus-ingest: RTMP/RTMPS/SRT publish in, GOP-aligned source segments to
 * storage, transcode jobs to Kafka.
 *
 * This daemon is the front door of live events. Streams and stream keys live
 * in its Postgres schema; cut segments go to storage and their jobs to
 * media.transcode.jobs.
 *
 * main.c wires configuration, dependencies and routes; the job itself is in
 * ingest_app.c (listeners, hub, writer) and ingest_api.c (streams API).
 */
#include "daemon.h"
#include "deps.h"

#include "ingest_api.h"
#include "ingest_app.h"

CB_PG_MIGRATIONS_DECLARE(ingest_migrations);

static ingest_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_PG | CB_DEP_STORAGE,
        .pg_schema = "ingest",
        .migrations = ingest_migrations,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    ingest_app_t *a = arg;
    int rc = cb_deps_add_config(&a->deps, d);

    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "ingest", ingest_config_keys, &a->cfg);
    return rc;
}

static int setup(cb_daemon_t *d, void *arg)
{
    ingest_app_t *a = arg;
    int rc = cb_deps_connect(&a->deps, d);

    if (rc == 0)
        rc = ingest_app_start(a, d);
    if (rc == 0)
        rc = ingest_api_routes(d, a);
    return rc;
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "ingest",
        .summary = "castbus ingest: RTMP/RTMPS/SRT publish in, GOP-aligned source segments to "
                   "storage, transcode jobs to Kafka.",
        .http_port = 8081,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    app.deps.nmigrations = ingest_migrations_count;
    return cb_daemon_main(&spec, argc, argv);
}

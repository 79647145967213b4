/*
 * castbus-ingest: RTMP/RTMPS/SRT publish and VOD upload in, GOP-aligned source
 * segments to storage, transcode jobs to Kafka.
 *
 * This daemon is the front door of live events. Streams and stream keys live
 * in its Postgres schema; cut segments go to storage and their jobs to
 * media.transcode.jobs.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in ingest_*.c: the publish protocols, segmenter and stream
 * API arrive with issue #3.
 */
#include "daemon.h"
#include "deps.h"

CB_PG_MIGRATIONS_DECLARE(ingest_migrations);

typedef struct ingest_app {
    cb_deps_t deps;
} ingest_app_t;

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

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    ingest_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "ingest",
        .summary = "castbus ingest: RTMP/RTMPS/SRT publish and VOD upload in, GOP-aligned source "
                   "segments to storage, transcode jobs to Kafka.",
        .http_port = 8081,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    app.deps.nmigrations = ingest_migrations_count;
    return cb_daemon_main(&spec, argc, argv);
}

/*
 * castbus-analytics-sink: player and server events from Kafka into Postgres,
 * with QoE aggregates and queries.
 *
 * This daemon is consumes analytics.events into its Postgres schema and
 * answers realtime and historical queries.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in analytics_sink_*.c: event ingestion and queries arrive
 * with their own issue.
 */
#include "daemon.h"
#include "deps.h"

CB_PG_MIGRATIONS_DECLARE(analytics_sink_migrations);

typedef struct analytics_sink_app {
    cb_deps_t deps;
} analytics_sink_app_t;

static analytics_sink_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_PG,
        .pg_schema = "analytics_sink",
        .migrations = analytics_sink_migrations,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    analytics_sink_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    analytics_sink_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "analytics-sink",
        .summary = "castbus analytics-sink: Player and server events from Kafka into Postgres, "
                   "with QoE aggregates and queries.",
        .http_port = 8087,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    app.deps.nmigrations = analytics_sink_migrations_count;
    return cb_daemon_main(&spec, argc, argv);
}

/*
 * castbus-entitlement: who may watch what: tiers, pay-per-view, geo, device
 * limits, playback tokens, over NATS.
 *
 * This daemon is answers entitlement.check; rules live in its Postgres schema,
 * sessions and device counts in Redis.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in entitlement_*.c: the rules and the entitlement.check
 * responder arrive with their own issue.
 */
#include "daemon.h"
#include "deps.h"

CB_PG_MIGRATIONS_DECLARE(entitlement_migrations);

typedef struct entitlement_app {
    cb_deps_t deps;
} entitlement_app_t;

static entitlement_app_t app = {
    .deps = {
        .want = CB_DEP_NATS | CB_DEP_PG | CB_DEP_REDIS,
        .pg_schema = "entitlement",
        .migrations = entitlement_migrations,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    entitlement_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    entitlement_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "entitlement",
        .summary = "castbus entitlement: Who may watch what: tiers, pay-per-view, geo, device "
                   "limits, playback tokens, over NATS.",
        .http_port = 8086,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    app.deps.nmigrations = entitlement_migrations_count;
    return cb_daemon_main(&spec, argc, argv);
}

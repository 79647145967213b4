/*
 * castbus-purge-fanout: purge API on cdn.purges, fanned out to every CDN edge
 * with per-edge status.
 *
 * This daemon is accepts purge requests, writes them to cdn.purges, and
 * invalidates them on every edge (Varnish, Traffic Server, nginx); edges
 * register over NATS.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in purge_fanout_*.c: the purge API and the fan-out arrive
 * with issue #6.
 */
#include "daemon.h"
#include "deps.h"

typedef struct purge_fanout_app {
    cb_deps_t deps;
} purge_fanout_app_t;

static purge_fanout_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_NATS | CB_DEP_REDIS,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    purge_fanout_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    purge_fanout_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "purge-fanout",
        .summary = "castbus purge-fanout: Purge API on cdn.purges, fanned out to every CDN edge "
                   "with per-edge status.",
        .http_port = 8084,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    return cb_daemon_main(&spec, argc, argv);
}

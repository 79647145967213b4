/*
 * castbus-drm-license: content keys and key rotation for the packager,
 * ClearKey and AES-128 licenses for players.
 *
 * This daemon is answers drm.keys.get for the packager and serves licenses;
 * keys live in its Postgres schema.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in drm_license_*.c: key management and licenses arrive with
 * their own issue.
 */
#include "daemon.h"
#include "deps.h"

CB_PG_MIGRATIONS_DECLARE(drm_license_migrations);

typedef struct drm_license_app {
    cb_deps_t deps;
} drm_license_app_t;

static drm_license_app_t app = {
    .deps = {
        .want = CB_DEP_NATS | CB_DEP_PG,
        .pg_schema = "drm_license",
        .migrations = drm_license_migrations,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    drm_license_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    drm_license_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "drm-license",
        .summary = "castbus drm-license: Content keys and key rotation for the packager, ClearKey "
                   "and AES-128 licenses for players.",
        .http_port = 8085,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    app.deps.nmigrations = drm_license_migrations_count;
    return cb_daemon_main(&spec, argc, argv);
}

/*
 * castbus-sfu: webRTC selective forwarding for interactive rooms.
 *
 * This daemon is forwards WebRTC media between the members of a room; joins
 * are checked with entitlement.check, room state lives in Redis.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in sfu_*.c: the WebRTC media path arrives with its own issue.
 */
#include "daemon.h"
#include "deps.h"

typedef struct sfu_app {
    cb_deps_t deps;
} sfu_app_t;

static sfu_app_t app = {
    .deps = {
        .want = CB_DEP_NATS | CB_DEP_REDIS,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    sfu_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    sfu_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "sfu",
        .summary = "castbus sfu: WebRTC selective forwarding for interactive rooms.",
        .http_port = 8088,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    return cb_daemon_main(&spec, argc, argv);
}

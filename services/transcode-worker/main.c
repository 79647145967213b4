/*
 * castbus-transcode-worker: transcode jobs from Kafka, decoded once and
 * encoded into an ABR ladder of CMAF renditions.
 *
 * This daemon is a member of the transcode-worker consumer group on
 * media.transcode.jobs; renditions go to storage and results to
 * media.transcode.done.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in transcode_worker_*.c: job handling and the one-shot mode
 * arrive with issue #4.
 */
#include "daemon.h"
#include "deps.h"

typedef struct transcode_worker_app {
    cb_deps_t deps;
} transcode_worker_app_t;

static transcode_worker_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_STORAGE,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    transcode_worker_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    transcode_worker_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "transcode-worker",
        .summary = "castbus transcode-worker: Transcode jobs from Kafka, decoded once and encoded "
                   "into an ABR ladder of CMAF renditions.",
        .http_port = 8082,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    return cb_daemon_main(&spec, argc, argv);
}

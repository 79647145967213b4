/*
 * castbus-transcode-worker: transcode jobs from Kafka, decoded once and
 * encoded into an ABR ladder of CMAF renditions.
 *
 * This daemon is a member of the transcode-worker consumer group on
 * media.transcode.jobs; renditions go to storage and results to
 * media.transcode.done. With --once it transcodes one file and exits
 * (transcode_once.c); the pipeline itself is transcode_pipeline.c.
 */
#include "avlog.h"
#include "daemon.h"
#include "deps.h"
#include "log.h"
#include "transcode_jobs.h"
#include "transcode_once.h"

typedef struct transcode_worker_app {
    cb_deps_t deps;
    tc_jobs_config_t jobs_cfg;
    transcode_once_config_t once;
} transcode_worker_app_t;

static transcode_worker_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_STORAGE,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    transcode_worker_app_t *a = arg;
    int rc = cb_deps_add_config(&a->deps, d);

    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "transcode-worker", tc_jobs_config_keys,
                           &a->jobs_cfg);
    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "one-shot", transcode_once_config_keys, &a->once);
    return rc;
}

static int setup(cb_daemon_t *d, void *arg)
{
    transcode_worker_app_t *a = arg;
    tc_jobs_t *jobs;
    char err[512];
    int rc;

    cb_avlog_install();
    if (a->once.once) {
        /* one file, no Kafka, no HTTP: the exit code says how it went */
        rc = transcode_once_run(&a->once, (tc_hw_t) a->jobs_cfg.hw_encoder, a->jobs_cfg.hw_device);
        return rc ? rc : CB_DAEMON_EXIT;
    }
    rc = cb_deps_connect(&a->deps, d);
    if (rc)
        return rc;
    rc = tc_jobs_new(&a->jobs_cfg, &a->deps.kafka_cfg, a->deps.producer, a->deps.storage,
                     cb_daemon_metrics(d), &jobs, err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return rc;
    }
    /* attached after the producer and storage, so drained before them */
    rc = cb_daemon_attach(d, &tc_jobs_component, jobs);
    if (rc) {
        tc_jobs_component.free(jobs);
        return rc;
    }
    return tc_jobs_start(jobs);
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

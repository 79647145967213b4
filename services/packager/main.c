/*
 * castbus-packager: HLS and DASH (live, DVR, VOD) from CMAF renditions, and
 * the HTTP origin players fetch from.
 *
 * This daemon turns media.transcode.done into playlists and manifests in
 * storage (packager_streams.c, with the timeline in packager_timeline.c and
 * the manifests in packager_render.c, packager_hls.c and packager_dash.c)
 * and serves /live and /vod to players and CDN edges (packager_origin.c).
 */
#include "daemon.h"
#include "deps.h"
#include "log.h"
#include "packager_origin.h"
#include "packager_streams.h"

typedef struct packager_app {
    cb_deps_t deps;
    pk_config_t cfg;
    pk_origin_config_t origin_cfg;
    pk_origin_t *origin;
} packager_app_t;

static packager_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_STORAGE,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    packager_app_t *a = arg;
    int rc = cb_deps_add_config(&a->deps, d);

    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "packager", pk_config_keys, &a->cfg);
    if (rc == 0)
        rc = cb_config_add(cb_daemon_config(d), "origin", pk_origin_config_keys, &a->origin_cfg);
    return rc;
}

static int setup(cb_daemon_t *d, void *arg)
{
    packager_app_t *a = arg;
    pk_streams_t *streams;
    char err[512];
    int rc;

    rc = cb_deps_connect(&a->deps, d);
    if (rc)
        return rc;
    rc = pk_streams_new(
        &a->cfg, &a->deps.kafka_cfg, a->deps.producer, a->deps.storage, cb_daemon_metrics(d),
        a->origin_cfg.port ? (int) a->origin_cfg.port : cb_http_port(cb_daemon_http(d)), &streams,
        err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return rc;
    }
    /* attached after the producer and storage, so drained before them */
    rc = cb_daemon_attach(d, &pk_streams_component, streams);
    if (rc) {
        pk_streams_component.free(streams);
        return rc;
    }
    rc = pk_origin_new(&a->origin_cfg, a->deps.storage, streams, d, &a->origin, err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return rc;
    }
    rc = cb_daemon_attach(d, &pk_origin_component, a->origin);
    if (rc) {
        pk_origin_component.free(a->origin);
        return rc;
    }
    pk_streams_on_publish(streams, pk_origin_wake, a->origin); /* blocking reloads */
    rc = pk_streams_add_routes(streams, d);
    if (rc == 0 && (rc = pk_origin_start(a->origin, err, sizeof(err))) != 0)
        cb_log_error("%s", err);
    if (rc)
        return rc;
    return pk_streams_start(streams);
}

int main(int argc, char **argv)
{
    static const cb_daemon_spec_t spec = {
        .name = "packager",
        .summary = "castbus packager: HLS and DASH (live, DVR, VOD) from CMAF renditions, and the "
                   "HTTP origin players fetch from.",
        .http_port = 8080,
        .add_config = add_config,
        .setup = setup,
        .app = &app,
    };

    return cb_daemon_main(&spec, argc, argv);
}

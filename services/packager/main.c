/*
 * castbus-packager: hLS and DASH (live, DVR, VOD) from CMAF renditions, and
 * the HTTP origin players fetch from.
 *
 * This daemon is turns media.transcode.done into playlists and manifests in
 * storage and serves /live and /vod to players and CDN edges.
 *
 * main.c wires configuration, dependencies and routes; the daemon's job will
 * live beside it in packager_*.c: packaging and the origin arrive with issue
 * #5.
 */
#include "daemon.h"
#include "deps.h"

typedef struct packager_app {
    cb_deps_t deps;
} packager_app_t;

static packager_app_t app = {
    .deps = {
        .want = CB_DEP_KAFKA | CB_DEP_STORAGE,
    },
};

static int add_config(cb_daemon_t *d, void *arg)
{
    packager_app_t *a = arg;

    return cb_deps_add_config(&a->deps, d);
}

static int setup(cb_daemon_t *d, void *arg)
{
    packager_app_t *a = arg;

    return cb_deps_connect(&a->deps, d);
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

/*
 * packager_streams.h - the packager's job: the consumer group `packager` on
 * media.transcode.done, one timeline per stream, its manifests in storage,
 * the DVR window, the end of a stream into a VOD asset, and the REST view
 * of both.
 *
 * Storage layout (beside the worker's segments and done records):
 *   <kind>/<stream>/master.m3u8, <rendition>.m3u8, manifest.mpd
 *   <kind>/<stream>/packager/state.json       the timeline's state
 *   vod/<asset>/master.m3u8, <rendition>.m3u8, manifest.mpd, asset.json
 * A live stream's VOD asset lists the stream's own segments: asset.json
 * says where they are, and the origin serves them under /vod/<asset>/.
 *
 * Threads: consumer workers call the handler; a ticker thread gives up on
 * missing results, retries manifests storage refused and deletes segments
 * whose grace has passed; REST handlers run on HTTP workers. Each stream
 * has its own lock; the registry has one.
 */
#ifndef PACKAGER_STREAMS_H
#define PACKAGER_STREAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "daemon.h"
#include "kafka.h"
#include "storage.h"

typedef struct pk_config {
    int64_t workers;         /* results handled at once */
    int64_t gap_wait_ms;     /* how long a missing result is waited for */
    int64_t delete_grace_ms; /* segments that left the window stay this long */
    int64_t segment_ms;      /* target segment duration */
    char *public_url;        /* how players and edges reach this origin */
    bool blocking_reload;    /* live playlists say CAN-BLOCK-RELOAD (the origin holds
                              * a request for a segment not there yet) */
} pk_config_t;

extern const cb_config_key_t pk_config_keys[];

typedef struct pk_streams pk_streams_t;

/* origin_port: where /time is served, for the default public_url. */
int pk_streams_new(const pk_config_t *cfg, const cb_kafka_config_t *kafka,
                   cb_kafka_producer_t *producer, cb_storage_t *storage, cb_metrics_t *metrics,
                   int origin_port, pk_streams_t **out, char *err, size_t errlen);
int pk_streams_start(pk_streams_t *s);

/* fn(arg) after the live manifests of a stream were written (from the
 * thread that wrote them); set before pk_streams_start. */
void pk_streams_on_publish(pk_streams_t *s, void (*fn)(void *arg), void *arg);

/* ready: the consumer's; drain: stop consuming, finish results in hand. */
extern const cb_component_ops_t pk_streams_component;

/* REST: /v1/streams/{id}/packaging, /v1/assets, /v1/assets/{id}. */
int pk_streams_add_routes(pk_streams_t *s, cb_daemon_t *d);

/*
 * Where the media files of a VOD asset are (the storage prefix its
 * manifests' relative URIs resolve to: "live/<stream>" or "vod/<asset>"),
 * and whether it needs signed URLs. 0, -ENOENT (no such asset), or
 * another negative errno.
 */
int pk_streams_asset_source(pk_streams_t *s, const char *asset_id, char *out, size_t outlen,
                            bool *signed_playback);

/*
 * Whether a live stream or an upload ("live"/"vod", id) is packaged with
 * signed playback: from its timeline when loaded, else from its stored
 * state. An unknown stream is not. 0, or a negative errno from storage.
 */
int pk_streams_signed(pk_streams_t *s, const char *kind, const char *id, bool *signed_playback);

#endif /* PACKAGER_STREAMS_H */

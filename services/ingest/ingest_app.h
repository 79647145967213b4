/*
 * ingest_app.h - castbus-ingest's job, put together: the RTMP/RTMPS and SRT
 * listeners, the hub of live streams, the segment writer, key checks,
 * live state and statistics.
 *
 * Threads: see ingest_net.h, ingest_srt.h, ingest_writer.h; plus a worker
 * pool for key checks and live-state writes (database and storage calls),
 * a statistics thread, and a PostgreSQL LISTEN thread for kicks sent to
 * another replica.
 */
#ifndef INGEST_APP_H
#define INGEST_APP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "deps.h"
#include "workq.h"

#include "ingest_hub.h"
#include "ingest_net.h"
#include "ingest_srt.h"
#include "ingest_writer.h"

typedef struct ingest_config {
    char *public_host;
    char *playback_base_url;
    char *listen_host;
    int64_t rtmp_port;
    int64_t rtmps_port;
    char *tls_cert;
    char *tls_key;
    int64_t srt_port;
    char *srt_passphrase;
    int64_t srt_latency_ms;
    int64_t segment_ms;
    int64_t max_segment_ms;
    int64_t part_target_ms;
    int64_t max_segment_bytes;
    int64_t backup_switch_ms;
    int64_t ts_jump_ms;
    int64_t handshake_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t max_message_bytes;
    int64_t max_connections;
    int64_t read_batch_us;
    int64_t auth_failures_max;
    int64_t auth_failure_window_ms;
    int64_t writer_threads;
    int64_t writer_queue;
    int64_t max_pending_segments;
    char *work_dir;
    int64_t stats_interval_ms;
    char *default_profile;
} ingest_config_t;

extern const cb_config_key_t ingest_config_keys[];

typedef struct ingest_app {
    ingest_config_t cfg;
    cb_deps_t deps;
    cb_daemon_t *daemon;
    char instance[160];
    cb_workq_t *workers;
    ingest_writer_t *writer;
    ingest_hub_t *hub;
    ingest_net_t *net;
    ingest_srt_t *srt;
    cb_pg_listener_t *kick_listener;
    pthread_t stats_thread;
    bool stats_started;
    pthread_mutex_t stats_lock;
    pthread_cond_t stats_cond;
    bool stopping;
    cb_metric_t *m_bitrate, *m_fps, *m_keyint, *m_live;
} ingest_app_t;

/*
 * Start everything (after the dependencies are connected) and attach the
 * ingest component (its drain stops the listeners, ends the publishes and
 * flushes the writer). Returns 0 or a negative errno after logging why.
 */
int ingest_app_start(ingest_app_t *app, cb_daemon_t *d);

/*
 * Kick a stream's publishers wherever they are: here if the stream is live
 * here, otherwise through the database to the replica that holds it.
 * Returns 1 when kicked here, 0 when passed on.
 */
int ingest_app_kick(ingest_app_t *app, const char *stream_id, const char *why);

/* The URLs a stream is published and played at (new reference). */
json_t *ingest_app_urls(const ingest_app_t *app, const char *stream_id, const char *key);

/* Live heartbeats older than this are stale (a dead instance). */
int64_t ingest_app_stale_ms(const ingest_app_t *app);

#endif /* INGEST_APP_H */

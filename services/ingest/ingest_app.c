/*
 * ingest_app.c - castbus-ingest's job put together; see ingest_app.h.
 */
#include "ingest_app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avlog.h"
#include "clock.h"
#include "log.h"

#include "ingest_events.h"
#include "ingest_store.h"

#define KICK_CHANNEL "castbus_ingest_kick"

const cb_config_key_t ingest_config_keys[] = {
    { .name = "public_host",
      .type = CB_CONFIG_STRING,
      .def = "127.0.0.1",
      .offset = offsetof(ingest_config_t, public_host),
      .help = "Host name encoders reach this service at, used in the publish URLs it hands out." },
    { .name = "playback_base_url",
      .type = CB_CONFIG_STRING,
      .def = "http://127.0.0.1:8090",
      .offset = offsetof(ingest_config_t, playback_base_url),
      .help = "Base URL of the packager origin, used in the playback URLs it hands out." },
    { .name = "listen_host",
      .type = CB_CONFIG_STRING,
      .def = "0.0.0.0",
      .offset = offsetof(ingest_config_t, listen_host),
      .help = "Address the RTMP, RTMPS and SRT listeners bind to." },
    { .name = "rtmp_port",
      .type = CB_CONFIG_INT,
      .def = "1935",
      .min = 0,
      .max = 65535,
      .offset = offsetof(ingest_config_t, rtmp_port),
      .help = "RTMP port (0: off)." },
    { .name = "rtmps_port",
      .type = CB_CONFIG_INT,
      .def = "1936",
      .min = 0,
      .max = 65535,
      .offset = offsetof(ingest_config_t, rtmps_port),
      .help = "RTMPS port (0: off; also off without a certificate)." },
    { .name = "tls_cert",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(ingest_config_t, tls_cert),
      .help = "PEM certificate chain for RTMPS." },
    { .name = "tls_key",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(ingest_config_t, tls_key),
      .help = "PEM private key for RTMPS." },
    { .name = "srt_port",
      .type = CB_CONFIG_INT,
      .def = "9000",
      .min = 0,
      .max = 65535,
      .offset = offsetof(ingest_config_t, srt_port),
      .help = "SRT port, UDP (0: off)." },
    { .name = "srt_passphrase",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_SECRET,
      .offset = offsetof(ingest_config_t, srt_passphrase),
      .help =
          "SRT passphrase (10 to 79 characters) that encrypts every SRT publish; empty: none." },
    { .name = "srt_latency",
      .type = CB_CONFIG_DURATION,
      .def = "120ms",
      .min = 20,
      .max = 10000,
      .offset = offsetof(ingest_config_t, srt_latency_ms),
      .help = "SRT receive latency (the loss recovery window)." },
    { .name = "segment_duration",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 500,
      .max = 30000,
      .offset = offsetof(ingest_config_t, segment_ms),
      .help = "Cut source segments at the first keyframe at or after this duration." },
    { .name = "max_segment_duration",
      .type = CB_CONFIG_DURATION,
      .def = "30s",
      .min = 1000,
      .max = 600000,
      .offset = offsetof(ingest_config_t, max_segment_ms),
      .help = "A publisher whose keyframes are further apart than this is refused." },
    { .name = "part_target",
      .type = CB_CONFIG_DURATION,
      .def = "1s",
      .min = 0,
      .max = 2000,
      .offset = offsetof(ingest_config_t, part_target_ms),
      .help = "Low latency: the transcoders write every segment as CMAF chunks of at most "
              "this long, the LL-HLS partial segments (PART-TARGET). Parts come a segment at "
              "a time, so keep 3 x this above the segment duration: hls.js gives a blocking "
              "reload max(3 x PART-TARGET, 0.8 x TARGETDURATION) (see docs/packager.md). "
              "0: whole segments only." },
    { .name = "max_segment_size",
      .type = CB_CONFIG_BYTES,
      .def = "128MiB",
      .min = 1 << 20,
      .max = 1LL << 31,
      .offset = offsetof(ingest_config_t, max_segment_bytes),
      .help = "Largest source segment." },
    { .name = "backup_switch",
      .type = CB_CONFIG_DURATION,
      .def = "3s",
      .min = 100,
      .max = 60000,
      .offset = offsetof(ingest_config_t, backup_switch_ms),
      .help = "A backup publisher takes over after the primary has sent nothing for this long." },
    { .name = "timestamp_jump",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 1000,
      .max = 3600000,
      .offset = offsetof(ingest_config_t, ts_jump_ms),
      .help = "A forward timestamp jump larger than this is treated as a discontinuity." },
    { .name = "handshake_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 100,
      .max = 600000,
      .offset = offsetof(ingest_config_t, handshake_timeout_ms),
      .help = "Time an RTMP client has to complete the handshake and connect, and an SRT "
              "handshake to complete." },
    { .name = "idle_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "15s",
      .min = 1000,
      .max = 3600000,
      .offset = offsetof(ingest_config_t, idle_timeout_ms),
      .help = "A publisher that sends nothing for this long is disconnected." },
    { .name = "max_message_size",
      .type = CB_CONFIG_BYTES,
      .def = "16MiB",
      .min = 65536,
      .max = 1LL << 30,
      .offset = offsetof(ingest_config_t, max_message_bytes),
      .help = "Largest RTMP message (a video frame) accepted." },
    { .name = "max_connections",
      .type = CB_CONFIG_INT,
      .def = "2000",
      .min = 1,
      .max = 1000000,
      .offset = offsetof(ingest_config_t, max_connections),
      .help = "Most RTMP/RTMPS connections at once (SRT publishers count separately)." },
    { .name = "read_batch",
      .type = CB_CONFIG_DURATION,
      .def = "50ms",
      .min = 0,
      .max = 500,
      .offset = offsetof(ingest_config_t, read_batch_us),
      .help = "Pause of the RTMP loop between rounds of reads while publishers send: one wakeup "
              "then serves many of them (about half the CPU per stream at 50ms), and frames wait "
              "at most this long before they are read. 0: read at once." },
    { .name = "auth_failures_max",
      .type = CB_CONFIG_INT,
      .def = "10",
      .min = 1,
      .max = 100000,
      .offset = offsetof(ingest_config_t, auth_failures_max),
      .help = "Wrong stream keys from one address before it is refused for a while." },
    { .name = "auth_failure_window",
      .type = CB_CONFIG_DURATION,
      .def = "1m",
      .min = 1000,
      .max = 86400000,
      .offset = offsetof(ingest_config_t, auth_failure_window_ms),
      .help = "The window in which auth_failures_max counts, and how long a refusal lasts." },
    { .name = "writer_threads",
      .type = CB_CONFIG_INT,
      .def = "2",
      .min = 1,
      .max = 64,
      .offset = offsetof(ingest_config_t, writer_threads),
      .help = "Threads writing segments to storage and announcing them." },
    { .name = "writer_queue",
      .type = CB_CONFIG_INT,
      .def = "1024",
      .min = 16,
      .max = 1000000,
      .offset = offsetof(ingest_config_t, writer_queue),
      .help = "Segments waiting to be written, all streams together." },
    { .name = "max_pending_segments",
      .type = CB_CONFIG_INT,
      .def = "450",
      .min = 1,
      .max = 100000,
      .offset = offsetof(ingest_config_t, max_pending_segments),
      .help = "Segments of one stream written but not yet acknowledged by Kafka; past it, "
              "publishing stops with an error." },
    { .name = "work_dir",
      .type = CB_CONFIG_STRING,
      .def = "/var/lib/castbus/work",
      .offset = offsetof(ingest_config_t, work_dir),
      .help = "Local directory for recordings in progress." },
    { .name = "stats_interval",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 500,
      .max = 600000,
      .offset = offsetof(ingest_config_t, stats_interval_ms),
      .help = "How often stream statistics are measured and published." },
    { .name = "default_profile",
      .type = CB_CONFIG_STRING,
      .def = "default",
      .offset = offsetof(ingest_config_t, default_profile),
      .help = "Ladder profile of streams created without one." },
    { .name = NULL },
};

int64_t ingest_app_stale_ms(const ingest_app_t *app)
{
    return 3 * app->cfg.stats_interval_ms + 5000;
}

/* ---- key checks ---- */

typedef struct auth_job {
    ingest_app_t *app;
    ingest_net_t *net;
    uint64_t conn_id;
    char key[INGEST_KEY_MAX];
} auth_job_t;

/* Worker thread (or libsrt's): key, then where the stream continues. */
static int check_key(ingest_app_t *app, const char *key, ingest_stream_info_t *info,
                     ingest_cursor_t *cursor, char *why, size_t whylen)
{
    int rc = ingest_store_verify_key(app->deps.db, key, info, why, whylen);

    if (rc)
        return rc;
    rc = ingest_writer_read_cursor(app->deps.storage, info->id, cursor);
    if (rc) {
        snprintf(why, whylen, "cannot read where stream '%s' continues: %s", info->id,
                 strerror(-rc));
        return rc;
    }
    return 0;
}

static void auth_work(void *arg)
{
    auth_job_t *j = arg;
    ingest_stream_info_t info;
    ingest_cursor_t cursor;
    char why[256] = "";
    int rc = check_key(j->app, j->key, &info, &cursor, why, sizeof(why));

    ingest_net_auth_result(j->net, j->conn_id, rc, &info, &cursor, why);
    free(j);
}

static void rtmp_auth(void *arg, ingest_net_t *net, uint64_t conn_id, const char *key,
                      const char *peer)
{
    ingest_app_t *app = arg;
    auth_job_t *j = calloc(1, sizeof(*j));

    (void) peer;
    if (!j) {
        ingest_net_auth_result(net, conn_id, -ENOMEM, NULL, NULL, "out of memory");
        return;
    }
    j->app = app;
    j->net = net;
    j->conn_id = conn_id;
    snprintf(j->key, sizeof(j->key), "%s", key);
    if (cb_workq_submit(app->workers, auth_work, j) != 0) {
        ingest_net_auth_result(net, conn_id, -EAGAIN, NULL, NULL,
                               "the server is busy checking keys; try again");
        free(j);
    }
}

static int srt_auth(void *arg, const char *key, ingest_stream_info_t *info, ingest_cursor_t *cursor,
                    char *why, size_t whylen)
{
    return check_key(arg, key, info, cursor, why, whylen);
}

/* ---- live state ---- */

typedef struct live_job {
    ingest_app_t *app;
    ingest_stream_info_t info;
    bool live;
    json_t *stats;
    char protocol[8];
    char peer[80];
    char reason[160];
    bool event;
} live_job_t;

static void live_work(void *arg)
{
    live_job_t *j = arg;
    char err[256];

    if (ingest_store_set_live(j->app->deps.db, j->info.id, j->app->instance, j->live, j->stats, err,
                              sizeof(err)))
        cb_log_warn("live state of stream '%s' not recorded: %s", j->info.id, err);
    json_decref(j->stats);
    free(j);
}

static void submit_live(ingest_app_t *app, const ingest_stream_info_t *info, bool live,
                        json_t *stats)
{
    live_job_t *j = calloc(1, sizeof(*j));

    if (!j) {
        json_decref(stats);
        return;
    }
    j->app = app;
    j->info = *info;
    j->live = live;
    j->stats = stats;
    if (cb_workq_submit(app->workers, live_work, j) != 0) {
        /* the next heartbeat says it again */
        json_decref(stats);
        free(j);
    }
}

static void on_live(void *arg, const ingest_stream_info_t *info, bool live, const char *protocol,
                    const char *peer, const char *reason)
{
    ingest_app_t *app = arg;

    ingest_events_publish(app->deps.producer, info, live, protocol, peer, reason);
    submit_live(app, info, live, json_pack("{s:s, s:s}", "protocol", protocol, "publisher", peer));
    if (!live) {
        const char *labels[] = { info->id };
        cb_metric_set(app->m_bitrate, labels, 0);
        cb_metric_set(app->m_fps, labels, 0);
    }
}

/* ---- statistics ---- */

static void on_stats(void *arg, const ingest_stream_info_t *info, json_t *stats)
{
    ingest_app_t *app = arg;
    const char *labels[] = { info->id };

    cb_metric_set(app->m_bitrate, labels,
                  (double) json_integer_value(json_object_get(stats, "bitrate_bps")));
    cb_metric_set(app->m_fps, labels, json_real_value(json_object_get(stats, "fps")));
    cb_metric_set(app->m_keyint, labels,
                  json_real_value(json_object_get(stats, "keyframe_interval_s")));
    ingest_events_stats(app->deps.producer, info, stats);
    submit_live(app, info, true, stats); /* takes the reference */
}

static void *stats_main(void *arg)
{
    ingest_app_t *app = arg;

    pthread_setname_np(pthread_self(), "ingest-stats");
    pthread_mutex_lock(&app->stats_lock);
    while (!app->stopping) {
        struct timespec until;

        cb_clock_deadline(&until, app->cfg.stats_interval_ms * 1000);
        pthread_cond_timedwait(&app->stats_cond, &app->stats_lock, &until);
        if (app->stopping)
            break;
        pthread_mutex_unlock(&app->stats_lock);
        ingest_hub_collect(app->hub, on_stats, app);
        cb_metric_set(app->m_live, NULL, (double) ingest_hub_live_count(app->hub));
        pthread_mutex_lock(&app->stats_lock);
    }
    pthread_mutex_unlock(&app->stats_lock);
    return NULL;
}

/* ---- kicks ---- */

static void on_kick_notice(void *arg, const char *payload)
{
    ingest_app_t *app = arg;

    if (ingest_hub_kick(app->hub, payload, "kicked by an operator") == 0)
        cb_log_info("kicked stream '%s' on request of another replica", payload);
}

int ingest_app_kick(ingest_app_t *app, const char *stream_id, const char *why)
{
    char err[256];

    if (ingest_hub_kick(app->hub, stream_id, why) == 0)
        return 1;
    if (cb_pg_notify(app->deps.db, KICK_CHANNEL, stream_id, err, sizeof(err)))
        cb_log_warn("kick of stream '%s' not passed on: %s", stream_id, err);
    return 0;
}

json_t *ingest_app_urls(const ingest_app_t *app, const char *stream_id, const char *key)
{
    const ingest_config_t *c = &app->cfg;
    char rtmp[512], rtmps[512], srt[512], hls[512], dash[512];
    json_t *publish;

    if (c->rtmp_port == 1935)
        snprintf(rtmp, sizeof(rtmp), "rtmp://%s/live/%s", c->public_host, key);
    else
        snprintf(rtmp, sizeof(rtmp), "rtmp://%s:%lld/live/%s", c->public_host,
                 (long long) c->rtmp_port, key);
    snprintf(rtmps, sizeof(rtmps), "rtmps://%s:%lld/live/%s", c->public_host,
             (long long) c->rtmps_port, key);
    snprintf(srt, sizeof(srt), "srt://%s:%lld?streamid=publish:live/%s", c->public_host,
             (long long) c->srt_port, key);
    snprintf(hls, sizeof(hls), "%s/live/%s/master.m3u8", c->playback_base_url, stream_id);
    snprintf(dash, sizeof(dash), "%s/live/%s/manifest.mpd", c->playback_base_url, stream_id);
    publish = json_object();
    if (key) {
        if (c->rtmp_port > 0)
            json_object_set_new(publish, "rtmp", json_string(rtmp));
        if (c->rtmps_port > 0 && c->tls_cert && *c->tls_cert)
            json_object_set_new(publish, "rtmps", json_string(rtmps));
        if (c->srt_port > 0)
            json_object_set_new(publish, "srt", json_string(srt));
    }
    return json_pack("{s:o, s:{s:s, s:s}}", "publish", publish, "playback", "hls", hls, "dash",
                     dash);
}

static void recover_work(void *arg)
{
    ingest_app_t *app = arg;

    ingest_writer_recover_recordings(app->writer);
}

/* ---- the component: drain and free ---- */

static void app_drain(void *obj, int64_t deadline_ms)
{
    ingest_app_t *app = obj;

    /* publishers go (their streams are not ended: encoders reconnect elsewhere) */
    ingest_hub_shutdown(app->hub, "the server is shutting down; reconnect");
    if (app->srt)
        ingest_srt_stop(app->srt);
    if (app->net)
        ingest_net_stop(app->net);
    /* what was cut is written and announced */
    ingest_writer_drain(app->writer, deadline_ms);
    pthread_mutex_lock(&app->stats_lock);
    app->stopping = true;
    pthread_cond_signal(&app->stats_cond);
    pthread_mutex_unlock(&app->stats_lock);
}

static void app_free(void *obj)
{
    ingest_app_t *app = obj;

    if (app->stats_started) {
        pthread_mutex_lock(&app->stats_lock);
        app->stopping = true;
        pthread_cond_signal(&app->stats_cond);
        pthread_mutex_unlock(&app->stats_lock);
        pthread_join(app->stats_thread, NULL);
    }
    cb_pg_listen_stop(app->kick_listener);
    ingest_srt_free(app->srt);
    ingest_net_free(app->net);
    /* the workers may still hand results to the net: stop them after it */
    cb_workq_free(app->workers);
    ingest_hub_free(app->hub);
    ingest_writer_free(app->writer);
}

static const cb_component_ops_t ingest_component = {
    .name = "ingest",
    .ready = NULL,
    .drain = app_drain,
    .free = app_free,
};

int ingest_app_start(ingest_app_t *app, cb_daemon_t *d)
{
    cb_metrics_t *m = cb_daemon_metrics(d);
    ingest_writer_config_t wc = {
        .threads = app->cfg.writer_threads,
        .queue_max = app->cfg.writer_queue,
        .max_pending = app->cfg.max_pending_segments,
        .work_dir = app->cfg.work_dir,
        .part_target_ms = app->cfg.part_target_ms,
    };
    ingest_hub_config_t hc = {
        .segment_ms = app->cfg.segment_ms,
        .max_segment_ms = app->cfg.max_segment_ms,
        .max_segment_bytes = app->cfg.max_segment_bytes,
        .backup_switch_ms = app->cfg.backup_switch_ms,
        .ts_jump_ms = app->cfg.ts_jump_ms,
    };
    ingest_net_config_t nc = {
        .host = app->cfg.listen_host,
        .rtmp_port = app->cfg.rtmp_port,
        .rtmps_port = app->cfg.rtmps_port,
        .tls_cert = app->cfg.tls_cert,
        .tls_key = app->cfg.tls_key,
        .handshake_timeout_ms = app->cfg.handshake_timeout_ms,
        .idle_timeout_ms = app->cfg.idle_timeout_ms,
        .max_message_bytes = app->cfg.max_message_bytes,
        .max_connections = app->cfg.max_connections,
        .auth_failures_max = app->cfg.auth_failures_max,
        .auth_failure_window_ms = app->cfg.auth_failure_window_ms,
        .read_batch_us = app->cfg.read_batch_us * 1000,
    };
    ingest_srt_config_t sc = {
        .host = app->cfg.listen_host,
        .port = app->cfg.srt_port,
        .passphrase = app->cfg.srt_passphrase,
        .latency_ms = app->cfg.srt_latency_ms,
        .max_connections = app->cfg.max_connections,
        .idle_timeout_ms = app->cfg.idle_timeout_ms,
        .handshake_timeout_ms = app->cfg.handshake_timeout_ms,
    };
    char host[128] = "", err[512] = "";
    int rc;

    app->daemon = d;
    cb_avlog_install();
    gethostname(host, sizeof(host) - 1);
    snprintf(app->instance, sizeof(app->instance), "%s:%d", host, (int) getpid());
    pthread_mutex_init(&app->stats_lock, NULL);
    pthread_cond_init(&app->stats_cond, NULL);
    app->m_bitrate = cb_metrics_gauge(m, "castbus_ingest_bitrate_bps",
                                      "Ingest bitrate of each live stream, last window.",
                                      (const char *[]){ "stream", NULL });
    app->m_fps = cb_metrics_gauge(m, "castbus_ingest_fps", "Video frame rate of each live stream.",
                                  (const char *[]){ "stream", NULL });
    app->m_keyint = cb_metrics_gauge(m, "castbus_ingest_keyframe_interval_seconds",
                                     "Average time between keyframes of each live stream.",
                                     (const char *[]){ "stream", NULL });
    app->m_live =
        cb_metrics_gauge(m, "castbus_ingest_live_streams", "Streams live on this instance.", NULL);
    if (app->cfg.srt_passphrase && *app->cfg.srt_passphrase &&
        (strlen(app->cfg.srt_passphrase) < 10 || strlen(app->cfg.srt_passphrase) > 79)) {
        cb_log_error("configuration error: CASTBUS_SRT_PASSPHRASE must have 10 to 79 characters");
        return -EINVAL;
    }
    rc = cb_workq_new("ingest-worker", 4, 4096, &app->workers);
    if (rc == 0)
        rc = ingest_writer_new(&wc, app->deps.storage, app->deps.producer, m, &app->writer);
    if (rc == 0)
        rc = ingest_hub_new(&hc, app->writer, m, on_live, app, &app->hub);
    if (rc == 0)
        rc = ingest_net_new(&nc, app->hub, m, rtmp_auth, app, &app->net, err, sizeof(err));
    if (rc == 0)
        rc = ingest_srt_new(&sc, app->hub, ingest_net_ratelimit(app->net), m, srt_auth, app,
                            &app->srt);
    if (rc == 0)
        rc = cb_daemon_attach(d, &ingest_component, app);
    if (rc == 0)
        rc = ingest_net_start(app->net, err, sizeof(err));
    if (rc == 0)
        rc = ingest_srt_start(app->srt, err, sizeof(err));
    if (rc == 0)
        rc = cb_pg_listen_start(&app->deps.pg_cfg, KICK_CHANNEL, on_kick_notice, app,
                                &app->kick_listener);
    if (rc == 0) {
        rc = -pthread_create(&app->stats_thread, NULL, stats_main, app);
        app->stats_started = rc == 0;
    }
    if (rc) {
        cb_log_error("ingest cannot start: %s", err[0] ? err : strerror(-rc));
        return rc;
    }
    /* what a crash left behind (unacknowledged jobs, interrupted recordings), off the main thread */
    if (cb_workq_submit(app->workers, recover_work, app) != 0)
        recover_work(app);
    return 0;
}

/*
 * packager_streams.c - results into manifests; see packager_streams.h.
 *
 * A result goes: decoded -> its stream's timeline (in order, or held) ->
 * the DVR window trimmed (segments that left it are queued for deletion
 * after the grace period, unless the stream is recorded) -> the manifests
 * rendered and put into storage (each put is atomic) -> the state stored
 * when what replay cannot derive changed. Only then is the offset free to
 * be committed, so a crash anywhere before replays the result.
 *
 * A stream the packager has not seen since it started is rebuilt on first
 * touch: its state from storage, then the worker's done records from the
 * state's first job on, in order, through the same timeline code.
 */
#include "packager_streams.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cb_proto.h"
#include "clock.h"
#include "defs.h"
#include "log.h"
#include "packager_render.h"
#include "packager_text.h"
#include "packager_timeline.h"

#define TICK_MS          200
#define MAX_DELETES      200000 /* queued deletions; past it files go at once */
#define MAX_DONE_RECORDS 200000 /* replayed per stream at most */
#define MANIFEST_FILES   (PK_MAX_RENDITIONS + 2)

const cb_config_key_t pk_config_keys[] = {
    { .name = "workers",
      .type = CB_CONFIG_INT,
      .def = "4",
      .min = 1,
      .max = 64,
      .offset = offsetof(pk_config_t, workers),
      .help = "Transcode results handled at once (streams are independent; one stream's are "
              "serialised by its lock)." },
    { .name = "blocking_reload",
      .type = CB_CONFIG_BOOL,
      .def = "true",
      .offset = offsetof(pk_config_t, blocking_reload),
      .help = "Live media playlists offer blocking reloads (EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD, "
              "?_HLS_msn=N held at the origin until segment N is listed) and delta updates "
              "(CAN-SKIP-UNTIL, ?_HLS_skip=YES). Turn off when players reach the playlists "
              "through something that drops the query." },
    { .name = "gap_wait",
      .type = CB_CONFIG_DURATION,
      .def = "6s",
      .min = 0,
      .max = 600000,
      .offset = offsetof(pk_config_t, gap_wait_ms),
      .help = "How long results behind a missing one wait for it before its time range is "
              "published as a gap." },
    { .name = "delete_grace",
      .type = CB_CONFIG_DURATION,
      .def = "1m",
      .min = 0,
      .max = 86400000,
      .offset = offsetof(pk_config_t, delete_grace_ms),
      .help = "Segments that left the DVR window are deleted from storage this long after (players "
              "and edges may still be fetching them)." },
    { .name = "segment_duration",
      .type = CB_CONFIG_DURATION,
      .def = "2s",
      .min = 500,
      .max = 30000,
      .offset = offsetof(pk_config_t, segment_ms),
      .help = "Target segment duration: the floor of EXT-X-TARGETDURATION and the length gaps are "
              "cut into." },
    { .name = "public_url",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(pk_config_t, public_url),
      .help = "Base URL players and CDN edges reach this origin at (DASH UTCTiming); empty: "
              "http://127.0.0.1:<origin_port>." },
    { .name = NULL },
};

typedef struct written {
    char name[48];
    uint64_t hash;
} written_t;

typedef struct stream {
    char kind[8]; /* "live" or "vod" */
    char id[65];
    char prefix[80]; /* "<kind>/<id>" */
    pthread_mutex_t lock;
    pk_timeline_t *tl;
    bool loaded;
    bool dirty;          /* manifests not yet written as they are */
    bool vod_pending;    /* ended, VOD asset not yet written */
    int64_t vod_end_seq; /* the end the VOD asset was written for */
    int64_t updated_ms;  /* wall clock of the last manifest update */
    int64_t latency_ms;  /* result durable -> manifests updated, last */
    written_t written[MANIFEST_FILES];
    size_t nwritten;
} stream_t;

typedef struct deletion {
    char key[CB_STORAGE_KEY_MAX];
    int64_t due_ms;
} deletion_t;

struct pk_streams {
    pk_config_t cfg;
    void (*on_publish)(void *arg); /* manifests of a stream were written */
    void *on_publish_arg;
    cb_kafka_producer_t *producer;
    cb_storage_t *storage;
    cb_kafka_consumer_t *consumer;
    char utc_timing[256];

    pthread_mutex_t lock; /* streams, deletions, stopping */
    stream_t **streams;
    size_t nstreams, capstreams;
    deletion_t *dels; /* a FIFO: due times only grow */
    size_t dhead, dcount, dcap;

    pthread_t ticker;
    bool ticker_started;
    pthread_cond_t tick_cond;
    bool stopping;

    cb_metric_t *m_results, *m_update, *m_gaps, *m_streams, *m_deleted, *m_vod, *m_errors;
};

/* ---- small helpers ---- */

static uint64_t fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int produce(pk_streams_t *s, const char *topic, const char *key, char *text, size_t len)
{
    char err[256];
    int rc;

    if (!text)
        return -ENOMEM;
    rc = cb_kafka_produce_sync(s->producer, topic, key, strlen(key), text, len, NULL, 0, 10000, err,
                               sizeof(err));
    if (rc)
        cb_log_warn("packager: producing to %s failed: %s", topic, err);
    free(text);
    return rc;
}

/* A purge of the asset's manifests (and, for a takedown, everything tagged with it). */
static int purge_asset(pk_streams_t *s, const char *asset, bool takedown, const char *reason)
{
    char id[96], u[3][160], tag[80];
    char *urls[3] = { u[0], u[1], u[2] }, *tags[1] = { tag };
    size_t len;

    snprintf(id, sizeof(id), "%s-%" PRId64, asset, cb_clock_wall_ms());
    snprintf(u[0], sizeof(u[0]), "/vod/%s/master.m3u8", asset);
    snprintf(u[1], sizeof(u[1]), "/vod/%s/manifest.mpd", asset);
    snprintf(tag, sizeof(tag), "vod/%s", asset);
    cb_proto_purge_request_t m = {
        .id = id,
        .urls = takedown ? NULL : urls,
        .urls_count = takedown ? 0 : 2,
        .tags = takedown ? tags : NULL,
        .tags_count = takedown ? 1 : 0,
        .requested_by = "packager",
        .requested_at_ms = cb_clock_wall_ms(),
        .reason = (char *) reason,
    };
    char *text = cb_proto_purge_request_encode(&m, &len);

    return produce(s, CB_PROTO_TOPIC_CDN_PURGES, id, text, len);
}

static int package_event(pk_streams_t *s, int type, const char *stream_id, const char *asset,
                         int64_t duration_ms, const char *reason)
{
    char hls[160], dash[160];
    size_t len;

    snprintf(hls, sizeof(hls), "/vod/%s/master.m3u8", asset);
    snprintf(dash, sizeof(dash), "/vod/%s/manifest.mpd", asset);
    cb_proto_package_event_t m = {
        .type = type,
        .stream_id = (char *) stream_id,
        .asset_id = (char *) asset,
        .at_ms = cb_clock_wall_ms(),
        .hls_path = type == CB_PROTO_PACKAGE_EVENT_TYPE_VOD_READY ? hls : NULL,
        .dash_path = type == CB_PROTO_PACKAGE_EVENT_TYPE_VOD_READY ? dash : NULL,
        .duration_ms = duration_ms,
        .reason = (char *) reason,
    };
    char *text = cb_proto_package_event_encode(&m, &len);

    return produce(s, CB_PROTO_TOPIC_MEDIA_PACKAGE_EVENTS, stream_id, text, len);
}

/* ---- deletions ---- */

static void delete_later(pk_streams_t *s, const char *key)
{
    deletion_t *d;

    pthread_mutex_lock(&s->lock);
    if (s->dcount == s->dcap && s->dcap < MAX_DELETES) {
        size_t cap = s->dcap ? s->dcap * 2 : 1024, i;
        deletion_t *n = malloc(cap * sizeof(*n));
        if (n) {
            for (i = 0; i < s->dcount; i++)
                n[i] = s->dels[(s->dhead + i) % s->dcap];
            free(s->dels);
            s->dels = n;
            s->dcap = cap;
            s->dhead = 0;
        }
    }
    if (s->dcount == s->dcap) {
        pthread_mutex_unlock(&s->lock);
        cb_storage_remove(s->storage, key); /* no room to wait */
        return;
    }
    d = &s->dels[(s->dhead + s->dcount++) % s->dcap];
    snprintf(d->key, sizeof(d->key), "%s", key);
    d->due_ms = cb_clock_mono_ms() + s->cfg.delete_grace_ms;
    pthread_mutex_unlock(&s->lock);
}

typedef struct gone_ctx {
    pk_streams_t *s;
    stream_t *st;
} gone_ctx_t;

/* The worker's done record of job seq, "<kind>/<id>/done/<seq, 8 digits>.json". */
static void done_key(char key[CB_STORAGE_KEY_MAX], const stream_t *st, int64_t seq)
{
    snprintf(key, CB_STORAGE_KEY_MAX, "%s/done/%08" PRId64 ".json", st->prefix, seq);
}

/* An entry left the window: its files go after the grace period. */
static void entry_gone(void *arg, const pk_timeline_t *tl, const pk_entry_t *e)
{
    gone_ctx_t *g = arg;
    char key[CB_STORAGE_KEY_MAX];
    size_t i;

    for (i = 0; e->pieces && i < e->npieces && i < tl->nrend; i++) {
        if (e->pieces[i].dur_90k <= 0)
            continue;
        snprintf(key, sizeof(key), "%s/%s/%013" PRId64 ".m4s", g->st->prefix, tl->rend[i].name,
                 e->pieces[i].start_90k);
        delete_later(g->s, key);
    }
    /* the job's done record goes with its last entry */
    if (e->part == 0 || e->gap) {
        done_key(key, g->st, e->seq);
        delete_later(g->s, key);
    }
}

/* ---- manifests ---- */

typedef struct write_ctx {
    pk_streams_t *s;
    stream_t *st;
    const char *prefix;
    bool track; /* skip files whose bytes did not change */
} write_ctx_t;

static int write_file(void *arg, const char *name, const cb_buf_t *b)
{
    write_ctx_t *w = arg;
    char key[CB_STORAGE_KEY_MAX];
    uint64_t h = fnv1a(b->data, b->len);
    written_t *slot = NULL;
    size_t i;
    int rc;

    if (w->track) {
        for (i = 0; i < w->st->nwritten; i++)
            if (strcmp(w->st->written[i].name, name) == 0)
                slot = &w->st->written[i];
        if (slot && slot->hash == h)
            return 0; /* same bytes: keep the ETag */
    }
    snprintf(key, sizeof(key), "%s/%s", w->prefix, name);
    rc = cb_storage_put(w->s->storage, key, b->data, b->len);
    if (rc)
        return rc;
    if (w->track && !slot && w->st->nwritten < MANIFEST_FILES) {
        slot = &w->st->written[w->st->nwritten++];
        snprintf(slot->name, sizeof(slot->name), "%s", name);
    }
    if (slot)
        slot->hash = h;
    return 0;
}

static int write_state(pk_streams_t *s, stream_t *st)
{
    char key[CB_STORAGE_KEY_MAX];
    json_t *j = pk_tl_state_dump(st->tl);
    char *text;
    int rc;

    if (!j)
        return -ENOMEM;
    json_object_set_new(j, "signed_playback", json_boolean(st->tl->packaging.signed_playback));
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return -ENOMEM;
    snprintf(key, sizeof(key), "%s/packager/state.json", st->prefix);
    rc = cb_storage_put(s->storage, key, text, strlen(text));
    free(text);
    return rc;
}

static void asset_id_of(const stream_t *st, char *out, size_t outlen)
{
    if (strcmp(st->kind, "vod") == 0)
        snprintf(out, outlen, "%s", st->id);
    else
        snprintf(out, outlen, "%s-%" PRId64, st->id, st->tl->session_seq);
}

/* The ended stream as a VOD asset: manifests, asset.json, event, purge. */
static int write_vod(pk_streams_t *s, stream_t *st)
{
    const pk_timeline_t *tl = st->tl;
    char asset[96], prefix[128], key[CB_STORAGE_KEY_MAX];
    write_ctx_t w = { s, st, prefix, false };
    json_t *files = json_array(), *rends = json_array(), *doc;
    int64_t duration_ms = pk_tl_duration_90k(tl) / 90;
    char *text;
    size_t i, k;
    int rc;

    asset_id_of(st, asset, sizeof(asset));
    snprintf(prefix, sizeof(prefix), "vod/%s", asset);
    rc = pk_render(tl, &(pk_render_opts_t){ .vod = true, .now_ms = cb_clock_wall_ms() }, write_file,
                   &w);
    if (rc)
        goto out;
    for (k = 0; files && rends && k < tl->nrend; k++) {
        json_array_append_new(rends, json_string(tl->rend[k].name));
        for (i = 0; i < tl->n; i++) {
            const pk_entry_t *e = pk_tl_entry(tl, i);
            char f[CB_STORAGE_KEY_MAX];
            if (e->gap || !e->pieces || k >= e->npieces || e->pieces[k].dur_90k <= 0)
                continue;
            snprintf(f, sizeof(f), "%s/%013" PRId64 ".m4s", tl->rend[k].name,
                     e->pieces[k].start_90k);
            json_array_append_new(files, json_string(f));
        }
    }
    doc = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:b, s:o, s:o}", "asset_id", asset,
                    "stream_id", st->id, "kind", st->kind, "source", st->prefix, "created_ms",
                    (json_int_t) cb_clock_wall_ms(), "duration_ms", (json_int_t) duration_ms,
                    "segments", (json_int_t) tl->n, "signed_playback",
                    tl->packaging.signed_playback, "renditions", rends, "files", files);
    files = rends = NULL;
    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(key, sizeof(key), "%s/asset.json", prefix);
    rc = cb_storage_put(s->storage, key, text, strlen(text));
    free(text);
    if (rc)
        goto out;
    /* edges may hold a 404 or an older copy of these manifests */
    purge_asset(s, asset, false, "asset published");
    rc = package_event(s, CB_PROTO_PACKAGE_EVENT_TYPE_VOD_READY, st->id, asset, duration_ms, NULL);
    if (rc == 0) {
        cb_log_info("stream %s ended: VOD asset %s (%lld segments, %lld ms)", st->prefix, asset,
                    (long long) tl->n, (long long) duration_ms);
        cb_metric_add(s->m_vod, NULL, 1);
    }
out:
    json_decref(files);
    json_decref(rends);
    return rc;
}

/* After the timeline changed: trim, manifests, state, VOD. Stream locked. */
static void publish(pk_streams_t *s, stream_t *st, bool state_changed)
{
    pk_timeline_t *tl = st->tl;
    gone_ctx_t g = { s, st };
    write_ctx_t w = { s, st, st->prefix, true };
    int64_t window = tl->packaging.dvr_window_s;
    int rc;

    if (!tl->packaging.record && pk_tl_trim(tl, window, entry_gone, &g) > 0)
        state_changed = true;
    rc = pk_render(tl,
                   &(pk_render_opts_t){ .window_s = window,
                                        .now_ms = cb_clock_wall_ms(),
                                        .utc_timing_uri = s->utc_timing,
                                        .can_block_reload = s->cfg.blocking_reload },
                   write_file, &w);
    st->dirty = rc != 0 && rc != -ENODATA;
    if (rc == 0) {
        st->updated_ms = cb_clock_wall_ms();
        if (tl->last_finished_ms > 0) {
            st->latency_ms = st->updated_ms - tl->last_finished_ms;
            cb_metric_observe(s->m_update, NULL, (double) CB_MAX(0, st->latency_ms) / 1000.0);
        }
        if (s->on_publish)
            s->on_publish(s->on_publish_arg);
    } else if (st->dirty) {
        cb_log_warn("stream %s: manifests not written (%s); retrying", st->prefix, strerror(-rc));
        cb_metric_add(s->m_errors, (const char *[]){ "storage" }, 1);
    }
    if (state_changed && write_state(s, st)) {
        st->dirty = true;
        cb_metric_add(s->m_errors, (const char *[]){ "storage" }, 1);
    }
    if (tl->ended && st->vod_end_seq != tl->end_seq)
        st->vod_pending = true;
    if (st->vod_pending && !st->dirty) {
        if (write_vod(s, st) == 0) {
            st->vod_pending = false;
            st->vod_end_seq = tl->end_seq;
        } else {
            st->dirty = true;
        }
    }
}

/* ---- the registry and rebuilding ---- */

static int seq_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;

    return x < y ? -1 : x > y;
}

typedef struct seq_list {
    int64_t *v;
    size_t n, cap;
    int64_t min;
    int64_t stale_from; /* done records in [stale_from, min) are leftovers */
    struct seq_list *stale;
} seq_list_t;

/* 0, or -1 when the list is full (MAX_DONE_RECORDS) or memory is short. */
static int seq_list_push(seq_list_t *l, int64_t seq)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        int64_t *n;
        if (cap > MAX_DONE_RECORDS)
            return -1;
        n = realloc(l->v, cap * sizeof(*n));
        if (!n)
            return -1;
        l->v = n;
        l->cap = cap;
    }
    l->v[l->n++] = seq;
    return 0;
}

static int collect_done(void *arg, const char *key, const cb_storage_stat_t *stt)
{
    seq_list_t *l = arg;
    const char *name = strrchr(key, '/');
    long long seq;
    char tail[8];

    (void) stt;
    if (!name || sscanf(name + 1, "%lld.%7s", &seq, tail) != 2 || strcmp(tail, "json") != 0)
        return 0;
    if (seq >= l->min)
        return seq_list_push(l, seq) ? 1 : 0;
    if (l->stale && seq >= l->stale_from)
        seq_list_push(l->stale, seq); /* when full, the rest waits for another rebuild */
    return 0;
}

/* The done record at key, read from storage into b and decoded into d (to
 * release either way); 0 or an error. */
static int read_done(pk_streams_t *s, const char *key, cb_buf_t *b, cb_proto_transcode_done_t *d)
{
    cb_jsonv_error_t verr;

    cb_buf_reset(b);
    if (cb_storage_get(s->storage, key, b))
        return -EIO;
    return cb_proto_transcode_done_decode(b->data, b->len, d, &verr) ? -EINVAL : 0;
}

/*
 * A JSON object from storage: the document, or NULL with *rc the storage's
 * error (-ENOENT...) or -EINVAL when it is not a JSON object (je, when
 * given, says why).
 */
static json_t *get_json(pk_streams_t *s, const char *key, size_t max, int *rc, json_error_t *je)
{
    json_error_t ignored;
    json_t *doc = NULL;
    cb_buf_t b;

    cb_buf_init(&b, max);
    *rc = cb_storage_get(s->storage, key, &b);
    if (*rc == 0) {
        doc = json_loadb(b.data, b.len, 0, je ? je : &ignored);
        if (!json_is_object(doc)) {
            if (doc && je)
                snprintf(je->text, sizeof(je->text), "not a JSON object");
            json_decref(doc);
            doc = NULL;
            *rc = -EINVAL;
        }
    }
    cb_buf_release(&b);
    return doc;
}

/* Rebuild a stream from its state and the done records. Stream locked. */
/*
 * Done records of the session from before the window, with the segments
 * they name: what deletions queued before a stop (or a crash) left behind.
 * They go after the grace period like the others; init segments stay (the
 * window may still use them), and earlier sessions' jobs belong to their
 * VOD assets.
 */
static void sweep_leftovers(pk_streams_t *s, stream_t *st, const seq_list_t *stale, cb_buf_t *b)
{
    char key[CB_STORAGE_KEY_MAX];
    size_t i, r, k, files = 0;

    for (i = 0; i < stale->n; i++) {
        cb_proto_transcode_done_t d = { 0 };

        done_key(key, st, stale->v[i]);
        if (read_done(s, key, b, &d) == 0) {
            for (r = 0; r < d.renditions_count; r++)
                for (k = 0; k < d.renditions[r].segments_count; k++) {
                    const char *path = d.renditions[r].segments[k].path;
                    /* only the stream's own files */
                    if (path && strncmp(path, st->prefix, strlen(st->prefix)) == 0 &&
                        path[strlen(st->prefix)] == '/' && !strstr(path, "..")) {
                        delete_later(s, path);
                        files++;
                    }
                }
        }
        cb_proto_transcode_done_release(&d);
        delete_later(s, key);
    }
    if (stale->n)
        cb_log_info("stream %s: %zu done records and %zu segments from before the window were "
                    "left in storage; deleted after the grace period",
                    st->prefix, stale->n, files);
}

static int load_stream(pk_streams_t *s, stream_t *st)
{
    char key[CB_STORAGE_KEY_MAX], err[256];
    seq_list_t l = { 0 }, stale = { 0 };
    json_error_t je;
    json_t *state;
    cb_buf_t b;
    size_t i, replayed = 0;
    int rc;

    snprintf(key, sizeof(key), "%s/packager/state.json", st->prefix);
    state = get_json(s, key, 16 << 20, &rc, &je);
    if (rc == -ENOENT) {
        st->loaded = true;
        return 0;
    }
    if (rc && rc != -EINVAL)
        return rc;
    if (state) {
        rc = pk_tl_state_load(st->tl, state, err, sizeof(err));
        st->tl->packaging.signed_playback = json_is_true(json_object_get(state, "signed_playback"));
        json_decref(state);
    }
    if (rc) {
        /* unusable: start over rather than refuse the stream forever */
        cb_log_error("stream %s: %s is unusable (%s); its timeline starts over", st->prefix, key,
                     state ? err : je.text);
        st->loaded = true;
        return 0;
    }
    cb_buf_init(&b, 16 << 20);
    st->vod_end_seq = st->tl->ended ? st->tl->end_seq : -1;
    l.min = st->tl->first_seq;
    /* the session's jobs before the window: left by deletions a stop cut short */
    l.stale_from = st->tl->session_seq >= 0 ? st->tl->session_seq : l.min;
    l.stale = &stale;
    snprintf(key, sizeof(key), "%s/done/", st->prefix);
    rc = cb_storage_list(s->storage, key, collect_done, &l);
    if (rc && rc != -ENOENT) {
        free(l.v);
        free(stale.v);
        cb_buf_release(&b);
        return rc;
    }
    sweep_leftovers(s, st, &stale, &b);
    free(stale.v);
    qsort(l.v, l.n, sizeof(*l.v), seq_cmp);
    for (i = 0; i < l.n; i++) {
        cb_proto_transcode_done_t *d = calloc(1, sizeof(*d));
        bool changed;

        done_key(key, st, l.v[i]);
        if (!d || read_done(s, key, &b, d)) {
            cb_log_warn("stream %s: done record %s unreadable; skipped", st->prefix, key);
            if (d)
                cb_proto_transcode_done_release(d);
            free(d);
            continue;
        }
        if (pk_tl_add(st->tl, d, cb_clock_mono_ms(), &changed, err, sizeof(err)) >= 0)
            replayed++;
    }
    pk_tl_advance(st->tl);
    free(l.v);
    cb_buf_release(&b);
    st->loaded = true;
    /* what the replay published may be newer than the manifests in storage
     * (the results it went through need not come again from the topic) */
    st->dirty = true;
    cb_log_info("stream %s rebuilt from storage: %zu results replayed, %zu segments listed from "
                "media sequence %lld",
                st->prefix, replayed, st->tl->n,
                (long long) (st->tl->n ? pk_tl_entry(st->tl, 0)->msn : st->tl->next_msn));
    return 0;
}

/* The stream, created if new (not loaded yet). */
static stream_t *stream_get(pk_streams_t *s, const char *kind, const char *id, bool create)
{
    stream_t *st = NULL;
    size_t i;

    pthread_mutex_lock(&s->lock);
    for (i = 0; i < s->nstreams; i++) {
        if (strcmp(s->streams[i]->id, id) == 0 && strcmp(s->streams[i]->kind, kind) == 0) {
            st = s->streams[i];
            break;
        }
    }
    if (!st && create) {
        if (s->nstreams == s->capstreams) {
            size_t cap = s->capstreams ? s->capstreams * 2 : 16;
            stream_t **n = realloc(s->streams, cap * sizeof(*n));
            if (!n)
                goto out;
            s->streams = n;
            s->capstreams = cap;
        }
        st = calloc(1, sizeof(*st));
        if (!st)
            goto out;
        st->tl = pk_tl_new(id, s->cfg.segment_ms * 90);
        if (!st->tl) {
            free(st);
            st = NULL;
            goto out;
        }
        snprintf(st->kind, sizeof(st->kind), "%s", kind);
        snprintf(st->id, sizeof(st->id), "%s", id);
        snprintf(st->prefix, sizeof(st->prefix), "%s/%s", kind, id);
        st->vod_end_seq = -1;
        pthread_mutex_init(&st->lock, NULL);
        s->streams[s->nstreams++] = st;
        cb_metric_set(s->m_streams, NULL, (double) s->nstreams);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* The stream locked and loaded, or NULL (unlocked) with rc set. */
static stream_t *stream_open(pk_streams_t *s, const char *kind, const char *id, bool create,
                             int *rc)
{
    stream_t *st = stream_get(s, kind, id, create);

    *rc = 0;
    if (!st) {
        *rc = create ? -ENOMEM : -ENOENT;
        return NULL;
    }
    pthread_mutex_lock(&st->lock);
    if (!st->loaded && (*rc = load_stream(s, st)) != 0) {
        pthread_mutex_unlock(&st->lock);
        return NULL;
    }
    return st;
}

/* ---- the consumer ---- */

static const char *const result_names[] = { "published", "pending", "duplicate", "late",
                                            "reopened" };

static cb_kafka_result_t on_done(void *arg, const cb_kafka_msg_t *msg, char *reason,
                                 size_t reasonlen)
{
    pk_streams_t *s = arg;
    cb_proto_transcode_done_t *d = calloc(1, sizeof(*d));
    cb_jsonv_error_t verr;
    const char *kind;
    bool changed = false;
    stream_t *st;
    int rc;

    if (!d) {
        snprintf(reason, reasonlen, "out of memory");
        return CB_KAFKA_RETRY;
    }
    if (cb_proto_transcode_done_decode(msg->value, msg->len, d, &verr)) {
        snprintf(reason, reasonlen, "not a TranscodeDone: %s", verr.text);
        cb_proto_transcode_done_release(d);
        free(d);
        cb_metric_add(s->m_results, (const char *[]){ "invalid" }, 1);
        return CB_KAFKA_INVALID;
    }
    kind = d->kind == CB_PROTO_TRANSCODE_DONE_KIND_VOD ? "vod" : "live";
    if (!pk_name_ok(d->stream_id)) {
        snprintf(reason, reasonlen, "stream_id: '%s' is not a usable name", d->stream_id);
        cb_proto_transcode_done_release(d);
        free(d);
        cb_metric_add(s->m_results, (const char *[]){ "invalid" }, 1);
        return CB_KAFKA_INVALID;
    }
    st = stream_open(s, kind, d->stream_id, true, &rc);
    if (!st) {
        snprintf(reason, reasonlen, "stream %s/%s not loaded: %s", kind, d->stream_id,
                 strerror(-rc));
        cb_proto_transcode_done_release(d);
        free(d);
        return CB_KAFKA_RETRY;
    }
    rc = pk_tl_add(st->tl, d, cb_clock_mono_ms(), &changed, reason, reasonlen);
    if (rc < 0) {
        pthread_mutex_unlock(&st->lock);
        cb_metric_add(s->m_results, (const char *[]){ "invalid" }, 1);
        return rc == -EINVAL ? CB_KAFKA_INVALID : CB_KAFKA_RETRY;
    }
    cb_metric_add(s->m_results, (const char *[]){ result_names[rc] }, 1);
    if (rc == PK_TL_PUBLISHED || rc == PK_TL_REOPENED || changed || st->dirty) {
        if (rc == PK_TL_REOPENED) {
            st->nwritten = 0;
            cb_log_info("stream %s: a new session after the end", st->prefix);
        }
        publish(s, st, changed);
    }
    pthread_mutex_unlock(&st->lock);
    return CB_KAFKA_OK;
}

/* ---- the ticker ---- */

static void run_deletions(pk_streams_t *s)
{
    int64_t now = cb_clock_mono_ms();
    char key[CB_STORAGE_KEY_MAX];

    pthread_mutex_lock(&s->lock);
    while (s->dcount && s->dels[s->dhead].due_ms <= now && !s->stopping) {
        snprintf(key, sizeof(key), "%s", s->dels[s->dhead].key);
        s->dhead = (s->dhead + 1) % s->dcap;
        s->dcount--;
        pthread_mutex_unlock(&s->lock);
        if (cb_storage_remove(s->storage, key) == 0)
            cb_metric_add(s->m_deleted, NULL, 1);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
}

static void tick_streams(pk_streams_t *s)
{
    size_t i, n;

    pthread_mutex_lock(&s->lock);
    n = s->nstreams;
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < n; i++) {
        stream_t *st;
        int published;

        pthread_mutex_lock(&s->lock);
        st = s->streams[i];
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(&st->lock);
        if (st->loaded) {
            published = pk_tl_expire(st->tl, cb_clock_mono_ms(), s->cfg.gap_wait_ms);
            if (published > 0) {
                cb_log_warn("stream %s: gave up waiting for missing results; gap published "
                            "before job %lld",
                            st->prefix, (long long) st->tl->next_seq - 1);
                cb_metric_add(s->m_gaps, NULL, 1);
            }
            if (published > 0 || st->dirty)
                publish(s, st, published > 0 || st->dirty);
        }
        pthread_mutex_unlock(&st->lock);
    }
}

static void *ticker_main(void *arg)
{
    pk_streams_t *s = arg;
    struct timespec ts;

    pthread_setname_np(pthread_self(), "pk-ticker");
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        cb_clock_deadline(&ts, TICK_MS * 1000);
        pthread_cond_timedwait(&s->tick_cond, &s->lock, &ts);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        tick_streams(s);
        run_deletions(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- life cycle ---- */

static const double update_buckets[] = { 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075,
                                         0.01,  0.015, 0.02,  0.03,  0.05,  0.1,
                                         0.25,  0.5,   1,     2.5,   5 };

int pk_streams_new(const pk_config_t *cfg, const cb_kafka_config_t *kafka,
                   cb_kafka_producer_t *producer, cb_storage_t *storage, cb_metrics_t *metrics,
                   int origin_port, pk_streams_t **out, char *err, size_t errlen)
{
    static const char *const topics[] = { CB_PROTO_TOPIC_MEDIA_TRANSCODE_DONE, NULL };
    pk_streams_t *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->producer = producer;
    s->storage = storage;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->tick_cond, NULL);
    if (cfg->public_url && cfg->public_url[0])
        snprintf(s->utc_timing, sizeof(s->utc_timing), "%s/time", cfg->public_url);
    else
        snprintf(s->utc_timing, sizeof(s->utc_timing), "http://127.0.0.1:%d/time", origin_port);
    s->m_results = cb_metrics_counter(metrics, "castbus_packager_results_total",
                                      "Transcode results by what became of them (published, "
                                      "pending, duplicate, late, reopened, invalid).",
                                      (const char *[]){ "result", NULL });
    s->m_update = cb_metrics_histogram(metrics, "castbus_packager_update_seconds",
                                       "From a result being durable (the worker's clock) to the "
                                       "manifests listing it.",
                                       NULL, update_buckets, CB_ARRAY_LEN(update_buckets));
    s->m_gaps = cb_metrics_counter(metrics, "castbus_packager_gaps_total",
                                   "Times missing results were given up on and published as "
                                   "gaps.",
                                   NULL);
    s->m_streams = cb_metrics_gauge(metrics, "castbus_packager_streams",
                                    "Streams and assets this packager holds a timeline of.", NULL);
    s->m_deleted = cb_metrics_counter(metrics, "castbus_packager_deleted_total",
                                      "Files deleted after leaving the DVR window.", NULL);
    s->m_vod = cb_metrics_counter(metrics, "castbus_packager_vod_assets_total",
                                  "VOD assets published from ended streams.", NULL);
    s->m_errors = cb_metrics_counter(metrics, "castbus_packager_errors_total",
                                     "Failures to write manifests or state, by dependency.",
                                     (const char *[]){ "dependency", NULL });
    rc = cb_kafka_consumer_new(kafka,
                               &(cb_kafka_consumer_opts_t){
                                   .group = "packager",
                                   .topics = topics,
                                   .handler = on_done,
                                   .arg = s,
                                   .workers = (int) cfg->workers,
                                   .prefetch = 256,
                                   .dlq = producer,
                               },
                               metrics, &s->consumer, err, errlen);
    if (rc) {
        pk_streams_component.free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void pk_streams_on_publish(pk_streams_t *s, void (*fn)(void *arg), void *arg)
{
    s->on_publish_arg = arg;
    s->on_publish = fn;
}

int pk_streams_start(pk_streams_t *s)
{
    if (pthread_create(&s->ticker, NULL, ticker_main, s) != 0)
        return -EAGAIN;
    s->ticker_started = true;
    return cb_kafka_consumer_start(s->consumer);
}

static int streams_ready(void *obj, char *err, size_t errlen)
{
    pk_streams_t *s = obj;

    return cb_kafka_consumer_component.ready(s->consumer, err, errlen);
}

static void stop_ticker(pk_streams_t *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->tick_cond);
    pthread_mutex_unlock(&s->lock);
    if (s->ticker_started) {
        pthread_join(s->ticker, NULL);
        s->ticker_started = false;
    }
}

static void streams_drain(void *obj, int64_t deadline_ms)
{
    pk_streams_t *s = obj;

    cb_kafka_consumer_drain(s->consumer, deadline_ms);
    stop_ticker(s);
    pthread_mutex_lock(&s->lock);
    if (s->dcount)
        cb_log_info("packager: %zu deletions still in their grace period are left to the next "
                    "run's window",
                    s->dcount);
    pthread_mutex_unlock(&s->lock);
}

static void streams_free(void *obj)
{
    pk_streams_t *s = obj;
    size_t i;

    if (!s)
        return;
    if (s->consumer)
        cb_kafka_consumer_free(s->consumer);
    stop_ticker(s);
    for (i = 0; i < s->nstreams; i++) {
        pk_tl_free(s->streams[i]->tl);
        pthread_mutex_destroy(&s->streams[i]->lock);
        free(s->streams[i]);
    }
    free(s->streams);
    free(s->dels);
    pthread_cond_destroy(&s->tick_cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

const cb_component_ops_t pk_streams_component = {
    .name = "kafka-consumer",
    .ready = streams_ready,
    .drain = streams_drain,
    .free = streams_free,
};

/* ---- assets ---- */

static json_t *load_asset(pk_streams_t *s, const char *asset, int *rc)
{
    char key[CB_STORAGE_KEY_MAX];

    if (!pk_name_ok(asset)) {
        *rc = -ENOENT;
        return NULL;
    }
    snprintf(key, sizeof(key), "vod/%s/asset.json", asset);
    return get_json(s, key, 64 << 20, rc, NULL);
}

int pk_streams_asset_source(pk_streams_t *s, const char *asset_id, char *out, size_t outlen,
                            bool *signed_playback)
{
    int rc;
    json_t *doc = load_asset(s, asset_id, &rc);
    const char *src = doc ? json_string_value(json_object_get(doc, "source")) : NULL;

    if (doc && !src)
        rc = -EINVAL;
    if (src)
        snprintf(out, outlen, "%s", src);
    *signed_playback = json_is_true(json_object_get(doc, "signed_playback"));
    json_decref(doc);
    return rc;
}

int pk_streams_signed(pk_streams_t *s, const char *kind, const char *id, bool *signed_playback)
{
    stream_t *st = stream_get(s, kind, id, false);
    char key[CB_STORAGE_KEY_MAX];
    json_t *doc;
    int rc;

    *signed_playback = false;
    if (st) {
        pthread_mutex_lock(&st->lock);
        if (st->loaded) {
            *signed_playback = st->tl->packaging.signed_playback;
            pthread_mutex_unlock(&st->lock);
            return 0;
        }
        pthread_mutex_unlock(&st->lock);
    }
    if (!pk_name_ok(id))
        return 0;
    snprintf(key, sizeof(key), "%s/%s/packager/state.json", kind, id);
    doc = get_json(s, key, 1 << 20, &rc, NULL);
    *signed_playback = json_is_true(json_object_get(doc, "signed_playback"));
    json_decref(doc);
    return rc == -ENOENT || rc == -EINVAL ? 0 : rc; /* unknown or unreadable: not signed */
}

/* ---- REST ---- */

static int get_packaging(cb_http_req_t *req, void *arg)
{
    pk_streams_t *s = arg;
    const char *id = cb_http_req_param(req, "id");
    char kind[8] = "live";
    json_t *rends, *body;
    stream_t *st;
    size_t i;
    int rc;

    if (cb_http_req_query(req, "kind", kind, sizeof(kind)) >= 0 && strcmp(kind, "live") != 0 &&
        strcmp(kind, "vod") != 0)
        return cb_http_reply_error(req, 400, "invalid_field", "kind", "kind: live or vod");
    if (!pk_name_ok(id))
        return cb_http_reply_error(req, 400, "invalid_field", "id", "id: not a stream name");
    st = stream_get(s, kind, id, false);
    if (!st) {
        /* not seen since start: known if storage has its state */
        char key[CB_STORAGE_KEY_MAX];
        cb_storage_stat_t sst;
        snprintf(key, sizeof(key), "%s/%s/packager/state.json", kind, id);
        if (cb_storage_stat(s->storage, key, &sst) != 0)
            return cb_http_reply_error(req, 404, "not_found", "id", "no packaged stream '%s'", id);
    }
    st = stream_open(s, kind, id, true, &rc);
    if (!st)
        return cb_http_reply_error(req, 503, "unavailable", NULL, "stream not loaded: %s",
                                   strerror(-rc));
    rends = json_array();
    for (i = 0; i < st->tl->nrend; i++) {
        const pk_rendition_t *r = &st->tl->rend[i];
        int64_t peak, avg;
        pk_render_bitrates(r, &peak, &avg);
        json_array_append_new(rends, json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:I, s:I}", "name",
                                               r->name, "kind", r->video ? "video" : "audio",
                                               "codecs", r->codecs, "width", r->width, "height",
                                               r->height, "fps", r->fps, "peak_bps",
                                               (json_int_t) peak, "average_bps", (json_int_t) avg));
    }
    body = json_pack(
        "{s:s, s:s, s:o, s:I, s:f, s:I, s:I, s:I, s:I, s:b, s:b, s:b, s:I, s:I, s:s, s:s}", "id",
        st->id, "kind", st->kind, "renditions", rends, "window_s",
        (json_int_t) st->tl->packaging.dvr_window_s, "window_duration_s",
        (double) pk_tl_duration_90k(st->tl) / 90000.0, "segments", (json_int_t) st->tl->n,
        "first_media_sequence",
        (json_int_t) (st->tl->n ? pk_tl_entry(st->tl, 0)->msn : st->tl->next_msn), "last_seq",
        (json_int_t) (st->tl->next_seq - 1), "waiting", (json_int_t) st->tl->npending, "ended",
        st->tl->ended, "recorded", st->tl->packaging.record, "signed_playback",
        st->tl->packaging.signed_playback, "last_update_ms", (json_int_t) st->updated_ms,
        "last_update_latency_ms", (json_int_t) st->latency_ms, "hls", "master.m3u8", "dash",
        "manifest.mpd");
    pthread_mutex_unlock(&st->lock);
    if (body) {
        char hls[160], dash[160];
        snprintf(hls, sizeof(hls), "/%s/%s/master.m3u8", kind, id);
        snprintf(dash, sizeof(dash), "/%s/%s/manifest.mpd", kind, id);
        json_object_set_new(body, "hls", json_string(hls));
        json_object_set_new(body, "dash", json_string(dash));
    }
    return cb_http_reply_json(req, 200, body);
}

typedef struct asset_list {
    json_t *ids;
} asset_list_t;

static int collect_asset(void *arg, const char *key, const cb_storage_stat_t *st)
{
    asset_list_t *l = arg;
    char id[80];
    size_t n;

    (void) st;
    /* "vod/<id>/asset.json" */
    if (strncmp(key, "vod/", 4) != 0)
        return 0;
    n = strlen(key);
    if (n < 4 + 1 + 11 || strcmp(key + n - 11, "/asset.json") != 0 || n - 15 >= sizeof(id))
        return 0;
    memcpy(id, key + 4, n - 15);
    id[n - 15] = '\0';
    if (!strchr(id, '/'))
        json_array_append_new(l->ids, json_string(id));
    return json_array_size(l->ids) >= 10000;
}

static int list_assets(cb_http_req_t *req, void *arg)
{
    pk_streams_t *s = arg;
    asset_list_t l = { json_array() };
    json_t *out = json_array(), *id;
    size_t i;
    int rc;

    rc = cb_storage_list(s->storage, "vod/", collect_asset, &l);
    if (rc && rc != -ENOENT) {
        json_decref(l.ids);
        json_decref(out);
        return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s", strerror(-rc));
    }
    json_array_foreach(l.ids, i, id)
    {
        int arc;
        json_t *doc = load_asset(s, json_string_value(id), &arc);
        if (!doc)
            continue;
        json_object_del(doc, "files");
        json_object_set_new(doc, "hls", json_sprintf("/vod/%s/master.m3u8", json_string_value(id)));
        json_object_set_new(doc, "dash",
                            json_sprintf("/vod/%s/manifest.mpd", json_string_value(id)));
        json_array_append_new(out, doc);
    }
    json_decref(l.ids);
    return cb_http_reply_json(req, 200, json_pack("{s:o}", "assets", out));
}

static int delete_asset(cb_http_req_t *req, void *arg)
{
    pk_streams_t *s = arg;
    const char *asset = cb_http_req_param(req, "id");
    char key[CB_STORAGE_KEY_MAX], reason[256] = "takedown";
    const char *src, *name;
    json_t *doc, *files, *f, *rends, *r;
    size_t i, removed = 0;
    int rc;

    doc = load_asset(s, asset, &rc);
    if (!doc)
        return rc == -ENOENT
                   ? cb_http_reply_error(req, 404, "not_found", "id", "no asset '%s'", asset)
                   : cb_http_reply_error(req, 503, "unavailable", NULL, "asset unreadable: %s",
                                         strerror(-rc));
    cb_http_req_query(req, "reason", reason, sizeof(reason));
    src = json_string_value(json_object_get(doc, "source"));
    files = json_object_get(doc, "files");
    rends = json_object_get(doc, "renditions");
    /* manifests first: from here on nobody is sent to the segments */
    json_array_foreach(rends, i, r)
    {
        snprintf(key, sizeof(key), "vod/%s/%s.m3u8", asset, json_string_value(r));
        cb_storage_remove(s->storage, key);
    }
    for (i = 0; i < 3; i++) {
        static const char *const names[] = { "master.m3u8", "manifest.mpd", "asset.json" };
        snprintf(key, sizeof(key), "vod/%s/%s", asset, names[i]);
        rc = cb_storage_remove(s->storage, key);
        if (rc && rc != -ENOENT) {
            json_decref(doc);
            return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s", strerror(-rc));
        }
    }
    json_array_foreach(files, i, f)
    {
        name = json_string_value(f);
        if (src && name) {
            snprintf(key, sizeof(key), "%s/%s", src, name);
            if (cb_storage_remove(s->storage, key) == 0)
                removed++;
        }
    }
    purge_asset(s, asset, true, reason);
    package_event(s, CB_PROTO_PACKAGE_EVENT_TYPE_ASSET_REMOVED,
                  json_string_value(json_object_get(doc, "stream_id"))
                      ? json_string_value(json_object_get(doc, "stream_id"))
                      : asset,
                  asset, 0, reason);
    cb_log_info("asset %s taken down (%s): %zu segments deleted", asset, reason, removed);
    json_decref(doc);
    return cb_http_reply_json(req, 200,
                              json_pack("{s:s, s:I, s:b}", "asset_id", asset, "segments_deleted",
                                        (json_int_t) removed, "purged", 1));
}

int pk_streams_add_routes(pk_streams_t *s, cb_daemon_t *d)
{
    const cb_http_route_t routes[] = {
        { "GET", "/v1/streams/{id}/packaging", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, get_packaging, s },
        { "GET", "/v1/assets", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, list_assets, s },
        { "DELETE", "/v1/assets/{id}", CB_ROLE_ADMIN, CB_HTTP_BLOCKING, delete_asset, s },
    };

    return cb_daemon_add_routes(d, routes, CB_ARRAY_LEN(routes));
}

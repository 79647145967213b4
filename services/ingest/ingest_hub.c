/*
 * ingest_hub.c - live streams, publishers, arbitration and timelines; see
 * ingest_hub.h.
 *
 * DESIGN
 * Locks: hub->lock guards the registry of live streams and the memory of
 * their cursors; each stream's lock guards everything about it. Order:
 * hub lock, then stream lock. A stream object lives from its first
 * publisher's attach to its last publisher's detach; at that detach its
 * last segment is finished and handed to the writer while both locks are
 * held, so a publisher reattaching at once continues after it (the cursor
 * kept in memory is updated in the same critical section).
 *
 * Timeline: each publisher maps its unwrapped clock onto the stream's
 * 90 kHz timeline with (origin, base): t90k = base + (t - origin) * 90000 /
 * clock_hz. Rebasing a publisher sets base to where the stream's output
 * ended and origin to the publisher's current time: that is how a switch,
 * a reconnect or a jump continues without a gap.
 */
#include "ingest_hub.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#define HUB_BUCKETS       256
#define CURSOR_MEMORY     4096 /* streams whose cursor is remembered after they end */
#define DEFAULT_FRAME_90K 3000 /* 30 fps until the rate is known */

typedef struct pub_track {
    bool configured;
    ingest_codec_t codec;
    uint8_t *extradata;
    size_t extradata_len;
    int width, height, sample_rate, channels;
} pub_track_t;

typedef struct stream stream_t;

struct ingest_publisher {
    stream_t *st;
    ingest_role_t role;
    char protocol[8];
    char peer[64];
    const ingest_publisher_ops_t *ops;
    void *conn;
    int clock_hz;
    int wrap_bits;
    bool have_ts;
    uint64_t last_raw;
    int64_t ext, max_ext;
    bool mapped; /* origin/base valid */
    int64_t origin, base_90k;
    pub_track_t tracks[2];
    double fps_hint;
    int64_t last_us;
    int64_t bytes;
};

struct stream {
    pthread_mutex_t lock;
    ingest_hub_t *hub;
    stream_t *next; /* registry chain */
    int refs;
    ingest_stream_info_t info;
    char session[96];
    ingest_publisher_t *pub[2];
    int active; /* role of the active publisher, -1 none */
    ingest_segmenter_t *seg;
    bool had_output;
    int64_t next_out_90k; /* where the next frame of a new source starts */
    int64_t last_dts_90k;
    int64_t since_wall_ms;
    int64_t win_start_us; /* start of the statistics window (monotonic) */
    /* stats, totals and window */
    int64_t segments, discontinuities, switches, late;
    int64_t win_bytes, win_video, win_key_gaps, win_key_gap_90k, last_key_90k;
    int64_t win_first_dts_90k, win_last_dts_90k; /* video, -1 before the first */
    int64_t win_dropped_base, win_late_base;
    int64_t bitrate_bps; /* last window */
    double fps;
    double keyint_s; /* average keyframe interval, last window */
    int64_t last_seq;
    char last_error[160];
};

typedef struct cursor_entry {
    char id[64];
    ingest_cursor_t cursor;
    int64_t used; /* for eviction */
} cursor_entry_t;

struct ingest_hub {
    ingest_hub_config_t cfg;
    ingest_writer_t *writer;
    ingest_hub_live_fn on_live;
    void *live_arg;
    pthread_mutex_t lock;
    stream_t *buckets[HUB_BUCKETS];
    size_t live;
    cursor_entry_t *cursors;
    size_t ncursors;
    int64_t clock;
    bool shutting_down;
    cb_metric_t *m_publishers, *m_segments, *m_switches, *m_discontinuities, *m_dropped;
};

static unsigned hash_id(const char *id)
{
    unsigned h = 5381;

    for (; *id; id++)
        h = h * 33 + (unsigned char) *id;
    return h % HUB_BUCKETS;
}

int ingest_hub_new(const ingest_hub_config_t *cfg, ingest_writer_t *writer, cb_metrics_t *metrics,
                   ingest_hub_live_fn on_live, void *live_arg, ingest_hub_t **out)
{
    ingest_hub_t *h = calloc(1, sizeof(*h));

    if (!h)
        return -ENOMEM;
    h->cursors = calloc(CURSOR_MEMORY, sizeof(cursor_entry_t));
    if (!h->cursors) {
        free(h);
        return -ENOMEM;
    }
    h->cfg = *cfg;
    h->writer = writer;
    h->on_live = on_live;
    h->live_arg = live_arg;
    pthread_mutex_init(&h->lock, NULL);
    h->m_publishers = cb_metrics_gauge(metrics, "castbus_ingest_publishers",
                                       "Publishers connected and authorized, by protocol and role.",
                                       (const char *[]){ "protocol", "role", NULL });
    h->m_segments = cb_metrics_counter(metrics, "castbus_ingest_segments_total",
                                       "Source segments cut, by result (queued, rejected).",
                                       (const char *[]){ "result", NULL });
    h->m_switches = cb_metrics_counter(metrics, "castbus_ingest_source_switches_total",
                                       "Primary/backup switches.", NULL);
    h->m_discontinuities =
        cb_metrics_counter(metrics, "castbus_ingest_discontinuities_total",
                           "Discontinuities marked, by cause (switch, reconnect, jump, config).",
                           (const char *[]){ "cause", NULL });
    h->m_dropped = cb_metrics_counter(metrics, "castbus_ingest_dropped_frames_total",
                                      "Frames not segmented (before the first keyframe, standby).",
                                      (const char *[]){ "reason", NULL });
    *out = h;
    return 0;
}

static void pub_free(ingest_publisher_t *p)
{
    int i;

    for (i = 0; i < 2; i++)
        free(p->tracks[i].extradata);
    free(p);
}

static void stream_unref(stream_t *st)
{
    bool last;

    pthread_mutex_lock(&st->lock);
    last = --st->refs == 0;
    pthread_mutex_unlock(&st->lock);
    if (!last)
        return;
    ingest_segmenter_free(st->seg);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

void ingest_hub_free(ingest_hub_t *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < HUB_BUCKETS; i++) {
        while (h->buckets[i]) {
            stream_t *st = h->buckets[i];
            int r;
            h->buckets[i] = st->next;
            for (r = 0; r < 2; r++) {
                if (st->pub[r])
                    pub_free(st->pub[r]);
            }
            ingest_segmenter_free(st->seg);
            pthread_mutex_destroy(&st->lock);
            free(st);
        }
    }
    pthread_mutex_destroy(&h->lock);
    free(h->cursors);
    free(h);
}

/* Hub locked. */
static stream_t *find_locked(ingest_hub_t *h, const char *id)
{
    stream_t *st;

    for (st = h->buckets[hash_id(id)]; st; st = st->next) {
        if (strcmp(st->info.id, id) == 0)
            return st;
    }
    return NULL;
}

/* Hub locked: the remembered cursor of a stream, or NULL. */
static cursor_entry_t *cursor_find(ingest_hub_t *h, const char *id)
{
    size_t i;

    for (i = 0; i < h->ncursors; i++) {
        if (strcmp(h->cursors[i].id, id) == 0)
            return &h->cursors[i];
    }
    return NULL;
}

/* Hub locked: remember where a stream continues. */
static void cursor_remember(ingest_hub_t *h, const char *id, int64_t next_seq, int64_t next_pts)
{
    cursor_entry_t *e = cursor_find(h, id);
    size_t i, oldest = 0;

    if (!e) {
        if (h->ncursors < CURSOR_MEMORY) {
            e = &h->cursors[h->ncursors++];
        } else {
            for (i = 1; i < h->ncursors; i++) {
                if (h->cursors[i].used < h->cursors[oldest].used)
                    oldest = i;
            }
            e = &h->cursors[oldest];
        }
        snprintf(e->id, sizeof(e->id), "%s", id);
    }
    e->cursor.next_seq = next_seq;
    e->cursor.next_pts_90k = next_pts;
    e->used = ++h->clock;
}

static const char *role_name(ingest_role_t r)
{
    return r == INGEST_ROLE_PRIMARY ? "primary" : "backup";
}

int ingest_hub_attach(ingest_hub_t *h, const ingest_stream_info_t *info,
                      const ingest_cursor_t *cursor, ingest_role_t role, const char *protocol,
                      const char *peer, int clock_hz, int wrap_bits,
                      const ingest_publisher_ops_t *ops, void *conn, ingest_publisher_t **out,
                      char *why, size_t whylen)
{
    ingest_publisher_t *p;
    stream_t *st;
    bool created = false;
    int rc;

    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->role = role;
    snprintf(p->protocol, sizeof(p->protocol), "%s", protocol);
    snprintf(p->peer, sizeof(p->peer), "%s", peer);
    p->ops = ops;
    p->conn = conn;
    p->clock_hz = clock_hz;
    p->wrap_bits = wrap_bits;
    p->last_us = cb_clock_mono_us();

    pthread_mutex_lock(&h->lock);
    if (h->shutting_down) {
        pthread_mutex_unlock(&h->lock);
        snprintf(why, whylen, "the server is shutting down; publish to another instance");
        free(p);
        return -ESHUTDOWN;
    }
    st = find_locked(h, info->id);
    if (!st) {
        ingest_segmenter_opts_t so = {
            .target_90k = h->cfg.segment_ms * 90,
            .max_duration_90k = h->cfg.max_segment_ms * 90,
            .max_bytes = (size_t) h->cfg.max_segment_bytes,
        };
        cursor_entry_t *mem = cursor_find(h, info->id);
        ingest_cursor_t c = *cursor;

        /* the newest of what storage says and what this instance remembers */
        if (mem && mem->cursor.next_seq > c.next_seq)
            c = mem->cursor;
        st = calloc(1, sizeof(*st));
        if (!st || ingest_segmenter_new(&so, c.next_seq, &st->seg)) {
            pthread_mutex_unlock(&h->lock);
            free(st);
            free(p);
            return -ENOMEM;
        }
        pthread_mutex_init(&st->lock, NULL);
        st->hub = h;
        st->info = *info;
        st->active = -1;
        st->next_out_90k = CB_MAX(c.next_pts_90k, (int64_t) INGEST_TIMELINE_ORIGIN_90K);
        st->since_wall_ms = cb_clock_wall_ms();
        st->win_start_us = cb_clock_mono_us();
        st->last_seq = c.next_seq - 1;
        st->last_key_90k = -1;
        st->win_first_dts_90k = st->win_last_dts_90k = -1;
        snprintf(st->session, sizeof(st->session), "%s-%lld", info->id,
                 (long long) st->since_wall_ms);
        st->refs = 1; /* the registry */
        /* a stream that published before continues after a gap: a discontinuity */
        if (c.next_seq > 0) {
            ingest_segmenter_discontinuity(st->seg);
            cb_metric_add(h->m_discontinuities, (const char *[]){ "reconnect" }, 1);
        }
        st->next = h->buckets[hash_id(info->id)];
        h->buckets[hash_id(info->id)] = st;
        h->live++;
        created = true;
    }
    pthread_mutex_lock(&st->lock);
    if (st->pub[role]) {
        snprintf(why, whylen, "stream '%s' already has a %s publisher (%s)%s", info->id,
                 role_name(role), st->pub[role]->peer,
                 role == INGEST_ROLE_PRIMARY ? "; a second encoder may publish with ?role=backup"
                                             : "");
        pthread_mutex_unlock(&st->lock);
        pthread_mutex_unlock(&h->lock);
        free(p);
        return -EBUSY;
    }
    /* the settings may have changed since the stream went live (e.g. record) */
    if (!created)
        st->info = *info;
    p->st = st;
    st->pub[role] = p;
    st->refs++;
    pthread_mutex_unlock(&st->lock);
    pthread_mutex_unlock(&h->lock);
    cb_metric_add(h->m_publishers, (const char *[]){ protocol, role_name(role) }, 1);
    cb_log_info("%s %s publisher from %s attached to stream '%s'%s", protocol, role_name(role),
                peer, info->id, created ? " (stream live)" : "");
    if (created && h->on_live)
        h->on_live(h->live_arg, info, true, protocol, peer, NULL);
    *out = p;
    rc = 0;
    return rc;
}

/* Stream locked: point the segmenter at the publisher's track configs. */
static int apply_configs(stream_t *st, ingest_publisher_t *p)
{
    int k, rc;

    for (k = 0; k < 2; k++) {
        pub_track_t *t = &p->tracks[k];
        ingest_track_config_t cfg = {
            .codec = t->codec,
            .extradata = t->extradata,
            .extradata_len = t->extradata_len,
            .width = t->width,
            .height = t->height,
            .fps = k == INGEST_VIDEO ? p->fps_hint : 0,
            .sample_rate = t->sample_rate,
            .channels = t->channels,
        };
        if (!t->configured)
            continue;
        rc = ingest_segmenter_configure(st->seg, (ingest_media_kind_t) k, &cfg);
        if (rc)
            return rc;
    }
    return 0;
}

/* Stream locked: the publisher starts feeding the stream from its time `ext`. */
static void rebase(stream_t *st, ingest_publisher_t *p)
{
    p->origin = p->ext;
    p->base_90k = st->next_out_90k;
    p->mapped = true;
}

static int64_t unwrap(ingest_publisher_t *p, uint64_t raw)
{
    uint64_t mod = 1ull << p->wrap_bits, mask = mod - 1, d;
    int64_t delta;

    raw &= mask;
    if (!p->have_ts) {
        p->have_ts = true;
        p->last_raw = raw;
        p->ext = (int64_t) raw;
        p->max_ext = p->ext;
        return p->ext;
    }
    d = (raw - p->last_raw) & mask;
    delta = d >= mod / 2 ? (int64_t) d - (int64_t) mod : (int64_t) d;
    p->last_raw = raw;
    p->ext += delta;
    return p->ext;
}

/* Stream locked: hand a finished segment to the writer. */
static int submit(stream_t *st, ingest_segment_t *seg, char *why, size_t whylen)
{
    ingest_hub_t *h = st->hub;
    int64_t seq = seg->seq;
    int rc;

    st->segments++;
    st->last_seq = seq;
    if (seg->discontinuity)
        st->discontinuities++;
    rc = ingest_writer_submit(h->writer, &st->info, st->session, st->bitrate_bps, seg);
    cb_metric_add(h->m_segments, (const char *[]){ rc == 0 ? "queued" : "rejected" }, 1);
    if (rc == 0)
        return 0;
    snprintf(why, whylen,
             rc == -ENOSPC ? "segment %lld of stream '%s' refused: too many segments waiting for "
                             "Kafka; publishing stops until they are announced"
                           : "segment %lld of stream '%s' refused: the segment writer is backed up",
             (long long) seq, st->info.id);
    cb_log_error("%s", why);
    return rc;
}

static bool is_cut_point(const stream_t *st, const ingest_publisher_t *p, const ingest_frame_t *f)
{
    bool video =
        p->tracks[INGEST_VIDEO].configured || ingest_segmenter_has_track(st->seg, INGEST_VIDEO);

    return video ? (f->kind == INGEST_VIDEO && f->keyframe) : f->kind == INGEST_AUDIO;
}

int ingest_publisher_push(ingest_publisher_t *p, const ingest_frame_t *f, char *why, size_t whylen)
{
    stream_t *st = p->st;
    ingest_hub_t *h = st->hub;
    ingest_segment_t *seg = NULL;
    int64_t now = cb_clock_mono_us(), ext, back_tol, jump, dts, pts;
    bool jumped = false;
    int rc = 0;

    pthread_mutex_lock(&st->lock);
    p->last_us = now;
    p->bytes += (int64_t) f->len;
    if (f->config) {
        pub_track_t *t = &p->tracks[f->kind];
        uint8_t *copy = NULL;

        if (f->len) {
            copy = malloc(f->len);
            if (!copy) {
                pthread_mutex_unlock(&st->lock);
                return -ENOMEM;
            }
            memcpy(copy, f->data, f->len);
        }
        free(t->extradata);
        t->extradata = copy;
        t->extradata_len = f->len;
        t->codec = f->codec;
        t->configured = true;
        if (f->kind == INGEST_VIDEO && f->codec == INGEST_CODEC_H264)
            ingest_avcc_dimensions(f->data, f->len, &t->width, &t->height);
        else if (f->kind == INGEST_AUDIO && f->codec == INGEST_CODEC_AAC)
            ingest_asc_parse(f->data, f->len, &t->sample_rate, &t->channels);
        if (st->active == (int) p->role) {
            rc = apply_configs(st, p);
            cb_metric_add(h->m_discontinuities, (const char *[]){ "config" }, st->had_output);
        }
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    if (!p->tracks[f->kind].configured) {
        /* a codec without a configuration record (MP3, or an SRT source): configure on the fly */
        p->tracks[f->kind].configured = true;
        p->tracks[f->kind].codec = f->codec;
        if (st->active == (int) p->role)
            apply_configs(st, p);
    }

    ext = unwrap(p, f->dts);
    back_tol = p->clock_hz;                        /* 1 s backwards is jitter, more a reset */
    jump = h->cfg.ts_jump_ms * p->clock_hz / 1000; /* forwards */
    if (ext < p->max_ext - back_tol || ext > p->max_ext + jump) {
        jumped = p->mapped;
        p->max_ext = ext;
        if (jumped)
            cb_log_warn("stream '%s': %s timestamps jumped by %.3f s: discontinuity", st->info.id,
                        role_name(p->role), (double) (ext - p->origin) / p->clock_hz);
    } else if (ext > p->max_ext) {
        p->max_ext = ext;
    } else if (ext < p->max_ext && f->kind == INGEST_VIDEO) {
        st->late++;
    }

    /* arbitration: who feeds the stream */
    if (st->active != (int) p->role) {
        ingest_publisher_t *cur = st->active >= 0 ? st->pub[st->active] : NULL;
        bool take = !cur || p->role == INGEST_ROLE_PRIMARY ||
                    now - cur->last_us > h->cfg.backup_switch_ms * 1000;

        if (!take || !is_cut_point(st, p, f)) {
            cb_metric_add(h->m_dropped, (const char *[]){ cur ? "standby" : "no_keyframe" }, 1);
            pthread_mutex_unlock(&st->lock);
            return 0;
        }
        if (cur || st->had_output) {
            cb_log_warn("stream '%s': %s publisher (%s) takes over%s", st->info.id,
                        role_name(p->role), p->peer,
                        cur ? (p->role == INGEST_ROLE_PRIMARY ? " again" : ": primary stalled")
                            : "");
            ingest_segmenter_discontinuity(st->seg);
            if (cur) {
                st->switches++;
                cb_metric_add(h->m_switches, NULL, 1);
                cb_metric_add(h->m_discontinuities, (const char *[]){ "switch" }, 1);
            }
        }
        st->active = (int) p->role;
        rebase(st, p);
        rc = apply_configs(st, p);
        if (rc) {
            pthread_mutex_unlock(&st->lock);
            snprintf(why, whylen, "out of memory");
            return rc;
        }
    } else if (jumped || !p->mapped) {
        if (jumped) {
            ingest_segmenter_discontinuity(st->seg);
            cb_metric_add(h->m_discontinuities, (const char *[]){ "jump" }, 1);
        }
        rebase(st, p);
    }

    dts = p->base_90k + (ext - p->origin) * 90000 / p->clock_hz;
    pts = dts + f->cts * 90000 / p->clock_hz;
    rc = ingest_segmenter_write(st->seg, f->kind, f->keyframe, dts, pts, f->data, f->len, &seg);
    if (rc < 0) {
        snprintf(why, whylen, "stream '%s': %s", st->info.id, ingest_segmenter_error(st->seg));
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    st->had_output = true;
    st->win_bytes += (int64_t) f->len;
    if (f->kind == INGEST_VIDEO) {
        int64_t step = p->fps_hint > 0 ? (int64_t) (90000.0 / p->fps_hint) : DEFAULT_FRAME_90K;
        st->win_video++;
        if (st->win_first_dts_90k < 0)
            st->win_first_dts_90k = dts;
        st->win_last_dts_90k = CB_MAX(st->win_last_dts_90k, dts);
        if (f->keyframe) {
            if (st->last_key_90k >= 0 && dts > st->last_key_90k) {
                st->win_key_gap_90k += dts - st->last_key_90k;
                st->win_key_gaps++;
            }
            st->last_key_90k = dts;
        }
        st->last_dts_90k = CB_MAX(st->last_dts_90k, dts);
        st->next_out_90k = CB_MAX(st->next_out_90k, dts + step);
    } else {
        st->last_dts_90k = CB_MAX(st->last_dts_90k, dts);
        st->next_out_90k = CB_MAX(st->next_out_90k, dts + 1);
    }
    /* the cursor is remembered when the stream ends (detach), the only time it is read */
    if (rc == 1)
        rc = submit(st, seg, why, whylen);
    pthread_mutex_unlock(&st->lock);
    return rc < 0 ? rc : 0;
}

void ingest_publisher_hints(ingest_publisher_t *p, int width, int height, double fps)
{
    stream_t *st = p->st;

    pthread_mutex_lock(&st->lock);
    if (width > 0 && height > 0 && !p->tracks[INGEST_VIDEO].width) {
        p->tracks[INGEST_VIDEO].width = width;
        p->tracks[INGEST_VIDEO].height = height;
    }
    if (fps > 0 && fps < 1000)
        p->fps_hint = fps;
    pthread_mutex_unlock(&st->lock);
}

void ingest_hub_detach(ingest_publisher_t *p, const char *reason)
{
    stream_t *st = p->st;
    ingest_hub_t *h = st->hub;
    ingest_segment_t *seg = NULL;
    char why[256];
    bool last;

    pthread_mutex_lock(&h->lock);
    pthread_mutex_lock(&st->lock);
    st->pub[p->role] = NULL;
    if (st->active == (int) p->role)
        st->active = -1; /* the other publisher takes over at its next keyframe */
    last = !st->pub[0] && !st->pub[1];
    if (last) {
        stream_t **pp = &h->buckets[hash_id(st->info.id)];
        /* a shutdown is not the end of the stream: the encoder reconnects elsewhere */
        if (ingest_segmenter_finish(st->seg, st->next_out_90k, !h->shutting_down, &seg) == 1)
            submit(st, seg, why, sizeof(why));
        cursor_remember(h, st->info.id, ingest_segmenter_next_seq(st->seg), st->next_out_90k);
        while (*pp && *pp != st)
            pp = &(*pp)->next;
        if (*pp)
            *pp = st->next;
        h->live--;
        st->refs--; /* the registry's reference (the publisher's is dropped below) */
    }
    pthread_mutex_unlock(&st->lock);
    pthread_mutex_unlock(&h->lock);
    cb_metric_add(h->m_publishers, (const char *[]){ p->protocol, role_name(p->role) }, -1);
    cb_log_info("%s %s publisher from %s left stream '%s': %s%s", p->protocol, role_name(p->role),
                p->peer, st->info.id, reason ? reason : "disconnected",
                last ? " (stream ended)" : "");
    if (last && h->on_live)
        h->on_live(h->live_arg, &st->info, false, p->protocol, p->peer, reason);
    pub_free(p);
    stream_unref(st);
}

/* Find and reference a live stream. */
static stream_t *get_stream(ingest_hub_t *h, const char *id)
{
    stream_t *st;

    pthread_mutex_lock(&h->lock);
    st = find_locked(h, id);
    if (st) {
        pthread_mutex_lock(&st->lock);
        st->refs++;
        pthread_mutex_unlock(&st->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return st;
}

int ingest_hub_kick(ingest_hub_t *h, const char *stream_id, const char *why)
{
    stream_t *st = get_stream(h, stream_id);
    int r;

    if (!st)
        return -ENOENT;
    pthread_mutex_lock(&st->lock);
    /* under the stream lock: a publisher cannot detach (and its conn go) meanwhile */
    for (r = 0; r < 2; r++) {
        if (st->pub[r] && st->pub[r]->ops && st->pub[r]->ops->kick)
            st->pub[r]->ops->kick(st->pub[r]->conn, why);
    }
    pthread_mutex_unlock(&st->lock);
    stream_unref(st);
    return 0;
}

/* Stream locked. */
static json_t *publisher_json(const ingest_publisher_t *p, bool active, int64_t now)
{
    if (!p)
        return json_null();
    return json_pack("{s:s, s:s, s:b, s:f}", "protocol", p->protocol, "address", p->peer, "active",
                     active, "idle_s", (double) (now - p->last_us) / 1e6);
}

/* Stream locked. */
static json_t *stream_json(const stream_t *st)
{
    const ingest_publisher_t *a = st->active >= 0 ? st->pub[st->active] : NULL;
    const ingest_publisher_t *src = a ? a : (st->pub[0] ? st->pub[0] : st->pub[1]);
    const pub_track_t *v = src ? &src->tracks[INGEST_VIDEO] : NULL;
    const pub_track_t *au = src ? &src->tracks[INGEST_AUDIO] : NULL;
    int64_t now = cb_clock_mono_us();
    char resolution[32] = "";

    if (v && v->width > 0)
        snprintf(resolution, sizeof(resolution), "%dx%d", v->width, v->height);
    return json_pack(
        "{s:s, s:I, s:s, s:{s:s, s:s}, s:s, s:I, s:I, s:f, s:I, s:I, s:I, s:I, "
        "s:o, s:o, s:I, s:f}",
        "status", "live", "since_ms", (json_int_t) st->since_wall_ms, "active_role",
        st->active < 0 ? "none" : role_name(st->active), "codecs", "video",
        v && v->configured ? ingest_codec_name(v->codec) : "", "audio",
        au && au->configured ? ingest_codec_name(au->codec) : "", "resolution", resolution, "width",
        (json_int_t) (v ? v->width : 0), "height", (json_int_t) (v ? v->height : 0), "fps", st->fps,
        "bitrate_bps", (json_int_t) st->bitrate_bps, "segment_seq", (json_int_t) st->last_seq,
        "discontinuities", (json_int_t) st->discontinuities, "switches", (json_int_t) st->switches,
        "primary", publisher_json(st->pub[0], st->active == 0, now), "backup",
        publisher_json(st->pub[1], st->active == 1, now), "late_frames", (json_int_t) st->late,
        "keyframe_interval_s", st->keyint_s);
}

json_t *ingest_hub_status(ingest_hub_t *h, const char *stream_id)
{
    stream_t *st = get_stream(h, stream_id);
    json_t *j;

    if (!st)
        return NULL;
    pthread_mutex_lock(&st->lock);
    j = stream_json(st);
    pthread_mutex_unlock(&st->lock);
    stream_unref(st);
    return j;
}

void ingest_hub_collect(ingest_hub_t *h,
                        void (*fn)(void *arg, const ingest_stream_info_t *info, json_t *stats),
                        void *arg)
{
    stream_t **list = NULL;
    size_t n = 0, cap = 0, i, b;

    pthread_mutex_lock(&h->lock);
    for (b = 0; b < HUB_BUCKETS; b++)
        for (stream_t *st = h->buckets[b]; st; st = st->next)
            cap++;
    list = cap ? malloc(cap * sizeof(*list)) : NULL;
    for (b = 0; b < HUB_BUCKETS && list; b++) {
        stream_t *st;
        for (st = h->buckets[b]; st; st = st->next) {
            pthread_mutex_lock(&st->lock);
            st->refs++;
            pthread_mutex_unlock(&st->lock);
            list[n++] = st;
        }
    }
    pthread_mutex_unlock(&h->lock);
    for (i = 0; i < n; i++) {
        stream_t *st = list[i];
        ingest_stream_info_t info;
        int64_t dropped, now;
        json_t *j;
        double window_s;

        pthread_mutex_lock(&st->lock);
        now = cb_clock_mono_us();
        window_s = (double) (now - st->win_start_us) / 1e6;
        st->win_start_us = now;
        st->bitrate_bps = window_s > 0 ? (int64_t) ((double) st->win_bytes * 8.0 / window_s) : 0;
        /* the encoder's frame rate: frames over the media time they span */
        if (st->win_video > 1 && st->win_last_dts_90k > st->win_first_dts_90k)
            st->fps = (double) (st->win_video - 1) * 90000.0 /
                      (double) (st->win_last_dts_90k - st->win_first_dts_90k);
        else if (st->win_video == 0)
            st->fps = 0;
        if (st->win_key_gaps > 0)
            st->keyint_s = (double) st->win_key_gap_90k / (double) st->win_key_gaps / 90000.0;
        dropped = ingest_segmenter_dropped(st->seg);
        j = stream_json(st);
        json_object_set_new(j, "dropped_frames",
                            json_integer((json_int_t) (dropped - st->win_dropped_base)));
        json_object_set_new(j, "late_frames_window",
                            json_integer((json_int_t) (st->late - st->win_late_base)));
        st->win_dropped_base = dropped;
        st->win_late_base = st->late;
        st->win_bytes = st->win_video = st->win_key_gaps = st->win_key_gap_90k = 0;
        st->win_first_dts_90k = st->win_last_dts_90k = -1;
        info = st->info;
        pthread_mutex_unlock(&st->lock);
        fn(arg, &info, j);
        stream_unref(st);
    }
    free(list);
}

size_t ingest_hub_live_count(ingest_hub_t *h)
{
    size_t n;

    pthread_mutex_lock(&h->lock);
    n = h->live;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void ingest_hub_shutdown(ingest_hub_t *h, const char *why)
{
    char(*ids)[INGEST_STREAM_ID_MAX] = NULL;
    size_t n = 0, cap = 0, i, b;
    stream_t *st;

    pthread_mutex_lock(&h->lock);
    h->shutting_down = true;
    for (b = 0; b < HUB_BUCKETS; b++)
        for (st = h->buckets[b]; st; st = st->next)
            cap++;
    ids = cap ? malloc(cap * sizeof(*ids)) : NULL;
    for (b = 0; b < HUB_BUCKETS && ids; b++)
        for (st = h->buckets[b]; st; st = st->next)
            snprintf(ids[n++], sizeof(ids[0]), "%s", st->info.id);
    pthread_mutex_unlock(&h->lock);
    if (cap && !ids)
        cb_log_error("shutdown: out of memory listing %zu live streams", cap);
    for (i = 0; i < n; i++)
        ingest_hub_kick(h, ids[i], why);
    free(ids);
}

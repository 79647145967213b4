/*
 * packager_timeline.c - one stream's timeline; see packager_timeline.h.
 */
#include "packager_timeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#define STATE_VERSION 1

pk_timeline_t *pk_tl_new(const char *stream_id, int64_t target_90k)
{
    pk_timeline_t *tl = calloc(1, sizeof(*tl));

    if (!tl)
        return NULL;
    snprintf(tl->stream, sizeof(tl->stream), "%s", stream_id);
    tl->target_90k = target_90k > 0 ? target_90k : 2 * 90000;
    tl->first_seq = -1;
    tl->next_seq = -1;
    tl->end_seq = -1;
    tl->period.msn = -1;
    return tl;
}

static void release_done(cb_proto_transcode_done_t *d)
{
    if (d) {
        cb_proto_transcode_done_release(d);
        free(d);
    }
}

static void drop_entries(pk_timeline_t *tl)
{
    size_t i;

    for (i = 0; i < tl->n; i++)
        free(pk_tl_entry(tl, i)->pieces);
    tl->head = tl->n = 0;
}

void pk_tl_free(pk_timeline_t *tl)
{
    size_t i;

    if (!tl)
        return;
    drop_entries(tl);
    free(tl->e);
    for (i = 0; i < tl->ninits; i++)
        free(tl->inits[i]);
    free(tl->inits);
    for (i = 0; i < tl->npending; i++)
        release_done(tl->pending[i]);
    free(tl->gaps);
    free(tl);
}

const char *pk_tl_init(const pk_timeline_t *tl, const pk_piece_t *p)
{
    return p->init >= 0 && (size_t) p->init < tl->ninits ? tl->inits[p->init] : NULL;
}

int64_t pk_tl_duration_90k(const pk_timeline_t *tl)
{
    int64_t d = 0;
    size_t i;

    for (i = 0; i < tl->n; i++)
        d += pk_tl_entry(tl, i)->dur_90k;
    return d;
}

int64_t pk_tl_waiting_since(const pk_timeline_t *tl)
{
    int64_t since = 0;
    size_t i;

    for (i = 0; i < tl->npending; i++)
        if (!since || tl->pending_since_ms[i] < since)
            since = tl->pending_since_ms[i];
    return since;
}

/* ---- entries ---- */

static pk_entry_t *push_entry(pk_timeline_t *tl)
{
    pk_entry_t *e;

    if (tl->head + tl->n == tl->cap) {
        if (tl->head > tl->cap / 2) {
            memmove(tl->e, tl->e + tl->head, tl->n * sizeof(*tl->e));
            tl->head = 0;
        } else {
            size_t cap = tl->cap ? tl->cap * 2 : 64;
            pk_entry_t *ne = realloc(tl->e, cap * sizeof(*ne));
            if (!ne)
                return NULL;
            tl->e = ne;
            tl->cap = cap;
        }
    }
    e = &tl->e[tl->head + tl->n];
    memset(e, 0, sizeof(*e));
    return e;
}

/* Number the entry and keep it, unless it is in front of the window (replay). */
static void commit_entry(pk_timeline_t *tl, pk_entry_t *e)
{
    e->msn = tl->next_msn++;
    tl->end_90k = e->start_90k + e->dur_90k;
    if (!tl->ast_ms && e->pdt_ms)
        tl->ast_ms = e->pdt_ms;
    if (e->msn < tl->window_msn) {
        free(e->pieces);
        return;
    }
    tl->n++;
}

/* The wall clock of pts; 0 when unknown, and kept within what a state holds. */
static int64_t pdt_of(const pk_timeline_t *tl, int64_t pts)
{
    int64_t ms;

    if (!tl->anchored)
        return 0;
    ms = tl->anchor_ms + (pts - tl->anchor_pts) / 90;
    return ms < 0 ? 0 : ms >= PK_MAX_NUMBER ? PK_MAX_NUMBER - 1 : ms;
}

static int32_t intern_init(pk_timeline_t *tl, const char *key)
{
    size_t i;

    for (i = tl->ninits; i-- > 0;)
        if (strcmp(tl->inits[i], key) == 0)
            return (int32_t) i;
    if (tl->ninits == PK_MAX_INITS)
        return -1; /* an encoder configuration per segment: refuse */
    if (tl->ninits == tl->capinits) {
        size_t cap = tl->capinits ? tl->capinits * 2 : 8;
        char **n = realloc(tl->inits, cap * sizeof(*n));
        if (!n)
            return -1;
        tl->inits = n;
        tl->capinits = cap;
    }
    tl->inits[tl->ninits] = strdup(key);
    return tl->inits[tl->ninits] ? (int32_t) tl->ninits++ : -1;
}

/* The gap entries of [start, start + dur), cut into target-sized pieces. */
static int add_gap_entries(pk_timeline_t *tl, const pk_gap_t *g)
{
    int64_t at = g->start_90k, end = g->start_90k + g->dur_90k;
    int32_t part = 0;

    if (g->disc || !tl->anchored) {
        /* a new clock from here: the failed result's, or carried on from
         * the last entry (its end is this gap's start in wall time) */
        int64_t wall = g->wall_ms;
        if (!wall && tl->n) {
            const pk_entry_t *last = pk_tl_entry(tl, tl->n - 1);
            wall = last->pdt_ms ? last->pdt_ms + last->dur_90k / 90 : 0;
        }
        if (wall) {
            tl->anchor_pts = at;
            tl->anchor_ms = wall;
            tl->anchored = true;
        }
    }
    while (at < end) {
        int64_t left = end - at, n = (left + tl->target_90k - 1) / tl->target_90k;
        int64_t d = left / n;
        pk_entry_t *e = push_entry(tl);

        if (!e)
            return -ENOMEM;
        e->seq = g->seq;
        e->start_90k = at;
        e->dur_90k = d;
        e->gap = true;
        e->disc = g->disc && at == g->start_90k;
        e->part = part++;
        e->pdt_ms = pdt_of(tl, at);
        commit_entry(tl, e);
        at += d;
    }
    return 0;
}

static pk_gap_t *gap_find(const pk_timeline_t *tl, int64_t seq)
{
    size_t i;

    for (i = 0; i < tl->ngaps; i++)
        if (seq >= tl->gaps[i].seq && seq - tl->gaps[i].seq < tl->gaps[i].count)
            return &tl->gaps[i];
    return NULL;
}

static int gap_record(pk_timeline_t *tl, const pk_gap_t *g)
{
    if (!tl->gaps) {
        tl->gaps = calloc(PK_MAX_GAPS, sizeof(*tl->gaps));
        if (!tl->gaps)
            return -ENOMEM;
    }
    if (tl->ngaps == PK_MAX_GAPS) {
        /* the oldest are long out of the window */
        memmove(tl->gaps, tl->gaps + 1, (tl->ngaps - 1) * sizeof(*tl->gaps));
        tl->ngaps--;
    }
    tl->gaps[tl->ngaps++] = *g;
    return 0;
}

/* Drop pending results of seqs below `seq` (given up on before they came). */
static void drop_pending_below(pk_timeline_t *tl, int64_t seq)
{
    size_t k = 0, i;

    while (k < tl->npending && tl->pending[k]->seq < seq)
        release_done(tl->pending[k++]);
    for (i = k; i < tl->npending; i++) {
        tl->pending[i - k] = tl->pending[i];
        tl->pending_since_ms[i - k] = tl->pending_since_ms[i];
    }
    tl->npending -= k;
}

static pk_rendition_t *rendition_for(pk_timeline_t *tl, const cb_proto_rendition_t *r)
{
    pk_rendition_t *x = NULL;
    size_t i;

    for (i = 0; i < tl->nrend; i++)
        if (strcmp(tl->rend[i].name, r->name) == 0)
            x = &tl->rend[i];
    if (!x) {
        if (tl->nrend == PK_MAX_RENDITIONS)
            return NULL;
        x = &tl->rend[tl->nrend++];
        memset(x, 0, sizeof(*x));
        snprintf(x->name, sizeof(x->name), "%s", r->name);
    }
    x->video = r->kind == CB_PROTO_RENDITION_KIND_VIDEO;
    snprintf(x->codecs, sizeof(x->codecs), "%s", r->codecs);
    if (x->video) {
        x->width = (int) r->width;
        x->height = (int) r->height;
        if (r->fps > 0)
            x->fps = r->fps;
    }
    x->peak_bps = CB_MAX(x->peak_bps, r->bandwidth_bps);
    x->target_bps = r->target_bitrate_bps;
    if (!x->video) {
        x->sample_rate = (int) r->sample_rate;
        x->channels = (int) r->channels;
    }
    return x;
}

/* The segment of r that starts nearest `start`, or NULL if none is close. */
static const cb_proto_media_segment_t *piece_of(const cb_proto_rendition_t *r, size_t k,
                                                size_t nref, int64_t start, int64_t dur)
{
    const cb_proto_media_segment_t *best = NULL;
    int64_t bestd = dur / 2 + 1;
    size_t i;

    if (r->segments_count == nref)
        return &r->segments[k];
    for (i = 0; i < r->segments_count; i++) {
        int64_t d = r->segments[i].start_pts_90k - start;
        if (d < 0)
            d = -d;
        if (d < bestd) {
            bestd = d;
            best = &r->segments[i];
        }
    }
    return best;
}

/* Check a result before it touches the timeline. */
static int check_done(const cb_proto_transcode_done_t *d, char *err, size_t errlen)
{
    size_t i, k, j;

    if (d->seq < 0 || d->seq >= PK_MAX_NUMBER) {
        snprintf(err, errlen, "seq: out of range");
        return -EINVAL;
    }
    if (d->finished_at_ms < 0 || d->finished_at_ms >= PK_MAX_NUMBER || d->ingest_wallclock_ms < 0 ||
        d->ingest_wallclock_ms >= PK_MAX_NUMBER) {
        snprintf(err, errlen, "finished_at_ms, ingest_wallclock_ms: out of range");
        return -EINVAL;
    }
    if (d->start_pts_90k <= -PK_MAX_PTS || d->start_pts_90k >= PK_MAX_PTS) {
        snprintf(err, errlen, "start_pts_90k: out of range");
        return -EINVAL;
    }
    if (d->duration_90k < 0 || d->duration_90k > PK_MAX_GAP_90K) {
        snprintf(err, errlen, "duration_90k: more than an hour");
        return -EINVAL;
    }
    if (d->status != CB_PROTO_TRANSCODE_DONE_STATUS_OK)
        return 0;
    if (d->renditions_count == 0) {
        snprintf(err, errlen, "renditions: a successful result has none");
        return -EINVAL;
    }
    if (d->renditions_count > PK_MAX_RENDITIONS) {
        snprintf(err, errlen, "renditions: more than %d", PK_MAX_RENDITIONS);
        return -EINVAL;
    }
    for (i = 0; i < d->renditions_count; i++) {
        const cb_proto_rendition_t *r = &d->renditions[i];
        for (k = 0; k < r->segments_count; k++) {
            const cb_proto_media_segment_t *m = &r->segments[k];
            if (m->start_pts_90k <= -PK_MAX_PTS || m->start_pts_90k >= PK_MAX_PTS ||
                m->duration_90k <= 0 || m->duration_90k > PK_MAX_GAP_90K) {
                snprintf(err, errlen, "renditions[%zu].segments[%zu]: time out of range", i, k);
                return -EINVAL;
            }
            if (m->bytes < 0 || m->bytes > (INT64_C(1) << 60)) {
                snprintf(err, errlen, "renditions[%zu].segments[%zu]: bytes out of range", i, k);
                return -EINVAL;
            }
            if (k && r->segments[k].start_pts_90k < r->segments[k - 1].start_pts_90k) {
                snprintf(err, errlen, "renditions[%zu].segments: not in time order", i);
                return -EINVAL;
            }
            if (m->parts_count > UINT8_MAX) {
                snprintf(err, errlen, "renditions[%zu].segments[%zu].parts: too many", i, k);
                return -EINVAL;
            }
            for (j = 0; j < m->parts_count; j++) {
                const cb_proto_part_t *p = &m->parts[j];
                if (p->offset < 0 || p->bytes <= 0 || p->offset + p->bytes > m->bytes ||
                    p->offset + p->bytes > UINT32_MAX || p->duration_90k <= 0 ||
                    p->duration_90k > m->duration_90k) {
                    snprintf(err, errlen,
                             "renditions[%zu].segments[%zu].parts[%zu]: outside the segment", i, k,
                             j);
                    return -EINVAL;
                }
            }
        }
    }
    return 0;
}

static int publish_failed(pk_timeline_t *tl, const cb_proto_transcode_done_t *d)
{
    pk_gap_t g = { .seq = d->seq,
                   .count = 1,
                   .start_90k = d->start_pts_90k,
                   .dur_90k = d->duration_90k,
                   .wall_ms = d->ingest_wallclock_ms,
                   .disc = d->discontinuity };
    int rc;

    if (!gap_find(tl, d->seq) && (rc = gap_record(tl, &g)))
        return rc;
    return add_gap_entries(tl, &g);
}

static int publish_ok(pk_timeline_t *tl, const cb_proto_transcode_done_t *d)
{
    const cb_proto_rendition_t *ref = NULL;
    const cb_proto_media_segment_t *seg[PK_MAX_RENDITIONS];
    pk_rendition_t *rx[PK_MAX_RENDITIONS];
    int32_t init[PK_MAX_RENDITIONS];
    pk_hls_part_t *parts;
    size_t i, k, nparts;

    for (i = 0; i < d->renditions_count; i++) {
        const cb_proto_rendition_t *r = &d->renditions[i];
        if (!ref || (r->kind == CB_PROTO_RENDITION_KIND_VIDEO &&
                     ref->kind != CB_PROTO_RENDITION_KIND_VIDEO))
            ref = r;
        rx[i] = rendition_for(tl, r);
        init[i] = intern_init(tl, r->init_path);
        if (init[i] < 0)
            return tl->ninits == PK_MAX_INITS ? -ENOSPC : -ENOMEM;
    }
    for (k = 0; k < ref->segments_count; k++) {
        const cb_proto_media_segment_t *rs = &ref->segments[k];
        pk_entry_t *e = push_entry(tl);

        if (!e)
            return -ENOMEM;
        e->seq = d->seq;
        e->start_90k = rs->start_pts_90k;
        e->dur_90k = rs->duration_90k;
        e->disc = d->discontinuity && k == 0;
        e->part = (int32_t) k;
        if (!tl->anchored || e->disc) {
            tl->anchor_pts = rs->start_pts_90k;
            tl->anchor_ms = d->ingest_wallclock_ms > 0 ? d->ingest_wallclock_ms
                                                       : d->finished_at_ms - d->duration_90k / 90;
            tl->anchor_ms += (rs->start_pts_90k - d->start_pts_90k) / 90;
            tl->anchored = true;
        }
        e->pdt_ms = pdt_of(tl, e->start_90k);
        for (i = 0, nparts = 0; i < d->renditions_count; i++) {
            seg[i] = piece_of(&d->renditions[i], k, ref->segments_count, rs->start_pts_90k,
                              rs->duration_90k);
            nparts += seg[i] && rx[i] ? seg[i]->parts_count : 0;
        }
        /* the pieces, then their parts: one allocation */
        e->pieces = calloc(1, tl->nrend * sizeof(*e->pieces) + nparts * sizeof(pk_hls_part_t));
        if (!e->pieces)
            return -ENOMEM;
        e->npieces = (uint8_t) tl->nrend;
        parts = (pk_hls_part_t *) (e->pieces + tl->nrend);
        for (i = 0; i < d->renditions_count; i++) {
            const cb_proto_media_segment_t *s = seg[i];
            pk_piece_t *p;
            size_t j;

            if (!s || !rx[i])
                continue;
            p = &e->pieces[rx[i] - tl->rend];
            *p = (pk_piece_t){ s->start_pts_90k, s->duration_90k,          s->bytes,
                               init[i],          (uint8_t) s->parts_count, parts };
            for (j = 0; j < s->parts_count; j++)
                *parts++ =
                    (pk_hls_part_t){ (uint32_t) s->parts[j].offset, (uint32_t) s->parts[j].bytes,
                                     (int32_t) s->parts[j].duration_90k, s->parts[j].independent };
        }
        commit_entry(tl, e);
    }
    for (i = 0; i < d->renditions_count; i++) {
        const cb_proto_rendition_t *r = &d->renditions[i];
        if (!rx[i])
            continue;
        for (k = 0; k < r->segments_count; k++) {
            /* totals stop at 2^62: no result can make them wrap */
            rx[i]->bytes = CB_MIN(rx[i]->bytes + r->segments[k].bytes, INT64_C(1) << 62);
            rx[i]->dur_90k = CB_MIN(rx[i]->dur_90k + r->segments[k].duration_90k, INT64_C(1) << 62);
        }
    }
    tl->last_finished_ms = d->finished_at_ms;
    return 0;
}

/* Take pending[0] off the list. */
static cb_proto_transcode_done_t *pop_pending(pk_timeline_t *tl)
{
    cb_proto_transcode_done_t *d = tl->pending[0];

    memmove(tl->pending, tl->pending + 1, (tl->npending - 1) * sizeof(*tl->pending));
    memmove(tl->pending_since_ms, tl->pending_since_ms + 1,
            (tl->npending - 1) * sizeof(*tl->pending_since_ms));
    tl->npending--;
    return d;
}

/*
 * Publish what can be published in order, up to the end of the session.
 * Returns how many results (or given-up jobs) went in; -1 when out of
 * memory before anything did.
 */
static int advance(pk_timeline_t *tl, bool *state_changed)
{
    int published = 0;

    /* an ended session (a replay of one included) up to its end, no further */
    while (!tl->ended || tl->next_seq <= tl->end_seq) {
        pk_gap_t *g = gap_find(tl, tl->next_seq);
        cb_proto_transcode_done_t *d;

        if (g) {
            /* given up on: its range once, at its first job */
            if (tl->next_seq == g->seq && add_gap_entries(tl, g))
                return published ? published : -1;
            tl->next_seq = g->seq + g->count;
            drop_pending_below(tl, tl->next_seq);
            published++;
            continue;
        }
        if (!tl->npending || tl->pending[0]->seq != tl->next_seq)
            break;
        d = pop_pending(tl);
        if (d->status == CB_PROTO_TRANSCODE_DONE_STATUS_OK) {
            int rc = publish_ok(tl, d);
            if (rc) {
                /* its entries could not be kept (out of memory, or an encoder
                 * configuration per segment): its time is a gap instead */
                cb_log_error("stream %s: job %lld not published (%s); a gap instead", tl->stream,
                             (long long) d->seq, strerror(-rc));
                publish_failed(tl, d);
                *state_changed = true;
            }
        } else {
            publish_failed(tl, d);
            *state_changed = true;
        }
        tl->packaging = d->packaging;
        tl->next_seq++;
        if (d->end_of_stream) {
            tl->ended = true;
            tl->end_seq = d->seq;
            *state_changed = true;
        }
        release_done(d);
        published++;
    }
    return published;
}

static void start_at(pk_timeline_t *tl, int64_t seq)
{
    drop_entries(tl);
    tl->first_seq = seq;
    tl->first_msn = tl->next_msn;
    tl->window_msn = tl->next_msn;
    tl->next_seq = seq;
    tl->ngaps = 0;
    tl->ended = false;
    tl->end_seq = -1;
    tl->anchored = false;
    tl->front_pts = tl->front_pdt_ms = 0;
    tl->ast_ms = 0;
    tl->period.msn = -1;
    tl->started_ms = cb_clock_wall_ms();
    tl->session_seq = seq;
}

/* The session ended and results of the next one wait: start it. */
static void reopen(pk_timeline_t *tl)
{
    start_at(tl, tl->end_seq + 1);
    drop_pending_below(tl, tl->next_seq);
}

int pk_tl_add(pk_timeline_t *tl, cb_proto_transcode_done_t *d, int64_t now_ms, bool *state_changed,
              char *err, size_t errlen)
{
    pk_tl_result_t res = PK_TL_PENDING;
    size_t i, at;
    int rc;

    *state_changed = false;
    rc = check_done(d, err, errlen);
    if (rc) {
        release_done(d);
        return rc;
    }
    for (i = 0; i < tl->npending; i++) {
        if (tl->pending[i]->seq == d->seq) {
            release_done(d);
            return PK_TL_DUPLICATE;
        }
    }
    if (tl->ended && d->seq > tl->end_seq) {
        /* a new publish session after the end: its own window */
        reopen(tl);
        *state_changed = true;
        res = PK_TL_REOPENED;
    } else if (tl->first_seq < 0 && d->seq == 0) {
        start_at(tl, 0); /* the stream's very first segment */
        *state_changed = true;
    }
    if (tl->npending == PK_MAX_PENDING) {
        /* too far ahead: give up on what is missing now */
        if (pk_tl_expire(tl, INT64_MAX, 0) > 0)
            *state_changed = true;
        if (tl->npending == PK_MAX_PENDING) {
            snprintf(err, errlen, "%d results wait already", PK_MAX_PENDING);
            release_done(d);
            return -ENOSPC;
        }
    }
    if (tl->next_seq >= 0 && d->seq < tl->next_seq) {
        /* published already, or given up on (maybe just now) */
        bool late = gap_find(tl, d->seq) != NULL;
        release_done(d);
        return late ? PK_TL_LATE : PK_TL_DUPLICATE;
    }
    for (at = tl->npending; at > 0 && tl->pending[at - 1]->seq > d->seq; at--) {
    }
    memmove(tl->pending + at + 1, tl->pending + at, (tl->npending - at) * sizeof(*tl->pending));
    memmove(tl->pending_since_ms + at + 1, tl->pending_since_ms + at,
            (tl->npending - at) * sizeof(*tl->pending_since_ms));
    tl->pending[at] = d;
    tl->pending_since_ms[at] = now_ms;
    tl->npending++;
    if (tl->next_seq >= 0 && advance(tl, state_changed) > 0 && res == PK_TL_PENDING)
        res = PK_TL_PUBLISHED;
    return (int) res;
}

int pk_tl_expire(pk_timeline_t *tl, int64_t now_ms, int64_t wait_ms)
{
    bool changed = false;
    int published = 0;

    while (tl->npending && now_ms - pk_tl_waiting_since(tl) >= wait_ms) {
        const cb_proto_transcode_done_t *d = tl->pending[0];
        int n;

        if (tl->next_seq < 0) {
            /* joined a stream in progress: start at the earliest result */
            start_at(tl, d->seq);
        } else if (tl->ended && tl->next_seq > tl->end_seq) {
            /* the next session's results wait behind the end */
            reopen(tl);
            if (!tl->npending)
                break;
            d = tl->pending[0];
        }
        if (d->seq > tl->next_seq) {
            /* the jobs before it are given up: one gap covers their range,
             * unless timestamps jumped (or the hole is implausibly long) */
            pk_gap_t g = { .seq = tl->next_seq,
                           .count = d->seq - tl->next_seq,
                           .start_90k = tl->end_90k,
                           .dur_90k = d->start_pts_90k - tl->end_90k };
            if (g.dur_90k < 0 || g.dur_90k > PK_MAX_GAP_90K || d->discontinuity || tl->n == 0)
                g.dur_90k = 0;
            if (gap_record(tl, &g))
                break;
        }
        bool was_ended = tl->ended;
        n = advance(tl, &changed);
        if (n <= 0)
            break; /* out of memory: try again on the next tick */
        published += n;
        if (tl->ended && !was_ended)
            break; /* the caller sees the ended session before a next one starts */
    }
    return published;
}

int pk_tl_advance(pk_timeline_t *tl)
{
    bool changed = false;

    int n = tl->next_seq >= 0 ? advance(tl, &changed) : 0;

    return n > 0 ? n : 0;
}

size_t pk_tl_window_start(const pk_timeline_t *tl, int64_t window_s)
{
    int64_t keep = CB_MAX(window_s * 90000, 3 * tl->target_90k), sum = 0;
    size_t i = tl->n;

    while (i > 0 && sum < keep)
        sum += pk_tl_entry(tl, --i)->dur_90k;
    if (tl->n - i < 3)
        i = tl->n > 3 ? tl->n - 3 : 0;
    return i;
}

int64_t pk_tl_disc_seq_at(const pk_timeline_t *tl, size_t start)
{
    int64_t d = tl->disc_seq;
    size_t k;

    /* those before the start, and the start's own: a playlist never
     * begins with a discontinuity tag */
    for (k = 1; k <= start && k < tl->n; k++)
        if (pk_tl_entry(tl, k)->disc)
            d++;
    return d;
}

int pk_tl_trim(pk_timeline_t *tl, int64_t window_s,
               void (*gone)(void *arg, const pk_timeline_t *tl, const pk_entry_t *e), void *arg)
{
    size_t cut, k;

    if (tl->ended)
        return 0;
    cut = pk_tl_window_start(tl, window_s);
    if (cut == 0)
        return 0;
    tl->disc_seq = pk_tl_disc_seq_at(tl, cut);
    /* the Period of the new front, before its opening leaves */
    tl->period.msn = -1;
    if (!pk_tl_entry(tl, cut)->gap && !pk_tl_opens_period(tl, cut))
        tl->period = pk_tl_period_of(tl, cut);
    for (k = 0; k < cut; k++) {
        pk_entry_t *e = pk_tl_entry(tl, k);
        if (gone)
            gone(arg, tl, e);
        free(e->pieces);
    }
    tl->head += cut;
    tl->n -= cut;
    tl->front_pts = pk_tl_entry(tl, 0)->start_90k;
    tl->front_pdt_ms = pk_tl_entry(tl, 0)->pdt_ms;
    tl->window_msn = pk_tl_entry(tl, 0)->msn;
    tl->first_seq = pk_tl_entry(tl, 0)->seq;
    tl->first_msn = pk_tl_entry(tl, 0)->msn - pk_tl_entry(tl, 0)->part;
    return (int) cut;
}

/* Whether b's pieces have init segments other than a's. */
static bool inits_differ(const pk_entry_t *a, const pk_entry_t *b)
{
    size_t i;

    for (i = 0; i < a->npieces && i < b->npieces; i++)
        if (a->pieces[i].dur_90k > 0 && b->pieces[i].dur_90k > 0 &&
            a->pieces[i].init != b->pieces[i].init)
            return true;
    return false;
}

bool pk_tl_opens_period(const pk_timeline_t *tl, size_t i)
{
    const pk_entry_t *e = pk_tl_entry(tl, i), *prev;

    if (e->gap)
        return false;
    if (i == 0)
        return tl->period.msn < 0 || tl->period.msn >= e->msn;
    prev = pk_tl_entry(tl, i - 1);
    return prev->gap || e->disc || inits_differ(prev, e);
}

pk_period_open_t pk_tl_period_of(const pk_timeline_t *tl, size_t i)
{
    const pk_entry_t *e;

    while (i > 0 && !pk_tl_opens_period(tl, i))
        i--;
    e = pk_tl_entry(tl, i);
    if (i == 0 && !pk_tl_opens_period(tl, 0))
        return tl->period;
    return (pk_period_open_t){ e->msn, e->start_90k, e->pdt_ms };
}

/* ---- state ---- */

json_t *pk_tl_state_dump(const pk_timeline_t *tl)
{
    json_t *gaps = json_array(), *st;
    size_t i;

    for (i = 0; gaps && i < tl->ngaps; i++) {
        const pk_gap_t *g = &tl->gaps[i];
        if (g->seq + g->count > tl->first_seq)
            json_array_append_new(gaps, json_pack("[I,I,I,I,I,b]", (json_int_t) g->seq,
                                                  (json_int_t) g->count, (json_int_t) g->start_90k,
                                                  (json_int_t) g->dur_90k, (json_int_t) g->wall_ms,
                                                  g->disc));
    }
    st = json_pack("{s:i, s:s, s:I, s:I, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:o}", "v",
                   STATE_VERSION, "stream_id", tl->stream, "first_seq", (json_int_t) tl->first_seq,
                   "first_msn", (json_int_t) tl->first_msn, "window_msn",
                   (json_int_t) tl->window_msn, "disc_seq", (json_int_t) tl->disc_seq, "ended",
                   tl->ended, "end_seq", (json_int_t) tl->end_seq, "started_ms",
                   (json_int_t) tl->started_ms, "session_seq", (json_int_t) tl->session_seq,
                   "front_pts", (json_int_t) tl->front_pts, "front_pdt_ms",
                   (json_int_t) tl->front_pdt_ms, "gaps", gaps);
    if (st && tl->ast_ms)
        json_object_set_new(st, "ast_ms", json_integer((json_int_t) tl->ast_ms));
    if (st && tl->period.msn >= 0)
        json_object_set_new(st, "period",
                            json_pack("[I,I,I]", (json_int_t) tl->period.msn,
                                      (json_int_t) tl->period.start_90k,
                                      (json_int_t) tl->period.pdt_ms));
    return st;
}

/* An integer member in [lo, hi]; 0, or -EINVAL naming it. */
static int state_int(const json_t *st, const char *name, int64_t lo, int64_t hi, int64_t *out,
                     char *err, size_t errlen)
{
    const json_t *v = json_object_get(st, name);

    if (!json_is_integer(v)) {
        snprintf(err, errlen, "packager state: %s: %s", name, v ? "not an integer" : "missing");
        return -EINVAL;
    }
    *out = json_integer_value(v);
    if (*out < lo || *out > hi) {
        snprintf(err, errlen, "packager state: %s: %lld is out of range", name, (long long) *out);
        return -EINVAL;
    }
    return 0;
}

int pk_tl_state_load(pk_timeline_t *tl, const json_t *st, char *err, size_t errlen)
{
    /* sequence numbers come from results (below 2^53); the media sequence
     * and discontinuity counters only grow from what a state had, so a
     * state near 2^53 must still load after more entries */
    const int64_t N = PK_MAX_NUMBER, COUNTER = INT64_C(1) << 62;
    int64_t v, first_seq, first_msn, window_msn, disc_seq, end_seq, started, session, fpts, fpdt;
    int64_t ast = 0;
    pk_period_open_t period = { -1, 0, 0 };
    const json_t *gaps, *g, *per, *ended = json_object_get(st, "ended");
    pk_gap_t *loaded;
    size_t i, n;

    if (!json_is_object(st)) {
        snprintf(err, errlen, "packager state: not an object");
        return -EINVAL;
    }
    if (state_int(st, "v", STATE_VERSION, STATE_VERSION, &v, err, errlen) ||
        state_int(st, "first_seq", -1, N, &first_seq, err, errlen) ||
        state_int(st, "first_msn", 0, COUNTER, &first_msn, err, errlen) ||
        state_int(st, "window_msn", 0, COUNTER, &window_msn, err, errlen) ||
        state_int(st, "disc_seq", 0, COUNTER, &disc_seq, err, errlen) ||
        state_int(st, "end_seq", -1, N, &end_seq, err, errlen) ||
        state_int(st, "started_ms", 0, N, &started, err, errlen) ||
        state_int(st, "session_seq", -1, N, &session, err, errlen) ||
        state_int(st, "front_pts", -N, N, &fpts, err, errlen) ||
        state_int(st, "front_pdt_ms", 0, N, &fpdt, err, errlen))
        return -EINVAL;
    if (!json_is_boolean(ended)) {
        snprintf(err, errlen, "packager state: ended: not a boolean");
        return -EINVAL;
    }
    if (window_msn < first_msn) {
        snprintf(err, errlen, "packager state: window_msn: before first_msn");
        return -EINVAL;
    }
    /* added later: a state without them is still good */
    if (json_object_get(st, "ast_ms") && state_int(st, "ast_ms", 0, N, &ast, err, errlen))
        return -EINVAL;
    per = json_object_get(st, "period");
    if (per) {
        json_int_t pm, pt, pp;
        if (json_unpack((json_t *) per, "[I,I,I]", &pm, &pt, &pp) || pm < 0 || pm > window_msn ||
            pt <= -N || pt >= N || pp < 0 || pp >= N) {
            snprintf(err, errlen,
                     "packager state: period: not [msn up to window_msn, media time, wall clock]");
            return -EINVAL;
        }
        period = (pk_period_open_t){ pm, pt, pp };
    }
    gaps = json_object_get(st, "gaps");
    n = json_array_size(gaps);
    if (!json_is_array(gaps) || n > PK_MAX_GAPS) {
        snprintf(err, errlen, "packager state: gaps: not an array of at most %d", PK_MAX_GAPS);
        return -EINVAL;
    }
    loaded = calloc(PK_MAX_GAPS, sizeof(*loaded));
    if (!loaded)
        return -ENOMEM;
    json_array_foreach(gaps, i, g)
    {
        json_int_t seq, count, start, dur, wall;
        int disc;
        if (json_unpack((json_t *) g, "[I,I,I,I,I,b]", &seq, &count, &start, &dur, &wall, &disc) ||
            seq < 0 || seq >= N || count < 1 || count >= N || start <= -N || start >= N ||
            dur < 0 || dur > PK_MAX_GAP_90K || wall < 0 || wall >= N) {
            snprintf(err, errlen,
                     "packager state: gaps[%zu]: not [seq, count, start, duration, wall clock, "
                     "discontinuity] within range",
                     i);
            free(loaded);
            return -EINVAL;
        }
        loaded[i] = (pk_gap_t){ seq, count, start, dur, wall, disc };
    }
    /* all checked: only now does the timeline change */
    free(tl->gaps);
    tl->gaps = loaded;
    tl->ngaps = n;
    tl->first_seq = first_seq;
    tl->first_msn = first_msn;
    tl->window_msn = window_msn;
    tl->disc_seq = disc_seq;
    tl->ended = json_is_true(ended);
    tl->end_seq = end_seq;
    tl->started_ms = started;
    tl->session_seq = session;
    tl->front_pts = fpts;
    tl->front_pdt_ms = fpdt;
    tl->ast_ms = ast;
    tl->period = period;
    tl->next_seq = first_seq;
    tl->next_msn = first_msn;
    if (fpdt) {
        /* the clock at the front, until a result or a discontinuity says otherwise */
        tl->anchor_pts = fpts;
        tl->anchor_ms = fpdt;
        tl->anchored = true;
    }
    return 0;
}

/*
 * packager_render.c - a timeline's manifests; see packager_render.h.
 */
#include "packager_render.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"
#include "packager_dash.h"
#include "packager_hls.h"

#define URI_MAX 112 /* "<rendition 32>/<init name>" with room */
/* Low latency: the entries at the live edge whose parts are passed on (the
 * playlist lists those of the last three target durations: 3 entries with
 * 2 s segments, 6 with the shortest, 0.5 s). */
#define PART_ENTRIES 32

typedef char uri_t[URI_MAX];

static const char *base_name(const char *key)
{
    const char *s = key ? strrchr(key, '/') : NULL;

    return s ? s + 1 : key;
}

void pk_render_bitrates(const pk_rendition_t *r, int64_t *peak, int64_t *average)
{
    /* in floating point: bytes times 720000 leaves int64_t for a stream of days */
    double avg = r->dur_90k > 0 ? (double) r->bytes * 8.0 * 90000.0 / (double) r->dur_90k : 0;

    *average = avg < (double) PK_MAX_NUMBER ? (int64_t) avg : PK_MAX_NUMBER;
    /* a rung is announced for what it may need: its peak, not under its target */
    *peak = CB_MAX(r->peak_bps, CB_MAX(*average, r->target_bps));
}

/* The piece of rendition ri in entry e, or NULL. */
static const pk_piece_t *piece(const pk_entry_t *e, size_t ri)
{
    return e->pieces && ri < e->npieces && e->pieces[ri].dur_90k > 0 ? &e->pieces[ri] : NULL;
}

/*
 * Low latency: the parts of the entries at the live edge, and where the
 * other renditions end. Returns the part target (0: the playlist is not
 * low latency; the writer also leaves parts out of VOD and ended ones).
 */
static int64_t edge_parts(const pk_timeline_t *tl, size_t ri, size_t from, pk_hls_segment_t *segs,
                          pk_hls_report_t *reports, uri_t *report_uris, size_t *nreports)
{
    size_t n = tl->n - from, i, j, used = 0;
    const pk_entry_t *last = n ? pk_tl_entry(tl, tl->n - 1) : NULL;

    *nreports = 0;
    if (!tl->packaging.low_latency || tl->packaging.part_target_ms <= 0 || !last)
        return 0;
    for (i = n > PART_ENTRIES ? n - PART_ENTRIES : 0; i < n; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, from + i);
        const pk_piece_t *p = e->gap ? NULL : piece(e, ri);

        if (!p || p->nparts == 0)
            continue;
        segs[i].parts = p->parts;
        segs[i].nparts = p->nparts;
        used += p->nparts;
    }
    if (used == 0)
        return 0; /* nothing at the edge was cut into parts */
    for (j = 0; j < tl->nrend; j++) {
        const pk_piece_t *p = last->gap ? NULL : piece(last, j);
        size_t at = *nreports;

        if (j == ri)
            continue;
        snprintf(report_uris[at], URI_MAX, "%s.m3u8", tl->rend[j].name);
        reports[at] = (pk_hls_report_t){
            .uri = report_uris[at],
            .last_msn = last->msn,
            .last_part = p && p->nparts ? p->nparts - 1 : -1,
        };
        *nreports = at + 1;
    }
    return tl->packaging.part_target_ms * 90;
}

/*
 * The longest EXT-X-TARGETDURATION any rendition's playlist has over the
 * window: CAN-SKIP-UNTIL is six of it in every playlist, as the
 * specification asks the same EXT-X-SERVER-CONTROL of all of them.
 */
static int stream_target_s(const pk_timeline_t *tl, size_t from)
{
    int64_t longest = tl->target_90k;
    size_t i, j;

    for (i = from; i < tl->n; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, i);

        longest = CB_MAX(longest, e->dur_90k);
        for (j = 0; !e->gap && j < tl->nrend; j++)
            if (piece(e, j))
                longest = CB_MAX(longest, piece(e, j)->dur_90k);
    }
    return (int) ((longest + 45000) / 90000); /* rounded, as the writer does */
}

static int media_playlist(const pk_timeline_t *tl, size_t ri, size_t from, int skip_until_s,
                          const pk_render_opts_t *o, cb_buf_t *out)
{
    const pk_rendition_t *r = &tl->rend[ri];
    size_t n = tl->n - from, i, nreports = 0;
    pk_hls_segment_t *segs = calloc(n ? n : 1, sizeof(*segs));
    uri_t *uris = calloc(n ? n : 1, sizeof(*uris) * 2);
    pk_hls_report_t reports[PK_MAX_RENDITIONS];
    uri_t report_uris[PK_MAX_RENDITIONS];
    int64_t part_target;
    int rc;

    if (!segs || !uris) {
        free(segs);
        free(uris);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, from + i);
        const pk_piece_t *p = e->gap ? NULL : piece(e, ri);
        char *uri = uris[2 * i], *map = uris[2 * i + 1];

        snprintf(uri, URI_MAX, "%s/%lld.m4s", r->name,
                 (long long) (p ? p->start_90k : e->start_90k));
        segs[i] = (pk_hls_segment_t){
            .duration_90k = p ? p->dur_90k : e->dur_90k,
            .uri = uri,
            .pdt_ms = e->pdt_ms,
            .discontinuity = e->disc,
            .gap = p == NULL,
        };
        if (p) {
            snprintf(map, URI_MAX, "%s/%s", r->name, base_name(pk_tl_init(tl, p)));
            segs[i].map_uri = map;
        }
    }
    part_target = edge_parts(tl, ri, from, segs, reports, report_uris, &nreports);
    rc = pk_hls_write_media(
        &(pk_hls_media_t){
            .media_sequence = n ? pk_tl_entry(tl, from)->msn : tl->next_msn,
            .discontinuity_sequence = pk_tl_disc_seq_at(tl, from),
            .min_target_s = (int) (tl->target_90k / 90000),
            .vod = o->vod,
            .ended = tl->ended,
            .can_block_reload = o->can_block_reload && !o->vod && !tl->ended,
            .part_target_90k = part_target,
            /* the least the specification allows: parts come a segment
             * at a time, so hls.js's distance from the wall clock is this,
             * plus up to a segment and the pipeline's lag behind it at its
             * first load, plus its startup (docs/packager.md) */
            .part_hold_back_90k = 2 * part_target,
            .skip_until_s = skip_until_s,
            .reports = reports,
            .nreports = nreports,
            .segs = segs,
            .n = n,
        },
        out);
    free(segs);
    free(uris);
    return rc;
}

static int master_playlist(const pk_timeline_t *tl, cb_buf_t *out)
{
    pk_hls_variant_t v[PK_MAX_RENDITIONS];
    uri_t uris[PK_MAX_RENDITIONS];
    pk_hls_master_t m = { .variants = v };
    size_t i;

    for (i = 0; i < tl->nrend; i++) {
        const pk_rendition_t *r = &tl->rend[i];
        int64_t peak, avg;

        pk_render_bitrates(r, &peak, &avg);
        snprintf(uris[i], URI_MAX, "%s.m3u8", r->name);
        if (!r->video) {
            if (!m.audio_uri) {
                m.audio_uri = uris[i];
                m.audio_codecs = r->codecs;
                m.audio_bps = peak;
                m.audio_channels = r->channels > 0 ? r->channels : 2;
            }
            continue;
        }
        v[m.n++] = (pk_hls_variant_t){
            .uri = uris[i],
            .peak_bps = peak,
            .average_bps = avg,
            .width = r->width,
            .height = r->height,
            .fps = r->fps,
            .codecs = r->codecs,
        };
    }
    return pk_hls_write_master(&m, out);
}

/* The DASH timeline of a set in entries [from, to): the pieces of its first rendition. */
static size_t set_timeline(const pk_timeline_t *tl, size_t ri, size_t from, size_t to,
                           pk_dash_seg_t *segs)
{
    size_t i, n = 0;

    for (i = from; i < to; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, i);
        const pk_piece_t *p = e->gap ? NULL : piece(e, ri);
        if (p)
            segs[n++] = (pk_dash_seg_t){ p->start_90k, p->dur_90k };
    }
    return n;
}

/* The init segment of rendition ri in entries [from, to), as "<name>/<file>":
 * one, since a new one opens a Period. */
static void period_init(const pk_timeline_t *tl, size_t ri, size_t from, size_t to, char *out,
                        size_t outlen)
{
    size_t i;

    out[0] = '\0';
    for (i = from; i < to; i++) {
        const pk_piece_t *p = piece(pk_tl_entry(tl, i), ri);
        if (p) {
            snprintf(out, outlen, "%s/%s", tl->rend[ri].name, base_name(pk_tl_init(tl, p)));
            return;
        }
    }
}

/* What one Period of the MPD needs, made from entries [from, to). */
typedef struct period_buf {
    pk_dash_rep_t reps[2][PK_MAX_RENDITIONS];
    uri_t inits[PK_MAX_RENDITIONS];
    pk_dash_set_t sets[2];
} period_buf_t;

static void make_period(const pk_timeline_t *tl, size_t from, size_t to, period_buf_t *pb,
                        pk_dash_seg_t *segs[2], pk_dash_period_t *per)
{
    pk_dash_set_t *sets = pb->sets;
    size_t i;

    sets[0] = (pk_dash_set_t){ .video = true, .reps = pb->reps[0] };
    sets[1] = (pk_dash_set_t){ .reps = pb->reps[1] };
    for (i = 0; i < tl->nrend; i++) {
        const pk_rendition_t *r = &tl->rend[i];
        int k = r->video ? 0 : 1;
        pk_dash_set_t *set = &sets[k];
        int64_t peak, avg;

        period_init(tl, i, from, to, pb->inits[i], URI_MAX);
        if (!pb->inits[i][0])
            continue; /* nothing of it in this Period */
        if (set->nreps == 0) {
            set->segs = segs[k];
            set->nsegs = set_timeline(tl, i, from, to, segs[k]);
        }
        pk_render_bitrates(r, &peak, &avg);
        pb->reps[k][set->nreps++] = (pk_dash_rep_t){
            .id = r->name,
            .init_uri = pb->inits[i],
            .codecs = r->codecs,
            .bandwidth_bps = peak,
            .width = r->width,
            .height = r->height,
            .fps = r->fps,
            .sample_rate = r->sample_rate > 0 ? r->sample_rate : 48000,
            .channels = r->channels > 0 ? r->channels : 2,
        };
    }
    per->sets = sets[0].nreps ? sets : sets + 1;
    per->nsets = (size_t) (sets[0].nreps > 0) + (size_t) (sets[1].nreps > 0);
}

/* The end of the run of entries that plays straight through from entry i
 * (one with media): the next gap or entry that opens a Period. */
static size_t run_end(const pk_timeline_t *tl, size_t i)
{
    size_t k = i + 1;

    while (k < tl->n && !pk_tl_entry(tl, k)->gap && !pk_tl_opens_period(tl, k))
        k++;
    return k;
}

/*
 * The MPD: a Period per run of entries that plays straight through
 * (pk_tl_opens_period), gap entries in none. A Period starts where the wall
 * clock of its first entry is: from the session's availabilityStartTime
 * when live, from the first Period's when static; so a Period keeps its id
 * and start while the window moves and after a restart.
 */
static int mpd(const pk_timeline_t *tl, size_t from, const pk_render_opts_t *o, cb_buf_t *out)
{
    bool dynamic = !o->vod && !tl->ended;
    size_t n = tl->n - from, i, np = 0, k, runs = 0;
    pk_dash_period_t *pers = NULL;
    period_buf_t *pbs = NULL;
    pk_dash_seg_t *segs = calloc(2 * (n ? n : 1), sizeof(*segs));
    int64_t max_dur = 0, base_ms = 0, end_ms = 0;
    int rc = -ENOMEM;

    for (i = from; i < tl->n; i = pk_tl_entry(tl, i)->gap ? i + 1 : run_end(tl, i))
        runs += !pk_tl_entry(tl, i)->gap;
    pers = calloc(runs ? runs : 1, sizeof(*pers));
    pbs = calloc(runs ? runs : 1, sizeof(*pbs));
    if (!pers || !pbs || !segs)
        goto out;
    for (i = from; i < tl->n; i = k) {
        const pk_entry_t *e = pk_tl_entry(tl, i), *last;
        pk_dash_seg_t *ps[2] = { segs + (i - from), segs + n + (i - from) };
        pk_period_open_t open;

        if (e->gap) {
            k = i + 1;
            continue;
        }
        k = run_end(tl, i); /* entries i..k-1 play straight through */
        open = pk_tl_period_of(tl, i);
        if (np == 0)
            base_ms = dynamic ? tl->ast_ms : open.pdt_ms;
        pers[np] = (pk_dash_period_t){
            .id = open.msn,
            .start_ms = CB_MAX(open.pdt_ms - base_ms, 0),
            .pto_90k = open.start_90k,
        };
        make_period(tl, i, k, &pbs[np], ps, &pers[np]);
        last = pk_tl_entry(tl, k - 1);
        end_ms = pers[np].start_ms + (last->start_90k + last->dur_90k - open.start_90k) / 90;
        if (pers[np].nsets)
            np++;
    }
    for (i = from; i < tl->n; i++)
        max_dur = CB_MAX(max_dur, pk_tl_entry(tl, i)->dur_90k);
    if (np == 0) {
        rc = -ENODATA; /* only gaps in the window */
        goto out;
    }
    rc = pk_dash_write_mpd(
        &(pk_dash_mpd_t){
            .dynamic = dynamic,
            .availability_start_ms = tl->ast_ms,
            .publish_ms = o->now_ms,
            .dvr_window_s = CB_MAX(o->window_s, 3 * tl->target_90k / 90000),
            /*
             * Two delays for two kinds of player (docs/packager.md). The
             * ServiceDescription's target is behind the wall clock (dash.js
             * takes it before suggestedPresentationDelay): a segment is listed
             * when complete, so two targets leave one for the pipeline's lag.
             * suggestedPresentationDelay is behind the newest segment listed
             * when the MPD was loaded, itself up to a segment behind (Shaka
             * Player). An MPD reloaded every quarter segment lets both find
             * a new segment soon after it is listed.
             */
            .update_period_ms = tl->target_90k / 90 / 4,
            .presentation_delay_ms = 5 * tl->target_90k / 90 / 4,
            .latency_target_ms = 2 * tl->target_90k / 90,
            .min_buffer_ms = tl->target_90k / 90,
            .max_segment_ms = max_dur / 90,
            .utc_timing_uri = o->utc_timing_uri,
            .duration_ms = end_ms,
            .periods = pers,
            .nperiods = np,
        },
        out);
out:
    free(pers);
    free(pbs);
    free(segs);
    return rc;
}

int pk_render(const pk_timeline_t *tl, const pk_render_opts_t *o, pk_render_file_fn fn, void *arg)
{
    size_t from = o->vod || tl->ended ? 0 : pk_tl_window_start(tl, o->window_s), i;
    char name[48];
    cb_buf_t b;
    int rc, skip_until_s;

    if (tl->n == 0 || tl->nrend == 0)
        return -ENODATA;
    skip_until_s = PK_HLS_SKIP_TARGETS * stream_target_s(tl, from); /* one for every rendition */
    cb_buf_init(&b, 16 << 20);
    for (i = 0; i < tl->nrend; i++) {
        cb_buf_reset(&b);
        rc = media_playlist(tl, i, from, skip_until_s, o, &b);
        snprintf(name, sizeof(name), "%s.m3u8", tl->rend[i].name);
        if (rc || (rc = fn(arg, name, &b)))
            goto out;
    }
    cb_buf_reset(&b);
    rc = master_playlist(tl, &b);
    if (rc || (rc = fn(arg, "master.m3u8", &b)))
        goto out;
    cb_buf_reset(&b);
    rc = mpd(tl, from, o, &b);
    if (rc == 0)
        rc = fn(arg, "manifest.mpd", &b);
out:
    cb_buf_release(&b);
    return rc;
}

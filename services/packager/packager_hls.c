/*
 * packager_hls.c - HLS media and multivariant playlists (see packager_hls.h).
 *
 * Appends go through one writer that remembers the first failure, so the
 * playlist code reads as the playlist does.
 */
#include "packager_hls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "defs.h"
#include "packager_text.h"

#define HLS_VERSION 7

/* EXTINF and target durations: seconds with millisecond precision. */
static double seconds(int64_t ticks_90k)
{
    return (double) ticks_90k / 90000.0;
}

static void put_pdt(pk_text_t *w, int64_t ms)
{
    char when[32];

    pk_iso8601(ms, when);
    pk_put(w, "#EXT-X-PROGRAM-DATE-TIME:%s\n", when);
}

/* The parts of s, before its EXTINF. */
static void put_parts(pk_text_t *w, const pk_hls_segment_t *s)
{
    size_t k;

    for (k = 0; k < s->nparts; k++) {
        const pk_hls_part_t *p = &s->parts[k];

        pk_put(w, "#EXT-X-PART:DURATION=%.3f,URI=\"%s\",BYTERANGE=\"%u@%u\"%s\n",
               seconds(p->duration_90k), s->uri, p->bytes, p->offset,
               p->independent ? ",INDEPENDENT=YES" : "");
    }
}

int pk_hls_write_media(const pk_hls_media_t *m, cb_buf_t *out)
{
    pk_text_t w = { .b = out };
    const char *map = NULL;
    int target = CB_MAX(m->min_target_s, 1);
    bool ll = m->part_target_90k > 0 && m->can_block_reload && !m->vod && !m->ended;
    int64_t left = 0, hold;
    size_t i, parts_from = m->n;

    for (i = 0; i < m->n; i++) {
        const pk_hls_segment_t *s = &m->segs[i];
        /* EXTINF rounded to the nearest second must not exceed the target */
        int rounded = (int) ((s->duration_90k + 45000) / 90000);

        if (!s->uri || (!s->map_uri && !s->gap) || s->duration_90k <= 0)
            return -EINVAL;
        target = CB_MAX(target, rounded);
    }
    /* parts are listed for the segments of the last three target durations */
    while (ll && parts_from > 0 && left < 3 * target * INT64_C(90000))
        left += m->segs[--parts_from].duration_90k;
    pk_put(&w, "#EXTM3U\n#EXT-X-VERSION:%d\n", HLS_VERSION);
    pk_put(&w, "#EXT-X-TARGETDURATION:%d\n", target);
    if (ll)
        pk_put(&w, "#EXT-X-PART-INF:PART-TARGET=%.3f\n", seconds(m->part_target_90k));
    pk_put(&w, "#EXT-X-MEDIA-SEQUENCE:%lld\n", (long long) m->media_sequence);
    if (!m->vod)
        pk_put(&w, "#EXT-X-DISCONTINUITY-SEQUENCE:%lld\n", (long long) m->discontinuity_sequence);
    if (m->vod)
        pk_put(&w, "#EXT-X-PLAYLIST-TYPE:VOD\n");
    hold = CB_MAX(m->part_hold_back_90k, 3 * m->part_target_90k);
    if (ll)
        pk_put(&w, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%.3f\n",
               seconds(hold));
    else if (m->can_block_reload)
        pk_put(&w, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n");
    pk_put(&w, "#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i = 0; i < m->n; i++) {
        const pk_hls_segment_t *s = &m->segs[i];

        if (s->discontinuity && i > 0)
            pk_put(&w, "#EXT-X-DISCONTINUITY\n");
        if (s->map_uri && (!map || strcmp(map, s->map_uri) != 0)) {
            pk_put(&w, "#EXT-X-MAP:URI=\"%s\"\n", s->map_uri);
            map = s->map_uri;
        }
        if (s->pdt_ms > 0)
            put_pdt(&w, s->pdt_ms);
        if (s->gap)
            pk_put(&w, "#EXT-X-GAP\n");
        else if (i >= parts_from)
            put_parts(&w, s);
        pk_put(&w, "#EXTINF:%.3f,\n%s\n", seconds(s->duration_90k), s->uri);
    }
    for (i = 0; ll && i < m->nreports; i++) {
        const pk_hls_report_t *r = &m->reports[i];

        pk_put(&w, "#EXT-X-RENDITION-REPORT:URI=\"%s\",LAST-MSN=%lld", r->uri,
               (long long) r->last_msn);
        if (r->last_part >= 0)
            pk_put(&w, ",LAST-PART=%d", r->last_part);
        pk_put(&w, "\n");
    }
    if (m->vod || m->ended)
        pk_put(&w, "#EXT-X-ENDLIST\n");
    return w.err;
}

int pk_hls_write_master(const pk_hls_master_t *m, cb_buf_t *out)
{
    pk_text_t w = { .b = out };
    bool audio = m->audio_uri && m->audio_codecs;
    size_t i;

    if (m->n == 0 && !audio)
        return -EINVAL;
    pk_put(&w, "#EXTM3U\n#EXT-X-VERSION:%d\n#EXT-X-INDEPENDENT-SEGMENTS\n", HLS_VERSION);
    if (audio && m->n > 0)
        pk_put(&w,
               "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,"
               "AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"%s\"\n",
               m->audio_channels > 0 ? m->audio_channels : 2, m->audio_uri);
    for (i = 0; i < m->n; i++) {
        const pk_hls_variant_t *v = &m->variants[i];
        int64_t extra = audio ? m->audio_bps : 0;

        if (!v->uri || !v->codecs)
            return -EINVAL;
        pk_put(&w, "#EXT-X-STREAM-INF:BANDWIDTH=%lld", (long long) (v->peak_bps + extra));
        if (v->average_bps > 0)
            pk_put(&w, ",AVERAGE-BANDWIDTH=%lld", (long long) (v->average_bps + extra));
        pk_put(&w, ",RESOLUTION=%dx%d", v->width, v->height);
        if (v->fps > 0)
            pk_put(&w, ",FRAME-RATE=%.3f", v->fps);
        if (audio)
            pk_put(&w, ",CODECS=\"%s,%s\",AUDIO=\"audio\"\n", v->codecs, m->audio_codecs);
        else
            pk_put(&w, ",CODECS=\"%s\"\n", v->codecs);
        pk_put(&w, "%s\n", v->uri);
    }
    if (m->n == 0)
        pk_put(&w, "#EXT-X-STREAM-INF:BANDWIDTH=%lld,CODECS=\"%s\"\n%s\n", (long long) m->audio_bps,
               m->audio_codecs, m->audio_uri);
    return w.err;
}

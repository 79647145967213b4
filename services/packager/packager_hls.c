/*
 * packager_hls.c - HLS media and multivariant playlists (see packager_hls.h).
 *
 * Appends go through one writer that remembers the first failure, so the
 * playlist code reads as the playlist does.
 */
#include "packager_hls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "defs.h"

#define HLS_VERSION 7

typedef struct w {
    cb_buf_t *b;
    int err;
} w_t;

static void CB_PRINTF(2, 3) put(w_t *w, const char *fmt, ...)
{
    va_list ap;

    if (w->err)
        return;
    va_start(ap, fmt);
    w->err = cb_buf_vappendf(w->b, fmt, ap);
    va_end(ap);
}

/* EXTINF and target durations: seconds with millisecond precision. */
static double seconds(int64_t ticks_90k)
{
    return (double) ticks_90k / 90000.0;
}

/* "2026-11-22T03:20:00.000Z" */
static void put_pdt(w_t *w, int64_t ms)
{
    time_t s = (time_t) (ms / 1000);
    struct tm tm;
    char date[32];

    gmtime_r(&s, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    put(w, "#EXT-X-PROGRAM-DATE-TIME:%s.%03dZ\n", date, (int) (ms % 1000));
}

int pk_hls_write_media(const pk_hls_media_t *m, cb_buf_t *out)
{
    w_t w = { .b = out };
    const char *map = NULL;
    int target = CB_MAX(m->min_target_s, 1);
    size_t i;

    for (i = 0; i < m->n; i++) {
        const pk_hls_segment_t *s = &m->segs[i];
        /* EXTINF rounded to the nearest second must not exceed the target */
        int rounded = (int) ((s->duration_90k + 45000) / 90000);

        if (!s->uri || (!s->map_uri && !s->gap) || s->duration_90k <= 0)
            return -EINVAL;
        target = CB_MAX(target, rounded);
    }
    put(&w, "#EXTM3U\n#EXT-X-VERSION:%d\n", HLS_VERSION);
    put(&w, "#EXT-X-TARGETDURATION:%d\n", target);
    put(&w, "#EXT-X-MEDIA-SEQUENCE:%lld\n", (long long) m->media_sequence);
    if (!m->vod)
        put(&w, "#EXT-X-DISCONTINUITY-SEQUENCE:%lld\n", (long long) m->discontinuity_sequence);
    if (m->vod)
        put(&w, "#EXT-X-PLAYLIST-TYPE:VOD\n");
    put(&w, "#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i = 0; i < m->n; i++) {
        const pk_hls_segment_t *s = &m->segs[i];

        if (s->discontinuity && i > 0)
            put(&w, "#EXT-X-DISCONTINUITY\n");
        if (s->map_uri && (!map || strcmp(map, s->map_uri) != 0)) {
            put(&w, "#EXT-X-MAP:URI=\"%s\"\n", s->map_uri);
            map = s->map_uri;
        }
        if (s->pdt_ms > 0)
            put_pdt(&w, s->pdt_ms);
        if (s->gap)
            put(&w, "#EXT-X-GAP\n");
        put(&w, "#EXTINF:%.3f,\n%s\n", seconds(s->duration_90k), s->uri);
    }
    if (m->vod || m->ended)
        put(&w, "#EXT-X-ENDLIST\n");
    return w.err;
}

int pk_hls_write_master(const pk_hls_master_t *m, cb_buf_t *out)
{
    w_t w = { .b = out };
    bool audio = m->audio_uri && m->audio_codecs;
    size_t i;

    if (m->n == 0 && !audio)
        return -EINVAL;
    put(&w, "#EXTM3U\n#EXT-X-VERSION:%d\n#EXT-X-INDEPENDENT-SEGMENTS\n", HLS_VERSION);
    if (audio && m->n > 0)
        put(&w,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,"
            "AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"%s\"\n",
            m->audio_channels > 0 ? m->audio_channels : 2, m->audio_uri);
    for (i = 0; i < m->n; i++) {
        const pk_hls_variant_t *v = &m->variants[i];
        int64_t extra = audio ? m->audio_bps : 0;

        if (!v->uri || !v->codecs)
            return -EINVAL;
        put(&w, "#EXT-X-STREAM-INF:BANDWIDTH=%lld", (long long) (v->peak_bps + extra));
        if (v->average_bps > 0)
            put(&w, ",AVERAGE-BANDWIDTH=%lld", (long long) (v->average_bps + extra));
        put(&w, ",RESOLUTION=%dx%d", v->width, v->height);
        if (v->fps > 0)
            put(&w, ",FRAME-RATE=%.3f", v->fps);
        if (audio)
            put(&w, ",CODECS=\"%s,%s\",AUDIO=\"audio\"\n", v->codecs, m->audio_codecs);
        else
            put(&w, ",CODECS=\"%s\"\n", v->codecs);
        put(&w, "%s\n", v->uri);
    }
    if (m->n == 0)
        put(&w, "#EXT-X-STREAM-INF:BANDWIDTH=%lld,CODECS=\"%s\"\n%s\n", (long long) m->audio_bps,
            m->audio_codecs, m->audio_uri);
    return w.err;
}

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
    hold = CB_MAX(m->part_hold_back_90k, 2 * m->part_target_90k);
    if (m->can_block_reload && !m->vod && !m->ended) {
        /* the origin answers ?_HLS_skip=YES with pk_hls_delta() */
        pk_put(&w, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=%d.000",
               CB_MAX(PK_HLS_SKIP_TARGETS * target, m->skip_until_s));
        if (ll)
            pk_put(&w, ",PART-HOLD-BACK=%.3f", seconds(hold));
        pk_put(&w, "\n");
    }
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

/* ---- Playlist Delta Updates ---- */

/* The line at *p (without its newline) into *line and *n; advances *p. */
static bool next_line(const char **p, const char *end, const char **line, size_t *n)
{
    const char *nl;

    if (*p >= end)
        return false;
    nl = memchr(*p, '\n', (size_t) (end - *p));
    *line = *p;
    *n = nl ? (size_t) (nl - *p) : (size_t) (end - *p);
    *p = nl ? nl + 1 : end;
    if (*n && (*line)[*n - 1] == '\r')
        (*n)--;
    return true;
}

static bool starts(const char *line, size_t n, const char *tag)
{
    size_t k = strlen(tag);

    return n >= k && memcmp(line, tag, k) == 0;
}

/* A line as it is, bytes and all (NULs included), and a newline. */
static void put_line(pk_text_t *w, const char *line, size_t n)
{
    if (!w->err && (cb_buf_append(w->b, line, n) != 0 || cb_buf_append(w->b, "\n", 1) != 0))
        w->err = -ENOBUFS;
}

/* Tags of the playlist as a whole, before its first segment. */
static bool header_tag(const char *line, size_t n)
{
    static const char *const tags[] = {
        "#EXTM3U",
        "#EXT-X-VERSION:",
        "#EXT-X-TARGETDURATION:",
        "#EXT-X-PART-INF:",
        "#EXT-X-MEDIA-SEQUENCE:",
        "#EXT-X-DISCONTINUITY-SEQUENCE:",
        "#EXT-X-PLAYLIST-TYPE:",
        "#EXT-X-SERVER-CONTROL:",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-START:",
    };
    size_t i;

    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (starts(line, n, tags[i]))
            return true;
    return n == 0;
}

/* A decimal-floating-point at s (up to n bytes) in 90 kHz ticks; -1: none. */
static int64_t ticks(const char *s, size_t n)
{
    int64_t whole = 0, frac = 0, scale = 90000;
    size_t i = 0;

    if (n == 0 || s[0] < '0' || s[0] > '9')
        return -1;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        if ((whole = whole * 10 + (s[i] - '0')) > 1000000) /* 11 days: not a segment */
            return -1;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (scale >= 10) {
                scale /= 10;
                frac += (s[i] - '0') * scale;
            }
    return whole * 90000 + frac;
}

int pk_hls_delta(const char *text, size_t len, cb_buf_t *out)
{
    const char *end = text + len, *p = text, *line, *body = NULL, *keep = NULL;
    const char *map = NULL, *key = NULL, *skip_map = NULL, *skip_key = NULL;
    const char *seg_start = NULL;
    size_t n, map_n = 0, key_n = 0, skip_map_n = 0, skip_key_n = 0;
    int64_t boundary = -1, total = 0, dur = -1, version = -1, skipped = 0;
    pk_text_t w = { .b = out };

    if (len < 7 || memcmp(text, "#EXTM3U", 7) != 0 || memmem(text, len, "\n#EXT-X-SKIP:", 13))
        return -EINVAL; /* not a media playlist, or a delta update already */
    /* the header: its skip boundary, and where the segments begin */
    while (next_line(&p, end, &line, &n)) {
        const char *a;

        if (!header_tag(line, n)) {
            body = line;
            break;
        }
        if (starts(line, n, "#EXT-X-VERSION:"))
            version = ticks(line + 15, n - 15) / 90000;
        a = starts(line, n, "#EXT-X-SERVER-CONTROL:") ? memmem(line, n, "CAN-SKIP-UNTIL=", 15)
                                                      : NULL;
        if (a)
            boundary = ticks(a + 15, (size_t) (line + n - a - 15));
    }
    if (boundary <= 0 || !body || memmem(text, len, "\n#EXT-X-ENDLIST", 15))
        return -ENOENT; /* no delta updates offered, or none wanted */
    /* the whole duration, then the segments that end further back than the boundary */
    for (p = body; next_line(&p, end, &line, &n);)
        if (starts(line, n, "#EXTINF:") && (dur = ticks(line + 8, n - 8)) >= 0)
            total += dur;
    for (p = body, dur = -1; next_line(&p, end, &line, &n);) {
        if (!seg_start)
            seg_start = line;
        if (n && header_tag(line, n)) {
            return -EINVAL; /* a header among the segments */
        } else if (starts(line, n, "#EXT-X-MAP:")) {
            map = line, map_n = n;
        } else if (starts(line, n, "#EXT-X-KEY:")) {
            key = line, key_n = n;
        } else if (starts(line, n, "#EXTINF:")) {
            if (dur >= 0)
                return -EINVAL; /* two for one segment */
            if ((dur = ticks(line + 8, n - 8)) < 0)
                return -EINVAL;
        } else if (n && line[0] != '#') { /* a segment's URI: its end */
            if (dur < 0)
                return -EINVAL;
            total -= dur; /* now: from its end to the playlist's */
            if (total <= boundary) {
                keep = seg_start;
                break;
            }
            skipped++;
            skip_map = map, skip_map_n = map_n; /* what the next segment plays with */
            skip_key = key, skip_key_n = key_n;
            seg_start = NULL, dur = -1;
        }
    }
    if (!keep || skipped == 0)
        return -ENOENT; /* nothing that far back: the whole playlist is the update */
    /* the header, at a version that has EXT-X-SKIP */
    for (p = text; next_line(&p, body, &line, &n);) {
        if (starts(line, n, "#EXT-X-VERSION:"))
            pk_put(&w, "#EXT-X-VERSION:%lld\n", (long long) CB_MAX(version, 9));
        else
            put_line(&w, line, n);
        if (line == text && version < 0) /* none said: after #EXTM3U */
            pk_put(&w, "#EXT-X-VERSION:9\n");
    }
    pk_put(&w, "#EXT-X-SKIP:SKIPPED-SEGMENTS=%lld\n", (long long) skipped);
    /* the init segment and key the kept segments still need */
    for (p = keep; skip_map && next_line(&p, end, &line, &n) && line[0] == '#';)
        if (starts(line, n, "#EXT-X-MAP:"))
            skip_map = NULL;
    if (skip_map)
        put_line(&w, skip_map, skip_map_n);
    for (p = keep; skip_key && next_line(&p, end, &line, &n) && line[0] == '#';)
        if (starts(line, n, "#EXT-X-KEY:"))
            skip_key = NULL;
    if (skip_key)
        put_line(&w, skip_key, skip_key_n);
    if (!w.err && cb_buf_append(out, keep, (size_t) (end - keep)) != 0)
        w.err = -ENOBUFS;
    return w.err;
}

/*
 * packager_dash.c - DASH MPDs (see packager_dash.h).
 */
#include "packager_dash.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"
#include "packager_text.h"

/* Text that goes into an attribute as it is: none of the characters XML would need escaped. */
static bool attr_ok(const char *s)
{
    return s && *s && !strpbrk(s, "\"<>&'");
}

/* xs:dateTime with milliseconds, UTC. */
static void put_datetime(pk_text_t *w, const char *attr, int64_t ms)
{
    char when[32];

    pk_iso8601(ms, when);
    pk_put(w, " %s=\"%s\"", attr, when);
}

/* xs:duration in seconds with milliseconds: PT2.000S */
static void put_duration(pk_text_t *w, const char *attr, int64_t ms)
{
    pk_put(w, " %s=\"PT%lld.%03lldS\"", attr, (long long) (ms / 1000), (long long) (ms % 1000));
}

/* FrameRateType: an integer or a ratio (29.97 -> 30000/1001). */
static void put_frame_rate(pk_text_t *w, double fps)
{
    long n1001 = lround(fps * 1001.0);

    if (fabs(fps - round(fps)) < 1e-6)
        pk_put(w, " frameRate=\"%ld\"", lround(fps));
    else if (n1001 % 1000 == 0 && fabs(fps - (double) n1001 / 1001.0) < 1e-3)
        pk_put(w, " frameRate=\"%ld/1001\"", n1001);
    else
        pk_put(w, " frameRate=\"%ld/1000\"", lround(fps * 1000.0));
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

/*
 * The duration segment i is listed with: up to the next segment's start when
 * that is within JOIN_90K of its own end. Encoders give the last frame of a
 * segment a nominal duration and sources jitter by milliseconds at their
 * cuts; DASH wants no gap nor overlap between segments (dash.js stops at a
 * 15 ms hole), and the segment files are named by their start anyway. A
 * larger distance is a real gap (a failed job) and stays one.
 */
#define JOIN_90K 9000

static int64_t listed_duration(const pk_dash_set_t *set, size_t i)
{
    const pk_dash_seg_t *s = &set->segs[i];
    int64_t end = s->start_90k + s->duration_90k, next;

    if (i + 1 == set->nsegs)
        return s->duration_90k;
    next = set->segs[i + 1].start_90k;
    return next > s->start_90k && llabs(next - end) <= JOIN_90K ? next - s->start_90k
                                                                : s->duration_90k;
}

/* S elements, run-length coded; t written first and after every gap. */
static void put_timeline(pk_text_t *w, const pk_dash_set_t *set)
{
    size_t i = 0;
    int64_t next = INT64_MIN;

    pk_put(w, "        <SegmentTimeline>\n");
    while (i < set->nsegs) {
        const pk_dash_seg_t *s = &set->segs[i];
        int64_t d = listed_duration(set, i);
        size_t r = 0;

        while (i + r + 1 < set->nsegs && listed_duration(set, i + r + 1) == d &&
               set->segs[i + r + 1].start_90k == s->start_90k + (int64_t) (r + 1) * d)
            r++;
        pk_put(w, "          <S");
        if (s->start_90k != next)
            pk_put(w, " t=\"%lld\"", (long long) s->start_90k);
        pk_put(w, " d=\"%lld\"", (long long) d);
        if (r)
            pk_put(w, " r=\"%zu\"", r);
        pk_put(w, "/>\n");
        next = s->start_90k + (int64_t) (r + 1) * d;
        i += r + 1;
    }
    pk_put(w, "        </SegmentTimeline>\n");
}

static int put_set(pk_text_t *w, const pk_dash_mpd_t *m, const pk_dash_period_t *per,
                   const pk_dash_set_t *set, size_t id)
{
    int max_w = 0, max_h = 0;
    int64_t pto;
    size_t i;

    if (set->nreps == 0)
        return -EINVAL;
    for (i = 0; i < set->nreps; i++) {
        const pk_dash_rep_t *r = &set->reps[i];
        if (!attr_ok(r->id) || !attr_ok(r->init_uri) || !attr_ok(r->codecs))
            return -EINVAL;
        max_w = CB_MAX(max_w, r->width);
        max_h = CB_MAX(max_h, r->height);
    }
    pk_put(w, "    <AdaptationSet id=\"%zu\" contentType=\"%s\" mimeType=\"%s/mp4\"", id,
           set->video ? "video" : "audio", set->video ? "video" : "audio");
    if (set->video) {
        int g = gcd(max_w, max_h);
        pk_put(w, " maxWidth=\"%d\" maxHeight=\"%d\" par=\"%d:%d\"", max_w, max_h, max_w / g,
               max_h / g);
    } else
        pk_put(w, " lang=\"und\"");
    pk_put(w, " segmentAlignment=\"true\" startWithSAP=\"1\">\n");
    /* live: the Period's media time, shared; VOD: each set starts at its own
     * first sample (audio frames start a few ms off the video's) */
    pto = !m->dynamic && set->nsegs ? set->segs[0].start_90k : per->pto_90k;
    /* one timeline for the set: its renditions are cut from the same source
     * segments, so a long DVR window is listed once, not once per rung */
    pk_put(w,
           "      <SegmentTemplate timescale=\"90000\" presentationTimeOffset=\"%lld\" "
           "media=\"$RepresentationID$/$Time$.m4s\">\n",
           (long long) pto);
    put_timeline(w, set);
    pk_put(w, "      </SegmentTemplate>\n");
    for (i = 0; i < set->nreps; i++) {
        const pk_dash_rep_t *r = &set->reps[i];

        pk_put(w, "      <Representation id=\"%s\" bandwidth=\"%lld\" codecs=\"%s\"", r->id,
               (long long) r->bandwidth_bps, r->codecs);
        if (set->video) {
            pk_put(w, " width=\"%d\" height=\"%d\" sar=\"1:1\"", r->width, r->height);
            if (r->fps > 0)
                put_frame_rate(w, r->fps);
            pk_put(w, ">\n");
        } else {
            pk_put(w, " audioSamplingRate=\"%d\">\n", r->sample_rate);
            pk_put(w,
                   "        <AudioChannelConfiguration "
                   "schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" "
                   "value=\"%d\"/>\n",
                   r->channels > 0 ? r->channels : 2);
        }
        /* the rest of the template comes from the set's */
        pk_put(w, "        <SegmentTemplate initialization=\"%s\"/>\n      </Representation>\n",
               r->init_uri);
    }
    pk_put(w, "    </AdaptationSet>\n");
    return 0;
}

int pk_dash_write_mpd(const pk_dash_mpd_t *m, cb_buf_t *out)
{
    pk_text_t w = { .b = out };
    size_t i, p;
    int rc;

    if (m->nperiods == 0 || (m->utc_timing_uri && !attr_ok(m->utc_timing_uri)))
        return -EINVAL;
    pk_put(&w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    pk_put(&w,
           "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" "
           "profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" type=\"%s\"",
           m->dynamic ? "dynamic" : "static");
    if (m->dynamic) {
        put_datetime(&w, "availabilityStartTime", m->availability_start_ms);
        put_datetime(&w, "publishTime", m->publish_ms);
        put_duration(&w, "minimumUpdatePeriod", m->update_period_ms);
        put_duration(&w, "timeShiftBufferDepth", m->dvr_window_s * 1000);
        put_duration(&w, "suggestedPresentationDelay", m->presentation_delay_ms);
    } else {
        put_duration(&w, "mediaPresentationDuration", m->duration_ms);
    }
    put_duration(&w, "minBufferTime", m->min_buffer_ms);
    if (m->max_segment_ms > 0)
        put_duration(&w, "maxSegmentDuration", m->max_segment_ms);
    pk_put(&w, ">\n");
    if (m->dynamic && m->latency_target_ms > 0)
        pk_put(&w,
               "  <ServiceDescription id=\"0\">\n"
               "    <Latency target=\"%lld\"/>\n"
               "    <PlaybackRate min=\"1\" max=\"1\"/>\n"
               "  </ServiceDescription>\n",
               (long long) m->latency_target_ms);
    for (p = 0; p < m->nperiods; p++) {
        const pk_dash_period_t *per = &m->periods[p];

        if (per->nsets == 0 || per->start_ms < 0)
            return -EINVAL;
        pk_put(&w, "  <Period id=\"p%lld\"", (long long) per->id);
        put_duration(&w, "start", per->start_ms);
        pk_put(&w, ">\n");
        for (i = 0; i < per->nsets; i++) {
            rc = put_set(&w, m, per, &per->sets[i], i);
            if (rc)
                return rc;
        }
        pk_put(&w, "  </Period>\n");
    }
    if (m->dynamic && m->utc_timing_uri)
        pk_put(&w, "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014\" value=\"%s\"/>\n",
               m->utc_timing_uri);
    pk_put(&w, "</MPD>\n");
    return w.err;
}

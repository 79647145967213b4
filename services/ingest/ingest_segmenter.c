/*
 * ingest_segmenter.c - GOP-aligned source segments muxed in memory; see
 * ingest_segmenter.h.
 *
 * DESIGN: one muxer per segment, writing into memory as frames arrive, so
 * closing a segment costs nothing more. A new muxer per segment makes every
 * file self-contained (PAT/PMT first in MPEG-TS, its own moov in MP4) and
 * lets a configuration change take effect at a cut. MPEG-TS (every codec
 * but AV1) is written by ingest_ts: one copy of each frame, no allocation
 * per frame. AV1 goes into fragmented MP4 through libavformat.
 */
#include "ingest_segmenter.h"

#include <errno.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "defs.h"
#include "ingest_ts.h"

typedef struct track {
    bool configured;
    ingest_codec_t codec;
    uint8_t *extradata;
    size_t extradata_len;
    int width, height;
    double fps;
    int sample_rate, channels;
} track_t;

struct ingest_segmenter {
    ingest_segmenter_opts_t opts;
    int64_t next_seq;
    track_t tracks[2];
    bool pending_cut;        /* configuration changed or discontinuity: cut at next point */
    bool next_discontinuity; /* flag the next segment */
    int64_t dropped;
    char error[200];

    /* the open segment */
    bool open;
    ingest_ts_t *ts;     /* MPEG-TS */
    size_t last_size;    /* of the previous segment: the next one's first allocation */
    AVFormatContext *oc; /* fragmented MP4 */
    int stream_index[2]; /* -1 when the track is not in this segment */
    AVPacket *pkt;
    const char *container;
    int64_t start_90k;
    int64_t last_dts[2];
    bool discontinuity;
    int64_t media_bytes, frames[2];
    track_t snapshot[2]; /* the track configs this segment was opened with */
};

static int set_error(ingest_segmenter_t *s, int rc, const char *fmt, ...) CB_PRINTF(3, 4);

static int set_error(ingest_segmenter_t *s, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    return rc;
}

int ingest_segmenter_new(const ingest_segmenter_opts_t *opts, int64_t first_seq,
                         ingest_segmenter_t **out)
{
    ingest_segmenter_t *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->opts = *opts;
    s->next_seq = first_seq;
    s->pkt = av_packet_alloc();
    if (!s->pkt) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

static void close_muxer(ingest_segmenter_t *s)
{
    ingest_ts_free(s->ts);
    s->ts = NULL;
    if (s->oc) {
        if (s->oc->pb) {
            uint8_t *buf = NULL;
            avio_close_dyn_buf(s->oc->pb, &buf);
            av_free(buf);
            s->oc->pb = NULL;
        }
        avformat_free_context(s->oc);
        s->oc = NULL;
    }
    s->open = false;
}

void ingest_segmenter_free(ingest_segmenter_t *s)
{
    int i;

    if (!s)
        return;
    close_muxer(s);
    for (i = 0; i < 2; i++)
        free(s->tracks[i].extradata);
    av_packet_free(&s->pkt);
    free(s);
}

bool ingest_segmenter_has_track(const ingest_segmenter_t *s, ingest_media_kind_t kind)
{
    return s->tracks[kind].configured;
}

int ingest_segmenter_configure(ingest_segmenter_t *s, ingest_media_kind_t kind,
                               const ingest_track_config_t *cfg)
{
    track_t *t = &s->tracks[kind];
    bool same =
        t->configured && t->codec == cfg->codec && t->extradata_len == cfg->extradata_len &&
        (cfg->extradata_len == 0 || memcmp(t->extradata, cfg->extradata, cfg->extradata_len) == 0);
    uint8_t *copy = NULL;

    /* size and rate hints may be refined later without a cut */
    t->width = cfg->width ? cfg->width : t->width;
    t->height = cfg->height ? cfg->height : t->height;
    t->fps = cfg->fps > 0 ? cfg->fps : t->fps;
    t->sample_rate = cfg->sample_rate ? cfg->sample_rate : t->sample_rate;
    t->channels = cfg->channels ? cfg->channels : t->channels;
    if (same)
        return 0;
    if (cfg->extradata_len) {
        copy = malloc(cfg->extradata_len);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, cfg->extradata, cfg->extradata_len);
    }
    free(t->extradata);
    t->extradata = copy;
    t->extradata_len = cfg->extradata_len;
    t->codec = cfg->codec;
    if (t->configured || s->open)
        s->pending_cut = true; /* a new track, or a changed one, needs a new muxer */
    t->configured = true;
    return 0;
}

void ingest_segmenter_discontinuity(ingest_segmenter_t *s)
{
    s->next_discontinuity = true;
    if (s->open)
        s->pending_cut = true;
}

static enum AVCodecID av_codec(ingest_codec_t c)
{
    switch (c) {
    case INGEST_CODEC_H264:
        return AV_CODEC_ID_H264;
    case INGEST_CODEC_HEVC:
        return AV_CODEC_ID_HEVC;
    case INGEST_CODEC_AV1:
        return AV_CODEC_ID_AV1;
    case INGEST_CODEC_AAC:
        return AV_CODEC_ID_AAC;
    case INGEST_CODEC_MP3:
        return AV_CODEC_ID_MP3;
    default:
        return AV_CODEC_ID_NONE;
    }
}

static int open_segment(ingest_segmenter_t *s, int64_t start_90k)
{
    AVDictionary *opts = NULL;
    int i, rc;

    s->container =
        s->tracks[INGEST_VIDEO].configured && s->tracks[INGEST_VIDEO].codec == INGEST_CODEC_AV1
            ? "mp4"
            : "mpegts";
    if (strcmp(s->container, "mpegts") == 0) {
        ingest_ts_track_t tt[2];
        char err[160];

        for (i = 0; i < 2; i++) {
            const track_t *t = &s->tracks[i];
            s->snapshot[i] = *t;
            s->snapshot[i].extradata = NULL;
            s->stream_index[i] = t->configured ? i : -1;
            tt[i].codec = t->configured ? t->codec : INGEST_CODEC_NONE;
            tt[i].extradata = t->extradata;
            tt[i].extradata_len = t->extradata_len;
        }
        rc = ingest_ts_new(&tt[INGEST_VIDEO], &tt[INGEST_AUDIO], s->last_size, s->opts.max_bytes,
                           &s->ts, err, sizeof(err));
        if (rc)
            return set_error(s, rc, "cannot start a segment: %s", err);
        goto opened;
    }
    rc = avformat_alloc_output_context2(&s->oc, NULL, s->container, NULL);
    if (rc < 0)
        return set_error(s, -ENOMEM, "cannot create a %s muxer", s->container);
    for (i = 0; i < 2; i++) {
        const track_t *t = &s->tracks[i];
        AVStream *st;

        s->stream_index[i] = -1;
        s->snapshot[i] = *t;
        s->snapshot[i].extradata = NULL;
        if (!t->configured)
            continue;
        st = avformat_new_stream(s->oc, NULL);
        if (!st)
            goto nomem;
        st->time_base = (AVRational){ 1, 90000 };
        st->codecpar->codec_type = i == INGEST_VIDEO ? AVMEDIA_TYPE_VIDEO : AVMEDIA_TYPE_AUDIO;
        st->codecpar->codec_id = av_codec(t->codec);
        if (t->extradata_len) {
            st->codecpar->extradata = av_mallocz(t->extradata_len + AV_INPUT_BUFFER_PADDING_SIZE);
            if (!st->codecpar->extradata)
                goto nomem;
            memcpy(st->codecpar->extradata, t->extradata, t->extradata_len);
            st->codecpar->extradata_size = (int) t->extradata_len;
        }
        if (i == INGEST_VIDEO) {
            st->codecpar->width = t->width;
            st->codecpar->height = t->height;
            if (t->fps > 0)
                st->avg_frame_rate = av_d2q(t->fps, 1000);
        } else {
            st->codecpar->sample_rate = t->sample_rate > 0 ? t->sample_rate : 48000;
            av_channel_layout_default(&st->codecpar->ch_layout, t->channels > 0 ? t->channels : 2);
        }
        s->stream_index[i] = st->index;
    }
    if (s->oc->nb_streams == 0) {
        close_muxer(s);
        return set_error(s, -EINVAL, "no track is configured");
    }
    if (avio_open_dyn_buf(&s->oc->pb) < 0)
        goto nomem;
    /* keep our timeline as it is: the job message carries the same values */
    s->oc->avoid_negative_ts = AVFMT_AVOID_NEG_TS_DISABLED;
    if (strcmp(s->container, "mpegts") == 0)
        av_dict_set(&opts, "mpegts_copyts", "1", 0);
    else
        av_dict_set(&opts, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
    rc = avformat_write_header(s->oc, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(rc, e, sizeof(e));
        close_muxer(s);
        return set_error(s, -EINVAL, "cannot start a %s segment: %s", s->container, e);
    }
opened:
    s->open = true;
    s->start_90k = start_90k;
    s->last_dts[0] = s->last_dts[1] = INT64_MIN;
    s->media_bytes = 0;
    s->frames[0] = s->frames[1] = 0;
    s->discontinuity = s->next_discontinuity;
    s->next_discontinuity = false;
    s->pending_cut = false;
    return 0;

nomem:
    close_muxer(s);
    return set_error(s, -ENOMEM, "out of memory opening a segment");
}

/* Finish the open segment, ending at end_90k. */
static int close_segment(ingest_segmenter_t *s, int64_t end_90k, bool eos, ingest_segment_t **done)
{
    ingest_segment_t *seg = calloc(1, sizeof(*seg));
    uint8_t *buf = NULL;
    size_t len = 0;

    if (!seg) {
        close_muxer(s);
        return set_error(s, -ENOMEM, "closing a segment failed: out of memory");
    }
    if (s->ts) {
        buf = ingest_ts_finish(s->ts, &len);
        s->ts = NULL;
    } else {
        uint8_t *av = NULL;
        int n;

        if (av_write_trailer(s->oc) < 0) {
            free(seg);
            close_muxer(s);
            return set_error(s, -EIO, "closing a segment failed");
        }
        n = avio_close_dyn_buf(s->oc->pb, &av);
        s->oc->pb = NULL;
        len = (size_t) CB_MAX(n, 0);
        buf = malloc(len ? len : 1); /* one owner rule for segment data: malloc */
        if (buf && len)
            memcpy(buf, av, len);
        av_free(av);
        avformat_free_context(s->oc);
        s->oc = NULL;
        if (!buf) {
            free(seg);
            s->open = false;
            return set_error(s, -ENOMEM, "closing a segment failed: out of memory");
        }
    }
    s->last_size = len;
    seg->seq = s->next_seq++;
    seg->start_90k = s->start_90k;
    seg->duration_90k = CB_MAX(end_90k - s->start_90k, 0);
    seg->discontinuity = s->discontinuity;
    seg->end_of_stream = eos;
    seg->container = s->container;
    seg->data = buf;
    seg->len = len;
    seg->video_codec =
        s->snapshot[INGEST_VIDEO].configured ? s->snapshot[INGEST_VIDEO].codec : INGEST_CODEC_NONE;
    seg->audio_codec =
        s->snapshot[INGEST_AUDIO].configured ? s->snapshot[INGEST_AUDIO].codec : INGEST_CODEC_NONE;
    seg->width = s->tracks[INGEST_VIDEO].width;
    seg->height = s->tracks[INGEST_VIDEO].height;
    seg->fps = s->tracks[INGEST_VIDEO].fps;
    if (seg->fps <= 0 && seg->duration_90k > 0 && s->frames[INGEST_VIDEO] > 1)
        seg->fps = (double) s->frames[INGEST_VIDEO] * 90000.0 / (double) seg->duration_90k;
    seg->media_bytes = s->media_bytes;
    seg->video_frames = s->frames[INGEST_VIDEO];
    seg->audio_frames = s->frames[INGEST_AUDIO];
    seg->cut_us = cb_clock_mono_us();
    s->open = false;
    *done = seg;
    return 1;
}

int ingest_segmenter_write(ingest_segmenter_t *s, ingest_media_kind_t kind, bool keyframe,
                           int64_t dts_90k, int64_t pts_90k, const uint8_t *data, size_t len,
                           ingest_segment_t **done)
{
    bool has_video = s->tracks[INGEST_VIDEO].configured;
    bool cut_point = has_video ? (kind == INGEST_VIDEO && keyframe) : kind == INGEST_AUDIO;
    int produced = 0, rc;
    AVStream *st;

    *done = NULL;
    if (!s->tracks[kind].configured)
        return set_error(s, -EINVAL, "%s frame before its configuration",
                         kind == INGEST_VIDEO ? "video" : "audio");
    if (!s->open && !cut_point) {
        s->dropped++; /* waiting for the first keyframe */
        return 0;
    }
    if (s->open && cut_point && (dts_90k - s->start_90k >= s->opts.target_90k || s->pending_cut)) {
        rc = close_segment(s, dts_90k, false, done);
        if (rc < 0)
            return rc;
        produced = 1;
    }
    if (s->open && dts_90k - s->start_90k > s->opts.max_duration_90k)
        return set_error(s, -E2BIG,
                         "no keyframe for %.1f s (the most a segment may last is %.1f s): set "
                         "the encoder's keyframe interval to 2 s",
                         (double) (dts_90k - s->start_90k) / 90000.0,
                         (double) s->opts.max_duration_90k / 90000.0);
    if (!s->open) {
        rc = open_segment(s, dts_90k);
        if (rc < 0)
            return rc;
    }
    if (s->stream_index[kind] < 0) {
        /* a track configured after this segment began: it joins at the next cut */
        s->pending_cut = true;
        s->dropped++;
        return produced;
    }
    if (s->media_bytes + (int64_t) len > (int64_t) s->opts.max_bytes)
        return set_error(s, -E2BIG, "segment over %zu bytes without a keyframe", s->opts.max_bytes);
    /* the muxer wants strictly increasing dts per track */
    if (dts_90k <= s->last_dts[kind])
        dts_90k = s->last_dts[kind] + 1;
    if (pts_90k < dts_90k)
        pts_90k = dts_90k;
    s->last_dts[kind] = dts_90k;
    if (s->ts) {
        char err[160];

        rc = ingest_ts_write(s->ts, kind, keyframe, dts_90k, pts_90k, data, len, err, sizeof(err));
        if (rc == -E2BIG)
            return set_error(s, rc, "segment over %zu bytes without a keyframe", s->opts.max_bytes);
        if (rc)
            return set_error(s, rc, "muxing a %s frame failed: %s",
                             kind == INGEST_VIDEO ? "video" : "audio", err);
        s->media_bytes += (int64_t) len;
        s->frames[kind]++;
        return produced;
    }
    st = s->oc->streams[s->stream_index[kind]];
    s->pkt->data = (uint8_t *) data;
    s->pkt->size = (int) len;
    s->pkt->stream_index = st->index;
    s->pkt->dts = av_rescale_q(dts_90k, (AVRational){ 1, 90000 }, st->time_base);
    s->pkt->pts = av_rescale_q(pts_90k, (AVRational){ 1, 90000 }, st->time_base);
    s->pkt->flags = keyframe || kind == INGEST_AUDIO ? AV_PKT_FLAG_KEY : 0;
    s->pkt->duration = 0;
    rc = av_write_frame(s->oc, s->pkt);
    s->pkt->data = NULL;
    s->pkt->size = 0;
    if (rc < 0) {
        char e[AV_ERROR_MAX_STRING_SIZE];
        av_strerror(rc, e, sizeof(e));
        return set_error(s, -EINVAL, "muxing a %s frame failed: %s",
                         kind == INGEST_VIDEO ? "video" : "audio", e);
    }
    s->media_bytes += (int64_t) len;
    s->frames[kind]++;
    return produced;
}

int ingest_segmenter_finish(ingest_segmenter_t *s, int64_t end_90k, bool end_of_stream,
                            ingest_segment_t **done)
{
    *done = NULL;
    if (!s->open)
        return 0;
    return close_segment(s, CB_MAX(end_90k, s->start_90k + 1), end_of_stream, done);
}

int64_t ingest_segmenter_next_seq(const ingest_segmenter_t *s)
{
    return s->next_seq;
}

int64_t ingest_segmenter_dropped(const ingest_segmenter_t *s)
{
    return s->dropped;
}

const char *ingest_segmenter_error(const ingest_segmenter_t *s)
{
    return s->error;
}

void ingest_segment_free(ingest_segment_t *seg)
{
    if (!seg)
        return;
    free(seg->data);
    free(seg);
}

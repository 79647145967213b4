/*
 * Unit tests for services/ingest/ingest_segmenter: a real H.264/AAC clip is
 * cut and muxed, and every segment is demuxed back with libavformat.
 */
#include <errno.h>
#include <libavformat/avformat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "defs.h"
#include "ingest_segmenter.h"

#define OFFSET_90K 180000 /* where our timeline starts */
#define MAX_SEGS   16

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f)
        fail_msg("cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t) n);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    *len = (size_t) n;
    return buf;
}

typedef struct run {
    ingest_segment_t *segs[MAX_SEGS];
    int n;
} run_t;

static void collect(run_t *r, ingest_segment_t *seg)
{
    assert_true(r->n < MAX_SEGS);
    r->segs[r->n++] = seg;
}

/* Feed the clip; options let a test add a discontinuity or drop keyframes. */
static void feed_clip(ingest_segmenter_t *s, run_t *r, bool audio_only, int discontinuity_at_ms)
{
    size_t len, pos = 0;
    uint8_t *buf = read_file("tests/data/media/h264_aac_6s.flv", &len);
    ingest_flv_tag_t tag;
    ingest_segment_t *seg;
    int64_t last = 0;
    bool marked = false;
    char err[128];

    while (ingest_flv_file_next(buf, len, &pos, &tag) == 1) {
        ingest_media_t m;
        ingest_track_config_t cfg = { 0 };
        int rc;

        if (tag.type == 9 && !audio_only) {
            assert_int_equal(ingest_flv_parse_video(tag.data, tag.len, &m, err, sizeof(err)), 0);
        } else if (tag.type == 8) {
            assert_int_equal(ingest_flv_parse_audio(tag.data, tag.len, &m, err, sizeof(err)), 0);
        } else {
            continue;
        }
        if (m.end_of_sequence || m.skip)
            continue;
        if (m.config) {
            cfg.codec = m.codec;
            cfg.extradata = m.data;
            cfg.extradata_len = m.len;
            if (m.kind == INGEST_VIDEO)
                ingest_avcc_dimensions(m.data, m.len, &cfg.width, &cfg.height);
            else
                ingest_asc_parse(m.data, m.len, &cfg.sample_rate, &cfg.channels);
            assert_int_equal(ingest_segmenter_configure(s, m.kind, &cfg), 0);
            continue;
        }
        if (discontinuity_at_ms >= 0 && !marked && (int) tag.timestamp_ms >= discontinuity_at_ms) {
            ingest_segmenter_discontinuity(s);
            marked = true;
        }
        last = OFFSET_90K + (int64_t) tag.timestamp_ms * 90;
        rc = ingest_segmenter_write(s, m.kind, m.keyframe, last, last + (int64_t) m.cts_ms * 90,
                                    m.data, m.len, &seg);
        if (rc < 0)
            fail_msg("write: %s", ingest_segmenter_error(s));
        if (rc == 1)
            collect(r, seg);
    }
    if (ingest_segmenter_finish(s, last + 3000, true, &seg) == 1)
        collect(r, seg);
    free(buf);
}

typedef struct mem_reader {
    const uint8_t *p;
    size_t len, pos;
} mem_reader_t;

static int mem_read(void *opaque, uint8_t *buf, int size)
{
    mem_reader_t *m = opaque;
    size_t n = CB_MIN((size_t) size, m->len - m->pos);

    if (n == 0)
        return AVERROR_EOF;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (int) n;
}

typedef struct probe {
    int video, audio;
    bool first_video_key;
    char vcodec[16], acodec[16];
} probe_t;

/* Demux a segment from memory with libavformat. */
static void probe_segment(const ingest_segment_t *seg, probe_t *out)
{
    mem_reader_t m = { seg->data, seg->len, 0 };
    unsigned char *iobuf = av_malloc(4096);
    AVIOContext *io = avio_alloc_context(iobuf, 4096, 0, &m, mem_read, NULL, NULL);
    AVFormatContext *fc = avformat_alloc_context();
    AVPacket *pkt = av_packet_alloc();
    unsigned i;

    memset(out, 0, sizeof(*out));
    fc->pb = io;
    assert_int_equal(avformat_open_input(&fc, NULL, av_find_input_format(seg->container), NULL), 0);
    assert_true(avformat_find_stream_info(fc, NULL) >= 0);
    for (i = 0; i < fc->nb_streams; i++) {
        const char *name = avcodec_get_name(fc->streams[i]->codecpar->codec_id);
        if (fc->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO)
            snprintf(out->vcodec, sizeof(out->vcodec), "%s", name);
        else
            snprintf(out->acodec, sizeof(out->acodec), "%s", name);
    }
    while (av_read_frame(fc, pkt) >= 0) {
        if (fc->streams[pkt->stream_index]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) {
            if (out->video == 0)
                out->first_video_key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
            out->video++;
        } else {
            out->audio++;
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    avformat_close_input(&fc);
    av_freep(&io->buffer);
    avio_context_free(&io);
}

static const ingest_segmenter_opts_t two_seconds = { .target_90k = 2 * 90000,
                                                     .max_duration_90k = 30 * 90000,
                                                     .max_bytes = 64 << 20 };

static void free_run(run_t *r)
{
    int i;

    for (i = 0; i < r->n; i++)
        ingest_segment_free(r->segs[i]);
}

static void test_gop_aligned_segments_decode_alone(void **state)
{
    ingest_segmenter_t *s;
    run_t r = { 0 };
    int i, video = 0;

    (void) state;
    assert_int_equal(ingest_segmenter_new(&two_seconds, 7, &s), 0);
    feed_clip(s, &r, false, -1);
    /* keyframes every 2 s in a 6 s clip: three segments */
    assert_int_equal(r.n, 3);
    for (i = 0; i < r.n; i++) {
        ingest_segment_t *seg = r.segs[i];
        probe_t p;

        assert_int_equal(seg->seq, 7 + i);
        assert_string_equal(seg->container, "mpegts");
        assert_int_equal(seg->start_90k, OFFSET_90K + i * 180000);
        if (i < r.n - 1)
            assert_int_equal(seg->start_90k + seg->duration_90k, r.segs[i + 1]->start_90k);
        assert_int_equal(seg->video_codec, INGEST_CODEC_H264);
        assert_int_equal(seg->audio_codec, INGEST_CODEC_AAC);
        assert_int_equal(seg->width, 320);
        assert_false(seg->discontinuity);
        assert_int_equal(seg->end_of_stream, i == r.n - 1);
        probe_segment(seg, &p);
        assert_string_equal(p.vcodec, "h264");
        assert_string_equal(p.acodec, "aac");
        assert_true(p.first_video_key);
        assert_int_equal(p.video, seg->video_frames);
        assert_true(p.audio > 0);
        video += p.video;
    }
    assert_int_equal(video, 180);
    assert_int_equal(ingest_segmenter_next_seq(s), 10);
    assert_int_equal(ingest_segmenter_dropped(s), 0);
    free_run(&r);
    ingest_segmenter_free(s);
}

static void test_long_gop_gives_longer_segments(void **state)
{
    const ingest_segmenter_opts_t three = { .target_90k = 3 * 90000,
                                            .max_duration_90k = 30 * 90000,
                                            .max_bytes = 64 << 20 };
    ingest_segmenter_t *s;
    run_t r = { 0 };

    (void) state;
    /* a 3 s target with keyframes every 2 s: cut at 4 s, the first keyframe past 3 s */
    assert_int_equal(ingest_segmenter_new(&three, 0, &s), 0);
    feed_clip(s, &r, false, -1);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.segs[0]->duration_90k, 4 * 90000);
    free_run(&r);
    ingest_segmenter_free(s);
}

static void test_discontinuity_cuts_at_next_keyframe(void **state)
{
    const ingest_segmenter_opts_t ten = { .target_90k = 10 * 90000,
                                          .max_duration_90k = 30 * 90000,
                                          .max_bytes = 64 << 20 };
    ingest_segmenter_t *s;
    run_t r = { 0 };

    (void) state;
    assert_int_equal(ingest_segmenter_new(&ten, 0, &s), 0);
    feed_clip(s, &r, false, 2500);
    /* the discontinuity at 2.5 s cuts at the keyframe at 4 s */
    assert_int_equal(r.n, 2);
    assert_false(r.segs[0]->discontinuity);
    assert_int_equal(r.segs[0]->duration_90k, 4 * 90000);
    assert_true(r.segs[1]->discontinuity);
    free_run(&r);
    ingest_segmenter_free(s);
}

static void test_audio_only(void **state)
{
    ingest_segmenter_t *s;
    run_t r = { 0 };
    probe_t p;

    (void) state;
    assert_int_equal(ingest_segmenter_new(&two_seconds, 0, &s), 0);
    feed_clip(s, &r, true, -1);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.segs[0]->video_codec, INGEST_CODEC_NONE);
    probe_segment(r.segs[1], &p);
    assert_int_equal(p.video, 0);
    assert_true(p.audio > 80);
    free_run(&r);
    ingest_segmenter_free(s);
}

/* AV1 (Enhanced RTMP 'av01') has no MPEG-TS mapping: its segments are fragmented MP4. */
static void test_av1_goes_into_fragmented_mp4(void **state)
{
    AVFormatContext *in = NULL;
    AVPacket *pkt = av_packet_alloc();
    ingest_segmenter_t *s;
    ingest_segment_t *seg;
    run_t r = { 0 };
    int64_t last = 0;
    int fed = 0, muxed = 0, i;
    unsigned k;

    (void) state;
    assert_int_equal(avformat_open_input(&in, "tests/data/media/av1_aac_2s.mp4", NULL, NULL), 0);
    assert_true(avformat_find_stream_info(in, NULL) >= 0);
    assert_int_equal(ingest_segmenter_new(&two_seconds, 0, &s), 0);
    for (k = 0; k < in->nb_streams; k++) {
        AVCodecParameters *par = in->streams[k]->codecpar;
        ingest_track_config_t cfg = { .extradata = par->extradata,
                                      .extradata_len = (size_t) par->extradata_size,
                                      .width = par->width,
                                      .height = par->height,
                                      .sample_rate = par->sample_rate,
                                      .channels = par->ch_layout.nb_channels };
        cfg.codec = par->codec_id == AV_CODEC_ID_AV1 ? INGEST_CODEC_AV1 : INGEST_CODEC_AAC;
        assert_int_equal(
            ingest_segmenter_configure(
                s, par->codec_type == AVMEDIA_TYPE_VIDEO ? INGEST_VIDEO : INGEST_AUDIO, &cfg),
            0);
    }
    while (av_read_frame(in, pkt) >= 0) {
        AVStream *st = in->streams[pkt->stream_index];
        bool video = st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO;
        int64_t dts = OFFSET_90K + av_rescale_q(pkt->dts, st->time_base, (AVRational){ 1, 90000 });
        int64_t pts = OFFSET_90K + av_rescale_q(pkt->pts, st->time_base, (AVRational){ 1, 90000 });
        int rc = ingest_segmenter_write(s, video ? INGEST_VIDEO : INGEST_AUDIO,
                                        (pkt->flags & AV_PKT_FLAG_KEY) != 0, dts, pts, pkt->data,
                                        (size_t) pkt->size, &seg);

        if (rc < 0)
            fail_msg("write: %s", ingest_segmenter_error(s));
        if (rc == 1)
            collect(&r, seg);
        fed += video;
        last = CB_MAX(last, dts);
        av_packet_unref(pkt);
    }
    if (ingest_segmenter_finish(s, last + 3600, true, &seg) == 1)
        collect(&r, seg);
    assert_true(r.n >= 1);
    for (i = 0; i < r.n; i++) {
        probe_t p;

        assert_string_equal(r.segs[i]->container, "mp4");
        assert_int_equal(r.segs[i]->video_codec, INGEST_CODEC_AV1);
        probe_segment(r.segs[i], &p);
        assert_string_equal(p.vcodec, "av1");
        assert_string_equal(p.acodec, "aac");
        assert_true(p.first_video_key);
        muxed += p.video;
    }
    assert_int_equal(muxed, fed);
    free_run(&r);
    ingest_segmenter_free(s);
    av_packet_free(&pkt);
    avformat_close_input(&in);
}

static void test_no_keyframe_is_an_error(void **state)
{
    const ingest_segmenter_opts_t strict = { .target_90k = 90000,
                                             .max_duration_90k = 90000,
                                             .max_bytes = 64 << 20 };
    const uint8_t avcc[] = { 1, 0x64, 0, 0x1e, 0xff, 0xe0, 0, 0 };
    const uint8_t frame[] = { 0, 0, 0, 2, 0x41, 0x9a };
    ingest_track_config_t cfg = { .codec = INGEST_CODEC_H264,
                                  .extradata = avcc,
                                  .extradata_len = sizeof(avcc),
                                  .width = 16,
                                  .height = 16 };
    ingest_segmenter_t *s;
    ingest_segment_t *seg;
    int64_t t;
    int rc = 0;

    (void) state;
    assert_int_equal(ingest_segmenter_new(&strict, 0, &s), 0);
    assert_int_equal(ingest_segmenter_configure(s, INGEST_VIDEO, &cfg), 0);
    /* frames before the first keyframe are dropped, not muxed */
    assert_int_equal(
        ingest_segmenter_write(s, INGEST_VIDEO, false, 0, 0, frame, sizeof(frame), &seg), 0);
    assert_int_equal(ingest_segmenter_dropped(s), 1);
    assert_int_equal(
        ingest_segmenter_write(s, INGEST_VIDEO, true, 3000, 3000, frame, sizeof(frame), &seg), 0);
    for (t = 6000; t < 200000 && rc == 0; t += 3000)
        rc = ingest_segmenter_write(s, INGEST_VIDEO, false, t, t, frame, sizeof(frame), &seg);
    assert_int_equal(rc, -E2BIG);
    assert_non_null(strstr(ingest_segmenter_error(s), "no keyframe"));
    ingest_segmenter_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gop_aligned_segments_decode_alone),
        cmocka_unit_test(test_long_gop_gives_longer_segments),
        cmocka_unit_test(test_discontinuity_cuts_at_next_keyframe),
        cmocka_unit_test(test_audio_only),
        cmocka_unit_test(test_av1_goes_into_fragmented_mp4),
        cmocka_unit_test(test_no_keyframe_is_an_error),
    };
    av_log_set_level(AV_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for services/ingest/ingest_ts: real clips are muxed and the
 * result is demuxed and decoded back with FFmpeg, for each input form the
 * muxer takes (length-prefixed + raw AAC as RTMP sends them, Annex B + ADTS
 * as SRT does), H.264 and HEVC.
 */
#include <errno.h>
#include <libavcodec/avcodec.h>
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
#include "ingest_ts.h"

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

typedef struct demuxed {
    AVFormatContext *fc;
    AVIOContext *io;
    mem_reader_t m;
} demuxed_t;

static void open_mem(demuxed_t *d, const uint8_t *p, size_t len, const char *format)
{
    unsigned char *iobuf = av_malloc(4096);

    d->m = (mem_reader_t){ p, len, 0 };
    d->io = avio_alloc_context(iobuf, 4096, 0, &d->m, mem_read, NULL, NULL);
    d->fc = avformat_alloc_context();
    d->fc->pb = d->io;
    assert_int_equal(avformat_open_input(&d->fc, NULL, av_find_input_format(format), NULL), 0);
    assert_true(avformat_find_stream_info(d->fc, NULL) >= 0);
}

static void close_mem(demuxed_t *d)
{
    avformat_close_input(&d->fc);
    av_freep(&d->io->buffer);
    avio_context_free(&d->io);
}

static ingest_codec_t our_codec(enum AVCodecID id)
{
    switch (id) {
    case AV_CODEC_ID_H264:
        return INGEST_CODEC_H264;
    case AV_CODEC_ID_HEVC:
        return INGEST_CODEC_HEVC;
    case AV_CODEC_ID_AAC:
        return INGEST_CODEC_AAC;
    default:
        return INGEST_CODEC_NONE;
    }
}

typedef struct counts {
    int packets[2], decoded[2], errors;
    bool first_video_key;
    enum AVCodecID codec[2];
} counts_t;

/*
 * Mux every packet of an open input with ingest_ts (its extradata as the
 * configurations) and return the segment.
 */
static uint8_t *mux_all(demuxed_t *in, size_t max_bytes, size_t *len, int *rc_out, counts_t *fed)
{
    ingest_ts_track_t t[2] = { { 0 }, { 0 } };
    int map[8];
    ingest_ts_t *ts;
    AVPacket *pkt = av_packet_alloc();
    char err[160];
    unsigned i;
    int rc = 0;

    memset(fed, 0, sizeof(*fed));
    for (i = 0; i < in->fc->nb_streams && i < 8; i++) {
        AVCodecParameters *par = in->fc->streams[i]->codecpar;
        int kind = par->codec_type == AVMEDIA_TYPE_VIDEO   ? INGEST_VIDEO
                   : par->codec_type == AVMEDIA_TYPE_AUDIO ? INGEST_AUDIO
                                                           : -1;
        map[i] = kind;
        if (kind < 0)
            continue;
        t[kind].codec = our_codec(par->codec_id);
        t[kind].extradata = par->extradata;
        t[kind].extradata_len = (size_t) CB_MAX(par->extradata_size, 0);
    }
    assert_int_equal(
        ingest_ts_new(&t[INGEST_VIDEO], &t[INGEST_AUDIO], 0, max_bytes, &ts, err, sizeof(err)), 0);
    while (rc == 0 && av_read_frame(in->fc, pkt) >= 0) {
        AVStream *st = in->fc->streams[pkt->stream_index];
        int kind = map[pkt->stream_index];
        int64_t dts = av_rescale_q(pkt->dts, st->time_base, (AVRational){ 1, 90000 });
        int64_t pts = av_rescale_q(pkt->pts, st->time_base, (AVRational){ 1, 90000 });

        if (kind >= 0) {
            rc = ingest_ts_write(ts, (ingest_media_kind_t) kind, pkt->flags & AV_PKT_FLAG_KEY,
                                 dts + 180000, pts + 180000, pkt->data, (size_t) pkt->size, err,
                                 sizeof(err));
            if (rc == 0)
                fed->packets[kind]++;
        }
        av_packet_unref(pkt);
    }
    av_packet_free(&pkt);
    *rc_out = rc;
    if (rc) {
        ingest_ts_free(ts);
        return NULL;
    }
    return ingest_ts_finish(ts, len);
}

/* Demux and decode a segment: packets and frames per kind, decoder errors. */
static void check_decodes(const uint8_t *p, size_t len, counts_t *out)
{
    demuxed_t d;
    AVCodecContext *dec[8] = { 0 };
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    unsigned i;

    memset(out, 0, sizeof(*out));
    open_mem(&d, p, len, "mpegts");
    for (i = 0; i < d.fc->nb_streams && i < 8; i++) {
        AVCodecParameters *par = d.fc->streams[i]->codecpar;
        int kind = par->codec_type == AVMEDIA_TYPE_VIDEO ? 0 : 1;
        out->codec[kind] = par->codec_id;
        dec[i] = avcodec_alloc_context3(avcodec_find_decoder(par->codec_id));
        avcodec_parameters_to_context(dec[i], par);
        assert_int_equal(avcodec_open2(dec[i], NULL, NULL), 0);
    }
    for (;;) {
        int r = av_read_frame(d.fc, pkt), kind, idx;
        if (r < 0)
            break;
        idx = pkt->stream_index;
        kind = d.fc->streams[idx]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO ? 0 : 1;
        if (kind == 0 && out->packets[0] == 0)
            out->first_video_key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
        out->packets[kind]++;
        if (avcodec_send_packet(dec[idx], pkt) < 0)
            out->errors++;
        while (avcodec_receive_frame(dec[idx], frame) == 0) {
            if (frame->decode_error_flags)
                out->errors++;
            out->decoded[kind]++;
        }
        av_packet_unref(pkt);
    }
    for (i = 0; i < d.fc->nb_streams && i < 8; i++) {
        int kind = d.fc->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO ? 0 : 1;
        avcodec_send_packet(dec[i], NULL);
        while (avcodec_receive_frame(dec[i], frame) == 0)
            out->decoded[kind]++;
        avcodec_free_context(&dec[i]);
    }
    av_frame_free(&frame);
    av_packet_free(&pkt);
    close_mem(&d);
}

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

/* The clip through ingest_ts (RTMP form), then the result through it again (SRT form). */
static void roundtrip(const char *path, const char *format, enum AVCodecID vcodec)
{
    size_t flen, len1, len2;
    uint8_t *file = read_file(path, &flen), *seg1, *seg2;
    demuxed_t in;
    counts_t fed1, fed2, out1, out2;
    int rc;

    open_mem(&in, file, flen, format);
    seg1 = mux_all(&in, 64 << 20, &len1, &rc, &fed1);
    assert_int_equal(rc, 0);
    close_mem(&in);
    assert_int_equal(len1 % 188, 0);
    check_decodes(seg1, len1, &out1);
    assert_int_equal(out1.codec[0], vcodec);
    assert_int_equal(out1.codec[1], AV_CODEC_ID_AAC);
    assert_true(out1.first_video_key);
    assert_int_equal(out1.packets[0], fed1.packets[0]);
    assert_int_equal(out1.packets[1], fed1.packets[1]);
    assert_int_equal(out1.decoded[0], fed1.packets[0]); /* every frame decodes */
    assert_int_equal(out1.errors, 0);

    /* Annex B video and ADTS audio, as an SRT publisher sends them */
    open_mem(&in, seg1, len1, "mpegts");
    seg2 = mux_all(&in, 64 << 20, &len2, &rc, &fed2);
    assert_int_equal(rc, 0);
    close_mem(&in);
    check_decodes(seg2, len2, &out2);
    assert_int_equal(out2.packets[0], out1.packets[0]);
    assert_int_equal(out2.packets[1], out1.packets[1]);
    assert_int_equal(out2.decoded[0], out1.decoded[0]);
    assert_int_equal(out2.errors, 0);
    free(seg1);
    free(seg2);
    free(file);
}

static void test_h264_aac_from_flv(void **state)
{
    (void) state;
    roundtrip("tests/data/media/h264_aac_6s.flv", "flv", AV_CODEC_ID_H264);
}

static void test_hevc_aac_from_mp4(void **state)
{
    (void) state;
    roundtrip("tests/data/media/hevc_aac_2s.mp4", "mp4", AV_CODEC_ID_HEVC);
}

static void test_size_limit(void **state)
{
    size_t flen, len;
    uint8_t *file = read_file("tests/data/media/h264_aac_6s.flv", &flen);
    demuxed_t in;
    counts_t fed;
    int rc;

    (void) state;
    open_mem(&in, file, flen, "flv");
    assert_null(mux_all(&in, 20000, &len, &rc, &fed));
    assert_int_equal(rc, -E2BIG);
    close_mem(&in);
    free(file);
}

static void test_bad_configurations(void **state)
{
    static const uint8_t bad_avcc[] = {
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 200
    };                                           /* SPS past the end */
    static const uint8_t asc[] = { 0x12, 0x10 }; /* AAC LC 44.1k 2ch */
    ingest_ts_track_t v = { INGEST_CODEC_H264, bad_avcc, sizeof(bad_avcc) };
    ingest_ts_track_t a = { INGEST_CODEC_AAC, asc, sizeof(asc) };
    ingest_ts_track_t none = { 0 }, av1 = { INGEST_CODEC_AV1, NULL, 0 };
    ingest_ts_t *ts = NULL;
    char err[160];
    uint8_t frame[] = { 0, 0, 0, 2, 0x65, 0x88 };

    (void) state;
    assert_int_equal(ingest_ts_new(&v, &a, 0, 1 << 20, &ts, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "AVC"));
    assert_int_equal(ingest_ts_new(&av1, &none, 0, 1 << 20, &ts, err, sizeof(err)), -EINVAL);
    assert_int_equal(ingest_ts_new(&none, &none, 0, 1 << 20, &ts, err, sizeof(err)), -EINVAL);
    /* Annex B expected without a configuration: a length-prefixed frame is refused */
    v.extradata = NULL;
    v.extradata_len = 0;
    assert_int_equal(ingest_ts_new(&v, &a, 0, 1 << 20, &ts, err, sizeof(err)), 0);
    assert_int_equal(
        ingest_ts_write(ts, INGEST_VIDEO, true, 0, 0, frame, sizeof(frame), err, sizeof(err)),
        -EINVAL);
    /* raw AAC is framed with ADTS from the AudioSpecificConfig */
    assert_int_equal(
        ingest_ts_write(ts, INGEST_AUDIO, false, 0, 0, frame, sizeof(frame), err, sizeof(err)), 0);
    ingest_ts_free(ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h264_aac_from_flv),
        cmocka_unit_test(test_hevc_aac_from_mp4),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_bad_configurations),
    };

    av_log_set_level(AV_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

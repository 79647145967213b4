/*
 * Unit tests for services/transcode-worker/transcode_pipeline and
 * transcode_cmaf: a real clip is transcoded into a small ladder, and every
 * rendition (init segment + media segments) is demuxed and decoded back
 * with FFmpeg: sizes, IDR at each segment start, cuts at the same times in
 * every rung, the job's timeline kept, durations adding up.
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

#include "buf.h"
#include "transcode_pipeline.h"

#define CLIP     "tests/data/media/h264_aac_6s.flv" /* 320x180, 30 fps, AAC, 6 s */
#define MAX_SEGS 64

typedef struct seg_rec {
    int64_t start, duration;
    size_t offset, len; /* in the rendition's bytes */
} seg_rec_t;

typedef struct out {
    cb_buf_t bytes[TC_MAX_RENDITIONS]; /* init + segments, as a player would fetch them */
    seg_rec_t segs[TC_MAX_RENDITIONS][MAX_SEGS];
    size_t nsegs[TC_MAX_RENDITIONS];
    const tc_result_t *res;
} out_t;

static size_t idx(out_t *o, const tc_rendition_t *r)
{
    return (size_t) (r - o->res->renditions);
}

static int on_init(void *arg, const tc_rendition_t *r, const uint8_t *data, size_t len)
{
    out_t *o = arg;

    return cb_buf_append(&o->bytes[idx(o, r)], data, len);
}

static int on_segment(void *arg, const tc_rendition_t *r, const tc_segment_t *s)
{
    out_t *o = arg;
    size_t i = idx(o, r);
    seg_rec_t *rec = &o->segs[i][o->nsegs[i]++];

    assert_true(o->nsegs[i] <= MAX_SEGS);
    rec->start = s->start_90k;
    rec->duration = s->duration_90k;
    rec->offset = o->bytes[i].len;
    rec->len = s->len;
    return cb_buf_append(&o->bytes[i], s->data, s->len);
}

static void out_init(out_t *o, const tc_result_t *res)
{
    memset(o, 0, sizeof(*o));
    o->res = res;
    for (size_t i = 0; i < TC_MAX_RENDITIONS; i++)
        cb_buf_init(&o->bytes[i], 64u << 20);
}

static void out_release(out_t *o)
{
    for (size_t i = 0; i < TC_MAX_RENDITIONS; i++)
        cb_buf_release(&o->bytes[i]);
}

/* ---- reading a rendition back ---- */

typedef struct mem {
    const uint8_t *p;
    size_t len, pos;
} mem_t;

static int mem_read(void *opaque, uint8_t *buf, int size)
{
    mem_t *m = opaque;
    size_t n = m->len - m->pos < (size_t) size ? m->len - m->pos : (size_t) size;

    if (n == 0)
        return AVERROR_EOF;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (int) n;
}

typedef struct decoded {
    int width, height;
    char codec[16];
    int64_t pts[2048]; /* presentation times in 90 kHz (video) or samples (audio) */
    int key[2048];
    size_t npkts;
    int frames; /* decoded frames */
} decoded_t;

static void read_back(const uint8_t *p, size_t len, decoded_t *d)
{
    mem_t m = { .p = p, .len = len };
    uint8_t *iobuf = av_malloc(4096);
    AVIOContext *io = avio_alloc_context(iobuf, 4096, 0, &m, mem_read, NULL, NULL);
    AVFormatContext *fmt = avformat_alloc_context();
    AVCodecContext *dec;
    const AVCodec *codec;
    AVPacket *pkt = av_packet_alloc();
    AVFrame *f = av_frame_alloc();
    AVStream *st;

    memset(d, 0, sizeof(*d));
    fmt->pb = io;
    assert_int_equal(avformat_open_input(&fmt, NULL, NULL, NULL), 0);
    assert_true(avformat_find_stream_info(fmt, NULL) >= 0);
    assert_int_equal(fmt->nb_streams, 1);
    st = fmt->streams[0];
    codec = avcodec_find_decoder(st->codecpar->codec_id);
    snprintf(d->codec, sizeof(d->codec), "%s", codec->name);
    d->width = st->codecpar->width;
    d->height = st->codecpar->height;
    dec = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(dec, st->codecpar);
    assert_int_equal(avcodec_open2(dec, codec, NULL), 0);
    while (av_read_frame(fmt, pkt) >= 0) {
        assert_true(d->npkts < 2048);
        d->pts[d->npkts] = pkt->pts;
        d->key[d->npkts] = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
        d->npkts++;
        assert_true(avcodec_send_packet(dec, pkt) >= 0);
        while (avcodec_receive_frame(dec, f) == 0)
            d->frames++;
        av_packet_unref(pkt);
    }
    avcodec_send_packet(dec, NULL);
    while (avcodec_receive_frame(dec, f) == 0)
        d->frames++;
    av_frame_free(&f);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    av_freep(&io->buffer);
    avio_context_free(&io);
}

static bool has_pts(const decoded_t *d, int64_t pts, int *key)
{
    for (size_t i = 0; i < d->npkts; i++) {
        if (d->pts[i] == pts) {
            *key = d->key[i];
            return true;
        }
    }
    return false;
}

static void transcode(tc_params_t *p, out_t *o, tc_result_t *res, int expect_rc)
{
    tc_sink_t sink = { .init = on_init, .segment = on_segment, .arg = o };
    char err[256] = "";
    int rc;

    out_init(o, res);
    rc = tc_transcode(p, &sink, res, err, sizeof(err));
    if (rc != expect_rc)
        fail_msg("tc_transcode: %d (%s), expected %d", rc, err, expect_rc);
}

/* A job: a 6 s source placed at a large time, cut into 2 s segments. */
static void test_job_ladder_and_timeline(void **state)
{
    static tc_result_t res;
    static out_t o;
    tc_params_t p = { .input = CLIP,
                      .timeline = true,
                      .start_pts_90k = 8589934592LL + 12345,
                      .duration_90k = 6 * 90000 };
    char err[256];
    size_t i, k;

    (void) state;
    assert_int_equal(tc_ladder_parse("320x180@300k,160x90@120k", &p.profile, err, sizeof(err)), 0);
    snprintf(p.profile.preset, sizeof(p.profile.preset), "ultrafast");
    transcode(&p, &o, &res, 0);
    assert_int_equal(res.n, 3);
    assert_string_equal(res.renditions[0].name, "180p");
    assert_string_equal(res.renditions[1].name, "90p");
    assert_string_equal(res.renditions[2].name, "audio");
    assert_string_equal(res.renditions[2].track.codecs, "mp4a.40.2");
    assert_memory_equal(res.renditions[0].track.codecs, "avc1.", 5);
    assert_int_equal(res.src_width, 320);
    assert_int_equal(res.start_90k, p.start_pts_90k);

    for (i = 0; i < 2; i++) {
        const tc_rendition_t *r = &res.renditions[i];
        static decoded_t d;
        int64_t total = 0;

        /* three 2 s segments, cut at the same times in both rungs */
        assert_int_equal(o.nsegs[i], 3);
        for (k = 0; k < 3; k++) {
            int key = 0;

            assert_int_equal(o.segs[i][k].start, o.segs[0][k].start);
            assert_true(o.segs[i][k].start == p.start_pts_90k + (int64_t) k * 180000);
            total += o.segs[i][k].duration;
            (void) key;
        }
        assert_true(total >= 6 * 90000 - 3000 && total <= 6 * 90000 + 3000);
        read_back((const uint8_t *) o.bytes[i].data, o.bytes[i].len, &d);
        assert_string_equal(d.codec, "h264");
        assert_int_equal(d.width, r->width);
        assert_int_equal(d.height, r->height);
        assert_int_equal(d.frames, 180);
        assert_int_equal(d.npkts, 180);
        /* every segment starts with an IDR at the job's time */
        for (k = 0; k < 3; k++) {
            int key = 0;

            assert_true(has_pts(&d, o.segs[i][k].start, &key));
            assert_true(key);
        }
        assert_int_equal(r->frames, 180);
        assert_true(r->bytes > 0);
    }
    /* audio: cut near the same times, continuous, starting at the job's time */
    {
        static decoded_t d;
        int64_t total = 0;

        assert_int_equal(o.nsegs[2], 3);
        for (k = 0; k < 3; k++) {
            int64_t diff = o.segs[2][k].start - o.segs[0][k].start;

            /* the clip's audio starts 23 ms before its video: within one AAC frame */
            if (!(diff > -4000 && diff < 4000))
                fail_msg("audio seg %zu at %lld, video at %lld", k, (long long) o.segs[2][k].start,
                         (long long) o.segs[0][k].start);
            if (k)
                assert_true(o.segs[2][k].start ==
                            o.segs[2][k - 1].start + o.segs[2][k - 1].duration);
            total += o.segs[2][k].duration;
        }
        assert_true(total >= 6 * 90000 - 4000 && total <= 6 * 90000 + 4000);
        read_back((const uint8_t *) o.bytes[2].data, o.bytes[2].len, &d);
        assert_string_equal(d.codec, "aac");
        assert_true(d.frames > 200);
    }
    out_release(&o);
}

/* One-shot: the file's own times, a tail shorter than a segment kept. */
static void test_file_keeps_its_times(void **state)
{
    static tc_result_t res;
    static out_t o;
    static decoded_t d;
    tc_params_t p = { .input = CLIP };

    (void) state;
    assert_int_equal(tc_profile_get("preview", &p.profile), 0);
    p.profile.segment_s = 4; /* 4 s + a 2 s tail */
    transcode(&p, &o, &res, 0);
    assert_int_equal(res.n, 2); /* 180p (the source is smaller than 240p) + audio */
    assert_string_equal(res.renditions[0].name, "180p");
    assert_int_equal(o.nsegs[0], 2);
    assert_true(o.segs[0][0].start >= 0 && o.segs[0][0].start < 9000);
    assert_int_equal(o.segs[0][1].start, o.segs[0][0].start + 4 * 90000);
    read_back((const uint8_t *) o.bytes[0].data, o.bytes[0].len, &d);
    assert_int_equal(d.frames, 180);
    assert_int_equal(d.pts[0], o.segs[0][0].start);
    out_release(&o);
}

static void test_bad_input_is_an_error(void **state)
{
    static tc_result_t res;
    static out_t o;
    tc_params_t p = { .input = "tests/data/media/README.md" };
    tc_sink_t sink = { .init = on_init, .segment = on_segment, .arg = &o };
    char err[256] = "";
    FILE *f;
    static uint8_t junk[65536];

    (void) state;
    tc_profile_get("preview", &p.profile);
    out_init(&o, &res);
    assert_int_equal(tc_transcode(&p, &sink, &res, err, sizeof(err)), -EINVAL);
    assert_true(strlen(err) > 0);

    p.input = "/nonexistent/file.ts";
    assert_int_equal(tc_transcode(&p, &sink, &res, err, sizeof(err)), -ENOENT);

    /* a truncated source: the start of a real clip */
    f = fopen(CLIP, "rb");
    assert_non_null(f);
    assert_true(fread(junk, 1, 3000, f) == 3000);
    fclose(f);
    f = fopen("build/tests/truncated.flv", "wb");
    assert_non_null(f);
    fwrite(junk, 1, 3000, f);
    fclose(f);
    p.input = "build/tests/truncated.flv";
    assert_int_equal(tc_transcode(&p, &sink, &res, err, sizeof(err)), -EINVAL);
    out_release(&o);
}

static void test_cancel(void **state)
{
    static tc_result_t res;
    static out_t o;
    atomic_bool cancel = true;
    tc_params_t p = { .input = CLIP, .cancel = &cancel };

    (void) state;
    tc_profile_get("preview", &p.profile);
    transcode(&p, &o, &res, -ECANCELED);
    out_release(&o);
}

static void test_cmaf_track_h264(void **state)
{
    /* Annex B headers as libx264 emits them: SPS, PPS, SEI */
    static const uint8_t ex[] = { 0,    0,    0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac,
                                  0xd9, 0x40, 0, 0, 1,    0x68, 0xeb, 0xe3, 0xcb,
                                  0x22, 0xc0, 0, 0, 1,    0x06, 0x05, 0x11, 0x80 };
    static const uint8_t au[] = { 0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00 };
    tc_cmaf_track_t t;
    tc_cmaf_frag_t f;
    cb_buf_t b;
    char err[128];

    (void) state;
    assert_int_equal(tc_cmaf_track_h264(&t, 1280, 720, ex, sizeof(ex), err, sizeof(err)), 0);
    assert_string_equal(t.codecs, "avc1.64001f");
    assert_int_equal(t.config[0], 1);
    assert_int_equal(t.config[5], 0xe1);
    assert_int_equal(t.config_len, 11 + 7 + 6);
    assert_int_equal(tc_cmaf_track_h264(&t, 1280, 720, ex + 20, 7, err, sizeof(err)), -EINVAL);

    tc_cmaf_track_h264(&t, 1280, 720, ex, sizeof(ex), err, sizeof(err));
    tc_cmaf_frag_init(&f, 1024, 4);
    /* the AUD goes, the slice gets a 4-byte length, its trailing zero stays out */
    assert_int_equal(tc_cmaf_frag_add(&f, &t, au, sizeof(au), 0, 0, true), 0);
    assert_int_equal(f.data.len, 4 + 3);
    assert_int_equal(tc_cmaf_frag_add(&f, &t, au, 6, 3000, 3000, false), -EINVAL);
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(tc_cmaf_frag_write(&f, &t, 1, 3000, true, &b), 0);
    assert_memory_equal(b.data + 4, "styp", 4);
    /* a segment's later chunks: moof + mdat only */
    cb_buf_reset(&b);
    assert_int_equal(tc_cmaf_frag_write(&f, &t, 2, 3000, false, &b), 0);
    assert_memory_equal(b.data + 4, "moof", 4);
    cb_buf_release(&b);
    tc_cmaf_frag_release(&f);
}

static void test_cmaf_track_hevc(void **state)
{
    /* VPS, SPS, PPS as libx265 emits them for 320x240 Main (level 2) */
    static const uint8_t ex[] = {
        0x00, 0x00, 0x00, 0x01, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03,
        0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x98, 0x09, 0x00, 0x00,
        0x00, 0x01, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03,
        0x00, 0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0a, 0x08, 0x0f, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b,
        0xc0, 0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x10, 0x00,
        0x00, 0x00, 0x01, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40,
    };
    /* an IDR slice after an AUD and a repeated VPS: only the slice is stored */
    static const uint8_t au[] = { 0,    0,    1, 0x46, 0x01, 0x50, 0,    0,    1,   0x40,
                                  0x01, 0x0c, 0, 0,    1,    0x26, 0x01, 0xaf, 0x1e };
    tc_cmaf_track_t t;
    tc_cmaf_frag_t f;
    cb_buf_t b;
    char err[128];

    (void) state;
    assert_int_equal(tc_cmaf_track_hevc(&t, 320, 240, ex, sizeof(ex), err, sizeof(err)), 0);
    /* Main (1), compatible with Main and Main 10 (6), Main tier level 2 (60), progressive, frame only */
    assert_string_equal(t.codecs, "hvc1.1.6.L60.90");
    assert_true(t.vcodec == TC_CMAF_HEVC && t.video);
    assert_int_equal(t.config[0], 1);
    assert_int_equal(t.config[1], 0x01);   /* profile space 0, main tier, profile 1 */
    assert_int_equal(t.config[12], 60);    /* level */
    assert_int_equal(t.config[16], 0xfd);  /* 4:2:0 */
    assert_int_equal(t.config[17], 0xf8);  /* 8-bit luma */
    assert_int_equal(t.config[21] & 3, 3); /* 4-byte NAL lengths */
    assert_int_equal(t.config[22], 3);     /* VPS, SPS, PPS arrays */
    assert_int_equal(t.config_len, 23 + 3 * 5 + (25 - 4) + (48 - 4) + (12 - 4) - 0);
    /* no PPS */
    assert_int_equal(tc_cmaf_track_hevc(&t, 320, 240, ex, 73, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "hevc"));

    tc_cmaf_track_hevc(&t, 320, 240, ex, sizeof(ex), err, sizeof(err));
    tc_cmaf_frag_init(&f, 1024, 4);
    assert_int_equal(tc_cmaf_frag_add(&f, &t, au, sizeof(au), 0, 0, true), 0);
    assert_int_equal(f.data.len, 4 + 4);
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(tc_cmaf_write_init(&t, &b), 0);
    assert_non_null(memmem(b.data, b.len, "hvc1", 4));
    assert_non_null(memmem(b.data, b.len, "hvcC", 4));
    cb_buf_release(&b);
    tc_cmaf_frag_release(&f);
}

static void test_cmaf_track_av1(void **state)
{
    /* a temporal unit as libaom emits it: delimiter, sequence header (320x240,
     * profile 0, level 2.0), then a (shortened) frame OBU */
    static const uint8_t tu[] = { 0x12, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff,
                                  0xbc, 0xda, 0xf9, 0x00, 0x40, 0x32, 0x03, 0xaa, 0xbb, 0xcc };
    static const uint8_t cut[] = { 0x0a, 0x0b, 0x00, 0x00 }; /* size past the end */
    tc_cmaf_track_t t;
    tc_cmaf_frag_t f;
    cb_buf_t b;
    char err[128];

    (void) state;
    assert_int_equal(tc_cmaf_track_av1(&t, 320, 240, tu, sizeof(tu), err, sizeof(err)), 0);
    assert_string_equal(t.codecs, "av01.0.00M.08");
    assert_true(t.vcodec == TC_CMAF_AV1 && t.video);
    assert_int_equal(t.config[0], 0x81);
    assert_int_equal(t.config[1], 0x00); /* profile 0, level 0 */
    assert_int_equal(t.config[2], 0x0c); /* main tier, 8-bit, 4:2:0 */
    assert_int_equal(t.config_len, 4 + 13);
    assert_memory_equal(t.config + 4, tu + 2, 13);
    assert_int_equal(tc_cmaf_track_av1(&t, 320, 240, tu + 15, 5, err, sizeof(err)), -EINVAL);
    assert_int_equal(tc_cmaf_track_av1(&t, 320, 240, cut, sizeof(cut), err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "av1"));

    tc_cmaf_track_av1(&t, 320, 240, tu, sizeof(tu), err, sizeof(err));
    tc_cmaf_frag_init(&f, 1024, 4);
    /* the temporal delimiter goes; the sequence header and the frame stay as they are */
    assert_int_equal(tc_cmaf_frag_add(&f, &t, tu, sizeof(tu), 0, 0, true), 0);
    assert_int_equal(f.data.len, sizeof(tu) - 2);
    assert_int_equal(tc_cmaf_frag_add(&f, &t, cut, sizeof(cut), 3000, 3000, false), -EINVAL);
    assert_int_equal(f.data.len, sizeof(tu) - 2);
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(tc_cmaf_write_init(&t, &b), 0);
    assert_non_null(memmem(b.data, b.len, "av01", 4));
    assert_non_null(memmem(b.data, b.len, "av1C", 4));
    cb_buf_release(&b);
    tc_cmaf_frag_release(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmaf_track_h264),
        cmocka_unit_test(test_cmaf_track_hevc),
        cmocka_unit_test(test_cmaf_track_av1),
        cmocka_unit_test(test_job_ladder_and_timeline),
        cmocka_unit_test(test_file_keeps_its_times),
        cmocka_unit_test(test_bad_input_is_an_error),
        cmocka_unit_test(test_cancel),
    };

    av_log_set_level(AV_LOG_FATAL); /* the bad inputs are meant to be bad */
    return cmocka_run_group_tests(tests, NULL, NULL);
}

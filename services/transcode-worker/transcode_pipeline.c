/*
 * transcode_pipeline.c - decode once, scale in a cascade, encode the rungs
 * in parallel, write CMAF segments.
 *
 * DESIGN
 *   caller thread: demux -> video decoder -> cut decision -> queue of rung 0
 *                  demux -> audio decoder -> resampler -> AAC -> segments
 *   scaler of rung i:  queue i -> scale -> queue i+1 (the next smaller rung)
 *                                     -> encoder queue i
 *   encoder of rung i: encoder queue i -> libx264 -> segments of rung i
 * Scaling runs beside the encoder, not before it on the same thread: the
 * largest rung's scale + encode would otherwise be the critical path that
 * every smaller rung waits on.
 * Frames are reference counted (AVFrame); a rung hands its scaled picture to
 * the next rung by reference. Queues hold at most queue_frames frames;
 * a push waits while the queue is full, which is what bounds memory.
 *
 * Errors: the first error anywhere is kept in the run and stops it; every
 * wait on a queue is timed (100 ms), so a stop, or a cancel flag set from
 * outside, is seen by all threads; the caller joins them and returns it.
 */
#include "transcode_pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswresample/swresample.h>
#include <libswscale/swscale.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#define SEG_MAX_BYTES   (64u << 20) /* one media segment of one rendition */
#define SEG_MAX_SAMPLES 20000
#define TB_90K          ((AVRational){ 1, 90000 })
#define MAX_CUTS        4096 /* kept per run; older ones are forgotten */

typedef struct run run_t;

/* ---- a bounded queue of frames ---- */

typedef struct fq {
    AVFrame **slots;
    size_t cap, head, n;
    bool closed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    run_t *run;
} fq_t;

/*
 * The open media segment of one rendition, and the buffer it is written
 * into. `frag` holds the samples of its open chunk; with low latency the
 * chunks before it are already in `out`, each one of `parts`.
 */
typedef struct segw {
    tc_cmaf_frag_t frag;
    cb_buf_t out;
    uint32_t seq;      /* fragments written so far (the mfhd sequence number) */
    int64_t start_90k; /* presentation time of the open segment's first sample */
    tc_part_t parts[TC_MAX_PARTS];
    size_t nparts;
} segw_t;

typedef struct rung {
    run_t *run;
    size_t index;
    tc_rendition_t *r;
    fq_t in;
    struct rung *next; /* the next smaller rung, fed by this one */
    AVCodecContext *enc;
    AVPacket *pkt; /* encoder output, reused */
    struct SwsContext *sws;
    tc_hw_enc_t hw; /* hardware encoder state (VAAPI surfaces), when one is used */
    int64_t frame_dur_90k;
    int64_t dts_shift; /* added to every dts so the first sample's dts is its pts */
    bool have_shift;
    segw_t seg;
    int64_t max_end_90k; /* end of the latest frame presented */
    fq_t enc_in;         /* scaled pictures waiting for the encoder */
    pthread_t scaler, encoder;
    bool scaler_started, encoder_started;
} rung_t;

struct run {
    const tc_params_t *p;
    const tc_sink_t *sink;
    tc_result_t *res;
    pthread_mutex_t mu; /* guards err, cuts */
    int rc;
    char err[256];
    int64_t cuts[MAX_CUTS]; /* ring of cut times (90 kHz), ascending */
    size_t ncuts;
    atomic_bool stop;
};

static bool run_stopped(run_t *run)
{
    return atomic_load(&run->stop) || (run->p->cancel && atomic_load(run->p->cancel));
}

/* Keep the first error; stop everything. */
static void run_fail(run_t *run, int rc, const char *fmt, ...) CB_PRINTF(3, 4);

static void run_fail(run_t *run, int rc, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&run->mu);
    if (run->rc == 0) {
        run->rc = rc;
        va_start(ap, fmt);
        vsnprintf(run->err, sizeof(run->err), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&run->mu);
    atomic_store(&run->stop, true);
}

static int fq_init(fq_t *q, size_t cap, run_t *run)
{
    memset(q, 0, sizeof(*q));
    q->slots = calloc(cap, sizeof(*q->slots));
    if (!q->slots)
        return -ENOMEM;
    q->cap = cap;
    q->run = run;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return 0;
}

static void fq_release(fq_t *q)
{
    if (!q->slots)
        return;
    while (q->n) {
        av_frame_free(&q->slots[q->head]);
        q->head = (q->head + 1) % q->cap;
        q->n--;
    }
    free(q->slots);
    q->slots = NULL;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* Wait (q->mu held) for a change, at most 100 ms: a cancel flag set from outside wakes no one. */
static void fq_wait(fq_t *q)
{
    struct timespec ts;

    cb_clock_deadline(&ts, 100 * 1000);
    pthread_cond_timedwait(&q->cv, &q->mu, &ts);
}

/* Takes the frame. Waits while full; returns -ECANCELED when the run stopped. */
static int fq_push(fq_t *q, AVFrame *f)
{
    pthread_mutex_lock(&q->mu);
    while (q->n == q->cap && !run_stopped(q->run))
        fq_wait(q);
    if (run_stopped(q->run)) {
        pthread_mutex_unlock(&q->mu);
        av_frame_free(&f);
        return -ECANCELED;
    }
    q->slots[(q->head + q->n) % q->cap] = f;
    q->n++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* The next frame, or NULL at the end of the input or when the run stopped. */
static AVFrame *fq_pop(fq_t *q)
{
    AVFrame *f = NULL;

    pthread_mutex_lock(&q->mu);
    while (q->n == 0 && !q->closed && !run_stopped(q->run))
        fq_wait(q);
    if (q->n && !run_stopped(q->run)) {
        f = q->slots[q->head];
        q->slots[q->head] = NULL;
        q->head = (q->head + 1) % q->cap;
        q->n--;
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return f;
}

static void fq_close(fq_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ---- cuts ---- */

static void cut_add(run_t *run, int64_t t)
{
    pthread_mutex_lock(&run->mu);
    run->cuts[run->ncuts % MAX_CUTS] = t;
    run->ncuts++;
    pthread_mutex_unlock(&run->mu);
}

static bool cut_is(run_t *run, int64_t t)
{
    bool found = false;
    size_t i, n;

    pthread_mutex_lock(&run->mu);
    n = CB_MIN(run->ncuts, (size_t) MAX_CUTS);
    for (i = 0; i < n && !found; i++)
        found = run->cuts[(run->ncuts - 1 - i) % MAX_CUTS] == t;
    pthread_mutex_unlock(&run->mu);
    return found;
}

/* ---- segments (both kinds of rendition) ---- */

static void segw_init(segw_t *w)
{
    tc_cmaf_frag_init(&w->frag, SEG_MAX_BYTES, SEG_MAX_SAMPLES);
    cb_buf_init(&w->out, SEG_MAX_BYTES + (1u << 20));
    w->start_90k = INT64_MIN;
}

static void segw_release(segw_t *w)
{
    tc_cmaf_frag_release(&w->frag);
    cb_buf_release(&w->out);
}

/* Decode time of the open segment's last sample (it has one). */
static int64_t segw_last_dts(const segw_t *w)
{
    return w->frag.samples[w->frag.n - 1].dts;
}

/* Track ticks to the 90 kHz clock. */
static int64_t track_to_90k(const tc_rendition_t *r, int64_t t)
{
    return r->track.timescale == 90000 ? t : av_rescale(t, 90000, r->track.timescale);
}

/*
 * Write the open chunk into the open segment's bytes; last_dur is its last
 * sample's duration. With low latency it is one of the segment's parts.
 */
static int seg_chunk(run_t *run, tc_rendition_t *r, segw_t *w, int64_t last_dur)
{
    size_t at = w->out.len;
    int64_t first = w->frag.samples[0].dts;
    int rc = tc_cmaf_frag_write(&w->frag, &r->track, ++w->seq, last_dur, at == 0, &w->out);

    if (rc)
        return rc;
    if (run->p->part_90k > 0 && w->nparts < TC_MAX_PARTS)
        w->parts[w->nparts++] = (tc_part_t){
            .offset = (uint32_t) at,
            .len = (uint32_t) (w->out.len - at),
            .duration_90k = track_to_90k(r, segw_last_dts(w) + last_dur) - track_to_90k(r, first),
            .independent = w->frag.samples[0].sync,
        };
    tc_cmaf_frag_reset(&w->frag);
    return 0;
}

/*
 * Low latency: write the open chunk when it is full, so that the sample at
 * dts (track clock), lasting about dur, starts the next one. The last
 * chunk a segment may have takes whatever is left.
 */
static int seg_chunk_if_full(run_t *run, tc_rendition_t *r, segw_t *w, int64_t dts, int64_t dur)
{
    if (run->p->part_90k <= 0 || w->frag.n == 0 || w->nparts >= TC_MAX_PARTS - 1 ||
        track_to_90k(r, dts + dur) - track_to_90k(r, w->frag.samples[0].dts) <= run->p->part_90k)
        return 0;
    return seg_chunk(run, r, w, dts - segw_last_dts(w));
}

/* Whether the segment is still empty (its first chunk may be written already). */
static bool segw_empty(const segw_t *w)
{
    return w->frag.n == 0 && w->nparts == 0;
}

/* Write the open segment (if any) ending at end_90k and hand it to the sink. */
static int seg_flush(run_t *run, tc_rendition_t *r, segw_t *w, int64_t end_90k, int64_t last_dur)
{
    tc_segment_t s;
    int rc;

    if (w->frag.n == 0)
        return 0;
    rc = seg_chunk(run, r, w, last_dur);
    if (rc)
        return rc;
    s.seq = r->segments + 1;
    s.start_90k = w->start_90k;
    s.duration_90k = end_90k - w->start_90k;
    s.data = (const uint8_t *) w->out.data;
    s.len = w->out.len;
    s.parts = w->nparts ? w->parts : NULL;
    s.nparts = w->nparts;
    rc = run->sink->segment(run->sink->arg, r, &s);
    if (rc)
        return rc;
    r->bytes += w->out.len;
    r->duration_90k += s.duration_90k;
    r->segments++;
    cb_buf_reset(&w->out);
    w->nparts = 0;
    return 0;
}

/* Send a frame (NULL: flush) and hand every packet that comes out to on_packet. */
static int encode_frame(AVCodecContext *enc, AVPacket *pkt, const AVFrame *f,
                        int (*on_packet)(void *arg, const AVPacket *pkt), void *arg)
{
    int rc = avcodec_send_frame(enc, f);

    while (rc >= 0) {
        rc = avcodec_receive_packet(enc, pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            break;
        rc = on_packet(arg, pkt);
        av_packet_unref(pkt);
    }
    return rc;
}

/* ---- video rungs ---- */

/* Write a rendition's init segment (once its track is described). */
static int emit_init(run_t *run, tc_rendition_t *r)
{
    cb_buf_t init;
    int rc;

    cb_buf_init(&init, 1u << 20);
    rc = tc_cmaf_write_init(&r->track, &init);
    if (rc == 0)
        rc = run->sink->init(run->sink->arg, r, (const uint8_t *) init.data, init.len);
    cb_buf_release(&init);
    return rc;
}

/*
 * An encoded access unit. B-frames make the encoder's dts run behind pts by
 * a constant delay; the dts are moved forward by that delay (negative
 * composition offsets in the v1 trun), so a segment's tfdt is the time of
 * its first picture and never negative, and segments from separate encoder
 * runs follow each other without a gap or an overlap.
 */
static int rung_packet(void *arg, const AVPacket *pkt)
{
    rung_t *g = arg;
    run_t *run = g->run;
    bool key = pkt->flags & AV_PKT_FLAG_KEY;
    int64_t dts;
    int rc;

    if (!g->have_shift) {
        g->dts_shift = pkt->pts - pkt->dts;
        g->have_shift = true;
    }
    if (g->r->track.config_len == 0) {
        /* libaom's headers come with its first packet, not when it opens */
        char why[160];

        rc = tc_cmaf_track_av1(&g->r->track, g->enc->width, g->enc->height, pkt->data,
                               (size_t) pkt->size, why, sizeof(why));
        if (rc == 0)
            rc = emit_init(run, g->r);
        if (rc) {
            run_fail(run, rc, "%s: %s", g->r->name, rc == -EINVAL ? why : strerror(-rc));
            return rc;
        }
    }
    dts = pkt->dts + g->dts_shift;
    if (key && cut_is(run, pkt->pts) && g->seg.frag.n) {
        rc = seg_flush(run, g->r, &g->seg, pkt->pts, dts - segw_last_dts(&g->seg));
        if (rc)
            return rc;
    }
    rc = seg_chunk_if_full(run, g->r, &g->seg, dts, g->frame_dur_90k);
    if (rc)
        return rc;
    if (segw_empty(&g->seg))
        g->seg.start_90k = pkt->pts;
    rc = tc_cmaf_frag_add(&g->seg.frag, &g->r->track, pkt->data, (size_t) pkt->size, dts, pkt->pts,
                          key);
    if (rc == -E2BIG)
        run_fail(run, -EINVAL, "%s: a segment grew past %u bytes or %u frames: no keyframe cut",
                 g->r->name, SEG_MAX_BYTES, SEG_MAX_SAMPLES);
    if (pkt->pts + g->frame_dur_90k > g->max_end_90k)
        g->max_end_90k = pkt->pts + g->frame_dur_90k;
    return rc;
}

static int rung_encode(rung_t *g, const AVFrame *f)
{
    AVFrame *surface;
    int rc = tc_hw_frame(&g->hw, f, &surface);

    if (rc == 0)
        rc = encode_frame(g->enc, g->pkt, surface ? surface : f, rung_packet, g);
    av_frame_free(&surface);

    if (rc < 0)
        run_fail(g->run, rc, "%s: encoding failed: %s", g->r->name, av_err2str(rc));
    return rc;
}

/* Scale src to the rung's size (a new reference when nothing changes). */
static AVFrame *rung_scale(rung_t *g, const AVFrame *src)
{
    AVFrame *dst;

    if (src->width == g->r->width && src->height == g->r->height &&
        src->format == AV_PIX_FMT_YUV420P)
        return av_frame_clone(src);
    dst = av_frame_alloc();
    if (!dst)
        return NULL;
    dst->width = g->r->width;
    dst->height = g->r->height;
    dst->format = AV_PIX_FMT_YUV420P;
    if (av_frame_get_buffer(dst, 0) < 0) {
        av_frame_free(&dst);
        return NULL;
    }
    g->sws = sws_getCachedContext(g->sws, src->width, src->height, src->format, dst->width,
                                  dst->height, AV_PIX_FMT_YUV420P, SWS_BICUBIC, NULL, NULL, NULL);
    if (!g->sws) {
        av_frame_free(&dst);
        return NULL;
    }
    sws_scale(g->sws, (const uint8_t *const *) src->data, src->linesize, 0, src->height, dst->data,
              dst->linesize);
    dst->pts = src->pts;
    dst->pict_type = src->pict_type;
    dst->pkt_duration = src->pkt_duration;
    dst->sample_aspect_ratio = (AVRational){ 1, 1 };
    return dst;
}

/* Scaler thread of a rung: its input -> its picture -> its encoder and the next rung. */
static void *rung_scale_main(void *arg)
{
    rung_t *g = arg;
    run_t *run = g->run;
    AVFrame *f;

    while ((f = fq_pop(&g->in))) {
        int64_t t0 = cb_clock_mono_us();
        AVFrame *s = rung_scale(g, f);

        av_frame_free(&f);
        if (!s) {
            run_fail(run, -ENOMEM, "%s: scaling failed", g->r->name);
            break;
        }
        g->r->scale_us += cb_clock_mono_us() - t0;
        if (g->next) {
            AVFrame *ref = av_frame_clone(s);

            if (!ref || fq_push(&g->next->in, ref)) {
                av_frame_free(&s);
                break;
            }
        }
        if (fq_push(&g->enc_in, s))
            break;
    }
    if (g->next)
        fq_close(&g->next->in);
    fq_close(&g->enc_in);
    return NULL;
}

/* Encoder thread of a rung: pictures -> libx264 -> CMAF segments. */
static void *rung_encode_main(void *arg)
{
    rung_t *g = arg;
    run_t *run = g->run;
    AVFrame *f;
    int64_t t0;

    while ((f = fq_pop(&g->enc_in))) {
        int rc;

        t0 = cb_clock_mono_us();
        rc = rung_encode(g, f);
        av_frame_free(&f);
        g->r->encode_us += cb_clock_mono_us() - t0;
        if (rc < 0)
            break;
        g->r->frames++;
    }
    if (!run_stopped(run)) {
        t0 = cb_clock_mono_us();
        if (rung_encode(g, NULL) == 0) {
            int rc;

            rc = seg_flush(run, g->r, &g->seg, g->max_end_90k, g->frame_dur_90k);
            if (rc)
                run_fail(run, rc, "%s: writing the last segment failed: %s", g->r->name,
                         strerror(-rc));
        }
        g->r->encode_us += cb_clock_mono_us() - t0;
    }
    return NULL;
}

/* libaom speed for an x264-style preset name: faster presets, higher cpu-used. */
static int av1_cpu_used(const char *preset)
{
    int rank = tc_preset_rank(preset);

    return rank >= 0 && rank <= 6 ? 10 - rank : 7; /* ultrafast 10 .. slow 4; others 7 */
}

/* Open encoder `name` for a rung into g->enc; hw: through transcode_hw. */
static int encoder_open(rung_t *g, const tc_profile_t *prof, double fps, const char *name, bool hw,
                        char *err, size_t errlen)
{
    bool hevc = prof->codec == TC_CODEC_HEVC, av1 = prof->codec == TC_CODEC_AV1;
    const AVCodec *codec = avcodec_find_encoder_by_name(name);
    const tc_rung_t *rg = &prof->rungs[g->index];
    AVCodecContext *c;
    int keyint = (int) (prof->gop_s * fps + 0.5);
    int rc = 0;

    if (!codec) {
        snprintf(err, errlen, "%s encoder not available in this FFmpeg", name);
        return -ENOSYS;
    }
    c = avcodec_alloc_context3(codec);
    if (!c)
        return -ENOMEM;
    c->width = g->r->width;
    c->height = g->r->height;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = TB_90K;
    c->framerate = av_d2q(fps, 1000000);
    c->sample_aspect_ratio = (AVRational){ 1, 1 };
    c->bit_rate = rg->bitrate_bps;
    c->rc_max_rate = rg->bitrate_bps * 11 / 10;
    c->rc_buffer_size = (int) CB_MIN(rg->bitrate_bps * 2, INT32_MAX);
    c->gop_size = keyint > 0 ? keyint : 1;
    c->keyint_min = c->gop_size;
    c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER | AV_CODEC_FLAG_CLOSED_GOP;
    c->thread_count = 0;
    if (hw) {
        err[0] = '\0';
        rc = tc_hw_prepare(&g->hw, g->run->p->hw, g->run->p->hw_device, c, rg, prof->preset, err,
                           errlen);
    } else if (av1) {
        /* realtime usage: no lookahead, so no hidden frames to reorder */
        av_opt_set(c->priv_data, "usage", "realtime", 0);
        av_opt_set_int(c->priv_data, "cpu-used", av1_cpu_used(prof->preset), 0);
        av_opt_set_int(c->priv_data, "row-mt", 1, 0);
    } else {
        if (rg->h264_level && !hevc)
            c->level = rg->h264_level;
        av_opt_set(c->priv_data, "preset", prof->preset, 0);
        av_opt_set(c->priv_data, "profile", rg->h264_profile, 0);
        av_opt_set_int(c->priv_data, "forced-idr", 1, 0);
        /* keyframes only where the cuts are (and every GOP): the same in every rung */
        av_opt_set_int(c, "sc_threshold", 0, 0);
        if (hevc)
            av_opt_set(c->priv_data, "x265-params",
                       "scenecut=0:open-gop=0:repeat-headers=0:log-level=error", 0);
    }
    if (rc == 0) {
        rc = avcodec_open2(c, codec, NULL);
        if (rc < 0)
            snprintf(err, errlen, "%s: opening %s failed: %s", g->r->name, name, av_err2str(rc));
    }
    if (rc < 0) {
        avcodec_free_context(&c);
        tc_hw_release(&g->hw);
        return rc;
    }
    g->enc = c;
    return 0;
}

/*
 * When a hardware encoder last failed to open, per kind: rungs go straight
 * to software for a while instead of failing (and logging) again for every
 * rung of every job; after HW_RETRY_MS the hardware is tried again (a card
 * whose sessions were all taken may have one free).
 */
#define HW_RETRY_MS 60000
static _Atomic int64_t hw_failed_ms[TC_HW_VAAPI + 1];

static bool hw_worth_trying(tc_hw_t hw)
{
    int64_t at = atomic_load(&hw_failed_ms[hw]);

    return at == 0 || cb_clock_mono_ms() - at >= HW_RETRY_MS;
}

static void hw_fallback(tc_hw_t hw, const char *name, const char *why)
{
    atomic_store(&hw_failed_ms[hw], cb_clock_mono_ms());
    cb_log_warn("%s cannot be used (%s); encoding in software, trying it again in %d s", name, why,
                HW_RETRY_MS / 1000);
}

static int rung_open(rung_t *g, const tc_profile_t *prof, double fps, char *err, size_t errlen)
{
    bool hevc = prof->codec == TC_CODEC_HEVC, av1 = prof->codec == TC_CODEC_AV1;
    tc_hw_t kind = g->run->p->hw;
    const char *hw = tc_hw_encoder_name(kind, prof->codec);
    AVCodecContext *c;
    int rc = -ENOSYS;

    if (hw && hw_worth_trying(kind)) {
        char why[256];
        rc = encoder_open(g, prof, fps, hw, true, why, sizeof(why));
        if (rc)
            hw_fallback(kind, hw, why);
    }
    if (rc)
        rc = encoder_open(g, prof, fps,
                          hevc  ? "libx265"
                          : av1 ? "libaom-av1"
                                : "libx264",
                          false, err, errlen);
    if (rc)
        return rc;
    c = g->enc;
    snprintf(g->r->encoder, sizeof(g->r->encoder), "%s", c->codec->name);
    if (av1 && c->extradata_size == 0)
        memset(&g->r->track, 0, sizeof(g->r->track)); /* described in rung_packet */
    else
        rc = (hevc  ? tc_cmaf_track_hevc
              : av1 ? tc_cmaf_track_av1
                    : tc_cmaf_track_h264)(&g->r->track, c->width, c->height, c->extradata,
                                          (size_t) c->extradata_size, err, errlen);
    if (rc)
        return rc;
    g->pkt = av_packet_alloc();
    if (!g->pkt)
        return -ENOMEM;
    g->frame_dur_90k = fps > 0 ? (int64_t) (90000.0 / fps + 0.5) : 3000;
    g->max_end_90k = INT64_MIN;
    segw_init(&g->seg);
    return 0;
}

static void rung_release(rung_t *g)
{
    avcodec_free_context(&g->enc);
    tc_hw_release(&g->hw);
    av_packet_free(&g->pkt);
    sws_freeContext(g->sws);
    g->sws = NULL;
    segw_release(&g->seg);
    fq_release(&g->in);
    fq_release(&g->enc_in);
}

/* ---- audio ---- */

typedef struct audio {
    run_t *run;
    tc_rendition_t *r;
    AVCodecContext *dec, *enc;
    AVPacket *pkt; /* encoder output, reused */
    SwrContext *swr;
    AVAudioFifo *fifo;
    AVFrame *frame;
    int64_t next_pts;  /* encoder input, in samples */
    int64_t first_pts; /* INT64_MIN until the first frame */
    segw_t seg;
    int64_t seg_90k;      /* target segment duration */
    int64_t end_90k;      /* the input's end when known, else INT64_MIN */
    int64_t next_cut_90k; /* the next cut on the 90 kHz clock */
    int64_t end;          /* end of the last packet, samples */
} audio_t;

static int64_t samples_to_90k(const audio_t *a, int64_t s)
{
    return av_rescale(s, 90000, a->enc->sample_rate);
}

static int audio_packet(void *arg, const AVPacket *pkt)
{
    audio_t *a = arg;
    run_t *run = a->run;
    int64_t t90 = samples_to_90k(a, pkt->pts);
    int rc;

    /* the encoder's priming frame lies before the input: drop it */
    if (pkt->pts < a->first_pts)
        return 0;
    if (a->seg.frag.n && t90 >= a->next_cut_90k) {
        rc = seg_flush(run, a->r, &a->seg, t90, pkt->pts - segw_last_dts(&a->seg));
        if (rc)
            return rc;
    }
    rc = seg_chunk_if_full(run, a->r, &a->seg, pkt->pts, a->enc->frame_size);
    if (rc)
        return rc;
    if (segw_empty(&a->seg)) {
        a->seg.start_90k = t90;
        /* half an AAC frame of slack, as video cuts allow half a picture */
        a->next_cut_90k = t90 + a->seg_90k - samples_to_90k(a, a->enc->frame_size / 2);
        if (a->end_90k != INT64_MIN && a->next_cut_90k > a->end_90k - a->seg_90k / 2)
            a->next_cut_90k = INT64_MAX;
    }
    rc = tc_cmaf_frag_add(&a->seg.frag, &a->r->track, pkt->data, (size_t) pkt->size, pkt->pts,
                          pkt->pts, true);
    a->end = pkt->pts + (pkt->duration > 0 ? pkt->duration : a->enc->frame_size);
    return rc;
}

static int audio_encode(audio_t *a, const AVFrame *f)
{
    return encode_frame(a->enc, a->pkt, f, audio_packet, a);
}

/* Encode whole frames from the FIFO (all of it, padded, when flushing). */
static int audio_drain_fifo(audio_t *a, bool flush)
{
    int fs = a->enc->frame_size;
    int rc;

    while (av_audio_fifo_size(a->fifo) >= fs || (flush && av_audio_fifo_size(a->fifo) > 0)) {
        int n = CB_MIN(fs, av_audio_fifo_size(a->fifo));
        AVFrame *f = av_frame_alloc();

        if (!f)
            return -ENOMEM;
        f->nb_samples = n;
        f->format = a->enc->sample_fmt;
        f->sample_rate = a->enc->sample_rate;
        rc = av_channel_layout_copy(&f->ch_layout, &a->enc->ch_layout);
        if (rc == 0)
            rc = av_frame_get_buffer(f, 0);
        if (rc == 0 && av_audio_fifo_read(a->fifo, (void **) f->data, n) != n)
            rc = AVERROR(EIO);
        if (rc == 0) {
            f->pts = a->next_pts;
            a->next_pts += n;
            rc = audio_encode(a, f);
        }
        av_frame_free(&f);
        if (rc)
            return rc;
    }
    return 0;
}

/* A decoded audio frame: convert and encode. pts90 is on the output clock. */
static int audio_feed(audio_t *a, const AVFrame *in, int64_t pts90)
{
    uint8_t **conv = NULL;
    int max_out, n, rc;

    if (a->first_pts == INT64_MIN) {
        a->first_pts = av_rescale(pts90, a->enc->sample_rate, 90000);
        a->next_pts = a->first_pts;
    }
    max_out = swr_get_out_samples(a->swr, in->nb_samples);
    if (max_out <= 0)
        return 0;
    rc = av_samples_alloc_array_and_samples(&conv, NULL, a->enc->ch_layout.nb_channels, max_out,
                                            a->enc->sample_fmt, 0);
    if (rc < 0)
        return rc;
    n = swr_convert(a->swr, conv, max_out, (const uint8_t **) in->extended_data, in->nb_samples);
    if (n > 0 && av_audio_fifo_write(a->fifo, (void **) conv, n) != n)
        n = AVERROR(ENOMEM);
    av_freep(&conv[0]);
    av_freep(&conv);
    if (n < 0)
        return n;
    return audio_drain_fifo(a, false);
}

static int audio_open(audio_t *a, const AVStream *st, int64_t bitrate, int64_t seg_90k,
                      int64_t end_90k, char *err, size_t errlen)
{
    const AVCodec *dcodec = avcodec_find_decoder(st->codecpar->codec_id);
    const AVCodec *ecodec = avcodec_find_encoder_by_name("aac");
    static const int rates[] = { 96000, 88200, 64000, 48000, 44100, 32000,
                                 24000, 22050, 16000, 12000, 11025, 8000 };
    AVChannelLayout out_layout;
    int rate = 48000, rc;
    size_t i;

    if (!dcodec) {
        snprintf(err, errlen, "audio codec %s: no decoder",
                 avcodec_get_name(st->codecpar->codec_id));
        return -EINVAL;
    }
    if (!ecodec) {
        snprintf(err, errlen, "aac encoder not available in this FFmpeg");
        return -ENOSYS;
    }
    a->dec = avcodec_alloc_context3(dcodec);
    if (!a->dec)
        return -ENOMEM;
    rc = avcodec_parameters_to_context(a->dec, st->codecpar);
    if (rc == 0)
        rc = avcodec_open2(a->dec, dcodec, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "audio decoder %s: %s", dcodec->name, av_err2str(rc));
        return -EINVAL;
    }
    for (i = 0; i < CB_ARRAY_LEN(rates); i++) {
        if (rates[i] == a->dec->sample_rate)
            rate = rates[i];
    }
    if (a->dec->ch_layout.nb_channels <= 0) {
        snprintf(err, errlen, "audio: no channels");
        return -EINVAL;
    }
    av_channel_layout_default(&out_layout, CB_MIN(a->dec->ch_layout.nb_channels, 2));
    a->enc = avcodec_alloc_context3(ecodec);
    if (!a->enc)
        return -ENOMEM;
    a->enc->sample_rate = rate;
    a->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
    av_channel_layout_copy(&a->enc->ch_layout, &out_layout);
    a->enc->bit_rate = bitrate;
    a->enc->time_base = (AVRational){ 1, rate };
    a->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    rc = avcodec_open2(a->enc, ecodec, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "opening the aac encoder failed: %s", av_err2str(rc));
        return rc;
    }
    rc = swr_alloc_set_opts2(&a->swr, &a->enc->ch_layout, a->enc->sample_fmt, rate,
                             &a->dec->ch_layout, a->dec->sample_fmt, a->dec->sample_rate, 0, NULL);
    if (rc == 0)
        rc = swr_init(a->swr);
    if (rc < 0) {
        snprintf(err, errlen, "audio resampler: %s", av_err2str(rc));
        return -EINVAL;
    }
    a->fifo = av_audio_fifo_alloc(a->enc->sample_fmt, a->enc->ch_layout.nb_channels,
                                  a->enc->frame_size * 4);
    a->frame = av_frame_alloc();
    a->pkt = av_packet_alloc();
    if (!a->fifo || !a->frame || !a->pkt)
        return -ENOMEM;
    a->first_pts = INT64_MIN;
    a->seg_90k = seg_90k;
    a->end_90k = end_90k;
    rc = tc_cmaf_track_aac(&a->r->track, rate, a->enc->ch_layout.nb_channels, a->enc->extradata,
                           (size_t) a->enc->extradata_size, bitrate, err, errlen);
    if (rc)
        return rc;
    snprintf(a->r->encoder, sizeof(a->r->encoder), "%s", a->enc->codec->name);
    segw_init(&a->seg);
    return 0;
}

static void audio_release(audio_t *a)
{
    avcodec_free_context(&a->dec);
    avcodec_free_context(&a->enc);
    swr_free(&a->swr);
    if (a->fifo)
        av_audio_fifo_free(a->fifo);
    av_frame_free(&a->frame);
    av_packet_free(&a->pkt);
    segw_release(&a->seg);
}

/* ---- the run ---- */

typedef struct demux {
    AVFormatContext *fmt;
    int vidx, aidx;
    AVCodecContext *vdec;
    int64_t offset_90k; /* added to the input's timestamps */
    int64_t last_cut_90k;
    int64_t last_t_90k; /* the latest frame passed on */
    int64_t seg_90k, end_90k;
    double fps;
} demux_t;

/* Input timestamp (stream time base) -> output clock. */
static int64_t to_out(const demux_t *d, const AVStream *st, int64_t ts)
{
    return av_rescale_q(ts, st->time_base, TB_90K) + d->offset_90k;
}

static int video_frame(run_t *run, demux_t *d, rung_t *top, AVFrame *f)
{
    const AVStream *st = d->fmt->streams[d->vidx];
    int64_t ts = f->best_effort_timestamp != AV_NOPTS_VALUE ? f->best_effort_timestamp : f->pts;
    int64_t t, half = (int64_t) (45000.0 / (d->fps > 0 ? d->fps : 30));
    AVFrame *ref;
    bool cut;

    if (ts == AV_NOPTS_VALUE)
        return 0; /* a frame without a time cannot be placed */
    t = to_out(d, st, ts);
    if (d->last_cut_90k == INT64_MIN)
        cut = true;
    else if (t <= d->last_t_90k)
        return 0; /* out of order or duplicate: the encoders need rising times */
    else
        cut = t >= d->last_cut_90k + d->seg_90k - half &&
              (d->end_90k == INT64_MIN || t <= d->end_90k - d->seg_90k / 2);
    ref = av_frame_clone(f);
    if (!ref)
        return -ENOMEM;
    ref->pts = t;
    ref->pkt_duration = av_rescale_q(f->pkt_duration, st->time_base, TB_90K);
    ref->pict_type = cut ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    if (cut) {
        cut_add(run, t);
        d->last_cut_90k = t;
    }
    d->last_t_90k = t;
    run->res->frames_decoded++;
    if (run->res->end_90k < t + 2 * half)
        run->res->end_90k = t + 2 * half;
    return fq_push(&top->in, ref);
}

static int decode_video(run_t *run, demux_t *d, rung_t *top, const AVPacket *pkt, AVFrame *f)
{
    int rc = avcodec_send_packet(d->vdec, pkt);

    if (rc < 0 && rc != AVERROR_EOF) {
        /* one bad packet is not the end: the decoder resyncs at the next keyframe */
        if (pkt && rc == AVERROR_INVALIDDATA)
            return 0;
        run_fail(run, -EINVAL, "video decoder %s: %s", d->vdec->codec->name, av_err2str(rc));
        return -EINVAL;
    }
    for (;;) {
        rc = avcodec_receive_frame(d->vdec, f);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0) {
            if (rc == AVERROR_INVALIDDATA)
                continue;
            run_fail(run, -EINVAL, "video decoder %s: %s", d->vdec->codec->name, av_err2str(rc));
            return -EINVAL;
        }
        rc = video_frame(run, d, top, f);
        av_frame_unref(f);
        if (rc)
            return rc;
    }
}

static int decode_audio(run_t *run, demux_t *d, audio_t *a, const AVPacket *pkt)
{
    const AVStream *st = d->fmt->streams[d->aidx];
    int rc = avcodec_send_packet(a->dec, pkt);

    if (rc < 0 && rc != AVERROR_EOF)
        return 0; /* a damaged audio packet: skip it */
    for (;;) {
        int64_t ts;

        rc = avcodec_receive_frame(a->dec, a->frame);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF)
            return 0;
        if (rc < 0)
            continue;
        ts = a->frame->best_effort_timestamp != AV_NOPTS_VALUE ? a->frame->best_effort_timestamp
                                                               : a->frame->pts;
        if (ts != AV_NOPTS_VALUE || a->first_pts != INT64_MIN) {
            rc = audio_feed(a, a->frame, ts != AV_NOPTS_VALUE ? to_out(d, st, ts) : 0);
            if (rc < 0) {
                av_frame_unref(a->frame);
                run_fail(run, rc, "audio: encoding failed: %s", av_err2str(rc));
                return rc;
            }
        }
        av_frame_unref(a->frame);
    }
}

static int open_input(run_t *run, demux_t *d, char *err, size_t errlen)
{
    const tc_params_t *p = run->p;
    int rc;

    rc = avformat_open_input(&d->fmt, p->input, NULL, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "open('%s') failed: %s", p->input, av_err2str(rc));
        return rc == AVERROR(ENOENT) ? -ENOENT : -EINVAL;
    }
    rc = avformat_find_stream_info(d->fmt, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "'%s': no stream information: %s", p->input, av_err2str(rc));
        return -EINVAL;
    }
    d->vidx = av_find_best_stream(d->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    d->aidx = av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
    if (d->vidx >= 0 && d->fmt->streams[d->vidx]->disposition & AV_DISPOSITION_ATTACHED_PIC)
        d->vidx = -1;
    if (d->vidx < 0 && d->aidx < 0) {
        snprintf(err, errlen, "'%s': no audio or video stream", p->input);
        return -EINVAL;
    }
    return 0;
}

static int open_video(run_t *run, demux_t *d, char *err, size_t errlen)
{
    const tc_params_t *p = run->p;
    AVStream *st = d->fmt->streams[d->vidx];
    const AVCodec *codec = avcodec_find_decoder(st->codecpar->codec_id);
    int maxw = p->max_width ? p->max_width : 8192, maxh = p->max_height ? p->max_height : 8192;
    AVRational fr;
    int rc;

    if (!codec) {
        snprintf(err, errlen, "video codec %s: no decoder",
                 avcodec_get_name(st->codecpar->codec_id));
        return -EINVAL;
    }
    if (st->codecpar->width <= 0 || st->codecpar->height <= 0 || st->codecpar->width > maxw ||
        st->codecpar->height > maxh) {
        snprintf(err, errlen, "video size %dx%d outside 1x1..%dx%d", st->codecpar->width,
                 st->codecpar->height, maxw, maxh);
        return -EINVAL;
    }
    d->vdec = avcodec_alloc_context3(codec);
    if (!d->vdec)
        return -ENOMEM;
    rc = avcodec_parameters_to_context(d->vdec, st->codecpar);
    if (rc < 0)
        return rc;
    d->vdec->thread_count = 0;
    d->vdec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    d->vdec->pkt_timebase = st->time_base;
    rc = avcodec_open2(d->vdec, codec, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "video decoder %s: %s", codec->name, av_err2str(rc));
        return -EINVAL;
    }
    fr = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    d->fps = fr.num > 0 && fr.den > 0 ? av_q2d(fr) : 30.0;
    if (d->fps > 240 || d->fps < 1)
        d->fps = 30.0;
    return 0;
}

int tc_transcode(const tc_params_t *p, const tc_sink_t *sink, tc_result_t *res, char *err,
                 size_t errlen)
{
    run_t run = { .p = p, .sink = sink, .res = res };
    demux_t d = { .vidx = -1, .aidx = -1, .last_cut_90k = INT64_MIN, .last_t_90k = INT64_MIN };
    rung_t rungs[TC_MAX_RUNGS];
    audio_t audio = { .run = &run };
    tc_profile_t prof = p->profile;
    AVPacket *pkt = NULL;
    AVFrame *frame = NULL;
    size_t nrungs = 0, i;
    int64_t start_ts = AV_NOPTS_VALUE, t_start = cb_clock_mono_us(), next_progress = 0;
    bool have_audio = false;
    int rc;

    memset(res, 0, sizeof(*res));
    memset(rungs, 0, sizeof(rungs));
    res->start_90k = res->end_90k = INT64_MIN;
    pthread_mutex_init(&run.mu, NULL);
    atomic_init(&run.stop, false);
    d.seg_90k = (int64_t) (prof.segment_s * 90000);
    if (d.seg_90k < 9000)
        d.seg_90k = 9000;
    d.end_90k = p->timeline && p->duration_90k > 0 ? p->start_pts_90k + p->duration_90k : INT64_MIN;

    rc = open_input(&run, &d, err, errlen);
    if (rc)
        goto out;
    if (d.vidx >= 0) {
        AVStream *st = d.fmt->streams[d.vidx];

        rc = open_video(&run, &d, err, errlen);
        if (rc)
            goto out;
        snprintf(res->src_video, sizeof(res->src_video), "%s", d.vdec->codec->name);
        res->src_width = st->codecpar->width;
        res->src_height = st->codecpar->height;
        res->src_fps = d.fps;
        start_ts = st->start_time;
        if (start_ts != AV_NOPTS_VALUE)
            start_ts = av_rescale_q(start_ts, st->time_base, TB_90K);
        tc_ladder_fit(&prof, st->codecpar->width, st->codecpar->height,
                      st->codecpar->sample_aspect_ratio.num, st->codecpar->sample_aspect_ratio.den);
        nrungs = prof.nrungs;
    }
    if (d.aidx >= 0 && prof.audio_bitrate_bps > 0) {
        AVStream *st = d.fmt->streams[d.aidx];

        have_audio = true;
        if (start_ts == AV_NOPTS_VALUE && st->start_time != AV_NOPTS_VALUE)
            start_ts = av_rescale_q(st->start_time, st->time_base, TB_90K);
    }
    if (!nrungs && !have_audio) {
        snprintf(err, errlen, "'%s': no video, and audio is off in profile %s", p->input,
                 prof.name);
        rc = -EINVAL;
        goto out;
    }
    if (start_ts == AV_NOPTS_VALUE)
        start_ts = 0;
    /* a file's own times are kept, but never below zero (tfdt is unsigned) */
    d.offset_90k = p->timeline ? p->start_pts_90k - start_ts : start_ts < 0 ? -start_ts : 0;
    res->start_90k = start_ts + d.offset_90k;

    /* renditions: video rungs largest first, then audio */
    for (i = 0; i < nrungs; i++) {
        tc_rendition_t *r = &res->renditions[res->n++];
        rung_t *g = &rungs[i];

        snprintf(r->name, sizeof(r->name), "%s", prof.rungs[i].name);
        r->video = true;
        r->width = prof.rungs[i].width;
        r->height = prof.rungs[i].height;
        r->fps = d.fps;
        r->target_bitrate_bps = prof.rungs[i].bitrate_bps;
        g->run = &run;
        g->index = i;
        g->r = r;
        g->next = i + 1 < nrungs ? &rungs[i + 1] : NULL;
        rc = fq_init(&g->in, p->queue_frames ? p->queue_frames : 4, &run);
        if (rc == 0)
            rc = fq_init(&g->enc_in, p->queue_frames ? p->queue_frames : 4, &run);
        if (rc == 0)
            rc = rung_open(g, &prof, d.fps, err, errlen);
        if (rc)
            goto out;
    }
    if (have_audio) {
        tc_rendition_t *r = &res->renditions[res->n++];

        snprintf(r->name, sizeof(r->name), "audio");
        r->target_bitrate_bps = prof.audio_bitrate_bps;
        audio.r = r;
        rc = audio_open(&audio, d.fmt->streams[d.aidx], prof.audio_bitrate_bps, d.seg_90k,
                        d.end_90k, err, errlen);
        if (rc)
            goto out;
    }
    for (i = 0; i < res->n; i++) {
        tc_rendition_t *r = &res->renditions[i];

        if (r->track.config_len == 0)
            continue; /* AV1: described by its first packet, written from its thread */
        rc = emit_init(&run, r);
        if (rc) {
            snprintf(err, errlen, "%s: writing the init segment failed: %s", r->name,
                     strerror(-rc));
            goto out;
        }
    }
    for (i = 0; i < nrungs; i++) {
        if (pthread_create(&rungs[i].encoder, NULL, rung_encode_main, &rungs[i]) == 0)
            rungs[i].encoder_started = true;
        if (rungs[i].encoder_started &&
            pthread_create(&rungs[i].scaler, NULL, rung_scale_main, &rungs[i]) == 0)
            rungs[i].scaler_started = true;
        if (!rungs[i].scaler_started) {
            run_fail(&run, -EAGAIN, "cannot start the threads of rung %s", rungs[i].r->name);
            break;
        }
    }

    pkt = av_packet_alloc();
    frame = av_frame_alloc();
    if (!pkt || !frame) {
        run_fail(&run, -ENOMEM, "out of memory");
        goto join;
    }
    while (!run_stopped(&run)) {
        rc = av_read_frame(d.fmt, pkt);
        if (rc == AVERROR_EOF)
            break;
        if (rc < 0) {
            run_fail(&run, -EINVAL, "reading '%s' failed: %s", p->input, av_err2str(rc));
            break;
        }
        if (pkt->stream_index == d.vidx && nrungs)
            rc = decode_video(&run, &d, &rungs[0], pkt, frame);
        else if (pkt->stream_index == d.aidx && have_audio)
            rc = decode_audio(&run, &d, &audio, pkt);
        else
            rc = 0;
        av_packet_unref(pkt);
        if (rc)
            break;
        if (p->progress && cb_clock_mono_us() >= next_progress && res->end_90k != INT64_MIN) {
            double done = (double) (res->end_90k - res->start_90k) / 90000.0;
            double el = (double) (cb_clock_mono_us() - t_start) / 1e6;
            double total = d.fmt->duration > 0 ? (double) d.fmt->duration / AV_TIME_BASE : 0;

            p->progress(p->progress_arg, done, total, el > 0 ? res->frames_decoded / el : 0);
            next_progress = cb_clock_mono_us() + 500000;
        }
    }
    if (!run_stopped(&run)) {
        if (nrungs)
            decode_video(&run, &d, &rungs[0], NULL, frame);
        if (have_audio && decode_audio(&run, &d, &audio, NULL) == 0 && !run_stopped(&run)) {
            rc = audio_drain_fifo(&audio, true);
            if (rc == 0)
                rc = audio_encode(&audio, NULL);
            if (rc == 0 && audio.seg.frag.n)
                rc = seg_flush(&run, audio.r, &audio.seg, samples_to_90k(&audio, audio.end),
                               audio.end - segw_last_dts(&audio.seg));
            if (rc)
                run_fail(&run, rc, "audio: finishing failed: %s", av_err2str(rc));
        }
    }
    if (nrungs)
        fq_close(&rungs[0].in);
join:
    for (i = 0; i < nrungs; i++) {
        if (rungs[i].scaler_started)
            pthread_join(rungs[i].scaler, NULL);
        if (rungs[i].encoder_started)
            pthread_join(rungs[i].encoder, NULL);
    }
    rc = run.rc;
    if (rc)
        snprintf(err, errlen, "%s", run.err);
    else if (p->cancel && atomic_load(p->cancel)) {
        rc = -ECANCELED;
        snprintf(err, errlen, "cancelled");
    } else if (res->frames_decoded == 0 && nrungs) {
        rc = -EINVAL;
        snprintf(err, errlen, "'%s': no video frame could be decoded", p->input);
    }
    if (have_audio && res->end_90k == INT64_MIN && audio.enc)
        res->end_90k = samples_to_90k(&audio, audio.end);
out:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    for (i = 0; i < TC_MAX_RUNGS; i++)
        rung_release(&rungs[i]);
    audio_release(&audio);
    avcodec_free_context(&d.vdec);
    avformat_close_input(&d.fmt);
    pthread_mutex_destroy(&run.mu);
    return rc;
}

/*
 * transcode_hw.c - NVENC and VAAPI encoders for the rungs (see transcode_hw.h).
 */
#include "transcode_hw.h"

#include <errno.h>
#include <libavutil/hwcontext.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <string.h>

#include "defs.h"

#define VAAPI_POOL_SURFACES 8 /* the encoder's references and lookahead, and one in flight */

const char *tc_hw_encoder_name(tc_hw_t hw, tc_codec_t codec)
{
    static const char *const names[][2] = {
        [TC_HW_NVENC] = { "h264_nvenc", "hevc_nvenc" },
        [TC_HW_VAAPI] = { "h264_vaapi", "hevc_vaapi" },
    };

    if (hw == TC_HW_NONE || hw > TC_HW_VAAPI || codec > TC_CODEC_HEVC)
        return NULL; /* no AV1 hardware encoder in this FFmpeg */
    return names[hw][codec];
}

/* NVENC's p1 (fastest) .. p7 (slowest) for an x264-style preset name. */
static const char *nvenc_preset(const char *preset)
{
    static const char *const nv[] = { "p1", "p2", "p3", "p4", "p4", "p5", "p6", "p7" };
    int rank = tc_preset_rank(preset); /* ultrafast .. slower */

    return rank >= 0 && rank < (int) CB_ARRAY_LEN(nv) ? nv[rank] : "p4";
}

static int prepare_vaapi(tc_hw_enc_t *h, const char *device, AVCodecContext *c, char *err,
                         size_t errlen)
{
    AVHWFramesContext *fc;
    int rc;

    rc = av_hwdevice_ctx_create(&h->device, AV_HWDEVICE_TYPE_VAAPI, device, NULL, 0);
    if (rc < 0) {
        snprintf(err, errlen, "VAAPI device '%s': %s", device ? device : "(default)",
                 av_err2str(rc));
        return rc;
    }
    h->frames = av_hwframe_ctx_alloc(h->device);
    if (!h->frames)
        return AVERROR(ENOMEM);
    fc = (AVHWFramesContext *) h->frames->data;
    fc->format = AV_PIX_FMT_VAAPI;
    fc->sw_format = AV_PIX_FMT_NV12;
    fc->width = c->width;
    fc->height = c->height;
    fc->initial_pool_size = VAAPI_POOL_SURFACES;
    rc = av_hwframe_ctx_init(h->frames);
    if (rc < 0) {
        snprintf(err, errlen, "VAAPI surfaces of %dx%d: %s", c->width, c->height, av_err2str(rc));
        return rc;
    }
    c->pix_fmt = AV_PIX_FMT_VAAPI;
    c->hw_frames_ctx = av_buffer_ref(h->frames);
    if (!c->hw_frames_ctx)
        return AVERROR(ENOMEM);
    h->nv12 = av_frame_alloc();
    h->to_nv12 = sws_getContext(c->width, c->height, AV_PIX_FMT_YUV420P, c->width, c->height,
                                AV_PIX_FMT_NV12, SWS_POINT, NULL, NULL, NULL);
    if (!h->nv12 || !h->to_nv12)
        return AVERROR(ENOMEM);
    h->nv12->format = AV_PIX_FMT_NV12;
    h->nv12->width = c->width;
    h->nv12->height = c->height;
    rc = av_frame_get_buffer(h->nv12, 0);
    if (rc < 0)
        return rc;
    /* B-frames would need a reorder delay the surface pool is not sized for */
    c->max_b_frames = 0;
    av_opt_set(c->priv_data, "rc_mode", "VBR", 0);
    return 0;
}

int tc_hw_prepare(tc_hw_enc_t *h, tc_hw_t hw, const char *device, AVCodecContext *c,
                  const tc_rung_t *rung, const char *preset, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->hw = hw;
    if (hw == TC_HW_VAAPI) {
        int rc = prepare_vaapi(h, device && *device ? device : NULL, c, err, errlen);
        if (rc < 0) {
            if (!*err)
                snprintf(err, errlen, "VAAPI: %s", av_err2str(rc));
            tc_hw_release(h);
        }
        return rc;
    }
    if (hw == TC_HW_NVENC) {
        av_opt_set(c->priv_data, "preset", nvenc_preset(preset), 0);
        av_opt_set(c->priv_data, "rc", "vbr", 0);
        av_opt_set(c->priv_data, "profile", rung->h264_profile, 0);
        av_opt_set_int(c->priv_data, "forced-idr", 1, 0);
        av_opt_set_int(c->priv_data, "no-scenecut", 1, 0);
        av_opt_set_int(c->priv_data, "strict_gop", 1, 0);
        return 0;
    }
    snprintf(err, errlen, "no hardware encoder configured");
    return -EINVAL;
}

int tc_hw_frame(tc_hw_enc_t *h, const AVFrame *in, AVFrame **out)
{
    AVFrame *s;
    int rc;

    *out = NULL;
    if (!h->frames || !in)
        return 0;
    rc = av_frame_make_writable(h->nv12);
    if (rc < 0)
        return rc;
    sws_scale(h->to_nv12, (const uint8_t *const *) in->data, in->linesize, 0, in->height,
              h->nv12->data, h->nv12->linesize);
    s = av_frame_alloc();
    if (!s)
        return AVERROR(ENOMEM);
    rc = av_hwframe_get_buffer(h->frames, s, 0);
    if (rc == 0)
        rc = av_hwframe_transfer_data(s, h->nv12, 0);
    if (rc == 0)
        rc = av_frame_copy_props(s, in); /* pts and the forced picture type */
    if (rc < 0) {
        av_frame_free(&s);
        return rc;
    }
    *out = s;
    return 0;
}

void tc_hw_release(tc_hw_enc_t *h)
{
    sws_freeContext(h->to_nv12);
    h->to_nv12 = NULL;
    av_frame_free(&h->nv12);
    av_buffer_unref(&h->frames);
    av_buffer_unref(&h->device);
    h->hw = TC_HW_NONE;
}

/*
 * transcode_hw.h - hardware video encoders (NVENC, VAAPI) for the rungs,
 * with the software encoder as the fallback.
 *
 * The pipeline asks for the hardware encoder of a rung's codec when the
 * worker is configured for one; when it cannot be had (no device, no
 * driver, no session left on the card, a codec the card lacks) the rung is
 * encoded in software and the run goes on. NVENC takes the scaler's
 * yuv420p pictures as they are; VAAPI needs them converted to NV12 and
 * uploaded into a surface of the device's frame pool.
 *
 * Forced keyframes, closed GOPs and no scene-cut keyframes hold for the
 * hardware encoders as for libx264: cuts are forced IDRs in every rung.
 *
 * Thread safety: one tc_hw_enc_t belongs to one rung's encoder thread.
 */
#ifndef TRANSCODE_HW_H
#define TRANSCODE_HW_H

#include <libavcodec/avcodec.h>
#include <stddef.h>

#include "transcode_ladder.h"

typedef enum tc_hw {
    TC_HW_NONE = 0,
    TC_HW_NVENC,
    TC_HW_VAAPI,
} tc_hw_t;

/* "none|nvenc|vaapi", in enum order (a config ENUM's choices). */
#define TC_HW_CHOICES "none|nvenc|vaapi"

typedef struct tc_hw_enc {
    tc_hw_t hw;
    AVBufferRef *device; /* VAAPI */
    AVBufferRef *frames; /* VAAPI surface pool */
    struct SwsContext *to_nv12;
    AVFrame *nv12;
} tc_hw_enc_t;

/* The FFmpeg encoder for codec on hw ("h264_nvenc"), or NULL when there is none. */
const char *tc_hw_encoder_name(tc_hw_t hw, tc_codec_t codec);

/*
 * Make c (allocated for the hardware encoder, generic fields set) ready to
 * open: device and surface pool for VAAPI, the encoder's own options for
 * both. device: the VAAPI render node (NULL: the default one). Returns 0,
 * or a negative errno with a reason in err.
 */
int tc_hw_prepare(tc_hw_enc_t *h, tc_hw_t hw, const char *device, AVCodecContext *c,
                  const tc_rung_t *rung, const char *preset, char *err, size_t errlen);

/*
 * The frame to give the encoder for a scaled picture: in itself (NVENC), or
 * a surface with the picture uploaded (VAAPI; *out is then owned by the
 * caller). Returns 0 or a negative AVERROR.
 */
int tc_hw_frame(tc_hw_enc_t *h, const AVFrame *in, AVFrame **out);

void tc_hw_release(tc_hw_enc_t *h);

#endif /* TRANSCODE_HW_H */

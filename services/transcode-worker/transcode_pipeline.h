/*
 * transcode_pipeline.h - decode a source once, encode every rung of a
 * ladder in parallel, cut CMAF segments at the same times in every rung.
 *
 * One call transcodes one input (a live source segment or a whole file).
 * Threads: the caller's thread demuxes, decodes and encodes the audio; each
 * video rung has a scaler thread, which scales from the rung above it (a
 * cascade: 1080p -> 720p -> 480p -> 360p, each from the nearest larger
 * picture), and an encoder thread. Rungs are connected by bounded frame queues, so
 * memory stays bounded whatever the input's length and a slow rung holds
 * the decoder back instead of queueing without limit.
 *
 * Segments: a cut is decided once, on the decoded source frame, and the
 * frame is forced to an IDR in every rung; each rung starts a new segment at
 * exactly those presentation times. Cuts fall every profile.segment_s from
 * the first frame; when the input's end is known (a job), a tail shorter
 * than half a segment joins the segment before it.
 *
 * Timestamps: with a timeline (a job), the input's first video frame is
 * placed at start_pts_90k and everything else keeps its distance from it,
 * so outputs of consecutive jobs join; without one, the input's own
 * timestamps are kept.
 */
#ifndef TRANSCODE_PIPELINE_H
#define TRANSCODE_PIPELINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transcode_cmaf.h"
#include "transcode_hw.h"
#include "transcode_ladder.h"

#define TC_MAX_RENDITIONS (TC_MAX_RUNGS + 1)

typedef struct tc_rendition {
    char name[TC_NAME_MAX]; /* "720p", "audio" */
    char encoder[24];       /* the FFmpeg encoder that ran: "libx264", "h264_nvenc" */
    bool video;
    int width, height;
    double fps;
    int64_t target_bitrate_bps;
    tc_cmaf_track_t track; /* codecs string, sample entry */
    /* totals, filled as segments are written */
    uint64_t bytes;       /* media segment bytes */
    int64_t duration_90k; /* media time written */
    uint32_t segments;
    int64_t scale_us;  /* time its scaler thread spent scaling */
    int64_t encode_us; /* time its encoder thread spent in the encoder */
    int64_t frames;
} tc_rendition_t;

/* One CMAF chunk (moof + mdat) of a segment: an LL-HLS partial segment. */
typedef struct tc_part {
    uint32_t offset, len; /* its bytes in the segment's */
    int64_t duration_90k;
    bool independent; /* starts with a sync sample */
} tc_part_t;

#define TC_MAX_PARTS 64

typedef struct tc_segment {
    uint32_t seq;      /* 1, 2, ... within this run */
    int64_t start_90k; /* presentation time of the first sample */
    int64_t duration_90k;
    const uint8_t *data; /* styp, then moof + mdat for each chunk (borrowed for the call) */
    size_t len;
    const tc_part_t *parts; /* the chunks, when the run cuts them (part_90k); else NULL */
    size_t nparts;
} tc_segment_t;

/*
 * Where the output goes. init() once per rendition before its segments,
 * segment() for each media segment in time order. Video renditions call
 * from their own threads, so calls for different renditions run at the same
 * time; a non-zero return stops the run with that error.
 */
typedef struct tc_sink {
    int (*init)(void *arg, const tc_rendition_t *r, const uint8_t *data, size_t len);
    int (*segment)(void *arg, const tc_rendition_t *r, const tc_segment_t *s);
    void *arg;
} tc_sink_t;

typedef struct tc_params {
    const char *input;    /* file path or URL libavformat opens */
    tc_profile_t profile; /* not yet fitted: the pipeline fits it to the source */
    bool timeline;        /* place the input at start_pts_90k (a job) */
    int64_t start_pts_90k;
    int64_t duration_90k;      /* the input's expected length (0: unknown) */
    int max_width, max_height; /* refuse larger sources (0: 8192) */
    size_t queue_frames;       /* frames between rungs (0: 4) */
    int64_t part_90k;          /* low latency: write each segment as CMAF chunks of at most
                                * this long (the partial segments); 0: one chunk */
    atomic_bool *cancel;       /* set by another thread to abandon the run (may be NULL) */
    tc_hw_t hw;                /* hardware encoder to try first (software when it fails) */
    const char *hw_device;     /* VAAPI render node (NULL: the default) */
    /* progress: media seconds done, total (0: unknown), decode fps; ~2 per second */
    void (*progress)(void *arg, double done_s, double total_s, double fps);
    void *progress_arg;
} tc_params_t;

typedef struct tc_result {
    tc_rendition_t renditions[TC_MAX_RENDITIONS]; /* video rungs first, then audio */
    size_t n;
    int src_width, src_height;
    double src_fps;
    char src_video[16], src_audio[16]; /* decoder names, empty when absent */
    int64_t start_90k, end_90k;        /* the output's time range */
    int64_t frames_decoded;
} tc_result_t;

/*
 * Transcode. Returns 0, or a negative errno with a reason in err: -EINVAL
 * for input that cannot be transcoded (corrupt, truncated, unsupported,
 * too large: err carries the decoder's words), -ECANCELED when cancelled,
 * another errno for a sink or system failure. res is filled either way with
 * what was done. Blocking; any thread.
 */
int tc_transcode(const tc_params_t *p, const tc_sink_t *sink, tc_result_t *res, char *err,
                 size_t errlen);

#endif /* TRANSCODE_PIPELINE_H */

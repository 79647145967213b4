/*
 * transcode_ladder.h - ABR ladder profiles: which renditions a job makes.
 *
 * A profile is a named list of video rungs (short side, bitrate, H.264
 * profile and level) plus the audio settings, the GOP and the output segment
 * duration. Built-in profiles live in a const table; `--ladder` builds an
 * ad-hoc one from "1280x720@3000k,854x480@1400k".
 *
 * tc_ladder_fit() turns a profile into the rungs for one source: it never
 * upscales (rungs above the source are dropped, and a source smaller than
 * every rung gets one rung at its own size), keeps the source's display
 * aspect ratio with square pixels and rounds sizes to even numbers. A rung's
 * size is given by its short side, so a portrait 1080x1920 source gets a
 * 720x1280 "720p" rung.
 *
 * Pure functions; any thread.
 */
#ifndef TC_LADDER_H
#define TC_LADDER_H

#include <stddef.h>
#include <stdint.h>

#define TC_MAX_RUNGS 8
#define TC_NAME_MAX  32

typedef enum tc_codec {
    TC_CODEC_H264 = 0, /* libx264 */
    TC_CODEC_HEVC,     /* libx265 */
    TC_CODEC_AV1,      /* libaom-av1 (realtime usage) */
} tc_codec_t;

typedef struct tc_rung {
    char name[TC_NAME_MAX]; /* "720p" */
    int short_side;         /* pixels: the height of a landscape output */
    int width, height;      /* set by tc_ladder_fit() */
    int64_t bitrate_bps;
    const char *h264_profile; /* "high", "main", "baseline" (HEVC rungs: "main") */
    int h264_level;           /* 31 for 3.1; 0: let the encoder choose (always for HEVC) */
} tc_rung_t;

typedef struct tc_profile {
    char name[TC_NAME_MAX];
    tc_codec_t codec;
    tc_rung_t rungs[TC_MAX_RUNGS]; /* largest first */
    size_t nrungs;
    int64_t audio_bitrate_bps; /* AAC-LC; 0: no audio rendition */
    double gop_s;              /* keyframe interval */
    double segment_s;          /* output segment duration */
    char preset[16];           /* x264 preset */
} tc_profile_t;

/* The built-in profile called name, copied into *out; -ENOENT if unknown. */
int tc_profile_get(const char *name, tc_profile_t *out);

/*
 * Where an x264 preset name stands in x264's speed order: ultrafast 0,
 * superfast 1, ... medium 5, slow 6, slower 7, veryslow 8, placebo 9; -1
 * for a name that is not one. Other encoders map their own speed knobs
 * from it, so one preset setting means the same trade-off everywhere.
 */
int tc_preset_rank(const char *preset);

/* Names of the built-in profiles, NULL-terminated (for --help and errors). */
extern const char *const tc_profile_names[];

/*
 * Parse "WxH@BITRATE[k|M],..." (e.g. "1280x720@3000k,854x480@1400k") into a
 * profile named "custom" with the default audio, GOP and segment settings.
 * Errors name the rung that is wrong.
 */
int tc_ladder_parse(const char *spec, tc_profile_t *out, char *err, size_t errlen);

/*
 * Fit a profile to a source of width x height with sample aspect ratio
 * sar_num:sar_den (0:0 or 0:1 for square): fills rungs[].width/height,
 * drops rungs that would upscale. Returns the number of rungs kept (>= 1),
 * or -EINVAL for a source without a size.
 */
int tc_ladder_fit(tc_profile_t *p, int width, int height, int sar_num, int sar_den);

#endif /* TC_LADDER_H */

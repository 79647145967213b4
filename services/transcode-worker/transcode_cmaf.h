/*
 * transcode_cmaf.h - CMAF (ISO BMFF fragmented MP4) writer for one track.
 *
 * An init segment (ftyp + moov with the sample entry and mvex) is written
 * once per rendition configuration; each media segment is one fragment
 * (styp + moof + mdat) whose tfdt is the decode time of its first sample on
 * the stream's own clock, so fragments written by different workers for
 * consecutive jobs join into one timeline. Composition offsets go in a
 * version 1 trun, so B-frames need no edit list.
 *
 * H.264 and HEVC samples arrive in Annex B (as libx264 and libx265 emit
 * them) and are stored with 4-byte NAL lengths; the avcC or hvcC comes from
 * the encoder's global headers, so parameter sets are never repeated in
 * band. AV1 samples are temporal units of OBUs with their size fields, the
 * temporal delimiters removed.
 * Audio is AAC with its AudioSpecificConfig in an esds.
 *
 * The writer is ours rather than libavformat's mov muxer because the
 * timeline must not be shifted or given an edit list: tfdt and sample times
 * are exactly the times the job asks for.
 *
 * Thread safety: none; a track and a fragment belong to one thread.
 */
#ifndef TRANSCODE_CMAF_H
#define TRANSCODE_CMAF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TC_CMAF_CONFIG_MAX 1024

typedef enum tc_cmaf_vcodec {
    TC_CMAF_AVC = 0, /* avc1 + avcC, Annex B samples */
    TC_CMAF_HEVC,    /* hvc1 + hvcC, Annex B samples */
    TC_CMAF_AV1,     /* av01 + av1C, low-overhead OBU samples */
} tc_cmaf_vcodec_t;

typedef struct tc_cmaf_track {
    bool video;
    tc_cmaf_vcodec_t vcodec;   /* video */
    uint32_t timescale;        /* ticks per second: 90000 for video, the sample rate for audio */
    int width, height;         /* video */
    int sample_rate, channels; /* audio */
    int64_t bitrate_bps;       /* audio: for the esds */
    uint8_t config[TC_CMAF_CONFIG_MAX]; /* avcC, hvcC or av1C payload, or the AudioSpecificConfig */
    size_t config_len;
    char codecs[64]; /* RFC 6381: "avc1.64001f", "hvc1.1.6.L93.B0", "av01.0.04M.08", "mp4a.40.2" */
} tc_cmaf_track_t;

/*
 * Describe an H.264 track from the encoder's extradata (Annex B SPS/PPS, or
 * an avcC). Fails with -EINVAL and a reason when there is no SPS or PPS.
 */
int tc_cmaf_track_h264(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                       size_t len, char *err, size_t errlen);

/*
 * Describe an HEVC track from the encoder's extradata (Annex B VPS, SPS and
 * PPS): the hvcC and the codec string come from the SPS's profile, tier,
 * level, chroma format and bit depths. -EINVAL with a reason when a
 * parameter set is missing or the SPS cannot be read.
 */
int tc_cmaf_track_hevc(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                       size_t len, char *err, size_t errlen);

/*
 * Describe an AV1 track from the encoder's extradata (the sequence header
 * OBU): profile, level and tier come from its first operating point. The
 * pipeline encodes 8-bit 4:2:0, which the av1C states. -EINVAL with a reason
 * when there is no readable sequence header.
 */
int tc_cmaf_track_av1(tc_cmaf_track_t *t, int width, int height, const uint8_t *extradata,
                      size_t len, char *err, size_t errlen);

/* Describe an AAC track from its AudioSpecificConfig. */
int tc_cmaf_track_aac(tc_cmaf_track_t *t, int sample_rate, int channels, const uint8_t *asc,
                      size_t len, int64_t bitrate_bps, char *err, size_t errlen);

/* Append the init segment (ftyp + moov) to out. */
int tc_cmaf_write_init(const tc_cmaf_track_t *t, cb_buf_t *out);

typedef struct tc_cmaf_sample {
    int64_t dts;        /* track timescale */
    int64_t cts_offset; /* pts - dts */
    size_t offset, len; /* in the fragment's data */
    bool sync;
} tc_cmaf_sample_t;

/* The samples of one media segment being collected. */
typedef struct tc_cmaf_frag {
    tc_cmaf_sample_t *samples;
    size_t n, cap, max_samples;
    cb_buf_t data; /* sample payloads as stored in mdat */
} tc_cmaf_frag_t;

/* max_bytes bounds the payload, max_samples the sample count. */
void tc_cmaf_frag_init(tc_cmaf_frag_t *f, size_t max_bytes, size_t max_samples);
void tc_cmaf_frag_release(tc_cmaf_frag_t *f);
void tc_cmaf_frag_reset(tc_cmaf_frag_t *f);

/*
 * Add one encoded sample (a video access unit in Annex B, or a raw AAC
 * frame). dts must not go backwards. Returns 0, -E2BIG past a bound,
 * -EINVAL for a video packet without a NAL unit.
 */
int tc_cmaf_frag_add(tc_cmaf_frag_t *f, const tc_cmaf_track_t *t, const uint8_t *data, size_t len,
                     int64_t dts, int64_t pts, bool sync);

/*
 * Append a CMAF chunk (moof + mdat) for the collected samples to out,
 * after a styp when it opens a segment. Each sample lasts until the next
 * one's dts; the last one lasts last_duration ticks. seq is the moof
 * sequence number (>= 1).
 */
int tc_cmaf_frag_write(const tc_cmaf_frag_t *f, const tc_cmaf_track_t *t, uint32_t seq,
                       int64_t last_duration, bool styp, cb_buf_t *out);

#endif /* TRANSCODE_CMAF_H */

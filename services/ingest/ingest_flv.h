/*
 * ingest_flv.h - RTMP audio/video message bodies (FLV tag bodies) to media
 * packets, for both the legacy codec ids and Enhanced RTMP (FourCC) headers,
 * and the decoder configuration records they carry.
 *
 * Supported: video H.264 (legacy codec 7 or 'avc1'), HEVC ('hvc1', or the
 * widespread unofficial legacy codec 12), AV1 ('av01'); audio AAC (legacy
 * format 10 or 'mp4a') and MP3. Anything else is reported as unsupported so
 * the publisher gets a clear error instead of silently broken output.
 *
 * Thread safety: pure functions.
 */
#ifndef INGEST_FLV_H
#define INGEST_FLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ingest_codec {
    INGEST_CODEC_NONE = 0,
    INGEST_CODEC_H264,
    INGEST_CODEC_HEVC,
    INGEST_CODEC_AV1,
    INGEST_CODEC_AAC,
    INGEST_CODEC_MP3,
} ingest_codec_t;

typedef enum ingest_media_kind {
    INGEST_VIDEO = 0,
    INGEST_AUDIO = 1,
} ingest_media_kind_t;

typedef struct ingest_media {
    ingest_media_kind_t kind;
    ingest_codec_t codec;
    bool config;          /* data is the decoder configuration (avcC, hvcC, av1C, ASC) */
    bool end_of_sequence; /* the encoder ended this track */
    bool keyframe;        /* video: a random access point */
    bool skip;            /* nothing to do (command frames, metadata packets) */
    int32_t cts_ms;       /* video: composition time offset; pts = dts + cts */
    const uint8_t *data;  /* borrowed from the message */
    size_t len;
} ingest_media_t;

/*
 * Parse a video or audio message body. Returns 0, -ENOTSUP for a codec we
 * do not take (err names it), or -EINVAL for a malformed body.
 */
int ingest_flv_parse_video(const uint8_t *p, size_t len, ingest_media_t *out, char *err,
                           size_t errlen);
int ingest_flv_parse_audio(const uint8_t *p, size_t len, ingest_media_t *out, char *err,
                           size_t errlen);

const char *ingest_codec_name(ingest_codec_t c); /* "h264", "aac", ... or "" */

/* A tag of an FLV file (tests, tools/rtmp-loadgen). */
typedef struct ingest_flv_tag {
    int type; /* 8 audio, 9 video, 18 script data */
    uint32_t timestamp_ms;
    const uint8_t *data; /* the tag body: what an RTMP message carries */
    size_t len;
} ingest_flv_tag_t;

/*
 * Walk the tags of an FLV file in memory. Start with *pos = 0. Returns 1 with
 * the next tag, 0 at the end, -EINVAL when the bytes are not FLV.
 */
int ingest_flv_file_next(const uint8_t *buf, size_t len, size_t *pos, ingest_flv_tag_t *tag);

/* Width and height from an AVCDecoderConfigurationRecord's first SPS. */
int ingest_avcc_dimensions(const uint8_t *avcc, size_t len, int *width, int *height);

/* Sample rate and channel count from an AAC AudioSpecificConfig. */
int ingest_asc_parse(const uint8_t *asc, size_t len, int *sample_rate, int *channels);

#endif /* INGEST_FLV_H */

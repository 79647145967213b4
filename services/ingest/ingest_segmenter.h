/*
 * ingest_segmenter.h - cut a stream's media into GOP-aligned source
 * segments, muxed in memory.
 *
 * A segment starts at a video keyframe (audio-only streams: at any audio
 * frame) and ends at the first keyframe at or after the target duration, so
 * every segment decodes on its own; a long or irregular GOP gives a longer
 * segment, up to max_duration, past which writing fails (the publisher's
 * keyframe interval is unusable). A track configuration change or an
 * explicit discontinuity cuts at the next keyframe and flags the new
 * segment. H.264/HEVC/AAC/MP3 go into MPEG-TS; a stream with AV1 video into
 * fragmented MP4 (MPEG-TS has no AV1 mapping in FFmpeg 5).
 *
 * Timestamps are in the stream's 90 kHz timeline, already unwrapped and
 * made monotonic by the caller.
 *
 * Thread safety: a segmenter belongs to one thread at a time.
 */
#ifndef INGEST_SEGMENTER_H
#define INGEST_SEGMENTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest_flv.h"

typedef struct ingest_track_config {
    ingest_codec_t codec;
    const uint8_t *extradata; /* decoder configuration (copied) */
    size_t extradata_len;
    int width, height; /* video */
    double fps;        /* video, 0 if unknown */
    int sample_rate;   /* audio */
    int channels;      /* audio */
} ingest_track_config_t;

typedef struct ingest_segment {
    int64_t seq;
    int64_t start_90k;
    int64_t duration_90k;
    bool discontinuity;
    bool end_of_stream;
    const char *container; /* "mpegts" or "mp4" (static string) */
    uint8_t *data;         /* the muxed file (owned) */
    size_t len;
    ingest_codec_t video_codec, audio_codec;
    int width, height;
    double fps;
    int64_t media_bytes; /* payload bytes of the frames in it */
    int64_t video_frames, audio_frames;
    int64_t cut_us; /* CLOCK_MONOTONIC when the segment was closed */
} ingest_segment_t;

typedef struct ingest_segmenter_opts {
    int64_t target_90k;       /* cut at the first keyframe at or after this */
    int64_t max_duration_90k; /* a segment longer than this is an error */
    size_t max_bytes;         /* and so is one larger than this */
} ingest_segmenter_opts_t;

typedef struct ingest_segmenter ingest_segmenter_t;

int ingest_segmenter_new(const ingest_segmenter_opts_t *opts, int64_t first_seq,
                         ingest_segmenter_t **out);
void ingest_segmenter_free(ingest_segmenter_t *s);

/*
 * Set (or change) the configuration of the video or audio track. A change
 * takes effect at the next cut point, which it forces.
 */
int ingest_segmenter_configure(ingest_segmenter_t *s, ingest_media_kind_t kind,
                               const ingest_track_config_t *cfg);

/* Whether a track is configured. */
bool ingest_segmenter_has_track(const ingest_segmenter_t *s, ingest_media_kind_t kind);

/* The next segment is a discontinuity: cut at the next keyframe. */
void ingest_segmenter_discontinuity(ingest_segmenter_t *s);

/*
 * Add one frame. Returns 0, or 1 when this frame closed a segment (*done is
 * then a new segment to free with ingest_segment_free()), or a negative
 * errno with the reason in ingest_segmenter_error().
 * Frames before the first keyframe of a video stream are dropped (counted).
 */
int ingest_segmenter_write(ingest_segmenter_t *s, ingest_media_kind_t kind, bool keyframe,
                           int64_t dts_90k, int64_t pts_90k, const uint8_t *data, size_t len,
                           ingest_segment_t **done);

/*
 * Close the open segment, ending at end_90k (end of stream, kick). Returns 1
 * with *done, or 0 when no segment was open.
 */
int ingest_segmenter_finish(ingest_segmenter_t *s, int64_t end_90k, bool end_of_stream,
                            ingest_segment_t **done);

int64_t ingest_segmenter_next_seq(const ingest_segmenter_t *s);
int64_t ingest_segmenter_dropped(const ingest_segmenter_t *s);
const char *ingest_segmenter_error(const ingest_segmenter_t *s);

void ingest_segment_free(ingest_segment_t *seg);

#endif /* INGEST_SEGMENTER_H */

/*
 * ingest_ts.h - an MPEG-TS muxer for one source segment, in memory.
 *
 * What the segmenter needs and no more: one program, a video track (H.264
 * or HEVC) and/or an audio track (AAC or MP3), PAT and PMT at the start,
 * PCR on the first track's PES, random-access flags on keyframes. Frames
 * are written straight into the segment's buffer as 188-byte packets: the
 * frame bytes are copied once, with no allocation per frame.
 *
 * Input as publishers send it: H.264/HEVC length-prefixed when the track's
 * configuration is an avcC/hvcC record (RTMP), Annex B when it is absent or
 * Annex B parameter sets (SRT); AAC raw (RTMP:
 * AudioSpecificConfig) or ADTS (SRT). Video leaves as Annex B with an access
 * unit delimiter and, on keyframes, the parameter sets when the frame lacks
 * them; AAC leaves as ADTS.
 *
 * Thread safety: a muxer belongs to one thread at a time.
 */
#ifndef INGEST_TS_H
#define INGEST_TS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ingest_flv.h"

typedef struct ingest_ts_track {
    ingest_codec_t codec;     /* INGEST_CODEC_NONE: no such track */
    const uint8_t *extradata; /* avcC/hvcC, Annex B parameter sets, or AudioSpecificConfig */
    size_t extradata_len;
} ingest_ts_track_t;

typedef struct ingest_ts ingest_ts_t;

/*
 * A new segment: parses the configurations and writes PAT and PMT.
 * size_hint: expected size (the previous segment's) to allocate once;
 * max_bytes: the most the segment may hold. Returns 0, -EINVAL (with the
 * reason in err) for a configuration it cannot mux, -ENOMEM.
 */
int ingest_ts_new(const ingest_ts_track_t *video, const ingest_ts_track_t *audio, size_t size_hint,
                  size_t max_bytes, ingest_ts_t **out, char *err, size_t errlen);
void ingest_ts_free(ingest_ts_t *ts);

/*
 * One frame at 90 kHz timestamps (pts >= dts). Returns 0, -E2BIG past
 * max_bytes, -EINVAL for a frame it cannot mux (err says why), -ENOMEM.
 */
int ingest_ts_write(ingest_ts_t *ts, ingest_media_kind_t kind, bool keyframe, int64_t dts_90k,
                    int64_t pts_90k, const uint8_t *data, size_t len, char *err, size_t errlen);

/* End the segment: the buffer (taken; free() it) and its length. Frees ts. */
uint8_t *ingest_ts_finish(ingest_ts_t *ts, size_t *len);

#endif /* INGEST_TS_H */

/*
 * ingest_hub.h - the live streams of this ingest instance: who publishes
 * them, one timeline per stream, and the segmenter they feed.
 *
 * A stream may have a primary and a backup publisher (RTMP or SRT, on any
 * thread). The active one's frames go to the segmenter. When the primary
 * has sent nothing for backup_switch, the backup takes over at its next
 * keyframe; when the primary sends again, it takes back over at its next
 * keyframe. Each switch, encoder reconnect, or timestamp jump/reset is a
 * discontinuity: the new source is rebased so that the stream's timeline
 * keeps going forward without a gap, and the next segment is flagged.
 *
 * Publisher timestamps are unwrapped (32-bit RTMP milliseconds, 33-bit
 * MPEG-TS 90 kHz) and mapped onto the stream's 90 kHz timeline, which
 * continues from the stream's cursor across sessions and restarts.
 *
 * Threads: every function may be called from any thread; a stream's state is
 * under its own mutex. Publisher ops are called with no hub lock held.
 */
#ifndef INGEST_HUB_H
#define INGEST_HUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

#include "ingest_flv.h"
#include "ingest_segmenter.h"
#include "ingest_writer.h"

typedef enum ingest_role {
    INGEST_ROLE_PRIMARY = 0,
    INGEST_ROLE_BACKUP = 1,
} ingest_role_t;

typedef struct ingest_hub_config {
    int64_t segment_ms;
    int64_t max_segment_ms;
    int64_t max_segment_bytes;
    int64_t backup_switch_ms;
    int64_t ts_jump_ms; /* a timestamp jump bigger than this is a discontinuity */
} ingest_hub_config_t;

/* How the hub reaches a publisher's connection (thread-safe: it posts to its owner). */
typedef struct ingest_publisher_ops {
    void (*kick)(void *conn, const char *why);
} ingest_publisher_ops_t;

/* A frame from a publisher, in the publisher's own clock. */
typedef struct ingest_frame {
    ingest_media_kind_t kind;
    ingest_codec_t codec;
    bool config;   /* data: decoder configuration */
    bool keyframe; /* video random access point */
    uint64_t dts;  /* raw publisher timestamp, wrapping at 2^wrap_bits */
    int64_t cts;   /* pts - dts, same unit */
    const uint8_t *data;
    size_t len;
} ingest_frame_t;

typedef struct ingest_hub ingest_hub_t;
typedef struct ingest_publisher ingest_publisher_t;

/* Called (from any thread) when a stream starts or stops being live here. */
typedef void (*ingest_hub_live_fn)(void *arg, const ingest_stream_info_t *info, bool live,
                                   const char *protocol, const char *peer, const char *reason);

int ingest_hub_new(const ingest_hub_config_t *cfg, ingest_writer_t *writer, cb_metrics_t *metrics,
                   ingest_hub_live_fn on_live, void *live_arg, ingest_hub_t **out);
void ingest_hub_free(ingest_hub_t *h);

/*
 * A publisher was authorized for a stream: attach it. cursor: where the
 * stream continues (from storage; the hub keeps the latest it knows too).
 * clock_hz and wrap_bits describe its timestamps (1000/32 for RTMP,
 * 90000/33 for MPEG-TS). Returns -EBUSY when that role is already taken
 * (why says so).
 */
int ingest_hub_attach(ingest_hub_t *h, const ingest_stream_info_t *info,
                      const ingest_cursor_t *cursor, ingest_role_t role, const char *protocol,
                      const char *peer, int clock_hz, int wrap_bits,
                      const ingest_publisher_ops_t *ops, void *conn, ingest_publisher_t **out,
                      char *why, size_t whylen);

/*
 * A frame from the publisher. Returns 0, or a negative errno with why: the
 * caller ends the publish with that error (unsupported media, no keyframes,
 * announcements backed up).
 */
int ingest_publisher_push(ingest_publisher_t *p, const ingest_frame_t *f, char *why, size_t whylen);

/* Hints from onMetaData (0 when unknown). */
void ingest_publisher_hints(ingest_publisher_t *p, int width, int height, double fps);

/*
 * The publisher's connection is gone. When it was the stream's last
 * publisher, the open segment is finished; it is flagged end of stream
 * unless the hub is shutting down (the encoder will reconnect elsewhere).
 */
void ingest_hub_detach(ingest_publisher_t *p, const char *reason);

/* Kick every publisher of a stream. -ENOENT when it is not live here. */
int ingest_hub_kick(ingest_hub_t *h, const char *stream_id, const char *why);

/* Live status of a stream here (new reference), or NULL. */
json_t *ingest_hub_status(ingest_hub_t *h, const char *stream_id);

/*
 * Stats since the previous call (or since the stream went live) for every
 * live stream: calls fn with each stream's info and a JSON object (new
 * reference) of bitrate_bps, fps, keyframe_interval_s, dropped/late frames,
 * codecs, resolution, seq...
 */
void ingest_hub_collect(ingest_hub_t *h,
                        void (*fn)(void *arg, const ingest_stream_info_t *info, json_t *stats),
                        void *arg);

size_t ingest_hub_live_count(ingest_hub_t *h);

/* Shutting down: later detaches do not end streams; kick every publisher. */
void ingest_hub_shutdown(ingest_hub_t *h, const char *why);

#endif /* INGEST_HUB_H */

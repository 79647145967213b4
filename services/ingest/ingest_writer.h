/*
 * ingest_writer.h - make finished source segments durable and announce them.
 *
 * For each segment, in order per stream: write it to storage
 * (live/<stream>/src/<seq>.ts or .mp4, atomically), write the stream's
 * cursor (live/<stream>/src/cursor.json: the next seq and timestamp, so a
 * restarted ingest never reuses either), append it to the session's
 * recording when the stream records, then produce its TranscodeJob to
 * media.transcode.jobs keyed by stream id. A failed delivery is produced
 * again (with backoff) until it is acknowledged: while Kafka is away,
 * announcements queue up to max_pending per stream, past which submitting
 * fails and the caller ends the publish with an error - nothing is dropped
 * silently.
 *
 * Threads: `threads` writer threads; a stream always goes to the same one
 * (by hash of its id), which keeps its segments in order. Submit from any
 * thread.
 */
#ifndef INGEST_WRITER_H
#define INGEST_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "kafka.h"
#include "metrics.h"
#include "storage.h"

#include "ingest_segmenter.h"

#define INGEST_STREAM_ID_MAX 64

/* What a stream is, as far as the segments and jobs need to know. */
typedef struct ingest_stream_info {
    char id[INGEST_STREAM_ID_MAX];
    char name[128];
    char profile[64];
    int64_t dvr_window_s;
    bool record;
    bool signed_playback;
    bool priority_high;
} ingest_stream_info_t;

/* Where a stream's next segment continues. */
typedef struct ingest_cursor {
    int64_t next_seq;
    int64_t next_pts_90k;
} ingest_cursor_t;

typedef struct ingest_writer_config {
    int64_t threads;
    int64_t queue_max;      /* segments waiting to be written, all streams */
    int64_t max_pending;    /* written but not yet acknowledged by Kafka, per stream */
    char *work_dir;         /* local directory for recordings in progress */
    int64_t part_target_ms; /* low latency: longest CMAF chunk; 0: none */
} ingest_writer_config_t;

typedef struct ingest_writer ingest_writer_t;

int ingest_writer_new(const ingest_writer_config_t *cfg, cb_storage_t *storage,
                      cb_kafka_producer_t *producer, cb_metrics_t *metrics, ingest_writer_t **out);

/*
 * Queue a segment (ownership of seg passes to the writer, also on error).
 * session: identifies the publish session, for its recording.
 * bitrate_bps: the publisher's measured bitrate, for the job.
 * Returns 0, -EAGAIN when the queue is full, -ENOSPC when the stream has
 * max_pending unacknowledged announcements.
 */
int ingest_writer_submit(ingest_writer_t *w, const ingest_stream_info_t *info, const char *session,
                         int64_t bitrate_bps, ingest_segment_t *seg);

/* Read a stream's cursor from storage (missing: seq 0, the timeline origin). */
int ingest_writer_read_cursor(cb_storage_t *storage, const char *stream_id, ingest_cursor_t *out);

/* Storage key of a stream's source segment. */
void ingest_writer_segment_key(const char *stream_id, int64_t seq, const char *container, char *out,
                               size_t outlen);

/* Segments queued or announcing for a stream (for the API). */
int64_t ingest_writer_pending(ingest_writer_t *w, const char *stream_id);

/* Write everything queued and wait for Kafka acknowledgements until deadline_ms. */
void ingest_writer_drain(ingest_writer_t *w, int64_t deadline_ms);

/* Finish recordings left by a crash (at start-up). */
int ingest_writer_recover_recordings(ingest_writer_t *w);

void ingest_writer_free(ingest_writer_t *w);

/* The earliest timestamp a stream's timeline starts at (room for B-frame reordering). */
#define INGEST_TIMELINE_ORIGIN_90K 180000

#endif /* INGEST_WRITER_H */

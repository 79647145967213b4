/*
 * ingest_events.h - what ingest tells the rest of the platform besides jobs:
 * publish start/stop and per-stream statistics on analytics.events, and
 * finished recordings on media.package.events.
 *
 * Events are produced asynchronously; a failed delivery is logged and
 * counted (castbus_kafka_produced_total{result="error"}), never retried:
 * unlike jobs, statistics are superseded by the next ones.
 *
 * Thread safety: any thread.
 */
#ifndef INGEST_EVENTS_H
#define INGEST_EVENTS_H

#include <jansson.h>
#include <stdbool.h>

#include "kafka.h"

#include "ingest_writer.h"

void ingest_events_publish(cb_kafka_producer_t *p, const ingest_stream_info_t *info, bool start,
                           const char *protocol, const char *peer, const char *reason);

/* stats: bitrate, fps... (borrowed). */
void ingest_events_stats(cb_kafka_producer_t *p, const ingest_stream_info_t *info,
                         const json_t *stats);

void ingest_events_recording(cb_kafka_producer_t *p, const char *stream_id, const char *path,
                             int64_t duration_ms);

#endif /* INGEST_EVENTS_H */

/*
 * ingest_events.c - analytics and package events; see ingest_events.h.
 */
#include "ingest_events.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cb_proto.h"
#include "clock.h"
#include "log.h"

static void produce(cb_kafka_producer_t *p, const char *topic, const char *key, char *text,
                    size_t len)
{
    int rc;

    if (!text) {
        cb_log_error("events: encoding an event for '%s' failed", topic);
        return;
    }
    rc = cb_kafka_produce(p, topic, key, strlen(key), text, len, NULL, 0, NULL, NULL);
    if (rc)
        cb_log_warn("events: '%s' event for '%s' not queued: %s", topic, key, strerror(-rc));
    free(text);
}

static void analytics(cb_kafka_producer_t *p, const char *type, const char *stream_id, json_t *data)
{
    cb_proto_analytics_event_t ev = {
        .type = (char *) type,
        .source = "ingest",
        .at_ms = cb_clock_wall_ms(),
        .stream_id = (char *) stream_id,
        .data = data,
    };
    size_t len = 0;
    char *text = cb_proto_analytics_event_encode(&ev, &len);

    /* keyed by stream: a stream's events stay in order */
    produce(p, CB_PROTO_TOPIC_ANALYTICS_EVENTS, stream_id, text, len);
}

void ingest_events_publish(cb_kafka_producer_t *p, const ingest_stream_info_t *info, bool start,
                           const char *protocol, const char *peer, const char *reason)
{
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:s}", "protocol", protocol ? protocol : "", "publisher",
                  peer ? peer : "", "name", info->name, "reason", reason ? reason : "");

    analytics(p, start ? "publish_start" : "publish_stop", info->id, data);
    json_decref(data);
}

void ingest_events_stats(cb_kafka_producer_t *p, const ingest_stream_info_t *info,
                         const json_t *stats)
{
    analytics(p, "ingest_stats", info->id, (json_t *) stats);
}

void ingest_events_recording(cb_kafka_producer_t *p, const char *stream_id, const char *path,
                             int64_t duration_ms)
{
    cb_proto_package_event_t ev = {
        .type = CB_PROTO_PACKAGE_EVENT_TYPE_RECORDING_READY,
        .stream_id = (char *) stream_id,
        .at_ms = cb_clock_wall_ms(),
        .recording_path = (char *) path,
        .duration_ms = duration_ms,
    };
    size_t len = 0;
    char *text = cb_proto_package_event_encode(&ev, &len);

    produce(p, CB_PROTO_TOPIC_MEDIA_PACKAGE_EVENTS, stream_id, text, len);
}

/*
 * ingest_rtmp.h - the RTMP protocol for publishers, as a byte-in/bytes-out
 * state machine without sockets.
 *
 * The network layer feeds received bytes to ingest_rtmp_input() and sends
 * whatever ingest_rtmp_output() holds. The session does the handshake
 * (simple, or digest-based as ffmpeg and Flash-era encoders do it), parses
 * the chunk stream (all four header types, extended timestamps, chunk size
 * changes, aborts), acknowledges per the peer's window, answers the AMF0
 * commands publishers send (connect, releaseStream, FCPublish,
 * createStream, publish, FCUnpublish, deleteStream) and hands media and
 * metadata to callbacks.
 *
 * Input is untrusted: every length is bounded (message size, chunk size,
 * chunk streams in use, buffered input) and a malformed stream makes
 * ingest_rtmp_input() fail with a reason; the caller closes the connection.
 *
 * Thread safety: a session belongs to one thread at a time.
 */
#ifndef INGEST_RTMP_H
#define INGEST_RTMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "ingest_amf0.h"

/* RTMP message types carrying media */
#define RTMP_MSG_AUDIO 8
#define RTMP_MSG_VIDEO 9

typedef struct ingest_rtmp ingest_rtmp_t;

typedef struct ingest_rtmp_callbacks {
    /*
     * connect: the application name and tcUrl the client asked for. Return 0
     * to accept, or a negative errno to refuse (NetConnection.Connect.Rejected
     * with `why`, then the session closes).
     */
    int (*on_connect)(void *arg, const char *app, const char *tc_url, char *why, size_t whylen);
    /*
     * publish: the stream name as sent (may carry "?role=backup"). Return 0
     * to accept; 1 when the answer comes later through
     * ingest_rtmp_publish_result() (a database lookup); otherwise fill code
     * (e.g. "NetStream.Publish.BadName") and why: the client gets that
     * onStatus error and the session closes.
     */
    int (*on_publish)(void *arg, const char *name, char *code, size_t codelen, char *why,
                      size_t whylen);
    /* FCUnpublish / deleteStream / closeStream: the publisher is done. */
    void (*on_unpublish)(void *arg);
    /*
     * An audio or video message while publishing: the 32-bit timestamp in
     * milliseconds as the chunk stream carries it (the caller unwraps it)
     * and the FLV tag body (borrowed). A negative return closes the session.
     */
    int (*on_media)(void *arg, int type, uint32_t timestamp_ms, const uint8_t *data, size_t len);
    /* onMetaData (via @setDataFrame or directly); the object is borrowed. */
    void (*on_metadata)(void *arg, const ingest_amf0_t *meta);
} ingest_rtmp_callbacks_t;

typedef struct ingest_rtmp_limits {
    size_t max_message_bytes; /* largest message accepted (a 4K keyframe is a few MiB) */
    size_t out_chunk_size;    /* chunk size we announce and send with */
} ingest_rtmp_limits_t;

typedef enum ingest_rtmp_state {
    RTMP_STATE_HANDSHAKE, /* waiting for C0 + C1 */
    RTMP_STATE_HANDSHAKE_C2,
    RTMP_STATE_CONNECTING, /* handshake done, no connect yet */
    RTMP_STATE_CONNECTED,
    RTMP_STATE_PUBLISH_PENDING, /* publish asked, answer awaited */
    RTMP_STATE_PUBLISHING,
    RTMP_STATE_CLOSING, /* a final status is queued; close after sending it */
} ingest_rtmp_state_t;

int ingest_rtmp_new(const ingest_rtmp_callbacks_t *cb, void *arg,
                    const ingest_rtmp_limits_t *limits, ingest_rtmp_t **out);
void ingest_rtmp_free(ingest_rtmp_t *s);

/*
 * Consume received bytes (they are copied as needed). Returns 0, or a
 * negative errno after which the connection must be closed; the reason is
 * in ingest_rtmp_error(). Replies are appended to the output buffer.
 */
int ingest_rtmp_input(ingest_rtmp_t *s, const uint8_t *data, size_t len);

/* Bytes to send; drop the first n once sent. */
const uint8_t *ingest_rtmp_output(ingest_rtmp_t *s, size_t *len);
void ingest_rtmp_output_consume(ingest_rtmp_t *s, size_t n);

/*
 * Answer a publish that on_publish left pending: accepted (code NULL), or
 * refused with an onStatus error code and description.
 */
int ingest_rtmp_publish_result(ingest_rtmp_t *s, const char *code, const char *why);

/*
 * Tell the publisher the session ends (kick, a backup refused, shutdown):
 * queues onStatus(level "error" or "status", code, description) and moves to
 * CLOSING: close once the output is sent.
 */
int ingest_rtmp_end(ingest_rtmp_t *s, const char *level, const char *code, const char *description);

ingest_rtmp_state_t ingest_rtmp_state(const ingest_rtmp_t *s);
const char *ingest_rtmp_error(const ingest_rtmp_t *s);

#endif /* INGEST_RTMP_H */

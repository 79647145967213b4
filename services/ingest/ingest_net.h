/*
 * ingest_net.h - the RTMP (1935) and RTMPS (1936) listeners.
 *
 * One event-loop thread (epoll, edge-triggered, non-blocking sockets and
 * OpenSSL for RTMPS) owns every RTMP connection and its protocol session.
 * A publish is authorized off the loop: the net calls auth_fn, which looks
 * the key up (database, storage) on a worker and answers with
 * ingest_net_auth_result(); the connection waits meanwhile.
 *
 * Hostile clients: connections over max_connections are closed at once; a
 * handshake (up to the connect command) must finish within
 * handshake_timeout, and a connection that sends nothing for idle_timeout
 * is closed; buffers are bounded by the message limit; an address with
 * auth_failures_max wrong keys in auth_failure_window is refused until the
 * window ends. A bad byte stream closes that connection only.
 *
 * Reads are batched: after a round of events the loop pauses read_batch
 * before waiting again, so one wakeup serves many publishers' packets
 * (a publisher's frames wait at most that long in its socket buffer).
 *
 * Thread safety: ingest_net_auth_result() and the kick op may be called from
 * any thread; the rest from the thread that owns the net.
 */
#ifndef INGEST_NET_H
#define INGEST_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "metrics.h"

#include "ingest_hub.h"
#include "ingest_writer.h"

typedef struct ingest_net_config {
    char *host;
    int64_t rtmp_port;  /* 0: no RTMP listener */
    int64_t rtmps_port; /* 0 (or no certificate): no RTMPS listener */
    char *tls_cert;
    char *tls_key;
    int64_t handshake_timeout_ms;
    int64_t idle_timeout_ms;
    int64_t max_message_bytes;
    int64_t max_connections;
    int64_t auth_failures_max;
    int64_t auth_failure_window_ms;
    int64_t read_batch_us; /* pause between rounds of reads while busy (0: none) */
} ingest_net_config_t;

typedef struct ingest_net ingest_net_t;

/*
 * Start authorizing a publish for connection conn_id (net thread). The
 * answer must come, exactly once, through ingest_net_auth_result().
 */
typedef void (*ingest_auth_fn)(void *arg, ingest_net_t *net, uint64_t conn_id, const char *key,
                               const char *peer);

int ingest_net_new(const ingest_net_config_t *cfg, ingest_hub_t *hub, cb_metrics_t *metrics,
                   ingest_auth_fn auth, void *auth_arg, ingest_net_t **out, char *err,
                   size_t errlen);

/* Bind the listeners and start the loop thread. */
int ingest_net_start(ingest_net_t *n, char *err, size_t errlen);

/*
 * The answer to an auth_fn call (any thread): rc 0 with the stream's info
 * and cursor, or a negative errno with why (-EACCES: wrong key).
 */
void ingest_net_auth_result(ingest_net_t *n, uint64_t conn_id, int rc,
                            const ingest_stream_info_t *info, const ingest_cursor_t *cursor,
                            const char *why);

/* Stop accepting, end every connection, join the thread. */
void ingest_net_stop(ingest_net_t *n);
void ingest_net_free(ingest_net_t *n);

/* Bound ports (after start), for tests that ask for port 0. */
int ingest_net_rtmp_port(const ingest_net_t *n);
int ingest_net_rtmps_port(const ingest_net_t *n);

/* Per-address failed-key accounting, shared with the SRT listener (any thread). */
typedef struct ingest_ratelimit ingest_ratelimit_t;
ingest_ratelimit_t *ingest_net_ratelimit(ingest_net_t *n);
/* 0 when the address may try; -EBUSY with why when it is refused for now. */
int ingest_ratelimit_check(ingest_ratelimit_t *rl, const char *ip, char *why, size_t whylen);
void ingest_ratelimit_fail(ingest_ratelimit_t *rl, const char *ip);

#endif /* INGEST_NET_H */

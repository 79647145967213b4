/*
 * ingest_srt.h - the SRT listener: MPEG-TS publishers in live mode.
 *
 * The stream id names the stream key: "publish:live/<key>" or the SRT
 * access-control form "#!::r=live/<key>,m=publish", with "?role=backup" on
 * the key for a backup. The key is checked in libsrt's listen callback, so
 * a wrong key (or a rate-limited address) rejects the handshake itself. An
 * optional passphrase encrypts every connection.
 *
 * Threads: libsrt's own, an accept thread, and one reader thread per
 * publisher (demuxing MPEG-TS with libavformat), at most max_connections.
 */
#ifndef INGEST_SRT_H
#define INGEST_SRT_H

#include <stdint.h>

#include "metrics.h"

#include "ingest_hub.h"
#include "ingest_net.h"

typedef struct ingest_srt_config {
    char *host;
    int64_t port; /* 0: no SRT listener */
    char *passphrase;
    int64_t latency_ms;
    int64_t max_connections;
    int64_t idle_timeout_ms;
    int64_t handshake_timeout_ms; /* a handshake that never completes frees its slot after this */
} ingest_srt_config_t;

/*
 * Check a key synchronously (libsrt's thread): 0 with the stream's info and
 * cursor, -EACCES for a wrong key, another negative errno with why.
 */
typedef int (*ingest_srt_auth_fn)(void *arg, const char *key, ingest_stream_info_t *info,
                                  ingest_cursor_t *cursor, char *why, size_t whylen);

typedef struct ingest_srt ingest_srt_t;

int ingest_srt_new(const ingest_srt_config_t *cfg, ingest_hub_t *hub, ingest_ratelimit_t *rl,
                   cb_metrics_t *metrics, ingest_srt_auth_fn auth, void *auth_arg,
                   ingest_srt_t **out);
int ingest_srt_start(ingest_srt_t *s, char *err, size_t errlen);
int ingest_srt_port(const ingest_srt_t *s);
/* Stop accepting, end every publisher, join the threads. */
void ingest_srt_stop(ingest_srt_t *s);
void ingest_srt_free(ingest_srt_t *s);

/* Parse an SRT stream id into the key and role. -EINVAL when it is not a publish id. */
int ingest_srt_parse_streamid(const char *sid, char *key, size_t keylen, bool *backup);

#endif /* INGEST_SRT_H */

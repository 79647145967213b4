/*
 * packager_origin.h - the HTTP origin: /live/<stream>/... and
 * /vod/<asset>/... from storage, for players and CDN edges.
 *
 * Only what players need is served: the manifests (master.m3u8,
 * <rendition>.m3u8, manifest.mpd) and, under a rendition's directory, its
 * init and media segments; the manifests name a segment "<start>.m4s"
 * and the worker's file is "<start in 13 digits>.m4s". Everything else (done records, the packager's
 * state, ingest's source segments) is 404.
 *
 * Every answer has the headers an edge needs to cache it right: a
 * Content-Type, Cache-Control (a second for live manifests, a year and
 * immutable for segments), ETag and Last-Modified with conditional GETs
 * (304), byte ranges (206/416), CORS for browser players, and
 * Surrogate-Key/xkey tags ("live/<stream>", "live/<stream>/<rendition>",
 * "vod/<asset>", ...) that purges name. GET /time gives the wall clock for
 * DASH UTCTiming.
 *
 * The origin listens on its own port (8090; players and edges reach it,
 * the admin port stays internal) with `threads` servers sharing it
 * (SO_REUSEPORT: the kernel spreads the connections), each a libcommon
 * HTTP server with its own loop thread; with port 0 it is served by the
 * daemon's admin server instead, on one thread.
 */
#ifndef PACKAGER_ORIGIN_H
#define PACKAGER_ORIGIN_H

#include <stdbool.h>

#include "daemon.h"
#include "packager_streams.h"
#include "packager_token.h"
#include "storage.h"

typedef struct pk_origin_config {
    char *host;                 /* listen address of the origin port */
    int64_t port;               /* the origin's own port; 0: the admin port serves it */
    int64_t threads;            /* servers sharing the origin port, one thread each */
    int64_t live_max_age_ms;    /* Cache-Control of live manifests */
    int64_t vod_max_age_ms;     /* Cache-Control of VOD manifests */
    int64_t segment_max_age_ms; /* Cache-Control of segments */
    char *cors_origins;         /* Access-Control-Allow-Origin: "*" or one origin */
    char *signing_key;          /* HMAC key of signed playback URLs; "": none */
    char *tls_cert, *tls_key;   /* PEM files: the origin port speaks TLS (h2 by ALPN) */
} pk_origin_config_t;

extern const cb_config_key_t pk_origin_config_keys[];

typedef struct pk_origin pk_origin_t;

typedef enum pk_origin_what { PK_MANIFEST, PK_INIT, PK_SEGMENT } pk_origin_what_t;

/*
 * Split a request path below /live/ or /vod/: "<name>[/~<token>]/<file>"
 * or "<name>[/~<token>]/<rendition>/<file>", and check it is a file players
 * may have. Fills the name, the signed-URL token ("" without), the storage
 * path below the name (a segment's 13-digit file name), the rendition ("" for
 * manifests) and what it is. False: 404.
 */
bool pk_origin_parse_path(const char *path, char name[65], char token[PK_TOKEN_MAX], char rest[160],
                          char rendition[65], pk_origin_what_t *what);

/* Create the origin and its routes (on its servers, or on the daemon's). */
int pk_origin_new(const pk_origin_config_t *cfg, cb_storage_t *storage, pk_streams_t *streams,
                  cb_daemon_t *d, pk_origin_t **out, char *err, size_t errlen);

/* Listen and serve (its own servers only). -EADDRINUSE etc. with err. */
int pk_origin_start(pk_origin_t *o, char *err, size_t errlen);

/* What a blocking playlist reload needs to know of a media playlist. */
typedef struct pk_playlist_state {
    bool ok;        /* a playlist was read */
    bool ended;     /* EXT-X-ENDLIST */
    int64_t last;   /* media sequence number of its last segment; -1: none */
    int64_t target; /* EXT-X-TARGETDURATION, s (2 when absent or odd) */
} pk_playlist_state_t;

/* Parse a media playlist's text; false when it is not one. */
bool pk_origin_playlist_state(const char *text, size_t len, pk_playlist_state_t *ps);

/* Whether an Accept-Encoding header's value (NULL: none) takes gzip: "gzip"
 * or "*", not with q=0. */
bool pk_origin_gzip_accepted(const char *accept_encoding);

/* A stream's manifests changed: look at the held playlist requests again
 * (any thread; arg is the origin). */
void pk_origin_wake(void *arg);

/* free: stops the servers and joins their threads. */
extern const cb_component_ops_t pk_origin_component;

#endif /* PACKAGER_ORIGIN_H */

/*
 * packager_render.h - a timeline's manifests: the HLS multivariant and
 * media playlists and the DASH MPD, as the files the origin serves.
 *
 * The same timeline gives the live manifests (the DVR window, dynamic MPD)
 * and, once ended, the VOD asset's (every entry, static MPD); the segments
 * are the same files in both, named "<rendition>/<start, 13 digits>.m4s"
 * beside the manifests.
 */
#ifndef PACKAGER_RENDER_H
#define PACKAGER_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "packager_timeline.h"

typedef struct pk_render_opts {
    bool vod;                   /* every entry, PLAYLIST-TYPE:VOD, static MPD */
    int64_t window_s;           /* live: the DVR window */
    int64_t now_ms;             /* live: the MPD's publishTime */
    const char *utc_timing_uri; /* live: UTCTiming http-iso source; NULL: none */
    bool can_block_reload;      /* live: the origin holds ?_HLS_msn requests */
} pk_render_opts_t;

/* Called for each file: name relative to the stream's directory ("master.m3u8"). */
typedef int (*pk_render_file_fn)(void *arg, const char *name, const cb_buf_t *bytes);

/*
 * Render every manifest of the timeline and pass each to fn (stops at the
 * first non-zero return, which it returns). -ENODATA when the timeline has
 * nothing to list yet, -ENOMEM.
 */
int pk_render(const pk_timeline_t *tl, const pk_render_opts_t *o, pk_render_file_fn fn, void *arg);

/* The bitrates a variant is announced with: peak and average, bits/s. */
void pk_render_bitrates(const pk_rendition_t *r, int64_t *peak, int64_t *average);

#endif /* PACKAGER_RENDER_H */

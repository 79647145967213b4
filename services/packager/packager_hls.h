/*
 * packager_hls.h - HLS playlists (RFC 8216, version 7) for CMAF renditions:
 * a media playlist per rendition and the multivariant playlist.
 *
 * Pure text: the caller says what the timeline is (which segments, their
 * times, where a discontinuity or a gap is, which init segment each needs)
 * and gets the playlist bytes; the same input always gives the same bytes,
 * which is what the golden-file tests hold it to.
 *
 * Media playlists:
 *   - EXT-X-MAP before the first segment and wherever the init segment
 *     changes (a new encoder configuration);
 *   - EXT-X-PROGRAM-DATE-TIME on every segment that has one, so players can
 *     seek by wall clock and measure their latency anywhere in the window;
 *   - EXT-X-DISCONTINUITY where ingest or transcode marked one, and
 *     EXT-X-DISCONTINUITY-SEQUENCE counting those gone from the front;
 *   - EXT-X-GAP for a segment that failed (its URI is still listed, as the
 *     specification asks; players skip it);
 *   - EXT-X-TARGETDURATION is the longest segment rounded to the nearest
 *     second, never less than the caller's floor;
 *   - EXT-X-ENDLIST once a live stream ended; EXT-X-PLAYLIST-TYPE:VOD with
 *     it for VOD.
 *   - Low latency (RFC 8216bis): EXT-X-PART-INF, EXT-X-PART for the
 *     segments of the last three target durations (byte ranges of the
 *     segment file: a part is one of its CMAF chunks), PART-HOLD-BACK in
 *     EXT-X-SERVER-CONTROL, and an EXT-X-RENDITION-REPORT per other
 *     rendition. Segments are listed whole, with all their parts.
 *   - Live playlists the origin serves (can_block_reload): CAN-SKIP-UNTIL,
 *     six target durations, for Playlist Delta Updates (pk_hls_delta()).
 *
 * Thread safety: none needed; no state.
 */
#ifndef PACKAGER_HLS_H
#define PACKAGER_HLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A partial segment: one CMAF chunk of the segment's file (the timeline
 * keeps these, so they are compact). */
typedef struct pk_hls_part {
    uint32_t offset, bytes; /* BYTERANGE within the segment's file */
    int32_t duration_90k;
    bool independent; /* INDEPENDENT=YES */
} pk_hls_part_t;

/* Where another rendition's playlist ends (EXT-X-RENDITION-REPORT). */
typedef struct pk_hls_report {
    const char *uri; /* relative to the playlist */
    int64_t last_msn;
    int last_part; /* -1: leave out */
} pk_hls_report_t;

typedef struct pk_hls_segment {
    int64_t duration_90k;
    const char *uri;     /* relative to the playlist */
    const char *map_uri; /* its init segment, relative to the playlist (a gap may have none) */
    int64_t pdt_ms;      /* wall clock of its first sample, ms since the epoch; 0: none */
    bool discontinuity;  /* EXT-X-DISCONTINUITY before it (not on segs[0]: once the
                          * segment before it has left the window, the caller counts
                          * it in discontinuity_sequence) */
    bool gap;            /* the segment failed: EXT-X-GAP */
    const pk_hls_part_t *parts; /* its partial segments (low latency) */
    size_t nparts;
} pk_hls_segment_t;

typedef struct pk_hls_media {
    int64_t media_sequence;         /* sequence number of segs[0] */
    int64_t discontinuity_sequence; /* discontinuities that left the front of the window */
    int min_target_s;               /* EXT-X-TARGETDURATION floor (the profile's segment length) */
    bool vod;                       /* a finished asset: PLAYLIST-TYPE:VOD and ENDLIST */
    bool ended;                     /* the live stream ended: ENDLIST */
    bool can_block_reload;          /* EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES */
    int64_t part_target_90k;        /* low latency (needs can_block_reload): PART-TARGET; 0: none */
    int64_t part_hold_back_90k;     /* PART-HOLD-BACK (at least 2 part targets are used) */
    int skip_until_s;               /* CAN-SKIP-UNTIL, s, the same in every rendition's playlist
                       * (at least six of this one's target durations are used) */
    const pk_hls_report_t *reports; /* the other renditions (low latency) */
    size_t nreports;
    const pk_hls_segment_t *segs;
    size_t n;
} pk_hls_media_t;

/* Append the media playlist to out. 0, -EINVAL (a segment without a URI), or -ENOBUFS. */
int pk_hls_write_media(const pk_hls_media_t *m, cb_buf_t *out);

/* CAN-SKIP-UNTIL, in target durations: the least the specification allows */
#define PK_HLS_SKIP_TARGETS 6

/*
 * A Playlist Delta Update (RFC 8216bis 6.2.5.1, what ?_HLS_skip=YES asks
 * for) of a live media playlist's text: the segments that end further from
 * the playlist's end than its CAN-SKIP-UNTIL, with their tags, become one
 * EXT-X-SKIP; EXT-X-VERSION goes to 9; the EXT-X-MAP (and EXT-X-KEY) that
 * the first segment kept plays with is repeated before it when it was
 * skipped. Every other line stays as it is.
 *
 * text is read as bytes from storage (any replica, any version wrote it):
 * appends to out and returns 0, or -ENOENT when there is nothing to skip
 * (no CAN-SKIP-UNTIL, EXT-X-ENDLIST, or no segment that far back: the
 * whole playlist is the answer), -EINVAL (not a media playlist), -ENOBUFS.
 */
int pk_hls_delta(const char *text, size_t len, cb_buf_t *out);

typedef struct pk_hls_variant {
    const char *uri;     /* the rendition's media playlist */
    int64_t peak_bps;    /* BANDWIDTH before the audio is added */
    int64_t average_bps; /* AVERAGE-BANDWIDTH before the audio is added; 0: leave out */
    int width, height;   /* RESOLUTION */
    double fps;          /* FRAME-RATE; 0: leave out */
    const char *codecs;  /* "avc1.64001f" */
} pk_hls_variant_t;

typedef struct pk_hls_master {
    const pk_hls_variant_t *variants; /* in the order players should see them */
    size_t n;
    const char *audio_uri;    /* the audio rendition's playlist; NULL: no audio */
    const char *audio_codecs; /* "mp4a.40.2" */
    int64_t audio_bps;
    int audio_channels;
} pk_hls_master_t;

/*
 * Append the multivariant playlist: one EXT-X-STREAM-INF per variant, the
 * audio as an EXT-X-MEDIA group the variants refer to (its bitrate added to
 * theirs, its codec to their CODECS). Without video variants the audio
 * playlist is the one variant. 0, -EINVAL (nothing to list), or -ENOBUFS.
 */
int pk_hls_write_master(const pk_hls_master_t *m, cb_buf_t *out);

#endif /* PACKAGER_HLS_H */

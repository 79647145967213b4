/*
 * packager_dash.h - DASH MPDs (ISO/IEC 23009-1, profile isoff-live) for the
 * same CMAF segments HLS lists: a dynamic MPD for live with a DVR window,
 * a static one for VOD.
 *
 * A Period per run of segments the players can play straight through: a
 * new one begins after a gap (a failed or missing job), at a discontinuity
 * (a timestamp reset) and where an init segment changes. Players handle a
 * Period boundary; a hole inside a SegmentTimeline stalls dash.js. Each
 * Period has one AdaptationSet for the video rungs and one for the audio.
 * Each Representation has a SegmentTemplate whose media pattern is
 * "<rendition>/$Time$.m4s" on a 90 kHz timescale (the origin finds the
 * worker's file, named with 13 digits, from it), presentationTimeOffset
 * the Period's first media time (VOD: the set's own first segment's), and a
 * SegmentTimeline (S@t, S@d, S@r
 * run-length coded) shared by the rungs of a set, since every rung is cut
 * at the same times.
 *
 * Pure text, like packager_hls: the same input gives the same bytes.
 */
#ifndef PACKAGER_DASH_H
#define PACKAGER_DASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct pk_dash_seg {
    int64_t start_90k;
    int64_t duration_90k;
} pk_dash_seg_t;

typedef struct pk_dash_rep {
    const char *id;       /* the rendition name, also the directory of its segments */
    const char *init_uri; /* its init segment, relative to the MPD */
    const char *codecs;
    int64_t bandwidth_bps;
    int width, height; /* video */
    double fps;        /* video; 0: leave out */
    int sample_rate;   /* audio */
    int channels;      /* audio */
} pk_dash_rep_t;

typedef struct pk_dash_set {
    bool video;
    const pk_dash_rep_t *reps;
    size_t nreps;
    const pk_dash_seg_t *segs; /* the set's timeline, in time order, gaps left out */
    size_t nsegs;
} pk_dash_set_t;

typedef struct pk_dash_period {
    int64_t id;       /* written "p<id>": the media sequence number it opened with */
    int64_t start_ms; /* Period@start: from availabilityStartTime (dynamic), from 0 (static) */
    int64_t pto_90k;  /* media time at its start (static: each set's first segment's) */
    const pk_dash_set_t *sets;
    size_t nsets;
} pk_dash_period_t;

typedef struct pk_dash_mpd {
    bool dynamic;                  /* live (true) or VOD/ended (false) */
    int64_t availability_start_ms; /* dynamic: wall clock of presentation time 0 */
    int64_t publish_ms;            /* dynamic: when this MPD was made */
    int64_t dvr_window_s;          /* dynamic: timeShiftBufferDepth */
    int64_t update_period_ms;      /* dynamic: minimumUpdatePeriod */
    int64_t presentation_delay_ms; /* dynamic: suggestedPresentationDelay */
    int64_t latency_target_ms;     /* dynamic: ServiceDescription Latency@target (behind the
                                    * wall clock; PlaybackRate 1, no catch-up); 0: none */
    int64_t min_buffer_ms;
    int64_t max_segment_ms;          /* maxSegmentDuration */
    const char *utc_timing_uri;      /* dynamic: UTCTiming http-iso source; NULL: none */
    int64_t duration_ms;             /* static: mediaPresentationDuration */
    const pk_dash_period_t *periods; /* in time order */
    size_t nperiods;
} pk_dash_mpd_t;

/* Append the MPD. 0, -EINVAL (no period, or a period, set or representation missing
 * what it needs), or -ENOBUFS. */
int pk_dash_write_mpd(const pk_dash_mpd_t *m, cb_buf_t *out);

#endif /* PACKAGER_DASH_H */

/*
 * packager_timeline.h - one stream's timeline: which media segments the
 * playlists list, in which order, with which sequence numbers.
 *
 * Transcode results (one per source segment, "job") arrive in any order
 * from any worker. The timeline publishes them in job order: a result
 * ahead of a missing one waits in `pending` until the missing one arrives
 * or has been waited for long enough (pk_tl_expire), and then the missing
 * time range becomes a gap, cut into pieces of the target duration so the
 * players' segment arithmetic holds. A failed job is a gap at once.
 *
 * Entries are the output segments: one job gives one or more (a 4 s source
 * segment becomes two 2 s CMAF segments). Entry k of every rendition
 * starts at the same time, since the worker cuts every rung at the same
 * places; each rendition's file of an entry is a `piece`.
 *
 * What cannot be derived again from the results in storage (the front of
 * the window, the media sequence number there, the gaps declared, the end)
 * is the timeline's `state`, a small JSON document the packager keeps in
 * storage: after a restart the state and the results in storage give the
 * same entries with the same numbers (pk_tl_state_load + pk_tl_add).
 *
 * Thread safety: none; the packager holds the stream's lock.
 */
#ifndef PACKAGER_TIMELINE_H
#define PACKAGER_TIMELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cb_proto.h"
#include "packager_hls.h"

#define PK_MAX_RENDITIONS 16
#define PK_MAX_PENDING    64 /* results held behind a missing one */
#define PK_MAX_GAPS       4096
#define PK_MAX_INITS      1024
/* Bounds on what a result or a state may say, so no sum overflows and no
 * gap makes unbounded entries: timestamps and sequence numbers within
 * 2^53 (JSON's exact integers), one gap's range within an hour. */
#define PK_MAX_NUMBER  (INT64_C(1) << 53)
#define PK_MAX_PTS     (INT64_C(1) << 52) /* a start plus any duration stays below 2^53 */
#define PK_MAX_GAP_90K (INT64_C(3600) * 90000)

typedef struct pk_rendition {
    char name[33];
    bool video;
    char codecs[65];
    int width, height;
    double fps;
    int64_t peak_bps;          /* highest bitrate of one job in the stream */
    int64_t bytes, dur_90k;    /* totals, for the average bitrate */
    int64_t target_bps;        /* what the rung is encoded for */
    int sample_rate, channels; /* audio */
} pk_rendition_t;

typedef struct pk_piece {
    int64_t start_90k, dur_90k; /* dur 0: the rendition has no file for this entry */
    int64_t bytes;
    int32_t init;               /* index into the timeline's init paths */
    uint8_t nparts;             /* low latency: its chunks (in the entry's allocation) */
    const pk_hls_part_t *parts; /* as the playlist lists them */
} pk_piece_t;

typedef struct pk_entry {
    int64_t msn; /* media sequence number */
    int64_t seq; /* the job it came from */
    int64_t start_90k, dur_90k;
    int64_t pdt_ms; /* wall clock of its first sample */
    bool gap;
    bool disc;          /* a discontinuity before it */
    int32_t part;       /* its index among the entries of its job */
    pk_piece_t *pieces; /* [npieces], by rendition index; NULL for a gap */
    uint8_t npieces;
} pk_entry_t;

typedef struct pk_gap {
    int64_t seq;                /* the first job given up */
    int64_t count;              /* jobs seq .. seq + count - 1 */
    int64_t start_90k, dur_90k; /* the time range the gap entries cover (dur 0: none) */
    int64_t wall_ms;            /* wall clock of its start when a discontinuity re-anchors
                              * there (a failed result's ingest clock); 0: unknown */
    bool disc;
} pk_gap_t;

/* The entry a DASH Period opens with (see pk_tl_opens_period). */
typedef struct pk_period_open {
    int64_t msn, start_90k, pdt_ms;
} pk_period_open_t;

typedef struct pk_timeline {
    char stream[65];
    int64_t target_90k; /* segment duration gaps are cut into */

    pk_rendition_t rend[PK_MAX_RENDITIONS];
    size_t nrend;
    char **inits; /* storage keys of init segments, by index */
    size_t ninits, capinits;

    pk_entry_t *e; /* the entries, e[head..head+n) in time order */
    size_t head, n, cap;

    /* the state (see above) */
    int64_t first_seq;  /* first job whose entries may still be listed; -1: none yet */
    int64_t first_msn;  /* msn of that job's first entry */
    int64_t window_msn; /* entries numbered below this have left the window */
    int64_t disc_seq;   /* discontinuities that left the window */
    pk_gap_t *gaps;     /* jobs declared missing or failed, by seq */
    size_t ngaps;
    bool ended;                      /* the session ended */
    int64_t end_seq;                 /* the job that ended it */
    int64_t started_ms;              /* wall clock of the session's start */
    int64_t front_pts, front_pdt_ms; /* the clock at the window's front, so a replay
                                      * that starts in a gap still has one */
    int64_t session_seq;             /* the job the session started with (names its VOD asset) */
    int64_t ast_ms;                  /* wall clock the session's DASH times count from: its
                                      * first entry's; 0 until there is one */
    pk_period_open_t period;         /* where the DASH Period of the window's front opened
                                      * (msn -1: at the front) */

    int64_t next_seq; /* the next job to publish */
    int64_t next_msn;
    int64_t end_90k;               /* end of the last entry */
    int64_t anchor_pts, anchor_ms; /* pdt = anchor_ms + (pts - anchor_pts) / 90 */
    bool anchored;

    cb_proto_transcode_done_t *pending[PK_MAX_PENDING]; /* sorted by seq */
    int64_t pending_since_ms[PK_MAX_PENDING];
    size_t npending;

    cb_proto_packaging_t packaging; /* of the newest result */
    int64_t last_finished_ms;       /* when the newest published result was durable */
} pk_timeline_t;

typedef enum pk_tl_result {
    PK_TL_PUBLISHED, /* the result (and maybe pending ones after it) is in the entries */
    PK_TL_PENDING,   /* held until the ones before it arrive */
    PK_TL_DUPLICATE, /* seen before: nothing changed */
    PK_TL_LATE,      /* its time range was given up as a gap already */
    PK_TL_REOPENED,  /* a new session after the end: the window starts over */
} pk_tl_result_t;

pk_timeline_t *pk_tl_new(const char *stream_id, int64_t target_90k);
void pk_tl_free(pk_timeline_t *tl);

/* Entry i of the window (0 = oldest). */
static inline pk_entry_t *pk_tl_entry(const pk_timeline_t *tl, size_t i)
{
    return &tl->e[tl->head + i];
}

/* The init segment key of a piece. */
const char *pk_tl_init(const pk_timeline_t *tl, const pk_piece_t *p);

/*
 * Add a result. The timeline takes `d` (released and freed by it). Returns
 * a pk_tl_result_t, or -EINVAL with the reason in err (a result that does
 * not fit: rendition without segments, too many renditions, numbers out of
 * range...), -ENOSPC (too many results waiting: try again later), -ENOMEM.
 * *state_changed tells the caller to store the state again.
 *
 * A result after the end of a session (seq above end_seq) starts the next
 * session; results that wait behind the end do too, once waited for.
 */
int pk_tl_add(pk_timeline_t *tl, cb_proto_transcode_done_t *d, int64_t now_ms, bool *state_changed,
              char *err, size_t errlen);

/*
 * Give up waiting: pending results held longer than wait_ms have the
 * missing jobs before them declared gaps, and are published. It stops at
 * the end of a session (a next call starts the next one). Returns how many
 * results and given-up ranges went in (the state changed when > 0).
 */
int pk_tl_expire(pk_timeline_t *tl, int64_t now_ms, int64_t wait_ms);

/* When the oldest pending result started waiting; 0: none waits. */
int64_t pk_tl_waiting_since(const pk_timeline_t *tl);

/* Publish what is due after a replay (trailing gaps of the state). */
int pk_tl_advance(pk_timeline_t *tl);

/*
 * The first entry within window_s seconds of the live edge (at least three
 * target durations and three entries are kept), and the discontinuity
 * sequence a playlist starting there has.
 */
size_t pk_tl_window_start(const pk_timeline_t *tl, int64_t window_s);
int64_t pk_tl_disc_seq_at(const pk_timeline_t *tl, size_t start);

/*
 * Drop what is older than the window (pk_tl_window_start): each entry is
 * passed to gone() first (its files may be deleted then). Nothing leaves an
 * ended timeline: it is the VOD asset. Returns how many left (the state
 * changed when > 0).
 */
int pk_tl_trim(pk_timeline_t *tl, int64_t window_s,
               void (*gone)(void *arg, const pk_timeline_t *tl, const pk_entry_t *e), void *arg);

/*
 * Whether entry i opens a DASH Period: the first entry with media after a
 * gap, at a discontinuity, or where an init segment changes. Players play
 * through a Period boundary but not through a hole in a SegmentTimeline.
 * The front entry opens one unless the state says its Period opened
 * earlier (tl->period).
 */
bool pk_tl_opens_period(const pk_timeline_t *tl, size_t i);

/* Where the Period of entry i (one with media) opened, which may be before
 * the window. */
pk_period_open_t pk_tl_period_of(const pk_timeline_t *tl, size_t i);

/* Duration of the window, 90 kHz. */
int64_t pk_tl_duration_90k(const pk_timeline_t *tl);

/* The state as JSON (new reference), and back: 0 or -EINVAL with err. */
json_t *pk_tl_state_dump(const pk_timeline_t *tl);
int pk_tl_state_load(pk_timeline_t *tl, const json_t *state, char *err, size_t errlen);

#endif /* PACKAGER_TIMELINE_H */

/*
 * Tests of the packager's stream timeline (packager_timeline.c): results in
 * and out of order, duplicates, gaps declared by waiting or by failed jobs,
 * discontinuities, the sliding window, the end of a session and a new one,
 * the bounds on what a result or a state may say, and above all the replay
 * property: the state document plus the results in storage give back the
 * same entries with the same numbers (and the same wall clock, within the
 * millisecond a division rounds away).
 *
 * Results are TranscodeDone JSON documents written here and decoded with the
 * generated decoder, as the packager gets them from Kafka or storage. The
 * "now" passed to the timeline is a plain monotonic millisecond count.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cb_proto.h"
#include "clock.h"
#include "defs.h"
#include "packager_render.h"
#include "packager_timeline.h"

#define TARGET 180000          /* the target segment duration: 2 s at 90 kHz */
#define JOB    (2 * TARGET)    /* a source segment: 4 s, two CMAF segments */
#define T0_MS  1795313400000LL /* 2026-11-22T02:10:00.000Z, the wall clock at pts 0 */
#define WAIT   2000            /* how long a missing result is waited for, ms */

/* ---- results ---- */

typedef struct job {
    int64_t seq;
    bool failed;
    bool disc, eos;
    bool no_renditions; /* an "ok" result without any (invalid) */
    bool audio_first;   /* list the audio rendition before the video one */
    bool unordered;     /* the video segments out of time order (invalid) */
    int64_t start_90k, dur_90k;
    int nseg; /* media segments of each rendition, dur_90k / nseg each */
    int64_t wallclock_ms;
    int init; /* > 0: the renditions' init segments are init-<init>.mp4 */
} job_t;

/* Job seq of a steady stream: 4 s each, wall clock in step with the pts. */
static job_t job(int64_t seq)
{
    return (job_t){ .seq = seq,
                    .start_90k = seq * JOB,
                    .dur_90k = JOB,
                    .nseg = 2,
                    .wallclock_ms = T0_MS + seq * JOB / 90 };
}

static job_t failed_job(int64_t seq)
{
    job_t j = job(seq);

    j.failed = true;
    return j;
}

static job_t eos_job(int64_t seq)
{
    job_t j = job(seq);

    j.eos = true;
    return j;
}

typedef struct sb {
    char buf[16384];
    size_t len;
} sb_t;

static void sb_add(sb_t *s, const char *fmt, ...) CB_PRINTF(2, 3);

static void sb_add(sb_t *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(s->buf + s->len, sizeof(s->buf) - s->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t) n < sizeof(s->buf) - s->len);
    s->len += (size_t) n;
}

static void rendition_json(sb_t *s, const job_t *j, bool video)
{
    const char *name = video ? "720p" : "audio";
    int64_t seg = j->dur_90k / j->nseg;
    int k;

    if (video)
        sb_add(s,
               "{\"name\":\"720p\",\"kind\":\"video\",\"codecs\":\"avc1.64001f\",\"width\":1280,"
               "\"height\":720,\"fps\":30.0,\"bandwidth_bps\":%lld,\"target_bitrate_bps\":3000000,",
               2900000LL + (long long) j->seq);
    else
        sb_add(s, "{\"name\":\"audio\",\"kind\":\"audio\",\"codecs\":\"mp4a.40.2\",\"sample_rate\":"
                  "48000,\"channels\":2,\"bandwidth_bps\":128000,");
    if (j->init > 0)
        sb_add(s, "\"init_path\":\"live/s1/%s/init-%d.mp4\",\"segments\":[", name, j->init);
    else
        sb_add(s, "\"init_path\":\"live/s1/%s/init.mp4\",\"segments\":[", name);
    for (k = 0; k < j->nseg; k++) {
        int64_t start = j->start_90k + k * seg;
        if (video && j->unordered)
            start = j->start_90k + (j->nseg - 1 - k) * seg;
        sb_add(s,
               "%s{\"path\":\"live/s1/%s/%lld.m4s\",\"start_pts_90k\":%lld,\"duration_90k\":%lld,"
               "\"bytes\":%lld}",
               k ? "," : "", name, (long long) start, (long long) start, (long long) seg,
               (long long) (video ? 400000 : 16000) + j->seq);
    }
    sb_add(s, "]}");
}

/* The TranscodeDone JSON of a job. */
static void done_json(sb_t *s, const job_t *j)
{
    s->len = 0;
    sb_add(s,
           "{\"v\":1,\"job_id\":\"s1:%lld\",\"kind\":\"live\",\"stream_id\":\"s1\",\"seq\":%lld,"
           "\"status\":\"%s\",%s\"start_pts_90k\":%lld,\"duration_90k\":%lld,"
           "\"discontinuity\":%s,\"end_of_stream\":%s,\"packaging\":{\"dvr_window_s\":8},"
           "\"renditions\":[",
           (long long) j->seq, (long long) j->seq, j->failed ? "failed" : "ok",
           j->failed ? "\"error\":\"decoder error\"," : "", (long long) j->start_90k,
           (long long) j->dur_90k, j->disc ? "true" : "false", j->eos ? "true" : "false");
    if (!j->failed && !j->no_renditions) {
        rendition_json(s, j, !j->audio_first);
        sb_add(s, ",");
        rendition_json(s, j, j->audio_first);
    }
    sb_add(s, "],\"worker\":\"tw-1\",\"finished_at_ms\":%lld,\"ingest_wallclock_ms\":%lld}",
           (long long) (j->wallclock_ms + j->dur_90k / 90 + 1500), (long long) j->wallclock_ms);
}

/* A decoded result on the heap, as pk_tl_add takes it. */
static cb_proto_transcode_done_t *done_new(const job_t *j)
{
    cb_proto_transcode_done_t *d = calloc(1, sizeof(*d));
    cb_jsonv_error_t verr;
    sb_t s;

    assert_non_null(d);
    done_json(&s, j);
    if (cb_proto_transcode_done_decode(s.buf, s.len, d, &verr))
        fail_msg("job %lld does not decode: %s\n%s", (long long) j->seq, verr.text, s.buf);
    return d;
}

/* Add a decoded result; a valid result never gets an error. */
static int add_done(pk_timeline_t *tl, cb_proto_transcode_done_t *d, int64_t now_ms, bool *changed)
{
    char err[256] = "";
    int64_t seq = d->seq;
    bool ch;
    int rc = pk_tl_add(tl, d, now_ms, changed ? changed : &ch, err, sizeof(err));

    if (rc < 0)
        fail_msg("job %lld: pk_tl_add: %d (%s)", (long long) seq, rc, err);
    return rc;
}

/* Add a job's result; a valid result never gets an error. */
static int add(pk_timeline_t *tl, job_t j, int64_t now_ms, bool *changed)
{
    return add_done(tl, done_new(&j), now_ms, changed);
}

/* ---- entries ---- */

static void assert_entry(const pk_timeline_t *tl, size_t i, int64_t msn, int64_t seq,
                         int64_t start_90k, int64_t dur_90k, bool gap, bool disc)
{
    const pk_entry_t *e;

    if (i >= tl->n)
        fail_msg("entry %zu: only %zu entries", i, tl->n);
    e = pk_tl_entry(tl, i);
    if (e->msn != msn || e->seq != seq || e->start_90k != start_90k || e->dur_90k != dur_90k ||
        e->gap != gap || e->disc != disc)
        fail_msg("entry %zu: got msn %lld seq %lld start %lld dur %lld gap %d disc %d; want msn "
                 "%lld seq %lld start %lld dur %lld gap %d disc %d",
                 i, (long long) e->msn, (long long) e->seq, (long long) e->start_90k,
                 (long long) e->dur_90k, e->gap, e->disc, (long long) msn, (long long) seq,
                 (long long) start_90k, (long long) dur_90k, gap, disc);
    if (gap) {
        assert_null(e->pieces);
        assert_int_equal(e->npieces, 0);
    }
}

/* Gap record i: jobs seq .. seq + count - 1, the range it covers, its clock. */
static void assert_gap(const pk_timeline_t *tl, size_t i, int64_t seq, int64_t count,
                       int64_t start_90k, int64_t dur_90k, int64_t wall_ms, bool disc)
{
    const pk_gap_t *g;

    if (i >= tl->ngaps)
        fail_msg("gap %zu: only %zu gaps", i, tl->ngaps);
    g = &tl->gaps[i];
    if (g->seq != seq || g->count != count || g->start_90k != start_90k || g->dur_90k != dur_90k ||
        g->wall_ms != wall_ms || g->disc != disc)
        fail_msg("gap %zu: got seq %lld count %lld start %lld dur %lld wall %lld disc %d; want "
                 "seq %lld count %lld start %lld dur %lld wall %lld disc %d",
                 i, (long long) g->seq, (long long) g->count, (long long) g->start_90k,
                 (long long) g->dur_90k, (long long) g->wall_ms, g->disc, (long long) seq,
                 (long long) count, (long long) start_90k, (long long) dur_90k, (long long) wall_ms,
                 disc);
}

/* The entries, msn by msn, are numbered without a hole. */
static void assert_numbered(const pk_timeline_t *tl)
{
    size_t i;

    for (i = 1; i < tl->n; i++)
        assert_int_equal(pk_tl_entry(tl, i)->msn, pk_tl_entry(tl, i - 1)->msn + 1);
    if (tl->n) {
        assert_true(pk_tl_entry(tl, 0)->msn >= tl->window_msn);
        assert_int_equal(pk_tl_entry(tl, tl->n - 1)->msn + 1, tl->next_msn);
    }
}

/* An ended timeline lists nothing after its end. */
static void assert_nothing_after_end(const pk_timeline_t *tl)
{
    size_t i;

    for (i = 0; tl->ended && i < tl->n; i++)
        if (pk_tl_entry(tl, i)->seq > tl->end_seq)
            fail_msg("the ended session lists job %lld, after its end (job %lld)",
                     (long long) pk_tl_entry(tl, i)->seq, (long long) tl->end_seq);
}

typedef struct gone_log {
    int64_t msn[256];
    bool gap[256];
    size_t n;
} gone_log_t;

static void gone(void *arg, const pk_timeline_t *tl, const pk_entry_t *e)
{
    gone_log_t *g = arg;

    assert_non_null(tl);
    assert_true(g->n < CB_ARRAY_LEN(g->msn));
    g->msn[g->n] = e->msn;
    g->gap[g->n] = e->gap;
    g->n++;
}

/* ---- state ---- */

/* The state a timeline dumps, as the text the packager stores. */
static char *state_text_of(const pk_timeline_t *tl)
{
    json_t *st = pk_tl_state_dump(tl);
    char *text;

    assert_non_null(st);
    text = json_dumps(st, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    json_decref(st);
    return text;
}

/* Load the state text into tl; it must load. */
static void load_text(pk_timeline_t *tl, const char *text)
{
    json_t *st = json_loads(text, 0, NULL);
    char err[256] = "";

    assert_non_null(st);
    if (pk_tl_state_load(tl, st, err, sizeof(err)))
        fail_msg("the state a timeline dumps does not load: %s\n%s", err, text);
    json_decref(st);
}

/* ---- replay ---- */

/* What storage holds: the results that came, first arrival of each seq. */
typedef struct store {
    job_t jobs[64];
    size_t n;
} store_t;

static void store_put(store_t *s, job_t j)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (s->jobs[i].seq == j.seq)
            return;
    assert_true(s->n < CB_ARRAY_LEN(s->jobs));
    s->jobs[s->n++] = j;
}

static int job_cmp(const void *a, const void *b)
{
    const job_t *x = a, *y = b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * What a restarted packager rebuilds from a's state (through its JSON text,
 * as it is stored) and the ok results in storage from first_seq on, in seq
 * order. Returns the new timeline (the caller frees it).
 */
static pk_timeline_t *replay(const pk_timeline_t *a, const store_t *st)
{
    pk_timeline_t *b = pk_tl_new("s1", TARGET);
    char *text = state_text_of(a);
    job_t sorted[64];
    size_t i;

    assert_non_null(b);
    load_text(b, text);
    free(text);
    memcpy(sorted, st->jobs, st->n * sizeof(*sorted));
    qsort(sorted, st->n, sizeof(*sorted), job_cmp);
    for (i = 0; i < st->n; i++)
        if (!sorted[i].failed && sorted[i].seq >= a->first_seq)
            add(b, sorted[i], 1, NULL);
    pk_tl_advance(b);
    return b;
}

/*
 * b (replayed) has the entries of a, with the same numbers and the same
 * wall clock within a millisecond (b's clock may be anchored at the
 * window's front, a's further back: the division by 90 rounds differently),
 * and the same state.
 */
static void assert_same_entries(const pk_timeline_t *a, const pk_timeline_t *b, const char *when)
{
    char *sa, *sb;
    size_t i;

    if (a->n != b->n)
        fail_msg("%s: replay has %zu entries, the live timeline %zu (first msn %lld vs %lld)", when,
                 b->n, a->n, (long long) (b->n ? pk_tl_entry(b, 0)->msn : -1),
                 (long long) (a->n ? pk_tl_entry(a, 0)->msn : -1));
    for (i = 0; i < a->n; i++) {
        const pk_entry_t *x = pk_tl_entry(a, i), *y = pk_tl_entry(b, i);
        if (x->msn != y->msn || x->seq != y->seq || x->start_90k != y->start_90k ||
            x->dur_90k != y->dur_90k || x->gap != y->gap || x->disc != y->disc ||
            x->part != y->part)
            fail_msg("%s: entry %zu differs: live msn %lld seq %lld start %lld dur %lld gap %d "
                     "disc %d part %d, replay msn %lld seq %lld start %lld dur %lld gap %d disc %d "
                     "part %d",
                     when, i, (long long) x->msn, (long long) x->seq, (long long) x->start_90k,
                     (long long) x->dur_90k, x->gap, x->disc, x->part, (long long) y->msn,
                     (long long) y->seq, (long long) y->start_90k, (long long) y->dur_90k, y->gap,
                     y->disc, y->part);
        if (llabs(x->pdt_ms - y->pdt_ms) > 1)
            fail_msg("%s: entry %zu (msn %lld) starts at wall clock %lld live, %lld replayed", when,
                     i, (long long) x->msn, (long long) x->pdt_ms, (long long) y->pdt_ms);
    }
    if (pk_tl_disc_seq_at(a, 0) != pk_tl_disc_seq_at(b, 0))
        fail_msg("%s: discontinuity sequence %lld after replay, %lld live", when,
                 (long long) pk_tl_disc_seq_at(b, 0), (long long) pk_tl_disc_seq_at(a, 0));
    assert_int_equal(a->next_msn, b->next_msn);
    assert_int_equal(a->next_seq, b->next_seq);
    assert_int_equal(a->npending, b->npending);
    /* first_seq, first_msn, window_msn, the end, the session, the gaps... */
    sa = state_text_of(a);
    sb = state_text_of(b);
    if (strcmp(sa, sb) != 0)
        fail_msg("%s: the state differs after replay:\nlive   %s\nreplay %s", when, sa, sb);
    free(sa);
    free(sb);
}

static void check_replay(const pk_timeline_t *a, const store_t *st, const char *when)
{
    pk_timeline_t *b = replay(a, st);

    assert_numbered(a);
    assert_same_entries(a, b, when);
    pk_tl_free(b);
}

/* Frees the timeline a test left in *state when it failed. */
static int free_timeline(void **state)
{
    pk_tl_free(*state);
    *state = NULL;
    return 0;
}

/* ---- tests ---- */

/* Two renditions, two segments each per job: entries numbered 0, 1, 2, 3. */
static void test_in_order(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    job_t j1 = job(1);
    int64_t before, after;
    bool changed;
    size_t i;

    (void) state;
    assert_non_null(tl);
    assert_int_equal(tl->first_seq, -1);
    before = cb_clock_wall_ms();
    assert_int_equal(add(tl, job(0), 1000, &changed), PK_TL_PUBLISHED);
    after = cb_clock_wall_ms();
    assert_true(changed);  /* the stream started */
    j1.audio_first = true; /* the order of the renditions in a result does not matter */
    assert_int_equal(add(tl, j1, 1100, &changed), PK_TL_PUBLISHED);
    assert_false(changed);

    assert_int_equal(tl->n, 4);
    assert_int_equal(tl->nrend, 2);
    assert_string_equal(tl->rend[0].name, "720p");
    assert_true(tl->rend[0].video);
    assert_string_equal(tl->rend[0].codecs, "avc1.64001f");
    assert_int_equal(tl->rend[0].width, 1280);
    assert_int_equal(tl->rend[0].height, 720);
    assert_int_equal(tl->rend[0].peak_bps, 2900001);
    assert_int_equal(tl->rend[0].target_bps, 3000000);
    assert_int_equal(tl->rend[0].bytes, 2 * 400000 + 2 * 400001);
    assert_int_equal(tl->rend[0].dur_90k, 2 * JOB);
    assert_string_equal(tl->rend[1].name, "audio");
    assert_false(tl->rend[1].video);
    assert_int_equal(tl->rend[1].sample_rate, 48000);
    assert_int_equal(tl->rend[1].channels, 2);
    for (i = 0; i < 4; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, i);
        int64_t start = (int64_t) i * TARGET, seq = (int64_t) i / 2;

        assert_entry(tl, i, (int64_t) i, seq, start, TARGET, false, false);
        assert_int_equal(e->part, i % 2);
        assert_int_equal(e->pdt_ms, T0_MS + start / 90);
        assert_int_equal(e->npieces, 2);
        assert_int_equal(e->pieces[0].start_90k, start);
        assert_int_equal(e->pieces[0].dur_90k, TARGET);
        assert_int_equal(e->pieces[0].bytes, 400000 + seq);
        assert_string_equal(pk_tl_init(tl, &e->pieces[0]), "live/s1/720p/init.mp4");
        assert_int_equal(e->pieces[1].start_90k, start);
        assert_int_equal(e->pieces[1].bytes, 16000 + seq);
        assert_string_equal(pk_tl_init(tl, &e->pieces[1]), "live/s1/audio/init.mp4");
    }
    assert_int_equal(tl->first_seq, 0);
    assert_int_equal(tl->first_msn, 0);
    assert_int_equal(tl->next_seq, 2);
    assert_int_equal(tl->next_msn, 4);
    assert_int_equal(tl->session_seq, 0);
    /* the wall clock at the start, not the monotonic "now" given to pk_tl_add */
    assert_in_range(tl->started_ms, before, after);
    assert_int_equal(tl->ngaps, 0);
    assert_int_equal(tl->end_90k, 2 * JOB);
    assert_int_equal(pk_tl_duration_90k(tl), 2 * JOB);
    assert_int_equal(pk_tl_waiting_since(tl), 0);
    assert_int_equal(tl->last_finished_ms, j1.wallclock_ms + JOB / 90 + 1500);
    assert_int_equal(tl->packaging.dvr_window_s, 8);
    /* nothing trimmed yet: no clock at the front to keep */
    assert_int_equal(tl->front_pts, 0);
    assert_int_equal(tl->front_pdt_ms, 0);
    pk_tl_free(tl);
    pk_tl_free(NULL);
}

/* A result ahead of a missing one waits; a result seen before changes nothing. */
static void test_out_of_order_and_duplicates(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    bool changed;

    (void) state;
    assert_int_equal(add(tl, job(0), 1000, NULL), PK_TL_PUBLISHED);
    assert_int_equal(add(tl, job(2), 1100, &changed), PK_TL_PENDING);
    assert_false(changed);
    assert_int_equal(tl->n, 2);
    assert_int_equal(tl->npending, 1);
    assert_int_equal(pk_tl_waiting_since(tl), 1100);
    assert_int_equal(add(tl, job(1), 1200, &changed), PK_TL_PUBLISHED);
    assert_int_equal(tl->npending, 0);
    assert_int_equal(pk_tl_waiting_since(tl), 0);
    assert_int_equal(tl->n, 6);
    assert_entry(tl, 2, 2, 1, JOB, TARGET, false, false);
    assert_entry(tl, 3, 3, 1, JOB + TARGET, TARGET, false, false);
    assert_entry(tl, 4, 4, 2, 2 * JOB, TARGET, false, false);
    assert_entry(tl, 5, 5, 2, 2 * JOB + TARGET, TARGET, false, false);
    assert_int_equal(tl->next_seq, 3);

    /* published before, or waiting already */
    assert_int_equal(add(tl, job(1), 1300, &changed), PK_TL_DUPLICATE);
    assert_false(changed);
    assert_int_equal(add(tl, job(0), 1300, NULL), PK_TL_DUPLICATE);
    assert_int_equal(add(tl, job(4), 1400, NULL), PK_TL_PENDING);
    assert_int_equal(add(tl, job(4), 1500, &changed), PK_TL_DUPLICATE);
    assert_false(changed);
    assert_int_equal(tl->npending, 1);
    assert_int_equal(pk_tl_waiting_since(tl), 1400);
    assert_int_equal(tl->n, 6);
    assert_numbered(tl);
    pk_tl_free(tl);

    /* a brand-new stream whose job 1 comes before job 0 */
    tl = pk_tl_new("s1", TARGET);
    assert_int_equal(add(tl, job(1), 1000, NULL), PK_TL_PENDING);
    assert_int_equal(tl->first_seq, -1);
    assert_int_equal(add(tl, job(0), 1100, &changed), PK_TL_PUBLISHED);
    assert_true(changed);
    assert_int_equal(tl->n, 4);
    assert_int_equal(tl->first_seq, 0);
    assert_entry(tl, 3, 3, 1, JOB + TARGET, TARGET, false, false);
    pk_tl_free(tl);
}

/* Joining a stream in progress: its first result waits, then starts it. */
static void test_new_stream_starts_after_wait(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    int64_t before, after;

    (void) state;
    assert_int_equal(add(tl, job(5), 1000, NULL), PK_TL_PENDING);
    assert_int_equal(tl->n, 0);
    assert_int_equal(tl->first_seq, -1);
    assert_int_equal(pk_tl_waiting_since(tl), 1000);
    assert_int_equal(pk_tl_advance(tl), 0); /* not started: nothing is due */
    assert_int_equal(pk_tl_expire(tl, 1000 + WAIT - 1, WAIT), 0);
    assert_int_equal(tl->n, 0);
    before = cb_clock_wall_ms();
    assert_int_equal(pk_tl_expire(tl, 1000 + WAIT, WAIT), 1);
    after = cb_clock_wall_ms();
    assert_int_equal(tl->first_seq, 5);
    assert_int_equal(tl->session_seq, 5);
    assert_in_range(tl->started_ms, before, after); /* wall clock, not 1000 + WAIT */
    assert_int_equal(tl->ngaps, 0);                 /* nothing before it is a gap */
    assert_int_equal(tl->n, 2);
    assert_entry(tl, 0, 0, 5, 5 * JOB, TARGET, false, false);
    assert_int_equal(pk_tl_entry(tl, 0)->pdt_ms, T0_MS + 5 * JOB / 90);
    assert_int_equal(add(tl, job(6), 4000, NULL), PK_TL_PUBLISHED);
    assert_entry(tl, 3, 3, 6, 6 * JOB + TARGET, TARGET, false, false);
    /* before the start: not ours to list */
    assert_int_equal(add(tl, job(4), 4000, NULL), PK_TL_DUPLICATE);
    assert_int_equal(tl->n, 4);
    pk_tl_free(tl);
}

/*
 * A missing job waited for long enough becomes a gap; arriving late it stays
 * one. Several missing in a row are one gap record: a range of jobs, whose
 * time range is cut into target-sized gap entries, all with the seq of its
 * first job. pk_tl_expire counts what went in: each result, and each range
 * given up (the header says "results": see the report of this change).
 */
static void test_expire_gap_and_late_arrival(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    bool changed;
    size_t i;

    (void) state;
    add(tl, job(0), 1000, NULL);
    add(tl, job(1), 1100, NULL);
    assert_int_equal(add(tl, job(3), 5000, NULL), PK_TL_PENDING);
    assert_int_equal(add(tl, job(4), 5500, NULL), PK_TL_PENDING);
    assert_int_equal(pk_tl_expire(tl, 5000 + WAIT - 1, WAIT), 0);
    assert_int_equal(tl->n, 4);
    assert_int_equal(pk_tl_expire(tl, 5000 + WAIT, WAIT), 3); /* job 2's gap, jobs 3 and 4 */
    assert_int_equal(tl->npending, 0);
    assert_int_equal(tl->n, 10);
    /* job 2's range, cut into target-sized gap entries, with its wall clock */
    assert_entry(tl, 4, 4, 2, 2 * JOB, TARGET, true, false);
    assert_entry(tl, 5, 5, 2, 2 * JOB + TARGET, TARGET, true, false);
    assert_int_equal(pk_tl_entry(tl, 4)->part, 0);
    assert_int_equal(pk_tl_entry(tl, 5)->part, 1);
    assert_int_equal(pk_tl_entry(tl, 4)->pdt_ms, T0_MS + 2 * JOB / 90);
    assert_int_equal(pk_tl_entry(tl, 5)->pdt_ms, T0_MS + (2 * JOB + TARGET) / 90);
    assert_entry(tl, 6, 6, 3, 3 * JOB, TARGET, false, false);
    assert_entry(tl, 9, 9, 4, 4 * JOB + TARGET, TARGET, false, false);
    assert_int_equal(tl->ngaps, 1);
    assert_gap(tl, 0, 2, 1, 2 * JOB, JOB, 0, false);

    /* the missing one arrives after all: too late, nothing changes */
    assert_int_equal(add(tl, job(2), 8000, &changed), PK_TL_LATE);
    assert_false(changed);
    assert_int_equal(tl->n, 10);
    assert_entry(tl, 4, 4, 2, 2 * JOB, TARGET, true, false);
    assert_int_equal(tl->next_seq, 5);
    assert_int_equal(add(tl, job(5), 8100, NULL), PK_TL_PUBLISHED);
    assert_entry(tl, 10, 10, 5, 5 * JOB, TARGET, false, false);

    /* jobs 6, 7, 8 missing: one gap record covers the three and their range */
    assert_int_equal(add(tl, job(9), 9000, NULL), PK_TL_PENDING);
    assert_int_equal(pk_tl_expire(tl, 9000 + WAIT, WAIT), 2);
    assert_int_equal(tl->n, 12 + 6 + 2);
    for (i = 12; i < 18; i++) {
        assert_entry(tl, i, (int64_t) i, 6, 6 * JOB + ((int64_t) i - 12) * TARGET, TARGET, true,
                     false);
        assert_int_equal(pk_tl_entry(tl, i)->part, (int32_t) i - 12);
    }
    assert_entry(tl, 18, 18, 9, 9 * JOB, TARGET, false, false);
    assert_int_equal(tl->ngaps, 2);
    assert_gap(tl, 1, 6, 3, 6 * JOB, 3 * JOB, 0, false);
    assert_int_equal(add(tl, job(6), 9500, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(7), 9500, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(8), 9500, NULL), PK_TL_LATE);
    assert_int_equal(tl->next_seq, 10);
    assert_int_equal(tl->n, 20);
    assert_numbered(tl);
    pk_tl_free(tl);
}

/*
 * A range given up whose time range is implausible has no gap entries: the
 * timestamps went backwards, jumped by more than an hour, or the result
 * after it starts a discontinuity. The jobs are still given up (LATE).
 */
static void test_expire_gap_without_range(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    const int64_t end6 = 2 * JOB + PK_MAX_GAP_90K + 1 + PK_MAX_GAP_90K + JOB; /* job 6's end */
    job_t j;

    (void) state;
    add(tl, job(0), 1000, NULL);
    /* backwards */
    j = job(2);
    j.start_90k = 0;
    add(tl, j, 1000, NULL);
    assert_int_equal(pk_tl_expire(tl, 1000 + WAIT, WAIT), 2);
    assert_gap(tl, 0, 1, 1, JOB, 0, 0, false);
    assert_int_equal(tl->n, 4);
    assert_entry(tl, 2, 2, 2, 0, TARGET, false, false);
    /* a jump of just over an hour */
    j = job(4);
    j.start_90k = JOB + PK_MAX_GAP_90K + 1;
    add(tl, j, 2000, NULL);
    assert_int_equal(pk_tl_expire(tl, 2000 + WAIT, WAIT), 2);
    assert_gap(tl, 1, 3, 1, JOB, 0, 0, false);
    assert_int_equal(tl->n, 6);
    /* exactly an hour: 1800 gap entries */
    j = job(6);
    j.start_90k = end6 - JOB;
    add(tl, j, 3000, NULL);
    assert_int_equal(pk_tl_expire(tl, 3000 + WAIT, WAIT), 2);
    assert_gap(tl, 2, 5, 1, 2 * JOB + PK_MAX_GAP_90K + 1, PK_MAX_GAP_90K, 0, false);
    assert_int_equal(tl->n, 6 + 1800 + 2);
    /* the result after the missing ones starts a discontinuity */
    j = job(9);
    j.disc = true;
    j.start_90k = end6 + 2 * JOB;
    add(tl, j, 4000, NULL);
    assert_int_equal(pk_tl_expire(tl, 4000 + WAIT, WAIT), 2);
    assert_gap(tl, 3, 7, 2, end6, 0, 0, false);
    assert_int_equal(tl->n, 6 + 1800 + 2 + 2);
    assert_true(pk_tl_entry(tl, tl->n - 2)->disc);
    assert_int_equal(add(tl, job(7), 5000, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(8), 5000, NULL), PK_TL_LATE);
    assert_numbered(tl);
    pk_tl_free(tl);
}

/* A failed job is a gap at once, cut into pieces no longer than the target. */
static void test_failed_is_gap(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    job_t f2 = failed_job(2);
    bool changed;

    (void) state;
    add(tl, job(0), 1000, NULL);
    assert_int_equal(add(tl, failed_job(1), 1100, &changed), PK_TL_PUBLISHED);
    assert_true(changed); /* the gap is part of the state */
    assert_int_equal(tl->n, 4);
    assert_entry(tl, 2, 2, 1, JOB, TARGET, true, false);
    assert_entry(tl, 3, 3, 1, JOB + TARGET, TARGET, true, false);
    assert_int_equal(pk_tl_entry(tl, 2)->pdt_ms, T0_MS + JOB / 90);
    assert_int_equal(tl->ngaps, 1);
    /* the failed result's ingest clock is kept, for a discontinuity to re-anchor at */
    assert_gap(tl, 0, 1, 1, JOB, JOB, T0_MS + JOB / 90, false);

    /* 5 s: three even pieces, not 2 + 2 + 1 */
    f2.dur_90k = 450000;
    assert_int_equal(add(tl, f2, 1200, NULL), PK_TL_PUBLISHED);
    assert_int_equal(tl->n, 7);
    assert_entry(tl, 4, 4, 2, 2 * JOB, 150000, true, false);
    assert_entry(tl, 5, 5, 2, 2 * JOB + 150000, 150000, true, false);
    assert_entry(tl, 6, 6, 2, 2 * JOB + 300000, 150000, true, false);
    assert_int_equal(pk_tl_entry(tl, 6)->part, 2);
    assert_int_equal(tl->ngaps, 2);
    assert_gap(tl, 1, 2, 1, 2 * JOB, 450000, T0_MS + 2 * JOB / 90, false);
    assert_int_equal(tl->end_90k, 2 * JOB + 450000);
    /* a successful result of a failed job (a retry) comes too late */
    assert_int_equal(add(tl, job(2), 1300, NULL), PK_TL_LATE);
    /* a failed result ahead of a missing one waits like any other */
    assert_int_equal(add(tl, failed_job(4), 1400, NULL), PK_TL_PENDING);
    assert_int_equal(tl->ngaps, 2);
    assert_int_equal(add(tl, job(3), 1500, &changed), PK_TL_PUBLISHED);
    assert_true(changed);
    assert_int_equal(tl->ngaps, 3);
    assert_entry(tl, 9, 9, 4, 4 * JOB, TARGET, true, false);
    assert_numbered(tl);
    pk_tl_free(tl);
}

/* The discontinuity flag marks the job's first entry, and the sequence counts those trimmed. */
static void test_discontinuity(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    job_t j2 = job(2), f4 = failed_job(4);
    gone_log_t g = { .n = 0 };
    size_t i;

    (void) state;
    add(tl, job(0), 1000, NULL);
    add(tl, job(1), 1000, NULL);
    /* a reconnect: timestamps and wall clock jump */
    j2.disc = true;
    j2.start_90k = 100 * JOB;
    j2.wallclock_ms = T0_MS + 500000;
    add(tl, j2, 1000, NULL);
    assert_int_equal(tl->n, 6);
    for (i = 0; i < 6; i++)
        assert_int_equal(pk_tl_entry(tl, i)->disc, i == 4);
    assert_entry(tl, 4, 4, 2, 100 * JOB, TARGET, false, true);
    assert_int_equal(pk_tl_entry(tl, 4)->pdt_ms, T0_MS + 500000);
    assert_int_equal(pk_tl_entry(tl, 5)->pdt_ms, T0_MS + 502000);
    /* a playlist starting at or after entry 4 counts its discontinuity */
    assert_int_equal(pk_tl_disc_seq_at(tl, 0), 0);
    assert_int_equal(pk_tl_disc_seq_at(tl, 3), 0);
    assert_int_equal(pk_tl_disc_seq_at(tl, 4), 1);
    assert_int_equal(pk_tl_disc_seq_at(tl, 5), 1);

    /* three target durations are kept: entries 3, 4, 5 */
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 3);
    assert_int_equal(tl->disc_seq, 0);
    assert_int_equal(pk_tl_disc_seq_at(tl, 0), 0);
    assert_int_equal(pk_tl_disc_seq_at(tl, 1), 1);
    j2 = job(3);
    j2.start_90k = 101 * JOB;
    j2.wallclock_ms = T0_MS + 504000;
    add(tl, j2, 1000, NULL);
    /* the discontinuity (msn 4) leaves the window: the sequence keeps it */
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 2);
    assert_int_equal(tl->disc_seq, 1);
    assert_int_equal(pk_tl_disc_seq_at(tl, 0), 1);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, 5);
    assert_int_equal(g.n, 5);

    /* a failed job with the flag: its first gap entry carries it, and the
     * clock starts again from its ingest clock */
    f4.disc = true;
    f4.start_90k = 200 * JOB;
    add(tl, f4, 1000, NULL);
    assert_int_equal(tl->n, 5);
    assert_entry(tl, 3, 8, 4, 200 * JOB, TARGET, true, true);
    assert_entry(tl, 4, 9, 4, 200 * JOB + TARGET, TARGET, true, false);
    assert_int_equal(pk_tl_entry(tl, 3)->pdt_ms, f4.wallclock_ms);
    assert_int_equal(pk_tl_entry(tl, 4)->pdt_ms, f4.wallclock_ms + TARGET / 90);
    assert_true(tl->gaps[0].disc);
    assert_int_equal(pk_tl_disc_seq_at(tl, 3), 2);
    assert_int_equal(pk_tl_disc_seq_at(tl, 4), 2);
    pk_tl_free(tl);
}

/*
 * A failed job with the discontinuity flag (a reconnect whose first segment
 * does not decode) starts a new clock: its own ingest clock, or when it has
 * none, the end of the last entry. The entries after it keep that clock.
 */
static void test_failed_discontinuity_clock(void **state)
{
    pk_timeline_t *tl;
    job_t f2, j3;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        *state = tl = pk_tl_new("s1", TARGET);
        add(tl, job(0), 1000, NULL);
        add(tl, job(1), 1000, NULL);
        /* the reconnect, 100 jobs of timestamps later but only 4 s of wall clock */
        f2 = failed_job(2);
        f2.disc = true;
        f2.start_90k = 100 * JOB;
        f2.wallclock_ms = pass == 0 ? T0_MS + 2 * JOB / 90 : 0; /* 0: unknown */
        add(tl, f2, 1000, NULL);
        assert_gap(tl, 0, 2, 1, 100 * JOB, JOB, f2.wallclock_ms, true);
        j3 = job(3);
        j3.start_90k = 101 * JOB;
        j3.wallclock_ms = T0_MS + 3 * JOB / 90 + 777; /* not a discontinuity: not used */
        add(tl, j3, 1000, NULL);
        assert_entry(tl, 4, 4, 2, 100 * JOB, TARGET, true, true);
        assert_int_equal(pk_tl_entry(tl, 4)->pdt_ms, T0_MS + 2 * JOB / 90);
        assert_int_equal(pk_tl_entry(tl, 5)->pdt_ms, T0_MS + 2 * JOB / 90 + TARGET / 90);
        assert_int_equal(pk_tl_entry(tl, 6)->pdt_ms, T0_MS + 3 * JOB / 90);
        assert_int_equal(pk_tl_entry(tl, 7)->pdt_ms, T0_MS + 3 * JOB / 90 + TARGET / 90);
        pk_tl_free(tl);
        *state = NULL;
    }

    /* a stream that starts with a failed job has the clock of that job */
    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, failed_job(0), 1000, NULL);
    j3 = job(1);
    j3.wallclock_ms += 777; /* not a discontinuity: the clock goes on */
    add(tl, j3, 1000, NULL);
    assert_int_equal(pk_tl_entry(tl, 0)->pdt_ms, T0_MS);
    assert_int_equal(pk_tl_entry(tl, 1)->pdt_ms, T0_MS + TARGET / 90);
    assert_int_equal(pk_tl_entry(tl, 2)->pdt_ms, T0_MS + JOB / 90);
    pk_tl_free(tl);

    /* ... and without its clock, none until a result has one */
    *state = tl = pk_tl_new("s1", TARGET);
    f2 = failed_job(0);
    f2.wallclock_ms = 0;
    add(tl, f2, 1000, NULL);
    add(tl, job(1), 1000, NULL);
    assert_int_equal(pk_tl_entry(tl, 0)->pdt_ms, 0);
    assert_int_equal(pk_tl_entry(tl, 1)->pdt_ms, 0);
    assert_int_equal(pk_tl_entry(tl, 2)->pdt_ms, T0_MS + JOB / 90);
    pk_tl_free(tl);
    *state = NULL;
}

/* The window keeps what its length asks, three entries at least; the rest goes. */
static void test_trim(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    gone_log_t g = { .n = 0 };
    job_t j;
    size_t i;

    (void) state;
    for (i = 0; i < 10; i++)
        add(tl, job((int64_t) i), 1000, NULL);
    assert_int_equal(tl->n, 20);
    assert_int_equal(pk_tl_window_start(tl, 10), 15);
    assert_int_equal(pk_tl_trim(tl, 10, gone, &g), 15); /* 10 s: five entries */
    assert_int_equal(g.n, 15);
    for (i = 0; i < g.n; i++)
        assert_int_equal(g.msn[i], (int64_t) i);
    assert_int_equal(tl->n, 5);
    assert_int_equal(pk_tl_duration_90k(tl), 10 * 90000);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, 15);
    assert_int_equal(tl->window_msn, 15);
    assert_int_equal(tl->first_seq, 7); /* msn 15 is job 7's second entry */
    assert_int_equal(tl->first_msn, 14);
    /* the clock at the front, for a replay */
    assert_int_equal(tl->front_pts, 15 * TARGET);
    assert_int_equal(tl->front_pdt_ms, T0_MS + 15 * TARGET / 90);
    assert_numbered(tl);
    /* nothing more to drop */
    assert_int_equal(pk_tl_trim(tl, 10, gone, &g), 0);
    assert_int_equal(g.n, 15);
    /* no callback is fine */
    assert_int_equal(pk_tl_trim(tl, 4, NULL, NULL), 2);
    assert_int_equal(tl->n, 3);
    assert_int_equal(tl->first_seq, 8);
    assert_int_equal(tl->first_msn, 16);
    assert_int_equal(tl->window_msn, 17);
    assert_int_equal(tl->front_pts, 17 * TARGET);
    assert_int_equal(tl->front_pdt_ms, T0_MS + 17 * TARGET / 90);

    /* ended: the timeline is the VOD asset, nothing leaves it */
    add(tl, eos_job(10), 1000, NULL);
    assert_true(tl->ended);
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 0);
    assert_int_equal(g.n, 15);
    assert_int_equal(tl->n, 5);
    pk_tl_free(tl);

    /* 10 s entries: a window of 0 s still lists three of them */
    tl = pk_tl_new("s1", TARGET);
    for (i = 0; i < 5; i++) {
        j = job((int64_t) i);
        j.start_90k = (int64_t) i * 900000;
        j.dur_90k = 900000;
        j.nseg = 1;
        add(tl, j, 1000, NULL);
    }
    g.n = 0;
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 2);
    assert_int_equal(g.n, 2);
    assert_int_equal(tl->n, 3);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, 2);
    assert_int_equal(tl->first_seq, 2);
    assert_int_equal(tl->first_msn, 2);
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 0);
    pk_tl_free(tl);

    /* gap entries go through gone() like the others */
    tl = pk_tl_new("s1", TARGET);
    add(tl, failed_job(0), 1000, NULL);
    for (i = 1; i < 3; i++)
        add(tl, job((int64_t) i), 1000, NULL);
    g.n = 0;
    assert_int_equal(pk_tl_trim(tl, 0, gone, &g), 3);
    assert_true(g.gap[0] && g.gap[1] && !g.gap[2]);
    pk_tl_free(tl);
}

/* The end of a session, and a new session after it. */
static void test_end_and_reopen(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    job_t j2 = job(2);
    int64_t before, after;
    bool changed;

    (void) state;
    add(tl, job(0), 1000, NULL);
    assert_int_equal(add(tl, eos_job(1), 1100, &changed), PK_TL_PUBLISHED);
    assert_true(changed);
    assert_true(tl->ended);
    assert_int_equal(tl->end_seq, 1);
    assert_int_equal(tl->n, 4);
    assert_int_equal(add(tl, eos_job(1), 1200, &changed), PK_TL_DUPLICATE);
    assert_false(changed);
    assert_int_equal(pk_tl_advance(tl), 0);

    /* the publisher is back: a new window, numbers go on */
    j2.disc = true;
    j2.start_90k = 50 * JOB;
    before = cb_clock_wall_ms();
    assert_int_equal(add(tl, j2, 9000, &changed), PK_TL_REOPENED);
    after = cb_clock_wall_ms();
    assert_true(changed);
    assert_false(tl->ended);
    assert_int_equal(tl->end_seq, -1);
    assert_int_equal(tl->n, 2);
    assert_entry(tl, 0, 4, 2, 50 * JOB, TARGET, false, true);
    assert_entry(tl, 1, 5, 2, 50 * JOB + TARGET, TARGET, false, false);
    assert_int_equal(tl->session_seq, 2);
    assert_in_range(tl->started_ms, before, after);
    assert_int_equal(tl->first_seq, 2);
    assert_int_equal(tl->first_msn, 4);
    assert_int_equal(tl->window_msn, 4);
    assert_int_equal(tl->front_pts, 0); /* nothing trimmed in this session */
    assert_int_equal(tl->front_pdt_ms, 0);
    assert_int_equal(add(tl, job(1), 9100, NULL), PK_TL_DUPLICATE);
    pk_tl_free(tl);

    /* the new session's first result waits for the jobs between */
    tl = pk_tl_new("s1", TARGET);
    add(tl, eos_job(0), 1000, NULL);
    assert_int_equal(add(tl, job(3), 2000, NULL), PK_TL_REOPENED);
    assert_int_equal(tl->n, 0);
    assert_int_equal(tl->npending, 1);
    assert_int_equal(tl->session_seq, 1);
    assert_int_equal(tl->next_seq, 1);
    assert_int_equal(tl->ngaps, 0);
    assert_int_equal(pk_tl_expire(tl, 2000 + WAIT, WAIT), 2); /* jobs 1-2 given up, job 3 */
    /* no entry before it to measure a gap from: no gap entries */
    assert_int_equal(tl->ngaps, 1);
    assert_int_equal(tl->gaps[0].seq, 1);
    assert_int_equal(tl->gaps[0].count, 2);
    assert_int_equal(tl->gaps[0].dur_90k, 0);
    assert_int_equal(tl->n, 2);
    assert_entry(tl, 0, 2, 3, 3 * JOB, TARGET, false, false);
    assert_int_equal(add(tl, job(2), 9100, NULL), PK_TL_LATE);
    pk_tl_free(tl);
}

/*
 * Results of the next session that come before the end of this one wait
 * behind the end: the ended session (the VOD asset) does not list them. The
 * next session starts with them, when a result after the end comes or when
 * they have waited long enough.
 */
static void test_result_after_end_waits_for_next_session(void **state)
{
    pk_timeline_t *tl;
    bool changed;

    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    assert_int_equal(add(tl, job(2), 1100, NULL), PK_TL_PENDING);
    assert_int_equal(add(tl, eos_job(1), 1200, &changed), PK_TL_PUBLISHED);
    assert_true(changed);
    assert_true(tl->ended);
    assert_int_equal(tl->end_seq, 1);
    assert_int_equal(tl->n, 4);
    assert_nothing_after_end(tl);
    assert_int_equal(tl->npending, 1); /* job 2 waits for the next session */
    assert_int_equal(pk_tl_advance(tl), 0);
    assert_int_equal(tl->npending, 1);
    /* the new session has job 2 when job 3 comes */
    assert_int_equal(add(tl, job(3), 1300, &changed), PK_TL_REOPENED);
    assert_true(changed);
    assert_false(tl->ended);
    assert_int_equal(tl->session_seq, 2);
    assert_int_equal(tl->npending, 0);
    assert_int_equal(tl->n, 4);
    assert_entry(tl, 0, 4, 2, 2 * JOB, TARGET, false, false);
    assert_entry(tl, 3, 7, 3, 3 * JOB + TARGET, TARGET, false, false);
    assert_numbered(tl);
    pk_tl_free(tl);

    /* no result after the end comes: job 2 starts the next session once waited for */
    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    add(tl, job(2), 1100, NULL);
    add(tl, eos_job(1), 1200, NULL);
    assert_int_equal(pk_tl_expire(tl, 1100 + WAIT - 1, WAIT), 0);
    assert_true(tl->ended);
    assert_int_equal(tl->n, 4);
    assert_int_equal(pk_tl_expire(tl, 1100 + WAIT, WAIT), 1);
    assert_false(tl->ended);
    assert_int_equal(tl->session_seq, 2);
    assert_int_equal(tl->first_seq, 2);
    assert_int_equal(tl->ngaps, 0);
    assert_int_equal(tl->n, 2);
    assert_entry(tl, 0, 4, 2, 2 * JOB, TARGET, false, false);
    pk_tl_free(tl);

    /* ... and gives up on the missing ones before it, as usual */
    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    add(tl, job(3), 1100, NULL);
    add(tl, eos_job(1), 1200, NULL);
    assert_true(tl->ended);
    assert_int_equal(tl->n, 4);
    assert_int_equal(pk_tl_expire(tl, 1100 + WAIT, WAIT), 2);
    assert_false(tl->ended);
    assert_int_equal(tl->session_seq, 2);
    assert_int_equal(tl->ngaps, 1);
    assert_int_equal(tl->gaps[0].seq, 2);
    assert_int_equal(tl->gaps[0].count, 1);
    assert_int_equal(tl->gaps[0].dur_90k, 0); /* nothing before it in the session */
    assert_int_equal(tl->n, 2);
    assert_entry(tl, 0, 4, 3, 3 * JOB, TARGET, false, false);
    assert_int_equal(add(tl, job(2), 5000, NULL), PK_TL_LATE);
    pk_tl_free(tl);
    *state = NULL;
}

/* pk_tl_add refuses d with -EINVAL, saying why, and nothing changes. */
static void assert_result_refused(pk_timeline_t *tl, cb_proto_transcode_done_t *d, const char *why)
{
    char err[256] = "", *before = state_text_of(tl), *after;
    size_t n = tl->n, npending = tl->npending, ngaps = tl->ngaps;
    int64_t seq = d->seq, next_seq = tl->next_seq, next_msn = tl->next_msn;
    bool changed = true;
    int rc = pk_tl_add(tl, d, 1000, &changed, err, sizeof(err)); /* takes d */

    if (rc != -EINVAL)
        fail_msg("job %lld: pk_tl_add: %d, want -EINVAL (%s)", (long long) seq, rc, why);
    if (!strstr(err, why))
        fail_msg("job %lld: the error '%s' does not say '%s'", (long long) seq, err, why);
    assert_false(changed);
    assert_int_equal(tl->n, n);
    assert_int_equal(tl->npending, npending);
    assert_int_equal(tl->ngaps, ngaps);
    assert_int_equal(tl->next_seq, next_seq);
    assert_int_equal(tl->next_msn, next_msn);
    after = state_text_of(tl);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* Invalid results are refused, naming the field, and freed; the bounds hold. */
static void test_invalid_results(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    cb_proto_transcode_done_t *d;
    job_t j = job(0);

    (void) state;
    j.no_renditions = true;
    assert_result_refused(tl, done_new(&j), "renditions");
    assert_int_equal(tl->first_seq, -1);

    j = job(0);
    j.unordered = true;
    assert_result_refused(tl, done_new(&j), "renditions[0].segments");

    /* the bounds: numbers within 2^53, timestamps within 2^52, durations within an hour */
    j = job(0);
    d = done_new(&j);
    d->seq = PK_MAX_NUMBER;
    assert_result_refused(tl, d, "seq: out of range");
    d = done_new(&j);
    d->start_pts_90k = PK_MAX_NUMBER;
    assert_result_refused(tl, d, "start_pts_90k");
    d = done_new(&j);
    d->start_pts_90k = -PK_MAX_NUMBER;
    assert_result_refused(tl, d, "start_pts_90k");
    d = done_new(&j);
    d->start_pts_90k = PK_MAX_PTS;
    assert_result_refused(tl, d, "start_pts_90k");
    d = done_new(&j);
    d->ingest_wallclock_ms = PK_MAX_NUMBER;
    assert_result_refused(tl, d, "ingest_wallclock_ms");
    d = done_new(&j);
    d->start_pts_90k = -9000000000000000000LL; /* far below: no sum may overflow */
    assert_result_refused(tl, d, "start_pts_90k");
    d = done_new(&j);
    d->duration_90k = PK_MAX_GAP_90K + 1;
    assert_result_refused(tl, d, "duration_90k");
    d = done_new(&j);
    d->renditions[0].segments[0].bytes = (INT64_C(1) << 60) + 1; /* totals cannot wrap */
    assert_result_refused(tl, d, "renditions[0].segments[0]: bytes out of range");
    d = done_new(&j);
    d->renditions[0].segments[0].bytes = -1;
    assert_result_refused(tl, d, "renditions[0].segments[0]: bytes out of range");
    d = done_new(&j);
    d->renditions[0].segments[0].start_pts_90k = PK_MAX_NUMBER;
    assert_result_refused(tl, d, "renditions[0].segments[0]");
    d = done_new(&j);
    d->renditions[1].segments[1].start_pts_90k = -PK_MAX_NUMBER;
    assert_result_refused(tl, d, "renditions[1].segments[1]");
    d = done_new(&j);
    d->renditions[1].segments[1].duration_90k = PK_MAX_GAP_90K + 1;
    assert_result_refused(tl, d, "renditions[1].segments[1]");
    d = done_new(&j);
    d->renditions[0].segments[1].duration_90k = 0;
    assert_result_refused(tl, d, "renditions[0].segments[1]");
    /* a failed result: a gap of 2^53 - 1 ticks would be 5e10 entries */
    j = failed_job(0);
    d = done_new(&j);
    d->duration_90k = PK_MAX_NUMBER - 1;
    assert_result_refused(tl, d, "duration_90k");
    assert_int_equal(tl->n, 0);
    assert_int_equal(tl->first_seq, -1);

    /* a failed result needs no renditions; one of exactly an hour is fine */
    j = failed_job(0);
    j.dur_90k = PK_MAX_GAP_90K;
    assert_int_equal(add(tl, j, 1000, NULL), PK_TL_PUBLISHED);
    assert_int_equal(tl->n, PK_MAX_GAP_90K / TARGET);
    /* the lowest start there may be */
    j = job(1);
    j.start_90k = -PK_MAX_PTS + 1;
    j.disc = true;
    assert_int_equal(add(tl, j, 1000, NULL), PK_TL_PUBLISHED);
    assert_entry(tl, tl->n - 2, (int64_t) tl->n - 2, 1, -PK_MAX_PTS + 1, TARGET, false, true);
    assert_numbered(tl);
    pk_tl_free(tl);
}

/* ---- the state document ---- */

static json_t *state_of(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &je);

    if (!j)
        fail_msg("bad test state: %s: %s", je.text, text);
    return j;
}

/* A valid state: a window from job 7 (msn 14, listed from 15), jobs 9-10
 * given up as one discontinuous gap, the clock at the front. */
#define GOOD_STATE                                                                                 \
    "{\"v\":1,\"stream_id\":\"s1\",\"first_seq\":7,\"first_msn\":14,\"window_msn\":15,"            \
    "\"disc_seq\":2,\"ended\":false,\"end_seq\":-1,\"started_ms\":1795313400000,"                  \
    "\"session_seq\":0,\"front_pts\":2700000,\"front_pdt_ms\":1795313430000,"                      \
    "\"gaps\":[[9,2,3240000,720000,1795313436000,true]]}"

/* GOOD_STATE with a member set to the JSON text value, or removed (NULL). */
static json_t *state_with(const char *member, const char *value)
{
    json_t *st = state_of(GOOD_STATE);

    if (value)
        json_object_set_new(st, member, state_of(value));
    else
        json_object_del(st, member);
    return st;
}

/*
 * pk_tl_state_load refuses st (taken), naming why; the timeline it was
 * given (one with a state and entries already) does not change at all.
 */
static void assert_state_refused(json_t *st, const char *why)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    char err[256] = "", *before, *after, *text = json_dumps(st, JSON_COMPACT | JSON_ENCODE_ANY);
    int64_t next_seq, next_msn;
    size_t n;
    int rc;

    add(tl, job(0), 1000, NULL);
    add(tl, failed_job(1), 1000, NULL);
    add(tl, job(3), 1000, NULL);
    before = state_text_of(tl);
    n = tl->n;
    next_seq = tl->next_seq;
    next_msn = tl->next_msn;
    rc = pk_tl_state_load(tl, st, err, sizeof(err));
    json_decref(st);
    if (rc != -EINVAL)
        fail_msg("state %s: loaded (%d)", text, rc);
    if (!strstr(err, why))
        fail_msg("state %s: the error '%s' does not say '%s'", text, err, why);
    if (strncmp(err, "packager state: ", 16) != 0)
        fail_msg("state %s: the error '%s' does not say what it is about", text, err);
    after = state_text_of(tl);
    if (strcmp(before, after) != 0)
        fail_msg("a refused state was loaded in part:\nbefore %s\nafter  %s", before, after);
    assert_int_equal(tl->n, n);
    assert_int_equal(tl->next_seq, next_seq);
    assert_int_equal(tl->next_msn, next_msn);
    assert_int_equal(tl->npending, 1);
    free(before);
    free(after);
    free(text);
    pk_tl_free(tl);
}

/* The state round trip. */
static void test_state_load(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET);
    json_t *st = state_of(GOOD_STATE), *again;
    char err[256] = "";

    (void) state;
    assert_int_equal(pk_tl_state_load(tl, st, err, sizeof(err)), 0);
    assert_int_equal(tl->first_seq, 7);
    assert_int_equal(tl->next_seq, 7);
    assert_int_equal(tl->first_msn, 14);
    assert_int_equal(tl->next_msn, 14);
    assert_int_equal(tl->window_msn, 15);
    assert_int_equal(tl->disc_seq, 2);
    assert_false(tl->ended);
    assert_int_equal(tl->end_seq, -1);
    assert_int_equal(tl->started_ms, T0_MS);
    assert_int_equal(tl->session_seq, 0);
    assert_int_equal(tl->front_pts, 2700000);
    assert_int_equal(tl->front_pdt_ms, T0_MS + 30000);
    assert_int_equal(tl->ngaps, 1);
    assert_gap(tl, 0, 9, 2, 3240000, 720000, T0_MS + 36000, true);
    again = pk_tl_state_dump(tl);
    assert_true(json_equal(st, again));
    json_decref(again);
    json_decref(st);

    /* the window starts in job 7: jobs 7 and 8 come, then the gap is listed */
    add(tl, job(8), 1000, NULL);
    assert_int_equal(tl->n, 0);
    add(tl, job(7), 1000, NULL);
    assert_int_equal(tl->n, 3 + 4);
    assert_entry(tl, 0, 15, 7, 7 * JOB + TARGET, TARGET, false, false);
    assert_entry(tl, 3, 18, 9, 3240000, TARGET, true, true);
    assert_entry(tl, 6, 21, 9, 3240000 + 3 * TARGET, TARGET, true, false);
    /* the gap's clock: its own (a discontinuity) */
    assert_int_equal(pk_tl_entry(tl, 3)->pdt_ms, T0_MS + 36000);
    assert_int_equal(tl->next_seq, 11);
    assert_int_equal(add(tl, job(10), 1000, NULL), PK_TL_LATE);
    pk_tl_free(tl);

    /* every number at its bound: loads, advances, dumps the same */
    tl = pk_tl_new("s1", TARGET);
    st = state_of("{\"v\":1,\"stream_id\":\"s1\",\"first_seq\":9007199254740991,"
                  "\"first_msn\":9007199254740992,\"window_msn\":9007199254740992,"
                  "\"disc_seq\":9007199254740992,\"ended\":false,\"end_seq\":9007199254740992,"
                  "\"started_ms\":9007199254740992,\"session_seq\":9007199254740992,"
                  "\"front_pts\":-9007199254740992,\"front_pdt_ms\":9007199254740992,"
                  "\"ast_ms\":9007199254740992,"
                  "\"period\":[9007199254740992,-9007199254740991,9007199254740991],"
                  "\"gaps\":[[9007199254740991,9007199254740991,-9007199254740991,324000000,"
                  "9007199254740991,true]]}");
    assert_int_equal(pk_tl_state_load(tl, st, err, sizeof(err)), 0);
    pk_tl_advance(tl);
    assert_int_equal(tl->n, PK_MAX_GAP_90K / TARGET);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, PK_MAX_NUMBER);
    assert_int_equal(pk_tl_entry(tl, 0)->pdt_ms, PK_MAX_NUMBER - 1);
    assert_int_equal(tl->next_seq, 2 * PK_MAX_NUMBER - 2);
    assert_numbered(tl);
    again = pk_tl_state_dump(tl);
    assert_true(json_equal(st, again));
    json_decref(again);
    json_decref(st);
    pk_tl_free(tl);
}

/*
 * The documents pk_tl_state_load refuses: each error names the member, and
 * a refused document changes nothing (the packager then starts the stream
 * over with the timeline as it was).
 */
static void test_state_load_checks(void **state)
{
    json_t *st;
    size_t i;

    (void) state;
    assert_state_refused(state_with("v", "2"), "v: 2 is out of range");
    assert_state_refused(state_with("v", NULL), "v: missing");
    assert_state_refused(state_with("first_seq", "-2"), "first_seq: -2 is out of range");
    assert_state_refused(state_with("first_seq", "9007199254740993"), "first_seq");
    assert_state_refused(state_with("first_seq", "\"7\""), "first_seq: not an integer");
    assert_state_refused(state_with("first_seq", NULL), "first_seq: missing");
    assert_state_refused(state_with("first_msn", "-1"), "first_msn");
    assert_state_refused(state_with("first_msn", "9223372036854775807"), "first_msn");
    assert_state_refused(state_with("window_msn", "13"), "window_msn: before first_msn");
    assert_state_refused(state_with("window_msn", "15.5"), "window_msn: not an integer");
    assert_state_refused(state_with("disc_seq", "-1"), "disc_seq");
    assert_state_refused(state_with("ended", "0"), "ended: not a boolean");
    assert_state_refused(state_with("ended", NULL), "ended");
    assert_state_refused(state_with("end_seq", "-5"), "end_seq");
    assert_state_refused(state_with("started_ms", "-1"), "started_ms");
    assert_state_refused(state_with("session_seq", "-3"), "session_seq");
    assert_state_refused(state_with("front_pts", "9007199254740993"), "front_pts");
    assert_state_refused(state_with("front_pts", "-9007199254740993"), "front_pts");
    assert_state_refused(state_with("front_pdt_ms", "-1"), "front_pdt_ms");
    assert_state_refused(state_with("front_pdt_ms", "9223372036854775807"), "front_pdt_ms");
    assert_state_refused(state_with("ast_ms", "-1"), "ast_ms");
    assert_state_refused(state_with("ast_ms", "\"0\""), "ast_ms: not an integer");
    /* the Period of the front: [msn up to window_msn, media time, wall clock] */
    assert_state_refused(state_with("period", "[16,0,0]"), "period");
    assert_state_refused(state_with("period", "[-1,0,0]"), "period");
    assert_state_refused(state_with("period", "[14,9007199254740992,0]"), "period");
    assert_state_refused(state_with("period", "[14,0,-1]"), "period");
    assert_state_refused(state_with("period", "[14,0]"), "period");
    assert_state_refused(state_with("period", "{}"), "period");
    assert_state_refused(state_with("gaps", "{}"), "gaps");
    assert_state_refused(state_with("gaps", NULL), "gaps");
    /* a gap: [seq, count, start, duration, wall clock, discontinuity], within range */
    assert_state_refused(state_with("gaps", "[[9,0,3240000,720000,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[-4,1,3240000,720000,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9007199254740992,1,0,0,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,9007199254740992,0,0,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,9007199254740992,0,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,-9007199254740992,0,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,9223372036854775000,1000000,0,true]]"),
                         "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,-1,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,324000001,0,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,0,-1,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,0,9007199254740992,true]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,0,0,0]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,0,0]]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[\"x\"]"), "gaps[0]");
    assert_state_refused(state_with("gaps", "[[9,1,0,0,0,false],[10,1,0,-1,0,false]]"), "gaps[1]");
    /* the format before gaps were ranges and the front had a clock */
    assert_state_refused(state_with("gaps", "[[9,3240000,360000,true]]"), "gaps[0]");
    st = state_of("{\"v\":1,\"stream_id\":\"s1\",\"first_seq\":7,\"first_msn\":14,"
                  "\"window_msn\":15,\"disc_seq\":2,\"ended\":false,\"end_seq\":-1,"
                  "\"started_ms\":1000,\"session_seq\":0,\"gaps\":[[9,3240000,360000,true]]}");
    assert_state_refused(st, "front_pts: missing");
    /* more gaps than a timeline keeps */
    st = state_with("gaps", "[]");
    for (i = 0; i <= PK_MAX_GAPS; i++)
        json_array_append_new(json_object_get(st, "gaps"),
                              json_pack("[I,i,i,i,i,b]", (json_int_t) (100 + i), 1, 0, 0, 0, 0));
    assert_state_refused(st, "gaps: not an array of at most 4096");
    assert_state_refused(state_of("[]"), "packager state: not an object");
    assert_state_refused(state_of("null"), "packager state: not an object");
}

/* ---- replay ---- */

/*
 * The key property: a restarted packager rebuilds the same entries with
 * the same numbers and wall clock, and the same state, from the state and
 * the results in storage. Checked after every step of a stream with a
 * failed job, a missing job given up on (that then arrives late), a
 * discontinuity, a window trimmed after each result, an end and a new
 * session.
 */
static void test_replay_determinism(void **state)
{
    pk_timeline_t *a = pk_tl_new("s1", TARGET);
    store_t st = { .n = 0 };
    char when[64];
    int64_t now = 1000, seq;

    (void) state;
    for (seq = 0; seq < 10; seq++) {
        job_t j = seq == 3 ? failed_job(seq) : job(seq);
        if (seq == 4)
            j.disc = true;
        if (seq == 6)
            continue; /* never comes in time */
        store_put(&st, j);
        snprintf(when, sizeof(when), "after job %lld", (long long) seq);
        add(a, j, now, NULL);
        check_replay(a, &st, when);
        pk_tl_trim(a, 8, NULL, NULL);
        snprintf(when, sizeof(when), "after job %lld, trimmed", (long long) seq);
        check_replay(a, &st, when);
        now += 100;
    }
    assert_int_equal(a->npending, 3);
    /* give up on job 6 before trimming, so that its gap is in the state */
    assert_int_equal(pk_tl_expire(a, now + WAIT, WAIT), 4); /* job 6's gap, jobs 7, 8, 9 */
    assert_int_equal(a->ngaps, 2);
    assert_gap(a, 1, 6, 1, 6 * JOB, JOB, 0, false);
    check_replay(a, &st, "after the gap");
    /* job 6 arrives late; storage keeps it, and the replay must ignore it */
    assert_int_equal(add(a, job(6), now, NULL), PK_TL_LATE);
    store_put(&st, job(6));
    check_replay(a, &st, "after the late job");
    pk_tl_trim(a, 8, NULL, NULL);
    check_replay(a, &st, "after the gap, trimmed");
    assert_int_equal(a->first_seq, 8);
    assert_int_equal(a->n, 4);
    assert_int_equal(pk_tl_disc_seq_at(a, 0), 1); /* job 4's, trimmed */

    /* the end, and a new session */
    for (seq = 10; seq < 14; seq++) {
        job_t j = job(seq);
        j.eos = seq == 11;
        j.disc = seq == 12;
        store_put(&st, j);
        assert_int_equal(add(a, j, now, NULL), seq == 12 ? PK_TL_REOPENED : PK_TL_PUBLISHED);
        snprintf(when, sizeof(when), "after job %lld", (long long) seq);
        check_replay(a, &st, when);
        pk_tl_trim(a, 8, NULL, NULL);
        snprintf(when, sizeof(when), "after job %lld, trimmed", (long long) seq);
        check_replay(a, &st, when);
    }
    assert_false(a->ended);
    assert_int_equal(a->session_seq, 12);
    pk_tl_free(a);
}

/* A window that starts with a failed job's gap: pk_tl_advance lists it. */
static void test_replay_only_gaps(void **state)
{
    pk_timeline_t *a = pk_tl_new("s1", TARGET);
    store_t st = { .n = 0 };
    int64_t seq;

    (void) state;
    for (seq = 0; seq < 6; seq++) {
        job_t j = seq >= 3 ? failed_job(seq) : job(seq);
        store_put(&st, j);
        add(a, j, 1000, NULL);
        pk_tl_trim(a, 4, NULL, NULL);
    }
    assert_true(a->first_seq >= 3); /* nothing but gaps in the window */
    check_replay(a, &st, "gaps only");
    pk_tl_free(a);
}

/*
 * The streams of test_replay_gap_at_front. Their gaps have odd lengths, so
 * their entries start at times that are no whole number of milliseconds
 * from the clock's anchor:
 *   0: jobs 1-2 never come: given up, 8 s + 1000 ticks in five entries;
 *   1: job 2 fails on a reconnect (a discontinuity), its ingest clock
 *      unknown: the clock goes on from the last entry; 5 s in three;
 *   2: the same with its ingest clock: the clock starts again from it;
 *   3: job 2 fails, no discontinuity: 5 s in three entries.
 * Jobs 3 to 5 follow. Built up to job `upto`.
 */
static pk_timeline_t *gap_stream(int which, int64_t upto, store_t *st)
{
    pk_timeline_t *a = pk_tl_new("s1", TARGET);
    int64_t seq, at = 0, wall = T0_MS;

    st->n = 0;
    for (seq = 0; seq <= upto; seq++) {
        job_t j = job(seq);

        j.start_90k = at;
        j.wallclock_ms = wall + 3; /* used where a result starts the clock: job 0 */
        if (seq == 1 && which == 0) {
            at += JOB; /* never comes */
            continue;
        }
        if (seq == 2) {
            if (which == 0) {
                at += JOB + 1000;
                continue;
            }
            j.failed = true;
            j.dur_90k = 450000;
            j.disc = which == 1 || which == 2;
            if (j.disc) {
                j.start_90k = at = 100 * JOB + 1000;
                j.wallclock_ms = which == 2 ? T0_MS + 500000 : 0;
            }
        }
        store_put(st, j);
        add(a, j, 1000, NULL);
        if (seq == 3 && which == 0)
            assert_int_equal(pk_tl_expire(a, 1000 + WAIT, WAIT), 2);
        at += j.dur_90k;
        wall += j.dur_90k / 90;
    }
    assert_int_equal(a->npending, 0);
    return a;
}

/*
 * A trim that leaves a gap (or anything) at the front, then dump, load and
 * replay: the same entries, and their wall clock within a millisecond. The
 * replay has no entry before the window to take the clock from: the state's
 * front_pts / front_pdt_ms give it. Every window length, so that the front
 * falls on every entry; then one more job, trimmed, and again.
 */
static void test_replay_gap_at_front(void **state)
{
    store_t st;
    char when[96];
    int which, fronts_in_gaps = 0;
    int64_t window;

    for (which = 0; which < 4; which++) {
        for (window = 0; window <= 24; window += 2) {
            pk_timeline_t *a = gap_stream(which, 4, &st);
            job_t j;

            *state = a;
            pk_tl_trim(a, window, NULL, NULL);
            if (pk_tl_entry(a, 0)->gap) {
                const pk_entry_t *f = pk_tl_entry(a, 0);
                fronts_in_gaps++;
                assert_int_equal(a->front_pts, f->start_90k);
                assert_int_equal(a->front_pdt_ms, f->pdt_ms);
                assert_int_equal(a->first_seq, f->seq);
                assert_int_equal(a->first_msn, f->msn - f->part);
            }
            snprintf(when, sizeof(when), "stream %d, window %lld s", which, (long long) window);
            check_replay(a, &st, when);
            j = job(5);
            j.start_90k = pk_tl_entry(a, a->n - 1)->start_90k + TARGET;
            store_put(&st, j);
            add(a, j, 2000, NULL);
            snprintf(when, sizeof(when), "stream %d, window %lld s, then job 5", which,
                     (long long) window);
            check_replay(a, &st, when);
            pk_tl_trim(a, window, NULL, NULL);
            snprintf(when, sizeof(when), "stream %d, window %lld s, then job 5, trimmed", which,
                     (long long) window);
            check_replay(a, &st, when);
            pk_tl_free(a);
            *state = NULL;
        }
    }
    assert_true(fronts_in_gaps >= 8);

    /* the clock a replay takes from the front is the live one, rounded */
    {
        pk_timeline_t *a = gap_stream(0, 3, &st), *b;
        size_t i;
        int off = 0;

        *state = a;
        pk_tl_trim(a, 8, NULL, NULL);
        assert_true(pk_tl_entry(a, 0)->gap);
        assert_int_equal(pk_tl_entry(a, 0)->part, 2);
        assert_int_equal(a->front_pts, JOB + 2 * 144200);
        assert_int_equal(a->front_pdt_ms, T0_MS + 3 + (JOB + 2 * 144200) / 90);
        b = replay(a, &st);
        assert_same_entries(a, b, "gap at the front, 8 s");
        for (i = 0; i < a->n; i++)
            off += pk_tl_entry(a, i)->pdt_ms != pk_tl_entry(b, i)->pdt_ms;
        assert_true(off > 0); /* this case does round differently: the 1 ms is needed */
        pk_tl_free(b);
        pk_tl_free(a);
        *state = NULL;
    }
}

/*
 * A jump of seq of any size (a worker numbering from elsewhere) is one gap
 * record: the stream goes on at once. The missing range is no time range
 * (more than an hour): no gap entries.
 */
static void test_seq_jump_is_one_gap(void **state)
{
    pk_timeline_t *tl;
    store_t st = { .n = 0 };
    const int64_t far = 9007199254740000LL;
    job_t j;

    *state = tl = pk_tl_new("s1", TARGET);
    store_put(&st, job(0));
    add(tl, job(0), 1000, NULL);
    store_put(&st, job(5000));
    assert_int_equal(add(tl, job(5000), 1100, NULL), PK_TL_PENDING);
    assert_int_equal(pk_tl_expire(tl, 1100 + WAIT, WAIT), 2);
    assert_int_equal(tl->npending, 0);
    assert_int_equal(tl->ngaps, 1);
    assert_gap(tl, 0, 1, 4999, JOB, 0, 0, false);
    assert_int_equal(tl->n, 4);
    assert_entry(tl, 2, 2, 5000, 5000 * JOB, TARGET, false, false);
    /* they come after all: too late (storage has them; the replay ignores them too) */
    store_put(&st, job(1));
    store_put(&st, job(2500));
    store_put(&st, job(4999));
    assert_int_equal(add(tl, job(1), 1200, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(2500), 1200, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(4999), 1200, NULL), PK_TL_LATE);
    assert_int_equal(add(tl, job(5001), 1200, NULL), PK_TL_PUBLISHED);
    store_put(&st, job(5001));
    check_replay(tl, &st, "after a jump of 5000");

    /* as far as a seq goes */
    j = job(5002);
    j.seq = far;
    store_put(&st, j);
    assert_int_equal(add(tl, j, 1300, NULL), PK_TL_PENDING);
    assert_int_equal(pk_tl_expire(tl, 1300 + WAIT, WAIT), 2);
    assert_int_equal(tl->ngaps, 2);
    assert_gap(tl, 1, 5002, far - 5002, 5002 * JOB, 0, 0, false);
    assert_int_equal(tl->next_seq, far + 1);
    assert_int_equal(tl->n, 8);
    assert_entry(tl, 6, 6, far, 5002 * JOB, TARGET, false, false);
    check_replay(tl, &st, "after a jump to 2^53");
    pk_tl_free(tl);
    *state = NULL;
}

/*
 * PK_MAX_PENDING results waiting, and one more: the missing ones before
 * them are given up at once (the forced expire), and the results
 * published; nothing is written past the list.
 */
static void test_pending_full(void **state)
{
    pk_timeline_t *tl;
    int64_t seq;
    bool changed;

    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    for (seq = 5000; seq < 5000 + PK_MAX_PENDING; seq++) {
        assert_int_equal(add(tl, job(seq), 1100, &changed), PK_TL_PENDING);
        assert_false(changed);
    }
    assert_int_equal(tl->npending, PK_MAX_PENDING);
    assert_int_equal(tl->n, 2);
    assert_int_equal(add(tl, job(seq), 1200, &changed), PK_TL_PUBLISHED);
    assert_true(changed); /* a gap was declared */
    assert_int_equal(tl->npending, 0);
    assert_int_equal(tl->ngaps, 1);
    assert_gap(tl, 0, 1, 4999, JOB, 0, 0, false);
    assert_int_equal(tl->n, 2 + 2 * (PK_MAX_PENDING + 1));
    assert_int_equal(tl->next_seq, 5000 + PK_MAX_PENDING + 1);
    assert_numbered(tl);
    pk_tl_free(tl);
    *state = NULL;
}

/*
 * A gap of more than 256 entries: entry k of it has part k (no wrap), so a
 * trim that stops deep in it stores first_msn = msn - part right, and the
 * replay numbers the window the same.
 */
static void test_long_gap_part(void **state)
{
    pk_timeline_t *a;
    store_t st = { .n = 0 };

    *state = a = pk_tl_new("s1", TARGET);
    store_put(&st, job(0));
    add(a, job(0), 1000, NULL);
    /* jobs 1..150 never come: one gap of 300 target durations */
    store_put(&st, job(151));
    add(a, job(151), 1000, NULL);
    assert_int_equal(pk_tl_expire(a, 1000 + WAIT, WAIT), 2);
    assert_gap(a, 0, 1, 150, JOB, 150 * JOB, 0, false);
    assert_int_equal(a->n, 2 + 300 + 2);
    assert_int_equal(pk_tl_entry(a, 2 + 299)->part, 299);
    pk_tl_trim(a, 88, NULL, NULL); /* keeps 44 entries: from the gap's entry 258 */
    assert_int_equal(pk_tl_entry(a, 0)->msn, 260);
    assert_int_equal(pk_tl_entry(a, 0)->part, 258);
    assert_int_equal(a->first_seq, 1);
    assert_int_equal(a->first_msn, 2);
    check_replay(a, &st, "after a long gap, trimmed");
    pk_tl_free(a);
    *state = NULL;
}

/*
 * No more than PK_MAX_INITS init segments: a result that would be the one
 * too many is not published (its init segment is not interned, no piece
 * refers past the table), and the stream goes on.
 */
static void test_too_many_inits(void **state)
{
    pk_timeline_t *tl;
    int64_t seq;
    size_t i, k;
    job_t j;

    *state = tl = pk_tl_new("s1", TARGET);
    for (seq = 0; seq < PK_MAX_INITS / 2; seq++) {
        j = job(seq);
        j.init = (int) seq + 1; /* a new encoder configuration each time: two init segments */
        add(tl, j, 1000, NULL);
        pk_tl_trim(tl, 8, NULL, NULL);
    }
    assert_int_equal(tl->ninits, PK_MAX_INITS);
    j = job(seq++);
    j.init = PK_MAX_INITS; /* one more */
    add(tl, j, 1000, NULL);
    assert_int_equal(tl->ninits, PK_MAX_INITS);
    j = job(seq);
    j.init = 1; /* known already */
    assert_int_equal(add(tl, j, 1000, NULL), PK_TL_PUBLISHED);
    assert_int_equal(tl->ninits, PK_MAX_INITS);
    assert_int_equal(pk_tl_entry(tl, tl->n - 1)->seq, seq);
    assert_string_equal(pk_tl_init(tl, &pk_tl_entry(tl, tl->n - 1)->pieces[0]),
                        "live/s1/720p/init-1.mp4");
    for (i = 0; i < tl->n; i++)
        for (k = 0; k < pk_tl_entry(tl, i)->npieces; k++)
            assert_non_null(pk_tl_init(tl, &pk_tl_entry(tl, i)->pieces[k]));
    assert_numbered(tl);
    pk_tl_free(tl);
    *state = NULL;
}

/* ---- defects found by these tests, kept as their regression tests ---- */

/*
 * A packager that takes over (or restarts) an ended stream rebuilds an
 * empty timeline. pk_tl_state_load restores ended = true with next_seq =
 * first_seq (<= end_seq), and advance() now stops while tl->ended
 * (packager_timeline.c:432), so the replayed results up to the end are
 * never published: they wait in pending. The first pk_tl_expire after the
 * gap wait then takes them for results behind the end and reopens the
 * stream at end_seq + 1 (:560-564), dropping them: the ended session, its
 * VOD window and its ended flag are gone. advance() should stop after the
 * end (tl->ended && tl->next_seq > tl->end_seq), not whenever ended.
 */
static void test_replay_of_ended_session(void **state)
{
    pk_timeline_t *a, *b;
    store_t st = { .n = 0 };
    int64_t seq;

    *state = a = pk_tl_new("s1", TARGET);
    for (seq = 0; seq < 4; seq++) {
        job_t j = seq == 3 ? eos_job(seq) : job(seq);
        store_put(&st, j);
        add(a, j, 1000, NULL);
    }
    assert_true(a->ended);
    b = replay(a, &st);
    if (b->n != a->n || b->npending != 0) {
        size_t n = b->n, np = b->npending;
        pk_tl_free(b);
        fail_msg("the ended session replays to %zu entries (%zu results left waiting), live %zu", n,
                 np, a->n);
    }
    assert_same_entries(a, b, "ended");
    assert_int_equal(pk_tl_expire(b, 1 + WAIT, WAIT), 0);
    assert_true(b->ended);
    assert_int_equal(b->n, a->n);
    pk_tl_free(b);
    pk_tl_free(a);
    *state = NULL;
}

/*
 * pk_tl_expire goes through the end of a session in one call: job 1 given
 * up, job 2 (the end) published, and job 3 (the next session's), which has
 * waited as long, reopens the stream at once (:560, reopen() drops the
 * ended session's entries). The caller (tick_streams) never sees the ended
 * timeline: no VOD asset, no ended state stored. pk_tl_expire should return
 * once a session ends (the next call reopens).
 */
static void test_expire_runs_through_the_end(void **state)
{
    pk_timeline_t *tl;

    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    add(tl, eos_job(2), 1100, NULL);
    add(tl, job(3), 1200, NULL);
    assert_int_equal(tl->npending, 2);
    assert_true(pk_tl_expire(tl, 1200 + WAIT, WAIT) > 0);
    if (!tl->ended)
        fail_msg("the session that ended with job 2 was reopened in the same pk_tl_expire call; "
                 "the timeline now lists %zu entries from job %lld",
                 tl->n, (long long) (tl->n ? pk_tl_entry(tl, 0)->seq : -1));
    assert_int_equal(tl->end_seq, 2);
    assert_int_equal(tl->n, 6);
    assert_nothing_after_end(tl);
    assert_int_equal(tl->npending, 1); /* job 3: the next call reopens */
    pk_tl_free(tl);
    *state = NULL;
}

/*
 * A duplicate of a result that waits behind the end (Kafka redelivers
 * job 2) reopens the stream: pk_tl_add reopens (:505-509) before it finds
 * the duplicate in pending (:519-524), and returns PK_TL_DUPLICATE ("seen
 * before: nothing changed") with *state_changed set, without advance():
 * the ended session's entries are dropped, and job 2 stays pending though
 * it is next (until a later expire). The duplicate check should come first.
 */
static void test_duplicate_behind_end_reopens(void **state)
{
    pk_timeline_t *tl;
    bool changed;

    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    add(tl, job(2), 1100, NULL);
    add(tl, eos_job(1), 1200, NULL);
    assert_true(tl->ended);
    assert_int_equal(add(tl, job(2), 1300, &changed), PK_TL_DUPLICATE);
    if (!tl->ended)
        fail_msg("a duplicate reopened the stream: %zu entries, job %lld waits with next_seq %lld",
                 tl->n, (long long) (tl->npending ? tl->pending[0]->seq : -1),
                 (long long) tl->next_seq);
    assert_false(changed);
    assert_int_equal(tl->n, 4);
    assert_int_equal(tl->npending, 1);
    pk_tl_free(tl);
    *state = NULL;
}

/*
 * The straggler that comes when PK_MAX_PENDING results wait behind it
 * (a catch-up burst): pk_tl_add checks it is not late (:514), then the
 * forced pk_tl_expire (:527) gives up its own job and publishes the 64, and
 * it is inserted into pending anyway, below next_seq. It is never
 * published nor dropped, and advance() never passes it: every later result
 * waits behind it, the list fills, and pk_tl_add returns -ENOSPC for ever.
 * The late/duplicate check should be made again after the forced expire.
 */
static void test_straggler_when_pending_full(void **state)
{
    pk_timeline_t *tl;
    int64_t seq;
    int rc;

    *state = tl = pk_tl_new("s1", TARGET);
    add(tl, job(0), 1000, NULL);
    for (seq = 2; seq < 2 + PK_MAX_PENDING; seq++)
        add(tl, job(seq), 1100, NULL);
    assert_int_equal(tl->npending, PK_MAX_PENDING);
    rc = add(tl, job(1), 1200, NULL); /* the straggler */
    if (tl->npending && tl->pending[0]->seq < tl->next_seq)
        fail_msg("job %lld waits in pending below next_seq %lld, and blocks the stream",
                 (long long) tl->pending[0]->seq, (long long) tl->next_seq);
    assert_true(rc == PK_TL_LATE || rc == PK_TL_PUBLISHED);
    assert_int_equal(add(tl, job(seq), 1300, NULL), PK_TL_PUBLISHED);
    assert_int_equal(tl->npending, 0);
    pk_tl_free(tl);
    *state = NULL;
}

/*
 * pk_tl_advance returns 0 after it published something: it returns
 * CB_MAX(0, advance(tl, &changed)) (:591), and the macro evaluates
 * advance() twice; the second call has nothing left to publish. (The
 * packager ignores the count; the state's trailing gaps are published.)
 * Assign advance()'s result to a variable first.
 */
static void test_advance_count(void **state)
{
    pk_timeline_t *tl;
    json_t *st;
    char err[256] = "";

    *state = tl = pk_tl_new("s1", TARGET);
    st = state_of(GOOD_STATE); /* a window that starts in job 7; jobs 9-10 a gap */
    assert_int_equal(pk_tl_state_load(tl, st, err, sizeof(err)), 0);
    json_decref(st);
    add(tl, job(8), 1000, NULL);
    add(tl, job(7), 1000, NULL);
    assert_int_equal(tl->next_seq, 11);
    pk_tl_free(tl);
    /* the same state, only the gap to publish */
    *state = tl = pk_tl_new("s1", TARGET);
    st = state_with("first_seq", "9");
    json_object_set_new(st, "first_msn", json_integer(18));
    json_object_set_new(st, "window_msn", json_integer(18));
    assert_int_equal(pk_tl_state_load(tl, st, err, sizeof(err)), 0);
    json_decref(st);
    assert_int_equal(pk_tl_advance(tl), 1); /* the gap went in */
    assert_int_equal(tl->n, 4);
    assert_int_equal(tl->next_seq, 11);
    pk_tl_free(tl);
    *state = NULL;
}

/* Whether the dumped state of tl loads into a new timeline (if not, says why). */
static bool state_loads_back(const pk_timeline_t *tl, const char *when)
{
    pk_timeline_t *b = pk_tl_new("s1", TARGET);
    char *text = state_text_of(tl), err[256] = "";
    json_t *st = json_loads(text, 0, NULL);
    int rc = pk_tl_state_load(b, st, err, sizeof(err));

    json_decref(st);
    pk_tl_free(b);
    if (rc)
        print_error("%s: the state the timeline dumps does not load: %s\n%s\n", when, err, text);
    free(text);
    return rc == 0;
}

/* Add a result that a fix may refuse (-EINVAL) rather than take. */
static void add_done_or_refused(pk_timeline_t *tl, cb_proto_transcode_done_t *d)
{
    char err[256] = "";
    bool changed;
    int rc = pk_tl_add(tl, d, 1000, &changed, err, sizeof(err));

    assert_true(rc >= 0 || rc == -EINVAL);
}

static void add_or_refused(pk_timeline_t *tl, job_t j)
{
    add_done_or_refused(tl, done_new(&j));
}

/*
 * pk_tl_state_load's bounds are tighter than what the timeline dumps, so a
 * stored state can be refused on restart (and the stream's numbering start
 * over). Results that check_done accepts give:
 *  - front_pdt_ms < 0: a result without ingest clock (0) and an early
 *    finished_at_ms anchors at finished_at_ms - duration / 90 (:377-378);
 *    check_done bounds neither clock; load wants front_pdt_ms >= 0 (:716);
 *  - a gap starting at 2^53 or later: an expire gap starts at end_90k
 *    (:572), the end of an entry that starts below 2^53; load wants
 *    start < 2^53 (:741);
 *  - front_pts > 2^53: gap entries of an hour-long failed job starting just
 *    below 2^53; load wants front_pts <= 2^53 (:715).
 * check_done should bound start + duration (and the clocks, and pdt_of its
 * result) so that every number dumped is one load accepts; or load should
 * accept what can be dumped. Either way this passes (a refused result
 * dumps nothing).
 */
static void test_dumped_state_out_of_bounds(void **state)
{
    const int64_t N = PK_MAX_NUMBER;
    cb_proto_transcode_done_t *d;
    pk_timeline_t *tl;
    int64_t seq;
    bool ok;
    job_t j;

    /* a clock of 0 */
    *state = tl = pk_tl_new("s1", TARGET);
    for (seq = 0; seq < 4; seq++)
        add_or_refused(tl, job(seq));
    j = job(4);
    j.disc = true;
    j.start_90k = 100 * JOB;
    j.wallclock_ms = 0;
    d = done_new(&j);
    d->finished_at_ms = 0;
    add_done_or_refused(tl, d);
    j = job(5);
    j.start_90k = 101 * JOB;
    add_or_refused(tl, j);
    pk_tl_trim(tl, 0, NULL, NULL);
    ok = state_loads_back(tl, "a result's clock of 0");
    pk_tl_free(tl);

    /* a gap after an entry ending past 2^53 */
    *state = tl = pk_tl_new("s1", TARGET);
    j = job(0);
    j.start_90k = N - TARGET - 1;
    add_or_refused(tl, j);
    j = job(2);
    j.start_90k = 0;
    j.disc = true;
    add_or_refused(tl, j);
    pk_tl_expire(tl, 1000 + WAIT, WAIT);
    ok = state_loads_back(tl, "a gap after 2^53") && ok;
    pk_tl_free(tl);

    /* gap entries past 2^53 at the front */
    *state = tl = pk_tl_new("s1", TARGET);
    j = job(0);
    j.start_90k = N - 1 - JOB;
    add_or_refused(tl, j);
    j = failed_job(1);
    j.start_90k = N - 1;
    j.dur_90k = PK_MAX_GAP_90K;
    add_or_refused(tl, j);
    j = job(2);
    j.start_90k = 0;
    j.disc = true;
    add_or_refused(tl, j);
    pk_tl_trim(tl, 0, NULL, NULL);
    ok = state_loads_back(tl, "gap entries past 2^53 at the front") && ok;
    pk_tl_free(tl);
    *state = NULL;
    if (!ok)
        fail_msg("dumped states that do not load back (above)");
}

/*
 * check_done bounds no wall clock: ingest_wallclock_ms (or finished_at_ms)
 * up to INT64_MAX anchors the clock there, and pdt_of (:129) overflows
 * (UBSan: "signed integer overflow: 9223372036854775807 + 2000"), as does
 * :379 for a segment after the result's start. check_done should refuse
 * clocks at or above 2^53 (-EINVAL naming the field).
 */
static void test_wall_clock_overflow(void **state)
{
    cb_proto_transcode_done_t *d;
    pk_timeline_t *tl;
    char err[256] = "";
    bool changed;
    size_t i;
    int rc;
    job_t j = job(0);

    *state = tl = pk_tl_new("s1", TARGET);
    d = done_new(&j);
    d->ingest_wallclock_ms = INT64_MAX;
    d->finished_at_ms = INT64_MAX;
    rc = pk_tl_add(tl, d, 1000, &changed, err, sizeof(err));
    if (rc >= 0)
        for (i = 0; i < tl->n; i++)
            if (pk_tl_entry(tl, i)->pdt_ms < 0 || pk_tl_entry(tl, i)->pdt_ms >= PK_MAX_NUMBER)
                fail_msg("entry %zu starts at wall clock %lld", i,
                         (long long) pk_tl_entry(tl, i)->pdt_ms);
    if (rc < 0)
        assert_non_null(strstr(err, "_ms"));
    pk_tl_free(tl);
    *state = NULL;
}

/* ---- DASH Periods ---- */

static int keep_mpd(void *arg, const char *name, const cb_buf_t *bytes)
{
    char **mpd = arg;

    if (strcmp(name, "manifest.mpd") == 0) {
        free(*mpd);
        *mpd = strndup(bytes->data, bytes->len);
        assert_non_null(*mpd);
    }
    return 0;
}

/* The live MPD of tl (the caller frees it). */
static char *live_mpd(const pk_timeline_t *tl, int64_t window_s)
{
    char *mpd = NULL;

    assert_int_equal(
        pk_render(tl, &(pk_render_opts_t){ .window_s = window_s, .now_ms = T0_MS }, keep_mpd, &mpd),
        0);
    assert_non_null(mpd);
    return mpd;
}

static int count_of(const char *text, const char *what)
{
    int n = 0;

    while ((text = strstr(text, what)) != NULL) {
        n++;
        text++;
    }
    return n;
}

/*
 * A Period opens at the first entry, after a gap, at a discontinuity and at
 * a new init segment; it keeps its id and start while the window moves past
 * its first entry, and after a replay.
 */
static void test_dash_periods(void **state)
{
    pk_timeline_t *tl = pk_tl_new("s1", TARGET), *b;
    store_t st = { .n = 0 };
    char *mpd, *again;
    job_t j;
    size_t i;

    (void) state;
    for (i = 0; i < 9; i++) {
        j = i == 3 ? failed_job((int64_t) i) : job((int64_t) i);
        if (i == 6) { /* the publisher came back: timestamps from 0, 7 s later */
            j.disc = true;
            j.start_90k = 0;
            j.wallclock_ms = T0_MS + 6 * JOB / 90 + 7000;
        } else if (i > 6) {
            j.start_90k = (int64_t) (i - 6) * JOB;
            j.wallclock_ms = T0_MS + 6 * JOB / 90 + 7000 + (int64_t) (i - 6) * JOB / 90;
        }
        if (i == 8)
            j.init = 2; /* the encoder's configuration changed */
        add(tl, j, 1000, NULL);
        store_put(&st, j);
    }
    assert_int_equal(tl->n, 18);
    for (i = 0; i < tl->n; i++)
        assert_int_equal(pk_tl_opens_period(tl, i), i == 0 || i == 8 || i == 12 || i == 16);
    assert_int_equal(tl->ast_ms, T0_MS);

    mpd = live_mpd(tl, 3600);
    assert_int_equal(count_of(mpd, "<Period "), 4);
    assert_non_null(strstr(mpd, "<Period id=\"p0\" start=\"PT0.000S\">"));
    assert_non_null(strstr(mpd, "<Period id=\"p8\" start=\"PT16.000S\">")); /* after the gap */
    assert_non_null(strstr(mpd, "<Period id=\"p12\" start=\"PT31.000S\">"));
    assert_non_null(strstr(mpd, "<Period id=\"p16\" start=\"PT39.000S\">"));
    assert_non_null(strstr(mpd, "presentationTimeOffset=\"1440000\"")); /* p8: job 4's start */
    free(mpd);

    /* the window's front moves into p8: it keeps its id and start */
    assert_true(pk_tl_trim(tl, 18, NULL, NULL) > 0);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, 9);
    assert_int_equal(tl->period.msn, 8);
    assert_false(pk_tl_opens_period(tl, 0));
    mpd = live_mpd(tl, 18);
    assert_int_equal(count_of(mpd, "<Period "), 3);
    assert_non_null(strstr(mpd, "<Period id=\"p8\" start=\"PT16.000S\">"));
    assert_non_null(strstr(mpd, "presentationTimeOffset=\"1440000\""));
    assert_non_null(strstr(mpd, "<S t=\"1620000\" d=\"180000\" r=\"2\"/>"));

    /* a restart gives the same MPD */
    b = replay(tl, &st);
    again = live_mpd(b, 18);
    assert_string_equal(mpd, again);
    free(again);
    free(mpd);
    pk_tl_free(b);

    /* the front at a Period's first entry: nothing to remember */
    assert_true(pk_tl_trim(tl, 12, NULL, NULL) > 0);
    assert_int_equal(pk_tl_entry(tl, 0)->msn, 12);
    assert_int_equal(tl->period.msn, -1);
    assert_true(pk_tl_opens_period(tl, 0));
    pk_tl_free(tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_and_duplicates),
        cmocka_unit_test(test_new_stream_starts_after_wait),
        cmocka_unit_test(test_expire_gap_and_late_arrival),
        cmocka_unit_test(test_expire_gap_without_range),
        cmocka_unit_test(test_failed_is_gap),
        cmocka_unit_test(test_discontinuity),
        cmocka_unit_test_teardown(test_failed_discontinuity_clock, free_timeline),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_dash_periods),
        cmocka_unit_test(test_end_and_reopen),
        cmocka_unit_test_teardown(test_result_after_end_waits_for_next_session, free_timeline),
        cmocka_unit_test(test_invalid_results),
        cmocka_unit_test(test_state_load),
        cmocka_unit_test(test_state_load_checks),
        cmocka_unit_test(test_replay_determinism),
        cmocka_unit_test(test_replay_only_gaps),
        cmocka_unit_test_teardown(test_replay_gap_at_front, free_timeline),
        cmocka_unit_test_teardown(test_seq_jump_is_one_gap, free_timeline),
        cmocka_unit_test_teardown(test_pending_full, free_timeline),
        cmocka_unit_test_teardown(test_long_gap_part, free_timeline),
        cmocka_unit_test_teardown(test_too_many_inits, free_timeline),
        cmocka_unit_test_teardown(test_replay_of_ended_session, free_timeline),
        cmocka_unit_test_teardown(test_expire_runs_through_the_end, free_timeline),
        cmocka_unit_test_teardown(test_duplicate_behind_end_reopens, free_timeline),
        cmocka_unit_test_teardown(test_straggler_when_pending_full, free_timeline),
        cmocka_unit_test_teardown(test_advance_count, free_timeline),
        cmocka_unit_test_teardown(test_dumped_state_out_of_bounds, free_timeline),
        /* last: UBSan aborts in it */
        cmocka_unit_test_teardown(test_wall_clock_overflow, free_timeline),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

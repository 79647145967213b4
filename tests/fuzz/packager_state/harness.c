/*
 * Fuzz harness: the packager timeline (packager_timeline.c) as a packager
 * rebuilds a stream it takes over: the state document from storage, then
 * the stream's TranscodeDone results (from storage or Kafka).
 *
 * Input: the state JSON, then a line "--" ("\n--\n"), then zero or more
 * TranscodeDone JSON documents separated the same way. The state is loaded
 * like packager_streams.c does (a refused one is ignored, and the timeline
 * goes on from there); each result that decodes is added at a monotonic
 * "now" that follows the results' finished_at_ms, and the ticker's work
 * follows: pk_tl_expire, then pk_tl_trim to the stream's DVR window, and
 * the manifests are rendered (live and VOD: DASH Periods from gaps,
 * discontinuities and init changes), and the state is dumped and must load
 * into a fresh timeline. At the end:
 * pk_tl_advance, a last expire, and the same check.
 *
 * The state is the document pk_tl_state_dump writes: gaps are
 * [seq, count, start, duration, wall_ms, disc] ranges, and front_pts and
 * front_pdt_ms carry the clock at the window's front.
 *
 * Checked on the way, besides memory safety: entries are numbered without
 * a hole, in job order, none after the end of an ended session; pieces stay
 * within the renditions; results wait in seq order, none that could be
 * published; gaps are ranges within the bounds; and the state a timeline
 * dumps is one pk_tl_state_load accepts, that dumps again the same.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cb_proto.h"
#include "defs.h"
#include "packager_render.h"
#include "packager_timeline.h"

#define SEP         "\n--\n"
#define SEP_LEN     4
#define MAX_RESULTS 256     /* results read from one input */
#define TARGET_90K  180000  /* 2 s segments, the packager's default */
#define WAIT_MS     2000    /* the packager's gap wait */
#define MAX_STEP_MS 60000   /* the most time one result moves the clock on */
#define T0_MS       1000000 /* the first "now" */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What every entry and piece must be, whatever the input. */
static void walk(const pk_timeline_t *tl)
{
    size_t i, k;

    CB_ASSERT(tl->nrend <= PK_MAX_RENDITIONS);
    CB_ASSERT(tl->npending <= PK_MAX_PENDING);
    CB_ASSERT(tl->ngaps <= PK_MAX_GAPS);
    CB_ASSERT(tl->head + tl->n <= tl->cap);
    CB_ASSERT(tl->ninits <= PK_MAX_INITS);
    for (i = 0; i < tl->ngaps; i++) {
        const pk_gap_t *g = &tl->gaps[i];

        CB_ASSERT(g->seq >= 0 && g->count >= 1);
        CB_ASSERT(g->dur_90k >= 0 && g->dur_90k <= PK_MAX_GAP_90K);
    }
    for (i = 0; i < tl->npending; i++) {
        /* in seq order; none that is due (advance runs after every change) */
        CB_ASSERT(i == 0 || tl->pending[i]->seq > tl->pending[i - 1]->seq);
        if (tl->next_seq >= 0)
            CB_ASSERT(tl->pending[i]->seq > tl->next_seq ||
                      (tl->ended && tl->next_seq > tl->end_seq &&
                       tl->pending[i]->seq == tl->next_seq)); /* behind the end */
    }
    for (i = 0; i < tl->n; i++) {
        const pk_entry_t *e = pk_tl_entry(tl, i);

        CB_ASSERT(e->msn >= tl->window_msn);
        CB_ASSERT(e->part >= 0 && e->seq >= tl->first_seq);
        CB_ASSERT(!tl->ended || e->seq <= tl->end_seq); /* nothing after the end */
        if (i > 0) {
            CB_ASSERT(e->msn == pk_tl_entry(tl, i - 1)->msn + 1);
            CB_ASSERT(e->seq >= pk_tl_entry(tl, i - 1)->seq);
        }
        CB_ASSERT(e->npieces <= tl->nrend);
        CB_ASSERT(!e->gap || (e->pieces == NULL && e->npieces == 0));
        for (k = 0; k < e->npieces; k++) {
            const char *init = pk_tl_init(tl, &e->pieces[k]);
            if (init)
                CB_ASSERT(strlen(init) < 4096); /* a string the timeline owns */
        }
    }
    if (tl->n)
        CB_ASSERT(pk_tl_entry(tl, tl->n - 1)->msn + 1 == tl->next_msn);
    (void) pk_tl_duration_90k(tl);
    (void) pk_tl_waiting_since(tl);
    (void) pk_tl_disc_seq_at(tl, pk_tl_window_start(tl, tl->packaging.dvr_window_s));
}

static void gone(void *arg, const pk_timeline_t *tl, const pk_entry_t *e)
{
    size_t *n = arg;

    CB_ASSERT(e->gap || e->npieces <= tl->nrend);
    (*n)++;
}

/* What the packager's publish() does after a change: trim, unless recording. */
static void trim(pk_timeline_t *tl)
{
    size_t n = 0;
    int cut;

    if (tl->packaging.record)
        return;
    cut = pk_tl_trim(tl, tl->packaging.dvr_window_s, gone, &n);
    CB_ASSERT(cut >= 0 && (size_t) cut == n);
    CB_ASSERT(cut == 0 || tl->n >= 3);
}

static int no_file(void *arg, const char *name, const cb_buf_t *bytes)
{
    (void) arg;
    CB_ASSERT(name[0] && bytes->len > 0);
    return 0;
}

/* The manifests of the window (live) and of every entry (VOD): made, or
 * nothing to list; never a hole in memory. */
static void render(const pk_timeline_t *tl)
{
    int rc = pk_render(tl,
                       &(pk_render_opts_t){ .window_s = tl->packaging.dvr_window_s,
                                            .now_ms = T0_MS,
                                            .utc_timing_uri = "/time" },
                       no_file, NULL);

    CB_ASSERT(rc == 0 || rc == -ENODATA || rc == -EINVAL || rc == -ENOMEM);
    rc = pk_render(tl, &(pk_render_opts_t){ .vod = true }, no_file, NULL);
    CB_ASSERT(rc == 0 || rc == -ENODATA || rc == -EINVAL || rc == -ENOMEM);
}

static void load_state(pk_timeline_t *tl, const uint8_t *p, size_t len)
{
    json_error_t je;
    json_t *st = json_loadb((const char *) p, len, 0, &je);
    char err[256];

    if (!st)
        return;
    /* refused: the packager goes on with the timeline as the load left it */
    pk_tl_state_load(tl, st, err, sizeof(err));
    json_decref(st);
}

/*
 * Results reach the packager about when they are finished: the clock
 * follows finished_at_ms (never backwards, at most MAX_STEP_MS a result),
 * so that an input chooses between a burst and a slow trickle.
 */
static int64_t clock_step(int64_t *last_finished_ms, int64_t finished_ms)
{
    int64_t step = 0;

    if (*last_finished_ms >= 0 && finished_ms > *last_finished_ms)
        step = CB_MIN(finished_ms - *last_finished_ms, MAX_STEP_MS);
    if (*last_finished_ms < 0 || finished_ms > *last_finished_ms)
        *last_finished_ms = finished_ms;
    return step;
}

static void add_result(pk_timeline_t *tl, const uint8_t *p, size_t len, int64_t *now_ms,
                       int64_t *last_finished_ms)
{
    cb_proto_transcode_done_t *d = calloc(1, sizeof(*d));
    cb_jsonv_error_t verr;
    char err[256];
    bool changed;
    int rc;

    if (!d)
        return;
    if (cb_proto_transcode_done_decode(p, len, d, &verr)) {
        cb_proto_transcode_done_release(d);
        free(d);
        return;
    }
    *now_ms += clock_step(last_finished_ms, d->finished_at_ms);
    rc = pk_tl_add(tl, d, *now_ms, &changed, err, sizeof(err)); /* takes d */
    CB_ASSERT(rc == -EINVAL || rc == -ENOSPC || rc == -ENOMEM ||
              (rc >= PK_TL_PUBLISHED && rc <= PK_TL_REOPENED));
}

/*
 * The state the timeline dumps (through its text, as it is stored) loads
 * again, and dumps again the same document; the copy then advances.
 */
static void dump_and_reload(const pk_timeline_t *tl)
{
    json_t *st = pk_tl_state_dump(tl), *back, *again;
    pk_timeline_t *b;
    char *text, err[256] = "";

    if (!st)
        return;
    text = json_dumps(st, JSON_COMPACT);
    if (!text) {
        json_decref(st);
        return;
    }
    back = json_loads(text, 0, NULL);
    CB_ASSERT(back != NULL);
    b = pk_tl_new(tl->stream, TARGET_90K);
    if (b) {
        if (pk_tl_state_load(b, back, err, sizeof(err)) != 0) {
            fprintf(stderr, "packager_state: the dumped state does not load: %s\n%s\n", err, text);
            CB_ASSERT(!"the state a timeline dumps loads back");
        }
        again = pk_tl_state_dump(b);
        if (again) {
            CB_ASSERT(json_equal(st, again));
            json_decref(again);
        }
        pk_tl_advance(b);
        walk(b);
        pk_tl_free(b);
    }
    free(text);
    json_decref(back);
    json_decref(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    pk_timeline_t *tl = pk_tl_new("fuzz", TARGET_90K);
    int64_t now_ms = T0_MS, last_finished_ms = -1;
    size_t part = 0;

    if (!tl)
        return 0;
    for (;;) {
        const uint8_t *sep = memmem(p, (size_t) (end - p), SEP, SEP_LEN);
        size_t len = sep ? (size_t) (sep - p) : (size_t) (end - p);

        if (part == 0) {
            load_state(tl, p, len);
        } else {
            add_result(tl, p, len, &now_ms, &last_finished_ms);
            /* the ticker */
            pk_tl_expire(tl, now_ms, WAIT_MS);
            trim(tl);
            walk(tl);
            render(tl);
            dump_and_reload(tl); /* the packager stores the state after each change */
        }
        if (!sep || part == MAX_RESULTS)
            break;
        p = sep + SEP_LEN;
        part++;
    }
    pk_tl_advance(tl);
    pk_tl_expire(tl, now_ms + 10 * WAIT_MS, WAIT_MS);
    trim(tl);
    walk(tl);
    render(tl);
    dump_and_reload(tl);
    pk_tl_free(tl);
    return 0;
}

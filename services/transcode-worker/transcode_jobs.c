/*
 * transcode_jobs.c - TranscodeJob in, renditions into storage, TranscodeDone
 * out (see transcode_jobs.h for the order of things and why).
 *
 * Threads: each lane's consumer runs handlers on its own worker threads
 * (`jobs` per lane); the gate lets `jobs` of them transcode at once; the
 * watchdog thread cancels jobs over their budget and, while draining, every
 * job still running at the cancel point. Gate and slots are under j->lock.
 */
#include "transcode_jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cb_proto.h"
#include "clock.h"
#include "log.h"
#include "transcode_pipeline.h"

#define MAX_JOBS         64
#define MAX_SEGMENTS     64    /* per rendition per job (the contract's bound) */
#define DONE_TIMEOUT_MS  30000 /* wait for the broker to take a done message */
#define CANCEL_MARGIN_MS 1000  /* jobs stop this long before the drain deadline */
#define ATTEMPT_HEADER   "castbus-attempt"
/* a source that decodes this much shorter than announced is truncated */
#define TRUNCATED_SLACK_90K (90000 / 2)

const cb_config_key_t tc_jobs_config_keys[] = {
    { .name = "jobs",
      .type = CB_CONFIG_INT,
      .def = "1",
      .min = 1,
      .max = MAX_JOBS,
      .offset = offsetof(tc_jobs_config_t, jobs),
      .help = "Jobs transcoded at once; each already uses every core, so 1 suits most pods." },
    { .name = "job_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "2m",
      .min = 1000,
      .max = 3600000,
      .offset = offsetof(tc_jobs_config_t, job_timeout_ms),
      .help = "Time budget of one attempt at a job; past it the job is cancelled and produced "
              "again for any worker." },
    { .name = "job_attempts",
      .type = CB_CONFIG_INT,
      .def = "3",
      .min = 1,
      .max = 100,
      .offset = offsetof(tc_jobs_config_t, job_attempts),
      .help = "Attempts at a job that overruns its budget before it fails (a gap)." },
    { .name = "hw_encoder",
      .type = CB_CONFIG_ENUM,
      .def = "none",
      .choices = TC_HW_CHOICES,
      .offset = offsetof(tc_jobs_config_t, hw_encoder),
      .help = "Hardware video encoder to use for H.264 and HEVC rungs; a rung whose hardware "
              "encoder cannot be opened is encoded in software." },
    { .name = "hw_device",
      .type = CB_CONFIG_STRING,
      .def = "/dev/dri/renderD128",
      .offset = offsetof(tc_jobs_config_t, hw_device),
      .help = "VAAPI render node for hw_encoder=vaapi." },
    { .name = NULL },
};

typedef struct slot {
    bool busy;
    int64_t deadline_ms;
    atomic_bool cancel;
    atomic_bool timed_out;
} slot_t;

typedef struct lane {
    tc_jobs_t *j;
    const char *name; /* "normal", "high" */
    bool high;
    cb_kafka_consumer_t *consumer;
} lane_t;

struct tc_jobs {
    tc_jobs_config_t cfg;
    cb_kafka_producer_t *producer;
    cb_storage_t *storage;
    lane_t lanes[2]; /* normal, high */
    char worker[128];

    pthread_mutex_t lock;
    pthread_cond_t gate_cond; /* a slot was freed, or stopping */
    pthread_cond_t wd_cond;   /* wakes the watchdog */
    slot_t slots[MAX_JOBS];
    int nfree;
    int waiting_high;
    bool stopping;
    int64_t cancel_at_ms; /* while draining: cancel what still runs (0: not draining) */
    bool quit;
    pthread_t watchdog;
    bool watchdog_started;

    cb_metric_t *m_in_flight, *m_jobs, *m_job_seconds, *m_latency, *m_failures, *m_fps, *m_frames;
};

/* ---- gate ---- */

static slot_t *gate_acquire(tc_jobs_t *j, bool high)
{
    slot_t *s = NULL;
    int i;

    pthread_mutex_lock(&j->lock);
    if (high)
        j->waiting_high++;
    while (!j->stopping && (j->nfree == 0 || (!high && j->waiting_high > 0)))
        pthread_cond_wait(&j->gate_cond, &j->lock);
    if (high && --j->waiting_high == 0)
        pthread_cond_broadcast(&j->gate_cond); /* normal jobs may go now */
    for (i = 0; !j->stopping && i < j->cfg.jobs; i++) {
        if (!j->slots[i].busy) {
            s = &j->slots[i];
            s->busy = true;
            s->deadline_ms = cb_clock_mono_ms() + j->cfg.job_timeout_ms;
            atomic_store(&s->cancel, false);
            atomic_store(&s->timed_out, false);
            j->nfree--;
            break;
        }
    }
    cb_metric_set(j->m_in_flight, NULL, (double) (j->cfg.jobs - j->nfree));
    pthread_mutex_unlock(&j->lock);
    return s;
}

static void gate_release(tc_jobs_t *j, slot_t *s)
{
    pthread_mutex_lock(&j->lock);
    s->busy = false;
    j->nfree++;
    cb_metric_set(j->m_in_flight, NULL, (double) (j->cfg.jobs - j->nfree));
    pthread_cond_broadcast(&j->gate_cond);
    pthread_mutex_unlock(&j->lock);
}

/* Cancels jobs over their budget, and everything at the drain's cancel point. */
static void *watchdog_main(void *arg)
{
    tc_jobs_t *j = arg;
    struct timespec until;
    int i;

    pthread_setname_np(pthread_self(), "tc-watchdog");
    pthread_mutex_lock(&j->lock);
    while (!j->quit) {
        int64_t now = cb_clock_mono_ms();
        bool all = j->cancel_at_ms != 0 && now >= j->cancel_at_ms;

        for (i = 0; i < j->cfg.jobs; i++) {
            slot_t *s = &j->slots[i];
            if (!s->busy || atomic_load(&s->cancel))
                continue;
            if (now >= s->deadline_ms)
                atomic_store(&s->timed_out, true);
            if (all || now >= s->deadline_ms)
                atomic_store(&s->cancel, true);
        }
        cb_clock_deadline(&until, 100 * 1000);
        pthread_cond_timedwait(&j->wd_cond, &j->lock, &until);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

/* ---- output: the storage sink ---- */

typedef struct out_seg {
    char key[CB_STORAGE_KEY_MAX];
    int64_t start_90k, duration_90k;
    size_t bytes;
    cb_proto_part_t *parts; /* its chunks (low latency), as the done message says them */
    size_t nparts;
} out_seg_t;

typedef struct out_rendition {
    char init_key[CB_STORAGE_KEY_MAX];
    out_seg_t segs[MAX_SEGMENTS];
    size_t n;
} out_rendition_t;

/* One job's outputs. Each rendition's entry is written by that rendition's thread only. */
typedef struct job_out {
    cb_storage_t *storage;
    char prefix[128]; /* "live/<stream>" (stream ids are at most 64 bytes) */
    const tc_result_t *res;
    out_rendition_t r[TC_MAX_RENDITIONS];
} job_out_t;

/* FNV-1a: names an init segment by its bytes, so a new config gets a new name. */
static uint64_t content_hash(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int out_init(void *arg, const tc_rendition_t *r, const uint8_t *data, size_t len)
{
    job_out_t *o = arg;
    out_rendition_t * or = &o->r[r - o->res->renditions];
    cb_storage_stat_t st;

    if (snprintf(or->init_key, sizeof(or->init_key), "%s/%s/init-%016" PRIx64 ".mp4", o->prefix,
                 r->name, content_hash(data, len)) >= (int) sizeof(or->init_key))
        return -ENAMETOOLONG;
    /* written by the stream's first job; the same bytes after that */
    if (cb_storage_stat(o->storage, or->init_key, &st) == 0 && st.size == len)
        return 0;
    return cb_storage_put(o->storage, or->init_key, data, len);
}

static int out_segment(void *arg, const tc_rendition_t *r, const tc_segment_t *seg)
{
    job_out_t *o = arg;
    out_rendition_t * or = &o->r[r - o->res->renditions];
    out_seg_t *s;

    if (or->n == MAX_SEGMENTS)
        return -EFBIG;
    s = & or->segs[or->n];
    /* named by its start: consecutive jobs on different workers join */
    if (snprintf(s->key, sizeof(s->key), "%s/%s/%013lld.m4s", o->prefix, r->name,
                 (long long) seg->start_90k) >= (int) sizeof(s->key))
        return -ENAMETOOLONG;
    s->start_90k = seg->start_90k;
    s->duration_90k = seg->duration_90k;
    s->bytes = seg->len;
    s->nparts = 0;
    if (seg->nparts) {
        size_t i;

        s->parts = calloc(seg->nparts, sizeof(*s->parts));
        if (!s->parts)
            return -ENOMEM;
        for (i = 0; i < seg->nparts; i++)
            s->parts[i] = (cb_proto_part_t){
                .offset = seg->parts[i].offset,
                .bytes = seg->parts[i].len,
                .duration_90k = seg->parts[i].duration_90k,
                .independent = seg->parts[i].independent,
            };
        s->nparts = seg->nparts;
    }
    or->n++;
    return cb_storage_put(o->storage, s->key, seg->data, seg->len);
}

static void out_free(job_out_t *o)
{
    size_t i, k;

    if (!o)
        return;
    for (i = 0; i < TC_MAX_RENDITIONS; i++)
        for (k = 0; k < o->r[i].n; k++)
            free(o->r[i].segs[k].parts);
    free(o);
}

/* ---- the done message ---- */

typedef struct job_ctx {
    tc_jobs_t *j;
    const lane_t *lane;
    const cb_kafka_msg_t *msg;
    cb_proto_transcode_job_t job;
    job_out_t *out;
    tc_result_t *res;
    char done_key[CB_STORAGE_KEY_MAX];
    int64_t t0_us;
} job_ctx_t;

static char *build_done(const job_ctx_t *x, bool ok, const char *error, size_t *len)
{
    cb_proto_rendition_t rends[TC_MAX_RENDITIONS];
    cb_proto_media_segment_t segs[TC_MAX_RENDITIONS][MAX_SEGMENTS];
    cb_proto_transcode_done_t m = {
        .job_id = x->job.job_id,
        .kind = x->job.kind == CB_PROTO_TRANSCODE_JOB_KIND_VOD ? CB_PROTO_TRANSCODE_DONE_KIND_VOD
                                                               : CB_PROTO_TRANSCODE_DONE_KIND_LIVE,
        .stream_id = x->job.stream_id,
        .seq = x->job.seq,
        .status = ok ? CB_PROTO_TRANSCODE_DONE_STATUS_OK : CB_PROTO_TRANSCODE_DONE_STATUS_FAILED,
        .error = ok ? NULL : (char *) error,
        .start_pts_90k = x->job.source.start_pts_90k,
        .duration_90k = x->job.source.duration_90k,
        .discontinuity = x->job.discontinuity,
        .end_of_stream = x->job.end_of_stream,
        .packaging = x->job.packaging,
        .renditions = rends,
        .worker = (char *) x->j->worker,
        .finished_at_ms = cb_clock_wall_ms(),
        .ingest_wallclock_ms = x->job.ingest_wallclock_ms,
    };
    size_t i, k;

    for (i = 0; ok && i < x->res->n; i++) {
        const tc_rendition_t *r = &x->res->renditions[i];
        const out_rendition_t * or = &x->out->r[i];
        double secs = (double) r->duration_90k / 90000.0;
        size_t at = m.renditions_count;

        if (or->n == 0)
            continue; /* a track with no samples in this segment */
        for (k = 0; k < or->n; k++)
            segs[at][k] = (cb_proto_media_segment_t){
                .path = (char *) or->segs[k].key,
                .start_pts_90k = or->segs[k].start_90k,
                .duration_90k = or->segs[k].duration_90k,
                .bytes = (int64_t) or->segs[k].bytes,
                .parts = or->segs[k].parts,
                .parts_count = or->segs[k].nparts,
            };
        rends[at] = (cb_proto_rendition_t){
            .name = (char *) r->name,
            .kind = r->video ? CB_PROTO_RENDITION_KIND_VIDEO : CB_PROTO_RENDITION_KIND_AUDIO,
            .codecs = (char *) r->track.codecs,
            .width = r->video ? r->width : 0,
            .height = r->video ? r->height : 0,
            .fps = r->video ? r->fps : 0,
            .sample_rate = r->video ? 0 : r->track.sample_rate,
            .channels = r->video ? 0 : r->track.channels,
            .bandwidth_bps = secs > 0 ? (int64_t) ((double) r->bytes * 8 / secs) : 0,
            .target_bitrate_bps = r->target_bitrate_bps,
            .init_path = (char *) or->init_key,
            .segments = segs[at],
            .segments_count = or->n,
        };
        m.renditions_count = at + 1;
    }
    return cb_proto_transcode_done_encode(&m, len);
}

/* Produce the done message and wait for it; then record it. 0, or RETRY's reason. */
static int send_done(job_ctx_t *x, bool ok, const char *error, char *reason, size_t reasonlen)
{
    char err[256];
    size_t len = 0;
    char *text = build_done(x, ok, error, &len);
    int rc;

    if (!text) {
        snprintf(reason, reasonlen, "out of memory building the done message");
        return -ENOMEM;
    }
    rc = cb_kafka_produce_sync(x->j->producer, CB_PROTO_TOPIC_MEDIA_TRANSCODE_DONE,
                               x->job.stream_id, strlen(x->job.stream_id), text, len, NULL, 0,
                               DONE_TIMEOUT_MS, err, sizeof(err));
    if (rc) {
        cb_metric_add(x->j->m_failures, (const char *[]){ "kafka" }, 1);
        snprintf(reason, reasonlen, "done message not acknowledged: %s", err);
    } else if (ok) {
        /* a redelivery after this point finds the record and produces nothing */
        int prc = cb_storage_put(x->j->storage, x->done_key, text, len);
        if (prc)
            cb_log_warn("job %s: done record '%s' not written (%s); a redelivery would "
                        "announce it twice",
                        x->job.job_id, x->done_key, strerror(-prc));
    }
    free(text);
    return rc;
}

/* The job can never succeed: a failed done (a gap), then the dead letter. */
static cb_kafka_result_t fail_job(job_ctx_t *x, const char *label, const char *why, char *reason,
                                  size_t reasonlen)
{
    cb_log_warn("job %s failed (%s): %s", x->job.job_id, label, why);
    cb_metric_add(x->j->m_failures, (const char *[]){ label }, 1);
    if (send_done(x, false, why, reason, reasonlen))
        return CB_KAFKA_RETRY;
    cb_metric_add(x->j->m_jobs, (const char *[]){ x->lane->name, "failed" }, 1);
    snprintf(reason, reasonlen, "%s", why);
    return CB_KAFKA_INVALID;
}

static int msg_attempt(const cb_kafka_msg_t *msg)
{
    size_t len = 0;
    const char *v = cb_kafka_msg_header(msg, ATTEMPT_HEADER, &len);
    char buf[16], *end;
    long n;

    if (!v || len == 0 || len >= sizeof(buf))
        return 1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    n = strtol(buf, &end, 10);
    return *end || n < 1 || n > 1000 ? 1 : (int) n;
}

/* Over budget: give the job back to the group through its topic, or fail it. */
static cb_kafka_result_t requeue(job_ctx_t *x, char *reason, size_t reasonlen)
{
    int attempt = msg_attempt(x->msg);
    char why[256], next[16], err[256];
    cb_kafka_header_t h;

    if (attempt >= x->j->cfg.job_attempts) {
        snprintf(why, sizeof(why), "over its time budget of %lld ms on %d attempts",
                 (long long) x->j->cfg.job_timeout_ms, attempt);
        return fail_job(x, "timeout", why, reason, reasonlen);
    }
    snprintf(next, sizeof(next), "%d", attempt + 1);
    h = (cb_kafka_header_t){ ATTEMPT_HEADER, next, strlen(next) };
    if (cb_kafka_produce_sync(x->j->producer, x->msg->topic, x->msg->key, x->msg->key_len,
                              x->msg->value, x->msg->len, &h, 1, DONE_TIMEOUT_MS, err,
                              sizeof(err))) {
        snprintf(reason, reasonlen, "over its time budget, and not produced again: %s", err);
        return CB_KAFKA_RETRY;
    }
    cb_metric_add(x->j->m_failures, (const char *[]){ "timeout" }, 1);
    cb_log_warn("job %s: over its time budget of %lld ms (attempt %d); produced again for "
                "another worker",
                x->job.job_id, (long long) x->j->cfg.job_timeout_ms, attempt);
    cb_metric_add(x->j->m_jobs, (const char *[]){ x->lane->name, "requeued" }, 1);
    return CB_KAFKA_OK;
}

static void observe_renditions(tc_jobs_t *j, const tc_result_t *res)
{
    size_t i;

    for (i = 0; i < res->n; i++) {
        const tc_rendition_t *r = &res->renditions[i];
        if (!r->video)
            continue;
        cb_metric_add(j->m_frames, (const char *[]){ r->name, r->encoder }, (double) r->frames);
        if (r->encode_us > 0)
            cb_metric_set(j->m_fps, (const char *[]){ r->name },
                          (double) r->frames * 1e6 / (double) r->encode_us);
    }
}

/* With a slot: transcode, store, announce. */
static cb_kafka_result_t run_job(job_ctx_t *x, slot_t *slot, char *reason, size_t reasonlen)
{
    tc_jobs_t *j = x->j;
    const cb_proto_source_segment_t *src = &x->job.source;
    tc_params_t p = { 0 };
    tc_sink_t sink = { .init = out_init, .segment = out_segment, .arg = x->out };
    cb_storage_stat_t st;
    char path[4096], err[512];
    int rc;

    if (cb_storage_stat(j->storage, x->done_key, &st) == 0) {
        cb_log_info("job %s was finished before (redelivered); nothing to do", x->job.job_id);
        cb_metric_add(j->m_jobs, (const char *[]){ x->lane->name, "duplicate" }, 1);
        return CB_KAFKA_OK;
    }
    if (tc_profile_get(x->job.profile, &p.profile)) {
        snprintf(err, sizeof(err), "unknown ladder profile '%s'", x->job.profile);
        return fail_job(x, "unknown_profile", err, reason, reasonlen);
    }
    if ((double) src->duration_90k > (MAX_SEGMENTS - 4) * p.profile.segment_s * 90000.0) {
        snprintf(err, sizeof(err),
                 "source segment of %.1f s is longer than a job may be (%.0f s with profile '%s')",
                 (double) src->duration_90k / 90000.0, (MAX_SEGMENTS - 4) * p.profile.segment_s,
                 p.profile.name);
        return fail_job(x, "too_long", err, reason, reasonlen);
    }
    rc = cb_storage_stat(j->storage, src->path, &st);
    if (rc == -ENOENT || rc == -EINVAL) {
        snprintf(err, sizeof(err), "source segment '%.300s' is %s", src->path,
                 rc == -ENOENT ? "missing" : "not a valid storage key");
        return fail_job(x, "source_missing", err, reason, reasonlen);
    }
    if (rc == 0)
        rc = cb_storage_local_path(j->storage, src->path, path, sizeof(path));
    if (rc) {
        cb_metric_add(j->m_failures, (const char *[]){ "storage" }, 1);
        snprintf(reason, reasonlen, "source segment '%.300s' not readable: %s", src->path,
                 strerror(-rc));
        return CB_KAFKA_RETRY;
    }

    cb_log_info("job %s started (lane %s, attempt %d, %.2f s of %s)", x->job.job_id, x->lane->name,
                msg_attempt(x->msg), (double) src->duration_90k / 90000.0,
                src->video_codec && *src->video_codec ? src->video_codec : "audio");
    p.input = path;
    p.timeline = true;
    p.start_pts_90k = src->start_pts_90k;
    p.duration_90k = src->duration_90k;
    p.cancel = &slot->cancel;
    p.hw = (tc_hw_t) j->cfg.hw_encoder;
    p.hw_device = j->cfg.hw_device;
    if (x->job.packaging.low_latency && x->job.packaging.part_target_ms > 0)
        p.part_90k = x->job.packaging.part_target_ms * 90;
    rc = tc_transcode(&p, &sink, x->res, err, sizeof(err));
    observe_renditions(j, x->res);
    if (rc == -EFBIG)
        snprintf(err, sizeof(err), "more than %d output segments per rendition", MAX_SEGMENTS);
    if (rc == 0 && x->res->end_90k - x->res->start_90k + TRUNCATED_SLACK_90K < src->duration_90k) {
        /* what decoded is good, but the segment promised more: a gap, not a short segment */
        snprintf(err, sizeof(err), "truncated source: %.2f s decoded of %.2f s announced",
                 (double) (x->res->end_90k - x->res->start_90k) / 90000.0,
                 (double) src->duration_90k / 90000.0);
        rc = -EINVAL;
    }
    if (rc == -EINVAL || rc == -EFBIG)
        return fail_job(x, "invalid_input", err, reason, reasonlen);
    if (rc == -ECANCELED && atomic_load(&slot->timed_out))
        return requeue(x, reason, reasonlen);
    if (rc == -ECANCELED) {
        snprintf(reason, reasonlen, "cancelled: the worker is stopping");
        return CB_KAFKA_RETRY;
    }
    if (rc) {
        cb_metric_add(j->m_failures, (const char *[]){ "storage" }, 1);
        snprintf(reason, reasonlen, "%s", err);
        return CB_KAFKA_RETRY;
    }
    if (send_done(x, true, NULL, reason, reasonlen))
        return CB_KAFKA_RETRY;
    cb_metric_add(j->m_jobs, (const char *[]){ x->lane->name, "ok" }, 1);
    cb_metric_observe(j->m_job_seconds, (const char *[]){ x->lane->name },
                      (double) (cb_clock_mono_us() - x->t0_us) / 1e6);
    if (x->job.created_at_ms > 0)
        cb_metric_observe(j->m_latency, (const char *[]){ x->lane->name },
                          (double) (cb_clock_wall_ms() - x->job.created_at_ms) / 1000.0);
    cb_log_info("job %s done in %.2f s: %zu renditions, %lld..%lld", x->job.job_id,
                (double) (cb_clock_mono_us() - x->t0_us) / 1e6, x->res->n,
                (long long) x->res->start_90k, (long long) x->res->end_90k);
    return CB_KAFKA_OK;
}

static cb_kafka_result_t handle(void *arg, const cb_kafka_msg_t *msg, char *reason,
                                size_t reasonlen)
{
    const lane_t *lane = arg;
    tc_jobs_t *j = lane->j;
    job_ctx_t x = { .j = j, .lane = lane, .msg = msg };
    cb_jsonv_error_t verr;
    cb_kafka_result_t r;
    slot_t *slot;

    if (cb_proto_transcode_job_decode(msg->value, msg->len, &x.job, &verr)) {
        snprintf(reason, reasonlen, "not a TranscodeJob: %s", verr.text);
        cb_metric_add(j->m_failures, (const char *[]){ "invalid_message" }, 1);
        cb_proto_transcode_job_release(&x.job);
        return CB_KAFKA_INVALID;
    }
    slot = gate_acquire(j, lane->high);
    if (!slot) {
        snprintf(reason, reasonlen, "the worker is stopping");
        cb_proto_transcode_job_release(&x.job);
        return CB_KAFKA_RETRY;
    }
    x.t0_us = cb_clock_mono_us();
    x.out = calloc(1, sizeof(*x.out));
    x.res = calloc(1, sizeof(*x.res));
    if (!x.out || !x.res) {
        snprintf(reason, reasonlen, "out of memory");
        r = CB_KAFKA_RETRY;
    } else {
        const char *kind = x.job.kind == CB_PROTO_TRANSCODE_JOB_KIND_VOD ? "vod" : "live";
        x.out->storage = j->storage;
        x.out->res = x.res;
        snprintf(x.out->prefix, sizeof(x.out->prefix), "%s/%s", kind, x.job.stream_id);
        snprintf(x.done_key, sizeof(x.done_key), "%s/%s/done/%08lld.json", kind, x.job.stream_id,
                 (long long) x.job.seq);
        r = run_job(&x, slot, reason, reasonlen);
    }
    gate_release(j, slot);
    out_free(x.out);
    free(x.res);
    cb_proto_transcode_job_release(&x.job);
    return r;
}

/* ---- life cycle ---- */

static const double job_buckets[] = { 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600 };

int tc_jobs_new(const tc_jobs_config_t *cfg, const cb_kafka_config_t *kafka,
                cb_kafka_producer_t *producer, cb_storage_t *storage, cb_metrics_t *metrics,
                tc_jobs_t **out, char *err, size_t errlen)
{
    static const char *const topics[2][2] = {
        { CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS, NULL },
        { CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS_HIGH, NULL },
    };
    tc_jobs_t *j = calloc(1, sizeof(*j));
    int i, rc;

    if (!j)
        return -ENOMEM;
    j->cfg = *cfg;
    j->cfg.jobs = CB_MAX(1, CB_MIN(cfg->jobs, MAX_JOBS));
    j->nfree = (int) j->cfg.jobs;
    j->producer = producer;
    j->storage = storage;
    if (gethostname(j->worker, sizeof(j->worker) - 1))
        snprintf(j->worker, sizeof(j->worker), "unknown");
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->gate_cond, NULL);
    pthread_cond_init(&j->wd_cond, NULL);

    j->m_in_flight = cb_metrics_gauge(metrics, "castbus_transcode_jobs_in_flight",
                                      "Jobs being transcoded now.", NULL);
    j->m_jobs = cb_metrics_counter(metrics, "castbus_transcode_jobs_total",
                                   "Jobs finished, by lane and result (ok, failed, duplicate, "
                                   "requeued).",
                                   (const char *[]){ "lane", "result", NULL });
    j->m_job_seconds = cb_metrics_histogram(metrics, "castbus_transcode_job_seconds",
                                            "Time from taking a slot to the acknowledged done "
                                            "message, by lane.",
                                            (const char *[]){ "lane", NULL }, job_buckets,
                                            CB_ARRAY_LEN(job_buckets));
    j->m_latency = cb_metrics_histogram(metrics, "castbus_transcode_job_latency_seconds",
                                        "Time from ingest announcing a job to its done message "
                                        "(queue wait included), by lane.",
                                        (const char *[]){ "lane", NULL }, job_buckets,
                                        CB_ARRAY_LEN(job_buckets));
    j->m_failures = cb_metrics_counter(metrics, "castbus_transcode_failures_total",
                                       "Job failures by reason (invalid_message, invalid_input, "
                                       "source_missing, unknown_profile, too_long, timeout, "
                                       "storage, kafka).",
                                       (const char *[]){ "reason", NULL });
    j->m_fps = cb_metrics_gauge(metrics, "castbus_transcode_encode_fps",
                                "Encoder speed of the last job, frames per second of encoder "
                                "time, by rendition.",
                                (const char *[]){ "rendition", NULL });
    j->m_frames = cb_metrics_counter(metrics, "castbus_transcode_frames_encoded_total",
                                     "Video frames encoded, by rendition and encoder (libx264, "
                                     "h264_nvenc, ...).",
                                     (const char *[]){ "rendition", "encoder", NULL });

    for (i = 0; i < 2; i++) {
        lane_t *l = &j->lanes[i];
        cb_kafka_consumer_opts_t o = {
            .group = "transcode-worker",
            .topics = topics[i],
            .handler = handle,
            .arg = l,
            .workers = (int) j->cfg.jobs,
            .dlq = producer,
        };

        l->j = j;
        l->high = i == 1;
        l->name = l->high ? "high" : "normal";
        rc = cb_kafka_consumer_new(kafka, &o, metrics, &l->consumer, err, errlen);
        if (rc) {
            tc_jobs_component.free(j);
            return rc;
        }
    }
    *out = j;
    return 0;
}

int tc_jobs_start(tc_jobs_t *j)
{
    int i, rc;

    rc = pthread_create(&j->watchdog, NULL, watchdog_main, j);
    if (rc)
        return -rc;
    j->watchdog_started = true;
    for (i = 0; i < 2; i++) {
        rc = cb_kafka_consumer_start(j->lanes[i].consumer);
        if (rc)
            return rc;
    }
    cb_log_info("transcode-worker: %lld job slots, budget %lld ms, lanes %s and %s",
                (long long) j->cfg.jobs, (long long) j->cfg.job_timeout_ms,
                CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS, CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS_HIGH);
    return 0;
}

static int jobs_ready(void *obj, char *err, size_t errlen)
{
    tc_jobs_t *j = obj;
    int i, rc;

    for (i = 0; i < 2; i++) {
        rc = cb_kafka_consumer_component.ready(j->lanes[i].consumer, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct lane_drain {
    cb_kafka_consumer_t *c;
    int64_t deadline_ms;
} lane_drain_t;

static void *drain_lane(void *arg)
{
    lane_drain_t *d = arg;

    cb_kafka_consumer_drain(d->c, d->deadline_ms);
    return NULL;
}

static void jobs_drain(void *obj, int64_t deadline_ms)
{
    tc_jobs_t *j = obj;
    lane_drain_t high = { j->lanes[1].consumer, deadline_ms };
    pthread_t t;
    bool threaded;

    int busy;

    pthread_mutex_lock(&j->lock);
    j->stopping = true; /* handlers waiting for a slot give their message back */
    j->cancel_at_ms = CB_MAX(cb_clock_mono_ms(), deadline_ms - CANCEL_MARGIN_MS);
    busy = (int) j->cfg.jobs - j->nfree;
    pthread_cond_broadcast(&j->gate_cond);
    pthread_cond_signal(&j->wd_cond);
    pthread_mutex_unlock(&j->lock);
    cb_log_info("transcode-worker: draining; %d jobs in hand may run %lld ms more", busy,
                (long long) (j->cancel_at_ms - cb_clock_mono_ms()));
    /* both lanes stop fetching at once and wait for their jobs together */
    threaded = pthread_create(&t, NULL, drain_lane, &high) == 0;
    if (!threaded)
        drain_lane(&high);
    cb_kafka_consumer_drain(j->lanes[0].consumer, deadline_ms);
    if (threaded)
        pthread_join(t, NULL);
}

static void jobs_free(void *obj)
{
    tc_jobs_t *j = obj;
    int i;

    if (!j)
        return;
    /* not drained (a failed start): nothing may wait for a slot or run on */
    pthread_mutex_lock(&j->lock);
    j->stopping = true;
    if (!j->cancel_at_ms)
        j->cancel_at_ms = cb_clock_mono_ms();
    pthread_cond_broadcast(&j->gate_cond);
    pthread_mutex_unlock(&j->lock);
    for (i = 0; i < 2; i++)
        cb_kafka_consumer_free(j->lanes[i].consumer);
    if (j->watchdog_started) {
        pthread_mutex_lock(&j->lock);
        j->quit = true;
        pthread_cond_signal(&j->wd_cond);
        pthread_mutex_unlock(&j->lock);
        pthread_join(j->watchdog, NULL);
    }
    pthread_cond_destroy(&j->gate_cond);
    pthread_cond_destroy(&j->wd_cond);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

const cb_component_ops_t tc_jobs_component = {
    .name = "kafka-consumer",
    .ready = jobs_ready,
    .drain = jobs_drain,
    .free = jobs_free,
};

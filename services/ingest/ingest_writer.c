/*
 * ingest_writer.c - segments to storage, cursors, recordings, jobs to Kafka;
 * see ingest_writer.h.
 *
 * DESIGN
 * Each writer thread owns the streams hashed to it: a FIFO of segments to
 * write, a list of announcements to produce again, and per-stream state
 * (cursor, unacknowledged seqs, the recording in progress). All of it is
 * under the thread's mutex; delivery reports (on the producer's thread) only
 * update counters and move failed announcements to the retry list.
 *
 * Per segment: segment file, job sidecar (the TranscodeJob as JSON next to
 * the segment), cursor, recording, then produce. The cursor records
 * `announced`: every seq at or below it was acknowledged by Kafka, so after
 * a crash the sidecars of the seqs above it are announced again.
 *
 * Storage errors are retried with backoff for as long as it takes (a full
 * disk is an operator's problem to fix, not a reason to lose a segment):
 * meanwhile the queue fills and publishers are refused with an error.
 */
#include "ingest_writer.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <libavformat/avformat.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cb_proto.h"
#include "clock.h"
#include "daemon.h"
#include "defs.h"
#include "log.h"

#include "ingest_events.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

typedef struct recording recording_t;

typedef struct wstream {
    struct wstream *next;
    struct wthread *thread; /* the writer thread that owns it */
    char id[64];
    int64_t last_us;  /* last activity, for forgetting idle streams */
    int64_t pending;  /* submitted, not yet acknowledged */
    int64_t next_seq; /* cursor after the last segment written */
    int64_t next_pts_90k;
    int64_t announced;   /* every seq <= this is acknowledged; -1 none */
    int64_t written_max; /* highest seq written */
    int64_t *unacked;    /* seqs produced and not acknowledged, unordered */
    size_t nunacked, capunacked;
    bool cursor_dirty; /* announced moved since the cursor was written */
    recording_t *rec;
} wstream_t;

/*
 * The cursor is written with each segment. An acknowledgement alone moves
 * only `announced`, which matters after a crash (what to announce again):
 * it is written once the stream has been quiet this long, not after every
 * acknowledgement (at worst one job is announced twice after a crash).
 */
#define CURSOR_QUIET_US (2LL * 1000000)

typedef struct wjob {
    struct wjob *next;
    ingest_stream_info_t info;
    char session[96];
    int64_t bitrate_bps;
    ingest_segment_t *seg; /* NULL once written */
    int64_t seq;
    char *msg; /* the TranscodeJob */
    size_t msglen;
    int64_t cut_us;
    int64_t due_us;
    int64_t backoff_ms;
    struct wthread *thread;
} wjob_t;

typedef struct wthread {
    ingest_writer_t *w;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    wjob_t *head, *tail; /* segments to write */
    wjob_t *retry;       /* announcements to produce again */
    wstream_t *streams;
    size_t ndirty;     /* streams whose cursor is dirty */
    int64_t forgot_us; /* last look for idle streams */
    bool stop;
} wthread_t;

struct recording {
    char session[96];
    char path[512];
    AVFormatContext *oc;
    int map[2]; /* output stream per input kind, -1 */
    int64_t first_dts_90k, last_dts_90k;
    bool failed;
    bool recovered; /* left by a crash: stored whatever its length */
};

struct ingest_writer {
    ingest_writer_config_t cfg;
    char work_dir[256];
    cb_storage_t *storage;
    cb_kafka_producer_t *producer;
    wthread_t *threads;
    size_t nthreads;
    atomic_long queued;
    atomic_long unacked_total;
    atomic_bool draining;
    cb_metric_t *m_written, *m_latency, *m_pending, *m_retries, *m_recordings;
};

static unsigned hash_id(const char *id)
{
    unsigned h = 2166136261u;

    for (; *id; id++)
        h = (h ^ (unsigned char) *id) * 16777619u;
    return h;
}

void ingest_writer_segment_key(const char *stream_id, int64_t seq, const char *container, char *out,
                               size_t outlen)
{
    snprintf(out, outlen, "live/%s/src/%08lld.%s", stream_id, (long long) seq,
             strcmp(container, "mp4") == 0 ? "mp4" : "ts");
}

static void cursor_key(const char *stream_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "live/%s/src/cursor.json", stream_id);
}

static void sidecar_key(const char *stream_id, int64_t seq, char *out, size_t outlen)
{
    snprintf(out, outlen, "live/%s/src/%08lld.job.json", stream_id, (long long) seq);
}

/* ---- cursor ---- */

typedef struct last_sidecar {
    int64_t seq;
} last_sidecar_t;

static int find_last_sidecar(void *arg, const char *key, const cb_storage_stat_t *st)
{
    last_sidecar_t *l = arg;
    const char *name = strrchr(key, '/');
    char *end;
    long long seq;

    (void) st;
    name = name ? name + 1 : key;
    seq = strtoll(name, &end, 10);
    if (end != name && strcmp(end, ".job.json") == 0 && seq > l->seq)
        l->seq = seq;
    return 0;
}

/*
 * A cursor that does not parse (torn by a crash while it was rewritten in
 * place): where the stream continues, from its newest job sidecar.
 */
static int cursor_rebuild(cb_storage_t *storage, const char *stream_id, ingest_cursor_t *out)
{
    char prefix[CB_STORAGE_KEY_MAX], key[CB_STORAGE_KEY_MAX];
    last_sidecar_t last = { -1 };
    json_t *j, *src;
    cb_buf_t b;
    int rc;

    snprintf(prefix, sizeof(prefix), "live/%s/src/", stream_id);
    rc = cb_storage_list(storage, prefix, find_last_sidecar, &last);
    if (rc)
        return rc;
    cb_log_warn("writer: cursor of stream '%s' is unreadable; continuing after its job %lld",
                stream_id, (long long) last.seq);
    if (last.seq < 0)
        return 0;
    sidecar_key(stream_id, last.seq, key, sizeof(key));
    cb_buf_init(&b, 1 << 20);
    rc = cb_storage_get(storage, key, &b);
    j = rc == 0 ? json_loadb(b.data ? b.data : "", b.len, 0, NULL) : NULL;
    cb_buf_release(&b);
    out->next_seq = last.seq + 1;
    src = json_object_get(j, "source");
    if (json_is_integer(json_object_get(src, "start_pts_90k")))
        out->next_pts_90k = CB_MAX(json_integer_value(json_object_get(src, "start_pts_90k")) +
                                       json_integer_value(json_object_get(src, "duration_90k")),
                                   INGEST_TIMELINE_ORIGIN_90K);
    json_decref(j);
    return 0;
}

int ingest_writer_read_cursor(cb_storage_t *storage, const char *stream_id, ingest_cursor_t *out)
{
    char key[CB_STORAGE_KEY_MAX];
    json_t *j, *v;
    cb_buf_t b;
    int rc;

    out->next_seq = 0;
    out->next_pts_90k = INGEST_TIMELINE_ORIGIN_90K;
    cursor_key(stream_id, key, sizeof(key));
    cb_buf_init(&b, 1 << 16);
    rc = cb_storage_get(storage, key, &b);
    if (rc == -ENOENT) {
        cb_buf_release(&b);
        return 0;
    }
    if (rc) {
        cb_buf_release(&b);
        return rc;
    }
    j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    cb_buf_release(&b);
    if (!j)
        return cursor_rebuild(storage, stream_id, out);
    v = json_object_get(j, "next_seq");
    if (json_is_integer(v))
        out->next_seq = json_integer_value(v);
    v = json_object_get(j, "next_pts_90k");
    if (json_is_integer(v))
        out->next_pts_90k = CB_MAX(json_integer_value(v), INGEST_TIMELINE_ORIGIN_90K);
    json_decref(j);
    return 0;
}

/* Keep trying a storage operation: a segment is never given up. */
static int storage_retry(ingest_writer_t *w, const char *what, const char *key,
                         int (*op)(ingest_writer_t *, const char *, const void *, size_t),
                         const void *data, size_t len)
{
    int64_t backoff = BACKOFF_MIN_MS;
    int rc;

    while ((rc = op(w, key, data, len)) != 0) {
        struct timespec ts;
        if (atomic_load(&w->draining) && backoff >= BACKOFF_MAX_MS)
            return rc; /* shutting down and storage is gone: give up, logged */
        cb_log_error("writer: %s '%s' failed (%s); retrying in %lldms", what, key, strerror(-rc),
                     (long long) backoff);
        ts.tv_sec = backoff / 1000;
        ts.tv_nsec = (backoff % 1000) * 1000000;
        nanosleep(&ts, NULL);
        backoff = CB_MIN(backoff * 2, BACKOFF_MAX_MS);
    }
    return 0;
}

static int op_put(ingest_writer_t *w, const char *key, const void *data, size_t len)
{
    return cb_storage_put(w->storage, key, data, len);
}

static int op_overwrite(ingest_writer_t *w, const char *key, const void *data, size_t len)
{
    return cb_storage_overwrite(w->storage, key, data, len);
}

typedef struct cursor_snap {
    char id[INGEST_STREAM_ID_MAX];
    int64_t next_seq, next_pts_90k, announced;
} cursor_snap_t;

/* Thread locked: what the cursor says now; it is written unlocked. */
static void cursor_snapshot(wstream_t *s, cursor_snap_t *c)
{
    snprintf(c->id, sizeof(c->id), "%s", s->id);
    c->next_seq = s->next_seq;
    c->next_pts_90k = s->next_pts_90k;
    c->announced = s->announced;
    if (s->cursor_dirty)
        s->thread->ndirty--;
    s->cursor_dirty = false;
}

/*
 * Unlocked. In place (no new file, no rename): the cursor is rewritten with
 * every segment, and a torn cursor is rebuilt from the sidecars.
 */
static int write_cursor(ingest_writer_t *w, const cursor_snap_t *c)
{
    char key[CB_STORAGE_KEY_MAX], text[256];
    int n;

    cursor_key(c->id, key, sizeof(key));
    n = snprintf(text, sizeof(text),
                 "{\"v\":1,\"next_seq\":%lld,\"next_pts_90k\":%lld,\"announced\":%lld,"
                 "\"updated_at_ms\":%lld}\n",
                 (long long) c->next_seq, (long long) c->next_pts_90k, (long long) c->announced,
                 (long long) cb_clock_wall_ms());
    return storage_retry(w, "writing cursor", key, op_overwrite, text, (size_t) n);
}

/* ---- per-stream state ---- */

/* Thread locked. */
static wstream_t *stream_get(wthread_t *t, const char *id)
{
    wstream_t *s;

    for (s = t->streams; s; s = s->next) {
        if (strcmp(s->id, id) == 0)
            return s;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->thread = t;
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->last_us = cb_clock_mono_us();
    s->announced = -1;
    s->written_max = -1;
    s->next = t->streams;
    t->streams = s;
    return s;
}

#define IDLE_FORGET_US (600LL * 1000000)

/* Thread locked: forget streams with nothing in flight for a while (their cursor is stored). */
static void streams_forget_idle(ingest_writer_t *w, wthread_t *t)
{
    wstream_t **pp = &t->streams;
    int64_t now = cb_clock_mono_us();

    while (*pp) {
        wstream_t *s = *pp;
        if (s->pending == 0 && s->nunacked == 0 && !s->rec && !s->cursor_dirty &&
            now - s->last_us > IDLE_FORGET_US) {
            *pp = s->next;
            free(s->unacked);
            free(s);
            continue;
        }
        pp = &s->next;
    }
    (void) w;
}

/* Thread locked: seq was acknowledged (or given up). */
static void stream_acked(ingest_writer_t *w, wstream_t *s, int64_t seq)
{
    size_t i;
    int64_t low = INT64_MAX;

    for (i = 0; i < s->nunacked; i++) {
        if (s->unacked[i] == seq) {
            s->unacked[i] = s->unacked[--s->nunacked];
            break;
        }
    }
    for (i = 0; i < s->nunacked; i++)
        low = CB_MIN(low, s->unacked[i]);
    s->announced = s->nunacked ? low - 1 : s->written_max;
    if (!s->cursor_dirty)
        s->thread->ndirty++;
    s->cursor_dirty = true;
    s->pending--;
    atomic_fetch_sub(&w->unacked_total, 1);
    cb_metric_add(w->m_pending, NULL, -1);
}

/* ---- recordings ---- */

typedef struct mem_reader {
    const uint8_t *p;
    size_t len, pos;
} mem_reader_t;

static int mem_read(void *opaque, uint8_t *buf, int size)
{
    mem_reader_t *m = opaque;
    size_t n = CB_MIN((size_t) size, m->len - m->pos);

    if (n == 0)
        return AVERROR_EOF;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (int) n;
}

static void recording_close(ingest_writer_t *w, recording_t *r, const char *stream_id, bool publish)
{
    char key[CB_STORAGE_KEY_MAX], err[256];
    int64_t duration_ms;
    int rc;

    if (r->oc) {
        av_write_trailer(r->oc);
        avio_closep(&r->oc->pb);
        avformat_free_context(r->oc);
        r->oc = NULL;
    }
    duration_ms =
        r->last_dts_90k > r->first_dts_90k ? (r->last_dts_90k - r->first_dts_90k) / 90 : 0;
    if (!publish || r->failed || (duration_ms == 0 && !r->recovered)) {
        unlink(r->path);
        free(r);
        return;
    }
    snprintf(key, sizeof(key), "recordings/%s/%s.mp4", stream_id, r->session);
    rc = cb_storage_put_file(w->storage, key, r->path);
    if (rc) {
        snprintf(err, sizeof(err), "%s", strerror(-rc));
        cb_log_error("recording of stream '%s' not stored (%s); it stays in '%s'", stream_id, err,
                     r->path);
        cb_metric_add(w->m_recordings, (const char *[]){ "error" }, 1);
    } else {
        cb_log_info("recording of stream '%s' stored as '%s' (%.1f s)", stream_id, key,
                    (double) duration_ms / 1000.0);
        cb_metric_add(w->m_recordings, (const char *[]){ "stored" }, 1);
        ingest_events_recording(w->producer, stream_id, key, duration_ms);
    }
    free(r);
}

/*
 * AudioSpecificConfig from an ADTS header: MPEG-TS carries AAC with its
 * configuration only in the frame headers, and an MP4 track needs it up
 * front. Returns 0, or -EINVAL when p is not an ADTS frame.
 */
static int adts_asc(const uint8_t *p, size_t len, uint8_t asc[2])
{
    unsigned aot, sfi, chans;

    if (len < 7 || p[0] != 0xff || (p[1] & 0xf6) != 0xf0)
        return -EINVAL;
    aot = (unsigned) (p[2] >> 6) + 1;
    sfi = (unsigned) (p[2] >> 2) & 0x0f;
    chans = ((unsigned) (p[2] & 0x01) << 2) | (unsigned) (p[3] >> 6);
    if (sfi > 12)
        return -EINVAL;
    asc[0] = (uint8_t) ((aot << 3) | (sfi >> 1));
    asc[1] = (uint8_t) (((sfi & 1) << 7) | (chans << 3));
    return 0;
}

static int media_kind(const AVStream *st)
{
    return st->codecpar->codec_type == AVMEDIA_TYPE_VIDEO   ? 0
           : st->codecpar->codec_type == AVMEDIA_TYPE_AUDIO ? 1
                                                            : -1;
}

/*
 * Create the recording's MP4 from the first segment's tracks. first_audio:
 * the segment's first audio packet (for an AAC track without configuration)
 * or NULL.
 */
static int recording_open(recording_t *r, const AVFormatContext *in, const AVPacket *first_audio)
{
    AVDictionary *opts = NULL;
    unsigned i;
    int rc;

    if (avformat_alloc_output_context2(&r->oc, NULL, "mp4", NULL) < 0)
        return -ENOMEM;
    for (i = 0; i < in->nb_streams; i++) {
        const AVStream *ist = in->streams[i];
        int kind = media_kind(ist);
        AVStream *ost;

        if (kind < 0 || r->map[kind] >= 0)
            continue;
        ost = avformat_new_stream(r->oc, NULL);
        if (!ost || avcodec_parameters_copy(ost->codecpar, ist->codecpar) < 0)
            return -ENOMEM;
        if (ist->codecpar->codec_id == AV_CODEC_ID_AAC && ist->codecpar->extradata_size == 0) {
            uint8_t asc[2];

            if (!first_audio || first_audio->stream_index != (int) i ||
                adts_asc(first_audio->data, (size_t) first_audio->size, asc) != 0)
                return -EINVAL;
            ost->codecpar->extradata = av_mallocz(2 + AV_INPUT_BUFFER_PADDING_SIZE);
            if (!ost->codecpar->extradata)
                return -ENOMEM;
            memcpy(ost->codecpar->extradata, asc, 2);
            ost->codecpar->extradata_size = 2;
        }
        ost->codecpar->codec_tag = 0;
        ost->time_base = (AVRational){ 1, 90000 };
        r->map[kind] = ost->index;
    }
    if (avio_open(&r->oc->pb, r->path, AVIO_FLAG_WRITE) < 0)
        return -EIO;
    /* fragmented: what is written survives a crash and is recovered at start-up */
    av_dict_set(&opts, "movflags", "frag_keyframe+empty_moov+default_base_moof", 0);
    rc = avformat_write_header(r->oc, &opts) < 0 ? -EIO : 0;
    av_dict_free(&opts);
    return rc;
}

/* Write one packet of the segment; false when the muxer refused it. */
static bool recording_write(recording_t *r, const AVFormatContext *in, AVPacket *pkt)
{
    const AVStream *ist = in->streams[pkt->stream_index];
    int kind = media_kind(ist);
    int o = kind < 0 ? -1 : r->map[kind];
    int64_t shift;

    if (o < 0)
        return true;
    /* MP4 holds raw AAC: drop the ADTS header (7 bytes, 9 with a CRC) */
    if (ist->codecpar->codec_id == AV_CODEC_ID_AAC && pkt->size > 9 && pkt->data[0] == 0xff &&
        (pkt->data[1] & 0xf6) == 0xf0) {
        int hdr = (pkt->data[1] & 0x01) ? 7 : 9;

        pkt->data += hdr;
        pkt->size -= hdr;
    }
    av_packet_rescale_ts(pkt, ist->time_base, r->oc->streams[o]->time_base);
    /* the recording starts at 0 */
    shift = av_rescale_q(r->first_dts_90k, (AVRational){ 1, 90000 }, r->oc->streams[o]->time_base);
    if (pkt->dts != AV_NOPTS_VALUE)
        pkt->dts -= shift;
    if (pkt->pts != AV_NOPTS_VALUE)
        pkt->pts -= shift;
    pkt->stream_index = o;
    pkt->pos = -1;
    return av_interleaved_write_frame(r->oc, pkt) >= 0;
}

#define RECORDING_LOOKAHEAD 256 /* packets read ahead for the first audio frame */

/* Append a segment's packets to the session's MP4 recording. */
static void recording_append(ingest_writer_t *w, wstream_t *s, const ingest_segment_t *seg,
                             const char *session)
{
    mem_reader_t m = { seg->data, seg->len, 0 };
    AVPacket *held[RECORDING_LOOKAHEAD];
    size_t nheld = 0, i;
    unsigned char *iobuf = NULL;
    AVIOContext *io = NULL;
    AVFormatContext *in = NULL;
    AVPacket *pkt = NULL;
    recording_t *r = s->rec;
    bool eof = false;

    if (r && strcmp(r->session, session) != 0) {
        recording_close(w, r, s->id, true);
        r = s->rec = NULL;
    }
    if (r && r->failed)
        return;
    iobuf = av_malloc(16384);
    io = iobuf ? avio_alloc_context(iobuf, 16384, 0, &m, mem_read, NULL, NULL) : NULL;
    in = avformat_alloc_context();
    if (!io || !in)
        goto out;
    in->pb = io;
    /* the streams' parameters are needed to open the recording; later segments are
     * mapped by media type, which the container header gives without probing */
    if (avformat_open_input(&in, NULL, av_find_input_format(seg->container), NULL) < 0 ||
        ((!r || !r->oc) && avformat_find_stream_info(in, NULL) < 0))
        goto out;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            goto out;
        s->rec = r;
        snprintf(r->session, sizeof(r->session), "%s", session);
        snprintf(r->path, sizeof(r->path), "%s/%s.part.mp4", w->work_dir, session);
        r->map[0] = r->map[1] = -1;
        r->first_dts_90k = seg->start_90k;
    }
    if (!r->oc) {
        const AVPacket *first_audio = NULL;

        /* read ahead to the first audio frame: its header may be the track's configuration */
        while (nheld < RECORDING_LOOKAHEAD && !first_audio) {
            pkt = av_packet_alloc();
            if (!pkt)
                goto fail;
            if (av_read_frame(in, pkt) < 0) {
                av_packet_free(&pkt);
                eof = true;
                break;
            }
            held[nheld++] = pkt;
            if (media_kind(in->streams[pkt->stream_index]) == 1)
                first_audio = pkt;
            pkt = NULL;
        }
        if (recording_open(r, in, first_audio) != 0)
            goto fail;
        cb_log_info("recording stream '%s' to '%s'", s->id, r->path);
    }
    for (i = 0; i < nheld && !r->failed; i++)
        r->failed = !recording_write(r, in, held[i]);
    pkt = av_packet_alloc();
    while (pkt && !eof && !r->failed && av_read_frame(in, pkt) >= 0) {
        r->failed = !recording_write(r, in, pkt);
        av_packet_unref(pkt);
    }
    if (r->failed)
        cb_log_warn("recording of stream '%s': a packet was refused; recording stops", s->id);
    r->last_dts_90k = seg->start_90k + seg->duration_90k;
    goto out;
fail:
    cb_log_error("recording of stream '%s' could not start in '%s'", s->id, w->work_dir);
    if (r) {
        r->failed = true;
        if (r->oc) {
            if (r->oc->pb)
                avio_closep(&r->oc->pb);
            avformat_free_context(r->oc);
            r->oc = NULL;
        }
    }
out:
    for (i = 0; i < nheld; i++)
        av_packet_free(&held[i]);
    av_packet_free(&pkt);
    if (in)
        avformat_close_input(&in);
    if (io) {
        av_freep(&io->buffer);
        avio_context_free(&io);
    } else {
        av_free(iobuf);
    }
}

/* ---- announcements ---- */

static void on_delivery(void *opaque, int err, const char *reason);

/* Premium streams' jobs go to the priority lane, which workers drain first. */
static const char *job_topic(bool priority_high)
{
    return priority_high ? CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS_HIGH
                         : CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS;
}

/* Thread locked or not: produce the job; on refusal it goes to the retry list. */
static void announce(ingest_writer_t *w, wjob_t *j)
{
    int rc = cb_kafka_produce(w->producer, job_topic(j->info.priority_high), j->info.id,
                              strlen(j->info.id), j->msg, j->msglen, NULL, 0, on_delivery, j);

    if (rc == 0)
        return;
    on_delivery(j, rc, strerror(-rc));
}

static void on_delivery(void *opaque, int err, const char *reason)
{
    wjob_t *j = opaque;
    wthread_t *t = j->thread;
    ingest_writer_t *w = t->w;
    wstream_t *s;

    pthread_mutex_lock(&t->lock);
    if (err == 0) {
        s = stream_get(t, j->info.id);
        if (s)
            stream_acked(w, s, j->seq);
        pthread_cond_signal(&t->cond); /* the cursor is dirty */
        pthread_mutex_unlock(&t->lock);
        cb_metric_observe(w->m_latency, NULL, (double) (cb_clock_mono_us() - j->cut_us) / 1e6);
        free(j->msg);
        free(j);
        return;
    }
    /* not acknowledged: produce it again later */
    j->backoff_ms = j->backoff_ms ? CB_MIN(j->backoff_ms * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
    j->due_us = cb_clock_mono_us() + j->backoff_ms * 1000;
    j->next = t->retry;
    t->retry = j;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    cb_metric_add(w->m_retries, NULL, 1);
    cb_log_warn("writer: job %s:%lld not announced (%s); retrying in %lldms", j->info.id,
                (long long) j->seq, reason, (long long) j->backoff_ms);
}

/* Build the TranscodeJob for a written segment. */
static char *build_job(const ingest_writer_t *w, const wjob_t *j, const char *path, size_t *len)
{
    const ingest_segment_t *seg = j->seg;
    char job_id[160];
    cb_proto_transcode_job_t m = {
        .job_id = job_id,
        .kind = CB_PROTO_TRANSCODE_JOB_KIND_LIVE,
        .stream_id = (char *) j->info.id,
        .seq = seg->seq,
        .source = {
            .path = (char *) path,
            .container = strcmp(seg->container, "mp4") == 0 ? CB_PROTO_SOURCE_SEGMENT_CONTAINER_MP4
                                                            : CB_PROTO_SOURCE_SEGMENT_CONTAINER_MPEGTS,
            .start_pts_90k = seg->start_90k,
            .duration_90k = seg->duration_90k,
            .video_codec = (char *) ingest_codec_name(seg->video_codec),
            .audio_codec = (char *) ingest_codec_name(seg->audio_codec),
            .width = seg->width,
            .height = seg->height,
            .fps = seg->fps,
            .bitrate_bps = j->bitrate_bps > 0 ? j->bitrate_bps
                           : seg->duration_90k > 0
                               ? seg->media_bytes * 8 * 90000 / seg->duration_90k
                               : 0,
        },
        .discontinuity = seg->discontinuity,
        .end_of_stream = seg->end_of_stream,
        .profile = (char *) j->info.profile,
        .priority = j->info.priority_high ? CB_PROTO_TRANSCODE_JOB_PRIORITY_HIGH
                                          : CB_PROTO_TRANSCODE_JOB_PRIORITY_NORMAL,
        .packaging = {
            .dvr_window_s = j->info.dvr_window_s,
            .signed_playback = j->info.signed_playback,
            .record = j->info.record,
            .low_latency = w->cfg.part_target_ms > 0,
            .part_target_ms = w->cfg.part_target_ms,
        },
        .created_at_ms = cb_clock_wall_ms(),
    };

    /* the segment was cut when the next keyframe arrived: its first frame
     * came one duration before that (a live publisher sends in real time) */
    m.ingest_wallclock_ms = CB_MAX(0, m.created_at_ms - (cb_clock_mono_us() - seg->cut_us) / 1000 -
                                          seg->duration_90k / 90);
    snprintf(job_id, sizeof(job_id), "%s:%lld", j->info.id, (long long) seg->seq);
    return cb_proto_transcode_job_encode(&m, len);
}

/* Writer thread, unlocked: make a segment durable and announce it. */
static void process(ingest_writer_t *w, wthread_t *t, wjob_t *j)
{
    char key[CB_STORAGE_KEY_MAX], side[CB_STORAGE_KEY_MAX], session[sizeof(j->session)];
    ingest_segment_t *seg = j->seg;
    cursor_snap_t snap;
    wstream_t *s;
    bool record;
    int rc;

    ingest_writer_segment_key(j->info.id, seg->seq, seg->container, key, sizeof(key));
    j->msg = build_job(w, j, key, &j->msglen);
    rc = storage_retry(w, "writing segment", key, op_put, seg->data, seg->len);
    if (rc == 0 && j->msg) {
        sidecar_key(j->info.id, seg->seq, side, sizeof(side));
        rc = storage_retry(w, "writing job sidecar", side, op_put, j->msg, j->msglen);
    }
    cb_metric_add(w->m_written, (const char *[]){ rc == 0 && j->msg ? "ok" : "error" }, 1);
    pthread_mutex_lock(&t->lock);
    s = stream_get(t, j->info.id);
    if (s)
        s->last_us = cb_clock_mono_us();
    if (s && rc == 0 && j->msg) {
        s->next_seq = CB_MAX(s->next_seq, seg->seq + 1);
        s->next_pts_90k = CB_MAX(s->next_pts_90k, seg->start_90k + seg->duration_90k);
        s->written_max = CB_MAX(s->written_max, seg->seq);
        if (s->nunacked == s->capunacked) {
            size_t cap = s->capunacked ? s->capunacked * 2 : 16;
            int64_t *p = realloc(s->unacked, cap * sizeof(int64_t));
            if (p) {
                s->unacked = p;
                s->capunacked = cap;
            }
        }
        if (s->nunacked < s->capunacked)
            s->unacked[s->nunacked++] = seg->seq;
        cursor_snapshot(s, &snap);
    }
    pthread_mutex_unlock(&t->lock);
    if (s && rc == 0 && j->msg)
        rc = write_cursor(w, &snap);
    if (rc || !j->msg) {
        /* only when shutting down with storage gone: logged, counted, and not announced */
        cb_log_error("writer: segment %lld of stream '%s' was not stored", (long long) seg->seq,
                     j->info.id);
        pthread_mutex_lock(&t->lock);
        if (s)
            s->pending--;
        pthread_mutex_unlock(&t->lock);
        atomic_fetch_sub(&w->unacked_total, 1);
        cb_metric_add(w->m_pending, NULL, -1);
        ingest_segment_free(seg);
        free(j->msg);
        free(j);
        return;
    }
    /* announce first: the recording's remux must not delay the job */
    record = j->info.record;
    snprintf(session, sizeof(session), "%s", j->session);
    j->cut_us = seg->cut_us;
    j->seq = seg->seq;
    j->seg = NULL;
    announce(w, j); /* j belongs to the delivery report from here on */
    /* s->rec is only ever touched by this thread: no lock for the remux */
    if (record) {
        recording_append(w, s, seg, session);
        if (seg->end_of_stream && s->rec) {
            recording_t *r = s->rec;
            s->rec = NULL;
            recording_close(w, r, s->id, true);
        }
    }
    ingest_segment_free(seg);
}

static void *writer_main(void *arg)
{
    wthread_t *t = arg;
    ingest_writer_t *w = t->w;

    pthread_setname_np(pthread_self(), "ingest-writer");
    pthread_mutex_lock(&t->lock);
    for (;;) {
        wjob_t *j = NULL, **pp, *due = NULL;
        wstream_t *s;
        int64_t now = cb_clock_mono_us(), next_due = INT64_MAX;

        /* announcements whose backoff is over */
        for (pp = &t->retry; *pp;) {
            if ((*pp)->due_us <= now) {
                wjob_t *r = *pp;
                *pp = r->next;
                r->next = due;
                due = r;
            } else {
                next_due = CB_MIN(next_due, (*pp)->due_us);
                pp = &(*pp)->next;
            }
        }
        if (due) {
            pthread_mutex_unlock(&t->lock);
            while (due) {
                wjob_t *r = due;
                due = r->next;
                announce(w, r);
            }
            pthread_mutex_lock(&t->lock);
            continue;
        }
        /* cursors whose announced mark moved, once their stream is quiet */
        for (s = t->ndirty ? t->streams : NULL; s; s = s->next) {
            if (!s->cursor_dirty)
                continue;
            if (s->pending == 0 &&
                (now - s->last_us >= CURSOR_QUIET_US || atomic_load(&w->draining) || t->stop)) {
                cursor_snap_t snap;
                cursor_snapshot(s, &snap);
                pthread_mutex_unlock(&t->lock);
                write_cursor(w, &snap);
                pthread_mutex_lock(&t->lock);
                break; /* the list may have changed: look again */
            }
            if (s->pending == 0) /* else its acknowledgements wake us */
                next_due = CB_MIN(next_due, s->last_us + CURSOR_QUIET_US);
        }
        if (s)
            continue;
        if (now - t->forgot_us > 10 * 1000000LL) {
            streams_forget_idle(w, t);
            t->forgot_us = now;
        }
        if (t->head) {
            j = t->head;
            t->head = j->next;
            if (!t->head)
                t->tail = NULL;
            pthread_mutex_unlock(&t->lock);
            atomic_fetch_sub(&w->queued, 1);
            process(w, t, j);
            pthread_mutex_lock(&t->lock);
            continue;
        }
        /* stopping: what is not acknowledged yet is announced again from its sidecar later */
        if (t->stop)
            break;
        if (next_due == INT64_MAX) {
            pthread_cond_wait(&t->cond, &t->lock);
        } else {
            struct timespec until;

            cb_clock_deadline(&until, next_due - now);
            pthread_cond_timedwait(&t->cond, &t->lock, &until);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int ingest_writer_new(const ingest_writer_config_t *cfg, cb_storage_t *storage,
                      cb_kafka_producer_t *producer, cb_metrics_t *metrics, ingest_writer_t **out)
{
    ingest_writer_t *w = calloc(1, sizeof(*w));
    size_t i;
    int rc;

    if (!w)
        return -ENOMEM;
    w->cfg = *cfg;
    snprintf(w->work_dir, sizeof(w->work_dir), "%s", cfg->work_dir ? cfg->work_dir : "/tmp");
    w->storage = storage;
    w->producer = producer;
    w->nthreads = (size_t) CB_MAX(cfg->threads, 1);
    w->threads = calloc(w->nthreads, sizeof(wthread_t));
    if (!w->threads) {
        free(w);
        return -ENOMEM;
    }
    if (mkdir(w->work_dir, 0755) && errno != EEXIST)
        cb_log_warn("writer: cannot create work dir '%s': %s", w->work_dir, strerror(errno));
    w->m_written = cb_metrics_counter(metrics, "castbus_ingest_segments_written_total",
                                      "Source segments written to storage, by result.",
                                      (const char *[]){ "result", NULL });
    w->m_latency =
        cb_metrics_histogram(metrics, "castbus_ingest_announce_latency_seconds",
                             "From the last packet of a segment (its cut) to Kafka "
                             "acknowledging its job.",
                             NULL, cb_metrics_latency_buckets, cb_metrics_latency_nbuckets);
    w->m_pending = cb_metrics_gauge(metrics, "castbus_ingest_pending_segments",
                                    "Segments queued or written and not yet acknowledged by "
                                    "Kafka.",
                                    NULL);
    w->m_retries = cb_metrics_counter(metrics, "castbus_ingest_announce_retries_total",
                                      "Job announcements produced again after a failure.", NULL);
    w->m_recordings = cb_metrics_counter(metrics, "castbus_ingest_recordings_total",
                                         "Session recordings finished, by result.",
                                         (const char *[]){ "result", NULL });
    for (i = 0; i < w->nthreads; i++) {
        wthread_t *t = &w->threads[i];
        t->w = w;
        pthread_mutex_init(&t->lock, NULL);
        pthread_cond_init(&t->cond, NULL);
        rc = pthread_create(&t->thread, NULL, writer_main, t);
        if (rc) {
            w->nthreads = i;
            ingest_writer_free(w);
            return -rc;
        }
    }
    *out = w;
    return 0;
}

int ingest_writer_submit(ingest_writer_t *w, const ingest_stream_info_t *info, const char *session,
                         int64_t bitrate_bps, ingest_segment_t *seg)
{
    wthread_t *t = &w->threads[hash_id(info->id) % w->nthreads];
    wjob_t *j;
    wstream_t *s;

    if (atomic_load(&w->queued) >= w->cfg.queue_max) {
        ingest_segment_free(seg);
        return -EAGAIN;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        ingest_segment_free(seg);
        return -ENOMEM;
    }
    j->info = *info;
    snprintf(j->session, sizeof(j->session), "%s", session);
    j->bitrate_bps = bitrate_bps;
    j->seg = seg;
    j->thread = t;
    pthread_mutex_lock(&t->lock);
    s = stream_get(t, info->id);
    if (!s || s->pending >= w->cfg.max_pending) {
        pthread_mutex_unlock(&t->lock);
        ingest_segment_free(seg);
        free(j);
        return s ? -ENOSPC : -ENOMEM;
    }
    s->pending++;
    if (t->tail)
        t->tail->next = j;
    else
        t->head = j;
    t->tail = j;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    atomic_fetch_add(&w->queued, 1);
    atomic_fetch_add(&w->unacked_total, 1);
    cb_metric_add(w->m_pending, NULL, 1);
    return 0;
}

int64_t ingest_writer_pending(ingest_writer_t *w, const char *stream_id)
{
    wthread_t *t = &w->threads[hash_id(stream_id) % w->nthreads];
    wstream_t *s;
    int64_t n = 0;

    pthread_mutex_lock(&t->lock);
    for (s = t->streams; s; s = s->next) {
        if (strcmp(s->id, stream_id) == 0)
            n = s->pending;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

void ingest_writer_drain(ingest_writer_t *w, int64_t deadline_ms)
{
    struct timespec ts = { 0, 20 * 1000000 };
    long left;

    atomic_store(&w->draining, true);
    while ((left = atomic_load(&w->unacked_total)) > 0 && cb_clock_mono_ms() < deadline_ms)
        nanosleep(&ts, NULL);
    if (left > 0)
        cb_log_error("writer: %ld segments not acknowledged by Kafka at the drain deadline; they "
                     "are announced again from their sidecars when an ingest starts next",
                     left);
}

/* Announce again what a crashed instance wrote but never had acknowledged. */
static int reannounce(ingest_writer_t *w, const char *stream_id)
{
    char key[CB_STORAGE_KEY_MAX];
    int64_t seq, announced = -1, next = 0;
    json_t *j;
    cb_buf_t b;
    int n = 0;

    cursor_key(stream_id, key, sizeof(key));
    cb_buf_init(&b, 1 << 16);
    if (cb_storage_get(w->storage, key, &b) != 0) {
        cb_buf_release(&b);
        return 0;
    }
    j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
    cb_buf_release(&b);
    if (!j)
        return 0;
    if (json_is_integer(json_object_get(j, "announced")))
        announced = json_integer_value(json_object_get(j, "announced"));
    next = json_integer_value(json_object_get(j, "next_seq"));
    json_decref(j);
    for (seq = CB_MAX(announced + 1, next - w->cfg.max_pending); seq < next; seq++) {
        cb_buf_t job;
        int rc;

        sidecar_key(stream_id, seq, key, sizeof(key));
        cb_buf_init(&job, 1 << 20);
        if (cb_storage_get(w->storage, key, &job) == 0) {
            cb_proto_transcode_job_t m = { 0 };
            cb_jsonv_error_t verr;
            bool high = cb_proto_transcode_job_decode(job.data, job.len, &m, &verr) == 0 &&
                        m.priority == CB_PROTO_TRANSCODE_JOB_PRIORITY_HIGH;

            cb_proto_transcode_job_release(&m);
            rc = cb_kafka_produce(w->producer, job_topic(high), stream_id, strlen(stream_id),
                                  job.data, job.len, NULL, 0, NULL, NULL);
            if (rc == 0)
                n++;
        }
        cb_buf_release(&job);
    }
    if (n)
        cb_log_warn("writer: announced %d jobs of stream '%s' again (not acknowledged before a "
                    "restart)",
                    n, stream_id);
    return n;
}

typedef struct sweep {
    ingest_writer_t *w;
    int streams;
} sweep_t;

static int sweep_one(void *arg, const char *key, const cb_storage_stat_t *st)
{
    sweep_t *sw = arg;
    char id[64];
    size_t n = strlen(key);

    (void) st;
    /* live/<id>/src/cursor.json */
    if (n > 21 && strcmp(key + n - 16, "/src/cursor.json") == 0 && strncmp(key, "live/", 5) == 0 &&
        n - 21 < sizeof(id)) {
        memcpy(id, key + 5, n - 21);
        id[n - 21] = '\0';
        if (!strchr(id, '/')) {
            reannounce(sw->w, id);
            sw->streams++;
        }
    }
    return 0;
}

int ingest_writer_recover_recordings(ingest_writer_t *w)
{
    DIR *d = opendir(w->work_dir);
    struct dirent *de;
    sweep_t sw = { w, 0 };
    int found = 0;

    /* jobs written but never acknowledged, for every stream */
    cb_storage_list(w->storage, "live/", sweep_one, &sw);
    /* recordings of sessions a crash interrupted: fragmented MP4, valid as far as written */
    while (d && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        recording_t *r;
        char stream[64];
        const char *dash;

        if (n < 10 || strcmp(de->d_name + n - 9, ".part.mp4") != 0)
            continue;
        dash = strrchr(de->d_name, '-');
        if (!dash || (size_t) (dash - de->d_name) >= sizeof(stream))
            continue;
        r = calloc(1, sizeof(*r));
        if (!r)
            break;
        memcpy(stream, de->d_name, (size_t) (dash - de->d_name));
        stream[dash - de->d_name] = '\0';
        snprintf(r->session, sizeof(r->session), "%.*s", (int) (n - 9), de->d_name);
        snprintf(r->path, sizeof(r->path), "%s/%s", w->work_dir, de->d_name);
        r->recovered = true; /* its duration is unknown here */
        cb_log_warn("recovering the interrupted recording '%s' of stream '%s'", r->path, stream);
        recording_close(w, r, stream, true);
        found++;
    }
    if (d)
        closedir(d);
    return found;
}

void ingest_writer_free(ingest_writer_t *w)
{
    size_t i;

    if (!w)
        return;
    for (i = 0; i < w->nthreads; i++) {
        wthread_t *t = &w->threads[i];
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_cond_signal(&t->cond);
        pthread_mutex_unlock(&t->lock);
    }
    for (i = 0; i < w->nthreads; i++) {
        wthread_t *t = &w->threads[i];
        wstream_t *s;
        wjob_t *j;

        pthread_join(t->thread, NULL);
        while ((j = t->retry) != NULL) {
            t->retry = j->next;
            free(j->msg);
            free(j);
        }
        while ((s = t->streams) != NULL) {
            t->streams = s->next;
            if (s->rec)
                recording_close(w, s->rec, s->id, true);
            free(s->unacked);
            free(s);
        }
        pthread_cond_destroy(&t->cond);
        pthread_mutex_destroy(&t->lock);
    }
    free(w->threads);
    free(w);
}

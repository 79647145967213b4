/*
 * ingest_srt.c - SRT publishers; see ingest_srt.h.
 *
 * DESIGN
 * The listen callback (libsrt's thread) checks the stream id and the key
 * and parks the authorized stream's settings in a small table keyed by the
 * new socket; the accept thread picks them up after srt_accept() and starts
 * a reader thread. The reader feeds libavformat's MPEG-TS demuxer from
 * srt_recvmsg() and pushes each packet to the hub on the 90 kHz clock.
 * A kick marks the publisher and closes its socket, which ends the read.
 */
#include "ingest_srt.h"

#include <errno.h>
#include <libavformat/avformat.h>
#include <netdb.h>
#include <pthread.h>
#include <srt/access_control.h>
#include <srt/srt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "defs.h"
#include "log.h"

#include "ingest_store.h"

#define PENDING_MAX 64
#define SRT_PAYLOAD 1500

/*
 * A handshake the listen callback accepted, waiting for srt_accept. One that
 * fails afterwards (a wrong passphrase) never reaches srt_accept: its slot is
 * taken back once it is older than the handshake timeout.
 */
typedef struct pending {
    SRTSOCKET sock;
    bool used;
    int64_t at_ms; /* when the callback accepted it */
    bool backup;
    ingest_stream_info_t info;
    ingest_cursor_t cursor;
} pending_t;

typedef struct srt_conn {
    ingest_srt_t *srt;
    SRTSOCKET sock;
    pthread_t thread;
    char peer[80];
    bool backup;
    ingest_stream_info_t info;
    ingest_cursor_t cursor;
    atomic_bool kicked;
    ingest_publisher_t *pub;
    struct srt_conn *next;
    atomic_bool done;
} srt_conn_t;

struct ingest_srt {
    ingest_srt_config_t cfg;
    ingest_hub_t *hub;
    ingest_ratelimit_t *rl;
    ingest_srt_auth_fn auth;
    void *auth_arg;
    SRTSOCKET lsock;
    int port;
    pthread_t accept_thread;
    bool started;
    atomic_bool stopping;
    pthread_mutex_t lock; /* pending, conns */
    pending_t pending[PENDING_MAX];
    srt_conn_t *conns;
    size_t nconns;
    cb_metric_t *m_conns, *m_attempts, *m_bytes;
    cb_series_t *s_bytes; /* m_bytes, looked up once: it counts every packet */
};

static void srt_kick(void *connp, const char *why);
static const ingest_publisher_ops_t srt_ops = { .kick = srt_kick };

int ingest_srt_parse_streamid(const char *sid, char *key, size_t keylen, bool *backup)
{
    const char *res = NULL;
    char buf[512], k[INGEST_KEY_MAX];

    if (!sid)
        return -EINVAL;
    if (strncmp(sid, "publish:", 8) == 0) {
        res = sid + 8;
    } else if (strncmp(sid, "#!::", 4) == 0) {
        /* comma-separated key=value: r (resource) and m (mode) matter here */
        const char *p = sid + 4;
        bool publish = false;

        buf[0] = '\0';
        while (*p) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t) (comma - p) : strlen(p);
            if (len > 2 && strncmp(p, "r=", 2) == 0 && len - 2 < sizeof(buf))
                snprintf(buf, sizeof(buf), "%.*s", (int) (len - 2), p + 2);
            else if (len == 9 && strncmp(p, "m=publish", 9) == 0)
                publish = true;
            p = comma ? comma + 1 : p + len;
        }
        if (!publish || !buf[0])
            return -EINVAL;
        res = buf;
    } else {
        return -EINVAL;
    }
    if (strncmp(res, "live/", 5) != 0 || ingest_parse_publish_name(res + 5, k, backup))
        return -EINVAL;
    snprintf(key, keylen, "%s", k);
    return 0;
}

/* libsrt's thread: decide on a handshake. */
static int listen_cb(void *opaque, SRTSOCKET ns, int hsversion, const struct sockaddr *peer,
                     const char *streamid)
{
    ingest_srt_t *s = opaque;
    char key[INGEST_KEY_MAX], why[256] = "", host[64] = "?";
    ingest_stream_info_t info;
    ingest_cursor_t cursor;
    bool backup = false;
    int64_t now;
    size_t i;
    int rc;

    (void) hsversion;
    getnameinfo(peer,
                peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in),
                host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    if (atomic_load(&s->stopping)) {
        srt_setrejectreason(ns, SRT_REJX_DOWN);
        return -1;
    }
    if (ingest_srt_parse_streamid(streamid, key, sizeof(key), &backup)) {
        cb_metric_add(s->m_attempts, (const char *[]){ "malformed" }, 1);
        cb_log_warn("srt %s: refused stream id '%.64s' (use publish:live/<stream key>)", host,
                    streamid ? streamid : "");
        ingest_ratelimit_fail(s->rl, host);
        srt_setrejectreason(ns, SRT_REJX_BAD_REQUEST);
        return -1;
    }
    if (ingest_ratelimit_check(s->rl, host, why, sizeof(why))) {
        cb_metric_add(s->m_attempts, (const char *[]){ "rate_limited" }, 1);
        cb_log_warn("srt %s: %s", host, why);
        srt_setrejectreason(ns, SRT_REJX_OVERLOAD);
        return -1;
    }
    rc = s->auth(s->auth_arg, key, &info, &cursor, why, sizeof(why));
    if (rc) {
        cb_metric_add(s->m_attempts, (const char *[]){ rc == -EACCES ? "bad_key" : "unavailable" },
                      1);
        if (rc == -EACCES)
            ingest_ratelimit_fail(s->rl, host);
        cb_log_warn("srt %s: publish refused: %s", host, rc == -EACCES ? "wrong stream key" : why);
        srt_setrejectreason(ns, rc == -EACCES ? SRT_REJX_UNAUTHORIZED : SRT_REJX_DOWN);
        return -1;
    }
    if (s->cfg.passphrase && *s->cfg.passphrase)
        srt_setsockflag(ns, SRTO_PASSPHRASE, s->cfg.passphrase, (int) strlen(s->cfg.passphrase));
    pthread_mutex_lock(&s->lock);
    now = cb_clock_mono_ms();
    for (i = 0; i < PENDING_MAX && s->pending[i].used &&
                now - s->pending[i].at_ms < s->cfg.handshake_timeout_ms;
         i++)
        ;
    if (i == PENDING_MAX || s->nconns >= (size_t) s->cfg.max_connections) {
        pthread_mutex_unlock(&s->lock);
        srt_setrejectreason(ns, SRT_REJX_OVERLOAD);
        return -1;
    }
    s->pending[i] = (pending_t){
        .sock = ns, .used = true, .at_ms = now, .backup = backup, .info = info, .cursor = cursor
    };
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void srt_kick(void *connp, const char *why)
{
    srt_conn_t *c = connp;

    cb_log_info("srt %s: kicked: %s", c->peer, why ? why : "");
    atomic_store(&c->kicked, true);
    srt_close(c->sock); /* ends the reader's recv */
}

static int srt_read(void *opaque, uint8_t *buf, int size)
{
    srt_conn_t *c = opaque;
    int n;

    if (atomic_load(&c->kicked) || atomic_load(&c->srt->stopping))
        return AVERROR_EOF;
    if (size < SRT_PAYLOAD)
        return AVERROR(EINVAL);
    n = srt_recvmsg(c->sock, (char *) buf, size);
    if (n <= 0)
        return AVERROR_EOF; /* closed, timed out or kicked */
    cb_series_add(c->srt->s_bytes, n);
    return n;
}

static ingest_codec_t codec_of(enum AVCodecID id)
{
    switch (id) {
    case AV_CODEC_ID_H264:
        return INGEST_CODEC_H264;
    case AV_CODEC_ID_HEVC:
        return INGEST_CODEC_HEVC;
    case AV_CODEC_ID_AAC:
        return INGEST_CODEC_AAC;
    case AV_CODEC_ID_MP3:
        return INGEST_CODEC_MP3;
    default:
        return INGEST_CODEC_NONE;
    }
}

static void *reader_main(void *arg)
{
    srt_conn_t *c = arg;
    ingest_srt_t *s = c->srt;
    unsigned char *iobuf = av_malloc(SRT_PAYLOAD * 8);
    AVIOContext *io =
        iobuf ? avio_alloc_context(iobuf, SRT_PAYLOAD * 8, 0, c, srt_read, NULL, NULL) : NULL;
    AVFormatContext *fc = avformat_alloc_context();
    AVPacket *pkt = av_packet_alloc();
    AVDictionary *opts = NULL;
    int map[2] = { -1, -1 }, rc;
    char why[256] = "the publisher disconnected";
    unsigned i;

    pthread_setname_np(pthread_self(), "ingest-srt");
    if (!io || !fc || !pkt)
        goto out;
    fc->pb = io;
    fc->probesize = 1 << 20;
    fc->max_analyze_duration = 3 * AV_TIME_BASE;
    rc = avformat_open_input(&fc, NULL, av_find_input_format("mpegts"), &opts);
    av_dict_free(&opts);
    if (rc < 0 || avformat_find_stream_info(fc, NULL) < 0) {
        snprintf(why, sizeof(why), "no MPEG-TS stream could be read");
        goto out;
    }
    for (i = 0; i < fc->nb_streams; i++) {
        AVCodecParameters *par = fc->streams[i]->codecpar;
        int kind = par->codec_type == AVMEDIA_TYPE_VIDEO   ? INGEST_VIDEO
                   : par->codec_type == AVMEDIA_TYPE_AUDIO ? INGEST_AUDIO
                                                           : -1;
        if (kind < 0 || map[kind] >= 0)
            continue;
        if (codec_of(par->codec_id) == INGEST_CODEC_NONE) {
            snprintf(why, sizeof(why), "%s codec %s is not supported (h264, hevc, aac, mp3 are)",
                     kind == INGEST_VIDEO ? "video" : "audio", avcodec_get_name(par->codec_id));
            goto out;
        }
        map[kind] = (int) i;
    }
    if (map[0] < 0 && map[1] < 0) {
        snprintf(why, sizeof(why), "no audio or video in the stream");
        goto out;
    }
    rc = ingest_hub_attach(s->hub, &c->info, &c->cursor,
                           c->backup ? INGEST_ROLE_BACKUP : INGEST_ROLE_PRIMARY, "srt", c->peer,
                           90000, 33, &srt_ops, c, &c->pub, why, sizeof(why));
    if (rc) {
        cb_log_warn("srt %s: publish refused: %s", c->peer, why);
        goto out;
    }
    cb_metric_add(s->m_attempts, (const char *[]){ "ok" }, 1);
    if (map[0] >= 0) {
        AVCodecParameters *par = fc->streams[map[0]]->codecpar;
        AVRational fr = fc->streams[map[0]]->avg_frame_rate;
        ingest_publisher_hints(c->pub, par->width, par->height,
                               fr.den ? (double) fr.num / fr.den : 0);
    }
    for (i = 0; i < 2; i++) {
        AVCodecParameters *par;
        ingest_frame_t f = { 0 };

        if (map[i] < 0)
            continue;
        par = fc->streams[map[i]]->codecpar;
        f.kind = (ingest_media_kind_t) i;
        f.codec = codec_of(par->codec_id);
        f.config = true;
        f.data = par->extradata;
        f.len = (size_t) CB_MAX(par->extradata_size, 0);
        if (ingest_publisher_push(c->pub, &f, why, sizeof(why)) < 0)
            goto out;
    }
    while (!atomic_load(&c->kicked)) {
        AVStream *st;
        ingest_frame_t f = { 0 };
        int kind;

        rc = av_read_frame(fc, pkt);
        if (rc < 0)
            break;
        kind = (int) pkt->stream_index == map[0]   ? INGEST_VIDEO
               : (int) pkt->stream_index == map[1] ? INGEST_AUDIO
                                                   : -1;
        st = fc->streams[pkt->stream_index];
        if (kind < 0 || (pkt->dts == AV_NOPTS_VALUE && pkt->pts == AV_NOPTS_VALUE)) {
            av_packet_unref(pkt);
            continue;
        }
        f.kind = (ingest_media_kind_t) kind;
        f.codec = codec_of(st->codecpar->codec_id);
        f.keyframe = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
        f.dts = (uint64_t) av_rescale_q(pkt->dts != AV_NOPTS_VALUE ? pkt->dts : pkt->pts,
                                        st->time_base, (AVRational){ 1, 90000 });
        f.cts = pkt->pts != AV_NOPTS_VALUE && pkt->dts != AV_NOPTS_VALUE
                    ? av_rescale_q(pkt->pts - pkt->dts, st->time_base, (AVRational){ 1, 90000 })
                    : 0;
        f.data = pkt->data;
        f.len = (size_t) pkt->size;
        rc = ingest_publisher_push(c->pub, &f, why, sizeof(why));
        av_packet_unref(pkt);
        if (rc < 0) {
            cb_log_warn("srt %s: publish ended: %s", c->peer, why);
            break;
        }
    }
    if (atomic_load(&c->kicked))
        snprintf(why, sizeof(why), "kicked");
out:
    if (c->pub)
        ingest_hub_detach(c->pub, why);
    c->pub = NULL;
    av_packet_free(&pkt);
    if (fc)
        avformat_close_input(&fc);
    if (io) {
        av_freep(&io->buffer);
        avio_context_free(&io);
    } else {
        av_free(iobuf);
    }
    srt_close(c->sock);
    cb_metric_add(s->m_conns, NULL, -1);
    cb_log_info("srt %s: connection closed: %s", c->peer, why);
    atomic_store(&c->done, true);
    return NULL;
}

/* Join readers that are done (accept thread, or stop). */
static void reap(ingest_srt_t *s, bool all)
{
    srt_conn_t **pp, *c;

    pthread_mutex_lock(&s->lock);
    pp = &s->conns;
    while ((c = *pp) != NULL) {
        if (all || atomic_load(&c->done)) {
            *pp = c->next;
            s->nconns--;
            pthread_mutex_unlock(&s->lock);
            pthread_join(c->thread, NULL);
            free(c);
            pthread_mutex_lock(&s->lock);
            pp = &s->conns;
            continue;
        }
        pp = &c->next;
    }
    pthread_mutex_unlock(&s->lock);
}

static void *accept_main(void *arg)
{
    ingest_srt_t *s = arg;
    int eid = srt_epoll_create(), events = SRT_EPOLL_IN;

    pthread_setname_np(pthread_self(), "ingest-srt-acc");
    srt_epoll_add_usock(eid, s->lsock, &events);
    while (!atomic_load(&s->stopping)) {
        SRTSOCKET ready[4];
        int nready = 4, k;
        struct sockaddr_storage sa;
        int salen = sizeof(sa);
        SRTSOCKET ns;
        srt_conn_t *c;
        size_t i;
        char host[64] = "?", port[16] = "?";

        k = srt_epoll_wait(eid, ready, &nready, NULL, NULL, 500, NULL, NULL, NULL, NULL);
        reap(s, false);
        if (k <= 0)
            continue;
        ns = srt_accept(s->lsock, (struct sockaddr *) &sa, &salen);
        if (ns == SRT_INVALID_SOCK)
            continue;
        getnameinfo((struct sockaddr *) &sa, (socklen_t) salen, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
        c = calloc(1, sizeof(*c));
        pthread_mutex_lock(&s->lock);
        for (i = 0; i < PENDING_MAX; i++) {
            if (s->pending[i].used && s->pending[i].sock == ns)
                break;
        }
        if (!c || i == PENDING_MAX) {
            pthread_mutex_unlock(&s->lock);
            free(c);
            srt_close(ns);
            continue;
        }
        c->srt = s;
        c->sock = ns;
        c->backup = s->pending[i].backup;
        c->info = s->pending[i].info;
        c->cursor = s->pending[i].cursor;
        s->pending[i].used = false;
        snprintf(c->peer, sizeof(c->peer), "%s:%s", host, port);
        {
            int64_t timeout = s->cfg.idle_timeout_ms;
            int ms = (int) CB_MIN(timeout, (int64_t) 1 << 30);
            srt_setsockflag(ns, SRTO_RCVTIMEO, &ms, sizeof(ms));
        }
        if (pthread_create(&c->thread, NULL, reader_main, c) != 0) {
            pthread_mutex_unlock(&s->lock);
            srt_close(ns);
            free(c);
            continue;
        }
        c->next = s->conns;
        s->conns = c;
        s->nconns++;
        pthread_mutex_unlock(&s->lock);
        cb_metric_add(s->m_conns, NULL, 1);
    }
    srt_epoll_release(eid);
    return NULL;
}

int ingest_srt_new(const ingest_srt_config_t *cfg, ingest_hub_t *hub, ingest_ratelimit_t *rl,
                   cb_metrics_t *metrics, ingest_srt_auth_fn auth, void *auth_arg,
                   ingest_srt_t **out)
{
    ingest_srt_t *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->cfg = *cfg;
    s->hub = hub;
    s->rl = rl;
    s->auth = auth;
    s->auth_arg = auth_arg;
    s->lsock = SRT_INVALID_SOCK;
    pthread_mutex_init(&s->lock, NULL);
    s->m_conns = cb_metrics_gauge(metrics, "castbus_ingest_srt_connections",
                                  "Open SRT publisher connections.", NULL);
    s->m_attempts =
        cb_metrics_counter(metrics, "castbus_ingest_srt_attempts_total",
                           "SRT publish attempts, by outcome.", (const char *[]){ "result", NULL });
    s->m_bytes = cb_metrics_counter(metrics, "castbus_ingest_srt_received_bytes_total",
                                    "Bytes received from SRT publishers.", NULL);
    s->s_bytes = cb_metric_series(s->m_bytes, NULL);
    *out = s;
    return 0;
}

int ingest_srt_start(ingest_srt_t *s, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_INET,
                              .ai_socktype = SOCK_DGRAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
    struct addrinfo *ai = NULL;
    struct sockaddr_storage sa;
    int salen = sizeof(sa), yes = 1, latency = (int) s->cfg.latency_ms, rc;
    SRT_TRANSTYPE live = SRTT_LIVE;
    char ps[16];

    if (s->cfg.port <= 0)
        return 0;
    srt_startup();
    snprintf(ps, sizeof(ps), "%lld", (long long) s->cfg.port);
    if (getaddrinfo(s->cfg.host, ps, &hints, &ai) != 0 || !ai) {
        snprintf(err, errlen, "SRT: '%s' is not an address to listen on", s->cfg.host);
        return -EINVAL;
    }
    s->lsock = srt_create_socket();
    srt_setsockflag(s->lsock, SRTO_TRANSTYPE, &live, sizeof(live));
    srt_setsockflag(s->lsock, SRTO_REUSEADDR, &yes, sizeof(yes));
    srt_setsockflag(s->lsock, SRTO_RCVLATENCY, &latency, sizeof(latency));
    rc = srt_bind(s->lsock, ai->ai_addr, (int) ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc == SRT_ERROR || srt_listen_callback(s->lsock, listen_cb, s) == SRT_ERROR ||
        srt_listen(s->lsock, 64) == SRT_ERROR) {
        snprintf(err, errlen, "SRT: cannot listen on %s:%lld: %s", s->cfg.host,
                 (long long) s->cfg.port, srt_getlasterror_str());
        return -EADDRINUSE;
    }
    srt_getsockname(s->lsock, (struct sockaddr *) &sa, &salen);
    s->port = ntohs(((struct sockaddr_in *) &sa)->sin_port);
    rc = pthread_create(&s->accept_thread, NULL, accept_main, s);
    if (rc) {
        snprintf(err, errlen, "SRT: cannot start the accept thread: %s", strerror(rc));
        return -rc;
    }
    s->started = true;
    cb_log_info("srt listening on %s:%d%s", s->cfg.host, s->port,
                s->cfg.passphrase && *s->cfg.passphrase ? " (encrypted)" : "");
    return 0;
}

int ingest_srt_port(const ingest_srt_t *s)
{
    return s->port;
}

void ingest_srt_stop(ingest_srt_t *s)
{
    srt_conn_t *c;

    if (!s->started)
        return;
    atomic_store(&s->stopping, true);
    pthread_join(s->accept_thread, NULL);
    pthread_mutex_lock(&s->lock);
    for (c = s->conns; c; c = c->next) {
        atomic_store(&c->kicked, true);
        srt_close(c->sock);
    }
    pthread_mutex_unlock(&s->lock);
    reap(s, true);
    srt_close(s->lsock);
    s->started = false;
}

void ingest_srt_free(ingest_srt_t *s)
{
    if (!s)
        return;
    ingest_srt_stop(s);
    if (s->cfg.port > 0)
        srt_cleanup();
    pthread_mutex_destroy(&s->lock);
    free(s);
}

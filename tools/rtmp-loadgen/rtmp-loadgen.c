/*
 * rtmp-loadgen - publish N RTMP streams from one FLV file at real-time pace.
 *
 *   rtmp-loadgen --file F.flv (--url rtmp://host[:port]/app/name)... [--urls FILE]
 *                [--duration S] [--ramp MS] [--report S] [--start-ts MS]
 *                [--jump-after S --jump-ms MS]
 *
 * The measuring stick of the ingest benchmark (tools/bench/ingest), so it is
 * kept light: one thread, one epoll loop, non-blocking sockets; the file is
 * read once and its tags are sent as RTMP messages when their time comes
 * (the file loops, timestamps continue). Each URL is one publisher: simple
 * handshake, connect, releaseStream, FCPublish, createStream, publish,
 * @setDataFrame, then audio and video; at the end FCUnpublish and
 * deleteStream. It speaks to castbus-ingest and nginx-rtmp alike.
 *
 * --start-ts starts the RTMP timestamps at MS (4294960000 crosses the 32-bit
 * wrap after 7.3 s); --jump-after/--jump-ms make the timestamps jump once.
 *
 * Output: one JSON line per --report interval and a summary line at the
 * end. Exit status 0 when every publisher published until the end, 1 when
 * any failed (the summary names why), 2 on bad usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HANDSHAKE_SIZE 1536
#define OUT_CHUNK      4096
#define OUT_MAX        (8u << 20) /* unsent bytes per publisher before it counts as stuck */
#define IN_MSG_MAX     (1u << 20) /* largest message accepted from the server */
#define MAX_CSID       64
#define MAX_ERRORS     8

/* ---- the file ---- */

typedef struct tag {
    uint8_t type; /* 8 audio, 9 video, 18 script */
    bool config;  /* a decoder configuration: sent once, not on every loop */
    uint32_t ts_ms;
    const uint8_t *body;
    uint32_t len;
} tag_t;

typedef struct media {
    uint8_t *data;
    size_t len;
    tag_t *tags;
    size_t ntags;
    uint32_t loop_ms;    /* duration of one pass */
    const uint8_t *meta; /* the first script tag's body (onMetaData), or NULL */
    uint32_t meta_len;
} media_t;

/* ---- a publisher ---- */

typedef enum pstate {
    P_CONNECTING,
    P_HANDSHAKE, /* C0+C1 sent, waiting for S0+S1+S2 */
    P_CONNECT,   /* connect sent */
    P_CREATE,    /* createStream sent */
    P_PUBLISH,   /* publish sent */
    P_PUBLISHING,
    P_CLOSING, /* deleteStream queued; close when sent */
    P_DONE,
    P_FAILED,
} pstate_t;

typedef struct chunk_in {
    uint32_t ts, len, got;
    uint8_t type;
    uint8_t *buf;
} chunk_in_t;

typedef struct pub {
    int fd;
    pstate_t state;
    char host[256], port[8], app[128], name[512], tc_url[512];
    uint8_t *out;
    size_t out_len, out_cap;
    uint8_t *in;
    size_t in_len, in_cap;
    uint32_t in_chunk;
    chunk_in_t cs[MAX_CSID];
    double stream_id;
    int64_t start_ms; /* when media started */
    size_t next_tag;
    uint64_t loop;
    bool jumped;
    uint64_t bytes;
    uint32_t sent_ms; /* media time of the last tag sent */
    char error[160];
} pub_t;

typedef struct opts {
    const char *file;
    char **urls;
    size_t nurls;
    double duration_s;
    int64_t ramp_ms;
    double report_s;
    uint32_t start_ts;
    double jump_after_s;
    int64_t jump_ms;
} opts_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void) sig;
    stop_requested = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t rb24(const uint8_t *p)
{
    return (uint32_t) p[0] << 16 | (uint32_t) p[1] << 8 | p[2];
}

static uint32_t rb32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | rb24(p + 1);
}

static void wb24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 16);
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) v;
}

static void wb32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    wb24(p + 1, v);
}

/* ---- loading the FLV ---- */

static int media_load(const char *path, media_t *m, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    size_t pos, cap = 0;
    uint32_t last_video = 0, prev_video = 0, last_ts = 0;

    memset(m, 0, sizeof(*m));
    if (!f || fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "open('%s') failed: %s", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    m->len = (size_t) st.st_size;
    m->data = malloc(m->len ? m->len : 1);
    if (!m->data || fread(m->data, 1, m->len, f) != m->len) {
        snprintf(err, errlen, "read('%s') failed", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    if (m->len < 13 || memcmp(m->data, "FLV", 3) != 0) {
        snprintf(err, errlen, "'%s' is not an FLV file", path);
        return -1;
    }
    pos = rb32(m->data + 5) + 4; /* header, then PreviousTagSize0 */
    while (pos + 11 <= m->len) {
        const uint8_t *h = m->data + pos;
        uint32_t size = rb24(h + 1);
        tag_t *t;

        if (pos + 11 + size > m->len)
            break;
        if (m->ntags == cap) {
            tag_t *n;
            cap = cap ? cap * 2 : 1024;
            n = realloc(m->tags, cap * sizeof(*n));
            if (!n) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            m->tags = n;
        }
        t = &m->tags[m->ntags++];
        t->type = h[0] & 0x1f;
        t->ts_ms = rb24(h + 4) | (uint32_t) h[7] << 24;
        t->body = h + 11;
        t->len = size;
        t->config = (t->type == 9 && size >= 2 && (t->body[0] & 0x0f) == 7 && t->body[1] == 0) ||
                    (t->type == 8 && size >= 2 && (t->body[0] >> 4) == 10 && t->body[1] == 0);
        if (t->type == 18) {
            if (!m->meta) {
                m->meta = t->body;
                m->meta_len = t->len;
            }
            m->ntags--; /* sent as @setDataFrame at the start */
        } else if (t->type == 9) {
            prev_video = last_video;
            last_video = t->ts_ms;
        }
        if (t->type != 18 && t->ts_ms > last_ts)
            last_ts = t->ts_ms;
        pos += 11 + size + 4;
    }
    if (m->ntags == 0) {
        snprintf(err, errlen, "'%s' holds no audio or video tags", path);
        return -1;
    }
    /* one pass lasts to the end of its last frame */
    m->loop_ms = last_ts + (last_video > prev_video ? last_video - prev_video : 33);
    return 0;
}

/* ---- output ---- */

static int out_reserve(pub_t *p, size_t n)
{
    if (p->out_len + n > p->out_cap) {
        size_t cap = p->out_cap ? p->out_cap : 65536;
        uint8_t *o;

        while (cap < p->out_len + n)
            cap *= 2;
        if (cap > OUT_MAX + (1u << 20))
            return -ENOBUFS;
        o = realloc(p->out, cap);
        if (!o)
            return -ENOMEM;
        p->out = o;
        p->out_cap = cap;
    }
    return 0;
}

static void out_put(pub_t *p, const void *d, size_t n)
{
    memcpy(p->out + p->out_len, d, n);
    p->out_len += n;
}

/* One message, chunked at OUT_CHUNK, with a type-0 header. */
static int send_msg(pub_t *p, int csid, uint8_t type, uint32_t sid, uint32_t ts,
                    const uint8_t *body, size_t len)
{
    bool ext = ts >= 0xFFFFFF;
    size_t pieces = len ? (len + OUT_CHUNK - 1) / OUT_CHUNK : 1, off = 0;
    uint8_t h[16];
    int rc = out_reserve(p, 12 + 4 + len + pieces * 5);

    if (rc)
        return rc;
    h[0] = (uint8_t) csid;
    wb24(h + 1, ext ? 0xFFFFFF : ts);
    wb24(h + 4, (uint32_t) len);
    h[7] = type;
    h[8] = (uint8_t) sid; /* message stream id: little endian */
    h[9] = (uint8_t) (sid >> 8);
    h[10] = (uint8_t) (sid >> 16);
    h[11] = (uint8_t) (sid >> 24);
    out_put(p, h, 11 + 1);
    if (ext) {
        wb32(h, ts);
        out_put(p, h, 4);
    }
    do {
        size_t n = len - off < OUT_CHUNK ? len - off : OUT_CHUNK;

        if (off > 0) {
            h[0] = (uint8_t) (0xC0 | csid);
            out_put(p, h, 1);
            if (ext) {
                wb32(h, ts);
                out_put(p, h, 4);
            }
        }
        out_put(p, body + off, n);
        off += n;
    } while (off < len);
    return 0;
}

/* ---- AMF0, just what the commands need ---- */

typedef struct amf {
    uint8_t b[2048];
    size_t n;
} amf_t;

static void amf_str_raw(amf_t *a, const char *s)
{
    size_t l = strlen(s);

    if (a->n + 2 + l > sizeof(a->b))
        return;
    a->b[a->n++] = (uint8_t) (l >> 8);
    a->b[a->n++] = (uint8_t) l;
    memcpy(a->b + a->n, s, l);
    a->n += l;
}

static void amf_str(amf_t *a, const char *s)
{
    if (a->n < sizeof(a->b))
        a->b[a->n++] = 0x02;
    amf_str_raw(a, s);
}

static void amf_num(amf_t *a, double v)
{
    uint64_t u;

    if (a->n + 9 > sizeof(a->b))
        return;
    memcpy(&u, &v, 8);
    a->b[a->n++] = 0x00;
    for (int i = 7; i >= 0; i--)
        a->b[a->n++] = (uint8_t) (u >> (i * 8));
}

static void amf_null(amf_t *a)
{
    if (a->n < sizeof(a->b))
        a->b[a->n++] = 0x05;
}

static int send_cmd(pub_t *p, int csid, uint32_t sid, const char *name, double txn, const char *arg)
{
    amf_t a = { .n = 0 };

    amf_str(&a, name);
    amf_num(&a, txn);
    amf_null(&a);
    if (arg)
        amf_str(&a, arg);
    return send_msg(p, csid, 20, sid, 0, a.b, a.n);
}

static int send_connect(pub_t *p)
{
    amf_t a = { .n = 0 };
    uint8_t cs[4];

    wb32(cs, OUT_CHUNK);
    if (send_msg(p, 2, 1, 0, 0, cs, 4))
        return -ENOBUFS;
    amf_str(&a, "connect");
    amf_num(&a, 1);
    a.b[a.n++] = 0x03;
    amf_str_raw(&a, "app");
    amf_str(&a, p->app);
    amf_str_raw(&a, "type");
    amf_str(&a, "nonprivate");
    amf_str_raw(&a, "flashVer");
    amf_str(&a, "FMLE/3.0 (compatible; castbus rtmp-loadgen)");
    amf_str_raw(&a, "tcUrl");
    amf_str(&a, p->tc_url);
    a.b[a.n++] = 0;
    a.b[a.n++] = 0;
    a.b[a.n++] = 0x09;
    return send_msg(p, 3, 20, 0, 0, a.b, a.n);
}

/* ---- input from the server ---- */

/* The publisher failed: `what`, and `detail` when there is one. */
static void fail(pub_t *p, const char *what, const char *detail)
{
    if (p->state == P_FAILED || p->state == P_DONE)
        return;
    snprintf(p->error, sizeof(p->error), "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    p->state = P_FAILED;
}

/* An AMF0 string at *pos, or NULL. */
static const char *amf_read_str(const uint8_t *b, size_t n, size_t *pos, char *out, size_t outlen)
{
    size_t l;

    if (*pos + 3 > n || b[*pos] != 0x02)
        return NULL;
    l = (size_t) b[*pos + 1] << 8 | b[*pos + 2];
    if (*pos + 3 + l > n)
        return NULL;
    snprintf(out, outlen, "%.*s", (int) l, (const char *) b + *pos + 3);
    *pos += 3 + l;
    return out;
}

static bool amf_read_num(const uint8_t *b, size_t n, size_t *pos, double *v)
{
    uint64_t u = 0;

    if (*pos + 9 > n || b[*pos] != 0x00)
        return false;
    for (int i = 1; i <= 8; i++)
        u = u << 8 | b[*pos + i];
    memcpy(v, &u, 8);
    *pos += 9;
    return true;
}

static int on_command(pub_t *p, const uint8_t *b, size_t n)
{
    char name[64], code[160];
    const uint8_t *c;
    size_t pos = 0;
    double txn = 0;

    if (!amf_read_str(b, n, &pos, name, sizeof(name)))
        return 0;
    amf_read_num(b, n, &pos, &txn);
    if (strcmp(name, "_result") == 0 && txn == 1 && p->state == P_CONNECT) {
        if (send_cmd(p, 3, 0, "releaseStream", 2, p->name) ||
            send_cmd(p, 3, 0, "FCPublish", 3, p->name) ||
            send_cmd(p, 3, 0, "createStream", 4, NULL))
            return -ENOBUFS;
        p->state = P_CREATE;
    } else if (strcmp(name, "_result") == 0 && txn == 4 && p->state == P_CREATE) {
        if (pos < n && b[pos] == 0x05)
            pos++;
        if (!amf_read_num(b, n, &pos, &p->stream_id))
            p->stream_id = 1;
        {
            amf_t a = { .n = 0 };
            amf_str(&a, "publish");
            amf_num(&a, 5);
            amf_null(&a);
            amf_str(&a, p->name);
            amf_str(&a, "live");
            if (send_msg(p, 8, 20, (uint32_t) p->stream_id, 0, a.b, a.n))
                return -ENOBUFS;
        }
        p->state = P_PUBLISH;
    } else if (strcmp(name, "_error") == 0 || strcmp(name, "onStatus") == 0) {
        /* the status object's "code" member */
        c = memmem(b, n,
                   "\x00\x04"
                   "code\x02",
                   7);
        code[0] = '\0';
        if (c) {
            size_t cp = (size_t) (c - b) + 6;
            amf_read_str(b, n, &cp, code, sizeof(code));
        }
        if (strcmp(code, "NetStream.Publish.Start") == 0) {
            if (p->state == P_PUBLISH)
                p->state = P_PUBLISHING;
        } else if (strstr(code, "Unpublish") || strstr(code, "Play")) {
            /* informational */
        } else if (memmem(b, n, "error", 5) || strcmp(name, "_error") == 0) {
            fail(p, "refused", code[0] ? code : name);
        }
    }
    return 0;
}

static int on_message(pub_t *p, uint8_t type, const uint8_t *b, size_t n)
{
    switch (type) {
    case 1: /* set chunk size */
        if (n >= 4) {
            p->in_chunk = rb32(b) & 0x7FFFFFFF;
            if (p->in_chunk < 1 || p->in_chunk > IN_MSG_MAX) {
                fail(p, "server sent a bad chunk size", NULL);
                return -EPROTO;
            }
        }
        return 0;
    case 20:
        return on_command(p, b, n);
    default: /* acks, windows, user control, data: nothing to do */
        return 0;
    }
}

/* Parse what arrived: handshake, then chunks. Returns < 0 to close. */
static int parse_input(pub_t *p)
{
    size_t pos = 0;

    if (p->state == P_HANDSHAKE) {
        if (p->in_len < 1 + 2 * HANDSHAKE_SIZE)
            return 0;
        if (out_reserve(p, HANDSHAKE_SIZE))
            return -ENOBUFS;
        out_put(p, p->in + 1, HANDSHAKE_SIZE); /* C2 echoes S1 */
        pos = 1 + 2 * HANDSHAKE_SIZE;
        p->state = P_CONNECT;
        if (send_connect(p))
            return -ENOBUFS;
    }
    while (p->state != P_HANDSHAKE && pos < p->in_len) {
        const uint8_t *h = p->in + pos;
        size_t avail = p->in_len - pos, bh = 1, mh, need;
        unsigned fmt = h[0] >> 6, csid = h[0] & 0x3f;
        chunk_in_t *c;
        uint32_t piece;

        if (csid == 0)
            bh = 2;
        else if (csid == 1)
            bh = 3;
        if (avail < bh)
            break;
        if (bh > 1)
            csid = 64 + h[1] + (bh == 3 ? (unsigned) h[2] * 256 : 0);
        c = &p->cs[csid % MAX_CSID];
        mh = fmt == 0 ? 11 : fmt == 1 ? 7 : fmt == 2 ? 3 : 0;
        if (avail < bh + mh)
            break;
        need = bh + mh;
        {
            uint32_t ts = mh ? rb24(h + bh) : c->ts;
            bool ext = mh ? ts == 0xFFFFFF : false;

            if (ext) {
                if (avail < need + 4)
                    break;
                need += 4;
            }
            if (fmt <= 1) {
                uint32_t len = rb24(h + bh + 3);
                if (len > IN_MSG_MAX) {
                    fail(p, "server message too large", NULL);
                    return -EPROTO;
                }
                if (c->got == 0) {
                    c->len = len;
                    c->type = h[bh + 6];
                }
            }
            if (mh)
                c->ts = ts;
        }
        piece = c->len - c->got < p->in_chunk ? c->len - c->got : p->in_chunk;
        if (avail < need + piece)
            break;
        if (!c->buf || c->got == 0) {
            free(c->buf);
            c->buf = malloc(c->len ? c->len : 1);
            if (!c->buf)
                return -ENOMEM;
        }
        memcpy(c->buf + c->got, h + need, piece);
        c->got += piece;
        pos += need + piece;
        if (c->got == c->len) {
            int rc = on_message(p, c->type, c->buf, c->len);
            c->got = 0;
            if (rc)
                return rc;
        }
    }
    memmove(p->in, p->in + pos, p->in_len - pos);
    p->in_len -= pos;
    return 0;
}

/* ---- media ---- */

static uint32_t tag_time(const media_t *m, const pub_t *p, const tag_t *t)
{
    return (uint32_t) (t->ts_ms + p->loop * m->loop_ms);
}

/* Send every tag whose time has come. */
static int send_due(pub_t *p, const media_t *m, const opts_t *o, int64_t now)
{
    if (p->start_ms == 0) {
        p->start_ms = now;
        if (m->meta) {
            amf_t a = { .n = 0 };
            int rc;

            amf_str(&a, "@setDataFrame");
            if (a.n + m->meta_len > sizeof(a.b))
                return 0;
            memcpy(a.b + a.n, m->meta, m->meta_len);
            a.n += m->meta_len;
            rc = send_msg(p, 4, 18, (uint32_t) p->stream_id, o->start_ts, a.b, a.n);
            if (rc)
                return rc;
        }
    }
    for (;;) {
        const tag_t *t = &m->tags[p->next_tag];
        uint32_t media_ms = tag_time(m, p, t);
        uint32_t ts = o->start_ts + media_ms;
        int rc;

        if (now < p->start_ms + (int64_t) media_ms)
            return 0;
        if (o->jump_ms && !p->jumped && media_ms >= o->jump_after_s * 1000.0)
            p->jumped = true;
        if (p->jumped)
            ts += (uint32_t) o->jump_ms;
        if (!(t->config && p->loop > 0)) {
            if (p->out_len > OUT_MAX) {
                fail(p, "server too slow: over 8 MiB unsent", NULL);
                return -ENOBUFS;
            }
            rc = send_msg(p, t->type == 8 ? 4 : 6, t->type, (uint32_t) p->stream_id, ts, t->body,
                          t->len);
            if (rc)
                return rc;
            p->bytes += t->len;
            p->sent_ms = media_ms;
        }
        if (++p->next_tag == m->ntags) {
            p->next_tag = 0;
            p->loop++;
        }
    }
}

/* ---- connections ---- */

static int parse_url(pub_t *p, const char *url)
{
    const char *s, *slash, *colon;

    if (strncmp(url, "rtmp://", 7) != 0)
        return -EINVAL;
    s = url + 7;
    slash = strchr(s, '/');
    if (!slash)
        return -EINVAL;
    colon = memchr(s, ':', (size_t) (slash - s));
    snprintf(p->host, sizeof(p->host), "%.*s", (int) ((colon ? colon : slash) - s), s);
    snprintf(p->port, sizeof(p->port), "%.*s", colon ? (int) (slash - colon - 1) : 4,
             colon ? colon + 1 : "1935");
    s = slash + 1;
    slash = strchr(s, '/');
    if (!slash || !slash[1])
        return -EINVAL;
    snprintf(p->app, sizeof(p->app), "%.*s", (int) (slash - s), s);
    snprintf(p->name, sizeof(p->name), "%s", slash + 1);
    snprintf(p->tc_url, sizeof(p->tc_url), "%.*s", (int) (slash - url), url);
    return 0;
}

static int pub_connect(pub_t *p, int ep)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = p };
    uint8_t c01[1 + HANDSHAKE_SIZE];
    int one = 1, rc;

    rc = getaddrinfo(p->host, p->port, &hints, &ai);
    if (rc) {
        fail(p, "cannot resolve", gai_strerror(rc));
        return -1;
    }
    p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0 || (connect(p->fd, ai->ai_addr, ai->ai_addrlen) && errno != EINPROGRESS)) {
        fail(p, "connect failed", strerror(errno));
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev);
    memset(c01, 0, sizeof(c01));
    c01[0] = 3; /* version; time and zero fields 0: the simple handshake */
    for (size_t i = 9; i < sizeof(c01); i++)
        c01[i] = (uint8_t) (i * 2654435761u >> 24);
    p->in_chunk = 128;
    p->state = P_HANDSHAKE;
    if (out_reserve(p, sizeof(c01)))
        return -1;
    out_put(p, c01, sizeof(c01));
    return 0;
}

static void pub_flush(pub_t *p)
{
    while (p->out_len > 0) {
        ssize_t n = send(p->fd, p->out, p->out_len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fail(p, "send failed", strerror(errno));
            return;
        }
        memmove(p->out, p->out + n, p->out_len - (size_t) n);
        p->out_len -= (size_t) n;
    }
}

static void pub_read(pub_t *p)
{
    for (;;) {
        ssize_t n;

        if (p->in_cap - p->in_len < 65536) {
            uint8_t *b;
            if (p->in_cap >= IN_MSG_MAX * 4) {
                fail(p, "server sends more than it should", NULL);
                return;
            }
            b = realloc(p->in, p->in_cap ? p->in_cap * 2 : 131072);
            if (!b) {
                fail(p, "out of memory", NULL);
                return;
            }
            p->in = b;
            p->in_cap = p->in_cap ? p->in_cap * 2 : 131072;
        }
        n = recv(p->fd, p->in + p->in_len, p->in_cap - p->in_len, 0);
        if (n == 0) {
            if (p->state != P_CLOSING && p->state != P_DONE)
                fail(p, "the server closed the connection", NULL);
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fail(p, "recv failed", strerror(errno));
            return;
        }
        p->in_len += (size_t) n;
        if (parse_input(p) < 0) {
            fail(p, "protocol error", NULL);
            return;
        }
    }
}

static void pub_close(pub_t *p, int ep)
{
    if (p->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
        close(p->fd);
        p->fd = -1;
    }
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fputs("usage: rtmp-loadgen --file F.flv (--url rtmp://host[:port]/app/name)... [--urls FILE]\n"
          "                    [--duration S] [--ramp MS] [--report S] [--start-ts MS]\n"
          "                    [--jump-after S --jump-ms MS]\n",
          out);
}

static int add_url(opts_t *o, const char *u)
{
    char **n = realloc(o->urls, (o->nurls + 1) * sizeof(*n));

    if (!n)
        return -1;
    o->urls = n;
    o->urls[o->nurls] = strdup(u);
    return o->urls[o->nurls++] ? 0 : -1;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    o->duration_s = 30;
    o->report_s = 5;
    o->ramp_ms = 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--file") == 0) {
            o->file = v;
        } else if (strcmp(a, "--url") == 0) {
            if (add_url(o, v))
                return -1;
        } else if (strcmp(a, "--urls") == 0) {
            FILE *f = fopen(v, "r");
            char line[1024];
            if (!f)
                return -1;
            while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (line[0] && line[0] != '#' && add_url(o, line)) {
                    fclose(f);
                    return -1;
                }
            }
            fclose(f);
        } else if (strcmp(a, "--duration") == 0) {
            o->duration_s = atof(v);
        } else if (strcmp(a, "--ramp") == 0) {
            o->ramp_ms = atoll(v);
        } else if (strcmp(a, "--report") == 0) {
            o->report_s = atof(v);
        } else if (strcmp(a, "--start-ts") == 0) {
            o->start_ts = (uint32_t) strtoull(v, NULL, 10);
        } else if (strcmp(a, "--jump-after") == 0) {
            o->jump_after_s = atof(v);
        } else if (strcmp(a, "--jump-ms") == 0) {
            o->jump_ms = atoll(v);
        } else {
            return -1;
        }
    }
    return o->file && o->nurls > 0 && o->duration_s > 0 && o->report_s > 0 ? 0 : -1;
}

static void report(const pub_t *pubs, size_t n, double t, bool final)
{
    size_t counts[P_FAILED + 1] = { 0 };
    uint64_t bytes = 0;
    uint32_t media_min = UINT32_MAX, media_max = 0;
    size_t i, shown = 0;

    for (i = 0; i < n; i++) {
        counts[pubs[i].state]++;
        bytes += pubs[i].bytes;
        if (pubs[i].sent_ms < media_min)
            media_min = pubs[i].sent_ms;
        if (pubs[i].sent_ms > media_max)
            media_max = pubs[i].sent_ms;
    }
    printf("{\"%s\":true,\"t_s\":%.1f,\"publishers\":%zu,\"publishing\":%zu,\"connecting\":%zu,"
           "\"done\":%zu,\"failed\":%zu,\"media_bytes\":%llu,\"media_s_min\":%.3f,"
           "\"media_s_max\":%.3f",
           final ? "summary" : "report", t, n, counts[P_PUBLISHING],
           counts[P_CONNECTING] + counts[P_HANDSHAKE] + counts[P_CONNECT] + counts[P_CREATE] +
               counts[P_PUBLISH],
           counts[P_DONE] + counts[P_CLOSING], counts[P_FAILED], (unsigned long long) bytes,
           n ? media_min / 1000.0 : 0.0, media_max / 1000.0);
    if (counts[P_FAILED]) {
        printf(",\"errors\":[");
        for (i = 0; i < n && shown < MAX_ERRORS; i++) {
            if (pubs[i].state != P_FAILED)
                continue;
            printf("%s\"%s\"", shown ? "," : "", pubs[i].error);
            shown++;
        }
        printf("]");
    }
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    opts_t o = { 0 };
    media_t m;
    pub_t *pubs;
    char err[256];
    int ep, failed = 0;
    int64_t t0, next_report, end, next_start;
    size_t started = 0, i;

    if (parse_args(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (media_load(o.file, &m, err, sizeof(err))) {
        fprintf(stderr, "rtmp-loadgen: %s\n", err);
        return 2;
    }
    pubs = calloc(o.nurls, sizeof(*pubs));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!pubs || ep < 0) {
        fprintf(stderr, "rtmp-loadgen: out of resources\n");
        return 1;
    }
    for (i = 0; i < o.nurls; i++) {
        pubs[i].fd = -1;
        if (parse_url(&pubs[i], o.urls[i])) {
            fprintf(stderr, "rtmp-loadgen: not an rtmp://host[:port]/app/name URL: %s\n",
                    o.urls[i]);
            return 2;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    t0 = now_ms();
    next_start = t0;
    next_report = t0 + (int64_t) (o.report_s * 1000);
    end = t0 + (int64_t) (o.ramp_ms * (int64_t) o.nurls) + (int64_t) (o.duration_s * 1000);
    for (;;) {
        struct epoll_event evs[256];
        int64_t now = now_ms();
        int nev;
        bool busy = false;

        while (started < o.nurls && now >= next_start) {
            pub_connect(&pubs[started++], ep);
            next_start += o.ramp_ms;
        }
        nev = epoll_wait(ep, evs, 256, 5);
        now = now_ms();
        for (int e = 0; e < nev; e++) {
            pub_t *p = evs[e].data.ptr;
            if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                pub_read(p);
        }
        for (i = 0; i < started; i++) {
            pub_t *p = &pubs[i];
            int64_t p_end = end - (int64_t) (o.nurls - 1 - i) * o.ramp_ms;

            if (p->state == P_PUBLISHING) {
                if (now >= p_end || stop_requested) {
                    send_cmd(p, 3, 0, "FCUnpublish", 6, p->name);
                    send_cmd(p, 3, (uint32_t) p->stream_id, "deleteStream", 7, NULL);
                    p->state = P_CLOSING;
                } else if (send_due(p, &m, &o, now)) {
                    fail(p, "cannot keep up", NULL);
                }
            } else if (stop_requested && p->state < P_PUBLISHING) {
                fail(p, "stopped before publishing", NULL);
            }
            if (p->fd >= 0 && p->out_len)
                pub_flush(p);
            if (p->state == P_CLOSING && p->out_len == 0) {
                shutdown(p->fd, SHUT_WR);
                p->state = P_DONE;
            }
            if ((p->state == P_DONE || p->state == P_FAILED) && p->fd >= 0)
                pub_close(p, ep);
            if (p->state != P_DONE && p->state != P_FAILED)
                busy = true;
        }
        if (now >= next_report) {
            report(pubs, o.nurls, (double) (now - t0) / 1000.0, false);
            next_report += (int64_t) (o.report_s * 1000);
        }
        if (!busy && started == o.nurls)
            break;
        if (stop_requested && !busy)
            break;
    }
    report(pubs, o.nurls, (double) (now_ms() - t0) / 1000.0, true);
    for (i = 0; i < o.nurls; i++) {
        if (pubs[i].state == P_FAILED)
            failed++;
        for (int c = 0; c < MAX_CSID; c++)
            free(pubs[i].cs[c].buf);
        free(pubs[i].out);
        free(pubs[i].in);
        free(o.urls[i]);
    }
    free(o.urls);
    free(pubs);
    free(m.tags);
    free(m.data);
    close(ep);
    return failed ? 1 : 0;
}

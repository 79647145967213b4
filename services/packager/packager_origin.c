/*
 * packager_origin.c - the HTTP origin; see packager_origin.h.
 */
#include "packager_origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "defs.h"
#include "log.h"
#include "packager_hls.h"
#include "packager_text.h"
#include "packager_token.h"
#include "route.h"

#define MAX_OBJECT   (256u << 20) /* largest file served */
#define SMALL_OBJECT (64u << 10)  /* read and sent with the headers; larger: sendfile */
#define PLAYLIST_MAX (16u << 20)  /* largest manifest made into a delta update or gzipped */
/* Delta updates and gzipped manifests kept (per manifest version: every
 * player of a stream asks for the same one until it changes), each at most
 * KEPT_MAX bytes */
#define KEPT_CACHE    256
#define KEPT_MAX      (128u << 10) /* so at most 32 MiB kept */
#define GZIP_MIN      1024         /* smaller manifests are sent as they are */
#define ASSET_CACHE   1024         /* asset -> source prefixes remembered */
#define POLICY_CACHE  1024         /* stream -> signed or not, remembered briefly */
#define POLICY_TTL_MS 2000

#define MAX_THREADS 16

/*
 * On a plain origin port a connection is handed to a server only once its
 * first bytes tell HTTP/1 from the HTTP/2 preface (clients with prior
 * knowledge). At most SNIFF_MAX wait at once (the oldest then goes to
 * HTTP/1, whose own timeouts apply), each for SNIFF_WAIT_MS at most.
 */
#define SNIFF_MAX     512
#define SNIFF_WAIT_MS 10000
#define SNIFF_TICK_MS 10 /* re-read of a connection that sent "P" or "PR" so far */

/* Blocking playlist reloads (?_HLS_msn=N): requests held for a segment not
 * listed yet, at most MAX_WAITERS (more are answered at once), looked at
 * again when this packager publishes and every WAKE_POLL_MS (another
 * replica may publish the stream). */
#define MAX_WAITERS  4096
#define WAKE_POLL_MS 200

typedef struct waiter {
    cb_http_req_t *req;
    char key[CB_STORAGE_KEY_MAX]; /* the playlist */
    int64_t msn;                  /* the segment asked for */
    int64_t deadline_ms;          /* monotonic: 503 after three target durations */
} waiter_t;

const cb_config_key_t pk_origin_config_keys[] = {
    { .name = "origin_host",
      .type = CB_CONFIG_STRING,
      .def = "0.0.0.0",
      .offset = offsetof(pk_origin_config_t, host),
      .help = "Address the origin port listens on." },
    { .name = "origin_port",
      .type = CB_CONFIG_INT,
      .def = "8090",
      .min = 0,
      .max = 65535,
      .offset = offsetof(pk_origin_config_t, port),
      .help = "Port players and CDN edges fetch /live, /vod and /time from; 0: the admin port "
              "serves them (one thread)." },
    { .name = "origin_threads",
      .type = CB_CONFIG_INT,
      .def = "2",
      .min = 1,
      .max = MAX_THREADS,
      .offset = offsetof(pk_origin_config_t, threads),
      .help = "Servers (one thread each) sharing the origin port; about one per core." },
    { .name = "live_max_age",
      .type = CB_CONFIG_DURATION,
      .def = "1s",
      .min = 0,
      .max = 60000,
      .offset = offsetof(pk_origin_config_t, live_max_age_ms),
      .help = "Cache-Control max-age of live manifests (rounded down to seconds; keep it under "
              "the segment duration)." },
    { .name = "vod_max_age",
      .type = CB_CONFIG_DURATION,
      .def = "5m",
      .min = 0,
      .max = 86400000,
      .offset = offsetof(pk_origin_config_t, vod_max_age_ms),
      .help = "Cache-Control max-age of VOD manifests (they are purged when republished)." },
    { .name = "segment_max_age",
      .type = CB_CONFIG_DURATION,
      .def = "8760h",
      .min = 0,
      .max = 31536000000LL,
      .offset = offsetof(pk_origin_config_t, segment_max_age_ms),
      .help = "Cache-Control max-age of init and media segments (immutable: a name is never "
              "reused for other bytes)." },
    { .name = "signing_key",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_SECRET,
      .def = "",
      .offset = offsetof(pk_origin_config_t, signing_key),
      .help = "HMAC-SHA256 key of signed playback URLs (streams packaged with signed_playback "
              "are refused without a valid token); also what POST .../playback-token signs "
              "with." },
    { .name = "cors_origins",
      .type = CB_CONFIG_STRING,
      .def = "*",
      .offset = offsetof(pk_origin_config_t, cors_origins),
      .help = "Access-Control-Allow-Origin sent to browser players: * or one origin." },
    { .name = "origin_tls_cert",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(pk_origin_config_t, tls_cert),
      .help = "PEM certificate (chain) of the origin port; with origin_tls_key it serves HTTPS "
              "and HTTP/2 by ALPN. Without: plain HTTP/1.1, and HTTP/2 by h2c upgrade or prior "
              "knowledge." },
    { .name = "origin_tls_key",
      .type = CB_CONFIG_STRING,
      .def = "",
      .offset = offsetof(pk_origin_config_t, tls_key),
      .help = "PEM private key of origin_tls_cert." },
    { .name = NULL },
};

/* Whether a stream needs signed URLs, remembered for POLICY_TTL_MS. */
typedef struct policy {
    char key[72]; /* "live/<stream>" or "vod/<upload>" */
    bool signed_playback;
    int64_t until_ms;
} policy_t;

typedef struct asset_src {
    bool signed_playback;
    char asset[65];
    char source[96];
} asset_src_t;

struct pk_origin {
    pk_origin_config_t cfg;
    cb_http_t *servers[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    size_t nservers, nrunning;
    int listen_fd;
    pthread_t acceptor;
    bool accepting;
    bool sniff; /* plain port: HTTP/2 by prior knowledge too */
    atomic_bool stopping;
    cb_storage_t *storage;
    pk_streams_t *streams;
    pthread_mutex_t lock;
    asset_src_t cache[ASSET_CACHE];
    size_t ncache, next;
    policy_t policies[POLICY_CACHE];
    size_t npolicies, next_policy;
    cb_metric_t *m_served, *m_bytes, *m_held, *m_delta, *m_gzip;
    pthread_mutex_t klock; /* what is kept */
    struct kept {
        char key[CB_STORAGE_KEY_MAX];
        uint64_t size; /* of the manifest it was made from */
        int64_t mtime_ms;
        unsigned form; /* KEPT_DELTA and/or KEPT_GZIP */
        char *bytes;   /* NULL: empty slot */
        size_t len;
    } kept[KEPT_CACHE];
    char cc_segment[64], cc_live[64], cc_vod[64]; /* Cache-Control, from cfg */

    pthread_mutex_t wlock; /* the waiters */
    pthread_cond_t wcond;
    waiter_t *waiters; /* [MAX_WAITERS] */
    size_t nwaiters;
    bool woken, blocking;
    pthread_t blocker;
};

static const char *ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && strcmp(s + n - k, suffix) == 0 ? s + n - k : NULL;
}

bool pk_origin_parse_path(const char *path, char name[65], char token[PK_TOKEN_MAX], char rest[160],
                          char rendition[65], pk_origin_what_t *what)
{
    char buf[CB_ROUTE_VALUE_MAX], *parts[4];
    size_t n = 0;
    char *save = NULL, *tok;

    snprintf(buf, sizeof(buf), "%s", path);
    token[0] = '\0';
    for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
        if (n == 1 && tok[0] == '~' && !token[0]) {
            if (strlen(tok) >= PK_TOKEN_MAX)
                return false;
            snprintf(token, PK_TOKEN_MAX, "%s", tok);
            continue;
        }
        if (n == 3)
            return false;
        parts[n++] = tok;
    }
    if (n < 2 || !pk_name_ok(parts[0]))
        return false;
    snprintf(name, 65, "%s", parts[0]);
    rendition[0] = '\0';
    if (n == 2) {
        const char *dot = ends_with(parts[1], ".m3u8");
        if (!(strcmp(parts[1], "manifest.mpd") == 0 || (dot && dot > parts[1])))
            return false;
        snprintf(rest, 80, "%s", parts[1]);
        *what = PK_MANIFEST;
        return pk_name_ok(parts[1]);
    }
    if (!pk_name_ok(parts[1]) || !pk_name_ok(parts[2]) || strcmp(parts[1], "done") == 0 ||
        strcmp(parts[1], "packager") == 0 || strcmp(parts[1], "src") == 0)
        return false;
    if (ends_with(parts[2], ".m4s")) {
        size_t digits = strspn(parts[2], "0123456789");
        *what = PK_SEGMENT;
        if (parts[2][digits] == '.' && digits > 0 && digits < 13) {
            /* players ask for "<start>.m4s"; the worker wrote it with 13 digits */
            snprintf(rendition, 65, "%s", parts[1]);
            snprintf(rest, 160, "%s/%0*d%s", parts[1], (int) (13 - digits), 0, parts[2]);
            return true;
        }
    } else if (strncmp(parts[2], "init", 4) == 0 && ends_with(parts[2], ".mp4"))
        *what = PK_INIT;
    else
        return false;
    snprintf(rendition, 65, "%s", parts[1]);
    snprintf(rest, 160, "%s/%s", parts[1], parts[2]);
    return true;
}

static int asset_source(pk_origin_t *o, const char *asset, char *out, size_t outlen,
                        bool *signed_playback)
{
    size_t i;
    int rc;

    pthread_mutex_lock(&o->lock);
    for (i = 0; i < o->ncache; i++) {
        if (strcmp(o->cache[i].asset, asset) == 0) {
            snprintf(out, outlen, "%s", o->cache[i].source);
            *signed_playback = o->cache[i].signed_playback;
            pthread_mutex_unlock(&o->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&o->lock);
    rc = pk_streams_asset_source(o->streams, asset, out, outlen, signed_playback);
    if (rc == 0) {
        pthread_mutex_lock(&o->lock);
        i = o->ncache < ASSET_CACHE ? o->ncache++ : o->next++ % ASSET_CACHE;
        snprintf(o->cache[i].asset, sizeof(o->cache[i].asset), "%s", asset);
        snprintf(o->cache[i].source, sizeof(o->cache[i].source), "%s", out);
        o->cache[i].signed_playback = *signed_playback;
        pthread_mutex_unlock(&o->lock);
    }
    return rc;
}

/* pk_streams_signed(), remembered for a moment: it may read storage. */
static int stream_signed(pk_origin_t *o, const char *kind, const char *name, bool *out)
{
    int64_t now = cb_clock_mono_ms();
    char key[72];
    size_t i;
    int rc;

    snprintf(key, sizeof(key), "%s/%s", kind, name);
    pthread_mutex_lock(&o->lock);
    for (i = 0; i < o->npolicies; i++) {
        if (o->policies[i].until_ms > now && strcmp(o->policies[i].key, key) == 0) {
            *out = o->policies[i].signed_playback;
            pthread_mutex_unlock(&o->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&o->lock);
    rc = pk_streams_signed(o->streams, kind, name, out);
    if (rc == 0) {
        pthread_mutex_lock(&o->lock);
        for (i = 0; i < o->npolicies; i++)
            if (o->policies[i].until_ms <= now || strcmp(o->policies[i].key, key) == 0)
                break;
        if (i == o->npolicies)
            i = o->npolicies < POLICY_CACHE ? o->npolicies++ : o->next_policy++ % POLICY_CACHE;
        snprintf(o->policies[i].key, sizeof(o->policies[i].key), "%s", key);
        o->policies[i].signed_playback = *out;
        o->policies[i].until_ms = now + POLICY_TTL_MS;
        pthread_mutex_unlock(&o->lock);
    }
    return rc;
}

/* 0 when the request may have the file; else the answer was given. */
static int check_signed(pk_origin_t *o, cb_http_req_t *req, bool vod, const char *name,
                        const char *token)
{
    char scope[80];
    pk_token_verdict_t v;

    if (!o->cfg.signing_key || !o->cfg.signing_key[0]) {
        cb_http_reply_error(req, 403, "forbidden", NULL,
                            "this stream needs signed URLs and no signing key is configured");
        return -1;
    }
    if (!token[0]) {
        cb_http_reply_error(req, 403, "forbidden", NULL, "this stream needs a signed URL");
        return -1;
    }
    snprintf(scope, sizeof(scope), "%s/%s", vod ? "vod" : "live", name);
    v = pk_token_check(o->cfg.signing_key, scope, token, cb_clock_wall_ms() / 1000,
                       cb_http_req_peer(req));
    if (v == PK_TOKEN_EXPIRED) {
        cb_http_reply_error(req, 410, "expired", NULL, "the signed URL has expired");
        return -1;
    }
    if (v != PK_TOKEN_OK) {
        cb_http_reply_error(req, 403, "forbidden", NULL,
                            v == PK_TOKEN_WRONG_IP ? "the signed URL is bound to another address"
                                                   : "the signed URL is not valid");
        return -1;
    }
    return 0;
}

static void cors(pk_origin_t *o, cb_http_req_t *req)
{
    cb_http_add_header(req, "access-control-allow-origin", o->cfg.cors_origins);
    cb_http_add_header(req, "access-control-expose-headers",
                       "Content-Length, Content-Range, ETag, Last-Modified, Age, Date");
    if (strcmp(o->cfg.cors_origins, "*") != 0)
        cb_http_add_header(req, "vary", "Origin");
}

/*
 * A single "bytes=a-b", "bytes=a-" or "bytes=-n" range within size.
 * 1: a range (from, to inclusive), 0: no usable range header (serve it
 * all), -1: unsatisfiable.
 */
static int parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to)
{
    unsigned long long a, b;
    char tail;

    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    h += 6;
    if (h[0] == '-') {
        if (sscanf(h + 1, "%llu%c", &a, &tail) != 1 || a == 0)
            return a == 0 ? -1 : 0;
        *from = a >= size ? 0 : size - a;
        *to = size ? size - 1 : 0;
        return size ? 1 : -1;
    }
    if (sscanf(h, "%llu-%c", &a, &tail) == 1) {
        b = size ? size - 1 : 0; /* "a-": to the end */
    } else if (sscanf(h, "%llu-%llu%c", &a, &b, &tail) != 2 || b < a) {
        return 0;
    }
    if (a >= size)
        return -1;
    *from = a;
    *to = b >= size ? size - 1 : b;
    return 1;
}

static const char *content_type(pk_origin_what_t what, const char *rest)
{
    if (what == PK_MANIFEST)
        return ends_with(rest, ".mpd") ? "application/dash+xml" : "application/vnd.apple.mpegurl";
    return what == PK_INIT ? "video/mp4" : "video/iso.segment";
}

/*
 * The object's size and time, and an open file of it where the store has
 * local files (*fd -1 otherwise). Opened first and described from the
 * open file, so the ETag is the one of the bytes sent even if the key is
 * replaced meanwhile.
 */
static int open_object(pk_origin_t *o, const char *key, int *fd, cb_storage_stat_t *st)
{
    char path[CB_STORAGE_KEY_MAX + 512];
    struct stat sb;
    int rc = cb_storage_local_path(o->storage, key, path, sizeof(path));

    *fd = -1;
    if (rc == -ENOTSUP)
        return cb_storage_stat(o->storage, key, st);
    if (rc)
        return rc;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -errno;
    if (fstat(*fd, &sb) || !S_ISREG(sb.st_mode)) {
        close(*fd);
        *fd = -1;
        return -ENOENT;
    }
    st->size = (uint64_t) sb.st_size;
    st->mtime_ms = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    return 0;
}

static int hold(pk_origin_t *o, cb_http_req_t *req, const char *key);

/*
 * ?_HLS_skip on a live media playlist: 1 for YES or v2 (no date ranges are
 * written, so v2 skips what YES does), 0 when absent, -1 replied (400).
 */
static int skip_asked(cb_http_req_t *req)
{
    char q[8];
    int rc = cb_http_req_query(req, "_HLS_skip", q, sizeof(q));

    if (rc == -ENOENT)
        return 0;
    if (rc > 0 && (strcmp(q, "YES") == 0 || strcmp(q, "v2") == 0))
        return 1;
    cb_http_reply_error(req, 400, "invalid_field", "_HLS_skip", "_HLS_skip: YES or v2");
    return -1;
}

enum { KEPT_DELTA = 1, KEPT_GZIP = 2 };

/* FNV-1a: the slot a form of a manifest is kept in. */
static struct kept *kept_slot(pk_origin_t *o, const char *key, unsigned form)
{
    uint32_t h = 2166136261u;

    for (; *key; key++)
        h = (h ^ (unsigned char) *key) * 16777619u;
    h = (h ^ form) * 16777619u;
    return &o->kept[h % KEPT_CACHE];
}

/* The kept form of that version of key appended to out: 1, 0 (none), -ENOMEM. */
static int kept_get(pk_origin_t *o, const char *key, const cb_storage_stat_t *st, unsigned form,
                    cb_buf_t *out)
{
    struct kept *k = kept_slot(o, key, form);
    int rc = 0;

    pthread_mutex_lock(&o->klock);
    if (k->bytes && k->form == form && k->size == st->size && k->mtime_ms == st->mtime_ms &&
        strcmp(k->key, key) == 0)
        rc = cb_buf_append(out, k->bytes, k->len) == 0 ? 1 : -ENOMEM;
    pthread_mutex_unlock(&o->klock);
    return rc;
}

static void kept_put(pk_origin_t *o, const char *key, const cb_storage_stat_t *st, unsigned form,
                     const cb_buf_t *b)
{
    struct kept *k = kept_slot(o, key, form);
    char *copy = b->len <= KEPT_MAX ? malloc(b->len ? b->len : 1) : NULL;

    if (!copy)
        return;
    memcpy(copy, b->data, b->len);
    pthread_mutex_lock(&o->klock);
    free(k->bytes);
    snprintf(k->key, sizeof(k->key), "%s", key);
    k->size = st->size;
    k->mtime_ms = st->mtime_ms;
    k->form = form;
    k->bytes = copy;
    k->len = b->len;
    pthread_mutex_unlock(&o->klock);
}

/* The manifest at fd (or key), of that size, into out (empty): 0 or an error. */
static int read_manifest(pk_origin_t *o, const char *key, int fd, const cb_storage_stat_t *st,
                         cb_buf_t *out)
{
    int rc;

    if (st->size > PLAYLIST_MAX)
        return -EFBIG;
    if (fd >= 0) {
        char *text = malloc(st->size ? st->size : 1);
        ssize_t n = text ? pread(fd, text, st->size, 0) : -1;

        rc = !text ? -ENOMEM : n != (ssize_t) st->size ? -EIO : cb_buf_append(out, text, st->size);
        free(text);
        return rc;
    }
    rc = cb_storage_get(o->storage, key, out);
    if (rc == 0 && out->len != st->size)
        rc = -EAGAIN; /* replaced meanwhile: the ETag would lie */
    return rc;
}

/* The delta update of the playlist at fd (or key), of that size and mtime,
 * into out: 0, -ENOENT (the whole playlist is the answer), or an error. */
static int delta_of(pk_origin_t *o, const char *key, int fd, const cb_storage_stat_t *st,
                    cb_buf_t *out)
{
    cb_buf_t b;
    int rc;

    if (st->size > PLAYLIST_MAX)
        return -ENOENT;
    rc = kept_get(o, key, st, KEPT_DELTA, out);
    if (rc)
        return rc > 0 ? 0 : rc;
    cb_buf_init(&b, PLAYLIST_MAX);
    rc = read_manifest(o, key, fd, st, &b);
    if (rc == 0)
        rc = pk_hls_delta(b.data, b.len, out);
    cb_buf_release(&b);
    if (rc == 0)
        kept_put(o, key, st, KEPT_DELTA, out);
    return rc == -EINVAL ? -ENOENT : rc;
}

/* The q of one Accept-Encoding element ("gzip;q=0.5"): 1 when not given. */
static double element_q(const char *p, const char *end)
{
    const char *q = memchr(p, ';', (size_t) (end - p));

    if (!q)
        return 1;
    q += 1 + strspn(q + 1, " \t");
    return strncasecmp(q, "q=", 2) == 0 ? strtod(q + 2, NULL) : 1;
}

bool pk_origin_gzip_accepted(const char *ae)
{
    const char *p = ae;
    bool star = false;

    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t n;

        if (!end)
            end = p + strlen(p);
        p += strspn(p, " \t");
        n = strcspn(p, " \t;,");
        if (n == 4 && strncasecmp(p, "gzip", 4) == 0)
            return element_q(p, end) > 0; /* named: that says it */
        if (n == 1 && *p == '*')
            star = element_q(p, end) > 0;
        p = *end ? end + 1 : end;
    }
    return star;
}

/* gzip (RFC 1952) of in into out (empty): 0, -ENOMEM, -EIO. */
static int gzip_buf(const cb_buf_t *in, cb_buf_t *out)
{
    z_stream z = { 0 };
    size_t bound;
    char *dst;
    int rc;

    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    bound = deflateBound(&z, (uLong) in->len);
    dst = malloc(bound);
    if (!dst) {
        deflateEnd(&z);
        return -ENOMEM;
    }
    z.next_in = (Bytef *) in->data;
    z.avail_in = (uInt) in->len;
    z.next_out = (Bytef *) dst;
    z.avail_out = (uInt) bound;
    rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? cb_buf_append(out, dst, z.total_out) : -EIO;
    deflateEnd(&z);
    free(dst);
    return rc;
}

/* The delta update (or, when delta is NULL, the whole manifest at fd or key)
 * gzipped into out (empty): 0 or an error; kept per version and form. */
static int gzip_of(pk_origin_t *o, const char *key, int fd, const cb_storage_stat_t *st,
                   const cb_buf_t *delta, cb_buf_t *out)
{
    unsigned form = KEPT_GZIP | (delta ? KEPT_DELTA : 0);
    cb_buf_t b;
    int rc = kept_get(o, key, st, form, out);

    if (rc)
        return rc > 0 ? 0 : rc;
    if (delta) {
        rc = gzip_buf(delta, out);
    } else {
        cb_buf_init(&b, PLAYLIST_MAX);
        rc = read_manifest(o, key, fd, st, &b);
        if (rc == 0)
            rc = gzip_buf(&b, out);
        cb_buf_release(&b);
    }
    if (rc == 0)
        kept_put(o, key, st, form, out);
    return rc;
}

/* again: a held request answered now (its CORS headers are there already). */
static int serve(cb_http_req_t *req, void *arg, bool vod, bool again)
{
    pk_origin_t *o = arg;
    const char *path = cb_http_req_param(req, "path");
    char name[65], rest[160], rendition[65], key[CB_STORAGE_KEY_MAX], src[96];
    char token[PK_TOKEN_MAX];
    bool signed_playback = false;
    char etag[64], lastmod[CB_HTTP_DATE_LEN], tags[256], range[96];
    const char *cache;
    const char *inm, *ims;
    cb_storage_stat_t st;
    uint64_t from = 0, to = 0, len;
    int fd = -1;
    pk_origin_what_t what;
    cb_buf_t b, delta, zipped; /* delta: the body made for this request, once there is one */
    bool have_delta = false, gz;
    int rc, r, skip = 0;

    if (!again)
        cors(o, req);
    if (!path || !pk_origin_parse_path(path, name, token, rest, rendition, &what))
        return cb_http_reply_error(req, 404, "not_found", NULL, "no such file: %s",
                                   cb_http_req_path(req));
    if (!vod) {
        rc = stream_signed(o, "live", name, &signed_playback);
        snprintf(key, sizeof(key), "live/%s/%s", name, rest);
    } else {
        rc = asset_source(o, name, src, sizeof(src), &signed_playback);
        if (rc == -ENOENT) {
            /* an upload still being packaged: its files are its own */
            snprintf(src, sizeof(src), "vod/%s", name);
            rc = stream_signed(o, "vod", name, &signed_playback);
        }
        if (what == PK_MANIFEST)
            snprintf(key, sizeof(key), "vod/%s/%s", name, rest);
        else
            snprintf(key, sizeof(key), "%s/%s", src, rest);
    }
    if (rc)
        return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s", strerror(-rc));
    if (signed_playback && check_signed(o, req, vod, name, token))
        return CB_HTTP_DONE;
    if (!vod && what == PK_MANIFEST && ends_with(rest, ".m3u8") &&
        strcmp(rest, "master.m3u8") != 0) {
        if ((skip = skip_asked(req)) < 0)
            return CB_HTTP_DONE;
        rc = again ? 0 : hold(o, req, key);
        if (rc)
            return rc > 0 ? CB_HTTP_DEFERRED : CB_HTTP_DONE;
    }
    rc = open_object(o, key, &fd, &st);
    if (rc == 0 && st.size > MAX_OBJECT)
        rc = -EFBIG;
    if (rc) {
        if (fd >= 0)
            close(fd);
        cb_metric_add(o->m_served, (const char *[]){ vod ? "vod" : "live", "404" }, 1);
        return rc == -ENOENT ? cb_http_reply_error(req, 404, "not_found", NULL, "no such file: %s",
                                                   cb_http_req_path(req))
                             : cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s",
                                                   strerror(-rc));
    }
    snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "\"", st.size, (uint64_t) st.mtime_ms);
    if (skip) {
        cb_buf_init(&delta, PLAYLIST_MAX);
        rc = delta_of(o, key, fd, &st, &delta);
        if (rc == 0) {
            have_delta = true; /* a representation of its own */
            snprintf(etag, sizeof(etag), "\"%" PRIx64 "-%" PRIx64 "-delta\"", st.size,
                     (uint64_t) st.mtime_ms);
        } else {
            cb_buf_release(&delta);
            if (rc != -ENOENT) {
                if (fd >= 0)
                    close(fd);
                return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s",
                                           strerror(-rc));
            }
        }
    }
    /* manifests gzipped for clients that take it: an hour's DVR window is
     * reloaded every few seconds by every player (not ranges: those are of
     * the file as stored) */
    gz = what == PK_MANIFEST && !cb_http_req_header(req, "range") && st.size <= PLAYLIST_MAX &&
         (have_delta ? delta.len : st.size) >= GZIP_MIN &&
         pk_origin_gzip_accepted(cb_http_req_header(req, "accept-encoding"));
    if (gz) /* a representation of its own */
        snprintf(etag + strlen(etag) - 1, sizeof(etag) - strlen(etag) + 1, "-gz\"");
    cb_http_date(st.mtime_ms, lastmod);
    cache = what != PK_MANIFEST ? o->cc_segment : vod ? o->cc_vod : o->cc_live;
    if (rendition[0])
        snprintf(tags, sizeof(tags), "%s/%s %s/%s/%s", vod ? "vod" : "live", name,
                 vod ? "vod" : "live", name, rendition);
    else
        snprintf(tags, sizeof(tags), "%s/%s %s/%s/manifests", vod ? "vod" : "live", name,
                 vod ? "vod" : "live", name);
    cb_http_add_header(req, "cache-control", cache);
    cb_http_add_header(req, "etag", etag);
    cb_http_add_header(req, "last-modified", lastmod);
    cb_http_add_header(req, "accept-ranges", "bytes");
    cb_http_add_header(req, "surrogate-key", tags);
    cb_http_add_header(req, "xkey", tags);
    if (what == PK_MANIFEST)
        cb_http_add_header(req, "vary", "accept-encoding");
    inm = cb_http_req_header(req, "if-none-match");
    ims = cb_http_req_header(req, "if-modified-since");
    if ((inm && (strcmp(inm, etag) == 0 || strcmp(inm, "*") == 0)) ||
        (!inm && ims && strcmp(ims, lastmod) == 0)) {
        if (fd >= 0)
            close(fd);
        if (have_delta)
            cb_buf_release(&delta);
        cb_metric_add(o->m_served, (const char *[]){ vod ? "vod" : "live", "304" }, 1);
        return cb_http_reply(req, 304, NULL, NULL, 0);
    }
    if (gz) {
        cb_buf_init(&zipped, PLAYLIST_MAX);
        rc = gzip_of(o, key, fd, &st, have_delta ? &delta : NULL, &zipped);
        if (have_delta)
            cb_buf_release(&delta);
        if (rc) {
            if (fd >= 0)
                close(fd);
            cb_buf_release(&zipped);
            return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s", strerror(-rc));
        }
        cb_metric_add(o->m_gzip, NULL, 1);
        cb_http_add_header(req, "content-encoding", "gzip");
        delta = zipped; /* what is sent now, whole like a delta update */
    }
    if (gz || have_delta) { /* whole: a range of a delta update or of gzip means nothing */
        if (fd >= 0)
            close(fd);
        cb_metric_add(o->m_served, (const char *[]){ vod ? "vod" : "live", "200" }, 1);
        cb_metric_add(o->m_bytes, (const char *[]){ vod ? "vod" : "live" }, (double) delta.len);
        if (have_delta)
            cb_metric_add(o->m_delta, NULL, 1);
        rc = cb_http_reply_buf(req, 200, content_type(what, rest), &delta);
        cb_buf_release(&delta);
        return rc;
    }
    r = parse_range(cb_http_req_header(req, "range"), st.size, &from, &to);
    if (r != 0 && cb_http_req_header(req, "if-range") &&
        strcmp(cb_http_req_header(req, "if-range"), etag) != 0)
        r = 0; /* changed since: the whole new file */
    if (r > 0) {
        snprintf(range, sizeof(range), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, from, to, st.size);
        cb_http_add_header(req, "content-range", range);
    } else {
        from = 0;
        to = st.size ? st.size - 1 : 0;
    }
    cb_metric_add(o->m_served,
                  (const char *[]){ vod ? "vod" : "live", r < 0   ? "416"
                                                          : r > 0 ? "206"
                                                                  : "200" },
                  1);
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        snprintf(range, sizeof(range), "bytes */%" PRIu64, st.size);
        cb_http_add_header(req, "content-range", range);
        return cb_http_reply_error(req, 416, "range_not_satisfiable", "range",
                                   "range: outside the %" PRIu64 " bytes of the file", st.size);
    }
    len = st.size ? to - from + 1 : 0;
    cb_metric_add(o->m_bytes, (const char *[]){ vod ? "vod" : "live" }, (double) len);
    if (fd >= 0 && len > SMALL_OBJECT) /* straight from the file to the socket */
        return cb_http_reply_file(req, r > 0 ? 206 : 200, content_type(what, rest), fd, from, len);
    if (fd >= 0) {
        /* small (manifests): read, and sent in one piece with the headers */
        char small[SMALL_OBJECT];
        ssize_t n = len ? pread(fd, small, len, (off_t) from) : 0;

        close(fd);
        if (n != (ssize_t) len)
            return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: short read");
        return cb_http_reply(req, r > 0 ? 206 : 200, content_type(what, rest), small, len);
    }
    /* a store without local files: through memory */
    cb_buf_init(&b, MAX_OBJECT);
    rc = cb_storage_get(o->storage, key, &b);
    if (rc == 0 && b.len != st.size)
        rc = -EAGAIN; /* replaced meanwhile: the ETag would lie */
    if (rc) {
        cb_buf_release(&b);
        return cb_http_reply_error(req, 503, "unavailable", NULL, "storage: %s", strerror(-rc));
    }
    rc = r > 0 ? cb_http_reply(req, 206, content_type(what, rest), b.data + from, len)
               : cb_http_reply_buf(req, 200, content_type(what, rest), &b);
    cb_buf_release(&b);
    return rc;
}

static int serve_live(cb_http_req_t *req, void *arg)
{
    return serve(req, arg, false, false);
}

static int serve_vod(cb_http_req_t *req, void *arg)
{
    return serve(req, arg, true, false);
}

/* ---- blocking playlist reload ---- */

/* Decimal digits at the start of [s, s + n), within 0..2^53; -1: none. */
static long long number(const char *s, size_t n)
{
    long long v = 0;
    size_t i;

    for (i = 0; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (s[i] - '0');
        if (v > (1LL << 53))
            return -1;
    }
    return i ? v : -1;
}

bool pk_origin_playlist_state(const char *text, size_t len, pk_playlist_state_t *ps)
{
    long long mseq = 0, target = 0, skipped = 0;
    int64_t count = 0;
    const char *p, *end;

    *ps = (pk_playlist_state_t){ .last = -1, .target = 2 };
    if (len < 7 || memcmp(text, "#EXTM3U", 7) != 0)
        return false;
    for (p = text, end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);

        /* numbers bounded like a state's: no sum below can overflow */
        if (n > 22 && memcmp(p, "#EXT-X-MEDIA-SEQUENCE:", 22) == 0)
            mseq = number(p + 22, n - 22);
        else if (n > 22 && memcmp(p, "#EXT-X-TARGETDURATION:", 22) == 0)
            target = number(p + 22, n - 22);
        else if (n >= 8 && memcmp(p, "#EXTINF:", 8) == 0)
            count++;
        else if (n > 29 && memcmp(p, "#EXT-X-SKIP:SKIPPED-SEGMENTS=", 29) == 0 && !skipped)
            count += skipped = CB_MAX(number(p + 29, n - 29), 0); /* a delta update's (once) */
        else if (n >= 14 && memcmp(p, "#EXT-X-ENDLIST", 14) == 0)
            ps->ended = true;
        p += n + 1;
    }
    ps->last = mseq + count - 1;
    if (target > 0 && target < 3600)
        ps->target = target;
    return true;
}

static pk_playlist_state_t read_playlist(pk_origin_t *o, const char *key)
{
    pk_playlist_state_t ps = { .last = -1, .target = 2 };
    cb_buf_t b;

    cb_buf_init(&b, MAX_OBJECT);
    if (cb_storage_get(o->storage, key, &b) == 0)
        ps.ok = pk_origin_playlist_state(b.data, b.len, &ps);
    cb_buf_release(&b);
    return ps;
}

/*
 * A live media playlist asked for with ?_HLS_msn=N (and maybe _HLS_part=M):
 * answered now when segment N is listed or the stream ended (0), refused
 * when N is more than two past the last one listed (-1, replied), or held
 * until it is (1). A segment is listed whole, with every part it has, so
 * segment N listed answers any part of it: M is checked, not waited for.
 */
static int hold(pk_origin_t *o, cb_http_req_t *req, const char *key)
{
    char q[32], *end;
    long long want;
    pk_playlist_state_t ps;
    int rc = cb_http_req_query(req, "_HLS_msn", q, sizeof(q));

    if (rc == -ENOENT)
        return 0;
    errno = 0;
    want = rc > 0 ? strtoll(q, &end, 10) : -1;
    if (rc <= 0 || *end || errno || want < 0 || want >= (INT64_C(1) << 53)) {
        cb_http_reply_error(req, 400, "invalid_field", "_HLS_msn",
                            "_HLS_msn: not a media sequence number");
        return -1;
    }
    rc = cb_http_req_query(req, "_HLS_part", q, sizeof(q));
    if (rc != -ENOENT && (rc <= 0 || strtoll(q, &end, 10) < 0 || *end)) {
        cb_http_reply_error(req, 400, "invalid_field", "_HLS_part", "_HLS_part: not a part number");
        return -1;
    }
    ps = read_playlist(o, key);
    if (!ps.ok || ps.ended || ps.last >= want)
        return 0; /* served as it is (404 when there is none) */
    if (want > ps.last + 2) {
        cb_http_reply_error(req, 400, "invalid_field", "_HLS_msn",
                            "_HLS_msn: %lld is more than two segments past the last listed (%lld)",
                            want, (long long) ps.last);
        return -1;
    }
    pthread_mutex_lock(&o->wlock);
    if (o->nwaiters == MAX_WAITERS || atomic_load(&o->stopping) || !o->blocking) {
        pthread_mutex_unlock(&o->wlock);
        return 0;
    }
    o->waiters[o->nwaiters++] = (waiter_t){
        .req = req,
        .msn = want,
        .deadline_ms = cb_clock_mono_ms() + 3 * ps.target * 1000,
    };
    snprintf(o->waiters[o->nwaiters - 1].key, sizeof(o->waiters[0].key), "%s", key);
    pthread_mutex_unlock(&o->wlock);
    cb_metric_add(o->m_held, NULL, 1);
    return 1;
}

void pk_origin_wake(void *arg)
{
    pk_origin_t *o = arg;

    pthread_mutex_lock(&o->wlock);
    if (o->nwaiters) {
        o->woken = true;
        pthread_cond_signal(&o->wcond);
    }
    pthread_mutex_unlock(&o->wlock);
}

/* Answer the held requests whose segment is listed now, or whose time is up. */
static void *blocker_main(void *arg)
{
    pk_origin_t *o = arg;
    waiter_t *batch = calloc(MAX_WAITERS, sizeof(*batch));
    struct {
        char key[CB_STORAGE_KEY_MAX];
        pk_playlist_state_t ps;
    } *seen = calloc(MAX_WAITERS, sizeof(*seen));
    bool stop = false;

    pthread_setname_np(pthread_self(), "origin-hold");
    while (!stop) {
        size_t n, i, k, nseen = 0;
        int64_t now;

        pthread_mutex_lock(&o->wlock);
        if (!o->woken && !atomic_load(&o->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += WAKE_POLL_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&o->wcond, &o->wlock, &ts);
        }
        o->woken = false;
        stop = atomic_load(&o->stopping);
        n = batch && seen ? o->nwaiters : 0;
        if (n) {
            memcpy(batch, o->waiters, n * sizeof(*batch));
            o->nwaiters = 0;
        }
        pthread_mutex_unlock(&o->wlock);
        now = cb_clock_mono_ms();
        for (i = 0; i < n; i++) {
            waiter_t *w = &batch[i];
            pk_playlist_state_t *ps = NULL;

            for (k = 0; k < nseen && !ps; k++)
                if (strcmp(seen[k].key, w->key) == 0)
                    ps = &seen[k].ps;
            if (!ps) {
                snprintf(seen[nseen].key, sizeof(seen[0].key), "%s", w->key);
                seen[nseen].ps = read_playlist(o, w->key);
                ps = &seen[nseen++].ps;
            }
            if (stop || !ps->ok || ps->ended || ps->last >= w->msn) {
                serve(w->req, o, false, true); /* what there is now */
            } else if (now >= w->deadline_ms) {
                cb_http_reply_error(w->req, 503, "unavailable", "_HLS_msn",
                                    "_HLS_msn: segment %lld was not listed in time",
                                    (long long) w->msn);
            } else {
                bool full;

                pthread_mutex_lock(&o->wlock);
                full = o->nwaiters == MAX_WAITERS; /* new ones came meanwhile */
                if (!full)
                    o->waiters[o->nwaiters++] = *w;
                pthread_mutex_unlock(&o->wlock);
                if (full)
                    serve(w->req, o, false, true);
            }
        }
    }
    free(batch);
    free(seen);
    return NULL;
}

/* CORS preflight: players send Range, so browsers ask first. */
static int preflight(cb_http_req_t *req, void *arg)
{
    pk_origin_t *o = arg;

    cors(o, req);
    cb_http_add_header(req, "access-control-allow-methods", "GET, HEAD, OPTIONS");
    cb_http_add_header(req, "access-control-allow-headers",
                       "Range, If-None-Match, "
                       "If-Modified-Since");
    cb_http_add_header(req, "access-control-max-age", "86400");
    return cb_http_reply(req, 204, NULL, NULL, 0);
}

/* DASH UTCTiming (urn:mpeg:dash:utc:http-iso:2014). */
static int get_time(cb_http_req_t *req, void *arg)
{
    pk_origin_t *o = arg;
    char now[32];

    cors(o, req);
    pk_iso8601(cb_clock_wall_ms(), now);
    cb_http_add_header(req, "cache-control", "no-store");
    return cb_http_reply(req, 200, "text/plain", now, strlen(now));
}

/* POST /v1/streams/{id}/playback-token, /v1/assets/{id}/playback-token */
static int mint(cb_http_req_t *req, pk_origin_t *o, bool vod)
{
    const char *id = cb_http_req_param(req, "id"), *ip = NULL, *body;
    char token[PK_TOKEN_MAX], scope[80], hls[256], dash[256];
    json_int_t ttl = 3600;
    json_t *doc = NULL, *v;
    int64_t expires;
    size_t len;

    if (!pk_name_ok(id))
        return cb_http_reply_error(req, 400, "invalid_field", "id", "id: not a stream name");
    if (!o->cfg.signing_key || !o->cfg.signing_key[0])
        return cb_http_reply_error(req, 409, "not_configured", NULL,
                                   "no signing key is configured (CASTBUS_SIGNING_KEY)");
    body = cb_http_req_body(req, &len);
    if (len) {
        doc = json_loadb(body, len, 0, NULL);
        if (!json_is_object(doc)) {
            json_decref(doc);
            return cb_http_reply_error(req, 400, "invalid_json", NULL,
                                       "the body is not a JSON object");
        }
    }
    v = json_object_get(doc, "ttl_s");
    if (v &&
        (!json_is_integer(v) || json_integer_value(v) < 10 || json_integer_value(v) > 7 * 86400)) {
        json_decref(doc);
        return cb_http_reply_error(req, 400, "invalid_field", "ttl_s",
                                   "ttl_s: an integer of seconds, 10 to 604800");
    }
    if (v)
        ttl = json_integer_value(v);
    v = json_object_get(doc, "ip");
    if (v && !json_is_string(v)) {
        json_decref(doc);
        return cb_http_reply_error(req, 400, "invalid_field", "ip", "ip: an IPv4 address");
    }
    ip = v ? json_string_value(v) : NULL;
    expires = cb_clock_wall_ms() / 1000 + ttl;
    snprintf(scope, sizeof(scope), "%s/%s", vod ? "vod" : "live", id);
    if (pk_token_mint(o->cfg.signing_key, scope, expires, ip, token)) {
        json_decref(doc);
        return cb_http_reply_error(req, 400, "invalid_field", "ip", "ip: an IPv4 address");
    }
    json_decref(doc);
    snprintf(hls, sizeof(hls), "/%s/%s/%s/master.m3u8", vod ? "vod" : "live", id, token);
    snprintf(dash, sizeof(dash), "/%s/%s/%s/manifest.mpd", vod ? "vod" : "live", id, token);
    return cb_http_reply_json(req, 200,
                              json_pack("{s:s, s:I, s:s, s:s}", "token", token, "expires_at_ms",
                                        (json_int_t) expires * 1000, "hls", hls, "dash", dash));
}

static int mint_stream(cb_http_req_t *req, void *arg)
{
    return mint(req, arg, false);
}

static int mint_asset(cb_http_req_t *req, void *arg)
{
    return mint(req, arg, true);
}

static const cb_http_route_t *origin_routes(pk_origin_t *o, size_t *n)
{
    static cb_http_route_t routes[5];

    routes[0] =
        (cb_http_route_t){ "GET", "/live/{path...}", CB_ROLE_NONE, CB_HTTP_QUIET, serve_live, o };
    routes[1] =
        (cb_http_route_t){ "GET", "/vod/{path...}", CB_ROLE_NONE, CB_HTTP_QUIET, serve_vod, o };
    routes[2] = (cb_http_route_t){ "OPTIONS",     "/live/{path...}", CB_ROLE_NONE,
                                   CB_HTTP_QUIET, preflight,         o };
    routes[3] =
        (cb_http_route_t){ "OPTIONS", "/vod/{path...}", CB_ROLE_NONE, CB_HTTP_QUIET, preflight, o };
    routes[4] = (cb_http_route_t){ "GET", "/time", CB_ROLE_NONE, CB_HTTP_QUIET, get_time, o };
    *n = CB_ARRAY_LEN(routes);
    return routes;
}

static void origin_free(void *obj)
{
    pk_origin_t *o = obj;
    size_t i;

    if (!o)
        return;
    atomic_store(&o->stopping, true);
    if (o->blocking) {
        /* held requests are answered with what there is, before the servers stop */
        pthread_mutex_lock(&o->wlock);
        pthread_cond_signal(&o->wcond);
        pthread_mutex_unlock(&o->wlock);
        pthread_join(o->blocker, NULL);
    }
    if (o->accepting) {
        shutdown(o->listen_fd, SHUT_RDWR); /* accept() returns */
        pthread_join(o->acceptor, NULL);
    }
    if (o->listen_fd >= 0)
        close(o->listen_fd);
    for (i = 0; i < o->nrunning; i++)
        cb_http_stop(o->servers[i]);
    for (i = 0; i < o->nrunning; i++)
        pthread_join(o->threads[i], NULL);
    for (i = 0; i < o->nservers; i++)
        cb_http_free(o->servers[i]);
    for (i = 0; i < KEPT_CACHE; i++)
        free(o->kept[i].bytes);
    pthread_mutex_destroy(&o->klock);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->wlock);
    pthread_cond_destroy(&o->wcond);
    free(o->waiters);
    free(o);
}

const cb_component_ops_t pk_origin_component = {
    .name = "origin",
    .free = origin_free,
};

int pk_origin_new(const pk_origin_config_t *cfg, cb_storage_t *storage, pk_streams_t *streams,
                  cb_daemon_t *d, pk_origin_t **out, char *err, size_t errlen)
{
    pk_origin_t *o = calloc(1, sizeof(*o));
    cb_metrics_t *metrics = cb_daemon_metrics(d);
    const cb_http_route_t *routes;
    size_t nroutes, i;
    int rc = 0;

    if (!o)
        return -ENOMEM;
    o->cfg = *cfg;
    snprintf(o->cc_segment, sizeof(o->cc_segment), "public, max-age=%lld, immutable",
             (long long) cfg->segment_max_age_ms / 1000);
    snprintf(o->cc_live, sizeof(o->cc_live), "public, max-age=%lld",
             (long long) cfg->live_max_age_ms / 1000);
    snprintf(o->cc_vod, sizeof(o->cc_vod), "public, max-age=%lld",
             (long long) cfg->vod_max_age_ms / 1000);
    o->storage = storage;
    o->streams = streams;
    o->sniff = !cfg->tls_cert[0]; /* plain: HTTP/2 by prior knowledge as well as h2c */
    o->listen_fd = -1;
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->klock, NULL);
    pthread_mutex_init(&o->wlock, NULL);
    pthread_cond_init(&o->wcond, NULL);
    o->waiters = calloc(MAX_WAITERS, sizeof(*o->waiters));
    if (!o->waiters) {
        origin_free(o);
        return -ENOMEM;
    }
    o->m_held = cb_metrics_counter(metrics, "castbus_origin_held_total",
                                   "Playlist requests held for a segment not listed yet "
                                   "(blocking reload, ?_HLS_msn).",
                                   NULL);
    o->m_delta = cb_metrics_counter(metrics, "castbus_origin_delta_updates_total",
                                    "Playlist Delta Updates served (?_HLS_skip): media "
                                    "playlists without the segments players have already.",
                                    NULL);
    o->m_gzip = cb_metrics_counter(metrics, "castbus_origin_gzipped_total",
                                   "Manifests (whole or delta updates) sent gzipped to "
                                   "clients that take it.",
                                   NULL);
    o->m_served = cb_metrics_counter(metrics, "castbus_origin_responses_total",
                                     "Origin responses by tree (live, vod) and status.",
                                     (const char *[]){ "tree", "status", NULL });
    o->m_bytes = cb_metrics_counter(metrics, "castbus_origin_bytes_total",
                                    "Body bytes the origin sent, by tree.",
                                    (const char *[]){ "tree", NULL });
    routes = origin_routes(o, &nroutes);
    {
        const cb_http_route_t admin[] = {
            { "POST", "/v1/streams/{id}/playback-token", CB_ROLE_EDITOR, 0, mint_stream, o },
            { "POST", "/v1/assets/{id}/playback-token", CB_ROLE_EDITOR, 0, mint_asset, o },
        };
        rc = cb_daemon_add_routes(d, admin, CB_ARRAY_LEN(admin));
    }
    if (rc == 0 && (cfg->tls_cert[0] || cfg->tls_key[0])) {
        const char *missing = !cfg->tls_cert[0]                 ? "origin_tls_cert: not set"
                              : !cfg->tls_key[0]                ? "origin_tls_key: not set"
                              : access(cfg->tls_cert, R_OK) < 0 ? "origin_tls_cert: unreadable"
                              : access(cfg->tls_key, R_OK) < 0  ? "origin_tls_key: unreadable"
                              : cfg->port == 0 ? "origin_tls_cert: needs the origin's own port"
                                               : NULL;
        if (missing) {
            snprintf(err, errlen, "origin: %s (TLS needs a readable certificate and key)", missing);
            rc = -EINVAL;
        }
    }
    if (rc == 0 && cfg->port == 0) {
        rc = cb_daemon_add_routes(d, routes, nroutes);
    } else if (rc == 0) {
        cb_http_config_t hc = {
            .host = cfg->host,
            .port = cfg->port,
            .max_body_bytes = 0,
            .workers = 1,
            .no_listen = true, /* the acceptor thread hands connections over */
            .tls_cert = cfg->tls_cert,
            .tls_key = cfg->tls_key,
        };
        for (i = 0; rc == 0 && i < (size_t) CB_MIN(cfg->threads, MAX_THREADS); i++) {
            rc = cb_http_new("packager-origin", &hc, metrics, &o->servers[i], err, errlen);
            if (rc == 0) {
                o->nservers++;
                rc = cb_http_add_routes(o->servers[i], routes, nroutes);
            }
        }
    }
    if (rc) {
        if (!err[0])
            snprintf(err, errlen, "origin: %s", strerror(-rc));
        origin_free(o);
        return rc;
    }
    *out = o;
    return 0;
}

static void *serve_main(void *arg)
{
    pthread_setname_np(pthread_self(), "origin");
    cb_http_run(arg);
    return NULL;
}

typedef struct sniffed {
    int fd;
    int64_t since_ms;
    bool partial; /* a prefix of the preface so far: re-read on a tick, not on POLLIN */
} sniffed_t;

/* Hands fd over to the next server's loop, as HTTP/2 or HTTP/1 (which closes
 * it on failure). */
static void hand_over(pk_origin_t *o, size_t *next, int fd, bool h2)
{
    if (h2)
        cb_http_adopt_h2(o->servers[*next], fd);
    else
        cb_http_adopt(o->servers[*next], fd);
    *next = (*next + 1) % o->nservers;
}

/* Whether the connection was decided (handed over or closed). */
static bool sniff_one(pk_origin_t *o, size_t *next, sniffed_t *c, int64_t now)
{
    unsigned char buf[4];
    ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    int what;

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close(c->fd); /* gone before its first byte */
        return true;
    }
    if (n < 0) {
        c->partial = false;
        what = CB_HTTP_SNIFF_MORE;
    } else {
        what = cb_http_sniff(buf, (size_t) n);
        c->partial = what == CB_HTTP_SNIFF_MORE;
    }
    if (what == CB_HTTP_SNIFF_MORE) {
        if (now - c->since_ms < SNIFF_WAIT_MS)
            return false;
        close(c->fd); /* silent: what an HTTP/1 server would do after its timeout */
        return true;
    }
    hand_over(o, next, c->fd, what == CB_HTTP_SNIFF_H2);
    return true;
}

/* Accept on the origin port; each connection goes to the next server's loop. */
static void *accept_main(void *arg)
{
    pk_origin_t *o = arg;
    sniffed_t *pend = o->sniff ? calloc(SNIFF_MAX, sizeof(*pend)) : NULL;
    struct pollfd *pfd = calloc(1 + SNIFF_MAX, sizeof(*pfd));
    size_t next = 0, npend = 0, i;
    int one = 1;

    pthread_setname_np(pthread_self(), "origin-accept");
    if ((o->sniff && !pend) || !pfd) {
        cb_log_error("origin: out of memory; no new connections");
        free(pend);
        free(pfd);
        return NULL;
    }
    while (!atomic_load(&o->stopping)) {
        size_t npoll = 1;
        bool partial = false;
        int64_t now;

        pfd[0] = (struct pollfd){ .fd = o->listen_fd, .events = POLLIN };
        for (i = 0; i < npend; i++) {
            /* a connection with a partial preface stays readable: not polled */
            pfd[npoll++] =
                (struct pollfd){ .fd = pend[i].partial ? -1 : pend[i].fd, .events = POLLIN };
            partial |= pend[i].partial;
        }
        if (poll(pfd, npoll, partial ? SNIFF_TICK_MS : 1000) < 0 && errno != EINTR) {
            cb_log_error("origin: poll: %s; no new connections", strerror(errno));
            break;
        }
        if (atomic_load(&o->stopping))
            break;
        now = cb_clock_mono_ms();
        /* the connections waiting for their first bytes */
        for (i = 0; i < npend;) {
            if ((pfd[1 + i].revents || pend[i].partial ||
                 now - pend[i].since_ms >= SNIFF_WAIT_MS) &&
                sniff_one(o, &next, &pend[i], now)) {
                memmove(&pend[i], &pend[i + 1], (npend - i - 1) * sizeof(*pend));
                memmove(&pfd[1 + i], &pfd[2 + i], (npend - i - 1) * sizeof(*pfd));
                npend--;
            } else {
                i++;
            }
        }
        if (!(pfd[0].revents & POLLIN))
            continue;
        for (;;) {
            int fd = accept4(o->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                    errno == ECONNABORTED)
                    break;
                if (atomic_load(&o->stopping))
                    goto out;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    cb_log_warn("origin: accept: %s; pausing", strerror(errno));
                    usleep(100 * 1000);
                    break;
                }
                cb_log_error("origin: accept: %s; no new connections", strerror(errno));
                goto out;
            }
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            if (!o->sniff) {
                hand_over(o, &next, fd, false); /* TLS: HTTP/2 comes by ALPN */
                continue;
            }
            if (npend == SNIFF_MAX) {
                /* full: the oldest waits on as HTTP/1 (lws times it out) */
                hand_over(o, &next, pend[0].fd, false);
                memmove(&pend[0], &pend[1], (npend - 1) * sizeof(*pend));
                npend--;
            }
            pend[npend++] = (sniffed_t){ .fd = fd, .since_ms = cb_clock_mono_ms() };
        }
    }
out:
    for (i = 0; i < npend; i++)
        close(pend[i].fd);
    free(pend);
    free(pfd);
    return NULL;
}

static int listen_on(pk_origin_t *o, char *err, size_t errlen)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) o->cfg.port) };
    int one = 1, fd;

    if (inet_pton(AF_INET, o->cfg.host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "origin_host: '%s' is not an IPv4 address", o->cfg.host);
        return -EINVAL;
    }
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(fd, (struct sockaddr *) &sa, sizeof(sa)) || listen(fd, 1024)) {
        int e = errno;
        snprintf(err, errlen, "origin: cannot listen on %s:%lld: %s", o->cfg.host,
                 (long long) o->cfg.port, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    o->listen_fd = fd;
    return 0;
}

int pk_origin_start(pk_origin_t *o, char *err, size_t errlen)
{
    size_t i;
    int rc;

    if (pthread_create(&o->blocker, NULL, blocker_main, o) != 0) {
        snprintf(err, errlen, "origin: cannot start its threads");
        return -EAGAIN;
    }
    o->blocking = true;
    if (o->nservers == 0)
        return 0; /* served by the admin port */
    rc = listen_on(o, err, errlen);
    for (i = 0; rc == 0 && i < o->nservers; i++)
        rc = cb_http_start(o->servers[i], err, errlen);
    for (i = 0; rc == 0 && i < o->nservers; i++) {
        if (pthread_create(&o->threads[i], NULL, serve_main, o->servers[i]) != 0)
            rc = -EAGAIN;
        else
            o->nrunning++;
    }
    if (rc == 0 && pthread_create(&o->acceptor, NULL, accept_main, o) != 0)
        rc = -EAGAIN;
    if (rc == -EAGAIN)
        snprintf(err, errlen, "origin: cannot start its threads");
    if (rc)
        return rc;
    o->accepting = true;
    cb_log_info("origin: serving /live, /vod and /time on %s:%lld (%zu threads)", o->cfg.host,
                (long long) o->cfg.port, o->nservers);
    return 0;
}

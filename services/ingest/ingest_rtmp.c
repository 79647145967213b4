/*
 * ingest_rtmp.c - RTMP publishing protocol state machine; see ingest_rtmp.h.
 *
 * DESIGN
 * Input is parsed straight from the caller's read buffer when nothing is
 * left over from the previous read; only an incomplete tail is copied into
 * the session's bounded input buffer. A chunk is consumed only when all its
 * bytes are there, and the per-chunk-stream state is updated only then, so
 * parsing can stop at any byte and resume.
 *
 * Handshake: C1 is checked for a client digest (the scheme ffmpeg, OBS and
 * Flash-era encoders use); with one, S1/S2 carry the matching server
 * digests, without one the simple handshake answers (S2 echoes C1).
 */
#include "ingest_rtmp.h"

#include <errno.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "defs.h"

#define HANDSHAKE_SIZE     1536
#define MAX_CHUNK_STREAMS  64
#define DEFAULT_CHUNK_SIZE 128
#define WINDOW_ACK_SIZE    2500000
#define OUT_BUFFER_MAX     (1u << 20)
#define MAX_AMF_VALUES     16
#define CSID_CONTROL       2
#define CSID_COMMAND       3
#define CSID_STREAM        5
#define PUBLISH_STREAM_ID  1

/* message types */
#define MSG_SET_CHUNK_SIZE  1
#define MSG_ABORT           2
#define MSG_ACK             3
#define MSG_USER_CONTROL    4
#define MSG_WINDOW_ACK_SIZE 5
#define MSG_SET_PEER_BW     6
#define MSG_DATA_AMF3       15
#define MSG_COMMAND_AMF3    17
#define MSG_DATA_AMF0       18
#define MSG_COMMAND_AMF0    20

static const uint8_t genuine_fms_key[68] = {
    'G',  'e',  'n',  'u',  'i',  'n',  'e',  ' ',  'A',  'd',  'o',  'b',  'e',  ' ',
    'F',  'l',  'a',  's',  'h',  ' ',  'M',  'e',  'd',  'i',  'a',  ' ',  'S',  'e',
    'r',  'v',  'e',  'r',  ' ',  '0',  '0',  '1',  0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68,
    0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D,
    0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
};
static const uint8_t genuine_fp_key[62] = {
    'G',  'e',  'n',  'u',  'i',  'n',  'e',  ' ',  'A',  'd',  'o',  'b',  'e',  ' ',  'F',  'l',
    'a',  's',  'h',  ' ',  'P',  'l',  'a',  'y',  'e',  'r',  ' ',  '0',  '0',  '1',  0xF0, 0xEE,
    0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC,
    0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
};

typedef struct chunk_stream {
    uint32_t csid;
    bool started;       /* a full header has been seen */
    bool ext;           /* the last header used an extended timestamp */
    uint32_t timestamp; /* of the message being assembled / last completed */
    uint32_t ts_field;  /* what the last type 0/1/2 header carried (absolute or delta) */
    uint32_t length;
    uint8_t type;
    uint32_t stream_id;
    uint8_t *msg; /* message being assembled */
    size_t have;
} chunk_stream_t;

struct ingest_rtmp {
    ingest_rtmp_callbacks_t cb;
    void *arg;
    ingest_rtmp_limits_t limits;
    ingest_rtmp_state_t state;
    cb_buf_t in;  /* an incomplete tail of input */
    cb_buf_t out; /* bytes to send */
    size_t out_sent;
    uint32_t in_chunk_size;
    chunk_stream_t cs[MAX_CHUNK_STREAMS];
    size_t ncs;
    uint64_t bytes_in;
    uint64_t acked;
    uint32_t peer_window;
    char error[160];
    char app[256];
    char tc_url[512];
};

static int fail(ingest_rtmp_t *s, int rc, const char *fmt, ...) CB_PRINTF(3, 4);

static int fail(ingest_rtmp_t *s, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->error, sizeof(s->error), fmt, ap);
    va_end(ap);
    return rc;
}

int ingest_rtmp_new(const ingest_rtmp_callbacks_t *cb, void *arg,
                    const ingest_rtmp_limits_t *limits, ingest_rtmp_t **out)
{
    ingest_rtmp_t *s = calloc(1, sizeof(*s));

    if (!s)
        return -ENOMEM;
    s->cb = *cb;
    s->arg = arg;
    s->limits = *limits;
    if (s->limits.out_chunk_size < 128)
        s->limits.out_chunk_size = 4096;
    s->state = RTMP_STATE_HANDSHAKE;
    s->in_chunk_size = DEFAULT_CHUNK_SIZE;
    /* an incomplete chunk is at most one chunk (<= a message) plus its header;
     * the handshake needs room for C0 + C1 + C2 */
    cb_buf_init(&s->in, CB_MAX(limits->max_message_bytes + 32, 4 * HANDSHAKE_SIZE));
    cb_buf_init(&s->out, OUT_BUFFER_MAX);
    *out = s;
    return 0;
}

void ingest_rtmp_free(ingest_rtmp_t *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->ncs; i++)
        free(s->cs[i].msg);
    cb_buf_release(&s->in);
    cb_buf_release(&s->out);
    free(s);
}

ingest_rtmp_state_t ingest_rtmp_state(const ingest_rtmp_t *s)
{
    return s->state;
}

const char *ingest_rtmp_error(const ingest_rtmp_t *s)
{
    return s->error;
}

const uint8_t *ingest_rtmp_output(ingest_rtmp_t *s, size_t *len)
{
    *len = s->out.len - s->out_sent;
    return s->out.data ? (const uint8_t *) s->out.data + s->out_sent : NULL;
}

void ingest_rtmp_output_consume(ingest_rtmp_t *s, size_t n)
{
    s->out_sent += n;
    if (s->out_sent >= s->out.len) {
        cb_buf_reset(&s->out);
        s->out_sent = 0;
    }
}

/* ---- output ---- */

static void put_be(uint8_t *p, uint32_t v, int n)
{
    int i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t) (v >> (8 * (n - 1 - i)));
}

static uint32_t get_be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    int i;

    for (i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Chunk one message into the output (csid < 64). */
static int send_message(ingest_rtmp_t *s, uint32_t csid, uint8_t type, uint32_t stream_id,
                        uint32_t timestamp, const uint8_t *payload, size_t len)
{
    uint8_t hdr[16];
    size_t off = 0, n;
    int rc;

    CB_ASSERT(csid >= 2 && csid < 64 && len < 0xFFFFFF);
    hdr[0] = (uint8_t) csid; /* fmt 0 */
    put_be(hdr + 1, timestamp >= 0xFFFFFF ? 0xFFFFFF : timestamp, 3);
    put_be(hdr + 4, (uint32_t) len, 3);
    hdr[7] = type;
    hdr[8] = (uint8_t) stream_id; /* little endian */
    hdr[9] = (uint8_t) (stream_id >> 8);
    hdr[10] = (uint8_t) (stream_id >> 16);
    hdr[11] = (uint8_t) (stream_id >> 24);
    n = 12;
    if (timestamp >= 0xFFFFFF) {
        put_be(hdr + 12, timestamp, 4);
        n = 16;
    }
    rc = cb_buf_append(&s->out, hdr, n);
    do {
        size_t piece = CB_MIN(len - off, s->limits.out_chunk_size);
        if (rc == 0 && off > 0) {
            uint8_t c3 = (uint8_t) (0xC0 | csid);
            rc = cb_buf_append(&s->out, &c3, 1);
            if (rc == 0 && timestamp >= 0xFFFFFF)
                rc = cb_buf_append(&s->out, hdr + 12, 4);
        }
        if (rc == 0 && piece)
            rc = cb_buf_append(&s->out, payload + off, piece);
        off += piece;
    } while (rc == 0 && off < len);
    return rc;
}

static int send_control(ingest_rtmp_t *s, uint8_t type, uint32_t value, int extra_byte)
{
    uint8_t p[5];

    put_be(p, value, 4);
    p[4] = (uint8_t) extra_byte;
    return send_message(s, CSID_CONTROL, type, 0, 0, p, extra_byte >= 0 ? 5 : 4);
}

static int send_user_control(ingest_rtmp_t *s, uint16_t event, uint32_t value)
{
    uint8_t p[6];

    put_be(p, event, 2);
    put_be(p + 2, value, 4);
    return send_message(s, CSID_CONTROL, MSG_USER_CONTROL, 0, 0, p, 6);
}

/* onStatus / _result / _error carrying an info object. */
static int send_status_cmd(ingest_rtmp_t *s, uint32_t csid, uint32_t stream_id, const char *name,
                           double txn, const char *level, const char *code, const char *desc)
{
    cb_buf_t b;
    int rc;

    cb_buf_init(&b, 4096);
    rc = ingest_amf0_put_string(&b, name);
    rc = rc ? rc : ingest_amf0_put_number(&b, txn);
    rc = rc ? rc : ingest_amf0_put_null(&b);
    rc = rc ? rc : ingest_amf0_put_object_start(&b);
    rc = rc ? rc : ingest_amf0_put_key(&b, "level");
    rc = rc ? rc : ingest_amf0_put_string(&b, level);
    rc = rc ? rc : ingest_amf0_put_key(&b, "code");
    rc = rc ? rc : ingest_amf0_put_string(&b, code);
    rc = rc ? rc : ingest_amf0_put_key(&b, "description");
    rc = rc ? rc : ingest_amf0_put_string(&b, desc);
    rc = rc ? rc : ingest_amf0_put_object_end(&b);
    if (rc == 0)
        rc = send_message(s, csid, MSG_COMMAND_AMF0, stream_id, 0, (uint8_t *) b.data, b.len);
    cb_buf_release(&b);
    return rc;
}

int ingest_rtmp_end(ingest_rtmp_t *s, const char *level, const char *code, const char *description)
{
    int rc = 0;

    if (s->state == RTMP_STATE_CLOSING)
        return 0;
    if (s->state >= RTMP_STATE_CONNECTED)
        rc = send_status_cmd(s, CSID_STREAM, PUBLISH_STREAM_ID, "onStatus", 0, level, code,
                             description);
    s->state = RTMP_STATE_CLOSING;
    return rc;
}

/* ---- handshake ---- */

static size_t digest_offset(const uint8_t *p, int scheme)
{
    size_t base = scheme == 0 ? 8 : 772;

    return (size_t) (p[base] + p[base + 1] + p[base + 2] + p[base + 3]) % 728 + base + 4;
}

/* HMAC-SHA256 of the 1536-byte block without the 32 digest bytes at off. */
static void block_digest(const uint8_t *blk, size_t off, const uint8_t *key, size_t keylen,
                         uint8_t out[32])
{
    uint8_t tmp[HANDSHAKE_SIZE - 32];
    unsigned int n = 32;

    memcpy(tmp, blk, off);
    memcpy(tmp + off, blk + off + 32, HANDSHAKE_SIZE - off - 32);
    HMAC(EVP_sha256(), key, (int) keylen, tmp, sizeof(tmp), out, &n);
}

/* The client's digest in C1, or -1 when C1 carries none (simple handshake). */
static int find_client_digest(const uint8_t *c1, uint8_t digest[32])
{
    int scheme;

    for (scheme = 0; scheme < 2; scheme++) {
        size_t off = digest_offset(c1, scheme);
        uint8_t want[32];

        block_digest(c1, off, genuine_fp_key, 30, want);
        if (memcmp(want, c1 + off, 32) == 0) {
            memcpy(digest, c1 + off, 32);
            return scheme;
        }
    }
    return -1;
}

static int do_handshake(ingest_rtmp_t *s, const uint8_t *c0c1)
{
    uint8_t out[1 + 2 * HANDSHAKE_SIZE];
    uint8_t *s1 = out + 1, *s2 = out + 1 + HANDSHAKE_SIZE;
    uint8_t client_digest[32], key[32];
    const uint8_t *c1 = c0c1 + 1;
    unsigned int n = 32;
    int scheme;

    if (c0c1[0] != 3)
        return fail(s, -EPROTO, "handshake: RTMP version %u is not supported", c0c1[0]);
    out[0] = 3;
    if (RAND_bytes(s1, 2 * HANDSHAKE_SIZE) != 1)
        return fail(s, -EIO, "handshake: no random bytes");
    put_be(s1, (uint32_t) time(NULL), 4);
    scheme = find_client_digest(c1, client_digest);
    if (scheme < 0) {
        /* simple handshake: zero version, S2 echoes C1 */
        memset(s1 + 4, 0, 4);
        memcpy(s2, c1, HANDSHAKE_SIZE);
    } else {
        size_t off;
        static const uint8_t version[4] = { 0x0D, 0x0E, 0x0A, 0x0D };

        memcpy(s1 + 4, version, 4);
        off = digest_offset(s1, scheme);
        block_digest(s1, off, genuine_fms_key, 36, s1 + off);
        HMAC(EVP_sha256(), genuine_fms_key, sizeof(genuine_fms_key), client_digest, 32, key, &n);
        HMAC(EVP_sha256(), key, 32, s2, HANDSHAKE_SIZE - 32, s2 + HANDSHAKE_SIZE - 32, &n);
    }
    return cb_buf_append(&s->out, out, sizeof(out));
}

/* ---- commands ---- */

static const char *arg_string(ingest_amf0_t **v, int n, int i)
{
    return i < n && v[i]->type == AMF0_STRING ? v[i]->string : NULL;
}

static int cmd_connect(ingest_rtmp_t *s, double txn, const ingest_amf0_t *obj)
{
    const char *app = ingest_amf0_get_string(obj, "app");
    const char *tc = ingest_amf0_get_string(obj, "tcUrl");
    char why[128] = "connection refused";
    cb_buf_t b;
    int rc;

    if (s->state != RTMP_STATE_CONNECTING)
        return fail(s, -EPROTO, "connect received twice");
    snprintf(s->app, sizeof(s->app), "%s", app ? app : "");
    snprintf(s->tc_url, sizeof(s->tc_url), "%s", tc ? tc : "");
    if (s->cb.on_connect && s->cb.on_connect(s->arg, s->app, s->tc_url, why, sizeof(why)) != 0) {
        send_status_cmd(s, CSID_COMMAND, 0, "_error", txn, "error",
                        "NetConnection.Connect.Rejected", why);
        s->state = RTMP_STATE_CLOSING;
        return 0;
    }
    rc = send_control(s, MSG_WINDOW_ACK_SIZE, WINDOW_ACK_SIZE, -1);
    rc = rc ? rc : send_control(s, MSG_SET_PEER_BW, WINDOW_ACK_SIZE, 2);
    rc = rc ? rc : send_control(s, MSG_SET_CHUNK_SIZE, (uint32_t) s->limits.out_chunk_size, -1);
    if (rc)
        return fail(s, rc, "output buffer full");
    cb_buf_init(&b, 4096);
    rc = ingest_amf0_put_string(&b, "_result");
    rc = rc ? rc : ingest_amf0_put_number(&b, txn);
    rc = rc ? rc : ingest_amf0_put_object_start(&b);
    rc = rc ? rc : ingest_amf0_put_key(&b, "fmsVer");
    rc = rc ? rc : ingest_amf0_put_string(&b, "FMS/3,5,7,7009");
    rc = rc ? rc : ingest_amf0_put_key(&b, "capabilities");
    rc = rc ? rc : ingest_amf0_put_number(&b, 31);
    rc = rc ? rc : ingest_amf0_put_object_end(&b);
    rc = rc ? rc : ingest_amf0_put_object_start(&b);
    rc = rc ? rc : ingest_amf0_put_key(&b, "level");
    rc = rc ? rc : ingest_amf0_put_string(&b, "status");
    rc = rc ? rc : ingest_amf0_put_key(&b, "code");
    rc = rc ? rc : ingest_amf0_put_string(&b, "NetConnection.Connect.Success");
    rc = rc ? rc : ingest_amf0_put_key(&b, "description");
    rc = rc ? rc : ingest_amf0_put_string(&b, "Connection succeeded.");
    rc = rc ? rc : ingest_amf0_put_key(&b, "objectEncoding");
    rc = rc ? rc : ingest_amf0_put_number(&b, 0);
    rc = rc ? rc : ingest_amf0_put_object_end(&b);
    if (rc == 0)
        rc = send_message(s, CSID_COMMAND, MSG_COMMAND_AMF0, 0, 0, (uint8_t *) b.data, b.len);
    cb_buf_release(&b);
    if (rc)
        return fail(s, rc, "output buffer full");
    s->state = RTMP_STATE_CONNECTED;
    return 0;
}

static int send_result_number(ingest_rtmp_t *s, double txn, double value, bool with_value)
{
    cb_buf_t b;
    int rc;

    cb_buf_init(&b, 256);
    rc = ingest_amf0_put_string(&b, "_result");
    rc = rc ? rc : ingest_amf0_put_number(&b, txn);
    rc = rc ? rc : ingest_amf0_put_null(&b);
    if (rc == 0 && with_value)
        rc = ingest_amf0_put_number(&b, value);
    if (rc == 0)
        rc = send_message(s, CSID_COMMAND, MSG_COMMAND_AMF0, 0, 0, (uint8_t *) b.data, b.len);
    cb_buf_release(&b);
    return rc;
}

int ingest_rtmp_publish_result(ingest_rtmp_t *s, const char *code, const char *why)
{
    if (s->state != RTMP_STATE_PUBLISH_PENDING)
        return -EINVAL;
    if (code) {
        ingest_rtmp_end(s, "error", code, why ? why : "publishing refused");
        return 0;
    }
    if (send_user_control(s, 0 /* StreamBegin */, PUBLISH_STREAM_ID) ||
        send_status_cmd(s, CSID_STREAM, PUBLISH_STREAM_ID, "onStatus", 0, "status",
                        "NetStream.Publish.Start", "Publishing."))
        return fail(s, -ENOBUFS, "output buffer full");
    s->state = RTMP_STATE_PUBLISHING;
    return 0;
}

static int cmd_publish(ingest_rtmp_t *s, double txn, const char *name)
{
    char code[96] = "NetStream.Publish.BadName", why[160] = "publishing refused";
    int rc = 0;

    (void) txn;
    if (s->state != RTMP_STATE_CONNECTED)
        return fail(s, -EPROTO, "publish before connect, or twice");
    if (!name || !name[0]) {
        ingest_rtmp_end(s, "error", "NetStream.Publish.BadName", "no stream key given");
        return 0;
    }
    s->state = RTMP_STATE_PUBLISH_PENDING;
    if (s->cb.on_publish)
        rc = s->cb.on_publish(s->arg, name, code, sizeof(code), why, sizeof(why));
    if (rc == 1)
        return 0; /* answered later */
    return ingest_rtmp_publish_result(s, rc == 0 ? NULL : code, why);
}

static int handle_command(ingest_rtmp_t *s, const uint8_t *p, size_t len)
{
    ingest_amf0_t *v[MAX_AMF_VALUES];
    const char *name;
    double txn;
    int n, i, rc = 0;

    n = ingest_amf0_decode_all(p, len, v, MAX_AMF_VALUES);
    if (n < 0)
        return fail(s, -EPROTO, "command: malformed AMF0");
    name = arg_string(v, n, 0);
    txn = n > 1 && v[1]->type == AMF0_NUMBER ? v[1]->number : 0;
    if (!name) {
        rc = fail(s, -EPROTO, "command without a name");
    } else if (strcmp(name, "connect") == 0) {
        rc = cmd_connect(s, txn, n > 2 ? v[2] : NULL);
    } else if (s->state < RTMP_STATE_CONNECTED) {
        rc = fail(s, -EPROTO, "command '%.32s' before connect", name);
    } else if (strcmp(name, "createStream") == 0) {
        rc = send_result_number(s, txn, PUBLISH_STREAM_ID, true);
    } else if (strcmp(name, "releaseStream") == 0) {
        rc = txn > 0 ? send_result_number(s, txn, 0, false) : 0;
    } else if (strcmp(name, "FCPublish") == 0) {
        rc = 0; /* answered by publish */
    } else if (strcmp(name, "publish") == 0) {
        rc = cmd_publish(s, txn, arg_string(v, n, 3));
    } else if (strcmp(name, "FCUnpublish") == 0 || strcmp(name, "deleteStream") == 0 ||
               strcmp(name, "closeStream") == 0) {
        if (s->state == RTMP_STATE_PUBLISHING) {
            if (s->cb.on_unpublish)
                s->cb.on_unpublish(s->arg);
            s->state = RTMP_STATE_CONNECTED;
            send_status_cmd(s, CSID_STREAM, PUBLISH_STREAM_ID, "onStatus", 0, "status",
                            "NetStream.Unpublish.Success", "Stopped publishing.");
        }
    } else if (strcmp(name, "play") == 0 || strcmp(name, "play2") == 0) {
        ingest_rtmp_end(s, "error", "NetStream.Play.Failed",
                        "this is an ingest server: playback is HLS/DASH from the origin");
    }
    /* anything else (getStreamLength, ping...) needs no answer from an ingest server */
    for (i = 0; i < n; i++)
        ingest_amf0_free(v[i]);
    return rc < 0 ? rc : 0;
}

static void handle_data(ingest_rtmp_t *s, const uint8_t *p, size_t len)
{
    ingest_amf0_t *v[4];
    int n, i, first = 0;

    n = ingest_amf0_decode_all(p, len, v, 4);
    if (n <= 0)
        return; /* metadata is informational: a malformed one is ignored */
    if (v[0]->type == AMF0_STRING && strcmp(v[0]->string, "@setDataFrame") == 0)
        first = 1;
    if (n > first + 1 && v[first]->type == AMF0_STRING &&
        strcmp(v[first]->string, "onMetaData") == 0 && v[first + 1]->type == AMF0_OBJECT &&
        s->cb.on_metadata)
        s->cb.on_metadata(s->arg, v[first + 1]);
    for (i = 0; i < n; i++)
        ingest_amf0_free(v[i]);
}

/* A complete message. */
static int dispatch(ingest_rtmp_t *s, const chunk_stream_t *cs, const uint8_t *p, size_t len)
{
    switch (cs->type) {
    case MSG_SET_CHUNK_SIZE:
        if (len < 4)
            return fail(s, -EPROTO, "short Set Chunk Size");
        s->in_chunk_size = get_be(p, 4) & 0x7FFFFFFF;
        if (s->in_chunk_size < 1 || s->in_chunk_size > s->limits.max_message_bytes)
            return fail(s, -EPROTO, "chunk size %u out of range", s->in_chunk_size);
        return 0;
    case MSG_ABORT:
        if (len >= 4) {
            uint32_t csid = get_be(p, 4);
            size_t i;
            for (i = 0; i < s->ncs; i++) {
                if (s->cs[i].csid == csid) {
                    free(s->cs[i].msg);
                    s->cs[i].msg = NULL;
                    s->cs[i].have = 0;
                }
            }
        }
        return 0;
    case MSG_WINDOW_ACK_SIZE:
        if (len >= 4)
            s->peer_window = get_be(p, 4);
        return 0;
    case MSG_USER_CONTROL:
        if (len >= 6 && get_be(p, 2) == 6) /* PingRequest -> PingResponse */
            return send_user_control(s, 7, get_be(p + 2, 4));
        return 0;
    case MSG_ACK:
    case MSG_SET_PEER_BW:
        return 0;
    case MSG_COMMAND_AMF3:
        /* AMF3 commands start with a format byte; their values are AMF0 */
        return len > 1 ? handle_command(s, p + 1, len - 1) : 0;
    case MSG_COMMAND_AMF0:
        return handle_command(s, p, len);
    case MSG_DATA_AMF3:
        if (len > 1)
            handle_data(s, p + 1, len - 1);
        return 0;
    case MSG_DATA_AMF0:
        handle_data(s, p, len);
        return 0;
    case RTMP_MSG_AUDIO:
    case RTMP_MSG_VIDEO:
        if (s->state != RTMP_STATE_PUBLISHING || !s->cb.on_media)
            return 0;
        if (s->cb.on_media(s->arg, cs->type, cs->timestamp, p, len) < 0)
            return fail(s, -ECANCELED, "media refused");
        return 0;
    default:
        return 0; /* aggregate and shared-object messages are not used by publishers */
    }
}

static chunk_stream_t *find_cs(ingest_rtmp_t *s, uint32_t csid)
{
    size_t i;

    for (i = 0; i < s->ncs; i++) {
        if (s->cs[i].csid == csid)
            return &s->cs[i];
    }
    if (s->ncs == MAX_CHUNK_STREAMS)
        return NULL;
    memset(&s->cs[s->ncs], 0, sizeof(chunk_stream_t));
    s->cs[s->ncs].csid = csid;
    return &s->cs[s->ncs++];
}

/*
 * Parse as many whole chunks from (p, len) as there are. Returns the bytes
 * consumed, or a negative errno.
 */
static long parse_chunks(ingest_rtmp_t *s, const uint8_t *p, size_t len)
{
    size_t pos = 0;

    while (pos < len && s->state != RTMP_STATE_CLOSING) {
        size_t h = pos, need;
        uint32_t csid, field = 0, length, sid, ts_ext = 0;
        uint8_t fmt, type;
        bool ext, new_msg;
        chunk_stream_t *cs;
        size_t payload;
        int rc;

        fmt = p[h] >> 6;
        csid = p[h] & 0x3F;
        h++;
        if (csid == 0) {
            if (len - h < 1)
                break;
            csid = 64 + p[h];
            h++;
        } else if (csid == 1) {
            if (len - h < 2)
                break;
            csid = 64 + p[h] + 256u * p[h + 1];
            h += 2;
        }
        cs = find_cs(s, csid);
        if (!cs)
            return fail(s, -EPROTO, "more than %d chunk streams", MAX_CHUNK_STREAMS);
        need = fmt == 0 ? 11 : fmt == 1 ? 7 : fmt == 2 ? 3 : 0;
        if (len - h < need)
            break;
        if (fmt < 3)
            field = get_be(p + h, 3);
        length = fmt < 2 ? get_be(p + h + 3, 3) : cs->length;
        type = fmt < 2 ? p[h + 6] : cs->type;
        sid = fmt == 0 ? (uint32_t) p[h + 7] | (uint32_t) p[h + 8] << 8 |
                             (uint32_t) p[h + 9] << 16 | (uint32_t) p[h + 10] << 24
                       : cs->stream_id;
        h += need;
        if (fmt > 0 && !cs->started)
            return fail(s, -EPROTO, "chunk stream %u continues a message it never started", csid);
        ext = fmt < 3 ? field == 0xFFFFFF : cs->ext;
        if (ext) {
            if (len - h < 4)
                break;
            ts_ext = get_be(p + h, 4);
            h += 4;
        }
        new_msg = cs->have == 0;
        if (!new_msg && fmt != 3)
            return fail(s, -EPROTO, "chunk stream %u: new header inside a message", csid);
        if (new_msg && length > s->limits.max_message_bytes)
            return fail(s, -EMSGSIZE, "message of %u bytes over the limit of %zu", length,
                        s->limits.max_message_bytes);
        payload =
            CB_MIN((size_t) (new_msg ? length : cs->length) - cs->have, (size_t) s->in_chunk_size);
        if (len - h < payload)
            break;

        /* the whole chunk is here: commit it */
        if (fmt < 3) {
            uint32_t value = ext ? ts_ext : field;
            cs->timestamp = fmt == 0 ? value : cs->timestamp + value;
            cs->ts_field = value;
            cs->ext = ext;
            cs->length = length;
            cs->type = type;
            cs->stream_id = sid;
            cs->started = true;
        } else if (new_msg) {
            cs->timestamp += cs->ts_field;
        }
        if (new_msg && cs->length > 0) {
            free(cs->msg);
            cs->msg = malloc(cs->length);
            if (!cs->msg)
                return fail(s, -ENOMEM, "out of memory for a %u-byte message", cs->length);
        }
        if (payload)
            memcpy(cs->msg + cs->have, p + h, payload);
        cs->have += payload;
        pos = h + payload;
        if (cs->have == cs->length) {
            cs->have = 0;
            rc = dispatch(s, cs, cs->msg ? cs->msg : (const uint8_t *) "", cs->length);
            free(cs->msg);
            cs->msg = NULL;
            if (rc < 0)
                return rc;
        }
    }
    return (long) pos;
}

/* Parse from (p, len); returns bytes consumed or < 0. */
static long parse(ingest_rtmp_t *s, const uint8_t *p, size_t len)
{
    size_t pos = 0;
    long n;
    int rc;

    if (s->state == RTMP_STATE_HANDSHAKE) {
        if (len < 1 + HANDSHAKE_SIZE)
            return 0;
        rc = do_handshake(s, p);
        if (rc)
            return rc;
        pos = 1 + HANDSHAKE_SIZE;
        s->state = RTMP_STATE_HANDSHAKE_C2;
    }
    if (s->state == RTMP_STATE_HANDSHAKE_C2) {
        if (len - pos < HANDSHAKE_SIZE)
            return (long) pos;
        pos += HANDSHAKE_SIZE; /* C2 echoes S1; nothing in it matters to a server */
        s->state = RTMP_STATE_CONNECTING;
    }
    if (s->state == RTMP_STATE_CLOSING)
        return (long) len; /* ignore whatever comes after a final status */
    n = parse_chunks(s, p + pos, len - pos);
    return n < 0 ? n : (long) pos + n;
}

int ingest_rtmp_input(ingest_rtmp_t *s, const uint8_t *data, size_t len)
{
    long n;
    int rc;

    s->bytes_in += len;
    if (s->in.len == 0) {
        n = parse(s, data, len);
        if (n < 0)
            return (int) n;
        rc = cb_buf_append(&s->in, data + n, len - (size_t) n);
    } else {
        rc = cb_buf_append(&s->in, data, len);
        if (rc == 0) {
            n = parse(s, (const uint8_t *) s->in.data, s->in.len);
            if (n < 0)
                return (int) n;
            memmove(s->in.data, s->in.data + n, s->in.len - (size_t) n);
            cb_buf_truncate(&s->in, s->in.len - (size_t) n);
        }
    }
    if (rc)
        return fail(s, -EMSGSIZE, "incomplete chunk larger than the limit");
    if (s->peer_window && s->bytes_in - s->acked >= s->peer_window &&
        s->state != RTMP_STATE_CLOSING) {
        s->acked = s->bytes_in;
        if (send_control(s, MSG_ACK, (uint32_t) s->bytes_in, -1))
            return fail(s, -ENOBUFS, "output buffer full");
    }
    return 0;
}

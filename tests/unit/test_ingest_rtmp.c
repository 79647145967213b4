/*
 * Unit tests for services/ingest/ingest_rtmp: a scripted client talks to the
 * state machine; the chunk stream is built by hand to cover every header
 * type, extended timestamps, chunk size changes and interleaving.
 */
#include <errno.h>
#include <openssl/hmac.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "defs.h"
#include "ingest_rtmp.h"

#define HS 1536

typedef struct events {
    char app[64], name[64];
    int publishes, unpublishes, media;
    uint32_t ts[64];
    int types[64];
    size_t lens[64];
    uint8_t first[64];
    double width;
    bool refuse;
} events_t;

static int on_connect(void *arg, const char *app, const char *tc, char *why, size_t n)
{
    events_t *e = arg;

    (void) tc;
    snprintf(e->app, sizeof(e->app), "%s", app);
    if (strcmp(app, "live") != 0) {
        snprintf(why, n, "unknown application");
        return -EPERM;
    }
    return 0;
}

static int on_publish(void *arg, const char *name, char *code, size_t clen, char *why, size_t wlen)
{
    events_t *e = arg;

    snprintf(e->name, sizeof(e->name), "%s", name);
    e->publishes++;
    if (e->refuse) {
        snprintf(code, clen, "NetStream.Publish.BadName");
        snprintf(why, wlen, "wrong stream key");
        return -EPERM;
    }
    return 0;
}

static void on_unpublish(void *arg)
{
    ((events_t *) arg)->unpublishes++;
}

static int on_media(void *arg, int type, uint32_t ts, const uint8_t *data, size_t len)
{
    events_t *e = arg;

    if (e->media < 64) {
        e->ts[e->media] = ts;
        e->types[e->media] = type;
        e->lens[e->media] = len;
        e->first[e->media] = len ? data[0] : 0;
    }
    e->media++;
    return 0;
}

static void on_metadata(void *arg, const ingest_amf0_t *meta)
{
    ((events_t *) arg)->width = ingest_amf0_get_number(meta, "width", -1);
}

static const ingest_rtmp_callbacks_t callbacks = {
    .on_connect = on_connect,
    .on_publish = on_publish,
    .on_unpublish = on_unpublish,
    .on_media = on_media,
    .on_metadata = on_metadata,
};

static const ingest_rtmp_limits_t limits = { .max_message_bytes = 1 << 20, .out_chunk_size = 4096 };

/* ---- a tiny client ---- */

static void put24(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 16);
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) v;
}

/* Append one chunk: fmt, csid, fields as the header type carries them. */
static void chunk(cb_buf_t *b, int fmt, int csid, uint32_t ts, size_t len, int type,
                  const uint8_t *payload, size_t plen, bool ext)
{
    uint8_t h[20];
    size_t n = 0;

    h[n++] = (uint8_t) (fmt << 6 | csid);
    if (fmt < 3) {
        put24(h + n, ext ? 0xFFFFFF : ts);
        n += 3;
    }
    if (fmt < 2) {
        put24(h + n, (uint32_t) len);
        n += 3;
        h[n++] = (uint8_t) type;
    }
    if (fmt == 0) {
        h[n++] = 1; /* stream id 1, little endian */
        h[n++] = 0;
        h[n++] = 0;
        h[n++] = 0;
    }
    if (ext) {
        h[n++] = (uint8_t) (ts >> 24);
        put24(h + n, ts & 0xFFFFFF);
        n += 3;
    }
    cb_buf_append(b, h, n);
    cb_buf_append(b, payload, plen);
}

static void command(cb_buf_t *b, const char *name, double txn, const char *arg)
{
    cb_buf_t p;

    cb_buf_init(&p, 4096);
    ingest_amf0_put_string(&p, name);
    ingest_amf0_put_number(&p, txn);
    if (strcmp(name, "connect") == 0) {
        ingest_amf0_put_object_start(&p);
        ingest_amf0_put_key(&p, "app");
        ingest_amf0_put_string(&p, arg);
        ingest_amf0_put_key(&p, "tcUrl");
        ingest_amf0_put_string(&p, "rtmp://127.0.0.1/live");
        ingest_amf0_put_object_end(&p);
    } else {
        ingest_amf0_put_null(&p);
        if (arg) {
            ingest_amf0_put_string(&p, arg);
            ingest_amf0_put_string(&p, "live");
        }
    }
    /* commands fit one 128-byte chunk here */
    assert_true(p.len <= 128);
    chunk(b, 0, 3, 0, p.len, 20, (uint8_t *) p.data, p.len, false);
    cb_buf_release(&p);
}

static bool output_has(ingest_rtmp_t *s, const char *needle)
{
    size_t len;
    const uint8_t *o = ingest_rtmp_output(s, &len);

    return memmem(o, len, needle, strlen(needle)) != NULL;
}

static const uint8_t fms_key[68] = {
    'G',  'e',  'n',  'u',  'i',  'n',  'e',  ' ',  'A',  'd',  'o',  'b',  'e',  ' ',
    'F',  'l',  'a',  's',  'h',  ' ',  'M',  'e',  'd',  'i',  'a',  ' ',  'S',  'e',
    'r',  'v',  'e',  'r',  ' ',  '0',  '0',  '1',  0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68,
    0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57, 0x6E, 0xEC, 0x5D, 0x2D,
    0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
};

/* the Flash Player key: its first 30 bytes sign a client's C1 */
static const uint8_t fp_key[30] = { 'G', 'e', 'n', 'u', 'i', 'n', 'e', ' ', 'A', 'd',
                                    'o', 'b', 'e', ' ', 'F', 'l', 'a', 's', 'h', ' ',
                                    'P', 'l', 'a', 'y', 'e', 'r', ' ', '0', '0', '1' };

static void digest_at(const uint8_t *blk, size_t off, const uint8_t *key, int keylen,
                      uint8_t out[32])
{
    uint8_t tmp[HS - 32];
    unsigned int n = 32;

    memcpy(tmp, blk, off);
    memcpy(tmp + off, blk + off + 32, HS - off - 32);
    HMAC(EVP_sha256(), key, keylen, tmp, sizeof(tmp), out, &n);
}

static size_t offset0(const uint8_t *p)
{
    return (size_t) (p[8] + p[9] + p[10] + p[11]) % 728 + 12;
}

/* Handshake and connect/createStream/publish; returns the session. */
static ingest_rtmp_t *publish_session(events_t *e, bool digest)
{
    uint8_t c0c1[1 + HS], c2[HS];
    ingest_rtmp_t *s;
    cb_buf_t b;
    size_t len;
    const uint8_t *o;

    memset(e, 0, sizeof(*e));
    assert_int_equal(ingest_rtmp_new(&callbacks, e, &limits, &s), 0);
    c0c1[0] = 3;
    for (size_t i = 1; i < sizeof(c0c1); i++)
        c0c1[i] = (uint8_t) (i * 7);
    memset(c0c1 + 1, 0, 8);
    if (digest) {
        uint8_t *c1 = c0c1 + 1, d[32];
        /* the client digest with the Flash Player key, as ffmpeg does it */
        c1[4] = 9; /* a non-zero version asks for the digest scheme */
        digest_at(c1, offset0(c1), fp_key, sizeof(fp_key), d);
        memcpy(c1 + offset0(c1), d, 32);
    }
    assert_int_equal(ingest_rtmp_input(s, c0c1, sizeof(c0c1)), 0);
    o = ingest_rtmp_output(s, &len);
    assert_int_equal(len, 1 + 2 * HS);
    assert_int_equal(o[0], 3);
    if (digest) {
        uint8_t want[32];
        const uint8_t *s1 = o + 1;
        digest_at(s1, offset0(s1), fms_key, 36, want);
        assert_memory_equal(want, s1 + offset0(s1), 32);
    } else {
        assert_memory_equal(o + 1 + HS, c0c1 + 1, HS); /* S2 echoes C1 */
    }
    ingest_rtmp_output_consume(s, len);
    memset(c2, 0, sizeof(c2));
    cb_buf_init(&b, 1 << 16);
    cb_buf_append(&b, c2, sizeof(c2));
    command(&b, "connect", 1, "live");
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    assert_true(output_has(s, "NetConnection.Connect.Success"));
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_CONNECTED);
    ingest_rtmp_output_consume(s, 1 << 20);
    cb_buf_reset(&b);
    command(&b, "releaseStream", 2, "key123");
    command(&b, "FCPublish", 3, "key123");
    command(&b, "createStream", 4, NULL);
    command(&b, "publish", 5, "key123?role=backup");
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    cb_buf_release(&b);
    return s;
}

static void test_simple_handshake_and_publish(void **state)
{
    events_t e;
    ingest_rtmp_t *s = publish_session(&e, false);

    (void) state;
    assert_string_equal(e.app, "live");
    assert_string_equal(e.name, "key123?role=backup");
    assert_true(output_has(s, "NetStream.Publish.Start"));
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_PUBLISHING);
    ingest_rtmp_free(s);
}

static void test_digest_handshake(void **state)
{
    events_t e;
    ingest_rtmp_t *s = publish_session(&e, true);

    (void) state;
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_PUBLISHING);
    ingest_rtmp_free(s);
}

static void test_header_types_and_timestamps(void **state)
{
    uint8_t video[300], audio[10], meta[128];
    events_t e;
    ingest_rtmp_t *s = publish_session(&e, false);
    cb_buf_t b, m;

    (void) state;
    memset(video, 0x17, sizeof(video));
    memset(audio, 0xAF, sizeof(audio));
    cb_buf_init(&b, 1 << 16);
    /* metadata via @setDataFrame */
    cb_buf_init(&m, sizeof(meta));
    ingest_amf0_put_string(&m, "@setDataFrame");
    ingest_amf0_put_string(&m, "onMetaData");
    ingest_amf0_put_object_start(&m);
    ingest_amf0_put_key(&m, "width");
    ingest_amf0_put_number(&m, 1280);
    ingest_amf0_put_object_end(&m);
    chunk(&b, 0, 4, 0, m.len, 18, (uint8_t *) m.data, m.len, false);
    /* a 300-byte video message in 128-byte chunks, audio interleaved on another csid */
    chunk(&b, 0, 6, 1000, sizeof(video), 9, video, 128, false);
    chunk(&b, 0, 4, 1010, sizeof(audio), 8, audio, sizeof(audio), false);
    chunk(&b, 3, 6, 0, 0, 0, video + 128, 128, false);
    chunk(&b, 3, 6, 0, 0, 0, video + 256, 44, false);
    /* fmt 1 (delta 23, new length), fmt 2 (delta 23), fmt 3 new message (delta again) */
    chunk(&b, 1, 4, 23, sizeof(audio), 8, audio, sizeof(audio), false);
    chunk(&b, 2, 4, 23, 0, 0, audio, sizeof(audio), false);
    chunk(&b, 3, 4, 0, 0, 0, audio, sizeof(audio), false);
    /* extended timestamp (0x1000000 ms) with a continuation that repeats it */
    chunk(&b, 0, 7, 0x1000000, 200, 9, video, 128, true);
    chunk(&b, 3, 7, 0x1000000, 0, 0, video, 72, true);
    /* the client raises its chunk size: a 300-byte message in one chunk */
    {
        uint8_t cs[4] = { 0, 0, 0x10, 0 };
        chunk(&b, 0, 2, 0, 4, 1, cs, 4, false);
    }
    chunk(&b, 1, 6, 33, sizeof(video), 9, video, sizeof(video), false);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    assert_true(e.width == 1280);
    assert_int_equal(e.media, 7);
    assert_int_equal(e.types[0], 8); /* the interleaved audio completed first */
    assert_int_equal(e.ts[0], 1010);
    assert_int_equal(e.types[1], 9);
    assert_int_equal(e.ts[1], 1000);
    assert_int_equal(e.lens[1], sizeof(video));
    assert_int_equal(e.ts[2], 1033);
    assert_int_equal(e.ts[3], 1056);
    assert_int_equal(e.ts[4], 1079);
    assert_int_equal(e.ts[5], 0x1000000);
    assert_int_equal(e.lens[5], 200);
    assert_int_equal(e.ts[6], 1033);
    cb_buf_release(&m);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

static void test_byte_at_a_time(void **state)
{
    uint8_t video[1000];
    events_t e;
    ingest_rtmp_t *s = publish_session(&e, false);
    cb_buf_t b;
    size_t i;

    (void) state;
    memset(video, 0x27, sizeof(video));
    cb_buf_init(&b, 1 << 16);
    chunk(&b, 0, 6, 40, sizeof(video), 9, video, 128, false);
    for (i = 128; i < sizeof(video); i += 128)
        chunk(&b, 3, 6, 0, 0, 0, video + i, CB_MIN(128, sizeof(video) - i), false);
    for (i = 0; i < b.len; i++)
        assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data + i, 1), 0);
    assert_int_equal(e.media, 1);
    assert_int_equal(e.lens[0], sizeof(video));
    assert_int_equal(e.ts[0], 40);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

static void test_acknowledgement_window(void **state)
{
    uint8_t win[4] = { 0, 0, 0x01, 0 }; /* 256 bytes */
    uint8_t audio[100];
    events_t e;
    ingest_rtmp_t *s = publish_session(&e, false);
    cb_buf_t b;
    size_t len;
    const uint8_t *o;

    (void) state;
    ingest_rtmp_output_consume(s, 1 << 20);
    memset(audio, 0xAF, sizeof(audio));
    cb_buf_init(&b, 4096);
    chunk(&b, 0, 2, 0, 4, 5, win, 4, false);
    for (int i = 0; i < 4; i++)
        chunk(&b, 0, 4, (uint32_t) i, sizeof(audio), 8, audio, sizeof(audio), false);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    o = ingest_rtmp_output(s, &len);
    /* an Acknowledgement (type 3) on chunk stream 2 */
    assert_true(len >= 16);
    assert_int_equal(o[0], 2);
    assert_int_equal(o[7], 3);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

static void test_refused_publish_and_unpublish(void **state)
{
    events_t e;
    ingest_rtmp_t *s;
    uint8_t c0c1[1 + HS] = { 3 }, c2[HS] = { 0 };
    cb_buf_t b;

    (void) state;
    memset(&e, 0, sizeof(e));
    e.refuse = true;
    assert_int_equal(ingest_rtmp_new(&callbacks, &e, &limits, &s), 0);
    cb_buf_init(&b, 1 << 16);
    cb_buf_append(&b, c0c1, sizeof(c0c1));
    cb_buf_append(&b, c2, sizeof(c2));
    command(&b, "connect", 1, "live");
    command(&b, "createStream", 2, NULL);
    command(&b, "publish", 3, "wrong");
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    assert_true(output_has(s, "NetStream.Publish.BadName"));
    assert_true(output_has(s, "wrong stream key"));
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_CLOSING);
    ingest_rtmp_free(s);

    s = publish_session(&e, false);
    cb_buf_reset(&b);
    command(&b, "FCUnpublish", 6, "key123");
    command(&b, "deleteStream", 7, NULL);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    assert_int_equal(e.unpublishes, 1);
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_CONNECTED);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

static void test_unknown_app_is_rejected(void **state)
{
    events_t e = { 0 };
    ingest_rtmp_t *s;
    uint8_t c0c1[1 + HS] = { 3 }, c2[HS] = { 0 };
    cb_buf_t b;

    (void) state;
    assert_int_equal(ingest_rtmp_new(&callbacks, &e, &limits, &s), 0);
    cb_buf_init(&b, 1 << 16);
    cb_buf_append(&b, c0c1, sizeof(c0c1));
    cb_buf_append(&b, c2, sizeof(c2));
    command(&b, "connect", 1, "other");
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), 0);
    assert_true(output_has(s, "NetConnection.Connect.Rejected"));
    assert_int_equal(ingest_rtmp_state(s), RTMP_STATE_CLOSING);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

static void test_protocol_errors(void **state)
{
    uint8_t big[4] = { 0 };
    events_t e;
    ingest_rtmp_t *s;
    cb_buf_t b;
    uint8_t v6[1 + HS] = { 6 };

    (void) state;
    /* unsupported version */
    memset(&e, 0, sizeof(e));
    assert_int_equal(ingest_rtmp_new(&callbacks, &e, &limits, &s), 0);
    assert_int_equal(ingest_rtmp_input(s, v6, sizeof(v6)), -EPROTO);
    assert_non_null(strstr(ingest_rtmp_error(s), "version 6"));
    ingest_rtmp_free(s);

    /* a message over the size limit */
    s = publish_session(&e, false);
    cb_buf_init(&b, 4096);
    chunk(&b, 0, 6, 0, 2 << 20, 9, big, 4, false);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), -EMSGSIZE);
    ingest_rtmp_free(s);

    /* a type 3 chunk on a chunk stream never started */
    s = publish_session(&e, false);
    cb_buf_reset(&b);
    chunk(&b, 3, 9, 0, 0, 0, big, 4, false);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), -EPROTO);
    ingest_rtmp_free(s);

    /* a chunk size of zero */
    s = publish_session(&e, false);
    cb_buf_reset(&b);
    chunk(&b, 0, 2, 0, 4, 1, big, 4, false);
    assert_int_equal(ingest_rtmp_input(s, (uint8_t *) b.data, b.len), -EPROTO);
    cb_buf_release(&b);
    ingest_rtmp_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_handshake_and_publish),
        cmocka_unit_test(test_digest_handshake),
        cmocka_unit_test(test_header_types_and_timestamps),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_acknowledgement_window),
        cmocka_unit_test(test_refused_publish_and_unpublish),
        cmocka_unit_test(test_unknown_app_is_rejected),
        cmocka_unit_test(test_protocol_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

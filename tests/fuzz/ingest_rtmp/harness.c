/*
 * Fuzz harness: an RTMP publisher's byte stream into a server session
 * (ingest_rtmp): handshake, chunk stream, AMF0 commands, and the FLV tag
 * bodies of the media messages (ingest_flv), as castbus-ingest runs them.
 * The first byte picks how the input is split into reads, so partial
 * headers and chunks at every boundary are exercised. Publishing is
 * accepted at once; nothing is sent anywhere.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"
#include "ingest_flv.h"
#include "ingest_rtmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_connect(void *arg, const char *app, const char *tc_url, char *why, size_t whylen)
{
    (void) arg;
    (void) why;
    (void) whylen;
    CB_ASSERT(app != NULL && tc_url != NULL);
    return 0;
}

static int on_publish(void *arg, const char *name, char *code, size_t codelen, char *why,
                      size_t whylen)
{
    (void) arg;
    (void) code;
    (void) codelen;
    (void) why;
    (void) whylen;
    CB_ASSERT(name != NULL);
    return 0;
}

static void on_unpublish(void *arg)
{
    (void) arg;
}

static int on_media(void *arg, int type, uint32_t timestamp_ms, const uint8_t *p, size_t len)
{
    ingest_media_t m;
    char err[128];

    (void) arg;
    (void) timestamp_ms;
    if (type == RTMP_MSG_VIDEO)
        ingest_flv_parse_video(p, len, &m, err, sizeof(err));
    else
        ingest_flv_parse_audio(p, len, &m, err, sizeof(err));
    return 0;
}

static void on_metadata(void *arg, const ingest_amf0_t *meta)
{
    (void) arg;
    ingest_amf0_get_string(meta, "encoder");
    ingest_amf0_get(meta, "width");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ingest_rtmp_callbacks_t cb = {
        .on_connect = on_connect,
        .on_publish = on_publish,
        .on_unpublish = on_unpublish,
        .on_media = on_media,
        .on_metadata = on_metadata,
    };
    const ingest_rtmp_limits_t limits = { .max_message_bytes = 1 << 20, .out_chunk_size = 4096 };
    ingest_rtmp_t *s;
    size_t step, pos = 0, n;

    if (size < 1 || ingest_rtmp_new(&cb, NULL, &limits, &s) != 0)
        return 0;
    step = data[0] ? data[0] * 37u : size; /* 0: everything in one read */
    data++;
    size--;
    while (pos < size) {
        n = CB_MIN(step, size - pos);
        if (ingest_rtmp_input(s, data + pos, n) != 0)
            break;
        pos += n;
        ingest_rtmp_output(s, &n);
        ingest_rtmp_output_consume(s, n);
    }
    ingest_rtmp_free(s);
    return 0;
}

/*
 * Fuzz harness: the MPEG-TS muxer's readers of publisher bytes (ingest_ts):
 * decoder configurations (avcC, hvcC, AudioSpecificConfig, Annex B
 * parameter sets) and frames (length-prefixed or Annex B NAL units, raw or
 * ADTS AAC). Input: one byte choosing the codec pair, two bytes of
 * configuration length, the configuration, then frames as
 * (flags, 2-byte length, bytes).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "defs.h"
#include "ingest_ts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ingest_codec_t video[] = { INGEST_CODEC_H264, INGEST_CODEC_HEVC,
                                            INGEST_CODEC_NONE };
    ingest_ts_track_t v = { 0 }, a = { 0 };
    ingest_ts_t *ts;
    size_t pos = 3, cfg_len;
    char err[160];
    int64_t dts = 0;

    if (size < 3)
        return 0;
    v.codec = video[data[0] % 3];
    a.codec = (data[0] >> 2) & 1 ? INGEST_CODEC_MP3 : INGEST_CODEC_AAC;
    cfg_len = CB_MIN((size_t) (data[1] << 8 | data[2]), size - pos);
    /* the same bytes configure both tracks: each parser sees them */
    v.extradata = a.extradata = data + pos;
    v.extradata_len = a.extradata_len = (data[0] >> 3) & 1 ? 0 : cfg_len;
    pos += cfg_len;
    if (ingest_ts_new(&v, &a, 0, 1 << 20, &ts, err, sizeof(err)) != 0)
        return 0;
    while (pos + 3 <= size) {
        uint8_t flags = data[pos];
        size_t len = CB_MIN((size_t) (data[pos + 1] << 8 | data[pos + 2]), size - pos - 3);
        ingest_media_kind_t kind = flags & 1 ? INGEST_AUDIO : INGEST_VIDEO;

        dts += 3000;
        if (ingest_ts_write(ts, kind, flags & 2, dts, dts + (flags >> 4) * 1500, data + pos + 3,
                            len, err, sizeof(err)) == -E2BIG)
            break;
        pos += 3 + len;
    }
    ingest_ts_free(ts);
    return 0;
}

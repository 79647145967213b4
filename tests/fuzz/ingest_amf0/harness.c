/*
 * Fuzz harness: the AMF0 decoder (command and metadata payloads of RTMP
 * publishers) and, on the same bytes, the FLV readers ingest uses (FLV tag
 * bodies, AVC decoder configuration, AudioSpecificConfig, FLV files).
 */
#include <stdint.h>
#include <stdlib.h>

#include "defs.h"
#include "ingest_amf0.h"
#include "ingest_flv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ingest_amf0_t *v[8];
    ingest_media_t m;
    ingest_flv_tag_t tag;
    char err[128];
    int n, i, w, h, rate, ch;
    size_t pos = 0;

    n = ingest_amf0_decode_all(data, size, v, (int) CB_ARRAY_LEN(v));
    for (i = 0; i < n; i++) {
        ingest_amf0_get_string(v[i], "app");
        ingest_amf0_get(v[i], "tcUrl");
        ingest_amf0_free(v[i]);
    }
    ingest_flv_parse_video(data, size, &m, err, sizeof(err));
    ingest_flv_parse_audio(data, size, &m, err, sizeof(err));
    ingest_avcc_dimensions(data, size, &w, &h);
    ingest_asc_parse(data, size, &rate, &ch);
    while (ingest_flv_file_next(data, size, &pos, &tag) == 1)
        ;
    return 0;
}

/* Unit tests for services/ingest/ingest_flv: tags, E-RTMP headers, codec configs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest_flv.h"

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f)
        fail_msg("cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t) n);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    fclose(f);
    *len = (size_t) n;
    return buf;
}

static void test_legacy_avc_and_aac(void **state)
{
    const uint8_t seq[] = { 0x17, 0x00, 0, 0, 0, 0x01, 0x64 };
    const uint8_t inter[] = { 0x27, 0x01, 0xFF, 0xFF, 0xD8, 0xAA }; /* cts -40 */
    const uint8_t asc[] = { 0xAF, 0x00, 0x12, 0x10 };
    const uint8_t raw[] = { 0xAF, 0x01, 0x21 };
    ingest_media_t m;
    char err[128];

    (void) state;
    assert_int_equal(ingest_flv_parse_video(seq, sizeof(seq), &m, err, sizeof(err)), 0);
    assert_int_equal(m.codec, INGEST_CODEC_H264);
    assert_true(m.config && m.keyframe);
    assert_int_equal(m.len, 2);
    assert_int_equal(ingest_flv_parse_video(inter, sizeof(inter), &m, err, sizeof(err)), 0);
    assert_false(m.keyframe || m.config);
    assert_int_equal(m.cts_ms, -40);
    assert_int_equal(ingest_flv_parse_audio(asc, sizeof(asc), &m, err, sizeof(err)), 0);
    assert_true(m.config);
    assert_int_equal(m.codec, INGEST_CODEC_AAC);
    assert_int_equal(ingest_flv_parse_audio(raw, sizeof(raw), &m, err, sizeof(err)), 0);
    assert_false(m.config);
    assert_int_equal(m.len, 1);
}

static void test_enhanced_rtmp(void **state)
{
    /* hvc1 sequence start, hvc1 coded frames (keyframe, cts 33), av01 coded frames X */
    const uint8_t hevc_seq[] = { 0x90, 'h', 'v', 'c', '1', 0x01 };
    const uint8_t hevc_key[] = { 0x91, 'h', 'v', 'c', '1', 0, 0, 33, 0xAB };
    const uint8_t av1_inter[] = { 0xA3, 'a', 'v', '0', '1', 0x12, 0x00 };
    const uint8_t vp9[] = { 0x91, 'v', 'p', '0', '9', 0, 0, 0 };
    const uint8_t command[] = { 0xD0, 'h', 'v', 'c', '1' };
    const uint8_t ex_audio[] = { 0x91, 'm', 'p', '4', 'a', 0x21 };
    const uint8_t opus[] = { 0x91, 'O', 'p', 'u', 's', 0x21 };
    ingest_media_t m;
    char err[128];

    (void) state;
    assert_int_equal(ingest_flv_parse_video(hevc_seq, sizeof(hevc_seq), &m, err, sizeof(err)), 0);
    assert_true(m.config && m.codec == INGEST_CODEC_HEVC);
    assert_int_equal(ingest_flv_parse_video(hevc_key, sizeof(hevc_key), &m, err, sizeof(err)), 0);
    assert_true(m.keyframe && !m.config);
    assert_int_equal(m.cts_ms, 33);
    assert_int_equal(m.len, 1);
    assert_int_equal(ingest_flv_parse_video(av1_inter, sizeof(av1_inter), &m, err, sizeof(err)), 0);
    assert_int_equal(m.codec, INGEST_CODEC_AV1);
    assert_false(m.keyframe);
    assert_int_equal(m.len, 2);
    assert_int_equal(ingest_flv_parse_video(vp9, sizeof(vp9), &m, err, sizeof(err)), -ENOTSUP);
    assert_non_null(strstr(err, "vp09"));
    assert_int_equal(ingest_flv_parse_video(command, sizeof(command), &m, err, sizeof(err)), 0);
    assert_true(m.skip);
    assert_int_equal(ingest_flv_parse_audio(ex_audio, sizeof(ex_audio), &m, err, sizeof(err)), 0);
    assert_int_equal(m.codec, INGEST_CODEC_AAC);
    assert_int_equal(ingest_flv_parse_audio(opus, sizeof(opus), &m, err, sizeof(err)), -ENOTSUP);
}

static void test_malformed(void **state)
{
    const uint8_t vp6[] = { 0x14, 0x00 };
    const uint8_t short_avc[] = { 0x17, 0x01 };
    ingest_media_t m;
    char err[128];

    (void) state;
    assert_int_equal(ingest_flv_parse_video(vp6, sizeof(vp6), &m, err, sizeof(err)), -ENOTSUP);
    assert_int_equal(ingest_flv_parse_video(short_avc, sizeof(short_avc), &m, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(ingest_flv_parse_video((const uint8_t *) "", 0, &m, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(ingest_flv_parse_audio((const uint8_t *) "\x60", 1, &m, err, sizeof(err)),
                     -ENOTSUP);
}

static void test_file_and_configs(void **state)
{
    size_t len, pos = 0;
    uint8_t *buf = read_file("tests/data/media/h264_aac_6s.flv", &len);
    ingest_flv_tag_t tag;
    int w = 0, h = 0, rate = 0, ch = 0, video = 0, audio = 0, keys = 0, rc;
    char err[128];

    (void) state;
    while ((rc = ingest_flv_file_next(buf, len, &pos, &tag)) == 1) {
        ingest_media_t m;
        if (tag.type == 9) {
            assert_int_equal(ingest_flv_parse_video(tag.data, tag.len, &m, err, sizeof(err)), 0);
            if (m.config)
                assert_int_equal(ingest_avcc_dimensions(m.data, m.len, &w, &h), 0);
            else if (!m.end_of_sequence) {
                video++;
                keys += m.keyframe;
            }
        } else if (tag.type == 8) {
            assert_int_equal(ingest_flv_parse_audio(tag.data, tag.len, &m, err, sizeof(err)), 0);
            if (m.config)
                assert_int_equal(ingest_asc_parse(m.data, m.len, &rate, &ch), 0);
            else
                audio++;
        }
    }
    assert_int_equal(rc, 0);
    assert_int_equal(w, 320);
    assert_int_equal(h, 180);
    assert_int_equal(rate, 44100);
    assert_int_equal(ch, 2);
    assert_int_equal(video, 180);
    assert_int_equal(keys, 3);
    assert_true(audio > 250);
    pos = 0;
    assert_int_equal(ingest_flv_file_next((const uint8_t *) "NOTFLV..........", 16, &pos, &tag),
                     -EINVAL);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_legacy_avc_and_aac),
        cmocka_unit_test(test_enhanced_rtmp),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_file_and_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Golden-file tests of the HLS playlist and DASH MPD writers: fixed timelines
 * in, byte-exact manifests out, compared with the .m3u8 and .mpd files in
 * tests/data/golden/packager.
 *
 * After an intended change of the output, regenerate the files with
 *   CASTBUS_GOLDEN_UPDATE=1 build/tests/unit/test_packager_manifests
 * and review the diff like code.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "packager_dash.h"
#include "packager_hls.h"

#define GOLDEN_DIR "tests/data/golden/packager/"
#define SEG        (2 * 90000)     /* 2 s at 90 kHz */
#define T0_MS      1795313400000LL /* 2026-11-22T02:10:00.000Z, the wall clock at pts 0 */

/* Compare out with the golden file (or rewrite it when asked to). */
static void golden(const char *name, const cb_buf_t *out)
{
    char path[256], *want;
    FILE *f;
    long len;

    snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);
    if (getenv("CASTBUS_GOLDEN_UPDATE")) {
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(out->data, 1, out->len, f), out->len);
        fclose(f);
        return;
    }
    f = fopen(path, "rb");
    if (!f)
        fail_msg("%s is missing (CASTBUS_GOLDEN_UPDATE=1 writes it)", path);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    want = malloc((size_t) len + 1);
    assert_non_null(want);
    assert_int_equal(fread(want, 1, (size_t) len, f), (size_t) len);
    want[len] = '\0';
    fclose(f);
    if ((size_t) len != out->len || memcmp(want, out->data, out->len) != 0)
        fail_msg("%s differs; got:\n%.*s", path, (int) out->len, (const char *) out->data);
    free(want);
}

/* Write a media playlist and hold it to its golden file. */
static void media_golden(const pk_hls_media_t *m, const char *name)
{
    cb_buf_t b;

    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_hls_write_media(m, &b), 0);
    golden(name, &b);
    cb_buf_release(&b);
}

/* Segments named by their start like the worker's, 2 s each from t0. */
static void timeline(pk_hls_segment_t *segs, char (*uris)[64], size_t n, int64_t start_90k,
                     const char *map)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int64_t start = start_90k + (int64_t) i * SEG;
        snprintf(uris[i], sizeof(uris[i]), "720p/%lld.m4s", (long long) start);
        segs[i] = (pk_hls_segment_t){
            .duration_90k = SEG,
            .uri = uris[i],
            .map_uri = map,
            .pdt_ms = T0_MS + start / 90,
        };
    }
}

/* A sliding live window, well into the stream, offering blocking reloads. */
static void test_live_window(void **state)
{
    pk_hls_segment_t segs[5];
    char uris[5][64];
    pk_hls_media_t m = {
        .media_sequence = 120, .min_target_s = 2, .can_block_reload = true, .segs = segs, .n = 5
    };

    (void) state;
    timeline(segs, uris, 5, 120 * SEG, "720p/init-0123456789abcdef.mp4");
    media_golden(&m, "live_window.m3u8");
}

/*
 * Low latency: 2 s segments of four 0.5 s CMAF chunks; the parts of the
 * last three target durations are listed (the oldest segment's are not),
 * a gap has none, and the other renditions are reported.
 */
static void test_live_low_latency(void **state)
{
    static const pk_hls_part_t parts[4] = {
        { 0, 41234, 45000, true },
        { 41234, 9876, 45000, false },
        { 51110, 10001, 45000, false },
        { 61111, 9999, 45000, false },
    };
    static const pk_hls_report_t reports[2] = {
        { "480p.m3u8", 124, 3 },
        { "audio.m3u8", 124, -1 },
    };
    pk_hls_segment_t segs[5];
    char uris[5][64];
    pk_hls_media_t m = { .media_sequence = 120,
                         .min_target_s = 2,
                         .can_block_reload = true,
                         .part_target_90k = 45000,
                         .part_hold_back_90k = 3 * 45000,
                         .reports = reports,
                         .nreports = 2,
                         .segs = segs,
                         .n = 5 };
    size_t i;

    (void) state;
    timeline(segs, uris, 5, 120 * SEG, "720p/init-0123456789abcdef.mp4");
    for (i = 0; i < 5; i++) {
        segs[i].parts = parts;
        segs[i].nparts = 4;
    }
    segs[3].gap = true;
    segs[3].map_uri = NULL;
    media_golden(&m, "live_low_latency.m3u8");
    /* without blocking reloads a playlist is not low latency */
    m.can_block_reload = false;
    media_golden(&m, "live_low_latency_no_blocking.m3u8");
}

/*
 * A reconnect (discontinuity, new encoder configuration: a new init
 * segment), a failed job (gap), a segment longer than the target, a window
 * that lost one discontinuity from its front, and the stream's end.
 */
static void test_live_discontinuity_gap_and_end(void **state)
{
    pk_hls_segment_t segs[6];
    char uris[6][64];
    pk_hls_media_t m = { .media_sequence = 40,
                         .discontinuity_sequence = 1,
                         .min_target_s = 2,
                         .ended = true,
                         .segs = segs,
                         .n = 6 };

    (void) state;
    timeline(segs, uris, 6, 40 * SEG, "720p/init-0123456789abcdef.mp4");
    segs[0].discontinuity = true; /* its predecessor is gone: counted in the sequence */
    segs[2].gap = true;
    segs[2].map_uri = NULL;
    segs[3].discontinuity = true;
    segs[3].map_uri = "720p/init-fedcba9876543210.mp4";
    segs[4].map_uri = segs[3].map_uri;
    segs[5].map_uri = segs[3].map_uri;
    segs[4].duration_90k = SEG + SEG / 2 + 1; /* 3.000011 s: the target grows to 3 */
    segs[5].pdt_ms = 0;                       /* no wall clock known for it */
    media_golden(&m, "live_discontinuity_gap_end.m3u8");
}

/*
 * Playlist Delta Updates (?_HLS_skip=YES): twelve 2 s segments, the init
 * segment changing at the fifth (a reconnect, with a discontinuity) and the
 * parts of the last ones listed. CAN-SKIP-UNTIL is 12 s, so the five
 * segments that end further back than that become one EXT-X-SKIP (the
 * sixth ends 12 s from the end and stays), and the init segment the sixth
 * plays with is repeated before it.
 */
static void test_live_delta_update(void **state)
{
    static const pk_hls_part_t parts[2] = {
        { 0, 41234, 90000, true },
        { 41234, 9876, 90000, false },
    };
    pk_hls_segment_t segs[12];
    char uris[12][64];
    pk_hls_media_t m = { .media_sequence = 300,
                         .discontinuity_sequence = 2,
                         .min_target_s = 2,
                         .can_block_reload = true,
                         .part_target_90k = 90000,
                         .segs = segs,
                         .n = 12 };
    cb_buf_t full, delta;
    size_t i;

    (void) state;
    timeline(segs, uris, 12, 300 * SEG, "720p/init-0123456789abcdef.mp4");
    for (i = 4; i < 12; i++)
        segs[i].map_uri = "720p/init-fedcba9876543210.mp4";
    segs[4].discontinuity = true;
    for (i = 10; i < 12; i++) {
        segs[i].parts = parts;
        segs[i].nparts = 2;
    }
    cb_buf_init(&full, 1 << 16);
    cb_buf_init(&delta, 1 << 16);
    assert_int_equal(pk_hls_write_media(&m, &full), 0);
    assert_non_null(strstr(full.data, "CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=2.000\n"));
    assert_int_equal(pk_hls_delta(full.data, full.len, &delta), 0);
    golden("live_delta_update.m3u8", &delta);

    /* nothing that far back, a VOD, an ended stream: the whole playlist */
    m.n = 6;
    cb_buf_reset(&full);
    cb_buf_reset(&delta);
    assert_int_equal(pk_hls_write_media(&m, &full), 0);
    assert_int_equal(pk_hls_delta(full.data, full.len, &delta), -ENOENT);
    m.n = 12;
    m.ended = true;
    cb_buf_reset(&full);
    assert_int_equal(pk_hls_write_media(&m, &full), 0);
    assert_null(strstr(full.data, "CAN-SKIP-UNTIL"));
    assert_int_equal(pk_hls_delta(full.data, full.len, &delta), -ENOENT);
    /* another rendition's longer target: the same boundary in every playlist */
    m.ended = false;
    m.skip_until_s = 18;
    cb_buf_reset(&full);
    assert_int_equal(pk_hls_write_media(&m, &full), 0);
    assert_non_null(strstr(full.data, "CAN-SKIP-UNTIL=18.000,"));
    /* not a media playlist as written */
    assert_int_equal(pk_hls_delta("#EXTM3U\n#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12\n"
                                  "a.m4s\n",
                                  54, &delta),
                     -EINVAL);
    assert_int_equal(pk_hls_delta("<MPD/>", 6, &delta), -EINVAL);
    assert_int_equal(delta.len, 0);
    cb_buf_release(&full);
    cb_buf_release(&delta);
}

static void test_vod(void **state)
{
    pk_hls_segment_t segs[3];
    char uris[3][64];
    pk_hls_media_t m = { .min_target_s = 2, .vod = true, .segs = segs, .n = 3 };

    (void) state;
    timeline(segs, uris, 3, 0, "720p/init-0123456789abcdef.mp4");
    segs[2].duration_90k = 90000 + 1234; /* the short tail of the stream */
    media_golden(&m, "vod.m3u8");
}

static void test_bad_media_playlists(void **state)
{
    pk_hls_segment_t segs[1] = { { .duration_90k = SEG, .uri = "a.m4s" } };
    pk_hls_media_t m = { .segs = segs, .n = 1 };
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_hls_write_media(&m, &b), -EINVAL); /* no init segment */
    segs[0].map_uri = "init.mp4";
    segs[0].duration_90k = 0;
    assert_int_equal(pk_hls_write_media(&m, &b), -EINVAL);
    cb_buf_release(&b);
    /* a buffer too small for the playlist */
    segs[0].duration_90k = SEG;
    cb_buf_init(&b, 16);
    assert_int_not_equal(pk_hls_write_media(&m, &b), 0);
    cb_buf_release(&b);
}

static void test_master(void **state)
{
    static const pk_hls_variant_t v[] = {
        { "720p.m3u8", 3300000, 2950000, 1280, 720, 30, "avc1.64001f" },
        { "480p.m3u8", 1540000, 1380000, 854, 480, 30, "avc1.4d401f" },
        { "360p.m3u8", 880000, 790000, 640, 360, 29.97, "avc1.4d401e" },
    };
    pk_hls_master_t m = { .variants = v,
                          .n = 3,
                          .audio_uri = "audio.m3u8",
                          .audio_codecs = "mp4a.40.2",
                          .audio_bps = 130000,
                          .audio_channels = 2 };
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_hls_write_master(&m, &b), 0);
    golden("master.m3u8", &b);
    cb_buf_reset(&b);
    /* video only: no audio group, plain codecs */
    m.audio_uri = NULL;
    m.n = 1;
    assert_int_equal(pk_hls_write_master(&m, &b), 0);
    golden("master_video_only.m3u8", &b);
    cb_buf_reset(&b);
    /* audio only: the audio playlist is the variant */
    m.audio_uri = "audio.m3u8";
    m.n = 0;
    assert_int_equal(pk_hls_write_master(&m, &b), 0);
    golden("master_audio_only.m3u8", &b);
    cb_buf_reset(&b);
    m.audio_uri = NULL;
    assert_int_equal(pk_hls_write_master(&m, &b), -EINVAL);
    cb_buf_release(&b);
}

/* ---- DASH ---- */

static const pk_dash_rep_t video_reps[] = {
    { .id = "720p",
      .init_uri = "720p/init-0123456789abcdef.mp4",
      .codecs = "avc1.64001f",
      .bandwidth_bps = 3000000,
      .width = 1280,
      .height = 720,
      .fps = 30 },
    { .id = "360p",
      .init_uri = "360p/init-0011223344556677.mp4",
      .codecs = "avc1.4d401e",
      .bandwidth_bps = 800000,
      .width = 640,
      .height = 360,
      .fps = 30 },
};
static const pk_dash_rep_t audio_reps[] = {
    { .id = "audio",
      .init_uri = "audio/init-8899aabbccddeeff.mp4",
      .codecs = "mp4a.40.2",
      .bandwidth_bps = 128000,
      .sample_rate = 48000,
      .channels = 2 },
};

/*
 * Live: video 2 s segments with a failed one and a shorter one; audio
 * segments named by their own starts, AAC frames making them alternate
 * around 2 s. The failed segment ends the first Period; the second starts
 * where its first segment's wall clock is.
 */
static void test_dash_live(void **state)
{
    pk_dash_seg_t video[8], audio[8];
    pk_dash_set_t sets[2][2] = {
        { { .video = true, .reps = video_reps, .nreps = 2, .segs = video },
          { .video = false, .reps = audio_reps, .nreps = 1, .segs = audio } },
        { { .video = true, .reps = video_reps, .nreps = 2, .segs = video + 5 },
          { .video = false, .reps = audio_reps, .nreps = 1, .segs = audio + 5 } },
    };
    int64_t t = 140 * SEG;
    pk_dash_period_t periods[2] = {
        { .id = 140, .start_ms = 300000, .pto_90k = t, .sets = sets[0], .nsets = 2 },
        { .id = 146, .start_ms = 312000, .pto_90k = t + 6 * SEG, .sets = sets[1], .nsets = 2 },
    };
    pk_dash_mpd_t m = { .dynamic = true,
                        .availability_start_ms = T0_MS,
                        .publish_ms = T0_MS + 320000,
                        .dvr_window_s = 3600,
                        .update_period_ms = 500,
                        .presentation_delay_ms = 2500,
                        .latency_target_ms = 4000,
                        .min_buffer_ms = 4000,
                        .max_segment_ms = 2000,
                        .utc_timing_uri = "/v1/time",
                        .periods = periods,
                        .nperiods = 2 };
    cb_buf_t b;
    int i, n = 0;

    (void) state;
    for (i = 0; i < 8; i++) {
        if (i == 5)
            continue; /* failed */
        video[n] = (pk_dash_seg_t){ t + i * SEG, i == 7 ? SEG / 2 : SEG };
        audio[n++] = (pk_dash_seg_t){ t - 1920 + i * SEG + (i % 2 ? 0 : 1920),
                                      i % 2 ? SEG + 1920 : SEG - 1920 };
    }
    sets[0][0].nsegs = sets[0][1].nsegs = 5;
    sets[1][0].nsegs = sets[1][1].nsegs = 2;
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_dash_write_mpd(&m, &b), 0);
    golden("live.mpd", &b);
    /* a Period needs a set, and a start not before the presentation's */
    periods[1].nsets = 0;
    cb_buf_reset(&b);
    assert_int_equal(pk_dash_write_mpd(&m, &b), -EINVAL);
    periods[1].nsets = 2;
    periods[1].start_ms = -1;
    assert_int_equal(pk_dash_write_mpd(&m, &b), -EINVAL);
    cb_buf_release(&b);
}

static void test_dash_vod(void **state)
{
    pk_dash_rep_t rep = video_reps[1], bad = video_reps[1];
    pk_dash_seg_t segs[3] = { { 900000, SEG }, { 900000 + SEG, SEG }, { 900000 + 2 * SEG, 91234 } };
    pk_dash_set_t set = { .video = true, .reps = &rep, .nreps = 1, .segs = segs, .nsegs = 3 };
    pk_dash_period_t per = { .pto_90k = 900000, .sets = &set, .nsets = 1 };
    pk_dash_mpd_t m = {
        .duration_ms = 5014, .min_buffer_ms = 4000, .periods = &per, .nperiods = 1
    };
    cb_buf_t b;

    (void) state;
    rep.fps = 30000.0 / 1001.0; /* NTSC rates are written as the ratio */
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_dash_write_mpd(&m, &b), 0);
    golden("vod.mpd", &b);
    /* text that would need escaping is refused, not written */
    bad.init_uri = "360p/init\"x.mp4";
    set.reps = &bad;
    cb_buf_reset(&b);
    assert_int_equal(pk_dash_write_mpd(&m, &b), -EINVAL);
    m.nperiods = 0;
    assert_int_equal(pk_dash_write_mpd(&m, &b), -EINVAL);
    cb_buf_release(&b);
}

/*
 * What encoders give: the last frame of each segment a nominal duration (30
 * ticks into the next segment), a source cut 14.7 ms late, and a real gap
 * of a failed job. The timeline is continuous but for the real gap.
 */
static void test_dash_timeline_joins_jitter(void **state)
{
    pk_dash_rep_t rep = video_reps[1];
    pk_dash_seg_t segs[6] = {
        { 0, SEG + 30 },
        { SEG, SEG + 30 },
        { 2 * SEG, SEG + 30 },
        { 3 * SEG + 1320, SEG + 30 }, /* late cut */
        { 5 * SEG + 1320, SEG },      /* SEG missing: a gap */
        { 6 * SEG + 1320, SEG + 30 },
    };
    pk_dash_set_t set = { .video = true, .reps = &rep, .nreps = 1, .segs = segs, .nsegs = 6 };
    pk_dash_period_t per = { .sets = &set, .nsets = 1 };
    pk_dash_mpd_t m = {
        .duration_ms = 14000, .min_buffer_ms = 4000, .periods = &per, .nperiods = 1
    };
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 1 << 16);
    assert_int_equal(pk_dash_write_mpd(&m, &b), 0);
    assert_non_null(strstr(b.data, "<S t=\"0\" d=\"180000\" r=\"1\"/>\n"
                                   "          <S d=\"181320\"/>\n"
                                   "          <S d=\"180030\"/>\n"
                                   "          <S t=\"901320\" d=\"180000\"/>\n"
                                   "          <S d=\"180030\"/>"));
    cb_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_live_window),
        cmocka_unit_test(test_live_discontinuity_gap_and_end),
        cmocka_unit_test(test_live_low_latency),
        cmocka_unit_test(test_live_delta_update),
        cmocka_unit_test(test_vod),
        cmocka_unit_test(test_bad_media_playlists),
        cmocka_unit_test(test_master),
        cmocka_unit_test(test_dash_live),
        cmocka_unit_test(test_dash_vod),
        cmocka_unit_test(test_dash_timeline_joins_jitter),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

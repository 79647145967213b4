/*
 * Unit tests for services/transcode-worker/transcode_ladder: profiles,
 * --ladder parsing, fitting a ladder to sources of every shape.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "transcode_ladder.h"

static void test_profiles(void **state)
{
    tc_profile_t p;

    (void) state;
    assert_int_equal(tc_profile_get("default", &p), 0);
    assert_int_equal(p.nrungs, 6);
    assert_string_equal(p.rungs[0].name, "2160p");
    assert_int_equal(p.rungs[0].bitrate_bps, 16000000);
    assert_string_equal(p.rungs[5].name, "240p");
    assert_int_equal(p.rungs[5].bitrate_bps, 400000);
    assert_int_equal(p.audio_bitrate_bps, 128000);
    assert_int_equal(tc_profile_get("live", &p), 0);
    assert_int_equal(p.nrungs, 3);
    assert_int_equal(tc_profile_get("nope", &p), -ENOENT);
    for (size_t i = 0; tc_profile_names[i]; i++)
        assert_int_equal(tc_profile_get(tc_profile_names[i], &p), 0);
}

static void expect_rung(const tc_profile_t *p, size_t i, const char *name, int w, int h)
{
    assert_true(i < p->nrungs);
    assert_string_equal(p->rungs[i].name, name);
    assert_int_equal(p->rungs[i].width, w);
    assert_int_equal(p->rungs[i].height, h);
}

static void test_fit_never_upscales_and_keeps_aspect(void **state)
{
    tc_profile_t p;

    (void) state;
    tc_profile_get("default", &p);
    assert_int_equal(tc_ladder_fit(&p, 1920, 1080, 1, 1), 5);
    expect_rung(&p, 0, "1080p", 1920, 1080);
    expect_rung(&p, 1, "720p", 1280, 720);
    expect_rung(&p, 2, "480p", 854, 480);
    expect_rung(&p, 3, "360p", 640, 360);
    expect_rung(&p, 4, "240p", 426, 240);

    /* portrait: the short side names the rung */
    tc_profile_get("default", &p);
    assert_int_equal(tc_ladder_fit(&p, 1080, 1920, 0, 0), 5);
    expect_rung(&p, 1, "720p", 720, 1280);

    /* anamorphic: 1440x1080 with 4:3 pixels displays as 16:9 */
    tc_profile_get("default", &p);
    assert_int_equal(tc_ladder_fit(&p, 1440, 1080, 4, 3), 5);
    expect_rung(&p, 1, "720p", 1280, 720);

    /* odd sizes round to even */
    tc_profile_get("default", &p);
    assert_int_equal(tc_ladder_fit(&p, 853, 479, 1, 1), 2);
    for (size_t i = 0; i < p.nrungs; i++) {
        assert_int_equal(p.rungs[i].width % 2, 0);
        assert_int_equal(p.rungs[i].height % 2, 0);
    }
    expect_rung(&p, 0, "360p", 642, 360);

    /* smaller than every rung: one rung at the source's size */
    tc_profile_get("default", &p);
    assert_int_equal(tc_ladder_fit(&p, 161, 91, 1, 1), 1);
    expect_rung(&p, 0, "92p", 162, 92);
    assert_int_equal(p.rungs[0].bitrate_bps, 400000);

    assert_int_equal(tc_ladder_fit(&p, 0, 1080, 1, 1), -EINVAL);
}

static void test_parse(void **state)
{
    tc_profile_t p;
    char err[256];

    (void) state;
    assert_int_equal(
        tc_ladder_parse("854x480@1400k,1280x720@3000k,640x360@0.8M", &p, err, sizeof(err)), 0);
    assert_int_equal(p.nrungs, 3);
    /* largest first, whatever the order given */
    assert_string_equal(p.rungs[0].name, "720p");
    assert_int_equal(p.rungs[0].bitrate_bps, 3000000);
    assert_string_equal(p.rungs[0].h264_profile, "high");
    assert_string_equal(p.rungs[2].name, "360p");
    assert_int_equal(p.rungs[2].bitrate_bps, 800000);
    assert_string_equal(p.rungs[2].h264_profile, "main");

    assert_int_equal(tc_ladder_parse("1280x720@3000k,854x@1400k", &p, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "rung 2"));
    assert_int_equal(tc_ladder_parse("", &p, err, sizeof(err)), -EINVAL);
    assert_int_equal(tc_ladder_parse("1280x720@3000x", &p, err, sizeof(err)), -EINVAL);
    assert_int_equal(tc_ladder_parse("1280x720@3000k,1280x720@2000k", &p, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "720p"));
    assert_int_equal(tc_ladder_parse("99999x720@3000k", &p, err, sizeof(err)), -EINVAL);
}

static void test_preset_rank(void **state)
{
    (void) state;
    assert_int_equal(tc_preset_rank("ultrafast"), 0);
    assert_int_equal(tc_preset_rank("veryfast"), 2);
    assert_int_equal(tc_preset_rank("medium"), 5);
    assert_int_equal(tc_preset_rank("placebo"), 9);
    assert_int_equal(tc_preset_rank("p4"), -1);
    assert_int_equal(tc_preset_rank(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_preset_rank),
        cmocka_unit_test(test_profiles),
        cmocka_unit_test(test_fit_never_upscales_and_keeps_aspect),
        cmocka_unit_test(test_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

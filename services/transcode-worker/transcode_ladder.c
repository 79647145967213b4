/*
 * transcode_ladder.c - built-in ladder profiles, --ladder parsing, fitting
 * a ladder to a source.
 */
#include "transcode_ladder.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"

#define RUNG(n, side, kbps, prof, lvl)                                                             \
    {                                                                                              \
        .name = n, .short_side = side, .bitrate_bps = (kbps) *1000LL, .h264_profile = prof,        \
        .h264_level = lvl                                                                          \
    }

/* The H.264 ladder most players and CDNs expect; levels fit 30 fps. */
static const tc_profile_t builtin[] = {
    { .name = "default",
      .codec = TC_CODEC_H264,
      .rungs = { RUNG("2160p", 2160, 16000, "high", 51), RUNG("1080p", 1080, 6000, "high", 40),
                 RUNG("720p", 720, 3000, "high", 31), RUNG("480p", 480, 1400, "main", 31),
                 RUNG("360p", 360, 800, "main", 30), RUNG("240p", 240, 400, "main", 30) },
      .nrungs = 6,
      .audio_bitrate_bps = 128000,
      .gop_s = 2,
      .segment_s = 2,
      .preset = "veryfast" },
    /* the live 1080p30 -> 720/480/360 ladder of the benchmark */
    { .name = "live",
      .codec = TC_CODEC_H264,
      .rungs = { RUNG("720p", 720, 3000, "high", 31), RUNG("480p", 480, 1400, "main", 31),
                 RUNG("360p", 360, 800, "main", 30) },
      .nrungs = 3,
      .audio_bitrate_bps = 128000,
      .gop_s = 2,
      .segment_s = 2,
      .preset = "veryfast" },
    /* HEVC for devices that play it: the same sizes at about 60% of the bits */
    { .name = "hevc",
      .codec = TC_CODEC_HEVC,
      .rungs = { RUNG("2160p", 2160, 9600, "main", 0), RUNG("1080p", 1080, 3600, "main", 0),
                 RUNG("720p", 720, 1800, "main", 0), RUNG("480p", 480, 850, "main", 0),
                 RUNG("360p", 360, 500, "main", 0), RUNG("240p", 240, 250, "main", 0) },
      .nrungs = 6,
      .audio_bitrate_bps = 128000,
      .gop_s = 2,
      .segment_s = 2,
      .preset = "veryfast" },
    /*
     * AV1 through libaom in realtime mode: it forces keyframes where the
     * cuts are, which SVT-AV1 1.4 does not (it only keeps its own GOP grid).
     * Up to 1080p: larger pictures are far from real time on CPUs.
     */
    { .name = "av1",
      .codec = TC_CODEC_AV1,
      .rungs = { RUNG("1080p", 1080, 3000, "main", 0), RUNG("720p", 720, 1500, "main", 0),
                 RUNG("480p", 480, 700, "main", 0), RUNG("360p", 360, 400, "main", 0),
                 RUNG("240p", 240, 200, "main", 0) },
      .nrungs = 5,
      .audio_bitrate_bps = 128000,
      .gop_s = 2,
      .segment_s = 2,
      .preset = "veryfast" },
    /* a cheap ladder for tests and previews */
    { .name = "preview",
      .codec = TC_CODEC_H264,
      .rungs = { RUNG("360p", 360, 800, "main", 30), RUNG("240p", 240, 400, "main", 30) },
      .nrungs = 2,
      .audio_bitrate_bps = 96000,
      .gop_s = 2,
      .segment_s = 2,
      .preset = "ultrafast" },
};

const char *const tc_profile_names[] = { "default", "live", "hevc", "av1", "preview", NULL };

int tc_preset_rank(const char *preset)
{
    static const char *const names[] = {
        "ultrafast", "superfast", "veryfast", "faster",   "fast",
        "medium",    "slow",      "slower",   "veryslow", "placebo"
    };
    size_t i;

    for (i = 0; preset && i < CB_ARRAY_LEN(names); i++) {
        if (strcmp(preset, names[i]) == 0)
            return (int) i;
    }
    return -1;
}

int tc_profile_get(const char *name, tc_profile_t *out)
{
    size_t i;

    for (i = 0; i < CB_ARRAY_LEN(builtin); i++) {
        if (strcmp(builtin[i].name, name) == 0) {
            *out = builtin[i];
            return 0;
        }
    }
    return -ENOENT;
}

static const char *h264_profile_for(int short_side)
{
    return short_side >= 720 ? "high" : "main";
}

int tc_ladder_parse(const char *spec, tc_profile_t *out, char *err, size_t errlen)
{
    const char *p = spec;
    size_t n = 0;

    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "custom");
    out->codec = TC_CODEC_H264;
    out->audio_bitrate_bps = 128000;
    out->gop_s = 2;
    out->segment_s = 2;
    snprintf(out->preset, sizeof(out->preset), "veryfast");
    while (*p) {
        tc_rung_t *r;
        char *end;
        long w, h;
        double rate;

        if (n == TC_MAX_RUNGS) {
            snprintf(err, errlen, "ladder: at most %d rungs", TC_MAX_RUNGS);
            return -EINVAL;
        }
        errno = 0;
        w = strtol(p, &end, 10);
        if (end == p || *end != 'x' || w < 16 || w > 8192)
            goto bad;
        p = end + 1;
        h = strtol(p, &end, 10);
        if (end == p || *end != '@' || h < 16 || h > 8192)
            goto bad;
        p = end + 1;
        rate = strtod(p, &end);
        if (end == p || rate <= 0)
            goto bad;
        if (*end == 'k' || *end == 'K') {
            rate *= 1e3;
            end++;
        } else if (*end == 'M' || *end == 'm') {
            rate *= 1e6;
            end++;
        }
        if (rate < 16e3 || rate > 200e6 || (*end != ',' && *end != '\0'))
            goto bad;
        r = &out->rungs[n++];
        r->short_side = (int) CB_MIN(w, h);
        r->bitrate_bps = (int64_t) rate;
        r->h264_profile = h264_profile_for(r->short_side);
        r->h264_level = 0;
        snprintf(r->name, sizeof(r->name), "%dp", r->short_side);
        p = *end == ',' ? end + 1 : end;
        continue;
    bad:
        snprintf(err, errlen, "ladder: rung %zu: expected WIDTHxHEIGHT@BITRATE[k|M], got '%.40s'",
                 n + 1, p);
        return -EINVAL;
    }
    if (n == 0) {
        snprintf(err, errlen, "ladder: no rungs");
        return -EINVAL;
    }
    out->nrungs = n;
    /* largest first: the cascade scales each rung from the one above it */
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && out->rungs[j].short_side > out->rungs[j - 1].short_side; j--) {
            tc_rung_t t = out->rungs[j];

            out->rungs[j] = out->rungs[j - 1];
            out->rungs[j - 1] = t;
        }
    }
    for (size_t i = 1; i < n; i++) {
        if (out->rungs[i].short_side == out->rungs[i - 1].short_side) {
            snprintf(err, errlen, "ladder: two rungs named %s", out->rungs[i].name);
            return -EINVAL;
        }
    }
    return 0;
}

static int round_even(double v)
{
    int i = (int) (v / 2.0 + 0.5) * 2;

    return i < 2 ? 2 : i;
}

int tc_ladder_fit(tc_profile_t *p, int width, int height, int sar_num, int sar_den)
{
    double dar;
    bool portrait;
    int src_short;
    size_t i, kept = 0;

    if (width <= 0 || height <= 0)
        return -EINVAL;
    if (sar_num <= 0 || sar_den <= 0)
        sar_num = sar_den = 1;
    /* display size with square pixels */
    dar = (double) width * sar_num / ((double) height * sar_den);
    portrait = dar < 1.0;
    src_short = portrait ? (int) (width * (double) sar_num / sar_den + 0.5) : height;
    for (i = 0; i < p->nrungs; i++) {
        tc_rung_t r = p->rungs[i];
        int side = r.short_side;
        int other;

        if (side > src_short) /* never upscale */
            continue;
        other = portrait ? round_even(side / dar) : round_even(side * dar);
        side = round_even(side);
        r.width = portrait ? side : other;
        r.height = portrait ? other : side;
        p->rungs[kept++] = r;
    }
    if (kept == 0) {
        /* smaller than every rung: one rung at the source's own size */
        tc_rung_t r = p->rungs[p->nrungs - 1];
        int side = round_even(src_short);
        int other = portrait ? round_even(side / dar) : round_even(side * dar);

        r.width = portrait ? side : other;
        r.height = portrait ? other : side;
        r.short_side = side;
        snprintf(r.name, sizeof(r.name), "%dp", side);
        p->rungs[kept++] = r;
    }
    p->nrungs = kept;
    return (int) kept;
}

/*
 * transcode_once.c - the one-shot mode: a file in, one fragmented MP4 per
 * rendition out, a JSON summary on stdout.
 *
 * The sink appends to one FILE per rendition; video rungs write from their
 * own threads, each to its own file, so the sink needs no lock.
 */
#include "transcode_once.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "transcode_pipeline.h"

const cb_config_key_t transcode_once_config_keys[] = {
    { .name = "once",
      .type = CB_CONFIG_BOOL,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, once),
      .help = "Transcode one file (--input) into --out and exit, without Kafka." },
    { .name = "input",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, input),
      .help = "One-shot: the file (or URL) to transcode." },
    { .name = "profile",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, profile),
      .help = "One-shot: ladder profile (default, live, hevc, av1, preview)." },
    { .name = "ladder",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, ladder),
      .help = "One-shot: ad-hoc ladder instead of a profile, e.g. 1280x720@3000k,854x480@1400k." },
    { .name = "preset",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, preset),
      .help = "One-shot: encoder preset, e.g. veryfast (default: the profile's)." },
    { .name = "gop_s",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, gop_s),
      .help = "One-shot: keyframe interval in seconds (default: the profile's)." },
    { .name = "segment_s",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, segment_s),
      .help = "One-shot: output segment (fragment) duration in seconds (default: the GOP)." },
    { .name = "out",
      .type = CB_CONFIG_STRING,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, out),
      .help = "One-shot: directory for the renditions (<name>.mp4), created if missing." },
    { .name = "progress",
      .type = CB_CONFIG_BOOL,
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(transcode_once_config_t, progress),
      .help = "One-shot: show percent, fps and ETA on stderr." },
    { .name = NULL },
};

typedef struct once_sink {
    FILE *files[TC_MAX_RENDITIONS];
    char paths[TC_MAX_RENDITIONS][4096];
    const tc_result_t *res;
} once_sink_t;

static size_t rendition_index(const once_sink_t *s, const tc_rendition_t *r)
{
    return (size_t) (r - s->res->renditions);
}

static int sink_init(void *arg, const tc_rendition_t *r, const uint8_t *data, size_t len)
{
    once_sink_t *s = arg;
    size_t i = rendition_index(s, r);

    s->files[i] = fopen(s->paths[i], "wb");
    if (!s->files[i] || fwrite(data, 1, len, s->files[i]) != len)
        return -errno;
    return 0;
}

static int sink_segment(void *arg, const tc_rendition_t *r, const tc_segment_t *seg)
{
    once_sink_t *s = arg;
    FILE *f = s->files[rendition_index(s, r)];

    if (fwrite(seg->data, 1, seg->len, f) != seg->len)
        return -EIO;
    return 0;
}

typedef struct progress {
    bool tty;
    int64_t t0_us;
} progress_t;

static void show_progress(void *arg, double done_s, double total_s, double fps)
{
    const progress_t *pr = arg;
    const char *lead = pr->tty ? "\r" : "";
    double elapsed = (double) (cb_clock_mono_us() - pr->t0_us) / 1e6, pct;

    if (total_s > 0) {
        pct = CB_MIN(100.0, 100.0 * done_s / total_s);
        if (pct > 0.5)
            fprintf(stderr, "%s%5.1f%%  %6.1f fps  ETA %4.0f s", lead, pct, fps,
                    elapsed * (100.0 - pct) / pct);
        else
            fprintf(stderr, "%s%5.1f%%  %6.1f fps  ETA   --", lead, pct, fps);
    } else {
        fprintf(stderr, "%s%8.1f s done  %6.1f fps", lead, done_s, fps);
    }
    fputs(pr->tty ? "   " : "\n", stderr);
    fflush(stderr);
}

static int parse_seconds(const char *s, const char *flag, double *out)
{
    char *end;
    double v;

    if (!s || !*s)
        return 0;
    v = strtod(s, &end);
    if (*end || v < 0.1 || v > 60) {
        fprintf(stderr,
                "castbus-transcode-worker: %s: expected seconds between 0.1 and 60, "
                "got '%s'\n",
                flag, s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

int transcode_once_run(const transcode_once_config_t *cfg, tc_hw_t hw, const char *hw_device)
{
    once_sink_t sink = { 0 };
    tc_sink_t ops = { .init = sink_init, .segment = sink_segment, .arg = &sink };
    tc_params_t p = { 0 };
    tc_result_t *res;
    progress_t pr = { .tty = isatty(STDERR_FILENO) != 0 };
    char err[512];
    json_t *summary, *list;
    int64_t t1_us;
    size_t i;
    int rc;

    if (!cfg->input || !*cfg->input || !cfg->out || !*cfg->out) {
        fprintf(stderr, "castbus-transcode-worker: --once needs --input FILE and --out DIR\n");
        return -EINVAL;
    }
    if (cfg->ladder && *cfg->ladder) {
        if (cfg->profile && *cfg->profile) {
            fprintf(stderr,
                    "castbus-transcode-worker: --profile and --ladder exclude each other\n");
            return -EINVAL;
        }
        if (tc_ladder_parse(cfg->ladder, &p.profile, err, sizeof(err))) {
            fprintf(stderr, "castbus-transcode-worker: --%s\n", err);
            return -EINVAL;
        }
    } else if (tc_profile_get(cfg->profile && *cfg->profile ? cfg->profile : "default",
                              &p.profile)) {
        fprintf(stderr, "castbus-transcode-worker: --profile: unknown profile '%s'\n",
                cfg->profile);
        return -EINVAL;
    }
    if (cfg->preset && *cfg->preset)
        snprintf(p.profile.preset, sizeof(p.profile.preset), "%s", cfg->preset);
    if (parse_seconds(cfg->gop_s, "--gop-s", &p.profile.gop_s))
        return -EINVAL;
    p.profile.segment_s = p.profile.gop_s;
    if (parse_seconds(cfg->segment_s, "--segment-s", &p.profile.segment_s))
        return -EINVAL;
    if (mkdir(cfg->out, 0755) && errno != EEXIST) {
        fprintf(stderr, "castbus-transcode-worker: mkdir('%s') failed: %s\n", cfg->out,
                strerror(errno));
        return -EIO;
    }
    res = calloc(1, sizeof(*res));
    if (!res)
        return -ENOMEM;
    sink.res = res;
    /* the pipeline names renditions after fitting; paths are made from the same names */
    for (i = 0; i < TC_MAX_RENDITIONS; i++)
        snprintf(sink.paths[i], sizeof(sink.paths[i]), "%s/.rendition-%zu.mp4", cfg->out, i);
    p.input = cfg->input;
    p.hw = hw;
    p.hw_device = hw_device;
    p.progress = cfg->progress ? show_progress : NULL;
    p.progress_arg = &pr;
    pr.t0_us = cb_clock_mono_us();
    rc = tc_transcode(&p, &ops, res, err, sizeof(err));
    t1_us = cb_clock_mono_us();
    if (cfg->progress && pr.tty)
        fprintf(stderr, "\n");
    for (i = 0; i < TC_MAX_RENDITIONS; i++) {
        if (sink.files[i] && fclose(sink.files[i]) && rc == 0)
            rc = -EIO;
    }
    summary = json_object();
    list = json_array();
    for (i = 0; i < res->n; i++) {
        const tc_rendition_t *r = &res->renditions[i];
        char final[4096];
        double secs = r->duration_90k / 90000.0;

        snprintf(final, sizeof(final), "%s/%s.mp4", cfg->out, r->name);
        if (rc == 0 && rename(sink.paths[i], final)) {
            rc = -errno;
            snprintf(err, sizeof(err), "rename to '%.200s' failed: %s", final, strerror(errno));
        }
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:I, s:I, s:f, s:i, s:f, s:f}",
                            "name", r->name, "file", final, "codecs", r->track.codecs, "encoder",
                            r->encoder, "width", r->width, "height", r->height, "fps", r->fps,
                            "target_bitrate_bps", (json_int_t) r->target_bitrate_bps,
                            "bandwidth_bps", (json_int_t) (secs > 0 ? r->bytes * 8 / secs : 0),
                            "duration_s", secs, "segments", (int) r->segments, "scale_s",
                            r->scale_us / 1e6, "encode_s", r->encode_us / 1e6));
    }
    json_object_set_new(summary, "input", json_string(cfg->input));
    json_object_set_new(summary, "ok", json_boolean(rc == 0));
    if (rc)
        json_object_set_new(summary, "error", json_string(err));
    json_object_set_new(summary, "wall_s", json_real((double) (t1_us - pr.t0_us) / 1e6));
    json_object_set_new(summary, "frames", json_integer(res->frames_decoded));
    json_object_set_new(summary, "renditions", list);
    json_dumpf(summary, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(summary);
    if (rc) {
        for (i = 0; i < TC_MAX_RENDITIONS; i++)
            unlink(sink.paths[i]);
        cb_log_error("transcode of '%s' failed: %s", cfg->input, err);
    }
    free(res);
    /* an input that cannot be had or transcoded is the caller's to fix, like bad usage */
    return rc == -ENOENT ? -EINVAL : rc;
}

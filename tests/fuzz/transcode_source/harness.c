/*
 * Fuzz harness: the transcode pipeline on a source segment's bytes (the
 * files ingest writes and the worker reads back from storage): demuxing and
 * decoding through libavformat/libavcodec, the timeline, the cut decisions,
 * the encoders' output through the CMAF writer. The input is the file
 * itself; a one-rung ladder of a tiny size keeps each run short, and the
 * source is refused above 320x320 so a hostile header cannot ask for a huge
 * picture.
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "avlog.h"
#include "transcode_pipeline.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink_init(void *arg, const tc_rendition_t *r, const uint8_t *p, size_t len)
{
    (void) arg;
    (void) r;
    (void) p;
    (void) len;
    return 0;
}

static int sink_segment(void *arg, const tc_rendition_t *r, const tc_segment_t *s)
{
    (void) arg;
    (void) r;
    (void) s;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tc_result_t res;
    tc_sink_t sink = { .init = sink_init, .segment = sink_segment };
    tc_params_t p = {
        .timeline = true, .start_pts_90k = 900000, .max_width = 320, .max_height = 320
    };
    char path[64], err[512];
    int fd;

    if (size == 0 || tc_ladder_parse("96x54@60k", &p.profile, err, sizeof(err)))
        return 0;
    cb_avlog_install();
    snprintf(p.profile.preset, sizeof(p.profile.preset), "ultrafast");
    p.profile.segment_s = p.profile.gop_s = 0.5;
    p.profile.audio_bitrate_bps = 32000;
    fd = memfd_create("source", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t) size) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        p.input = path;
        tc_transcode(&p, &sink, &res, err, sizeof(err));
    }
    close(fd);
    return 0;
}

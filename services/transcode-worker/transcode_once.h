/*
 * transcode_once.h - one-shot mode: transcode one file into DIR without Kafka.
 *
 *   castbus-transcode-worker --once --input FILE (--profile NAME | --ladder SPEC)
 *                            [--preset veryfast] [--gop-s 2] --out DIR [--progress]
 *
 * Each rendition becomes DIR/<name>.mp4: its CMAF init segment followed by
 * its media segments, a fragmented MP4 any player or ffprobe reads. A JSON
 * summary of the renditions goes to stdout; --progress shows percent, fps
 * and ETA on stderr. It is the operator's tool and the benchmark's entry.
 */
#ifndef TRANSCODE_ONCE_H
#define TRANSCODE_ONCE_H

#include <stdbool.h>

#include "config.h"
#include "transcode_hw.h"

typedef struct transcode_once_config {
    bool once;
    char *input;
    char *profile;
    char *ladder;
    char *preset;
    char *gop_s;
    char *segment_s;
    char *out;
    bool progress;
} transcode_once_config_t;

extern const cb_config_key_t transcode_once_config_keys[];

/*
 * Run it, trying hardware encoder hw first (hw_encoder, hw_device). Returns 0, -EINVAL for bad usage or an input that cannot be
 * transcoded (exit status 2), another negative errno when it failed (1).
 */
int transcode_once_run(const transcode_once_config_t *cfg, tc_hw_t hw, const char *hw_device);

#endif /* TRANSCODE_ONCE_H */

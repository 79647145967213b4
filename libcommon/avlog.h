/*
 * avlog.h - FFmpeg's log messages into the daemon's JSON log.
 *
 * libavcodec and friends print to stderr by default (encoder statistics,
 * decoder complaints). cb_avlog_install() routes warnings and errors into
 * cb_log as "ffmpeg: <line>" and drops the chatter below a warning, so a
 * daemon's stderr stays one JSON object per line.
 *
 * Thread safety: FFmpeg logs from its own threads; partial lines are
 * assembled per thread.
 */
#ifndef CB_AVLOG_H
#define CB_AVLOG_H

/* Install the bridge (process-wide; idempotent). */
void cb_avlog_install(void);

#endif /* CB_AVLOG_H */

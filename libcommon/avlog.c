/*
 * avlog.c - FFmpeg's av_log callback writing into cb_log.
 */
#include "avlog.h"

#include <libavutil/log.h>
#include <stdarg.h>
#include <string.h>

#include "log.h"

static void avlog_line(void *avcl, int level, const char *fmt, va_list vl)
{
    static _Thread_local char line[1024];
    static _Thread_local size_t used;
    static _Thread_local int print_prefix = 1;
    size_t n;

    if (level > AV_LOG_WARNING)
        return;
    av_log_format_line2(avcl, level, fmt, vl, line + used, (int) (sizeof(line) - used),
                        &print_prefix);
    n = strlen(line + used);
    used += n;
    /* FFmpeg writes a line in pieces: wait for its end (or a full buffer) */
    if (used > 0 && line[used - 1] != '\n' && used < sizeof(line) - 1)
        return;
    while (used > 0 && (line[used - 1] == '\n' || line[used - 1] == '\r'))
        line[--used] = '\0';
    if (used > 0) {
        if (level <= AV_LOG_ERROR)
            cb_log_error("ffmpeg: %s", line);
        else
            cb_log_warn("ffmpeg: %s", line);
    }
    used = 0;
    line[0] = '\0';
}

void cb_avlog_install(void)
{
    av_log_set_callback(avlog_line);
}

/*
 * packager_text.c - the manifest writers' appender and time format.
 */
#include "packager_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void pk_put(pk_text_t *w, const char *fmt, ...)
{
    va_list ap;

    if (w->err)
        return;
    va_start(ap, fmt);
    w->err = cb_buf_vappendf(w->b, fmt, ap);
    va_end(ap);
}

void pk_iso8601(int64_t ms, char out[32])
{
    time_t s = (time_t) (ms / 1000);
    struct tm tm;
    char date[24];

    gmtime_r(&s, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", date, (int) (ms % 1000));
}

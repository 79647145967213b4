/*
 * packager_text.c - the manifest writers' appender, time format and names.
 */
#include "packager_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

bool pk_name_ok(const char *s)
{
    size_t i, n = s ? strlen(s) : 0;

    if (n == 0 || n > 64 || s[0] == '.')
        return false;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

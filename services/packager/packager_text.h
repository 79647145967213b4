/*
 * packager_text.h - what the manifest writers share: an appender that keeps
 * the first failure (so the manifest code reads as the manifest does), and
 * wall-clock times in the ISO 8601 form both HLS and DASH use.
 */
#ifndef PACKAGER_TEXT_H
#define PACKAGER_TEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "defs.h"

typedef struct pk_text {
    cb_buf_t *b;
    int err; /* the first append that failed, 0 while all went in */
} pk_text_t;

/* Append formatted text unless an earlier append failed. */
void pk_put(pk_text_t *w, const char *fmt, ...) CB_PRINTF(2, 3);

/* "2026-11-22T02:10:00.000Z" for ms since the epoch; out has room for 32. */
void pk_iso8601(int64_t ms, char out[32]);

/*
 * A stream, asset or rendition name usable as one path segment of storage
 * keys and URLs: 1..64 of [A-Za-z0-9._-], not starting with '.'.
 */
bool pk_name_ok(const char *s);

#endif /* PACKAGER_TEXT_H */

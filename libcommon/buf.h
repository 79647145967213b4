/*
 * buf.h - a growable byte buffer with a hard maximum.
 *
 * Every buffer that input can grow has a limit (see STYLE.md): appending
 * past `max` fails with -E2BIG and leaves the buffer as it was, so callers
 * can answer "too big" instead of growing without bound (curl's dynbuf).
 * The content is always NUL-terminated (the NUL is not counted in len).
 *
 * Thread safety: none; a buffer belongs to one thread at a time.
 */
#ifndef CB_BUF_H
#define CB_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "defs.h"

typedef struct cb_buf {
    char *data; /* owned; NULL until the first append */
    size_t len; /* bytes in use, excluding the trailing NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* largest len allowed */
} cb_buf_t;

/* Initialise an empty buffer that may hold at most max_len bytes. */
void cb_buf_init(cb_buf_t *b, size_t max_len);

/* Free the memory; the buffer is empty (and reusable) afterwards. */
void cb_buf_release(cb_buf_t *b);

/* Forget the content but keep the memory. */
void cb_buf_reset(cb_buf_t *b);

/* Append bytes. Returns 0, -E2BIG past the maximum, or -ENOMEM. */
int cb_buf_append(cb_buf_t *b, const void *data, size_t len);

/* Append a NUL-terminated string. */
int cb_buf_append_str(cb_buf_t *b, const char *s);

/* Append printf-formatted text. */
int cb_buf_appendf(cb_buf_t *b, const char *fmt, ...) CB_PRINTF(2, 3);
int cb_buf_vappendf(cb_buf_t *b, const char *fmt, va_list ap) CB_PRINTF(2, 0);

/*
 * Append (s, len) as a quoted JSON string, escaping quotes, backslashes and
 * control characters. Bytes that are not valid UTF-8 are replaced by U+FFFD
 * so that the output is always valid JSON.
 */
int cb_buf_append_json_string(cb_buf_t *b, const char *s, size_t len);

/* Drop the last n bytes (n <= len). */
void cb_buf_truncate(cb_buf_t *b, size_t new_len);

/*
 * Take the content: returns a NUL-terminated heap string the caller frees
 * (an empty string when nothing was appended) and leaves the buffer empty.
 * Returns NULL only when memory is exhausted.
 */
char *cb_buf_steal(cb_buf_t *b, size_t *len_out);

#endif /* CB_BUF_H */

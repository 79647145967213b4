/*
 * buf.c - bounded growable buffer; see buf.h.
 */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_buf_init(cb_buf_t *b, size_t max_len)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max_len;
}

void cb_buf_release(cb_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cb_buf_reset(cb_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Make room for `extra` more bytes plus the NUL. */
static int buf_reserve(cb_buf_t *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (extra > b->max - b->len)
        return -E2BIG;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    /* never allocate far beyond what the limit can use */
    if (cap > b->max + 1)
        cap = b->max + 1;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int cb_buf_append(cb_buf_t *b, const void *data, size_t len)
{
    int rc = buf_reserve(b, len);

    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int cb_buf_append_str(cb_buf_t *b, const char *s)
{
    return cb_buf_append(b, s, strlen(s));
}

int cb_buf_vappendf(cb_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    rc = buf_reserve(b, (size_t) n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    b->len += (size_t) n;
    return 0;
}

int cb_buf_appendf(cb_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cb_buf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Length of the valid UTF-8 sequence starting at s, or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    size_t n, i;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* reject overlong forms, surrogates and values past U+10FFFF */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return n;
}

int cb_buf_append_json_string(cb_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0, start_len = b->len;
    int rc = cb_buf_append(b, "\"", 1);

    while (rc == 0 && i < len) {
        unsigned char c = p[i];
        size_t run = i, n;

        /* copy the longest run that needs no escaping in one go */
        while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
            run++;
        if (run > i) {
            rc = cb_buf_append(b, p + i, run - i);
            i = run;
            continue;
        }
        c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char) c };
            rc = cb_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            switch (c) {
            case '\n':
                rc = cb_buf_append(b, "\\n", 2);
                break;
            case '\r':
                rc = cb_buf_append(b, "\\r", 2);
                break;
            case '\t':
                rc = cb_buf_append(b, "\\t", 2);
                break;
            default:
                rc = cb_buf_append(b, esc, 6);
            }
            i++;
        } else {
            n = utf8_seq_len(p + i, len - i);
            if (n) {
                rc = cb_buf_append(b, p + i, n);
                i += n;
            } else {
                rc = cb_buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            }
        }
    }
    if (rc == 0)
        rc = cb_buf_append(b, "\"", 1);
    if (rc)
        cb_buf_truncate(b, start_len);
    return rc;
}

void cb_buf_truncate(cb_buf_t *b, size_t new_len)
{
    if (new_len >= b->len)
        return;
    b->len = new_len;
    b->data[new_len] = '\0';
}

char *cb_buf_steal(cb_buf_t *b, size_t *len_out)
{
    char *p = b->data;

    if (len_out)
        *len_out = b->len;
    if (!p)
        p = calloc(1, 1);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

/*
 * ingest_amf0.c - AMF0 decoder and encoder; see ingest_amf0.h.
 *
 * DESIGN: a recursive-descent decoder over (buf, len) with a shared budget
 * of nodes and a depth limit. Numbers are IEEE 754 doubles, big endian.
 */
#include "ingest_amf0.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
    int nodes;
} reader_t;

static int need(const reader_t *r, size_t n)
{
    return r->len - r->pos >= n ? 0 : -EINVAL;
}

static uint16_t rd16(reader_t *r)
{
    uint16_t v = (uint16_t) ((r->p[r->pos] << 8) | r->p[r->pos + 1]);

    r->pos += 2;
    return v;
}

static uint32_t rd32(reader_t *r)
{
    uint32_t v = ((uint32_t) r->p[r->pos] << 24) | ((uint32_t) r->p[r->pos + 1] << 16) |
                 ((uint32_t) r->p[r->pos + 2] << 8) | r->p[r->pos + 3];

    r->pos += 4;
    return v;
}

static double rd_double(reader_t *r)
{
    uint64_t u = 0;
    double d;
    int i;

    for (i = 0; i < 8; i++)
        u = (u << 8) | r->p[r->pos + (size_t) i];
    r->pos += 8;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* A length-prefixed string (the prefix already read); NULs are refused. */
static int rd_string(reader_t *r, size_t n, char **out, size_t *outlen)
{
    char *s;

    if (need(r, n) || memchr(r->p + r->pos, '\0', n))
        return -EINVAL;
    s = malloc(n + 1);
    if (!s)
        return -ENOMEM;
    memcpy(s, r->p + r->pos, n);
    s[n] = '\0';
    r->pos += n;
    *out = s;
    if (outlen)
        *outlen = n;
    return 0;
}

static int decode_value(reader_t *r, int depth, ingest_amf0_t **out);

/* Members "key, value" until the 00 00 09 end marker. */
static int decode_members(reader_t *r, int depth, ingest_amf0_t *obj)
{
    ingest_amf0_t **tail = &obj->child;
    int rc;

    for (;;) {
        uint16_t klen;
        char *key = NULL;
        ingest_amf0_t *v;

        if (need(r, 2))
            return -EINVAL;
        klen = rd16(r);
        if (klen == 0) {
            if (need(r, 1) || r->p[r->pos] != AMF0_OBJECT_END)
                return -EINVAL;
            r->pos++;
            return 0;
        }
        rc = rd_string(r, klen, &key, NULL);
        if (rc)
            return rc;
        rc = decode_value(r, depth + 1, &v);
        if (rc) {
            free(key);
            return rc;
        }
        v->key = key;
        *tail = v;
        tail = &v->next;
    }
}

static int decode_value(reader_t *r, int depth, ingest_amf0_t **out)
{
    ingest_amf0_t *v;
    uint8_t marker;
    uint32_t n, i;
    int rc = 0;

    if (depth > AMF0_MAX_DEPTH || ++r->nodes > AMF0_MAX_NODES)
        return -E2BIG;
    if (need(r, 1))
        return -EINVAL;
    marker = r->p[r->pos++];
    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->type = (ingest_amf0_type_t) marker;
    switch (marker) {
    case AMF0_NUMBER:
        rc = need(r, 8);
        if (rc == 0)
            v->number = rd_double(r);
        break;
    case AMF0_BOOLEAN:
        rc = need(r, 1);
        if (rc == 0)
            v->boolean = r->p[r->pos++] != 0;
        break;
    case AMF0_STRING:
        rc = need(r, 2);
        if (rc == 0)
            rc = rd_string(r, rd16(r), &v->string, &v->string_len);
        break;
    case AMF0_LONG_STRING:
        v->type = AMF0_STRING;
        rc = need(r, 4);
        if (rc == 0)
            rc = rd_string(r, rd32(r), &v->string, &v->string_len);
        break;
    case AMF0_NULL:
    case AMF0_UNDEFINED:
        break;
    case AMF0_DATE:
        /* 8-byte milliseconds + 2-byte time zone: kept as a number */
        rc = need(r, 10);
        if (rc == 0) {
            v->type = AMF0_NUMBER;
            v->number = rd_double(r);
            r->pos += 2;
        }
        break;
    case AMF0_ECMA_ARRAY:
        /* an associative array: a count (advisory) then members like an object */
        rc = need(r, 4);
        if (rc == 0) {
            r->pos += 4;
            v->type = AMF0_OBJECT;
            rc = decode_members(r, depth, v);
        }
        break;
    case AMF0_OBJECT:
        rc = decode_members(r, depth, v);
        break;
    case AMF0_STRICT_ARRAY: {
        ingest_amf0_t **tail = &v->child;

        rc = need(r, 4);
        if (rc)
            break;
        n = rd32(r);
        for (i = 0; i < n && rc == 0; i++) {
            ingest_amf0_t *item;
            rc = decode_value(r, depth + 1, &item);
            if (rc == 0) {
                *tail = item;
                tail = &item->next;
            }
        }
        break;
    }
    default:
        rc = -EINVAL; /* references, AMF3 switch, movieclip, XML, typed objects */
    }
    if (rc) {
        ingest_amf0_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

int ingest_amf0_decode(const uint8_t *buf, size_t len, ingest_amf0_t **out)
{
    reader_t r = { buf, len, 0, 0 };
    int rc = decode_value(&r, 0, out);

    return rc ? rc : (int) r.pos;
}

int ingest_amf0_decode_all(const uint8_t *buf, size_t len, ingest_amf0_t **out, int max)
{
    reader_t r = { buf, len, 0, 0 };
    int n = 0, rc, i;

    while (r.pos < len && n < max) {
        rc = decode_value(&r, 0, &out[n]);
        if (rc) {
            for (i = 0; i < n; i++)
                ingest_amf0_free(out[i]);
            return rc;
        }
        n++;
    }
    return n;
}

void ingest_amf0_free(ingest_amf0_t *v)
{
    while (v) {
        ingest_amf0_t *next = v->next;
        ingest_amf0_free(v->child);
        free(v->string);
        free(v->key);
        free(v);
        v = next;
    }
}

const ingest_amf0_t *ingest_amf0_get(const ingest_amf0_t *obj, const char *key)
{
    const ingest_amf0_t *c;

    if (!obj || obj->type != AMF0_OBJECT)
        return NULL;
    for (c = obj->child; c; c = c->next) {
        if (c->key && strcmp(c->key, key) == 0)
            return c;
    }
    return NULL;
}

const char *ingest_amf0_get_string(const ingest_amf0_t *obj, const char *key)
{
    const ingest_amf0_t *v = ingest_amf0_get(obj, key);

    return v && v->type == AMF0_STRING ? v->string : NULL;
}

double ingest_amf0_get_number(const ingest_amf0_t *obj, const char *key, double def)
{
    const ingest_amf0_t *v = ingest_amf0_get(obj, key);

    return v && v->type == AMF0_NUMBER ? v->number : def;
}

/* ---- encoding ---- */

static int put_u16(cb_buf_t *b, size_t v)
{
    uint8_t x[2] = { (uint8_t) (v >> 8), (uint8_t) v };

    return cb_buf_append(b, x, 2);
}

int ingest_amf0_put_number(cb_buf_t *b, double v)
{
    uint8_t x[9];
    uint64_t u;
    int i;

    memcpy(&u, &v, sizeof(u));
    x[0] = AMF0_NUMBER;
    for (i = 0; i < 8; i++)
        x[1 + i] = (uint8_t) (u >> (56 - 8 * i));
    return cb_buf_append(b, x, sizeof(x));
}

int ingest_amf0_put_bool(cb_buf_t *b, bool v)
{
    uint8_t x[2] = { AMF0_BOOLEAN, v ? 1 : 0 };

    return cb_buf_append(b, x, 2);
}

int ingest_amf0_put_string(cb_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    uint8_t m = AMF0_STRING;
    int rc;

    if (n > 0xFFFF)
        return -E2BIG;
    rc = cb_buf_append(b, &m, 1);
    if (rc == 0)
        rc = put_u16(b, n);
    if (rc == 0)
        rc = cb_buf_append(b, s, n);
    return rc;
}

int ingest_amf0_put_null(cb_buf_t *b)
{
    uint8_t m = AMF0_NULL;

    return cb_buf_append(b, &m, 1);
}

int ingest_amf0_put_object_start(cb_buf_t *b)
{
    uint8_t m = AMF0_OBJECT;

    return cb_buf_append(b, &m, 1);
}

int ingest_amf0_put_key(cb_buf_t *b, const char *key)
{
    size_t n = strlen(key);
    int rc = put_u16(b, n);

    return rc ? rc : cb_buf_append(b, key, n);
}

int ingest_amf0_put_object_end(cb_buf_t *b)
{
    static const uint8_t end[3] = { 0, 0, AMF0_OBJECT_END };

    return cb_buf_append(b, end, 3);
}

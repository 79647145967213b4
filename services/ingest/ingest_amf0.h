/*
 * ingest_amf0.h - AMF0, the value encoding of RTMP commands and metadata.
 *
 * Decoding reads untrusted bytes from publishers: every read is bounds
 * checked, nesting is limited, and a value tree has a maximum number of
 * nodes, so a hostile byte stream costs an error, never a crash or an
 * unbounded allocation. Only what RTMP publishing uses is kept: numbers,
 * booleans, strings, null/undefined, objects, ECMA arrays and strict
 * arrays (dates are skipped, references and AMF3 switches are errors).
 *
 * Thread safety: none needed; values belong to their caller.
 */
#ifndef INGEST_AMF0_H
#define INGEST_AMF0_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum ingest_amf0_type {
    AMF0_NUMBER = 0x00,
    AMF0_BOOLEAN = 0x01,
    AMF0_STRING = 0x02,
    AMF0_OBJECT = 0x03,
    AMF0_NULL = 0x05,
    AMF0_UNDEFINED = 0x06,
    AMF0_ECMA_ARRAY = 0x08,
    AMF0_OBJECT_END = 0x09,
    AMF0_STRICT_ARRAY = 0x0A,
    AMF0_DATE = 0x0B,
    AMF0_LONG_STRING = 0x0C,
} ingest_amf0_type_t;

#define AMF0_MAX_DEPTH 16
#define AMF0_MAX_NODES 1024

typedef struct ingest_amf0 ingest_amf0_t;

/* A decoded value. Objects and arrays are lists of children (key NULL for arrays). */
struct ingest_amf0 {
    ingest_amf0_type_t type; /* LONG_STRING decodes as STRING, ECMA_ARRAY as OBJECT */
    double number;
    bool boolean;
    char *string; /* NUL-terminated; may contain no NUL itself */
    size_t string_len;
    char *key; /* member name inside an object */
    ingest_amf0_t *child, *next;
};

/*
 * Decode one value from (buf, len). Returns the bytes consumed (> 0) with
 * *out a new value to free with ingest_amf0_free(), or -EINVAL for bytes that
 * are not AMF0 we accept, -E2BIG past the depth or node limits.
 */
int ingest_amf0_decode(const uint8_t *buf, size_t len, ingest_amf0_t **out);

/* Decode values until the buffer ends; at most max values. Returns the count or < 0. */
int ingest_amf0_decode_all(const uint8_t *buf, size_t len, ingest_amf0_t **out, int max);

void ingest_amf0_free(ingest_amf0_t *v);

/* Member of an object by name, or NULL. */
const ingest_amf0_t *ingest_amf0_get(const ingest_amf0_t *obj, const char *key);
/* Convenience: the member as a string / number, or NULL / the default. */
const char *ingest_amf0_get_string(const ingest_amf0_t *obj, const char *key);
double ingest_amf0_get_number(const ingest_amf0_t *obj, const char *key, double def);

/* ---- encoding (into a bounded buffer; -E2BIG when full) ---- */
int ingest_amf0_put_number(cb_buf_t *b, double v);
int ingest_amf0_put_bool(cb_buf_t *b, bool v);
int ingest_amf0_put_string(cb_buf_t *b, const char *s);
int ingest_amf0_put_null(cb_buf_t *b);
int ingest_amf0_put_object_start(cb_buf_t *b);
int ingest_amf0_put_key(cb_buf_t *b, const char *key); /* a member name inside an object */
int ingest_amf0_put_object_end(cb_buf_t *b);

#endif /* INGEST_AMF0_H */

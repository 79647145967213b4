/*
 * jsonv.h - JSON documents checked against a field table, decoded into C
 * structs and encoded back.
 *
 * Incoming JSON (REST bodies, Kafka and NATS messages) is checked against a
 * table before any field is read; an error names the field by its path
 * ("renditions[2].width") so a 400 or a dead-letter reason tells the sender
 * exactly what to fix (Janus janus_json_parameter). The same tables drive
 * the code generated from proto/.
 *
 * Rules: unknown members are ignored; a required member that is missing or
 * has the wrong type is an error; optional members that are absent keep the
 * zero value (the decoder zeroes the struct first). Integers must be JSON
 * integers (3.0 is not an integer); doubles accept both. An optional INT
 * or BOOL may name its value when absent (`def`), so that absent and 0 (or
 * false) can differ; the encoder then leaves out the default instead.
 *
 * Thread safety: tables are const; functions are reentrant.
 */
#ifndef CB_JSONV_H
#define CB_JSONV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum cb_jsonv_type {
    CB_JSONV_STRING, /* char *, heap (NULL when absent) */
    CB_JSONV_INT,    /* int64_t */
    CB_JSONV_DOUBLE, /* double */
    CB_JSONV_BOOL,   /* bool */
    CB_JSONV_ENUM,   /* int: index into enum_values */
    CB_JSONV_OBJECT, /* nested struct stored inline, described by `fields` */
    CB_JSONV_ARRAY,  /* pointer to elements + size_t count; see elem_* */
    CB_JSONV_JSON,   /* json_t * (own reference): any JSON object, kept as is */
} cb_jsonv_type_t;

#define CB_JSONV_REQUIRED 0x1u /* must be present (and not null) */
#define CB_JSONV_IDENT    0x2u /* STRING: 1..max of [A-Za-z0-9_.:-], not starting with '.' */

typedef struct cb_jsonv_field {
    const char *name;
    cb_jsonv_type_t type;
    unsigned flags;
    size_t offset; /* offsetof(struct, member) */
    int64_t min;   /* INT: smallest value; STRING: shortest length; ARRAY: fewest items */
    int64_t max;   /* INT: largest value; STRING: longest length; ARRAY: most items */
                   /* (min == max == 0: no bound) */
    int64_t def;   /* INT: the value when absent (0 unless set); BOOL: nonzero for true */
    const char *const *enum_values;      /* ENUM: NULL-terminated names */
    const struct cb_jsonv_field *fields; /* OBJECT, or ARRAY of OBJECT: element table */
    cb_jsonv_type_t elem_type;           /* ARRAY: STRING, INT, DOUBLE or OBJECT */
    size_t elem_size;                    /* ARRAY: sizeof one element */
    size_t count_offset;                 /* ARRAY: offsetof the size_t count */
} cb_jsonv_field_t;

typedef struct cb_jsonv_error {
    char field[128]; /* path of the offending member, "" for the document itself */
    char text[320];  /* "field 'seq': expected an integer" */
} cb_jsonv_error_t;

/*
 * Check `obj` against `fields` and store the values into `dst` (zeroed
 * first). Returns 0, or -EINVAL with *err filled. On error the struct may
 * hold partial data: cb_jsonv_release() it either way.
 * dst may be NULL to validate only.
 */
int cb_jsonv_decode(const cb_jsonv_field_t *fields, const json_t *obj, void *dst,
                    cb_jsonv_error_t *err);

/* Parse (buf, len) as one JSON object, then cb_jsonv_decode(). */
int cb_jsonv_decode_buf(const cb_jsonv_field_t *fields, const char *buf, size_t len, void *dst,
                        cb_jsonv_error_t *err);

/*
 * Parse (buf, len) into a JSON object. -EINVAL with err naming the position
 * if it is not valid JSON or not an object. Duplicate keys are rejected.
 */
int cb_jsonv_parse(const char *buf, size_t len, json_t **out, cb_jsonv_error_t *err);

/*
 * Build a JSON object from the struct (new reference; NULL on ENOMEM or when
 * a required string is NULL). Optional members at their zero value (0,
 * false, NULL, empty array, first enum value) are left out, like protobuf's
 * JSON mapping: they decode to the same struct.
 */
json_t *cb_jsonv_encode(const cb_jsonv_field_t *fields, const void *src);

/* Zero the members a table describes, so that release() is safe on them. */
void cb_jsonv_init(const cb_jsonv_field_t *fields, void *dst);

/* Free what decode allocated inside the struct and zero those members. */
void cb_jsonv_release(const cb_jsonv_field_t *fields, void *dst);

/* True if s is a valid identifier (see CB_JSONV_IDENT) of at most max_len bytes. */
bool cb_jsonv_is_ident(const char *s, size_t max_len);

#endif /* CB_JSONV_H */

/*
 * jsonv.c - table-driven JSON validation, decoding and encoding; see jsonv.h.
 *
 * DESIGN: one recursive walk per operation, driven by the field tables.
 * The path of the member being checked is built on the stack so that an
 * error can name "renditions[2].segments[0].path" without allocating.
 */
#include "jsonv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"

#define PATH_MAX_LEN 128

static void fail(cb_jsonv_error_t *err, const char *path, const char *fmt, ...) CB_PRINTF(3, 4);

static void fail(cb_jsonv_error_t *err, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err->field, sizeof(err->field), "%s", path);
    if (path[0])
        snprintf(err->text, sizeof(err->text), "field '%s': %s", path, msg);
    else
        snprintf(err->text, sizeof(err->text), "%s", msg);
}

static bool has_bounds(const cb_jsonv_field_t *f)
{
    return f->min != 0 || f->max != 0;
}

bool cb_jsonv_is_ident(const char *s, size_t max_len)
{
    size_t i;

    if (!s || !s[0] || s[0] == '.')
        return false;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (i >= max_len)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

static int decode_object(const cb_jsonv_field_t *fields, const json_t *obj, void *dst, char *path,
                         size_t plen, cb_jsonv_error_t *err);

/* Check and store one scalar or nested value of type `type`. */
static int decode_value(const cb_jsonv_field_t *f, cb_jsonv_type_t type, const json_t *v, void *p,
                        char *path, size_t plen, cb_jsonv_error_t *err)
{
    const char *s;
    size_t n, i;
    json_int_t iv;
    int idx;

    switch (type) {
    case CB_JSONV_STRING:
        if (!json_is_string(v)) {
            fail(err, path, "expected a string, got %s", json_type_name(v));
            return -EINVAL;
        }
        s = json_string_value(v);
        n = json_string_length(v);
        if (strlen(s) != n) {
            fail(err, path, "contains a NUL character");
            return -EINVAL;
        }
        if (has_bounds(f) && ((int64_t) n < f->min || (int64_t) n > f->max)) {
            if (f->min > 0 && n == 0)
                fail(err, path, "must not be empty");
            else
                fail(err, path, "length %zu is out of range %" PRId64 "..%" PRId64, n, f->min,
                     f->max);
            return -EINVAL;
        }
        if ((f->flags & CB_JSONV_IDENT) && !cb_jsonv_is_ident(s, SIZE_MAX)) {
            fail(err, path,
                 "must be an identifier of letters, digits and _ . : - "
                 "(not starting with '.')");
            return -EINVAL;
        }
        if (p) {
            char *copy = strdup(s);
            if (!copy) {
                fail(err, path, "out of memory");
                return -ENOMEM;
            }
            free(*(char **) p);
            *(char **) p = copy;
        }
        return 0;
    case CB_JSONV_INT:
        if (!json_is_integer(v)) {
            fail(err, path, "expected an integer, got %s", json_type_name(v));
            return -EINVAL;
        }
        iv = json_integer_value(v);
        if (has_bounds(f) && ((int64_t) iv < f->min || (int64_t) iv > f->max)) {
            fail(err, path, "%" PRId64 " is out of range %" PRId64 "..%" PRId64, (int64_t) iv,
                 f->min, f->max);
            return -EINVAL;
        }
        if (p)
            *(int64_t *) p = (int64_t) iv;
        return 0;
    case CB_JSONV_DOUBLE:
        if (!json_is_number(v)) {
            fail(err, path, "expected a number, got %s", json_type_name(v));
            return -EINVAL;
        }
        if (has_bounds(f) &&
            (json_number_value(v) < (double) f->min || json_number_value(v) > (double) f->max)) {
            fail(err, path, "%g is out of range %" PRId64 "..%" PRId64, json_number_value(v),
                 f->min, f->max);
            return -EINVAL;
        }
        if (p)
            *(double *) p = json_number_value(v);
        return 0;
    case CB_JSONV_BOOL:
        if (!json_is_boolean(v)) {
            fail(err, path, "expected a boolean, got %s", json_type_name(v));
            return -EINVAL;
        }
        if (p)
            *(bool *) p = json_is_true(v);
        return 0;
    case CB_JSONV_ENUM:
        if (!json_is_string(v)) {
            fail(err, path, "expected a string, got %s", json_type_name(v));
            return -EINVAL;
        }
        s = json_string_value(v);
        for (idx = 0; f->enum_values[idx]; idx++) {
            if (strcmp(s, f->enum_values[idx]) == 0)
                break;
        }
        if (!f->enum_values[idx]) {
            char list[200] = "";
            size_t len = 0;
            for (i = 0; f->enum_values[i] && len < sizeof(list) - 1; i++)
                len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s", i ? "|" : "",
                                         f->enum_values[i]);
            fail(err, path, "'%.64s' is not one of %s", s, list);
            return -EINVAL;
        }
        if (p)
            *(int *) p = idx;
        return 0;
    case CB_JSONV_OBJECT:
        if (!json_is_object(v)) {
            fail(err, path, "expected an object, got %s", json_type_name(v));
            return -EINVAL;
        }
        return decode_object(f->fields, v, p, path, plen, err);
    case CB_JSONV_JSON:
        if (!json_is_object(v)) {
            fail(err, path, "expected an object, got %s", json_type_name(v));
            return -EINVAL;
        }
        if (p) {
            json_decref(*(json_t **) p);
            *(json_t **) p = json_incref((json_t *) v);
        }
        return 0;
    case CB_JSONV_ARRAY:
        break; /* arrays of arrays are not part of any contract */
    }
    CB_ASSERT(!"unsupported jsonv element type");
    return -EINVAL;
}

static int decode_array(const cb_jsonv_field_t *f, const json_t *v, void *p, char *path,
                        size_t plen, cb_jsonv_error_t *err)
{
    size_t n, i, base = strlen(path);
    char *elems = NULL;
    int rc;

    if (!json_is_array(v)) {
        fail(err, path, "expected an array, got %s", json_type_name(v));
        return -EINVAL;
    }
    n = json_array_size(v);
    if (has_bounds(f) && ((int64_t) n < f->min || (int64_t) n > f->max)) {
        fail(err, path, "has %zu items, expected %" PRId64 "..%" PRId64, n, f->min, f->max);
        return -EINVAL;
    }
    if (p && n) {
        elems = calloc(n, f->elem_size);
        if (!elems) {
            fail(err, path, "out of memory");
            return -ENOMEM;
        }
        /* owned by the struct from here on, so release() frees partial arrays too */
        *(void **) p = elems;
        *(size_t *) ((char *) p - f->offset + f->count_offset) = n;
    }
    for (i = 0; i < n; i++) {
        snprintf(path + base, plen - base, "[%zu]", i);
        rc = decode_value(f, f->elem_type, json_array_get(v, i),
                          elems ? elems + i * f->elem_size : NULL, path, plen, err);
        if (rc)
            return rc;
    }
    path[base] = '\0';
    return 0;
}

static int decode_object(const cb_jsonv_field_t *fields, const json_t *obj, void *dst, char *path,
                         size_t plen, cb_jsonv_error_t *err)
{
    const cb_jsonv_field_t *f;
    size_t base = strlen(path);
    int rc;

    for (f = fields; f->name; f++) {
        const json_t *v = json_object_get(obj, f->name);
        void *p = dst ? (char *) dst + f->offset : NULL;

        snprintf(path + base, plen - base, "%s%s", base ? "." : "", f->name);
        if (!v || json_is_null(v)) {
            if (f->flags & CB_JSONV_REQUIRED) {
                fail(err, path, "required");
                return -EINVAL;
            }
            continue;
        }
        if (f->type == CB_JSONV_ARRAY)
            rc = decode_array(f, v, p, path, plen, err);
        else
            rc = decode_value(f, f->type, v, p, path, plen, err);
        if (rc)
            return rc;
    }
    path[base] = '\0';
    return 0;
}

/* Only the members a table describes: the struct may hold more. */
void cb_jsonv_init(const cb_jsonv_field_t *fields, void *dst)
{
    const cb_jsonv_field_t *f;

    for (f = fields; f->name; f++) {
        char *p = (char *) dst + f->offset;
        switch (f->type) {
        case CB_JSONV_STRING:
            *(char **) p = NULL;
            break;
        case CB_JSONV_INT:
            *(int64_t *) p = f->def;
            break;
        case CB_JSONV_DOUBLE:
            *(double *) p = 0;
            break;
        case CB_JSONV_BOOL:
            *(bool *) p = f->def != 0;
            break;
        case CB_JSONV_ENUM:
            *(int *) p = 0;
            break;
        case CB_JSONV_OBJECT:
            cb_jsonv_init(f->fields, p);
            break;
        case CB_JSONV_ARRAY:
            *(void **) p = NULL;
            *(size_t *) ((char *) dst + f->count_offset) = 0;
            break;
        case CB_JSONV_JSON:
            *(json_t **) p = NULL;
            break;
        }
    }
}

int cb_jsonv_decode(const cb_jsonv_field_t *fields, const json_t *obj, void *dst,
                    cb_jsonv_error_t *err)
{
    char path[PATH_MAX_LEN] = "";

    if (dst)
        cb_jsonv_init(fields, dst);
    if (!json_is_object(obj)) {
        fail(err, "", "expected a JSON object, got %s", obj ? json_type_name(obj) : "nothing");
        return -EINVAL;
    }
    return decode_object(fields, obj, dst, path, sizeof(path), err);
}

int cb_jsonv_parse(const char *buf, size_t len, json_t **out, cb_jsonv_error_t *err)
{
    json_error_t jerr;
    json_t *root;

    root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fail(err, "", "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
        return -EINVAL;
    }
    if (!json_is_object(root)) {
        fail(err, "", "expected a JSON object, got %s", json_type_name(root));
        json_decref(root);
        return -EINVAL;
    }
    *out = root;
    return 0;
}

int cb_jsonv_decode_buf(const cb_jsonv_field_t *fields, const char *buf, size_t len, void *dst,
                        cb_jsonv_error_t *err)
{
    json_t *root;
    int rc;

    if (dst)
        cb_jsonv_init(fields, dst);
    rc = cb_jsonv_parse(buf, len, &root, err);
    if (rc)
        return rc;
    rc = cb_jsonv_decode(fields, root, dst, err);
    json_decref(root);
    return rc;
}

static json_t *encode_value(const cb_jsonv_field_t *f, cb_jsonv_type_t type, const void *p)
{
    const char *s;
    int idx;

    switch (type) {
    case CB_JSONV_STRING:
        s = *(char *const *) p;
        return s ? json_string(s) : NULL;
    case CB_JSONV_INT:
        return json_integer((json_int_t) * (const int64_t *) p);
    case CB_JSONV_DOUBLE:
        return json_real(*(const double *) p);
    case CB_JSONV_BOOL:
        return json_boolean(*(const bool *) p);
    case CB_JSONV_ENUM:
        idx = *(const int *) p;
        CB_ASSERT(idx >= 0);
        return json_string(f->enum_values[idx]);
    case CB_JSONV_OBJECT:
        return cb_jsonv_encode(f->fields, p);
    case CB_JSONV_JSON:
        return *(json_t *const *) p ? json_incref(*(json_t *const *) p) : NULL;
    case CB_JSONV_ARRAY:
        break;
    }
    CB_ASSERT(!"unsupported jsonv element type");
    return NULL;
}

/* Optional members at their zero value are left out: they decode the same. */
static bool is_zero(const cb_jsonv_field_t *f, const void *src)
{
    const char *p = (const char *) src + f->offset;
    const cb_jsonv_field_t *sub;

    switch (f->type) {
    case CB_JSONV_STRING:
        return *(char *const *) p == NULL;
    case CB_JSONV_INT:
        return *(const int64_t *) p == f->def;
    case CB_JSONV_DOUBLE:
        return *(const double *) p == 0.0;
    case CB_JSONV_BOOL:
        return *(const bool *) p == (f->def != 0);
    case CB_JSONV_ENUM:
        return *(const int *) p == 0;
    case CB_JSONV_JSON:
        return *(json_t *const *) p == NULL;
    case CB_JSONV_ARRAY:
        return *(const size_t *) ((const char *) src + f->count_offset) == 0;
    case CB_JSONV_OBJECT:
        for (sub = f->fields; sub->name; sub++) {
            if (!is_zero(sub, p))
                return false;
        }
        return true;
    }
    return false;
}

json_t *cb_jsonv_encode(const cb_jsonv_field_t *fields, const void *src)
{
    const cb_jsonv_field_t *f;
    json_t *obj = json_object();

    if (!obj)
        return NULL;
    for (f = fields; f->name; f++) {
        const char *p = (const char *) src + f->offset;
        json_t *v;

        if (!(f->flags & CB_JSONV_REQUIRED) && is_zero(f, src))
            continue;
        if (f->type == CB_JSONV_ARRAY) {
            const char *elems = *(char *const *) p;
            size_t n = *(const size_t *) ((const char *) src + f->count_offset), i;
            v = json_array();
            for (i = 0; v && i < n; i++) {
                json_t *e = encode_value(f, f->elem_type, elems + i * f->elem_size);
                if (!e || json_array_append_new(v, e)) {
                    json_decref(v);
                    v = NULL;
                }
            }
            if (!v)
                goto fail;
        } else {
            v = encode_value(f, f->type, p);
            if (!v)
                goto fail; /* a required string left NULL encodes as nothing: a bug */
        }
        if (json_object_set_new(obj, f->name, v))
            goto fail;
    }
    return obj;

fail:
    json_decref(obj);
    return NULL;
}

static void release_value(const cb_jsonv_field_t *f, cb_jsonv_type_t type, void *p)
{
    switch (type) {
    case CB_JSONV_STRING:
        free(*(char **) p);
        *(char **) p = NULL;
        break;
    case CB_JSONV_OBJECT:
        cb_jsonv_release(f->fields, p);
        break;
    case CB_JSONV_JSON:
        json_decref(*(json_t **) p);
        *(json_t **) p = NULL;
        break;
    default:
        break;
    }
}

void cb_jsonv_release(const cb_jsonv_field_t *fields, void *dst)
{
    const cb_jsonv_field_t *f;

    for (f = fields; f->name; f++) {
        char *p = (char *) dst + f->offset;
        if (f->type == CB_JSONV_ARRAY) {
            char *elems = *(char **) p;
            size_t *count = (size_t *) ((char *) dst + f->count_offset), i;
            for (i = 0; elems && i < *count; i++)
                release_value(f, f->elem_type, elems + i * f->elem_size);
            free(elems);
            *(char **) p = NULL;
            *count = 0;
        } else {
            release_value(f, f->type, p);
        }
    }
}

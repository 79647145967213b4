/* Unit tests for libcommon/jsonv. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonv.h"

typedef struct seg {
    char *path;
    int64_t dur;
} seg_t;

typedef struct inner {
    int64_t w;
    bool on;
} inner_t;

typedef struct doc {
    char *id;
    int64_t n;
    double ratio;
    int mode;
    inner_t inner;
    seg_t *segs;
    size_t segs_count;
    char **tags;
    size_t tags_count;
    json_t *extra;
} doc_t;

static const char *const modes[] = { "live", "vod", NULL };

static const cb_jsonv_field_t seg_fields[] = {
    { .name = "path",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(seg_t, path),
      .min = 1,
      .max = 64 },
    { .name = "dur",
      .type = CB_JSONV_INT,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(seg_t, dur),
      .min = 1,
      .max = 1000 },
    { .name = NULL },
};

static const cb_jsonv_field_t inner_fields[] = {
    { .name = "w", .type = CB_JSONV_INT, .offset = offsetof(inner_t, w) },
    { .name = "on", .type = CB_JSONV_BOOL, .offset = offsetof(inner_t, on) },
    { .name = NULL },
};

static const cb_jsonv_field_t doc_fields[] = {
    { .name = "id",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED | CB_JSONV_IDENT,
      .offset = offsetof(doc_t, id),
      .max = 16 },
    { .name = "n", .type = CB_JSONV_INT, .offset = offsetof(doc_t, n), .min = 0, .max = 10 },
    { .name = "ratio", .type = CB_JSONV_DOUBLE, .offset = offsetof(doc_t, ratio) },
    { .name = "mode",
      .type = CB_JSONV_ENUM,
      .offset = offsetof(doc_t, mode),
      .enum_values = modes },
    { .name = "inner",
      .type = CB_JSONV_OBJECT,
      .offset = offsetof(doc_t, inner),
      .fields = inner_fields },
    { .name = "segs",
      .type = CB_JSONV_ARRAY,
      .offset = offsetof(doc_t, segs),
      .max = 4,
      .elem_type = CB_JSONV_OBJECT,
      .elem_size = sizeof(seg_t),
      .count_offset = offsetof(doc_t, segs_count),
      .fields = seg_fields },
    { .name = "tags",
      .type = CB_JSONV_ARRAY,
      .offset = offsetof(doc_t, tags),
      .max = 4,
      .elem_type = CB_JSONV_STRING,
      .elem_size = sizeof(char *),
      .count_offset = offsetof(doc_t, tags_count) },
    { .name = "extra", .type = CB_JSONV_JSON, .offset = offsetof(doc_t, extra) },
    { .name = NULL },
};

static int decode(const char *text, doc_t *d, cb_jsonv_error_t *e)
{
    return cb_jsonv_decode_buf(doc_fields, text, strlen(text), d, e);
}

static void test_decode_full(void **state)
{
    const char *text = "{\"id\":\"s-1\",\"n\":3,\"ratio\":2,\"mode\":\"vod\",\"unknown\":[1],"
                       "\"inner\":{\"w\":7,\"on\":true},"
                       "\"segs\":[{\"path\":\"a\",\"dur\":5},{\"path\":\"b\",\"dur\":6}],"
                       "\"tags\":[\"x\",\"y\"],\"extra\":{\"k\":1}}";
    cb_jsonv_error_t e;
    doc_t d;

    (void) state;
    assert_int_equal(decode(text, &d, &e), 0);
    assert_string_equal(d.id, "s-1");
    assert_int_equal(d.n, 3);
    assert_true(d.ratio == 2.0);
    assert_int_equal(d.mode, 1);
    assert_int_equal(d.inner.w, 7);
    assert_true(d.inner.on);
    assert_int_equal(d.segs_count, 2);
    assert_string_equal(d.segs[1].path, "b");
    assert_int_equal(d.segs[1].dur, 6);
    assert_int_equal(d.tags_count, 2);
    assert_string_equal(d.tags[0], "x");
    assert_int_equal(json_integer_value(json_object_get(d.extra, "k")), 1);
    cb_jsonv_release(doc_fields, &d);
    assert_null(d.id);
    assert_null(d.segs);
}

static void expect_error(const char *text, const char *field, const char *fragment)
{
    cb_jsonv_error_t e;
    doc_t d;

    assert_int_equal(decode(text, &d, &e), -EINVAL);
    cb_jsonv_release(doc_fields, &d);
    assert_string_equal(e.field, field);
    if (!strstr(e.text, fragment))
        fail_msg("error '%s' lacks '%s'", e.text, fragment);
}

static void test_errors_name_the_field(void **state)
{
    (void) state;
    expect_error("{}", "id", "field 'id': required");
    expect_error("{\"id\":null}", "id", "required");
    expect_error("{\"id\":5}", "id", "expected a string, got an integer");
    expect_error("{\"id\":\"a b\"}", "id", "identifier");
    expect_error("{\"id\":\".hidden\"}", "id", "identifier");
    expect_error("{\"id\":\"abcdefghijklmnopq\"}", "id", "length 17 is out of range 0..16");
    expect_error("{\"id\":\"a\",\"n\":11}", "n", "11 is out of range 0..10");
    expect_error("{\"id\":\"a\",\"n\":1.0}", "n", "expected an integer");
    expect_error("{\"id\":\"a\",\"mode\":\"live2\"}", "mode", "'live2' is not one of live|vod");
    expect_error("{\"id\":\"a\",\"inner\":[]}", "inner", "expected an object, got an array");
    expect_error("{\"id\":\"a\",\"inner\":{\"w\":\"x\"}}", "inner.w", "expected an integer");
    expect_error("{\"id\":\"a\",\"segs\":[{\"path\":\"a\",\"dur\":1},{\"dur\":1}]}", "segs[1].path",
                 "field 'segs[1].path': required");
    expect_error("{\"id\":\"a\",\"segs\":[{\"path\":\"\",\"dur\":1}]}", "segs[0].path",
                 "must not be empty");
    expect_error("{\"id\":\"a\",\"tags\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "tags",
                 "has 5 items, expected 0..4");
    expect_error("{\"id\":\"a\",\"extra\":3}", "extra", "expected an object");
    expect_error("{\"id\":\"a\\u0000b\"}", "", "invalid JSON");
    expect_error("[1]", "", "expected a JSON object, got an array");
    expect_error("{\"id\":\"a\",", "", "invalid JSON at line 1");
    expect_error("{\"id\":\"a\",\"id\":\"b\"}", "", "duplicate");
}

static void test_encode_round_trip(void **state)
{
    /* canonical form: optional members at their zero value are left out */
    const char *text = "{\"id\":\"x\",\"n\":1,\"ratio\":0.5,\"mode\":\"vod\",\"inner\":{\"w\":2,"
                       "\"on\":true},\"segs\":[{\"path\":\"p\",\"dur\":3}],\"tags\":[\"t\"],"
                       "\"extra\":{\"a\":[1,2]}}";
    cb_jsonv_error_t e;
    doc_t d, d2;
    json_t *j;
    char *out;

    (void) state;
    assert_int_equal(decode(text, &d, &e), 0);
    j = cb_jsonv_encode(doc_fields, &d);
    assert_non_null(j);
    out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(out, text);
    assert_int_equal(decode(out, &d2, &e), 0);
    assert_string_equal(d2.segs[0].path, "p");
    free(out);
    json_decref(j);
    /* zero values are left out and decode back to zero */
    cb_jsonv_release(doc_fields, &d2);
    d.inner.on = false;
    d.mode = 0;
    j = cb_jsonv_encode(doc_fields, &d);
    out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_null(strstr(out, "mode"));
    assert_null(strstr(out, "\"on\""));
    assert_int_equal(decode(out, &d2, &e), 0);
    assert_int_equal(d2.mode, 0);
    assert_false(d2.inner.on);
    free(out);
    json_decref(j);
    cb_jsonv_release(doc_fields, &d);
    cb_jsonv_release(doc_fields, &d2);
}

typedef struct window {
    int64_t dvr_s;
} window_t;

static const cb_jsonv_field_t window_fields[] = {
    { .name = "dvr_s",
      .type = CB_JSONV_INT,
      .offset = offsetof(window_t, dvr_s),
      .min = 0,
      .max = 14400,
      .def = 3600 },
    { .name = NULL },
};

static void test_int_default_tells_absent_from_zero(void **state)
{
    cb_jsonv_error_t e;
    window_t w;
    json_t *j;
    char *out;

    (void) state;
    assert_int_equal(cb_jsonv_decode_buf(window_fields, "{}", 2, &w, &e), 0);
    assert_int_equal(w.dvr_s, 3600);
    assert_int_equal(cb_jsonv_decode_buf(window_fields, "{\"dvr_s\":0}", 11, &w, &e), 0);
    assert_int_equal(w.dvr_s, 0);
    /* the encoder leaves out the default, not 0: both round-trip */
    j = cb_jsonv_encode(window_fields, &w);
    out = json_dumps(j, JSON_COMPACT);
    assert_string_equal(out, "{\"dvr_s\":0}");
    free(out);
    json_decref(j);
    w.dvr_s = 3600;
    j = cb_jsonv_encode(window_fields, &w);
    out = json_dumps(j, JSON_COMPACT);
    assert_string_equal(out, "{}");
    free(out);
    json_decref(j);
}

typedef struct flags {
    bool soft;
} flags_t;

static const cb_jsonv_field_t flags_fields[] = {
    { .name = "soft", .type = CB_JSONV_BOOL, .offset = offsetof(flags_t, soft), .def = 1 },
    { .name = NULL },
};

static void test_bool_default_tells_absent_from_false(void **state)
{
    cb_jsonv_error_t e;
    flags_t f;
    json_t *j;
    char *out;

    (void) state;
    assert_int_equal(cb_jsonv_decode_buf(flags_fields, "{}", 2, &f, &e), 0);
    assert_true(f.soft);
    assert_int_equal(cb_jsonv_decode_buf(flags_fields, "{\"soft\":false}", 14, &f, &e), 0);
    assert_false(f.soft);
    j = cb_jsonv_encode(flags_fields, &f);
    out = json_dumps(j, JSON_COMPACT);
    assert_string_equal(out, "{\"soft\":false}");
    free(out);
    json_decref(j);
    f.soft = true;
    j = cb_jsonv_encode(flags_fields, &f);
    out = json_dumps(j, JSON_COMPACT);
    assert_string_equal(out, "{}");
    free(out);
    json_decref(j);
}

static void test_validate_only_and_idents(void **state)
{
    cb_jsonv_error_t e;
    json_t *j = json_loads("{\"id\":\"ok\"}", 0, NULL);

    (void) state;
    assert_int_equal(cb_jsonv_decode(doc_fields, j, NULL, &e), 0);
    json_decref(j);
    assert_true(cb_jsonv_is_ident("stream-1:seg_2.x", 64));
    assert_false(cb_jsonv_is_ident("", 64));
    assert_false(cb_jsonv_is_ident("../etc", 64));
    assert_false(cb_jsonv_is_ident("a/b", 64));
    assert_false(cb_jsonv_is_ident("abcdef", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_full),
        cmocka_unit_test(test_errors_name_the_field),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_int_default_tells_absent_from_zero),
        cmocka_unit_test(test_bool_default_tells_absent_from_false),
        cmocka_unit_test(test_validate_only_and_idents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for the code generated from proto/: every sample message in
 * tests/data/messages decodes, re-encodes to the same JSON, and the
 * contract's rules hold (versions, required fields, topic tables).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "cb_proto.h"

static char *read_sample(const char *name, size_t *len)
{
    char path[256], chunk[4096];
    cb_buf_t b;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "tests/data/messages/%s.json", name);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (run from the repository root)", path);
    cb_buf_init(&b, 1 << 20);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        assert_int_equal(cb_buf_append(&b, chunk, n), 0);
    fclose(f);
    while (b.len && b.data[b.len - 1] == '\n')
        cb_buf_truncate(&b, b.len - 1);
    return cb_buf_steal(&b, len);
}

/* decode -> encode gives back the sample byte for byte (it is written in table order) */
#define ROUND_TRIP(Name, snake)                                                                    \
    static void test_round_trip_##snake(void **state)                                              \
    {                                                                                              \
        cb_proto_##snake##_t m;                                                                    \
        cb_jsonv_error_t e;                                                                        \
        size_t len, olen;                                                                          \
        char *text = read_sample(#Name, &len), *out;                                               \
        (void) state;                                                                              \
        if (cb_proto_##snake##_decode(text, len, &m, &e))                                          \
            fail_msg("%s: %s", #Name, e.text);                                                     \
        assert_int_equal(m.v, CB_PROTO_##Name##_VERSION_MACRO);                                    \
        out = cb_proto_##snake##_encode(&m, &olen);                                                \
        assert_non_null(out);                                                                      \
        assert_string_equal(out, text);                                                            \
        assert_int_equal(cb_proto_##snake##_validate(out, olen, &e), 0);                           \
        free(out);                                                                                 \
        cb_proto_##snake##_release(&m);                                                            \
        free(text);                                                                                \
    }

#define CB_PROTO_TranscodeJob_VERSION_MACRO        CB_PROTO_TRANSCODE_JOB_VERSION
#define CB_PROTO_TranscodeDone_VERSION_MACRO       CB_PROTO_TRANSCODE_DONE_VERSION
#define CB_PROTO_PackageEvent_VERSION_MACRO        CB_PROTO_PACKAGE_EVENT_VERSION
#define CB_PROTO_PurgeRequest_VERSION_MACRO        CB_PROTO_PURGE_REQUEST_VERSION
#define CB_PROTO_AnalyticsEvent_VERSION_MACRO      CB_PROTO_ANALYTICS_EVENT_VERSION
#define CB_PROTO_EntitlementCheck_VERSION_MACRO    CB_PROTO_ENTITLEMENT_CHECK_VERSION
#define CB_PROTO_EntitlementDecision_VERSION_MACRO CB_PROTO_ENTITLEMENT_DECISION_VERSION
#define CB_PROTO_DrmKeysGet_VERSION_MACRO          CB_PROTO_DRM_KEYS_GET_VERSION
#define CB_PROTO_DrmKey_VERSION_MACRO              CB_PROTO_DRM_KEY_VERSION
#define CB_PROTO_ErrorReply_VERSION_MACRO          CB_PROTO_ERROR_REPLY_VERSION

ROUND_TRIP(TranscodeJob, transcode_job)
ROUND_TRIP(TranscodeDone, transcode_done)
ROUND_TRIP(PackageEvent, package_event)
ROUND_TRIP(PurgeRequest, purge_request)
ROUND_TRIP(AnalyticsEvent, analytics_event)
ROUND_TRIP(EntitlementCheck, entitlement_check)
ROUND_TRIP(EntitlementDecision, entitlement_decision)
ROUND_TRIP(DrmKeysGet, drm_keys_get)
ROUND_TRIP(DrmKey, drm_key)
ROUND_TRIP(ErrorReply, error_reply)

static void test_fields_are_typed(void **state)
{
    cb_proto_transcode_done_t m;
    cb_jsonv_error_t e;
    size_t len;
    char *text = read_sample("TranscodeDone", &len);

    (void) state;
    assert_int_equal(cb_proto_transcode_done_decode(text, len, &m, &e), 0);
    assert_int_equal(m.status, CB_PROTO_TRANSCODE_DONE_STATUS_OK);
    assert_int_equal(m.renditions_count, 2);
    assert_string_equal(m.renditions[0].codecs, "avc1.64001f");
    assert_int_equal(m.renditions[0].segments_count, 1);
    assert_int_equal(m.renditions[0].segments[0].start_pts_90k, 7560000);
    assert_int_equal(m.renditions[1].kind, CB_PROTO_RENDITION_KIND_AUDIO);
    assert_int_equal(m.packaging.dvr_window_s, 3600);
    cb_proto_transcode_done_release(&m);
    free(text);
}

static void expect_invalid(const char *text, const char *field)
{
    cb_proto_transcode_job_t m;
    cb_jsonv_error_t e;

    assert_int_equal(cb_proto_transcode_job_decode(text, strlen(text), &m, &e), -EINVAL);
    cb_proto_transcode_job_release(&m);
    if (strcmp(e.field, field) != 0)
        fail_msg("expected field '%s', got '%s' (%s)", field, e.field, e.text);
}

static void test_contract_rules(void **state)
{
    (void) state;
    /* no version, a newer version, a missing nested field */
    expect_invalid("{\"job_id\":\"a\"}", "v");
    expect_invalid("{\"v\":2,\"job_id\":\"a\"}", "v");
    expect_invalid("{\"v\":1,\"job_id\":\"a:1\",\"kind\":\"live\",\"stream_id\":\"a\",\"seq\":1,"
                   "\"source\":{\"container\":\"mpegts\"}}",
                   "source.path");
    expect_invalid("{\"v\":1,\"job_id\":\"a:1\",\"kind\":\"live\",\"stream_id\":\"../x\"}",
                   "stream_id");
}

static void test_size_limit(void **state)
{
    cb_proto_purge_request_t m;
    cb_jsonv_error_t e;
    size_t len = CB_PROTO_MAX_MESSAGE_BYTES + 1;
    char *big = malloc(len);

    (void) state;
    memset(big, ' ', len);
    assert_int_equal(cb_proto_purge_request_decode(big, len, &m, &e), -EINVAL);
    assert_non_null(strstr(e.text, "over the limit"));
    cb_proto_purge_request_release(&m);
    free(big);
}

static void test_tables(void **state)
{
    const cb_proto_topic_t *t;
    const cb_proto_subject_t *s;
    size_t i, dlq = 0;

    (void) state;
    for (i = 0; i < cb_proto_ntopics; i++)
        dlq += cb_proto_topics[i].message == NULL;
    assert_int_equal(dlq * 2, cb_proto_ntopics);
    t = cb_proto_topic_find(CB_PROTO_TOPIC_MEDIA_TRANSCODE_JOBS);
    assert_non_null(t);
    assert_string_equal(t->key, "stream_id");
    assert_string_equal(t->message, "TranscodeJob");
    assert_non_null(cb_proto_topic_find(CB_PROTO_TOPIC_CDN_PURGES_DLQ));
    assert_null(cb_proto_topic_find("nope"));
    s = cb_proto_subject_find(CB_PROTO_SUBJECT_ENTITLEMENT_CHECK);
    assert_non_null(s);
    assert_string_equal(s->reply, "EntitlementDecision");
    assert_non_null(cb_proto_subject_find(CB_PROTO_SUBJECT_DRM_KEYS_GET));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_transcode_job),
        cmocka_unit_test(test_round_trip_transcode_done),
        cmocka_unit_test(test_round_trip_package_event),
        cmocka_unit_test(test_round_trip_purge_request),
        cmocka_unit_test(test_round_trip_analytics_event),
        cmocka_unit_test(test_round_trip_entitlement_check),
        cmocka_unit_test(test_round_trip_entitlement_decision),
        cmocka_unit_test(test_round_trip_drm_keys_get),
        cmocka_unit_test(test_round_trip_drm_key),
        cmocka_unit_test(test_round_trip_error_reply),
        cmocka_unit_test(test_fields_are_typed),
        cmocka_unit_test(test_contract_rules),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for libcommon/http: a real server on an ephemeral loopback
 * port, driven with libcurl.
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "buf.h"
#include "http.h"
#include "log.h"

static cb_http_t *server;
static cb_metrics_t *metrics;
static pthread_t loop;
static pthread_t loop_id;
static int port;

typedef struct thing {
    char *name;
    int64_t count;
} thing_t;

static const cb_jsonv_field_t thing_fields[] = {
    { .name = "name",
      .type = CB_JSONV_STRING,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(thing_t, name),
      .min = 1,
      .max = 8 },
    { .name = "count",
      .type = CB_JSONV_INT,
      .offset = offsetof(thing_t, count),
      .min = 0,
      .max = 100 },
    { .name = NULL },
};

static int h_ping(cb_http_req_t *req, void *arg)
{
    (void) arg;
    return cb_http_reply_json(req, 200, json_pack("{s:b}", "pong", 1));
}

static int h_get_thing(cb_http_req_t *req, void *arg)
{
    char q[64] = "";

    (void) arg;
    if (cb_http_req_query(req, "q", q, sizeof(q)) == -ENOENT)
        snprintf(q, sizeof(q), "(none)");
    return cb_http_reply_json(req, 200,
                              json_pack("{s:s, s:s, s:s}", "id", cb_http_req_param(req, "id"), "q",
                                        q, "role", cb_role_name(cb_http_req_role(req))));
}

static int h_count(cb_http_req_t *req, void *arg)
{
    int64_t n = 5;

    (void) arg;
    if (cb_http_req_query_int(req, "n", 1, 10, &n) == -EINVAL)
        return CB_HTTP_DONE;
    return cb_http_reply_json(req, 200, json_pack("{s:I}", "n", (json_int_t) n));
}

static int h_post_thing(cb_http_req_t *req, void *arg)
{
    thing_t t;
    int rc;

    (void) arg;
    if (cb_http_req_json(req, thing_fields, &t)) {
        cb_jsonv_release(thing_fields, &t);
        return CB_HTTP_DONE;
    }
    cb_http_add_header(req, "Location", "/v1/things/new");
    rc = cb_http_reply_json(req, 201,
                            json_pack("{s:s, s:I}", "name", t.name, "count", (json_int_t) t.count));
    cb_jsonv_release(thing_fields, &t);
    return rc;
}

static int h_delete_thing(cb_http_req_t *req, void *arg)
{
    (void) arg;
    return cb_http_reply(req, 200, "text/plain", "gone", 4);
}

static int h_blocking(cb_http_req_t *req, void *arg)
{
    bool on_loop = pthread_equal(pthread_self(), loop_id);

    (void) arg;
    usleep(20000); /* a blocking call, off the loop */
    return cb_http_reply_json(req, 200, json_pack("{s:b}", "on_loop", on_loop));
}

static void *answer_later(void *arg)
{
    usleep(50000);
    cb_http_reply_json(arg, 202, json_pack("{s:s}", "answered", "later"));
    return NULL;
}

static int h_deferred(cb_http_req_t *req, void *arg)
{
    pthread_t t;

    (void) arg;
    pthread_create(&t, NULL, answer_later, req);
    pthread_detach(t);
    return CB_HTTP_DEFERRED;
}

static int h_big(cb_http_req_t *req, void *arg)
{
    char *body = malloc(300000);
    int rc;

    (void) arg;
    memset(body, 'z', 300000);
    rc = cb_http_reply(req, 200, "application/octet-stream", body, 300000);
    free(body);
    return rc;
}

static void *run_loop(void *arg)
{
    (void) arg;
    loop_id = pthread_self();
    cb_http_run(server);
    return NULL;
}

static void quiet(const char *line, size_t len, void *arg)
{
    (void) line;
    (void) len;
    (void) arg;
}

static int setup(void **state)
{
    const cb_http_route_t routes[] = {
        { "GET", "/ping", CB_ROLE_NONE, 0, h_ping, NULL },
        { "GET", "/v1/things/{id}", CB_ROLE_VIEWER, 0, h_get_thing, NULL },
        { "GET", "/v1/count", CB_ROLE_VIEWER, 0, h_count, NULL },
        { "POST", "/v1/things", CB_ROLE_EDITOR, 0, h_post_thing, NULL },
        { "DELETE", "/v1/things/{id}", CB_ROLE_ADMIN, 0, h_delete_thing, NULL },
        { "GET", "/v1/blocking", CB_ROLE_VIEWER, CB_HTTP_BLOCKING, h_blocking, NULL },
        { "GET", "/v1/deferred", CB_ROLE_VIEWER, 0, h_deferred, NULL },
        { "GET", "/v1/big", CB_ROLE_VIEWER, 0, h_big, NULL },
    };
    cb_http_config_t cfg = { .host = "127.0.0.1",
                             .port = 0,
                             .max_body_bytes = 2048,
                             .workers = 2,
                             .api_keys = "admin:adm1n,editor:ed1t,viewer:v1ew" };
    char err[256];

    (void) state;
    cb_log_set_sink(quiet, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    assert_int_equal(cb_metrics_new(&metrics), 0);
    assert_int_equal(cb_http_new("unit", &cfg, metrics, &server, err, sizeof(err)), 0);
    assert_int_equal(cb_http_add_routes(server, routes, CB_ARRAY_LEN(routes)), 0);
    assert_int_equal(cb_http_start(server, err, sizeof(err)), 0);
    port = cb_http_port(server);
    assert_true(port > 0);
    pthread_create(&loop, NULL, run_loop, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void) state;
    cb_http_stop(server);
    pthread_join(loop, NULL);
    cb_http_free(server);
    cb_metrics_free(metrics);
    curl_global_cleanup();
    cb_log_set_sink(NULL, NULL);
    return 0;
}

typedef struct resp {
    long status;
    cb_buf_t body;
    cb_buf_t headers;
} resp_t;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    cb_buf_append(arg, p, size * n);
    return size * n;
}

static CURL *shared_easy;

static void request(const char *method, const char *path, const char *key, const char *ctype,
                    const char *body, const char *extra_header, resp_t *r)
{
    CURL *c = shared_easy ? shared_easy : curl_easy_init();
    struct curl_slist *h = NULL;
    char url[512], auth[128], ct[128];

    cb_buf_init(&r->body, 1 << 20);
    cb_buf_init(&r->headers, 1 << 16);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    if (key) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    if (ctype) {
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype);
        h = curl_slist_append(h, ct);
    }
    if (extra_header)
        h = curl_slist_append(h, extra_header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
    } else {
        /* no body: a plain GET, with the method name swapped in for the others */
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_easy_perform(c) != CURLE_OK)
        fail_msg("%s %s failed", method, path);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    if (!shared_easy)
        curl_easy_cleanup(c);
}

static void release(resp_t *r)
{
    cb_buf_release(&r->body);
    cb_buf_release(&r->headers);
}

static json_t *body_json(resp_t *r)
{
    json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);

    if (!j)
        fail_msg("response is not JSON: %.*s", (int) r->body.len, r->body.data);
    return j;
}

static const char *error_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static void test_public_and_not_found(void **state)
{
    resp_t r;
    json_t *j;

    (void) state;
    request("GET", "/ping", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.headers.data, "x-request-id: "));
    assert_non_null(strstr(r.headers.data, "server: castbus-unit"));
    assert_non_null(strstr(r.headers.data, "date: ")); /* caches need it (RFC 9110 6.6.1) */
    assert_non_null(strstr(r.headers.data, " GMT"));
    release(&r);

    request("GET", "/nope", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    j = body_json(&r);
    assert_string_equal(error_code(j), "not_found");
    assert_non_null(json_object_get(json_object_get(j, "error"), "request_id"));
    json_decref(j);
    release(&r);

    request("PUT", "/ping", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.headers.data, "allow: GET"));
    release(&r);
}

static void test_http_date(void **state)
{
    char d[CB_HTTP_DATE_LEN];

    (void) state;
    cb_http_date(784111777000, d);
    assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    cb_http_date(0, d);
    assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    /* formatted by hand: the same as strftime() over 130 years */
    for (int64_t t = 0; t < 4102444800; t += 3601 * 37 + 13) {
        char want[CB_HTTP_DATE_LEN];
        time_t tt = (time_t) t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cb_http_date(t * 1000, d);
        assert_string_equal(d, want);
    }
}

static void test_sniff_tells_h2_prior_knowledge_from_http1(void **state)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    (void) state;
    assert_int_equal(cb_http_sniff(preface, sizeof(preface) - 1), CB_HTTP_SNIFF_H2);
    assert_int_equal(cb_http_sniff("PRI ", 4), CB_HTTP_SNIFF_H2);
    /* a prefix of the preface: read on */
    assert_int_equal(cb_http_sniff("", 0), CB_HTTP_SNIFF_MORE);
    assert_int_equal(cb_http_sniff("P", 1), CB_HTTP_SNIFF_MORE);
    assert_int_equal(cb_http_sniff("PRI", 3), CB_HTTP_SNIFF_MORE);
    /* HTTP/1 methods, some sharing its first letters; TLS */
    assert_int_equal(cb_http_sniff("GET / HTTP/1.1\r\n", 16), CB_HTTP_SNIFF_H1);
    assert_int_equal(cb_http_sniff("POST", 4), CB_HTTP_SNIFF_H1);
    assert_int_equal(cb_http_sniff("PUT ", 4), CB_HTTP_SNIFF_H1);
    assert_int_equal(cb_http_sniff("PROPFIND", 8), CB_HTTP_SNIFF_H1);
    assert_int_equal(cb_http_sniff("PRIX", 4), CB_HTTP_SNIFF_H1);
    assert_int_equal(cb_http_sniff("\x16\x03\x01", 3), CB_HTTP_SNIFF_H1);
}

static void test_auth_and_roles(void **state)
{
    resp_t r;
    json_t *j;

    (void) state;
    request("GET", "/v1/things/42", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.headers.data, "www-authenticate: Bearer"));
    release(&r);
    request("GET", "/v1/things/42", "wrong", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    release(&r);
    request("GET", "/v1/things/42?q=a%20b", "v1ew", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "42");
    assert_string_equal(json_string_value(json_object_get(j, "q")), "a b");
    assert_string_equal(json_string_value(json_object_get(j, "role")), "viewer");
    json_decref(j);
    release(&r);
    /* viewer on an admin route: 403; admin can do everything */
    request("DELETE", "/v1/things/42", "v1ew", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 403);
    j = body_json(&r);
    assert_string_equal(error_code(j), "forbidden");
    json_decref(j);
    release(&r);
    request("DELETE", "/v1/things/42", "adm1n", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body.data, "gone");
    release(&r);
    request("POST", "/v1/things", "v1ew", "application/json", "{\"name\":\"a\"}", NULL, &r);
    assert_int_equal(r.status, 403);
    release(&r);
}

static void test_json_bodies(void **state)
{
    resp_t r;
    json_t *j, *e;

    (void) state;
    request("POST", "/v1/things", "ed1t", "application/json", "{\"name\":\"box\",\"count\":3}",
            NULL, &r);
    assert_int_equal(r.status, 201);
    assert_non_null(strstr(r.headers.data, "location: /v1/things/new"));
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "box");
    json_decref(j);
    release(&r);

    request("POST", "/v1/things", "ed1t", "application/json", "{\"count\":3}", NULL, &r);
    assert_int_equal(r.status, 400);
    j = body_json(&r);
    e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "invalid_field");
    assert_string_equal(json_string_value(json_object_get(e, "field")), "name");
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "required"));
    json_decref(j);
    release(&r);

    request("POST", "/v1/things", "ed1t", "application/json", "{\"name\":\"x\",\"count\":101}",
            NULL, &r);
    assert_int_equal(r.status, 400);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "field")),
                        "count");
    json_decref(j);
    release(&r);

    request("POST", "/v1/things", "ed1t", "application/json", "{nope", NULL, &r);
    assert_int_equal(r.status, 400);
    j = body_json(&r);
    assert_string_equal(error_code(j), "invalid_json");
    json_decref(j);
    release(&r);

    request("POST", "/v1/things", "ed1t", "text/plain", "{\"name\":\"a\"}", NULL, &r);
    assert_int_equal(r.status, 415);
    release(&r);
}

static void test_integer_query_parameters(void **state)
{
    static const struct {
        const char *path;
        int status;
        int64_t n;           /* 200 */
        const char *message; /* 400 */
    } cases[] = {
        { "/v1/count", 200, 5, NULL },
        { "/v1/count?n=7", 200, 7, NULL },
        { "/v1/count?n=10", 200, 10, NULL },
        { "/v1/count?n=0", 400, 0, "n must be an integer from 1 to 10" },
        { "/v1/count?n=11", 400, 0, "n must be an integer from 1 to 10" },
        { "/v1/count?n=3x", 400, 0, "n must be an integer from 1 to 10" },
        { "/v1/count?n=12345678901234567890", 400, 0, "malformed n" },
    };
    resp_t r;
    json_t *j;

    (void) state;
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        request("GET", cases[i].path, "v1ew", NULL, NULL, NULL, &r);
        assert_int_equal(r.status, cases[i].status);
        j = body_json(&r);
        if (cases[i].status == 200) {
            assert_int_equal(json_integer_value(json_object_get(j, "n")), cases[i].n);
        } else {
            json_t *e = json_object_get(j, "error");
            assert_string_equal(error_code(j), "invalid_field");
            assert_string_equal(json_string_value(json_object_get(e, "field")), "n");
            assert_string_equal(json_string_value(json_object_get(e, "message")), cases[i].message);
        }
        json_decref(j);
        release(&r);
    }
}

static void test_body_limit(void **state)
{
    char *big = malloc(5000);
    resp_t r;

    (void) state;
    memset(big, 'a', 4999);
    big[0] = '"';
    big[4998] = '"';
    big[4999] = '\0';
    request("POST", "/v1/things", "ed1t", "application/json", big, NULL, &r);
    assert_int_equal(r.status, 413);
    release(&r);
    /* no Content-Length to refuse up front: the limit is found while reading */
    request("POST", "/v1/things", "ed1t", "application/json", big, "Transfer-Encoding: chunked",
            &r);
    assert_int_equal(r.status, 413);
    release(&r);
    free(big);
    /* the server is still fine afterwards */
    request("GET", "/ping", NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    release(&r);
}

static void test_blocking_and_deferred(void **state)
{
    resp_t r;
    json_t *j;

    (void) state;
    request("GET", "/v1/blocking", "v1ew", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_true(json_is_false(json_object_get(j, "on_loop")));
    json_decref(j);
    release(&r);
    request("GET", "/v1/deferred", "v1ew", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 202);
    j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "answered")), "later");
    json_decref(j);
    release(&r);
}

static void test_request_id_and_big_bodies_on_one_connection(void **state)
{
    resp_t r;
    int i;

    (void) state;
    shared_easy = curl_easy_init(); /* keep-alive: every request on one connection */
    request("GET", "/ping", NULL, NULL, NULL, "X-Request-Id: trace-123", &r);
    assert_non_null(strstr(r.headers.data, "x-request-id: trace-123"));
    release(&r);
    request("GET", "/ping", NULL, NULL, NULL, "X-Request-Id: bad id with spaces", &r);
    assert_null(strstr(r.headers.data, "bad id"));
    release(&r);
    for (i = 0; i < 3; i++) {
        request("GET", "/v1/big", "v1ew", NULL, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body.len, 300000);
        release(&r);
    }
    curl_easy_cleanup(shared_easy);
    shared_easy = NULL;
}

static void test_metrics_count_requests(void **state)
{
    cb_buf_t b;

    (void) state;
    cb_buf_init(&b, 1 << 20);
    assert_int_equal(cb_metrics_render(metrics, &b), 0);
    assert_non_null(strstr(b.data, "castbus_http_requests_total{method=\"GET\",route=\"/ping\","
                                   "code=\"200\"}"));
    assert_non_null(strstr(b.data, "castbus_http_request_duration_seconds_bucket{method=\"GET\","
                                   "route=\"/ping\",le=\"0.001\"}"));
    cb_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_and_not_found),
        cmocka_unit_test(test_http_date),
        cmocka_unit_test(test_sniff_tells_h2_prior_knowledge_from_http1),
        cmocka_unit_test(test_auth_and_roles),
        cmocka_unit_test(test_json_bodies),
        cmocka_unit_test(test_integer_query_parameters),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_blocking_and_deferred),
        cmocka_unit_test(test_request_id_and_big_bodies_on_one_connection),
        cmocka_unit_test(test_metrics_count_requests),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

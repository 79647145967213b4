/*
 * Unit tests for purge_plan.c: what a purge job asks of a Varnish edge.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "purge_plan.h"

static cb_proto_purge_request_t req(void)
{
    return (cb_proto_purge_request_t){ .v = 1, .id = "j1", .requested_at_ms = 1 };
}

static void test_urls_are_purged_one_by_one_with_their_host(void **state)
{
    char *urls[] = { "/live/s/720p/1.m4s", "https://cdn.example.test/vod/a/master.m3u8?x=1",
                     "http://h:8080" };
    cb_proto_purge_request_t m = req();
    pf_plan_t p;

    (void) state;
    m.urls = urls;
    m.urls_count = 3;
    m.soft = true;
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_int_equal(p.n, 3);
    assert_string_equal(p.reqs[0].method, "PURGE");
    assert_string_equal(p.reqs[0].target, "/live/s/720p/1.m4s");
    assert_string_equal(p.reqs[0].headers[0], "X-Purge-Soft: 1");
    assert_null(p.reqs[0].headers[1]);
    assert_string_equal(p.reqs[1].target, "/vod/a/master.m3u8?x=1");
    assert_string_equal(p.reqs[1].headers[0], "Host: cdn.example.test");
    assert_string_equal(p.reqs[1].headers[1], "X-Purge-Soft: 1");
    assert_string_equal(p.reqs[2].target, "/");
    assert_string_equal(p.reqs[2].headers[0], "Host: h:8080");
    pf_plan_release(&p);

    m.soft = false;
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_null(p.reqs[0].headers[0]);
    pf_plan_release(&p);
}

static void test_prefixes_are_one_escaped_ban(void **state)
{
    char *prefixes[] = { "/live/s/720p/", "https://h/vod/a.b(1)+/" };
    cb_proto_purge_request_t m = req();
    pf_plan_t p;

    (void) state;
    m.prefixes = prefixes;
    m.prefixes_count = 2;
    m.soft = true; /* bans are hard whatever is asked */
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].method, "BAN");
    assert_string_equal(p.reqs[0].target, "/");
    assert_string_equal(p.reqs[0].headers[0],
                        "X-Ban-Url: ^(?:/live/s/720p/|/vod/a\\.b\\(1\\)\\+/)");
    assert_null(p.reqs[0].headers[1]);
    pf_plan_release(&p);
}

static void test_tags_and_all(void **state)
{
    char *tags[] = { "live/s", "vod/a/720p" };
    cb_proto_purge_request_t m = req();
    pf_plan_t p;

    (void) state;
    m.tags = tags;
    m.tags_count = 2;
    m.soft = true;
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].method, "PURGE");
    assert_string_equal(p.reqs[0].headers[0], "xkey-purge: live/s vod/a/720p");
    assert_string_equal(p.reqs[0].headers[1], "X-Purge-Soft: 1");
    pf_plan_release(&p);

    m = req();
    m.all = true;
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].method, "BAN");
    assert_string_equal(p.reqs[0].headers[0], "X-Ban-All: 1");
    pf_plan_release(&p);
}

static void test_long_lists_are_split_under_the_header_limit(void **state)
{
    char *tags[256], buf[256][200];
    cb_proto_purge_request_t m = req();
    pf_plan_t p;
    size_t seen = 0;

    (void) state;
    for (int i = 0; i < 256; i++) {
        snprintf(buf[i], sizeof(buf[i]), "tag-%03d-%0180d", i, 0);
        tags[i] = buf[i];
    }
    m.tags = tags;
    m.tags_count = 256;
    assert_int_equal(pf_plan_build(PF_EDGE_VARNISH, &m, &p), 0);
    assert_true(p.n > 1);
    for (size_t i = 0; i < p.n; i++) {
        const char *v = p.reqs[i].headers[0] + strlen("xkey-purge: ");
        assert_true(strlen(v) <= PF_PLAN_HEADER_MAX);
        for (const char *t = v; t; t = strchr(t + 1, ' '))
            seen++;
    }
    assert_int_equal(seen, 256); /* every tag once */
    pf_plan_release(&p);
}

static void test_trafficserver_dialect(void **state)
{
    char *urls[] = { "/live/s/720p/1.m4s", "https://h/vod/a.b/master.m3u8" };
    char *prefixes[] = { "/live/s/", "/vod/(x)/" };
    char *tags[] = { "live/s", "live/s/720p", "/vod/a.b/manifests" };
    cb_proto_purge_request_t m = req();
    pf_plan_t p;

    (void) state;
    /* hard URLs: Traffic Server's own PURGE, Host kept */
    m.urls = urls;
    m.urls_count = 2;
    assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m, &p), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.reqs[0].method, "PURGE");
    assert_string_equal(p.reqs[0].target, "/live/s/720p/1.m4s");
    assert_null(p.reqs[0].headers[0]);
    assert_string_equal(p.reqs[1].headers[0], "Host: h");
    pf_plan_release(&p);

    /* soft URLs: one revalidate rule, whole paths */
    m.soft = true;
    assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].method, "BAN");
    assert_string_equal(
        p.reqs[0].headers[0],
        "X-Ban-Regex: ^[a-z]+://[^/]+(?:/live/s/720p/1\\.m4s|/vod/a\\.b/master\\.m3u8)$");
    assert_string_equal(p.reqs[0].headers[1], "X-Ban-Type: STALE");
    pf_plan_release(&p);

    /* prefixes, hard */
    m = req();
    m.prefixes = prefixes;
    m.prefixes_count = 2;
    assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].headers[0],
                        "X-Ban-Regex: ^[a-z]+://[^/]+(?:/live/s/|/vod/\\(x\\)/)");
    assert_string_equal(p.reqs[0].headers[1], "X-Ban-Type: MISS");
    pf_plan_release(&p);

    /* tags: the paths castbus keys name */
    m = req();
    m.tags = tags;
    m.tags_count = 3;
    m.soft = true;
    assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].headers[0],
                        "X-Ban-Regex: ^[a-z]+://[^/]+(?:/live/s/|/live/s/720p/|/vod/a\\.b/[^/]*$)");
    pf_plan_release(&p);

    /* all */
    m = req();
    m.all = true;
    assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m, &p), 0);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.reqs[0].headers[0], "X-Ban-Regex: ^[a-z]+://");
    assert_string_equal(p.reqs[0].headers[1], "X-Ban-Type: MISS");
    pf_plan_release(&p);
}

/* Each selector, soft and hard: nginx gets what Traffic Server gets. */
static void test_nginx_speaks_the_trafficserver_dialect(void **state)
{
    char *urls[] = { "/live/s/720p/1.m4s", "https://h/vod/a.b/master.m3u8" };
    char *prefixes[] = { "/live/s/" };
    char *tags[] = { "live/s/720p", "vod/a/manifests" };
    cb_proto_purge_request_t m[4] = { req(), req(), req(), req() };
    pf_plan_t a, b;

    (void) state;
    m[0].urls = urls;
    m[0].urls_count = 2;
    m[1].prefixes = prefixes;
    m[1].prefixes_count = 1;
    m[2].tags = tags;
    m[2].tags_count = 2;
    m[3].all = true;
    for (int i = 0; i < 8; i++) {
        m[i / 2].soft = i % 2;
        assert_int_equal(pf_plan_build(PF_EDGE_TRAFFICSERVER, &m[i / 2], &a), 0);
        assert_int_equal(pf_plan_build(PF_EDGE_NGINX, &m[i / 2], &b), 0);
        assert_int_equal(a.n, b.n);
        for (size_t r = 0; r < a.n; r++) {
            assert_string_equal(a.reqs[r].method, b.reqs[r].method);
            assert_string_equal(a.reqs[r].target, b.reqs[r].target);
            for (size_t h = 0; h < 3 && (a.reqs[r].headers[h] || b.reqs[r].headers[h]); h++)
                assert_string_equal(a.reqs[r].headers[h], b.reqs[r].headers[h]);
        }
        pf_plan_release(&a);
        pf_plan_release(&b);
    }
    assert_string_equal(pf_edge_kind_names[PF_EDGE_NGINX], "nginx");
    assert_int_equal(pf_name_index(pf_edge_kind_names, "nginx"), PF_EDGE_NGINX);
}

static void test_checks_name_the_field(void **state)
{
    char *ok[] = { "/a" }, *bad[] = { "/a", "no/slash at start" }, *tag[] = { "a,b" };
    char *ctl[] = { "/a\r\nX-Evil: 1" };
    cb_proto_purge_request_t m = req();
    char field[64], err[256];

    (void) state;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), -EINVAL);
    assert_string_equal(field, "urls");
    m.urls = ok;
    m.urls_count = 1;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), 0);
    m.all = true;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), -EINVAL);
    assert_string_equal(field, "all");
    m = req();
    m.urls = bad;
    m.urls_count = 2;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), -EINVAL);
    assert_string_equal(field, "urls[1]");
    m.urls = ctl;
    m.urls_count = 1;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), -EINVAL);
    assert_string_equal(field, "urls[0]");
    m = req();
    m.tags = tag;
    m.tags_count = 1;
    assert_int_equal(pf_plan_check(&m, field, sizeof(field), err, sizeof(err)), -EINVAL);
    assert_string_equal(field, "tags[0]");
    assert_int_equal(pf_plan_check_url("//host/x", err, sizeof(err)), -EINVAL);
    assert_int_equal(pf_plan_check_url("https://", err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls_are_purged_one_by_one_with_their_host),
        cmocka_unit_test(test_prefixes_are_one_escaped_ban),
        cmocka_unit_test(test_tags_and_all),
        cmocka_unit_test(test_long_lists_are_split_under_the_header_limit),
        cmocka_unit_test(test_trafficserver_dialect),
        cmocka_unit_test(test_nginx_speaks_the_trafficserver_dialect),
        cmocka_unit_test(test_checks_name_the_field),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

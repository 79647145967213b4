/*
 * purge_plan.c - a purge job as HTTP requests for one edge.
 */
#include "purge_plan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "defs.h"

const char *const pf_edge_kind_names[] = { "varnish", "trafficserver", "nginx", NULL };

/* a joined list: at most 256 values of at most 2 KB, escaped */
#define PLAN_BUF_MAX (256u * PF_PLAN_URL_MAX * 2u + 1024u)

int pf_name_index(const char *const *names, const char *s)
{
    for (int i = 0; s && names[i]; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return -1;
}

/* Bytes a URL or tag may not hold: blanks, controls, and what VCL ban
 * expressions or header lists would read as syntax. */
static bool bad_byte(unsigned char c)
{
    return c <= 0x20 || c == 0x7f || c == '"' || c == '\\';
}

/* The path of a URL ("/x" for "https://h/x") and, for an absolute one, its
 * authority in host/hostlen. NULL if it is neither. */
static const char *split_url(const char *url, const char **host, size_t *hostlen)
{
    const char *p, *slash;

    *host = NULL;
    *hostlen = 0;
    if (url[0] == '/')
        return url[1] == '/' ? NULL : url; /* "//host/x" is not a path */
    if (strncmp(url, "http://", 7) == 0)
        p = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        p = url + 8;
    else
        return NULL;
    slash = strchr(p, '/');
    *host = p;
    *hostlen = slash ? (size_t) (slash - p) : strlen(p);
    if (*hostlen == 0)
        return NULL;
    return slash ? slash : "/";
}

int pf_plan_check_url(const char *url, char *err, size_t errlen)
{
    const char *host;
    size_t hostlen, len = strlen(url);

    if (len == 0 || len > PF_PLAN_URL_MAX) {
        snprintf(err, errlen, "a URL is 1 to %d bytes", PF_PLAN_URL_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (bad_byte((unsigned char) url[i])) {
            snprintf(err, errlen, "byte 0x%02x at %zu is not allowed in a URL",
                     (unsigned char) url[i], i);
            return -EINVAL;
        }
    }
    if (!split_url(url, &host, &hostlen)) {
        snprintf(err, errlen, "expected a path (\"/vod/a/master.m3u8\") or an http(s) URL");
        return -EINVAL;
    }
    return 0;
}

int pf_plan_check_tag(const char *tag, char *err, size_t errlen)
{
    size_t len = strlen(tag);

    if (len == 0 || len > PF_PLAN_TAG_MAX) {
        snprintf(err, errlen, "a tag is 1 to %d bytes", PF_PLAN_TAG_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (bad_byte((unsigned char) tag[i]) || tag[i] == ',') {
            snprintf(err, errlen, "byte 0x%02x at %zu is not allowed in a tag",
                     (unsigned char) tag[i], i);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_list(const char *name, char **v, size_t n, bool tags, char *field, size_t fieldlen,
                      char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int rc = tags ? pf_plan_check_tag(v[i], err, errlen) : pf_plan_check_url(v[i], err, errlen);
        if (rc) {
            snprintf(field, fieldlen, "%s[%zu]", name, i);
            return rc;
        }
    }
    return 0;
}

int pf_plan_check(const cb_proto_purge_request_t *m, char *field, size_t fieldlen, char *err,
                  size_t errlen)
{
    const char *names[4] = { "urls", "prefixes", "tags", "all" };
    bool set[4] = { m->urls_count > 0, m->prefixes_count > 0, m->tags_count > 0, m->all };
    int first = -1;

    for (int i = 0; i < 4; i++) {
        if (!set[i])
            continue;
        if (first >= 0) {
            snprintf(field, fieldlen, "%s", names[i]);
            snprintf(err, errlen, "one selector per purge: '%s' and '%s' are both set",
                     names[first], names[i]);
            return -EINVAL;
        }
        first = i;
    }
    if (first < 0) {
        snprintf(field, fieldlen, "urls");
        snprintf(err, errlen, "one of urls, prefixes, tags (non-empty) or all: true is required");
        return -EINVAL;
    }
    if (check_list("urls", m->urls, m->urls_count, false, field, fieldlen, err, errlen) ||
        check_list("prefixes", m->prefixes, m->prefixes_count, false, field, fieldlen, err,
                   errlen) ||
        check_list("tags", m->tags, m->tags_count, true, field, fieldlen, err, errlen))
        return -EINVAL;
    return 0;
}

/* ---- building ---- */

static pf_http_t *add_req(pf_plan_t *p, size_t *cap, const char *method, const char *target)
{
    pf_http_t *r;

    if (p->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        pf_http_t *n = realloc(p->reqs, ncap * sizeof(*n));
        if (!n)
            return NULL;
        p->reqs = n;
        *cap = ncap;
    }
    r = &p->reqs[p->n];
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->target = strdup(target);
    if (!r->target)
        return NULL;
    p->n++;
    return r;
}

static int add_header(pf_http_t *r, const char *name, const char *value, size_t len)
{
    size_t i = 0;

    while (r->headers[i])
        i++;
    CB_ASSERT(i < CB_ARRAY_LEN(r->headers) - 1);
    if (asprintf(&r->headers[i], "%s: %.*s", name, (int) len, value) < 0) {
        r->headers[i] = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* Append s to a PCRE pattern, its metacharacters escaped. */
static int regex_escape(cb_buf_t *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (strchr("\\^$.|?*+()[]{}", s[i]) && cb_buf_append(b, "\\", 1))
            return -ENOMEM;
        if (cb_buf_append(b, &s[i], 1))
            return -ENOMEM;
    }
    return 0;
}

/* How one value goes into a joined list. */
typedef int (*value_fn)(cb_buf_t *b, const char *v);

static int value_plain(cb_buf_t *b, const char *v)
{
    return cb_buf_append(b, v, strlen(v));
}

/* the path of a URL, as a pattern */
static int value_path_regex(cb_buf_t *b, const char *v)
{
    const char *host;
    size_t hostlen;
    const char *path = split_url(v, &host, &hostlen);

    return regex_escape(b, path, strlen(path));
}

/*
 * A surrogate key of the castbus origin as the paths it names: keys are
 * paths ("live/<id>", "live/<id>/<rendition>"), except that
 * "<kind>/<id>/manifests" names the files directly under /<kind>/<id>/.
 */
static int value_tag_regex(cb_buf_t *b, const char *v)
{
    static const char manifests[] = "/manifests";
    size_t len, mlen = sizeof(manifests) - 1;
    bool m;

    while (*v == '/')
        v++;
    len = strlen(v);
    m = len > mlen && strcmp(v + len - mlen, manifests) == 0;
    if (m)
        len -= mlen;
    while (len && v[len - 1] == '/')
        len--;
    if (cb_buf_append(b, "/", 1) || regex_escape(b, v, len) || cb_buf_append(b, "/", 1))
        return -ENOMEM;
    return m ? cb_buf_append(b, "[^/]*$", 6) : 0;
}

/* The values, joined by sep into as few chunks of at most
 * PF_PLAN_HEADER_MAX bytes as fit, each one request built by emit(). */
typedef int (*emit_fn)(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m,
                       const cb_buf_t *chunk);

static int chunked(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m, char **v, size_t n,
                   char sep, value_fn value, emit_fn emit)
{
    cb_buf_t b;
    int rc = 0;

    cb_buf_init(&b, PLAN_BUF_MAX);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t mark = b.len;

        if (b.len)
            rc = cb_buf_append(&b, &sep, 1);
        if (rc == 0)
            rc = value(&b, v[i]);
        if (rc == 0 && b.len > PF_PLAN_HEADER_MAX && mark > 0) {
            /* this value starts the next chunk */
            cb_buf_t rest;
            cb_buf_init(&rest, PLAN_BUF_MAX);
            rc = cb_buf_append(&rest, b.data + mark + 1, b.len - mark - 1);
            cb_buf_truncate(&b, mark);
            if (rc == 0)
                rc = emit(p, cap, m, &b);
            cb_buf_release(&b);
            b = rest;
        }
    }
    if (rc == 0 && b.len)
        rc = emit(p, cap, m, &b);
    cb_buf_release(&b);
    return rc;
}

/* PURGE <path> per URL, Host from an absolute one: both dialects */
static int purge_urls(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m,
                      bool soft_header)
{
    for (size_t i = 0; i < m->urls_count; i++) {
        const char *host;
        size_t hostlen;
        const char *path = split_url(m->urls[i], &host, &hostlen);
        pf_http_t *r = add_req(p, cap, "PURGE", path);

        if (!r || (host && add_header(r, "Host", host, hostlen)) ||
            (soft_header && add_header(r, "X-Purge-Soft", "1", 1)))
            return -ENOMEM;
    }
    return 0;
}

/* ---- Varnish ---- */

static int emit_xkey(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m,
                     const cb_buf_t *chunk)
{
    pf_http_t *r = add_req(p, cap, "PURGE", "/");

    if (!r || add_header(r, "xkey-purge", chunk->data, chunk->len))
        return -ENOMEM;
    return m->soft ? add_header(r, "X-Purge-Soft", "1", 1) : 0;
}

static int emit_ban_url(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m,
                        const cb_buf_t *chunk)
{
    pf_http_t *r = add_req(p, cap, "BAN", "/");
    char *re;
    int rc;

    (void) m;
    if (!r || asprintf(&re, "^(?:%.*s)", (int) chunk->len, chunk->data) < 0)
        return -ENOMEM;
    rc = add_header(r, "X-Ban-Url", re, strlen(re));
    free(re);
    return rc;
}

static int build_varnish(const cb_proto_purge_request_t *m, pf_plan_t *p, size_t *cap)
{
    if (m->all) {
        pf_http_t *r = add_req(p, cap, "BAN", "/");
        return r ? add_header(r, "X-Ban-All", "1", 1) : -ENOMEM;
    }
    if (m->urls_count)
        return purge_urls(p, cap, m, m->soft);
    if (m->prefixes_count)
        return chunked(p, cap, m, m->prefixes, m->prefixes_count, '|', value_path_regex,
                       emit_ban_url);
    return chunked(p, cap, m, m->tags, m->tags_count, ' ', value_plain, emit_xkey);
}

/* ---- Traffic Server, and nginx (castbus_edge.lua speaks the same) ---- */

/* A regex_revalidate rule on the remapped URL (scheme://origin/path...):
 * STALE revalidates (soft), MISS refetches (hard). */
static int add_ats_ban(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m, const char *re)
{
    pf_http_t *r = add_req(p, cap, "BAN", "/");

    if (!r || add_header(r, "X-Ban-Regex", re, strlen(re)))
        return -ENOMEM;
    return m->soft ? add_header(r, "X-Ban-Type", "STALE", 5)
                   : add_header(r, "X-Ban-Type", "MISS", 4);
}

static int emit_ats_ban(pf_plan_t *p, size_t *cap, const cb_proto_purge_request_t *m,
                        const cb_buf_t *chunk)
{
    char *re;
    int rc;

    /* URLs are whole paths, prefixes and tags lead */
    if (asprintf(&re, "^[a-z]+://[^/]+(?:%.*s)%s", (int) chunk->len, chunk->data,
                 m->urls_count ? "$" : "") < 0)
        return -ENOMEM;
    rc = add_ats_ban(p, cap, m, re);
    free(re);
    return rc;
}

static int build_trafficserver(const cb_proto_purge_request_t *m, pf_plan_t *p, size_t *cap)
{
    if (m->all)
        return add_ats_ban(p, cap, m, "^[a-z]+://");
    if (m->urls_count && !m->soft)
        return purge_urls(p, cap, m, false); /* Traffic Server's own PURGE: hard */
    if (m->urls_count)
        return chunked(p, cap, m, m->urls, m->urls_count, '|', value_path_regex, emit_ats_ban);
    if (m->prefixes_count)
        return chunked(p, cap, m, m->prefixes, m->prefixes_count, '|', value_path_regex,
                       emit_ats_ban);
    return chunked(p, cap, m, m->tags, m->tags_count, '|', value_tag_regex, emit_ats_ban);
}

int pf_plan_build(pf_edge_kind_t kind, const cb_proto_purge_request_t *m, pf_plan_t *out)
{
    size_t cap = 0;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    switch (kind) {
    case PF_EDGE_VARNISH:
        rc = build_varnish(m, out, &cap);
        break;
    case PF_EDGE_TRAFFICSERVER:
    case PF_EDGE_NGINX:
        rc = build_trafficserver(m, out, &cap);
        break;
    }
    if (rc)
        pf_plan_release(out);
    return rc;
}

void pf_plan_release(pf_plan_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->reqs[i].target);
        for (size_t h = 0; p->reqs[i].headers[h]; h++)
            free(p->reqs[i].headers[h]);
    }
    free(p->reqs);
    memset(p, 0, sizeof(*p));
}

/*
 * route.c - path patterns and query strings; see route.h.
 */
#include "route.h"

#include <errno.h>
#include <string.h>

#include "defs.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cb_route_pct_decode(const char *src, size_t len, char *dst, size_t dstlen, bool plus_is_space)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= len) /* needs two hex digits after the '%' */
                return -EINVAL;
            hi = hexval(src[i + 1]);
            lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            c = (char) (hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        } else if (c == '\0') {
            return -EINVAL;
        }
        if (o + 1 >= dstlen)
            return -EINVAL;
        dst[o++] = c;
    }
    if (o >= dstlen)
        return -EINVAL;
    dst[o] = '\0';
    return (int) o;
}

/* Next segment of s starting at *pos (after any '/'); returns its length. */
static size_t next_segment(const char *s, size_t *pos, const char **seg)
{
    size_t start = *pos, end;

    if (s[start] == '/')
        start++;
    end = start;
    while (s[end] && s[end] != '/')
        end++;
    *seg = s + start;
    *pos = end;
    return end - start;
}

/* The rest of a path ("/a/b.m4s") decoded into out ("a/b.m4s"): no empty, "." or ".." segment. */
static bool rest_of(const char *path, char (*out)[CB_ROUTE_VALUE_MAX])
{
    const char *seg;
    size_t pos = 0, len, at = 0;
    int n;

    while (path[pos] != '\0') {
        len = next_segment(path, &pos, &seg);
        if (len == 0 && path[pos] == '\0' && at > 0)
            return false; /* a trailing '/' */
        n = len ? cb_route_pct_decode(seg, len, *out + at + (at ? 1 : 0),
                                      sizeof(*out) - at - (at ? 1 : 0), false)
                : -1;
        if (n <= 0)
            return false;
        if (at)
            (*out)[at++] = '/';
        for (size_t i = 0; i < (size_t) n; i++) {
            unsigned char c = (unsigned char) (*out)[at + i];
            if (c < 0x20 || c == 0x7f || c == '/')
                return false;
        }
        if ((n == 1 && (*out)[at] == '.') || (n == 2 && memcmp(*out + at, "..", 2) == 0))
            return false;
        at += (size_t) n;
    }
    return at > 0;
}

bool cb_route_match(const char *pattern, const char *path, cb_route_params_t *params)
{
    size_t pp = 0, sp = 0;
    cb_route_params_t tmp;

    tmp.n = 0;
    if (pattern[0] != '/' || path[0] != '/')
        return false;
    for (;;) {
        const char *pseg, *sseg;
        size_t plen, slen, i;
        bool pend = pattern[pp] == '\0', send = path[sp] == '\0';

        if (pend || send) {
            if (!(pend && send))
                return false;
            break;
        }
        plen = next_segment(pattern, &pp, &pseg);
        if (plen >= 6 && pseg[0] == '{' && memcmp(pseg + plen - 4, "...}", 4) == 0) {
            if (pattern[pp] != '\0' || tmp.n >= CB_ROUTE_MAX_PARAMS ||
                plen - 5 >= sizeof(tmp.p[0].name) || !rest_of(path + sp, &tmp.p[tmp.n].value))
                return false;
            memcpy(tmp.p[tmp.n].name, pseg + 1, plen - 5);
            tmp.p[tmp.n].name[plen - 5] = '\0';
            tmp.n++;
            break;
        }
        slen = next_segment(path, &sp, &sseg);
        if (plen >= 2 && pseg[0] == '{' && pseg[plen - 1] == '}') {
            int n;
            if (slen == 0 || tmp.n >= CB_ROUTE_MAX_PARAMS || plen - 2 >= sizeof(tmp.p[0].name))
                return false;
            memcpy(tmp.p[tmp.n].name, pseg + 1, plen - 2);
            tmp.p[tmp.n].name[plen - 2] = '\0';
            n = cb_route_pct_decode(sseg, slen, tmp.p[tmp.n].value, sizeof(tmp.p[0].value), false);
            if (n < 0)
                return false;
            for (i = 0; i < (size_t) n; i++) {
                unsigned char c = (unsigned char) tmp.p[tmp.n].value[i];
                if (c < 0x20 || c == 0x7f || c == '/')
                    return false;
            }
            tmp.n++;
        } else if (plen != slen || memcmp(pseg, sseg, plen) != 0) {
            return false;
        }
    }
    if (params)
        *params = tmp;
    return true;
}

const char *cb_route_param(const cb_route_params_t *params, const char *name)
{
    size_t i;

    for (i = 0; i < params->n; i++) {
        if (strcmp(params->p[i].name, name) == 0)
            return params->p[i].value;
    }
    return NULL;
}

int cb_route_query_get(const char *query, const char *name, char *dst, size_t dstlen)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p && *p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t) (amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t) (eq - p) : plen;
        char key[128];
        int n;

        n = cb_route_pct_decode(p, klen, key, sizeof(key), true);
        if (n >= 0 && (size_t) n == nlen && memcmp(key, name, nlen) == 0) {
            if (!eq) {
                if (dstlen == 0)
                    return -EINVAL;
                dst[0] = '\0';
                return 0;
            }
            return cb_route_pct_decode(eq + 1, plen - klen - 1, dst, dstlen, true);
        }
        p = amp ? amp + 1 : NULL;
    }
    return -ENOENT;
}

/*
 * route.h - matching request paths against patterns like
 * "/v1/streams/{id}/kick", and reading query strings.
 *
 * A pattern is a '/'-separated list of literal segments and "{name}"
 * segments; a "{name}" matches one non-empty path segment. Matching is
 * exact: no trailing-slash folding, no prefix matches. Captured values are
 * percent-decoded and must not contain '/', NUL or control characters.
 *
 * Thread safety: pure functions.
 */
#ifndef CB_ROUTE_H
#define CB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#define CB_ROUTE_MAX_PARAMS 8
#define CB_ROUTE_VALUE_MAX  256

typedef struct cb_route_params {
    size_t n;
    struct {
        char name[32];
        char value[CB_ROUTE_VALUE_MAX];
    } p[CB_ROUTE_MAX_PARAMS];
} cb_route_params_t;

/*
 * Does `path` (without query) match `pattern`? Fills params when it does.
 * "{name}" captures one segment; "{name...}", last in a pattern, captures
 * the rest of the path, one or more segments joined by '/', none of them
 * empty, "." or "..".
 */
bool cb_route_match(const char *pattern, const char *path, cb_route_params_t *params);

/* The value captured as `name`, or NULL. */
const char *cb_route_param(const cb_route_params_t *params, const char *name);

/*
 * Percent-decode (src, len) into dst (NUL-terminated). '+' is kept as is
 * unless `plus_is_space`. Returns the decoded length, or -EINVAL for a bad
 * escape, an encoded NUL, or when dst is too small.
 */
int cb_route_pct_decode(const char *src, size_t len, char *dst, size_t dstlen, bool plus_is_space);

/*
 * Find `name` in a query string "a=1&b=x%20y" and decode its value into
 * dst. Returns the value length, -ENOENT if absent, -EINVAL if malformed.
 * A name without '=' has the empty value.
 */
int cb_route_query_get(const char *query, const char *name, char *dst, size_t dstlen);

#endif /* CB_ROUTE_H */

/*
 * Fuzz harness: what the HTTP layer parses from a request before a handler
 * runs: the path against the route patterns (percent-decoding of
 * parameters), query strings, and the Authorization header; and, on the
 * whole input, what the origin makes of a connection's first bytes
 * (HTTP/1 or the HTTP/2 preface).
 * Input: "<path>\n<query>\n<authorization>".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apikey.h"
#include "defs.h"
#include "http.h"
#include "route.h"

static const char *const patterns[] = { "/v1/info", "/v1/streams/{id}", "/v1/streams/{id}/kick",
                                        "/v1/{a}/{b}/{c}", "/live/{stream}/{file}" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cb_apikeys_t *keys;
    char *s = malloc(size + 1), *path, *query, *auth, *nl, v[128];
    cb_route_params_t p;
    size_t i, j;

    if (!s)
        return 0;
    if (!keys) {
        char err[128];
        cb_apikeys_parse("admin:a1,viewer:v1", &keys, err, sizeof(err));
    }
    switch (cb_http_sniff(data, size)) {
    case CB_HTTP_SNIFF_H2:
        CB_ASSERT(size >= 4 && memcmp(data, "PRI ", 4) == 0);
        break;
    case CB_HTTP_SNIFF_MORE:
        CB_ASSERT(size < 4 && memcmp(data, "PRI ", size) == 0);
        break;
    default:
        CB_ASSERT(size > 0);
    }
    memcpy(s, data, size);
    s[size] = '\0';
    path = s;
    nl = strchr(path, '\n');
    query = nl ? (*nl = '\0', nl + 1) : "";
    nl = strchr(query, '\n');
    auth = nl ? (*nl = '\0', nl + 1) : "";
    for (i = 0; i < CB_ARRAY_LEN(patterns); i++) {
        if (cb_route_match(patterns[i], path, &p)) {
            for (j = 0; j < p.n; j++)
                CB_ASSERT(strchr(p.p[j].value, '/') == NULL);
        }
    }
    cb_route_query_get(query, "status", v, sizeof(v));
    cb_route_query_get(query, "", v, sizeof(v));
    cb_route_pct_decode(path, strlen(path), v, sizeof(v), true);
    cb_apikeys_authorize(keys, auth);
    free(s);
    return 0;
}

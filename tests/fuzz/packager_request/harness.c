/*
 * Fuzz harness: what the packager's origin makes of a request path, as it
 * arrives from players and edges: the route's rest-of-path capture, the
 * split into stream, signed-URL token, rendition and file, and the token
 * check. The input is the path below "/live/" (no query); the same bytes
 * are also read as the media playlist a held blocking-reload request
 * (?_HLS_msn) looks at.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"
#include "packager_origin.h"
#include "packager_token.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024], name[65], token[PK_TOKEN_MAX], rest[160], rendition[65];
    cb_route_params_t params;
    pk_origin_what_t what;

    /* the same bytes as a media playlist a held request looks at */
    {
        pk_playlist_state_t ps;
        if (pk_origin_playlist_state((const char *) data, size, &ps))
            CB_ASSERT(ps.target > 0 && ps.target < 3600 && ps.last >= -2 &&
                      ps.last <= (INT64_C(1) << 53) + (int64_t) size);
    }
    if (size > sizeof(path) - 8 || memchr(data, '\0', size))
        return 0;
    memcpy(path, "/live/", 6);
    memcpy(path + 6, data, size);
    path[6 + size] = '\0';
    if (!cb_route_match("/live/{path...}", path, &params))
        return 0;
    if (!pk_origin_parse_path(cb_route_param(&params, "path"), name, token, rest, rendition, &what))
        return 0;
    /* what it splits out stays within what storage keys allow */
    CB_ASSERT(strlen(name) > 0 && !strchr(name, '/') && strcmp(name, "..") != 0);
    CB_ASSERT(!strstr(rest, ".."));
    CB_ASSERT(what == PK_MANIFEST || rendition[0]);
    if (token[0])
        (void) pk_token_check("fuzz-key", "live/x", token, 1800000000, "127.0.0.1");
    return 0;
}

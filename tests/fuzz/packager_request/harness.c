/*
 * Fuzz harness: what the packager's origin makes of a request path, as it
 * arrives from players and edges: the route's rest-of-path capture, the
 * split into stream, signed-URL token, rendition and file, and the token
 * check. The input is the path below "/live/" (no query); the same bytes
 * are also read as the media playlist a held blocking-reload request
 * (?_HLS_msn) looks at, and made into a Playlist Delta Update (?_HLS_skip),
 * and as an Accept-Encoding header (gzipped manifests).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "defs.h"
#include "packager_hls.h"
#include "packager_origin.h"
#include "packager_token.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether a path has a "." or ".." segment. */
static bool dot_segment(const char *path)
{
    const char *s = path;

    for (;;) {
        size_t n = strcspn(s, "/");

        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return true;
        if (!s[n])
            return false;
        s += n + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024], name[65], token[PK_TOKEN_MAX], rest[160], rendition[65];
    cb_route_params_t params;
    pk_origin_what_t what;

    /* the same bytes as a media playlist a held request looks at, and made
     * into a delta update (?_HLS_skip=YES): it ends where the playlist does */
    {
        pk_playlist_state_t ps, ds;
        cb_buf_t d;
        int rc;

        if (pk_origin_playlist_state((const char *) data, size, &ps))
            CB_ASSERT(ps.target > 0 && ps.target < 3600 && ps.last >= -2 &&
                      ps.last <= (INT64_C(1) << 54) + (int64_t) size);
        cb_buf_init(&d, 2 * size + 4096);
        rc = pk_hls_delta((const char *) data, size, &d);
        CB_ASSERT(rc == 0 || rc == -ENOENT || rc == -EINVAL);
        if (rc == 0) {
            CB_ASSERT(d.len > 0 && pk_origin_playlist_state(d.data, d.len, &ds));
            CB_ASSERT(d.len <= size + 4096);
            CB_ASSERT(ds.last == ps.last && memmem(d.data, d.len, "#EXT-X-VERSION:", 15));
        }
        cb_buf_release(&d);
    }
    if (size > sizeof(path) - 8 || memchr(data, '\0', size))
        return 0;
    /* as Accept-Encoding: gzip is taken only when the header names it or "*" */
    memcpy(path, data, size);
    path[size] = '\0';
    if (pk_origin_gzip_accepted(path))
        CB_ASSERT(strcasestr(path, "gzip") || strchr(path, '*'));
    memcpy(path, "/live/", 6);
    memcpy(path + 6, data, size);
    path[6 + size] = '\0';
    if (!cb_route_match("/live/{path...}", path, &params))
        return 0;
    if (!pk_origin_parse_path(cb_route_param(&params, "path"), name, token, rest, rendition, &what))
        return 0;
    /* what it splits out stays within what storage keys allow */
    CB_ASSERT(strlen(name) > 0 && !strchr(name, '/') && strcmp(name, "..") != 0);
    CB_ASSERT(!dot_segment(rest)); /* "a..m3u8" is a name; ".." is not */
    CB_ASSERT(what == PK_MANIFEST || rendition[0]);
    if (token[0])
        (void) pk_token_check("fuzz-key", "live/x", token, 1800000000, "127.0.0.1");
    return 0;
}

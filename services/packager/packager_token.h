/*
 * packager_token.h - signed playback URLs.
 *
 * A stream (or VOD asset) packaged with signed_playback is served only to
 * URLs that carry a token, as one path segment right after the name:
 *
 *     /live/<stream>/~<expires>_<ip>_<signature>/master.m3u8
 *
 * so every URL a player derives from the manifest (relative URIs) carries
 * it too, with no manifest rewriting. <expires> is a Unix time in seconds,
 * <ip> the viewer's IPv4 address the token is bound to or "any", and
 * <signature> the hex HMAC-SHA256, under the packager's signing key, of
 * "<scope>|<expires>|<ip>" where scope is "live/<stream>" or
 * "vod/<asset>". Edges that cache by URL should drop the token segment
 * from their cache key once they have checked it (or pass it through).
 */
#ifndef PACKAGER_TOKEN_H
#define PACKAGER_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PK_TOKEN_MAX 128 /* "~" + expires + ip + 64 hex digits, with room */

/* The token segment ("~...") for scope; 0, or -EINVAL (ip not IPv4 nor NULL/"any"). */
int pk_token_mint(const char *key, const char *scope, int64_t expires_s, const char *ip,
                  char out[PK_TOKEN_MAX]);

typedef enum pk_token_verdict {
    PK_TOKEN_OK = 0,
    PK_TOKEN_INVALID,  /* malformed, or the signature does not match: 403 */
    PK_TOKEN_EXPIRED,  /* a good signature past its time: 410 */
    PK_TOKEN_WRONG_IP, /* a good signature bound to another address: 403 */
} pk_token_verdict_t;

/* Check a token segment ("~...") for scope at now_s from peer (IPv4 text). */
pk_token_verdict_t pk_token_check(const char *key, const char *scope, const char *token,
                                  int64_t now_s, const char *peer);

#endif /* PACKAGER_TOKEN_H */

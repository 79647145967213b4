/*
 * packager_token.c - signed playback URLs; see packager_token.h.
 */
#include "packager_token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_HEX 64

static bool ip_ok(const char *ip)
{
    struct in_addr a;

    return strcmp(ip, "any") == 0 || inet_pton(AF_INET, ip, &a) == 1;
}

static void sign(const char *key, const char *scope, const char *expires, const char *ip,
                 char hex[SIG_HEX + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    char msg[512];
    int len = snprintf(msg, sizeof(msg), "%s|%s|%s", scope, expires, ip);

    HMAC(EVP_sha256(), key, (int) strlen(key), (const unsigned char *) msg,
         (size_t) (len < (int) sizeof(msg) ? len : (int) sizeof(msg) - 1), mac, &n);
    for (i = 0; i < n && i < SIG_HEX / 2; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    hex[SIG_HEX] = '\0';
}

int pk_token_mint(const char *key, const char *scope, int64_t expires_s, const char *ip,
                  char out[PK_TOKEN_MAX])
{
    char expires[24], hex[SIG_HEX + 1];

    if (!ip || !*ip)
        ip = "any";
    if (!ip_ok(ip) || expires_s <= 0)
        return -EINVAL;
    snprintf(expires, sizeof(expires), "%lld", (long long) expires_s);
    sign(key, scope, expires, ip, hex);
    snprintf(out, PK_TOKEN_MAX, "~%s_%s_%s", expires, ip, hex);
    return 0;
}

pk_token_verdict_t pk_token_check(const char *key, const char *scope, const char *token,
                                  int64_t now_s, const char *peer)
{
    char expires[24], ip[24], want[SIG_HEX + 1];
    const char *p, *u1, *u2;
    size_t elen, ilen, i;
    long long exp;
    char *end;

    if (!token || token[0] != '~')
        return PK_TOKEN_INVALID;
    p = token + 1;
    u1 = strchr(p, '_');
    u2 = u1 ? strchr(u1 + 1, '_') : NULL;
    if (!u1 || !u2)
        return PK_TOKEN_INVALID;
    elen = (size_t) (u1 - p);
    ilen = (size_t) (u2 - u1 - 1);
    if (elen == 0 || elen >= sizeof(expires) || ilen == 0 || ilen >= sizeof(ip) ||
        strlen(u2 + 1) != SIG_HEX)
        return PK_TOKEN_INVALID;
    memcpy(expires, p, elen);
    expires[elen] = '\0';
    memcpy(ip, u1 + 1, ilen);
    ip[ilen] = '\0';
    for (i = 0; i < elen; i++)
        if (expires[i] < '0' || expires[i] > '9')
            return PK_TOKEN_INVALID;
    errno = 0;
    exp = strtoll(expires, &end, 10);
    if (errno || *end || exp <= 0 || !ip_ok(ip))
        return PK_TOKEN_INVALID;
    sign(key, scope, expires, ip, want);
    if (CRYPTO_memcmp(want, u2 + 1, SIG_HEX) != 0)
        return PK_TOKEN_INVALID;
    if (exp < now_s)
        return PK_TOKEN_EXPIRED;
    if (strcmp(ip, "any") != 0 && (!peer || strcmp(ip, peer) != 0))
        return PK_TOKEN_WRONG_IP;
    return PK_TOKEN_OK;
}

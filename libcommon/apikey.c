/*
 * apikey.c - API keys and roles; see apikey.h.
 */
#include "apikey.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "defs.h"

typedef struct apikey {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    cb_role_t role;
} apikey_t;

struct cb_apikeys {
    apikey_t keys[CB_APIKEYS_MAX];
    size_t n;
};

static const char *const role_names[] = { "none", "viewer", "editor", "admin" };

const char *cb_role_name(cb_role_t role)
{
    if ((unsigned) role >= CB_ARRAY_LEN(role_names))
        return "unknown";
    return role_names[role];
}

int cb_role_parse(const char *name, size_t len, cb_role_t *out)
{
    size_t i;

    for (i = CB_ROLE_VIEWER; i < CB_ARRAY_LEN(role_names); i++) {
        if (strlen(role_names[i]) == len && memcmp(role_names[i], name, len) == 0) {
            *out = (cb_role_t) i;
            return 0;
        }
    }
    return -EINVAL;
}

int cb_apikeys_parse(const char *spec, cb_apikeys_t **out, char *err, size_t errlen)
{
    cb_apikeys_t *k = calloc(1, sizeof(*k));
    const char *p = spec ? spec : "";
    int entry = 0;

    if (!k)
        return -ENOMEM;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t) (comma - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        const char *key;
        size_t klen, i;
        cb_role_t role;
        apikey_t *slot;

        entry++;
        /* tolerate spaces around entries: "admin:a, viewer:b" */
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
            colon = memchr(p, ':', len);
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0) {
            p = comma ? comma + 1 : p + strlen(p);
            continue;
        }
        if (!colon || colon == p || cb_role_parse(p, (size_t) (colon - p), &role)) {
            snprintf(err, errlen,
                     "CASTBUS_API_KEYS: entry %d: expected role:key with role admin, editor or "
                     "viewer",
                     entry);
            goto fail;
        }
        key = colon + 1;
        klen = len - (size_t) (key - p);
        if (klen == 0) {
            snprintf(err, errlen, "CASTBUS_API_KEYS: entry %d: empty key", entry);
            goto fail;
        }
        for (i = 0; i < klen; i++) {
            if ((unsigned char) key[i] <= 0x20 || (unsigned char) key[i] >= 0x7f) {
                snprintf(err, errlen,
                         "CASTBUS_API_KEYS: entry %d: key has spaces or non-printable characters",
                         entry);
                goto fail;
            }
        }
        if (k->n >= CB_APIKEYS_MAX) {
            snprintf(err, errlen, "CASTBUS_API_KEYS: more than %d keys", CB_APIKEYS_MAX);
            goto fail;
        }
        slot = &k->keys[k->n];
        SHA256((const unsigned char *) key, klen, slot->digest);
        for (i = 0; i < k->n; i++) {
            if (memcmp(k->keys[i].digest, slot->digest, sizeof(slot->digest)) == 0) {
                snprintf(err, errlen, "CASTBUS_API_KEYS: entry %d: key listed twice", entry);
                goto fail;
            }
        }
        slot->role = role;
        k->n++;
        p = comma ? comma + 1 : p + len;
    }
    *out = k;
    return 0;

fail:
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
    return -EINVAL;
}

void cb_apikeys_free(cb_apikeys_t *k)
{
    if (!k)
        return;
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

size_t cb_apikeys_count(const cb_apikeys_t *k)
{
    return k ? k->n : 0;
}

/* The role of a key, and its name (CB_APIKEY_ID_LEN hex digits of its
 * digest) into id when id is not NULL and the key is known. */
static cb_role_t lookup(const cb_apikeys_t *k, const char *key, size_t len, char *id)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    cb_role_t role = CB_ROLE_NONE;
    size_t i;

    if (id)
        id[0] = '\0';
    if (!k || len == 0)
        return CB_ROLE_NONE;
    SHA256((const unsigned char *) key, len, digest);
    /* visit every key whatever matches, so timing says nothing */
    for (i = 0; i < k->n; i++) {
        if (CRYPTO_memcmp(k->keys[i].digest, digest, sizeof(digest)) == 0)
            role = k->keys[i].role;
    }
    if (id && role != CB_ROLE_NONE) {
        for (i = 0; i < CB_APIKEY_ID_LEN / 2; i++)
            snprintf(id + 2 * i, 3, "%02x", digest[i]);
    }
    return role;
}

cb_role_t cb_apikeys_lookup(const cb_apikeys_t *k, const char *key, size_t len)
{
    return lookup(k, key, len, NULL);
}

cb_role_t cb_apikeys_authorize_id(const cb_apikeys_t *k, const char *authorization,
                                  char id[CB_APIKEY_ID_LEN + 1])
{
    const char *p = authorization;
    size_t len;

    if (id)
        id[0] = '\0';
    if (!p || strncasecmp(p, "Bearer ", 7) != 0)
        return CB_ROLE_NONE;
    p += 7;
    while (*p == ' ')
        p++;
    len = strlen(p);
    while (len && p[len - 1] == ' ')
        len--;
    return lookup(k, p, len, id);
}

cb_role_t cb_apikeys_authorize(const cb_apikeys_t *k, const char *authorization)
{
    return cb_apikeys_authorize_id(k, authorization, NULL);
}

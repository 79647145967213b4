/*
 * apikey.h - API keys and roles for the REST APIs.
 *
 * Keys come from CASTBUS_API_KEYS, a comma-separated list of role:key
 * entries ("admin:s3cret,viewer:guest"). A request presents a key as
 * "Authorization: Bearer <key>". Roles are ordered: admin can do what
 * editor can, editor what viewer can.
 *
 * Keys are kept only as SHA-256 digests and compared in constant time, so
 * neither a memory dump nor response timing gives a key away.
 *
 * Thread safety: a parsed set is immutable; lookups may run on any thread.
 */
#ifndef CB_APIKEY_H
#define CB_APIKEY_H

#include <stddef.h>

typedef enum cb_role {
    CB_ROLE_NONE = 0, /* public route / unknown key */
    CB_ROLE_VIEWER,
    CB_ROLE_EDITOR,
    CB_ROLE_ADMIN,
} cb_role_t;

#define CB_APIKEYS_MAX 64

typedef struct cb_apikeys cb_apikeys_t;

/*
 * Parse a key list. An empty or NULL spec gives an empty set (every
 * protected route then answers 401). Errors name the offending entry by
 * position, never by its secret. Returns 0 or -EINVAL / -ENOMEM.
 */
int cb_apikeys_parse(const char *spec, cb_apikeys_t **out, char *err, size_t errlen);
void cb_apikeys_free(cb_apikeys_t *k);
size_t cb_apikeys_count(const cb_apikeys_t *k);

/* The role of a presented key, CB_ROLE_NONE if it is not known. */
cb_role_t cb_apikeys_lookup(const cb_apikeys_t *k, const char *key, size_t len);

/*
 * Role from an Authorization header value: "Bearer <key>" (scheme is case
 * insensitive). CB_ROLE_NONE if the header is missing, malformed or unknown.
 */
cb_role_t cb_apikeys_authorize(const cb_apikeys_t *k, const char *authorization);

/*
 * The same, and a name for the key that does not give it away into id
 * (when not NULL): CB_APIKEY_ID_LEN hex digits of its SHA-256, "" for an
 * unknown key. For per-key limits and audit trails.
 */
#define CB_APIKEY_ID_LEN 16
cb_role_t cb_apikeys_authorize_id(const cb_apikeys_t *k, const char *authorization,
                                  char id[CB_APIKEY_ID_LEN + 1]);

const char *cb_role_name(cb_role_t role);
int cb_role_parse(const char *name, size_t len, cb_role_t *out);

#endif /* CB_APIKEY_H */

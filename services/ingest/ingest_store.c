/*
 * ingest_store.c - streams in PostgreSQL; see ingest_store.h.
 */
#include "ingest_store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"
#include "jsonv.h"

/* $2: milliseconds after which a live heartbeat is stale */
#define STREAM_COLUMNS                                                                             \
    "id, name, profile, dvr_window_s, record, signed_playback, priority, "                         \
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created, "        \
    "coalesce(live_instance, '') AS instance, "                                                    \
    "coalesce(to_char(live_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') "      \
    "AS since, (live_heartbeat IS NOT NULL AND live_heartbeat > now() - "                          \
    "make_interval(secs => $2::float8 / 1000)) AS live, coalesce(live_info::text, '') AS info, "   \
    "created_at"

static void random_chars(char *out, size_t n, const char *alphabet)
{
    unsigned char rnd[64];
    size_t len = strlen(alphabet), i;

    CB_ASSERT(n <= sizeof(rnd));
    if (RAND_bytes(rnd, (int) n) != 1)
        CB_ASSERT(!"RAND_bytes failed");
    /* 256 % 36 and 256 % 62 bias: negligible for keys of this length, avoided anyway */
    for (i = 0; i < n; i++) {
        while (rnd[i] >= 256 - 256 % len) {
            if (RAND_bytes(&rnd[i], 1) != 1)
                CB_ASSERT(!"RAND_bytes failed");
        }
        out[i] = alphabet[rnd[i] % len];
    }
    out[n] = '\0';
}

static void hash_hex(const char *secret, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    size_t i;

    SHA256((const unsigned char *) secret, strlen(secret), d);
    for (i = 0; i < sizeof(d); i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void new_key(const char *id, char key[INGEST_KEY_MAX], char hash[65])
{
    char secret[INGEST_SECRET_LEN + 1];

    random_chars(secret, INGEST_SECRET_LEN,
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    snprintf(key, INGEST_KEY_MAX, "%.12s.%.32s", id, secret);
    hash_hex(secret, hash);
    OPENSSL_cleanse(secret, sizeof(secret));
}

void ingest_stream_row_release(ingest_stream_row_t *r)
{
    json_decref(r->live_info);
    r->live_info = NULL;
}

static void row_from_result(PGresult *res, int i, ingest_stream_row_t *r)
{
    const char *info;

    memset(r, 0, sizeof(*r));
    snprintf(r->info.id, sizeof(r->info.id), "%s", PQgetvalue(res, i, 0));
    snprintf(r->info.name, sizeof(r->info.name), "%s", PQgetvalue(res, i, 1));
    snprintf(r->info.profile, sizeof(r->info.profile), "%s", PQgetvalue(res, i, 2));
    r->info.dvr_window_s = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    r->info.record = PQgetvalue(res, i, 4)[0] == 't';
    r->info.signed_playback = PQgetvalue(res, i, 5)[0] == 't';
    r->info.priority_high = strcmp(PQgetvalue(res, i, 6), "high") == 0;
    snprintf(r->created_at, sizeof(r->created_at), "%s", PQgetvalue(res, i, 7));
    snprintf(r->live_instance, sizeof(r->live_instance), "%s", PQgetvalue(res, i, 8));
    snprintf(r->live_since, sizeof(r->live_since), "%s", PQgetvalue(res, i, 9));
    r->live = PQgetvalue(res, i, 10)[0] == 't';
    info = PQgetvalue(res, i, 11);
    r->live_info = info[0] ? json_loads(info, 0, NULL) : NULL;
}

int ingest_store_create(cb_pg_t *db, ingest_stream_info_t *info, char key[INGEST_KEY_MAX],
                        char *err, size_t errlen)
{
    char dvr[24], hash[65];
    int attempt, rc = -EIO;

    snprintf(dvr, sizeof(dvr), "%lld", (long long) info->dvr_window_s);
    for (attempt = 0; attempt < 3; attempt++) {
        random_chars(info->id, INGEST_ID_LEN, "abcdefghijklmnopqrstuvwxyz0123456789");
        new_key(info->id, key, hash);
        rc = cb_pg_exec(db,
                        "INSERT INTO streams (id, name, profile, dvr_window_s, record, "
                        "signed_playback, priority, key_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                        "decode($8, 'hex')) ON CONFLICT (id) DO NOTHING",
                        8,
                        (const char *[]){ info->id, info->name, info->profile, dvr,
                                          info->record ? "true" : "false",
                                          info->signed_playback ? "true" : "false",
                                          info->priority_high ? "high" : "normal", hash },
                        NULL, err, errlen);
        if (rc)
            break;
        /* an id collision (1 in 36^12) just takes another id */
        {
            PGresult *r = NULL;
            rc = cb_pg_exec(db,
                            "SELECT 1 FROM streams WHERE id = $1 AND key_hash = decode($2, 'hex')",
                            2, (const char *[]){ info->id, hash }, &r, err, errlen);
            if (rc == 0 && PQntuples(r) == 1) {
                PQclear(r);
                return 0;
            }
            PQclear(r);
        }
    }
    OPENSSL_cleanse(key, INGEST_KEY_MAX);
    return rc ? rc : -EIO;
}

int ingest_store_get(cb_pg_t *db, const char *id, int64_t stale_after_ms, ingest_stream_row_t *out,
                     char *err, size_t errlen)
{
    char stale[24];
    PGresult *r = NULL;
    int rc;

    snprintf(stale, sizeof(stale), "%lld", (long long) stale_after_ms);
    rc = cb_pg_exec(db, "SELECT " STREAM_COLUMNS " FROM streams WHERE id = $1", 2,
                    (const char *[]){ id, stale }, &r, err, errlen);
    if (rc)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return -ENOENT;
    }
    row_from_result(r, 0, out);
    PQclear(r);
    return 0;
}

int ingest_store_list(cb_pg_t *db, const char *status_filter, int64_t limit, int64_t stale_after_ms,
                      json_t **out, char *err, size_t errlen)
{
    char lim[24], stale[24];
    PGresult *r = NULL;
    json_t *arr;
    int rc, i;

    snprintf(lim, sizeof(lim), "%lld", (long long) limit);
    snprintf(stale, sizeof(stale), "%lld", (long long) stale_after_ms);
    rc = cb_pg_exec(db,
                    "SELECT * FROM (SELECT " STREAM_COLUMNS " FROM streams) s "
                    "WHERE $3::text IS NULL OR ($3 = 'live') = s.live "
                    "ORDER BY s.created_at DESC, s.id LIMIT $1::bigint",
                    3, (const char *[]){ lim, stale, status_filter }, &r, err, errlen);
    if (rc)
        return rc;
    arr = json_array();
    for (i = 0; arr && i < PQntuples(r); i++) {
        ingest_stream_row_t row;
        row_from_result(r, i, &row);
        json_array_append_new(arr, ingest_stream_row_json(&row));
        ingest_stream_row_release(&row);
    }
    PQclear(r);
    *out = arr;
    return arr ? 0 : -ENOMEM;
}

int ingest_store_delete(cb_pg_t *db, const char *id, char *err, size_t errlen)
{
    PGresult *r = NULL;
    int rc = cb_pg_exec(db, "DELETE FROM streams WHERE id = $1 RETURNING id", 1,
                        (const char *[]){ id }, &r, err, errlen);

    if (rc == 0 && PQntuples(r) == 0)
        rc = -ENOENT;
    PQclear(r);
    return rc;
}

int ingest_store_rotate_key(cb_pg_t *db, const char *id, char key[INGEST_KEY_MAX], char *err,
                            size_t errlen)
{
    char hash[65];
    PGresult *r = NULL;
    int rc;

    new_key(id, key, hash);
    rc = cb_pg_exec(db,
                    "UPDATE streams SET key_hash = decode($2, 'hex'), updated_at = now() WHERE id "
                    "= $1 RETURNING id",
                    2, (const char *[]){ id, hash }, &r, err, errlen);
    if (rc == 0 && PQntuples(r) == 0)
        rc = -ENOENT;
    PQclear(r);
    if (rc)
        OPENSSL_cleanse(key, INGEST_KEY_MAX);
    return rc;
}

int ingest_parse_publish_name(const char *name, char key[INGEST_KEY_MAX], bool *backup)
{
    const char *q = strchr(name, '?');
    size_t n = q ? (size_t) (q - name) : strlen(name);

    *backup = false;
    if (n == 0 || n >= INGEST_KEY_MAX)
        return -EINVAL;
    memcpy(key, name, n);
    key[n] = '\0';
    while (q && *q) {
        q++;
        if (strncmp(q, "role=backup", 11) == 0 && (q[11] == '\0' || q[11] == '&'))
            *backup = true;
        q = strchr(q, '&');
    }
    return 0;
}

int ingest_store_verify_key(cb_pg_t *db, const char *key, ingest_stream_info_t *info, char *err,
                            size_t errlen)
{
    const char *dot = strchr(key, '.');
    char id[INGEST_ID_LEN + 1], hash[65];
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    size_t idlen, i;
    PGresult *r = NULL;
    int rc;

    if (!dot || (idlen = (size_t) (dot - key)) != INGEST_ID_LEN ||
        strlen(dot + 1) != INGEST_SECRET_LEN) {
        snprintf(err, errlen, "not a stream key");
        return -EACCES;
    }
    memcpy(id, key, idlen);
    id[idlen] = '\0';
    if (!cb_jsonv_is_ident(id, INGEST_ID_LEN)) {
        snprintf(err, errlen, "not a stream key");
        return -EACCES;
    }
    rc = cb_pg_exec(db,
                    "SELECT id, name, profile, dvr_window_s, record, signed_playback, priority, "
                    "encode(key_hash, 'hex') FROM streams WHERE id = $1",
                    1, (const char *[]){ id }, &r, err, errlen);
    if (rc)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        snprintf(err, errlen, "unknown stream key");
        return -EACCES;
    }
    hash_hex(dot + 1, hash);
    for (i = 0; i < sizeof(want); i++) {
        unsigned int a = 0, b = 0;
        sscanf(PQgetvalue(r, 0, 7) + 2 * i, "%2x", &a);
        sscanf(hash + 2 * i, "%2x", &b);
        want[i] = (unsigned char) a;
        got[i] = (unsigned char) b;
    }
    if (CRYPTO_memcmp(want, got, sizeof(want)) != 0) {
        PQclear(r);
        snprintf(err, errlen, "unknown stream key");
        return -EACCES;
    }
    memset(info, 0, sizeof(*info));
    snprintf(info->id, sizeof(info->id), "%s", PQgetvalue(r, 0, 0));
    snprintf(info->name, sizeof(info->name), "%s", PQgetvalue(r, 0, 1));
    snprintf(info->profile, sizeof(info->profile), "%s", PQgetvalue(r, 0, 2));
    info->dvr_window_s = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    info->record = PQgetvalue(r, 0, 4)[0] == 't';
    info->signed_playback = PQgetvalue(r, 0, 5)[0] == 't';
    info->priority_high = strcmp(PQgetvalue(r, 0, 6), "high") == 0;
    PQclear(r);
    return 0;
}

int ingest_store_set_live(cb_pg_t *db, const char *id, const char *instance, bool live,
                          const json_t *live_info, char *err, size_t errlen)
{
    char *info = live_info ? json_dumps(live_info, JSON_COMPACT) : NULL;
    int rc;

    if (live)
        rc = cb_pg_exec(db,
                        "UPDATE streams SET live_instance = $2, live_heartbeat = now(), "
                        "live_since = CASE WHEN live_instance IS DISTINCT FROM $2 OR live_since IS "
                        "NULL OR live_heartbeat < now() - interval '1 minute' THEN now() ELSE "
                        "live_since END, live_info = $3::jsonb WHERE id = $1",
                        3, (const char *[]){ id, instance, info }, NULL, err, errlen);
    else
        rc = cb_pg_exec(db,
                        "UPDATE streams SET live_instance = NULL, live_heartbeat = NULL, "
                        "live_since = NULL, live_info = $3::jsonb WHERE id = $1 AND "
                        "live_instance = $2",
                        3, (const char *[]){ id, instance, info }, NULL, err, errlen);
    free(info);
    return rc;
}

json_t *ingest_stream_row_json(const ingest_stream_row_t *r)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:b, s:b, s:s, s:s, s:s}", "id", r->info.id, "name",
                  r->info.name, "profile", r->info.profile, "dvr_window_s",
                  (json_int_t) r->info.dvr_window_s, "record", r->info.record, "signed_playback",
                  r->info.signed_playback, "priority", r->info.priority_high ? "high" : "normal",
                  "created_at", r->created_at, "status", r->live ? "live" : "idle");

    if (o && r->live) {
        json_object_set_new(o, "since", json_string(r->live_since));
        json_object_set_new(o, "instance", json_string(r->live_instance));
    }
    if (o && r->live_info && r->live)
        json_object_set(o, "live", r->live_info);
    return o;
}

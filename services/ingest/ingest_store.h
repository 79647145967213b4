/*
 * ingest_store.h - the streams table: what may be published, with which
 * key, and where it is live.
 *
 * A stream key is "<stream id>.<secret>". Only the SHA-256 of the secret is
 * stored; a key is valid only for the stream its id names, and comparisons
 * take constant time. Keys are shown once, when created or rotated.
 *
 * Threads: blocking (libpq): call from worker threads, never from a loop.
 */
#ifndef INGEST_STORE_H
#define INGEST_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "pg.h"

#include "ingest_writer.h"

#define INGEST_ID_LEN     12 /* [a-z0-9] */
#define INGEST_SECRET_LEN 32 /* [A-Za-z0-9] */
#define INGEST_KEY_MAX    (INGEST_ID_LEN + 1 + INGEST_SECRET_LEN + 1)

typedef struct ingest_stream_row {
    ingest_stream_info_t info;
    char created_at[40];
    char live_instance[128];
    char live_since[40];
    bool live;         /* live_heartbeat is fresh */
    json_t *live_info; /* own reference or NULL */
} ingest_stream_row_t;

void ingest_stream_row_release(ingest_stream_row_t *r);

/*
 * New stream: fills info->id and the key (shown to the caller once).
 * Errors: -ECONNREFUSED/-ETIMEDOUT (database), -EIO.
 */
int ingest_store_create(cb_pg_t *db, ingest_stream_info_t *info, char key[INGEST_KEY_MAX],
                        char *err, size_t errlen);
/* -ENOENT when there is no such stream. */
int ingest_store_get(cb_pg_t *db, const char *id, int64_t stale_after_ms, ingest_stream_row_t *out,
                     char *err, size_t errlen);
/* The newest streams first; status_filter: NULL, "live" or "idle". Returns an array (new ref). */
int ingest_store_list(cb_pg_t *db, const char *status_filter, int64_t limit, int64_t stale_after_ms,
                      json_t **out, char *err, size_t errlen);
int ingest_store_delete(cb_pg_t *db, const char *id, char *err, size_t errlen);
int ingest_store_rotate_key(cb_pg_t *db, const char *id, char key[INGEST_KEY_MAX], char *err,
                            size_t errlen);

/*
 * Check a presented key: 0 and the stream's settings in *info when it is the
 * key of an existing stream; -EACCES when it is not (no distinction between
 * "no such stream" and "wrong secret" for the caller to leak).
 */
int ingest_store_verify_key(cb_pg_t *db, const char *key, ingest_stream_info_t *info, char *err,
                            size_t errlen);

/* Live state of a stream (live false: clear it, if this instance holds it). */
int ingest_store_set_live(cb_pg_t *db, const char *id, const char *instance, bool live,
                          const json_t *live_info, char *err, size_t errlen);

/* A row as the REST API shows it (new reference). */
json_t *ingest_stream_row_json(const ingest_stream_row_t *r);

/* Parse "<id>.<secret>[?role=backup&...]": the key part and whether it asks to be the backup. */
int ingest_parse_publish_name(const char *name, char key[INGEST_KEY_MAX], bool *backup);

#endif /* INGEST_STORE_H */

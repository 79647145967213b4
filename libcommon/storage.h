/*
 * storage.h - where media and manifests live: a key/value store of files
 * ("live/<stream>/src/000123.ts") behind a backend ops struct.
 *
 * Writes are atomic: a reader sees the old object or the new one, never a
 * partial file (the filesystem backend writes a temporary file, fsyncs it,
 * renames it into place and fsyncs the directory). An S3 backend can
 * implement the same ops later; callers only see keys.
 *
 * Keys are relative paths of segments made of [A-Za-z0-9._-], no empty,
 * "." or ".." segment, at most CB_STORAGE_KEY_MAX bytes: a key can never
 * leave the storage root.
 *
 * Threads: any thread; backends are thread-safe. Calls block on I/O.
 */
#ifndef CB_STORAGE_H
#define CB_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "daemon.h"
#include "metrics.h"

#define CB_STORAGE_KEY_MAX 512

typedef struct cb_storage_config {
    char *url;  /* "file:///var/lib/castbus" or a plain directory path */
    bool fsync; /* make each write durable before it is visible (crash safety) */
} cb_storage_config_t;

extern const cb_config_key_t cb_storage_config_keys[];

typedef struct cb_storage_stat {
    uint64_t size;
    int64_t mtime_ms; /* last modification, ms since the epoch */
} cb_storage_stat_t;

/* Called for each key under a prefix; return non-zero to stop. */
typedef int (*cb_storage_list_fn)(void *arg, const char *key, const cb_storage_stat_t *st);

typedef struct cb_storage_ops {
    const char *scheme; /* "file" */
    int (*open)(const char *location, bool fsync, void **state, char *err, size_t errlen);
    void (*close)(void *state);
    int (*put)(void *state, const char *key, const void *data, size_t len);
    /* move a finished local file into the store (atomic); the file is consumed */
    int (*put_file)(void *state, const char *key, const char *path);
    /* replace a small object's bytes where they are (NULL: put is used) */
    int (*overwrite)(void *state, const char *key, const void *data, size_t len);
    int (*get)(void *state, const char *key, cb_buf_t *out);
    int (*stat)(void *state, const char *key, cb_storage_stat_t *st);
    int (*remove)(void *state, const char *key);
    int (*list)(void *state, const char *prefix, cb_storage_list_fn fn, void *arg);
    int (*check)(void *state, char *err, size_t errlen);
    /* a local path for serving a key with sendfile; -ENOTSUP for remote backends */
    int (*local_path)(void *state, const char *key, char *out, size_t outlen);
} cb_storage_ops_t;

extern const cb_storage_ops_t cb_storage_fs_ops;

typedef struct cb_storage cb_storage_t;

int cb_storage_open(const cb_storage_config_t *cfg, cb_metrics_t *metrics, cb_storage_t **out,
                    char *err, size_t errlen);
void cb_storage_close(cb_storage_t *s);

bool cb_storage_key_valid(const char *key);

/* All return 0 or a negative errno: -EINVAL (bad key), -ENOENT, -E2BIG (get over out->max). */
int cb_storage_put(cb_storage_t *s, const char *key, const void *data, size_t len);
int cb_storage_put_file(cb_storage_t *s, const char *key, const char *path);
/*
 * Replace a small object's content in place, creating it if needed: much
 * cheaper than put for state rewritten every few seconds (no new file, no
 * rename), but not atomic. A reader racing it, or a machine crash without
 * storage_fsync, may see a torn object: only for data whose reader copes
 * (a cursor with a fallback). Stores without in-place writes use put.
 */
int cb_storage_overwrite(cb_storage_t *s, const char *key, const void *data, size_t len);
int cb_storage_get(cb_storage_t *s, const char *key, cb_buf_t *out);
int cb_storage_stat(cb_storage_t *s, const char *key, cb_storage_stat_t *st);
int cb_storage_remove(cb_storage_t *s, const char *key);
/* Keys under prefix ("live/abc/" or "" for all), in no particular order. */
int cb_storage_list(cb_storage_t *s, const char *prefix, cb_storage_list_fn fn, void *arg);
int cb_storage_local_path(cb_storage_t *s, const char *key, char *out, size_t outlen);

/* ready: the store is reachable and writable. */
extern const cb_component_ops_t cb_storage_component;

#endif /* CB_STORAGE_H */

/*
 * log.h - JSON-lines logging.
 *
 * One line per event on stderr (or a sink set for tests):
 *   {"ts":"2026-11-21T10:00:00.123Z","level":"info","daemon":"ingest",
 *    "msg":"publish started","stream_id":"s1"}
 * The message is printf-formatted and checked by the compiler. Ids that let
 * an operator follow one stream, job or request come from an explicit
 * cb_log_ids_t, and from a per-thread scope (e.g. the HTTP request being
 * served), explicit ids winning.
 *
 * Messages are lower case and say what failed first, quoting the subject:
 *   cb_log_error("open('%s') failed: %s", path, strerror(errno));
 *
 * Thread safety: all functions may be called from any thread; each line is
 * written with a single write(2) so lines never interleave.
 */
#ifndef CB_LOG_H
#define CB_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include "defs.h"

typedef enum cb_log_level {
    CB_LOG_DEBUG = 0,
    CB_LOG_INFO,
    CB_LOG_WARN,
    CB_LOG_ERROR,
} cb_log_level_t;

/* Ids carried by a log line; NULL members are left out. All borrowed. */
typedef struct cb_log_ids {
    const char *request_id;
    const char *stream_id;
    const char *job_id;
    const char *session_id;
    const char *edge;
} cb_log_ids_t;

/* Longest message kept; longer ones are cut and marked "...(truncated)". */
#define CB_LOG_MSG_MAX 4096

/* Name the daemon (copied) and set the level. Call once at start-up. */
void cb_log_init(const char *daemon, cb_log_level_t level);
void cb_log_set_level(cb_log_level_t level);
cb_log_level_t cb_log_get_level(void);

/* "debug", "info", "warn"/"warning", "error" -> level. -EINVAL otherwise. */
/* Level names indexed by cb_log_level_t, NULL-terminated (for enum tables). */
extern const char *const cb_log_level_names[];
int cb_log_level_parse(const char *name, cb_log_level_t *out);
const char *cb_log_level_name(cb_log_level_t level);

/*
 * Redirect output (unit tests). The sink gets one complete line including
 * the trailing newline. NULL restores stderr.
 */
typedef void (*cb_log_sink_fn)(const char *line, size_t len, void *arg);
void cb_log_set_sink(cb_log_sink_fn fn, void *arg);

/*
 * Set the calling thread's scope ids (borrowed until replaced or cleared
 * with NULL). Used by the HTTP server for request_id, by consumers for the
 * message being handled.
 */
void cb_log_scope_set(const cb_log_ids_t *ids);
const cb_log_ids_t *cb_log_scope_get(void);

int cb_log_enabled(cb_log_level_t level);

void cb_log_write(cb_log_level_t level, const cb_log_ids_t *ids, const char *fmt, ...)
    CB_PRINTF(3, 4);
void cb_log_vwrite(cb_log_level_t level, const cb_log_ids_t *ids, const char *fmt, va_list ap)
    CB_PRINTF(3, 0);

#define CB_LOG(level, ids, ...)                                                                    \
    do {                                                                                           \
        if (cb_log_enabled(level))                                                                 \
            cb_log_write((level), (ids), __VA_ARGS__);                                             \
    } while (0)

#define cb_log_debug(...) CB_LOG(CB_LOG_DEBUG, NULL, __VA_ARGS__)
#define cb_log_info(...)  CB_LOG(CB_LOG_INFO, NULL, __VA_ARGS__)
#define cb_log_warn(...)  CB_LOG(CB_LOG_WARN, NULL, __VA_ARGS__)
#define cb_log_error(...) CB_LOG(CB_LOG_ERROR, NULL, __VA_ARGS__)

#endif /* CB_LOG_H */

/*
 * log.c - JSON-lines logger; see log.h.
 *
 * DESIGN: the level is an atomic so hot paths can test it without a lock.
 * A line is built in a bounded buffer (the message is cut at
 * CB_LOG_MSG_MAX) and written with one write(2), which keeps lines whole
 * when several threads log at once. A failed write is dropped: logging must
 * never block or crash the daemon.
 */
#include "log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static char log_daemon[64] = "castbus";
static atomic_int log_level = CB_LOG_INFO;
static cb_log_sink_fn log_sink;
static void *log_sink_arg;
static _Thread_local const cb_log_ids_t *log_scope;

const char *const cb_log_level_names[] = { "debug", "info", "warn", "error", NULL };

void cb_log_init(const char *daemon, cb_log_level_t level)
{
    snprintf(log_daemon, sizeof(log_daemon), "%s", daemon);
    atomic_store(&log_level, (int) level);
}

void cb_log_set_level(cb_log_level_t level)
{
    atomic_store(&log_level, (int) level);
}

cb_log_level_t cb_log_get_level(void)
{
    return (cb_log_level_t) atomic_load(&log_level);
}

int cb_log_level_parse(const char *name, cb_log_level_t *out)
{
    size_t i;

    for (i = 0; cb_log_level_names[i]; i++) {
        if (strcmp(name, cb_log_level_names[i]) == 0) {
            *out = (cb_log_level_t) i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = CB_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

const char *cb_log_level_name(cb_log_level_t level)
{
    if ((unsigned) level > CB_LOG_ERROR)
        return "unknown";
    return cb_log_level_names[level];
}

void cb_log_set_sink(cb_log_sink_fn fn, void *arg)
{
    log_sink = fn;
    log_sink_arg = arg;
}

void cb_log_scope_set(const cb_log_ids_t *ids)
{
    log_scope = ids;
}

const cb_log_ids_t *cb_log_scope_get(void)
{
    return log_scope;
}

int cb_log_enabled(cb_log_level_t level)
{
    return (int) level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void append_id(cb_buf_t *b, const char *key, const char *explicit, const char *scoped)
{
    const char *v = explicit ? explicit : scoped;

    if (!v)
        return;
    cb_buf_appendf(b, ",\"%s\":", key);
    cb_buf_append_json_string(b, v, strlen(v));
}

void cb_log_vwrite(cb_log_level_t level, const cb_log_ids_t *ids, const char *fmt, va_list ap)
{
    static const cb_log_ids_t none;
    char msg[CB_LOG_MSG_MAX + 32];
    char ts[96];
    struct timespec now;
    struct tm tm;
    const cb_log_ids_t *e = ids ? ids : &none;
    const cb_log_ids_t *s = log_scope ? log_scope : &none;
    cb_buf_t b;
    int n, saved_errno = errno;
    size_t mlen;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    n = vsnprintf(msg, CB_LOG_MSG_MAX + 1, fmt, ap);
    if (n < 0) {
        snprintf(msg, sizeof(msg), "(unformattable log message '%s')", fmt);
        mlen = strlen(msg);
    } else if ((size_t) n > CB_LOG_MSG_MAX) {
        mlen = CB_LOG_MSG_MAX;
        memcpy(msg + mlen, "...(truncated)", 15);
        mlen += 14;
    } else {
        mlen = (size_t) n;
    }

    /* the bound is generous: msg is at most ~6x its size once escaped */
    cb_buf_init(&b, 8 * CB_LOG_MSG_MAX);
    cb_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"daemon\":", ts, cb_log_level_name(level));
    cb_buf_append_json_string(&b, log_daemon, strlen(log_daemon));
    cb_buf_append_str(&b, ",\"msg\":");
    cb_buf_append_json_string(&b, msg, mlen);
    append_id(&b, "request_id", e->request_id, s->request_id);
    append_id(&b, "stream_id", e->stream_id, s->stream_id);
    append_id(&b, "job_id", e->job_id, s->job_id);
    append_id(&b, "session_id", e->session_id, s->session_id);
    append_id(&b, "edge", e->edge, s->edge);
    cb_buf_append(&b, "}\n", 2);

    if (b.data) {
        if (log_sink) {
            log_sink(b.data, b.len, log_sink_arg);
        } else {
            ssize_t w = write(STDERR_FILENO, b.data, b.len);
            (void) w; /* nowhere to report a failed log write */
        }
    }
    cb_buf_release(&b);
    errno = saved_errno;
}

void cb_log_write(cb_log_level_t level, const cb_log_ids_t *ids, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cb_log_vwrite(level, ids, fmt, ap);
    va_end(ap);
}

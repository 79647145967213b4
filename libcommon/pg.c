/*
 * pg.c - libpq connection pool with reconnect and migrations; see pg.h.
 *
 * DESIGN: a fixed array of slots under one mutex; a caller waits (bounded)
 * for a free slot, uses its PGconn without the lock, and gives it back. A
 * broken connection is dropped and re-made on next use, no more often than
 * a backoff allows, so a database outage costs one failed attempt per
 * backoff period instead of a connect storm.
 */
#include "pg.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define MAX_POOL        64
#define ACQUIRE_WAIT_MS 5000
#define BACKOFF_MAX_MS  5000

const cb_config_key_t cb_pg_config_keys[] = {
    { .name = "pg_dsn",
      .type = CB_CONFIG_STRING,
      .def = "postgresql://castbus:castbus@127.0.0.1:5432/castbus",
      .flags = CB_CONFIG_REQUIRED | CB_CONFIG_SECRET,
      .offset = offsetof(cb_pg_config_t, dsn),
      .help = "PostgreSQL connection string (URI or key=value form)." },
    { .name = "pg_pool_size",
      .type = CB_CONFIG_INT,
      .def = "4",
      .min = 1,
      .max = MAX_POOL,
      .offset = offsetof(cb_pg_config_t, pool_size),
      .help = "Database connections this daemon keeps open at most." },
    { .name = "pg_connect_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "3s",
      .min = 1000,
      .max = 60000,
      .offset = offsetof(cb_pg_config_t, connect_timeout_ms),
      .help = "How long one connection attempt may take." },
    { .name = "pg_statement_timeout",
      .type = CB_CONFIG_DURATION,
      .def = "10s",
      .min = 10,
      .max = 3600000,
      .offset = offsetof(cb_pg_config_t, statement_timeout_ms),
      .help = "Longest a single SQL statement may run." },
    { .name = NULL },
};

typedef struct slot {
    PGconn *conn;
    bool busy;
    int64_t retry_at_ms; /* do not reconnect before this */
    int64_t backoff_ms;
} slot_t;

struct cb_pg {
    char *dsn;
    char schema[64];
    int64_t connect_timeout_ms, statement_timeout_ms;
    const cb_pg_migration_t *migrations;
    size_t nmigrations;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    slot_t slots[MAX_POOL];
    size_t nslots;
    atomic_bool migrated;
    atomic_int schema_version;
    pthread_mutex_t migrate_lock;
    cb_metric_t *m_queries, *m_duration;
};

/* libpq messages end with a newline; keep log lines and errors on one line. */
static void one_line(char *s)
{
    size_t n = strlen(s);

    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    for (; *s; s++) {
        if (*s == '\n' || *s == '\t')
            *s = ' ';
    }
}

int cb_pg_new(const cb_pg_config_t *cfg, const char *schema, const cb_pg_migration_t *migrations,
              size_t nmigrations, cb_metrics_t *metrics, cb_pg_t **out, char *err, size_t errlen)
{
    cb_pg_t *pg;
    char *perr = NULL;
    PQconninfoOption *opts;
    size_t i;

    for (i = 0; schema[i]; i++) {
        CB_ASSERT(islower((unsigned char) schema[i]) || isdigit((unsigned char) schema[i]) ||
                  schema[i] == '_');
    }
    opts = PQconninfoParse(cfg->dsn, &perr);
    if (!opts) {
        snprintf(err, errlen, "CASTBUS_PG_DSN: %s", perr ? perr : "cannot be parsed");
        one_line(err);
        PQfreemem(perr);
        return -EINVAL;
    }
    PQconninfoFree(opts);
    pg = calloc(1, sizeof(*pg));
    if (!pg)
        return -ENOMEM;
    pg->dsn = strdup(cfg->dsn);
    if (!pg->dsn) {
        free(pg);
        return -ENOMEM;
    }
    snprintf(pg->schema, sizeof(pg->schema), "%s", schema);
    pg->connect_timeout_ms = cfg->connect_timeout_ms;
    pg->statement_timeout_ms = cfg->statement_timeout_ms;
    pg->migrations = migrations;
    pg->nmigrations = nmigrations;
    pg->nslots = (size_t) CB_MAX(1, CB_MIN(cfg->pool_size, MAX_POOL));
    pthread_mutex_init(&pg->lock, NULL);
    pthread_mutex_init(&pg->migrate_lock, NULL);
    pthread_cond_init(&pg->freed, NULL);
    for (i = 1; i < nmigrations; i++)
        CB_ASSERT(migrations[i].version > migrations[i - 1].version);
    pg->m_queries =
        cb_metrics_counter(metrics, "castbus_pg_queries_total", "SQL statements run, by result.",
                           (const char *[]){ "result", NULL });
    pg->m_duration =
        cb_metrics_histogram(metrics, "castbus_pg_query_duration_seconds",
                             "Time an SQL statement took, waiting for a connection "
                             "included.",
                             NULL, cb_metrics_latency_buckets, cb_metrics_latency_nbuckets);
    *out = pg;
    return 0;
}

/* The server's NOTICEs ("schema ... already exists, skipping") go to the
 * JSON log, not to stderr as libpq's default processor would print them. */
static void log_notice(void *arg, const char *message)
{
    size_t n = strlen(message);

    (void) arg;
    while (n && (message[n - 1] == '\n' || message[n - 1] == ' '))
        n--;
    cb_log_debug("postgres: %.*s", (int) n, message);
}

/* Connect with the pool's settings: its connect timeout, named after its user. */
static PGconn *connect_as(const char *dsn, int64_t connect_timeout_ms, const char *who)
{
    const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
    char timeout[24], app[96];
    const char *vals[4];
    PGconn *conn;

    snprintf(timeout, sizeof(timeout), "%lld", (long long) CB_MAX(1, connect_timeout_ms / 1000));
    snprintf(app, sizeof(app), "castbus-%s", who);
    vals[0] = dsn; /* expand_dbname: the DSN itself, the rest as defaults */
    vals[1] = timeout;
    vals[2] = app;
    vals[3] = NULL;
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn)
        PQsetNoticeProcessor(conn, log_notice, NULL);
    return conn;
}

/* Make a connection for a slot. Slot is busy (ours); no lock held. */
static int slot_connect(cb_pg_t *pg, slot_t *s, char *err, size_t errlen)
{
    char set[160];
    PGresult *r;

    s->conn = connect_as(pg->dsn, pg->connect_timeout_ms, pg->schema);
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s",
                 s->conn ? PQerrorMessage(s->conn) : "out of memory");
        one_line(err);
        PQfinish(s->conn);
        s->conn = NULL;
        return -ECONNREFUSED;
    }
    snprintf(set, sizeof(set), "SET statement_timeout = %lld; SET search_path TO %s, public",
             (long long) pg->statement_timeout_ms, pg->schema);
    r = PQexec(s->conn, set);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "setting up the session failed: %s", PQerrorMessage(s->conn));
        one_line(err);
        PQclear(r);
        PQfinish(s->conn);
        s->conn = NULL;
        return -EIO;
    }
    PQclear(r);
    return 0;
}

/* Take a slot with a live connection. */
static int acquire(cb_pg_t *pg, int64_t wait_ms, slot_t **out, char *err, size_t errlen)
{
    int64_t deadline = cb_clock_mono_ms() + wait_ms;
    slot_t *s = NULL;
    size_t i;
    int rc;

    pthread_mutex_lock(&pg->lock);
    for (;;) {
        /* prefer a free slot that is already connected */
        for (i = 0; i < pg->nslots && !s; i++) {
            if (!pg->slots[i].busy && pg->slots[i].conn)
                s = &pg->slots[i];
        }
        for (i = 0; i < pg->nslots && !s; i++) {
            if (!pg->slots[i].busy)
                s = &pg->slots[i];
        }
        if (s)
            break;
        {
            struct timespec until;
            int64_t left = deadline - cb_clock_mono_ms();
            if (left <= 0) {
                pthread_mutex_unlock(&pg->lock);
                snprintf(err, errlen, "no free database connection within %lldms",
                         (long long) wait_ms);
                return -ETIMEDOUT;
            }
            cb_clock_deadline(&until, left * 1000);
            pthread_cond_timedwait(&pg->freed, &pg->lock, &until);
        }
    }
    s->busy = true;
    if (!s->conn && cb_clock_mono_ms() < s->retry_at_ms) {
        s->busy = false;
        pthread_mutex_unlock(&pg->lock);
        snprintf(err, errlen, "database unreachable; next connection attempt in %lldms",
                 (long long) (s->retry_at_ms - cb_clock_mono_ms()));
        return -ECONNREFUSED;
    }
    pthread_mutex_unlock(&pg->lock);

    if (s->conn && PQstatus(s->conn) != CONNECTION_OK) {
        PQfinish(s->conn);
        s->conn = NULL;
    }
    if (!s->conn) {
        rc = slot_connect(pg, s, err, errlen);
        pthread_mutex_lock(&pg->lock);
        if (rc) {
            s->backoff_ms = s->backoff_ms ? CB_MIN(s->backoff_ms * 2, BACKOFF_MAX_MS) : 250;
            s->retry_at_ms = cb_clock_mono_ms() + s->backoff_ms;
            s->busy = false;
            pthread_cond_signal(&pg->freed);
            pthread_mutex_unlock(&pg->lock);
            return rc;
        }
        s->backoff_ms = 0;
        pthread_mutex_unlock(&pg->lock);
    }
    *out = s;
    return 0;
}

static void release(cb_pg_t *pg, slot_t *s)
{
    pthread_mutex_lock(&pg->lock);
    if (s->conn && PQstatus(s->conn) != CONNECTION_OK) {
        cb_log_warn("postgres: connection lost; it will be re-made");
        PQfinish(s->conn);
        s->conn = NULL;
    }
    s->busy = false;
    pthread_cond_signal(&pg->freed);
    pthread_mutex_unlock(&pg->lock);
}

static int result_error(PGresult *r, PGconn *conn, char *err, size_t errlen)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

    snprintf(err, errlen, "%s%s%s", r ? PQresultErrorMessage(r) : PQerrorMessage(conn),
             state ? " SQLSTATE " : "", state ? state : "");
    one_line(err);
    if (state && strcmp(state, "57014") == 0)
        return -ETIMEDOUT; /* query_canceled: the statement timeout */
    if (PQstatus(conn) != CONNECTION_OK)
        return -ECONNREFUSED;
    return -EIO;
}

/* Run on a slot we hold. */
static int slot_exec(slot_t *s, const char *sql, int nparams, const char *const *params,
                     PGresult **res, char *err, size_t errlen)
{
    PGresult *r = PQexecParams(s->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        if (res)
            *res = r;
        else
            PQclear(r);
        return 0;
    }
    {
        int rc = result_error(r, s->conn, err, errlen);
        PQclear(r);
        return rc;
    }
}

static int migrate_locked(cb_pg_t *pg, slot_t *s, char *err, size_t errlen)
{
    char sql[512], ver[16];
    PGresult *r = NULL;
    size_t i;
    int rc, applied = 0;

    snprintf(sql, sizeof(sql),
             "CREATE SCHEMA IF NOT EXISTS %s; "
             "CREATE TABLE IF NOT EXISTS %s.schema_migrations ("
             "version integer PRIMARY KEY, name text NOT NULL, "
             "applied_at timestamptz NOT NULL DEFAULT now())",
             pg->schema, pg->schema);
    /* replicas may race to create the schema itself: serialise on a lock first */
    rc = slot_exec(s, "SELECT pg_advisory_lock(hashtext('castbus:migrate:' || $1))", 1,
                   (const char *[]){ pg->schema }, NULL, err, errlen);
    if (rc)
        return rc;
    r = PQexec(s->conn, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = result_error(r, s->conn, err, errlen);
        PQclear(r);
        goto unlock;
    }
    PQclear(r);
    for (i = 0; i < pg->nmigrations; i++) {
        const cb_pg_migration_t *m = &pg->migrations[i];
        char check[256];

        snprintf(ver, sizeof(ver), "%d", m->version);
        snprintf(check, sizeof(check), "SELECT 1 FROM %s.schema_migrations WHERE version = $1",
                 pg->schema);
        rc = slot_exec(s, check, 1, (const char *[]){ ver }, &r, err, errlen);
        if (rc)
            goto unlock;
        if (PQntuples(r) > 0) {
            PQclear(r);
            atomic_store(&pg->schema_version, m->version);
            continue;
        }
        PQclear(r);
        r = PQexec(s->conn, "BEGIN");
        PQclear(r);
        r = PQexec(s->conn, m->sql);
        if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
            char why[384];
            result_error(r, s->conn, why, sizeof(why));
            snprintf(err, errlen, "migration %s failed: %s", m->name, why);
            PQclear(r);
            PQclear(PQexec(s->conn, "ROLLBACK"));
            rc = -EIO;
            goto unlock;
        }
        PQclear(r);
        snprintf(check, sizeof(check),
                 "INSERT INTO %s.schema_migrations (version, name) VALUES ($1, $2)", pg->schema);
        rc = slot_exec(s, check, 2, (const char *[]){ ver, m->name }, NULL, err, errlen);
        if (rc) {
            PQclear(PQexec(s->conn, "ROLLBACK"));
            goto unlock;
        }
        r = PQexec(s->conn, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = result_error(r, s->conn, err, errlen);
            PQclear(r);
            goto unlock;
        }
        PQclear(r);
        atomic_store(&pg->schema_version, m->version);
        applied++;
        cb_log_info("postgres: applied migration %s to schema '%s'", m->name, pg->schema);
    }
    rc = 0;
unlock : {
    char e2[64];
    slot_exec(s, "SELECT pg_advisory_unlock(hashtext('castbus:migrate:' || $1))", 1,
              (const char *[]){ pg->schema }, NULL, e2, sizeof(e2));
}
    if (rc == 0 && applied == 0)
        cb_log_info("postgres: schema '%s' is current (version %d)", pg->schema,
                    atomic_load(&pg->schema_version));
    return rc;
}

int cb_pg_migrate(cb_pg_t *pg, char *err, size_t errlen)
{
    slot_t *s;
    int rc;

    if (atomic_load(&pg->migrated))
        return 0;
    pthread_mutex_lock(&pg->migrate_lock);
    if (atomic_load(&pg->migrated)) {
        pthread_mutex_unlock(&pg->migrate_lock);
        return 0;
    }
    rc = acquire(pg, ACQUIRE_WAIT_MS, &s, err, errlen);
    if (rc == 0) {
        rc = migrate_locked(pg, s, err, errlen);
        release(pg, s);
    }
    if (rc == 0)
        atomic_store(&pg->migrated, true);
    pthread_mutex_unlock(&pg->migrate_lock);
    return rc;
}

int cb_pg_schema_version(cb_pg_t *pg)
{
    return atomic_load(&pg->schema_version);
}

int cb_pg_exec(cb_pg_t *pg, const char *sql, int nparams, const char *const *params, PGresult **res,
               char *err, size_t errlen)
{
    struct timespec t0, t1;
    slot_t *s;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = cb_pg_migrate(pg, err, errlen);
    if (rc == 0)
        rc = acquire(pg, ACQUIRE_WAIT_MS, &s, err, errlen);
    if (rc == 0) {
        rc = slot_exec(s, sql, nparams, params, res, err, errlen);
        release(pg, s);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cb_metric_observe(pg->m_duration, NULL,
                      (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
    cb_metric_add(pg->m_queries,
                  (const char *[]){ rc == 0               ? "ok"
                                    : rc == -ETIMEDOUT    ? "timeout"
                                    : rc == -ECONNREFUSED ? "unavailable"
                                                          : "error" },
                  1);
    return rc;
}

void cb_pg_free(cb_pg_t *pg)
{
    size_t i;

    if (!pg)
        return;
    for (i = 0; i < pg->nslots; i++)
        PQfinish(pg->slots[i].conn);
    pthread_cond_destroy(&pg->freed);
    pthread_mutex_destroy(&pg->lock);
    pthread_mutex_destroy(&pg->migrate_lock);
    free(pg->dsn);
    free(pg);
}

int cb_pg_notify(cb_pg_t *pg, const char *channel, const char *payload, char *err, size_t errlen)
{
    return cb_pg_exec(pg, "SELECT pg_notify($1, $2)", 2, (const char *[]){ channel, payload }, NULL,
                      err, errlen);
}

struct cb_pg_listener {
    char *dsn;
    int64_t connect_timeout_ms;
    char channel[64];
    void (*fn)(void *arg, const char *payload);
    void *arg;
    pthread_t thread;
    atomic_bool stop;
};

static void *listen_main(void *arg)
{
    cb_pg_listener_t *l = arg;
    PGconn *conn = NULL;
    int64_t backoff = 250;

    pthread_setname_np(pthread_self(), "pg-listen");
    while (!atomic_load(&l->stop)) {
        PGnotify *note;
        struct timeval tv = { 0, 250000 };
        fd_set fds;
        int fd;

        if (!conn || PQstatus(conn) != CONNECTION_OK) {
            char sql[96];
            PGresult *r;

            PQfinish(conn);
            snprintf(sql, sizeof(sql), "listen-%s", l->channel);
            conn = connect_as(l->dsn, l->connect_timeout_ms, sql);
            snprintf(sql, sizeof(sql), "LISTEN %s", l->channel);
            r = PQstatus(conn) == CONNECTION_OK ? PQexec(conn, sql) : NULL;
            if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
                int64_t until = cb_clock_mono_ms() + backoff;

                PQclear(r);
                PQfinish(conn);
                conn = NULL;
                /* wait out the backoff in short steps, so stopping is not delayed by it */
                while (!atomic_load(&l->stop) && cb_clock_mono_ms() < until)
                    usleep(50 * 1000);
                backoff = CB_MIN(backoff * 2, BACKOFF_MAX_MS);
                continue;
            }
            PQclear(r);
            backoff = 250;
        }
        fd = PQsocket(conn);
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        if (select(fd + 1, &fds, NULL, NULL, &tv) < 0)
            continue;
        if (!PQconsumeInput(conn)) {
            cb_log_warn("postgres: LISTEN %s connection lost; reconnecting", l->channel);
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        while ((note = PQnotifies(conn)) != NULL) {
            l->fn(l->arg, note->extra ? note->extra : "");
            PQfreemem(note);
        }
    }
    PQfinish(conn);
    return NULL;
}

int cb_pg_listen_start(const cb_pg_config_t *cfg, const char *channel,
                       void (*fn)(void *arg, const char *payload), void *arg,
                       cb_pg_listener_t **out)
{
    cb_pg_listener_t *l;
    size_t i;
    int rc;

    for (i = 0; channel[i]; i++)
        CB_ASSERT(islower((unsigned char) channel[i]) || channel[i] == '_');
    l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->dsn = strdup(cfg->dsn);
    l->connect_timeout_ms = cfg->connect_timeout_ms;
    snprintf(l->channel, sizeof(l->channel), "%s", channel);
    l->fn = fn;
    l->arg = arg;
    if (!l->dsn) {
        free(l);
        return -ENOMEM;
    }
    rc = pthread_create(&l->thread, NULL, listen_main, l);
    if (rc) {
        free(l->dsn);
        free(l);
        return -rc;
    }
    *out = l;
    return 0;
}

void cb_pg_listen_stop(cb_pg_listener_t *l)
{
    if (!l)
        return;
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    free(l->dsn);
    free(l);
}

static int pg_ready(void *obj, char *err, size_t errlen)
{
    cb_pg_t *pg = obj;
    PGresult *r = NULL;
    int rc = cb_pg_exec(pg, "SELECT 1", 0, NULL, &r, err, errlen);

    PQclear(r);
    return rc;
}

static void pg_free_obj(void *obj)
{
    cb_pg_free(obj);
}

const cb_component_ops_t cb_pg_component = {
    .name = "postgres",
    .ready = pg_ready,
    .drain = NULL,
    .free = pg_free_obj,
};

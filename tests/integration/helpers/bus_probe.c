/*
 * bus_probe - drives libcommon's bus clients against real servers for the
 * integration tests. It prints one JSON object per line on stdout.
 *
 *   bus_probe consume --topic T --group G [--validate-as PROTO_TOPIC] [--hold-ms N]
 *                     [--hold-first-ms N] [--fail-times N] [--fail-always] [--workers N]
 *                     [--max-messages N]
 *       libcommon consumer group; the handler validates each message
 *       against proto/ (invalid: dead letter), prints "received", holds
 *       (so a test can kill -9 it before the commit), fails on purpose if
 *       asked (retries, then dead letter), prints "handled". Stops after
 *       max-messages handled, draining and committing like a daemon.
 *   bus_probe serve --subject S [--delay-ms N]
 *       libcommon NATS responder with the subject's proto validation,
 *       answering a canned valid reply.
 *   bus_probe request --subject S   (request JSON on stdin)
 *   bus_probe pg-migrate --schema NAME
 *       applies tests/integration/helpers/migrations and prints the version.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cb_proto.h"
#include "clock.h"
#include "config.h"
#include "deps.h"
#include "kafka.h"
#include "log.h"
#include "nats.h"
#include "pg.h"

CB_PG_MIGRATIONS_DECLARE(itest_migrations);

typedef struct probe_opts {
    char *topic, *group, *subject, *schema, *validate_as;
    int64_t hold_ms, hold_first_ms, fail_times, workers, max_messages, delay_ms;
    bool fail_always;
} probe_opts_t;

static const cb_config_key_t probe_keys[] = {
    { .name = "topic",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, topic),
      .help = "Topic to consume." },
    { .name = "validate_as",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, validate_as),
      .help = "Check messages against this proto topic's schema (default: --topic's)." },
    { .name = "group",
      .type = CB_CONFIG_STRING,
      .def = "bus-probe",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, group),
      .help = "Consumer group." },
    { .name = "subject",
      .type = CB_CONFIG_STRING,
      .def = "",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, subject),
      .help = "NATS subject." },
    { .name = "schema",
      .type = CB_CONFIG_STRING,
      .def = "itest",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, schema),
      .help = "Postgres schema." },
    { .name = "hold_ms",
      .type = CB_CONFIG_INT,
      .def = "0",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, hold_ms),
      .help = "Hold each message this long." },
    { .name = "hold_first_ms",
      .type = CB_CONFIG_INT,
      .def = "0",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, hold_first_ms),
      .help = "Hold the first message received this long (a member kept busy)." },
    { .name = "fail_times",
      .type = CB_CONFIG_INT,
      .def = "0",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, fail_times),
      .help = "Fail each message this often." },
    { .name = "fail_always",
      .type = CB_CONFIG_BOOL,
      .def = "false",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, fail_always),
      .help = "Never succeed." },
    { .name = "workers",
      .type = CB_CONFIG_INT,
      .def = "1",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, workers),
      .help = "Handler threads." },
    { .name = "max_messages",
      .type = CB_CONFIG_INT,
      .def = "0",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, max_messages),
      .help = "Stop after this many (0: never)." },
    { .name = "delay_ms",
      .type = CB_CONFIG_INT,
      .def = "0",
      .flags = CB_CONFIG_CLI,
      .offset = offsetof(probe_opts_t, delay_ms),
      .help = "Delay before answering." },
    { .name = NULL },
};

static probe_opts_t opts;
static cb_deps_t deps = { .want = CB_DEP_KAFKA | CB_DEP_NATS | CB_DEP_PG };
static atomic_int handled;
static atomic_bool held_first;
static atomic_bool stop;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void emit(const char *fmt, ...) CB_PRINTF(1, 2);

static void emit(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&out_lock);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

static void on_signal(int sig)
{
    (void) sig;
    atomic_store(&stop, true);
}

static cb_kafka_result_t handle(void *arg, const cb_kafka_msg_t *m, char *reason, size_t len)
{
    const cb_proto_topic_t *t = arg;
    cb_jsonv_error_t e;

    emit("{\"event\":\"received\",\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld,"
         "\"attempt\":%d,\"key\":\"%.*s\"}",
         m->topic, (int) m->partition, (long long) m->offset, m->attempt, (int) m->key_len,
         (const char *) m->key);
    if (t && t->validate && t->validate(m->value, m->len, &e)) {
        snprintf(reason, len, "%s", e.text);
        return CB_KAFKA_INVALID;
    }
    if (opts.hold_first_ms > 0 && !atomic_exchange(&held_first, true))
        usleep((useconds_t) opts.hold_first_ms * 1000);
    if (opts.hold_ms > 0)
        usleep((useconds_t) opts.hold_ms * 1000);
    if (opts.fail_always || m->attempt <= opts.fail_times) {
        snprintf(reason, len, "failing on purpose (attempt %d)", m->attempt);
        return CB_KAFKA_RETRY;
    }
    emit("{\"event\":\"handled\",\"partition\":%d,\"offset\":%lld}", (int) m->partition,
         (long long) m->offset);
    atomic_fetch_add(&handled, 1);
    return CB_KAFKA_OK;
}

static int consume(cb_metrics_t *m)
{
    const cb_proto_topic_t *t =
        cb_proto_topic_find(opts.validate_as[0] ? opts.validate_as : opts.topic);
    const char *topics[] = { opts.topic, NULL };
    cb_kafka_consumer_opts_t co = {
        .group = opts.group,
        .topics = topics,
        .handler = handle,
        .arg = (void *) t,
        .workers = (int) opts.workers,
    };
    cb_kafka_producer_t *dlq;
    cb_kafka_consumer_t *c;
    char err[512];

    if (cb_kafka_producer_new(&deps.kafka_cfg, "bus-probe", m, &dlq, err, sizeof(err)) ||
        (co.dlq = dlq, cb_kafka_consumer_new(&deps.kafka_cfg, &co, m, &c, err, sizeof(err))) ||
        cb_kafka_consumer_start(c)) {
        fprintf(stderr, "bus_probe: %s\n", err);
        return 1;
    }
    emit("{\"event\":\"started\"}");
    while (!atomic_load(&stop) &&
           (opts.max_messages == 0 || atomic_load(&handled) < opts.max_messages))
        usleep(20000);
    cb_kafka_consumer_drain(c, cb_clock_mono_ms() + 10000);
    cb_kafka_consumer_free(c);
    cb_kafka_producer_free(dlq);
    emit("{\"event\":\"stopped\",\"handled\":%d}", atomic_load(&handled));
    return 0;
}

static int answer(void *arg, const char *subject, const void *data, size_t len, cb_buf_t *reply,
                  char *err, size_t errlen)
{
    (void) arg;
    (void) data;
    (void) len;
    (void) err;
    (void) errlen;
    if (opts.delay_ms > 0)
        usleep((useconds_t) opts.delay_ms * 1000);
    emit("{\"event\":\"request\",\"subject\":\"%s\"}", subject);
    if (strcmp(subject, CB_PROTO_SUBJECT_ENTITLEMENT_CHECK) == 0)
        return cb_buf_append_str(reply, "{\"v\":1,\"allowed\":true,\"reason\":\"bus_probe\"}");
    return cb_buf_append_str(reply, "{\"v\":1,\"content_id\":\"x\",\"key_id\":"
                                    "\"0123456789abcdef0123456789abcdef\",\"key\":"
                                    "\"00112233445566778899aabbccddeeff\",\"period\":0}");
}

static int serve(cb_metrics_t *m)
{
    const cb_proto_subject_t *s = cb_proto_subject_find(opts.subject);
    char err[512];
    cb_nats_t *n;
    int i;

    if (!s || cb_nats_new(&deps.nats_cfg, "bus-probe", m, &n, err, sizeof(err))) {
        fprintf(stderr, "bus_probe: cannot serve '%s'\n", opts.subject);
        return 1;
    }
    for (i = 0; i < 100 && cb_nats_component.ready(n, err, sizeof(err)); i++)
        usleep(50000);
    if (cb_nats_serve(n, s->name, "bus-probe", s->validate_request, answer, NULL))
        return 1;
    cb_nats_component.ready(n, err, sizeof(err)); /* flush: the subscription is live */
    emit("{\"event\":\"serving\",\"subject\":\"%s\"}", s->name);
    while (!atomic_load(&stop))
        usleep(20000);
    cb_nats_free(n);
    return 0;
}

static int request(cb_metrics_t *m)
{
    char err[512], in[65536];
    size_t len = fread(in, 1, sizeof(in), stdin);
    cb_buf_t reply;
    cb_nats_t *n;
    int rc, i;

    if (cb_nats_new(&deps.nats_cfg, "bus-probe", m, &n, err, sizeof(err)))
        return 1;
    for (i = 0; i < 100 && cb_nats_component.ready(n, err, sizeof(err)); i++)
        usleep(50000);
    cb_buf_init(&reply, 1 << 20);
    rc = cb_nats_request(n, opts.subject, in, len, 0, &reply);
    if (rc == 0)
        emit("{\"event\":\"reply\",\"reply\":%.*s}", (int) reply.len, reply.data);
    else
        emit("{\"event\":\"error\",\"errno\":%d,\"error\":\"%s\"}", -rc, strerror(-rc));
    cb_buf_release(&reply);
    cb_nats_free(n);
    return rc == 0 ? 0 : rc == -ETIMEDOUT ? 3 : rc == -ENOENT ? 4 : 1;
}

static int pg_migrate(cb_metrics_t *m)
{
    char err[512];
    PGresult *r = NULL;
    cb_pg_t *pg;
    int rc;

    if (cb_pg_new(&deps.pg_cfg, opts.schema, itest_migrations, itest_migrations_count, m, &pg, err,
                  sizeof(err)))
        return 1;
    rc = cb_pg_migrate(pg, err, sizeof(err));
    if (rc == 0)
        rc = cb_pg_exec(pg, "INSERT INTO widgets (id, size) VALUES ($1, 3) ON CONFLICT DO NOTHING",
                        1, (const char *[]){ "w1" }, NULL, err, sizeof(err));
    if (rc == 0)
        rc = cb_pg_exec(pg, "SELECT count(*) FROM widgets", 0, NULL, &r, err, sizeof(err));
    if (rc == 0)
        emit("{\"event\":\"migrated\",\"version\":%d,\"widgets\":%s}", cb_pg_schema_version(pg),
             PQgetvalue(r, 0, 0));
    else
        emit("{\"event\":\"error\",\"error\":\"%s\"}", err);
    PQclear(r);
    cb_pg_free(pg);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    cb_config_action_t action;
    cb_metrics_t *m;
    cb_config_t *c;
    const char *cmd = argc > 1 ? argv[1] : "";
    char err[512];
    cb_daemon_t *d;
    int rc;

    cb_log_init("bus-probe", CB_LOG_INFO);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (cb_daemon_new("bus-probe", "integration test driver", 1, &d))
        return 1;
    /*
     * cb_daemon_new() resets and blocks the signals for a daemon's signal
     * thread; this tool is not run as a daemon and takes them itself.
     */
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    c = cb_daemon_config(d);
    if (cb_config_add(c, "probe", probe_keys, &opts) || cb_deps_add_config(&deps, d))
        return 1;
    rc = cb_config_load(c, argc - 1, argv + 1, &action, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "bus_probe: %s\n", err);
        return 2;
    }
    m = cb_daemon_metrics(d);
    if (strcmp(cmd, "consume") == 0)
        rc = consume(m);
    else if (strcmp(cmd, "serve") == 0)
        rc = serve(m);
    else if (strcmp(cmd, "request") == 0)
        rc = request(m);
    else if (strcmp(cmd, "pg-migrate") == 0)
        rc = pg_migrate(m);
    else {
        fprintf(stderr, "usage: bus_probe consume|serve|request|pg-migrate [options]\n");
        rc = 2;
    }
    cb_daemon_free(d);
    return rc;
}

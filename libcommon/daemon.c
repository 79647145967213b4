/*
 * daemon.c - daemon lifecycle; see daemon.h.
 *
 * DESIGN: SIGTERM and SIGINT are blocked in every thread (the mask is set
 * in cb_daemon_new(), before any library starts a thread, and inherited) and taken synchronously by a
 * dedicated thread with sigwait(), which then runs the shutdown sequence.
 * Running it there, not on the HTTP loop, keeps /healthz and /metrics
 * answering while a component drains for seconds (transcode jobs finish).
 */
#include "daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "version.h"

#define MAX_COMPONENTS 16

/* Settings every daemon has besides the HTTP ones. */
typedef struct daemon_config {
    int log_level;
    int64_t shutdown_grace_ms;
    int64_t shutdown_delay_ms;
    int64_t health_interval_ms;
} daemon_config_t;

static const cb_config_key_t daemon_config_keys[] = {
    { .name = "log_level",
      .type = CB_CONFIG_ENUM,
      .def = "info",
      .choices = "debug|info|warn|error",
      .offset = offsetof(daemon_config_t, log_level),
      .help = "Least severe log level written (JSON lines on stderr)." },
    { .name = "shutdown_grace",
      .type = CB_CONFIG_DURATION,
      .def = "25s",
      .min = 0,
      .max = 3600000,
      .offset = offsetof(daemon_config_t, shutdown_grace_ms),
      .help = "Time from SIGTERM to exit: work in hand is finished within it, or given back." },
    { .name = "shutdown_delay",
      .type = CB_CONFIG_DURATION,
      .def = "0s",
      .min = 0,
      .max = 600000,
      .offset = offsetof(daemon_config_t, shutdown_delay_ms),
      .help = "Time between turning unready and starting to drain (load balancers catch up)." },
    { .name = "health_interval",
      .type = CB_CONFIG_DURATION,
      .def = "1s",
      .min = 100,
      .max = 60000,
      .offset = offsetof(daemon_config_t, health_interval_ms),
      .help = "How often dependencies are checked for /readyz." },
    { .name = NULL },
};

typedef struct component {
    const cb_component_ops_t *ops;
    void *obj;
} component_t;

struct cb_daemon {
    char name[32];
    cb_config_t *config;
    daemon_config_t cfg;
    cb_http_config_t http_cfg;
    cb_metrics_t *metrics;
    cb_http_t *http;
    cb_health_t *health;
    component_t components[MAX_COMPONENTS];
    size_t ncomponents;
    json_t *info;
    time_t started_at;
    pthread_t signal_thread;
    bool signal_thread_started;
    bool ran; /* cb_daemon_run went through: log "stopped" when freed */
    atomic_bool draining;
    atomic_int exit_code;
};

/*
 * Block the shutdown signals in the calling thread, so that every thread
 * created afterwards (ours, librdkafka's, cnats') inherits the mask and
 * only the signal thread ever takes them.
 */
static void block_signals(void)
{
    sigset_t set;

    /* a parent shell may have started us with SIGINT ignored (a background job) */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cb_daemon_new(const char *name, const char *summary, int http_port, cb_daemon_t **out)
{
    cb_daemon_t *d;
    char port[16];
    int rc;

    block_signals();
    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    snprintf(d->name, sizeof(d->name), "%s", name);
    cb_log_init(name, CB_LOG_INFO);
    d->info = json_object();
    rc = cb_config_new(name, summary, &d->config);
    if (rc == 0)
        rc = cb_config_add(d->config, "general", daemon_config_keys, &d->cfg);
    if (rc == 0)
        rc = cb_config_add(d->config, "http", cb_http_config_keys, &d->http_cfg);
    snprintf(port, sizeof(port), "%d", http_port);
    if (rc == 0)
        rc = cb_config_set_default(d->config, "http_port", port);
    if (rc == 0)
        rc = cb_metrics_new(&d->metrics);
    if (rc || !d->info) {
        cb_daemon_free(d);
        return rc ? rc : -ENOMEM;
    }
    *out = d;
    return 0;
}

cb_config_t *cb_daemon_config(cb_daemon_t *d)
{
    return d->config;
}

cb_metrics_t *cb_daemon_metrics(cb_daemon_t *d)
{
    return d->metrics;
}

cb_http_t *cb_daemon_http(cb_daemon_t *d)
{
    return d->http;
}

const char *cb_daemon_name(const cb_daemon_t *d)
{
    return d->name;
}

bool cb_daemon_draining(cb_daemon_t *d)
{
    return atomic_load(&d->draining);
}

/* ---- built-in routes ---- */

static int handle_healthz(cb_http_req_t *req, void *arg)
{
    cb_daemon_t *d = arg;

    if (!cb_health_alive(d->health))
        return cb_http_reply_json(req, 503,
                                  json_pack("{s:s, s:s}", "status", "stuck", "reason",
                                            "readiness checks stopped making progress"));
    return cb_http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static int handle_readyz(cb_http_req_t *req, void *arg)
{
    cb_daemon_t *d = arg;
    json_t *report = NULL;
    bool ready = cb_health_ready(d->health, &report);

    return cb_http_reply_json(req, ready ? 200 : 503, report);
}

static int handle_metrics(cb_http_req_t *req, void *arg)
{
    cb_daemon_t *d = arg;
    cb_buf_t b;
    int rc;

    cb_buf_init(&b, 64u << 20);
    rc = cb_metrics_render(d->metrics, &b);
    if (rc) {
        cb_buf_release(&b);
        return cb_http_reply_error(req, 500, NULL, NULL, "rendering metrics failed: %s",
                                   strerror(-rc));
    }
    rc = cb_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    cb_buf_release(&b);
    return rc;
}

static int handle_info(cb_http_req_t *req, void *arg)
{
    cb_daemon_t *d = arg;
    json_t *o, *comps = json_array();
    char host[256] = "";
    size_t i;

    gethostname(host, sizeof(host) - 1);
    for (i = 0; i < d->ncomponents; i++)
        json_array_append_new(comps, json_string(d->components[i].ops->name));
    o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:b, s:o}", "daemon", d->name, "version",
                  cb_version, "revision", cb_revision, "pid", (json_int_t) getpid(), "started_at",
                  (json_int_t) d->started_at, "hostname", host, "uptime_s",
                  (json_int_t) (time(NULL) - d->started_at), "ready",
                  cb_health_ready(d->health, NULL), "components", comps);
    if (o)
        json_object_update(o, d->info);
    return cb_http_reply_json(req, 200, o);
}

static int handle_config(cb_http_req_t *req, void *arg)
{
    cb_daemon_t *d = arg;

    return cb_http_reply_json(req, 200, cb_config_to_json(d->config));
}

typedef struct log_level_req {
    int level;
} log_level_req_t;

static const cb_jsonv_field_t log_level_fields[] = {
    { .name = "level",
      .type = CB_JSONV_ENUM,
      .flags = CB_JSONV_REQUIRED,
      .offset = offsetof(log_level_req_t, level),
      .enum_values = cb_log_level_names },
    { .name = NULL },
};

static int handle_log_level(cb_http_req_t *req, void *arg)
{
    log_level_req_t body;
    cb_log_level_t before = cb_log_get_level();

    (void) arg;
    if (cb_http_req_json(req, log_level_fields, &body))
        return CB_HTTP_DONE;
    cb_log_set_level((cb_log_level_t) body.level);
    cb_log_warn("log level changed from %s to %s by API", cb_log_level_name(before),
                cb_log_level_name((cb_log_level_t) body.level));
    return cb_http_reply_json(req, 200,
                              json_pack("{s:s, s:s}", "level",
                                        cb_log_level_name((cb_log_level_t) body.level), "previous",
                                        cb_log_level_name(before)));
}

int cb_daemon_add_info(cb_daemon_t *d, const char *key, json_t *value)
{
    return json_object_set_new(d->info, key, value) ? -ENOMEM : 0;
}

/* ---- configuration ---- */

int cb_daemon_configure(cb_daemon_t *d, int argc, char **argv)
{
    cb_config_action_t action;
    char err[512];
    int rc;

    rc = cb_config_load(d->config, argc, argv, &action, err, sizeof(err));
    if (rc) {
        cb_log_error("configuration error: %s", err);
        return rc;
    }
    switch (action) {
    case CB_CONFIG_ACTION_HELP:
        cb_config_print_help(d->config, stdout);
        return CB_DAEMON_EXIT;
    case CB_CONFIG_ACTION_VERSION:
        printf("castbus-%s %s (revision %s)\n", d->name, cb_version, cb_revision);
        return CB_DAEMON_EXIT;
    case CB_CONFIG_ACTION_PRINT:
        cb_config_print_values(d->config, stdout);
        return CB_DAEMON_EXIT;
    case CB_CONFIG_ACTION_MARKDOWN:
        cb_config_print_markdown(d->config, stdout);
        return CB_DAEMON_EXIT;
    case CB_CONFIG_ACTION_JSON:
        cb_config_print_json(d->config, stdout);
        return CB_DAEMON_EXIT;
    case CB_CONFIG_ACTION_RUN:
        break;
    }
    cb_log_set_level((cb_log_level_t) d->cfg.log_level);

    rc = cb_http_new(d->name, &d->http_cfg, d->metrics, &d->http, err, sizeof(err));
    if (rc) {
        cb_log_error("configuration error: %s", err);
        return rc;
    }
    if (!d->http_cfg.api_keys || !*d->http_cfg.api_keys)
        cb_log_warn("no API keys configured (CASTBUS_API_KEYS): every /v1 route will answer 401");
    rc = cb_health_new(d->cfg.health_interval_ms, d->metrics, &d->health);
    if (rc == 0)
        rc = cb_metrics_add_process_collector(d->metrics);
    if (rc)
        return rc;
    cb_metric_set(cb_metrics_gauge(d->metrics, "castbus_build_info",
                                   "Always 1; the labels say which build is running.",
                                   (const char *[]){ "daemon", "version", "revision", NULL }),
                  (const char *[]){ d->name, cb_version, cb_revision }, 1);
    {
        const cb_http_route_t routes[] = {
            { "GET", "/healthz", CB_ROLE_NONE, CB_HTTP_QUIET, handle_healthz, d },
            { "GET", "/readyz", CB_ROLE_NONE, CB_HTTP_QUIET, handle_readyz, d },
            { "GET", "/metrics", CB_ROLE_NONE, CB_HTTP_QUIET, handle_metrics, d },
            { "GET", "/v1/info", CB_ROLE_VIEWER, 0, handle_info, d },
            { "GET", "/v1/config", CB_ROLE_ADMIN, 0, handle_config, d },
            { "PUT", "/v1/log-level", CB_ROLE_ADMIN, 0, handle_log_level, d },
        };
        rc = cb_http_add_routes(d->http, routes, CB_ARRAY_LEN(routes));
    }
    return rc;
}

int cb_daemon_exit_code(cb_daemon_t *d, int rc)
{
    (void) d;
    if (rc == CB_DAEMON_EXIT || rc == CB_DAEMON_CONTINUE)
        return 0;
    return rc == -EINVAL ? 2 : 1;
}

/* ---- components ---- */

static int component_check(void *arg, char *err, size_t errlen)
{
    const component_t *c = arg;

    return c->ops->ready(c->obj, err, errlen);
}

int cb_daemon_attach(cb_daemon_t *d, const cb_component_ops_t *ops, void *obj)
{
    component_t *c;

    if (d->ncomponents >= MAX_COMPONENTS)
        return -ENOSPC;
    c = &d->components[d->ncomponents++];
    c->ops = ops;
    c->obj = obj;
    if (ops->ready)
        return cb_health_add(d->health, ops->name, component_check, c);
    return 0;
}

int cb_daemon_add_routes(cb_daemon_t *d, const cb_http_route_t *routes, size_t n)
{
    return cb_http_add_routes(d->http, routes, n);
}

/* ---- running and shutting down ---- */

static void shutdown_sequence(cb_daemon_t *d, int sig)
{
    int64_t start = cb_clock_mono_ms();
    int64_t deadline = start + d->cfg.shutdown_grace_ms;
    size_t i;

    cb_log_info("received %s: draining (grace %lldms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
                (long long) d->cfg.shutdown_grace_ms);
    atomic_store(&d->draining, true);
    cb_health_set_draining(d->health);
    if (d->cfg.shutdown_delay_ms > 0) {
        struct timespec ts = { d->cfg.shutdown_delay_ms / 1000,
                               (d->cfg.shutdown_delay_ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
    }
    for (i = d->ncomponents; i-- > 0;) {
        const component_t *c = &d->components[i];
        if (!c->ops->drain)
            continue;
        c->ops->drain(c->obj, deadline);
    }
    if (cb_clock_mono_ms() > deadline)
        cb_log_warn("drain took %lldms, past the grace period",
                    (long long) (cb_clock_mono_ms() - start));
    else
        cb_log_info("drained in %lldms", (long long) (cb_clock_mono_ms() - start));
    cb_http_stop(d->http);
}

static void on_forced_exit(int sig)
{
    static const char msg[] = "{\"level\":\"error\",\"msg\":\"second signal while draining: "
                              "exiting now\"}\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);

    (void) w;
    (void) sig;
    _exit(1);
}

static void *signal_main(void *arg)
{
    cb_daemon_t *d = arg;
    sigset_t set;
    int sig = 0;

    pthread_setname_np(pthread_self(), "signals");
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2); /* internal: the loop ended on its own */
    if (sigwait(&set, &sig) != 0 || sig == SIGUSR2)
        return NULL;
    /*
     * A second SIGTERM/SIGINT while draining means "now". Only this thread
     * unblocks them, so the kernel delivers them here, to the handler.
     */
    {
        sigset_t again;
        sigemptyset(&again);
        sigaddset(&again, SIGTERM);
        sigaddset(&again, SIGINT);
        signal(SIGTERM, on_forced_exit);
        signal(SIGINT, on_forced_exit);
        pthread_sigmask(SIG_UNBLOCK, &again, NULL);
    }
    shutdown_sequence(d, sig);
    return NULL;
}

int cb_daemon_run(cb_daemon_t *d)
{
    char err[256];
    int rc;

    rc = cb_http_start(d->http, err, sizeof(err));
    if (rc) {
        cb_log_error("%s", err);
        return 1;
    }
    d->started_at = time(NULL);
    rc = cb_health_start(d->health);
    if (rc == 0)
        rc = -pthread_create(&d->signal_thread, NULL, signal_main, d);
    if (rc) {
        cb_log_error("cannot start threads: %s", strerror(-rc));
        return 1;
    }
    d->signal_thread_started = true;
    cb_log_info("castbus-%s %s started: http on %s:%d, %zu components", d->name, cb_version,
                d->http_cfg.host, cb_http_port(d->http), d->ncomponents);

    cb_http_run(d->http);

    if (!atomic_load(&d->draining)) {
        /* the loop ended without a signal: an error; let the signal thread go */
        cb_log_error("http loop ended unexpectedly");
        atomic_store(&d->exit_code, 1);
        pthread_kill(d->signal_thread, SIGUSR2);
    }
    pthread_join(d->signal_thread, NULL);
    d->signal_thread_started = false;
    d->ran = true; /* "stopped" is logged by cb_daemon_free, after the last component */
    return atomic_load(&d->exit_code);
}

void cb_daemon_free(cb_daemon_t *d)
{
    size_t i;

    if (!d)
        return;
    /* no more readiness checks on components about to go */
    cb_health_free(d->health);
    d->health = NULL;
    for (i = d->ncomponents; i-- > 0;) {
        const component_t *c = &d->components[i];
        if (c->ops->free)
            c->ops->free(c->obj);
    }
    cb_http_free(d->http);
    if (d->ran) /* every thread that could log is gone: this is the last line */
        cb_log_info("stopped");
    cb_metrics_free(d->metrics);
    cb_config_free(d->config);
    json_decref(d->info);
    free(d);
}

int cb_daemon_main(const cb_daemon_spec_t *spec, int argc, char **argv)
{
    cb_daemon_t *d;
    int rc;

    rc = cb_daemon_new(spec->name, spec->summary, spec->http_port, &d);
    if (rc) {
        fprintf(stderr, "castbus-%s: cannot start: %s\n", spec->name, strerror(-rc));
        return 1;
    }
    if (spec->add_config)
        rc = spec->add_config(d, spec->app);
    if (rc == 0)
        rc = cb_daemon_configure(d, argc, argv);
    if (rc == CB_DAEMON_CONTINUE && spec->setup)
        rc = spec->setup(d, spec->app);
    if (rc == CB_DAEMON_CONTINUE)
        rc = cb_daemon_run(d);
    else
        rc = cb_daemon_exit_code(d, rc);
    cb_daemon_free(d);
    return rc;
}

/*
 * metrics.c - Prometheus metrics registry; see metrics.h.
 *
 * DESIGN: values are doubles stored as the bits of an atomic uint64 and
 * updated with compare-and-swap, so increments never take a lock. Series of
 * a family live in a chained hash table guarded by the family mutex, which
 * is taken only to create a series or to render. Series are never freed
 * before the registry, so handles stay valid for the registry's lifetime.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define HASH_BUCKETS   64
#define MAX_FAMILIES   512
#define MAX_COLLECTORS 16

typedef enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

struct cb_series {
    const struct cb_metric *family; /* NULL for the shared sink */
    struct cb_series *next;         /* hash chain */
    struct cb_series *ordered;      /* creation order, for stable output */
    char **values;                  /* label values, owned */
    _Atomic uint64_t value;         /* double bits: counter/gauge value, histogram sum */
    _Atomic uint64_t count;         /* histogram observations */
    _Atomic uint64_t *buckets;      /* histogram: per-bound counts (not cumulative) */
};

struct cb_metric {
    cb_metrics_t *reg;
    char *name;
    char *help;
    metric_type_t type;
    char *labels[CB_METRICS_MAX_LABELS];
    size_t nlabels;
    double *bounds; /* histogram upper bounds */
    size_t nbounds;
    pthread_mutex_t lock;
    cb_series_t *table[HASH_BUCKETS];
    cb_series_t *first, *last;
    size_t nseries;
};

typedef struct collector {
    cb_metrics_collect_fn fn;
    void *arg;
} collector_t;

struct cb_metrics {
    pthread_mutex_t lock; /* families and collectors lists */
    cb_metric_t *families[MAX_FAMILIES];
    size_t nfamilies;
    collector_t collectors[MAX_COLLECTORS];
    size_t ncollectors;
    cb_metric_t *dropped; /* castbus_metrics_series_dropped_total{metric} */
    cb_series_t sink;     /* shared target once a family is full */
    _Atomic uint64_t sink_buckets[64];
};

const double cb_metrics_latency_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10 };
const size_t cb_metrics_latency_nbuckets = CB_ARRAY_LEN(cb_metrics_latency_buckets);

static double bits_to_double(uint64_t u)
{
    double d;

    memcpy(&d, &u, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t u;

    memcpy(&u, &d, sizeof(u));
    return u;
}

static void atomic_add_double(_Atomic uint64_t *p, double delta)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    uint64_t new;

    do {
        new = double_to_bits(bits_to_double(old) + delta);
    } while (!atomic_compare_exchange_weak_explicit(p, &old, new, memory_order_relaxed,
                                                    memory_order_relaxed));
}

int cb_metrics_new(cb_metrics_t **out)
{
    cb_metrics_t *m = calloc(1, sizeof(*m));

    if (!m)
        return -ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->sink.buckets = m->sink_buckets;
    m->dropped = cb_metrics_counter(
        m, "castbus_metrics_series_dropped_total",
        "Label combinations not recorded because their metric reached its series limit.",
        (const char *[]){ "metric", NULL });
    if (!m->dropped) {
        cb_metrics_free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

static void series_free(cb_series_t *s, size_t nlabels)
{
    size_t i;

    for (i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free((void *) s->buckets);
    free(s);
}

static void family_free(cb_metric_t *f)
{
    cb_series_t *s, *next;
    size_t i;

    for (s = f->first; s; s = next) {
        next = s->ordered;
        series_free(s, f->nlabels);
    }
    for (i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    pthread_mutex_destroy(&f->lock);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void cb_metrics_free(cb_metrics_t *m)
{
    size_t i;

    if (!m)
        return;
    for (i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static cb_metric_t *family_new(cb_metrics_t *m, const char *name, const char *help,
                               metric_type_t type, const char *const *labels, const double *bounds,
                               size_t nbounds)
{
    cb_metric_t *f;
    size_t i;

    pthread_mutex_lock(&m->lock);
    for (i = 0; i < m->nfamilies; i++) {
        f = m->families[i];
        if (strcmp(f->name, name) == 0) {
            pthread_mutex_unlock(&m->lock);
            CB_ASSERT(f->type == type);
            return f;
        }
    }
    CB_ASSERT(m->nfamilies < MAX_FAMILIES);
    f = calloc(1, sizeof(*f));
    if (!f)
        goto fail;
    f->reg = m;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help);
    if (!f->name || !f->help)
        goto fail;
    for (i = 0; labels && labels[i]; i++) {
        CB_ASSERT(i < CB_METRICS_MAX_LABELS);
        f->labels[i] = strdup(labels[i]);
        if (!f->labels[i])
            goto fail;
        f->nlabels++;
    }
    if (type == METRIC_HISTOGRAM) {
        CB_ASSERT(nbounds > 0 && nbounds < CB_ARRAY_LEN(m->sink_buckets));
        f->bounds = malloc(nbounds * sizeof(double));
        if (!f->bounds)
            goto fail;
        memcpy(f->bounds, bounds, nbounds * sizeof(double));
        f->nbounds = nbounds;
        for (i = 1; i < nbounds; i++)
            CB_ASSERT(bounds[i] > bounds[i - 1]);
    }
    pthread_mutex_init(&f->lock, NULL);
    m->families[m->nfamilies++] = f;
    pthread_mutex_unlock(&m->lock);
    /* a metric without labels has exactly one series, exported from the start */
    if (f->nlabels == 0)
        cb_metric_series(f, NULL);
    return f;

fail:
    pthread_mutex_unlock(&m->lock);
    if (f) {
        for (i = 0; i < f->nlabels; i++)
            free(f->labels[i]);
        free(f->bounds);
        free(f->name);
        free(f->help);
        free(f);
    }
    return NULL;
}

cb_metric_t *cb_metrics_counter(cb_metrics_t *m, const char *name, const char *help,
                                const char *const *labels)
{
    return family_new(m, name, help, METRIC_COUNTER, labels, NULL, 0);
}

cb_metric_t *cb_metrics_gauge(cb_metrics_t *m, const char *name, const char *help,
                              const char *const *labels)
{
    return family_new(m, name, help, METRIC_GAUGE, labels, NULL, 0);
}

cb_metric_t *cb_metrics_histogram(cb_metrics_t *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, size_t nbounds)
{
    return family_new(m, name, help, METRIC_HISTOGRAM, labels, bounds, nbounds);
}

/* FNV-1a over the label values, separated so ("ab","c") != ("a","bc"). */
static unsigned hash_values(const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i;
    const char *p;

    for (i = 0; i < n; i++) {
        for (p = values[i]; *p; p++) {
            h ^= (unsigned char) *p;
            h *= 16777619u;
        }
        h ^= 0xff;
        h *= 16777619u;
    }
    return h % HASH_BUCKETS;
}

static int values_equal(const cb_series_t *s, const char *const *values, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(s->values[i], values[i]) != 0)
            return 0;
    }
    return 1;
}

cb_series_t *cb_metric_series(cb_metric_t *f, const char *const *values)
{
    cb_metrics_t *m = f->reg;
    cb_series_t *s;
    unsigned h;
    size_t i;

    if (!values)
        values = (const char *const[]){ NULL };
    for (i = 0; i < f->nlabels; i++)
        CB_ASSERT(values[i] != NULL);
    h = hash_values(values, f->nlabels);
    pthread_mutex_lock(&f->lock);
    for (s = f->table[h]; s; s = s->next) {
        if (values_equal(s, values, f->nlabels)) {
            pthread_mutex_unlock(&f->lock);
            return s;
        }
    }
    if (f->nseries >= CB_METRICS_MAX_SERIES)
        goto sink;
    s = calloc(1, sizeof(*s));
    if (!s)
        goto sink;
    s->values = calloc(f->nlabels ? f->nlabels : 1, sizeof(char *));
    if (!s->values)
        goto sink_free;
    for (i = 0; i < f->nlabels; i++) {
        s->values[i] = strdup(values[i]);
        if (!s->values[i])
            goto sink_free;
    }
    if (f->type == METRIC_HISTOGRAM) {
        s->buckets = calloc(f->nbounds, sizeof(*s->buckets));
        if (!s->buckets)
            goto sink_free;
    }
    s->family = f;
    s->next = f->table[h];
    f->table[h] = s;
    if (f->last)
        f->last->ordered = s;
    else
        f->first = s;
    f->last = s;
    f->nseries++;
    pthread_mutex_unlock(&f->lock);
    return s;

sink_free:
    series_free(s, i);
sink:
    pthread_mutex_unlock(&f->lock);
    if (f != m->dropped)
        cb_series_add(cb_metric_series(m->dropped, (const char *[]){ f->name }), 1);
    return &m->sink;
}

void cb_series_add(cb_series_t *s, double delta)
{
    atomic_add_double(&s->value, delta);
}

void cb_series_set(cb_series_t *s, double value)
{
    atomic_store_explicit(&s->value, double_to_bits(value), memory_order_relaxed);
}

void cb_series_observe(cb_series_t *s, double v)
{
    const cb_metric_t *f = s->family;
    size_t i;

    atomic_add_double(&s->value, v);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    if (!f) /* the sink: counted, never exported */
        return;
    CB_ASSERT(f->type == METRIC_HISTOGRAM);
    for (i = 0; i < f->nbounds; i++) {
        if (v <= f->bounds[i]) {
            atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
}

double cb_series_value(const cb_series_t *s)
{
    uint64_t c = atomic_load_explicit(&s->count, memory_order_relaxed);

    if (s->buckets)
        return (double) c;
    return bits_to_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

void cb_metric_add(cb_metric_t *f, const char *const *values, double delta)
{
    cb_series_add(cb_metric_series(f, values), delta);
}

void cb_metric_set(cb_metric_t *f, const char *const *values, double value)
{
    cb_series_set(cb_metric_series(f, values), value);
}

void cb_metric_observe(cb_metric_t *f, const char *const *values, double v)
{
    cb_series_observe(cb_metric_series(f, values), v);
}

int cb_metrics_add_collector(cb_metrics_t *m, cb_metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&m->lock);
    if (m->ncollectors >= MAX_COLLECTORS) {
        pthread_mutex_unlock(&m->lock);
        return -ENOSPC;
    }
    m->collectors[m->ncollectors].fn = fn;
    m->collectors[m->ncollectors].arg = arg;
    m->ncollectors++;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

/* Prometheus number: integers exactly, +Inf/-Inf/NaN spelled its way. */
static void append_number(cb_buf_t *out, double v)
{
    if (isnan(v))
        cb_buf_append_str(out, "NaN");
    else if (isinf(v))
        cb_buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        cb_buf_appendf(out, "%.0f", v);
    else
        cb_buf_appendf(out, "%.17g", v);
}

static void append_escaped(cb_buf_t *out, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            cb_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            cb_buf_append(out, "\\n", 2);
        else if (quote && *s == '"')
            cb_buf_append(out, "\\\"", 2);
        else
            cb_buf_append(out, s, 1);
    }
}

/* {a="x",b="y"[,le="0.5"]} or nothing when there are no labels. */
static void append_labels(cb_buf_t *out, const cb_metric_t *f, const cb_series_t *s, const char *le)
{
    size_t i;

    if (f->nlabels == 0 && !le)
        return;
    cb_buf_append(out, "{", 1);
    for (i = 0; i < f->nlabels; i++) {
        cb_buf_appendf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        append_escaped(out, s->values[i], 1);
        cb_buf_append(out, "\"", 1);
    }
    if (le)
        cb_buf_appendf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    cb_buf_append(out, "}", 1);
}

static void render_family(cb_metric_t *f, cb_buf_t *out)
{
    static const char *const type_names[] = { "counter", "gauge", "histogram" };
    cb_series_t *s;
    size_t i;

    pthread_mutex_lock(&f->lock);
    if (!f->first) {
        /* a labelled family without series yet says nothing */
        pthread_mutex_unlock(&f->lock);
        return;
    }
    pthread_mutex_unlock(&f->lock);
    cb_buf_appendf(out, "# HELP %s ", f->name);
    append_escaped(out, f->help, 0);
    cb_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    pthread_mutex_lock(&f->lock);
    for (s = f->first; s; s = s->ordered) {
        double sum = bits_to_double(atomic_load_explicit(&s->value, memory_order_relaxed));
        uint64_t cum = 0;

        if (f->type != METRIC_HISTOGRAM) {
            cb_buf_append_str(out, f->name);
            append_labels(out, f, s, NULL);
            cb_buf_append(out, " ", 1);
            append_number(out, sum);
            cb_buf_append(out, "\n", 1);
            continue;
        }
        for (i = 0; i < f->nbounds; i++) {
            char le[40];
            cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
            snprintf(le, sizeof(le), "%g", f->bounds[i]);
            cb_buf_appendf(out, "%s_bucket", f->name);
            append_labels(out, f, s, le);
            cb_buf_appendf(out, " %llu\n", (unsigned long long) cum);
        }
        /* count is read after the buckets so +Inf is never below the last bucket */
        cum = CB_MAX(cum, atomic_load_explicit(&s->count, memory_order_relaxed));
        cb_buf_appendf(out, "%s_bucket", f->name);
        append_labels(out, f, s, "+Inf");
        cb_buf_appendf(out, " %llu\n%s_sum", (unsigned long long) cum, f->name);
        append_labels(out, f, s, NULL);
        cb_buf_append(out, " ", 1);
        append_number(out, sum);
        cb_buf_appendf(out, "\n%s_count", f->name);
        append_labels(out, f, s, NULL);
        cb_buf_appendf(out, " %llu\n", (unsigned long long) cum);
    }
    pthread_mutex_unlock(&f->lock);
}

int cb_metrics_render(cb_metrics_t *m, cb_buf_t *out)
{
    collector_t collectors[MAX_COLLECTORS];
    cb_metric_t *families[MAX_FAMILIES];
    size_t i, nc, nf;

    pthread_mutex_lock(&m->lock);
    nc = m->ncollectors;
    memcpy(collectors, m->collectors, nc * sizeof(collector_t));
    pthread_mutex_unlock(&m->lock);
    for (i = 0; i < nc; i++)
        collectors[i].fn(m, collectors[i].arg);

    pthread_mutex_lock(&m->lock);
    nf = m->nfamilies;
    memcpy(families, m->families, nf * sizeof(cb_metric_t *));
    pthread_mutex_unlock(&m->lock);
    for (i = 0; i < nf; i++) {
        render_family(families[i], out);
    }
    return out->len >= out->max ? -E2BIG : 0;
}

/* ---- process collector ---- */

typedef struct process_metrics {
    cb_metric_t *cpu, *rss, *vsz, *fds, *max_fds, *start;
    double start_time_s;
} process_metrics_t;

static process_metrics_t process_metrics;

static void collect_process(cb_metrics_t *m, void *arg)
{
    process_metrics_t *p = arg;
    struct rusage ru;
    struct rlimit rl;
    long page = sysconf(_SC_PAGESIZE);
    unsigned long vsz_pages = 0, rss_pages = 0;
    FILE *f;
    DIR *d;
    struct dirent *de;
    int nfds = 0;

    (void) m;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
                     (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
        cb_metric_set(p->cpu, NULL, cpu);
    }
    f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &vsz_pages, &rss_pages) == 2) {
            cb_metric_set(p->vsz, NULL, (double) vsz_pages * (double) page);
            cb_metric_set(p->rss, NULL, (double) rss_pages * (double) page);
        }
        fclose(f);
    }
    d = opendir("/proc/self/fd");
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] != '.')
                nfds++;
        }
        closedir(d);
        cb_metric_set(p->fds, NULL, nfds - 1); /* minus the directory stream itself */
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        cb_metric_set(p->max_fds, NULL, (double) rl.rlim_cur);
    cb_metric_set(p->start, NULL, p->start_time_s);
}

int cb_metrics_add_process_collector(cb_metrics_t *m)
{
    process_metrics_t *p = &process_metrics;
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    /* the collector is process-wide; a second registry reuses the start time */
    if (p->start_time_s == 0)
        p->start_time_s = (double) now.tv_sec + (double) now.tv_nsec / 1e9;
    p->cpu = cb_metrics_counter(m, "process_cpu_seconds_total",
                                "Total user and system CPU time spent in seconds.", NULL);
    p->rss = cb_metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.",
                              NULL);
    p->vsz =
        cb_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", NULL);
    p->fds = cb_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL);
    p->max_fds =
        cb_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", NULL);
    p->start = cb_metrics_gauge(m, "process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", NULL);
    if (!p->cpu || !p->rss || !p->vsz || !p->fds || !p->max_fds || !p->start)
        return -ENOMEM;
    return cb_metrics_add_collector(m, collect_process, p);
}

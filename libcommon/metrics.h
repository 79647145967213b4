/*
 * metrics.h - counters, gauges and histograms with labels, rendered in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * A registry holds families (one metric name, one type, fixed label names);
 * a family holds series (one set of label values). Look a series up once and
 * keep the handle on hot paths:
 *
 *   cb_metric_t *req = cb_metrics_counter(m, "castbus_http_requests_total",
 *                                         "HTTP requests served.",
 *                                         (const char *[]){ "method", "code", NULL });
 *   cb_series_add(cb_metric_series(req, (const char *[]){ "GET", "200" }), 1);
 *
 * Bounded: a family holds at most CB_METRICS_MAX_SERIES series. Past that,
 * cb_metric_series() returns a shared sink that is not exported and counts
 * the loss in castbus_metrics_series_dropped_total, so label values taken
 * from input can never grow memory without bound.
 *
 * Thread safety: everything may be called from any thread. Updates are
 * lock-free atomics; series creation and rendering take the family lock.
 */
#ifndef CB_METRICS_H
#define CB_METRICS_H

#include <stddef.h>

#include "buf.h"

#define CB_METRICS_MAX_SERIES 4096
#define CB_METRICS_MAX_LABELS 8

typedef struct cb_metrics cb_metrics_t;
typedef struct cb_metric cb_metric_t;
typedef struct cb_series cb_series_t;

int cb_metrics_new(cb_metrics_t **out);
void cb_metrics_free(cb_metrics_t *m);

/*
 * Register a family and return it (owned by the registry). `labels` is a
 * NULL-terminated array of label names, or NULL for none; names and help
 * are copied. Registering the same name again with the same type returns the
 * existing family.
 */
cb_metric_t *cb_metrics_counter(cb_metrics_t *m, const char *name, const char *help,
                                const char *const *labels);
cb_metric_t *cb_metrics_gauge(cb_metrics_t *m, const char *name, const char *help,
                              const char *const *labels);
/* `bounds`: strictly increasing upper bounds, without +Inf (added). */
cb_metric_t *cb_metrics_histogram(cb_metrics_t *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, size_t nbounds);

/* Latency buckets in seconds, 1 ms .. 10 s. */
extern const double cb_metrics_latency_buckets[];
extern const size_t cb_metrics_latency_nbuckets;

/*
 * The series for these label values (as many as the family has label
 * names; NULL for a family without labels). Never NULL.
 */
cb_series_t *cb_metric_series(cb_metric_t *f, const char *const *values);

void cb_series_add(cb_series_t *s, double delta); /* counter (delta >= 0) or gauge */
void cb_series_set(cb_series_t *s, double value); /* gauge */
void cb_series_observe(cb_series_t *s, double v); /* histogram */
double cb_series_value(const cb_series_t *s);     /* counter/gauge value, histogram count */

/* Shorthands for one-off updates. */
void cb_metric_add(cb_metric_t *f, const char *const *values, double delta);
void cb_metric_set(cb_metric_t *f, const char *const *values, double value);
void cb_metric_observe(cb_metric_t *f, const char *const *values, double v);

/*
 * A collector runs on every render, before the output is produced, to
 * refresh gauges that are cheaper to read than to track (process memory,
 * consumer lag). It runs on the rendering thread.
 */
typedef void (*cb_metrics_collect_fn)(cb_metrics_t *m, void *arg);
int cb_metrics_add_collector(cb_metrics_t *m, cb_metrics_collect_fn fn, void *arg);

/* Register the standard process_* metrics (CPU, memory, fds, start time). */
int cb_metrics_add_process_collector(cb_metrics_t *m);

/* Render the registry as Prometheus text into out. */
int cb_metrics_render(cb_metrics_t *m, cb_buf_t *out);

#endif /* CB_METRICS_H */

/*
 * workq.h - a fixed pool of worker threads fed by a bounded queue.
 *
 * Blocking work (libpq queries, fsync, encoding) must not run on a daemon's
 * event-loop thread; it goes here (Redis bio.c). The queue has a maximum:
 * a full queue answers -EAGAIN so the caller can shed load (an HTTP 503)
 * instead of queueing without bound.
 *
 * Thread safety: cb_workq_submit() may be called from any thread. Jobs run
 * on the pool's threads, in submission order per thread.
 */
#ifndef CB_WORKQ_H
#define CB_WORKQ_H

#include <stddef.h>

typedef struct cb_workq cb_workq_t;
typedef void (*cb_workq_fn)(void *arg);

/* name: shown in thread names ("http-worker"). */
int cb_workq_new(const char *name, size_t nthreads, size_t max_queued, cb_workq_t **out);

/* Queue fn(arg). Returns 0, -EAGAIN when the queue is full, -ESHUTDOWN after stop. */
int cb_workq_submit(cb_workq_t *q, cb_workq_fn fn, void *arg);

/* Jobs queued or running right now. */
size_t cb_workq_pending(cb_workq_t *q);

/*
 * Stop accepting jobs, run what is queued, join the threads, free.
 * Must not be called from one of the pool's own threads.
 */
void cb_workq_free(cb_workq_t *q);

#endif /* CB_WORKQ_H */

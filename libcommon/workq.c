/*
 * workq.c - bounded worker pool; see workq.h.
 *
 * DESIGN: a ring buffer of jobs under one mutex, two condition variables
 * (work available, idle). Shutdown drains the queue: a job accepted is a
 * job run, which keeps "nothing is lost" simple for callers.
 */
#include "workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defs.h"

typedef struct job {
    cb_workq_fn fn;
    void *arg;
} job_t;

struct cb_workq {
    pthread_mutex_t lock;
    pthread_cond_t work;
    job_t *ring;
    size_t cap, head, count, running;
    bool stopping;
    pthread_t *threads;
    size_t nthreads;
    char name[16];
};

static void *worker_main(void *arg)
{
    cb_workq_t *q = arg;

    pthread_setname_np(pthread_self(), q->name);
    pthread_mutex_lock(&q->lock);
    for (;;) {
        job_t j;

        while (q->count == 0 && !q->stopping)
            pthread_cond_wait(&q->work, &q->lock);
        if (q->count == 0)
            break; /* stopping and drained */
        j = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
        q->running++;
        pthread_mutex_unlock(&q->lock);
        j.fn(j.arg);
        pthread_mutex_lock(&q->lock);
        q->running--;
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

int cb_workq_new(const char *name, size_t nthreads, size_t max_queued, cb_workq_t **out)
{
    cb_workq_t *q;
    size_t i;
    int rc;

    CB_ASSERT(nthreads > 0 && max_queued > 0);
    q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->ring = calloc(max_queued, sizeof(job_t));
    q->threads = calloc(nthreads, sizeof(pthread_t));
    if (!q->ring || !q->threads) {
        free(q->ring);
        free(q->threads);
        free(q);
        return -ENOMEM;
    }
    q->cap = max_queued;
    snprintf(q->name, sizeof(q->name), "%s", name);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->work, NULL);
    for (i = 0; i < nthreads; i++) {
        rc = pthread_create(&q->threads[i], NULL, worker_main, q);
        if (rc) {
            q->nthreads = i;
            cb_workq_free(q);
            return -rc;
        }
    }
    q->nthreads = nthreads;
    *out = q;
    return 0;
}

int cb_workq_submit(cb_workq_t *q, cb_workq_fn fn, void *arg)
{
    int rc = 0;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        rc = -ESHUTDOWN;
    } else if (q->count == q->cap) {
        rc = -EAGAIN;
    } else {
        q->ring[(q->head + q->count) % q->cap] = (job_t){ fn, arg };
        q->count++;
        pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

size_t cb_workq_pending(cb_workq_t *q)
{
    size_t n;

    pthread_mutex_lock(&q->lock);
    n = q->count + q->running;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void cb_workq_free(cb_workq_t *q)
{
    size_t i;

    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->lock);
    for (i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    pthread_cond_destroy(&q->work);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    free(q->threads);
    free(q);
}

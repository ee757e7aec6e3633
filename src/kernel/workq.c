/*
 * workq.c - the kernel's small worker pool (DESIGN.md §2): memory, storage and embedding
 * requests run here, off the HTTP event thread, so a slow disk sync or a long embedding
 * never stalls other connections. A fixed set of threads takes jobs from one bounded FIFO;
 * a full queue refuses new jobs (the API answers 503) instead of growing without limit.
 */
#include <pthread.h>
#include <stdlib.h>
#include "kernel.h"

typedef struct wq_job {
    void (*fn)(void *);
    void *arg;
    struct wq_job *next;
} wq_job;

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wq_job *head, *tail;
    int queued, max_queue;
    bool stop;
    int n_threads;
    pthread_t *threads;
};

static void *wq_main(void *arg) {
    workq *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
        wq_job *j = q->head;
        if (!j) break; /* stopping and drained */
        q->head = j->next;
        if (!q->head) q->tail = NULL;
        q->queued--;
        pthread_mutex_unlock(&q->mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

workq *workq_new(int threads, int max_queue) {
    workq *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->threads = calloc((size_t)threads, sizeof *q->threads);
    if (!q->threads) {
        free(q);
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_queue = max_queue;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&q->threads[i], NULL, wq_main, q)) break;
        q->n_threads++;
    }
    if (!q->n_threads) {
        workq_free(q);
        return NULL;
    }
    return q;
}

int workq_submit(workq *q, void (*fn)(void *), void *arg) {
    wq_job *j = malloc(sizeof *j);
    if (!j) return AIOS_ERR_NOMEM;
    *j = (wq_job){fn, arg, NULL};
    pthread_mutex_lock(&q->mu);
    int rc = q->stop ? AIOS_ERR_SHUTDOWN : q->queued >= q->max_queue ? AIOS_ERR_BUSY : AIOS_OK;
    if (!rc) {
        if (q->tail) q->tail->next = j;
        else q->head = j;
        q->tail = j;
        q->queued++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc) free(j);
    return rc;
}

void workq_free(workq *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->n_threads; i++) pthread_join(q->threads[i], NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->threads);
    free(q);
}

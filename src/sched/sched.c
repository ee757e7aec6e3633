/*
 * sched.c - scheduler core: locking, admission bounds, accounting; the order is the
 * policy's. One mutex guards the queue and counters; the engine waits on a condition
 * variable when idle, so a submit wakes it at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sched.h"

static const sched_policy_ops *const POLICIES[] = {&sched_policy_fifo, NULL};

const sched_policy_ops *sched_policy_lookup(const char *name) {
    for (int i = 0; name && POLICIES[i]; i++)
        if (strcmp(POLICIES[i]->name, name) == 0) return POLICIES[i];
    return NULL;
}

struct sched {
    const sched_policy_ops *ops;
    void *policy;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int max_active, max_queue;
    size_t active;
    bool closed, woken;
    unsigned long long submitted, started, rejected, cancelled_waiting;
};

sched_params sched_default_params(void) {
    return (sched_params){.policy = "fifo", .max_active = 16, .max_queue = 4096};
}

sched_t *sched_new(const sched_params *p, char *err, size_t errlen) {
    const sched_policy_ops *ops = sched_policy_lookup(p->policy);
    if (!ops) {
        snprintf(err, errlen, "scheduler.policy: unknown policy '%s' (allowed: fifo)", p->policy ? p->policy : "");
        return NULL;
    }
    sched_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ops = ops;
    s->policy = ops->create();
    s->max_active = p->max_active > 0 ? p->max_active : 1;
    s->max_queue = p->max_queue > 0 ? p->max_queue : 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

void sched_free(sched_t *s) {
    if (!s) return;
    syscall_t *sc;
    while ((sc = s->ops->peek(s->policy))) {
        s->ops->remove(s->policy, sc);
        syscall_complete(sc, AIOS_ERR_SHUTDOWN, NULL);
        syscall_unref(sc);
    }
    s->ops->destroy(s->policy);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int sched_submit(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    int rc = AIOS_OK;
    if (s->closed) rc = AIOS_ERR_SHUTDOWN;
    else if (s->ops->len(s->policy) >= (size_t)s->max_queue) rc = AIOS_ERR_BUSY;
    if (rc) {
        s->rejected++;
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    pthread_mutex_lock(&sc->mu);
    sc->state = SYSCALL_STATE_QUEUED;
    sc->t_queued = kern_now_mono();
    pthread_mutex_unlock(&sc->mu);
    s->ops->push(s->policy, syscall_ref(sc));
    s->submitted++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return AIOS_OK;
}

syscall_t *sched_next(sched_t *s, bool (*fits)(syscall_t *, void *), void *ctx) {
    pthread_mutex_lock(&s->mu);
    syscall_t *sc = NULL;
    if (s->active < (size_t)s->max_active) {
        sc = s->ops->peek(s->policy);
        if (sc && fits && !fits(sc, ctx)) sc = NULL;
        if (sc) {
            s->ops->remove(s->policy, sc);
            s->active++;
            s->started++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return sc;
}

void sched_done(sched_t *s) {
    pthread_mutex_lock(&s->mu);
    if (s->active) s->active--;
    pthread_mutex_unlock(&s->mu);
}

bool sched_cancel(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    bool removed = s->ops->remove(s->policy, sc);
    if (removed) s->cancelled_waiting++;
    pthread_mutex_unlock(&s->mu);
    if (removed) {
        syscall_complete(sc, AIOS_ERR_CANCELLED, NULL);
        syscall_unref(sc);
    }
    return removed;
}

void sched_wait(sched_t *s, double timeout_s) {
    pthread_mutex_lock(&s->mu);
    if (!s->woken && !s->closed && s->ops->len(s->policy) == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)((timeout_s - (long)timeout_s) * 1e9);
        ts.tv_sec += (time_t)timeout_s + ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    s->woken = false;
    pthread_mutex_unlock(&s->mu);
}

void sched_wake(sched_t *s) {
    pthread_mutex_lock(&s->mu);
    s->woken = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_close(sched_t *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched_t *s, sched_stats *o) {
    pthread_mutex_lock(&s->mu);
    o->queued = s->ops->len(s->policy);
    o->active = s->active;
    o->submitted = s->submitted;
    o->started = s->started;
    o->rejected = s->rejected;
    o->cancelled_waiting = s->cancelled_waiting;
    o->policy = s->ops->name;
    pthread_mutex_unlock(&s->mu);
}

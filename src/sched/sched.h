/*
 * sched.h - the run queue of one resource (an LLM core) and its pluggable policy.
 *
 * Producers (API handlers) sched_submit() syscalls; the consumer (the engine thread of the
 * core) asks sched_next() for the next syscall to start whenever it has room, and reports
 * sched_done() when a running syscall leaves the engine. The policy decides the order of
 * the waiting queue; the core decides how many may run (scheduler.max_active) and whether
 * the policy's pick fits right now (a `fits` callback, e.g. the KV budget). Policies are
 * one file each behind sched_policy_ops; `fifo` is the first.
 */
#ifndef AIOS_SCHED_H
#define AIOS_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include "../syscall/syscall.h"

/* ---- policy interface ---- */
typedef struct sched_policy_ops {
    const char *name;
    void *(*create)(void);
    void (*destroy)(void *p);
    /* Queue a waiting syscall (the scheduler holds a ref while it is queued). */
    void (*push)(void *p, syscall_t *sc);
    /* The syscall the policy would start next, without removing it; NULL if empty. */
    syscall_t *(*peek)(void *p);
    /* Remove a specific queued syscall; true if it was queued. */
    bool (*remove)(void *p, syscall_t *sc);
    size_t (*len)(void *p);
} sched_policy_ops;

extern const sched_policy_ops sched_policy_fifo;
/* The policy registered under `name`, or NULL. */
const sched_policy_ops *sched_policy_lookup(const char *name);

/* ---- scheduler ---- */
typedef struct sched sched_t;

typedef struct sched_params {
    const char *policy;  /* "fifo" */
    int max_active;      /* syscalls running at once */
    int max_queue;       /* waiting syscalls before submit fails with AIOS_ERR_BUSY */
} sched_params;

sched_params sched_default_params(void);
/* NULL on an unknown policy (err says which names are allowed). */
sched_t *sched_new(const sched_params *params, char *err, size_t errlen);
void sched_free(sched_t *s); /* accepts NULL; cancels and releases queued syscalls */

/* Queues sc (takes a reference of its own). AIOS_ERR_BUSY when full, AIOS_ERR_SHUTDOWN when closed. */
int sched_submit(sched_t *s, syscall_t *sc);
/* Engine side: the next syscall to start if a slot is free and fits(sc, ctx) says yes;
 * the caller receives the scheduler's reference. NULL otherwise. */
syscall_t *sched_next(sched_t *s, bool (*fits)(syscall_t *sc, void *ctx), void *ctx);
/* Engine side: a running syscall left the engine (frees its slot). */
void sched_done(sched_t *s);
/* Removes sc if it is still waiting and completes it as cancelled; true if it was waiting. */
bool sched_cancel(sched_t *s, syscall_t *sc);
/* Blocks the engine until there is queued work or a wake-up, at most timeout_s. */
void sched_wait(sched_t *s, double timeout_s);
void sched_wake(sched_t *s);
/* Refuses new work and wakes the engine (shutdown). */
void sched_close(sched_t *s);

typedef struct sched_stats {
    size_t queued, active;
    unsigned long long submitted, started, rejected, cancelled_waiting;
    const char *policy;
} sched_stats;
void sched_get_stats(sched_t *s, sched_stats *out);

#endif

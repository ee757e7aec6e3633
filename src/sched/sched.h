/*
 * sched.h - the run queue of one resource (an LLM core) and its pluggable policy, and the
 * run queues of the worker resources (memory, storage: runq.c, at the end) under the same
 * policies.
 *
 * Producers (API handlers) sched_submit() syscalls; the consumer (the engine thread of the
 * core) asks sched_next() for the next syscall to start whenever it has room, reports the
 * service it gives each running syscall (sched_charge), asks sched_victim() whether a
 * running syscall must yield its place to a waiting one (preemption), hands a preempted
 * syscall back with sched_requeue() and reports sched_done() when one leaves for good.
 *
 * The core keeps the waiting list, the per-agent service accounting and the counters; a
 * policy (one file each behind sched_policy_ops) is only the order of the waiting list and
 * the rule for when a running syscall yields:
 *   fifo      arrival order, never preempts
 *   rr        arrival order; a running syscall yields after `time_slice` generated tokens
 *             and re-enters at the back
 *   priority  higher priority first; a waiting syscall preempts a lower-priority one
 *   fair      least attained service first: the agent that received the fewest tokens in
 *             the current window runs first; a running syscall yields after a time slice
 *             to an agent that has received less
 *   agent     the agent's whole multi-turn program is the job (policy_agent.c): an agent
 *             inside its program (a turn ran, and it came back within `agent_hot_s`) goes
 *             ahead of agents that have not started, and keeps its place through a tool
 *             pause; new programs start in arrival order as places free; a waiting turn
 *             owed more than `starve_factor` time slices of an equal share goes first
 */
#ifndef AIOS_SCHED_H
#define AIOS_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../syscall/syscall.h"

/* What a policy may look at when ordering two syscalls. */
typedef struct sched_key {
    int priority;
    uint64_t ticket;            /* smaller = earlier in the queue */
    int slice;                  /* tokens generated since it last started (running only) */
    unsigned long long service; /* its agent's service in the current window, in tokens */
    bool hot;                   /* its agent is inside a program: a turn ran within agent_hot_s */
    bool starving;              /* waiting, owed more than starve_factor x time_slice tokens */
    uint64_t program;           /* ticket of the first turn of its agent's program */
    double owed;                /* waiting: the service an equal share would have given it meanwhile */
} sched_key;

/* ---- policy interface ---- */
typedef struct sched_policy_ops {
    const char *name;
    bool requeue_at_back; /* a preempted syscall takes a new ticket (rr) or keeps its own */
    bool keep_places;     /* an agent inside its program keeps a place through its pauses: a
                           * syscall of an agent that is not starts only while running syscalls
                           * plus such agents leave a place (or when it starves) */
    /* True if waiting syscall a should start before waiting syscall b. */
    bool (*before)(const sched_key *a, const sched_key *b);
    /* True if running syscall r should give its place to waiting syscall w now. */
    bool (*yields)(const sched_key *r, const sched_key *w, int time_slice);
} sched_policy_ops;

extern const sched_policy_ops sched_policy_fifo, sched_policy_rr, sched_policy_priority, sched_policy_fair, sched_policy_agent;
/* The policy registered under `name`, or NULL. */
const sched_policy_ops *sched_policy_lookup(const char *name);
/* "fifo, rr, priority, fair, agent" (for error messages and docs). */
const char *sched_policy_names(void);

/* ---- scheduler ---- */
typedef struct sched sched_t;

typedef struct sched_params {
    const char *policy;   /* a name from sched_policy_names() */
    int max_active;       /* syscalls running at once */
    int max_queue;        /* waiting syscalls before submit fails with AIOS_ERR_BUSY */
    int time_slice;       /* tokens a running syscall generates before it may be preempted (rr, fair) */
    double fair_window_s; /* length of the service window of the fair policy */
    int max_agents;       /* per-agent service records kept (idle ones are recycled) */
    double agent_hot_s;   /* agent: a turn within this long of its agent's last one continues its program */
    int starve_factor;    /* agent: owed this many time slices of an equal share, a turn goes first */
} sched_params;

sched_params sched_default_params(void);
/* NULL on an unknown policy (err says which names are allowed). */
sched_t *sched_new(const sched_params *params, char *err, size_t errlen);
void sched_free(sched_t *s); /* accepts NULL; cancels and releases queued syscalls */

/* Queues sc (takes a reference of its own). AIOS_ERR_BUSY when full, AIOS_ERR_SHUTDOWN when closed. */
int sched_submit(sched_t *s, syscall_t *sc);
/* Engine side: the policy's first waiting syscall if a place is free and fits(sc, ctx)
 * says it fits now; the caller receives the scheduler's reference. NULL otherwise (the
 * queue keeps its order: a first syscall that does not fit is not overtaken). */
syscall_t *sched_next(sched_t *s, bool (*fits)(syscall_t *sc, void *ctx), void *ctx);
/* Engine side: running sc received service: `service` tokens computed for it (prefill and
 * generation) and `generated` new tokens (its time slice). */
void sched_charge(sched_t *s, syscall_t *sc, int service, int generated);
/* Puts agent's syscalls on hold (its process is stopped) or takes them off: a held agent's
 * waiting syscalls are passed over, and sched_victim names its running ones first (the
 * engine parks them). AIOS_ERR_BUSY when max_agents agents are already held. */
int sched_hold(sched_t *s, const char *agent, bool hold);
/* Engine side: when the policy's first waiting syscall cannot start (no free place, or
 * fits() says no), the running syscall among running[0..n) that should yield to it, or
 * NULL. The caller then preempts it and hands it back with sched_requeue(). */
syscall_t *sched_victim(sched_t *s, syscall_t *const *running, int n, bool (*fits)(syscall_t *sc, void *ctx), void *ctx);
/* Engine side: a preempted syscall goes back to the waiting list (the caller's reference
 * passes to the scheduler); counts a context switch. */
void sched_requeue(sched_t *s, syscall_t *sc);
/* Engine side: running sc left the engine for good (frees its place). */
void sched_done(sched_t *s, syscall_t *sc);
/* Removes sc if it is still waiting and completes it as cancelled; true if it was waiting. */
bool sched_cancel(sched_t *s, syscall_t *sc);
/* Blocks the engine until there is queued work or a wake-up, at most timeout_s. */
void sched_wait(sched_t *s, double timeout_s);
void sched_wake(sched_t *s);
/* Refuses new work and wakes the engine (shutdown). */
void sched_close(sched_t *s);

typedef struct sched_stats {
    size_t queued, active, preempted_waiting;
    unsigned long long submitted, started, rejected, cancelled_waiting, context_switches;
    unsigned long long starved; /* turns that reached the starvation bound (agent) */
    const char *policy;
} sched_stats;
void sched_get_stats(sched_t *s, sched_stats *out);

/* Per-agent service, for /metrics: calls fn once per known agent (under the lock; fn must
 * not call back into the scheduler). */
typedef void (*sched_agent_fn)(const char *agent, unsigned long long service_total, unsigned long long service_window, void *ud);
void sched_foreach_agent(sched_t *s, sched_agent_fn fn, void *ud);

/* ---- run queues of the worker resources (runq.c) ----
 * Memory and storage syscalls (and /v1/embeddings jobs) are short operations run to the
 * end by a resource's own worker threads; tool calls are taken (pull mode) by the tool
 * manager whenever their tool has a free slot. No preemption, so a policy is only the
 * order of the waiting jobs, through the same `before` rule as the LLM scheduler's:
 *   fifo      arrival order
 *   priority  the job's priority (higher first), then arrival
 *   rr        round robin over agents, one operation each: an agent's k-th waiting job
 *             gets round max(its last round, the round now being served) + 1
 *   fair      the agent that received the least operation time (seconds its jobs kept a
 *             worker busy) in the current fair_window_s window first, then arrival
 * Ties go to the earlier arrival. Bounds: max_queue waiting jobs in all, max_per_agent
 * waiting jobs per agent (AIOS_ERR_BUSY with a message naming the bound). */
typedef struct runq runq_t;

typedef struct runq_params {
    const char *resource; /* "memory", "storage": names it in errors, /status and /metrics (borrowed) */
    const char *policy;   /* a name from sched_policy_names() */
    int workers;          /* worker threads of this resource */
    int max_queue;        /* waiting jobs in all before submit fails with AIOS_ERR_BUSY */
    int max_per_agent;    /* waiting jobs of one agent before its submits fail with AIOS_ERR_BUSY */
    double fair_window_s; /* length of the service window of the fair policy */
    int max_agents;       /* per-agent records kept (idle ones are recycled) */
    bool pull;            /* no workers: the owner takes jobs (runq_take) and reports them done */
} runq_params;

/* One operation: fn(arg) on a worker thread. arg stays the caller's: runq never frees it,
 * fn receives it once (or never, when submit fails). agent is copied. */
typedef struct runq_job {
    void (*fn)(void *arg);
    void *arg;
    const char *agent;
    int priority;
} runq_job;

runq_params runq_default_params(void);
/* Starts the workers. NULL on an unknown policy (err says which names are allowed) or
 * when no thread could start. */
runq_t *runq_new(const runq_params *params, char *err, size_t errlen);
/* Queues a job. AIOS_ERR_BUSY when the queue or the agent's share of it is full (err says
 * which), AIOS_ERR_SHUTDOWN once runq_free began, AIOS_ERR_NOMEM. */
int runq_submit(runq_t *q, const runq_job *job, char *err, size_t errlen);
/* Refuses new jobs, runs every queued one (in policy order), joins the workers, frees.
 * In pull mode the jobs still queued are dropped (their args stay the owner's: take them
 * first). Accepts NULL. */
void runq_free(runq_t *q);

/* Pull mode. fits says whether a waiting job may start now (the owner's own limits); it
 * runs under the queue's lock and must not call back into it. runq_take takes the
 * policy's first waiting job that fits, copies it into *out and returns its handle, or
 * NULL when none fits; the owner runs it and hands the handle back to runq_done with the
 * seconds it took, which are charged to its agent. */
typedef bool (*runq_fits_fn)(const runq_job *job, void *ctx);
void *runq_take(runq_t *q, runq_fits_fn fits, void *ctx, runq_job *out);
void runq_done(runq_t *q, void *handle, double seconds);

typedef struct runq_stats {
    const char *resource, *policy;
    int workers;
    size_t queued, running, agents_waiting;
    unsigned long long submitted, completed, rejected_full, rejected_agent;
    double busy_seconds; /* operation time of all completed jobs */
} runq_stats;
void runq_get_stats(runq_t *q, runq_stats *out);

/* Per-agent accounting, for /metrics: calls fn once per known agent (under the lock; fn
 * must not call back into the run queue). Service is operation time in seconds. */
typedef void (*runq_agent_fn)(const char *agent, size_t queued, unsigned long long ops, double service_total_s,
                              double service_window_s, void *ud);
void runq_foreach_agent(runq_t *q, runq_agent_fn fn, void *ud);
/* agent's jobs waiting and running now (0, 0 for an agent it has no record of). */
void runq_agent_load(runq_t *q, const char *agent, size_t *queued, int *running);

#endif

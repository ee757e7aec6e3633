/*
 * runq.c - the run queue of one worker resource (memory, storage, tools): every memory,
 * storage and tool syscall is scheduled like LLM work (DESIGN.md §1-2), by the same
 * policies, so priority and fair share reach them and one agent cannot fill a resource's
 * queue.
 *
 * Each agent has its own waiting list, kept in the policy's order for that agent (arrival;
 * under `priority`, priority then arrival), so the policy's first job overall is the best
 * of the agents' first jobs: a dispatch scans the agent records, not every waiting job
 * (a flood of 10,000 jobs by one agent costs nothing to the others' picks). A resource has
 * its own fixed worker threads; a job runs to its end (these are short operations) and its
 * operation time is charged to its agent (the `fair` service). One mutex guards it all.
 * In pull mode (tools) there are no workers: the owner takes the first job that fits its
 * own limits (a tool's max_parallel) and reports when it is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sched.h"

typedef struct rq_agent rq_agent;

typedef struct rq_job {
    runq_job j;
    uint64_t ticket; /* arrival order */
    uint64_t round;  /* rr: the round it runs in */
    rq_agent *agent;
    struct rq_job *prev, *next;
} rq_job;

struct rq_agent {
    char name[AIOS_NAME_MAX];
    rq_job *head, *tail; /* waiting jobs, in the policy's order for this agent */
    size_t queued;
    int running;
    uint64_t last_round; /* rr: the round of its last queued job */
    unsigned long long ops;
    double service_total, service_window; /* seconds of operation time */
    double last_used;
};

struct runq {
    const sched_policy_ops *ops;
    runq_params p;
    char resource[AIOS_NAME_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    rq_agent *agents;
    int n_agents;
    rq_agent overflow; /* shared by agents beyond max_agents while all records are busy */
    size_t queued, running;
    uint64_t next_ticket, rr_round;
    double window_start;
    unsigned long long submitted, completed, rejected_full, rejected_agent;
    double busy_seconds;
    int n_threads;
    pthread_t *threads;
};

runq_params runq_default_params(void) {
    return (runq_params){.resource = "worker",
                         .policy = "fifo",
                         .workers = 4,
                         .max_queue = 4096,
                         .max_per_agent = 1024,
                         .fair_window_s = 60.0,
                         .max_agents = 1024};
}

/* ---- agents (mu held) ---- */

static bool agent_idle(const rq_agent *a) { return a->queued == 0 && a->running == 0; }

static rq_agent *agent_get(runq_t *q, const char *name) {
    rq_agent *idle = NULL;
    for (int i = 0; i < q->n_agents; i++) {
        rq_agent *a = &q->agents[i];
        if (strcmp(a->name, name) == 0) return a;
        if (agent_idle(a) && (!idle || a->last_used < idle->last_used)) idle = a;
    }
    rq_agent *a = q->n_agents < q->p.max_agents ? &q->agents[q->n_agents++] : idle;
    if (!a) return &q->overflow;
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    return a;
}

/* Starts a new fair-share window when the current one is over (as sched.c does). */
static void window_roll(runq_t *q) {
    double now = kern_now_mono();
    if (now - q->window_start < q->p.fair_window_s) return;
    q->window_start = now;
    for (int i = 0; i < q->n_agents; i++) q->agents[i].service_window = 0;
    q->overflow.service_window = 0;
}

/* Links j into its agent's list: at the back, or under `priority` behind every job of
 * at least its priority (a scan from the back: O(1) when priorities are equal). */
static void agent_push(runq_t *q, rq_agent *a, rq_job *j) {
    rq_job *after = a->tail;
    if (q->ops == &sched_policy_priority)
        while (after && after->j.priority < j->j.priority) after = after->prev;
    j->prev = after;
    j->next = after ? after->next : a->head;
    if (j->next) j->next->prev = j;
    else a->tail = j;
    if (after) after->next = j;
    else a->head = j;
    a->queued++;
}

static void agent_pop(rq_agent *a, rq_job *j) {
    if (j->prev) j->prev->next = j->next;
    else a->head = j->next;
    if (j->next) j->next->prev = j->prev;
    else a->tail = j->prev;
    a->queued--;
}

/* ---- the policy's pick (mu held) ---- */

static sched_key key_of(const runq_t *q, const rq_job *j) {
    const rq_agent *a = j->agent;
    return (sched_key){.priority = j->j.priority,
                       .ticket = q->ops == &sched_policy_rr ? j->round : j->ticket,
                       .service = (unsigned long long)(a->service_window * 1e6)};
}

/* True if waiting job a goes before waiting job b: the policy's order, ties by arrival. */
static bool job_before(const runq_t *q, const rq_job *a, const rq_job *b) {
    sched_key ka = key_of(q, a), kb = key_of(q, b);
    if (q->ops->before(&ka, &kb)) return true;
    if (q->ops->before(&kb, &ka)) return false;
    return a->ticket < b->ticket;
}

/* The policy's first waiting job that fits (fits NULL: any): each agent's list is in the
 * policy's order, so its first fitting job is its candidate. */
static rq_job *first_waiting(runq_t *q, runq_fits_fn fits, void *ctx) {
    rq_job *best = NULL;
    for (int i = 0; i <= q->n_agents; i++) {
        rq_job *j = i < q->n_agents ? q->agents[i].head : q->overflow.head;
        while (j && fits && !fits(&j->j, ctx)) j = j->next;
        if (j && (!best || job_before(q, j, best))) best = j;
    }
    return best;
}

/* Takes the policy's first waiting job that fits off the queue, or NULL when none does. */
static rq_job *take_next(runq_t *q, runq_fits_fn fits, void *ctx) {
    window_roll(q);
    rq_job *j = first_waiting(q, fits, ctx);
    if (!j) return NULL;
    agent_pop(j->agent, j);
    q->queued--;
    if (j->round > q->rr_round) q->rr_round = j->round;
    j->agent->running++;
    q->running++;
    return j;
}

static void charge(runq_t *q, rq_job *j, double dt) {
    rq_agent *a = j->agent;
    a->running--;
    a->ops++;
    a->service_total += dt;
    a->service_window += dt;
    a->last_used = kern_now_mono();
    q->running--;
    q->completed++;
    q->busy_seconds += dt;
}

static void *rq_main(void *arg) {
    runq_t *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->queued && !q->stop) pthread_cond_wait(&q->cv, &q->mu);
        rq_job *j = take_next(q, NULL, NULL);
        if (!j) break; /* stopping and drained */
        pthread_mutex_unlock(&q->mu);
        double t0 = kern_now_mono();
        j->j.fn(j->j.arg);
        double dt = kern_now_mono() - t0;
        pthread_mutex_lock(&q->mu);
        charge(q, j, dt);
        free(j);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ---- public ---- */

static runq_t *runq_alloc(const runq_params *p, const sched_policy_ops *ops) {
    runq_t *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->ops = ops;
    q->p = *p;
    q->p.workers = p->pull ? 0 : p->workers > 0 ? p->workers : 1;
    q->p.max_queue = p->max_queue > 0 ? p->max_queue : 1;
    q->p.max_per_agent = p->max_per_agent > 0 ? p->max_per_agent : 1;
    q->p.max_agents = p->max_agents > 0 ? p->max_agents : 1;
    snprintf(q->resource, sizeof q->resource, "%s", p->resource ? p->resource : "worker");
    q->p.resource = q->resource;
    snprintf(q->overflow.name, sizeof q->overflow.name, "(other)");
    q->agents = calloc((size_t)q->p.max_agents, sizeof *q->agents);
    q->threads = calloc((size_t)q->p.workers + 1, sizeof *q->threads);
    if (!q->agents || !q->threads) {
        free(q->agents);
        free(q->threads);
        free(q);
        return NULL;
    }
    q->window_start = kern_now_mono();
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    return q;
}

runq_t *runq_new(const runq_params *p, char *err, size_t errlen) {
    const sched_policy_ops *ops = sched_policy_lookup(p->policy);
    if (!ops) {
        snprintf(err, errlen, "scheduler.policy: unknown policy '%s' (allowed: %s)", p->policy ? p->policy : "",
                 sched_policy_names());
        return NULL;
    }
    runq_t *q = runq_alloc(p, ops);
    if (!q) {
        snprintf(err, errlen, "out of memory for the %s run queue", p->resource ? p->resource : "worker");
        return NULL;
    }
    for (int i = 0; i < q->p.workers; i++) {
        if (pthread_create(&q->threads[i], NULL, rq_main, q)) break;
        q->n_threads++;
    }
    if (!q->n_threads && !q->p.pull) {
        snprintf(err, errlen, "cannot start %d worker threads for the %s run queue", q->p.workers, q->resource);
        runq_free(q);
        return NULL;
    }
    return q;
}

/* Whether a new job of agent a may wait (mu held); err says why not. */
static int admit(runq_t *q, const rq_agent *a, const char *agent, char *err, size_t errlen) {
    if (q->stop) return AIOS_ERR_SHUTDOWN;
    if (q->queued >= (size_t)q->p.max_queue) {
        q->rejected_full++;
        snprintf(err, errlen, "the %s run queue is full (%d waiting, kernel.max_jobs); retry later", q->resource, q->p.max_queue);
        return AIOS_ERR_BUSY;
    }
    if (a->queued >= (size_t)q->p.max_per_agent) {
        q->rejected_agent++;
        snprintf(err, errlen,
                 "agent '%s' already has %d operations waiting in the %s run queue "
                 "(kernel.max_jobs_per_agent); retry later",
                 agent, q->p.max_per_agent, q->resource);
        return AIOS_ERR_BUSY;
    }
    return AIOS_OK;
}

int runq_submit(runq_t *q, const runq_job *job, char *err, size_t errlen) {
    rq_job *j = calloc(1, sizeof *j);
    if (!j) return AIOS_ERR_NOMEM;
    j->j = *job;
    const char *name = job->agent && *job->agent ? job->agent : "anonymous";
    j->j.agent = NULL; /* the record holds the name */
    pthread_mutex_lock(&q->mu);
    rq_agent *a = q->stop ? NULL : agent_get(q, name);
    int rc = a ? admit(q, a, name, err, errlen) : AIOS_ERR_SHUTDOWN;
    if (!rc) {
        j->ticket = ++q->next_ticket;
        j->round = (a->last_round > q->rr_round ? a->last_round : q->rr_round) + 1;
        a->last_round = j->round;
        j->agent = a;
        agent_push(q, a, j);
        q->queued++;
        q->submitted++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc) free(j);
    return rc;
}

void runq_free(runq_t *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->n_threads; i++) pthread_join(q->threads[i], NULL);
    for (rq_job *j; (j = take_next(q, NULL, NULL));) free(j); /* pull mode: what the owner left */
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->threads);
    free(q->agents);
    free(q);
}

void *runq_take(runq_t *q, runq_fits_fn fits, void *ctx, runq_job *out) {
    pthread_mutex_lock(&q->mu);
    rq_job *j = take_next(q, fits, ctx);
    if (j) *out = j->j;
    pthread_mutex_unlock(&q->mu);
    return j;
}

void runq_done(runq_t *q, void *handle, double seconds) {
    pthread_mutex_lock(&q->mu);
    charge(q, handle, seconds);
    pthread_mutex_unlock(&q->mu);
    free(handle);
}

void runq_get_stats(runq_t *q, runq_stats *o) {
    pthread_mutex_lock(&q->mu);
    *o = (runq_stats){.resource = q->resource,
                      .policy = q->ops->name,
                      .workers = q->n_threads,
                      .queued = q->queued,
                      .running = q->running,
                      .submitted = q->submitted,
                      .completed = q->completed,
                      .rejected_full = q->rejected_full,
                      .rejected_agent = q->rejected_agent,
                      .busy_seconds = q->busy_seconds};
    for (int i = 0; i < q->n_agents; i++) o->agents_waiting += q->agents[i].queued > 0;
    o->agents_waiting += q->overflow.queued > 0;
    pthread_mutex_unlock(&q->mu);
}

void runq_agent_load(runq_t *q, const char *agent, size_t *queued, int *running) {
    *queued = 0;
    *running = 0;
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < q->n_agents; i++)
        if (!strcmp(q->agents[i].name, agent)) {
            *queued = q->agents[i].queued;
            *running = q->agents[i].running;
        }
    pthread_mutex_unlock(&q->mu);
}

void runq_foreach_agent(runq_t *q, runq_agent_fn fn, void *ud) {
    pthread_mutex_lock(&q->mu);
    window_roll(q);
    for (int i = 0; i < q->n_agents; i++) {
        const rq_agent *a = &q->agents[i];
        fn(a->name, a->queued, a->ops, a->service_total, a->service_window, ud);
    }
    const rq_agent *o = &q->overflow;
    if (o->ops || o->queued) fn(o->name, o->queued, o->ops, o->service_total, o->service_window, ud);
    pthread_mutex_unlock(&q->mu);
}

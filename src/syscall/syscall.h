/*
 * syscall.h - the one request object every layer passes around (DESIGN.md §1).
 *
 * The API layer creates a syscall per request, fills the kind-specific args and hands it to
 * the scheduler of the resource it needs; the resource manager (an LLM engine thread)
 * writes output into it and completes it; the API layer reads the result back. A syscall
 * is reference counted: each holder takes a ref and drops it with syscall_unref(); the last
 * unref frees it and its args. Every field after creation is guarded by its mutex unless
 * noted; the engine appends output with syscall_emit() and notifies the waiter through the
 * sink, which the API layer installs and removes (syscall_set_sink) under the same mutex.
 */
#ifndef AIOS_SYSCALL_H
#define AIOS_SYSCALL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "../kernel/kernel.h"

typedef enum syscall_kind {
    SYSCALL_KIND_LLM,
    SYSCALL_KIND_MEMORY,
    SYSCALL_KIND_STORAGE,
    SYSCALL_KIND_TOOL,
    SYSCALL_KIND__COUNT
} syscall_kind;

typedef enum syscall_state {
    SYSCALL_STATE_CREATED,
    SYSCALL_STATE_QUEUED,
    SYSCALL_STATE_RUNNING,
    SYSCALL_STATE_DONE,
} syscall_state;

/* Flags of the kinds table: what the admission gate (api/admit.c) and dispatcher read.
 *   SCHEDULED  queued at a scheduler or run queue under scheduler.policy
 *   STREAMS    may answer as a stream of events
 *   OWNED      resources are agents' namespaces: an agent's own needs no rule (only a
 *              deny rule of its group refuses it); another agent's needs an allow rule
 *   RATED      counts against access.rate_limit of the calling agent */
enum { SYSCALL_F_SCHEDULED = 1 << 0, SYSCALL_F_STREAMS = 1 << 1, SYSCALL_F_OWNED = 1 << 2, SYSCALL_F_RATED = 1 << 3 };

typedef struct syscall_kind_info {
    syscall_kind kind;
    const char *name; /* query_type on the wire */
    unsigned flags;
    bool implemented; /* false: the kernel answers 501-style errors until its manager lands */
} syscall_kind_info;

/* The kinds table; NULL for an unknown name. */
const syscall_kind_info *syscall_kind_lookup(const char *name);
const syscall_kind_info *syscall_kind_get(syscall_kind kind);

/* Called (with the syscall's mutex held) whenever output or state changed. */
typedef void (*syscall_sink_fn)(void *ctx);

#define SYSCALL_MAX_ROUNDS 64

typedef struct syscall {
    uint64_t id;
    char agent[AIOS_NAME_MAX];
    syscall_kind kind;
    int priority; /* higher runs first under the priority policy; set before submit */

    pthread_mutex_t mu;
    syscall_state state;
    int result; /* AIOS_OK or an error code once DONE */
    char errmsg[256];
    atomic_bool cancel; /* set by anyone; the resource manager honours it at its next step */

    /* timings: monotonic seconds (0 = not yet); wall-clock for the AIOS arrays */
    double t_created, t_queued, t_started, t_first_token, t_finished;
    double wall_created;
    int n_rounds; /* scheduling rounds (a preempted syscall has several) */
    double round_start[SYSCALL_MAX_ROUNDS], round_end[SYSCALL_MAX_ROUNDS]; /* monotonic */

    strbuf out; /* generated text so far (bounded) */

    void *args; /* kind-specific request; owned, freed by args_free */
    void (*args_free)(void *);

    syscall_sink_fn sink;
    void *sink_ctx;

    /* scheduler bookkeeping, guarded by the owning scheduler's mutex (sched.c) */
    uint64_t sched_ticket;                   /* order in the run queue: arrival, or re-queue time under rr */
    int sched_slice;                         /* tokens generated since it last started running */
    void *sched_agent;                       /* the scheduler's per-agent service record */
    int sched_preemptions;                   /* times it was preempted */
    double sched_vclock;                     /* the scheduler's equal-share clock when it last began waiting */
    void *sched_list;                        /* the scheduler whose waiting list holds it (its lock), or NULL */
    struct syscall *sched_prev, *sched_next; /* its neighbours in that list */

    atomic_int refs;
#ifdef AIOS_TORTURE
    /* the torture tier (src/kernel/torture.c): the allocations its request has left before
     * the one that fails, carried to the thread that works for it next, and back */
    atomic_long torture_left;
    atomic_bool torture_hit;
#endif
} syscall_t;

/* New syscall with one reference; takes ownership of args (freed with args_free). */
syscall_t *syscall_new(syscall_kind kind, const char *agent, void *args, void (*args_free)(void *), size_t out_cap);
syscall_t *syscall_ref(syscall_t *sc);
void syscall_unref(syscall_t *sc); /* accepts NULL */

void syscall_set_sink(syscall_t *sc, syscall_sink_fn fn, void *ctx);
/* Resource-manager side: a scheduling round begins / ends. */
void syscall_round_begin(syscall_t *sc);
void syscall_round_end(syscall_t *sc);
/* Appends generated text and notifies; returns AIOS_ERR_TOO_LARGE at the output cap. */
int syscall_emit(syscall_t *sc, const char *text, size_t n);
/* Marks the syscall done with a result (first completion wins) and notifies. */
void syscall_complete(syscall_t *sc, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Requests cancellation; the owner of the running work completes it. */
void syscall_cancel(syscall_t *sc);
/* Fan-out to the subscribers of some output (log followers, event streams): emits n bytes
 * of buf to each of subs[0 .. *count); one cancelled (its client left) or whose buffer is
 * full, or every one when end, completes (AIOS_OK) and is dropped, its reference released. */
void syscall_fanout(syscall_t **subs, int *count, const char *buf, size_t n, bool end);
bool syscall_is_done(syscall_t *sc);

/* AIOS timing arrays: seconds per scheduling round. The array pointers get n values. */
int syscall_timings(syscall_t *sc, double *start, double *end, double *waiting, double *turnaround, int max);

#ifdef AIOS_TORTURE
/* The calling thread's torture countdown goes with sc (before another thread works for it),
 * is taken up by the thread that works for it, and comes back with what is left. */
void syscall_torture_hand(syscall_t *sc);
void syscall_torture_take(syscall_t *sc);
void syscall_torture_return(syscall_t *sc);
#endif

#endif

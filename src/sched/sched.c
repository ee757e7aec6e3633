/*
 * sched.c - scheduler core: the waiting list, admission bounds, per-agent service and the
 * counters; the order and the preemption rule are the policy's (sched.h). One mutex guards
 * everything here; the engine waits on a condition variable when idle, so a submit wakes it
 * at once. The waiting list is unordered and the policy's first element is found by a scan:
 * under `fair` the order changes with every token of service, and the list is bounded by
 * scheduler.max_queue plus the preempted syscalls (at most what once ran).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sched.h"

static const sched_policy_ops *const POLICIES[] = {&sched_policy_fifo, &sched_policy_rr,    &sched_policy_priority,
                                                   &sched_policy_fair, &sched_policy_agent, NULL};

const sched_policy_ops *sched_policy_lookup(const char *name) {
    for (int i = 0; name && POLICIES[i]; i++)
        if (strcmp(POLICIES[i]->name, name) == 0) return POLICIES[i];
    return NULL;
}

const char *sched_policy_names(void) { return "fifo, rr, priority, fair, agent"; }

typedef struct sched_agent {
    char name[AIOS_NAME_MAX];
    unsigned long long service_total, service_window;
    int live;    /* syscalls of this agent in the scheduler (waiting or running) */
    int running; /* of which running */
    double last_used;
    bool held;        /* its process is stopped: none of its syscalls runs (sched_hold) */
    bool in_program;  /* a turn of its current program has run (see agent_in_program) */
    uint64_t program; /* the ticket of its current program's first turn */
    double pause_avg; /* its pauses between turns inside its program (moving average), seconds */
    int pauses;       /* pauses seen in this program */
} sched_agent;

struct sched {
    const sched_policy_ops *ops;
    sched_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    syscall_t *head, *tail; /* the waiting list, linked through the syscalls (no allocation) */
    size_t n_waiting, n_preempted_waiting, active;
    bool closed, woken;
    uint64_t next_ticket;
    sched_agent *agents;
    int n_agents;
    sched_agent overflow;        /* shared by agents beyond max_agents while all records are live */
    char (*held)[AIOS_NAME_MAX]; /* agents on hold (records come and go; this list stays) */
    int n_held;
    double window_start;
    double vclock;     /* equal-share clock: the service each agent with work would have had so far */
    int n_live_agents; /* agents with syscalls in the scheduler */
    unsigned long long submitted, started, rejected, cancelled_waiting, context_switches, starved;
};

sched_params sched_default_params(void) {
    return (sched_params){
        .policy = "fifo",
        .max_active = 16,
        .max_queue = 4096,
        .time_slice = 32,
        .fair_window_s = 60.0,
        .max_agents = 1024,
        .agent_hot_s = 2.0,
        .starve_factor = 16,
    };
}

sched_t *sched_new(const sched_params *p, char *err, size_t errlen) {
    const sched_policy_ops *ops = sched_policy_lookup(p->policy);
    if (!ops) {
        snprintf(err, errlen, "scheduler.policy: unknown policy '%s' (allowed: %s)", p->policy ? p->policy : "",
                 sched_policy_names());
        return NULL;
    }
    sched_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ops = ops;
    s->p = *p;
    s->p.max_active = p->max_active > 0 ? p->max_active : 1;
    s->p.max_queue = p->max_queue > 0 ? p->max_queue : 1;
    s->p.time_slice = p->time_slice > 0 ? p->time_slice : 1;
    s->p.max_agents = p->max_agents > 0 ? p->max_agents : 1;
    s->p.starve_factor = p->starve_factor > 0 ? p->starve_factor : 1;
    s->p.agent_hot_s = p->agent_hot_s >= 0 ? p->agent_hot_s : 0;
    s->agents = calloc((size_t)s->p.max_agents, sizeof *s->agents);
    s->held = calloc((size_t)s->p.max_agents, sizeof *s->held);
    if (!s->agents || !s->held) {
        free(s->agents);
        free(s->held);
        free(s);
        return NULL;
    }
    snprintf(s->overflow.name, sizeof s->overflow.name, "(other)");
    s->window_start = kern_now_mono();
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

/* ---- the waiting list (mu held) ---- */

static void list_push(sched_t *s, syscall_t *sc) {
    sc->sched_list = s;
    sc->sched_prev = s->tail;
    sc->sched_next = NULL;
    if (s->tail) s->tail->sched_next = sc;
    else s->head = sc;
    s->tail = sc;
    s->n_waiting++;
    if (sc->sched_preemptions) s->n_preempted_waiting++;
}

static bool list_remove(sched_t *s, syscall_t *sc) {
    if (sc->sched_list != s) return false;
    if (sc->sched_prev) sc->sched_prev->sched_next = sc->sched_next;
    else s->head = sc->sched_next;
    if (sc->sched_next) sc->sched_next->sched_prev = sc->sched_prev;
    else s->tail = sc->sched_prev;
    sc->sched_list = NULL;
    sc->sched_prev = sc->sched_next = NULL;
    s->n_waiting--;
    if (sc->sched_preemptions) s->n_preempted_waiting--;
    return true;
}

/* ---- agents and service (mu held) ---- */

static int held_index(const sched_t *s, const char *name) {
    for (int i = 0; i < s->n_held; i++)
        if (!strcmp(s->held[i], name)) return i;
    return -1;
}

static sched_agent *agent_get(sched_t *s, const char *name) {
    sched_agent *idle = NULL;
    for (int i = 0; i < s->n_agents; i++) {
        sched_agent *a = &s->agents[i];
        if (strcmp(a->name, name) == 0) return a;
        if (a->live == 0 && (!idle || a->last_used < idle->last_used)) idle = a;
    }
    sched_agent *a = s->n_agents < s->p.max_agents ? &s->agents[s->n_agents++] : idle;
    if (!a) return &s->overflow;
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->held = held_index(s, name) >= 0;
    return a;
}

/* Starts a new fair-share window when the current one is over. */
static void window_roll(sched_t *s) {
    double now = kern_now_mono();
    if (now - s->window_start < s->p.fair_window_s) return;
    s->window_start = now;
    for (int i = 0; i < s->n_agents; i++) s->agents[i].service_window = 0;
    s->overflow.service_window = 0;
}

/* An agent is inside its program from the start of one of its turns until it has had no
 * syscall in the scheduler for longer than agent_hot_s. */
static bool agent_in_program(const sched_t *s, const sched_agent *a, double now) {
    return a->in_program && (a->live > 0 || now - a->last_used <= s->p.agent_hot_s);
}

/* How long a place stays kept for an agent in a pause: twice its usual pause (plus 50 ms),
 * at most agent_hot_s, which is also the window before its first pause. So an agent that
 * has ended does not hold a place for agent_hot_s when its pauses were short. */
static double keep_window(const sched_t *s, const sched_agent *a) {
    double w = 2 * a->pause_avg + 0.05;
    return a->pauses && w < s->p.agent_hot_s ? w : s->p.agent_hot_s;
}

/* Whether a's place is kept now: inside its program, nothing running, and (something
 * waiting, or paused within its keep window). */
static bool place_kept(const sched_t *s, const sched_agent *a, double now) {
    return a->running == 0 && agent_in_program(s, a, now) && (a->live > 0 || now - a->last_used <= keep_window(s, a));
}

static sched_key key_of(const sched_t *s, const syscall_t *sc, double now) {
    const sched_agent *a = sc->sched_agent;
    sched_key k = {.priority = sc->priority,
                   .ticket = sc->sched_ticket,
                   .slice = sc->sched_slice,
                   .service = a ? a->service_window : 0,
                   .hot = a && agent_in_program(s, a, now),
                   .program = a ? a->program : sc->sched_ticket};
    if (sc->sched_list == s) { /* waiting */
        k.owed = s->vclock - sc->sched_vclock;
        k.starving = s->ops->keep_places && k.owed >= (double)s->p.starve_factor * s->p.time_slice;
    }
    return k;
}

/* keep_places: the places held by agents inside their programs with no turn running (in a
 * tool pause, or their next turn waiting). */
static int places_kept(const sched_t *s, double now) {
    int n = 0;
    for (int i = 0; i < s->n_agents; i++) n += place_kept(s, &s->agents[i], now);
    return n;
}

/* Whether the waiting syscall of key k may take a free place now: under keep_places, an
 * agent outside its program takes one only if it is not kept for agents inside theirs,
 * unless it starves. */
static bool place_free_for(const sched_t *s, const sched_key *k, double now) {
    if (s->active >= (size_t)s->p.max_active) return false;
    if (!s->ops->keep_places) return true;
    return k->hot || k->starving || s->active + (size_t)places_kept(s, now) < (size_t)s->p.max_active;
}

static bool is_held(const syscall_t *sc) {
    const sched_agent *a = sc->sched_agent;
    return a && a->held;
}

/* The policy's first waiting syscall whose agent is not on hold, or NULL; *key gets its key. */
static syscall_t *first_waiting(sched_t *s, double now, sched_key *key) {
    syscall_t *best = NULL;
    sched_key bk = {0};
    for (syscall_t *n = s->head; n; n = n->sched_next) {
        if (is_held(n)) continue;
        sched_key k = key_of(s, n, now);
        if (!best || s->ops->before(&k, &bk)) {
            best = n;
            bk = k;
        }
    }
    *key = bk;
    return best;
}

static void agent_release(sched_t *s, syscall_t *sc) {
    sched_agent *a = sc->sched_agent;
    if (!a) return;
    if (--a->live == 0) s->n_live_agents--;
    a->last_used = kern_now_mono();
}

/* ---- public ---- */

void sched_free(sched_t *s) {
    if (!s) return;
    while (s->head) {
        syscall_t *sc = s->head;
        list_remove(s, sc);
        syscall_complete(sc, AIOS_ERR_SHUTDOWN, NULL);
        syscall_unref(sc);
    }
    free(s->agents);
    free(s->held);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int sched_submit(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    int rc = AIOS_OK;
    if (s->closed) rc = AIOS_ERR_SHUTDOWN;
    else if (s->n_waiting - s->n_preempted_waiting >= (size_t)s->p.max_queue) rc = AIOS_ERR_BUSY;
    if (rc) {
        s->rejected++;
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    pthread_mutex_lock(&sc->mu);
    sc->state = SYSCALL_STATE_QUEUED;
    sc->t_queued = kern_now_mono();
    pthread_mutex_unlock(&sc->mu);
    sc->sched_ticket = ++s->next_ticket;
    sc->sched_slice = 0;
    sc->sched_vclock = s->vclock;
    sched_agent *a = agent_get(s, sc->agent);
    sc->sched_agent = a;
    double now = kern_now_mono();
    if (a->live == 0 && !agent_in_program(s, a, now)) { /* a new program */
        a->in_program = false;
        a->program = sc->sched_ticket;
        a->pauses = 0;
    } else if (a->live == 0 && a->in_program) { /* back from a pause */
        double pause = now - a->last_used;
        a->pause_avg = a->pauses++ ? 0.7 * a->pause_avg + 0.3 * pause : pause;
    }
    if (a->live++ == 0) s->n_live_agents++;
    list_push(s, syscall_ref(sc));
    s->submitted++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return AIOS_OK;
}

syscall_t *sched_next(sched_t *s, bool (*fits)(syscall_t *, void *), void *ctx) {
    pthread_mutex_lock(&s->mu);
    syscall_t *sc = NULL;
    if (s->active < (size_t)s->p.max_active) {
        window_roll(s);
        double now = kern_now_mono();
        sched_key k;
        sc = first_waiting(s, now, &k);
        if (sc && !place_free_for(s, &k, now)) sc = NULL;
        if (sc && fits && !fits(sc, ctx)) sc = NULL;
        if (sc) {
            if (k.starving) s->starved++;
            list_remove(s, sc);
            sc->sched_slice = 0;
            sched_agent *a = sc->sched_agent;
            a->running++;
            a->in_program = true;
            s->active++;
            s->started++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return sc;
}

void sched_charge(sched_t *s, syscall_t *sc, int service, int generated) {
    pthread_mutex_lock(&s->mu);
    sched_agent *a = sc->sched_agent;
    if (a && service > 0) {
        a->service_total += (unsigned long long)service;
        a->service_window += (unsigned long long)service;
        if (s->n_live_agents > 0) s->vclock += (double)service / s->n_live_agents;
    }
    sc->sched_slice += generated;
    pthread_mutex_unlock(&s->mu);
}

syscall_t *sched_victim(sched_t *s, syscall_t *const *running, int n, bool (*fits)(syscall_t *, void *), void *ctx) {
    pthread_mutex_lock(&s->mu);
    syscall_t *victim = NULL;
    for (int i = 0; i < n && !victim; i++) /* a held agent's generation parks, whoever waits */
        if (is_held(running[i])) victim = running[i];
    window_roll(s);
    double now = kern_now_mono();
    sched_key wk, vk = {0};
    syscall_t *w = victim ? NULL : first_waiting(s, now, &wk);
    bool blocked = w && (!place_free_for(s, &wk, now) || (fits && !fits(w, ctx)));
    if (blocked) {
        for (int i = 0; i < n; i++) {
            sched_key rk = key_of(s, running[i], now);
            if (!s->ops->yields(&rk, &wk, s->p.time_slice)) continue;
            /* among those that yield, the one the policy would run last */
            if (!victim || s->ops->before(&vk, &rk)) {
                victim = running[i];
                vk = rk;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return victim;
}

void sched_requeue(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    if (s->active) s->active--;
    ((sched_agent *)sc->sched_agent)->running--;
    if (s->ops->requeue_at_back) sc->sched_ticket = ++s->next_ticket;
    sc->sched_preemptions++;
    sc->sched_slice = 0;
    sc->sched_vclock = s->vclock;
    pthread_mutex_lock(&sc->mu);
    sc->state = SYSCALL_STATE_QUEUED;
    pthread_mutex_unlock(&sc->mu);
    list_push(s, sc);
    s->context_switches++;
    pthread_mutex_unlock(&s->mu);
}

void sched_done(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    if (s->active) s->active--;
    ((sched_agent *)sc->sched_agent)->running--;
    agent_release(s, sc);
    pthread_mutex_unlock(&s->mu);
}

bool sched_cancel(sched_t *s, syscall_t *sc) {
    pthread_mutex_lock(&s->mu);
    bool removed = list_remove(s, sc);
    if (removed) {
        s->cancelled_waiting++;
        agent_release(s, sc);
    }
    pthread_mutex_unlock(&s->mu);
    if (removed) {
        syscall_complete(sc, AIOS_ERR_CANCELLED, NULL);
        syscall_unref(sc);
    }
    return removed;
}

/* Seconds until the first place kept for an agent in a pause lapses (keep_places). */
static double next_lapse(const sched_t *s, double now) {
    double t = 1e9;
    for (int i = 0; i < s->n_agents; i++) {
        const sched_agent *a = &s->agents[i];
        double end = a->last_used + keep_window(s, a) - now;
        if (a->live == 0 && place_kept(s, a, now) && end < t) t = end;
    }
    return t > 0.001 ? t : 0.001;
}

void sched_wait(sched_t *s, double timeout_s) {
    pthread_mutex_lock(&s->mu);
    double now = kern_now_mono();
    sched_key k;
    syscall_t *w = first_waiting(s, now, &k);
    if (w && s->ops->keep_places && !place_free_for(s, &k, now)) { /* places kept for paused agents: until one lapses */
        double lapse = next_lapse(s, now);
        timeout_s = lapse < timeout_s ? lapse : timeout_s;
        w = NULL;
    }
    if (!s->woken && !s->closed && !w) {
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

int sched_hold(sched_t *s, const char *agent, bool hold) {
    pthread_mutex_lock(&s->mu);
    int i = held_index(s, agent), rc = AIOS_OK;
    if (hold && i < 0 && s->n_held == s->p.max_agents) rc = AIOS_ERR_BUSY;
    else if (hold && i < 0) snprintf(s->held[s->n_held++], AIOS_NAME_MAX, "%s", agent);
    else if (!hold && i >= 0) memmove(s->held[i], s->held[i + 1], (size_t)(--s->n_held - i) * AIOS_NAME_MAX);
    for (int k = 0; !rc && k < s->n_agents; k++)
        if (!strcmp(s->agents[k].name, agent)) s->agents[k].held = hold;
    s->woken = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void sched_close(sched_t *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched_t *s, sched_stats *o) {
    pthread_mutex_lock(&s->mu);
    o->queued = s->n_waiting;
    o->preempted_waiting = s->n_preempted_waiting;
    o->active = s->active;
    o->submitted = s->submitted;
    o->started = s->started;
    o->rejected = s->rejected;
    o->cancelled_waiting = s->cancelled_waiting;
    o->context_switches = s->context_switches;
    o->starved = s->starved;
    o->policy = s->ops->name;
    pthread_mutex_unlock(&s->mu);
}

void sched_foreach_agent(sched_t *s, sched_agent_fn fn, void *ud) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_agents; i++) fn(s->agents[i].name, s->agents[i].service_total, s->agents[i].service_window, ud);
    if (s->overflow.service_total) fn(s->overflow.name, s->overflow.service_total, s->overflow.service_window, ud);
    pthread_mutex_unlock(&s->mu);
}

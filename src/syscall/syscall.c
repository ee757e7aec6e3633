/*
 * syscall.c - syscall lifetime, the kinds table and timing bookkeeping (syscall.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "syscall.h"

static const syscall_kind_info KINDS[SYSCALL_KIND__COUNT] = {
    {SYSCALL_KIND_LLM, "llm", SYSCALL_F_SCHEDULED | SYSCALL_F_STREAMS | SYSCALL_F_RATED, true},
    {SYSCALL_KIND_MEMORY, "memory", SYSCALL_F_SCHEDULED | SYSCALL_F_OWNED | SYSCALL_F_RATED, true},
    {SYSCALL_KIND_STORAGE, "storage", SYSCALL_F_SCHEDULED | SYSCALL_F_OWNED | SYSCALL_F_RATED, true},
    {SYSCALL_KIND_TOOL, "tool", SYSCALL_F_SCHEDULED | SYSCALL_F_RATED, true},
};

const syscall_kind_info *syscall_kind_lookup(const char *name) {
    for (int i = 0; name && i < SYSCALL_KIND__COUNT; i++)
        if (strcmp(KINDS[i].name, name) == 0) return &KINDS[i];
    return NULL;
}

const syscall_kind_info *syscall_kind_get(syscall_kind kind) {
    return (unsigned)kind < SYSCALL_KIND__COUNT ? &KINDS[kind] : NULL;
}

static atomic_uint_fast64_t g_next_id = 1;

syscall_t *syscall_new(syscall_kind kind, const char *agent, void *args, void (*args_free)(void *), size_t out_cap) {
    syscall_t *sc = calloc(1, sizeof *sc);
    if (!sc) {
        if (args_free) args_free(args);
        return NULL;
    }
    sc->id = atomic_fetch_add(&g_next_id, 1);
    snprintf(sc->agent, sizeof sc->agent, "%s", agent && *agent ? agent : "anonymous");
    sc->kind = kind;
    pthread_mutex_init(&sc->mu, NULL);
    sc->state = SYSCALL_STATE_CREATED;
    sc->t_created = kern_now_mono();
    sc->wall_created = kern_now_wall();
    sb_init(&sc->out, out_cap);
    sc->args = args;
    sc->args_free = args_free;
    atomic_init(&sc->refs, 1);
    atomic_init(&sc->cancel, false);
    return sc;
}

syscall_t *syscall_ref(syscall_t *sc) {
    atomic_fetch_add(&sc->refs, 1);
    return sc;
}

void syscall_unref(syscall_t *sc) {
    if (!sc || atomic_fetch_sub(&sc->refs, 1) != 1) return;
    if (sc->args_free) sc->args_free(sc->args);
    sb_free(&sc->out);
    pthread_mutex_destroy(&sc->mu);
    free(sc);
}

void syscall_set_sink(syscall_t *sc, syscall_sink_fn fn, void *ctx) {
    pthread_mutex_lock(&sc->mu);
    sc->sink = fn;
    sc->sink_ctx = ctx;
    pthread_mutex_unlock(&sc->mu);
}

static void notify_locked(syscall_t *sc) {
    if (sc->sink) sc->sink(sc->sink_ctx);
}

void syscall_round_begin(syscall_t *sc) {
    pthread_mutex_lock(&sc->mu);
    double now = kern_now_mono();
    if (!sc->t_started) sc->t_started = now;
    sc->state = SYSCALL_STATE_RUNNING;
    if (sc->n_rounds < SYSCALL_MAX_ROUNDS) {
        sc->round_start[sc->n_rounds] = now;
        sc->round_end[sc->n_rounds] = 0;
        sc->n_rounds++;
    }
    pthread_mutex_unlock(&sc->mu);
}

static void round_end_locked(syscall_t *sc) {
    if (sc->n_rounds > 0 && sc->round_end[sc->n_rounds - 1] == 0) sc->round_end[sc->n_rounds - 1] = kern_now_mono();
}

void syscall_round_end(syscall_t *sc) {
    pthread_mutex_lock(&sc->mu);
    round_end_locked(sc);
    pthread_mutex_unlock(&sc->mu);
}

int syscall_emit(syscall_t *sc, const char *text, size_t n) {
    pthread_mutex_lock(&sc->mu);
    if (!sc->t_first_token) sc->t_first_token = kern_now_mono();
    int rc = sb_append(&sc->out, text, n);
    if (rc == AIOS_OK) notify_locked(sc);
    pthread_mutex_unlock(&sc->mu);
    return rc;
}

void syscall_complete(syscall_t *sc, int result, const char *fmt, ...) {
    pthread_mutex_lock(&sc->mu);
    if (sc->state != SYSCALL_STATE_DONE) {
        sc->state = SYSCALL_STATE_DONE;
        sc->result = result;
        sc->t_finished = kern_now_mono();
        round_end_locked(sc);
        if (fmt) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(sc->errmsg, sizeof sc->errmsg, fmt, ap);
            va_end(ap);
        } else if (result) {
            snprintf(sc->errmsg, sizeof sc->errmsg, "%s", aios_strerror(result));
        }
        notify_locked(sc);
    }
    pthread_mutex_unlock(&sc->mu);
}

void syscall_cancel(syscall_t *sc) { atomic_store(&sc->cancel, true); }

void syscall_fanout(syscall_t **subs, int *count, const char *buf, size_t n, bool end) {
    for (int i = 0; i < *count;) {
        syscall_t *sc = subs[i];
        if (end || atomic_load(&sc->cancel) || syscall_emit(sc, buf, n)) {
            syscall_complete(sc, AIOS_OK, NULL);
            syscall_unref(sc);
            subs[i] = subs[--*count];
        } else i++;
    }
}

bool syscall_is_done(syscall_t *sc) {
    pthread_mutex_lock(&sc->mu);
    bool d = sc->state == SYSCALL_STATE_DONE;
    pthread_mutex_unlock(&sc->mu);
    return d;
}

int syscall_timings(syscall_t *sc, double *start, double *end, double *waiting, double *turnaround, int max) {
    pthread_mutex_lock(&sc->mu);
    /* convert monotonic stamps to wall clock through the creation instant */
    double off = sc->wall_created - sc->t_created;
    int n = sc->n_rounds < max ? sc->n_rounds : max;
    for (int i = 0; i < n; i++) {
        double s = sc->round_start[i], e = sc->round_end[i] ? sc->round_end[i] : kern_now_mono();
        start[i] = s + off;
        end[i] = e + off;
        /* waiting: time spent queued before this round (since creation or the last round) */
        waiting[i] = s - (i == 0 ? sc->t_created : sc->round_end[i - 1]);
        turnaround[i] = e - sc->t_created;
    }
    pthread_mutex_unlock(&sc->mu);
    return n;
}

#ifdef AIOS_TORTURE
void syscall_torture_hand(syscall_t *sc) {
    bool hit;
    long left = torture_disarm(&hit);
    atomic_store(&sc->torture_left, hit ? 0 : left);
    atomic_store(&sc->torture_hit, hit);
}

void syscall_torture_take(syscall_t *sc) { torture_arm(atomic_exchange(&sc->torture_left, 0)); }

void syscall_torture_return(syscall_t *sc) {
    bool hit;
    long left = torture_disarm(&hit);
    if (!left && !hit) return; /* (this thread was not armed: another call of the batch was) */
    atomic_store(&sc->torture_left, hit ? 0 : left);
    if (hit) atomic_store(&sc->torture_hit, true);
}
#endif

/*
 * test_sched.c - unit tests of the syscall object, the scheduler core and its four
 * policies, driven by hand (no engine; a deterministic stand-in for the engine charges
 * service and asks for victims): order, max_active, the fits gate, queue bound,
 * cancellation, shutdown, refcounts, the AIOS timing arrays, rr time slices, priority
 * preemption, least-attained-service order and no starvation; the agent policy: a hot
 * agent first, places kept through a pause, programs in arrival order, the starvation bound.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernel/kernel.h"
#include "sched/sched.h"

static int freed;
static void count_free(void *p) {
    (void)p;
    freed++;
}

static syscall_t *mk(const char *agent) { return syscall_new(SYSCALL_KIND_LLM, agent, (void *)1, count_free, 64); }

/* A scheduler under policy with the agent policy's settings (ignored by the others). */
static sched_t *mk_full(const char *policy, int active, int queue, int slice, double hot_s, int starve_factor) {
    sched_params p = sched_default_params();
    p.policy = policy;
    p.max_active = active;
    p.max_queue = queue;
    p.time_slice = slice;
    p.agent_hot_s = hot_s;
    p.starve_factor = starve_factor;
    char err[128];
    sched_t *s = sched_new(&p, err, sizeof err);
    assert_non_null(s);
    return s;
}

static sched_t *mk_policy(const char *policy, int active, int queue, int slice) {
    sched_params d = sched_default_params();
    return mk_full(policy, active, queue, slice, d.agent_hot_s, d.starve_factor);
}

static sched_t *mk_sched(int active, int queue) { return mk_policy("fifo", active, queue, sched_default_params().time_slice); }

static void test_unknown_policy(void **st) {
    (void)st;
    sched_params p = sched_default_params();
    p.policy = "lottery";
    char err[128] = "";
    assert_null(sched_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "lottery"));
    assert_non_null(sched_policy_lookup("fifo"));
}

static void test_fifo_order_and_max_active(void **st) {
    (void)st;
    sched_t *s = mk_sched(2, 10);
    syscall_t *a = mk("a"), *b = mk("b"), *c = mk("c");
    assert_int_equal(sched_submit(s, a), AIOS_OK);
    assert_int_equal(sched_submit(s, b), AIOS_OK);
    assert_int_equal(sched_submit(s, c), AIOS_OK);
    assert_int_equal(a->state, SYSCALL_STATE_QUEUED);
    syscall_t *x = sched_next(s, NULL, NULL), *y = sched_next(s, NULL, NULL);
    assert_ptr_equal(x, a);
    assert_ptr_equal(y, b);
    assert_null(sched_next(s, NULL, NULL)); /* max_active reached */
    sched_stats ss;
    sched_get_stats(s, &ss);
    assert_int_equal(ss.active, 2);
    assert_int_equal(ss.queued, 1);
    sched_done(s, x);
    syscall_unref(x);
    syscall_t *z = sched_next(s, NULL, NULL);
    assert_ptr_equal(z, c);
    sched_done(s, y);
    sched_done(s, z);
    syscall_unref(y);
    syscall_unref(z);
    syscall_unref(a);
    syscall_unref(b);
    syscall_unref(c);
    sched_free(s);
}

static bool never(syscall_t *sc, void *ctx) {
    (void)sc;
    (void)ctx;
    return false;
}

static void test_fits_gate_keeps_order(void **st) {
    (void)st;
    sched_t *s = mk_sched(4, 10);
    syscall_t *a = mk("a");
    sched_submit(s, a);
    assert_null(sched_next(s, never, NULL)); /* head does not fit: nothing starts */
    sched_stats ss;
    sched_get_stats(s, &ss);
    assert_int_equal(ss.queued, 1);
    syscall_t *x = sched_next(s, NULL, NULL);
    assert_ptr_equal(x, a);
    sched_done(s, x);
    syscall_unref(x);
    syscall_unref(a);
    sched_free(s);
}

static void test_queue_bound_and_cancel(void **st) {
    (void)st;
    sched_t *s = mk_sched(1, 2);
    syscall_t *a = mk("a"), *b = mk("b"), *c = mk("c");
    assert_int_equal(sched_submit(s, a), AIOS_OK);
    assert_int_equal(sched_submit(s, b), AIOS_OK);
    assert_int_equal(sched_submit(s, c), AIOS_ERR_BUSY);
    assert_true(sched_cancel(s, a));
    assert_true(syscall_is_done(a));
    assert_int_equal(a->result, AIOS_ERR_CANCELLED);
    assert_false(sched_cancel(s, a)); /* not waiting any more */
    assert_ptr_equal(sched_next(s, NULL, NULL), b);
    sched_done(s, b);
    syscall_unref(b); /* the scheduler's reference */
    sched_close(s);
    assert_int_equal(sched_submit(s, c), AIOS_ERR_SHUTDOWN);
    syscall_unref(a);
    syscall_unref(b);
    syscall_unref(c);
    sched_free(s);
}

static void test_free_completes_waiting(void **st) {
    (void)st;
    freed = 0;
    sched_t *s = mk_sched(1, 8);
    syscall_t *a = mk("a");
    sched_submit(s, a);
    sched_free(s);
    assert_true(syscall_is_done(a));
    assert_int_equal(a->result, AIOS_ERR_SHUTDOWN);
    assert_int_equal(freed, 0);
    syscall_unref(a);
    assert_int_equal(freed, 1); /* last reference frees the args */
}

static int notified;
static void sink(void *ctx) {
    (void)ctx;
    notified++;
}

static void test_syscall_output_and_timings(void **st) {
    (void)st;
    syscall_t *sc = mk(NULL);
    assert_string_equal(sc->agent, "anonymous");
    syscall_set_sink(sc, sink, NULL);
    notified = 0;
    syscall_round_begin(sc);
    assert_int_equal(syscall_emit(sc, "hello ", 6), AIOS_OK);
    assert_true(sc->t_first_token > 0);
    char big[100];
    memset(big, 'x', sizeof big);
    assert_int_equal(syscall_emit(sc, big, sizeof big), AIOS_ERR_TOO_LARGE); /* cap 64 */
    syscall_complete(sc, AIOS_OK, NULL);
    syscall_complete(sc, AIOS_ERR_INTERNAL, "late"); /* first completion wins */
    assert_int_equal(sc->result, AIOS_OK);
    assert_int_equal(notified, 2);
    double s[4], e[4], w[4], t[4];
    assert_int_equal(syscall_timings(sc, s, e, w, t, 4), 1);
    assert_true(e[0] >= s[0]);
    assert_true(w[0] >= 0 && w[0] <= t[0]);
    assert_true(s[0] > 1e9); /* wall clock */
    assert_non_null(syscall_kind_lookup("llm"));
    assert_null(syscall_kind_lookup("quantum"));
    assert_true(syscall_kind_lookup("memory")->implemented);
    assert_true(syscall_kind_lookup("tool")->implemented);
    syscall_unref(sc);
    syscall_unref(NULL);
}

/* rr: a running syscall yields after time_slice generated tokens and goes to the back. */
static void test_rr_time_slice(void **st) {
    (void)st;
    sched_t *s = mk_policy("rr", 1, 10, 4);
    syscall_t *a = mk("a"), *b = mk("b");
    sched_submit(s, a);
    sched_submit(s, b);
    syscall_t *run = sched_next(s, NULL, NULL);
    assert_ptr_equal(run, a);
    sched_charge(s, a, 10, 3);
    assert_null(sched_victim(s, &run, 1, NULL, NULL)); /* 3 < 4 tokens */
    sched_charge(s, a, 1, 1);
    assert_ptr_equal(sched_victim(s, &run, 1, NULL, NULL), a);
    sched_requeue(s, a);
    sched_stats ss;
    sched_get_stats(s, &ss);
    assert_int_equal(ss.context_switches, 1);
    assert_int_equal(ss.preempted_waiting, 1);
    run = sched_next(s, NULL, NULL);
    assert_ptr_equal(run, b); /* a went to the back */
    sched_charge(s, b, 4, 4);
    assert_ptr_equal(sched_victim(s, &run, 1, NULL, NULL), b);
    sched_requeue(s, b);
    assert_ptr_equal(sched_next(s, NULL, NULL), a);
    sched_done(s, a);
    syscall_unref(a);
    sched_free(s); /* completes b as shut down */
    assert_int_equal(b->result, AIOS_ERR_SHUTDOWN);
    syscall_unref(a);
    syscall_unref(b);
}

/* fifo never preempts, however long a syscall runs. */
static void test_fifo_never_preempts(void **st) {
    (void)st;
    sched_t *s = mk_policy("fifo", 1, 10, 1);
    syscall_t *a = mk("a"), *b = mk("b");
    sched_submit(s, a);
    sched_submit(s, b);
    syscall_t *run = sched_next(s, NULL, NULL);
    sched_charge(s, a, 1000, 1000);
    assert_null(sched_victim(s, &run, 1, NULL, NULL));
    sched_done(s, run);
    syscall_unref(run);
    assert_ptr_equal(sched_next(s, NULL, NULL), b);
    sched_done(s, b);
    syscall_unref(b);
    syscall_unref(a);
    syscall_unref(b);
    sched_free(s);
}

/* A held agent (its process stopped): its running syscall is named a victim even under
 * fifo and with nothing waiting, its waiting ones are passed over, and after the hold is
 * lifted it runs again in its place. */
static void test_hold_parks_and_passes_over(void **st) {
    (void)st;
    sched_t *s = mk_policy("fifo", 2, 10, 1);
    syscall_t *a1 = mk("stopped"), *a2 = mk("stopped"), *b = mk("other");
    sched_submit(s, a1);
    sched_submit(s, a2);
    sched_submit(s, b);
    syscall_t *run = sched_next(s, NULL, NULL);
    assert_ptr_equal(run, a1);
    assert_null(sched_victim(s, &run, 1, NULL, NULL));
    assert_int_equal(sched_hold(s, "stopped", true), AIOS_OK);
    assert_ptr_equal(sched_victim(s, &run, 1, NULL, NULL), a1); /* parks, whoever waits */
    sched_requeue(s, a1);
    assert_ptr_equal(sched_next(s, NULL, NULL), b); /* a1 and a2 are passed over */
    assert_null(sched_next(s, NULL, NULL));
    sched_wait(s, 0.01); /* only held ones wait: it sleeps rather than spins */
    assert_int_equal(sched_hold(s, "stopped", false), AIOS_OK);
    assert_ptr_equal(sched_next(s, NULL, NULL), a1); /* its own place again */
    sched_done(s, b);
    sched_done(s, a1);
    assert_ptr_equal(sched_next(s, NULL, NULL), a2);
    sched_done(s, a2);
    syscall_unref(a1), syscall_unref(a1), syscall_unref(a2), syscall_unref(a2), syscall_unref(b), syscall_unref(b);
    sched_free(s);
}

/* priority: higher first; a waiting higher priority preempts the lowest running one. */
static void test_priority_order_and_preemption(void **st) {
    (void)st;
    sched_t *s = mk_policy("priority", 2, 10, 32);
    syscall_t *lo = mk("lo"), *mid = mk("mid"), *hi = mk("hi"), *lo2 = mk("lo2");
    lo->priority = 10;
    mid->priority = 50;
    hi->priority = 90;
    lo2->priority = 10;
    sched_submit(s, lo);
    sched_submit(s, mid);
    syscall_t *run[2] = {sched_next(s, NULL, NULL), sched_next(s, NULL, NULL)};
    assert_ptr_equal(run[0], mid);
    assert_ptr_equal(run[1], lo);
    sched_submit(s, lo2);
    assert_null(sched_victim(s, run, 2, NULL, NULL)); /* equal priority does not preempt */
    sched_submit(s, hi);
    assert_ptr_equal(sched_victim(s, run, 2, NULL, NULL), lo); /* the lowest running yields */
    sched_requeue(s, lo);
    assert_ptr_equal(sched_next(s, NULL, NULL), hi);
    sched_done(s, hi);
    assert_ptr_equal(sched_next(s, NULL, NULL), lo); /* keeps its ticket: before lo2 */
    sched_done(s, lo);
    assert_ptr_equal(sched_next(s, NULL, NULL), lo2);
    sched_done(s, lo2);
    sched_done(s, mid);
    syscall_t *all[] = {lo, mid, hi, lo2};
    for (int i = 0; i < 4; i++) syscall_unref(all[i]), syscall_unref(all[i]);
    sched_free(s);
}

/* fair: the agent with the least service in the window goes first; a running agent with
 * more service yields after its slice. */
static void test_fair_least_attained_service(void **st) {
    (void)st;
    sched_t *s = mk_policy("fair", 1, 10, 8);
    syscall_t *a1 = mk("heavy"), *b1 = mk("light");
    sched_submit(s, a1);
    syscall_t *run = sched_next(s, NULL, NULL);
    assert_ptr_equal(run, a1);
    sched_charge(s, a1, 500, 8);
    sched_submit(s, b1);
    assert_ptr_equal(sched_victim(s, &run, 1, NULL, NULL), a1); /* light has received less */
    sched_requeue(s, a1);
    run = sched_next(s, NULL, NULL);
    assert_ptr_equal(run, b1);
    sched_charge(s, b1, 20, 8);
    assert_null(sched_victim(s, &run, 1, NULL, NULL)); /* heavy has received more: light keeps running */
    sched_done(s, b1);
    /* a second request of the light agent is still ahead of the heavy one */
    syscall_t *b2 = mk("light");
    sched_submit(s, b2);
    assert_ptr_equal(sched_next(s, NULL, NULL), b2);
    sched_done(s, b2);
    assert_ptr_equal(sched_next(s, NULL, NULL), a1);
    sched_done(s, a1);
    syscall_t *all[] = {a1, b1, b2};
    for (int i = 0; i < 3; i++) syscall_unref(all[i]), syscall_unref(all[i]);
    sched_free(s);
}

/* No starvation: 64 syscalls, 4 places, every step each running one generates a token;
 * under rr and fair every syscall finishes its 40 tokens, and nobody waits longer than the
 * others' slices in front of it. */
static void run_to_completion(const char *policy) {
    enum { N = 64, ACTIVE = 4, WORK = 40, SLICE = 8 };
    sched_t *s = mk_policy(policy, ACTIVE, N, SLICE);
    syscall_t *sc[N];
    int left[N], step_started[N];
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "agent%d", i % 16);
        sc[i] = mk(name);
        left[i] = WORK;
        step_started[i] = -1;
        sched_submit(s, sc[i]);
    }
    syscall_t *run[ACTIVE] = {0};
    int done = 0, step = 0;
    while (done < N && step < 100000) {
        for (int k = 0; k < ACTIVE; k++)
            if (!run[k]) run[k] = sched_next(s, NULL, NULL);
        int n = 0;
        syscall_t *r[ACTIVE];
        for (int k = 0; k < ACTIVE; k++)
            if (run[k]) r[n++] = run[k];
        for (int k = 0; k < ACTIVE; k++) {
            if (!run[k]) continue;
            int i = (int)(run[k]->id - sc[0]->id);
            if (step_started[i] < 0) step_started[i] = step;
            sched_charge(s, run[k], 1, 1);
            if (--left[i] == 0) {
                sched_done(s, run[k]);
                syscall_unref(run[k]);
                run[k] = NULL;
                done++;
            }
        }
        syscall_t *v = n ? sched_victim(s, r, n, NULL, NULL) : NULL;
        for (int k = 0; v && k < ACTIVE; k++)
            if (run[k] == v) sched_requeue(s, v), run[k] = NULL;
        step++;
    }
    assert_int_equal(done, N);
    /* everyone got its first slice within the first round of slices */
    for (int i = 0; i < N; i++) assert_true(step_started[i] <= (N / ACTIVE) * SLICE + SLICE);
    for (int i = 0; i < N; i++) syscall_unref(sc[i]);
    sched_free(s);
}

static void test_no_starvation_rr(void **st) {
    (void)st;
    run_to_completion("rr");
}
static void test_no_starvation_fair(void **st) {
    (void)st;
    run_to_completion("fair");
}

static sched_t *mk_agent(int active, int slice, double hot_s, int starve_factor) {
    return mk_full("agent", active, 4096, slice, hot_s, starve_factor);
}

static void finish(sched_t *s, syscall_t *sc) {
    sched_done(s, sc);
    syscall_unref(sc); /* the scheduler's reference */
    syscall_unref(sc); /* ours */
}

/* agent: a turn inside its agent's program goes ahead of an agent that has not started, and
 * the agent's place is kept through its pause; once the pause lapses the new one starts. */
static void test_agent_hot_first_and_place_kept(void **st) {
    (void)st;
    sched_t *s = mk_agent(1, 8, 0.3, 16);
    syscall_t *a1 = mk("a"), *b1 = mk("b");
    sched_submit(s, a1);
    assert_ptr_equal(sched_next(s, NULL, NULL), a1);
    sched_submit(s, b1);
    finish(s, a1);
    assert_null(sched_next(s, NULL, NULL)); /* a is in a tool pause: its place is kept */
    syscall_t *a2 = mk("a");
    sched_submit(s, a2);
    assert_ptr_equal(sched_next(s, NULL, NULL), a2); /* ahead of b, which came first */
    finish(s, a2);
    /* a's place is kept twice its usual pause (here ~0) + 50 ms, not the whole 300 ms; the
     * engine, idle, sleeps until then (not its whole timeout) */
    double t0 = kern_now_mono();
    sched_wait(s, 5.0);
    double waited = kern_now_mono() - t0;
    assert_true(waited > 0.02 && waited < 0.25);
    assert_ptr_equal(sched_next(s, NULL, NULL), b1);
    finish(s, b1);
    sched_free(s);
}

/* agent: programs start in arrival order, a newcomer waits while the places are kept for
 * agents in their pauses, and the older of two programs goes first whichever turn came
 * first (a's next turn passes b's). */
static void test_agent_programs_in_arrival_order(void **st) {
    (void)st;
    sched_t *s = mk_agent(2, 8, 10.0, 16);
    syscall_t *a = mk("a"), *b = mk("b"), *c = mk("c"), *d = mk("d");
    syscall_t *all[] = {a, b, c, d};
    for (int i = 0; i < 4; i++) sched_submit(s, all[i]);
    assert_ptr_equal(sched_next(s, NULL, NULL), a);
    assert_ptr_equal(sched_next(s, NULL, NULL), b);
    assert_null(sched_next(s, NULL, NULL));
    sched_cancel(s, c), sched_cancel(s, d); /* gone before they start: places stay a's and b's */
    syscall_unref(c), syscall_unref(d);
    finish(s, a);
    finish(s, b);
    syscall_t *e = mk("e");
    sched_submit(s, e);
    assert_null(sched_next(s, NULL, NULL)); /* a and b keep their places */
    syscall_t *b2 = mk("b"), *a2 = mk("a");
    sched_submit(s, b2);
    sched_submit(s, a2);
    assert_ptr_equal(sched_next(s, NULL, NULL), a2); /* a's program is older than b's */
    assert_ptr_equal(sched_next(s, NULL, NULL), b2);
    finish(s, a2);
    finish(s, b2);
    assert_true(sched_cancel(s, e));
    syscall_unref(e);
    sched_free(s);
}

/* agent, starvation bound: 64 agents with endless programs (each submits its next turn the
 * moment one ends, so the 4 places would stay with the first 4 forever), 1 token of service
 * per running turn per step. Every agent gets the engine, and no turn starts later than
 * its equal share owes it (starve_factor + 2) time slices: the bound, plus the slice a
 * running turn finishes before it yields, plus the queue of other starving turns. */
static void test_agent_starvation_bound(void **st) {
    (void)st;
    enum { N = 64, ACTIVE = 4, SLICE = 8, FACTOR = 4, TURN = 24, STEPS = 40000 };
    sched_t *s = mk_agent(ACTIVE, SLICE, 10.0, FACTOR);
    syscall_t *cur[N];
    int left[N], turns[N];
    double owed[N], max_owed = 0;
    char name[16];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "agent%d", i);
        cur[i] = mk(name);
        left[i] = TURN, turns[i] = 0, owed[i] = 0;
        sched_submit(s, cur[i]);
    }
    syscall_t *run[ACTIVE] = {0};
    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < ACTIVE; k++)
            if (!run[k] && (run[k] = sched_next(s, NULL, NULL))) {
                int i = atoi(run[k]->agent + 5);
                if (owed[i] > max_owed) max_owed = owed[i];
                owed[i] = 0;
            }
        int n = 0;
        syscall_t *r[ACTIVE];
        for (int k = 0; k < ACTIVE; k++)
            if (run[k]) r[n++] = run[k];
        for (int i = 0; i < N; i++) /* every agent always has a turn in: N share the service */
            if (cur[i]->sched_list) owed[i] += (double)n / N;
        for (int k = 0; k < ACTIVE; k++) {
            if (!run[k]) continue;
            int i = atoi(run[k]->agent + 5);
            sched_charge(s, run[k], 1, 1);
            if (--left[i] == 0) { /* the turn ends; the agent's next one arrives at once */
                finish(s, run[k]);
                run[k] = NULL;
                turns[i]++, left[i] = TURN;
                snprintf(name, sizeof name, "agent%d", i);
                cur[i] = mk(name);
                sched_submit(s, cur[i]);
            }
        }
        syscall_t *v = n ? sched_victim(s, r, n, NULL, NULL) : NULL;
        for (int k = 0; v && k < ACTIVE; k++)
            if (run[k] == v) sched_requeue(s, v), run[k] = NULL;
    }
    for (int i = 0; i < N; i++) assert_true(turns[i] > 0);
    print_message("agent policy, 64 endless agents: most owed at a start %.1f tokens (bound %d)\n", max_owed,
                  (FACTOR + 2) * SLICE);
    assert_true(max_owed <= (FACTOR + 2) * SLICE);
    sched_stats ss;
    sched_get_stats(s, &ss);
    assert_true(ss.starved > 0);
    for (int k = 0; k < ACTIVE; k++)
        if (run[k]) sched_done(s, run[k]), syscall_unref(run[k]);
    for (int i = 0; i < N; i++) syscall_unref(cur[i]);
    sched_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_policy),
        cmocka_unit_test(test_fifo_order_and_max_active),
        cmocka_unit_test(test_fits_gate_keeps_order),
        cmocka_unit_test(test_queue_bound_and_cancel),
        cmocka_unit_test(test_free_completes_waiting),
        cmocka_unit_test(test_syscall_output_and_timings),
        cmocka_unit_test(test_rr_time_slice),
        cmocka_unit_test(test_fifo_never_preempts),
        cmocka_unit_test(test_priority_order_and_preemption),
        cmocka_unit_test(test_fair_least_attained_service),
        cmocka_unit_test(test_no_starvation_rr),
        cmocka_unit_test(test_no_starvation_fair),
        cmocka_unit_test(test_hold_parks_and_passes_over),
        cmocka_unit_test(test_agent_hot_first_and_place_kept),
        cmocka_unit_test(test_agent_programs_in_arrival_order),
        cmocka_unit_test(test_agent_starvation_bound),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}

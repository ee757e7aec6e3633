/*
 * test_runq.c - unit tests of the run queues of the worker resources (sched/runq.c) with a
 * deterministic stand-in job: one worker is held by a gate job while the others queue, so
 * the order in which they then run is the policy's alone. Covers fifo, priority (within
 * and across agents), rr alternation over agents, fair (least operation time first), the
 * per-agent and global bounds with their messages, the stats, that freeing runs every
 * queued job before it returns, and pull mode (the tool manager's): the owner takes the
 * policy's first job that fits its own limits, and the time it reports is charged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "sched/sched.h"

/* ---- the stand-in jobs ---- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, open;
} gate;

static gate g_gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false};
static char g_order[64][16];
static int g_n;
static pthread_mutex_t g_order_mu = PTHREAD_MUTEX_INITIALIZER;

static void gate_job(void *arg) {
    (void)arg;
    pthread_mutex_lock(&g_gate.mu);
    g_gate.entered = true;
    pthread_cond_broadcast(&g_gate.cv);
    while (!g_gate.open) pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
}

static void record_job(void *arg) {
    pthread_mutex_lock(&g_order_mu);
    if (g_n < 64) snprintf(g_order[g_n++], sizeof g_order[0], "%s", (const char *)arg);
    pthread_mutex_unlock(&g_order_mu);
}

static void sleep_job(void *arg) { usleep((useconds_t)(intptr_t)arg); }

static runq_t *mk(const char *policy, int workers, int max_queue, int max_per_agent) {
    runq_params p = runq_default_params();
    p.resource = "storage";
    p.policy = policy;
    p.workers = workers;
    p.max_queue = max_queue;
    p.max_per_agent = max_per_agent;
    char err[128];
    runq_t *q = runq_new(&p, err, sizeof err);
    assert_non_null(q);
    g_n = 0;
    g_gate.entered = g_gate.open = false;
    return q;
}

static int submit(runq_t *q, void (*fn)(void *), void *arg, const char *agent, int priority) {
    char err[256];
    runq_job j = {.fn = fn, .arg = arg, .agent = agent, .priority = priority};
    return runq_submit(q, &j, err, sizeof err);
}

/* Holds the only worker: submits the gate job and waits until it runs. */
static void hold(runq_t *q) {
    assert_int_equal(submit(q, gate_job, NULL, "gatekeeper", 0), AIOS_OK);
    pthread_mutex_lock(&g_gate.mu);
    while (!g_gate.entered) pthread_cond_wait(&g_gate.cv, &g_gate.mu);
    pthread_mutex_unlock(&g_gate.mu);
}

/* Opens the gate, drains the queue (runq_free runs every queued job) and checks the order. */
static void release_and_expect(runq_t *q, const char *const *want, int n) {
    pthread_mutex_lock(&g_gate.mu);
    g_gate.open = true;
    pthread_cond_broadcast(&g_gate.cv);
    pthread_mutex_unlock(&g_gate.mu);
    runq_free(q);
    assert_int_equal(g_n, n);
    for (int i = 0; i < n; i++) assert_string_equal(g_order[i], want[i]);
}

/* ---- tests ---- */

static void test_unknown_policy(void **st) {
    (void)st;
    runq_params p = runq_default_params();
    p.policy = "lottery";
    char err[128] = "";
    assert_null(runq_new(&p, err, sizeof err));
    assert_non_null(strstr(err, "lottery"));
}

static void test_fifo_order(void **st) {
    (void)st;
    runq_t *q = mk("fifo", 1, 100, 100);
    hold(q);
    const char *ids[] = {"a1", "b1", "a2", "c1", "b2"};
    const char *agents[] = {"a", "b", "a", "c", "b"};
    for (int i = 0; i < 5; i++) assert_int_equal(submit(q, record_job, (void *)ids[i], agents[i], i), AIOS_OK);
    release_and_expect(q, ids, 5);
}

static void test_priority_order(void **st) {
    (void)st;
    runq_t *q = mk("priority", 1, 100, 100);
    hold(q);
    assert_int_equal(submit(q, record_job, "a-p1", "a", 1), AIOS_OK);
    assert_int_equal(submit(q, record_job, "b-p5", "b", 5), AIOS_OK);
    assert_int_equal(submit(q, record_job, "a-p3", "a", 3), AIOS_OK);
    assert_int_equal(submit(q, record_job, "a-p5", "a", 5), AIOS_OK);
    assert_int_equal(submit(q, record_job, "b-p1", "b", 1), AIOS_OK);
    /* higher first; equal priorities in arrival order, within and across agents */
    const char *want[] = {"b-p5", "a-p5", "a-p3", "a-p1", "b-p1"};
    release_and_expect(q, want, 5);
}

static void test_rr_alternates_agents(void **st) {
    (void)st;
    runq_t *q = mk("rr", 1, 100, 100);
    hold(q);
    const char *a[] = {"a1", "a2", "a3", "a4"}, *b[] = {"b1", "b2"};
    for (int i = 0; i < 4; i++) assert_int_equal(submit(q, record_job, (void *)a[i], "a", 0), AIOS_OK);
    for (int i = 0; i < 2; i++) assert_int_equal(submit(q, record_job, (void *)b[i], "b", 0), AIOS_OK);
    assert_int_equal(submit(q, record_job, "c1", "c", 0), AIOS_OK);
    /* one operation per agent per round, although a queued its whole backlog first */
    const char *want[] = {"a1", "b1", "c1", "a2", "b2", "a3", "a4"};
    release_and_expect(q, want, 7);
}

static void test_fair_least_served_first(void **st) {
    (void)st;
    runq_t *q = mk("fair", 1, 100, 100);
    /* a receives 30 ms of operation time first; b none */
    assert_int_equal(submit(q, sleep_job, (void *)(intptr_t)30000, "a", 0), AIOS_OK);
    hold(q);
    assert_int_equal(submit(q, record_job, "a1", "a", 0), AIOS_OK);
    assert_int_equal(submit(q, record_job, "a2", "a", 0), AIOS_OK);
    assert_int_equal(submit(q, record_job, "b1", "b", 0), AIOS_OK);
    assert_int_equal(submit(q, record_job, "b2", "b", 0), AIOS_OK);
    /* b arrived later but was served less: both of its jobs go first (each takes
     * microseconds, far below a's 30 ms), then a's in arrival order */
    const char *want[] = {"b1", "b2", "a1", "a2"};
    release_and_expect(q, want, 4);
}

static void test_bounds_and_stats(void **st) {
    (void)st;
    runq_t *q = mk("fair", 1, 5, 2);
    hold(q);
    char err[256] = "";
    runq_job j = {.fn = record_job, .arg = "x", .agent = "a"};
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_OK);
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_OK);
    /* a's share is full: a is told so, others still get in */
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_ERR_BUSY);
    assert_non_null(strstr(err, "kernel.max_jobs_per_agent"));
    assert_non_null(strstr(err, "'a'"));
    j.agent = "b";
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_OK);
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_OK);
    j.agent = "c";
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_OK);
    /* the whole queue is full (5): everyone is refused */
    j.agent = "d";
    assert_int_equal(runq_submit(q, &j, err, sizeof err), AIOS_ERR_BUSY);
    assert_non_null(strstr(err, "kernel.max_jobs)"));
    runq_stats s;
    runq_get_stats(q, &s);
    assert_string_equal(s.resource, "storage");
    assert_string_equal(s.policy, "fair");
    assert_int_equal(s.workers, 1);
    assert_int_equal(s.queued, 5);
    assert_int_equal(s.running, 1);
    assert_int_equal(s.agents_waiting, 3);
    assert_int_equal(s.submitted, 6);
    assert_int_equal(s.rejected_agent, 1);
    assert_int_equal(s.rejected_full, 1);
    const char *want[] = {"x", "x", "x", "x", "x"};
    release_and_expect(q, want, 5);
}

static int g_done;
static void bump(void *arg) {
    (void)arg;
    usleep(1000);
    __atomic_add_fetch(&g_done, 1, __ATOMIC_SEQ_CST);
}

static void test_free_runs_queued_jobs(void **st) {
    (void)st;
    g_done = 0;
    runq_t *q = mk("rr", 2, 8, 8);
    int accepted = 0, busy = 0;
    for (int i = 0; i < 40; i++) {
        int rc = submit(q, bump, NULL, i % 2 ? "a" : "b", 0);
        if (rc == AIOS_OK) accepted++;
        else {
            assert_int_equal(rc, AIOS_ERR_BUSY); /* bounded: a full queue refuses */
            busy++;
        }
    }
    assert_true(busy > 0);
    runq_free(q); /* runs every accepted job before it returns */
    assert_int_equal(g_done, accepted);
}

/* Pull mode: a job's arg names its "tool"; tool "slow" is at its limit. */
static bool not_slow(const runq_job *j, void *ctx) {
    (void)ctx;
    return strncmp((const char *)j->arg, "slow", 4) != 0;
}

static runq_t *mk_pull(const char *policy) {
    runq_params p = runq_default_params();
    p.resource = "tool";
    p.policy = policy;
    p.pull = true;
    char err[128];
    runq_t *q = runq_new(&p, err, sizeof err);
    assert_non_null(q);
    return q;
}

static const char *take(runq_t *q, runq_fits_fn fits, void **h) {
    runq_job j;
    *h = runq_take(q, fits, NULL, &j);
    return *h ? j.arg : NULL;
}

static void test_pull_mode_takes_what_fits(void **st) {
    (void)st;
    runq_t *q = mk_pull("priority");
    assert_int_equal(submit(q, NULL, "slow-a9", "a", 9), AIOS_OK);
    assert_int_equal(submit(q, NULL, "fast-a1", "a", 1), AIOS_OK);
    assert_int_equal(submit(q, NULL, "fast-b5", "b", 5), AIOS_OK);
    runq_stats s;
    runq_get_stats(q, &s);
    assert_int_equal(s.workers, 0);
    assert_int_equal(s.queued, 3);
    void *h;
    /* the slow tool is full: its job waits although it is first; past it, a's later job
     * is a candidate too, and priority picks b's */
    assert_string_equal(take(q, not_slow, &h), "fast-b5");
    runq_done(q, h, 0.001);
    assert_string_equal(take(q, not_slow, &h), "fast-a1");
    runq_done(q, h, 0.001);
    assert_null(take(q, not_slow, &h));
    assert_string_equal(take(q, NULL, &h), "slow-a9"); /* a slot came free */
    runq_get_stats(q, &s);
    assert_int_equal(s.running, 1);
    runq_done(q, h, 0.001);
    runq_get_stats(q, &s);
    assert_int_equal(s.completed, 3);
    assert_int_equal(s.queued, 0);
    assert_int_equal(submit(q, NULL, "left", "a", 0), AIOS_OK);
    runq_free(q); /* drops what the owner left */
}

static void test_pull_mode_fair_charges_reported_time(void **st) {
    (void)st;
    runq_t *q = mk_pull("fair");
    void *h;
    assert_int_equal(submit(q, NULL, "a0", "a", 0), AIOS_OK);
    assert_string_equal(take(q, NULL, &h), "a0");
    runq_done(q, h, 5.0); /* a used the tool for 5 s */
    assert_int_equal(submit(q, NULL, "a1", "a", 0), AIOS_OK);
    assert_int_equal(submit(q, NULL, "b1", "b", 0), AIOS_OK);
    assert_string_equal(take(q, NULL, &h), "b1");
    runq_done(q, h, 0.1);
    assert_string_equal(take(q, NULL, &h), "a1");
    runq_done(q, h, 0.1);
    runq_free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_policy),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_rr_alternates_agents),
        cmocka_unit_test(test_fair_least_served_first),
        cmocka_unit_test(test_bounds_and_stats),
        cmocka_unit_test(test_free_runs_queued_jobs),
        cmocka_unit_test(test_pull_mode_takes_what_fits),
        cmocka_unit_test(test_pull_mode_fair_charges_reported_time),
    };
    return cmocka_run_group_tests_name("runq", tests, NULL, NULL);
}

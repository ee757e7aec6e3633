/*
 * test_sched.c - unit tests of the syscall object and the scheduler core with the fifo
 * policy, driven by hand (no engine): order, max_active, the fits gate, queue bound,
 * cancellation of waiting work, shutdown, refcounts and the AIOS timing arrays.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include "sched/sched.h"

static int freed;
static void count_free(void *p) { (void)p; freed++; }

static syscall_t *mk(const char *agent) { return syscall_new(SYSCALL_KIND_LLM, agent, (void *)1, count_free, 64); }

static sched_t *mk_sched(int active, int queue) {
    sched_params p = sched_default_params();
    p.max_active = active;
    p.max_queue = queue;
    char err[128];
    sched_t *s = sched_new(&p, err, sizeof err);
    assert_non_null(s);
    return s;
}

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
    sched_done(s);
    syscall_unref(x);
    syscall_t *z = sched_next(s, NULL, NULL);
    assert_ptr_equal(z, c);
    sched_done(s);
    sched_done(s);
    syscall_unref(y);
    syscall_unref(z);
    syscall_unref(a);
    syscall_unref(b);
    syscall_unref(c);
    sched_free(s);
}

static bool never(syscall_t *sc, void *ctx) { (void)sc; (void)ctx; return false; }

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
    sched_done(s);
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
    sched_done(s);
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
static void sink(void *ctx) { (void)ctx; notified++; }

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
    assert_false(syscall_kind_lookup("memory")->implemented);
    syscall_unref(sc);
    syscall_unref(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_policy),        cmocka_unit_test(test_fifo_order_and_max_active),
        cmocka_unit_test(test_fits_gate_keeps_order), cmocka_unit_test(test_queue_bound_and_cancel),
        cmocka_unit_test(test_free_completes_waiting), cmocka_unit_test(test_syscall_output_and_timings),
    };
    return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}

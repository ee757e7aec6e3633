/*
 * policy_fifo.c - first come, first served: arrival order, no preemption. A request runs
 * from admission to its end; the foundation's behaviour and the AIOS paper's FIFO baseline.
 */
#include "sched.h"

static bool fifo_before(const sched_key *a, const sched_key *b) { return a->ticket < b->ticket; }

static bool fifo_yields(const sched_key *r, const sched_key *w, int time_slice) {
    (void)r, (void)w, (void)time_slice;
    return false;
}

const sched_policy_ops sched_policy_fifo = {
    .name = "fifo",
    .requeue_at_back = false,
    .before = fifo_before,
    .yields = fifo_yields,
};

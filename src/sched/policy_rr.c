/*
 * policy_rr.c - round robin: arrival order, and a running generation yields its place to a
 * waiting one after `scheduler.time_slice` generated tokens, re-entering the queue at the
 * back (a new ticket). Waiting time is bounded by the number ahead times the slice, so no
 * request starves.
 */
#include "sched.h"

static bool rr_before(const sched_key *a, const sched_key *b) { return a->ticket < b->ticket; }

static bool rr_yields(const sched_key *r, const sched_key *w, int time_slice) {
    (void)w;
    return r->slice >= time_slice;
}

const sched_policy_ops sched_policy_rr = {
    .name = "rr",
    .requeue_at_back = true,
    .before = rr_before,
    .yields = rr_yields,
};

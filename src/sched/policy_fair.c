/*
 * policy_fair.c - least attained service per agent: the waiting request whose agent has
 * received the fewest tokens of service (prefill + generation) in the current window runs
 * first (ties in arrival order), so a short agent is not stuck behind long ones. A running
 * request yields after a time slice to a waiting one whose agent has received less; the
 * slice keeps switches bounded, and since service only grows while running, every waiting
 * agent eventually has the least: no starvation.
 */
#include "sched.h"

static bool fair_before(const sched_key *a, const sched_key *b) {
    if (a->service != b->service) return a->service < b->service;
    return a->ticket < b->ticket;
}

static bool fair_yields(const sched_key *r, const sched_key *w, int time_slice) {
    return r->slice >= time_slice && w->service < r->service;
}

const sched_policy_ops sched_policy_fair = {
    .name = "fair",
    .requeue_at_back = true,
    .before = fair_before,
    .yields = fair_yields,
};

/*
 * policy_priority.c - strict priority: the highest `priority` waits least (ties in arrival
 * order), and a waiting request of higher priority than a running one preempts it at the
 * engine's next step. A preempted request keeps its ticket, so it resumes before later
 * arrivals of its own priority.
 */
#include "sched.h"

static bool prio_before(const sched_key *a, const sched_key *b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->ticket < b->ticket;
}

static bool prio_yields(const sched_key *r, const sched_key *w, int time_slice) {
    (void)time_slice;
    return w->priority > r->priority;
}

const sched_policy_ops sched_policy_priority = {
    .name = "priority",
    .requeue_at_back = false,
    .before = prio_before,
    .yields = prio_yields,
};

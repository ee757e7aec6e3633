/*
 * policy_agent.c - the agent's whole multi-turn program is the job, for mean completion
 * time (after Autellix's program-level scheduling): an agent whose turn ran and that comes
 * back within scheduler.agent_hot_s (a tool pause) is inside its program and goes ahead of
 * agents that have not started, oldest program first; the core (sched.c, keep_places)
 * keeps its place through the pause (for twice the agent's usual pause, at most
 * agent_hot_s), so new programs start, in arrival order, only as places free. Serving programs to the end this way finishes most agents early, where
 * `fair`'s equal shares finish every agent near the end. No agent starves: a waiting turn
 * that is owed more than starve_factor time slices of an equal share of the engine (what
 * processor sharing would have given it while it waited) goes first, most owed first, and
 * a running turn past its slice yields to it.
 */
#include "sched.h"

static bool agent_before(const sched_key *a, const sched_key *b) {
    if (a->starving != b->starving) return a->starving;
    if (a->starving && a->owed != b->owed) return a->owed > b->owed;
    if (a->hot != b->hot) return a->hot;
    if (a->program != b->program) return a->program < b->program;
    return a->ticket < b->ticket;
}

static bool agent_yields(const sched_key *r, const sched_key *w, int time_slice) {
    return w->starving && !r->starving && r->slice >= time_slice;
}

const sched_policy_ops sched_policy_agent = {
    .name = "agent",
    .requeue_at_back = false,
    .keep_places = true,
    .before = agent_before,
    .yields = agent_yields,
};

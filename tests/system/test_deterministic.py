"""System tests of the deterministic mode (issue 16 part 6, `scheduler.deterministic: 1`),
against real aiosd processes and the real model: at temperature 0 a request's output is
byte-identical to its solo run whatever runs beside it in the batch, however often it is
preempted and parked, and wherever its cells sit (the cache is repacked at every hole,
conversations are cooled to snapshots and restored, prefixes are shared).

Solo runs go first, one request at a time, on the same daemon; then the same requests run
concurrently. Normal mode gives no such promise (llama.cpp's CPU kernels round by batch
shape and cache layout; see docs/architecture.md), which test_sched_ctx.py reports as a
match rate.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from aiosd_helpers import metrics
from test_sched_ctx import PROMPTS, SYSTEM, chat, solo_then_concurrent

DET = ["--set", "scheduler.deterministic=1", "--set", "scheduler.max_active=4"]


def test_batch_invariant_under_preemption(spawn_daemon):
    """8 requests through 4 places under rr with a 4-token slice: batches of 1 to 4 rows,
    every generation parked in place many times while its neighbours finish and leave holes
    that are repacked. Every output equals its solo run; no token is generated twice."""
    d = spawn_daemon("det-rr", DET + ["--set", "scheduler.policy=rr", "--set", "scheduler.time_slice=4"])
    solo, conc = solo_then_concurrent(d.url, PROMPTS, max_tokens=40)
    for (a, ua), (b, ub) in zip(solo, conc):
        assert a == b, (a, b)
        assert (ua["prompt_tokens"], ua["completion_tokens"]) == (ub["prompt_tokens"], ub["completion_tokens"])
    m = metrics(d.url)
    assert m["aios_parks_total"] >= 8, m
    assert m["aios_kv_compactions_total"] >= 1, m
    assert m["aios_tokens_generated_total"] == sum(u["completion_tokens"] for _, u in solo + conc)


def test_batch_invariant_with_shared_prompts(spawn_daemon):
    """6 agents on one system prompt, two turns each with a tool pause that outlasts
    context.cold_ms: their prompts share cached prefixes, their conversations are cooled to
    snapshots and restored under the shared prefix between turns. Each agent's turns equal
    its solo turns, and every prefix taken from the cache (generated tails included) is
    byte-identical to a solo prefill."""
    d = spawn_daemon("det-agents", DET + ["--set", "scheduler.policy=fair", "--set", "context.cold_ms=300",
                                          "--set", "context.verify_prefix=1"])

    def agent(i, label):
        who = f"{label}-{i}"
        first, _ = chat(d.url, f"Agent {i}: plan your first step.", 24, agent=who, system=SYSTEM, ignore_eos=True)
        time.sleep(0.5)
        extra = [{"role": "assistant", "content": first}, {"role": "user", "content": f"Tool result {i}: done. Next?"}]
        second, _ = chat(d.url, f"Agent {i}: plan your first step.", 24, agent=who, system=SYSTEM, extra=extra,
                         ignore_eos=True)
        return first, second

    solo = [agent(i, "solo") for i in range(6)]
    with ThreadPoolExecutor(6) as ex:
        conc = list(ex.map(lambda i: agent(i, "conc"), range(6)))
    assert conc == solo
    m = metrics(d.url)
    assert m["aios_cache_cooled_total"] >= 6, m
    assert m["aios_prefix_verify_ok_total"] >= 12, m
    assert m["aios_prefix_verify_mismatch_total"] == 0, m

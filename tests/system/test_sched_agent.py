"""System tests of the `agent` scheduling policy (issue 16 part 3), against real aiosd
processes and the real model: an agent back from a tool pause goes ahead of an agent that
has not started, and its place is kept meanwhile; 64 agents through 4 places where 4
endless agents would keep the places forever, and the starvation bound lets every other one
in; exact resume and cancellation of a turn preempted by a starving one.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from aiosd_helpers import metrics, wait_for, wait_metrics
from test_sched_ctx import PROMPTS, _open_stream, chat, exact_flags, solo_then_concurrent


def agent_flags(*more):
    return ["--set", "scheduler.policy=agent", *more]


def test_agent_hot_goes_first(spawn_daemon):
    """One place. Agent a runs a turn and pauses 300 ms (a tool call); agent b asks in the
    pause. b waits: a's place is kept, and a's next turn, arriving after b's, runs first.
    b starts once a's place lapses (twice a's usual pause after its last turn)."""
    d = spawn_daemon("agent-hot", agent_flags("--set", "scheduler.max_active=1", "--set", "scheduler.agent_hot_ms=1500"))
    chat(d.url, "Plan step one.", 16, agent="a", ignore_eos=True)
    done = {}

    def run(name, content):
        chat(d.url, content, 16, agent=name, ignore_eos=True)
        done[name] = time.monotonic()

    tb = threading.Thread(target=run, args=("b", "Hello, I am new."))
    tb.start()
    time.sleep(0.3)
    assert "b" not in done and metrics(d.url)["aios_queue_length"] == 1  # b waits for a's kept place
    run("a", "Tool result: 42. Plan step two.")
    tb.join(120)
    assert done["a"] < done["b"], done
    m = metrics(d.url)
    assert m["aios_requests_total"] == 3 and m["aios_context_switches_total"] == 0


def test_agent_starvation_bound_64(spawn_daemon):
    """64 agents, 4 places: 4 endless agents each send their next turn the moment one ends,
    so, being inside their programs, they would keep the places forever; 60 newcomers ask
    once. Every newcomer completes while the endless ones go on: a waiting turn owed
    starve_factor time slices of an equal share goes first (a running one yields to it)."""
    d = spawn_daemon("agent-starve", agent_flags("--set", "scheduler.max_active=4", "--set", "scheduler.time_slice=4",
                                                 "--set", "scheduler.starve_factor=2"))
    stop = threading.Event()
    hog_turns = [0] * 4

    def hog(i):
        while not stop.is_set():
            chat(d.url, f"Count from {i}.", 16, agent=f"hog-{i}", ignore_eos=True)
            hog_turns[i] += 1

    hogs = [threading.Thread(target=hog, args=(i,)) for i in range(4)]
    for t in hogs:
        t.start()
    assert wait_for(lambda: metrics(d.url)["aios_active_sequences"] == 4, 60)
    with ThreadPoolExecutor(60) as ex:
        res = list(ex.map(lambda i: chat(d.url, f"Say hello {i}.", 8, agent=f"new-{i}", ignore_eos=True), range(60)))
    stop.set()
    for t in hogs:
        t.join(120)
    assert all(u["completion_tokens"] == 8 for _, u in res)
    assert all(n > 0 for n in hog_turns), hog_turns
    m = metrics(d.url)
    assert m["aios_starved_total"] > 0  # the bound, not the hogs' pauses, let newcomers in
    assert m["aios_context_switches_total"] > 0
    assert m["aios_queue_length"] == 0 and m["aios_active_sequences"] == 0


def test_agent_exact_resume(spawn_daemon):
    """8 agents at once through one place with a 4-token slice and starve_factor 1: waiting
    turns starve and preempt the running one; every output is byte-identical to its solo
    run and no token is generated twice."""
    d = spawn_daemon("agent-exact", exact_flags("agent") + ["--set", "scheduler.starve_factor=1"])
    solo, conc = solo_then_concurrent(d.url, PROMPTS)
    for (a, ua), (b, ub) in zip(solo, conc):
        assert a == b, (a, b)
        assert ua == ub
    m = metrics(d.url)
    assert m["aios_context_switches_total"] > 0 and m["aios_starved_total"] > 0
    assert m["aios_restores_total"] >= m["aios_context_switches_total"]
    assert m["aios_tokens_generated_total"] == sum(u["completion_tokens"] for _, u in solo + conc)


def test_agent_cancel_preempted(spawn_daemon):
    """Two turns through one place with starve_factor 1 starve each other in turn and swap
    every few tokens, the waiting one as a snapshot. When one client hangs up (waiting or
    running), nothing of it stays: no snapshot, nothing waiting, and the other runs on."""
    d = spawn_daemon("agent-cancel", agent_flags("--set", "scheduler.max_active=1", "--set", "scheduler.time_slice=4",
                                                 "--set", "scheduler.starve_factor=1", "--set", "context.park=0"))
    first = _open_stream(d.url, "Write a very long essay about the sea.", 50, 2000, agent="first")
    second = _open_stream(d.url, "Write a very long essay about the mountains.", 50, 2000, agent="second")
    m = wait_metrics(d.url, lambda m: m["aios_context_switches_total"] >= 2 and m["aios_snapshot_ram_bytes"] > 0, 60)
    assert m, metrics(d.url)
    first.close()
    m = wait_metrics(d.url, lambda m: m["aios_requests_cancelled_total"] == 1 and m["aios_preempted_waiting"] == 0
                     and m["aios_snapshot_ram_bytes"] == 0, 10)
    assert m, metrics(d.url)
    assert m["aios_active_sequences"] == 1
    switches = m["aios_context_switches_total"]
    time.sleep(0.5)
    assert metrics(d.url)["aios_context_switches_total"] == switches  # alone now: nobody to yield to
    second.close()
    assert wait_for(lambda: metrics(d.url)["aios_active_sequences"] == 0, 10)
    assert requests.get(d.url + "/health", timeout=10).status_code == 200

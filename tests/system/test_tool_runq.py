"""System tests: tool calls queue in the tool run queue under scheduler.policy (issue 11
part 3), like every other syscall. A tool that runs one call at a time (max_parallel 1, each
call 0.3 s of sleep) gets a backlog of one agent's calls; another agent's call then waits
for at most the call in progress under `fair` and `priority`, and for the whole backlog
under `fifo` (the control). Real aiosd, a real sandboxed process tool, plain HTTP."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

from aiosd_helpers import assert_serving, wait_for
from test_runq_fairness import runq_metrics

SLOW_S = 0.3
BACKLOG = 8


@pytest.fixture(scope="module")
def slowdir():
    d = Path(tempfile.mkdtemp(prefix="aios-slowtool-"))
    os.chmod(d, 0o755)
    (d / "slow.json").write_text(json.dumps({"name": "t/slow1", "command": "/bin/sh",
                                             "args": ["-c", f"sleep {SLOW_S}; echo '\"ok\"'"], "max_parallel": 1}))
    work = Path(tempfile.mkdtemp(prefix="aios-slowwork-"))
    os.chmod(work, 0o755)
    yield d, work
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


def call(url, agent, priority=None):
    body = {"agent_name": agent, "query_type": "tool", "query_data": {"tool_calls": [{"name": "t/slow1", "parameters": {}}]}}
    if priority is not None:
        body["priority"] = priority
    return requests.post(url + "/query", json=body, timeout=60)


def backlog_then_one(k, flood_priority=None, mine_priority=None) -> tuple[float, list[int]]:
    """BACKLOG calls of agent a wait on the one slot; then agent b calls: b's latency."""
    codes: list[int] = []
    ts = [threading.Thread(target=lambda: codes.append(call(k.url, "a-flood", flood_priority).status_code))
          for _ in range(BACKLOG)]
    [t.start() for t in ts]
    assert wait_for(lambda: runq_metrics(k.port, "tool").get("aios_runq_queued", 0) >= BACKLOG - 2, 20), \
        runq_metrics(k.port, "tool")
    t0 = time.monotonic()
    r = call(k.url, "b-single", mine_priority)
    lat = time.monotonic() - t0
    assert r.status_code == 200 and r.json()["response"]["tool_results"][0]["result"] == "ok", r.text
    [t.join() for t in ts]
    return lat, codes


def start(spawn_daemon, slowdir, name, policy):
    d, work = slowdir
    return spawn_daemon(name, ["--set", f"scheduler.policy={policy}"], config=f"tools:\n  dir: {d}\n  workdir: {work}\n")


@pytest.mark.parametrize("policy", ["fair", "rr"])
def test_fair_and_rr_let_another_agent_past_a_backlog(spawn_daemon, slowdir, policy):
    k = start(spawn_daemon, slowdir, f"toolq-{policy}", policy)
    lat, codes = backlog_then_one(k)
    assert codes == [200] * BACKLOG, codes
    # b waits for the call in progress and, under rr, for at most the rest of the round it
    # joined (a's call of the same round came first): never for the backlog
    assert lat < SLOW_S * 5, (policy, lat)
    m = runq_metrics(k.port, "tool")
    assert m["policy"] == policy and m["aios_runq_completed_total"] >= BACKLOG + 1, m
    st = requests.get(k.url + "/status", timeout=10).json()
    rq = {q["resource"]: q for q in st["run_queues"]}
    assert rq["tool"]["policy"] == policy and rq["tool"]["workers"] == 0, rq
    assert_serving(k.url)


def test_priority_overtakes_the_backlog(spawn_daemon, slowdir):
    k = start(spawn_daemon, slowdir, "toolq-prio", "priority")
    lat, codes = backlog_then_one(k, flood_priority=10, mine_priority=90)
    assert codes == [200] * BACKLOG, codes
    assert lat < SLOW_S * 5, lat


def test_fifo_runs_the_backlog_first(spawn_daemon, slowdir):
    """The control: the same workload under fifo makes b wait for a's backlog."""
    k = start(spawn_daemon, slowdir, "toolq-fifo", "fifo")
    lat, codes = backlog_then_one(k)
    assert codes == [200] * BACKLOG, codes
    assert lat > SLOW_S * (BACKLOG - 2), lat


def test_a_full_agent_share_refuses_that_agent_only(spawn_daemon, slowdir):
    d, work = slowdir
    k = spawn_daemon("toolq-share", ["--set", "kernel.max_jobs_per_agent=2"],
                     config=f"tools:\n  dir: {d}\n  workdir: {work}\n")
    codes: list[int] = []
    ts = [threading.Thread(target=lambda: codes.append(call(k.url, "a-flood").status_code)) for _ in range(6)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    # one runs, two wait, the rest of a's are refused with 503 ...
    assert codes.count(503) >= 1 and codes.count(200) >= 3, codes
    # ... while another agent still gets in
    assert call(k.url, "b-single").status_code == 200

"""System tier: remote work is scheduled like local work (issue 13, part 3).

One llama-server behind a kernel model with `max_inflight: 2`; requests beyond that wait in
the kernel's run queue under its policy:
- `fair`: one agent sends 40 requests at once, three others 5 each a second later: Jain's
  index over the agents' slowdowns (mean response time in the mix / the same alone) is at
  least 0.9 (the window is longer than the test, so every agent's service counts);
  under `fifo` the three wait behind the forty (shown, not asserted beyond "worse").
- `priority`: a high-priority request that arrives behind a queue of low ones waits only
  for the ones already upstream (at most max_inflight finish before it).
- The AIOS timing arrays of a /query on a remote model are filled in (one round).
Every request has the same length (ignore_eos), so the service each takes is the same.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from aiosd_helpers import Daemon, query_body
from upstream import kernel_with, llama_servers

INFLIGHT = 2
TOKENS = 12
JOIN_S = 1.0  # the small agents arrive while the big one is being served


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with llama_servers(tmp_path_factory.mktemp("sched-upstream"), 1, slots=INFLIGHT, threads=1) as (srv,):
        yield srv.url


def kernel(tmp_path, upstream: str, policy: str) -> Daemon:
    return kernel_with(tmp_path / policy, f"remote-{policy}", f"""
llms:
  default_model: remote
  models:
    - name: remote
      backend: openai
      hostname: {upstream}
      max_inflight: {INFLIGHT}
scheduler:
  policy: {policy}
  fair_window_s: 3600
""")


def ask(url: str, agent: str, priority: int | None = None) -> float:
    """One fixed-length request; returns when it finished (monotonic)."""
    headers = {"Authorization": f"Bearer {agent}"}
    if priority is not None:
        headers["X-AIOS-Priority"] = str(priority)
    r = requests.post(url + "/v1/chat/completions", headers=headers, timeout=300, json={
        "model": "remote", "messages": [{"role": "user", "content": f"Tell me about {agent}."}],
        "max_tokens": TOKENS, "ignore_eos": True, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == TOKENS, r.text
    return time.monotonic()


def run_agents(url: str, work: dict[str, int], phase: str) -> dict[str, list[float]]:
    """Each agent sends its requests all at once: the big one first, the others JOIN_S later
    (one after another) while it is being served. Returns each agent's response times. The
    agents' names carry the phase, so that service attained in one phase is not counted in
    the next."""
    with ThreadPoolExecutor(sum(work.values())) as pool:
        futs, starts = {}, {}
        for i, (a, n) in enumerate(work.items()):
            time.sleep(JOIN_S if i == 1 else 0.05 if i else 0)
            starts[a] = time.monotonic()
            futs[a] = [pool.submit(ask, url, f"{a}-{phase}") for _ in range(n)]
        return {a: [f.result() - starts[a] for f in fs] for a, fs in futs.items()}


def jain(xs: list[float]) -> float:
    return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))


WORK = {"hog": 40, "small-1": 5, "small-2": 5, "small-3": 5}


def slowdowns(url: str) -> tuple[dict[str, float], dict[str, float]]:
    """Each agent's slowdown: the mean response time of its requests in the mix over the
    same alone (the usual per-job definition); and, shown alongside, the ratio of its last
    request's end (completion of all its work)."""
    alone = {a: run_agents(url, {a: n}, "alone")[a] for a, n in WORK.items() if a in ("hog", "small-1")}
    alone.update({a: alone["small-1"] for a in WORK if a.startswith("small")})
    mixed = run_agents(url, WORK, "mixed")
    mean = {a: statistics.mean(mixed[a]) / statistics.mean(alone[a]) for a in WORK}
    last = {a: max(mixed[a]) / max(alone[a]) for a in WORK}
    return mean, last


def fmt(sd: dict[str, float]) -> str:
    return " ".join(f"{a} {v:.2f}" for a, v in sd.items()) + f" (jain {jain(list(sd.values())):.3f})"


def test_fair_share_on_a_remote_model(tmp_path, upstream):
    d = kernel(tmp_path, upstream, "fair")
    try:
        sd, sd_last = slowdowns(d.url)
    finally:
        d.stop_and_check()
    fifo = kernel(tmp_path, upstream, "fifo")
    try:
        sd_fifo, sd_fifo_last = slowdowns(fifo.url)
    finally:
        fifo.stop_and_check()
    print(f"slowdowns fair: {fmt(sd)}; fifo: {fmt(sd_fifo)}\n"
          f"completion ratios fair: {fmt(sd_last)}; fifo: {fmt(sd_fifo_last)}")
    assert jain(list(sd.values())) >= 0.9, sd
    assert jain(list(sd.values())) > jain(list(sd_fifo.values())), (sd, sd_fifo)


def test_priority_overtakes_the_queue(tmp_path, upstream):
    d = kernel(tmp_path, upstream, "priority")
    try:
        done: dict[str, float] = {}
        lows = [threading.Thread(target=lambda i=i: done.__setitem__(f"low-{i}", ask(d.url, f"low-{i}", 10)))
                for i in range(8)]
        for t in lows:
            t.start()
            time.sleep(0.03)
        time.sleep(0.3)  # two upstream, six waiting
        high = threading.Thread(target=lambda: done.__setitem__("high", ask(d.url, "high", 90)))
        arrived = time.monotonic()
        high.start()
        for t in lows + [high]:
            t.join()
        ahead = sorted(k for k, v in done.items() if k != "high" and arrived < v < done["high"])
        assert len(ahead) <= INFLIGHT, (ahead, arrived, done)  # only those already upstream
        assert len([v for v in done.values() if v > done["high"]]) >= 3, done  # it overtook the rest
    finally:
        d.stop_and_check()


def test_aios_timing_arrays_for_remote_syscalls(tmp_path, upstream):
    d = kernel(tmp_path, upstream, "fifo")
    try:
        r = requests.post(d.url + "/query", json=query_body("Say hello.", max_new_tokens=8), timeout=120)
        assert r.status_code == 200, r.text
        env = r.json()
        assert env["response"]["response_message"], env
        for key in ("start_times", "end_times", "waiting_times", "turnaround_times"):
            assert isinstance(env.get(key), list) and len(env[key]) == 1, (key, env)
        assert env["waiting_times"][0] >= 0 and env["turnaround_times"][0] > 0, env
        assert env["end_times"][0] > env["start_times"][0], env
        assert env["turnaround_times"][0] >= env["end_times"][0] - env["start_times"][0], env
    finally:
        d.stop_and_check()

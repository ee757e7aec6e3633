"""System tests of the run queues of the worker resources (issue 11 part 3: every syscall
scheduled). Memory and storage syscalls queue per resource under scheduler.policy like LLM
work, so one agent's flood of storage writes cannot delay another agent's reads, a
high-priority agent's operations overtake a queued backlog, and one agent filling its share
of a queue (kernel.max_jobs_per_agent) gets 503 while others still get in.

Real aiosd on loopback, one storage worker so that a backlog forms. The flooding agent runs
in a child process (its many client threads must not hold this process's GIL while the
measuring client times its requests); every client keeps its connection alive."""
from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time

from aiosd_helpers import assert_serving, wait_for

FLOOD_N = 10_000
FLOOD_THREADS = 16
READS = 100

# The child process: `FLOOD_THREADS` keep-alive clients write `n` small files as one agent,
# then print {"status": {code: count}, "seconds": s, "stamps": [[created, started], ...]}.
FLOOD_SRC = r"""
import http.client, json, os, sys, threading, time
port, agent, n, threads, prio, nice, size = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                                           int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
os.nice(nice)
lock, counts, nxt, stamps = threading.Lock(), {}, [0], []
def run():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if i >= n:
            return
        body = {"agent_name": agent, "query_type": "storage", "priority": prio,
                "query_data": {"operation_type": "write", "params": {"file_path": "f/%d.txt" % i, "content": ("row %d " % i).ljust(size, "x")}}}
        c.request("POST", "/query", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse(); out = json.loads(r.read())
        with lock:
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.status == 200:  # when it was created and when it started to run (wall clock)
                stamps.append((out["start_times"][0] - out["waiting_times"][0], out["start_times"][0]))
t0 = time.monotonic()
ts = [threading.Thread(target=run) for _ in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"status": counts, "seconds": time.monotonic() - t0, "stamps": stamps}))
"""


def start_flood(port: int, agent: str, n: int, threads: int, priority: int = 0, nice: int = 19,
                size: int = 16) -> subprocess.Popen:
    """The flood in a child process, niced by default: on a small machine the load generator
    must not take the CPU from the kernel and from the client whose latency is measured."""
    args = [str(port), agent, str(n), str(threads), str(priority), str(nice), str(size)]
    return subprocess.Popen([sys.executable, "-c", FLOOD_SRC, *args], stdout=subprocess.PIPE, text=True)


def finish_flood(p: subprocess.Popen, timeout: float = 120) -> dict:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out
    return json.loads(out)


class Client:
    """One keep-alive connection for an agent's storage calls."""

    def __init__(self, port: int, agent: str, priority: int | None = None):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.agent, self.priority = agent, priority

    def call(self, op: str, **params) -> tuple[int, dict]:
        body = {"agent_name": self.agent, "query_type": "storage", "query_data": {"operation_type": op, "params": params}}
        if self.priority is not None:
            body["priority"] = self.priority
        self.c.request("POST", "/query", json.dumps(body), {"Content-Type": "application/json"})
        r = self.c.getresponse()
        return r.status, json.loads(r.read())

    def timed_reads(self, n: int, path: str, waits: list | None = None) -> list[float]:
        """n sequential reads: their client-side latencies; the kernel's timings into waits."""
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            status, out = self.call("read", file_path=path)
            lat.append(time.perf_counter() - t0)
            assert status == 200, out
            if waits is not None:  # kernel side: turnaround, run-queue wait, (created, started) wall clock
                w, st = out["waiting_times"][0], out["start_times"][0]
                waits.append((out["turnaround_times"][0], w, (st - w, st)))
        return lat


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


_RUNQ_RE = re.compile(r'^(aios_runq_\w+)\{resource="(\w+)",policy="(\w+)"\} (\S+)$')


def runq_metrics(port: int, resource: str = "storage") -> dict[str, float]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        m = _RUNQ_RE.match(line)
        if m and m.group(2) == resource:
            out[m.group(1)] = float(m.group(4))
            out["policy"] = m.group(3)
    return out


def daemon(spawn_daemon, name: str, policy: str, *extra: str):
    """One storage worker (a backlog forms); the flood's texts may all wait for the embedder."""
    return spawn_daemon(name, ["--set", f"scheduler.policy={policy}", "--set", "kernel.workers=1",
                               "--set", "storage.embed_agent_queue=1000000", *extra])


def overtaken(low: list, created: float, started: float) -> tuple[int, int]:
    """Of the flood's operations waiting when an operation was created (created before it,
    started after it), how many there were and how many of them started before it did."""
    ahead = [s for c, s in low if c < created and s > created]
    return len(ahead), sum(1 for s in ahead if s < started)


def test_fair_storage_reads_not_delayed_by_a_flood(spawn_daemon):
    d = daemon(spawn_daemon, "runq-fair", "fair")
    # the unloaded baseline is measured as another agent: fair share counts service in its
    # window, and B's own 120 baseline reads would entitle the flooder to catch up first
    solo, b = Client(d.port, "reader-solo"), Client(d.port, "reader-b")
    for c in (solo, b):
        assert c.call("write", file_path="b.txt", content="B's small file")[0] == 200
    solo.timed_reads(20, "b.txt")                   # warm up
    uk: list = []
    unloaded = solo.timed_reads(READS, "b.txt", uk)

    flood = start_flood(d.port, "flooder-a", FLOOD_N, 4 * FLOOD_THREADS, nice=0)
    try:
        # a backlog of A's writes is waiting in the storage run queue before B measures
        assert wait_for(lambda: runq_metrics(d.port)["aios_runq_queued"] >= FLOOD_THREADS, 30), runq_metrics(d.port)
        loaded, lk = [], []
        for _ in range(READS // 10):
            loaded += b.timed_reads(10, "b.txt", lk)
        m = runq_metrics(d.port)
    finally:
        res = finish_flood(flood)
    assert res["status"] == {"200": FLOOD_N}, res
    rows = [overtaken(res["stamps"], c, s) for c, s in (x[2] for x in lk)]
    u, l = p99(unloaded), p99(loaded)
    print(f"\nfair: B read p99 (client) unloaded {u * 1e3:.2f} ms, under a {FLOOD_N}-write flood {l * 1e3:.2f} ms "
          f"({l / u:.1f}x); kernel turnaround p99 {p99([t for t, _, _ in uk]) * 1e3:.3f} -> "
          f"{p99([t for t, _, _ in lk]) * 1e3:.3f} ms; run-queue wait p99 {p99([w for _, w, _ in uk]) * 1e3:.3f} -> "
          f"{p99([w for _, w, _ in lk]) * 1e3:.3f} ms; A writes queued ahead of B's reads: median "
          f"{sorted(a for a, _ in rows)[len(rows) // 2]}, max run before B {max(x for _, x in rows)}; "
          f"flood took {res['seconds']:.1f} s")
    assert m["policy"] == "fair" and m["aios_runq_workers"] == 1, m
    # B competed with a real backlog of A's writes, and overtook all of it: with one worker,
    # B's read runs right after the operation in progress (fifo would run the backlog first)
    assert sum(1 for a, _ in rows if a >= 8) >= READS // 4, rows
    assert all(late <= 1 for _, late in rows), rows
    # latency: the target is 5x the unloaded p99; on a small shared machine (2 cores, the
    # flood's 64 client threads, the HTTP thread and the worker all runnable) CPU contention
    # alone exceeds it, so the hard bound is a sanity one; the exact check is the one above
    assert l <= max(5 * u, 0.025), (u, l)
    # the status view shows both queues
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    c.request("GET", "/status")
    st = json.loads(c.getresponse().read())
    rq = {q["resource"]: q for q in st["run_queues"]}
    assert set(rq) == {"memory", "storage", "tool"}, st
    assert rq["storage"]["policy"] == "fair" and rq["storage"]["completed"] >= FLOOD_N + READS, rq
    assert_serving(d.url)


def test_priority_overtakes_a_queued_backlog(spawn_daemon):
    d = daemon(spawn_daemon, "runq-prio", "priority")
    hi = Client(d.port, "urgent-h", priority=90)
    assert hi.call("write", file_path="h.txt", content="urgent")[0] == 200
    n_low = 4000
    flood = start_flood(d.port, "bulk-l", n_low, 4 * FLOOD_THREADS, priority=10, nice=0)
    mine = []  # (created, started) of H's reads
    try:
        assert wait_for(lambda: runq_metrics(d.port)["aios_runq_queued"] >= FLOOD_THREADS / 2, 30), runq_metrics(d.port)
        for _ in range(30):
            status, out = hi.call("read", file_path="h.txt")
            assert status == 200, out
            mine.append((out["start_times"][0] - out["waiting_times"][0], out["start_times"][0]))
            time.sleep(0.01)
    finally:
        res = finish_flood(flood)
    assert res["status"] == {"200": n_low}, res
    low = res["stamps"]
    rows = []
    for created, started in mine:
        # the backlog queued ahead of H's read: low writes created before it that had not
        # started yet; with one worker, each of them must start after H's read did
        ahead, late = overtaken(low, created, started)
        rows.append((ahead, late, round((started - created) * 1e3, 2)))
    print("\npriority: (low writes queued ahead, of them run before H, H wait ms):", rows)
    assert sum(1 for a, _, _ in rows if a >= 8) >= 10, rows                   # a real backlog was ahead
    assert all(late <= 1 for _, late, _ in rows), rows                        # and H overtook all of it


def test_per_agent_bound_leaves_room_for_others(spawn_daemon):
    d = spawn_daemon("runq-bound", ["--set", "scheduler.policy=fair", "--set", "kernel.workers=1",
                                    "--set", "kernel.max_jobs_per_agent=4", "--set", "storage.embed_agent_queue=1000000"])
    flood = start_flood(d.port, "greedy-a", 2000, FLOOD_THREADS)
    try:
        assert wait_for(lambda: runq_metrics(d.port).get("aios_runq_rejected_agent_total", 0) > 0, 30)
        b = Client(d.port, "polite-b")
        for i in range(20):
            status, out = b.call("write", file_path=f"b{i}.txt", content="x")
            assert status == 200, out
    finally:
        res = finish_flood(flood)
    assert res["status"].get("503", 0) > 0 and res["status"].get("200", 0) > 0, res
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    body = {"agent_name": "greedy-a", "query_type": "storage",
            "query_data": {"operation_type": "read", "params": {"file_path": "f/0.txt"}}}
    c.request("POST", "/query", json.dumps(body), {"Content-Type": "application/json"})
    assert c.getresponse().status in (200, 404)    # once drained, A gets in again
    assert_serving(d.url)

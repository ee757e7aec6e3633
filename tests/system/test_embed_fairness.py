"""Fault tier: one agent flooding the embedder must not starve the others.

Regression tests for an adversarial finding: a flood of 12 KB add_memory and storage
writes by one agent filled the shared embedding queue, after which another agent's
add_memory got 503 and its retrieve_memory hung for over ten minutes. Now each agent's
texts wait in its own queue (storage.embed_agent_queue bounds it; the flooder alone gets
503), the embedder serves the agents round robin, and every retrieval has a deadline
(storage.retrieve_timeout_ms: 503 at once when the embedder's backlog alone would take longer,
504 when it still runs past it, both with the reason). Real aiosd, real MiniLM embedder."""
from __future__ import annotations

import threading
import time

import requests

from aiosd_helpers import assert_error, assert_serving, metrics, wait_for

BIG = ("The quarterly report lists revenue, costs and the outlook for each region. " * 170)[:12000]


def query(base, agent, qtype, op, timeout=120, **params):
    body = {"agent_name": agent, "query_type": qtype, "query_data": {"operation_type": op, "params": params}}
    return requests.post(base + "/query", json=body, timeout=timeout)


def flood(base, agent, n, statuses, errors, stop):
    """n add_memory calls of 12 KB each (distinct texts), recording status codes."""
    for i in range(n):
        if stop.is_set():
            return
        r = query(base, agent, "memory", "add_memory", content=f"{i} {BIG}", metadata={})
        statuses.append(r.status_code)
        if r.status_code != 200:
            errors.append(r.json()["error"]["message"])


def test_flooding_agent_gets_backpressure_and_others_are_served(spawn_daemon):
    d = spawn_daemon("embed-flood", ["--set", "storage.embed_agent_queue=40", "--set", "storage.retrieve_timeout_ms=60000"])
    b = d.url
    statuses, errors, stop = [], [], threading.Event()
    threads = [threading.Thread(target=flood, args=(b, "flooder", 60, statuses, errors, stop)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # the flooder's own backlog is full: it is told so, with the reason
        assert wait_for(lambda: 503 in statuses, 60), f"no backpressure on the flooder: {statuses[:20]}"
        assert any("storage.embed_agent_queue" in e for e in errors), errors[:3]
        backlog = metrics(b)["aios_embed_queue_length"]
        assert 20 <= backlog <= 40, backlog
        # another agent still adds and retrieves at once, while the flood goes on
        t0 = time.monotonic()
        r = query(b, "victim", "memory", "add_memory", content="Paris is the capital of France.", metadata={})
        assert r.status_code == 200, r.text
        r = query(b, "victim", "memory", "retrieve_memory", content="What is France's capital?", k=1)
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert r.json()["response"]["search_results"][0]["content"] == "Paris is the capital of France."
        # its two texts wait about a round each (one text per waiting agent), not behind the
        # flood: measured in the embedder's own batch time, so a slow machine does not matter
        m = metrics(b)
        batch = m["aios_embed_seconds_total"] / m["aios_embed_batches_total"]
        assert took < 6 * batch + 1.0, f"add + retrieve took {took:.1f} s, {took / batch:.1f} batches " \
                                       f"of {batch:.2f} s, with {backlog:.0f} of the flooder's texts queued"
        # a storage write and retrieval by a third agent too
        r = query(b, "writer", "storage", "write", file_path="notes/a.txt", content="Remember to buy milk.")
        assert r.status_code == 200, r.text
        r = query(b, "writer", "storage", "retrieve", query_text="groceries", n=1)
        assert r.status_code == 200 and "milk" in r.json()["response"]["response_message"], r.text
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert_serving(b)


def test_retrieval_has_a_deadline(spawn_daemon):
    d = spawn_daemon("embed-deadline", ["--set", "storage.retrieve_timeout_ms=1500"])
    b = d.url
    # the embedder has done some work (a retrieval waits for its agent's add), so the kernel knows its rate
    r = query(b, "warm", "memory", "add_memory", content=BIG, metadata={})
    assert r.status_code == 200, r.text
    r = query(b, "warm", "memory", "retrieve_memory", content="revenue", k=1)
    assert r.status_code == 200, r.text
    # a backlog of the agent's own texts (several seconds of embedding) ...
    statuses, errors, stop = [], [], threading.Event()
    threads = [threading.Thread(target=flood, args=(b, "slow", 30, statuses, errors, stop)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * 60, statuses
    # ... so its retrieval cannot see every acknowledged add in 1.5 s: at the rate the embedder
    # has been going, the kernel knows it at once and answers 503 with the reason, instead of
    # holding a memory worker for the 1.5 s and answering 504 (its query itself would go ahead
    # of its queued texts, but the retrieval must see them all)
    t0 = time.monotonic()
    r = query(b, "slow", "memory", "retrieve_memory", content="revenue", k=1, timeout=30)
    took = time.monotonic() - t0
    err = assert_error(r, 503, "overloaded")
    assert "storage.retrieve_timeout_ms" in err["message"] and "behind" in err["message"], err
    assert took < 1.0, took
    # another agent is served meanwhile
    r = query(b, "other", "memory", "add_memory", content="Cats purr when content.", metadata={})
    assert r.status_code == 200, r.text
    # once the backlog is embedded the same retrieval succeeds
    assert wait_for(lambda: metrics(b)["aios_embed_queue_length"] == 0, 120)
    r = query(b, "slow", "memory", "retrieve_memory", content="revenue", k=1)
    assert r.status_code == 200 and r.json()["response"]["search_results"], r.text
    assert_serving(b)

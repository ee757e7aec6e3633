"""System tier: a short concurrent smoke of every resource at once (issue 15, part 3): chat
completions (streamed and whole), memory add / retrieve, storage write / read and tool calls
from several agents on their own connections, all at the same time, against one daemon.
Every call must succeed with the answer it asked for. Under ThreadSanitizer (`make tsan`) this
is the system smoke: the daemon's stderr must hold no report (Daemon.stop_and_check), so every
lock and hand-off between the HTTP threads, the engine, the run-queue workers and the embedder
is exercised concurrently."""
from __future__ import annotations

import json
import threading
import time

import requests

from aiosd_helpers import Daemon

AGENTS = 4
ROUNDS = 3


def query(url: str, agent: str, qtype: str, query_data: dict) -> dict:
    r = requests.post(url + "/query", timeout=300,
                      json={"agent_name": agent, "query_type": qtype, "query_data": query_data})
    assert r.status_code == 200, (qtype, r.text)
    return r.json()["response"]


def one_agent(url: str, i: int, errors: list[str]) -> None:
    who = f"smoke-{i}"
    try:
        for k in range(ROUNDS):
            r = requests.post(url + "/v1/chat/completions", timeout=300, headers={"Authorization": f"Bearer {who}"}, json={
                "messages": [{"role": "user", "content": f"Count to {k + 3}."}], "max_tokens": 12,
                "temperature": 0, "stream": k % 2 == 1})
            assert r.status_code == 200, r.text
            if k % 2:
                assert r.text.rstrip().endswith("data: [DONE]"), r.text[-200:]
            else:
                assert r.json()["usage"]["completion_tokens"] > 0, r.text
            query(url, who, "memory", {"operation_type": "add_memory", "params": {"content": f"fact {k} of {who}"}})
            got = query(url, who, "memory", {"operation_type": "retrieve_memory",
                                             "params": {"content": f"fact {k}", "k": 1}})
            assert who in json.dumps(got), got
            path = f"smoke/{k}.txt"
            query(url, who, "storage", {"operation_type": "write", "params": {"file_path": path, "content": f"{who} {k}"}})
            rd = query(url, who, "storage", {"operation_type": "read", "params": {"file_path": path}})
            assert f"{who} {k}" in json.dumps(rd), rd
            tool = query(url, who, "tool", {"tool_calls": [{"name": "aios/calculator",
                                                            "parameters": {"expression": f"{i} * 10 + {k}"}}]})
            assert str(i * 10 + k) in json.dumps(tool), tool
    except Exception as e:  # noqa: BLE001  (reported by the main thread)
        errors.append(f"{who}: {e!r}")


def test_every_resource_at_once(tmp_path):
    d = Daemon("smoke", tmp_path, []).start()
    try:
        errors: list[str] = []
        t0 = time.monotonic()
        threads = [threading.Thread(target=one_agent, args=(d.url, i, errors)) for i in range(AGENTS)]
        [t.start() for t in threads]
        [t.join(600) for t in threads]
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)
        print(f"{AGENTS} agents x {ROUNDS} rounds of chat, memory, storage and tools in {time.monotonic() - t0:.1f} s")
    finally:
        d.stop_and_check()

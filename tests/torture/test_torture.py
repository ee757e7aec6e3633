"""Torture tier (issue 15, part 2; `make torture`, docs/testing.md): every allocation of a
route's request path fails in turn.

The daemon is the torture build (-DAIOS_TORTURE, ASan + UBSan, src/kernel/torture.c): POST
/admin/torture {"fail_at": N} makes the N-th allocation of the next request's handling (on the
HTTP thread, cJSON's included) fail, once. For each request below, N runs 1, 2, 3... until a
run in which no allocation failed (the request made fewer than N). Every run must end with an
answer: success, or an error in the door's JSON shape with status 500 or 503 (never a dropped
connection, never a 4xx for a valid request); the kernel must keep serving; and at the end
it must exit 0 with no ASan, LSan or UBSan report (no crash, no leak, no double free).
Printed with -s: allocation points exercised per request, and the statuses seen.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest
import requests

from aiosd_helpers import MODEL_NAME, Daemon

MAX_N = 4000
CHAT = [{"role": "user", "content": "Say hi."}]

# (name, method, path, JSON body or None, stream)
REQUESTS = [
    ("chat", "POST", "/v1/chat/completions", {"messages": CHAT, "max_tokens": 3, "temperature": 0}, False),
    ("chat-stream", "POST", "/v1/chat/completions", {"messages": CHAT, "max_tokens": 3, "stream": True}, True),
    ("chat-tools", "POST", "/v1/chat/completions",
     {"messages": CHAT, "max_tokens": 3, "tool_choice": "auto",
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {
          "type": "object", "properties": {"x": {"type": "integer"}}}}}]}, False),
    ("chat-tool-choice", "POST", "/v1/chat/completions",
     {"messages": CHAT, "max_tokens": 8, "tool_choice": {"type": "function", "function": {"name": "f"}},
      "tools": [{"type": "function", "function": {"name": "f", "parameters": {
          "type": "object", "properties": {"x": {"type": "integer"}}}}}]}, False),
    ("completions", "POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 3}, False),
    ("responses", "POST", "/v1/responses", {"input": "Say hi.", "max_output_tokens": 3, "store": True}, False),
    ("anthropic", "POST", "/v1/messages", {"model": MODEL_NAME, "max_tokens": 3, "messages": CHAT}, False),
    ("ollama-chat", "POST", "/api/chat", {"model": MODEL_NAME, "messages": CHAT, "stream": False,
                                          "options": {"num_predict": 3}}, False),
    ("query-llm", "POST", "/query", {"agent_name": "t", "query_type": "llm",
                                     "query_data": {"messages": CHAT, "max_new_tokens": 3}}, False),
    ("query-memory", "POST", "/query", {"agent_name": "t", "query_type": "memory", "query_data": {
        "operation_type": "add_memory", "params": {"content": "a fact"}}}, False),
    ("query-storage", "POST", "/query", {"agent_name": "t", "query_type": "storage", "query_data": {
        "operation_type": "write", "params": {"file_path": "t.txt", "content": "x"}}}, False),
    ("query-tool", "POST", "/query", {"agent_name": "t", "query_type": "tool", "query_data": {
        "tool_calls": [{"name": "aios/calculator", "parameters": {"expression": "6*7"}}]}}, False),
    ("embeddings", "POST", "/v1/embeddings", {"input": ["one", "two"]}, False),
    ("identity", "POST", "/admin/agents", None, False),  # a new name each run (below)
    ("status", "GET", "/status", None, False),
    ("metrics", "GET", "/metrics", None, False),
    ("models", "GET", "/v1/models", None, False),
    ("agents-ps", "GET", "/agents/ps", None, False),
]


def is_error_json(text: str) -> bool:
    try:
        j = json.loads(text)
    except ValueError:
        return False
    return isinstance(j, dict) and "error" in j


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = Daemon("torture", tmp_path_factory.mktemp("torture"), []).start()
    yield d
    d.stop_and_check()  # exit 0, and no sanitizer report in its stderr


@pytest.mark.parametrize("name,method,path,body,stream", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_every_allocation_fails_in_turn(kernel, name, method, path, body, stream):
    url = kernel.url
    statuses: Counter = Counter()
    for n in range(1, MAX_N + 1):
        assert requests.post(url + "/admin/torture", json={"fail_at": n}, timeout=30).status_code == 200
        payload = {"name": f"torture-{n}"} if name == "identity" else body
        try:
            r = requests.request(method, url + path, json=payload, timeout=120, headers={"Authorization": "Bearer t"})
        except requests.ConnectionError as e:
            pytest.fail(f"{name}: allocation {n} failing dropped the connection: {e}")
        injected = requests.get(url + "/admin/torture", timeout=30).json()["injected"]
        statuses[r.status_code] += 1
        if not injected:
            assert r.status_code < 300, (name, n, r.status_code, r.text[:300])
            break
        if r.status_code >= 400:
            assert r.status_code in (500, 503), f"{name}: allocation {n} failing answered {r.status_code}: {r.text[:300]}"
            assert is_error_json(r.text), f"{name}: allocation {n}: not a JSON error: {r.text[:300]}"
        elif stream:  # the failure came after the head: the stream still ends, with an error or [DONE]
            assert r.text.rstrip().endswith("data: [DONE]") or '"error"' in r.text, (name, n, r.text[-300:])
        elif path != "/metrics":  # a success despite the failure (a part with a fallback): still a whole answer
            assert isinstance(json.loads(r.text), dict), (name, n, r.text[:300])
        assert requests.get(url + "/health", timeout=30).status_code == 200
    else:
        pytest.fail(f"{name}: still failing allocations after {MAX_N}")
    print(f"{name}: {n - 1} allocation points; statuses {dict(statuses)}")

"""System tier: the one admission gate (src/api/admit.c).

Every route names what it asks for (its kind, the agent, each resource and action) and one
gate decides: deny rules reach an agent's own memory and storage, the token names the
agent of /query when agent_name is left out (and both must agree when both are given),
/v1/embeddings needs a rule for the embedding model, access.rate_limit answers 429 with
Retry-After to the agent over it only, and no route handler calls the access manager's
checks itself. Real aiosd, real model, plain HTTP."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from aiosd_helpers import assert_error, assert_serving

REPO = Path(__file__).resolve().parents[2]

GROUPS = """
access:
  groups:
    default: ["llm:*", "tool:*"]
    readonly_mem: ["llm:*", "tool:*", "!memory:self:write"]
    nostorage: ["llm:*", "tool:*", "!storage"]
    notime: ["llm:*", "tool:*", "!tool:aios/time"]
    noembed: ["llm:*", "tool:*", "!llm:all-MiniLM*"]
    peer: ["llm:*", "tool:*", "memory:*:read", "!memory:carol"]
agents:
  ro: {group: readonly_mem}
  nost: {group: nostorage}
  nt: {group: notime}
  ne: {group: noembed}
  pe: {group: peer}
"""


def q(url, who, qtype, qd, headers=None, timeout=120):
    body = {"query_type": qtype, "query_data": qd}
    if who is not None:
        body["agent_name"] = who
    return requests.post(url + "/query", json=body, headers=headers or {}, timeout=timeout)


def mem(url, who, op, headers=None, **params):
    return q(url, who, "memory", {"operation_type": op, "params": params}, headers)


def store(url, who, op, headers=None, **params):
    return q(url, who, "storage", {"operation_type": op, "params": params}, headers)


def tool(url, agent, name, params=None):
    return q(url, agent, "tool", {"tool_calls": [{"name": name, "parameters": params or {}}]})


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from aiosd_helpers import Daemon
    wd = tmp_path_factory.mktemp("admission")
    cfg = wd / "aios.yaml"
    cfg.write_text(GROUPS)
    k = Daemon("admission", wd, ["--config", str(cfg)]).start()
    yield k
    k.stop_and_check()


def test_deny_rule_makes_own_memory_read_only(kernel):
    u = kernel.url
    err = assert_error(mem(u, "ro", "add_memory", content="a note", metadata={}), 403, "forbidden")
    assert "deny rule" in err["message"] and "'ro'" in err["message"], err
    r = mem(u, "ro", "retrieve_memory", content="note", k=2)
    assert r.status_code == 200, r.text
    # an agent of a group without deny rules keeps its own namespace
    r = mem(u, "plain", "add_memory", content="plain note", metadata={})
    assert r.status_code == 200, r.text


def test_deny_rule_refuses_own_storage(kernel):
    u = kernel.url
    assert_error(store(u, "nost", "write", file_path="a.txt", content="x"), 403, "forbidden")
    assert_error(store(u, "nost", "list", dir_path=""), 403, "forbidden")
    # naming itself as the owner is still its own namespace
    assert_error(store(u, "nost", "write", file_path="a.txt", content="x", owner="nost"), 403, "forbidden")
    # the built-in file tools act on the caller's storage: the same rule refuses them
    err = assert_error(tool(u, "nost", "aios/write_file", {"file_path": "a.txt", "content": "x"}), 403, "forbidden")
    assert "storage 'nost'" in err["message"], err
    assert_error(tool(u, "nost", "aios/list_files", {"dir_path": ""}), 403, "forbidden")
    assert store(u, "plain", "write", file_path="a.txt", content="x").status_code == 200
    assert tool(u, "plain", "aios/read_file", {"file_path": "a.txt"}).status_code == 200


def test_deny_rule_refuses_the_shares_fallback_too(kernel):
    """Without a rule, reading another agent's file falls back to what it shared; a deny
    rule on that agent's storage refuses even that."""
    u = kernel.url
    assert store(u, "sharer", "write", file_path="s.txt", content="shared").status_code == 200
    assert store(u, "sharer", "share", file_path="s.txt", agent="nost").status_code == 200
    assert store(u, "sharer", "share", file_path="s.txt", agent="plain").status_code == 200
    r = store(u, "plain", "read", file_path="s.txt", owner="sharer")
    assert r.status_code == 200 and r.json()["response"]["response_message"] == "shared", r.text
    err = assert_error(store(u, "nost", "read", file_path="s.txt", owner="sharer"), 403, "forbidden")
    assert "deny rule" in err["message"], err


def test_deny_rule_on_one_tool(kernel):
    u = kernel.url
    err = assert_error(tool(u, "nt", "aios/time"), 403, "forbidden")
    assert "aios/time" in err["message"], err
    r = tool(u, "nt", "aios/calculator", {"expression": "6*7"})
    assert r.status_code == 200 and "42" in r.json()["response"]["response_message"], r.text
    # an LLM request that lists a denied kernel tool is refused before it runs
    qd = {"messages": [{"role": "user", "content": "time?"}], "tools": [{"type": "function", "function": {"name": "aios/time"}}],
          "action_type": "call_tool", "max_new_tokens": 8}
    assert_error(q(u, "nt", "llm", qd), 403, "forbidden")


def test_deny_wins_over_a_broader_allow(kernel):
    u = kernel.url
    assert mem(u, "dave", "add_memory", content="dave's", metadata={}).status_code == 200
    assert mem(u, "carol", "add_memory", content="carol's", metadata={}).status_code == 200
    r = mem(u, "pe", "retrieve_memory", content="dave", k=1, owner="dave")
    assert r.status_code == 200, r.text
    err = assert_error(mem(u, "pe", "retrieve_memory", content="carol", k=1, owner="carol"), 403, "forbidden")
    assert "deny rule" in err["message"], err
    assert_error(mem(u, "pe", "add_memory", content="x", metadata={}, owner="dave"), 403, "forbidden")


def test_embeddings_need_a_rule_for_the_embedding_model(kernel):
    u = kernel.url
    r = requests.post(u + "/v1/embeddings", json={"input": "hello"}, headers={"Authorization": "Bearer plain"}, timeout=60)
    assert r.status_code == 200, r.text
    r = requests.post(u + "/v1/embeddings", json={"input": "hello"}, headers={"Authorization": "Bearer ne"}, timeout=60)
    err = assert_error(r, 403, "forbidden")
    assert "all-MiniLM" in err["message"], err


def test_local_mode_names_the_agent_by_body_or_bearer(kernel):
    u = kernel.url
    err = assert_error(mem(u, None, "retrieve_memory", content="x", k=1), 400, "invalid_request")
    assert "agent_name" in err["message"], err
    # a bearer name stands in for agent_name; the gate applies that agent's rules
    assert_error(mem(u, None, "add_memory", headers={"Authorization": "Bearer ro"}, content="x", metadata={}), 403)
    r = mem(u, None, "add_memory", headers={"Authorization": "Bearer plain2"}, content="y", metadata={})
    assert r.status_code == 200, r.text
    assert_error(mem(u, "", "retrieve_memory", content="x", k=1), 400, "invalid_request")
    assert_serving(u)


def test_audit_records_the_gate_decisions(kernel):
    u = kernel.url
    assert_error(mem(u, "ro", "add_memory", content="a note", metadata={}), 403)
    assert_error(tool(u, "nt", "aios/time"), 403)
    assert mem(u, "plain", "retrieve_memory", content="x", k=1).status_code == 200
    audit = (kernel.workdir / "data" / "audit.log").read_text().splitlines()
    lines = [json.loads(x) for x in audit if x.strip()]
    assert any(x["agent"] == "ro" and x["resource"] == "memory:ro" and x["decision"] == "deny" for x in lines)
    assert any(x["agent"] == "nt" and x["resource"] == "tool:aios/time" and x["decision"] == "deny" for x in lines)
    # an agent whose group has no deny rule for its own namespace is not audited for it
    assert not any(x["agent"] == "plain" and x["resource"] == "memory:plain" for x in lines)


def test_enforce_mode_takes_the_agent_from_the_token(spawn_daemon):
    k = spawn_daemon("admit-enforce", config="access:\n  mode: enforce\n")
    admin = (k.workdir / "data" / "admin.token").read_text().strip()
    r = requests.post(k.url + "/admin/agents", json={"name": "alice"}, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 201, r.text
    tok = {"Authorization": f"Bearer {r.json()['token']}"}
    r = mem(k.url, None, "add_memory", headers=tok, content="alice's", metadata={})
    assert r.status_code == 200, r.text
    r = mem(k.url, "alice", "retrieve_memory", headers=tok, content="alice", k=1)
    assert r.status_code == 200 and r.json()["response"]["search_results"], r.text
    err = assert_error(mem(k.url, "bob", "retrieve_memory", headers=tok, content="x", k=1), 403, "forbidden")
    assert "token names agent 'alice'" in err["message"], err
    assert_error(mem(k.url, None, "retrieve_memory", content="x", k=1), 401, "unauthorized")
    # admin routes need the admin rule: alice's default group has none
    assert_error(requests.get(k.url + "/admin/agents", headers=tok, timeout=30), 403, "forbidden")
    r = requests.get(k.url + "/admin/agents", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert r.status_code == 200, r.text


def test_rate_limit_answers_429_to_the_agent_over_it_only(spawn_daemon):
    k = spawn_daemon("admit-rate", config="access:\n  rate_limit: 2\n  rate_burst: 3\n")
    u = k.url
    codes = [store(u, "flood", "list", dir_path="").status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200], codes
    assert 429 in codes[3:], codes
    r = store(u, "flood", "list", dir_path="")
    if r.status_code == 200:  # a token came back in between: spend it
        r = store(u, "flood", "list", dir_path="")
    err = assert_error(r, 429, "rate_limited")
    assert "access.rate_limit" in err["message"], err
    assert int(r.headers["Retry-After"]) >= 1
    # another agent is untouched, and so are routes that are not syscalls
    assert store(u, "calm", "list", dir_path="").status_code == 200
    assert requests.get(u + "/status", timeout=30).status_code == 200
    time.sleep(1.2)
    assert store(u, "flood", "list", dir_path="").status_code == 200
    metrics = requests.get(u + "/metrics", timeout=30).text
    m = re.search(r"^aios_http_rate_limited_total (\d+)", metrics, re.M)
    assert m and int(m.group(1)) >= 2, metrics[-800:]


def test_route_handlers_never_call_the_access_checks():
    """The layering the gate rests on: only admit.c asks the access manager for a decision."""
    offenders = []
    for f in sorted((REPO / "src" / "api").glob("*.c")):
        if f.name == "admit.c":
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"\baccess_(check|authenticate)\s*\(", line):
                offenders.append(f"{f.name}:{n}: {line.strip()}")
    assert not offenders, offenders

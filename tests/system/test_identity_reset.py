"""Fault tier: a revoked identity re-created under the same name starts empty.

Regression test for an adversarial finding: after `aios agent revoke alice`, a new
identity named alice inherited the old one's memory, files, tool workdirs and the shares
other agents had granted to "alice". Now the new identity starts with nothing, unless an
admin hands the data over explicitly (`aios agent create NAME --keep-data`). Real aiosd in
enforce mode, the real CLI."""
from __future__ import annotations

import json

import requests

from test_tools_access import cli, tool_query, tooldir  # noqa: F401  (tooldir is a fixture)


def query(url, token, who, qtype, op, **params):
    body = {"agent_name": who, "query_type": qtype, "query_data": {"operation_type": op, "params": params}}
    return requests.post(url + "/query", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def create(url, admin, name, *flags):
    out = cli(url, "agent", "create", name, *flags, token=admin)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


def seed(url, token, bob):
    """alice's memory, file and tool workdir, and a file bob shared with alice."""
    r = query(url, token, "alice", "memory", "add_memory", content="alice's secret plan", metadata={})
    assert r.status_code == 200, r.text
    mid = r.json()["response"]["memory_id"]
    assert query(url, token, "alice", "storage", "write", file_path="plan.txt", content="old alice").status_code == 200
    assert query(url, bob, "bob", "storage", "write", file_path="for-alice.txt", content="from bob").status_code == 200
    assert query(url, bob, "bob", "storage", "share", file_path="for-alice.txt", agent="alice").status_code == 200
    r = tool_query(url, [{"name": "t/write", "parameters": {}}], agent="alice", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return mid


def test_recreated_identity_starts_empty_unless_kept(spawn_daemon, tooldir):  # noqa: F811
    d, work = tooldir
    k = spawn_daemon("reset", config=f"tools:\n  dir: {d}\n  workdir: {work}\naccess:\n  mode: enforce\n")
    admin = (k.workdir / "data" / "admin.token").read_text().strip()
    bob = create(k.url, admin, "bob")
    old = create(k.url, admin, "alice")
    mid = seed(k.url, old, bob)
    wd = work / "alice" / "t%2Fwrite" / "ok.txt"
    assert wd.exists()
    assert cli(k.url, "agent", "revoke", "alice", token=admin).returncode == 0

    new = create(k.url, admin, "alice")
    r = query(k.url, new, "alice", "memory", "get_memory", memory_id=mid)
    assert r.status_code == 404, r.text
    r = query(k.url, new, "alice", "memory", "retrieve_memory", content="secret plan", k=3)
    assert r.status_code == 200 and r.json()["response"]["search_results"] == [], r.text
    r = query(k.url, new, "alice", "storage", "read", file_path="plan.txt")
    assert r.status_code == 404, r.text
    r = query(k.url, new, "alice", "storage", "list", dir_path="")
    assert r.status_code == 200 and "plan.txt" not in r.json()["response"]["response_message"], r.text
    r = query(k.url, new, "alice", "storage", "read", file_path="for-alice.txt", owner="bob")
    assert r.status_code == 403, r.text  # the share granted to the old alice is gone
    assert not wd.exists() and not (work / "alice").exists()
    # bob's own file is untouched
    r = query(k.url, bob, "bob", "storage", "read", file_path="for-alice.txt")
    assert r.status_code == 200 and r.json()["response"]["response_message"] == "from bob", r.text
    audit = (k.workdir / "data" / "audit.log").read_text()
    assert "revoked identity's data was deleted" in audit

    # an admin may hand the data over explicitly
    mid = seed(k.url, new, bob)
    assert cli(k.url, "agent", "revoke", "alice", token=admin).returncode == 0
    kept = create(k.url, admin, "alice", "--keep-data")
    r = query(k.url, kept, "alice", "memory", "get_memory", memory_id=mid)
    assert r.status_code == 200 and r.json()["response"]["content"] == "alice's secret plan", r.text
    r = query(k.url, kept, "alice", "storage", "read", file_path="for-alice.txt", owner="bob")
    assert r.status_code == 200 and r.json()["response"]["response_message"] == "from bob", r.text
    assert wd.exists()

"""
test_tools_access.py - the tool manager and the access manager against the real aiosd:
parallel tool calls, schema validation, the bubblewrap sandbox (workdir-only writes, no
network, fork bomb, memory hog, crash, output flood, timeout killing the process group),
per-tool limits, manifest reload, approvals (approve, deny, timeout) through the CLI and
the admin API, groups and rules in local and enforce mode, tokens (missing, unknown,
revoked), the audit log, a real MCP server from PyPI killed mid-session, and call_tool
with the real model.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import openai
import pytest
import requests

from aiosd_helpers import REPO, run_aiosd_to_exit

CLI = str(Path(os.environ.get("AIOSD", str(REPO / "build" / "aiosd"))).parent / "aios")

TOOLS = {
    "noop.json": {"name": "t/noop", "command": "/bin/cat", "max_parallel": 64,
                  "parameters": {"type": "object", "properties": {"x": {"type": "integer", "maximum": 10},
                                                                  "unit": {"enum": ["c", "f"]}},
                                 "required": ["x"]}},
    "write.json": {"name": "t/write", "command": "write.sh", "sandbox": {"fs": "workdir"}},
    "net.json": {"name": "t/net", "command": "/usr/bin/python3", "args": ["/tool/net.py"]},
    "netok.json": {"name": "t/netok", "command": "/usr/bin/python3", "args": ["/tool/net.py"], "sandbox": {"network": True}},
    "bomb.json": {"name": "t/bomb", "command": "bomb.sh", "timeout_ms": 4000, "limits": {"max_procs": 8}},
    "hog.json": {"name": "t/hog", "command": "/usr/bin/python3", "args": ["-c", "x = bytearray(1 << 30); print(len(x))"],
                 "limits": {"memory_mb": 128}},
    "crash.json": {"name": "t/crash", "command": "/usr/bin/python3", "args": ["-c", "import ctypes; ctypes.string_at(0)"]},
    "flood.json": {"name": "t/flood", "command": "/usr/bin/yes"},
    "hang.json": {"name": "t/hang", "command": "hang.sh", "timeout_ms": 1500, "sandbox": {"fs": "workdir"}},
    "slow.json": {"name": "t/slow", "command": "/bin/sh", "args": ["-c", "sleep 1; echo '\"slept\"'"], "max_parallel": 2},
    "danger.json": {"name": "t/danger", "command": "/bin/cat", "irreversible": True},
    "bad.json": {"name": "t/bad", "command": "/bin/cat", "max_parallel": "many"},
}
SCRIPTS = {
    "write.sh": "#!/bin/sh\ncat >/dev/null\necho hi > /work/ok.txt && echo work-ok\n"
                "for p in /tmp/x /tool/x /usr/x /x \"$HOST_DATA/x\"; do (echo x > $p) 2>/dev/null && echo LEAK:$p; done\nexit 0\n",
    "net.py": "import json, socket, sys\np = json.load(sys.stdin)\n"
              "try:\n    s = socket.socket(); s.settimeout(2)\n    s.connect((p['host'], p['port'])); print(json.dumps('connected'))\n"
              "except OSError as e:\n    print(json.dumps('refused: %s' % e))\n",
    "bomb.sh": "#!/bin/sh\nbomb() { bomb & bomb & }\nbomb\nsleep 2\necho '\"survived\"'\n",
    "hang.sh": "#!/bin/sh\n(while true; do date +%s%N > /work/alive; sleep 0.1; done) &\nsleep 600\n",
}


def make_tool_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="aios-tools-"))
    os.chmod(d, 0o755)
    for name, m in TOOLS.items():
        (d / name).write_text(json.dumps(m))
    for name, text in SCRIPTS.items():
        (d / name).write_text(text)
        os.chmod(d / name, 0o755)
    return d


def tool_query(url, calls, agent="alice", headers=None, timeout=60):
    body = {"agent_name": agent, "query_type": "tool", "query_data": {"tool_calls": calls}}
    return requests.post(url + "/query", json=body, headers=headers or {}, timeout=timeout)


@pytest.fixture(scope="module")
def tooldir():
    d = make_tool_dir()
    work = Path(tempfile.mkdtemp(prefix="aios-work-"))
    os.chmod(work, 0o755)
    yield d, work
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


RULES = """
access:
  approval_timeout: 3
  groups:
    default: ["llm:*", "tool:*"]
    restricted: ["llm:*", "tool:aios/*"]
    reader: ["llm:*", "tool:*", "memory:alice:read", "storage:alice:read"]
agents:
  mallory: {group: restricted}
  rita: {group: reader}
"""


@pytest.fixture(scope="module")
def kernel(tooldir, tmp_path_factory):
    from aiosd_helpers import Daemon
    d, work = tooldir
    wd = tmp_path_factory.mktemp("tools-kernel")
    cfg = wd / "aios.yaml"
    cfg.write_text(f"tools:\n  dir: {d}\n  workdir: {work}\n  max_output_bytes: 4096\n" + RULES)
    k = Daemon("tools", wd, ["--config", str(cfg)]).start()
    yield k
    k.stop_and_check()


def test_tool_calls_run_together_and_answer_each(kernel):
    r = tool_query(kernel.url, [{"name": "t/noop", "parameters": {"x": 3}},
                                {"name": "aios/calculator", "parameters": {"expression": "2+3*4"}},
                                {"name": "aios/time", "parameters": {}}])
    assert r.status_code == 200, r.text
    res = r.json()["response"]["tool_results"]
    assert [x["name"] for x in res] == ["t/noop", "aios/calculator", "aios/time"]
    assert res[0]["result"] == {"x": 3} and res[1]["result"] == {"result": 14}
    assert "utc" in res[2]["result"] and all(x["status_code"] == 200 for x in res)


@pytest.mark.parametrize("calls,status,needle", [
    ([{"name": "t/nope", "parameters": {}}], 404, "unknown tool 't/nope'"),
    ([{"name": "t/noop", "parameters": {"x": 30}}], 400, "parameters.x: 30 is above the maximum 10"),
    ([{"name": "t/noop", "parameters": {"x": "3"}}], 400, "parameters.x: expected an integer"),
    ([{"name": "t/noop", "parameters": {}}], 400, "missing required field 'x'"),
    ([{"name": "t/noop", "parameters": {"x": 1, "unit": "k"}}], 400, "parameters.unit"),
    ([{"name": "t/noop", "parameters": [1]}], 400, "must be an object"),
    ([{"parameters": {}}], 400, "needs a 'name'"),
    ([], 400, "non-empty list"),
    ([{"name": "aios/calculator", "parameters": {"expression": "1/0"}}], 400, "division by zero"),
])
def test_bad_tool_calls(kernel, calls, status, needle):
    r = tool_query(kernel.url, calls)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_too_many_calls(kernel):
    r = tool_query(kernel.url, [{"name": "aios/time", "parameters": {}}] * 17)
    assert r.status_code == 400 and "tools.max_calls" in r.json()["error"]["message"]


def test_bad_manifest_reported_with_file_and_field(kernel):
    listing = requests.get(kernel.url + "/v1/tools", timeout=10).json()
    names = {t["name"] for t in listing["tools"]}
    assert "t/noop" in names and "t/bad" not in names
    assert any(e["file"].endswith("bad.json") and "max_parallel" in e["error"] for e in listing["errors"])


def test_manifest_reload(kernel, tooldir):
    d, _ = tooldir
    (d / "added.json").write_text(json.dumps({"name": "t/added", "command": "/bin/cat"}))
    try:
        for _ in range(50):
            if any(t["name"] == "t/added" for t in requests.get(kernel.url + "/v1/tools", timeout=10).json()["tools"]):
                break
            time.sleep(0.1)
        r = tool_query(kernel.url, [{"name": "t/added", "parameters": {"a": 1}}])
        assert r.status_code == 200 and r.json()["response"]["tool_results"][0]["result"] == {"a": 1}
    finally:
        (d / "added.json").unlink()


def test_sandbox_writes_only_its_workdir(kernel, tooldir):
    _, work = tooldir
    r = tool_query(kernel.url, [{"name": "t/write", "parameters": {}}])
    assert r.status_code == 200, r.text
    out = r.json()["response"]["response_message"]
    assert "work-ok" in out and "LEAK" not in out
    assert (work / "alice" / "t%2Fwrite" / "ok.txt").read_text() == "hi\n"


def test_sandbox_network(kernel):
    """Without sandbox.network a tool reaches nothing; with it, anything but the kernel's own
    port (a landlock rule: in local mode the kernel's port would let it speak as any agent)."""
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(4)
    try:
        kport = {"host": "127.0.0.1", "port": kernel.port}
        oport = {"host": "127.0.0.1", "port": other.getsockname()[1]}
        r = tool_query(kernel.url, [{"name": "t/net", "parameters": oport}, {"name": "t/netok", "parameters": oport},
                                    {"name": "t/netok", "parameters": kport}])
        res = r.json()["response"]["tool_results"]
        assert res[0]["result"].startswith("refused"), res[0]
        assert res[1]["result"] == "connected", res[1]
        if landlock_abi() >= 4:
            assert res[2]["result"].startswith("refused") and "Permission denied" in res[2]["result"], res[2]
        else:  # an older Linux: no wall, and the kernel said so at start
            assert "no landlock network rules" in kernel.tail(400), kernel.tail(40)
    finally:
        other.close()


def landlock_abi() -> int:
    """landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION): 4 and up has TCP
    port rules (Linux 6.7+); an error (no landlock) reads as 0."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    v = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(v, 0)


def test_fork_bomb_and_memory_hog_are_contained(kernel):
    t0 = time.time()
    r = tool_query(kernel.url, [{"name": "t/bomb", "parameters": {}}, {"name": "t/hog", "parameters": {}}])
    assert r.status_code == 200, r.text
    bomb, hog = r.json()["response"]["tool_results"]
    assert bomb["status_code"] in (200, 408, 502) and time.time() - t0 < 20
    assert hog["status_code"] == 502 and "MemoryError" in hog["error"]["message"]
    assert tool_query(kernel.url, [{"name": "t/noop", "parameters": {"x": 1}}]).status_code == 200


def test_crash_and_flood(kernel):
    r = tool_query(kernel.url, [{"name": "t/crash", "parameters": {}}])
    assert r.status_code == 502 and "SIGSEGV" in r.json()["error"]["message"]
    r = tool_query(kernel.url, [{"name": "t/flood", "parameters": {}}])
    assert r.status_code == 413, r.text
    out = r.json()["response"]["response_message"]
    assert "[aios: output truncated at 4096 bytes" in out and len(out) < 4096 + 200


def test_timeout_kills_the_process_group(kernel, tooldir):
    _, work = tooldir
    t0 = time.time()
    r = tool_query(kernel.url, [{"name": "t/hang", "parameters": {}}], agent="hanger")
    assert r.status_code == 408 and "process group was killed" in r.json()["error"]["message"]
    assert time.time() - t0 < 10
    alive = work / "hanger" / "t%2Fhang" / "alive"
    before = alive.read_text()
    time.sleep(0.6)
    assert alive.read_text() == before, "a process of the timed-out tool is still running"


def test_per_tool_limit_queues_without_blocking_others(kernel):
    results = []
    def call():
        results.append(tool_query(kernel.url, [{"name": "t/slow", "parameters": {}}]))
    t0 = time.time()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    t1 = time.time()
    assert tool_query(kernel.url, [{"name": "aios/calculator", "parameters": {"expression": "1+1"}}]).status_code == 200
    assert time.time() - t1 < 0.5, "another tool waited behind the slow one"
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results)
    assert time.time() - t0 >= 1.9, "max_parallel 2 let more than 2 run at once"


def cli(url, *args, token=None):
    env = dict(os.environ, AIOS_URL=url)
    if token:
        env["AIOS_TOKEN"] = token
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=30)


def start_danger(url, box, agent="alice"):
    th = threading.Thread(target=lambda: box.append(tool_query(url, [{"name": "t/danger", "parameters": {"rm": "-rf"}}], agent=agent)))
    th.start()
    for _ in range(50):
        pend = json.loads(cli(url, "approvals").stdout)["approvals"]
        if pend:
            return th, pend[0]
        time.sleep(0.1)
    raise AssertionError("the irreversible call never showed up in `aios approvals`")


def test_approval_approve_deny_timeout(kernel):
    box = []
    th, ap = start_danger(kernel.url, box)
    assert ap["state"] == "awaiting_approval" and ap["tool"] == "t/danger" and ap["parameters"] == {"rm": "-rf"}
    assert cli(kernel.url, "approve", str(ap["id"])).returncode == 0
    th.join()
    assert box[0].status_code == 200 and box[0].json()["response"]["tool_results"][0]["result"] == {"rm": "-rf"}
    box = []
    th, ap = start_danger(kernel.url, box)
    r = requests.post(kernel.url + "/admin/approvals/decide", json={"id": ap["id"], "decision": "deny"}, timeout=10)
    assert r.status_code == 200
    th.join()
    assert box[0].status_code == 403 and "denied" in box[0].json()["error"]["message"]
    t0 = time.time()
    r = tool_query(kernel.url, [{"name": "t/danger", "parameters": {}}])
    assert r.status_code == 403 and "approval_timeout" in r.json()["error"]["message"]
    assert 2.5 < time.time() - t0 < 8
    assert cli(kernel.url, "approve", "999999").returncode != 0


def test_local_mode_groups(kernel):
    url = kernel.url
    mem = {"agent_name": "alice", "query_type": "memory",
           "query_data": {"operation_type": "add_memory", "params": {"content": "alice's secret"}}}
    mid = requests.post(url + "/query", json=mem, timeout=30).json()["response"]["memory_id"]
    st = {"agent_name": "alice", "query_type": "storage",
          "query_data": {"operation_type": "write", "params": {"file_path": "s.txt", "content": "alice file"}}}
    assert requests.post(url + "/query", json=st, timeout=30).status_code == 200
    get = lambda agent: requests.post(url + "/query", json={"agent_name": agent, "query_type": "memory", "query_data": {
        "operation_type": "get_memory", "params": {"memory_id": mid, "owner": "alice"}}}, timeout=30)
    read = lambda agent: requests.post(url + "/query", json={"agent_name": agent, "query_type": "storage", "query_data": {
        "operation_type": "read", "params": {"file_path": "s.txt", "owner": "alice"}}}, timeout=30)
    assert get("mallory").status_code == 403 and read("mallory").status_code == 403
    assert get("rita").status_code == 200 and get("rita").json()["response"]["content"] == "alice's secret"
    assert read("rita").status_code == 200
    upd = requests.post(url + "/query", json={"agent_name": "rita", "query_type": "memory", "query_data": {
        "operation_type": "update_memory", "params": {"memory_id": mid, "content": "x", "owner": "alice"}}}, timeout=30)
    assert upd.status_code == 403
    r = tool_query(url, [{"name": "t/noop", "parameters": {"x": 1}}], agent="mallory")
    assert r.status_code == 403 and "mallory" in r.json()["error"]["message"]
    assert tool_query(url, [{"name": "aios/calculator", "parameters": {"expression": "2"}}], agent="mallory").status_code == 200
    lines = [json.loads(l) for l in (kernel.workdir / "data" / "audit.log").read_text().splitlines()]
    assert any(l["agent"] == "mallory" and l["decision"] == "deny" and l["resource"] == "tool:t/noop" for l in lines)
    assert all({"time", "agent", "resource", "action", "decision"} <= l.keys() for l in lines)
    assert any(l["action"] == "run" and "params_sha256" in l and "ms" in l for l in lines)


def test_call_tool_runs_every_call_the_model_made(kernel):
    tools = [{"type": "function", "function": {"name": "aios/calculator"}},
             {"type": "function", "function": {"name": "aios/time"}}]
    msgs = [{"role": "user", "content": "Compute 6*7 with the calculator and also tell me the time."}]
    base = {"messages": msgs, "tools": tools, "temperature": 0, "max_new_tokens": 96}
    plan = requests.post(kernel.url + "/query", json={"agent_name": "planner", "query_type": "llm", "query_data": {
        **base, "action_type": "chat_with_tool_call_output"}}, timeout=120)
    assert plan.status_code == 200, plan.text
    planned = [c["name"] for c in plan.json()["response"]["tool_calls"]]
    run = requests.post(kernel.url + "/query", json={"agent_name": "planner", "query_type": "llm", "query_data": {
        **base, "action_type": "call_tool"}}, timeout=120)
    if run.status_code != 200:  # the model's parameters can fail validation; then it says which
        assert run.status_code == 400 and "tool '" in run.json()["error"]["message"], run.text
        return
    resp = run.json()["response"]
    assert resp["response_class"] == "tool"
    ran = [x["name"] for x in resp["tool_results"]]
    assert ran == planned or (not ran and resp["response_message"] == "the model made no tool call"), (planned, resp)
    assert all(x["status_code"] == 200 for x in resp["tool_results"])


def test_beyond_loopback_needs_enforce():
    r = run_aiosd_to_exit(["--host", "0.0.0.0", "--check-config"], with_model=False)
    assert r.returncode != 0 and "access.mode: enforce" in r.stderr


def test_enforce_mode(spawn_daemon, tooldir):
    d, work = tooldir
    k = spawn_daemon("enforce", config=f"tools:\n  dir: {d}\n  workdir: {work}\naccess:\n  mode: enforce\n"
                     "  groups:\n    restricted: [\"llm:*\", \"tool:aios/*\"]\n")
    admin = (k.workdir / "data" / "admin.token").read_text().strip()
    assert requests.get(k.url + "/status", timeout=10).status_code == 401
    assert requests.get(k.url + "/status", headers={"Authorization": "Bearer aios_bogus"}, timeout=10).status_code == 401
    out = cli(k.url, "agent", "create", "alice", token=admin)
    assert out.returncode == 0, out.stderr
    ta = json.loads(out.stdout)["token"]
    tb = json.loads(cli(k.url, "agent", "create", "bob", "--group", "restricted", token=admin).stdout)["token"]
    assert cli(k.url, "agent", "create", "carol", token=tb).returncode != 0  # bob is no admin
    ha, hb = {"Authorization": f"Bearer {ta}"}, {"Authorization": f"Bearer {tb}"}
    assert "token" not in cli(k.url, "agent", "list", token=admin).stdout
    mem = requests.post(k.url + "/query", headers=ha, timeout=30, json={"agent_name": "alice", "query_type": "memory",
        "query_data": {"operation_type": "add_memory", "params": {"content": "a"}}})
    mid = mem.json()["response"]["memory_id"]
    r = requests.post(k.url + "/query", headers=hb, timeout=30, json={"agent_name": "bob", "query_type": "memory",
        "query_data": {"operation_type": "get_memory", "params": {"memory_id": mid, "owner": "alice"}}})
    assert r.status_code == 403
    st = lambda h, agent, op, params: requests.post(k.url + "/query", headers=h, timeout=30, json={
        "agent_name": agent, "query_type": "storage", "query_data": {"operation_type": op, "params": params}})
    assert st(ha, "alice", "write", {"file_path": "s.txt", "content": "alice file"}).status_code == 200
    assert st(hb, "bob", "read", {"file_path": "s.txt", "owner": "alice"}).status_code == 403
    assert st(ha, "alice", "read", {"file_path": "s.txt"}).json()["response"]["response_message"] == "alice file"
    r = requests.post(k.url + "/query", headers=hb, timeout=30, json={"agent_name": "alice", "query_type": "memory",
        "query_data": {"operation_type": "get_memory", "params": {"memory_id": mid}}})
    assert r.status_code == 403 and "token names agent 'bob'" in r.json()["error"]["message"]
    assert tool_query(k.url, [{"name": "t/noop", "parameters": {"x": 1}}], agent="bob", headers=hb).status_code == 403
    assert tool_query(k.url, [{"name": "t/noop", "parameters": {"x": 1}}], agent="alice", headers=ha).status_code == 200
    client = openai.OpenAI(base_url=k.url + "/v1", api_key=ta)
    c = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert c.choices[0].message.content is not None
    assert cli(k.url, "agent", "revoke", "alice", token=admin).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def mcp_server_path() -> str:
    out = subprocess.run(["bash", str(REPO / "scripts" / "fetch-mcp-server.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_mcp_server_tools_and_restart(spawn_daemon):
    exe = mcp_server_path()
    k = spawn_daemon("mcp", config=f"tools:\n  mcp_servers:\n    - name: time\n      command: {exe}\n"
                                   "      args: [\"--local-timezone\", \"UTC\"]\n")
    for _ in range(100):
        names = {t["name"] for t in requests.get(k.url + "/v1/tools", timeout=10).json()["tools"]}
        if "time/get_current_time" in names:
            break
        time.sleep(0.1)
    assert "time/get_current_time" in names and "time/convert_time" in names
    call = [{"name": "time/get_current_time", "parameters": {"timezone": "Europe/Paris"}}]
    r = tool_query(k.url, call)
    assert r.status_code == 200, r.text
    assert r.json()["response"]["tool_results"][0]["result"]["timezone"] == "Europe/Paris"
    assert tool_query(k.url, [{"name": "time/get_current_time", "parameters": {}}]).status_code == 400
    bad = tool_query(k.url, [{"name": "time/get_current_time", "parameters": {"timezone": "Mars/Base"}}])
    assert bad.status_code == 502 and "Invalid timezone" in bad.json()["error"]["message"]
    kids = subprocess.run(["pgrep", "-P", str(k.proc.pid)], capture_output=True, text=True).stdout.split()
    assert kids, "no MCP server child"
    for pid in kids:
        os.kill(int(pid), signal.SIGKILL)
    r = tool_query(k.url, call, timeout=60)
    assert r.status_code == 200, r.text
    m = requests.get(k.url + "/metrics", timeout=10).text
    assert "aios_mcp_restarts_total 1" in m

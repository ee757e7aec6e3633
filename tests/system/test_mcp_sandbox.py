"""
test_mcp_sandbox.py - MCP servers run sandboxed (docs/tools.md, "MCP servers"): a real aiosd
in enforce mode (so <data_dir>/admin.token exists) starts tests/system/mcp_probe_server.py,
and its `probe` tool, called through the kernel (query_type tool), reports what it could
reach. Without `network` it reads no admin token, no model file, no data dir, writes
nothing but /work, opens no socket and sees none of the kernel's environment; with
`network: true` a socket to another port connects, but not to the kernel's own port (a
landlock rule, where Linux has it: the server must not speak to the kernel as any agent). A server with `group` serves only
that group (and admins): anyone else gets 403. A server whose ro_paths would expose the
data dir is not started. Its stderr reaches the kernel's log under its name.
"""
import json
import socket
import os
import shutil
import time
from pathlib import Path

import pytest
import requests

from test_tools_access import landlock_abi
from aiosd_helpers import default_model_path

PROBE = Path(__file__).resolve().parent / "mcp_probe_server.py"
SECRET = "aios-kernel-secret-4f1c"


def query(k, token, agent, calls, timeout=60):
    body = {"agent_name": agent, "query_type": "tool", "query_data": {"tool_calls": calls}}
    return requests.post(k.url + "/query", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


def wait_tools(k, token, names, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(k.url + "/v1/tools", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        have = {t["name"] for t in r.json()["tools"]}
        if names <= have:
            return have
        time.sleep(0.1)
    raise AssertionError(f"tools {names} not listed; kernel log:\n{k.tail(40)}")


def create_agent(k, admin, name, group):
    r = requests.post(k.url + "/admin/agents", json={"name": name, "group": group},
                      headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def probe(k, token, agent, tool, port=None):
    args = {"data_dir": str(k.workdir / "data"), "cache_file": default_model_path(), "port": port or k.port,
            "secret_var": "MCP_PROBE_SECRET"}
    r = query(k, token, agent, [{"name": tool, "parameters": args}])
    assert r.status_code == 200, r.text
    return r.json()["response"]["tool_results"][0]["result"]


@pytest.fixture
def probe_kernel(spawn_daemon, tmp_path, monkeypatch):
    """One kernel with three probe servers: `probe` (defaults), `netprobe` (network: true,
    group netgroup) and `leaky` (ro_paths holding the data dir: must not start)."""
    pdir = tmp_path / "probe-bin"
    pdir.mkdir()
    shutil.copy(PROBE, pdir / PROBE.name)
    os.chmod(pdir, 0o755)
    os.chmod(pdir / PROBE.name, 0o644)
    monkeypatch.setenv("MCP_PROBE_SECRET", SECRET)  # in the kernel's environment only
    server = (f"      command: /usr/bin/python3\n      args: [\"{pdir / PROBE.name}\"]\n"
              f"      ro_paths: [\"{pdir}\"]\n")
    cfg = ("tools:\n  mcp_servers:\n"
           "    - name: probe\n" + server + "      env: {PROBE_GREETING: hello}\n"
           "    - name: netprobe\n" + server + "      env: [\"PROBE_GREETING=net\"]\n      network: true\n"
           "      group: netgroup\n      memory_mb: 256\n"
           "    - name: leaky\n      command: /usr/bin/python3\n"
           f"      args: [\"{pdir / PROBE.name}\"]\n      ro_paths: [\"{tmp_path}\"]\n"
           "access:\n  mode: enforce\n  groups:\n    netgroup: [\"llm:*\", \"tool:*\"]\n")
    k = spawn_daemon("mcpsandbox", config=cfg)
    admin = (k.workdir / "data" / "admin.token").read_text().strip()
    wait_tools(k, admin, {"probe/probe", "netprobe/probe"})
    return k, admin


def test_mcp_sandbox_refuses_everything_but_work(probe_kernel):
    k, admin = probe_kernel
    assert (k.workdir / "data" / "admin.token").exists() and Path(default_model_path()).exists()
    rep = probe(k, admin, "admin", "probe/probe")
    for what in ("admin_token", "cache_file", "data_list", "write_tmp", "write_etc", "socket", "secret"):
        assert not rep[what]["ok"], f"the sandboxed server reached {what}: {rep[what]}"
    assert rep["write_work"]["ok"], rep["write_work"]
    assert (k.workdir / "data" / "tools" / ".mcp" / "probe" / "probe.txt").read_text() == "probe\n"
    assert rep["cwd"] == "/work"
    # PWD is bubblewrap's (--chdir); nothing of the kernel's environment
    assert set(rep["env"]) <= {"PATH", "HOME", "LANG", "PWD", "PROBE_GREETING"}, rep["env"]
    assert rep["greeting"] == "hello"
    if os.geteuid() == 0:
        assert rep["uid"] != 0, "a root kernel must run the server under a uid of its own"
    log = k.stderr_path.read_text()
    assert "mcp probe: stderr: probe-server-started" in log
    assert "mcp leaky: not started" in log and "would expose the data dir" in log
    names = {t["name"] for t in requests.get(k.url + "/v1/tools", headers={"Authorization": f"Bearer {admin}"},
                                             timeout=10).json()["tools"]}
    assert not any(n.startswith("leaky/") for n in names)


def test_mcp_network_true_and_group(probe_kernel):
    k, admin = probe_kernel
    outsider = create_agent(k, admin, "outsider", "default")
    insider = create_agent(k, admin, "insider", "netgroup")
    args = [{"name": "netprobe/probe", "parameters": {"port": k.port}}]
    r = query(k, outsider, "outsider", args)
    assert r.status_code == 403, r.text
    assert "serves only group 'netgroup'" in r.json()["error"]["message"]
    assert query(k, outsider, "outsider", [{"name": "probe/probe", "parameters": {}}]).status_code == 200
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(4)
    try:
        rep = probe(k, insider, "insider", "netprobe/probe", port=other.getsockname()[1])
        assert rep["socket"]["ok"], f"network: true, yet no socket: {rep['socket']}"
        assert probe(k, admin, "admin", "netprobe/probe", port=other.getsockname()[1])["socket"]["ok"]  # admins may call it too
    finally:
        other.close()
    wall = probe(k, insider, "insider", "netprobe/probe")["socket"]  # the kernel's own port
    if landlock_abi() >= 4:
        assert not wall["ok"] and "Permission denied" in wall["detail"], wall
    else:
        assert "no landlock network rules" in k.tail(400), k.tail(40)
    assert rep["greeting"] == "net"
    for what in ("admin_token", "cache_file", "data_list", "write_tmp", "write_etc", "secret"):
        assert not rep[what]["ok"], f"the sandboxed server reached {what}: {rep[what]}"
    audit = (k.workdir / "data" / "audit.log").read_text().splitlines()
    denied = [json.loads(line) for line in audit if '"outsider"' in line and "netprobe" in line]
    assert any(e["decision"] == "deny" for e in denied)

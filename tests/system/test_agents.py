"""System tier: agents as processes the kernel runs (issue 14, parts 1-4; docs/agents.md).

The real aiosd starts tests/agents/probe.sh (a shell agent that speaks to the kernel with
curl through the token and URLs the kernel put in its environment) in its sandbox, and the
Cerebrum-layout package examples/agents/story_teller through AIOS's /agents/submit:
- a native agent runs to `exited 0`: its LLM, memory and tool syscalls are its own (record
  counters, audit lines, /metrics), ps / inspect / logs / `aios logs -f` show it;
- stop parks its generation (no decode step while stopped), cont resumes it, and its text is
  byte-identical to a solo run at temperature 0;
- kill ends it: its process is gone, its token gets 401, its generation's KV is freed;
- limits.memory_mb: the agent is killed as out of memory and reported so;
- network kernel-only: another loopback port is unreachable (and reachable with `full`);
- where the host delegates a cgroup v2 directory (the test finds it as the kernel would), each
  agent runs in a cgroup of its own: stop freezes it (cgroup.freeze), kill empties it
  (cgroup.kill), and its directory goes; with `agents.cgroup: off`, signals do the same;
- restart: on-failure restarts a failing agent; a kernel killed under its agents finds them
  `lost` after its restart, and restarts the on-failure ones;
- AIOS shapes: submit, status (completed with the result), ps;
- bad specs, unknown ids and wrong states get clear errors; agents.max_running holds.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from aiosd_helpers import REPO, Daemon, free_port, wait_for

PROBE_DIR = REPO / "tests" / "agents"
AIOS = Path(os.environ["AIOSD"]).parent / "aios"
STORY = "Write a long story about a lighthouse keeper."


def config(tmp: Path, workdir: Path | None = None) -> list[str]:
    cfg = tmp / "agents.yaml"
    tools = Path(tempfile.mkdtemp(prefix="aios-agents-tools-"))  # reachable by the tools' uids, as workdir below
    atexit.register(shutil.rmtree, tools, True)
    os.chmod(tools, 0o755)
    (tools / "slow.json").write_text(json.dumps({"name": "t/slow", "command": "/bin/sh",
                                                 "args": ["-c", "sleep 4; echo '\"ok\"'"]}))
    (tools / "work").mkdir(mode=0o755)
    cfg.write_text(f"""
tools:
  dir: {tools}
  workdir: {tools / 'work'}
agents:
  {f'workdir: {workdir}' if workdir else ''}
  dir: {REPO / 'examples' / 'agents'}
  cerebrum_runner: /usr/bin/python3 {REPO / 'examples' / 'agents' / 'cerebrum_runner.py'}
  max_running: 6
  max_restarts: 1
""")
    return ["--config", str(cfg)]


def _kernel(tmp_path_factory, name: str, extra: list[str]):
    """Agents' files outside pytest's private (0700) tree, so that a root kernel runs them
    under uids of their own; the restart test below keeps them inside it (the kernel's uid)."""
    wd = tmp_path_factory.mktemp(name)
    work = Path(tempfile.mkdtemp(prefix="aios-agents-"))
    os.chmod(work, 0o755)
    d = Daemon(name, wd, config(wd, work) + extra).start()
    d.agent_dir = work
    yield d
    d.stop_and_check()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    yield from _kernel(tmp_path_factory, "agents", [])


@pytest.fixture(scope="module")
def det_kernel(tmp_path_factory):
    """The same in deterministic mode, for a byte comparison with a solo run (normal mode
    rounds by batch shape and attention view, docs/architecture.md)."""
    yield from _kernel(tmp_path_factory, "agents-det", ["--set", "scheduler.deterministic=1"])


def start(k: Daemon, mode: list[str], **spec) -> str:
    body = {"package_dir": str(PROBE_DIR), "command": ["/bin/sh", "/agent/probe.sh", *mode], **spec}
    r = requests.post(k.url + "/agents", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def record(k: Daemon, aid: str) -> dict:
    r = requests.get(f"{k.url}/agents/{aid}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_state(k: Daemon, aid: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    rec = wait_for(lambda: (lambda g: g if g["state"] in states else None)(record(k, aid)), timeout)
    assert rec, f"agent {aid} never reached {states}: {record(k, aid)}\n{logs(k, aid)}"
    return rec


def logs(k: Daemon, aid: str) -> str:
    return requests.get(f"{k.url}/agents/{aid}/logs", timeout=10).text


def model_status(k: Daemon) -> dict:
    return requests.get(k.url + "/status", timeout=10).json()["llms"][0]


def decode_steps(k: Daemon) -> float:
    for line in requests.get(k.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("aios_decode_steps_total{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no aios_decode_steps_total")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]


def host_cgroup() -> Path | None:
    """The cgroup v2 directory a kernel started by this process would be given (its own cgroup
    on the cgroup2 mount), when it is writable; else None."""
    own = next((line[3:].strip() for line in Path("/proc/self/cgroup").read_text().splitlines()
                if line.startswith("0::")), None)
    mount = next((line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if " - cgroup2 " in line), None)
    if own is None or mount is None:
        return None
    base = Path(mount + (own if own != "/" else ""))
    ok = (base / "cgroup.subtree_control").exists() and os.access(base, os.W_OK | os.X_OK)
    return base if ok else None


def proc_states(pids) -> set[str]:
    out = set()
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        out.add(next(line.split()[1] for line in status.splitlines() if line.startswith("State:")))
    return out


def ns_pids(pid: int) -> list[int]:
    """pid (bubblewrap) and every process in the pid namespace of its child (the agent's)."""
    def stat(d: Path) -> tuple[int, str] | None:
        try:
            return int(d.name), (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, ValueError, IndexError):
            return None
    procs = [s for s in (stat(d) for d in Path("/proc").iterdir() if d.name.isdigit()) if s]
    child = next((p for p, ppid in procs if ppid == str(pid)), None)
    if child is None:
        return [pid]
    ns = os.readlink(f"/proc/{child}/ns/pid")
    out = [pid]
    for p, _ in procs:
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == ns:
                out.append(p)
        except OSError:
            pass
    return out


def test_cgroup_freezes_and_kills(kernel):
    base = host_cgroup()
    aid = start(kernel, ["sleep", "60"], name="probe-cgroup")
    rec = wait_state(kernel, aid, ("running",))
    mech, pid = rec["limits"]["mechanism"], rec["pid"]
    if base is None:  # nothing delegated here: the record says so, and signals stand in
        assert mech["cgroup"] == "" and mech["stop"] == "SIGSTOP" and "no cgroup" in rec["limits"]["applied"], rec
        return
    cg = Path(mech["cgroup"])
    assert cg.parent == base / f"aios-{kernel.proc.pid}" and cg.name == f"agent-{aid}", (base, mech)
    assert mech["stop"] == "cgroup.freeze" and mech["kill"] == "cgroup.kill", mech
    assert (lambda own: own.endswith(f"/aios-{kernel.proc.pid}/agent-{aid}"))(
        next(line[3:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))), pid
    assert wait_for(lambda: len((cg / "cgroup.procs").read_text().split()) >= 3, 10), (cg / "cgroup.procs").read_text()
    procs = [int(x) for x in (cg / "cgroup.procs").read_text().split()]
    assert pid in procs and set(ns_pids(pid)) <= set(procs), (procs, ns_pids(pid))
    r = requests.post(f"{kernel.url}/agents/{aid}/stop", timeout=10)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: "frozen 1" in (cg / "cgroup.events").read_text(), 10), (cg / "cgroup.events").read_text()
    assert record(kernel, aid)["frozen"] is True
    assert "T" not in proc_states(procs), proc_states(procs)  # frozen, not stopped by a signal
    r = requests.post(f"{kernel.url}/agents/{aid}/cont", timeout=10)
    assert r.status_code == 200, r.text
    assert wait_for(lambda: "frozen 0" in (cg / "cgroup.events").read_text(), 10)
    requests.post(f"{kernel.url}/agents/{aid}/stop", timeout=10)  # kill works on a frozen agent too
    r = requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
    assert r.status_code == 200, r.text
    rec = wait_state(kernel, aid, ("killed",), 10)
    assert rec.get("signal_name") == "KILL", rec
    assert wait_for(lambda: not cg.exists(), 10), list(cg.iterdir())
    assert not any(pid_alive(p) for p in procs)


def test_without_cgroup_signals_apply(tmp_path):
    cfg = config(tmp_path)
    Path(cfg[1]).write_text(Path(cfg[1]).read_text() + "  cgroup: \"off\"\n")
    d = Daemon("agents-nocg", tmp_path, cfg).start()
    try:
        aid = start(d, ["sleep", "60"], name="probe-nocg")
        rec = wait_state(d, aid, ("running",))
        assert rec["limits"]["mechanism"] == {"cgroup": "", "memory_mb": "watchdog", "cpu_weight": "nice", "pids": "none",
                                              "stop": "SIGSTOP", "kill": "SIGKILL"}, rec
        assert "agents.cgroup is off" in rec["limits"]["applied"], rec
        assert wait_for(lambda: len(ns_pids(rec["pid"])) >= 3, 10)
        pids = ns_pids(rec["pid"])
        assert requests.post(f"{d.url}/agents/{aid}/stop", timeout=10).status_code == 200
        assert wait_for(lambda: proc_states(pids) == {"T"}, 10), proc_states(pids)
        assert requests.post(f"{d.url}/agents/{aid}/cont", timeout=10).status_code == 200
        assert wait_for(lambda: "T" not in proc_states(pids), 10), proc_states(pids)
        assert requests.post(f"{d.url}/agents/{aid}/kill", timeout=10).status_code == 200
        assert wait_state(d, aid, ("killed",), 10)
        assert not any(pid_alive(p) for p in pids)
    finally:
        d.stop_and_check()


def test_native_agent_runs_as_itself(kernel):
    aid = start(kernel, ["work"], name="probe-work")
    rec = wait_state(kernel, aid, ("exited", "killed"))
    out = logs(kernel, aid)
    assert rec["state"] == "exited" and rec["exit_code"] == 0, (rec, out)
    assert rec["result"] == {"done": True, "answer": 42}, out
    assert '"result":42' in out and "probe was here" in out and "stderr line" in out, out
    # every syscall was its own: the record, the audit log, the per-agent service metrics
    assert rec["syscalls"] >= 4 and rec["tools_run"] == 1 and rec["tokens"] > 0, rec
    assert rec["network"]["mode"] == "kernel-only" and rec["network"]["applied"], rec
    audit = (kernel.workdir / "data" / "audit.log").read_text()
    assert '"agent":"probe-work"' in audit.replace(" ", ""), audit[-2000:]
    metrics = requests.get(kernel.url + "/metrics", timeout=10).text
    assert 'agent="probe-work"' in metrics
    # its token was revoked when it ended; the identity is listed as revoked
    ids = requests.get(kernel.url + "/admin/agents", timeout=10).json()
    mine = [i for i in ids["agents"] if i["name"] == "probe-work"]
    assert mine and all(i["revoked"] for i in mine), ids
    # ps, inspect and logs through the CLI
    env = {**os.environ, "AIOS_URL": kernel.url}
    ps = subprocess.run([str(AIOS), "ps"], capture_output=True, text=True, env=env, timeout=30)
    assert ps.returncode == 0 and aid in ps.stdout and "probe-work" in ps.stdout, ps
    insp = subprocess.run([str(AIOS), "inspect", aid], capture_output=True, text=True, env=env, timeout=30)
    assert insp.returncode == 0 and json.loads(insp.stdout)["id"] == aid, insp
    lg = subprocess.run([str(AIOS), "logs", aid], capture_output=True, text=True, env=env, timeout=30)
    assert lg.returncode == 0 and lg.stdout == out, lg


def test_logs_follow_streams_to_the_end(kernel):
    env = {**os.environ, "AIOS_URL": kernel.url}
    aid = start(kernel, ["generate", "24"], name="probe-follow")
    f = subprocess.run([str(AIOS), "logs", "-f", aid], capture_output=True, text=True, env=env, timeout=120)
    assert f.returncode == 0, f
    assert '"completion_tokens":24' in f.stdout, f.stdout
    assert f"agent {aid} exited (exit code 0)" in f.stderr, f.stderr
    # aios run -f: the agent's exit code is the command's
    run = subprocess.run([str(AIOS), "run", "-f", "--name", "probe-fail", "--ro", "/usr", "--", "/bin/sh", "-c",
                          "echo out; echo err >&2; exit 4"], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 4 and "out\nerr\n" in run.stdout, run


def test_stop_parks_and_cont_resumes_exactly(det_kernel):
    tokens = 300
    solo = requests.post(det_kernel.url + "/v1/chat/completions", timeout=600, json={
        "messages": [{"role": "user", "content": STORY}], "max_tokens": tokens, "temperature": 0,
        "ignore_eos": True}).json()["choices"][0]["message"]["content"]
    aid = start(det_kernel, ["generate", str(tokens)], name="probe-stop")
    assert wait_for(lambda: model_status(det_kernel)["active"] == 1, 30), model_status(det_kernel)
    time.sleep(0.3)
    r = requests.post(f"{det_kernel.url}/agents/{aid}/stop", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "stopped", r.text
    assert wait_for(lambda: model_status(det_kernel)["parked"] + model_status(det_kernel)["preempted_waiting"] >= 1, 10), \
        model_status(det_kernel)
    steps = decode_steps(det_kernel)
    time.sleep(1.5)
    assert decode_steps(det_kernel) == steps, "tokens were generated while the agent was stopped"
    assert model_status(det_kernel)["active"] == 0, model_status(det_kernel)
    r = requests.post(f"{det_kernel.url}/agents/{aid}/cont", timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "running", r.text
    rec = wait_state(det_kernel, aid, ("exited", "killed"), 600)
    assert rec["exit_code"] == 0, rec
    answer = json.loads(logs(det_kernel, aid).strip().splitlines()[-1])
    assert answer["usage"]["completion_tokens"] == tokens
    assert answer["choices"][0]["message"]["content"] == solo


def test_kill_ends_it_revokes_its_token_and_frees_its_kv(kernel):
    kv_before = model_status(kernel)["kv_used"]  # (the prefix cache's entries of earlier tests)
    aid = start(kernel, ["token-then-generate", "2000"], name="probe-kill")
    token_file = kernel.agent_dir / aid / "work" / "token"
    assert wait_for(lambda: token_file.exists() and token_file.read_text().strip(), 30), logs(kernel, aid)
    token = token_file.read_text().strip()
    ok = requests.get(kernel.url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200, ok.text
    assert wait_for(lambda: model_status(kernel)["active"] == 1, 30), model_status(kernel)
    pid = record(kernel, aid)["pid"]
    r = requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
    assert r.status_code == 200, r.text
    rec = wait_state(kernel, aid, ("killed",), 30)
    assert rec.get("signal_name") == "KILL" and rec["reason"] == "killed by an operator", rec
    assert not pid_alive(pid)
    after = requests.get(kernel.url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert after.status_code == 401, after.text
    assert wait_for(lambda: (lambda m: m["active"] == 0 and m["parked"] == 0 and m["kv_used"] <= kv_before)(model_status(kernel)),
                    10), (kv_before, model_status(kernel))
    r = requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
    assert r.status_code == 400 and "killed" in r.json()["error"]["message"], r.text


def test_record_shows_what_it_holds(kernel):
    """A live agent's record (and so aios top and /ui) shows its KV cells, tool calls running,
    memory blocks and stored files, from the managers that hold them."""
    aid = start(kernel, ["hold", "400"], name="probe-hold")
    rec = wait_for(lambda: (lambda g: g if g.get("kv_cells", 0) > 0 and g.get("tools_running") == 1 else None)(
        record(kernel, aid)), 60)
    assert rec, (record(kernel, aid), logs(kernel, aid))
    assert rec["kv_cells"] <= model_status(kernel)["kv_used"], (rec, model_status(kernel))
    assert rec["memory"]["blocks"] == 1 and rec["memory"]["resident_bytes"] > 0, rec
    assert rec["storage"] == {"files": 1, "bytes": len("twelve bytes")}, rec
    listed = next(g for g in requests.get(kernel.url + "/agents", timeout=10).json()["agents"] if g["id"] == aid)
    assert listed["kv_cells"] > 0 and listed["storage"]["files"] == 1, listed
    requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
    done = wait_state(kernel, aid, ("killed",))
    assert "kv_cells" not in done and "memory" not in done, done  # only a live agent holds anything


def test_agent_token_is_not_an_admin(kernel):
    """Local mode lets loopback clients use the admin routes, but not with an agent's token:
    a kernel-run agent is held to its group's rules (docs/agents.md)."""
    aid = start(kernel, ["admin"], name="probe-admin")
    wait_state(kernel, aid, ("exited",))
    assert "admin route with my token: 403" in logs(kernel, aid), logs(kernel, aid)


def test_memory_limit_kills_it_as_out_of_memory(kernel):
    aid = start(kernel, ["hog", "200"], name="probe-hog", limits={"memory_mb": 64})
    rec = wait_state(kernel, aid, ("killed", "exited"), 60)
    assert rec["state"] == "killed" and "out of memory" in rec["reason"] and "memory_mb 64" in rec["reason"], rec
    if rec["limits"]["mechanism"]["memory_mb"] == "memory.max":  # the host's OOM killer, in its cgroup
        assert "cgroup memory.max" in rec["reason"], rec
    else:  # the kernel's watchdog saw it above the limit
        assert rec["limits"]["mechanism"]["memory_mb"] == "watchdog" and rec["peak_rss_kb"] > 64 * 1024, rec
    assert "hog survived" not in logs(kernel, aid)


def test_network_kernel_only(kernel):
    import http.server
    import threading
    port = free_port()
    srv = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        walled = start(kernel, ["connect", str(port)], name="probe-walled")
        full = start(kernel, ["connect", str(port)], name="probe-full", network="full")
        for aid, want in ((walled, "connect refused"), (full, "connect ok")):
            rec = wait_state(kernel, aid, ("exited",), 60)
            assert want in logs(kernel, aid), (rec, logs(kernel, aid))
    finally:
        srv.shutdown()


def test_restart_on_failure(kernel):
    aid = start(kernel, ["fail"], name="probe-restart", restart="on-failure")
    rec = wait_for(lambda: (lambda g: g if g["restarts"] == 1 and g["state"] == "exited" else None)(record(kernel, aid)), 30)
    assert rec and rec["exit_code"] == 3, record(kernel, aid)
    time.sleep(2.5)  # agents.max_restarts is 1: it stays ended
    assert record(kernel, aid)["restarts"] == 1 and record(kernel, aid)["state"] == "exited"


def test_aios_submit_status_ps(kernel):
    r = requests.post(kernel.url + "/agents/submit", timeout=30,
                      json={"agent_id": "example/story_teller", "agent_config": {"task": "a lighthouse"}})
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    eid = r.json()["execution_id"]
    st = wait_for(lambda: (lambda s: s if s["status"] != "running" else None)(
        requests.get(f"{kernel.url}/agents/{eid}/status", timeout=10).json()), 120)
    assert st and st["status"] == "completed", (st, logs(kernel, eid))
    assert st["execution_id"] == eid and st["result"]["result"], st
    ps = requests.get(kernel.url + "/agents/ps", timeout=10).json()
    assert ps["status"] == "success" and any(p["execution_id"] == eid and p["agent_id"] == "story_teller"
                                             for p in ps["processes"]), ps
    bad = requests.post(kernel.url + "/agents/submit", json={"agent_id": "nobody/none"}, timeout=10)
    assert bad.status_code == 404 and "not installed" in bad.json()["error"]["message"], bad.text


@pytest.mark.parametrize("spec,status,needle", [
    ({}, 400, "'command'"),
    ({"command": []}, 400, "'command' must hold"),
    ({"command": ["x/y"]}, 400, "absolute path"),
    ({"command": ["/bin/true"], "limits": {"memory_mb": -1}}, 400, "limits.memory_mb"),
    ({"command": ["/bin/true"], "limits": {"cpus": 1}}, 400, "unknown key 'cpus'"),
    ({"command": ["/bin/true"], "network": "internet"}, 400, "'network' must be one of"),
    ({"command": ["/bin/true"], "restart": "always"}, 400, "'restart' must be one of"),
    ({"command": ["/bin/true"], "env": {"AIOS_TOKEN": "x"}}, 400, "set by the kernel"),
    ({"command": ["/bin/true"], "env": {"1X": "x"}}, 400, "not a variable name"),
    ({"command": ["/bin/true"], "ro_paths": ["/work/x"]}, 400, "ro_paths"),
    ({"command": ["/bin/true"], "workdir": "/etc"}, 400, "system directory"),
    ({"command": ["/bin/true"], "name": "a b"}, 400, "'name' must be printable"),
    ({"command": ["/bin/true"], "priority": 1000}, 400, "'priority'"),
    ({"command": ["/bin/true"], "bogus": 1}, 400, "unknown field 'bogus'"),
])
def test_bad_specs(kernel, spec, status, needle):
    r = requests.post(kernel.url + "/agents", json=spec, timeout=10)
    assert r.status_code == status and needle in r.json()["error"]["message"], r.text


def test_unknown_ids_and_wrong_states(kernel):
    for method, path in (("GET", "/agents/nope"), ("GET", "/agents/nope/logs"), ("POST", "/agents/nope/stop"),
                         ("GET", "/agents/nope/status")):
        r = requests.request(method, kernel.url + path, timeout=10)
        assert r.status_code == 404 and "no agent 'nope'" in r.json()["error"]["message"], (path, r.text)
    aid = start(kernel, ["sleep", "30"], name="probe-states")
    r = requests.post(f"{kernel.url}/agents/{aid}/cont", timeout=10)
    assert r.status_code == 400 and "is running" in r.json()["error"]["message"], r.text
    dup = requests.post(kernel.url + "/agents", json={"command": ["/bin/true"], "name": "probe-states"}, timeout=10)
    assert dup.status_code == 409, dup.text
    r = requests.get(f"{kernel.url}/agents/{aid}/logs?tail=-1", timeout=10)
    assert r.status_code == 400, r.text
    requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
    wait_state(kernel, aid, ("killed",))


def test_max_running(kernel):
    ids = []
    try:
        while True:
            r = requests.post(kernel.url + "/agents", json={"package_dir": str(PROBE_DIR),
                                                            "command": ["/bin/sh", "/agent/probe.sh", "sleep", "30"]},
                              timeout=10)
            if r.status_code != 201:
                break
            ids.append(r.json()["id"])
            assert len(ids) <= 6
        assert r.status_code == 503 and "agents.max_running (6)" in r.json()["error"]["message"], r.text
        assert requests.get(kernel.url + "/health", timeout=10).status_code == 200
    finally:
        for aid in ids:
            requests.post(f"{kernel.url}/agents/{aid}/kill", timeout=10)
        for aid in ids:
            wait_state(kernel, aid, ("killed",))


def test_kernel_restart_loses_or_restarts_agents(tmp_path):
    d = Daemon("agents-crash", tmp_path, config(tmp_path)).start()
    sleeper = start(d, ["sleep", "300"], name="probe-lost")
    keeper = start(d, ["sleep", "300"], name="probe-keeper", restart="on-failure")
    wait_for(lambda: record(d, sleeper)["state"] == "running", 10)
    pids = [record(d, a)["pid"] for a in (sleeper, keeper)]
    old_cg = host_cgroup() and host_cgroup() / f"aios-{d.proc.pid}"
    assert not old_cg or old_cg.is_dir(), old_cg
    d.proc.send_signal(signal.SIGKILL)  # a crash: its agents die with it (their sandboxes die with their parent)
    d.proc.wait()
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 10), "an agent outlived its kernel"
    d2 = Daemon("agents-crash", tmp_path, config(tmp_path)).start()
    try:
        assert not old_cg or not old_cg.exists(), "the crashed kernel's cgroup was not swept"
        lost = record(d2, sleeper)
        assert lost["state"] == "lost" and "kernel stopped" in lost["reason"], lost
        back = wait_for(lambda: (lambda g: g if g["state"] == "running" and g["restarts"] == 1 else None)(record(d2, keeper)), 10)
        assert back and back["pid"] not in pids, record(d2, keeper)
    finally:
        d2.stop_and_check()
    d3 = Daemon("agents-crash", tmp_path, config(tmp_path)).start()
    try:  # a clean shutdown loses it the same way, and on-failure brings it back once more... up to max_restarts
        g = record(d3, keeper)
        assert g["state"] == "lost" and g["restarts"] == 1 and "shut down" in g["reason"], g
    finally:
        d3.stop_and_check()

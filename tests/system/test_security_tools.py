"""
test_security_tools.py - fault tier: the tool sandbox against whatever a tool (or anyone
else) plants in the work tree, against the real aiosd.

- Tool names that would become ".", ".." or an empty segment of a path are refused when
  the manifest loads, with the file and the field named (a tool named "." had the agent's
  whole tool directory as its workdir).
- A workdir replaced by a symbolic link to a root-owned 0700 directory outside the work
  root (or the agent's directory replaced so), or by a directory of another owner, is
  refused before anything runs: 403 with a clear message, and the target keeps its mode and
  stays empty (the kernel used to chmod the link's target 0777 and bind-mount it writable).
- Different agent names ("a/b" and "a_b", "." and "_", ".." and "_.") never share a
  workdir: what a tool writes in /work for one is not there for the other.
- fs "ro" is bound read-only, and no descriptor of a host directory reaches the tool.
"""
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import requests

from aiosd_helpers import Daemon

NOTE = "s/note"        # fs workdir: prints who wrote /work/owner before, then writes it
NOTE_DIR = "s%2Fnote"  # its name in the work tree ('/' escaped)

TOOLS = {
    "note.json": {"name": NOTE, "command": "note.sh", "sandbox": {"fs": "workdir"}},
    "peek.json": {"name": "s/peek", "command": "peek.sh", "sandbox": {"fs": "ro"}},
    "fds.json": {"name": "s/fds", "command": "/usr/bin/python3", "args": ["/tool/fds.py"], "sandbox": {"fs": "workdir"}},
}
# Names that are not a single path below the agent's directory, each in its own manifest.
BAD_NAMES = [".", "..", "a/./b", "a//b", "/a", "a/"]
SCRIPTS = {
    "note.sh": "#!/bin/sh\ncat >/dev/null\nif [ -f /work/owner ]; then cat /work/owner; else printf none; fi\n"
               "printf '%s' \"$AIOS_AGENT\" > /work/owner\n",
    "peek.sh": "#!/bin/sh\ncat >/dev/null\ncat /work/seed 2>/dev/null || printf missing\n"
               "(echo x > /work/w) 2>/dev/null && printf ' WROTE'\nexit 0\n",
    "fds.py": "import json, os, stat\nopen_fds = {}\nfor fd in range(3, 256):\n"
              "    try:\n        open_fds[fd] = 'dir' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'other'\n"
              "    except OSError:\n        pass\nprint(json.dumps(open_fds))\n",
}


def tool_query(url, name, agent, params=None):
    body = {"agent_name": agent, "query_type": "tool",
            "query_data": {"tool_calls": [{"name": name, "parameters": params or {}}]}}
    return requests.post(url + "/query", json=body, timeout=60)


def result_of(r):
    assert r.status_code == 200, r.text
    return r.json()["response"]["tool_results"][0]["result"]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    tools = Path(tempfile.mkdtemp(prefix="aios-sec-tools-"))
    work = Path(tempfile.mkdtemp(prefix="aios-sec-work-"))
    for d in (tools, work):
        os.chmod(d, 0o755)
    for name, m in TOOLS.items():
        (tools / name).write_text(json.dumps(m))
    for i, name in enumerate(BAD_NAMES):
        (tools / f"bad{i}.json").write_text(json.dumps({"name": name, "command": "note.sh", "sandbox": {"fs": "workdir"}}))
    for name, text in SCRIPTS.items():
        (tools / name).write_text(text)
        os.chmod(tools / name, 0o755)
    wd = tmp_path_factory.mktemp("sec-kernel")
    cfg = wd / "aios.yaml"
    cfg.write_text(f"tools:\n  dir: {tools}\n  workdir: {work}\n")
    k = Daemon("sectools", wd, ["--config", str(cfg)]).start()
    k.work = work
    yield k
    k.stop_and_check()
    shutil.rmtree(tools, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def target():
    """A root-owned (the kernel's uid) 0700 directory outside the work root."""
    t = Path(tempfile.mkdtemp(prefix="aios-sec-target-"))
    os.chmod(t, 0o700)
    assert t.stat().st_uid == os.geteuid()
    yield t
    shutil.rmtree(t, ignore_errors=True)


def test_names_that_are_not_a_path_below_the_agent_are_refused(box):
    listing = requests.get(box.url + "/v1/tools", timeout=10).json()
    names = {t["name"] for t in listing["tools"]}
    assert NOTE in names
    for i, name in enumerate(BAD_NAMES):
        assert name not in names, name
        errs = [e["error"] for e in listing["errors"] if e["file"].endswith(f"/bad{i}.json")]
        assert len(errs) == 1 and f"name: '{name}' must be" in errs[0], (name, listing["errors"])
    r = tool_query(box.url, ".", "alice")
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("level", ["workdir", "agent"])
def test_symlinked_workdir_is_refused(box, target, level):
    agent = f"victim-{level}"
    assert result_of(tool_query(box.url, NOTE, agent)) == "none"
    agent_dir = box.work / agent
    workdir = agent_dir / NOTE_DIR
    assert (workdir / "owner").read_text() == agent
    planted = workdir if level == "workdir" else agent_dir
    shutil.rmtree(planted)
    planted.symlink_to(target)
    r = tool_query(box.url, NOTE, agent)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "forbidden"
    assert f"{planted} is not a real directory" in err["message"] and "refusing" in err["message"], err
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert list(target.iterdir()) == []
    assert planted.is_symlink() and os.readlink(planted) == str(target)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the workdir another owner")
def test_workdir_of_another_owner_is_refused(box):
    agent = "victim-owner"
    assert result_of(tool_query(box.url, NOTE, agent)) == "none"
    workdir = box.work / agent / NOTE_DIR
    os.chown(workdir, 65534, 65534)
    os.chmod(workdir, 0o700)
    r = tool_query(box.url, NOTE, agent)
    assert r.status_code == 403, r.text
    assert f"{workdir} is owned by uid 65534" in r.json()["error"]["message"], r.text
    st = workdir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 65534
    assert (workdir / "owner").read_text() == agent


def test_agent_names_get_their_own_workdirs(box):
    agents = ["a/b", "a_b", ".", "_", "..", "_."]
    for a in agents:  # nobody wrote /work before: each agent has a workdir of its own
        assert result_of(tool_query(box.url, NOTE, a)) == "none", a
    for a in agents:  # and finds there what it wrote itself
        assert result_of(tool_query(box.url, NOTE, a)) == a, a
    for d, a in zip(["a%2Fb", "a_b", "%2E", "_", "%2E.", "_."], agents):  # readable, '%' escapes
        p = box.work / d
        assert (p / NOTE_DIR / "owner").read_text() == a
        # the agent's directory takes no writes from tools: they cannot replace a workdir
        assert not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) == 0o755, p


def test_ro_workdir_is_bound_read_only(box):
    agent = "reader"
    assert result_of(tool_query(box.url, "s/peek", agent)) == "missing"
    workdir = box.work / agent / "s%2Fpeek"
    (workdir / "seed").write_text("seeded")
    assert result_of(tool_query(box.url, "s/peek", agent)) == "seeded"
    assert not (workdir / "w").exists()


def test_no_host_directory_descriptor_reaches_the_tool(box):
    fds = result_of(tool_query(box.url, "s/fds", "fd-agent"))
    assert isinstance(fds, dict) and "dir" not in fds.values(), fds

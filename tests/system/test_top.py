"""System tier: `aios top` (issue 14, part 6) driven in tmux against the real aiosd: the
model and agent rows appear, sorting by name and by memory reorders them, and `k` then `y`
kills the selected agent. `aios top --once` prints the same frame as text."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from aiosd_helpers import MODEL_NAME, REPO, Daemon, wait_for

AIOS = Path(os.environ["AIOSD"]).parent / "aios"
PROBE_DIR = REPO / "tests" / "agents"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    wd = tmp_path_factory.mktemp("top")
    d = Daemon("top", wd).start()
    yield d
    d.stop_and_check()


def start(k: Daemon, name: str, mode: list[str]) -> str:
    r = requests.post(k.url + "/agents", timeout=30, json={
        "name": name, "package_dir": str(PROBE_DIR), "command": ["/bin/sh", "/agent/probe.sh", *mode]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30, check=True).stdout


def screen(session: str) -> list[str]:
    return tmux("capture-pane", "-p", "-t", session).splitlines()


def order(lines: list[str], names: tuple[str, ...]) -> list[str]:
    return [n for ln in lines for n in names if f" {n} " in ln]


def test_top_in_tmux(kernel):
    assert shutil.which("tmux"), "tmux is missing (scripts/install-deps.sh installs it)"
    idle = start(kernel, "aa-idle", ["sleep", "120"])
    hog = start(kernel, "zz-hog", ["hog", "80"])
    names = ("aa-idle", "zz-hog")
    assert wait_for(lambda: requests.get(f"{kernel.url}/agents/{hog}", timeout=10).json()["rss_kb"] > 60 * 1024, 30)
    once = subprocess.run([str(AIOS), "top", "--once"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "AIOS_URL": kernel.url})
    assert once.returncode == 0 and MODEL_NAME in once.stdout and "aa-idle" in once.stdout, once
    head = next(ln for ln in once.stdout.splitlines() if ln.startswith("ID "))
    assert head.split() == ["ID", "NAME", "STATE", "PRIO", "CPU%", "RSS_MB", "TOK/S", "SYSCALLS", "WAIT_S", "KV", "TOOLS", "RUN",
                            "BUDGET"], head
    session = f"aios-top-{os.getpid()}"
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "40",
         f"AIOS_URL={kernel.url} {AIOS} top; sleep 30")
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "160", "-y", "40"], capture_output=True, timeout=30)
    try:
        assert wait_for(lambda: len(order(screen(session), names)) == 2, 15), "\n".join(screen(session))
        lines = screen(session)
        assert any(ln.startswith("MODEL") for ln in lines) and any(ln.startswith(MODEL_NAME) for ln in lines), lines
        tmux("send-keys", "-t", session, "N")
        assert wait_for(lambda: any("sort: name" in ln for ln in screen(session)), 10), "\n".join(screen(session))
        assert order(screen(session), names) == ["aa-idle", "zz-hog"], "\n".join(screen(session))
        tmux("send-keys", "-t", session, "M")
        assert wait_for(lambda: order(screen(session), names) == ["zz-hog", "aa-idle"], 10), "\n".join(screen(session))
        # the first row is selected: k asks, y kills it
        tmux("send-keys", "-t", session, "k")
        assert wait_for(lambda: any("kill agent" in ln and "zz-hog" in ln for ln in screen(session)), 10), \
            "\n".join(screen(session))
        tmux("send-keys", "-t", session, "y")
        assert wait_for(lambda: requests.get(f"{kernel.url}/agents/{hog}", timeout=10).json()["state"] == "killed", 15)
        assert requests.get(f"{kernel.url}/agents/{idle}", timeout=10).json()["state"] == "running"
        tmux("send-keys", "-t", session, "q")
        time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=30)
        requests.post(f"{kernel.url}/agents/{idle}/kill", timeout=10)

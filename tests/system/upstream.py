"""llama.cpp's own llama-server as the remote model servers of the tests (issue 13): the
pinned build from scripts/fetch-llama.sh, the default model, on loopback ports, with Qwen
2.5's template (so it has a tool-call format). A replica can be killed with SIGKILL and
started again on the same port, as a fleet's machines come and go.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import requests

from aiosd_helpers import Daemon, default_model_path, free_port, wait_for
from test_tool_calls_native import QWEN

LLAMA_SERVER = QWEN.parents[3] / "build" / "bin" / "llama-server"  # the pinned llama.cpp build


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class LlamaServer:
    """One llama-server on 127.0.0.1:port (a fixed port, so a restart comes back where the
    kernel's endpoint points)."""

    def __init__(self, logdir: Path, slots: int = 4, threads: int = 1, ctx: int = 8192):
        self.port = free_port()
        self.logdir = logdir
        self.argv = [str(LLAMA_SERVER), "-m", os.environ.get("AIOS_MODEL") or default_model_path(), "--host",
                     "127.0.0.1", "--port", str(self.port), "-c", str(ctx), "-np", str(slots), "-t", str(threads),
                     "--jinja", "--chat-template-file", str(QWEN)]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "LlamaServer":
        self.starts += 1
        log = self.logdir / f"llama-server-{self.port}-{self.starts}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if wait:
            assert wait_for(lambda: healthy(self.url) or self.proc.poll() is not None, timeout=120) and \
                self.proc.poll() is None, log.read_text()[-2000:]
        return self

    def kill(self) -> None:
        """SIGKILL: the machine is gone, connections break mid-stream."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextlib.contextmanager
def llama_servers(logdir: Path, n: int, **kw):
    """n replicas, started (and healthy) on entry, stopped on exit."""
    rs: list[LlamaServer] = []
    try:
        for _ in range(n):
            rs.append(LlamaServer(logdir, **kw).start())
        yield rs
    finally:
        for r in rs:
            r.stop()


def kernel_with(workdir: Path, name: str, config: str) -> Daemon:
    """A started aiosd whose YAML config is `config`."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / f"{name}.yaml"
    cfg.write_text(config)
    return Daemon(name, workdir, ["--config", str(cfg)]).start()

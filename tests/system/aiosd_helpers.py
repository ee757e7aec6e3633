"""Helpers shared by the system and fault tiers: starting and stopping real aiosd
processes, reading /metrics, and building requests.

Nothing here talks to the kernel's internals: every check goes through its HTTP surface,
exactly as a client (the Cerebrum SDK, the openai package, curl) would.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
AIOSD = os.environ.get("AIOSD") or str(REPO / "build" / "aiosd")
# The model of the tests: $AIOS_MODEL, else the daemon's own default (the fetched SmolLM2).
MODEL_ENV = os.environ.get("AIOS_MODEL") or None

READY_TIMEOUT_S = 120.0   # an ASan build loads the model much more slowly
STOP_TIMEOUT_S = 30.0
MODEL_NAME = "smollm2"

# A prompt whose greedy continuation is known to run far past a few hundred tokens, for the
# disconnect tests (a generation that ended by itself would not exercise cancellation).
LONG_CHAT_PROMPT = "Write a very long essay about the history of Rome, with many chapters."


def default_model_path() -> str:
    """The GGUF file the daemons load (what --model / the YAML `path` should say)."""
    if MODEL_ENV:
        return MODEL_ENV
    cache = os.environ.get("AIOS_CACHE") or str(Path.home() / ".cache" / "aios")
    return str(Path(cache) / "models" / "SmolLM2-135M-Instruct-Q8_0.gguf")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_env() -> dict:
    """The environment of a spawned daemon: ours without AIOS_* overrides (the tests pass
    every setting as flags), except AIOS_CACHE, which locates the default model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_") or k == "AIOS_CACHE"}
    return env


def model_flags() -> list[str]:
    return ["--model", MODEL_ENV] if MODEL_ENV else []


def tail_of(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(cannot read {path}: {e})"
    return "\n".join(text.splitlines()[-lines:])


class Daemon:
    """One aiosd process on its own port, its stderr captured to a file."""

    live: list["Daemon"] = []   # started and not yet stopped, for failure reports

    def __init__(self, name: str, workdir: Path, flags: list[str] | None = None):
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flags = list(flags or [])
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [AIOSD, "--host", "127.0.0.1", "--port", str(self.port),
                "--data-dir", str(self.workdir / "data"), *model_flags(), *self.flags]

    def tail(self, lines: int = 40) -> str:
        return tail_of(self.stderr_path, lines)

    def start(self, attempts: int = 5) -> "Daemon":
        """Starts the process and waits for GET /status to answer 200. A port taken between
        picking and binding it is retried on another port."""
        for attempt in range(attempts):
            self.port = free_port()
            with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
                self.proc = subprocess.Popen(self.argv(), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             env=daemon_env(), cwd=str(REPO))
            Daemon.live.append(self)
            try:
                self._wait_ready()
                return self
            except _PortInUse:
                Daemon.live.remove(self)
                continue
        raise AssertionError(f"aiosd '{self.name}' could not bind a free port in {attempts} attempts\n{self.tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                log = self.tail()
                if "cannot listen" in log:
                    raise _PortInUse()
                raise AssertionError(f"aiosd '{self.name}' exited with {rc} before serving; stderr tail:\n{log}")
            try:
                r = requests.get(self.url + "/status", timeout=2)
                if r.status_code in (200, 401):  # 401: serving, in access.mode enforce
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"aiosd '{self.name}' did not answer /status within {READY_TIMEOUT_S:.0f} s; "
                             f"stderr tail:\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then wait up to STOP_TIMEOUT_S; returns the exit code (SIGKILLs and
        raises if the daemon does not exit in time)."""
        if self in Daemon.live:
            Daemon.live.remove(self)
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"aiosd '{self.name}' did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM; "
                                     f"stderr tail:\n{self.tail()}")
        self.returncode = self.proc.returncode
        return self.returncode

    def sanitizer_reports(self) -> list[str]:
        """Lines of ASan / UBSan / LSan reports in the daemon's stderr (a sanitizer build)."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if SANITIZER_RE.search(ln)]

    def stop_and_check(self) -> None:
        """Stops the daemon; it must exit 0 and its stderr must hold no sanitizer report."""
        rc = self.stop()
        assert rc == 0, f"aiosd '{self.name}' exited with {rc} after SIGTERM; stderr tail:\n{self.tail()}"
        reports = self.sanitizer_reports()
        assert not reports, f"aiosd '{self.name}': sanitizer reports:\n" + "\n".join(reports[:20]) + \
            f"\n(full log: {self.stderr_path})"

    def kill(self) -> None:
        if self in Daemon.live:
            Daemon.live.remove(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# sanitizer reports, and the kernel's own consistency checks (KV accounting)
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: |SUMMARY: \w+Sanitizer"
                          r"|KV accounting drift")


class _PortInUse(Exception):
    pass


def run_aiosd_to_exit(flags: list[str], timeout: float = 120.0, with_model: bool = True) -> subprocess.CompletedProcess:
    """Runs aiosd with flags that should make it exit on its own (bad configuration)."""
    argv = [AIOSD, "--host", "127.0.0.1", "--port", str(free_port()), *(model_flags() if with_model else []), *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=daemon_env(),
                          stdin=subprocess.DEVNULL, cwd=str(REPO))


def assert_stops_with_error(flags: list[str], needle: str, timeout: float = 60.0) -> str:
    """aiosd with these flags exits non-zero with exactly one 'aiosd: error:' line, naming needle."""
    out = run_aiosd_to_exit(flags, timeout=timeout)
    assert out.returncode != 0, out.stderr
    err_lines = [ln for ln in out.stderr.splitlines() if ln.startswith("aiosd: error:")]
    assert len(err_lines) == 1 and needle in err_lines[0], out.stderr
    return err_lines[0]


def assert_config_stops(tmp_path: Path, config: str, needle: str) -> str:
    """aiosd with this YAML config exits with one error line naming needle."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / "aios.yaml"
    cfg.write_text(config)
    return assert_stops_with_error(["--config", str(cfg), "--data-dir", str(tmp_path / "d")], needle)


def with_local_model(model_entry: str) -> str:
    """A config serving the local model and one more model entry (a YAML flow mapping)."""
    return f"llms:\n  default_model: smollm2\n  models:\n    - name: smollm2\n    - {model_entry}\n"


# ---------------------------------------------------------------------------- metrics

_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def metrics(base_url: str, model: str = MODEL_NAME) -> dict[str, float]:
    """GET /metrics parsed into {name: value} for one model's series (and unlabelled ones)."""
    r = requests.get(base_url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        assert m, f"malformed Prometheus line: {line!r}"
        name, labels, value = m.groups()
        if labels and f'model="{model}"' not in labels:
            continue
        out[name] = float(value)
    return out


def wait_for(pred, timeout: float, interval: float = 0.05):
    """Polls pred() until it returns a truthy value or timeout passes; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def wait_metrics(base_url: str, pred, timeout: float) -> dict[str, float] | None:
    """Polls /metrics until pred(metrics) holds; returns those metrics, or None on timeout."""
    return wait_for(lambda: (lambda m: m if pred(m) else None)(metrics(base_url)), timeout)


def wait_idle_and_cancelled(base_url: str, cancelled_before: float, timeout: float = 2.0) -> dict[str, float]:
    """Waits until no sequence is active and the cancelled counter grew by one; returns
    the last metrics seen (the caller asserts on them)."""
    last = {}

    def check():
        nonlocal last
        last = metrics(base_url)
        return (last["aios_active_sequences"] == 0 and last["aios_queue_length"] == 0
                and last["aios_requests_cancelled_total"] >= cancelled_before + 1)

    wait_for(check, timeout)
    return last


# ---------------------------------------------------------------------------- requests

def chat_body(content: str = "Say hello.", max_tokens: int = 16, **extra) -> dict:
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, "temperature": 0}
    body.update(extra)
    return body


def query_body(content: str = "Say hello.", max_new_tokens: int = 16, action_type: str = "chat",
               agent: str = "test-agent", **extra) -> dict:
    """The envelope the Cerebrum SDK sends for an LLM syscall."""
    qd = {
        "query_class": "llm",
        "llms": None,
        "messages": [{"role": "user", "content": content}],
        "tools": None,
        "action_type": action_type,
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "message_return_type": "text",
        "response_format": None,
    }
    qd.update(extra)
    return {"agent_name": agent, "query_type": "llm", "query_data": qd}


def assert_error(r: requests.Response, status: int, code: str | None = None) -> dict:
    """The response is the JSON error object with this status (and code)."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"], err
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    if code is not None:
        assert err["code"] == code, err
    return err


def assert_serving(base_url: str) -> None:
    """The daemon still answers /status and a real (tiny) generation."""
    r = requests.get(base_url + "/status", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    r = requests.post(base_url + "/v1/chat/completions", json=chat_body("Say hi.", max_tokens=4), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["content"], body
    assert 1 <= body["usage"]["completion_tokens"] <= 4, body

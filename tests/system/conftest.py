"""Fixtures of the system and fault tiers.

`aiosd` / `base_url`: one real kernel for the whole session (binary from $AIOSD, default
<repo>/build/aiosd; model from $AIOS_MODEL, default the daemon's own), on a free port. On
teardown it gets SIGTERM and must exit with status 0 within 30 s.

`spawn_daemon`: starts extra kernels with their own flags or YAML config (body limit,
context size, a fresh counter baseline...), each on its own port, each stopped and
checked the same way at the end of the test.

When a test fails, the tail of every running daemon's stderr is attached to its report.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from aiosd_helpers import AIOSD, Daemon  # noqa: E402

SESSION_FLAGS = [
    "--set", "scheduler.max_active=16",
    # a safety net: a test that forgets max_tokens must not run for minutes
    "--set", "llms.default_max_tokens=64",
]


def pytest_sessionstart(session):
    if not os.access(AIOSD, os.X_OK):
        raise pytest.UsageError(f"aiosd binary not found at {AIOSD} (run `make all`, or set AIOSD=...)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for d in list(Daemon.live):
            rep.sections.append((f"aiosd '{d.name}' stderr (tail, {d.stderr_path})", d.tail(60)))


@pytest.fixture(scope="session")
def aiosd(tmp_path_factory):
    d = Daemon("session", tmp_path_factory.mktemp("aiosd-session"), SESSION_FLAGS).start()
    yield d
    d.stop_and_check()


@pytest.fixture(scope="session")
def base_url(aiosd):
    return aiosd.url


@pytest.fixture(scope="session")
def det_url(tmp_path_factory):
    """A daemon in deterministic mode, for tests that compare the bytes of two requests:
    in normal mode a prompt found whole in the cache computes its last token in a 1-row
    step, which llama.cpp rounds differently from a full prefill (as llama-server's prompt
    cache does), and greedy or seeded outputs may then differ (docs/architecture.md)."""
    d = Daemon("session-det", tmp_path_factory.mktemp("aiosd-det"),
               SESSION_FLAGS + ["--set", "scheduler.deterministic=1"]).start()
    yield d.url
    d.stop_and_check()


@pytest.fixture
def spawn_daemon(tmp_path):
    """spawn_daemon(name, flags=[...], config="yaml text") -> a started Daemon."""
    started: list[Daemon] = []

    def spawn(name: str, flags: list[str] | None = None, config: str | None = None) -> Daemon:
        flags = list(flags or [])
        workdir = Path(tmp_path) / name
        workdir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            cfg = workdir / "aios.yaml"
            cfg.write_text(config)
            flags = ["--config", str(cfg), *flags]
        d = Daemon(name, workdir, flags)
        started.append(d)
        return d.start()

    yield spawn
    failures = []
    for d in started:
        try:
            d.stop_and_check()  # a daemon a test already stopped keeps its exit code
        except AssertionError as e:
            failures.append(str(e))
    assert not failures, "\n\n".join(failures)

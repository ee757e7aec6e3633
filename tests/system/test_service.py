"""System tier: running aiosd as a service (issue 14, part 8, first steps).

`aiosd --version` names the release, the revision, the llama.cpp it runs and the CPU variant
ggml picked; SIGHUP re-reads the configuration and applies the log level, access rules,
budgets and tool manifests while serving (a file that no longer loads changes nothing); `make install` puts a working kernel under
PREFIX, finding llama.cpp's libraries and ggml's backends in PREFIX/lib/aios, with the
systemd unit's paths set.
"""
from __future__ import annotations

import re
import signal
import subprocess

import requests

from aiosd_helpers import AIOSD, REPO, Daemon, wait_for


def test_version():
    out = subprocess.run([AIOSD, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first, engine = out.stdout.splitlines()[:2]
    assert re.match(r"aiosd \d+\.\d+\.\d+ \(git \w+\)$", first), first
    assert "llama-cpp-python" in engine and "ggml CPU variant" in engine, engine
    cli = subprocess.run([str(REPO / "build" / "aios"), "--version"], capture_output=True, text=True, timeout=10)
    assert cli.returncode == 0 and cli.stdout.split()[1] == first.split()[1], (cli.stdout, first)


def chat(url: str, agent: str) -> int:
    return requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {agent}"}, timeout=60, json={
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}).status_code


def test_sighup_reloads_what_can_change(tmp_path):
    """The log level, budgets (and access rules) and tool manifests change on SIGHUP."""
    cfg = tmp_path / "aios.yaml"
    cfg.write_text("kernel:\n  log_level: info\n")
    d = Daemon("sighup", tmp_path, ["--config", str(cfg)]).start()
    try:
        assert [chat(d.url, "tight") for _ in range(3)] == [200, 200, 200]
        cfg.write_text("kernel:\n  log_level: debug\nagents:\n  tight:\n    budget: {requests_per_minute: 1}\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: kernel.log_level info -> debug" in d.tail(400), timeout=10), d.tail()
        assert wait_for(lambda: "budgets (1) reloaded" in d.tail(400) and "tool manifests reloaded" in d.tail(400),
                        timeout=10), d.tail()
        codes = [chat(d.url, "tight") for _ in range(2)]
        assert codes[-1] == 429 and chat(d.url, "someone-else") == 200, codes
        assert "/no-such-route -> 404" not in d.tail(400)
        requests.get(d.url + "/no-such-route", timeout=10)  # an error answer is logged at debug, now on
        assert wait_for(lambda: "GET /no-such-route -> 404" in d.tail(400), timeout=10), d.tail()
        cfg.write_text("kernel:\n  log_level: loud\n")  # no longer valid: nothing changes
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "the configuration does not load now" in d.tail(400), timeout=10), d.tail()
        assert requests.get(d.url + "/status", timeout=10).status_code == 200
        assert chat(d.url, "tight") == 429  # the budget still holds
    finally:
        d.stop_and_check()


def test_make_install(tmp_path):
    prefix = tmp_path / "prefix"
    out = subprocess.run(["make", "--no-print-directory", "-j2", "install", f"PREFIX={prefix}"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    v = subprocess.run([str(prefix / "bin" / "aiosd"), "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and f"from {prefix}/lib/aios" in v.stdout and "ggml CPU variant" in v.stdout, v
    assert list((prefix / "lib" / "aios").glob("libggml-cpu-*.so")), list((prefix / "lib" / "aios").iterdir())
    unit = (prefix / "lib" / "systemd" / "system" / "aiosd.service").read_text()
    assert f"ExecStart={prefix}/bin/aiosd --config /etc/aios/aios.yaml" in unit and "@PREFIX@" not in unit, unit
    assert (prefix / "share" / "doc" / "aios" / "models.md").is_file()

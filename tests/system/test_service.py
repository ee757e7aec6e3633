"""System tier: running aiosd as a service (issue 14, part 8, first steps).

`aiosd --version` names the release, the revision, the llama.cpp it runs and the CPU variant
ggml picked; SIGHUP re-reads the configuration and applies the log level while serving (a
file that no longer loads changes nothing); `make install` puts a working kernel under
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


def test_sighup_reloads_the_log_level(tmp_path):
    cfg = tmp_path / "aios.yaml"
    cfg.write_text("kernel:\n  log_level: info\n")
    d = Daemon("sighup", tmp_path, ["--config", str(cfg)]).start()
    try:
        cfg.write_text("kernel:\n  log_level: debug\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "SIGHUP: kernel.log_level info -> debug" in d.tail(400), timeout=10), d.tail()
        assert "take a restart to change" in d.tail(400)
        assert "/no-such-route -> 404" not in d.tail(400)
        requests.get(d.url + "/no-such-route", timeout=10)  # an error answer is logged at debug, now on
        assert wait_for(lambda: "GET /no-such-route -> 404" in d.tail(400), timeout=10), d.tail()
        cfg.write_text("kernel:\n  log_level: loud\n")  # no longer valid: nothing changes
        d.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "the configuration does not load now" in d.tail(400), timeout=10), d.tail()
        assert requests.get(d.url + "/status", timeout=10).status_code == 200
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

"""Fault tier: remote model servers that misbehave (issue 13, part 7).

tests/system/bad_upstream.py speaks HTTP badly on purpose; the kernel serves one model per
way of misbehaving (the upstream model id names it). Each must end as a clear kernel error
(or, for an endless stream, a capped answer) within its timeout, in the shape of the door it
came through, with the model's sequences released (nothing active or queued), and the kernel
keeps serving its other models.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from aiosd_helpers import assert_error, assert_serving, free_port, metrics, wait_for
from upstream import kernel_with

HERE = Path(__file__).resolve().parent
KINDS = ["malformed_json", "malformed_sse", "truncated", "endless", "error200", "error_event", "huge_line",
         "slowloris", "silent", "status500", "good"]


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "bad_upstream.py"), str(port)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def kernel(bad, tmp_path_factory):
    models = "".join(f"""
    - name: {k}
      backend: openai
      hostname: {bad}
      model: {k}
      timeout_s: 4
      first_token_timeout_s: 2
      retries: {1 if k == 'status500' else 0}
      breaker_failures: 100
""" for k in KINDS)
    d = kernel_with(tmp_path_factory.mktemp("bad-upstream"), "bad-upstream", f"""
llms:
  default_model: smollm2
  models:
    - name: smollm2
      threads: 1{models}""")
    yield d.url
    d.stop_and_check()


def ask(url: str, model: str, stream: bool = False) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", timeout=30, json={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "stream": stream})


def released(url: str, model: str) -> None:
    assert wait_for(lambda: (lambda m: m["aios_active_sequences"] == 0 and m["aios_queue_length"] == 0)(
        metrics(url, model)), timeout=10), metrics(url, model)


@pytest.mark.parametrize("kind,status,code,needle,within", [
    ("malformed_json", 502, "upstream_error", "answered 200 without an event stream", 5),
    ("malformed_sse", 502, "upstream_error", "ended the stream without finishing", 5),
    ("truncated", 502, "upstream_error", "ended the stream without finishing", 5),
    ("error200", 502, "upstream_error", "sent an error: model overloaded", 5),
    ("error_event", 502, "upstream_error", "sent an error: boom", 5),
    ("huge_line", 502, "upstream_error", "a line longer than 1 MiB", 5),
    ("slowloris", 504, "upstream_timeout", "did not finish in time (4 s)", 8),
    ("silent", 504, "upstream_timeout", "did not start answering in time (2 s)", 5),
    ("status500", 502, "upstream_error", "answered 500: internal failure", 5),
])
def test_misbehaving_upstream_is_a_clear_error(kernel, bad, kind, status, code, needle, within):
    t = time.monotonic()
    err = assert_error(ask(kernel, kind), status, code)
    assert time.monotonic() - t < within, (kind, time.monotonic() - t)
    assert needle in err["message"] and f"'{kind}'" in err["message"] and bad in err["message"], err
    released(kernel, kind)
    assert_serving(kernel)


@pytest.mark.parametrize("kind,needle", [("truncated", "ended the stream"), ("error_event", "boom"),
                                          ("silent", "did not start answering")])
def test_a_stream_that_breaks_ends_with_an_error_event(kernel, kind, needle):
    r = ask(kernel, kind, stream=True)
    if r.status_code != 200:  # nothing had been sent yet: a plain error answer
        assert needle in assert_error(r, r.status_code)["message"]
        return
    events = [json.loads(ln[6:]) for ln in r.text.splitlines() if ln.startswith("data: {")]
    assert events and "error" in events[-1] and needle in events[-1]["error"]["message"], r.text
    if kind == "truncated":  # what had come passed through first
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if "choices" in e)
        assert text == "one two three ", text
    released(kernel, kind)


def test_endless_stream_is_capped_at_max_tokens(kernel):
    r = ask(kernel, "endless")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["choices"][0]["finish_reason"] == "length", got
    assert got["choices"][0]["message"]["content"] == "more " * 16, got
    assert got["usage"]["completion_tokens"] == 16, got
    released(kernel, "endless")


def test_status500_is_retried(kernel):
    assert_error(ask(kernel, "status500"), 502, "upstream_error")
    st = requests.get(kernel + "/status", timeout=10).json()
    ep = next(m for m in st["llms"] if m["name"] == "status500")["endpoints"][0]
    assert ep["retries"] >= 1 and ep["failures"] >= 2, ep


def test_the_kernel_still_serves_everything_else(kernel):
    assert ask(kernel, "good").json()["choices"][0]["message"]["content"] == "fine thanks"
    assert ask(kernel, "smollm2").status_code == 200

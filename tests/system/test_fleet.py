"""System tier: a model served by a fleet of replicas (issue 13, part 4).

Two real llama-server replicas (tests/system/upstream.py) behind one kernel model `fleet`
(`endpoints: [a, b]`, 2 requests in flight on each, health checks every second): requests
spread over both; one agent's turns stay on one replica; a replica killed with SIGKILL under
load costs only the streams it was serving (each ends with a clear error event) while the
requests it had not started on finish on the other; its breaker opens, and closes once it is
back. A model whose one endpoint is dead falls back to its `fallback` model.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from aiosd_helpers import assert_error, assert_serving, assert_config_stops, with_local_model, free_port, wait_for
from upstream import kernel_with, llama_servers

INFLIGHT = 2


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    with llama_servers(tmp_path_factory.mktemp("replicas"), 2, slots=INFLIGHT, threads=1) as rs:
        yield rs


@pytest.fixture(scope="module")
def kernel(replicas, tmp_path_factory):
    d = kernel_with(tmp_path_factory.mktemp("fleet-kernel"), "fleet-kernel", f"""
llms:
  default_model: smollm2
  models:
    - name: smollm2
      threads: 1
    - name: fleet
      backend: openai
      endpoints:
        - {replicas[0].url}
        - hostname: {replicas[1].url}/v1
      max_inflight: {INFLIGHT}
      health_interval_s: 1
      health_path: /health
      breaker_failures: 2
      breaker_open_s: 1
      timeout_s: 120
    - name: primary
      backend: openai
      hostname: http://127.0.0.1:{free_port()}
      fallback: smollm2
scheduler:
  max_active: 4
""")
    assert wait_for(lambda: all(e["state"] == "up" for e in endpoints(d.url)), timeout=30), endpoints(d.url)
    yield d.url
    d.stop_and_check()


def model_status(url: str, name: str = "fleet") -> dict:
    r = requests.get(url + "/status", timeout=10)
    assert r.status_code == 200, r.text
    return next(m for m in r.json()["llms"] if m["name"] == name)


def endpoints(url: str) -> list[dict]:
    return model_status(url)["endpoints"]


def requests_per_endpoint(url: str) -> list[int]:
    return [e["requests"] for e in endpoints(url)]


def body(content: str, max_tokens: int = 16, **extra) -> dict:
    return {"model": "fleet", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, **extra}


def ask(url: str, agent: str, content: str = "Say hello.", max_tokens: int = 16, **extra) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", json=body(content, max_tokens, **extra),
                         headers={"Authorization": f"Bearer {agent}"}, timeout=180)


def test_listed_with_its_endpoints(kernel, replicas):
    eps = endpoints(kernel)
    assert [e["url"] for e in eps] == [replicas[0].url, replicas[1].url + "/v1"], eps
    assert all(e["state"] == "up" and e["outstanding"] == 0 for e in eps), eps
    m = model_status(kernel)
    assert m["state"] == "ready" and m["max_active"] == 2 * INFLIGHT, m
    text = requests.get(kernel + "/metrics", timeout=10).text
    for e in eps:
        assert f'aios_endpoint_up{{model="fleet",endpoint="{e["url"]}"}} 1' in text, text[-3000:]


def test_balances_across_replicas(kernel):
    before = requests_per_endpoint(kernel)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: ask(kernel, f"bal-{i}", f"Count to {i % 5 + 2}.").status_code, range(16)))
    assert codes == [200] * 16, codes
    got = [a - b for a, b in zip(requests_per_endpoint(kernel), before)]
    assert sum(got) == 16 and min(got) >= 6, got  # 16 new agents, each pinned to the less loaded replica


def test_agent_affinity(kernel):
    """Sequential turns of one agent land on one replica (its prefix cache keeps the
    conversation), for several agents in turn."""
    for agent in ("sticky-1", "sticky-2", "sticky-3"):
        before = requests_per_endpoint(kernel)
        history = []
        for turn in range(4):
            history.append({"role": "user", "content": f"Turn {turn}: name a colour."})
            r = requests.post(kernel + "/v1/chat/completions", headers={"Authorization": f"Bearer {agent}"},
                              timeout=120, json={"model": "fleet", "messages": history, "max_tokens": 8,
                                                 "temperature": 0})
            assert r.status_code == 200, r.text
            history.append({"role": "assistant", "content": r.json()["choices"][0]["message"]["content"]})
        got = sorted(a - b for a, b in zip(requests_per_endpoint(kernel), before))
        assert got == [0, 4], (agent, got)


def stream(url: str, agent: str, out: dict, max_tokens: int = 300) -> None:
    """One streaming request; out gets its status, its text and how it ended."""
    text, end = [], None
    try:
        with requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {agent}"}, stream=True,
                           timeout=180, json=body("Write a long story about a dragon.", max_tokens, stream=True,
                                                  ignore_eos=True)) as r:
            out["status"] = r.status_code
            for line in r.iter_lines():
                if not line.startswith(b"data: {"):
                    continue
                ev = json.loads(line[6:])
                if "error" in ev:
                    end = ("error", ev["error"].get("message", ""))
                    continue
                ch = ev["choices"][0]
                text.append(ch["delta"].get("content") or "")
                end = ("finish", ch["finish_reason"]) if ch.get("finish_reason") else end
            if r.status_code != 200:
                end = ("error", r.text)
    except requests.RequestException as e:
        end = ("broken", str(e))
    out["text"], out["end"] = "".join(text), end


def test_kill_a_replica_under_load(kernel, replicas):
    """SIGKILL one replica while both stream and more requests wait: the streams it served
    end with an error event naming it; everything else finishes on the other replica; its
    breaker opens; restarted, it is probed back in and takes work again."""
    victim = replicas[0]
    n = 2 * INFLIGHT + 4  # both replicas full, and 4 waiting in the kernel's queue
    outs = [dict() for _ in range(n)]
    threads = [threading.Thread(target=stream, args=(kernel, f"kill-{i}", outs[i])) for i in range(n)]
    for t in threads:
        t.start()
    # every slot streaming: each has sent text
    assert wait_for(lambda: all(e["outstanding"] == INFLIGHT for e in endpoints(kernel)), timeout=60), endpoints(kernel)
    time.sleep(1.0)
    t_kill = time.monotonic()
    victim.kill()
    for t in threads:
        t.join(timeout=300)
    ended = [o["end"] for o in outs]
    finished = [e for e in ended if e and e[0] == "finish"]
    errors = [e for e in ended if e and e[0] == "error"]
    assert len(finished) + len(errors) == n, ended  # no broken connection, no hang
    assert len(errors) <= INFLIGHT, ended  # only the streams the victim was serving
    for e in errors:
        assert victim.url in e[1] and "fleet" in e[1], e
    assert len(finished) >= n - INFLIGHT, ended
    ep = endpoints(kernel)[0]
    assert ep["state"] == "down" and ep["breaker_opens"] >= 1 and ep.get("last_error"), ep
    # new requests go to the survivor meanwhile
    assert ask(kernel, "after-kill").status_code == 200
    victim.start()
    t_back = time.monotonic()
    assert wait_for(lambda: endpoints(kernel)[0]["state"] == "up", timeout=30), endpoints(kernel)
    print(f"breaker closed {time.monotonic() - t_back:.2f}s after the restart ({time.monotonic() - t_kill:.1f}s after the kill)")
    before = requests_per_endpoint(kernel)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda i: ask(kernel, f"back-{i}").status_code, range(8))) == [200] * 8
    got = [a - b for a, b in zip(requests_per_endpoint(kernel), before)]
    assert got[0] >= 2, got  # the restarted replica takes work again
    assert_serving(kernel)


def test_dead_model_falls_back(kernel):
    """`primary`'s one endpoint is dead: it is down with the reason, and its requests are
    served by its fallback (the local model)."""
    assert wait_for(lambda: model_status(kernel, "primary")["state"] == "down", timeout=15), model_status(kernel, "primary")
    st = model_status(kernel, "primary")
    assert "127.0.0.1" in st["reason"] and "primary" in st["reason"], st
    r = requests.post(kernel + "/v1/chat/completions", timeout=120, json={
        "model": "primary", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model,needle", [
    ("{name: r, backend: openai, endpoints: ['http://127.0.0.1:1', 'http://127.0.0.1:1']}", "listed twice"),
    ("{name: r, backend: openai, endpoints: ['http://127.0.0.1:1', 'ftp://x']}", "'ftp://x' is not an http"),
    ("{name: r, backend: openai, hostname: 'http://127.0.0.1:1', fallback: ghost}", "no model is named 'ghost'"),
    ("{name: r, backend: openai, hostname: 'http://127.0.0.1:1', fallback: r}", "comes back round"),
])
def test_bad_fleet_settings_stop_the_kernel(model, needle, tmp_path):
    assert_config_stops(tmp_path, with_local_model(model), needle)


def test_unknown_model_lists_what_exists(kernel):
    err = assert_error(requests.post(kernel + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}), 404)
    assert "gpt-17" in err["message"] and "fleet" in err["message"] and "smollm2" in err["message"], err

"""System tier: remote models behind the kernel (issue 13, the `openai` and `anthropic` backends).

The upstream is llama.cpp's own llama-server (the pinned build, the default model, on a
loopback port), started here; the kernel serves it as model `remote` next to its local
model, with `max_inflight: 2`. Checked through the kernel's doors: the same answer as asking
llama-server directly (temperature 0), streamed token by token, usage from the upstream,
JSON schema output, tool calls mapped both ways (llama-server runs Qwen 2.5's template, so it
has a tool-call format), queueing beyond max_inflight, a client that disconnects closing the
upstream request, and an upstream that is down or refuses the request ending as a clear
error while the kernel keeps serving.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest
import requests

from aiosd_helpers import (assert_error, assert_serving, free_port, metrics,
                           query_body, assert_config_stops, with_local_model, wait_for)
from test_tool_calls_native import two_shot
from test_tool_calls_sampled import WEATHER, fn
from upstream import kernel_with, llama_servers


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    with llama_servers(tmp_path_factory.mktemp("upstream"), 1, threads=2) as (srv,):
        yield srv.url


@pytest.fixture(scope="module")
def kernel(upstream, tmp_path_factory):
    d = kernel_with(tmp_path_factory.mktemp("remote-kernel"), "remote-kernel", f"""
llms:
  default_model: smollm2
  models:
    - name: smollm2
    - name: remote
      backend: vllm
      hostname: {upstream}/v1/
      model: upstream-smollm2
      max_inflight: 2
      timeout_s: 120
    - name: claude
      backend: anthropic
      hostname: {upstream}
      max_inflight: 2
    - name: down
      backend: openai
      hostname: http://127.0.0.1:{free_port()}
scheduler:
  max_active: 4
""")
    yield d.url
    d.stop_and_check()


def body(model="remote", content="Say hello.", max_tokens=24, **extra):
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0, **extra}


def test_same_answer_as_the_upstream_itself(kernel, upstream):
    direct = requests.post(upstream + "/v1/chat/completions", json=body(), timeout=120)
    assert direct.status_code == 200, direct.text
    r = requests.post(kernel + "/v1/chat/completions", json=body(), headers={"Authorization": "Bearer remote-a"},
                      timeout=120)
    assert r.status_code == 200, r.text
    got, want = r.json(), direct.json()
    assert got["model"] == "remote"
    assert got["choices"][0]["message"]["content"] == want["choices"][0]["message"]["content"]
    assert got["choices"][0]["finish_reason"] == want["choices"][0]["finish_reason"]
    assert got["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
    assert got["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]
    # the AIOS door and the Anthropic door reach it too
    q = requests.post(kernel + "/query", json=query_body("Say hello.", max_new_tokens=24, llms=[{"name": "remote"}]),
                      timeout=120)
    assert q.status_code == 200, q.text
    assert q.json()["response"]["response_message"] == want["choices"][0]["message"]["content"]
    m = requests.post(kernel + "/v1/messages", timeout=120, json={
        "model": "remote", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]})
    assert m.status_code == 200, m.text
    assert m.json()["content"][0]["text"] == want["choices"][0]["message"]["content"]


def test_listed_with_backend_and_load(kernel):
    models = {m["id"]: m["meta"] for m in requests.get(kernel + "/v1/models", timeout=10).json()["data"]}
    assert set(models) == {"smollm2", "remote", "claude", "down"}, models
    assert models["claude"]["backend"] == "anthropic", models["claude"]
    assert models["remote"]["backend"] == "openai" and models["remote"]["max_active"] == 2, models["remote"]
    assert "upstream-smollm2" in models["remote"]["description"], models["remote"]
    assert models["smollm2"]["backend"] == "llamacpp"


def test_anthropic_backend(kernel, upstream):
    """The same through the Messages dialect (llama-server's /v1/messages): text, streaming,
    a tool round trip rendered as tool_use / tool_result blocks, usage."""
    want = requests.post(upstream + "/v1/messages", timeout=120, json={
        "model": "x", "max_tokens": 24, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]}).json()
    r = requests.post(kernel + "/v1/chat/completions", json=body(model="claude"), timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["choices"][0]["message"]["content"] == want["content"][0]["text"]
    assert got["usage"]["completion_tokens"] == want["usage"]["output_tokens"]
    assert got["usage"]["prompt_tokens"] == want["usage"]["input_tokens"]
    s = requests.post(kernel + "/v1/chat/completions", json=body(model="claude", stream=True), timeout=120)
    text = "".join(json.loads(ln[6:])["choices"][0]["delta"].get("content") or ""
                   for ln in s.text.splitlines() if ln.startswith("data: {"))
    assert text == want["content"][0]["text"]
    tools = [fn("get_weather", WEATHER, "The weather in a city.")]
    t = requests.post(kernel + "/v1/chat/completions", timeout=120, json={
        "model": "claude", "messages": two_shot("What is the weather in Oslo?"), "tools": tools, "temperature": 0,
        "max_tokens": 60})
    assert t.status_code == 200, t.text
    calls = t.json()["choices"][0]["message"].get("tool_calls")
    assert calls and calls[0]["function"]["name"] == "get_weather", t.json()
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER)
    history = two_shot("What is the weather in Oslo?") + [
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "Sunny, 18 C"}]
    after = requests.post(kernel + "/v1/chat/completions", timeout=120, json={
        "model": "claude", "messages": history, "tools": tools, "tool_choice": "none", "temperature": 0, "max_tokens": 24})
    assert after.status_code == 200, after.text
    assert isinstance(after.json()["choices"][0]["message"]["content"], str)


def test_streams_token_by_token(kernel):
    whole = requests.post(kernel + "/v1/chat/completions", json=body(max_tokens=40), timeout=120).json()
    chunks, finish = [], None
    with requests.post(kernel + "/v1/chat/completions", json=body(max_tokens=40, stream=True), stream=True,
                       timeout=120) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                ch = json.loads(line[6:])["choices"][0]
                if ch["delta"].get("content"):
                    chunks.append(ch["delta"]["content"])
                finish = ch.get("finish_reason") or finish
    assert len(chunks) > 5, chunks  # deltas pass through as they come, not as one block
    assert "".join(chunks) == whole["choices"][0]["message"]["content"]
    assert finish == whole["choices"][0]["finish_reason"]


def test_json_schema_output(kernel):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
              "required": ["city", "days"]}
    r = requests.post(kernel + "/v1/chat/completions", timeout=120, json=body(
        content="Plan a trip to Rome.", max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "trip", "schema": schema}}))
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), schema)


def test_tool_calls_map_both_ways(kernel):
    tools = [fn("get_weather", WEATHER, "The weather in a city.")]
    r = requests.post(kernel + "/v1/chat/completions", timeout=120, json={
        "model": "remote", "messages": two_shot("What is the weather in Paris?"), "tools": tools, "temperature": 0,
        "max_tokens": 60})
    assert r.status_code == 200, r.text
    ch = r.json()["choices"][0]
    calls = ch["message"].get("tool_calls")
    assert calls and ch["finish_reason"] == "tool_calls", ch
    assert calls[0]["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), WEATHER)


def test_queueing_beyond_max_inflight(kernel):
    def one(i):
        r = requests.post(kernel + "/v1/chat/completions", json=body(content=f"Count to {i}.", max_tokens=16),
                          headers={"Authorization": f"Bearer q-{i % 3}"}, timeout=300)
        return r.status_code, r.json()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(s == 200 and res["usage"]["completion_tokens"] > 0 for s, res in results), results
    m = metrics(kernel, "remote")
    assert m["aios_requests_total"] >= 6, m


def test_disconnect_closes_the_upstream_request(kernel):
    before = metrics(kernel, "remote").get("aios_requests_cancelled_total", 0)
    with requests.post(kernel + "/v1/chat/completions", json=body(max_tokens=400, stream=True), stream=True,
                       timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                break  # one delta, then the client goes away
    assert wait_for(lambda: metrics(kernel, "remote").get("aios_requests_cancelled_total", 0) > before, timeout=10)
    assert_serving(kernel)


def test_dead_endpoint_at_start_is_down(kernel):
    """A model whose endpoint is dead at start is `down` with the reason (its health check
    found nothing listening); its requests get 503 naming it, on every door; the other models
    serve."""
    def state():
        return next(m for m in requests.get(kernel + "/core/llms/list", timeout=10).json()["llms"] if m["name"] == "down")
    assert wait_for(lambda: state()["state"] == "down", timeout=15), state()
    assert "127.0.0.1" in state()["reason"] and "connect" in state()["reason"].lower(), state()
    r = requests.post(kernel + "/v1/chat/completions", json=body(model="down"), timeout=60)
    err = assert_error(r, 503, "model_unavailable")
    assert "'down' is down" in err["message"] and "127.0.0.1" in err["message"], err
    s = requests.post(kernel + "/v1/chat/completions", json=body(model="down", stream=True), timeout=60)
    assert s.status_code in (200, 503), s.text
    if s.status_code == 200:  # the stream had started: it ends with an error event
        assert "model_unavailable" in s.text, s.text
    q = requests.post(kernel + "/query", json=query_body("Hi", llms=[{"name": "down"}]), timeout=60)
    assert q.status_code == 503 and "127.0.0.1" in q.text, q.text
    assert requests.post(kernel + "/v1/chat/completions", json=body(), timeout=120).status_code == 200


def test_what_a_remote_model_cannot_take(kernel):
    err = assert_error(requests.post(kernel + "/v1/chat/completions", json=body(logit_bias={"1": -100}), timeout=30), 400)
    assert "remote" in err["message"] and "logit_bias" in err["message"], err
    err = assert_error(requests.post(kernel + "/v1/completions", json={"model": "remote", "prompt": "Hi", "max_tokens": 4},
                                     timeout=30), 400)
    assert "remote" in err["message"], err


@pytest.mark.parametrize("model,needle", [
    ("{name: r, backend: vllm}", "hostname"),  # (openai, anthropic, ... without one: the provider's API)
    ("{name: r, backend: bedrock, hostname: 'http://x'}", "unknown backend 'bedrock'"),
    ("{name: r, backend: sglang}", "hostname"),
    ("{name: r, backend: openai, hostname: 'ftp://x'}", "http:// or https://"),
    ("{name: r, backend: openai, hostname: 'http://127.0.0.1:1', api_key_env: AIOS_TEST_NO_SUCH_KEY}", "AIOS_TEST_NO_SUCH_KEY"),
])
def test_bad_remote_settings_stop_the_kernel(model, needle, tmp_path):
    assert_config_stops(tmp_path, with_local_model(model), needle)

"""System tier: the real aiosd with the real model, driven from outside through every
endpoint it serves, by raw HTTP (requests), the official openai client, and curl."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time

import openai
import pytest
import requests

from aiosd_helpers import (MODEL_NAME, assert_error, chat_body, metrics, query_body)

TIMEOUT = 120  # per request; generous for an ASan build

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "demo/get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}


def post(base_url, path, body, **kw):
    return requests.post(base_url + path, json=body, timeout=TIMEOUT, **kw)


def client(base_url, agent="pytest-agent"):
    return openai.OpenAI(base_url=base_url + "/v1", api_key=agent, max_retries=0, timeout=TIMEOUT)


def check_weather_call(call_name, params):
    """A call of demo/get_weather whose parameters satisfy its schema, checked by hand."""
    assert call_name == "demo/get_weather", call_name
    assert isinstance(params, dict), params
    assert "city" in params, params
    assert isinstance(params["city"], str), params
    if "unit" in params:
        assert params["unit"] in ("celsius", "fahrenheit"), params
    assert set(params) <= {"city", "unit"}, f"properties outside the schema: {params}"


# ------------------------------------------------------------------- plain endpoints

def test_status(base_url):
    r = requests.get(base_url + "/status", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok"
    assert isinstance(body["uptime_s"], float) and body["uptime_s"] >= 0
    assert body["inactive_components"] == []
    [llm] = body["llms"]
    assert llm["name"] == MODEL_NAME and llm["backend"] == "llamacpp"
    assert llm["max_active"] == 16


def test_core_llms_list(base_url):
    r = requests.get(base_url + "/core/llms/list", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "success" and len(body["llms"]) == 1, body
    (m,) = body["llms"]
    assert {k: m[k] for k in ("name", "backend", "state", "max_active", "aliases")} == {
        "name": MODEL_NAME, "backend": "llamacpp", "state": "ready", "max_active": 16, "aliases": []}, m
    assert isinstance(m["active"], (int, float)) and isinstance(m["queued"], (int, float)), m


def test_models_raw(base_url):
    r = requests.get(base_url + "/v1/models", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL_NAME]
    m = body["data"][0]
    assert m["object"] == "model"
    assert m["meta"]["n_ctx"] == 8192 and m["meta"]["n_params"] > 100_000_000


def test_models_openai_client(base_url):
    ids = [m.id for m in client(base_url).models.list()]
    assert ids == [MODEL_NAME]


def test_metrics_format(base_url):
    r = requests.get(base_url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    for name, kind in [("aios_tokens_generated_total", "counter"), ("aios_requests_cancelled_total", "counter"),
                       ("aios_active_sequences", "gauge"), ("aios_queue_length", "gauge")]:
        assert f"# TYPE {name} {kind}\n" in r.text
        assert f'{name}{{model="{MODEL_NAME}",policy="fifo"}} ' in r.text
    m = metrics(base_url)
    assert m["aios_active_sequences"] == 0 and m["aios_queue_length"] == 0


def test_metrics_process(aiosd):
    """The process series agree with what /proc says of the kernel, and SQLite's count covers
    the databases it has open."""
    m = metrics(aiosd.url)
    pid = aiosd.proc.pid
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))
    assert 0.5 * rss <= m["aios_process_resident_bytes"] <= 2 * rss, (m["aios_process_resident_bytes"], rss)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    assert abs(m["aios_process_open_fds"] - fds) <= 8, (m["aios_process_open_fds"], fds)
    assert m["aios_sqlite_memory_bytes"] > 0
    assert m["aios_heap_live_bytes"] >= 0 and m["aios_heap_free_bytes"] >= 0


def test_metrics_steps(aiosd):
    """The engine-step histograms (issue 16 part 1) agree with the step counters: one sample
    per llama_decode in every series, the decode phase sums to the engine's busy seconds, the
    batch sizes to its batch tokens; buckets are cumulative and end at the count."""
    r = requests.post(aiosd.url + "/v1/chat/completions", json=chat_body("Name three colours.", max_tokens=8), timeout=120)
    assert r.status_code == 200, r.text
    text = requests.get(aiosd.url + "/metrics", timeout=10).text
    m = metrics(aiosd.url)
    series = {}
    for ln in text.splitlines():
        if ln.startswith("aios_step_") and f'model="{MODEL_NAME}"' in ln:
            key, val = ln.rsplit(" ", 1)
            series[key] = float(val)
    steps = m["aios_decode_steps_total"]
    assert steps > 0
    lab = next(k for k in series if k.startswith("aios_step_batch_tokens_count")).split("{")[1].rstrip("}")
    for phase in ("decode", "sample", "schedule", "switch"):
        assert series[f'aios_step_seconds_count{{{lab},phase="{phase}"}}'] == steps
        buckets = [v for k, v in series.items() if k.startswith(f'aios_step_seconds_bucket{{{lab},phase="{phase}"')]
        assert buckets == sorted(buckets) and buckets[-1] == steps
    assert abs(series[f'aios_step_seconds_sum{{{lab},phase="decode"}}'] - m["aios_engine_busy_seconds_total"]) < 1e-3
    assert series[f"aios_step_batch_tokens_sum{{{lab}}}"] == m["aios_batch_tokens_total"]
    for name in ("batch_sequences", "kv_cells", "context_cells"):
        assert series[f"aios_step_{name}_count{{{lab}}}"] == steps
    assert series[f"aios_step_batch_sequences_sum{{{lab}}}"] >= steps  # every step decodes a sequence
    assert series[f"aios_step_context_cells_sum{{{lab}}}"] > 0 and series[f"aios_step_kv_cells_sum{{{lab}}}"] > 0


# ------------------------------------------------------------------- /query (AIOS envelope)

def check_envelope(body):
    resp = body["response"]
    assert resp["response_class"] == "llm"
    assert resp["finished"] is True
    assert resp["error"] is None
    assert resp["status_code"] == 200
    assert resp["finish_reason"] in ("stop", "length")
    assert resp["usage"]["prompt_tokens"] > 0
    assert resp["usage"]["completion_tokens"] > 0
    keys = ("start_times", "end_times", "waiting_times", "turnaround_times")
    for k in keys:
        assert isinstance(body[k], list) and len(body[k]) >= 1, (k, body[k])
        for v in body[k]:
            assert isinstance(v, float) and math.isfinite(v) and v >= 0, (k, body[k])
    assert len({len(body[k]) for k in keys}) == 1, body
    for st, en, wt, ta in zip(*(body[k] for k in keys)):
        assert st <= en
        assert wt <= ta
        assert st > 1.6e9  # wall-clock timestamps
    return resp


def test_query_chat_text(base_url):
    r = post(base_url, "/query", query_body("What is the capital of France?", max_new_tokens=24, agent="alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    resp = check_envelope(body)
    assert isinstance(resp["response_message"], str) and resp["response_message"].strip()
    assert resp["tool_calls"] is None
    assert resp["aios"]["agent"] == "alice"
    assert resp["aios"]["turnaround_time"] >= resp["aios"]["waiting_time"]


def test_query_named_llm(base_url):
    body = query_body("Say hi.", max_new_tokens=8, llms=[{"name": MODEL_NAME, "backend": "llamacpp"}])
    r = post(base_url, "/query", body)
    assert r.status_code == 200, r.text
    assert check_envelope(r.json())["response_message"]


def test_query_deterministic_at_temperature_0(base_url):
    body = query_body("Name three fruits.", max_new_tokens=24)
    a = post(base_url, "/query", body)
    b = post(base_url, "/query", body)
    assert a.status_code == 200 and b.status_code == 200
    ta, tb = a.json()["response"]["response_message"], b.json()["response"]["response_message"]
    assert ta and ta == tb


@pytest.mark.parametrize("n", [1, 7])
def test_query_max_new_tokens(base_url, n):
    r = post(base_url, "/query", query_body("Write a very long story about a dragon.", max_new_tokens=n))
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    assert resp["usage"]["completion_tokens"] <= n
    # this prompt runs for hundreds of tokens, so the cap is what ends it
    assert resp["usage"]["completion_tokens"] == n
    assert resp["finish_reason"] == "length"


def test_query_json_output(base_url):
    body = query_body("Give a JSON object with keys name and age for a person.", max_new_tokens=64,
                      action_type="chat_with_json_output", message_return_type="json")
    r = post(base_url, "/query", body)
    assert r.status_code == 200, r.text
    resp = check_envelope(r.json())
    assert resp["finish_reason"] == "stop", resp
    parsed = json.loads(resp["response_message"])
    assert isinstance(parsed, dict)


def test_query_json_schema(base_url):
    schema = {"type": "object",
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "student": {"type": "boolean"}},
              "required": ["name", "age", "student"]}
    body = query_body("Describe a person.", max_new_tokens=64, action_type="chat_with_json_output",
                      message_return_type="json",
                      response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    r = post(base_url, "/query", body)
    assert r.status_code == 200, r.text
    resp = check_envelope(r.json())
    assert resp["finish_reason"] == "stop", resp
    obj = json.loads(resp["response_message"])
    assert isinstance(obj, dict)
    assert isinstance(obj["name"], str)
    assert isinstance(obj["age"], int) and not isinstance(obj["age"], bool)
    assert isinstance(obj["student"], bool)


def test_query_tool_call_output(base_url):
    body = query_body("What is the weather in Paris?", max_new_tokens=64,
                      action_type="chat_with_tool_call_output", message_return_type="json",
                      tools=[WEATHER_TOOL])
    r = post(base_url, "/query", body)
    assert r.status_code == 200, r.text
    resp = check_envelope(r.json())
    assert resp["response_message"] is None
    calls = resp["tool_calls"]
    assert isinstance(calls, list) and calls, resp
    for c in calls:
        check_weather_call(c["name"], c["parameters"])
        assert isinstance(c["id"], str) and c["id"]
    assert len({c["id"] for c in calls}) == len(calls)


def test_query_tool_without_calls(base_url):
    r = post(base_url, "/query", {"agent_name": "a", "query_type": "tool", "query_data": {"operation_type": "x"}})
    err = assert_error(r, 400, "invalid_request")
    assert "tool_calls" in err["message"]


def test_query_call_tool_needs_kernel_tools(base_url):
    r = post(base_url, "/query", query_body(action_type="call_tool"))
    assert r.status_code in (400, 404), r.text


# ------------------------------------------------------------------- OpenAI surface

def test_openai_chat_non_stream(base_url):
    resp = client(base_url, agent="bob").chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=16, temperature=0)
    assert resp.object == "chat.completion"
    assert resp.model == MODEL_NAME
    assert len(resp.choices) == 1
    ch = resp.choices[0]
    assert ch.message.role == "assistant"
    assert ch.message.content and ch.message.content.strip()
    assert ch.finish_reason in ("stop", "length")
    assert 1 <= resp.usage.completion_tokens <= 16
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    aios = resp.model_extra["aios"]
    assert aios["agent"] == "bob"
    assert aios["turnaround_time"] >= aios["waiting_time"] >= 0


def test_openai_stream_matches_non_stream(det_url):
    c = client(det_url)
    args = dict(model=MODEL_NAME, messages=[{"role": "user", "content": "Tell me about the moon."}],
                max_tokens=32, temperature=0, seed=42)
    full = c.chat.completions.create(**args)
    deltas, finish, n_chunks = [], None, 0
    for chunk in c.chat.completions.create(stream=True, **args):
        n_chunks += 1
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            d = chunk.choices[0].delta
            if d.content:
                deltas.append(d.content)
            if chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
    assert n_chunks > 2, "the answer should arrive in several chunks"
    assert "".join(deltas) == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason


def test_openai_stream_include_usage(base_url):
    chunks = list(client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Say something nice."}],
        max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert chunks
    last = chunks[-1]
    assert last.usage is not None
    assert last.choices == []
    assert 1 <= last.usage.completion_tokens <= 12
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text


def test_openai_tools_required(base_url):
    resp = client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "What's the weather like in Tokyo?"}],
        tools=[WEATHER_TOOL], tool_choice="required", max_tokens=64, temperature=0)
    ch = resp.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.content is None
    calls = ch.message.tool_calls
    assert calls, resp
    for tc in calls:
        assert tc.type == "function"
        assert tc.id
        check_weather_call(tc.function.name, json.loads(tc.function.arguments))


def test_openai_parallel_tool_calls_false_makes_one_call(base_url):
    resp = client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Weather in Tokyo, Paris and Rome?"}],
        tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False, max_tokens=96, temperature=0)
    ch = resp.choices[0]
    assert ch.finish_reason == "tool_calls" and len(ch.message.tool_calls) == 1, ch
    check_weather_call(ch.message.tool_calls[0].function.name, json.loads(ch.message.tool_calls[0].function.arguments))


def test_openai_tools_stream(base_url):
    chunks = list(client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Weather in Berlin, in celsius?"}],
        tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "demo/get_weather"}},
        max_tokens=64, temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls, chunks
    for tc in calls:
        check_weather_call(tc.function.name, json.loads(tc.function.arguments))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_json_object(base_url):
    resp = client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Give a JSON object with keys name and age."}],
        response_format={"type": "json_object"}, max_tokens=64, temperature=0)
    assert resp.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


def test_completions_endpoint(base_url):
    r = post(base_url, "/v1/completions", {"model": MODEL_NAME, "prompt": "The capital of France is",
                                           "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion"
    ch = body["choices"][0]
    assert isinstance(ch["text"], str) and ch["text"].strip()
    assert "Paris" in ch["text"]
    assert 1 <= body["usage"]["completion_tokens"] <= 8
    # and through the openai client
    resp = client(base_url).completions.create(model=MODEL_NAME, prompt="The capital of France is",
                                               max_tokens=8, temperature=0)
    assert resp.choices[0].text == ch["text"]


def test_completions_stream(base_url):
    r = requests.post(base_url + "/v1/completions", json={"prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0,
                                                          "stream": True}, stream=True, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    text = "".join(p["choices"][0]["text"] for p in parsed if p["choices"])
    assert text.strip()
    assert parsed[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_string(base_url):
    body = chat_body("Write a very long essay about the history of Rome, with many chapters.", max_tokens=48)
    free = post(base_url, "/v1/chat/completions", body).json()["choices"][0]["message"]["content"]
    words = [w for w in free.split() if w.isalpha() and len(w) >= 4]
    assert len(words) >= 3, free
    stop = words[2]  # a word well inside the answer
    cut = free.index(stop)
    stopped = post(base_url, "/v1/chat/completions", dict(body, stop=[stop, "\u2603never"])).json()
    text = stopped["choices"][0]["message"]["content"]
    assert stop not in text
    assert text == free[:cut], (text, free[:cut])
    assert stopped["choices"][0]["finish_reason"] == "stop"
    # a single string works as well
    text2 = post(base_url, "/v1/chat/completions", dict(body, stop=stop)).json()["choices"][0]["message"]["content"]
    assert text2 == text
    # streamed: no event carries any part of the stop string past the cut
    r = requests.post(base_url + "/v1/chat/completions", json=dict(body, stop=[stop], stream=True), stream=True,
                      timeout=TIMEOUT)
    events = [ln[6:] for ln in r.iter_lines(decode_unicode=True) if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_bearer_names_the_agent(base_url):
    r = post(base_url, "/v1/chat/completions", chat_body("Hi", max_tokens=2),
             headers={"Authorization": "Bearer research-agent-7"})
    assert r.status_code == 200
    assert r.json()["aios"]["agent"] == "research-agent-7"
    r = post(base_url, "/v1/chat/completions", chat_body("Hi", max_tokens=2))
    assert r.json()["aios"]["agent"] == "anonymous"


# ------------------------------------------------------------------- curl

CURL = shutil.which("curl")


def test_curl_non_stream(base_url):
    assert CURL, "curl is required by the system tier"
    out = subprocess.run([CURL, "-s", "-w", "\n%{http_code}", base_url + "/v1/chat/completions",
                          "-H", "Content-Type: application/json",
                          "-d", json.dumps(chat_body("Say hello.", max_tokens=8))],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    payload, status = out.stdout.rsplit("\n", 1)
    assert status == "200"
    body = json.loads(payload)
    assert body["choices"][0]["message"]["content"]


def test_curl_stream(base_url):
    assert CURL, "curl is required by the system tier"
    out = subprocess.run([CURL, "-sN", base_url + "/v1/chat/completions", "-H", "Content-Type: application/json",
                          "-d", json.dumps(chat_body("Say hello.", max_tokens=8, stream=True))],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    events = [line for line in out.stdout.split("\n") if line]
    assert all(e.startswith("data: ") for e in events), events
    assert events[-1] == "data: [DONE]"
    assert out.stdout.endswith("data: [DONE]\n\n")
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


# ------------------------------------------------------------------- concurrency

def test_sixteen_parallel_clients(base_url):
    topics = ["cats", "dogs", "rain", "the sea", "mountains", "bread", "music", "trains",
              "books", "coffee", "winter", "gardens", "rivers", "stars", "bicycles", "clocks"]
    results: list = [None] * len(topics)
    barrier = threading.Barrier(len(topics))

    def worker(i):
        with requests.Session() as s:
            barrier.wait(timeout=30)
            if i % 2:
                r = s.post(base_url + "/query", json=query_body(f"Write one sentence about {topics[i]}.",
                                                               max_new_tokens=24, agent=f"agent-{i}"),
                           timeout=TIMEOUT)
                results[i] = (r.status_code, r.json()["response"]["response_message"] if r.ok else r.text,
                              r.json()["response"]["aios"]["turnaround_time"] if r.ok else 0)
            else:
                r = s.post(base_url + "/v1/chat/completions",
                           json=chat_body(f"Write one sentence about {topics[i]}.", max_tokens=24),
                           headers={"Authorization": f"Bearer agent-{i}"}, timeout=TIMEOUT)
                results[i] = (r.status_code, r.json()["choices"][0]["message"]["content"] if r.ok else r.text,
                              r.json()["aios"]["turnaround_time"] if r.ok else 0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(topics))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=TIMEOUT + 30)
    wall = time.monotonic() - t0
    assert all(not t.is_alive() for t in threads)
    for i, res in enumerate(results):
        assert res is not None, f"client {i} got no answer"
        status, text, _ = res
        assert status == 200, (i, text)
        assert isinstance(text, str) and text.strip(), (i, text)
    # the requests were served together (batched), not one after another
    assert wall < sum(r[2] for r in results), (wall, [r[2] for r in results])
    m = metrics(base_url)
    assert m["aios_active_sequences"] == 0 and m["aios_queue_length"] == 0


# ------------------------------------------------------------------- accounting

def test_tokens_generated_counter_matches_usage(spawn_daemon):
    d = spawn_daemon("accounting", ["--set", "scheduler.max_active=4"])
    url = d.url
    m0 = metrics(url)
    assert m0["aios_tokens_generated_total"] == 0
    assert m0["aios_requests_total"] == 0
    completion, prompt, n = 0, 0, 0

    r = post(url, "/query", query_body("Say hello.", max_new_tokens=12))
    assert r.status_code == 200
    completion += r.json()["response"]["usage"]["completion_tokens"]
    prompt += r.json()["response"]["usage"]["prompt_tokens"]
    n += 1
    for body, path in [(chat_body("Name a color.", max_tokens=10), "/v1/chat/completions"),
                       ({"prompt": "Once upon a time", "max_tokens": 9, "temperature": 0.7, "seed": 3}, "/v1/completions")]:
        r = post(url, path, body)
        assert r.status_code == 200
        completion += r.json()["usage"]["completion_tokens"]
        prompt += r.json()["usage"]["prompt_tokens"]
        n += 1
    # a rejected request generates nothing and is not counted
    assert post(url, "/v1/chat/completions", {"messages": "nope"}).status_code == 400
    chunks = list(client(url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Count to five."}], max_tokens=11,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    completion += chunks[-1].usage.completion_tokens
    prompt += chunks[-1].usage.prompt_tokens
    n += 1
    # concurrent ones as well
    out = []

    def one(i):
        rr = post(url, "/v1/chat/completions", chat_body(f"Say the number {i}.", max_tokens=5 + i))
        out.append(rr.json()["usage"])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(out) == 6
    completion += sum(u["completion_tokens"] for u in out)
    prompt += sum(u["prompt_tokens"] for u in out)
    n += 6

    m = metrics(url)
    assert m["aios_tokens_generated_total"] == completion
    assert m["aios_prompt_tokens_total"] == prompt
    assert m["aios_requests_total"] == n
    assert m["aios_requests_failed_total"] == 0
    assert m["aios_requests_cancelled_total"] == 0
    assert m["aios_active_sequences"] == 0
    assert m["aios_kv_reserved_cells"] == 0
    st = requests.get(url + "/status", timeout=10).json()["llms"][0]
    assert st["completion_tokens"] == completion and st["requests_done"] == n


def test_gauges_while_generating(base_url):
    """While one request runs, /metrics and /status show it: one active sequence and the
    KV cells it reserved (its prompt + max_tokens); both drop back to 0 when it ends."""
    max_tokens = 200
    body = chat_body("Write a very long essay about the history of Rome, with many chapters.",
                     max_tokens=max_tokens, stream=True, stream_options={"include_usage": True})
    with requests.post(base_url + "/v1/chat/completions", json=body, stream=True, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        lines = r.iter_lines(decode_unicode=True)
        seen = 0
        events = []
        for line in lines:
            if line.startswith("data: "):
                events.append(line[6:])
                seen += 1
                if seen == 2:
                    break
        during = metrics(base_url)
        status = requests.get(base_url + "/status", timeout=10).json()["llms"][0]
        events += [line[6:] for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == max_tokens, usage  # still running when sampled above
    assert during["aios_active_sequences"] == 1, during
    assert status["active"] == 1, status
    reserved = usage["prompt_tokens"] + max_tokens
    assert during["aios_kv_reserved_cells"] == reserved, (during, usage)
    assert status["kv_reserved"] == reserved, (status, usage)
    after = metrics(base_url)
    assert after["aios_active_sequences"] == 0 and after["aios_kv_reserved_cells"] == 0, after


def test_unicode_round_trip_and_stream(base_url):
    """Multi-byte text in and out: every SSE event is valid UTF-8 JSON (no character split
    between events) and the streamed text equals the non-streamed one."""
    body = chat_body("Écris « bonjour » en chinois et en japonais, avec des emojis 🌍🙂: 你好, こんにちは.",
                     max_tokens=48, seed=7)
    full = post(base_url, "/v1/chat/completions", body)
    assert full.status_code == 200
    # strict: JSON must be UTF-8, even when max_tokens cuts the answer inside a character
    text = json.loads(full.content.decode("utf-8"))["choices"][0]["message"]["content"]
    assert text and "\ufffd" not in text
    r = requests.post(base_url + "/v1/chat/completions", json=dict(body, stream=True), stream=True, timeout=TIMEOUT)
    raw = r.content
    parts = []
    for ev in raw.split(b"\n\n"):
        if not ev.strip():
            continue
        assert ev.startswith(b"data: "), ev
        payload = ev[6:].decode("utf-8")  # strict: a split character would raise here
        if payload == "[DONE]":
            continue
        parts.append(json.loads(payload)["choices"][0]["delta"].get("content", ""))
    assert "".join(parts) == text


def test_tool_choice_auto_lets_the_model_answer_in_text(base_url):
    """tools on every turn, tool_choice absent or "auto": the model decides. This small model
    answers these prompts in text (it never opens a call unprompted), and the kernel gives
    that text back instead of forcing a call (which broke every agent loop)."""
    c = client(base_url)
    for choice in (None, "auto"):
        extra = {"tool_choice": choice} if choice else {}
        resp = c.chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "Say hello in French."}],
            tools=[WEATHER_TOOL], max_tokens=24, temperature=0, **extra)
        ch = resp.choices[0]
        assert not ch.message.tool_calls, ch
        assert ch.message.content and ch.finish_reason in ("stop", "length"), ch
    # streamed: text deltas, no tool-call chunk
    chunks = list(c.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "Say hello in French."}],
        tools=[WEATHER_TOOL], max_tokens=24, temperature=0, stream=True))
    text = "".join(k.choices[0].delta.content or "" for k in chunks if k.choices)
    assert text == ch.message.content, (text, ch.message.content)
    assert not any(k.choices and k.choices[0].delta.tool_calls for k in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_tool_choice_none_gives_text(base_url):
    resp = client(base_url).chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "What's the weather like in Tokyo?"}],
        tools=[WEATHER_TOOL], tool_choice="none", max_tokens=16, temperature=0)
    ch = resp.choices[0]
    assert not ch.message.tool_calls
    assert ch.message.content
    assert ch.finish_reason in ("stop", "length")

"""System tier: tool calls in the model's own template format (llama.cpp's common chat library).

The default model's template (SmolLM2) has no tool-call format, so the kernel writes calls as
its JSON array there (test_tool_calls_sampled.py). Here a kernel runs the same model with a
template that has one: Qwen 2.5's, from the pinned llama.cpp source, given as
`llms.models.0.chat_template_file`. The template renders the tools (<tools>...</tools>) and the
model writes <tool_call>{"name", "arguments"}</tool_call>; the kernel constrains each call's
arguments with its own grammar of the tool's schema and parses the output with the
template's parser. Checked on every door, with `jsonschema` as the independent judge:
required and named choices always call, auto lets the model decide (the split is printed),
streams agree with whole answers, a tool result renders the template's way, and 40 calls
sampled at temperature 1.0 all validate (the unit tier walks the same grammars at random,
tests/unit/test_llm.c, and test_tool_calls_sampled.py samples 200 in the kernel's format). Bad settings stop the kernel with a clear error.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import requests

from aiosd_helpers import MODEL_NAME, REPO, Daemon, assert_stops_with_error
from test_tool_calls_sampled import BOOKING, CALL_PROMPTS, TEXT_PROMPTS, WEATHER, fn, kernel_tools, validation_failures


def llama_templates() -> Path:
    ver = next(ln.split("=", 1)[1].strip() for ln in (REPO / "scripts" / "deps.env").read_text().splitlines()
               if ln.startswith("LLAMA_PY_VERSION="))
    cache = Path(os.environ.get("AIOS_CACHE") or Path.home() / ".cache" / "aios")
    return cache / f"llama-{ver}" / "src" / "models" / "templates"


QWEN = llama_templates() / "Qwen-Qwen2.5-7B-Instruct.jinja"
TOOLS = [fn("get_weather", WEATHER, "The weather in a city.")]


@pytest.fixture(scope="module")
def native_daemon(tmp_path_factory):
    assert QWEN.is_file(), f"{QWEN} is missing: the pinned llama.cpp source (make llama) carries it"
    d = Daemon("native", tmp_path_factory.mktemp("native"),
               ["--set", f"llms.models.0.chat_template_file={QWEN}", "--set", "scheduler.max_active=16",
                "--set", "llms.default_max_tokens=64"])
    d.start()
    yield d
    d.stop_and_check()


@pytest.fixture
def native(native_daemon):
    return native_daemon.url


@pytest.fixture(scope="module")
def native_det(tmp_path_factory):
    """The same in deterministic mode, for byte comparisons between requests (normal mode
    rounds by batch shape and attention view, docs/architecture.md)."""
    d = Daemon("native-det", tmp_path_factory.mktemp("native-det"),
               ["--set", f"llms.models.0.chat_template_file={QWEN}", "--set", "scheduler.deterministic=1",
                "--set", "llms.default_max_tokens=64"])
    d.start()
    yield d.url
    d.stop_and_check()


def chat(url, messages, tools=TOOLS, tool_choice="auto", temperature=0.0, max_tokens=96, **extra):
    body = {"model": MODEL_NAME, "messages": messages, "tools": tools, "tool_choice": tool_choice,
            "temperature": temperature, "max_tokens": max_tokens, **extra}
    r = requests.post(url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


def valid_calls(calls, schemas):
    failures = validation_failures(calls, schemas)
    assert not failures, failures


ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def two_shot(question: str) -> list[dict]:
    """A conversation in which the assistant answered two weather questions with a call each
    (in this format SmolLM2-135M calls under auto after such a pattern, not after one shot:
    Qwen's template puts tool results in the user's turn, and the model copies those)."""
    msgs = []
    for i, city in enumerate(("Rome", "Madrid")):
        msgs += [{"role": "user", "content": f"What is the weather in {city}?"},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": f"c{i}", "type": "function",
                      "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}]
    return msgs + [{"role": "user", "content": question}]


NATIVE_CALL_PROMPTS = [two_shot(f"What is the weather in {c}?") for c in ("Paris", "Oslo", "Lima", "Cairo", "Tokyo", "Quito")]


def test_the_kernel_says_which_format(native_daemon):
    log = native_daemon.tail(400)
    assert f"chats rendered by {QWEN}, tool calls in the template's own format" in log, log


def test_required_calls_in_the_template_format(native):
    for msgs in [ASK] + TEXT_PROMPTS[:3]:
        ch = chat(native, msgs, tool_choice="required", max_tokens=200)
        assert ch["finish_reason"] == "tool_calls" and ch["message"]["tool_calls"], ch
        assert ch["message"]["content"] is None, ch
        valid_calls(ch["message"]["tool_calls"], {"get_weather": WEATHER})


def test_named_function_and_parallel_false(native):
    tools = TOOLS + [fn("book_hotel", BOOKING, "Books a hotel room.")]
    for msgs in [ASK] + TEXT_PROMPTS[:2]:
        ch = chat(native, msgs, tools, {"type": "function", "function": {"name": "book_hotel"}}, max_tokens=300,
                  parallel_tool_calls=False)
        calls = ch["message"]["tool_calls"]
        assert calls and len(calls) == 1 and calls[0]["function"]["name"] == "book_hotel", ch
        valid_calls(calls, {"book_hotel": BOOKING})


def test_auto_lets_the_model_choose(native):
    split = {"text": 0, "calls": 0}
    for msgs in NATIVE_CALL_PROMPTS + TEXT_PROMPTS:
        ch = chat(native, msgs, max_tokens=200, parallel_tool_calls=False)
        if ch["message"].get("tool_calls"):
            assert ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None, ch
            valid_calls(ch["message"]["tool_calls"], {"get_weather": WEATHER})
            split["calls"] += 1
        else:
            assert isinstance(ch["message"]["content"], str) and "<tool_call>" not in ch["message"]["content"][:12], ch
            split["text"] += 1
    print(f"\ntemplate format, tool_choice auto over {len(NATIVE_CALL_PROMPTS) + len(TEXT_PROMPTS)} prompts: {split}")
    assert split["text"] > 0 and split["calls"] > 0, split


def stream_chat(url, messages, **extra):
    body = {"model": MODEL_NAME, "messages": messages, "tools": TOOLS, "temperature": 0.0, "max_tokens": 120,
            "stream": True, **extra}
    text, calls, finish = "", [], None
    with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            ch = json.loads(line[6:])["choices"][0]
            text += ch["delta"].get("content") or ""
            calls += ch["delta"].get("tool_calls") or []
            finish = ch.get("finish_reason") or finish
    return text, calls, finish


def test_stream_agrees_with_the_whole_answer(native_det):
    for msgs in [NATIVE_CALL_PROMPTS[0], TEXT_PROMPTS[0], ASK]:
        whole = chat(native_det, msgs, max_tokens=120)
        text, calls, finish = stream_chat(native_det, msgs)
        assert finish == whole["finish_reason"], (finish, whole)
        if whole["message"].get("tool_calls"):
            assert [c["function"] for c in calls] == [c["function"] for c in whole["message"]["tool_calls"]]
            assert text == ""
        else:
            assert calls == [] and text == whole["message"]["content"]


def test_tool_result_round_trip(native):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny, 21 C"}]
    ch = chat(native, history, tool_choice="none", max_tokens=24)
    assert isinstance(ch["message"]["content"], str) and ch["message"].get("tool_calls") is None, ch
    r = requests.post(native + "/apply-template", json={"messages": history}, timeout=30)
    assert r.status_code == 200, r.text
    prompt = r.json()["prompt"]
    assert "<tool_response>\nSunny, 21 C\n</tool_response>" in prompt, prompt
    assert prompt.startswith("<|im_start|>system\nYou are Qwen"), prompt  # the Jinja template, not the built-in one


def test_every_door_writes_template_calls(native):
    h = {"Authorization": "Bearer doors"}
    r = requests.post(native + "/v1/messages", headers=h, json={
        "model": MODEL_NAME, "max_tokens": 120, "temperature": 0, "messages": ASK, "tool_choice": {"type": "any"},
        "tools": [{"name": "get_weather", "description": "The weather in a city.", "input_schema": WEATHER}]})
    assert r.status_code == 200, r.text
    uses = [b for b in r.json()["content"] if b["type"] == "tool_use"]
    assert uses and r.json()["stop_reason"] == "tool_use", r.json()
    jsonschema.validate(uses[0]["input"], WEATHER)
    r = requests.post(native + "/v1/responses", headers=h, json={
        "model": MODEL_NAME, "input": "What is the weather in Oslo?", "tool_choice": "required", "temperature": 0,
        "max_output_tokens": 120, "store": False,
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}]})
    assert r.status_code == 200, r.text
    items = [o for o in r.json()["output"] if o["type"] == "function_call"]
    assert items, r.json()
    jsonschema.validate(json.loads(items[0]["arguments"]), WEATHER)
    ollama_msgs = json.loads(json.dumps(NATIVE_CALL_PROMPTS[1]))  # Ollama's calls carry arguments as an object
    for m in ollama_msgs:
        for c in m.get("tool_calls") or []:
            c["function"]["arguments"] = json.loads(c["function"]["arguments"])
    r = requests.post(native + "/api/chat", headers=h, json={
        "model": MODEL_NAME, "messages": ollama_msgs, "tools": TOOLS, "stream": False,
        "options": {"temperature": 0, "num_predict": 120}})
    assert r.status_code == 200, r.text
    msg = r.json()["message"]
    assert msg.get("tool_calls"), msg  # the two-shot pattern: the model calls under auto
    jsonschema.validate(msg["tool_calls"][0]["function"]["arguments"], WEATHER)


def test_40_sampled_calls_validate(native):
    schemas = {"book_hotel": BOOKING, "get_weather": WEATHER}
    tools = TOOLS + [fn("book_hotel", BOOKING, "Books a hotel room.")]
    for t in kernel_tools(native):  # two built-ins: each tool lengthens every prompt (the template lists them all)
        if t["function"]["name"] in ("aios/calculator", "aios/time"):
            schemas[t["function"]["name"]] = t["function"]["parameters"]
            tools.append(t)
    prompts = [m[-1]["content"] for m in CALL_PROMPTS + TEXT_PROMPTS] + ["Book a suite for two.", "Read my notes file."]

    def one(i: int) -> list[dict]:
        ch = chat(native, [{"role": "user", "content": prompts[i % len(prompts)]}], tools, "required",
                  temperature=1.0, max_tokens=160, seed=2000 + i, parallel_tool_calls=i % 4 == 0)
        return ch["message"].get("tool_calls") or []  # a call cut by max_tokens is dropped, the ones before it stand

    calls, made = [], 0
    with ThreadPoolExecutor(16) as pool:
        while len(calls) < 40 and made < 96:
            for got in pool.map(one, range(made, made + 16)):
                calls.extend(got)
            made += 16
    failures = validation_failures(calls, schemas)
    print(f"\ntemplate format: {len(calls)} sampled calls from {made} requests at temperature 1.0; "
          f"tools: {sorted({c['function']['name'] for c in calls})}; {len(failures)} validation failures")
    assert len(calls) >= 40, (len(calls), made)
    assert not failures, failures[:10]


@pytest.mark.parametrize("flags,needle", [
    (["--set", "llms.models.0.tool_format=native"], "has no tool-call format"),
    (["--set", "llms.models.0.tool_format=xml"], "tool_format"),
    (["--set", "llms.models.0.chat_template_file=/nonexistent/t.jinja"], "/nonexistent/t.jinja"),
    (["--set", "llms.models.3.tool_format=json"], "llms.models.3"),
])
def test_bad_template_settings_stop_the_kernel(flags, needle, tmp_path):
    assert_stops_with_error(["--data-dir", str(tmp_path / "d"), *flags], needle)


def test_a_broken_template_file_stops_the_kernel(tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% if %}")
    assert_stops_with_error(["--data-dir", str(tmp_path / "d"), "--set", f"llms.models.0.chat_template_file={bad}"],
                            "chat template")


def test_aios_actions_on_the_template_format(native):
    """The AIOS action types run on the same machinery: chat_with_tool_call_output answers the
    calls in AIOS shape; call_tool makes the kernel run them (built-in tools)."""
    tools = [{"type": "function", "function": {"name": "aios/calculator"}}]
    base = {"messages": [{"role": "user", "content": "Compute 6*7 with the calculator."}], "tools": tools,
            "temperature": 0, "max_new_tokens": 160}
    plan = requests.post(native + "/query", timeout=300, json={"agent_name": "planner", "query_type": "llm", "query_data": {
        **base, "action_type": "chat_with_tool_call_output"}})
    assert plan.status_code == 200, plan.text
    calls = plan.json()["response"]["tool_calls"]
    assert calls and len(calls) <= 8 and all(c["name"] == "aios/calculator" and isinstance(c["parameters"], dict)
                                             for c in calls), calls
    run = requests.post(native + "/query", timeout=300, json={"agent_name": "planner", "query_type": "llm", "query_data": {
        **base, "action_type": "call_tool"}})
    assert run.status_code == 200, run.text
    resp = run.json()["response"]
    assert resp["response_class"] == "tool" and resp["tool_results"], resp
    assert [x["name"] for x in resp["tool_results"]] == [c["name"] for c in calls]
    assert all(x["status_code"] == 200 for x in resp["tool_results"]), resp

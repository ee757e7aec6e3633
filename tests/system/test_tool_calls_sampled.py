"""System tier: tool calling on the real model, judged by an independent validator.

- tool_choice auto lets the model decide: over a fixed prompt set, some answers are text and
  some are calls (the split is printed; SmolLM2-135M calls a tool under auto only when the
  conversation shows it doing so, hence the few-shot prompts).
- required always calls; a named function always calls that one.
- 200 calls sampled at temperature 1.0 over the built-in tools' schemas and a schema with
  every constrained keyword the grammar supports: every one validates against its schema with
  the `jsonschema` package (pinned), not the kernel's own validator. 0 failures allowed.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import requests

from aiosd_helpers import MODEL_NAME

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1, "maxLength": 40}}, "required": ["city"],
           "additionalProperties": False}
BOOKING = {  # every keyword family the grammar states exactly
    "type": "object",
    "properties": {
        "guests": {"type": "integer", "minimum": 1, "maximum": 12},
        "nights": {"type": "integer", "exclusiveMinimum": 0, "maximum": 30},
        "budget": {"type": "number", "minimum": 10, "maximum": 5000},
        "room": {"enum": ["single", "double", "suite"]},
        "breakfast": {"type": "boolean"},
        "name": {"type": "string", "minLength": 2, "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3,
                 "uniqueItems": True},
        "contact": {"type": "object", "properties": {"email": {"type": "string", "maxLength": 60},
                                                     "phone": {"type": ["string", "null"], "maxLength": 20}},
                    "required": ["email"], "additionalProperties": False},
        "note": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]},
    },
    "required": ["guests", "nights", "room", "contact"],
    "additionalProperties": False,
}


def fn(name: str, params: dict, desc: str = "") -> dict:
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": params}}


def kernel_tools(base_url: str) -> list[dict]:
    r = requests.get(base_url + "/v1/tools", timeout=10)
    assert r.status_code == 200, r.text
    return [fn(t["name"], t["parameters"], t["description"]) for t in r.json()["tools"] if t["kind"] == "builtin"]


def chat(base_url: str, messages, tools, tool_choice, temperature=0.0, max_tokens=96, agent="tc-agent", **extra):
    body = {"model": MODEL_NAME, "messages": messages, "tools": tools, "tool_choice": tool_choice,
            "temperature": temperature, "max_tokens": max_tokens, **extra}
    r = requests.post(base_url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {agent}"},
                      timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


def validation_failures(calls: list[dict], schemas: dict) -> list[str]:
    """Each chat-completions call's arguments against its tool's schema, by `jsonschema`."""
    failures = []
    for c in calls:
        name = c["function"]["name"]
        try:
            jsonschema.validate(json.loads(c["function"]["arguments"]), schemas[name])
        except (jsonschema.ValidationError, json.JSONDecodeError, KeyError) as e:
            failures.append(f"{name}: {c['function']['arguments'][:200]}: {str(e)[:200]}")
    return failures


def few_shot(question: str) -> list[dict]:
    """A conversation in which the assistant answered a weather question with a call."""
    return [{"role": "user", "content": "What is the weather in Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "Sunny, 25 C"},
            {"role": "assistant", "content": "It is sunny in Rome, 25 C."},
            {"role": "user", "content": question}]


CALL_PROMPTS = [few_shot(f"What is the weather in {c}?") for c in ("Paris", "Oslo", "Lima", "Cairo", "Tokyo", "Quito")]
TEXT_PROMPTS = [[{"role": "user", "content": q}] for q in
                ("Say hello in French.", "What is 2 + 2?", "Name a primary color.", "Write a haiku about the sea.",
                 "Who wrote Hamlet?", "Give me a synonym for happy.")]


def test_auto_lets_the_model_choose(base_url):
    tools = [fn("get_weather", WEATHER, "The weather in a city.")]
    split = {"text": 0, "calls": 0}
    for msgs in CALL_PROMPTS + TEXT_PROMPTS:
        ch = chat(base_url, msgs, tools, "auto", max_tokens=200, parallel_tool_calls=False)
        if ch["message"].get("tool_calls"):
            assert ch["finish_reason"] == "tool_calls" and ch["message"]["content"] is None, ch
            split["calls"] += 1
        else:
            assert isinstance(ch["message"]["content"], str) and ch["finish_reason"] != "tool_calls", ch
            split["text"] += 1
    print(f"\ntool_choice auto over {len(CALL_PROMPTS) + len(TEXT_PROMPTS)} prompts: {split}")
    assert split["text"] > 0 and split["calls"] > 0, split


def test_required_always_calls(base_url):
    tools = [fn("get_weather", WEATHER, "The weather in a city.")]
    for msgs in CALL_PROMPTS[:3] + TEXT_PROMPTS:
        ch = chat(base_url, msgs, tools, "required", max_tokens=400)
        assert ch["finish_reason"] == "tool_calls" and ch["message"]["tool_calls"], ch


def test_named_function_always_calls_that_one(base_url):
    tools = [fn("get_weather", WEATHER, "The weather in a city."), fn("book_hotel", BOOKING, "Books a hotel room.")]
    for msgs in CALL_PROMPTS[:3] + TEXT_PROMPTS[:3]:
        ch = chat(base_url, msgs, tools, {"type": "function", "function": {"name": "book_hotel"}}, max_tokens=300,
                  parallel_tool_calls=False)
        calls = ch["message"]["tool_calls"]
        assert calls and {c["function"]["name"] for c in calls} == {"book_hotel"}, ch


def test_200_sampled_calls_validate(base_url):
    schemas = {"book_hotel": BOOKING, "get_weather": WEATHER}
    tools = [fn("get_weather", WEATHER, "The weather in a city."), fn("book_hotel", BOOKING, "Books a hotel room.")]
    for t in kernel_tools(base_url):
        schemas[t["function"]["name"]] = t["function"]["parameters"]
        tools.append(t)
    prompts = [m[-1]["content"] for m in CALL_PROMPTS + TEXT_PROMPTS] + ["Book a suite for two.", "Read my notes file."]

    def one(i: int) -> list[dict]:
        msgs = [{"role": "user", "content": prompts[i % len(prompts)]}]
        ch = chat(base_url, msgs, tools, "required", temperature=1.0, max_tokens=160, seed=1000 + i,
                  agent=f"tc-sampler-{i % 4}", parallel_tool_calls=i % 4 == 0)
        return ch["message"]["tool_calls"] if ch["finish_reason"] == "tool_calls" else []

    calls, requests_made = [], 0
    with ThreadPoolExecutor(16) as pool:  # the engine batches 16 sequences
        while len(calls) < 200 and requests_made < 320:
            batch = list(pool.map(one, range(requests_made, requests_made + 32)))
            requests_made += 32
            for got in batch:
                calls.extend(got)
    failures = validation_failures(calls, schemas)
    print(f"\n{len(calls)} sampled calls from {requests_made} requests at temperature 1.0; "
          f"tools: {sorted({c['function']['name'] for c in calls})}; {len(failures)} validation failures")
    assert len(calls) >= 200, (len(calls), requests_made)
    assert not failures, failures[:10]

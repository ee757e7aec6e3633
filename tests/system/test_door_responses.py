"""System tier: the OpenAI Responses door (/v1/responses) through the official openai client
(pinned in requirements.txt), on the real aiosd with the real model: text, json_schema,
function tools with a function_call_output round trip, typed streaming events in order,
previous_response_id chains (with their KV taken from the conversation cache), retrieve,
delete, cancel, input_tokens, per-agent isolation, durability and the store's bounds; and
the fault tier: malformed items and parameters get OpenAI's error shape naming the field,
and a stream cut by its client frees its sequence."""
from __future__ import annotations

import json

import openai
import pytest
import requests
from openai import OpenAI

from aiosd_helpers import (LONG_CHAT_PROMPT, MODEL_NAME, assert_error, assert_serving, metrics,
                           wait_idle_and_cancelled)

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(base_url: str, agent: str = "resp-agent") -> OpenAI:
    return OpenAI(base_url=base_url + "/v1", api_key=agent, max_retries=0)


def create(c: OpenAI, input, **kw):
    kw.setdefault("max_output_tokens", 24)
    kw.setdefault("temperature", 0)
    return c.responses.create(model=MODEL_NAME, input=input, **kw)


def test_text_answer(base_url):
    r = create(client(base_url), "Say hello.")
    assert r.id.startswith("resp_") and r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.output_text.strip(), r
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 24
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens


def test_max_output_tokens_gives_incomplete(base_url):
    r = create(client(base_url), LONG_CHAT_PROMPT, max_output_tokens=4)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens", r
    assert r.usage.output_tokens == 4


def test_same_text_as_chat_completions(det_url):
    c = client(det_url)
    r = create(c, "Name a color.", max_output_tokens=16)
    chat = c.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "Name a color."}],
                                     max_tokens=16, temperature=0)
    assert r.output_text == chat.choices[0].message.content


def test_json_schema(base_url):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = create(client(base_url), "Invent a person.", max_output_tokens=60,
               text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    obj = json.loads(r.output_text)
    assert set(obj) == {"name", "age"} and isinstance(obj["age"], int), obj


def test_function_call_round_trip_by_items(base_url):
    c = client(base_url)
    r = create(c, "What is the weather in Paris?", tools=[WEATHER], tool_choice="required", max_output_tokens=60)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather", r.output
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    # the client sends the whole conversation back as items, without previous_response_id
    items = [{"role": "user", "content": "What is the weather in Paris?"},
             {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
              "arguments": calls[0].arguments},
             {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C."}]
    r2 = create(c, items, tools=[WEATHER], tool_choice="none", store=False)
    assert r2.output[0].type == "message" and r2.output_text.strip(), r2


def test_function_call_round_trip_by_chain(base_url):
    c = client(base_url)
    r = create(c, "What is the weather in Rome?", tools=[WEATHER],
               tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=60)
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather", r.output
    r2 = create(c, [{"type": "function_call_output", "call_id": call.call_id, "output": "Rainy, 12 C."}],
                previous_response_id=r.id, tools=[WEATHER])
    assert r2.previous_response_id == r.id
    assert r2.output_text.strip(), r2.output


def test_streaming_events_in_order(base_url):
    events = list(create(client(base_url), "Say hello.", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"], types
    n = types.count("response.output_text.delta")
    assert n >= 1 and types[4:4 + n] == ["response.output_text.delta"] * n, types
    assert types[4 + n:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                             events[-1].type], types
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text and final.output_text == text
    assert events[0].response.id == final.id and events[0].response.status == "in_progress"


def test_streaming_function_call_events(base_url):
    events = list(create(client(base_url), "Weather in Oslo?", tools=[WEATHER], tool_choice="required",
                         max_output_tokens=60, stream=True))
    types = [e.type for e in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"][:2] + types[2:], types
    body = types[2:-1]
    assert len(body) % 4 == 0 and body[:4] == ["response.output_item.added", "response.function_call_arguments.delta",
                                               "response.function_call_arguments.done", "response.output_item.done"], types
    assert types[-1] == "response.completed"
    done = [e for e in events if e.type == "response.function_call_arguments.done"][0]
    assert json.loads(done.arguments)["city"]
    assert events[-1].response.output[0].arguments == done.arguments


def test_chain_reuses_the_conversation(base_url):
    """The second turn continues the first: its prompt holds the first turn (more input
    tokens than the new message alone), and its KV comes from the conversation cache."""
    c = client(base_url, "resp-chain")
    r1 = create(c, "My name is Ada. Remember it.", instructions="Be brief.")
    r2 = create(c, "What is my name?", instructions="Be brief.", previous_response_id=r1.id)
    alone = c.responses.input_tokens.count(model=MODEL_NAME, input="What is my name?", instructions="Be brief.")
    assert r2.usage.input_tokens > alone.input_tokens + r1.usage.output_tokens
    assert r2.usage.input_tokens_details.cached_tokens >= r1.usage.input_tokens, r2.usage
    # a third turn chains on the second: the whole conversation carries on
    r3 = create(c, "And again?", instructions="Be brief.", previous_response_id=r2.id)
    assert r3.usage.input_tokens > r2.usage.input_tokens + r2.usage.output_tokens


def test_input_tokens_matches_usage(base_url):
    c = client(base_url)
    n = c.responses.input_tokens.count(model=MODEL_NAME, input="Count me.", tools=[WEATHER])
    r = create(c, "Count me.", tools=[WEATHER], tool_choice="none")
    r2 = create(c, "Count me.", tools=[WEATHER])
    assert n.input_tokens == r2.usage.input_tokens, (n, r2.usage)
    assert r.usage.input_tokens < n.input_tokens  # tool_choice none: no tool descriptions


def test_retrieve_and_delete(base_url):
    c = client(base_url)
    r = create(c, "Say hello.", metadata={"k": "v"})
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"k": "v"}
    deleted = c.responses.delete(r.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        create(c, "Hi", previous_response_id=r.id)


def test_store_false_is_not_kept(base_url):
    c = client(base_url)
    r = create(c, "Say hello.", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_another_agents_response_is_not_found(base_url):
    alice, bob = client(base_url, "resp-alice"), client(base_url, "resp-bob")
    r = create(alice, "A secret: 42.")
    for call in (lambda: bob.responses.retrieve(r.id), lambda: bob.responses.delete(r.id),
                 lambda: bob.responses.cancel(r.id), lambda: create(bob, "What was it?", previous_response_id=r.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert alice.responses.retrieve(r.id).id == r.id  # still there for its owner


def test_cancel_a_running_response(base_url):
    c = client(base_url, "resp-cancel")
    stream = create(c, LONG_CHAT_PROMPT, max_output_tokens=2000, stream=True)
    first = next(iter(stream))
    assert first.type == "response.created"
    rid = first.response.id
    assert c.responses.retrieve(rid).status == "in_progress"
    cancelled = c.responses.cancel(rid)
    assert cancelled.id == rid and cancelled.status == "cancelled"
    rest = list(stream)
    assert rest[-1].type == "response.failed" and rest[-1].response.status == "cancelled", rest[-1]
    assert rest[-1].response.usage.output_tokens < 2000
    assert c.responses.retrieve(rid).status == "cancelled"
    with pytest.raises(openai.BadRequestError):  # finished: nothing left to cancel
        c.responses.cancel(rid)


def test_survives_restart(spawn_daemon):
    d = spawn_daemon("resp-durable")
    c = client(d.url)
    r = create(c, "Remember: blue.")
    d.stop_and_check()
    d.start()
    c = client(d.url)
    got = c.responses.retrieve(r.id)
    assert got.output_text == r.output_text
    r2 = create(c, "What did I say?", previous_response_id=r.id)
    assert r2.usage.input_tokens > r.usage.input_tokens


def test_store_is_bounded(spawn_daemon):
    d = spawn_daemon("resp-bounded", ["--set", "responses.max_stored=2"])
    c = client(d.url)
    ids = [create(c, f"Say {w}.", max_output_tokens=4).id for w in ("one", "two", "three")]
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(ids[0])
    assert [c.responses.retrieve(i).id for i in ids[1:]] == ids[1:]
    other = client(d.url, "other")  # the bound is per agent
    create(other, "Hi", max_output_tokens=4)
    assert c.responses.retrieve(ids[2]).id == ids[2]


# ---- fault tier ----

BAD_BODIES = [
    ({"input": 5}, "input"),
    ({"input": [{"type": "image_generation_call"}]}, "input[0].type"),
    ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input_image"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "call_id 'nope'"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "function_call item needs"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"input": "x", "tools": "all"}, "'tools'"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice"),
    ({"input": "x", "tool_choice": "required"}, "tool_choice"),
    ({"input": "x", "text": {"format": {"type": "yaml"}}}, "yaml"),
    ({"input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
    ({"input": "x", "max_output_tokens": 0}, "max_tokens"),
    ({"input": "x", "temperature": "hot"}, "temperature"),
    ({"input": "x", "frobnicate": 1}, "frobnicate"),
    ({"input": "x", "background": True}, "background"),
    ({"input": "x", "metadata": {"k": 1}}, "metadata"),
    ({"input": "x", "previous_response_id": 7}, "previous_response_id"),
    ({}, "input"),
]


@pytest.mark.parametrize("body,needle", BAD_BODIES, ids=[n for _, n in BAD_BODIES])
def test_bad_bodies(base_url, body, needle):
    r = requests.post(base_url + "/v1/responses", json={"model": MODEL_NAME, **body},
                      headers={"Authorization": "Bearer resp-bad"}, timeout=30)
    err = assert_error(r, 400)
    assert needle in err["message"], err


def test_unknown_ids_and_routes(base_url):
    h = {"Authorization": "Bearer resp-bad"}
    assert_error(requests.get(base_url + "/v1/responses/resp_nope", headers=h, timeout=10), 404)
    assert_error(requests.delete(base_url + "/v1/responses/resp_nope", headers=h, timeout=10), 404)
    assert_error(requests.post(base_url + "/v1/responses/resp_nope/cancel", headers=h, timeout=10), 404)
    assert_error(requests.post(base_url + "/v1/responses", data="{", headers=h, timeout=10), 400)
    assert_error(requests.post(base_url + "/v1/responses", json={"model": "nope", "input": "x"}, headers=h,
                               timeout=10), 404)
    assert_serving(base_url)


def test_stream_cut_by_client_frees_its_sequence(base_url):
    before = metrics(base_url)
    body = {"model": MODEL_NAME, "input": LONG_CHAT_PROMPT, "max_output_tokens": 2000, "stream": True}
    r = requests.post(base_url + "/v1/responses", json=body, headers={"Authorization": "Bearer resp-cut"},
                      stream=True, timeout=30)
    lines = r.iter_lines()
    seen = []
    while b"event: response.output_text.delta" not in seen and len(seen) < 40:
        seen.append(next(lines))
    assert r.status_code == 200 and b"event: response.output_text.delta" in seen, seen
    assert metrics(base_url)["aios_active_sequences"] == 1
    r.close()  # the client hangs up mid-stream
    after = wait_idle_and_cancelled(base_url, before["aios_requests_cancelled_total"], timeout=2.0)
    assert after["aios_active_sequences"] == 0 and after["aios_kv_reserved_cells"] == 0, after
    assert_serving(base_url)

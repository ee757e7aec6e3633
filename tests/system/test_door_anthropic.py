"""System and fault tier of the Anthropic Messages door (POST /v1/messages and
/v1/messages/count_tokens): the official `anthropic` client (pinned in requirements.txt)
and raw HTTP against the real aiosd and the real model.

What is checked: text answers and their usage, the same text as /v1/chat/completions for
the same conversation at temperature 0, tool use forced by tool_choice any / tool and the
tool_result round trip back to a text answer, the exact event order of a stream (text and
tool_use), count_tokens against the usage of the generation, the credentials the client
sends (x-api-key, or a bearer token; 401 in Anthropic's shape in enforce mode), every bad
input answered 400 in Anthropic's error shape naming the field, and a stream cut by the
client cancelling its generation.

The model (SmolLM2-135M) rarely calls a tool by itself, so the tool tests force calls."""
from __future__ import annotations

import json
import re

import anthropic
import pytest
import requests

from aiosd_helpers import (LONG_CHAT_PROMPT, MODEL_NAME, assert_serving, metrics, wait_idle_and_cancelled)

TIMEOUT = 120
MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK = {
    "name": "get_time",
    "description": "Get the current time in a time zone.",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
# This client has no sampling parameters (temperature, top_p, top_k) of its own: they go as
# extra body fields, as the door reads them.
T0 = {"temperature": 0}


def client(base_url, agent="anthropic-agent", **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key=agent, max_retries=0, timeout=TIMEOUT, **kw)


def body(content="Say hello.", max_tokens=16, **extra) -> dict:
    b = {"model": MODEL_NAME, "max_tokens": max_tokens, "temperature": 0,
         "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return b


def text_of(msg) -> str:
    return "".join(b.text for b in msg.content if b.type == "text")


def door_requests(base_url: str, status: str = "2xx") -> int:
    """aios_door_requests_total of the anthropic door (status class)."""
    text = requests.get(base_url + "/metrics", timeout=10).text
    m = re.search(r'^aios_door_requests_total\{door="anthropic",status="%s"\} (\d+)$' % status, text, re.M)
    assert m, text[-2000:]
    return int(m.group(1))


def sse_events(resp: requests.Response) -> list[tuple[str, dict]]:
    """(event name, data object) of each server-sent event of a raw stream."""
    out, name = [], None
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[len("data: "):])))
            name = None
    return out


def assert_anthropic_error(r: requests.Response, status: int, etype: str, word: str | None = None) -> str:
    """The response is Anthropic's {"type":"error","error":{"type","message"}} with this
    status and error type (and a message naming word); returns the message."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    b = r.json()
    assert b.get("type") == "error" and isinstance(b.get("error"), dict), b
    assert b["error"].get("type") == etype, b
    msg = b["error"].get("message")
    assert isinstance(msg, str) and msg, b
    if word is not None:
        assert word in msg, (word, msg)
    return msg


# ------------------------------------------------------------------- text answers

def test_create_text_answer(base_url):
    before = door_requests(base_url)
    msg = client(base_url).messages.create(model=MODEL_NAME, max_tokens=16, extra_body=T0,
                                           messages=[{"role": "user", "content": "Say hello."}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL_NAME, msg
    assert msg.id.startswith("msg_"), msg.id
    assert len(msg.content) == 1 and msg.content[0].type == "text" and msg.content[0].text.strip(), msg
    assert msg.stop_reason in ("end_turn", "max_tokens"), msg
    assert msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and 1 <= msg.usage.output_tokens <= 16, msg.usage
    assert door_requests(base_url) >= before + 1


def test_max_tokens_stop_reason(base_url):
    msg = client(base_url).messages.create(model=MODEL_NAME, max_tokens=3, extra_body=T0,
                                           messages=[{"role": "user", "content": LONG_CHAT_PROMPT}])
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 3, msg


def test_same_text_as_chat_completions(det_url):
    """One conversation through both doors at temperature 0: the same prompt, the same text."""
    system, user = "You are a terse assistant.", "Name three colors."
    r = requests.post(det_url + "/v1/chat/completions", timeout=TIMEOUT, json={
        "model": MODEL_NAME, "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]})
    assert r.status_code == 200, r.text
    chat = r.json()
    msg = client(det_url).messages.create(model=MODEL_NAME, max_tokens=24, extra_body=T0, system=system,
                                           messages=[{"role": "user", "content": user}])
    assert text_of(msg) == chat["choices"][0]["message"]["content"], (msg, chat)
    assert msg.usage.input_tokens == chat["usage"]["prompt_tokens"]
    assert msg.usage.output_tokens == chat["usage"]["completion_tokens"]


def test_content_shapes_give_the_same_prompt(base_url):
    """system as a string or as text blocks, content as a string or as one text block:
    the same conversation, the same answer."""
    c = client(base_url)
    a = c.messages.create(model=MODEL_NAME, max_tokens=12, extra_body=T0, system="Be brief.",
                          messages=[{"role": "user", "content": "Say hello."}])
    b = c.messages.create(model=MODEL_NAME, max_tokens=12, extra_body=T0,
                          system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                          messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}])
    assert text_of(a) == text_of(b) and a.usage.input_tokens == b.usage.input_tokens, (a, b)


def test_accepted_fields(base_url):
    """Sampling knobs, metadata, a past assistant turn with a thinking block, and an empty
    final assistant turn are all accepted."""
    msg = client(base_url).messages.create(
        model=MODEL_NAME, max_tokens=8, extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40}, metadata={"user_id": "u-1"},
        messages=[{"role": "user", "content": "Hi."},
                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "greet", "signature": "x"},
                                                    {"type": "text", "text": "Hello!"}]},
                  {"role": "user", "content": "Say bye."},
                  {"role": "assistant", "content": ""}])
    assert msg.content and msg.usage.output_tokens >= 1, msg


def test_stop_sequences(base_url):
    """A stop string cuts the text before it, and the answer names it."""
    c = client(base_url)
    full = text_of(c.messages.create(model=MODEL_NAME, max_tokens=24, extra_body=T0,
                                     messages=[{"role": "user", "content": "Name three colors."}]))
    words = full.split()
    assert len(words) >= 3, full
    stop = words[2]
    msg = c.messages.create(model=MODEL_NAME, max_tokens=24, extra_body=T0, stop_sequences=[stop],
                            messages=[{"role": "user", "content": "Name three colors."}])
    assert text_of(msg) == full[:full.index(stop)], (full, stop, msg)
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == stop, msg


def test_structured_output(base_url):
    """output_config.format (what messages.parse sends) constrains the text to the schema."""
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        country: str

    msg = client(base_url).messages.parse(model=MODEL_NAME, max_tokens=48, extra_body=T0, output_format=City,
                                          messages=[{"role": "user", "content": "Name a city in France."}])
    assert msg.stop_reason == "end_turn", msg
    city = msg.parsed_output
    assert isinstance(city, City) and city.name and city.country, msg


def test_credentials_name_the_agent(base_url):
    """x-api-key (what the client sends) and Authorization: Bearer both name the agent;
    anthropic-version is accepted; X-AIOS-Priority works here as on every door."""
    msg = client(base_url, agent="anth-key").messages.create(model=MODEL_NAME, max_tokens=2, messages=ASK_WEATHER)
    assert msg.model_extra["aios"]["agent"] == "anth-key", msg
    r = requests.post(base_url + MESSAGES, json=body(max_tokens=2), timeout=TIMEOUT,
                      headers={"Authorization": "Bearer anth-bearer", "anthropic-version": "2023-06-01",
                               "X-AIOS-Priority": "3"})
    assert r.status_code == 200 and r.json()["aios"]["agent"] == "anth-bearer", r.text
    r = requests.post(base_url + MESSAGES, json=body(max_tokens=2), timeout=TIMEOUT, headers={"X-AIOS-Priority": "x"})
    assert_anthropic_error(r, 400, "invalid_request_error", "X-AIOS-Priority")


# ------------------------------------------------------------------- tools

def test_tool_any_then_tool_result_round_trip(base_url):
    c = client(base_url)
    first = c.messages.create(model=MODEL_NAME, max_tokens=64, extra_body=T0, tools=[WEATHER],
                              tool_choice={"type": "any"}, messages=ASK_WEATHER)
    assert first.stop_reason == "tool_use", first
    uses = [b for b in first.content if b.type == "tool_use"]
    assert uses and all(b.name == "get_weather" for b in uses), first
    assert isinstance(uses[0].input, dict) and isinstance(uses[0].input.get("city"), str), uses[0]
    # the client runs the tool and sends its result back with the assistant turn
    history = ASK_WEATHER + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id, "content": "Sunny, 21 C."}
                                     for b in uses]},
    ]
    second = c.messages.create(model=MODEL_NAME, max_tokens=32, extra_body=T0, tools=[WEATHER],
                               tool_choice={"type": "none"}, messages=history)
    assert second.stop_reason in ("end_turn", "max_tokens"), second
    assert [b.type for b in second.content] == ["text"] and text_of(second).strip(), second
    # a tool_result as blocks, marked as an error, is accepted too
    history[-1]["content"][0].update(content=[{"type": "text", "text": "unavailable"}], is_error=True)
    third = c.messages.create(model=MODEL_NAME, max_tokens=8, extra_body=T0, tools=[WEATHER],
                              tool_choice={"type": "none"}, messages=history)
    assert third.content[0].type == "text", third


def test_tool_choice_names_one_tool(base_url):
    msg = client(base_url).messages.create(
        model=MODEL_NAME, max_tokens=64, extra_body=T0, tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}])
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_time" and msg.stop_reason == "tool_use", msg
    assert isinstance(uses[0].input.get("zone"), str), uses[0]


# ------------------------------------------------------------------- streams

STREAM_ORDER = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                "message_delta", "message_stop"]


def collapse(types: list[str]) -> list[str]:
    """The event types without pings, runs of one type collapsed to one."""
    out = []
    for t in types:
        if t != "ping" and (not out or out[-1] != t):
            out.append(t)
    return out


def test_stream_text_events(base_url):
    c = client(base_url)
    want = c.messages.create(model=MODEL_NAME, max_tokens=16, extra_body=T0,
                             messages=[{"role": "user", "content": "Say hello."}])
    events = list(c.messages.create(model=MODEL_NAME, max_tokens=16, extra_body=T0, stream=True,
                                    messages=[{"role": "user", "content": "Say hello."}]))
    types = [e.type for e in events]
    assert collapse(types) == STREAM_ORDER, types
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert all(e.index == 0 and e.delta.type == "text_delta" for e in deltas), deltas
    assert "".join(e.delta.text for e in deltas) == text_of(want)
    start = events[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None, start
    assert start.usage.input_tokens == want.usage.input_tokens
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == want.stop_reason and delta.usage.output_tokens == want.usage.output_tokens
    # the client's stream helper puts the same message together
    with c.messages.stream(model=MODEL_NAME, max_tokens=16, extra_body=T0,
                           messages=[{"role": "user", "content": "Say hello."}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == text_of(final) == text_of(want), (streamed, final)
    assert final.stop_reason == want.stop_reason and final.usage.output_tokens == want.usage.output_tokens


def test_stream_raw_sse(base_url):
    """On the wire: each event's name is its data's type, and a ping comes along."""
    with requests.post(base_url + MESSAGES, json=body(max_tokens=6, stream=True), stream=True, timeout=TIMEOUT,
                       headers={"x-api-key": "raw-sse", "anthropic-version": "2023-06-01"}) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream"), r.headers
        events = sse_events(r)
    assert all(name == data["type"] for name, data in events), events
    assert "ping" in [n for n, _ in events]
    assert collapse([n for n, _ in events]) == STREAM_ORDER, events


def test_stream_tool_use(base_url):
    c = client(base_url)
    events = list(c.messages.create(model=MODEL_NAME, max_tokens=64, extra_body=T0, stream=True, tools=[WEATHER],
                                    tool_choice={"type": "any"}, messages=ASK_WEATHER))
    assert collapse([e.type for e in events])[:2] == ["message_start", "content_block_start"], events
    starts = [e for e in events if e.type == "content_block_start"]
    assert starts and all(e.content_block.type == "tool_use" and e.content_block.name == "get_weather"
                          for e in starts), starts
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert deltas and all(e.delta.type == "input_json_delta" for e in deltas), deltas
    assert isinstance(json.loads(deltas[0].delta.partial_json).get("city"), str), deltas[0]
    assert next(e for e in events if e.type == "message_delta").delta.stop_reason == "tool_use"
    assert events[-1].type == "message_stop"
    with c.messages.stream(model=MODEL_NAME, max_tokens=64, extra_body=T0, tools=[WEATHER],
                           tool_choice={"type": "tool", "name": "get_weather"}, messages=ASK_WEATHER) as s:
        final = s.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert uses and isinstance(uses[0].input.get("city"), str) and final.stop_reason == "tool_use", final


# ------------------------------------------------------------------- count_tokens

def test_count_tokens_matches_usage(base_url):
    c = client(base_url)
    kw = dict(model=MODEL_NAME, system="Be brief.", messages=[{"role": "user", "content": "Say hello."}])
    n = c.messages.count_tokens(**kw).input_tokens
    assert n == c.messages.create(max_tokens=2, **kw).usage.input_tokens, n
    # tools add their instructions to the prompt, and they are counted
    kw.update(tools=[WEATHER], tool_choice={"type": "any"}, messages=ASK_WEATHER)
    with_tools = c.messages.count_tokens(**kw).input_tokens
    assert with_tools == c.messages.create(max_tokens=40, **kw).usage.input_tokens
    assert with_tools > c.messages.count_tokens(model=MODEL_NAME, system="Be brief.", messages=ASK_WEATHER).input_tokens


def test_count_tokens_raw(base_url):
    r = requests.post(base_url + COUNT, json={"messages": [{"role": "user", "content": "Hi"}]}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json() == {"input_tokens": r.json()["input_tokens"]} and \
        r.json()["input_tokens"] > 0, r.text
    assert_anthropic_error(requests.post(base_url + COUNT, json={"messages": []}, timeout=TIMEOUT), 400,
                           "invalid_request_error", "messages")


# ------------------------------------------------------------------- bad input -> 400 naming the field

def user_blocks(*blocks) -> list:
    return [{"role": "user", "content": list(blocks)}]


TOOL_TURN = [{"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather",
                                                "input": {"city": "Paris"}}]}]

BAD_BODIES = {
    "max_tokens_missing": ({"messages": ASK_WEATHER}, "max_tokens"),
    "max_tokens_string": (body(max_tokens="10"), "max_tokens"),
    "max_tokens_zero": (body(max_tokens=0), "max_tokens"),
    "messages_missing": ({"max_tokens": 4}, "messages"),
    "messages_empty": ({"max_tokens": 4, "messages": []}, "messages"),
    "messages_string": ({"max_tokens": 4, "messages": "hi"}, "messages"),
    "message_not_object": ({"max_tokens": 4, "messages": ["hi"]}, "messages[0]"),
    "role_missing": ({"max_tokens": 4, "messages": [{"content": "hi"}]}, "role"),
    "role_system": ({"max_tokens": 4, "messages": [{"role": "system", "content": "hi"}]}, "messages[0].role"),
    "role_tool": ({"max_tokens": 4, "messages": [{"role": "tool", "content": "hi"}]}, "messages[0].role"),
    "content_number": ({"max_tokens": 4, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    "content_empty": ({"max_tokens": 4, "messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    "content_no_blocks": ({"max_tokens": 4, "messages": user_blocks()}, "messages[0].content"),
    "block_not_object": ({"max_tokens": 4, "messages": user_blocks("hi")}, "messages[0].content[0]"),
    "block_unknown_type": ({"max_tokens": 4, "messages": user_blocks({"type": "video", "url": "x"})},
                           "messages[0].content[0].type"),
    "block_text_number": ({"max_tokens": 4, "messages": user_blocks({"type": "text", "text": 3})},
                          "messages[0].content[0].text"),
    "image_block": ({"max_tokens": 4, "messages": user_blocks(
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})}, "image"),
    "document_block": ({"max_tokens": 4, "messages": user_blocks(
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}})}, "document"),
    "tool_result_unmatched": ({"max_tokens": 4, "messages": user_blocks(
        {"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"})}, "tool_use_id"),
    "tool_result_id_missing": ({"max_tokens": 4, "messages": user_blocks({"type": "tool_result", "content": "x"})},
                               "tool_use_id"),
    "tool_result_image": ({"max_tokens": 4, "messages": TOOL_TURN + user_blocks(
        {"type": "tool_result", "tool_use_id": "tu_1", "content": [{"type": "image", "source": {}}]})},
        "messages[2].content[0].content[0]"),
    "tool_result_in_assistant": ({"max_tokens": 4, "messages": TOOL_TURN[:1] + [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "tu_1", "content": "x"}]}]}, "tool_result"),
    "tool_use_in_user": ({"max_tokens": 4, "messages": user_blocks(
        {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}})}, "tool_use"),
    "tool_use_input_string": ({"max_tokens": 4, "messages": [TOOL_TURN[0], {"role": "assistant", "content": [
        {"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": "Paris"}]}]}, "input"),
    "tool_use_id_twice": ({"max_tokens": 4, "messages": TOOL_TURN + [TOOL_TURN[0], TOOL_TURN[1]]}, "tu_1"),
    "system_number": (body(system=5), "system"),
    "system_image_block": (body(system=[{"type": "image", "source": {}}]), "system[0]"),
    "temperature_string": (body(temperature="hot"), "temperature"),
    "temperature_over_1": (body(temperature=1.5), "temperature"),
    "top_p_over_1": (body(top_p=2), "top_p"),
    "top_k_negative": (body(top_k=-1), "top_k"),
    "stop_sequences_string": (body(stop_sequences="END"), "stop_sequences"),
    "stop_sequences_number": (body(stop_sequences=[1]), "stop_sequences[0]"),
    "stop_sequences_too_many": (body(stop_sequences=[f"s{i}" for i in range(100)]), "stop_sequences"),
    "stream_string": (body(stream="yes"), "stream"),
    "tools_object": (body(tools={"name": "x"}), "tools"),
    "tool_name_missing": (body(tools=[{"input_schema": {"type": "object"}}]), "tools[0]"),
    "tool_schema_string": (body(tools=[{"name": "x", "input_schema": "object"}]), "tools[0].input_schema"),
    "tool_server_type": (body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
    "tool_choice_string": (body(tools=[WEATHER], tool_choice="auto"), "tool_choice"),
    "tool_choice_bad_type": (body(tools=[WEATHER], tool_choice={"type": "some"}), "tool_choice.type"),
    "tool_choice_any_no_tools": (body(tool_choice={"type": "any"}), "tool_choice"),
    "tool_choice_unknown_name": (body(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}),
                                 "tool_choice.name"),
    "tool_choice_no_name": (body(tools=[WEATHER], tool_choice={"type": "tool"}), "name"),
    "metadata_string": (body(metadata="u"), "metadata"),
    "metadata_user_id_number": (body(metadata={"user_id": 5}), "user_id"),
    "model_number": (body(model=7), "model"),
    "output_config_string": (body(output_config="json"), "output_config"),
    "output_format_not_schema": (body(output_config={"format": {"type": "json_schema", "schema": "x"}}),
                                 "output_config.format.schema"),
    "output_format_type": (body(output_config={"format": {"type": "yaml"}}), "output_config.format.type"),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_body_400_names_the_field(base_url, name):
    data, word = BAD_BODIES[name]
    r = requests.post(base_url + MESSAGES, json=data, timeout=TIMEOUT)
    assert_anthropic_error(r, 400, "invalid_request_error", word)


def test_bad_json_and_unknown_model(base_url):
    r = requests.post(base_url + MESSAGES, data='{"max_tokens": 4, "messages": [', timeout=TIMEOUT,
                      headers={"Content-Type": "application/json"})
    assert_anthropic_error(r, 400, "invalid_request_error")
    r = requests.post(base_url + MESSAGES, json=body(model="claude-nope"), timeout=TIMEOUT)
    assert_anthropic_error(r, 404, "not_found_error", "claude-nope")
    assert requests.get(base_url + MESSAGES, timeout=TIMEOUT).status_code == 405


def test_client_raises_on_bad_input_and_kernel_keeps_serving(base_url):
    c = client(base_url)
    with pytest.raises(anthropic.BadRequestError) as ei:
        c.messages.create(model=MODEL_NAME, max_tokens=4, messages=user_blocks(
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}))
    assert ei.value.status_code == 400 and "image" in str(ei.value)
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        c.messages.create(model="claude-nope", max_tokens=4, messages=ASK_WEATHER)
    assert door_requests(base_url, "4xx") >= 2
    assert_serving(base_url)
    assert client(base_url).messages.create(model=MODEL_NAME, max_tokens=2, messages=ASK_WEATHER).content


def test_enforce_mode_401_and_token(spawn_daemon):
    k = spawn_daemon("anth-enforce", config="access:\n  mode: enforce\n")
    r = requests.post(k.url + MESSAGES, json=body(max_tokens=2), timeout=TIMEOUT)
    assert_anthropic_error(r, 401, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        client(k.url, agent="not-a-token").messages.create(model=MODEL_NAME, max_tokens=2, messages=ASK_WEATHER)
    admin = (k.workdir / "data" / "admin.token").read_text().strip()
    r = requests.post(k.url + "/admin/agents", json={"name": "claudia"}, timeout=30,
                      headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    msg = client(k.url, agent=token).messages.create(model=MODEL_NAME, max_tokens=2, messages=ASK_WEATHER)
    assert msg.model_extra["aios"]["agent"] == "claudia", msg
    assert client(k.url, agent=token).messages.count_tokens(model=MODEL_NAME, messages=ASK_WEATHER).input_tokens > 0


# ------------------------------------------------------------------- a client that hangs up mid-stream

def test_stream_cut_by_client_cancels_generation(base_url):
    """The official client leaves a stream after a few words (closing its connection): the
    generation is cancelled and the kernel keeps serving."""
    before = metrics(base_url)
    assert before["aios_active_sequences"] == 0
    with client(base_url, agent="cut-agent").messages.stream(
            model=MODEL_NAME, max_tokens=2000, extra_body=T0,
            messages=[{"role": "user", "content": LONG_CHAT_PROMPT}]) as s:
        for i, _ in enumerate(s.text_stream):
            if i == 3:
                break
        assert metrics(base_url)["aios_active_sequences"] == 1, "the generation should still be running"
    # the hang-up cancelled the generation: counted once, far short of 2000 tokens, and
    # nothing of it is left running, queued or holding KV cells (test_fault.py times the
    # cancellation; here a loaded machine gets a generous wait)
    after = wait_idle_and_cancelled(base_url, before["aios_requests_cancelled_total"], timeout=10.0)
    assert after["aios_requests_cancelled_total"] == before["aios_requests_cancelled_total"] + 1, after
    assert after["aios_tokens_generated_total"] - before["aios_tokens_generated_total"] < 1000, after
    llm = next(m for m in requests.get(base_url + "/status", timeout=10).json()["llms"] if m["name"] == MODEL_NAME)
    assert (llm["active"], llm["queued"], llm["kv_reserved"]) == (0, 0, 0), llm
    assert_serving(base_url)

"""System tier: the Ollama door (/api/*), driven by the official `ollama` client and by raw
HTTP against the real aiosd and the real model.

What it holds the door to: Ollama's shapes (NDJSON streams by default, durations in ns,
tool calls with object arguments, `{"error": "..."}` with the right status), the same text
as /v1/chat/completions for the same request, the kernel's own semantics behind the door
(access rules, the context bound, cancellation when the client hangs up), and a kernel that
keeps serving after every bad request."""
from __future__ import annotations

import json
import math
import re
import textwrap

import ollama
import pytest
import requests
from pydantic import BaseModel

from aiosd_helpers import (LONG_CHAT_PROMPT, MODEL_NAME, assert_serving, chat_body, default_model_path,
                           metrics, wait_for, wait_idle_and_cancelled)

TIMEOUT = 120
EMBED_MODEL = "all-MiniLM-L6-v2-f16"
GREEDY = {"temperature": 0, "num_predict": 12}
DURATIONS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# A conversation in which the model already called the tool once and got its result.
TOOL_ROUND_TRIP = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "sunny, 24 C", "tool_name": "get_weather"},
    {"role": "user", "content": "And in Rome?"},
]


def client(base_url, agent="ollama-agent"):
    return ollama.Client(host=base_url, headers={"Authorization": f"Bearer {agent}"}, timeout=TIMEOUT)


def post(base_url, path, body, **kw):
    return requests.post(base_url + path, json=body, timeout=TIMEOUT, **kw)


def user(content):
    return [{"role": "user", "content": content}]


def assert_ollama_error(r: requests.Response, status: int, *words: str) -> str:
    """Ollama's error shape {"error": "message"} with this status; the message holds words."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    for w in words:
        assert w in body["error"], body
    return body["error"]


def check_final(part: dict, max_eval: int | None = None) -> None:
    """The closing members of a generation: done, the reason, ns durations and counts."""
    assert part["done"] is True, part
    assert part["done_reason"] in ("stop", "length"), part
    for k in DURATIONS:
        assert isinstance(part[k], int) and part[k] >= 0, (k, part)
    assert part["total_duration"] >= part["prompt_eval_duration"] + part["eval_duration"] > 0, part
    assert part["prompt_eval_count"] > 0 and part["eval_count"] > 0, part
    if max_eval is not None:
        assert part["eval_count"] <= max_eval, part


def ndjson(r: requests.Response) -> list[dict]:
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-ndjson", r.headers
    return [json.loads(line) for line in r.text.splitlines() if line]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


# ------------------------------------------------------------------- models and version

def test_ollama_version_and_listings(base_url):
    r = requests.get(base_url + "/api/version", timeout=10)
    assert r.status_code == 200 and isinstance(r.json()["version"], str), r.text
    c = client(base_url)
    tags = c.list()
    names = [m.model for m in tags.models]
    assert names == [f"{MODEL_NAME}:latest"], names
    m = tags.models[0]
    assert m.size > 1_000_000 and m.modified_at is not None
    assert m.details.format == "gguf" and m.details.family and m.details.parameter_size.endswith("M"), m.details
    ps = c.ps()
    assert [p.model for p in ps.models] == names
    assert ps.models[0].context_length > 0 and ps.models[0].expires_at is not None


@pytest.mark.parametrize("name", [MODEL_NAME, f"{MODEL_NAME}:latest"])
def test_ollama_show(base_url, name):
    s = client(base_url).show(name)
    assert s.details.family == s.modelinfo["general.architecture"], s
    assert s.modelinfo["general.parameter_count"] > 100_000_000, s.modelinfo
    assert "completion" in s.capabilities and "tools" in s.capabilities, s.capabilities
    assert "{{ .Prompt }}" in s.template and "{{ .System }}" in s.template, s.template
    assert "num_ctx" in s.parameters


def test_ollama_unknown_model_404(base_url):
    c = client(base_url)
    for call in (lambda: c.show("no-such-model"), lambda: c.chat(model="no-such-model:latest", messages=user("x")),
                 lambda: c.generate(model="no-such-model", prompt="x"), lambda: c.embed(model="no-such-model", input="x")):
        with pytest.raises(ollama.ResponseError) as ei:
            call()
        assert ei.value.status_code == 404 and "no-such-model" in ei.value.error, ei.value
    assert_ollama_error(post(base_url, "/api/chat", {"model": "ghost", "messages": user("x")}), 404,
                        "model 'ghost' not found")
    assert_ollama_error(post(base_url, "/api/chat", {"model": f"{MODEL_NAME}:7b", "messages": user("x")}), 404)


@pytest.mark.parametrize("method,path", [("POST", "/api/pull"), ("POST", "/api/push"), ("POST", "/api/create"),
                                         ("POST", "/api/copy"), ("DELETE", "/api/delete"),
                                         ("POST", "/api/blobs/sha256:00")])
def test_ollama_model_management_501(base_url, method, path):
    r = requests.request(method, base_url + path, json={"model": MODEL_NAME}, timeout=10)
    assert_ollama_error(r, 501, "llms.models", "docs/config.md")


def test_ollama_client_model_management_501(base_url):
    c = client(base_url)
    for call in (lambda: c.pull(MODEL_NAME), lambda: c.delete(MODEL_NAME), lambda: c.copy(MODEL_NAME, "x"),
                 lambda: c.create("x", from_=MODEL_NAME)):
        with pytest.raises(ollama.ResponseError) as ei:
            call()
        assert ei.value.status_code == 501, ei.value


# ------------------------------------------------------------------- chat and generate

def test_ollama_chat_non_stream(base_url):
    r = client(base_url).chat(model=MODEL_NAME, messages=user("Say hello."), options=GREEDY)
    assert r.model == MODEL_NAME and r.created_at.endswith("Z")
    assert r.message.role == "assistant" and r.message.content and not r.message.tool_calls
    check_final(r.model_dump(), max_eval=12)


def door_tokens(base_url: str, kind: str) -> int:
    """aios_door_tokens_total of the ollama door (kind prompt or completion)."""
    text = requests.get(base_url + "/metrics", timeout=10).text
    m = re.search(r'^aios_door_tokens_total\{door="ollama",kind="%s"\} (\d+)$' % kind, text, re.M)
    assert m, text[-2000:]
    return int(m.group(1))


def test_ollama_door_is_counted(base_url):
    before = (door_tokens(base_url, "prompt"), door_tokens(base_url, "completion"))
    r = client(base_url).chat(model=MODEL_NAME, messages=user("Say hello."), options=GREEDY)
    want = (before[0] + r.prompt_eval_count, before[1] + r.eval_count)
    assert wait_for(lambda: (door_tokens(base_url, "prompt"), door_tokens(base_url, "completion")) == want, 5)


def test_ollama_chat_stream_matches_non_stream(det_url):
    c = client(det_url)
    whole = c.chat(model=f"{MODEL_NAME}:latest", messages=user("Name three colors."), options=GREEDY)
    parts = list(c.chat(model=f"{MODEL_NAME}:latest", messages=user("Name three colors."), options=GREEDY, stream=True))
    assert len(parts) >= 3 and all(p.model == f"{MODEL_NAME}:latest" for p in parts)
    assert all(p.done is False for p in parts[:-1])
    assert "".join(p.message.content for p in parts) == whole.message.content
    last = parts[-1].model_dump()
    check_final(last, max_eval=12)
    assert last["eval_count"] == whole.eval_count and last["done_reason"] == whole.done_reason


def test_ollama_streams_by_default(base_url):
    """No `stream` member: NDJSON lines, as Ollama does."""
    lines = ndjson(post(base_url, "/api/chat", {"model": MODEL_NAME, "messages": user("Say hi."), "options": GREEDY}))
    assert len(lines) >= 2
    assert all(x["done"] is False and x["message"]["role"] == "assistant" for x in lines[:-1])
    check_final(lines[-1], max_eval=12)
    lines = ndjson(post(base_url, "/api/generate", {"model": MODEL_NAME, "prompt": "Say hi.", "options": GREEDY}))
    assert all("response" in x and "message" not in x for x in lines)
    check_final(lines[-1], max_eval=12)


def test_ollama_chat_same_text_as_openai(det_url):
    """Same prompt, temperature 0, same token budget: the same text through both doors."""
    prompt = "Write one sentence about the sea."
    oa = post(det_url, "/v1/chat/completions", chat_body(prompt, max_tokens=24))
    assert oa.status_code == 200, oa.text
    ol = client(det_url).chat(model=MODEL_NAME, messages=user(prompt), options={"temperature": 0, "num_predict": 24})
    assert ol.message.content == oa.json()["choices"][0]["message"]["content"]
    assert ol.prompt_eval_count == oa.json()["usage"]["prompt_tokens"]
    assert ol.eval_count == oa.json()["usage"]["completion_tokens"]


def test_ollama_generate(det_url):
    c = client(det_url)
    g = c.generate(model=MODEL_NAME, prompt="Why is the sky blue?", options=GREEDY)
    assert g.response and g.done is True
    check_final(g.model_dump(), max_eval=12)
    parts = list(c.generate(model=MODEL_NAME, prompt="Why is the sky blue?", options=GREEDY, stream=True))
    assert "".join(p.response for p in parts) == g.response
    # without raw, prompt and system become chat messages: the same text as /api/chat
    s = c.generate(model=MODEL_NAME, prompt="Say hi.", system="You are terse.", options=GREEDY)
    ch = c.chat(model=MODEL_NAME, messages=[{"role": "system", "content": "You are terse."}, *user("Say hi.")],
                options=GREEDY)
    assert s.response == ch.message.content
    # raw: the prompt as it is, no template (what /v1/completions does with it)
    raw = c.generate(model=MODEL_NAME, prompt="The capital of France is", raw=True, options=GREEDY)
    cmp = post(det_url, "/v1/completions", {"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0})
    assert raw.response == cmp.json()["choices"][0]["text"]


def test_ollama_empty_request_loads(base_url):
    """An empty prompt or message list only loads the model in Ollama: done_reason "load"."""
    g = client(base_url).generate(model=MODEL_NAME)
    assert g.done is True and g.done_reason == "load" and g.response == ""
    r = post(base_url, "/api/chat", {"model": MODEL_NAME, "messages": []})
    assert r.status_code == 200 and r.json()["done_reason"] == "load", r.text


def test_ollama_options_accepted(det_url):
    """Options Ollama has but this kernel sets in its config are accepted with no effect, as
    are keep_alive and think; the mapped ones act (compared byte for byte: deterministic mode)."""
    c = client(det_url)
    base = c.chat(model=MODEL_NAME, messages=user("Count to ten."), options=GREEDY)
    other = c.chat(model=MODEL_NAME, messages=user("Count to ten."), keep_alive="5m", think=False,
                   options={**GREEDY, "num_ctx": 4096, "num_gpu": 1, "num_thread": 2, "mirostat": 0, "num_keep": 4})
    assert other.message.content == base.message.content
    stopped = c.chat(model=MODEL_NAME, messages=user("Count to ten."), options={**GREEDY, "stop": ["3"]})
    assert "3" not in stopped.message.content and stopped.done_reason == "stop"
    assert base.message.content.startswith(stopped.message.content.rstrip()[:5])
    short = c.chat(model=MODEL_NAME, messages=user("Count to ten."), options={"temperature": 0, "num_predict": 3})
    assert short.eval_count == 3 and short.done_reason == "length"
    seeded = [c.chat(model=MODEL_NAME, messages=user("Pick a word."),
                     options={"temperature": 1.5, "top_k": 50, "top_p": 0.95, "seed": 7, "num_predict": 8,
                              "repeat_penalty": 1.1, "repeat_last_n": -1, "presence_penalty": 0.5,
                              "frequency_penalty": 0.5, "min_p": 0.01}).message.content for _ in range(2)]
    assert seeded[0] == seeded[1]


class Person(BaseModel):
    name: str
    age: int


def test_ollama_format_json_and_schema(base_url):
    c = client(base_url)
    r = c.chat(model=MODEL_NAME, messages=user("Give a JSON object with keys name and age."), format="json",
               options={"temperature": 0, "num_predict": 64})
    assert r.done_reason == "stop", r
    assert isinstance(json.loads(r.message.content), dict)
    r = c.chat(model=MODEL_NAME, messages=user("Invent a person."), format=Person.model_json_schema(),
               options={"temperature": 0, "num_predict": 64})
    p = Person.model_validate_json(r.message.content)
    assert p.name
    g = c.generate(model=MODEL_NAME, prompt="Invent a person.", format=Person.model_json_schema(),
                   options={"temperature": 0, "num_predict": 64})
    Person.model_validate_json(g.response)


def test_ollama_tools_round_trip(base_url):
    """Tools given: the model decides (text or calls), streamed or not; this model sits near
    that choice here, so each answer is checked for its shape, not for agreeing with the other.
    A conversation with an earlier call and its tool result is accepted; calls come back in
    Ollama's shape with no text."""
    opts = {"temperature": 0, "num_predict": 48}
    r = post(base_url, "/api/chat", {"model": MODEL_NAME, "messages": TOOL_ROUND_TRIP, "tools": [WEATHER_TOOL],
                                     "stream": False, "options": opts})
    assert r.status_code == 200, r.text
    whole = r.json()["message"]
    for i, tc in enumerate(whole.get("tool_calls", [])):  # {"id", "function": {"index", "name", "arguments": {...}}}
        assert set(tc) == {"id", "function"} and set(tc["function"]) == {"index", "name", "arguments"}, tc
        assert tc["function"]["index"] == i and tc["function"]["name"] == "get_weather", tc
        assert isinstance(tc["function"]["arguments"]["city"], str), tc
    if "tool_calls" in whole:  # calls (none when the budget cut the array short): no text
        assert whole["content"] == "", whole
    parts = list(client(base_url).chat(model=MODEL_NAME, messages=TOOL_ROUND_TRIP, tools=[WEATHER_TOOL], stream=True,
                                       options=opts))
    assert parts[-1].done is True and all(p.done is False for p in parts[:-1])
    for p in parts:
        for tc in p.message.tool_calls or []:  # in a line of their own, after any text
            assert p.message.content == "" and p is parts[-2], parts
            assert tc.function.name == "get_weather" and isinstance(tc.function.arguments["city"], str), tc
    if any(p.message.tool_calls for p in parts):
        assert "".join(p.message.content for p in parts) == "", parts


def test_ollama_text_answer_with_tools(base_url):
    r = client(base_url).chat(model=MODEL_NAME, messages=user("Tell me a joke."), tools=[WEATHER_TOOL],
                              options={"temperature": 0, "num_predict": 16})
    assert r.message.content or r.message.tool_calls


# ------------------------------------------------------------------- embeddings

def test_ollama_embed(base_url):
    c = client(base_url)
    texts = ["The cat sits on the mat", "A cat is sitting on a rug", "Stock markets fell sharply today"]
    e = c.embed(model=EMBED_MODEL, input=texts)
    assert e.model == EMBED_MODEL and len(e.embeddings) == 3 and all(len(v) == 384 for v in e.embeddings)
    assert cos(e.embeddings[0], e.embeddings[1]) > 0.6 > 0.2 > cos(e.embeddings[0], e.embeddings[2])
    assert e.prompt_eval_count > 10 and e.total_duration > 0 and e.load_duration == 0
    one = c.embed(model=f"{EMBED_MODEL}:latest", input=texts[0])
    assert len(one.embeddings) == 1 and max(abs(x - y) for x, y in zip(one.embeddings[0], e.embeddings[0])) < 1e-6
    oa = post(base_url, "/v1/embeddings", {"model": EMBED_MODEL, "input": texts[0], "encoding_format": "float"})
    assert oa.json()["data"][0]["embedding"] == one.embeddings[0]
    assert c.embed(model=EMBED_MODEL, input=[]).embeddings == []


def test_ollama_legacy_embeddings(base_url):
    c = client(base_url)
    v = c.embeddings(model=EMBED_MODEL, prompt="The cat sits on the mat").embedding
    e = c.embed(model=EMBED_MODEL, input="The cat sits on the mat").embeddings[0]
    assert len(v) == 384 and v == e
    assert c.embeddings(model=EMBED_MODEL, prompt="").embedding == []


# ------------------------------------------------------------------- bad input -> 4xx, still serving

M = [{"role": "user", "content": "hi"}]
BAD_BODIES = [
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"temperature": "hot"}}, "options.temperature"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"top_k": 1.5}}, "options.top_k"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"num_predict": "many"}}, "options.num_predict"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"seed": [1]}}, "options.seed"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"stop": [1, 2]}}, "options.stop"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"temperature": 7}}, "options.temperature"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"top_p": 3}}, "options.top_p"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"repeat_last_n": -5}}, "options.repeat_last_n"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": {"stop": ["a"] * 20}}, "options.stop"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "options": [1]}, "options"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "format": "xml"}, "format"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "format": 5}, "format"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "format": {"type": "string", "pattern": "^a+$"}}, "pattern"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "stream": "yes"}, "stream"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "keep_alive": [5]}, "keep_alive"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "think": 3}, "think"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "tools": "all"}, "tools"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "tools": [{"type": "function", "function": {}}]}, "tools[0]"),
    ("/api/chat", {"model": MODEL_NAME, "messages": "hi"}, "messages"),
    ("/api/chat", {"model": MODEL_NAME, "messages": ["hi"]}, "messages[0]"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [{"content": "hi"}]}, "role"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [{"role": "bot", "content": "hi"}]}, "messages[0].role"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]},
     "messages[0].images"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "x"}}]}]}, "messages[0].tool_calls[0]"),
    ("/api/chat", {"model": MODEL_NAME, "messages": [{"role": "tool", "content": "x", "tool_name": 5}]},
     "messages[0].tool_name"),
    ("/api/chat", {"model": 5, "messages": M}, "model"),
    ("/api/chat", {"model": MODEL_NAME, "messages": M, "logprobs": True}, "logprobs"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": 5}, "prompt"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "system": ["x"]}, "system"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "raw": "yes"}, "raw"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "context": [1, 2, 3]}, "context"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "images": ["aGk="]}, "images"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "suffix": "end"}, "suffix"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "template": "{{ .Prompt }}"}, "template"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "raw": True, "format": "json"}, "format"),
    ("/api/generate", {"model": MODEL_NAME, "prompt": "hi", "options": {"min_p": "low"}}, "options.min_p"),
    ("/api/embed", {"model": EMBED_MODEL, "input": 5}, "input"),
    ("/api/embed", {"model": EMBED_MODEL, "input": [[1, 2]]}, "input"),
    ("/api/embed", {"model": EMBED_MODEL, "input": "x", "dimensions": 12}, "dimensions"),
    ("/api/embed", {"model": EMBED_MODEL, "input": "x", "truncate": "no"}, "truncate"),
    ("/api/embed", {"model": EMBED_MODEL, "input": "x", "options": 3}, "options"),
    ("/api/embeddings", {"model": EMBED_MODEL, "prompt": ["x"]}, "prompt"),
    ("/api/show", {"model": ""}, "model"),
    ("/api/show", {"model": 3}, "model"),
]


@pytest.mark.parametrize("path,body,field", BAD_BODIES, ids=[f"{p[5:]}-{f}-{i}" for i, (p, _, f) in enumerate(BAD_BODIES)])
def test_ollama_bad_input_400_names_the_field(base_url, path, body, field):
    assert_ollama_error(post(base_url, path, body), 400, field)


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/show"])
def test_ollama_malformed_json_400(base_url, path):
    r = requests.post(base_url + path, data=b'{"model": "smollm2", "messages": [', timeout=10,
                      headers={"Content-Type": "application/json"})
    assert_ollama_error(r, 400)


def test_ollama_door_errors_keep_its_shape(base_url):
    assert_ollama_error(requests.get(base_url + "/api/nothing", timeout=10), 404, "/api/nothing")
    assert_ollama_error(requests.put(base_url + "/api/chat", timeout=10), 405)
    r = post(base_url, "/api/chat", {"model": MODEL_NAME, "messages": M}, headers={"X-AIOS-Priority": "500"})
    assert_ollama_error(r, 400, "X-AIOS-Priority")
    assert_serving(base_url)


# ------------------------------------------------------------------- the kernel behind the door

KERNEL_CONFIG = f"""\
llms:
  models:
    - name: {MODEL_NAME}
      backend: llamacpp
      path: {default_model_path()}
      ctx_size: 96
access:
  groups:
    default: ["llm:*", "tool:*"]
    nochat: ["tool:*", "llm:all-MiniLM*"]
    noembed: ["llm:*", "tool:*", "!llm:all-MiniLM*"]
agents:
  nc: {{group: nochat}}
  ne: {{group: noembed}}
"""


@pytest.fixture(scope="module")
def small_kernel(tmp_path_factory):
    from aiosd_helpers import Daemon
    wd = tmp_path_factory.mktemp("ollama-kernel")
    cfg = wd / "aios.yaml"
    cfg.write_text(textwrap.dedent(KERNEL_CONFIG))
    k = Daemon("ollama-kernel", wd, ["--config", str(cfg)]).start()
    yield k
    k.stop_and_check()


@pytest.mark.parametrize("num_predict", [10**9, -1, 0])
def test_ollama_huge_num_predict_bounded_by_config(small_kernel, num_predict):
    """num_predict past the context (or Ollama's -1 / 0, "until it is full") is accepted and
    bounded by the model's configured ctx_size (96 here)."""
    r = client(small_kernel.url).chat(model=MODEL_NAME, messages=user(LONG_CHAT_PROMPT),
                                      options={"temperature": 0, "num_predict": num_predict})
    assert r.prompt_eval_count + r.eval_count <= 96, r
    assert r.done_reason == "length" and r.eval_count > 30, r


def test_ollama_access_rules_by_bearer(small_kernel):
    """The bearer names the agent; its group's rules decide, through the door's plan claims."""
    u = small_kernel.url
    ok = client(u, "plain").chat(model=MODEL_NAME, messages=user("Hi"), options={"num_predict": 2})
    assert ok.message.content
    for path, body in (("/api/chat", {"model": MODEL_NAME, "messages": user("Hi")}),
                       ("/api/generate", {"model": MODEL_NAME, "prompt": "Hi"})):
        assert_ollama_error(post(u, path, body, headers={"Authorization": "Bearer nc"}), 403, "'nc'", MODEL_NAME)
    assert client(u, "nc").embed(model=EMBED_MODEL, input="hello").embeddings
    for path, body in (("/api/embed", {"model": EMBED_MODEL, "input": "hello"}),
                       ("/api/embeddings", {"model": EMBED_MODEL, "prompt": "hello"})):
        assert_ollama_error(post(u, path, body, headers={"Authorization": "Bearer ne"}), 403, "'ne'", "all-MiniLM")
    assert_serving(u)


def test_ollama_stream_cut_frees_its_sequence(base_url):
    """The official client leaves a stream after a few lines (its connection closes): the
    generation is cancelled, its sequence and KV cells freed, and the kernel keeps serving."""
    before = metrics(base_url)
    assert before["aios_active_sequences"] == 0
    parts = client(base_url, "cut-agent").chat(model=MODEL_NAME, messages=user(LONG_CHAT_PROMPT), stream=True,
                                               options={"temperature": 0, "num_predict": 640})
    for i, part in enumerate(parts):
        assert part.done is False
        if i == 3:
            break
    assert metrics(base_url)["aios_active_sequences"] == 1, "the generation should still be running"
    parts.close()  # leaves the client's `with` around the response: the connection closes
    # (test_fault.py holds the kernel to 2 s; here only that the hang-up cancels, on a loaded host)
    after = wait_idle_and_cancelled(base_url, before["aios_requests_cancelled_total"], timeout=5.0)
    moved = {k: after[k] - before[k] for k in ("aios_requests_cancelled_total", "aios_active_sequences",
                                                "aios_kv_reserved_cells")}
    assert moved == {"aios_requests_cancelled_total": 1, "aios_active_sequences": 0, "aios_kv_reserved_cells": 0}, after
    assert after["aios_tokens_generated_total"] - before["aios_tokens_generated_total"] < 1000, after
    assert_serving(base_url)

"""System tests of the everyday endpoints llama-server has (issue 12 part 5): GET /health
(503 {"status":"loading"} while the models load, then 200; no token needed), POST /tokenize,
/detokenize and /apply-template (the model's own vocabulary and chat template, behind the
admission gate like any model use), CORS for browser clients (server.cors_origins), and the
chat completions sampling controls (logit_bias, frequency / presence / repeat penalties,
logprobs, n choices).
Real aiosd, real model, plain HTTP."""
from __future__ import annotations

import subprocess
import time

import requests

from aiosd_helpers import AIOSD, assert_error, daemon_env, free_port, model_flags


def test_health_is_503_while_loading_then_200(tmp_path):
    """Polled from the moment the process starts: the listener comes up before the model is
    loaded, every route but /health answers 503 "loading" until it is, then 200."""
    port = free_port()
    proc = subprocess.Popen([AIOSD, "--port", str(port), "--data-dir", str(tmp_path / "data"), *model_flags()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=daemon_env())
    seen, status_seen = [], []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                h = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except requests.RequestException:
                time.sleep(0.005)
                continue
            seen.append((h.status_code, h.json()))
            if h.status_code == 200:
                break
            s = requests.get(f"http://127.0.0.1:{port}/status", timeout=2)
            status_seen.append((s.status_code, s.json(), s.headers.get("Retry-After")))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen and seen[-1] == (200, {"status": "ok"}), seen[-3:]
    loading = [x for x in seen if x[0] == 503]
    assert loading and all(body == {"status": "loading"} for _, body in loading), seen[:3]
    # /status between a 503 /health and the next: 503 "loading", or 200 once loading ended in between
    assert any(code == 503 for code, _, _ in status_seen), status_seen[:3]
    assert all((code == 503 and body["error"]["code"] == "loading" and ra == "1") or (code == 200 and i == len(status_seen) - 1)
               for i, (code, body, ra) in enumerate(status_seen)), status_seen[:3]


def test_health_needs_no_token(spawn_daemon):
    k = spawn_daemon("health-enforce", config="access:\n  mode: enforce\n")
    assert requests.get(k.url + "/health", timeout=10).json() == {"status": "ok"}
    assert_error(requests.get(k.url + "/status", timeout=10), 401, "unauthorized")


def test_tokenize_detokenize_round_trip(base_url):
    text = "Hello, kernel! Grüße <|im_start|>"
    r = requests.post(base_url + "/tokenize", json={"content": text}, timeout=30)
    assert r.status_code == 200, r.text
    toks = r.json()["tokens"]
    assert toks and all(isinstance(t, int) for t in toks)
    # special tokens are parsed: <|im_start|> is one token
    r2 = requests.post(base_url + "/tokenize", json={"content": "<|im_start|>"}, timeout=30)
    assert len(r2.json()["tokens"]) == 1, r2.text
    r = requests.post(base_url + "/detokenize", json={"tokens": toks}, timeout=30)
    assert r.status_code == 200 and r.json()["content"] == text, r.text
    r = requests.post(base_url + "/tokenize", json={"content": "Grüße", "with_pieces": True}, timeout=30)
    pieces = r.json()["tokens"]
    assert all(set(p) == {"id", "piece"} for p in pieces), pieces
    assert "".join(p["piece"] for p in pieces if isinstance(p["piece"], str)) in ("Grüße", "Gr", "Grü", "Grüß")


def test_tokenize_bad_input(base_url):
    assert_error(requests.post(base_url + "/tokenize", json={}, timeout=30), 400, "invalid_request")
    assert_error(requests.post(base_url + "/tokenize", json={"content": 5}, timeout=30), 400, "invalid_request")
    assert_error(requests.post(base_url + "/tokenize", json={"content": "x", "model": "nope"}, timeout=30), 404)
    err = assert_error(requests.post(base_url + "/detokenize", json={"tokens": [1, 99999999]}, timeout=30), 400)
    assert "tokens[1]" in err["message"], err
    assert_error(requests.post(base_url + "/detokenize", json={"tokens": [1.5]}, timeout=30), 400)
    assert_error(requests.post(base_url + "/detokenize", json={"tokens": "1 2"}, timeout=30), 400)
    # a token that is only part of a character: the answer stays valid JSON
    r = requests.post(base_url + "/tokenize", json={"content": "😀", "with_pieces": True}, timeout=30)
    ids = [p["id"] for p in r.json()["tokens"]]
    r = requests.post(base_url + "/detokenize", json={"tokens": ids[:1]}, timeout=30)
    assert r.status_code == 200 and isinstance(r.json()["content"], str), r.text


def test_apply_template(base_url):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    r = requests.post(base_url + "/apply-template", json={"messages": msgs}, timeout=30)
    assert r.status_code == 200, r.text
    prompt = r.json()["prompt"]
    assert "Be brief." in prompt and "Hi there" in prompt and prompt.index("Be brief.") < prompt.index("Hi there")
    assert prompt.rstrip().endswith("assistant"), prompt[-60:]  # ends with the generation prompt
    assert_error(requests.post(base_url + "/apply-template", json={"messages": []}, timeout=30), 400)
    assert_error(requests.post(base_url + "/apply-template", json={"messages": [{"role": "x", "content": "y"}]},
                               timeout=30), 400)


def test_model_rules_apply_to_the_helpers(spawn_daemon):
    k = spawn_daemon("helpers-rules", config="access:\n  groups:\n    nollm: [\"tool:*\"]\nagents:\n  n: {group: nollm}\n")
    r = requests.post(k.url + "/tokenize", json={"content": "x"}, headers={"Authorization": "Bearer n"}, timeout=30)
    assert_error(r, 403, "forbidden")
    r = requests.post(k.url + "/tokenize", json={"content": "x"}, headers={"Authorization": "Bearer m"}, timeout=30)
    assert r.status_code == 200, r.text


def test_cors_only_for_listed_origins(spawn_daemon, base_url):
    k = spawn_daemon("cors", ["--set", "server.cors_origins=http://app.example, http://localhost:3000"])
    ok = {"Origin": "http://localhost:3000"}
    r = requests.options(k.url + "/v1/chat/completions",
                         headers={**ok, "Access-Control-Request-Method": "POST",
                                  "Access-Control-Request-Headers": "authorization, content-type"}, timeout=10)
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    r = requests.get(k.url + "/v1/models", headers=ok, timeout=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    # streamed answers carry it too
    r = requests.post(k.url + "/v1/chat/completions", headers=ok, stream=True, timeout=60,
                      json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True})
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    r.close()
    # an origin not listed gets no CORS headers (the browser refuses); nor does anyone by default
    r = requests.get(k.url + "/v1/models", headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(k.url + "/v1/models", headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 204 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(base_url + "/v1/models", headers=ok, timeout=10)
    assert "Access-Control-Allow-Origin" not in r.headers


def chat(url, **extra):
    body = {"messages": [{"role": "user", "content": "Write the word cat ten times."}], "max_tokens": 24,
            "temperature": 0, **extra}
    return requests.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_logit_bias_bans_and_forces_tokens(base_url):
    plain = chat(base_url).json()["choices"][0]["message"]["content"]
    toks = requests.post(base_url + "/tokenize", json={"content": plain}, timeout=30).json()["tokens"]
    first = toks[0]
    # banning the greedy first token changes the answer's start
    banned = chat(base_url, logit_bias={str(first): -100}).json()["choices"][0]["message"]["content"]
    btoks = requests.post(base_url + "/tokenize", json={"content": banned}, timeout=30).json()["tokens"]
    assert first not in btoks, (plain, banned)
    # a large positive bias on one token makes the model write it over and over
    x = requests.post(base_url + "/tokenize", json={"content": " zebra"}, timeout=30).json()["tokens"][0]
    forced = chat(base_url, logit_bias={str(x): 100}, max_tokens=6).json()["choices"][0]
    ftoks = requests.post(base_url + "/tokenize", json={"content": forced["message"]["content"]}, timeout=30).json()["tokens"]
    assert ftoks.count(x) >= 5, forced


def repeats(url, text):
    toks = requests.post(url + "/tokenize", json={"content": text}, timeout=30).json()["tokens"]
    return len(toks) - len(set(toks))


def test_penalties_change_a_repetitive_answer(base_url):
    plain = chat(base_url).json()["choices"][0]["message"]["content"]
    assert repeats(base_url, plain) >= 5, plain  # the model repeats itself (a list, the word)
    for extra in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}, {"repeat_penalty": 1.8}):
        pen = chat(base_url, **extra).json()["choices"][0]["message"]["content"]
        assert repeats(base_url, pen) < repeats(base_url, plain), (extra, plain, pen)


def test_sampling_controls_bad_input(base_url):
    for extra, field in (({"logit_bias": {"abc": 1}}, "logit_bias"), ({"logit_bias": {"5": 101}}, "logit_bias"),
                         ({"logit_bias": [1, 2]}, "logit_bias"), ({"logit_bias": {"99999999": 1}}, "logit_bias"),
                         ({"frequency_penalty": 3}, "frequency_penalty"), ({"repeat_penalty": 0}, "repeat_penalty"),
                         ({"repeat_last_n": -1}, "repeat_last_n")):
        err = assert_error(chat(base_url, **extra), 400, "invalid_request")
        assert field in err["message"], (extra, err)


def door_metrics(url):
    text = requests.get(url + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("aios_door_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_per_door_metrics(spawn_daemon):
    k = spawn_daemon("doors")
    u = k.url
    assert chat(u, max_tokens=4).status_code == 200
    body = {"agent_name": "a", "query_type": "llm",
            "query_data": {"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 3}}
    assert requests.post(u + "/query", json=body, timeout=60).status_code == 200
    assert requests.post(u + "/tokenize", json={"content": "hi"}, timeout=30).status_code == 200
    assert requests.get(u + "/nope", timeout=30).status_code == 404
    assert requests.post(u + "/v1/chat/completions", json={"messages": 1}, timeout=30).status_code == 400
    m = door_metrics(u)
    assert m['aios_door_requests_total{door="openai",status="2xx"}'] == 1, m
    assert m['aios_door_requests_total{door="openai",status="4xx"}'] == 1, m
    assert m['aios_door_requests_total{door="aios",status="2xx"}'] >= 1, m
    assert m['aios_door_requests_total{door="llama",status="2xx"}'] == 1, m
    assert m['aios_door_requests_total{door="other",status="4xx"}'] == 1, m
    assert m['aios_door_tokens_total{door="openai",kind="completion"}'] >= 1, m
    assert m['aios_door_tokens_total{door="aios",kind="prompt"}'] >= 1, m
    assert m['aios_door_request_seconds_count{door="openai"}'] == 2, m
    assert m['aios_door_request_seconds_bucket{door="openai",le="+Inf"}'] == 2, m
    assert 0 < m['aios_door_request_seconds_sum{door="openai"}'] < 60, m


def test_chat_logprobs(base_url):
    from openai import OpenAI
    c = OpenAI(base_url=base_url + "/v1", api_key="lp")
    resp = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Name three colors."}],
                                     max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    ch = resp.choices[0]
    content = ch.logprobs.content
    assert len(content) == resp.usage.completion_tokens or (ch.finish_reason == "stop" and
                                                             len(content) == resp.usage.completion_tokens - 1), resp
    assert "".join(t.token for t in content) == ch.message.content
    for t in content:
        assert t.logprob <= 0 and bytes(t.bytes).decode("utf-8", "replace")
        assert len(t.top_logprobs) == 3
        tops = [x.logprob for x in t.top_logprobs]
        assert tops == sorted(tops, reverse=True)
        # greedy: the token chosen is the most likely one
        assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-4
    # without logprobs the field is null; streamed, they arrive with the final chunk
    assert c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                     max_tokens=3).choices[0].logprobs is None
    chunks = list(c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Name three colors."}],
                                            max_tokens=12, temperature=0, logprobs=True, stream=True))
    final = [k for k in chunks if k.choices and k.choices[0].finish_reason][0]
    assert [t.token for t in final.choices[0].logprobs.content] == [t.token for t in content]
    err = assert_error(requests.post(base_url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}, timeout=30), 400, "invalid_request")
    assert "logprobs" in err["message"]
    assert_error(requests.post(base_url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 21}, timeout=30), 400)


def test_chat_n_choices(base_url):
    """n choices run side by side, each sampled with its own seed (seed + i); usage counts the
    prompt once and every choice's completion. (Batched with each other, a choice need not
    equal a solo request with its seed: batched decoding can flip near-ties at T=1.)"""
    from openai import OpenAI
    c = OpenAI(base_url=base_url + "/v1", api_key="n-agent")
    msgs = [{"role": "user", "content": "Name a fruit."}]
    resp = c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, temperature=1.0, seed=42, n=3)
    assert [ch.index for ch in resp.choices] == [0, 1, 2]
    texts = [ch.message.content for ch in resp.choices]
    assert all(texts) and len(set(texts)) >= 2, texts  # three samples, not one repeated
    single = c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, temperature=1.0, seed=42)
    assert resp.usage.prompt_tokens == single.usage.prompt_tokens
    assert 3 <= resp.usage.completion_tokens <= 24
    if all(ch.finish_reason == "length" for ch in resp.choices):
        assert resp.usage.completion_tokens == 24
    # streamed: every choice's chunks carry its index, each ends with its finish_reason
    chunks = list(c.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8, temperature=1.0, seed=42, n=3,
                                            stream=True, stream_options={"include_usage": True}))
    text = {0: "", 1: "", 2: ""}
    finished = []
    for k in chunks:
        for ch in k.choices:
            text[ch.index] += ch.delta.content or ""
            if ch.finish_reason:
                finished.append(ch.index)
    assert sorted(finished) == [0, 1, 2] and all(text.values()), text
    assert 3 <= chunks[-1].usage.completion_tokens <= 24


def test_chat_n_cut_by_client_cancels_every_choice(base_url):
    from aiosd_helpers import LONG_CHAT_PROMPT, metrics, wait_for
    before = metrics(base_url)
    body = {"model": "smollm2", "messages": [{"role": "user", "content": LONG_CHAT_PROMPT}], "max_tokens": 2000,
            "n": 4, "stream": True}
    r = requests.post(base_url + "/v1/chat/completions", json=body, stream=True, timeout=30)
    lines = r.iter_lines()
    for _ in range(6):
        next(lines)
    assert metrics(base_url)["aios_active_sequences"] == 4
    r.close()
    after = wait_for(lambda: (lambda m: m if m["aios_active_sequences"] == 0 and m["aios_queue_length"] == 0
                              and m["aios_requests_cancelled_total"] >= before["aios_requests_cancelled_total"] + 4
                              else None)(metrics(base_url)), 5.0)
    assert after, metrics(base_url)
    assert after["aios_kv_reserved_cells"] == 0, after

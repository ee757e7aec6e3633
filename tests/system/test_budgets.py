"""System tier: per-agent and per-group budgets (issue 13, part 5).

A kernel with budgets on the local model: an agent over its tokens-per-minute budget gets
429 with Retry-After and the budget named, on every door, while another agent is served;
a requests-per-minute budget of one model; a group's budget shared by its members; live
usage on /status and /metrics; and usage that survives a restart (SIGTERM) and a kill -9
(saved every 2 s). Day budgets are used where a test spans a restart, so a minute boundary
cannot reset what is checked.
"""
from __future__ import annotations

import time

import pytest
import requests

from aiosd_helpers import MODEL_NAME, Daemon, assert_error, assert_config_stops, query_body

CONFIG = """
llms:
  models:
    - name: smollm2
      aliases: [gpt-4o]
agents:
  hungry:
    budget: {tokens_per_minute: 120}
  limited:
    budget:
      - {requests_per_minute: 2, model: gpt-4o}
      - {tokens_per_day: 1000000}
  daily:
    budget: {tokens_per_day: 100}
  intern-1:
    group: interns
  intern-2:
    group: interns
groups:
  interns:
    budget: {tokens_per_day: 150}
access:
  groups:
    interns: ["llm:*"]
"""


def start(work) -> Daemon:
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "aios.yaml"
    cfg.write_text(CONFIG)
    return Daemon("budgets", work, ["--config", str(cfg)]).start()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = start(tmp_path_factory.mktemp("budgets"))
    yield d
    d.stop_and_check()


def chat(url: str, agent: str, max_tokens: int = 40) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {agent}"}, timeout=120, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": max_tokens,
        "ignore_eos": True})


def spend_until_refused(url: str, agent: str, limit: int = 20) -> requests.Response:
    for _ in range(limit):
        r = chat(url, agent)
        if r.status_code != 200:
            return r
    raise AssertionError(f"{agent} was never refused")


def budgets(url: str) -> list[dict]:
    return requests.get(url + "/status", timeout=10).json()["budgets"]


def test_over_tokens_per_minute_is_429_on_every_door(kernel):
    r = spend_until_refused(kernel.url, "hungry")
    err = assert_error(r, 429, "rate_limited")
    assert "agents.hungry.budget" in err["message"] and "tokens_per_minute 120" in err["message"], err
    assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
    # the same budget, whichever door
    h = {"Authorization": "Bearer hungry"}
    q = requests.post(kernel.url + "/query", json=query_body("Hi", agent="hungry"), headers=h, timeout=30)
    assert q.status_code == 429 and "tokens_per_minute" in q.text and q.headers.get("Retry-After"), q.text
    m = requests.post(kernel.url + "/v1/messages", headers=h, timeout=30, json={
        "model": MODEL_NAME, "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]})
    assert m.status_code == 429 and m.json()["type"] == "error" and "budget" in m.json()["error"]["message"], m.text
    o = requests.post(kernel.url + "/api/chat", headers=h, timeout=30, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "stream": False})
    assert o.status_code == 429 and "budget" in o.json()["error"], o.text
    # another agent is served meanwhile
    assert chat(kernel.url, "someone-else").status_code == 200
    b = next(x for x in budgets(kernel.url) if x.get("agent") == "hungry")
    assert b["tokens_per_minute"]["used"] >= 120 and b["tokens_per_minute"]["limit"] == 120, b


def test_requests_per_minute_of_one_model(kernel):
    h = {"Authorization": "Bearer limited"}
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    codes = [requests.post(kernel.url + "/v1/chat/completions", json=body, headers=h, timeout=60).status_code
             for _ in range(3)]
    if codes != [200, 200, 429]:  # a minute boundary passed between the requests: once more
        codes = [requests.post(kernel.url + "/v1/chat/completions", json=body, headers=h, timeout=60).status_code
                 for _ in range(3)]
    assert codes[-1] == 429 and codes.count(200) <= 2, codes
    r = requests.post(kernel.url + "/v1/chat/completions", json=body, headers=h, timeout=60)
    assert "requests_per_minute 2" in assert_error(r, 429)["message"]


def test_a_group_budget_is_shared(kernel):
    r = spend_until_refused(kernel.url, "intern-1")
    assert "groups.interns.budget" in assert_error(r, 429)["message"]
    r = chat(kernel.url, "intern-2")  # the same group: the same, spent budget
    assert "groups.interns.budget" in assert_error(r, 429)["message"]


def test_budgets_on_metrics(kernel):
    text = requests.get(kernel.url + "/metrics", timeout=10).text
    assert 'aios_budget_limit{agent="hungry",model="*",limit="tokens_per_minute"} 120' in text, text[-2000:]
    assert 'aios_budget_used{group="interns",model="*",limit="tokens_per_day"}' in text


def test_usage_survives_a_restart_and_a_kill(tmp_path):
    work = tmp_path / "k"
    d = start(work)
    r = spend_until_refused(d.url, "daily")
    assert "tokens_per_day 100" in assert_error(r, 429)["message"]
    d.stop_and_check()
    d = start(work)  # a clean restart: the day's usage was saved at close
    assert "tokens_per_day" in assert_error(chat(d.url, "daily"), 429)["message"]
    used = next(x for x in budgets(d.url) if x.get("agent") == "daily")["tokens_per_day"]["used"]
    assert used >= 100
    assert chat(d.url, "fresh").status_code == 200
    # kill -9: what was charged more than 2 s before is saved
    assert chat(d.url, "intern-1", max_tokens=30).status_code == 200
    time.sleep(3)
    before = next(x for x in budgets(d.url) if x.get("group") == "interns")["tokens_per_day"]["used"]
    d.kill()
    d = start(work)
    after = next(x for x in budgets(d.url) if x.get("group") == "interns")["tokens_per_day"]["used"]
    assert after == before and after >= 30, (before, after)
    d.stop_and_check()


@pytest.mark.parametrize("config,needle", [
    ("agents:\n  a:\n    budget: {tokens_per_hour: 5}\n", "'tokens_per_hour' is not one of"),
    ("agents:\n  a:\n    budget: {model: smollm2}\n", "set tokens_per_minute"),
    ("agents:\n  a:\n    budget: {tokens_per_minute: -1}\n", "agents.a.budget"),
    ("agents:\n  a:\n    budget: {tokens_per_minute: 5, model: ghost}\n", "no model is named 'ghost'"),
    ("groups:\n  g:\n    budget: [1, 2]\n", "budget: a mapping of limits"),
])
def test_bad_budgets_stop_the_kernel(config, needle, tmp_path):
    assert_config_stops(tmp_path, config, needle)

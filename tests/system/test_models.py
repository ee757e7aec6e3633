"""System tier: the models a kernel serves and the names requests may give them (issue 13).

Aliases: a model answers to other names (`llms.models[].aliases`), so a Cerebrum agent whose
config names a cloud model (gpt-4o) runs on the local one, through every door; /v1/models
lists the aliases. An alias that collides with another model's name or alias stops the
kernel with an error naming both; an unknown model is a 404 naming it.
"""
from __future__ import annotations

import pytest
import requests

from aiosd_helpers import MODEL_NAME, assert_error, assert_config_stops, query_body

ALIASED = """
llms:
  models:
    - name: smollm2
      aliases: [gpt-4o, gpt-4o-mini, "claude-sonnet-4-5"]
scheduler:
  max_active: 4
"""


def test_aliases_name_the_model_on_every_door(spawn_daemon):
    d = spawn_daemon("aliased", config=ALIASED)
    r = requests.get(d.url + "/v1/models", timeout=10)
    assert r.status_code == 200, r.text
    (m,) = r.json()["data"]
    assert m["id"] == MODEL_NAME and m["meta"]["aliases"] == ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"], m
    assert m["meta"]["backend"] == "llamacpp" and m["meta"]["state"] == "ready" and m["meta"]["max_active"] == 4, m
    (listed,) = requests.get(d.url + "/core/llms/list", timeout=10).json()["llms"]
    assert listed["name"] == MODEL_NAME and listed["aliases"] == m["meta"]["aliases"], listed
    assert listed["state"] == "ready" and listed["active"] == 0 and listed["queued"] == 0, listed
    direct = requests.post(d.url + "/v1/chat/completions", timeout=120, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0})
    assert direct.status_code == 200, direct.text
    text = direct.json()["choices"][0]["message"]["content"]
    aliased = requests.post(d.url + "/v1/chat/completions", timeout=120, json={
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0})
    assert aliased.status_code == 200, aliased.text
    assert aliased.json()["choices"][0]["message"]["content"] == text
    # a Cerebrum agent configured for a cloud model
    q = requests.post(d.url + "/query", timeout=120,
                      json=query_body("Say hello.", max_new_tokens=8, llms=[{"name": "gpt-4o", "backend": "openai"}]))
    assert q.status_code == 200, q.text
    assert q.json()["response"]["response_message"] == text
    msg = requests.post(d.url + "/v1/messages", timeout=120, json={
        "model": "claude-sonnet-4-5", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]})
    assert msg.status_code == 200, msg.text
    assert msg.json()["content"][0]["text"] == text
    assert_error(requests.post(d.url + "/v1/chat/completions", timeout=30, json={
        "model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}), 404)


@pytest.mark.parametrize("config,needle", [
    ("llms:\n  models:\n    - name: a\n      aliases: [b]\n    - name: b\n", "'b' already names model"),
    ("llms:\n  models:\n    - name: a\n      aliases: [x]\n    - name: b\n      aliases: [y, x]\n", "'x' already names model"),
    ("llms:\n  models:\n    - name: a\n      aliases: [a]\n", "'a' already names model 'a'"),
    ("llms:\n  models:\n    - name: a\n      aliases: [[nested]]\n", "aliases"),
])
def test_colliding_aliases_stop_the_kernel(config, needle, tmp_path):
    assert_config_stops(tmp_path, config, needle)


def test_gpu_layers_without_a_gpu(spawn_daemon, tmp_path):
    """On a host (or a build) without a GPU, a model asking for GPU layers stops the kernel
    with the reason, unless gpu_fallback: cpu lets it run on the CPU (said in the log and on
    /status, which lists the devices ggml can use)."""
    assert_config_stops(tmp_path / "a", "llms:\n  models:\n    - {name: smollm2, gpu_layers: 99}\n", "gpu_fallback: cpu")
    d = spawn_daemon("gpu-fallback", config="llms:\n  models:\n    - {name: smollm2, gpu_layers: 99, gpu_fallback: cpu}\n")
    st = requests.get(d.url + "/status", timeout=10).json()
    (m,) = st["llms"]
    assert m["device"] == "CPU" and m["gpu_layers"] == 0, m
    assert any(dev["type"] == "cpu" and dev["memory_total_bytes"] > 0 for dev in st["devices"]), st["devices"]
    assert "running on the CPU (gpu_fallback: cpu)" in d.tail(200)
    r = requests.post(d.url + "/v1/chat/completions", timeout=60, json={
        "model": MODEL_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert_config_stops(tmp_path / "b", "llms:\n  models:\n    - {name: smollm2, gpu_fallback: gpu}\n", "not one of none, cpu")

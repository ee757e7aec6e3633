"""System tier: AIOS kernel compatibility (issue 14, part 5).

A config file in the layout of AIOS's own config.yaml (aios/config/config.yaml.example:
api_keys, llms.models with cloud backends named without a server, llms.log_mode,
memory.log_mode, storage.root_dir, storage.use_vector_db, scheduler.log_mode,
agent_factory, server) is accepted: `--check-config` prints what each AIOS key became, a
cloud model without its key is `down` with the reason instead of stopping the kernel, and
the endpoints Cerebrum-era clients call besides /query answer in AIOS's shapes.
"""
from __future__ import annotations

import os

import pytest
import requests

from aiosd_helpers import Daemon, assert_error, free_port, query_body, run_aiosd_to_exit, wait_for

AIOS_LAYOUT = """
# the layout of AIOS's config.yaml, with one local model added
api_keys:
  openai: ""
  groq: ""
  huggingface:
    auth_token: ""
    cache_dir: ""

llms:
  models:
    - name: "llama-3.3-70b-versatile"
      backend: "groq"
    - name: "qwen2.5:72b"
      backend: "ollama"
      hostname: "http://localhost:{dead}"
    - name: "local"
      backend: "llamacpp"
  log_mode: "console"
  use_context_manager: false

memory:
  log_mode: "console"

storage:
  root_dir: "{root}"
  use_vector_db: true

scheduler:
  log_mode: "console"

agent_factory:
  log_mode: "console"
  max_workers: 64

server:
  host: "localhost"
  port: {port}
"""


def layout(tmp_path, port: int) -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(AIOS_LAYOUT.format(dead=free_port(), root=tmp_path / "root", port=port))
    return str(cfg)


def test_check_config_prints_the_mapping(tmp_path):
    cfg = layout(tmp_path, 8000)
    out = run_aiosd_to_exit(["--config", cfg, "--check-config"], with_model=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "configuration ok", out.stdout
    for needle in ["AIOS's api_keys ignored: keys come from environment variables",
                   "AIOS's llms.log_mode ignored", "AIOS's llms.use_context_manager ignored",
                   "AIOS's memory.log_mode ignored", f"AIOS's storage.root_dir mapped to kernel.data_dir = {tmp_path / 'root'}",
                   "AIOS's storage.use_vector_db ignored", "AIOS's scheduler.log_mode ignored",
                   "AIOS's agent_factory ignored",
                   "model 'llama-3.3-70b-versatile' (backend groq): https://api.groq.com/openai/v1, key from $GROQ_API_KEY",
                   "no llms.default_model: the first model, 'llama-3.3-70b-versatile'"]:
        assert any(needle in ln for ln in lines), (needle, out.stdout)
    assert all(ln.startswith(cfg) for ln in lines[:-1]), out.stdout  # each with its file (and line)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aios-layout")
    os.environ.pop("GROQ_API_KEY", None)  # the daemon's environment is this one's
    d = Daemon("aios-layout", tmp, ["--config", layout(tmp, 8000)])  # (the test's --port and --data-dir win)
    d.start()
    yield d
    if d.alive():
        d.stop_and_check()


def llms(url: str) -> dict[str, dict]:
    return {m["name"]: m for m in requests.get(url + "/core/llms/list", timeout=10).json()["llms"]}


def test_a_cloud_model_without_its_key_is_down(kernel):
    assert wait_for(lambda: llms(kernel.url)["qwen2.5:72b"]["state"] == "down", timeout=15)
    groq = llms(kernel.url)["llama-3.3-70b-versatile"]
    assert groq["state"] == "down" and "$GROQ_API_KEY is not set" in groq["reason"], groq
    err = assert_error(requests.post(kernel.url + "/v1/chat/completions", timeout=30, json={
        "model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": "hi"}]}), 503, "model_unavailable")
    assert "GROQ_API_KEY" in err["message"], err


def test_core_status_and_llms_check(kernel):
    st = requests.get(kernel.url + "/core/status", timeout=10).json()
    assert st == {"llms": "active", "memory": "active", "storage": "active", "tool": "active", "scheduler": "active",
                  "access": "active"}, st
    chk = requests.get(kernel.url + "/core/llms/check", timeout=10).json()
    avail = {m["name"]: m["available"] for m in chk["llms"]}
    assert chk["status"] == "success" and chk["available"] == 1, chk
    assert avail == {"llama-3.3-70b-versatile": False, "qwen2.5:72b": False, "local": True}, chk


def test_llm_selection(kernel):
    url = kernel.url
    r = requests.get(url + "/user/selected/llms", timeout=10).json()
    assert r["status"] == "warning" and r["message"] == "No LLM selected", r
    # the default (the first model) is down: a query that names none fails until a selection
    q = requests.post(url + "/query", json=query_body("Say hi.", max_new_tokens=4), timeout=60)
    assert q.status_code == 503, q.text
    r = requests.post(url + "/user/select/llms", json=[{"name": "local", "backend": "llamacpp"}], timeout=10).json()
    assert r == {"status": "success", "message": "LLMs [local] selected", "llms": ["local"]}, r
    assert requests.get(url + "/user/selected/llms", timeout=10).json()["llms"] == ["local"]
    q = requests.post(url + "/query", json=query_body("Say hi.", max_new_tokens=4), timeout=60)
    assert q.status_code == 200 and q.json()["response"]["response_message"], q.text
    q = requests.post(url + "/query", timeout=60, json=query_body("Say hi.", max_new_tokens=4,
                                                                  llms=[{"name": "qwen2.5:72b", "backend": "ollama"}]))
    assert q.status_code == 400 and "not among the selected LLMs" in q.text, q.text
    assert_error(requests.post(url + "/user/select/llms", json=[{"name": "ghost"}], timeout=10), 404)
    assert_error(requests.post(url + "/user/select/llms", json={"name": "local"}, timeout=10), 400)
    r = requests.post(url + "/user/select/llms", json=[], timeout=10).json()
    assert r["status"] == "warning", r


def test_core_cleanup_stops_the_kernel(kernel):
    r = requests.post(kernel.url + "/core/cleanup", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "success", r.text
    assert wait_for(lambda: not kernel.alive(), timeout=60), kernel.tail()
    assert kernel.stop() == 0, kernel.tail()

"""System tier: models loaded and unloaded at run time (issue 13, part 6).

Three local models (the default GGUF): `smollm2`, `spare` (unloads after 2 s idle, loads
again on the next request) and `strict` (load_on_request: 0: while unloaded, requests get
503 until an admin loads it). Checked through GET /models, POST /models/load and
/models/unload, and the `aios` command line: unloading under load lets the work in flight
finish while new requests wait for the reload; an idle model unloads by itself and the next
request loads it, with `loading` visible meanwhile; a model that may not load on request
answers 503 naming its state.
"""
from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests

from aiosd_helpers import REPO, assert_error, wait_for
from upstream import kernel_with

AIOS = str(REPO / "build" / "aios")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    d = kernel_with(tmp_path_factory.mktemp("models-runtime"), "models-runtime", """
llms:
  allow_oversubscribe: 1
  models:
    - name: smollm2
      threads: 1
      kv_size: 4096
    - name: spare
      threads: 1
      kv_size: 4096
      idle_unload_s: 2
    - name: strict
      threads: 1
      kv_size: 4096
      load_on_request: 0
""")
    yield d.url
    d.stop_and_check()


def models(url: str) -> dict[str, dict]:
    r = requests.get(url + "/models", timeout=10)
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


def state(url: str, name: str) -> str:
    return models(url)[name]["state"]


def ask(url: str, model: str, max_tokens: int = 16, **extra) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", timeout=180, json={
        "model": model, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": max_tokens,
        "ignore_eos": True, **extra})


def post(url: str, path: str, name: str) -> requests.Response:
    return requests.post(url + path, json={"name": name}, timeout=30)


def test_listing(kernel):
    ms = models(kernel)
    assert set(ms) == {"smollm2", "spare", "strict"}
    assert ms["spare"]["idle_unload_s"] == 2 and ms["strict"]["load_on_request"] is False
    assert all(m["backend"] == "llamacpp" and m["path"].endswith(".gguf") for m in ms.values()), ms
    err = assert_error(post(kernel, "/models/load", "ghost"), 404)
    assert "ghost" in err["message"] and "spare" in err["message"], err
    assert_error(requests.post(kernel + "/models/load", json={}, timeout=10), 400)


def test_unload_under_load(kernel):
    """In-flight requests finish; one that arrives while it unloads waits, and is served by
    the reload it causes."""
    assert ask(kernel, "strict", 4).status_code == 200
    results: dict[int, requests.Response] = {}
    busy = [threading.Thread(target=lambda i=i: results.__setitem__(i, ask(kernel, "strict", 96))) for i in range(3)]
    for t in busy:
        t.start()
    assert wait_for(lambda: models(kernel)["strict"]["active"] == 3, timeout=30), models(kernel)["strict"]
    r = post(kernel, "/models/unload", "strict")
    assert r.status_code == 202 and r.json()["state"] == "unloading", r.text
    assert state(kernel, "strict") == "unloading"
    for t in busy:
        t.join()
    assert all(x.status_code == 200 and x.json()["usage"]["completion_tokens"] == 96 for x in results.values()), \
        [x.text for x in results.values()]
    assert wait_for(lambda: state(kernel, "strict") == "unloaded", timeout=30), models(kernel)["strict"]
    # load_on_request: 0: refused while unloaded, with its state named
    err = assert_error(ask(kernel, "strict"), 503, "model_unavailable")
    assert "'strict' is unloaded" in err["message"] and "an admin" in err["message"], err
    r = post(kernel, "/models/load", "strict")
    assert r.status_code in (200, 202), r.text
    assert wait_for(lambda: state(kernel, "strict") == "ready", timeout=60), models(kernel)["strict"]
    assert ask(kernel, "strict").status_code == 200


def test_requests_wait_for_a_reload(kernel):
    """spare (load_on_request: 1): unloaded by an admin, its next requests wait while it loads."""
    assert ask(kernel, "spare", 4).status_code == 200
    assert post(kernel, "/models/unload", "spare").status_code in (200, 202)
    assert wait_for(lambda: state(kernel, "spare") == "unloaded", timeout=30)
    with_pool = [None] * 3
    ts = [threading.Thread(target=lambda i=i: with_pool.__setitem__(i, ask(kernel, "spare"))) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(r.status_code == 200 for r in with_pool), [r.text for r in with_pool]
    assert state(kernel, "spare") == "ready"


def test_idle_unload_and_load_on_demand(kernel):
    assert ask(kernel, "spare", 4).status_code == 200
    assert wait_for(lambda: state(kernel, "spare") == "unloaded", timeout=10), models(kernel)["spare"]
    assert models(kernel)["spare"]["reason"] == "idle"
    seen = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.add(state(kernel, "spare"))
            time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    r = ask(kernel, "spare")
    done.set()
    w.join()
    assert r.status_code == 200, r.text
    assert "loading" in seen, seen  # the request waited while it loaded, visibly
    assert state(kernel, "spare") == "ready"
    assert ask(kernel, "smollm2").status_code == 200  # the other models never stopped


def test_command_line(kernel):
    def aios(*args):
        return subprocess.run([AIOS, "--url", kernel, *args], capture_output=True, text=True, timeout=60)
    out = aios("models", "unload", "strict")
    assert out.returncode == 0 and ('"unloading"' in out.stdout or '"unloaded"' in out.stdout), out
    assert wait_for(lambda: state(kernel, "strict") == "unloaded", timeout=30)
    table = aios("models")
    assert table.returncode == 0 and "strict" in table.stdout and "unloaded" in table.stdout, table
    assert aios("models", "load", "strict").returncode == 0
    assert wait_for(lambda: state(kernel, "strict") == "ready", timeout=60)
    assert aios("models", "load", "ghost").returncode != 0


def test_add_a_model_at_run_time(kernel):
    """POST /models/load with a whole entry adds a model (validated as at start), which
    loads on its own; a request meanwhile waits for it. Bad entries are refused whole."""
    r = requests.post(kernel + "/models/load", timeout=30, json={
        "name": "extra", "backend": "llamacpp", "threads": 1, "kv_size": 2048, "aliases": ["gpt-x"]})
    assert r.status_code in (200, 202) and r.json()["name"] == "extra", r.text
    got = ask(kernel, "gpt-x")  # waits while it loads
    assert got.status_code == 200 and got.json()["usage"]["completion_tokens"] == 16, got.text
    assert models(kernel)["extra"]["state"] == "ready"
    assert "extra" in [m["id"] for m in requests.get(kernel + "/v1/models", timeout=10).json()["data"]]
    for entry, status, needle in [
        ({"name": "spare", "backend": "llamacpp"}, 409, "'spare' already names model"),
        ({"name": "x", "aliases": ["gpt-x"], "threads": 1}, 409, "'gpt-x' already names model"),
        ({"name": "x", "backend": "bedrock"}, 400, "unknown backend 'bedrock'"),
        ({"name": "x", "bogus": 1}, 400, "unknown field 'bogus'"),
        ({"name": "x", "threads": {"a": 1}}, 400, "field 'threads'"),
        ({"name": "x", "backend": "openai", "hostname": "ftp://x"}, 400, "http://"),
    ]:
        err = assert_error(requests.post(kernel + "/models/load", json=entry, timeout=30), status)
        assert needle in err["message"], (entry, err)
    assert "x" not in models(kernel)

"""System and fault tests of the memory and storage managers and of /v1/embeddings,
against the real aiosd with the real embedding model (all-MiniLM-L6-v2 GGUF):
every operation, semantic ranking, LRU-K eviction and page-in under a small limit,
isolation between agents, path confinement, bad input, and durability of acknowledged
writes across a SIGKILL of the kernel."""
from __future__ import annotations

import json
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from aiosd_helpers import Daemon, assert_error, assert_serving

TIMEOUT = 60


def q(base, agent, qtype, op, params=None, raw=False):
    body = {"agent_name": agent, "query_type": qtype, "query_data": {"operation_type": op}}
    if params is not None:
        body["query_data"]["params"] = params
    r = requests.post(base + "/query", json=body, timeout=TIMEOUT)
    if raw:
        return r
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["start_times"]) == 1 and out["turnaround_times"][0] >= 0, out
    return out["response"]


def mem(base, who, op, **params):
    return q(base, who, "memory", op, params)


def st(base, who, op, **params):
    resp = q(base, who, "storage", op, params)
    assert resp["response_class"] == "storage" and resp["finished"] is True, resp
    return resp["response_message"]


def kernel_metrics(base):
    out = {}
    for line in requests.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith("aios_memory_") or line.startswith("aios_storage_") or line.startswith("aios_embed_"):
            name, value = line.split(" ", 1)
            out[name] = float(value)
    return out


# ------------------------------------------------------------------ memory

def test_memory_operations_and_semantic_ranking(aiosd):
    b = aiosd.url
    facts = ["The cat sleeps on the warm windowsill.", "Stock markets fell sharply after the announcement.",
             "Paris is the capital of France.", "The recipe needs two eggs and a cup of flour."]
    ids = []
    for i, f in enumerate(facts):
        r = mem(b, "mem-a", "add_memory", content=f, metadata={"n": i, "tags": ["t%d" % i], "category": "c"})
        assert r["response_class"] == "memory" and r["success"] is True and r["error"] is None, r
        assert isinstance(r["memory_id"], str) and r["memory_id"], r
        assert r["content"] == f and r["metadata"]["n"] == i
        ids.append(r["memory_id"])
    assert len(set(ids)) == 4
    r = mem(b, "mem-a", "get_memory", memory_id=ids[2])
    assert r["content"] == facts[2] and r["metadata"] == {"n": 2, "tags": ["t2"], "category": "c"}, r
    # retrieval ranks by meaning and sees every acknowledged add at once
    r = mem(b, "mem-a", "retrieve_memory", content="Which city is France's capital?", k=2)
    res = r["search_results"]
    assert len(res) == 2 and res[0]["memory_id"] == ids[2], res
    assert res[0]["score"] > res[1]["score"] and res[0]["tags"] == ["t2"] and res[0]["category"] == "c", res
    r = mem(b, "mem-a", "retrieve_memory", content="a kitten napping", k=1)
    assert r["search_results"][0]["memory_id"] == ids[0], r
    raw = mem(b, "mem-a", "retrieve_memory_raw", content="baking a cake", k=3)["raw"]
    assert raw["ids"][0][0] == ids[3] and len(raw["documents"][0]) == 3, raw
    assert raw["distances"][0] == sorted(raw["distances"][0]), raw
    # update content (re-embedded) and metadata, then remove
    mem(b, "mem-a", "update_memory", memory_id=ids[1], content="Dogs love playing fetch in the park.")
    r = mem(b, "mem-a", "retrieve_memory", content="a puppy chasing a ball", k=1)
    assert r["search_results"][0]["memory_id"] == ids[1], r
    mem(b, "mem-a", "update_memory", memory_id=ids[1], content=None, metadata={"edited": True})
    r = mem(b, "mem-a", "get_memory", memory_id=ids[1])
    assert r["content"].startswith("Dogs") and r["metadata"] == {"edited": True}, r
    mem(b, "mem-a", "remove_memory", memory_id=ids[1])
    assert_error(q(b, "mem-a", "memory", "get_memory", {"memory_id": ids[1]}, raw=True), 404, "not_found")
    r = mem(b, "mem-a", "retrieve_memory", content="a puppy chasing a ball", k=4)
    assert ids[1] not in [x["memory_id"] for x in r["search_results"]], r
    # add_agentic_memory is accepted as an add
    r = mem(b, "mem-a", "add_agentic_memory", content="Agentic note.", metadata={"keywords": ["note"]})
    assert r["success"] and r["memory_id"]


def test_memory_isolation(aiosd):
    b = aiosd.url
    mid = mem(b, "iso-a", "add_memory", content="A's private diary entry about submarines.")["memory_id"]
    for op, params in [("get_memory", {"memory_id": mid}), ("update_memory", {"memory_id": mid, "content": "x"}),
                       ("remove_memory", {"memory_id": mid})]:
        assert_error(q(b, "iso-b", "memory", op, params, raw=True), 404, "not_found")
    r = mem(b, "iso-b", "retrieve_memory", content="submarines diary", k=5)
    assert r["search_results"] == [], r
    assert mem(b, "iso-a", "get_memory", memory_id=mid)["content"].startswith("A's private")


def test_memory_bad_input(aiosd):
    b = aiosd.url
    cases = [
        ("memory", "add_memory", {}, 400),                                    # missing content
        ("memory", "add_memory", {"content": 5}, 400),                        # mistyped
        ("memory", "add_memory", {"content": "x", "metadata": [1]}, 400),    # metadata not an object
        ("memory", "get_memory", {}, 400),                                    # missing id
        ("memory", "get_memory", {"memory_id": "999999999"}, 404),           # unknown id
        ("memory", "get_memory", {"memory_id": "../1"}, 404),
        ("memory", "update_memory", {"memory_id": "1"}, 400),                 # nothing to update
        ("memory", "retrieve_memory", {"content": "x", "k": 0}, 400),
        ("memory", "retrieve_memory", {"content": "x", "k": 1.5}, 400),
        ("memory", "retrieve_memory", {"content": "x", "k": 100000}, 400),
        ("memory", "retrieve_memory", {"k": 3}, 400),
        ("memory", "defragment", {}, 400),                                    # unknown operation_type
        ("memory", "add_memory", {"content": "x" * 70000}, 413),              # over memory.max_item_bytes
    ]
    before = kernel_metrics(b)["aios_memory_adds_total"]
    for qtype, op, params, status in cases:
        err = assert_error(q(b, "bad", qtype, op, params, raw=True), status)
        assert err["message"], (op, params)
    r = requests.post(b + "/query", json={"agent_name": "bad", "query_type": "memory", "query_data": {"params": {}}},
                      timeout=TIMEOUT)
    assert "operation_type" in assert_error(r, 400)["message"]
    r = requests.post(b + "/query", json={"agent_name": "bad", "query_type": "memory",
                                          "query_data": {"operation_type": "add_memory", "params": "x"}}, timeout=TIMEOUT)
    assert_error(r, 400)
    assert kernel_metrics(b)["aios_memory_adds_total"] == before  # nothing half-written
    assert_serving(b)


def test_memory_eviction_and_page_in(spawn_daemon):
    d = spawn_daemon("evict", ["--set", "memory.limit_bytes=4000", "--set", "memory.eviction_k=2"])
    b = d.url
    texts = {}
    for i in range(60):
        t = f"block {i:03d} " + "".join(random.choice("abcdefghij") for _ in range(300))
        texts[mem(b, "ev", "add_memory", content=t, metadata={"i": i})["memory_id"]] = (t, i)
    m = kernel_metrics(b)
    assert m["aios_memory_resident_bytes"] <= 4000, m
    assert m["aios_memory_evictions_total"] >= 45, m
    for mid, (t, i) in texts.items():  # every block reads back intact, paging most of them in
        r = mem(b, "ev", "get_memory", memory_id=mid)
        assert r["content"] == t and r["metadata"] == {"i": i}
    m2 = kernel_metrics(b)
    assert m2["aios_memory_page_ins_total"] >= 45, m2
    assert m2["aios_memory_resident_bytes"] <= 4000, m2
    r = mem(b, "ev", "retrieve_memory", content=texts[next(iter(texts))][0], k=3)
    assert r["search_results"][0]["content"] == texts[next(iter(texts))][0]


def test_memory_concurrent_agents(aiosd):
    b = aiosd.url

    def agent(n):
        mine = []
        for i in range(20):
            mine.append(mem(b, f"conc-{n}", "add_memory", content=f"agent {n} fact {i}")["memory_id"])
        for i, mid in enumerate(mine):
            assert mem(b, f"conc-{n}", "get_memory", memory_id=mid)["content"] == f"agent {n} fact {i}"
        return len(mine)

    with ThreadPoolExecutor(16) as ex:
        assert sum(ex.map(agent, range(16))) == 320


# ------------------------------------------------------------------ storage

def test_storage_operations(aiosd):
    b = aiosd.url
    assert "mounted" in st(b, "st-a", "mount", root_dir="work")
    assert "created file" in st(b, "st-a", "create_file", file_path="notes/todo.txt")
    assert "created directory" in st(b, "st-a", "create_dir", dir_path="notes/archive")
    for v in range(1, 5):
        assert f"version {v + 1}" in st(b, "st-a", "write", file_path="notes/todo.txt", content=f"draft {v}")
    assert st(b, "st-a", "read", file_path="notes/todo.txt") == "draft 4"
    listing = json.loads(st(b, "st-a", "list", dir_path="notes"))
    assert {e["name"]: e["type"] for e in listing} == {"archive": "dir", "todo.txt": "file"}, listing
    assert "version 3" in st(b, "st-a", "rollback", file_path="notes/todo.txt", n=2)
    assert st(b, "st-a", "read", file_path="notes/todo.txt") == "draft 2"
    st(b, "st-a", "write", file_path="travel.txt", content="Flights to Tokyo and a hotel near Shibuya station.")
    st(b, "st-a", "write", file_path="cooking.txt", content="Simmer the tomato sauce with basil and garlic.")
    hits = json.loads(st(b, "st-a", "retrieve", query_text="trip to Japan", n=2))
    assert hits[0]["file_path"] == "work/travel.txt" and hits[0]["score"] > hits[1]["score"], hits
    hits = json.loads(st(b, "st-a", "retrieve", query_text="italian food", k=3, keywords=["basil"]))
    assert [h["file_path"] for h in hits] == ["work/cooking.txt"], hits
    assert "deleted" in st(b, "st-a", "delete", file_path="cooking.txt")
    assert_error(q(b, "st-a", "storage", "read", {"file_path": "cooking.txt"}, raw=True), 404)
    hits = json.loads(st(b, "st-a", "retrieve", query_text="italian food", k=5))
    assert "work/cooking.txt" not in [h["file_path"] for h in hits], hits


def test_storage_isolation_and_share(aiosd):
    b = aiosd.url
    st(b, "owner", "write", file_path="plans/secret.txt", content="The launch is on Tuesday.")
    checks = [("read", {"file_path": "plans/secret.txt", "owner": "owner"}, 403),
              ("list", {"dir_path": "plans", "owner": "owner"}, 403),
              ("read", {"file_path": "plans/secret.txt"}, 404),     # not in the reader's own namespace
              ("rollback", {"file_path": "plans/secret.txt"}, 404)]
    for op, params, status in checks:
        assert_error(q(b, "reader", "storage", op, params, raw=True), status)
    hits = json.loads(st(b, "reader", "retrieve", query_text="launch date", k=5))
    assert all("secret" not in h["file_path"] for h in hits), hits
    assert "agent 'reader'" in st(b, "owner", "share", file_path="plans", agent="reader")
    assert st(b, "reader", "read", file_path="plans/secret.txt", owner="owner") == "The launch is on Tuesday."
    assert json.loads(st(b, "reader", "list", dir_path="plans", owner="owner"))[0]["name"] == "secret.txt"
    assert_error(q(b, "other", "storage", "read", {"file_path": "plans/secret.txt", "owner": "owner"}, raw=True), 403)
    for op in ("write", "rollback", "delete", "share"):  # a share is read-only
        assert "read-only" in assert_error(q(b, "reader", "storage", op, {"file_path": "plans/secret.txt", "content": "x",
                                                                          "owner": "owner"}, raw=True), 403)["message"]
    assert st(b, "owner", "read", file_path="plans/secret.txt") == "The launch is on Tuesday."


@pytest.mark.parametrize("path,why", [("../other/x", ".."), ("a/../../x", ".."), ("/etc/passwd", "absolute"),
                                      ("a\\b", "backslash"), ("a\nb", "control"), ("x" * 1200, "longer")])
def test_storage_path_confinement(aiosd, path, why):
    err = assert_error(q(aiosd.url, "conf", "storage", "write", {"file_path": path, "content": "x"}, raw=True), 400)
    assert why in err["message"], err


def test_storage_nul_and_bad_input(aiosd):
    b = aiosd.url
    raw = '{"agent_name":"conf","query_type":"storage","query_data":{"operation_type":"write","params":{"file_path":"a\\u0000/../../etc","content":"x"}}}'
    r = requests.post(b + "/query", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert "NUL" in assert_error(r, 400)["message"]
    cases = [("write", {"file_path": "f"}, 400), ("write", {"content": "x"}, 400), ("read", {"file_path": 7}, 400),
             ("read", {"file_path": "missing.txt"}, 404), ("rollback", {"file_path": "missing.txt"}, 404),
             ("delete", {"file_path": "missing.txt"}, 404), ("retrieve", {"k": 2}, 400),
             ("retrieve", {"query_text": "x", "k": 0}, 400), ("teleport", {}, 400),
             ("write", {"file_path": "big", "content": "y" * (1 << 20) + "z"}, 413)]
    for op, params, status in cases:
        assert_error(q(b, "conf", "storage", op, params, raw=True), status)
    st(b, "conf", "write", file_path="dup", content="1")
    assert_error(q(b, "conf", "storage", "create_file", {"file_path": "dup"}, raw=True), 409)
    assert st(b, "conf", "read", file_path="dup") == "1"
    assert_serving(b)


# ------------------------------------------------------------------ embeddings

def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_openai_client(aiosd):
    client = openai.OpenAI(base_url=aiosd.url + "/v1", api_key="emb-agent")
    texts = ["The cat sits on the mat", "A cat is sitting on a rug", "Stock markets fell sharply today"]
    r = client.embeddings.create(model="all-MiniLM-L6-v2-f16", input=texts)  # the client asks for base64
    v = [d.embedding for d in r.data]
    assert len(v) == 3 and all(len(x) == 384 for x in v)
    assert abs(cos(v[0], v[0]) - 1) < 1e-5
    assert cos(v[0], v[1]) > 0.6 > 0.2 > cos(v[0], v[2]), (cos(v[0], v[1]), cos(v[0], v[2]))
    assert r.usage.prompt_tokens > 10
    f = client.embeddings.create(model="all-MiniLM-L6-v2-f16", input="The cat sits on the mat", encoding_format="float")
    assert max(abs(x - y) for x, y in zip(f.data[0].embedding, v[0])) < 1e-5
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="all-MiniLM-L6-v2-f16", input=[[1, 2, 3]])


# ------------------------------------------------------------------ durability

def test_acknowledged_writes_survive_sigkill(tmp_path):
    """A stream of storage writes and memory adds; the kernel is SIGKILLed mid-stream;
    after a restart on the same data dir, every acknowledged write is there."""
    d = Daemon("durable", tmp_path / "durable").start()
    acked_files, acked_mem, stop = {}, {}, threading.Event()
    lock = threading.Lock()

    def writer(n):
        i = 0
        while not stop.is_set():
            path, content = f"w{n}/f{i}.txt", f"writer {n} record {i} " + "x" * (i % 50)
            try:
                r = requests.post(d.url + "/query", json={"agent_name": "dur", "query_type": "storage", "query_data": {
                    "operation_type": "write", "params": {"file_path": path, "content": content}}}, timeout=10)
                if r.status_code == 200:
                    with lock:
                        acked_files[path] = content
                r = requests.post(d.url + "/query", json={"agent_name": "dur", "query_type": "memory", "query_data": {
                    "operation_type": "add_memory", "params": {"content": content}}}, timeout=10)
                if r.status_code == 200:
                    with lock:
                        acked_mem[r.json()["response"]["memory_id"]] = content
            except requests.RequestException:
                return
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    d.kill()  # SIGKILL mid-stream
    stop.set()
    for t in threads:
        t.join()
    assert len(acked_files) > 20 and len(acked_mem) > 20, (len(acked_files), len(acked_mem))
    d2 = Daemon("durable2", tmp_path / "durable").start()  # same data dir
    try:
        for path, content in acked_files.items():
            assert st(d2.url, "dur", "read", file_path=path) == content, path
        for mid, content in acked_mem.items():
            assert mem(d2.url, "dur", "get_memory", memory_id=mid)["content"] == content, mid
        some = next(iter(acked_mem.values()))  # indexes were rebuilt (or re-embedded) after the restart
        assert mem(d2.url, "dur", "retrieve_memory", content=some, k=1)["search_results"][0]["content"] == some
        some_path, some_content = next(iter(acked_files.items()))
        hits = json.loads(st(d2.url, "dur", "retrieve", query_text=some_content, k=50))
        assert some_content in [h["snippet"] for h in hits] or any(h["file_path"] == some_path for h in hits), hits
    finally:
        d2.stop_and_check()


# ------------------------------------------------------------------ configuration

def test_chat_model_embedding_fallback(spawn_daemon):
    """storage.embedding_model naming the chat model: mean-pooled embeddings of its hidden state."""
    from aiosd_helpers import default_model_path
    d = spawn_daemon("fallback", ["--set", f"storage.embedding_model={default_model_path()}"])
    r = requests.post(d.url + "/v1/embeddings", json={"input": ["a cat on a mat", "a kitten on a rug"]}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    body = r.json()
    v = [e["embedding"] for e in body["data"]]
    assert len(v[0]) == 576 and abs(cos(v[0], v[0]) - 1) < 1e-5, len(v[0])  # SmolLM2-135M's hidden size
    mid = mem(d.url, "fb", "add_memory", content="The kernel schedules agents.")["memory_id"]
    assert mem(d.url, "fb", "retrieve_memory", content="kernel scheduling", k=1)["search_results"][0]["memory_id"] == mid


@pytest.mark.parametrize("flag,needle", [
    ("storage.synchronous=sometimes", "allowed: normal, full"),
    ("memory.eviction_k=9", "out of range"),
    ("memory.limit_bytes=-1", "out of range"),
    ("storage.max_versions=0", "out of range"),
    ("agents.x.memory_limit_bytes=lots", "expected an integer"),
    ("kernel.workers=0", "out of range"),
])
def test_bad_memory_storage_config(flag, needle):
    from aiosd_helpers import run_aiosd_to_exit
    r = run_aiosd_to_exit(["--set", flag], with_model=False)
    assert r.returncode != 0 and needle in r.stderr and flag.split("=")[0] in r.stderr, r.stderr


def test_missing_embedding_model_is_reported(tmp_path):
    from aiosd_helpers import run_aiosd_to_exit
    r = run_aiosd_to_exit(["--data-dir", str(tmp_path / "d"), "--set", f"storage.embedding_model={tmp_path}/none.gguf"])
    assert r.returncode != 0 and "none.gguf" in r.stderr, r.stderr


def test_stop_with_embedding_backlog_is_fast_and_resumes(tmp_path):
    """SIGTERM with thousands of blocks still waiting for their embedding: the kernel stops at
    once (the queue is refused, not worked off), and after a restart those blocks are embedded
    again, so retrieval finds them."""
    d = Daemon("backlog", tmp_path / "backlog").start()
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: mem(d.url, "bk", "add_memory", content=f"backlog note {i} about topic {i % 97}")["memory_id"],
                          range(3000)))
    pending = kernel_metrics(d.url)["aios_memory_pending_embeddings"]
    t0 = time.monotonic()
    d.stop_and_check()
    stop_s = time.monotonic() - t0
    assert stop_s < 10, f"stop took {stop_s:.1f} s with {pending:.0f} embeddings pending"
    d2 = Daemon("backlog2", tmp_path / "backlog").start()
    try:
        r = mem(d2.url, "bk", "retrieve_memory", content="backlog note 2999 about topic 89", k=1)
        assert r["search_results"][0]["memory_id"] == ids[2999], r
        assert kernel_metrics(d2.url)["aios_memory_pending_embeddings"] == 0
    finally:
        d2.stop_and_check()

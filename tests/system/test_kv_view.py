"""System tests of the compact attention view (issue 16 part 2), against real aiosd
processes and the real model: cached conversations idle for `context.cold_ms` leave the KV
cache for snapshots of their own cells and come back byte-exact, sharing their prefix
again; compaction (`context.compact_min_cells`) repacks the cache under shared sequences
without changing a byte of what they attend to. (test_deterministic.py repacks under running
and parked generations at every hole, with outputs compared against solo runs.)

The byte checks are the kernel's own (`context.verify_prefix`: every prefix a request takes
from the cache, resident or restored, is compared with a solo prefill of the same tokens in
a fresh context) and outputs compared with solo runs. A conversation's generated tail was
decoded a token at a step, which llama.cpp's kernels round differently from a prefill, so
the check holds for it only in `scheduler.deterministic` mode; prompt prefixes hold always.
"""
from __future__ import annotations

import time

from aiosd_helpers import metrics, wait_metrics
from test_sched_ctx import SYSTEM, chat

COLD = ["--set", "context.cold_ms=1000", "--set", "context.verify_prefix=1"]


def test_cooled_conversation_comes_back_exact(spawn_daemon):
    """Two agents on one system prompt leave a shared prefix and two conversations (each
    longer than the prefix by more than prefix_min_tokens, so the second splits the first). Once
    idle past cold_ms, the conversations go to snapshots of their own cells (the shared
    prefix stays resident), and the cache holds fewer cells. An agent's next turn restores
    its conversation, shares the prefix again and reuses the whole first prompt; every reused
    prefix, the restored conversation with its generated tail included, is byte-identical to
    a solo prefill (deterministic mode, see above)."""
    d = spawn_daemon("cold", COLD + ["--set", "context.compact_min_cells=0", "--set", "scheduler.deterministic=1"])
    text, u1 = chat(d.url, "Agent one: plan your first step.", 48, agent="one", system=SYSTEM, ignore_eos=True)
    chat(d.url, "Agent two: plan your first step.", 48, agent="two", system=SYSTEM, ignore_eos=True)
    m0 = metrics(d.url)
    # the shared prefix and both conversations (the first may already be cooled)
    assert m0["aios_cache_resident_entries"] + m0["aios_cache_snapshot_entries"] == 3, m0
    time.sleep(1.2)
    chat(d.url, "Agent three: plan your first step.", 4, agent="three", system=SYSTEM)  # a step cools them
    m1 = metrics(d.url)
    assert m1["aios_cache_cooled_total"] >= 2, m1
    assert m1["aios_cache_snapshot_entries"] >= 2, m1
    assert m1["aios_kv_cached_cells"] < m0["aios_kv_cached_cells"] + 8, (m0, m1)  # C's own 4 tokens at most added
    extra = [{"role": "assistant", "content": text}, {"role": "user", "content": "Tool result: done. Next step?"}]
    _, u2 = chat(d.url, "Agent one: plan your first step.", 16, agent="one", system=SYSTEM, extra=extra)
    m2 = metrics(d.url)
    computed = m2["aios_prefill_tokens_computed_total"] - m1["aios_prefill_tokens_computed_total"]
    reused = m2["aios_prefill_tokens_reused_total"] - m1["aios_prefill_tokens_reused_total"]
    assert reused + computed == u2["prompt_tokens"]
    assert reused >= u1["prompt_tokens"], (reused, u1, u2)  # the whole first prompt came back
    assert m2["aios_restores_total"] > m1["aios_restores_total"]
    assert m2["aios_prefix_verify_ok_total"] > m1["aios_prefix_verify_ok_total"]
    assert m2["aios_prefix_verify_mismatch_total"] == 0, m2
    assert m2["aios_kv_used_cells"] == m2["aios_kv_cached_cells"]  # nothing runs: only the cache holds cells


def test_compaction_under_shared_prefixes(spawn_daemon):
    """Cooling leaves holes below the cells in use and the cache is repacked; the resident
    shared prefix new agents then take is still byte-identical to a solo prefill, and a
    cooled conversation restored after the repack still reuses its whole first prompt."""
    d = spawn_daemon("compact", COLD + ["--set", "context.compact_min_cells=1"])
    text, u1 = chat(d.url, "Agent one: plan your first step.", 48, agent="one", system=SYSTEM, ignore_eos=True)
    chat(d.url, "Agent two: plan your first step.", 48, agent="two", system=SYSTEM, ignore_eos=True)
    time.sleep(1.2)
    chat(d.url, "Agent three: plan your first step.", 8, agent="three", system=SYSTEM)
    m1 = wait_metrics(d.url, lambda m: m["aios_kv_compactions_total"] >= 1, 5)
    assert m1, {k: v for k, v in metrics(d.url).items() if "cache" in k or "kv" in k or "restore" in k}
    assert m1["aios_kv_compacted_cells_total"] > 0 and m1["aios_kv_compact_seconds_total"] > 0
    assert m1["aios_prefix_verify_mismatch_total"] == 0, m1
    chat(d.url, "Agent four: plan your first step.", 8, agent="four", system=SYSTEM)
    m2 = metrics(d.url)
    assert m2["aios_prefix_verify_ok_total"] == m1["aios_prefix_verify_ok_total"] + 1, m2
    assert m2["aios_prefix_verify_mismatch_total"] == 0, m2
    extra = [{"role": "assistant", "content": text}, {"role": "user", "content": "Tool result: done. Next step?"}]
    _, u2 = chat(d.url, "Agent one: plan your first step.", 8, agent="one", system=SYSTEM, extra=extra)
    m3 = metrics(d.url)
    assert m3["aios_prefill_tokens_reused_total"] - m2["aios_prefill_tokens_reused_total"] >= u1["prompt_tokens"]
    assert m3["aios_kv_used_cells"] == m3["aios_kv_cached_cells"]

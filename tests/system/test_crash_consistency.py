"""Fault tier: crash consistency (issue 15, part 4).

One kernel (access.mode enforce, one irreversible process tool) on one data dir is killed
with SIGKILL CYCLES times (50) at a random moment (0.3 to 2.0 s) of a mixed load:

- three worker agents, each with its own identity and its own namespace: memory add /
  update / remove, storage write (existing and new files) / rollback / share with another
  worker; each worker runs its operations one after another, so at most one of them is in
  flight at the kill and the acknowledged state of everything it owns is known exactly;
- an admin thread creating and revoking identities;
- a tool agent calling an irreversible tool, and an admin thread approving each call.

Every operation is either acknowledged (a 2xx answer fully received before the kill) or in
flight (sent, no answer). With the kernel dead, every SQLite database of its data dir (a copy
of the file and its WAL, so the kernel's own recovery at the restart is what gets tested)
passes PRAGMA integrity_check, and every audit line is whole. After the restart, through the
API: every acknowledged memory block is there with its acknowledged content and metadata,
nothing else is (an in-flight add is whole or absent, an in-flight update is all old or all
new), acknowledged removals are gone; every acknowledged file reads as its latest acknowledged
content, every kept version as it was written, and nothing past it (an in-flight write or
rollback either landed whole or not at all; a new file's write that did not land left no
directory behind); acknowledged shares work for their grantee; every acknowledged identity
authenticates and every revoked one gets 401, with GET /admin/agents agreeing (an in-flight
create never handed its token to anyone: it is listed live, or not at all; an in-flight revoke
is listed revoked and its token gets 401, or neither); every acknowledged approved tool call
left its "approved" and "run ok" audit lines; no approval survives the restart.

No model call is made; the daemon still loads its model at each start. The seed is printed
(AIOS_CRASH_SEED to replay one, AIOS_CRASH_CYCLES to run fewer cycles); with -s a summary
table of the cycles is printed, and how the operations in flight at the kills turned out.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import requests

from aiosd_helpers import Daemon

CYCLES = int(os.environ.get("AIOS_CRASH_CYCLES", "50"))
SEED = int(os.environ.get("AIOS_CRASH_SEED", "1504"))
N_WORKERS = 3
MAX_VERSIONS = 6          # storage.max_versions of the kernel under test (small: pruning happens)
FIXED_FILES = [f"docs/f{j}.txt" for j in range(4)]
MAX_BLOCKS = 20           # live memory blocks per worker (one retrieval with k=100 lists them all)
NEW_FILES_PER_CYCLE = 2
TOOL = "cc/danger"
TIMEOUT = 30
KILL_WINDOW = (0.3, 2.0)
WORDS = ("river kernel lantern copper meadow orbit harbor violet thunder marble ledger falcon prism "
         "saddle quartz ember willow canyon signal beacon").split()


# how the operations in flight at the kills turned out: (operation, "landed" | "lost") -> count
OUTCOMES: Counter = Counter()


class InFlight(Exception):
    """The request was sent and no answer came back (the kernel was killed)."""


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def send(method: str, url: str, token: str, body=None, session=None):
    """(status, json) of an answer fully received; InFlight when none came. No retries: a
    request is sent at most once."""
    try:
        r = (session or requests).request(method, url, json=body, headers=bearer(token), timeout=TIMEOUT)
        data = r.json() if r.content else None
    except (requests.RequestException, ValueError) as e:
        raise InFlight(f"{type(e).__name__}: {e}") from e
    return r.status_code, data


def query_body(who: str, qtype: str, op: str, **params) -> dict:
    return {"agent_name": who, "query_type": qtype, "query_data": {"operation_type": op, "params": params}}


def filler(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def short(x, n: int = 70) -> str:
    s = repr(x)
    return s if len(s) <= n else s[:n] + "..."


def differ(want: str, got) -> str:
    """expected X, found Y, and where they part."""
    if not isinstance(got, str):
        return f"expected {short(want)}, found {short(got, 200)}"
    i = next((k for k in range(min(len(want), len(got))) if want[k] != got[k]), min(len(want), len(got)))
    return (f"expected {short(want)}, found {short(got)} (from character {i}: expected {short(want[i:i + 30], 40)}, "
            f"found {short(got[i:i + 30], 40)}; lengths {len(want)} and {len(got)})")


def after_write(vers: list, content: str) -> list:
    """The kept versions [(version, content)] after a write (storage.c: version = current + 1,
    versions at or below version - max_versions are dropped)."""
    v = vers[-1][0] + 1 if vers else 1
    return [x for x in vers + [(v, content)] if x[0] > v - MAX_VERSIONS]


def after_rollback(vers: list, n: int) -> list:
    target = vers[-1][0] - n
    return [x for x in vers if x[0] <= target]


def describe(vers) -> str:
    return "absent" if not vers else f"version {vers[-1][0]} {short(vers[-1][1], 50)}"


# ------------------------------------------------------------------ the load's actors

class Worker:
    """An agent with its own identity, memory and files; runs its operations one at a time."""

    def __init__(self, w: int):
        self.w = w
        self.name = f"cw{w}"
        self.token = ""
        self.mem: dict[str, tuple[str, dict]] = {}   # acked blocks: id -> (content, metadata)
        self.files: dict[str, list] = {}             # acked files: path -> kept [(version, content)]
        self.shares: set[tuple[str, str]] = set()    # acked (path, grantee)
        self.seq = 0

    def begin_cycle(self):
        self.acked = 0
        self.inflight: dict | None = None
        self.rejected: list = []
        self.load_violations: list[str] = []
        self.removed: list[str] = []                 # ids whose removal was acked this cycle
        self.new_files = 0
        self.touched: set[str] = set()               # paths written or rolled back this cycle

    # -- load
    def plan(self, rng: random.Random, cycle: int, others: list[str]):
        """(op, request body, on_ack(answer)) of the next operation."""
        self.seq += 1
        tag = f"{self.name}-c{cycle}-n{self.seq}"
        kinds = ["mem_add"] * (4 if len(self.mem) < MAX_BLOCKS else 0)
        if self.mem:
            kinds += ["mem_update"] * 3 + ["mem_remove"] * (2 if len(self.mem) > 5 else 0)
        kinds += ["st_write"] * 6
        if self.new_files < NEW_FILES_PER_CYCLE:
            kinds += ["st_new"]
        rollbackable = [p for p, v in self.files.items() if len(v) >= 2]
        if rollbackable:
            kinds += ["st_rollback"] * 2
        if self.files:
            kinds += ["st_share"]
        kind = rng.choice(kinds)

        if kind == "mem_add":
            content, meta = f"{tag} {filler(rng, 3, 40)}", {"tag": tag, "kind": "add"}
            op = {"op": kind, "content": content, "meta": meta}

            def ack(a):
                mid = str(a["response"]["memory_id"])
                if mid in self.mem:
                    self.load_violations.append(f"{self.name}: add {tag} was acknowledged with id {mid}, "
                                                f"which already names block {short(self.mem[mid][0])}")
                self.mem[mid] = (content, meta)
            return op, query_body(self.name, "memory", "add_memory", content=content, metadata=meta), ack
        if kind == "mem_update":
            mid = rng.choice(sorted(self.mem))
            content, meta = f"{tag} {filler(rng, 3, 40)}", {"tag": tag, "kind": "update"}
            op = {"op": kind, "id": mid, "content": content, "meta": meta}

            def ack(a):
                self.mem[mid] = (content, meta)
            return op, query_body(self.name, "memory", "update_memory", memory_id=mid, content=content, metadata=meta), ack
        if kind == "mem_remove":
            mid = rng.choice(sorted(self.mem))
            op = {"op": kind, "id": mid}

            def ack(a):
                del self.mem[mid]
                self.removed.append(mid)
            return op, query_body(self.name, "memory", "remove_memory", memory_id=mid), ack
        if kind in ("st_write", "st_new"):
            if kind == "st_new":
                self.new_files += 1
                path = f"new/c{cycle}/{tag}.txt"
            else:
                path = rng.choice(FIXED_FILES)
            content = f"{tag} {path}\n{filler(rng, 5, 80)}"
            expect = after_write(self.files.get(path, []), content)
            op = {"op": "st_write", "path": path, "content": content}
            self.touched.add(path)

            def ack(a):
                msg = a["response"]["response_message"]
                if f"(version {expect[-1][0]})" not in msg:
                    self.load_violations.append(f"{self.name}: write {tag} of '{path}' was acknowledged as {short(msg)}, "
                                                f"expected version {expect[-1][0]}")
                self.files[path] = expect
            return op, query_body(self.name, "storage", "write", file_path=path, content=content), ack
        if kind == "st_rollback":
            path = rng.choice(sorted(rollbackable))
            n = rng.randint(1, min(2, len(self.files[path]) - 1))
            expect = after_rollback(self.files[path], n)
            op = {"op": kind, "path": path, "n": n}
            self.touched.add(path)

            def ack(a):
                msg = a["response"]["response_message"]
                if f"back to version {expect[-1][0]}" not in msg:
                    self.load_violations.append(f"{self.name}: rollback of '{path}' by {n} was acknowledged as "
                                                f"{short(msg)}, expected version {expect[-1][0]}")
                self.files[path] = expect
            return op, query_body(self.name, "storage", "rollback", file_path=path, n=n), ack
        # st_share: a file, or the docs directory, with another worker
        fixed = [p for p in FIXED_FILES if p in self.files]
        path = "docs" if fixed and rng.random() < 0.25 else rng.choice(sorted(self.files))
        grantee = rng.choice(others)
        op = {"op": kind, "path": path, "grantee": grantee}

        def ack(a):
            self.shares.add((path, grantee))
        return op, query_body(self.name, "storage", "share", file_path=path, agent=grantee), ack

    def run(self, url: str, rng: random.Random, cycle: int, others: list[str], stop: threading.Event, errors: list):
        try:
            while not stop.is_set():
                op, body, ack = self.plan(rng, cycle, others)
                try:
                    status, data = send("POST", url + "/query", self.token, body)
                except InFlight as e:
                    op["error"] = str(e)
                    self.inflight = op
                    return
                if 200 <= status < 300:
                    self.acked += 1
                    ack(data)
                else:
                    self.rejected.append((op, status, data))
                    return
        except Exception:
            errors.append(f"{self.name}: {traceback.format_exc()}")

    # -- verification, after the restart
    def q(self, s, url, qtype, op, **params):
        return send("POST", url + "/query", self.token, query_body(self.name, qtype, op, **params), session=s)

    def verify_memory(self, s, url, V: list, cycle: int):
        op = self.inflight if self.inflight and self.inflight["op"].startswith("mem_") else None
        where = f"cycle {cycle}: {self.name}"
        status, a = self.q(s, url, "memory", "retrieve_memory", content="notes about anything", k=100, exact=True)
        if status != 200:
            V.append(f"{where}: retrieve_memory (listing the blocks) answered {status}: {short(a, 300)}")
            return
        found = {str(r["memory_id"]): r["content"] for r in a["response"]["search_results"]}
        if op and op["op"] == "mem_add":
            landed = [i for i, c in found.items() if c == op["content"] and i not in self.mem]
            if landed:
                self.mem[landed[0]] = (op["content"], op["meta"])
            OUTCOMES[op["op"], "landed" if landed else "lost"] += 1
        elif op and op["op"] == "mem_update":
            landed = found.get(op["id"]) == op["content"]
            if landed:
                self.mem[op["id"]] = (op["content"], op["meta"])
            OUTCOMES[op["op"], "landed" if landed else "lost"] += 1
        elif op and op["op"] == "mem_remove":
            landed = op["id"] not in found and op["id"] in self.mem
            if landed:
                del self.mem[op["id"]]
            OUTCOMES[op["op"], "landed" if landed else "lost"] += 1
        def inflight(mid=None):
            if not op or (mid is not None and op.get("id") != mid):
                return ""
            return f" (in flight at the kill: {short({k: v for k, v in op.items() if k != 'error'}, 160)})"
        for mid in sorted(set(self.mem) - set(found)):
            V.append(f"{where}: acknowledged memory block {mid} {short(self.mem[mid][0])} is missing "
                     f"(retrieval listed {len(found)} blocks){inflight(mid)}")
        for mid in sorted(set(found) - set(self.mem)):
            V.append(f"{where}: memory block {mid} {short(found[mid])} is present but was never acknowledged"
                     f"{' (its removal was acknowledged this cycle)' if mid in self.removed else ''}{inflight()}")
        for mid, (content, meta) in sorted(self.mem.items()):
            if mid in found and found[mid] != content:
                V.append(f"{where}: memory block {mid} as retrieval lists it: {differ(content, found[mid])}{inflight(mid)}")
            status, a = self.q(s, url, "memory", "get_memory", memory_id=mid)
            if status != 200:
                V.append(f"{where}: get_memory {mid} (acknowledged {short(content)}) answered {status}: "
                         f"{short(a, 200)}{inflight(mid)}")
                continue
            got_content, got_meta = a["response"]["content"], a["response"]["metadata"]
            if got_content != content:
                V.append(f"{where}: memory block {mid} content: {differ(content, got_content)}{inflight(mid)}")
            if got_meta != meta:
                V.append(f"{where}: memory block {mid} metadata: expected {meta}, found {got_meta} "
                         f"(content {'as expected' if got_content == content else short(got_content)}){inflight(mid)}")
        for mid in self.removed:
            status, a = self.q(s, url, "memory", "get_memory", memory_id=mid)
            if status != 404:
                V.append(f"{where}: memory block {mid} whose removal was acknowledged answered {status}: {short(a, 200)}")

    def verify_files(self, s, url, V: list, cycle: int):
        op = self.inflight if self.inflight and self.inflight["op"] in ("st_write", "st_rollback") else None
        where = f"cycle {cycle}: {self.name}"
        paths = set(self.files) | ({op["path"]} if op else set())
        for path in sorted(paths):
            acked = self.files.get(path, [])
            cands = [("acknowledged", acked)]
            if op and op["path"] == path:
                new = after_write(acked, op["content"]) if op["op"] == "st_write" else after_rollback(acked, op["n"])
                cands.append((f"in-flight {op['op'][3:]}", new))
            status, a = self.q(s, url, "storage", "read", file_path=path)
            cur = a["response"]["response_message"] if status == 200 else None
            if status not in (200, 404):
                V.append(f"{where}: read '{path}' answered {status}: {short(a, 200)}")
                continue
            match = [vers for _, vers in cands if (vers[-1][1] if vers else None) == cur]
            if not match:
                exp = " or ".join(f"{label} {describe(vers)}" for label, vers in cands)
                V.append(f"{where}: file '{path}': expected {exp}; found "
                         f"{'absent' if cur is None else short(cur) + f' ({len(cur)} characters)'}")
                continue
            vers = match[0]
            if op and op["path"] == path:
                OUTCOMES[op["op"], "landed" if vers is cands[1][1] else "lost"] += 1
            if vers:
                self.files[path] = vers
            else:
                self.files.pop(path, None)
                continue
            if path not in self.touched and path not in FIXED_FILES:
                continue   # a one-version file an earlier cycle checked in full: its content is enough
            for v, content in vers:   # every kept version as it was written
                status, a = self.q(s, url, "storage", "read", file_path=path, version=v)
                got = a["response"]["response_message"] if status == 200 else f"<{status}>"
                if got != content:
                    V.append(f"{where}: file '{path}' version {v} (current {vers[-1][0]}): {differ(content, got)}")
            status, a = self.q(s, url, "storage", "read", file_path=path, version=vers[-1][0] + 1)
            if status != 404:   # nothing past the current version (a rolled-back one, a half write)
                V.append(f"{where}: file '{path}' is at version {vers[-1][0]} but version {vers[-1][0] + 1} answered "
                         f"{status}: {short(a, 200)}")
        # this cycle's new files and their directory: exactly the acknowledged ones (a write that did not
        # land left no file, and no parent directory either: they are made in the write's transaction)
        mine = {p.rsplit("/", 1)[1] for p in self.files if p.startswith(f"new/c{cycle}/")}
        status, a = self.q(s, url, "storage", "list", dir_path=f"new/c{cycle}" if mine else "new")
        listed = {e["name"] for e in json.loads(a["response"]["response_message"])} if status == 200 else None
        if mine and listed != mine:
            V.append(f"{where}: list 'new/c{cycle}' expected {sorted(mine)}, found "
                     f"{sorted(listed) if listed is not None else f'{status} {short(a, 200)}'}")
        elif not mine and not (status == 404 or (status == 200 and f"c{cycle}" not in listed)):
            V.append(f"{where}: no file of 'new/c{cycle}' was acknowledged, yet list 'new' answered {status}: "
                     f"{sorted(listed) if listed is not None else short(a, 300)}")
        if any(p in self.files for p in FIXED_FILES):
            status, a = self.q(s, url, "storage", "list", dir_path="docs")
            if status != 200:
                V.append(f"{where}: list 'docs' answered {status}: {short(a, 200)}")
                return
            listed = {e["name"]: e["version"] for e in json.loads(a["response"]["response_message"])}
            for p in FIXED_FILES:
                want = self.files[p][-1][0] if p in self.files else None
                if listed.get(p.split("/", 1)[1]) != want:
                    V.append(f"{where}: list 'docs' shows '{p}' at version {listed.get(p.split('/', 1)[1])}, expected {want}")

    def verify_shares(self, s, url, V: list, cycle: int, by_name: dict):
        op = self.inflight if self.inflight and self.inflight["op"] == "st_share" else None
        where = f"cycle {cycle}: {self.name}"
        pairs = set(self.shares) | ({(op["path"], op["grantee"])} if op else set())
        for path, grantee in sorted(pairs):
            acked = (path, grantee) in self.shares
            target = path if path != "docs" else next(p for p in FIXED_FILES if p in self.files)
            g = by_name[grantee]
            status, a = g.q(s, url, "storage", "read", file_path=target, owner=self.name)
            want = self.files[target][-1][1]
            got = a["response"]["response_message"] if status == 200 else None
            if status == 200 and got == want:
                if not acked:
                    OUTCOMES["st_share", "landed"] += 1
                self.shares.add((path, grantee))
            elif status == 403 and not acked:
                OUTCOMES["st_share", "lost"] += 1   # the in-flight share did not land
            else:
                V.append(f"{where}: {'acknowledged' if acked else 'in-flight'} share of '{path}' with {grantee}: "
                         f"{grantee} reading '{target}' with owner {self.name}{'' if acked else ' (200 or 403)'}: "
                         f"{differ(want, got) if status == 200 else f'answered {status}: {short(a, 200)}'}")


class Identities:
    """The admin's identity churn: creates e<cycle>n<k> identities and revokes live ones."""

    def __init__(self):
        self.eph: dict[str, dict] = {}   # name -> {"token": str | None, "state": live|revoked|tokenless}
        self.seq = 0

    def begin_cycle(self):
        self.acked = 0
        self.inflight: dict | None = None
        self.rejected: list = []

    def run(self, url: str, admin: str, rng: random.Random, cycle: int, stop: threading.Event, errors: list):
        try:
            while not stop.wait(rng.uniform(0.05, 0.25)):
                live = sorted(n for n, e in self.eph.items() if e["state"] in ("live", "tokenless"))
                if live and rng.random() < 0.3:
                    name = rng.choice(live)
                    op = {"op": "revoke", "name": name}
                    try:
                        status, a = send("POST", url + "/admin/agents/revoke", admin, {"name": name})
                    except InFlight as e:
                        self.inflight = dict(op, error=str(e))
                        return
                    if status != 200:
                        self.rejected.append((op, status, a))
                        return
                    self.eph[name]["state"] = "revoked"
                else:
                    self.seq += 1
                    name = f"e{cycle}n{self.seq}"
                    op = {"op": "create", "name": name}
                    try:
                        status, a = send("POST", url + "/admin/agents", admin, {"name": name})
                    except InFlight as e:
                        self.inflight = dict(op, error=str(e))
                        return
                    if status != 201:
                        self.rejected.append((op, status, a))
                        return
                    self.eph[name] = {"token": a["token"], "state": "live"}
                self.acked += 1
        except Exception:
            errors.append(f"identities: {traceback.format_exc()}")

    def verify(self, s, url, admin: str, V: list, cycle: int):
        where = f"cycle {cycle}: identities"
        status, a = send("GET", url + "/admin/agents", admin, session=s)
        if status != 200:
            V.append(f"{where}: GET /admin/agents answered {status}: {short(a, 200)}")
            return
        listed = {x["name"]: x["revoked"] for x in a["agents"]}
        op = self.inflight
        if op and op["op"] == "create":
            if op["name"] in listed:   # landed: live, but nobody holds its token
                self.eph[op["name"]] = {"token": None, "state": "tokenless"}
            OUTCOMES["identity create", "landed" if op["name"] in listed else "lost"] += 1
        elif op and op["op"] == "revoke":
            if listed.get(op["name"]) is True:
                self.eph[op["name"]]["state"] = "revoked"
            OUTCOMES["identity revoke", "landed" if listed.get(op["name"]) is True else "lost"] += 1
        for name, e in sorted(self.eph.items()):
            want_revoked = e["state"] == "revoked"
            if listed.get(name) != want_revoked:
                V.append(f"{where}: identity {name} ({e['state']}{', in flight: ' + op['op'] if op and op['name'] == name else ''})"
                         f": GET /admin/agents shows {'nothing' if name not in listed else 'revoked=' + str(listed[name])}")
            if e["token"]:
                status = s.get(url + "/status", headers=bearer(e["token"]), timeout=TIMEOUT).status_code
                if status != (401 if want_revoked else 200):
                    V.append(f"{where}: the token of {'revoked' if want_revoked else 'live'} identity {name} got {status} "
                             f"on GET /status (expected {401 if want_revoked else 200})")


class ToolCalls:
    """Irreversible tool calls by one agent, approved by an admin thread."""

    def __init__(self):
        self.name = "ctool"
        self.token = ""
        self.acked_tags: list[str] = []
        self.seq = 0

    def begin_cycle(self):
        self.acked = 0
        self.approved = 0
        self.inflight = 0
        self.rejected: list = []

    def run_caller(self, url: str, cycle: int, stop: threading.Event, errors: list):
        try:
            while not stop.is_set():
                self.seq += 1
                tag = f"t-c{cycle}-n{self.seq}"
                body = {"agent_name": self.name, "query_type": "tool",
                        "query_data": {"tool_calls": [{"name": TOOL, "parameters": {"op": tag}}]}}
                try:
                    status, a = send("POST", url + "/query", self.token, body)
                except InFlight:
                    self.inflight += 1
                    return
                if status != 200 or a["response"]["tool_results"][0]["result"] != "ok":
                    self.rejected.append(({"op": "tool", "tag": tag}, status, a))
                    return
                self.acked += 1
                self.acked_tags.append(tag)
        except Exception:
            errors.append(f"tool caller: {traceback.format_exc()}")

    def run_approver(self, url: str, admin: str, stop: threading.Event, errors: list):
        try:
            while not stop.is_set():
                try:
                    status, a = send("GET", url + "/admin/approvals", admin)
                    if status != 200:
                        self.rejected.append(({"op": "list approvals"}, status, a))
                        return
                    for ap in a["approvals"]:
                        if ap["agent"] != self.name:
                            continue
                        try:
                            status, r = send("POST", url + "/admin/approvals/decide", admin,
                                             {"id": ap["id"], "decision": "approve"})
                        except InFlight:
                            self.inflight += 1   # a decision sent, no answer
                            return
                        if status != 200:
                            self.rejected.append(({"op": "approve", "id": ap["id"]}, status, r))
                            return
                        self.approved += 1
                except InFlight:   # listing the approvals: a read, nothing to account for
                    return
                stop.wait(0.02)
        except Exception:
            errors.append(f"approver: {traceback.format_exc()}")

    def verify_audit(self, data_dir: Path, V: list, cycle: int):
        """Every audit line is whole; every acknowledged call was approved and ran, in the log."""
        approved, ran = set(), set()
        for p in sorted(data_dir.glob("audit.log*")):
            text = p.read_text(errors="replace")
            if text and not text.endswith("\n"):
                V.append(f"cycle {cycle}: {p.name} ends with a torn line: {short(text[-200:], 200)}")
            for i, line in enumerate(text.splitlines()):
                try:
                    e = json.loads(line)
                except ValueError:
                    V.append(f"cycle {cycle}: {p.name} line {i + 1} is not whole JSON: {short(line, 200)}")
                    continue
                if e.get("agent") == self.name and e.get("resource") == f"tool:{TOOL}":
                    if e.get("action") == "approve" and e.get("decision") == "approved":
                        approved.add(e.get("params_sha256"))
                    if e.get("action") == "run" and e.get("outcome") == "ok":
                        ran.add(e.get("params_sha256"))
        for tag in self.acked_tags:
            h = hashlib.sha256(json.dumps({"op": tag}, separators=(",", ":")).encode()).hexdigest()
            for what, seen in (("approved", approved), ("run ok", ran)):
                if h not in seen:
                    V.append(f"cycle {cycle}: acknowledged call {tag} of irreversible tool {TOOL} has no '{what}' audit line")


# ------------------------------------------------------------------ checks with the kernel dead

def integrity_check(data_dir: Path, V: list, cycle: int) -> int:
    """PRAGMA integrity_check on a copy of every database (with its WAL or journal), as the
    kernel will find it at the restart; the kernel's own files are left untouched."""
    dbs = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".db", ".sqlite"))
    names = {p.name for p in dbs}
    for need in ("access.db", "memory.db", "storage.db"):
        if need not in names:
            V.append(f"cycle {cycle}: database {need} is missing from {data_dir} (found {sorted(names)})")
    tmp = Path(tempfile.mkdtemp(prefix="aios-cc-db-"))
    try:
        for p in dbs:
            dst = tmp / p.relative_to(data_dir).as_posix().replace("/", "__")
            shutil.copyfile(p, dst)
            for suffix in ("-wal", "-journal"):
                side = p.with_name(p.name + suffix)
                if side.exists():
                    shutil.copyfile(side, dst.with_name(dst.name + suffix))
            try:
                con = sqlite3.connect(str(dst))
                try:
                    rows = con.execute("PRAGMA integrity_check").fetchall()
                finally:
                    con.close()
            except sqlite3.Error as e:
                rows = [(f"cannot open: {e}",)]
            if rows != [("ok",)]:
                V.append(f"cycle {cycle}: PRAGMA integrity_check of {p.relative_to(data_dir)}: {rows[:10]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(dbs)


# ------------------------------------------------------------------ the test

def test_sigkill_under_mixed_load_keeps_acknowledged_state(tmp_path):
    tools = Path(tempfile.mkdtemp(prefix="aios-cc-tools-"))
    work = Path(tempfile.mkdtemp(prefix="aios-cc-work-"))
    os.chmod(tools, 0o755)
    os.chmod(work, 0o755)
    (tools / "danger.json").write_text(json.dumps({"name": TOOL, "command": "/bin/sh",
                                                   "args": ["-c", 'echo "\\"ok\\""'], "irreversible": True}))
    wd = tmp_path / "crash"
    wd.mkdir()
    cfg = wd / "aios.yaml"
    cfg.write_text(f"tools:\n  dir: {tools}\n  workdir: {work}\naccess:\n  mode: enforce\n"
                   f"storage:\n  max_versions: {MAX_VERSIONS}\n")
    data_dir = wd / "data"
    d = Daemon("crash", wd, ["--config", str(cfg)])
    rng = random.Random(SEED)
    OUTCOMES.clear()
    print(f"\ncrash consistency: seed {SEED} (AIOS_CRASH_SEED), {CYCLES} cycles (AIOS_CRASH_CYCLES)")
    workers = [Worker(w) for w in range(N_WORKERS)]
    by_name = {w.name: w for w in workers}
    ids, tool = Identities(), ToolCalls()
    rows = []
    t_start = time.monotonic()

    def fail(cycle: int, V: list):
        raise AssertionError(f"seed {SEED}, cycle {cycle}: {len(V)} violation(s):\n" + "\n".join(V[:40]) +
                             f"\n--- aiosd stderr tail ({d.stderr_path}; approval notices left out):\n" +
                             "\n".join([ln for ln in d.tail(2000).splitlines() if "wants to run irreversible tool" not in ln][-60:]))

    def summary():   # printed also when a cycle fails, for the cycles before it
        total = time.monotonic() - t_start
        print(f"\n{'cycle':>5} {'kill_s':>6} {'acked':>6} {'inflt':>5} {'mem/st':>6} {'ident':>5} {'tool':>4} {'dbs':>3} "
              f"{'restart_s':>9} {'verify_s':>8}  in flight at the kill")
        for c, k, a, i, ms, idn, tl, ndb, rs, vs, what in rows:
            print(f"{c:5d} {k:6.2f} {a:6d} {i:5d} {ms:6d} {idn:5d} {tl:4d} {ndb:3d} {rs:9.2f} {vs:8.2f}  {what or '-'}")
        print(f"total: {len(rows)} kills, {sum(r[2] for r in rows)} operations acknowledged, {sum(r[3] for r in rows)} in flight, "
              f"{len(ids.eph)} identities ({sum(e['state'] == 'revoked' for e in ids.eph.values())} revoked), "
              f"{len(tool.acked_tags)} approved tool calls; {total:.0f} s (seed {SEED})")
        kinds = sorted({k for k, _ in OUTCOMES})
        print("in flight at the kills, then found landed / not landed: " +
              ", ".join(f"{k} {OUTCOMES[k, 'landed']}/{OUTCOMES[k, 'lost']}" for k in kinds))

    try:
        d.start()
        admin = (data_dir / "admin.token").read_text().strip()
        for actor in (*workers, tool):
            status, a = send("POST", d.url + "/admin/agents", admin, {"name": actor.name})
            assert status == 201, (actor.name, status, a)
            actor.token = a["token"]

        for cycle in range(1, CYCLES + 1):
            # ---- load, then SIGKILL at a random moment
            for x in (*workers, ids, tool):
                x.begin_cycle()
            stop, errors = threading.Event(), []
            url = d.url
            threads = [threading.Thread(target=w.run, args=(url, random.Random(f"{SEED}-{cycle}-{w.name}"), cycle,
                                                            [o.name for o in workers if o is not w], stop, errors))
                       for w in workers]
            threads += [threading.Thread(target=ids.run, args=(url, admin, random.Random(f"{SEED}-{cycle}-ids"), cycle,
                                                               stop, errors)),
                        threading.Thread(target=tool.run_caller, args=(url, cycle, stop, errors)),
                        threading.Thread(target=tool.run_approver, args=(url, admin, stop, errors))]
            kill_at = rng.uniform(*KILL_WINDOW)
            t0 = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(max(0.0, kill_at - (time.monotonic() - t0)))
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            killed_at = time.monotonic() - t0
            d.kill()   # bookkeeping only: the process is gone
            assert d.proc.returncode == -signal.SIGKILL, d.proc.returncode
            stop.set()
            for t in threads:
                t.join(TIMEOUT + 10)
            assert not any(t.is_alive() for t in threads), "a client thread did not stop after the kill"
            assert not errors, "\n".join(errors)

            V: list[str] = []
            for x in (*workers, ids, tool):
                for op, status, a in x.rejected:
                    V.append(f"cycle {cycle}: load: {getattr(x, 'name', 'identities')} {short(op, 150)} was refused "
                             f"with {status}: {short(a, 300)}")
            for w in workers:
                V += [f"cycle {cycle}: load: {m}" for m in w.load_violations]

            # ---- with the kernel dead: databases and the audit log
            t1 = time.monotonic()
            n_db = integrity_check(data_dir, V, cycle)
            tool.verify_audit(data_dir, V, cycle)

            # ---- restart on the same data dir and check every acknowledged operation
            t2 = time.monotonic()
            try:
                d.start()
            except AssertionError as e:   # it would not come back up: report that with what was found so far
                V.append(f"cycle {cycle}: the restart failed: {e}")
                fail(cycle, V)
            restart_s = time.monotonic() - t2
            url = d.url
            tv = time.monotonic()
            try:
                with requests.Session() as s:
                    status, a = send("GET", url + "/admin/approvals", admin, session=s)
                    if status != 200 or a["approvals"]:
                        V.append(f"cycle {cycle}: after the restart GET /admin/approvals answered {status}: {short(a, 300)}")
                    for w in workers:
                        w.verify_memory(s, url, V, cycle)
                    for w in workers:
                        w.verify_files(s, url, V, cycle)
                    for w in workers:
                        w.verify_shares(s, url, V, cycle, by_name)
                    ids.verify(s, url, admin, V, cycle)
            except (InFlight, requests.RequestException) as e:
                V.append(f"cycle {cycle}: the restarted kernel stopped answering while being checked "
                         f"({'still running' if d.alive() else f'exit status {d.proc.returncode}'}): {e}")
            if V:
                fail(cycle, V)

            acked = sum(w.acked for w in workers) + ids.acked + tool.acked + tool.approved
            inflight = sum(1 for w in workers if w.inflight) + (1 if ids.inflight else 0) + tool.inflight
            what = " ".join([f"{w.name}:{w.inflight['op']}" for w in workers if w.inflight] +
                            ([f"ids:{ids.inflight['op']}"] if ids.inflight else []) + ["tool"] * tool.inflight)
            row = (cycle, killed_at, acked, inflight, sum(w.acked for w in workers), ids.acked, tool.acked + tool.approved,
                   n_db, restart_s, time.monotonic() - tv, what)
            rows.append(row)
            print(f"cycle {cycle:2d}: killed at {killed_at:4.2f} s, {acked:4d} acked, {inflight} in flight "
                  f"({what or '-'}); restarted in {restart_s:.2f} s, verified in {row[9]:.2f} s", flush=True)

        d.stop_and_check()   # the last restart ends cleanly
    finally:
        if d.alive():
            d.kill()
        shutil.rmtree(tools, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        summary()


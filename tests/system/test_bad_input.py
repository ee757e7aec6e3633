"""Fault tier: hostile bytes and hostile connections. Invalid UTF-8, raw control bytes, bytes
after the document, wrong-typed fields and numbers out of range are refused with a 400 in
the door's error shape that names the field; limits hold exactly at their boundary; half-open,
trickling and slow-body connections are closed at their deadlines, a full server refuses at
once instead of leaving clients in the listen backlog, and the kernel keeps serving through
all of it. Every socket is on loopback; every loop is bounded in count and time."""
from __future__ import annotations

import json
import resource
import select
import selectors
import socket
import time
from urllib.parse import urlparse

import pytest
import requests

from aiosd_helpers import (MODEL_NAME, assert_error, assert_serving, chat_body, metrics, query_body,
                           wait_for)

TIMEOUT = 120
CHAT = "/v1/chat/completions"


def raw_post(url, path, data: bytes | str, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    return requests.post(url + path, data=data, headers=h, timeout=TIMEOUT)


def addr(url):
    u = urlparse(url)
    return u.hostname, u.port


def assert_400(r, *words) -> dict:
    """A 400 invalid_request whose body is valid UTF-8 JSON and whose message holds words."""
    r.content.decode("utf-8")  # strict: the answer itself must be valid UTF-8
    err = assert_error(r, 400, "invalid_request")
    assert err["type"] == "invalid_request_error", err
    for w in words:
        assert w in err["message"], (w, err)
    return err


def chat_bytes(content: bytes, **extra) -> bytes:
    """A chat body with raw bytes spliced into the user message's content."""
    rest = "".join(f',"{k}":{json.dumps(v)}' for k, v in extra.items())
    return (b'{"model":"smollm2","messages":[{"role":"user","content":"' + content + b'"}],"max_tokens":2'
            + rest.encode() + b"}")


def query_bytes(agent: bytes = b"t", content: bytes = b"hi") -> bytes:
    return (b'{"agent_name":"' + agent + b'","query_type":"llm","query_data":{"messages":[{"role":"user","content":"'
            + content + b'"}],"max_new_tokens":2}}')


def connect(host, port, first: bytes = b"") -> socket.socket:
    s = socket.create_connection((host, port), timeout=10)
    if first:
        s.sendall(first)
    return s


def read_until_closed(s: socket.socket, limit_s: float) -> tuple[bytes, bool]:
    """Reads until the peer closes (EOF or reset) or limit_s passes; (bytes, closed)."""
    s.settimeout(0.2)
    out, deadline = b"", time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            got = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return out, True
        if not got:
            return out, True
        out += got
    return out, False


def http_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body.decode("utf-8"))


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} file descriptors; ulimit -Hn is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


# ------------------------------------------------------------------- invalid UTF-8

BAD_UTF8 = {
    "overlong_2byte": b"a\xc0\xaf",            # '/' as C0 AF
    "overlong_3byte": b"a\xe0\x80\xaf",        # '/' as E0 80 AF
    "cesu8_surrogate": b"a\xed\xa0\x80",       # U+D800 encoded as UTF-8 (CESU-8)
    "five_byte_form": b"a\xf8\x88\x80\x80\x80",
    "past_u10ffff": b"a\xf4\x90\x80\x80",
    "byte_f5": b"a\xf5\x80\x80\x80",
    "byte_ff": b"\xff\xfe",
    "lone_continuation": b"a\x80b",
    "lead_without_continuation": b"a\xc3b",
}

BAD_ESCAPES = {
    "lone_high_surrogate": rb"\ud800",
    "lone_high_surrogate_then_text": rb"\ud800abcdef",
    "lone_low_surrogate": rb"\udc00",
    "high_then_non_low": rb"\ud800\u0041",
}


@pytest.mark.parametrize("name", list(BAD_UTF8))
def test_invalid_utf8_content_400(base_url, name):
    err = assert_400(raw_post(base_url, CHAT, chat_bytes(BAD_UTF8[name])), "messages[0].content", "UTF-8")
    assert "offset" in err["message"], err
    assert_400(raw_post(base_url, "/query", query_bytes(content=BAD_UTF8[name])), "messages[0].content", "UTF-8")


@pytest.mark.parametrize("name", list(BAD_ESCAPES))
def test_lone_surrogate_escape_400(base_url, name):
    assert_400(raw_post(base_url, CHAT, chat_bytes(BAD_ESCAPES[name])), "messages[0].content", "surrogate")


def test_invalid_utf8_in_names_400(base_url):
    assert_400(raw_post(base_url, "/query", query_bytes(agent=b"ag\xc0\xafent")), "agent_name", "UTF-8")
    assert_400(raw_post(base_url, "/query", query_bytes(agent=rb"\ud800")), "agent_name", "surrogate")
    tool = b'{"type":"function","function":{"name":"t\xed\xa0\x80"}}'
    body = b'{"messages":[{"role":"user","content":"hi"}],"tools":[' + tool + b"]}"
    assert_400(raw_post(base_url, CHAT, body), "tools[0].function.name", "UTF-8")
    # a member name
    assert_400(raw_post(base_url, CHAT, b'{"messages":[{"role":"user","content":"hi"}],"\xff":1}'), "UTF-8")
    # the bearer value names the agent in local mode: it must be printable UTF-8 too
    r = requests.post(base_url + CHAT, json=chat_body(max_tokens=2), timeout=TIMEOUT,
                      headers={"Authorization": b"Bearer ag\xff\xfeent"})
    assert_400(r, "bearer")
    assert_400(requests.post(base_url + "/query", json=query_body(agent="a\u0001b", max_new_tokens=2), timeout=TIMEOUT),
               "agent_name")
    assert_serving(base_url)


def test_body_ends_inside_utf8_sequence(base_url):
    head = b'{"model":"smollm2","max_tokens":2,"messages":[{"role":"user","content":"abc'
    for cut in (b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"):  # the body stops inside a character
        assert_400(raw_post(base_url, CHAT, head + cut), "messages[0].content", "ends inside")
    r = raw_post(base_url, CHAT, head + "é€😀".encode() + b'"}]}')  # the same text whole is fine
    assert r.status_code == 200, r.text
    assert_serving(base_url)


def test_valid_unicode_still_served(base_url):
    """Two-, three- and four-byte characters, raw and as escapes (a surrogate pair), pass."""
    body = chat_bytes("h\u00e9llo \u20ac \U0001F600 ".encode() + rb"\u00e9 \ud83d\ude00 \"q\" \\ \/")
    r = raw_post(base_url, CHAT, body)
    assert r.status_code == 200, r.text
    r.content.decode("utf-8")


# ------------------------------------------------------------------- raw control bytes, NUL

@pytest.mark.parametrize("byte", [0x00, 0x01, 0x09, 0x0A, 0x1F])
def test_raw_control_byte_in_string_400(base_url, byte):
    """A raw NUL used to cut the content silently (the model saw only "ab"); any raw control
    byte inside a string is invalid JSON."""
    err = assert_400(raw_post(base_url, CHAT, chat_bytes(b"ab" + bytes([byte]) + b"cd")), "messages[0].content")
    assert ("NUL" in err["message"]) if byte == 0 else (f"0x{byte:02X}" in err["message"]), err


def test_nul_escape_400(base_url):
    assert_400(raw_post(base_url, CHAT, chat_bytes(rb"ab\u0000cd")), "messages[0].content", "NUL")
    assert_400(raw_post(base_url, "/query", query_bytes(agent=rb"a\u0000b")), "agent_name", "NUL")
    # an escaped backslash followed by u0000 is plain text
    r = raw_post(base_url, CHAT, chat_bytes(rb"ab\\u0000cd"))
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------- bytes after the document

@pytest.mark.parametrize("tail", [b" x", b"{}", b'{"messages":[]}', b"\x00", b"]", b" \r\n garbage"])
def test_trailing_bytes_400(base_url, tail):
    assert_400(raw_post(base_url, CHAT, chat_bytes(b"hi") + tail), "after the JSON document")
    assert_400(raw_post(base_url, "/query", query_bytes() + tail), "after the JSON document")


def test_trailing_whitespace_ok(base_url):
    r = raw_post(base_url, CHAT, chat_bytes(b"hi") + b" \r\n\t \n")
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------- wrong-typed fields

def _msgs(content="hi"):
    return [{"role": "user", "content": content}]


WRONG_CHAT = {
    "tools_string": ({"tools": "x"}, "tools"),
    "tools_entry_number": ({"tools": [1]}, "tools[0]"),
    "tool_type_bogus": ({"tools": [{"type": "retrieval", "function": {"name": "a"}}]}, "tools[0].type"),
    "tool_choice_number": ({"tool_choice": 1}, "tool_choice"),
    "tool_choice_bogus": ({"tool_choice": "bogus"}, "tool_choice"),
    "tool_choice_required_no_tools": ({"tool_choice": "required"}, "tool_choice"),
    "tool_choice_named_no_tools": ({"tool_choice": {"type": "function", "function": {"name": "a"}}}, "tool_choice"),
    "tool_choice_bad_object": ({"tools": [{"type": "function", "function": {"name": "a"}}],
                                "tool_choice": {"type": "function", "function": {}}}, "tool_choice"),
    "model_empty": ({"model": ""}, "model"),
    "user_number": ({"user": 5}, "user"),
    "response_format_string": ({"response_format": "x"}, "response_format"),
    "messages_object": ({"messages": {"role": "user", "content": "hi"}}, "messages"),
    "message_without_content": ({"messages": [{"role": "user"}]}, "messages[0].content"),
    "message_content_null": ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    "assistant_null_without_tool_calls": ({"messages": [{"role": "assistant", "content": None},
                                                        {"role": "user", "content": "hi"}]}, "messages[0].content"),
    "tool_message_without_content": ({"messages": [{"role": "tool", "tool_call_id": "c1"}]}, "messages[0].content"),
    "tool_calls_string": ({"messages": [{"role": "assistant", "content": None, "tool_calls": "x"}]},
                          "messages[0].tool_calls"),
    "tool_call_id_number": ({"messages": [{"role": "tool", "content": "1", "tool_call_id": 7}]},
                            "messages[0].tool_call_id"),
    "stream_string": ({"stream": "yes"}, "stream"),
    "stream_options_string": ({"stream": True, "stream_options": "x"}, "stream_options"),
    "include_usage_string": ({"stream": True, "stream_options": {"include_usage": "yes"}}, "include_usage"),
    "max_tokens_string": ({"max_tokens": "5"}, "max_tokens"),
    "max_tokens_1e30": ({"max_tokens": 1e30}, "max_tokens"),
    "max_tokens_fraction": ({"max_tokens": 1.5}, "max_tokens"),
    "max_tokens_past_int64": ({"max_tokens": 9223372036854775808}, "max_tokens"),
    "max_tokens_below_int64": ({"max_tokens": -9223372036854775809}, "max_tokens"),
    "seed_past_uint64": ({"seed": 18446744073709551616}, "seed"),
    "temperature_high": ({"temperature": 2.01}, "temperature"),
    "temperature_string": ({"temperature": "0.5"}, "temperature"),
    "presence_penalty_range": ({"presence_penalty": 3}, "presence_penalty"),
    "frequency_penalty_string": ({"frequency_penalty": "x"}, "frequency_penalty"),
    "parallel_tool_calls_string": ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
}


@pytest.mark.parametrize("name", list(WRONG_CHAT))
def test_wrong_typed_chat_field_400(base_url, name):
    extra, field = WRONG_CHAT[name]
    body = {"model": MODEL_NAME, "messages": _msgs(), "max_tokens": 2}
    body.update(extra)
    assert_400(requests.post(base_url + CHAT, json=body, timeout=TIMEOUT), field)


def test_number_overflow_as_text_400(base_url):
    """Numbers written beyond what a double holds (1e400 parses as infinity) or with a huge
    exponent never become a silent clamp."""
    for lit in (b"1e400", b"-1e400", b"1e30", b"123456789012345678901234567890"):
        body = b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":' + lit + b"}"
        assert_400(raw_post(base_url, CHAT, body), "max_tokens")
        body = b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"seed":' + lit + b"}"
        assert_400(raw_post(base_url, CHAT, body), "seed")
        q = (b'{"agent_name":"t","query_type":"llm","query_data":{"messages":[{"role":"user","content":"hi"}],'
             b'"max_new_tokens":' + lit + b"}}")
        assert_400(raw_post(base_url, "/query", q), "max_new_tokens")


WRONG_COMPLETIONS = {
    "prompt_number": ({"prompt": 5}, "prompt"),
    "prompt_missing": ({}, "prompt"),
    "model_empty": ({"prompt": "hi", "model": ""}, "model"),
    "stream_string": ({"prompt": "hi", "stream": "yes"}, "stream"),
    "max_tokens_1e30": ({"prompt": "hi", "max_tokens": 1e30}, "max_tokens"),
    "max_tokens_fraction": ({"prompt": "hi", "max_tokens": 1.5}, "max_tokens"),
    "temperature_negative": ({"prompt": "hi", "temperature": -1}, "temperature"),
}


@pytest.mark.parametrize("name", list(WRONG_COMPLETIONS))
def test_wrong_typed_completions_field_400(base_url, name):
    body, field = WRONG_COMPLETIONS[name]
    assert_400(requests.post(base_url + "/v1/completions", json=body, timeout=TIMEOUT), field)


@pytest.mark.parametrize("body,field", [({"input": "x", "model": ""}, "model"),
                                        ({"input": "x", "model": 5}, "model"),
                                        ({"input": "x", "user": 5}, "user")])
def test_wrong_typed_embeddings_field_400(base_url, body, field):
    assert_400(requests.post(base_url + "/v1/embeddings", json=body, timeout=TIMEOUT), field)


WRONG_QUERY = {
    "messages_string": ({"messages": "hi"}, "messages"),
    "messages_object": ({"messages": {"role": "user"}}, "messages"),
    "message_without_content": ({"messages": [{"role": "user"}]}, "messages[0].content"),
    "tools_string": ({"tools": "x"}, "tools"),
    "tools_entry_string": ({"tools": ["x"], "action_type": "chat"}, "tools[0]"),
    "action_type_number": ({"action_type": 5}, "action_type"),
    "temperature_range": ({"temperature": 2.5}, "temperature"),
    "temperature_string": ({"temperature": "hot"}, "temperature"),
    "max_new_tokens_1e30": ({"max_new_tokens": 1e30}, "max_new_tokens"),
    "max_new_tokens_fraction": ({"max_new_tokens": 1.5}, "max_new_tokens"),
    "max_new_tokens_string": ({"max_new_tokens": "5"}, "max_new_tokens"),
    "max_new_tokens_past_int64": ({"max_new_tokens": 9223372036854775808}, "max_new_tokens"),
    "response_format_string": ({"response_format": "x"}, "response_format"),
    "response_format_number": ({"response_format": 3}, "response_format"),
    "response_format_schema_missing": ({"response_format": {"type": "json_schema"}}, "json_schema"),
}


@pytest.mark.parametrize("name", list(WRONG_QUERY))
def test_wrong_typed_query_field_400(base_url, name):
    extra, field = WRONG_QUERY[name]
    body = query_body(max_new_tokens=2)
    body["query_data"].update(extra)
    assert_400(requests.post(base_url + "/query", json=body, timeout=TIMEOUT), field)


def test_still_serving_after_bad_input(base_url):
    assert_serving(base_url)
    r = requests.post(base_url + "/query", json=query_body("Say hi.", max_new_tokens=4), timeout=TIMEOUT)
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------- limits at their boundary

def _padded_chat(total: int) -> bytes:
    """A valid chat body of exactly `total` bytes (the padding is in the message)."""
    base = chat_bytes(b"")
    assert len(base) < total
    return chat_bytes(b"z" * (total - len(base)))


def test_body_limit_boundary(spawn_daemon):
    d = spawn_daemon("body4096", ["--set", "server.max_body_bytes=4096"])
    at = _padded_chat(4096)
    assert len(at) == 4096
    r = raw_post(d.url, CHAT, at)
    assert r.status_code == 200, r.text
    over = _padded_chat(4097)
    assert len(over) == 4097
    err = assert_error(raw_post(d.url, CHAT, over), 413, "payload_too_large")
    assert "4096" in err["message"]
    # and without a Content-Length (chunked): the same boundary
    r = requests.post(d.url + CHAT, data=iter([at[:2000], at[2000:]]), timeout=TIMEOUT,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    r = requests.post(d.url + CHAT, data=iter([over[:2000], over[2000:]]), timeout=TIMEOUT,
                      headers={"Content-Type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    assert_serving(d.url)


def _nested(levels: int) -> bytes:
    """A chat body whose extra member holds `levels` nested arrays: the innermost array is
    at depth `levels` (the body object is depth 0)."""
    return chat_bytes(b"hi")[:-1] + b',"x":' + b"[" * levels + b"]" * levels + b"}"


def test_json_depth_boundary(base_url):
    limit = 64  # server.json_max_depth's default
    r = raw_post(base_url, CHAT, _nested(limit))
    assert r.status_code == 200, r.text
    assert_400(raw_post(base_url, CHAT, _nested(limit + 1)), "json_max_depth", str(limit))
    # a scalar counts as a level too: the number 1 inside 63 objects is at depth 64
    obj = lambda n: chat_bytes(b"hi")[:-1] + b',"x":' + b'{"a":' * n + b"1" + b"}" * n + b"}"  # noqa: E731
    assert raw_post(base_url, CHAT, obj(limit - 1)).status_code == 200
    assert_400(raw_post(base_url, CHAT, obj(limit)), "json_max_depth")
    # far deeper than cJSON's own nesting limit: the same clear message, not "malformed"
    assert_400(raw_post(base_url, CHAT, _nested(5000)), "json_max_depth")


# ------------------------------------------------------------------- broken request lines

@pytest.mark.parametrize("payload", [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                                     bytes(range(256)) * 4, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"])
def test_garbage_request_line_answered_400(base_url, payload):
    """A request line libmicrohttpd cannot parse: it used to close without a word. Now the
    kernel answers the JSON 400 (where libmicrohttpd answers itself first, with an unknown
    version or binary junk, its own 4xx/5xx stands); the connection is not held."""
    host, port = addr(base_url)
    with connect(host, port, payload) as s:
        t0 = time.monotonic()
        out, closed = read_until_closed(s, 5)
    assert closed and time.monotonic() - t0 < 2, out[:200]
    assert out.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), out[:200]
    if b"application/json" in out.split(b"\r\n\r\n")[0]:
        status, body = http_json(out)
        assert status == 400 and body["error"]["code"] == "invalid_request", body
        assert "request line" in body["error"]["message"], body
    else:  # libmicrohttpd's own answer: only for a version it does not speak or junk bytes
        assert payload.startswith(b"GET / HTTP/9.9") or payload.startswith(b"\x00"), out[:200]
    r = requests.get(base_url + "/status", timeout=10)
    assert r.status_code == 200


def test_unterminated_request_line_408(spawn_daemon):
    """Bytes that never make a line used to hold the connection for connection_timeout_s."""
    d = spawn_daemon("hdr1500", ["--set", "server.header_timeout_ms=1500"])
    host, port = addr(d.url)
    with connect(host, port, b"\x01\x02\x03 not a request line") as s:
        t0 = time.monotonic()
        out, closed = read_until_closed(s, 8)
    took = time.monotonic() - t0
    assert closed and 1.0 < took < 5, (took, out[:200])
    status, body = http_json(out)
    assert status == 408 and body["error"]["code"] == "timeout", body
    assert "header_timeout_ms" in body["error"]["message"]
    assert requests.get(d.url + "/status", timeout=10).status_code == 200


# ------------------------------------------------------------------- slow and half-open clients

PARTIAL_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_half_open_flood(spawn_daemon):
    """2,000 half-open connections (a partial header, then nothing) against the default
    server.max_connections (1024): a new client is served within 1 s, and the half-open ones
    are closed by the header deadline."""
    n = 2000
    raise_fd_limit(n + 512)
    d = spawn_daemon("flood", ["--set", "server.header_timeout_ms=3000"])
    host, port = addr(d.url)
    socks: list[socket.socket] = []
    try:
        t_open = time.monotonic()
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, port))
            try:
                s.sendall(PARTIAL_HEAD)
            except OSError:
                pass  # already closed to make room: fine
            socks.append(s)
        t0 = time.monotonic()
        r = requests.get(d.url + "/status", timeout=5)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 1.0, f"/status took {time.monotonic() - t0:.2f} s"
        t0 = time.monotonic()
        r = requests.post(d.url + CHAT, json=chat_body("Say hi.", max_tokens=2), timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        m = metrics(d.url)
        assert m["aios_http_connections"] <= 1024, m

        # every half-open connection is closed by the deadline (3 s after it was accepted)
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        open_left = set(socks)
        deadline = t_open + 3.0 + 10.0
        while open_left and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    got = s.recv(65536)  # a 408 answer, then the end
                except BlockingIOError:
                    continue
                except OSError:
                    got = b""  # reset
                if not got:
                    sel.unregister(s)
                    open_left.discard(s)
        sel.close()
        assert not open_left, f"{len(open_left)} of {n} half-open connections still open"
        m = metrics(d.url)
        assert m["aios_http_header_timeouts_total"] + m["aios_http_connections_evicted_total"] >= n, m
        assert m["aios_http_connections"] <= 3, m
    finally:
        for s in socks:
            s.close()
    assert_serving(d.url)


def test_trickled_headers_closed_at_deadline(spawn_daemon):
    """One header line every 0.3 s used to keep a connection forever (MHD's timeout restarts
    on every byte); the deadline counts from accept."""
    d = spawn_daemon("trickle", ["--set", "server.header_timeout_ms=1500"])
    host, port = addr(d.url)
    s = connect(host, port, b"GET /status HTTP/1.1\r\n")
    t0, out, closed = time.monotonic(), b"", False
    try:
        s.settimeout(0.3)
        for i in range(40):  # at most 12 s
            try:
                s.sendall(b"X-Slow-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            try:
                got = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                closed = True
                break
            out += got
            if not got:
                closed = True
                break
    finally:
        s.close()
    took = time.monotonic() - t0
    assert closed and took < 5, (took, out[:200])
    if out:
        assert http_json(out)[0] == 408, out[:300]
    assert metrics(d.url)["aios_http_header_timeouts_total"] >= 1


def test_slow_body_rate_floor(spawn_daemon):
    d = spawn_daemon("slowbody", ["--set", "server.header_timeout_ms=1000", "--set", "server.min_body_rate=2000"])
    host, port = addr(d.url)
    body = json.dumps(chat_body("x" * 5000, max_tokens=2)).encode()
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    s = connect(host, port, head)
    t0 = time.monotonic()
    try:
        for i in range(50):  # 10 bytes every 0.1 s (~100 bytes/s), at most 5 s
            try:
                s.sendall(body[i * 10:(i + 1) * 10])
            except OSError:
                break
            time.sleep(0.1)
            if select.select([s], [], [], 0)[0]:
                break  # answered (or closed)
        out, closed = read_until_closed(s, 3)
    finally:
        s.close()
    assert closed and time.monotonic() - t0 < 6, out[:200]
    if out:
        status, err = http_json(out)
        assert status == 408 and "min_body_rate" in err["error"]["message"], err
    assert metrics(d.url)["aios_http_slow_bodies_total"] >= 1
    # the same body sent at once, and a body that pauses less than the grace, are served
    r = raw_post(d.url, CHAT, body)
    assert r.status_code == 200, r.text
    s = connect(host, port, head + body[:100])
    try:
        time.sleep(0.6)
        s.sendall(body[100:])
        out, _ = read_until_closed(s, 30)
    finally:
        s.close()
    assert out.startswith(b"HTTP/1.1 200"), out[:300]


def test_long_stream_and_idle_keepalive_not_cut(spawn_daemon):
    """The deadlines are for receiving a request: a generation streaming for longer than
    them, and a kept-alive connection idle between requests, are left alone."""
    d = spawn_daemon("deadlines", ["--set", "server.header_timeout_ms=500", "--set", "server.min_body_rate=100000"])
    body = chat_body("Write a long story about a dragon.", max_tokens=150, stream=True, ignore_eos=True,
                     stream_options={"include_usage": True})
    t0 = time.monotonic()
    with requests.post(d.url + CHAT, json=body, stream=True, timeout=TIMEOUT) as r:
        assert r.status_code == 200
        lines = [ln for ln in r.iter_lines() if ln]
    assert time.monotonic() - t0 > 0.5, "the stream should outlast the header deadline"
    assert lines[-1] == b"data: [DONE]", lines[-3:]
    usage = json.loads(lines[-2][6:])["usage"]
    assert usage["completion_tokens"] == 150, usage
    with requests.Session() as sess:
        assert sess.get(d.url + "/status", timeout=10).status_code == 200
        time.sleep(1.0)  # idle past header_timeout_ms, within connection_timeout_s
        assert sess.get(d.url + "/status", timeout=10).status_code == 200
    assert metrics(d.url)["aios_http_header_timeouts_total"] == 0


def _hold_body_phase(host, port, k: int) -> list[socket.socket]:
    """k connections whose request headers are in and whose body never finishes."""
    socks = []
    for _ in range(k):
        s = connect(host, port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        socks.append(s)
    return socks


def test_over_limit_refused_at_once(spawn_daemon):
    """At server.max_connections with every slot serving a request, a new connection is
    answered 503 at once (it used to wait in the listen backlog)."""
    d = spawn_daemon("limit8", ["--set", "server.max_connections=8", "--set", "server.reserved_connections=0",
                                "--set", "server.min_body_rate=0"])
    host, port = addr(d.url)
    held = _hold_body_phase(host, port, 7)
    try:
        busy = wait_for(lambda: _busy(host, port) >= 7, 5, interval=0.3)  # /metrics takes the 8th slot
        assert busy, ({k: v for k, v in metrics(d.url).items() if "http" in k}, _busy(host, port))
        held += _hold_body_phase(host, port, 1)
        time.sleep(0.5)  # its headers are in: every slot now serves a request
        t0 = time.monotonic()
        with connect(host, port, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n") as s:
            out, closed = read_until_closed(s, 5)
        assert closed and time.monotonic() - t0 < 1.0, out[:200]
        status, body = http_json(out)
        assert status == 503 and body["error"]["code"] == "overloaded", body
        assert "max_connections" in body["error"]["message"]
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: requests.get(d.url + "/status", timeout=5).status_code == 200, 5)
    assert_serving(d.url)


def _busy(host, port) -> float:
    """aios_http_connections_busy, read over a fresh raw connection (it may be refused)."""
    try:
        with connect(host, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") as s:
            out, _ = read_until_closed(s, 3)
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("aios_http_connections_busy "):
                return float(line.split()[1]) - 1  # the /metrics request itself
    except OSError:
        pass
    return -1


def test_reserved_connections_for_identities(spawn_daemon):
    d = spawn_daemon("reserved", ["--set", "server.max_connections=8", "--set", "server.reserved_connections=2",
                                  "--set", "server.min_body_rate=0"])
    r = requests.post(d.url + "/admin/agents", json={"name": "ops"}, timeout=10)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    host, port = addr(d.url)
    assert requests.get(d.url + "/status", timeout=5).status_code == 200
    held = _hold_body_phase(host, port, 6)
    try:
        assert wait_for(lambda: requests.get(d.url + "/status", timeout=5).status_code == 503, 5)
        r = requests.get(d.url + "/status", timeout=5)
        err = assert_error(r, 503, "overloaded")
        assert "reserved_connections" in err["message"], err
        r = requests.get(d.url + "/status", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert r.status_code == 200, r.text
        r = requests.post(d.url + CHAT, json=chat_body("Hi", max_tokens=2), timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    finally:
        for s in held:
            s.close()
    assert wait_for(lambda: requests.get(d.url + "/status", timeout=5).status_code == 200, 5)
    assert metrics(d.url)["aios_http_reserved_refused_total"] >= 1

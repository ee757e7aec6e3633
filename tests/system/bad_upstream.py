"""
bad_upstream.py - an OpenAI-compatible model server that speaks HTTP badly on purpose, for
the fault tier of remote models (issue 13, part 7). It is the bad input, not a stand-in for
a real server: the system tier uses llama-server for that.

    python3 bad_upstream.py PORT

Every POST .../chat/completions misbehaves the way its `model` field names:
  malformed_json  200, Content-Type JSON, a body cut off mid-object
  malformed_sse   200, an event stream of lines that are not JSON, then [DONE]
  truncated       200, three content deltas, then the connection closes (no finish, no [DONE])
  endless         200, content deltas every 5 ms for ever (never a finish_reason)
  error200        200 with {"error": {"message": "model overloaded"}} as its whole body
  error_event     200, one delta, then an event {"error": {"message": "boom"}}
  huge_line       200, one `data:` line of 2 MiB without a newline in it
  slowloris       200 headers, then one byte every 2 s
  silent          accepts the request and never answers a byte
  status500       500 with {"error": {"message": "internal failure"}}
  good            a proper two-delta stream (the control)
GET (health checks) answers 200 {"data": []}. Standard library only.
"""
import json
import socketserver
import sys
import time


def chunk(text: str) -> bytes:
    return f"data: {text}\n\n".encode()


def delta(content: str, finish=None) -> bytes:
    return chunk(json.dumps({"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}))


def head(status: str = "200 OK", ctype: str = "text/event-stream", extra: str = "") -> bytes:
    # no Content-Length, Connection: close: the body ends when the connection does
    return f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nConnection: close\r\n{extra}\r\n".encode()


def behave(w, kind: str) -> None:
    if kind == "malformed_json":
        w(head(ctype="application/json") + b'{"choices": [{"message": {"content": "hel')
    elif kind == "malformed_sse":
        w(head() + chunk("{not json") + chunk("also <not> json") + chunk("[DONE]"))
    elif kind == "truncated":
        w(head() + delta("one ") + delta("two ") + delta("three "))
    elif kind == "endless":
        w(head())
        while True:
            w(delta("more "))
            time.sleep(0.005)
    elif kind == "error200":
        w(head(ctype="application/json") + json.dumps({"error": {"message": "model overloaded"}}).encode())
    elif kind == "error_event":
        w(head() + delta("partial ") + chunk(json.dumps({"error": {"message": "boom"}})))
    elif kind == "huge_line":
        w(head() + b"data: {\"choices\": [{\"delta\": {\"content\": \"" + b"x" * (2 << 20))
    elif kind == "slowloris":
        w(head())
        while True:
            w(b":")
            time.sleep(2)
    elif kind == "silent":
        time.sleep(3600)
    elif kind == "status500":
        w(head("500 Internal Server Error", "application/json") +
          json.dumps({"error": {"message": "internal failure"}}).encode())
    else:
        w(head() + delta("fine ") + delta("thanks", "stop") + chunk("[DONE]"))


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        f = self.request.makefile("rb")
        line = f.readline().decode("latin-1")
        length = 0
        while True:
            h = f.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        body = f.read(length) if length else b""
        w = self.request.sendall
        try:
            if line.startswith("GET"):
                data = json.dumps({"data": []}).encode()
                w(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                  f"Connection: close\r\n\r\n".encode() + data)
                return
            behave(w, json.loads(body or b"{}").get("model", "good"))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the kernel hung up: what it should do with most of these


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Handler) as srv:
        print("ready", flush=True)
        srv.serve_forever()

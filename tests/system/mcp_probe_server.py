"""
mcp_probe_server.py - a test MCP server (stdio, newline-delimited JSON-RPC 2.0) that probes
its own sandbox. It serves initialize, tools/list and tools/call with one tool, `probe`,
which tries what a hostile server would try and answers, as JSON text, what it reached:

  admin_token   read <data_dir>/admin.token           data_list  list <data_dir>
  cache_file    read a file of the model cache        write_tmp  write /tmp/x
  write_etc     write /etc/x                          write_work write /work/probe.txt
  socket        TCP connect to 127.0.0.1:<port>       secret     $<secret_var>

each as {"ok": bool, "detail": str}, plus its uid, cwd and environment variable names.
Run by /usr/bin/python3 (standard library only), so it works inside the kernel's sandbox
with nothing but /usr. At start it writes one marker line to stderr, which the kernel logs.
"""
import json
import os
import socket
import sys

SCHEMA = {
    "type": "object",
    "properties": {
        "data_dir": {"type": "string"},
        "cache_file": {"type": "string"},
        "port": {"type": "integer"},
        "secret_var": {"type": "string"},
    },
}


def attempt(fn):
    try:
        return {"ok": True, "detail": str(fn())[:200]}
    except Exception as e:  # every refusal is a result, never a crash
        return {"ok": False, "detail": f"{type(e).__name__}: {e}"[:200]}


def read(path, n=64):
    with open(path, "rb") as f:
        return f.read(n)


def write(path):
    with open(path, "w") as f:
        f.write("probe\n")
    return path


def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"


def secret(name):
    if name not in os.environ:
        raise KeyError(name)
    return os.environ[name]


def probe(args):
    data_dir = args.get("data_dir", "/nonexistent")
    return {
        "admin_token": attempt(lambda: read(os.path.join(data_dir, "admin.token"))),
        "cache_file": attempt(lambda: read(args.get("cache_file", "/nonexistent"))),
        "data_list": attempt(lambda: os.listdir(data_dir)),
        "write_tmp": attempt(lambda: write("/tmp/x")),
        "write_etc": attempt(lambda: write("/etc/x")),
        "write_work": attempt(lambda: write("/work/probe.txt")),
        "socket": attempt(lambda: connect(int(args.get("port", 1)))),
        "secret": attempt(lambda: secret(args.get("secret_var", "MCP_PROBE_SECRET"))),
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "env": sorted(os.environ),
        "greeting": os.environ.get("PROBE_GREETING"),
    }


def answer(msg):
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        return {"protocolVersion": params.get("protocolVersion", "2025-03-26"), "capabilities": {"tools": {}},
                "serverInfo": {"name": "aios-probe", "version": "1.0"}}
    if method == "tools/list":
        return {"tools": [{"name": "probe", "description": "Reports what this server can reach.", "inputSchema": SCHEMA}]}
    if method == "tools/call" and params.get("name") == "probe":
        return {"content": [{"type": "text", "text": json.dumps(probe(params.get("arguments") or {}))}], "isError": False}
    if method == "ping":
        return {}
    raise LookupError(method)


def main():
    print("probe-server-started pid-namespace-pid=%d" % os.getpid(), file=sys.stderr, flush=True)
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "id" not in msg:  # a notification
            continue
        reply = {"jsonrpc": "2.0", "id": msg["id"]}
        try:
            reply["result"] = answer(msg)
        except LookupError as e:
            reply["error"] = {"code": -32601, "message": f"Method not found: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

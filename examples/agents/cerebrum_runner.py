#!/usr/bin/env python3
"""Runs one agent package in Cerebrum's layout (config.json + agent.py) inside the kernel's
sandbox: the package is at /agent, the task in AIOS_TASK, the kernel at CEREBRUM_KERNEL_URL
(with the agent's token in AIOS_TOKEN). It loads config.json's build.entry, makes the class
build.module with the agent's name, calls run(task) and prints the result as JSON: the last
line of output is what AIOS's GET /agents/{id}/status returns.

Point agents.cerebrum_runner at it with a Python that has the Cerebrum SDK installed
("/path/to/venv/bin/python /path/to/cerebrum_runner.py"; docs/agents.md). The SDK sends no
token, so the runner adds the agent's (AIOS_TOKEN) to every request it makes to the kernel:
under access.mode: enforce the SDK's calls are the agent's. Where the SDK is not installed,
or is one without cerebrum.llm.apis (the PyPI aios-agent-sdk releases), a minimal
cerebrum.llm.apis (llm_chat and llm_call_tool over the kernel's /query, the SDK's own wire
protocol) stands in, enough for agents that only call those; stderr says which is used."""
import importlib.util
import json
import os
import sys
import types
import urllib.request


def _query(agent_name, query_type, query_data, base_url):
    body = json.dumps({"agent_name": agent_name, "query_type": query_type, "query_data": query_data}).encode()
    req = urllib.request.Request(base_url.rstrip("/") + "/query", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + os.environ.get("AIOS_TOKEN", agent_name)})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def _llm(agent_name, messages, base_url, tools=None, action_type="chat", llms=None, max_new_tokens=256):
    return _query(agent_name, "llm", {"llms": llms, "messages": messages, "tools": tools, "action_type": action_type,
                                      "message_return_type": "text", "max_new_tokens": max_new_tokens}, base_url)


def _minimal_apis():
    apis = types.ModuleType("cerebrum.llm.apis")
    apis.llm_chat = lambda agent_name, messages, base_url="http://localhost:8000", llms=None: \
        _llm(agent_name, messages, base_url, llms=llms)
    apis.llm_call_tool = lambda agent_name, messages, tools, base_url="http://localhost:8000", llms=None: \
        _llm(agent_name, messages, base_url, tools=tools, action_type="call_tool", llms=llms)
    return apis


def _with_token():
    """Every request the SDK (requests) sends to the kernel carries the agent's token."""
    import requests
    kernel, token, send = os.environ.get("CEREBRUM_KERNEL_URL", ""), os.environ.get("AIOS_TOKEN"), requests.Session.request

    def request(self, method, url, *args, **kw):
        if token and kernel and str(url).startswith(kernel):
            kw["headers"] = {**(kw.get("headers") or {}), "Authorization": "Bearer " + token}
        return send(self, method, url, *args, **kw)
    requests.Session.request = request


def _sdk():
    """The Cerebrum SDK's llm.apis when it is installed; else the minimal one, put in place
    without hiding the rest of an installed SDK."""
    if importlib.util.find_spec("cerebrum") is not None:
        _with_token()
        try:
            import cerebrum.llm.apis  # noqa: F401
            print("cerebrum_runner: the Cerebrum SDK's cerebrum.llm.apis", file=sys.stderr)
            return
        except ImportError as e:
            print(f"cerebrum_runner: the installed Cerebrum SDK has no usable cerebrum.llm.apis ({e}); "
                  "using the runner's minimal one", file=sys.stderr)
            import cerebrum
            llm = sys.modules.get("cerebrum.llm") or types.ModuleType("cerebrum.llm")
            sys.modules["cerebrum.llm"] = llm
            cerebrum.llm = llm
    else:
        print("cerebrum_runner: no Cerebrum SDK; using the runner's minimal cerebrum.llm.apis", file=sys.stderr)
        for name in ("cerebrum", "cerebrum.llm"):
            sys.modules[name] = types.ModuleType(name)
    apis = _minimal_apis()
    sys.modules["cerebrum.llm.apis"] = apis
    sys.modules["cerebrum.llm"].apis = apis


def main():
    pkg = os.environ.get("AIOS_PACKAGE_DIR", "/agent")
    with open(os.path.join(pkg, "config.json")) as f:
        config = json.load(f)
    build = config.get("build", {})
    _sdk()
    sys.path.insert(0, pkg)
    spec = importlib.util.spec_from_file_location("agent", os.path.join(pkg, build.get("entry", "agent.py")))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    agent = getattr(module, build["module"])(os.environ.get("AIOS_AGENT_NAME", config.get("name", "agent")))
    result = agent.run(os.environ.get("AIOS_TASK", ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

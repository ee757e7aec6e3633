"""System tier: the web dashboard at /ui (issue 14, part 7) in headless Chromium (Debian's
chromium + chromium-driver, driven by selenium from PyPI) against the real aiosd, in
access.mode enforce: the page asks for the admin token once, loads without console errors,
shows the models and the running agents, updates live when an agent starts, and approving a
pending irreversible tool call from the page completes the call. Screenshots of both themes
at 1280x800 are saved in test-artifacts/ (dashboard-light.png, dashboard-dark.png)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from aiosd_helpers import MODEL_NAME, REPO, Daemon, wait_for

ARTIFACTS = Path(os.environ.get("AIOS_TEST_ARTIFACTS", REPO / "test-artifacts"))
PROBE_DIR = REPO / "tests" / "agents"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    tools = Path(tempfile.mkdtemp(prefix="aios-ui-tools-"))
    os.chmod(tools, 0o755)
    (tools / "danger.json").write_text(json.dumps({"name": "t/danger", "command": "/bin/cat", "irreversible": True}))
    wd = tmp_path_factory.mktemp("ui")
    cfg = wd / "ui.yaml"
    cfg.write_text(f"access:\n  mode: enforce\n  approval_timeout: 120\ntools:\n  dir: {tools}\n")
    d = Daemon("ui", wd, ["--config", str(cfg)]).start()
    d.admin = (wd / "data" / "admin.token").read_text().strip()
    yield d
    d.stop_and_check()
    shutil.rmtree(tools, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    assert shutil.which("chromium") and shutil.which("chromedriver"), \
        "chromium and chromium-driver are missing (scripts/install-deps.sh installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield drv
    drv.quit()


def text(drv, css: str) -> str:
    return drv.find_element(By.CSS_SELECTOR, css).text


def test_dashboard(kernel, browser):
    h = {"Authorization": f"Bearer {kernel.admin}"}
    assert requests.get(kernel.url + "/events", timeout=5, stream=True).status_code == 401  # admin only
    drv = browser
    drv.get(kernel.url + "/ui")
    # enforce mode: the page asks for the token once and keeps it in the tab
    assert wait_for(lambda: drv.find_element(By.ID, "login").is_displayed(), 10)
    drv.find_element(By.ID, "token-input").send_keys(kernel.admin)
    drv.find_element(By.ID, "token-save").click()
    assert wait_for(lambda: MODEL_NAME in text(drv, "#models tbody"), 15), drv.page_source[:2000]
    assert wait_for(lambda: "live" in text(drv, "#conn"), 10)
    # an agent started now shows up on its own (the page is fed by /events)
    r = requests.post(kernel.url + "/agents", headers=h, timeout=30, json={
        "name": "ui-sleeper", "package_dir": str(PROBE_DIR), "command": ["/bin/sh", "/agent/probe.sh", "sleep", "120"]})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    assert wait_for(lambda: "ui-sleeper" in text(drv, "#agents tbody") and "running" in text(drv, "#agents tbody"), 10)
    # its detail: record, timeline, output
    drv.find_element(By.CSS_SELECTOR, f'#agents tr[data-id="{aid}"]').click()
    assert wait_for(lambda: "ui-sleeper" in text(drv, "#detail-body") and "kernel-only" in text(drv, "#detail-body"), 10)
    detail = text(drv, "#detail-body")  # what it holds: memory, storage, KV, tool calls
    assert "0 blocks, 0 B resident" in detail and "0 files, 0 B" in detail and "0 running, 0 waiting" in detail, detail
    # a pending irreversible call: approved from the page, it completes
    tok = requests.post(kernel.url + "/admin/agents", headers=h, json={"name": "ui-caller"}, timeout=10).json()["token"]
    box = []
    th = threading.Thread(target=lambda: box.append(requests.post(kernel.url + "/query", timeout=120, headers={
        "Authorization": f"Bearer {tok}"}, json={"query_type": "tool", "query_data": {
            "tool_calls": [{"name": "t/danger", "parameters": {"rm": "-rf"}}]}})))
    th.start()
    assert wait_for(lambda: "t/danger" in text(drv, "#approvals"), 15), text(drv, "#approvals")
    for theme in ("light", "dark"):
        drv.execute_script(f"setTheme('{theme}')")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert drv.save_screenshot(str(ARTIFACTS / f"dashboard-{theme}.png"))
    drv.find_element(By.CSS_SELECTOR, '#approvals button[data-decision="approve"]').click()
    th.join(60)
    assert box and box[0].status_code == 200, box and box[0].text
    assert box[0].json()["response"]["tool_results"][0]["status_code"] == 200, box[0].text
    assert wait_for(lambda: "no tool call waits" in text(drv, "#approvals"), 10)
    # the audit tail shows the decision
    assert wait_for(lambda: "t/danger" in text(drv, "#audit"), 10), text(drv, "#audit")
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    requests.post(f"{kernel.url}/agents/{aid}/kill", headers=h, timeout=10)

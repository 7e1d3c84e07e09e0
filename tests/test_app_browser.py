"""The real app in a real browser: `streamlit run` on 127.0.0.1, Debian's Chromium driven by Playwright.

Skips (with the reason) when Chromium or Playwright is missing, except under CI (env `CI` set): there it fails.
Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_app import app_dirs  # noqa: F401  (the micro runs + report fixture)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def playwright_browser():
    reason = _missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_dirs):  # noqa: F811
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "streamlit_app" / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--runs",
        str(app_dirs["runs"]),
        "--reports",
        str(app_dirs["reports"]),
        "--data",
        str(app_dirs["data"]),
    ]
    log = open(app_dirs["root"] / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited: {(app_dirs['root'] / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not answer in 180 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_generate_compare_samples_in_chromium(server, playwright_browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = playwright_browser.new_page(viewport={"width": 1400, "height": 1000})
    # Generous: the first generation per model compiles it (tens of seconds on a busy 2-core CI box).
    page.set_default_timeout(240_000)
    page.goto(server)
    page.get_by_text("Generate a review").wait_for()
    # rubrics: the searchable multiselect
    page.locator('[data-testid="stMultiSelect"]').first.locator("input").click()
    page.keyboard.type("Кафе")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_label("Keywords (comma-separated)").fill("кофе, персонал")
    page.get_by_role("button", name="Generate").click()
    page.locator("div.review").first.wait_for()
    assert page.get_by_text("predicted rating").count() >= 1
    assert "review(s) in" in page.locator("h3").filter(has_text="review(s) in").inner_text()
    page.screenshot(path=str(ARTIFACTS / "generate.png"), full_page=True)

    page.goto(server + "/compare")
    page.get_by_role("button", name="Random test request").click()
    # Each click reruns the script; a click that lands while the previous rerun
    # is still going can be dropped, so wait for its result and for the app to idle.
    page.get_by_text("human review").first.wait_for()
    _wait_idle(page)
    page.get_by_role("button", name="Generate with each model").click()
    page.locator("div.review").nth(2).wait_for()
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    page.goto(server + "/samples")
    page.get_by_text("Which is better?").first.wait_for()
    assert page.locator("div.review").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "samples.png"), full_page=True)
    assert not page.get_by_text("Traceback").count()
    page.close()


def _wait_idle(page) -> None:
    """Wait until Streamlit's "running" status widget is gone (absent counts as idle)."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")

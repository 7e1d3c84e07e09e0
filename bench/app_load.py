"""The app under load: N browser sessions press Generate at the same time on the same model.

Shared by the slow browser test (tests/app/test_browser.py) and the app bench
(bench/app_latency.py --concurrent N): `streamlit run` on 127.0.0.1, Debian's
Chromium through Playwright (`KIT_CHROMIUM` overrides the path).

    .venv/bin/python bench/app_load.py --sessions 8 [--runs runs --reports reports --data data/prepared]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def healthy(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/_stcore/health", timeout=2)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def app_server(runs: Path, reports: Path, data: Path, log: Path, *, extra: tuple[str, ...] = ()):
    """`streamlit run streamlit_app/app.py` on a free port; yields its URL, stops it on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app" / "app.py")]
    cmd += ["--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1"]
    cmd += ["--browser.gatherUsageStats", "false", "--", "--runs", str(runs), "--reports", str(reports)]
    cmd += ["--data", str(data), *extra]
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            for _ in range(360):
                if healthy(url):
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited: {log.read_text()[-2000:]}")
                time.sleep(0.5)
            else:
                raise RuntimeError("streamlit did not answer in 180 s")
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def fill_generate_form(page, url: str, *, rubric: str = "Кафе", keywords: str = "кофе, персонал") -> None:
    """Open the Generate page and fill its form (rubric, keywords); does not submit."""
    page.goto(url)
    page.get_by_text("Generate a review").wait_for()
    page.locator('[data-testid="stMultiSelect"]').first.locator("input").click()
    page.keyboard.type(rubric)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.get_by_label("Keywords (comma-separated)").fill(keywords)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def generate_in_sessions(browser, url: str, sessions: int, *, timeout_s: float = 600) -> dict:
    """`sessions` browser contexts (separate Streamlit sessions) press Generate together.

    Returns:
        Per session: seconds from its click to its first scored review (polled every 0.1 s),
        and the error texts any page showed.
    """
    contexts = [browser.new_context(viewport={"width": 1200, "height": 900}) for _ in range(sessions)]
    pages = [c.new_page() for c in contexts]
    try:
        for page in pages:
            page.set_default_timeout(240_000)
            fill_generate_form(page, url)
        clicked = []
        for page in pages:  # as close together as one driver can: each click returns at once
            page.get_by_role("button", name="Generate").click(no_wait_after=True)
            clicked.append(time.perf_counter())
        done: dict[int, float] = {}
        errors: dict[int, str] = {}
        deadline = time.perf_counter() + timeout_s
        while len(done) + len(errors) < sessions and time.perf_counter() < deadline:
            for i, page in enumerate(pages):
                if i in done or i in errors:
                    continue
                alert = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
                if alert.count():
                    errors[i] = alert.first.inner_text()
                elif page.locator("div.review").count():
                    done[i] = time.perf_counter() - clicked[i]
            time.sleep(0.1)
        return {
            "sessions": sessions,
            "seconds": [round(done[i], 2) for i in sorted(done)],
            "errors": errors,
            "missing": [i for i in range(sessions) if i not in done and i not in errors],
        }
    finally:
        for c in contexts:
            c.close()


def summary(result: dict) -> dict:
    s = result["seconds"]
    return {
        **result,
        "median_s": round(statistics.median(s), 2) if s else None,
        "max_s": round(max(s), 2) if s else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--data", default="data/prepared")
    args = parser.parse_args()
    import tempfile

    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp()) / "server.log"
    with app_server(Path(args.runs), Path(args.reports), Path(args.data), log) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        generate_in_sessions(browser, url, 1)  # load and compile first: the load test times cached requests
        result = summary(generate_in_sessions(browser, url, args.sessions))
        result["server_up_after"] = healthy(url)
        browser.close()
    print(json.dumps(result, ensure_ascii=False))
    return 0 if not result["errors"] and not result["missing"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

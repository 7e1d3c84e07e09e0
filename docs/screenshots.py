"""Regenerate docs/screenshots/<page>.png from the real app (after `make demo`): `make screenshots`.

Starts `streamlit run` on 127.0.0.1 with the default runs/reports/data dirs and
drives Debian's Chromium with Playwright (`KIT_CHROMIUM` overrides the path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not (ROOT / "runs").is_dir() or not (ROOT / "reports").is_dir():
        print("No runs/ or reports/: run `make demo` first.", file=sys.stderr)
        return 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "streamlit_app/app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            page.get_by_text("Generate a review").wait_for()
            page.locator('[data-testid="stMultiSelect"]').first.locator("input").click()
            page.keyboard.type("Кафе")
            page.keyboard.press("Enter")
            page.keyboard.press("Escape")
            page.get_by_label("Keywords (comma-separated)").fill("кофе, персонал")
            page.get_by_role("button", name="Generate").click()
            page.locator("div.review").first.wait_for()
            page.screenshot(path=str(OUT / "generate.png"), full_page=True)
            page.goto(url + "/compare")
            page.get_by_role("button", name="Random test request").click()
            # Wait for that rerun to finish: a click during a rerun can be dropped.
            page.get_by_text("human review").first.wait_for()
            page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
            page.get_by_role("button", name="Generate with each model").click()
            page.locator('div.review, [data-testid="stAlert"]').nth(2).wait_for(timeout=300_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(OUT / "compare.png"), full_page=True)
            for name, marker in (("metrics", "Pairwise win rates"), ("samples", "Which is better?")):
                page.goto(f"{url}/{name}")
                page.get_by_text(marker).first.wait_for()
                page.wait_for_timeout(2000)  # charts draw after the text
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=name != "samples")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"Wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

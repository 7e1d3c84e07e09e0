"""Regenerate docs/screenshots/<page>.png from the real app (after `make demo`): `make screenshots`.

Starts `streamlit run` on 127.0.0.1 with the default runs/reports/data dirs and
drives Debian's Chromium with Playwright (`KIT_CHROMIUM` overrides the path).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
# The app server, Chromium and the Generate form are the app bench's (and the browser test's).
sys.path.insert(0, str(ROOT / "bench"))
from app_load import CHROMIUM, CHROMIUM_ARGS, app_server, fill_generate_form  # noqa: E402


def main() -> int:
    from playwright.sync_api import sync_playwright

    if not (ROOT / "runs").is_dir() or not (ROOT / "reports").is_dir():
        print("No runs/ or reports/: run `make demo` first.", file=sys.stderr)
        return 2
    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    # Relative to the repo root (the server's cwd), so the pictures show the dirs a user types.
    with app_server(Path("runs"), Path("reports"), Path("data/prepared"), log) as (url, _):
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            fill_generate_form(page, url)
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
    print(f"Wrote {', '.join(sorted(p.name for p in OUT.glob('*.png')))} to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

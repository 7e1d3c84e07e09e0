"""The real app in a real browser: `streamlit run` on 127.0.0.1, Debian's Chromium driven by Playwright.

Skips (with the reason) when Chromium or Playwright is missing, except under CI (env `CI` set): there it fails.
Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.app.test_app import app_dirs  # noqa: F401  (the micro runs + report fixture)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from app_load import CHROMIUM, CHROMIUM_ARGS, app_server, generate_in_sessions, healthy  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.slow  # a real browser and `streamlit run`, on two micro runs (app_dirs trains them)


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


@pytest.fixture(scope="module")
def server(app_dirs):  # noqa: F811
    try:
        with app_server(app_dirs["runs"], app_dirs["reports"], app_dirs["data"], app_dirs["root"] / "server.log") as (
            url,
            _,
        ):
            yield url
    except RuntimeError as e:
        pytest.fail(str(e))


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


def test_eight_sessions_generate_at_once_on_one_model(server, playwright_browser):
    """Eight sessions press Generate together on micro-lora: all get a review, none an error, the server lives."""
    generate_in_sessions(playwright_browser, server, 1)  # the first request loads and compiles
    result = generate_in_sessions(playwright_browser, server, 8, timeout_s=600)
    assert result["errors"] == {} and result["missing"] == [], result
    assert len(result["seconds"]) == 8
    assert healthy(server)

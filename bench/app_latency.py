"""Page time and time to first token of the app's Generate page, alone and with N sessions at once.

Drives the real app headlessly with `streamlit.testing.v1.AppTest`: the first
submit loads and compiles the model; later submits reuse it. The page streams
the first review, and the time to its first token (prefill + one decode step)
is what `Stream.first_token_s` measured. With `--concurrent N`, N Chromium
sessions on a real `streamlit run` press Generate together (bench/app_load.py)
and each one's time to its scored review is recorded.
Target (a goal, not an assert): ≤ 2 s per generation once cached.

    .venv/bin/python bench/app_latency.py [--runs 5] [--concurrent 8] [--runs-dir runs --data-dir data/prepared]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cached submits to time (default 5)")
    parser.add_argument("--concurrent", type=int, default=0, help="also N browser sessions at once (0 = skip)")
    parser.add_argument("--runs-dir", default="runs", help="the app's runs dir (default runs)")
    parser.add_argument("--data-dir", default="data/prepared", help="the app's data dir (default data/prepared)")
    parser.add_argument("--reports-dir", default="reports", help="the app's reports dir (default reports)")
    parser.add_argument("--model", default="tiny-lora", help="the run to generate with (default tiny-lora)")
    parser.add_argument("--note", default="", help="what the model is, if not the demo's")
    parser.add_argument("--out", default=str(ROOT / "bench/results/app_latency.json"))
    args = parser.parse_args()
    os.chdir(ROOT)  # the dirs are relative to the repo
    if not (Path(args.runs_dir) / args.model / "run.json").is_file():
        print(f"{args.runs_dir}/{args.model} not found; run `make demo` first.", file=sys.stderr)
        return 2
    if args.concurrent:
        import importlib.util

        from app_load import CHROMIUM

        if importlib.util.find_spec("playwright") is None or not Path(CHROMIUM).is_file():
            print(f"--concurrent needs playwright and {CHROMIUM} (apt-get install -y chromium).", file=sys.stderr)
            return 2
    os.environ.update(KIT_RUNS_DIR=args.runs_dir, KIT_DATA_DIR=args.data_dir, KIT_REPORTS_DIR=args.reports_dir)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app/app.py"), default_timeout=600).run()
    at.selectbox(key="gen_model").set_value(args.model)
    at.multiselect(key="gen_rubrics").set_value(["Кафе"])
    at.text_input(key="gen_keywords").set_value("кофе, персонал")
    times, first_token, tokens = [], [], []
    for _ in range(args.runs + 1):
        t0 = time.perf_counter()
        at.button[0].click().run()
        times.append(time.perf_counter() - t0)
        if at.error:
            print(f"the app showed an error: {at.error[0].value}", file=sys.stderr)
            return 1
        _, _, samples, _, _, first_token_s = at.session_state["gen_result"]
        first_token.append(first_token_s)
        tokens.append(samples[0].new_tokens)
    result = {
        "benchmark": f"Streamlit Generate page, {args.model}, 1 review, default sampler",
        "model_note": args.note or f"{args.runs_dir}/{args.model}",
        "first_submit_s": round(times[0], 2),
        "cached_submit_s": {"median": round(statistics.median(times[1:]), 3), "max": round(max(times[1:]), 3)},
        "time_to_first_token_s": {
            "first_submit": round(first_token[0], 3),
            "cached_median": round(statistics.median(first_token[1:]), 4),
            "cached_max": round(max(first_token[1:]), 4),
        },
        "new_tokens_median": statistics.median(tokens[1:]),
        "runs": args.runs,
        "target_cached_s": 2.0,
        "load_average_1m": os.getloadavg()[0],
        "machine": machine_info(("streamlit", "keras", "keras-hub", "jax")),
    }
    if args.concurrent:
        result[f"concurrent_{args.concurrent}"] = _concurrent(args)
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, ensure_ascii=False))
    return 0


def _concurrent(args) -> dict:
    """N Chromium sessions on a real server press Generate together (after one warm-up request)."""
    import tempfile

    from app_load import CHROMIUM, CHROMIUM_ARGS, app_server, generate_in_sessions, healthy, summary
    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp()) / "server.log"
    dirs = (Path(args.runs_dir).resolve(), Path(args.reports_dir).resolve(), Path(args.data_dir).resolve())
    with app_server(*dirs, log) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        generate_in_sessions(browser, url, 1)
        result = summary(generate_in_sessions(browser, url, args.concurrent))
        result["server_up_after"] = healthy(url)
        browser.close()
    result["what"] = "seconds from each session's click to its first scored review (streamed, default sampler)"
    return result


if __name__ == "__main__":
    raise SystemExit(main())

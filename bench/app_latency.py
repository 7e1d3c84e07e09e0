"""Page time of the Streamlit app's Generate page with the tiny model (after `make demo`).

Drives the real app headlessly with `streamlit.testing.v1.AppTest`: the first
submit loads and compiles the model; later submits hit `st.cache_resource`.
Target (a goal, not an assert): ≤ 2 s per generation once cached.

    .venv/bin/python bench/app_latency.py [--runs 5]
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cached submits to time (default 5)")
    parser.add_argument("--out", default=str(ROOT / "bench/results/app_latency.json"))
    args = parser.parse_args()
    if not (ROOT / "runs/tiny-lora/run.json").is_file():
        print("runs/tiny-lora not found; run `make demo` first.", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # the app's default dirs (runs, reports, data/prepared) are relative
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "streamlit_app/app.py"), default_timeout=600).run()
    at.multiselect(key="gen_rubrics").set_value(["Кафе"])
    at.text_input(key="gen_keywords").set_value("кофе, персонал")
    times = []
    for _ in range(args.runs + 1):
        t0 = time.perf_counter()
        at.button[0].click().run()
        times.append(time.perf_counter() - t0)
        if at.error:
            print(f"the app showed an error: {at.error[0].value}", file=sys.stderr)
            return 1
    result = {
        "benchmark": "Streamlit Generate page, tiny-lora, 1 review, default sampler",
        "first_submit_s": round(times[0], 2),
        "cached_submit_s": {"median": round(statistics.median(times[1:]), 3), "max": round(max(times[1:]), 3)},
        "runs": args.runs,
        "target_cached_s": 2.0,
        "load_average_1m": os.getloadavg()[0],
        "machine": machine_info(("streamlit", "keras", "keras-hub", "jax")),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("first_submit_s", "cached_submit_s", "load_average_1m")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

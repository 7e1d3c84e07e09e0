"""Benchmark `kit data prepare` on a 500,000-row synthetic file (the real dataset's size).

Measures wall time and peak memory (max RSS) of the whole CLI command in a
child process, plus the stage timings `prepare` reports, and writes
`bench/results/prepare.json` with the machine and library versions.
Targets (goals, not asserts): ≤ 120 s and ≤ 4 GB on a 2-core machine.

    .venv/bin/python bench/prepare_bench.py [--rows 500000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KIT = [sys.executable, "-m", "kit"]
TIMER = (
    "import json, resource, sys\n"
    "from kit.data.prepare import prepare, PrepareOptions\n"
    # bench/tmp/prepared is the benchmark's own scratch output: each run replaces the last.
    "stats = prepare(sys.argv[1], sys.argv[2], options=PrepareOptions(), progress=False, overwrite=True)\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(json.dumps({'timings_s': stats['timings_s'], 'splits': stats['splits'], 'counts': stats['counts'], 'peak_kib': peak}))\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--out", default=str(ROOT / "bench/results/prepare.json"))
    args = parser.parse_args()

    work = ROOT / "bench/tmp"
    work.mkdir(parents=True, exist_ok=True)
    raw = work / f"synth-{args.rows}.tskv"
    t0 = time.perf_counter()
    if not raw.exists():
        subprocess.run([*KIT, "data", "synth", "--out", str(raw), "--rows", str(args.rows), "--seed", "1"], check=True)
    synth_s = time.perf_counter() - t0

    # The timed command: prepare in a fresh child that reports its own peak RSS.
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", TIMER, str(raw), str(work / "prepared")],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_kib = inner["peak_kib"]
    result = {
        "benchmark": "kit data prepare",
        "rows": args.rows,
        "input_bytes": raw.stat().st_size,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak_kib / 2**20, 2),
        "peak_rss_note": "max RSS of the process running prepare (from getrusage)",
        "stage_timings_s": inner["timings_s"],
        "splits": inner["splits"],
        "counts": inner["counts"],
        "synth_s": round(synth_s, 1),
        "targets": {"wall_s": 120, "peak_rss_gib": 4.0},
        "machine": machine_info(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("rows", "wall_s", "peak_rss_gib", "stage_timings_s")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The int8 base next to the float base: the same LoRA fine-tune of the tiny model, losses side by side.

Both runs are `kit finetune` of `configs/tiny.toml` with the same seed, data,
steps and LoRA; only `model.quantize` differs (`none`, `int8`). Reported per
run: the validation loss before training (the base alone: what int8 rounding
costs) and after, the last train loss, and the seconds the training took.

    .venv/bin/python bench/int8_loss.py                 # about 3 minutes on 2 idle cores (needs make data)
    .venv/bin/python bench/int8_loss.py --steps 4 --max-train-rows 64   # seconds (the test)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import ROOT, BenchError, write_result  # noqa: E402

import kit  # noqa: E402, F401  (the JAX backend for Keras)

PACKAGES = ("keras", "keras-hub", "jax", "jaxlib")


def parse_args(argv=None) -> argparse.Namespace:
    """Flags.

    Example:
        >>> a = parse_args([])
        >>> a.steps, a.config
        (150, 'configs/tiny.toml')
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny.toml")
    p.add_argument("--data", default="data/prepared", help="prepared dataset dir")
    p.add_argument("--preset", default=None, help="base preset (default: the config's)")
    p.add_argument("--steps", type=int, default=150, help="optimizer steps of each run")
    p.add_argument("--max-train-rows", type=int, default=0)
    p.add_argument("--max-val-rows", type=int, default=250)
    p.add_argument("--set", action="append", default=[], help="extra section.key=value overrides for both runs")
    p.add_argument("--out", default=None, help="result JSON (default bench/results/int8_loss.json)")
    a = p.parse_args(argv)
    if a.steps < 1:
        raise BenchError(f"--steps must be ≥ 1. Received: {a.steps}")
    return a


def run_one(a, quantize: str, runs_dir: Path) -> dict:
    """One fine-tune with `model.quantize = quantize`; its losses and timings."""
    from kit.config import load_config
    from kit.data.prepare import load_prepared
    from kit.train import finetune

    overrides = [
        f"run.name=q-{quantize}",
        f"run.out_dir={runs_dir}",
        f"model.quantize={quantize}",
        f"train.steps={a.steps}",
        f"train.eval_every={a.steps}",
        "train.checkpoint_every=0",
        f"data.max_train_rows={a.max_train_rows}",
        f"data.max_val_rows={a.max_val_rows}",
        *([f"model.preset={a.preset}"] if a.preset else []),
        *a.set,
    ]
    cfg = load_config(ROOT / a.config, overrides)
    # The dataset is passed in: a tiny base pretrained on other data is refused by the CLI's data check,
    # and the comparison only needs both runs on the same rows.
    info = finetune(cfg, progress=False, dataset=load_prepared(a.data))
    return {
        "quantize": quantize,
        "initial_val_loss": info.metrics["initial_val_loss"],
        "val_loss": info.metrics["val_loss"],
        "final_train_loss": info.metrics["final_train_loss"],
        "steps": info.metrics["steps"],
        "tokens": info.metrics["tokens"],
        "train_s": info.timings.get("train_s"),
        "step": info.batching.get("step"),
    }


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        if not Path(a.data).is_dir():
            raise BenchError(f"--data {a.data}: no prepared dataset there; run `make data` first.")
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_one(a, q, Path(tmp)) for q in ("none", "int8")]
    float_run, int8_run = runs
    result = {
        "benchmark": "LoRA fine-tune of the tiny model on a float base and on an int8 base (model.quantize)",
        "config": {"file": a.config, "steps": a.steps, "data": a.data, "overrides": a.set},
        "runs": runs,
        "int8_minus_float": {
            k: round(int8_run[k] - float_run[k], 5) for k in ("initial_val_loss", "val_loss", "final_train_loss")
        },
        "machine": machine_info(PACKAGES),
    }
    out = a.out or str(ROOT / "bench/results/int8_loss.json")
    write_result(out, result)
    for r in runs:
        print(
            f"{r['quantize']:5s} val loss {r['initial_val_loss']:.4f} -> {r['val_loss']:.4f}, "
            f"last train loss {r['final_train_loss']:.4f}, {r['train_s']} s"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Small hyper-parameter sweeps: many short `finetune` runs, one results table, the best config as TOML.

A sweep point is a dict of `--set` overrides (`{"lora.rank": 4, "train.learning_rate": 1e-3}`).
`one_at_a_time` varies each axis alone around a baseline (1 + sum(len - 1) runs,
what a short budget affords); `grid` is the full product. `run_sweep` trains
each point with `kit.train.finetune` on top of a base config, optionally scores
rating accuracy with a quick `kit.eval.evaluate.evaluate_models`, and returns a
`pandas.DataFrame`. `best_config` applies the winning point to the config of
the full run, and `write_config` saves it as a TOML file `kit finetune --config`
reads back.

Example:
    >>> one_at_a_time({"lora.rank": [4, 8], "lora.targets": ["qv", "all"]})
    [{'lora.rank': 4, 'lora.targets': 'qv'}, {'lora.rank': 8, 'lora.targets': 'qv'}, {'lora.rank': 4, 'lora.targets': 'all'}]
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kit.atomic import write_text
from kit.config import Config, load_config
from kit.errors import UserError

# One-at-a-time axes (baseline first). Full: Gemma 2 2B around the GPU/TPU configs' values, 6 runs.
DEFAULT_AXES = {"lora.rank": [8, 4, 16], "train.learning_rate": [2e-4, 1e-4, 5e-4], "lora.targets": ["qv", "all"]}
# Smoke: the tiny base, 4 runs of a few steps.
SMOKE_AXES = {"lora.rank": [4, 8], "train.learning_rate": [3e-3, 1e-2], "lora.targets": ["all", "qv"]}
# Each full sweep run: a few hundred steps on a slice of the train split.
DEFAULT_BUDGET = (
    "train.steps=150",
    "data.max_train_rows=5000",
    "data.max_val_rows=300",
    "train.eval_every=0",
    "train.checkpoint_every=0",
    "train.patience=0",
)


def grid(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values.

    Example:
        >>> len(grid({"lora.rank": [4, 8], "train.learning_rate": [1e-3, 3e-3, 1e-2]}))
        6
    """
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(axes[k] for k in keys))]


def one_at_a_time(axes: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The baseline (each axis' first value), then each other value of one axis with the rest at baseline."""
    base = {k: v[0] for k, v in axes.items()}
    points = [dict(base)]
    for key, values in axes.items():
        points += [{**base, key: v} for v in values[1:]]
    return points


def point_name(prefix: str, index: int, point: Mapping[str, Any]) -> str:
    """A run name for a sweep point, e.g. `sweep-01-rank4-lr0.001-all`.

    Example:
        >>> point_name("sweep", 1, {"lora.rank": 4, "train.learning_rate": 0.001, "lora.targets": "all"})
        'sweep-01-rank4-lr0.001-all'
    """
    short = {"lora.rank": "rank", "train.learning_rate": "lr", "lora.targets": "", "lora.alpha": "alpha"}
    parts = [f"{short.get(k, k.split('.')[-1])}{v}" for k, v in point.items()]
    return re.sub(r"[^\w.\-]+", "_", "-".join([prefix, f"{index:02d}", *parts]))


def run_sweep(
    config: str | Path | None,
    points: Sequence[Mapping[str, Any]],
    *,
    overrides: Sequence[str] = (),
    out_dir: str | Path = "runs/sweep",
    prefix: str = "sweep",
    eval_limit: int = 0,
    eval_max_new_tokens: int = 96,
    progress: bool = False,
) -> pd.DataFrame:
    """Fine-tune once per point and tabulate validation loss (and rating accuracy when `eval_limit` > 0).

    Args:
        config: Base TOML config (e.g. `configs/tiny.toml`).
        points: Sweep points (`grid`, `one_at_a_time` or hand-written dicts of overrides).
        overrides: `section.key=value` strings applied to every run before the point's own
            (short budgets: `train.steps=20`, `data.max_train_rows=2000`).
        out_dir: Parent of the sweep's run dirs (each run replaces its own dir).
        prefix: Run name prefix.
        eval_limit: When > 0, generate this many rating-balanced validation requests per run and
            add `rating_accuracy` (judged by the TF-IDF rating classifier) and `chrf`.
        eval_max_new_tokens: Review length cap for that quick evaluation.
        progress: Progress bars.

    Returns:
        One row per point: the point's values, `val_loss`, `initial_val_loss`, `val_ppl`,
        `train_s`, optionally `rating_accuracy` and `chrf`, and the `run` dir.
    """
    from kit.eval import EvalOptions, evaluate_models
    from kit.train import finetune

    if not points:
        raise UserError("The sweep has no points: pass at least one dict of overrides.")
    rows = []
    for i, point in enumerate(points):
        name = point_name(prefix, i, point)
        sets = [
            *overrides,
            f"run.out_dir={out_dir}",
            f"run.name={name}",
            *(f"{k}={_toml_value(v)}" for k, v in point.items()),
        ]
        cfg = load_config(config, sets)
        t = time.perf_counter()
        info = finetune(cfg, overwrite=True, progress=progress)
        metrics = info.metrics
        row = {
            **point,
            "val_loss": metrics.get("val_loss"),
            "initial_val_loss": metrics.get("initial_val_loss"),
            "val_ppl": metrics.get("val_ppl"),
            "train_s": round(time.perf_counter() - t, 1),
        }
        run = Path(cfg.run.out_dir) / cfg.run.name
        if eval_limit > 0:
            t = time.perf_counter()
            result = evaluate_models(
                [run],
                cfg.data.dir,
                out=None,
                options=EvalOptions(
                    split="validation",
                    limit=eval_limit,
                    max_new_tokens=eval_max_new_tokens,
                    perplexity=False,
                    n_resamples=100,
                    progress=progress,
                ),
            )
            cols = result["metrics"]["columns"][result["columns_order"][0]]
            row.update(
                rating_accuracy=cols["rating_accuracy"]["value"],
                chrf=cols["chrf"]["value"],
                eval_s=round(time.perf_counter() - t, 1),
            )
        row["run"] = str(run)
        rows.append(row)
    return pd.DataFrame(rows)


def best_point(results: pd.DataFrame, metric: str = "val_loss", *, lower_is_better: bool = True) -> dict[str, Any]:
    """The sweep point (only its override keys) of the best row by `metric`.

    Example:
        >>> best_point(pd.DataFrame([{"lora.rank": 4, "val_loss": 2.0, "run": "a"},
        ...                          {"lora.rank": 8, "val_loss": 1.5, "run": "b"}]))
        {'lora.rank': 8}
    """
    if metric not in results or results[metric].isna().all():
        raise UserError(f"No {metric!r} in the sweep results. Received columns: {list(results.columns)}")
    best = results[metric].idxmin() if lower_is_better else results[metric].idxmax()
    return {k: _plain(v) for k, v in results.loc[best].items() if "." in str(k)}


def best_config(config: str | Path, point: Mapping[str, Any], overrides: Sequence[str] = ()) -> Config:
    """`config` (the full run's, e.g. `configs/gemma2_2b_tpu.toml`) with `overrides` then `point` applied."""
    return load_config(config, [*overrides, *(f"{k}={_toml_value(v)}" for k, v in point.items())])


def config_toml(cfg: Config, header: str = "") -> str:
    """The resolved config as TOML text that `load_config` reads back to an equal config.

    Example:
        >>> from kit.config import from_dict
        >>> cfg = load_config(None, ["lora.rank=4", "data.buckets=[64, 128]"])
        >>> import tomllib
        >>> from_dict(tomllib.loads(config_toml(cfg))) == cfg
        True
    """
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in cfg.to_dict().items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines).lstrip("\n") + "\n"


def write_config(cfg: Config, path: str | Path, header: str = "") -> Path:
    """Write `config_toml(cfg, header)` to `path` (parents created, atomically); returns the path.

    The notebook that calls it rewrites its own `best.toml` on every run, so an existing file is replaced.
    """
    path = Path(path)
    write_text(path, config_toml(cfg, header))  # atomic: a failed write keeps the previous config
    return path


def _toml_value(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UserError(f"Cannot write a non-finite number to TOML. Received: {value}")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise UserError(f"Cannot write {type(value).__name__} to TOML. Received: {value!r}")


def _plain(value: Any) -> Any:
    """numpy scalars (from a DataFrame row) to Python ones."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, tuple, str)) else value

"""The run directory layout, in one place.

    runs/<name>/
      run.json            resolved config, preset, LoRA settings, data fingerprint,
                          metrics, timings, parameter counts, padding share, status
      adapter.lora.h5     LoRA weights (absent for a base-model run)
      history.csv         one row per logged step (train/val loss, lr, ...)
      tensorboard/        TensorBoard event file (same scalars as history.csv)
      checkpoints/step_000050/{state.npz,meta.json}
      model/              optional merged KerasHub preset (export stage)

A run without an adapter is a registered base model, so evaluation and the
app treat base and fine-tuned models alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from kit.errors import UserError

RUN_JSON = "run.json"
ADAPTER = "adapter.lora.h5"
HISTORY = "history.csv"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
MERGED_MODEL = "model"
_CKPT = re.compile(r"^step_(\d{6,})$")


class RunPaths:
    """Paths inside one run dir.

    Example:
        >>> RunPaths("runs/tiny-lora").adapter.as_posix()
        'runs/tiny-lora/adapter.lora.h5'
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def merged_model(self) -> Path:
        return self.root / MERGED_MODEL

    def checkpoint(self, step: int) -> Path:
        """`checkpoints/step_000050` for step 50."""
        return self.checkpoints / f"step_{step:06d}"

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as `(step, dir)`, oldest first (temp dirs of a killed write are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for p in self.checkpoints.iterdir():
            m = _CKPT.match(p.name)
            if m and (p / "meta.json").is_file() and (p / "state.npz").is_file():
                found.append((int(m.group(1)), p))
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.list_checkpoints()
        return found[-1][1] if found else None


def run_dir(out_dir: str | Path, name: str) -> RunPaths:
    """`RunPaths` for `<out_dir>/<name>`.

    Example:
        >>> run_dir("runs", "tiny-base").root.as_posix()
        'runs/tiny-base'
    """
    return RunPaths(Path(out_dir) / name)


def read_run(path: str | Path) -> dict:
    """Read `run.json` of a run dir (or the file itself).

    Raises:
        UserError: the run does not exist or is unreadable.

    Example:
        >>> read_run("runs/no-such-run")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Run not found: runs/no-such-run (no run.json). Run `kit finetune --config ...` first.
    """
    path = Path(path)
    file = path if path.name == RUN_JSON else path / RUN_JSON
    if not file.is_file():
        raise UserError(f"Run not found: {path} (no {RUN_JSON}). Run `kit finetune --config ...` first.")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{file} is not valid JSON ({e}); re-run the fine-tune that wrote it.") from None


def resolve_run(out_dir: str | Path, name: str) -> Path:
    """The run dir `<out_dir>/<name>`, refusing anything that is not a run directly inside `out_dir`.

    For callers that take a run name from a user (the app): `..`, absolute
    paths and symlinks that leave `out_dir` are refused, so only configured
    runs can be opened.

    Raises:
        UserError: `name` escapes `out_dir` or is not a run there.

    Example:
        >>> resolve_run("runs", "../etc")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Run '../etc' is not a run inside runs; pick one of the runs listed there.
    """
    root = Path(out_dir).resolve()
    path = (root / name).resolve()
    if not name or path.parent != root or not (path / RUN_JSON).is_file():
        raise UserError(f"Run {name!r} is not a run inside {out_dir}; pick one of the runs listed there.")
    return path


def list_runs(out_dir: str | Path = "runs") -> list[dict]:
    """Summaries of every run under `out_dir` (name, path, preset, adapter?, status, val loss).

    Example:
        >>> list_runs("no/such/dir")
        []
    """
    out = []
    root = Path(out_dir)
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        if not (p / RUN_JSON).is_file():
            continue
        info = read_run(p)
        out.append({
            "name": p.name,
            "path": str(p),
            "preset": info.get("preset"),
            "has_adapter": bool(info.get("adapter")),
            "status": info.get("status"),
            "val_loss": (info.get("metrics") or {}).get("val_loss"),
        })
    return out

"""The run directory layout, in one place.

    runs/<name>/
      run.json            resolved config, preset, LoRA settings, data fingerprint,
                          metrics, timings, parameter counts, padding share, status
      adapter.lora.h5     LoRA weights (absent for a base-model run)
      history.csv         one row per logged step (train/val loss, lr, ...)
      tensorboard/        TensorBoard event file (same scalars as history.csv)
      checkpoints/step_000050/{state.npz,meta.json}

A run without an adapter is a registered base model, so evaluation and the
app treat base and fine-tuned models alike. The lifecycle `kit finetune`
follows: `prepare_run_dir` (new, resume or finished, before anything loads),
`start_run_dir` (once the base model has loaded), `check_shared` (every
process sees it) and `check_same_config` (a resume continues the same run).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

from kit.atomic import OutputKind, check_output_dir, mark_output, write_json
from kit.errors import UserError

RUN_JSON = "run.json"
ADAPTER = "adapter.lora.h5"
HISTORY = "history.csv"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
_CKPT = re.compile(r"^step_(\d{6,})$")
# A run dir; one from before the kit's marker is known by its run.json.
RUN = OutputKind("run", "kit finetune", legacy=(RUN_JSON,))
# Statuses of a run with nothing left to train.
FINISHED = ("completed", "early_stopped")
# Keys a resumed run may change: they decide when this session stops, not what it computes.
RESUME_MAY_CHANGE = ("train.max_minutes",)


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


@dataclasses.dataclass(kw_only=True)
class LoraInfo:
    """The adapter's shape, as `kit finetune` added it (what a loader needs to rebuild it).

    Attributes:
        rank: Adapter rank.
        alpha: Scale numerator (the update is scaled by `alpha / rank`).
        targets: `qv` or `all` (`kit.model.lora.LORA_TARGET_LAYERS`).
        layers: Paths of the wrapped layers.
    """

    rank: int
    alpha: float
    targets: str
    layers: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(kw_only=True)
class DataInfo:
    """Which data a run trained on.

    Attributes:
        dir: The prepared dataset dir.
        dataset_fingerprint: `stats.json` fingerprint of that dir (None for an in-memory dataset).
        rows_sha256: Digest of the train and validation prompt/target pairs actually used.
        train_rows: Train rows used.
        val_rows: Validation rows used.
    """

    dir: str
    dataset_fingerprint: str | None
    rows_sha256: str
    train_rows: int
    val_rows: int


@dataclasses.dataclass(kw_only=True)
class RunInfo:
    """`run.json`: what a run is and how it went, written and read by this class alone.

    Attributes:
        name: Run name (the dir name).
        preset: The base model preset it loads.
        dtype: Weights dtype.
        status: `running`, `completed`, `early_stopped`, `stopped_on_budget`, `diverged` or `base` (no adapter).
        distribution: The distribution it trained under, in words.
        config: The resolved config (`Config.to_dict()`).
        adapter: The adapter file name inside the run dir, None for a base model.
        lora: The adapter's shape, None for a base model.
        data: The data it trained on, None when registered without data.
        parameters: Trainable and total parameter counts.
        batching: Buckets, padding share, steps and length figures.
        metrics: Validation loss and friends.
        timings: Seconds per phase.
        error: Why a run stopped early (divergence).
        stopped: How a run stopped before its last step and how to go on
            (the time budget: reason, step, checkpoint, resume command).
        init: `pretrained`, or `random` for a run on random weights
            (`model.init`; plans and tests), whose adapter fits no real base.
        tokenizer: For a random-weight run, the tokenizer it used, in words.

    Example:
        >>> info = RunInfo(name="tiny-base", preset="models/tiny-base", dtype="float32", status="base")
        >>> RunInfo.from_dict(info.to_dict()) == info
        True
    """

    name: str
    preset: str
    dtype: str
    status: str = "running"
    distribution: str = ""
    config: dict = dataclasses.field(default_factory=dict)
    adapter: str | None = None
    lora: LoraInfo | None = None
    data: DataInfo | None = None
    parameters: dict | None = None
    batching: dict | None = None
    metrics: dict = dataclasses.field(default_factory=dict)
    timings: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    stopped: dict | None = None
    init: str = "pretrained"
    tokenizer: str | None = None

    # Optional sections are left out of the file when unset, as before the record existed.
    _OPTIONAL = ("data", "parameters", "batching", "error", "stopped", "tokenizer")

    @property
    def data_dir(self) -> str | None:
        """The prepared dataset dir of the run's config (holds the rubric vocabulary)."""
        return (self.config.get("data") or {}).get("dir")

    def to_dict(self) -> dict:
        """The JSON object of `run.json`."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if not (k in self._OPTIONAL and v is None)}

    @classmethod
    def from_dict(cls, obj: dict) -> RunInfo:
        """A record from a `run.json` object; unknown keys (from a newer kit) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in obj.items() if k in known}
        if isinstance(values.get("lora"), dict):
            values["lora"] = LoraInfo(**values["lora"])
        if isinstance(values.get("data"), dict):
            values["data"] = DataInfo(**values["data"])
        return cls(**values)

    @classmethod
    def read(cls, path: str | Path) -> RunInfo:
        """Read `run.json` of a run dir (or the file itself).

        Raises:
            UserError: the run does not exist or is unreadable.

        Example:
            >>> RunInfo.read("runs/no-such-run")
            Traceback (most recent call last):
            ...
            kit.errors.UserError: Run not found: runs/no-such-run (no run.json). Run `kit finetune --config ...` first.
        """
        path = Path(path)
        file = path if path.name == RUN_JSON else path / RUN_JSON
        if not file.is_file():
            raise UserError(f"Run not found: {path} (no {RUN_JSON}). Run `kit finetune --config ...` first.")
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
            if isinstance(raw, dict):
                raw.setdefault("name", file.parent.name)  # a hand-written run.json may leave it out
            return cls.from_dict(raw)
        except json.JSONDecodeError as e:
            raise UserError(f"{file} is not valid JSON ({e}); re-run the fine-tune that wrote it.") from None
        except TypeError as e:
            raise UserError(f"{file} is not a run record ({e}); re-run the fine-tune that wrote it.") from None

    def write(self, run_dir: str | Path) -> Path:
        """Write `<run_dir>/run.json` atomically; returns its path."""
        file = Path(run_dir) / RUN_JSON
        write_json(file, self.to_dict())
        return file


def default_data_dir(model: str) -> str:
    """Where the rubric vocabulary of `model` lives: a run's `data.dir`, else `data/prepared`.

    Example:
        >>> default_data_dir("gemma2_2b_en")
        'data/prepared'
    """
    if (Path(model) / RUN_JSON).is_file():
        return RunInfo.read(model).data_dir or "data/prepared"
    return "data/prepared"


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
        info = RunInfo.read(p)
        out.append(
            {
                "name": p.name,
                "path": str(p),
                "preset": info.preset,
                "has_adapter": bool(info.adapter),
                "status": info.status,
                "val_loss": info.metrics.get("val_loss"),
            }
        )
    return out


def prepare_run_dir(paths: RunPaths, *, resume: bool | str, overwrite: bool) -> tuple[str, bool]:
    """Check the run dir before anything loads: `(what to do, whether an earlier run will be replaced)`.

    What to do is `new`, `resume` or `finished` (nothing left to train).
    `resume="auto"` (the notebooks) resumes when a checkpoint exists, starts a
    new run when there is no run dir, and leaves a finished run as it is;
    starting over always takes `overwrite`, and even then only a run of the
    kit's own is replaced (the kit's one output rule, `kit.atomic`).

    Raises:
        UserError: `resume=True` without a checkpoint, or a run dir that may not be replaced.

    Example:
        >>> import tempfile
        >>> prepare_run_dir(run_dir(tempfile.mkdtemp(), "new-run"), resume="auto", overwrite=False)
        ('new', False)
    """

    def check() -> bool:
        return check_output_dir(
            paths.root,
            RUN,
            overwrite=overwrite,
            option="run name (--set run.name=<new name>)",
            also="--resume to continue it, ",
        )

    if overwrite and resume is not True:
        return "new", check()
    if resume == "auto":
        if paths.latest_checkpoint() is not None:
            return "resume", False
        if paths.run_json.is_file():
            status = RunInfo.read(paths.root).status
            if status == "base" or (status in FINISHED and paths.adapter.is_file()):
                return "finished", False
        return "new", check()
    if resume:
        if paths.latest_checkpoint() is None:
            raise UserError(f"--resume: no checkpoint in {paths.checkpoints}. Start without --resume.")
        return "resume", False
    return "new", check()


def start_run_dir(paths: RunPaths, *, replace: bool) -> None:
    """Make the (marked) run dir, replacing the earlier run when `replace`.

    Called once the base model has loaded, so a typo in the preset never costs an earlier run.

    Example:
        >>> import tempfile
        >>> paths = run_dir(tempfile.mkdtemp(), "fresh")
        >>> start_run_dir(paths, replace=False)
        >>> sorted(p.name for p in paths.root.iterdir())
        ['.kit-output.json']
    """
    if replace:
        shutil.rmtree(paths.root)
    paths.root.mkdir(parents=True, exist_ok=True)
    mark_output(paths.root, RUN)


def check_shared(paths: RunPaths, process_index: int) -> None:
    """Refuse a run dir that process `process_index` cannot see although process 0 made it.

    Every process reads the checkpoints process 0 writes, so the run dir must be one they all see.

    Raises:
        UserError: the run dir is not there.

    Example:
        >>> check_shared(run_dir("no/such/runs", "r"), 1)
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Process 1 cannot see the run dir no/such/runs/r that process 0 made: put run.out_dir (--runs-dir) on storage every host mounts (NFS, a gcsfuse bucket).
    """
    if not paths.root.is_dir():
        raise UserError(
            f"Process {process_index} cannot see the run dir {paths.root} that process 0 made: "
            "put run.out_dir (--runs-dir) on storage every host mounts (NFS, a gcsfuse bucket)."
        )


def config_changes(saved: dict, now: dict, defaults: dict) -> list[str]:
    """The `section.key`s where config `now` differs from the `saved` one, outside `RESUME_MAY_CHANGE`.

    A key the saved config lacks (added to the kit after the run started) counts as its value in `defaults`.

    Example:
        >>> saved = {"train": {"steps": 8, "max_minutes": 0}}  # from before `patience` existed
        >>> now = {"train": {"steps": 9, "max_minutes": 5, "patience": 0}}
        >>> config_changes(saved, now, defaults={"train": {"steps": 0, "max_minutes": 0, "patience": 0}})
        ['train.steps']
    """
    return [
        f"{section}.{key}"
        for section in now
        for key in now[section]
        if saved.get(section, {}).get(key, defaults[section][key]) != now[section][key]
        and f"{section}.{key}" not in RESUME_MAY_CHANGE
    ]


def check_same_config(paths: RunPaths, config: dict, defaults: dict) -> None:
    """Refuse to resume the run at `paths` with a `config` (`Config.to_dict()`) other than the one it started with.

    A resumed run must use its saved config, or it would not continue "exactly". `defaults`
    (`Config().to_dict()`) stands in for the keys a run of an older kit did not save.

    Raises:
        UserError: the configs differ; the message names the keys.

    Example:
        >>> import tempfile
        >>> paths = run_dir(tempfile.mkdtemp(), "r")
        >>> _ = RunInfo(name="r", preset="p", dtype="float32", config={"train": {"steps": 8}}).write(paths.root)
        >>> check_same_config(paths, {"train": {"steps": 9}}, {"train": {"steps": 8}})
        Traceback (most recent call last):
        ...
        kit.errors.UserError: --resume: config differs from the run's saved config at train.steps. Resume with the original config, or start a new run (--set run.name=...).
    """
    diff = config_changes(RunInfo.read(paths.root).config, config, defaults)
    if diff:
        raise UserError(
            f"--resume: config differs from the run's saved config at {', '.join(diff)}. "
            "Resume with the original config, or start a new run (--set run.name=...)."
        )

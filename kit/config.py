"""Fine-tuning configuration: frozen dataclasses, TOML files and `--set a.b=value` overrides.

A config file has one TOML table per dataclass below (`[run]`, `[model]`,
`[lora]`, `[data]`, `[train]`, `[distribution]`); every key is optional and
falls back to the default here. Unknown keys and wrong types are rejected with
a `UserError` naming the key, so a typo never silently trains the wrong thing.
The resolved config (`Config.to_dict()`) is saved in each run's `run.json`.

    [run]
    name = "tiny-lora"
    [lora]
    rank = 8
    targets = "all"
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.errors import UserError

LORA_TARGETS = ("qv", "all")
DTYPES = ("auto", "float32", "bfloat16", "float16")
INITS = ("pretrained", "random")
DECAYS = ("cosine", "linear", "constant")
DISTRIBUTIONS = ("auto", "single", "data", "model")
QUANTIZE = ("none", "int8")
REMAT = ("auto", "off", "blocks")
# Gemma 2's context, in tokens: no training sequence (a bucket) may be longer.
MODEL_CONTEXT = 8192


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Where the run is written.

    Attributes:
        name: Run name; the run dir is `<out_dir>/<name>`.
        out_dir: Parent directory of run dirs.
        seed: Seed for data order and LoRA initialisation.
    """

    name: str = "run"
    out_dir: str = "runs"
    seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which base model to load.

    Attributes:
        preset: Built-in preset (`gemma2_2b_en`), `kaggle://...`, `hf://...`
            or a local preset directory such as `models/tiny-base`.
        dtype: `auto` (bfloat16 on GPU/TPU, float32 on CPU) or an explicit dtype.
        quantize: `none`, or `int8`: the frozen decoder-block kernels are
            quantized to int8 (Keras' int8 mode, `kit.model.quantize`) before
            the adapters are added, for 16 GB GPUs; the embedding stays float. Generation from the run uses
            the same int8 base; `kit export --to hf/keras` merges the adapter
            into the dequantised weights.
        init: `pretrained` (load the preset's weights) or `random`: the
            preset's architecture with random weights and no download, for
            plans, benchmarks and full-size tests (`kit.model.architectures`).
            Only ever what the config says; `run.json` records it.
    """

    preset: str = "models/tiny-base"
    dtype: str = "auto"
    quantize: str = "none"
    init: str = "pretrained"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """Low-rank adapters; `enabled = false` (or rank 0) registers the base model as a run.

    Attributes:
        enabled: Train LoRA adapters at all.
        rank: Adapter rank.
        alpha: Scale numerator: the update is `alpha / rank * B A`.
        targets: `qv` (query and value projections, the official tutorial) or
            `all` (q, k, v, attention output and the three feed-forward layers).
        factored: Compute each adapted layer as `x·W + s·(x·A)·B` instead of
            Keras' merged kernel `x·(W + s·A·B)`: no full-size kernel or kernel
            gradient per step. Same results within float rounding, same adapter file.
    """

    enabled: bool = True
    rank: int = 8
    alpha: float = 16.0
    targets: str = "qv"
    factored: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The prepared dataset and how it is cut into batches.

    Attributes:
        dir: Prepared dataset dir (`kit data prepare --out`).
        buckets: Fixed sequence lengths; each example goes to the smallest that
            fits and longer ones are truncated to the largest.
        auto_buckets: When > 0, use this many lengths chosen at the quantiles
            of the train split's lengths instead of `buckets` (whose largest
            value stays the cap): less padding for a few more compilations.
        max_train_rows: Use at most this many train rows (0 = all).
        max_val_rows: Use at most this many validation rows (0 = all).
        rating_power: The train rows are redrawn (once, from the run seed) so
            rating r gets a share proportional to count(r) ** rating_power,
            with the same number of rows: 1 keeps the natural
            mix (78 % five-star on the real data), 0.5 is square-root
            sampling, 0 balances the ratings (`kit.data.rating_mix`).
    """

    dir: str = "data/prepared"
    buckets: tuple[int, ...] = (128, 256, 512)
    auto_buckets: int = 0
    max_train_rows: int = 0
    max_val_rows: int = 0
    rating_power: float = 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation and bookkeeping.

    Attributes:
        batch_size: Examples per micro-batch (global, across devices).
        grad_accum: Micro-batches per optimizer step.
        learning_rate: Peak learning rate after warm-up.
        warmup_steps: Linear warm-up, in optimizer steps.
        decay: `cosine`, `linear` or `constant` after warm-up.
        min_lr_ratio: Final learning rate as a share of the peak.
        clip_norm: Global gradient-norm clip (0 = off).
        weight_decay: AdamW decoupled weight decay (never on norms/biases).
        steps: Optimizer steps; 0 means derive from `epochs`.
        epochs: Passes over the train split when `steps` is 0.
        eval_every: Validation every N optimizer steps (0 = only at the end).
        checkpoint_every: Checkpoint every N optimizer steps (0 = never).
        keep_last: Checkpoints kept on disk.
        patience: Stop after this many evaluations without improvement (0 = off).
        log_every: Progress-bar/history granularity in optimizer steps.
        max_minutes: Time budget of one `finetune` call (a Kaggle/Colab
            session), loading included; 0 = none. Before a step would run
            past it, the run writes a checkpoint and stops with status
            `stopped_on_budget`; `--resume` continues it. Every call trains
            at least one step. Not part of what a resume must keep equal.
        loss_chunk: Compute the loss over chunks of this many positions, so the
            full float32 `(batch, length, vocab)` logits never exist at once
            (0 = off). Used only for vocabularies of 32,768 tokens or more
            (Gemma's 256,000), where the logits dominate memory.
        remat: Rematerialise the decoder blocks in the backward pass (about
            one more forward pass of compute for far fewer stored
            activations): `blocks`, `off`, or `auto` (on for models with more
            than 1e9 parameters, such as Gemma 2 2B, whose micro-batch holds
            at least 4,096 tokens, batch_size x the largest bucket; off for
            the tiny model and for Gemma 2 2B at 2 x 512, where it saves nothing).
        unlikelihood: Weight of a token-level unlikelihood term in the
            training loss, against tokens the review has already written
            (`kit.train.unlikelihood`; 0 = off). Needs the full logits, so
            only for vocabularies the loss is not chunked for (the tiny model).
        unlikelihood_context: Which earlier tokens the unlikelihood term
            pushes down: 0, every one the review has written; k > 0, only
            those that came after the same k tokens as now, which would
            repeat an earlier (k+1)-gram (docs/tiny-demo.md, "What limits
            repetition").
        unlikelihood_sentences: Weight of a sentence-start unlikelihood
            term: where a sentence begins, the first tokens of the review's
            earlier sentences are pushed down, the choice a repeated sentence
            starts with (0 = off; full logits, as above). It leaves
            `<end_of_turn>` and `<eos>` to the NLL, so it never teaches the
            model to stop instead of starting a new sentence.
    """

    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-4
    warmup_steps: int = 10
    decay: str = "cosine"
    min_lr_ratio: float = 0.1
    clip_norm: float = 1.0
    weight_decay: float = 0.01
    steps: int = 0
    epochs: float = 1.0
    eval_every: int = 50
    checkpoint_every: int = 50
    keep_last: int = 3
    patience: int = 0
    log_every: int = 1
    max_minutes: float = 0.0
    loss_chunk: int = 256
    remat: str = "auto"
    unlikelihood: float = 0.0
    unlikelihood_context: int = 0
    unlikelihood_sentences: float = 0.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionConfig:
    """How the model and batches are spread over devices.

    Attributes:
        mode: `auto` (single on one device, data parallel on several GPUs,
            a ModelParallel mesh sized to a TPU slice: `kit.model.distribution.choose_layout`),
            `single`, `data` (DataParallel) or `model` (ModelParallel over `mesh`).
        mesh: For `model`: axis sizes like `batch:1,model:8`.
    """

    mode: str = "auto"
    mesh: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """A whole fine-tuning run.

    Example:
        >>> cfg = load_config(None, ["lora.rank=4", "run.name=demo"])
        >>> cfg.lora.rank, cfg.run.name
        (4, 'demo')
    """

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def lora_active(self) -> bool:
        """Whether this run trains an adapter (False registers the base model)."""
        return self.lora.enabled and self.lora.rank > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly dict of every resolved value.

        Example:
            >>> Config().to_dict()["lora"]["targets"]
            'qv'
        """
        d = dataclasses.asdict(self)
        d["data"]["buckets"] = list(d["data"]["buckets"])
        return d


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML config and apply `section.key=value` overrides.

    Override values are parsed as TOML (`4`, `1e-3`, `true`, `[64, 128]`,
    `"x"`); anything that is not valid TOML is taken as a bare string, so
    `run.name=my-run` works without quotes.

    Args:
        path: TOML file, or None for the defaults.
        overrides: `section.key=value` strings, applied in order.

    Returns:
        The validated, frozen `Config`.

    Raises:
        UserError: missing file, bad TOML, unknown key, wrong type or value.

    Example:
        >>> load_config(None, ["train.learning_rate=1e-3"]).train.learning_rate
        0.001
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"Config file not found: {path}. Pass an existing TOML file, e.g. configs/tiny.toml.")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: invalid TOML ({e}). Fix the file's syntax.") from None
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a `Config` from nested dicts, checking every key and type.

    Example:
        >>> from_dict({"lora": {"rank": 2}}).lora.rank
        2
    """
    sections = {}
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for section, values in raw.items():
        if section not in fields:
            raise UserError(f"Unknown config section {section!r}. Known sections: {', '.join(fields)}.")
        if not isinstance(values, Mapping):
            raise UserError(f"Config section {section!r} must be a table, received {values!r}.")
        cls = fields[section].default_factory  # the section's dataclass
        sections[section] = _build_section(section, cls, values)
    return Config(**sections)


def _build_section(section: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise UserError(
                f"Unknown config key {section}.{key}. Known keys in [{section}]: {', '.join(sorted(known))}."
            )
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check `value` against a field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin is tuple:  # tuple[int, ...]
        (item, _) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise UserError(f"Config key {key} must be a list of {item.__name__}, received {value!r}.")
        return tuple(_coerce(key, item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(key, option, value)
            except UserError:
                continue
        raise UserError(f"Config key {key} has the wrong type: received {value!r}.")
    if hint is type(None):
        if value is None:
            return None
    elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif (
        hint is int
        and isinstance(value, int)
        and not isinstance(value, bool)
        or hint in (str, bool)
        and isinstance(value, hint)
    ):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise UserError(f"Config key {key} must be {name}, received {value!r} ({type(value).__name__}).")


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise UserError(f"--set expects section.key=value (e.g. lora.rank=8), received {item!r}.")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare string such as run.name=my-run
    section, name = parts
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise UserError(f"--set {key}: config section {section!r} is not a table.")
    table[name] = value


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise UserError(f"Config key {key} must be {expected}, received {value!r}.")


def _consistent(cfg: Config) -> None:
    """Values that are each in range but contradict one another (typically after a `--set`)."""
    t = cfg.train
    if t.patience > 0:
        _check(
            t.eval_every > 0,
            "train.eval_every",
            t.eval_every,
            f"≥ 1 when train.patience is {t.patience} (early stopping needs evaluations)",
        )
    if t.unlikelihood_context > 0:
        # The context only narrows the unlikelihood term's candidates: with the
        # term off it would be accepted and silently do nothing.
        _check(
            t.unlikelihood > 0,
            "train.unlikelihood",
            t.unlikelihood,
            f"> 0 when train.unlikelihood_context is {t.unlikelihood_context} (the context narrows that term)",
        )


def _validate(cfg: Config) -> None:
    """Range and choice checks that types alone cannot express."""
    _check(bool(cfg.run.name) and "/" not in cfg.run.name, "run.name", cfg.run.name, "a non-empty name without '/'")
    _check(cfg.model.dtype in DTYPES, "model.dtype", cfg.model.dtype, f"one of {', '.join(DTYPES)}")
    _check(bool(cfg.model.preset), "model.preset", cfg.model.preset, "a preset name or directory")
    _check(cfg.model.quantize in QUANTIZE, "model.quantize", cfg.model.quantize, f"one of {', '.join(QUANTIZE)}")
    _check(cfg.model.init in INITS, "model.init", cfg.model.init, "'pretrained' or 'random'")
    _check(cfg.lora.rank >= 0, "lora.rank", cfg.lora.rank, "≥ 0")
    _check(cfg.lora.alpha > 0, "lora.alpha", cfg.lora.alpha, "> 0")
    _check(cfg.lora.targets in LORA_TARGETS, "lora.targets", cfg.lora.targets, "'qv' or 'all'")
    b = cfg.data.buckets
    _check(
        len(b) > 0 and all(x > 1 for x in b) and list(b) == sorted(set(b)),
        "data.buckets",
        list(b),
        "a non-empty increasing list of lengths > 1",
    )
    _check(
        b[-1] <= MODEL_CONTEXT,
        "data.buckets",
        list(b),
        f"lengths within the model's {MODEL_CONTEXT}-token context (largest ≤ {MODEL_CONTEXT})",
    )
    _check(0 <= cfg.data.auto_buckets <= 32, "data.auto_buckets", cfg.data.auto_buckets, "0 (off) to 32")
    _check(cfg.data.max_train_rows >= 0, "data.max_train_rows", cfg.data.max_train_rows, "≥ 0")
    _check(cfg.data.max_val_rows >= 0, "data.max_val_rows", cfg.data.max_val_rows, "≥ 0")
    _check(
        0 <= cfg.data.rating_power <= 1,
        "data.rating_power",
        cfg.data.rating_power,
        "between 0 (balanced ratings) and 1 (the natural mix)",
    )
    t = cfg.train
    for name in ("batch_size", "grad_accum", "log_every", "keep_last"):
        _check(getattr(t, name) >= 1, f"train.{name}", getattr(t, name), "≥ 1")
    for name in ("warmup_steps", "steps", "eval_every", "checkpoint_every", "patience"):
        _check(getattr(t, name) >= 0, f"train.{name}", getattr(t, name), "≥ 0")
    _check(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "> 0")
    _check(t.decay in DECAYS, "train.decay", t.decay, f"one of {', '.join(DECAYS)}")
    _check(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", t.min_lr_ratio, "between 0 and 1")
    _check(t.clip_norm >= 0, "train.clip_norm", t.clip_norm, "≥ 0")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "≥ 0")
    _check(t.max_minutes >= 0, "train.max_minutes", t.max_minutes, "≥ 0 (0 = no time budget)")
    _check(t.loss_chunk >= 0, "train.loss_chunk", t.loss_chunk, "≥ 0 (positions per loss chunk; 0 = off)")
    _check(t.unlikelihood >= 0, "train.unlikelihood", t.unlikelihood, "≥ 0 (weight of the unlikelihood loss; 0 = off)")
    _check(
        t.unlikelihood_sentences >= 0,
        "train.unlikelihood_sentences",
        t.unlikelihood_sentences,
        "≥ 0 (weight of the sentence-start unlikelihood loss; 0 = off)",
    )
    _check(
        0 <= t.unlikelihood_context <= 16,
        "train.unlikelihood_context",
        t.unlikelihood_context,
        "between 0 and 16 (tokens of context; 0 = every earlier token)",
    )
    _check(t.remat in REMAT, "train.remat", t.remat, f"one of {', '.join(REMAT)}")
    _check(t.steps > 0 or t.epochs > 0, "train.epochs", t.epochs, "> 0 when train.steps is 0")
    _consistent(cfg)
    d = cfg.distribution
    _check(d.mode in DISTRIBUTIONS, "distribution.mode", d.mode, f"one of {', '.join(DISTRIBUTIONS)}")
    if d.mode == "model":
        _check(bool(d.mesh), "distribution.mesh", d.mesh, "set for mode 'model', e.g. 'batch:1,model:8'")

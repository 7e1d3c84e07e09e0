"""Fine-tuning configuration: frozen dataclasses, TOML files and `--set a.b=value` overrides.

A config file has one TOML table per dataclass below (`[run]`, `[model]`,
`[lora]`, `[data]`, `[train]`, `[distribution]`); every key is optional and
falls back to the default here. Each key is declared once, with
`kit.options.option` (help, choices, bounds): unknown keys, wrong types and
values out of range are rejected with a `UserError` naming the key, so a typo
never silently trains the wrong thing, and docs/config.md lists every key
(written from the same declarations by `kit.config_reference`). The resolved
config (`Config.to_dict()`) is saved in each run's `run.json`.

    [run]
    name = "tiny-lora"
    [lora]
    rank = 8
    targets = "all"
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.errors import UserError
from kit.options import Rule, check_options, option

LORA_TARGETS = ("qv", "all")
DTYPES = ("auto", "float32", "bfloat16", "float16")
INITS = ("pretrained", "random")
DECAYS = ("cosine", "linear", "constant")
DISTRIBUTIONS = ("auto", "single", "data", "model")
QUANTIZE = ("none", "int8")
REMAT = ("auto", "off", "blocks")
# Gemma 2's context, in tokens: no training sequence (a bucket) may be longer.
MODEL_CONTEXT = 8192


def _name_ok(name: str) -> bool:
    return bool(name) and "/" not in name


def _increasing(lengths: tuple[int, ...]) -> bool:
    return len(lengths) > 0 and all(x > 1 for x in lengths) and list(lengths) == sorted(set(lengths))


# Each field says what it does, and what it allows, in its `option(...)`: the
# checks (`kit.options.check_options`) and docs/config.md are derived from it.
@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Where the run is written."""

    name: str = option(
        "run", "Run name; the run dir is `<out_dir>/<name>`.", rules=[Rule(_name_ok, "a non-empty name without '/'")]
    )
    out_dir: str = option("runs", "Parent directory of run dirs.")
    seed: int = option(0, "Seed for data order and LoRA initialisation.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which base model to load."""

    preset: str = option(
        "models/tiny-base",
        "Built-in Gemma 2 or Gemma 3 preset (`gemma2_2b_en`, `gemma3_1b`), `kaggle://...`, `hf://...` or a "
        "local preset directory such as `models/tiny-base`.",
        rules=[Rule(bool, "a preset name or directory")],
    )
    dtype: str = option("auto", "`auto` (bfloat16 on GPU/TPU, float32 on CPU) or an explicit dtype.", choices=DTYPES)
    quantize: str = option(
        "none",
        "`none`, or `int8`: the frozen decoder-block kernels are quantized to int8 (Keras' int8 mode, "
        "`kit.model.quantize`) before the adapters are added, for 16 GB GPUs; the embedding stays float. "
        "Generation from the run uses the same int8 base; `kit export --to hf/keras` merges the adapter into "
        "the dequantised weights.",
        choices=QUANTIZE,
    )
    init: str = option(
        "pretrained",
        "`pretrained` (load the preset's weights) or `random`: the preset's architecture with random weights "
        "and no download, for plans, benchmarks and full-size tests (`kit.model.architectures`). Only ever "
        "what the config says; `run.json` records it.",
        choices=INITS,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraConfig:
    """Low-rank adapters; `enabled = false` (or rank 0) registers the base model as a run."""

    enabled: bool = option(True, "Train LoRA adapters at all.")
    rank: int = option(8, "Adapter rank (0 registers the base model as a run).", minimum=0)
    alpha: float = option(16.0, "Scale numerator: the update is `alpha / rank * B A`.", greater_than=0)
    targets: str = option(
        "qv",
        "`qv` (query and value projections, the official tutorial) or `all` (q, k, v, attention output and "
        "the three feed-forward layers).",
        choices=LORA_TARGETS,
    )
    factored: bool = option(
        True,
        "Compute each adapted layer as `x·W + s·(x·A)·B` instead of Keras' merged kernel `x·(W + s·A·B)`: no "
        "full-size kernel or kernel gradient per step. Same results within float rounding, same adapter file.",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The prepared dataset and how it is cut into batches."""

    dir: str = option("data/prepared", "Prepared dataset dir (`kit data prepare --out`).")
    buckets: tuple[int, ...] = option(
        (128, 256, 512),
        "Fixed sequence lengths; each example goes to the smallest that fits and longer ones are truncated to "
        "the largest.",
        rules=[
            Rule(_increasing, "a non-empty increasing list of lengths > 1"),
            Rule(
                lambda lengths: lengths[-1] <= MODEL_CONTEXT,
                f"lengths within the model's {MODEL_CONTEXT}-token context (largest ≤ {MODEL_CONTEXT})",
            ),
        ],
    )
    auto_buckets: int = option(
        0,
        "When > 0, use this many lengths chosen at the quantiles of the train split's lengths instead of "
        "`buckets` (whose largest value stays the cap): less padding for a few more compilations. 0 = off.",
        minimum=0,
        maximum=32,
    )
    max_train_rows: int = option(0, "Use at most this many train rows (0 = all).", minimum=0)
    max_val_rows: int = option(0, "Use at most this many validation rows (0 = all).", minimum=0)
    rating_power: float = option(
        1.0,
        "The train rows are redrawn (once, from the run seed) so rating r gets a share proportional to "
        "count(r) ** rating_power, with the same number of rows: 1 keeps the natural mix (78 % five-star on "
        "the real data), 0.5 is square-root sampling, 0 balances the ratings (`kit.data.rating_mix`).",
        minimum=0,
        maximum=1,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation and bookkeeping."""

    batch_size: int = option(8, "Examples per micro-batch (global, across devices).", minimum=1)
    grad_accum: int = option(1, "Micro-batches per optimizer step.", minimum=1)
    learning_rate: float = option(2e-4, "Peak learning rate after warm-up.", greater_than=0)
    warmup_steps: int = option(10, "Linear warm-up, in optimizer steps.", minimum=0)
    decay: str = option("cosine", "Learning-rate schedule after warm-up.", choices=DECAYS)
    min_lr_ratio: float = option(0.1, "Final learning rate as a share of the peak.", minimum=0, maximum=1)
    clip_norm: float = option(1.0, "Global gradient-norm clip (0 = off).", minimum=0)
    weight_decay: float = option(0.01, "AdamW decoupled weight decay (never on norms/biases).", minimum=0)
    steps: int = option(0, "Optimizer steps; 0 means derive from `epochs`.", minimum=0)
    epochs: float = option(1.0, "Passes over the train split when `steps` is 0.")
    eval_every: int = option(50, "Validation every N optimizer steps (0 = only at the end).", minimum=0)
    checkpoint_every: int = option(50, "Checkpoint every N optimizer steps (0 = never).", minimum=0)
    keep_last: int = option(3, "Checkpoints kept on disk.", minimum=1)
    patience: int = option(0, "Stop after this many evaluations without improvement (0 = off).", minimum=0)
    log_every: int = option(1, "Progress-bar/history granularity in optimizer steps.", minimum=1)
    max_minutes: float = option(
        0.0,
        "Time budget of one `finetune` call (a Kaggle/Colab session), loading included; 0 = none. Before a "
        "step would run past it, the run writes a checkpoint and stops with status `stopped_on_budget`; "
        "`--resume` continues it. Every call trains at least one step. Not part of what a resume must keep "
        "equal.",
        minimum=0,
    )
    loss_chunk: int = option(
        256,
        "Compute the loss over chunks of this many positions, so the full float32 `(batch, length, vocab)` "
        "logits never exist at once (0 = off). Used only for vocabularies of 32,768 tokens or more (Gemma's "
        "256,000), where the logits dominate memory.",
        minimum=0,
    )
    remat: str = option(
        "auto",
        "Rematerialise the decoder blocks in the backward pass (about one more forward pass of compute for far "
        "fewer stored activations): `blocks`, `off`, or `auto` (on for models with more than 1e9 parameters, "
        "such as Gemma 2 2B, whose micro-batch holds at least 4,096 tokens, batch_size x the largest bucket; "
        "off for the tiny model and for Gemma 2 2B at 2 x 512, where it saves nothing).",
        choices=REMAT,
    )
    unlikelihood: float = option(
        0.0,
        "Weight of a token-level unlikelihood term in the training loss, against tokens the review has "
        "already written (`kit.train.unlikelihood`; 0 = off). Needs the full logits, so only for vocabularies "
        "the loss is not chunked for (the tiny model).",
        minimum=0,
    )
    unlikelihood_context: int = option(
        0,
        "Which earlier tokens the unlikelihood term pushes down: 0, every one the review has written; k > 0, "
        "only those that came after the same k tokens as now, which would repeat an earlier (k+1)-gram "
        '(docs/tiny-demo.md, "What limits repetition").',
        minimum=0,
        maximum=16,
    )
    unlikelihood_sentences: float = option(
        0.0,
        "Weight of a sentence-start unlikelihood term: where a sentence begins, the first tokens of the "
        "review's earlier sentences are pushed down, the choice a repeated sentence starts with (0 = off; "
        "full logits, as above). It leaves `<end_of_turn>` and `<eos>` to the NLL, so it never teaches the "
        "model to stop instead of starting a new sentence.",
        minimum=0,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistributionConfig:
    """How the model and batches are spread over devices."""

    mode: str = option(
        "auto",
        "`auto` (single on one device, data parallel on several GPUs, a ModelParallel mesh sized to a TPU "
        "slice: `kit.model.distribution.choose_layout`), `single`, `data` (DataParallel) or `model` "
        "(ModelParallel over `mesh`).",
        choices=DISTRIBUTIONS,
    )
    mesh: str = option("", "For mode `model`: axis sizes like `batch:1,model:8`.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeyRule:
    """A rule between config keys, checked after each key's own `option` metadata.

    Values that are each in range can still contradict one another (typically
    after a `--set`); a `KeyRule` refuses that, naming one key.

    Attributes:
        key: The key the refusal names (`train.eval_every`).
        holds: True when a config keeps the rule.
        text: What `key` must be; `{c}` is the config, so the refusal can quote the other key.
        doc: The rule as docs/config.md lists it.

    Example:
        >>> KEY_RULES[0].doc
        '> 0 when train.steps is 0'
    """

    key: str
    holds: Callable[[Config], bool]
    text: str
    doc: str

    def check(self, cfg: Config) -> None:
        """Raise a `UserError` naming `key`, its value and what it must be, when `cfg` breaks the rule."""
        if not self.holds(cfg):
            section, name = self.key.split(".")
            value = getattr(getattr(cfg, section), name)
            raise UserError(f"Config key {self.key} must be {self.text.format(c=cfg)}, received {value!r}.")


KEY_RULES = (
    KeyRule(
        key="train.epochs",
        holds=lambda c: c.train.steps > 0 or c.train.epochs > 0,
        text="> 0 when train.steps is 0",
        doc="> 0 when train.steps is 0",
    ),
    KeyRule(
        key="train.eval_every",
        holds=lambda c: c.train.patience == 0 or c.train.eval_every > 0,
        text="≥ 1 when train.patience is {c.train.patience} (early stopping needs evaluations)",
        doc="≥ 1 when train.patience > 0 (early stopping needs evaluations)",
    ),
    # The context only narrows the unlikelihood term's candidates: with the term
    # off it would be accepted and silently do nothing.
    KeyRule(
        key="train.unlikelihood",
        holds=lambda c: c.train.unlikelihood_context == 0 or c.train.unlikelihood > 0,
        text="> 0 when train.unlikelihood_context is {c.train.unlikelihood_context} (the context narrows that term)",
        doc="> 0 when train.unlikelihood_context > 0 (the context narrows that term)",
    ),
    KeyRule(
        key="distribution.mesh",
        holds=lambda c: c.distribution.mode != "model" or bool(c.distribution.mesh),
        text="set for mode 'model', e.g. 'batch:1,model:8'",
        doc="set when distribution.mode is 'model', e.g. 'batch:1,model:8'",
    ),
)


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
        for field in dataclasses.fields(self):
            check_options(getattr(self, field.name), section=field.name)
        for rule in KEY_RULES:
            rule.check(self)

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
        kwargs[key] = _convert(hints[key], value)
    return cls(**kwargs)  # checked with the whole config, in `Config.__post_init__`


def _convert(hint: Any, value: Any) -> Any:
    """TOML's values as the field's type: a list as a tuple, an int as a float; anything else as it is.

    A value of the wrong type is left for `check_options` to refuse, naming the key.
    """
    if typing.get_origin(hint) is tuple and isinstance(value, list | tuple):
        (item, _) = typing.get_args(hint)
        return tuple(_convert(item, v) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


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

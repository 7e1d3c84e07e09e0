"""The architectures of the Gemma 2 presets the kit supports, and random-weight models built from them.

The table holds each preset's `GemmaBackbone` config (as KerasHub's
`config.json` for the preset has it) and its published parameter count, so
the kit can build the very model a run would load without downloading 5 GB:
`kit plan` compiles its train step, the full-size tests train it, and the
benchmarks time it. Nothing here imports Keras at module level, so
`bench/flops.py` can read the table from this file alone.

A model with random weights is only ever built when asked for
(`model.init = "random"`); a real run never falls back to it. Its tokenizer:
random weights give every token id the same meaning (none), so any
tokenizer whose ids fit the vocabulary is as good as Gemma's for memory,
speed and plumbing. The kit uses the committed tiny base's SentencePiece
model (`models/tiny-base`, 4,096 ids, all within Gemma's 256,000), which
needs no download; `run.json` records it. Token counts from it are not
Gemma's: Gemma's tokenizer splits Russian text differently.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.errors import UserError

# Shared by every Gemma 2 size (keras_hub `gemma2_*` presets).
_GEMMA2_COMMON = {
    "vocabulary_size": 256000,
    "head_dim": 256,
    "layer_norm_epsilon": 1e-6,
    "dropout": 0,
    "query_head_dim_normalize": True,
    "use_post_ffw_norm": True,
    "use_post_attention_norm": True,
    "final_logit_soft_cap": 30.0,
    "attention_logit_soft_cap": 50.0,
    "sliding_window_size": 4096,
    "use_sliding_window_attention": True,
}

# Gemma 2 2B (keras_hub gemma2_2b_en / transformers google/gemma-2-2b).
# `intermediate_dim` is KerasHub's: the total of the two gated projections,
# twice transformers' `intermediate_size`.
GEMMA2_2B = {
    **_GEMMA2_COMMON,
    "num_layers": 26,
    "num_query_heads": 8,
    "num_key_value_heads": 4,
    "hidden_dim": 2304,
    "intermediate_dim": 18432,
}

# Gemma 2 9B (gemma2_9b_en). Its queries are scaled by head_dim (256) like 2B's.
GEMMA2_9B = {
    **_GEMMA2_COMMON,
    "num_layers": 42,
    "num_query_heads": 16,
    "num_key_value_heads": 8,
    "hidden_dim": 3584,
    "intermediate_dim": 28672,
}

# preset -> (backbone config, published parameter count: keras_hub's preset metadata).
ARCHITECTURES: dict[str, tuple[dict, int]] = {
    "gemma2_2b_en": (GEMMA2_2B, 2_614_341_888),
    "gemma2_instruct_2b_en": (GEMMA2_2B, 2_614_341_888),
    "gemma2_9b_en": (GEMMA2_9B, 9_241_705_984),
    "gemma2_instruct_9b_en": (GEMMA2_9B, 9_241_705_984),
}

# Where the random-init tokenizer comes from: the committed tiny base, beside the package.
TINY_BASE = Path(__file__).resolve().parents[2] / "models" / "tiny-base"


def _config_keys() -> tuple[str, ...]:
    return tuple(GEMMA2_2B)


def backbone_config(preset: str) -> dict:
    """The `GemmaBackbone` config dict of `preset`: from the table, or a local preset dir's `config.json`.

    Raises:
        UserError: the preset is neither a known Gemma 2 preset nor a local preset dir.

    Example:
        >>> backbone_config("gemma2_2b_en")["num_layers"]
        26
        >>> backbone_config("gemma2_27b_en")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: The kit does not know the architecture of 'gemma2_27b_en': use one of gemma2_2b_en, gemma2_instruct_2b_en, gemma2_9b_en, gemma2_instruct_9b_en, or a local preset dir.
    """
    if preset in ARCHITECTURES:
        return dict(ARCHITECTURES[preset][0])
    for prefix in ("kaggle://", "hf://"):
        if preset.startswith(prefix):
            # kaggle://google/gemma-2/keras/gemma2_2b_en names its variation last.
            tail = preset.removeprefix(prefix).rstrip("/").split("/")
            known = [t for t in tail if t in ARCHITECTURES]
            if known:
                return dict(ARCHITECTURES[known[-1]][0])
    path = Path(preset) / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))["config"]
        except (ValueError, KeyError) as e:
            raise UserError(f"{path} is not a KerasHub backbone config ({e}); re-make the preset.") from None
        return {k: config[k] for k in _config_keys() if k in config}
    raise UserError(
        f"The kit does not know the architecture of {preset!r}: use one of {', '.join(ARCHITECTURES)}, "
        "or a local preset dir."
    )


def kv_heads(preset: str) -> int | None:
    """The key/value heads of `preset` when the kit knows its architecture, else None (bounds a model axis).

    Example:
        >>> kv_heads("gemma2_2b_en"), kv_heads("no/such/preset")
        (4, None)
    """
    try:
        return int(backbone_config(preset)["num_key_value_heads"])
    except (UserError, KeyError):
        return None


def published_params(preset: str) -> int | None:
    """The published parameter count of a known preset (None for others).

    Example:
        >>> published_params("gemma2_2b_en")
        2614341888
    """
    entry = ARCHITECTURES.get(preset)
    return entry[1] if entry else None


def random_tokenizer_source(preset: str) -> Path:
    """The preset dir whose tokenizer a random-weight `preset` uses: its own when local, else the tiny base."""
    own = Path(preset)
    if (own / "tokenizer.json").is_file():
        return own
    return TINY_BASE


def build_random_lm(preset: str, *, dtype: str, seed: int = 0, sequence_length: int = 512, abstract: bool = False):
    """A `GemmaCausalLM` with `preset`'s architecture and random weights (nothing downloaded).

    With `abstract=True` the backbone is built inside
    `keras.StatelessScope(initialize_variables=False)`: its variables have
    shapes, dtypes and initialisers but no values, so nothing is allocated
    (`kit plan` lowers the train step on them). Add LoRA to it inside such a
    scope too.

    Args:
        preset: A preset in `ARCHITECTURES`, or a local preset dir.
        dtype: Weights dtype (`float32`, `bfloat16`, `float16`).
        seed: Keras seed for the initialisers.
        sequence_length: The preprocessor's default length (training uses its own buckets).
        abstract: Leave the weights uninitialised (see above).

    Returns:
        The model; its tokenizer is described by `random_tokenizer_source`.

    Raises:
        UserError: unknown preset, or a tokenizer whose ids do not fit the vocabulary.

    Example:
        >>> lm = build_random_lm("models/tiny-base", dtype="float32")
        >>> lm.backbone.num_layers
        4
    """
    import keras
    import keras_hub

    config = backbone_config(preset)
    source = random_tokenizer_source(preset)
    tokenizer = keras_hub.models.GemmaTokenizer.from_preset(str(source))
    if tokenizer.vocabulary_size() > config["vocabulary_size"]:
        raise UserError(
            f"The tokenizer of {source} has {tokenizer.vocabulary_size()} ids, more than {preset!r}'s "
            f"{config['vocabulary_size']}: it cannot feed a random-weight {preset!r}."
        )
    keras.utils.set_random_seed(seed)
    if abstract:
        with keras.StatelessScope(initialize_variables=False):
            backbone = keras_hub.models.GemmaBackbone(**config, dtype=dtype)
    else:
        backbone = keras_hub.models.GemmaBackbone(**config, dtype=dtype)
    # The task is made outside any stateless scope: its constructor compiles a
    # default optimizer, whose step counter cannot be deferred (no weights of its own).
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer=tokenizer, sequence_length=sequence_length)
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)


def tokenizer_note(preset: str) -> str:
    """How a random-weight run of `preset` tokenises text, for `run.json` and the model card.

    Example:
        >>> tokenizer_note("gemma2_2b_en").startswith("models/tiny-base")
        True
    """
    source = random_tokenizer_source(preset)
    where = "models/tiny-base" if source == TINY_BASE else str(preset)
    if source == TINY_BASE and Path(preset) != TINY_BASE:
        return f"{where} SentencePiece model (its ids are a subset of {preset}'s vocabulary; random weights)"
    return f"{where} (the preset's own tokenizer; random weights)"

"""The architectures of the Gemma presets the kit supports, and random-weight models built from them.

The tables (one per family, `kit.families`) hold each preset's backbone
config (as KerasHub's `config.json` for the preset has it) and its published
parameter count, so
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
from kit.families import ARCHITECTURES, architecture, family_of_config, family_of_preset
from kit.families.gemma2 import GEMMA2_2B, GEMMA2_9B  # noqa: F401  (the tables' examples and tests use them)
from kit.families.gemma3 import GEMMA3_1B, GEMMA3_4B, GEMMA3_270M  # noqa: F401

# Where the random-init tokenizer comes from: the committed tiny base, beside the package.
TINY_BASE = Path(__file__).resolve().parents[2] / "models" / "tiny-base"


def backbone_config(preset: str) -> dict:
    """The backbone config dict of `preset`: from a family's table, or a local preset dir's `config.json`.

    Raises:
        UserError: the preset is neither a known preset nor a local preset dir.

    Example:
        >>> backbone_config("gemma2_2b_en")["num_layers"], backbone_config("gemma3_1b")["sliding_window_size"]
        (26, 512)
        >>> backbone_config("gemma2_27b_en")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: The kit does not know the architecture of 'gemma2_27b_en': use one of gemma2_2b_en, gemma2_instruct_2b_en, gemma2_9b_en, gemma2_instruct_9b_en, gemma3_270m, gemma3_instruct_270m, gemma3_1b, gemma3_instruct_1b, gemma3_4b_text, gemma3_instruct_4b_text, or a local preset dir.
    """
    if preset in ARCHITECTURES:
        return architecture(preset)[0]
    for prefix in ("kaggle://", "hf://"):
        if preset.startswith(prefix):
            # kaggle://google/gemma-2/keras/gemma2_2b_en names its variation last.
            tail = preset.removeprefix(prefix).rstrip("/").split("/")
            known = [t for t in tail if t in ARCHITECTURES]
            if known:
                return architecture(known[-1])[0]
    path = Path(preset) / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))["config"]
        except (ValueError, KeyError) as e:
            raise UserError(f"{path} is not a KerasHub backbone config ({e}); re-make the preset.") from None
        keys = family_of_config(config).CONFIG_KEYS
        return {k: config[k] for k in keys if k in config}
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


def layout_of(preset: str):
    """The ModelParallel layout-map function of `preset`'s family, or None (the shared Gemma rules) when it cannot be told.

    Example:
        >>> layout_of("gemma3_1b").__module__, layout_of("no/such/preset")
        ('kit.families.gemma3', None)
    """
    try:
        return family_of_preset(preset).layout_map
    except UserError:
        return None


def published_params(preset: str) -> int | None:
    """The published parameter count of a known preset (None for others).

    Example:
        >>> published_params("gemma2_2b_en")
        2614341888
    """
    entry = ARCHITECTURES.get(preset)
    return entry[1] if entry else None


def random_tokenizer_proto(preset: str) -> bytes:
    """The SentencePiece model a random-weight `preset` tokenises with (see `random_tokenizer_source`)."""
    source = random_tokenizer_source(preset)
    return (source / "assets" / "tokenizer" / "vocabulary.spm").read_bytes()


def random_tokenizer_source(preset: str) -> Path:
    """The preset dir whose tokenizer a random-weight `preset` uses: its own when local, else the tiny base."""
    own = Path(preset)
    if (own / "tokenizer.json").is_file():
        return own
    return TINY_BASE


def build_random_lm(preset: str, *, dtype: str, seed: int = 0, sequence_length: int = 512, abstract: bool = False):
    """A causal LM of `preset`'s family and architecture with random weights (nothing downloaded).

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

    config = backbone_config(preset)
    family = family_of_config(config)
    source = random_tokenizer_source(preset)
    tokenizer = family.tokenizer(random_tokenizer_proto(preset))
    if tokenizer.vocabulary_size() > config["vocabulary_size"]:
        raise UserError(
            f"The tokenizer of {source} has {tokenizer.vocabulary_size()} ids, more than {preset!r}'s "
            f"{config['vocabulary_size']}: it cannot feed a random-weight {preset!r}."
        )
    keras.utils.set_random_seed(seed)
    if abstract:
        with keras.StatelessScope(initialize_variables=False):
            backbone = family.build_backbone(config, dtype)
    else:
        backbone = family.build_backbone(config, dtype)
    # The task is made outside any stateless scope: its constructor compiles a
    # default optimizer, whose step counter cannot be deferred (no weights of its own).
    return family.causal_lm(backbone, tokenizer, sequence_length)


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

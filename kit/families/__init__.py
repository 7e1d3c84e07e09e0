"""Model families: everything that differs between Gemma 2 and Gemma 3, one module each.

A family module (`gemma2.py`, `gemma3.py`) is the one place for its KerasHub
classes, its architecture table, what `lora.targets` names, its stop tokens
and chat template, its ModelParallel layout, its KV-cache layout and its
Hugging Face config and weight mapping. The rest of the kit asks this
package which family a preset, a backbone config or a loaded model belongs
to and calls the family; nothing outside these modules names a family.
Adding a family is one new module listed in `FAMILIES` (and its tests):
`tests/model/test_families.py` checks that each module defines every name
in `REQUIRED`.

Nothing here imports Keras, JAX or TensorFlow at module level (KerasHub is
imported inside the functions that build or inspect a model), so the
benchmarks' Hugging Face side and `bench/flops.py` read the tables without
the Keras stack.

Example:
    >>> family_of_preset("gemma3_1b").NAME, family_of_preset("gemma2_2b_en").NAME
    ('gemma3', 'gemma2')
    >>> architecture("gemma3_270m")[1]
    268098176
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from kit.errors import UserError
from kit.families import gemma2, gemma3

# Every family the kit supports, oldest first. A preset whose family is not
# recognised by name is taken as the first family that owns its config.
FAMILIES: tuple[ModuleType, ...] = (gemma2, gemma3)

# The names each family module defines (tests/model/test_families.py checks them).
REQUIRED = (
    "NAME",
    "TITLE",
    "HF_MODEL_TYPES",
    "ARCHITECTURES",
    "CONFIG_KEYS",
    "HF_BASE_MODELS",
    "KAGGLE_MODEL",
    "LORA_TARGET_LAYERS",
    "STOP_PIECES",
    "CHAT_TEMPLATE",
    "classes",
    "owns_config",
    "owns_name",
    "tiny_config",
    "build_backbone",
    "tokenizer",
    "tokenizer_from_preset",
    "causal_lm",
    "load",
    "empty_cache",
    "layout_map",
    "ffw_width",
    "intermediate_dim",
    "param_count",
    "hf_config_from",
    "hf_config",
    "hf_weights",
)

# preset -> (backbone config, published parameter count), every family's.
ARCHITECTURES: dict[str, tuple[dict, int]] = {p: e for f in FAMILIES for p, e in f.ARCHITECTURES.items()}


def family_named(name: str) -> ModuleType:
    """The family module called `name` (`gemma2`, `gemma3`).

    Example:
        >>> family_named("gemma3").TITLE
        'Gemma 3'
    """
    for family in FAMILIES:
        if name == family.NAME:
            return family
    raise UserError(f"Unknown model family {name!r}: the kit knows {', '.join(f.NAME for f in FAMILIES)}.")


def family_of_config(config: dict) -> ModuleType:
    """The family whose KerasHub backbone takes `config` (a backbone config dict).

    Example:
        >>> family_of_config(architecture("gemma3_1b")[0]).NAME
        'gemma3'
    """
    for family in reversed(FAMILIES):  # newest first: a later family's config adds keys
        if family.owns_config(config):
            return family
    raise UserError("The backbone config belongs to no model family the kit knows (Gemma 2, Gemma 3).")


def family_of_backbone(backbone) -> ModuleType:
    """The family of a built KerasHub backbone.

    Example:
        >>> family_of_backbone(lm.backbone).NAME  # doctest: +SKIP
        'gemma2'
    """
    for family in FAMILIES:
        if isinstance(backbone, family.classes().backbone):
            return family
    raise UserError(f"{type(backbone).__name__} is not a backbone of a model family the kit knows.")


def family_of(lm) -> ModuleType:
    """The family of a loaded causal LM (its backbone's).

    Example:
        >>> family_of(lm).NAME  # doctest: +SKIP
        'gemma3'
    """
    return family_of_backbone(lm.backbone)


def family_of_preset(preset: str) -> ModuleType:
    """The family of a preset: a known name or hub handle, or a local KerasHub / Hugging Face dir.

    Raises:
        UserError: the family cannot be told (an unknown name, or a dir without a config).

    Example:
        >>> family_of_preset("kaggle://keras/gemma3/keras/gemma3_instruct_1b/3").NAME
        'gemma3'
        >>> family_of_preset("hf://google/gemma-3-270m").NAME
        'gemma3'
    """
    path = Path(preset)
    if (path / "config.json").is_file():
        return _family_of_dir(path)
    tail = preset.removeprefix("kaggle://").removeprefix("hf://").rstrip("/").split("/")
    for part in reversed(tail):
        for family in reversed(FAMILIES):
            if family.owns_name(part):
                return family
    raise UserError(
        f"The kit cannot tell the model family of {preset!r}: use a Gemma 2 or Gemma 3 preset "
        "(e.g. gemma2_2b_en, gemma3_1b), a kaggle:// or hf:// handle that names one, or a local preset dir."
    )


def _family_of_dir(path: Path) -> ModuleType:
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{config_file} is not JSON ({e}); re-make the preset.") from None
    if "model_type" in config:  # a Hugging Face checkpoint
        model_type = str(config["model_type"])
        for family in reversed(FAMILIES):
            if model_type in family.HF_MODEL_TYPES:
                return family
        raise UserError(f"{config_file} is a Hugging Face {model_type!r} model: the kit supports Gemma 2 and Gemma 3.")
    inner = config.get("config")
    if not isinstance(inner, dict):
        raise UserError(f"{config_file} is neither a KerasHub nor a Hugging Face model config; re-make the preset.")
    return family_of_config(inner)


def architecture(preset: str) -> tuple[dict, int]:
    """`(backbone config, published parameter count)` of a preset in some family's table.

    Raises:
        UserError: no family's table has it.

    Example:
        >>> architecture("gemma2_2b_en")[0]["num_layers"]
        26
    """
    if preset in ARCHITECTURES:
        config, params = ARCHITECTURES[preset]
        return dict(config), params
    raise UserError(f"The kit does not know the architecture of {preset!r}: use one of {', '.join(ARCHITECTURES)}.")

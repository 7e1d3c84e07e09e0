"""The one model loader: a Gemma causal LM from any preset source or run dir, in the dtype asked for.

Sources (all through `keras_hub.models.CausalLM.from_preset`):
built-in names (`gemma2_2b_en`), `kaggle://owner/model/keras/variant/N`,
`hf://owner/repo` (KerasHub converts Hugging Face checkpoints) and local preset
directories, including the tiny base written by `kit tiny`. `load_model` also
takes a run dir (`runs/<name>`): its base preset plus its LoRA adapter, if any.

Offline, a Kaggle model needs no download when a copy is on disk: attached
to a Kaggle notebook (`/kaggle/input/<model>/<framework>/<variation>/<version>`,
or `KAGGLE_CACHE_MOUNT_FOLDER`) or in kagglehub's cache (`KAGGLEHUB_CACHE`,
default `~/.cache/kagglehub`). `local_preset` finds it and the preset loads
from that directory; a Hugging Face repo in the Hub's local cache loads from
its snapshot when the Hub is unreachable. Only when no copy exists does the
network pre-check fail, naming what to attach or enable.

Credentials come from the environment or a `.env` file and are never printed:
`KAGGLE_USERNAME`/`KAGGLE_KEY` for Kaggle, `HUGGING_FACE_ACCESS_TOKEN` (or
`HF_TOKEN`, the name `huggingface_hub` reads) for the Hub. A failed download
becomes one `UserError` line naming the variable to set or licence to accept.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import keras_hub

import kit  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from kit.errors import UserError
from kit.families import FAMILIES, family_of_preset
from kit.model.lora import load_adapter
from kit.model.quantize import quantize_base, run_quantize
from kit.model.tiny import verify_tiny_base
from kit.runs import RunInfo, RunPaths

MISSING_MODEL_HINT = (
    "Make it with `make demo` (writes runs/tiny-base and runs/tiny-lora) or `kit finetune --config configs/tiny.toml`"
)
TINY_HINT = "To work offline use the tiny base: `kit tiny` then `kit finetune --config configs/tiny.toml`."
_LICENCE = {
    "kaggle": "https://www.kaggle.com/models/google/gemma-2",
    "hf": "https://huggingface.co/google/gemma-2-2b",
}


def load_credentials() -> None:
    """Read `.env` (without overriding the environment) and align token variable names.

    keras-hub's Hugging Face path goes through `huggingface_hub`, which reads
    `HF_TOKEN`; we also accept `HUGGING_FACE_ACCESS_TOKEN` (Kaggle/Colab secret
    name used in Gemma tutorials) and copy one to the other. Values are never
    logged.

    Example:
        >>> load_credentials()  # no output, never prints secrets
    """
    try:
        from dotenv import load_dotenv

        load_dotenv(override=False)
    except ImportError:  # python-dotenv is a dependency; stay usable without it
        pass
    hf = os.environ.get("HUGGING_FACE_ACCESS_TOKEN") or os.environ.get("HF_TOKEN")
    if hf:
        os.environ.setdefault("HF_TOKEN", hf)
        os.environ.setdefault("HUGGING_FACE_ACCESS_TOKEN", hf)


def default_dtype() -> str:
    """bfloat16 on GPU/TPU (half the memory, native speed), float32 on CPU (bf16 is slow there).

    Example:
        >>> default_dtype() in ("float32", "bfloat16")
        True
    """
    import jax

    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def resolve_dtype(dtype: str) -> str:
    """Map `auto` to `default_dtype()`; pass explicit dtypes through.

    Example:
        >>> resolve_dtype("float32")
        'float32'
    """
    return default_dtype() if dtype == "auto" else dtype


def preset_kind(preset: str) -> str:
    """Classify a preset string: `local`, `kaggle`, `hf`, `builtin` or `unknown`.

    Example:
        >>> preset_kind("hf://google/gemma-2-2b"), preset_kind("gemma2_2b_en")
        ('hf', 'builtin')
    """
    if preset.startswith("kaggle://"):
        return "kaggle"
    if preset.startswith("hf://"):
        return "hf"
    if Path(preset).is_dir():
        return "local"
    if any(preset in f.classes().causal_lm.presets for f in FAMILIES):
        return "builtin"  # built-in Gemma presets are downloaded from Kaggle
    return "unknown"


def load_causal_lm(preset: str, *, dtype: str = "auto") -> keras_hub.models.CausalLM:
    """Load a causal LM (backbone + tokenizer + preprocessor) from `preset`.

    Args:
        preset: Built-in name, `kaggle://...`, `hf://...` or local preset dir.
        dtype: `auto`, `float32`, `bfloat16` or `float16`.

    Returns:
        The model, with weights in `dtype`.

    Raises:
        UserError: the preset does not exist, the network is unreachable or
            the credentials/licence are missing.

    Example:
        >>> lm = load_causal_lm("models/tiny-base")  # doctest: +SKIP
    """
    load_credentials()
    kind = preset_kind(preset)
    if kind == "unknown":
        raise UserError(
            f"Unknown model preset {preset!r}: not a local directory, a built-in Gemma preset "
            "(e.g. gemma2_2b_en), kaggle://... or hf://.... "
            f"{'Run `kit tiny` first. ' if 'tiny' in preset else ''}"
        )
    source = preset
    if kind in ("kaggle", "builtin", "hf"):
        source = preset_source(preset, kind)
    if kind == "local":
        verify_tiny_base(preset)  # a committed or `kit tiny` base: its files match their checksums
    try:
        family = family_of_preset(str(source) if Path(str(source)).is_dir() else preset)
        return family.load(str(source), resolve_dtype(dtype))
    except UserError:
        raise
    except Exception as e:  # keras-hub surfaces network/auth problems as many types
        raise UserError(explain_load_failure(preset, kind, e)) from None


def preset_source(preset: str, kind: str) -> str:
    """What to load a remote `preset` from: a local copy when one exists, else `preset` once its host answers.

    A local copy (an attached Kaggle model, kagglehub's cache, or for `hf://` the
    Hugging Face cache when the Hub is unreachable) needs no network. When there
    is neither a copy nor an answer, it fails in seconds rather than after a
    minute of the download client's retries.

    Args:
        preset: A `kaggle://`, built-in or `hf://` preset.
        kind: Its `preset_kind` (`"kaggle"`, `"builtin"` or `"hf"`).

    Returns:
        The local directory to load from, or `preset` itself.

    Raises:
        UserError: No local copy and no network connection to the host.

    Example:
        >>> preset_source("kaggle://google/gemma-2/keras/gemma2_2b_en/1", "kaggle")  # doctest: +SKIP
        'kaggle://google/gemma-2/keras/gemma2_2b_en/1'
    """
    if kind != "hf":
        local = local_preset(preset)
        if local is not None:
            print(f"Loading {preset} from the local copy {local} (no download).", file=sys.stderr)
            return str(local)
    host = "huggingface.co" if kind == "hf" else "www.kaggle.com"
    if _reachable(host):
        return preset
    if kind == "hf":
        snapshot = _hf_snapshot(preset)
        if snapshot is not None:
            print(f"Loading {preset} from the Hugging Face cache {snapshot} (the Hub is unreachable).", file=sys.stderr)
            return str(snapshot)
        raise UserError(
            f"Cannot load {preset!r}: no network connection to huggingface.co and no copy in the Hugging Face "
            f"cache. Connect to the internet (on Kaggle: notebook settings, Internet on) or download it once "
            f"while online. {TINY_HINT}"
        )
    raise UserError(f"Cannot load {preset!r}: no network connection to www.kaggle.com and {_attach_hint(preset)}")


def _reachable(host: str) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=5):
            return True
    except OSError:
        return False


def kaggle_handle(preset: str) -> tuple[str, str, str, str, str | None] | None:
    """`(owner, model, framework, variation, version or None)` of a `kaggle://` or built-in preset.

    Example:
        >>> kaggle_handle("gemma2_2b_en")
        ('keras', 'gemma2', 'keras', 'gemma2_2b_en', '2')
        >>> kaggle_handle("kaggle://google/gemma-2/keras/gemma2_2b_en")
        ('google', 'gemma-2', 'keras', 'gemma2_2b_en', None)
    """
    if not preset.startswith("kaggle://"):
        entry = next(
            (f.classes().causal_lm.presets[preset] for f in FAMILIES if preset in f.classes().causal_lm.presets), None
        )
        if entry is None or not str(entry.get("kaggle_handle", "")).startswith("kaggle://"):
            return None
        preset = entry["kaggle_handle"]
    parts = preset.removeprefix("kaggle://").strip("/").split("/")
    if len(parts) not in (4, 5):
        return None
    return (*parts[:4], parts[4] if len(parts) == 5 else None)


def kaggle_input_dir() -> Path:
    """Where Kaggle mounts a notebook's attached inputs (`KAGGLE_CACHE_MOUNT_FOLDER`, default `/kaggle/input`)."""
    return Path(os.environ.get("KAGGLE_CACHE_MOUNT_FOLDER", "/kaggle/input"))


def kagglehub_cache_dir() -> Path:
    """kagglehub's download cache (`KAGGLEHUB_CACHE`, default `~/.cache/kagglehub`)."""
    return Path(os.environ.get("KAGGLEHUB_CACHE", Path.home() / ".cache" / "kagglehub"))


def local_preset(preset: str) -> Path | None:
    """A complete local copy of a Kaggle (or built-in) preset, or None.

    Looks, in order, for the handle's exact version and then (when the preset
    names no version, or is a built-in name whose attached version may
    differ) its newest version: first among the notebook's attached models
    (`<input>/<model>/<framework>/<variation>/<version>`, any model slug for a
    built-in name), then in kagglehub's cache (complete downloads only). A
    copy counts when it holds a KerasHub `config.json`.

    Example:
        >>> local_preset("no_such_preset") is None
        True
    """
    handle = kaggle_handle(preset)
    if handle is None:
        return None
    owner, model, framework, variation, version = handle
    builtin = not preset.startswith("kaggle://")
    inputs, cache = kaggle_input_dir(), kagglehub_cache_dir() / "models" / owner / model / framework / variation
    roots = [inputs / model / framework / variation, inputs / "models" / owner / model / framework / variation]
    if builtin:  # an attached Gemma 2 under another model slug (google/gemma-2) is the same variation
        roots += sorted(inputs.glob(f"*/{framework}/{variation}"))
    exact = [r / version for r in roots] if version else []
    cached = [cache / version] if version and (cache / f"{version}.complete").is_file() else []
    for path in [*exact, *cached]:
        if (path / "config.json").is_file():
            return path
    if version and not builtin:
        return None  # an explicit version asks for that one only
    newest = [p for r in roots for p in _versions(r)]
    newest += [p for p in _versions(cache) if (cache / f"{p.name}.complete").is_file()]
    return max(newest, key=lambda p: int(p.name)) if newest else None


def _versions(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.name.isdigit() and (p / "config.json").is_file()]


def _attach_hint(preset: str) -> str:
    """What to attach or enable for `preset`, in words."""
    handle = kaggle_handle(preset)
    where = f"{kaggle_input_dir()} (attached models) or {kagglehub_cache_dir()} (kagglehub's cache)"
    if handle is None:
        return f"no local copy in {where}. Turn Internet on in the notebook settings. {TINY_HINT}"
    owner, model, framework, variation, version = handle
    family = next((f for f in FAMILIES if f.owns_name(variation)), None)
    slug = family.KAGGLE_MODEL if family is not None else f"{owner}/{model}"
    return (
        f"no local copy in {where}. On Kaggle, attach the model (Add Input → Models → {slug}, framework "
        f"{framework.capitalize()}, variation {variation}) or turn Internet on in the notebook settings; "
        f"elsewhere connect to the internet. {TINY_HINT}"
    )


def _hf_snapshot(preset: str) -> Path | None:
    """The local snapshot of an `hf://` repo in the Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(preset.removeprefix("hf://").strip("/"), local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or huggingface_hub missing
        return None


def explain_load_failure(preset: str, kind: str, error: BaseException) -> str:
    """Turn a keras-hub/kagglehub/huggingface_hub exception into one actionable line.

    Example:
        >>> explain_load_failure("gemma2_2b_en", "builtin", RuntimeError("401 Unauthorized"))[:36]
        "Cannot load 'gemma2_2b_en': Kaggle r"
    """
    if type(error).__name__ == "IndivisibleError":
        # The active ModelParallel mesh cannot split a weight evenly. Gemma 2 2B
        # has 4 key/value heads, so its model axis can be at most 4 wide.
        detail = str(error).split("(full shape", 1)[0].strip()
        return (
            f"The distribution.mesh cannot shard {preset!r}: {detail}. Choose a model axis that "
            "divides the number of key/value heads (Gemma 2 2B: 4, e.g. 'batch:2,model:4')."
        )
    text = f"{type(error).__name__}: {error}".lower()
    auth = any(
        s in text for s in ("401", "403", "unauthori", "forbidden", "gated", "permission", "credential", "access")
    )
    network = any(s in text for s in ("connection", "resolve", "timed out", "timeout", "network", "name or service"))
    if kind in ("kaggle", "builtin"):
        if auth:
            return (
                f"Cannot load {preset!r}: Kaggle refused access. Set KAGGLE_USERNAME and KAGGLE_KEY "
                f"(environment or .env) and accept the Gemma licence at {_LICENCE['kaggle']}."
            )
        if network:
            return f"Cannot load {preset!r}: Kaggle is unreachable (no network). {TINY_HINT}"
    if kind == "hf":
        if auth or "no config.json" in text:
            return (
                f"Cannot load {preset!r}: the Hugging Face Hub refused access or the repo does not exist. "
                "Set HUGGING_FACE_ACCESS_TOKEN (or HF_TOKEN) and accept the licence at "
                f"{_LICENCE['hf']}."
            )
        if network:
            return f"Cannot load {preset!r}: the Hugging Face Hub is unreachable (no network). {TINY_HINT}"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"Cannot load {preset!r}: {first}"


def load_run(path: str | Path, *, dtype: str | None = None) -> keras_hub.models.CausalLM:
    """The causal LM of a run dir: its base preset plus its LoRA adapter, if any.

    Args:
        path: Run dir, e.g. `runs/tiny-lora`.
        dtype: Override the dtype recorded in `run.json`.

    Raises:
        UserError: the run, its preset or its adapter file is missing.

    Example:
        >>> lm = load_run("runs/tiny-lora")  # doctest: +SKIP
        >>> lm.generate("<start_of_turn>user\\n...", max_length=64)  # doctest: +SKIP
    """
    paths = RunPaths(path)
    info = RunInfo.read(paths.root)
    if info.init == "random":
        raise UserError(
            f"{paths.root} was trained on random weights (model.init = 'random', for plans and tests): its "
            f"adapter fits no real {info.preset}. Fine-tune with model.init = 'pretrained' to get a usable model."
        )
    lm = load_causal_lm(info.preset, dtype=dtype or info.dtype or "auto")
    quantize_base(lm, run_quantize(info.config))  # the adapter trained on this (int8) base
    if info.adapter:
        adapter = paths.root / info.adapter
        if not adapter.is_file():
            raise UserError(f"{adapter} is missing; re-run `kit finetune` for {paths.name}.")
        lora = info.lora
        factored = (info.config.get("lora") or {}).get("factored", True)
        load_adapter(lm, adapter, rank=lora.rank, alpha=lora.alpha, targets=lora.targets, factored=factored)
    return lm


def load_model(model: str, *, dtype: str | None = None) -> keras_hub.models.CausalLM:
    """Load a run dir (base or base + adapter) or any preset as a causal LM.

    Args:
        model: `runs/<name>`, a local preset dir, a built-in preset name, `kaggle://...` or `hf://...`.
        dtype: Override the dtype (default: the run's, or `auto`).

    Raises:
        UserError: the model does not exist; the message names the command that makes it.

    Example:
        >>> load_model("runs/no-such-run")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Model not found: runs/no-such-run. Make it with `make demo` (writes runs/tiny-base and runs/tiny-lora) or `kit finetune --config configs/tiny.toml`.
    """
    path = Path(model)
    if RunPaths(path).run_json.is_file():
        return load_run(path, dtype=dtype)
    if preset_kind(model) == "unknown":
        if "/" in model or path.exists() or model.startswith(("runs", "models")):
            raise UserError(f"Model not found: {model}. {MISSING_MODEL_HINT}.")
        raise UserError(
            f"Unknown model {model!r}: give a run dir (runs/<name>), a preset dir, a built-in "
            f"preset (e.g. gemma2_2b_en), kaggle://... or hf://.... {MISSING_MODEL_HINT}."
        )
    return load_causal_lm(model, dtype=dtype or "auto")

"""`kit export`: take a run elsewhere, as a merged KerasHub preset or a Hugging Face checkpoint of its family.

* `keras`: `save_to_preset` of the run's model. Keras folds LoRA into the
  kernels when it saves (`kernel + alpha/rank * A @ B`), so the preset loads
  with plain `keras_hub.models.CausalLM.from_preset(dir)`, no adapter, same logits.
* `hf`: a `transformers` checkpoint (`Gemma2ForCausalLM`, `Gemma3ForCausalLM`), written by
  `kit.model.hf_checkpoint` (config, weight mapping, tokenizer files, shards).
* `peft`: the adapter alone, as a PEFT LoRA for the Hugging Face base
  of its family (`kit.model.peft_export`: exact, never approximated).

The `hf` and `peft` exports carry a model card (`README.md`, `kit.model.card`)
and the `hf` export Gemma's chat template and a `generation_config.json`
that stops on `<end_of_turn>` and `<eos>`.

Outputs are written through `kit.atomic.output_dir` (never over a run or a foreign dir); `--push` uploads to the Hugging Face
Hub (`huggingface_hub.upload_folder`, or `keras_hub.upload_preset` for a
keras export) or Kaggle Models (`keras_hub.upload_preset`), with the
credentials `kit.model.load_credentials` reads.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np

import kit  # noqa: F401
from kit.atomic import MARKER, OutputKind, check_output_dir, output_dir, write_json
from kit.errors import UserError
from kit.model.hf_checkpoint import hf_config, write_hf_checkpoint
from kit.runs import RUN  # noqa: F401  (registers the run kind, so `--out runs/X` is named as a run)

EXPORT_INFO = "kit_export.json"
FORMATS = ("keras", "hf", "peft")
# An export dir; one from before the kit's marker is known by its kit_export.json.
EXPORT = OutputKind("export", "kit export", legacy=(EXPORT_INFO,))


def export_run(
    run: str | Path,
    to: str,
    out: str | Path,
    *,
    dtype: str | None = None,
    base_model: str | None = None,
    evaluation: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Export the model of `run` to `out` in format `to`: merged (`keras`, `hf`) or the adapter alone (`peft`).

    Args:
        run: Run dir, e.g. `runs/tiny-lora`.
        to: `keras` (merged KerasHub preset), `hf` (transformers checkpoint
            of the run's family) or `peft` (PEFT LoRA adapter for the HF base).
        out: Output directory: a new or empty one, or (with `overwrite`) an
            earlier export, replaced atomically. A run dir, any other
            non-empty directory and a file are refused before the model loads.
        dtype: Weights dtype of the export (default: the run's; `peft`: float32).
        base_model: The HF base a `peft` adapter names (`base_model_name_or_path`):
            a Hub repo or the dir of `kit export --to hf` of the base run.
            Default: the Hub repo of the run's Gemma preset, if it has one.
        evaluation: A markdown evaluation headline for the model card (`hf`, `peft`).
        overwrite: Replace an earlier export at `out`.

    Returns:
        What was written (also saved as `kit_export.json` in `out`).

    Example:
        >>> export_run("runs/tiny-lora", "hf", "exports/tiny-lora-hf")  # doctest: +SKIP
    """
    from kit.model.card import card_text, write_card
    from kit.model.loader import load_run
    from kit.model.peft_export import hf_base_model, write_peft_adapter
    from kit.runs import RunInfo

    if to not in FORMATS:
        raise UserError(f"--to must be one of {', '.join(FORMATS)}. Received: --to={to!r}")
    info_run = RunInfo.read(run)
    if to == "peft" and not info_run.adapter:
        raise UserError(
            f"{run} is a base-model run (no adapter): nothing to export as PEFT. Use --to hf for the base itself."
        )
    check_output_dir(out, EXPORT, overwrite=overwrite)
    lm = load_run(run, dtype=None if to == "peft" else dtype)
    from kit.model.quantize import run_quantize  # here: bench/hf_gemma2 loads this module without kit.model

    quantized = run_quantize(info_run.config)
    if quantized != "none" and to != "peft":
        # An int8 base cannot be written as a float checkpoint as it is: merge into its dequantised weights.
        from kit.model.loader import load_causal_lm
        from kit.model.quantize import float_copy

        lm = float_copy(lm, load_causal_lm(info_run.preset, dtype=dtype or info_run.dtype or "auto"))
    info = {
        "format": to,
        "run": str(run),
        "base_preset": info_run.preset,
        "lora_merged": (
            {"rank": info_run.lora.rank, "alpha": info_run.lora.alpha, "targets": info_run.lora.targets}
            if info_run.lora
            else None
        ),
        "dtype": lm.backbone.dtype_policy.name if hasattr(lm.backbone, "dtype_policy") else dtype,
        "base_quantized": quantized if quantized != "none" else None,
        "parameters": int(sum(np.prod(v.shape) for v in lm.backbone.weights if "lora_kernel" not in v.path)),
    }
    hub_base = hf_base_model(info_run.preset)
    with output_dir(out, EXPORT, overwrite=overwrite) as tmp:
        if to == "keras":
            lm.save_to_preset(str(tmp))
        elif to == "hf":
            write_hf_checkpoint(lm, tmp)
        else:
            hf_config(lm.backbone)  # refuses a backbone with no HF form (Gemma 1): the adapter is for the HF base
            peft = write_peft_adapter(lm, tmp, base_model=base_model or hub_base, dtype=dtype)
            info["peft"] = {k: peft[k] for k in ("r", "lora_alpha", "target_modules", "base_model_name_or_path")}
        if to in ("hf", "peft"):
            meta, body = card_text(
                kind=to,
                name=info_run.name,
                base_model=hub_base or _hub_id(base_model),
                preset=info_run.preset,
                synthetic=_trained_on_synthetic(info_run),
                lora=info["lora_merged"],
                evaluation=evaluation,
            )
            write_card(tmp, meta, body)
        write_json(Path(tmp) / EXPORT_INFO, info)
    return info


def _hub_id(name: str | None) -> str | None:
    """`name` when it reads as a Hub repo id (`owner/name`, not a local dir), else None."""
    return name if name and name.count("/") == 1 and not Path(name).exists() else None


def _trained_on_synthetic(info) -> bool:
    """Whether the run's prepared data came from the bundled SYNTHETIC sample (its `stats.json` says)."""
    from kit.data.prepare import load_stats

    try:
        return bool(info.data_dir and load_stats(info.data_dir).get("synthetic"))
    except (UserError, OSError, ValueError):
        return False


def push(folder: str | Path, target: str, *, fmt: str) -> str:
    """Upload an export to `hf://OWNER/REPO` or `kaggle://OWNER/MODEL/keras/VARIANT`; returns its URL.

    Raises:
        UserError: a bad target, no network, or refused credentials (one line).

    Example:
        >>> push("exports/x", "s3://bucket/x", fmt="keras")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: --push must be hf://OWNER/REPO or kaggle://OWNER/MODEL/keras/VARIANT. Received: --push='s3://bucket/x'
    """
    from kit.model.loader import load_credentials

    kind = "hf" if target.startswith("hf://") else "kaggle" if target.startswith("kaggle://") else None
    if kind is None or target.rstrip("/").count("/") < 3:
        raise UserError(
            f"--push must be hf://OWNER/REPO or kaggle://OWNER/MODEL/keras/VARIANT. Received: --push={target!r}"
        )
    if kind == "kaggle" and fmt != "keras":
        raise UserError(
            "Kaggle Models takes KerasHub presets: push a `--to keras` export to kaggle://, "
            "or this Hugging Face export to hf://OWNER/REPO."
        )
    host = "huggingface.co" if kind == "hf" else "www.kaggle.com"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError:
        raise UserError(
            f"Cannot push to {target}: no network connection to {host}. The export in {folder} "
            "is complete; push it later from a machine with internet."
        ) from None
    load_credentials()
    try:
        if kind == "hf" and fmt in ("hf", "peft"):
            from huggingface_hub import HfApi

            api, repo = HfApi(), target.removeprefix("hf://")
            api.create_repo(repo, exist_ok=True, private=True)
            # The folder holds the model card (README.md), so the repo page shows it.
            api.upload_folder(
                repo_id=repo, folder_path=str(folder), commit_message="kit export", ignore_patterns=[MARKER]
            )
        else:
            import keras_hub

            keras_hub.upload_preset(target, str(folder))
    except Exception as e:  # hub clients raise many types for auth/network problems
        var = "HUGGING_FACE_ACCESS_TOKEN (or HF_TOKEN)" if kind == "hf" else "KAGGLE_USERNAME and KAGGLE_KEY"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"Cannot push to {target}: {first}. Check {var} (environment or .env) and that "
            "you may write to that repository."
        ) from None
    handle = target.split("://", 1)[1]
    return f"https://huggingface.co/{handle}" if kind == "hf" else f"https://www.kaggle.com/models/{handle}"

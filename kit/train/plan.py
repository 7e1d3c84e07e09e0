"""`kit plan`: will a config's fine-tune fit the device, and how long will an epoch take, before renting it.

For TPUs and this CPU it compiles the config's actual train step (the
Engine's jitted micro-step and apply step, `kit.train.plan_compile`) for
each bucket length planned, with the configured batch, LoRA, dtype and the
layout `choose_layout` picks for the device, on abstract inputs and
weights: nothing the size of the model is allocated. For NVIDIA GPUs it
gives an analytic estimate (`kit.train.plan_estimate`), labelled so.

It reports per-device memory (arguments, outputs, temporaries, peak),
FLOPs per optimizer step (XLA's cost analysis beside the formula of
`kit.model.flops`), parameter counts, steps and tokens per epoch from the
prepared data, the time per epoch at a stated MFU, and "fits" or "does not
fit: try ..." with the levers to pull.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kit.config import Config, DataConfig, LoraConfig, TrainConfig
from kit.errors import UserError
from kit.families import family_of_config
from kit.model.architectures import backbone_config, kv_heads, published_params
from kit.model.distribution import choose_layout
from kit.model.flops import train_flops_per_token
from kit.model.lora import LORA_TARGET_LAYERS
from kit.train.plan_compile import COMPILE_ENV
from kit.train.plan_devices import GIB, Target, target
from kit.train.plan_estimate import estimate

# A device "fits" the step when its peak leaves this share free (runtime, fragmentation, XLA's own buffers).
HEADROOM = 0.10
DEFAULT_MFU = 0.35
# What to try when the step does not fit, in order: (config key, hint). Levers
# whose key this kit's config lacks are left out of the hint.
LEVERS = (
    ("train.batch_size", "lower train.batch_size and raise train.grad_accum by the same factor (same step)"),
    ("data.buckets", "shorter sequences: lower the largest value in data.buckets"),
    ("train.loss_chunk", "compute the loss in sequence chunks (train.loss_chunk)"),
    ("train.remat", 'rematerialise the decoder blocks (train.remat = "blocks")'),
    ("lora.factored", "compute LoRA as x·W + s·(x·A)·B without a merged kernel (lora.factored)"),
    ("model.quantize", 'an int8 base (model.quantize = "int8")'),
)


def _known_key(key: str) -> bool:
    import dataclasses

    section, name = key.split(".")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    return section in fields and name in {f.name for f in dataclasses.fields(fields[section].default_factory)}


def levers_hint(active: frozenset[str] = frozenset()) -> str:
    """The "try ..." part of a plan that does not fit, leaving out the levers in `active` (already on).

    Example:
        >>> levers_hint().startswith("lower train.batch_size")
        True
        >>> 'train.remat = "blocks"' in levers_hint(), "train.remat" in levers_hint(frozenset({"train.remat"}))
        (True, False)
    """
    return "; ".join(hint for key, hint in LEVERS if _known_key(key) and key not in active)


def active_levers(cfg: Config, parameters: int, vocabulary_size: int, length: int) -> frozenset[str]:
    """The memory levers the planned step already uses, as `kit finetune` resolves them (`auto` made concrete).

    Example:
        >>> from kit.config import load_config
        >>> sorted(active_levers(load_config("configs/gemma2_2b_tpu.toml"), 2_614_341_888, 256_000, 512))
        ['lora.factored', 'train.loss_chunk']
    """
    from kit.train.lean import resolve_loss_chunk, resolve_remat

    on = {
        "train.loss_chunk": bool(resolve_loss_chunk(cfg.train.loss_chunk, vocabulary_size)),
        "train.remat": resolve_remat(cfg.train.remat, parameters, cfg.train.batch_size * length),
        "lora.factored": bool(cfg.lora.factored),
        "model.quantize": cfg.model.quantize != "none",
    }
    return frozenset(key for key, yes in on.items() if yes)


def _data(data: DataConfig, train: TrainConfig, preset: str, seed: int) -> dict:
    """Rows, buckets, optimizer steps and tokens per epoch from the prepared data (tokenised as the run would)."""
    if not Path(data.dir, "stats.json").is_file() and not Path(data.dir, "dataset_dict.json").is_file():
        return {"available": False, "note": f"no prepared data at {data.dir}: steps and time per epoch unknown"}
    from kit.data.batching import Encoder, plan_batches
    from kit.model.architectures import random_tokenizer_source
    from kit.train.job_data import load_splits, train_examples

    train_ds, _ = load_splits(data)
    local = Path(preset, "tokenizer.json").is_file()
    source = Path(preset) if local else random_tokenizer_source(preset)
    encoder = Encoder((source / "assets" / "tokenizer" / "vocabulary.spm").read_bytes())
    ex = train_examples(encoder, train_ds, data, train, seed=seed)
    tokens = sum(min(len(e.ids) - 1, ex.buckets[-1]) for e in ex.train)
    counts = {}
    for length, _idx in plan_batches(ex.train, ex.buckets, train.batch_size, seed=seed).batches:
        counts[length] = counts.get(length, 0) + 1
    note = "" if local else f"token counts from the {source.name} tokenizer, not {preset}'s (not downloaded)"
    return {
        "available": True,
        "train_rows": len(ex.train),
        "buckets": list(ex.buckets),
        "micro_batches_per_epoch": sum(counts.values()),
        "micro_batches_per_bucket": {str(k): v for k, v in sorted(counts.items())},
        "optimizer_steps_per_epoch": max(1, -(-sum(counts.values()) // train.grad_accum)),
        "tokens_per_epoch": tokens,
        "padded_positions_per_epoch": sum(n * length * train.batch_size for length, n in counts.items()),
        "note": note,
    }


def _compile(cfg: Config, tgt: Target, buckets: list[int]) -> dict:
    request = {
        "config": cfg.to_dict(),
        "platform": tgt.platform,
        "devices": tgt.devices,
        "topology": tgt.topology,
        "buckets": buckets,
    }
    env = {**os.environ, **COMPILE_ENV}
    if tgt.platform == "cpu":
        env.pop("ALLOW_MULTIPLE_LIBTPU_LOAD")
    proc = subprocess.run(
        [sys.executable, "-m", "kit.train.plan_compile"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else None
    if result is None or "error" in result:
        why = result["error"] if result else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"kit plan could not compile for {tgt.name}: {why}")
    return result


def _estimate(cfg: Config, tgt: Target, buckets: list[int], arch: dict) -> dict:
    from kit.train.lean import resolve_loss_chunk, resolve_remat

    mode, axes = choose_layout(
        cfg.distribution.mode, cfg.distribution.mesh, tgt.devices, tgt.platform, kv_heads(cfg.model.preset)
    )
    width = tgt.devices if mode == "data" else (axes["batch"] if axes else 1)
    if mode == "model":
        raise UserError(f"kit plan estimates GPUs with single or data layouts only; {tgt.name} was given a mesh.")
    if cfg.train.batch_size % width:
        raise UserError(f"train.batch_size={cfg.train.batch_size} must be divisible by the {width} GPUs of {tgt.name}.")
    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else "bfloat16"
    targets = LORA_TARGET_LAYERS[cfg.lora.targets]
    rows = cfg.train.batch_size // width
    out = {"layout": "single device" if mode == "single" else f"DataParallel over {width} devices", "dtype": dtype}
    # The Engine's levers, resolved as `kit finetune` resolves them (kit.train.lean.step_levers):
    # the chunked loss by the family's vocabulary, remat by the model's size and the longest bucket.
    loss_chunk = resolve_loss_chunk(cfg.train.loss_chunk, int(arch["vocabulary_size"]))
    size = estimate(arch, dtype=dtype, rank=cfg.lora.rank, targets=targets, rows=rows, length=max(buckets))
    remat = resolve_remat(cfg.train.remat, size["parameters"]["total"], cfg.train.batch_size * max(buckets))
    out["levers"] = {"loss_chunk": loss_chunk, "remat": remat}
    out["buckets"] = []
    for length in buckets:
        e = estimate(
            arch,
            dtype=dtype,
            rank=cfg.lora.rank,
            targets=targets,
            rows=rows,
            length=length,
            loss_chunk=loss_chunk,
            remat=remat,
        )
        out["parameters"] = e["parameters"]
        out["buckets"].append(
            {"length": length, "resident": e["resident"], "activations": e["activations"], "peak": e["total"]}
        )
    return out


def _parameters(counts: dict, preset: str) -> dict:
    """The plan's parameter counts: the base model's (total less the adapters), the adapters', the published count."""
    base = int(counts["total"]) - int(counts["trainable"])
    return {"base": base, "trainable": int(counts["trainable"]), "total": int(counts["total"]),
            "published": published_params(preset)}  # fmt: skip


def make_plan(cfg: Config, device: str = "auto", *, all_buckets: bool = False, mfu: float = DEFAULT_MFU) -> dict:
    """The plan of `cfg` on `device` as a JSON-ready dict (see the module doc).

    Args:
        cfg: The resolved config.
        device: A `kit.train.plan_devices.DEVICE_CHOICES` name.
        all_buckets: Compile every bucket, not only the largest (which sets
            the peak memory; the others' FLOPs come from the formula).
        mfu: The model FLOPs utilisation the time estimate assumes.

    Raises:
        UserError: unknown device, a config the device cannot run (layout, batch), a failed compile.

    Example:
        >>> p = make_plan(load_config("configs/gemma2_2b_tpu.toml"), "v5e-1")  # doctest: +SKIP
        >>> p["verdict"]["fits"]  # doctest: +SKIP
        True
    """
    if not 0 < mfu <= 1:
        raise UserError(f"--mfu must be between 0 and 1, received {mfu}.")
    tgt = target(device)
    arch = backbone_config(cfg.model.preset)
    if not cfg.lora_active:
        raise UserError("lora.enabled is false: a base-model run trains nothing, so there is no train step to plan.")
    data = _data(cfg.data, cfg.train, cfg.model.preset, cfg.run.seed)
    buckets = data["buckets"] if data["available"] else list(cfg.data.buckets)
    planned = buckets if all_buckets else buckets[-1:]
    plan = {
        "config_preset": cfg.model.preset,
        "device": {"name": tgt.name, "label": tgt.label, "devices": tgt.devices, "memory_bytes": tgt.memory_bytes},
        "method": "compiled" if tgt.compiled else "estimate (not compiled)",
        "batch_size": cfg.train.batch_size,
        "grad_accum": cfg.train.grad_accum,
        "lora": {"rank": cfg.lora.rank, "targets": cfg.lora.targets},
        "data": data,
    }
    if not data["available"] and cfg.data.auto_buckets:
        data["note"] += f"; data.auto_buckets needs the data, so the plan uses data.buckets {list(cfg.data.buckets)}"
    result = _compile(cfg, tgt, planned) if tgt.compiled else _estimate(cfg, tgt, planned, arch)
    plan.update(layout=result["layout"], dtype=result["dtype"], levers=result.get("levers"))
    plan["family"] = family_of_config(arch).TITLE
    plan["parameters"] = _parameters(result["parameters"], cfg.model.preset)
    targets = LORA_TARGET_LAYERS[cfg.lora.targets]
    rows = []
    for b in result["buckets"]:
        length = b["length"]
        formula = cfg.train.batch_size * length * train_flops_per_token(arch, length, cfg.lora.rank, targets, "keras")
        row = {"length": length, "formula_flops_per_micro_step": formula}
        if tgt.compiled and "refused" in b:
            # The compiler refused the program: it needs more than the device has. The peak
            # is at least the weights, adapters and optimizer state plus those temporaries.
            need = b["refused"]["temporaries"]
            row.update(refused=b["refused"], compile_s=b["compile_s"], xla_flops_per_micro_step=None)
            row["peak"] = sum(result["resident"].values()) + need if need else None
        elif tgt.compiled:
            resident = result["resident"]
            # The micro-step holds weights, adapters and accumulators as arguments; the optimizer
            # state lives beside it. The apply step holds adapters and optimizer; the weights wait.
            micro = b["micro"]["total"] + resident["optimizer"]
            apply = b["apply"]["total"] + resident["frozen"]
            row.update(micro=b["micro"], apply=b["apply"], peak=max(micro, apply), compile_s=b["compile_s"])
            # XLA counts the FLOPs of one device's program; the slice runs one per device.
            row["xla_flops_per_micro_step"] = b["flops"] * tgt.devices if b["flops"] is not None else None
        else:
            row.update(resident=b["resident"], activations=b["activations"], peak=b["peak"])
        rows.append(row)
    plan["buckets"] = rows
    usable = tgt.memory_bytes * (1 - HEADROOM)
    refused = any("refused" in r for r in rows)
    peak = max((r["peak"] or 0) for r in rows) or None
    fits = not refused and peak <= usable
    plan["verdict"] = {"fits": fits, "peak_bytes": peak, "usable_bytes": int(usable), "compiler_refused": refused}
    if not plan["verdict"]["fits"]:
        active = active_levers(cfg, plan["parameters"]["total"], int(arch["vocabulary_size"]), max(planned))
        plan["verdict"]["try"] = levers_hint(active)
    plan["time"] = _time(cfg.train, cfg.lora, tgt, arch, data, mfu)
    return plan


def _time(train: TrainConfig, lora: LoraConfig, tgt: Target, arch: dict, data: dict, mfu: float) -> dict:
    targets = LORA_TARGET_LAYERS[lora.targets]
    out = {"mfu": mfu, "peak_flops_per_device": tgt.peak_flops}
    if not data["available"] or not tgt.peak_flops:
        out["epoch_s"] = None
        out["note"] = "needs the prepared data" if not data["available"] else f"no peak FLOP/s known for {tgt.name}"
        return out
    flops = sum(
        n * train.batch_size * int(length) * train_flops_per_token(arch, int(length), lora.rank, targets, "keras")
        for length, n in data["micro_batches_per_bucket"].items()
    )
    out["epoch_flops"] = flops
    out["epoch_s"] = flops / (tgt.peak_flops * tgt.devices * mfu)
    return out


def _published(p: dict) -> str:
    if p.get("published") is None:
        return ""
    return " (as published)" if p["published"] == p["base"] else f" (published: {p['published']:,})"


def _levers(levers: dict) -> str:
    """The step's resolved memory levers in words, e.g. `loss in chunks of 256 positions, remat off`."""
    chunk = levers["loss_chunk"]
    loss = f"loss in chunks of {chunk} positions" if chunk else "loss over whole sequences"
    return f"{loss}, remat {'on (every decoder block)' if levers['remat'] else 'off'}"


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def format_plan(plan: dict) -> str:
    """The plan in words and a table, as `kit plan` prints it.

    Example:
        >>> print(format_plan(make_plan(cfg, "t4")))  # doctest: +SKIP
    """
    d, p = plan["device"], plan["parameters"]
    lines = [
        f"device      {d['name']}: {d['label']}, {_gib(d['memory_bytes'])} per device",
        f"model       {plan['config_preset']} architecture ({plan['family']}), {plan['dtype']}, layout: {plan['layout']}",
        f"parameters  {p['base']:,} in the base{_published(p)}, {p['trainable']:,} trainable "
        f"(LoRA rank {plan['lora']['rank']} on {plan['lora']['targets']}), {p['total']:,} total",
        f"batch       {plan['batch_size']} rows x {plan['grad_accum']} micro-batches per optimizer step",
        f"memory      {plan['method']}, per device"
        + ("" if plan["method"] == "compiled" else ": analytic, errs high (see docs/plan.md)"),
    ]
    if plan.get("levers"):
        lines.append(f"levers      {_levers(plan['levers'])}")
    if plan["method"] == "compiled":
        lines.append("  bucket  arguments   outputs     temporaries  peak        compile  XLA GFLOP/step  formula")
        for r in plan["buckets"]:
            if "refused" in r:
                need = r["refused"]["temporaries"]
                lines.append(
                    f"  {r['length']:<6}  the compiler refused it: {_gib(need) if need else '?'} of temporaries "
                    f"alone, more than the device's {_gib(r['refused']['available'] or 0)}"
                )
                continue
            m = r["micro"]
            xla = r["xla_flops_per_micro_step"]
            xla_step = f"{xla * plan['grad_accum'] / 1e9:,.0f}" if xla else "n/a"
            lines.append(
                f"  {r['length']:<6}  {_gib(m['arguments']):<10}  {_gib(m['outputs']):<10}  "
                f"{_gib(m['temporaries']):<11}  {_gib(r['peak']):<10}  {r['compile_s']:>5.0f} s  "
                f"{xla_step:>14}  {r['formula_flops_per_micro_step'] * plan['grad_accum'] / 1e9:,.0f}"
            )
    else:
        lines.append("  bucket  resident    activations  peak        formula GFLOP/step")
        for r in plan["buckets"]:
            lines.append(
                f"  {r['length']:<6}  {_gib(r['resident']):<10}  {_gib(r['activations']):<11}  {_gib(r['peak']):<10}  "
                f"{r['formula_flops_per_micro_step'] * plan['grad_accum'] / 1e9:,.0f}"
            )
    data = plan["data"]
    if data["available"]:
        lines.append(
            f"data        {data['train_rows']:,} train rows, buckets {data['buckets']}, "
            f"{data['optimizer_steps_per_epoch']:,} optimizer steps and {data['tokens_per_epoch']:,} tokens "
            f"({data['padded_positions_per_epoch']:,} positions with padding) per epoch"
        )
    if data.get("note"):
        lines.append(f"            {data['note']}")
    t = plan["time"]
    if t["epoch_s"] is not None:
        took = f"{t['epoch_s'] / 3600:.1f} h" if t["epoch_s"] >= 3600 else f"{t['epoch_s'] / 60:.1f} min"
        lines.append(
            f"time        {took} per epoch at MFU {t['mfu']:.2f} of "
            f"{t['peak_flops_per_device'] / 1e12:g} TFLOP/s x {d['devices']} device(s) (an estimate)"
        )
    else:
        lines.append(f"time        per epoch unknown: {t['note']}")
    v = plan["verdict"]
    peak = f"peak ≥ {_gib(v['peak_bytes'])}" if v["compiler_refused"] else f"peak {_gib(v['peak_bytes'] or 0)}"
    share = f"{peak} of {_gib(v['usable_bytes'])} usable ({int(HEADROOM * 100)} % kept free)"
    lines.append(f"verdict     fits: {share}" if v["fits"] else f"verdict     does not fit: {share}; try: {v['try']}")
    return "\n".join(lines)

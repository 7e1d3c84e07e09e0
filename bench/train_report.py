"""The training benchmark's result, as the parent assembles it from the two children: FLOPs, MFU, ratios, summary.

FLOPs per token follow `bench/flops.py` (4·N + 6·N_lora + 12·L·H·d_head·T);
each side's LoRA is counted in its own library's layout (Keras `EinsumDense`
LoRA for the kit, PEFT for HF). The kit / HF ratio is on non-padding
tokens/s over the same batches.
"""

from __future__ import annotations

from flops import FORMULA, batch_train_flops, lora_macs, lora_params, matmul_params, mfu, peak_flops
from train_sides import LORA_TARGETS


def config_record(a, cfg: dict, examples: int, buckets_by_mode: dict, weights_dir: str | None) -> dict:
    """The result's `config` entry: what both sides trained, on which data, with which optimizer and weights."""
    return {
        "backbone": cfg,
        "dtype": a.dtype,
        "lora": {"rank": a.rank, "alpha": a.alpha, "targets": a.targets, "layers": list(LORA_TARGETS[a.targets])},
        "batch_size": a.batch_size,
        "max_length": a.max_length,
        "data": a.data,
        "examples": examples,
        "buckets": {m: list(b) for m, b in buckets_by_mode.items()},
        "timed_steps": a.steps,
        "warmup_rounds": a.warmup_rounds,
        "optimizer": "AdamW (betas 0.9/0.999, eps 1e-8), global-norm clip 1.0, "
        f"weight decay {a.weight_decay}, warm-up + cosine schedule",
        "random_init": a.random_init,
        "hf_weights": weights_dir or "random",
        "hf_attn_implementation": a.hf_attn,
        "seed": a.seed,
    }


def flops_record(cfg: dict, a) -> dict:
    """The result's `flops` entry: the formula, N, and each library's LoRA multiply-adds and parameters."""
    targets = LORA_TARGETS[a.targets]
    return {
        **FORMULA,
        "N_value": matmul_params(cfg),
        "N_lora_macs": {
            "kit (Keras EinsumDense LoRA)": lora_macs(cfg, a.rank, targets, "keras"),
            "hf (PEFT)": lora_macs(cfg, a.rank, targets, "peft"),
        },
        "lora_params": {
            "kit (Keras EinsumDense LoRA)": lora_params(cfg, a.rank, targets, "keras"),
            "hf (PEFT)": lora_params(cfg, a.rank, targets, "peft"),
        },
    }


def add_flops(result: dict, cfg: dict, a, peak_override: float | None) -> None:
    """Model TFLOPs, achieved TFLOP/s and MFU for every side and mode (in place); drops the timed `shapes`."""
    targets = LORA_TARGETS[a.targets]
    for name, side in result["sides"].items():
        style = "keras" if name == "kit" else "peft"
        peak = peak_override or (peak_flops(side.get("device_name", "")) if a.device == "gpu" else None)
        for res in side["modes"].values():
            flops = batch_train_flops(cfg, [tuple(s) for s in res["shapes"]], a.rank, targets, style)
            res["model_tflops"] = round(flops / 1e12, 4)
            res["achieved_tflops_per_s"] = round(flops / res["seconds"] / 1e12, 4)
            m = mfu(flops, res["seconds"], peak)
            res["mfu"] = round(m, 4) if m is not None else None
            res["peak_tflops"] = peak / 1e12 if peak else None
            del res["shapes"]


def add_ratios(result: dict, same_weights: bool) -> None:
    """Kit / HF non-padding tokens/s per shared mode (and kit buckets vs HF dynamic), and the two
    first-batch losses before any update, when both sides ran (in place)."""
    sides = result["sides"]
    if {"kit", "hf"} <= set(sides):
        for mode in sides["kit"]["modes"]:
            if mode in sides["hf"]["modes"]:
                k, h = sides["kit"]["modes"][mode], sides["hf"]["modes"][mode]
                result["ratio_kit_over_hf"][mode] = round(k["real_tokens_per_s"] / h["real_tokens_per_s"], 3)
        if "buckets" in sides["kit"]["modes"] and "dynamic" in sides["hf"]["modes"]:
            result["ratio_kit_over_hf"]["kit_buckets_vs_hf_dynamic"] = round(
                sides["kit"]["modes"]["buckets"]["real_tokens_per_s"]
                / sides["hf"]["modes"]["dynamic"]["real_tokens_per_s"],
                3,
            )
        k0 = next((m.get("initial_loss") for m in sides["kit"]["modes"].values() if "initial_loss" in m), None)
        h0 = next((m.get("initial_loss") for m in sides["hf"]["modes"].values() if "initial_loss" in m), None)
        if k0 is not None and h0 is not None:
            # Before any update LoRA adds 0 (B starts at zero on both sides): with the same base
            # weights (an HF export) the two losses on the first batch must agree to float precision.
            result["initial_loss"] = {"kit": k0, "hf": h0, "abs_diff": abs(k0 - h0), "same_weights": same_weights}


def print_summary(r: dict, out: str) -> None:
    """One line per side and mode on stdout, then the padding shares, the kit / HF ratios and the result path."""
    print(
        f"{'side':<5} {'mode':<8} {'tok/s':>9} {'real tok/s':>11} {'step ms':>8} {'warm-up s':>9} {'peak MiB':>9} {'MFU':>6}"
    )
    for side, s in r["sides"].items():
        for mode, m in s["modes"].items():
            mem = m.get("peak_device_mib") or m.get("peak_rss_mib")
            mfu_text = f"{m['mfu']:.1%}" if m.get("mfu") is not None else "-"
            print(
                f"{side:<5} {mode:<8} {m['tokens_per_s']:>9.0f} {m['real_tokens_per_s']:>11.0f} "
                f"{m['step_s_median'] * 1e3:>8.1f} {m['warmup_s']:>9.1f} {mem:>9.0f} {mfu_text:>6}"
            )
    print(f"padding share: {r['padding_share']}")
    print(
        f"kit / HF (non-padding tokens/s): {r['ratio_kit_over_hf']}  (target ≥ {r['targets']['kit_over_hf_tokens_per_s_cpu_tiny']} on CPU tiny)"
    )
    print(f"wrote {out}")

"""LoRA training throughput: the kit (KerasHub + JAX) vs Hugging Face transformers + PEFT (torch), same batches.

Both sides train the same Gemma 2 architecture (the Hugging Face config is
derived from the Keras backbone's config: layers, heads, kv heads, head_dim,
hidden, intermediate, vocabulary, soft-caps, sliding window, query
pre-attention scalar), with LoRA of the same rank, alpha and target layers,
the same masked loss (prompt and padding labels excluded: `sample_weight` 0
on the kit side, label -100 on the HF side), AdamW with the same schedule and
global-norm clipping, and the very same padded batches: the prepared
sample's train split tokenised by the kit's `Encoder`, grouped by
`kit.data.batching.plan_batches` and padded by `make_batch`.

The kit side is the kit's own loop (`kit.train.loop.Engine.run`, jitted
stateless steps); the HF side is a plain PyTorch loop (forward with
`use_cache=False`, cross-entropy on float32 logits, backward,
`clip_grad_norm_`, `AdamW.step`). Each side runs in its own child process
pinned to the same CPU cores (same thread count), so it reports its own
peak memory.

Padding modes (timed on both sides unless noted):
- `buckets`: the kit's lengths from `choose_buckets` (as `kit finetune` with
  `data.auto_buckets = 8`), one compiled program per length.
- `fixed`: every batch padded to the single max length.
- `dynamic` (HF only): random batches padded to their longest row, what a
  transformers data collator does; the kit cannot do this without
  recompiling for every new length.

Reported per side and mode: total and non-padding tokens/s (the headline is
non-padding tokens/s on the same batches), median step time after warm-up,
warm-up time (one step per distinct shape: XLA compilation for the kit,
first-call overheads for torch), peak memory (max RSS on CPU; JAX
`peak_bytes_in_use` / `torch.cuda.max_memory_allocated` on GPU), achieved
model FLOP/s and MFU (formula in `bench/flops.py`: 4·N + 6·N_lora +
12·L·H·d_head·T per token), and the kit / HF ratio.

CPU, tiny demo model (about 2 minutes; needs `make demo` first):

    .venv/bin/python bench/train_throughput.py

GPU, Gemma 2 2B architecture with random weights, bf16, seq 512, LoRA r=8 on
q,v (needs `pip install -e '.[bench,cuda]'` with a CUDA build of torch 2.13):

    .venv/bin/python bench/train_throughput.py --device gpu --size 2b --random-init

Targets (goals, not asserts): kit ≥ 1.5× HF+PEFT non-padding tokens/s on the
CPU tiny config; padding share ≤ 10 % with bucketing; on an H100, MFU ≥ 40 %
for Gemma 2 2B LoRA at sequence length 512.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import (  # noqa: E402
    ROOT,
    BenchError,
    available_threads,
    backbone_config,
    emit,
    pin_threads,
    run_child,
    write_result,
)
from train_data import make_data, padding_shares  # noqa: E402
from train_report import add_flops, add_ratios, config_record, flops_record, print_summary  # noqa: E402
from train_sides import LORA_TARGETS, hf_weights_dir, run_hf, run_kit  # noqa: E402

SCRIPT = Path(__file__).resolve()  # each side's child process runs this script with --child kit|hf
TARGETS = {"kit_over_hf_tokens_per_s_cpu_tiny": 1.5, "padding_share_with_buckets": 0.10, "mfu_h100_2b_seq512": 0.40}
PACKAGES = ("keras", "keras-hub", "jax", "jaxlib", "torch", "transformers", "peft", "accelerate", "numpy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; size- and device-dependent defaults are filled in by `resolve`.

    Example:
        >>> a = resolve(parse_args(["--device", "gpu", "--size", "2b", "--random-init"]))
        >>> a.batch_size, a.max_length, a.targets, a.dtype, a.padding, a.data
        (8, 512, 'qv', 'bfloat16', ('fixed',), 'synthetic')
        >>> a = resolve(parse_args([]))
        >>> a.batch_size, a.max_length, a.targets, a.dtype, a.padding
        (16, 256, 'all', 'float32', ('buckets', 'fixed', 'dynamic'))
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where both sides run")
    p.add_argument(
        "--size",
        choices=("tiny", "2b"),
        default="tiny",
        help="tiny: the demo base models/tiny-base; 2b: Gemma 2 2B architecture (needs --random-init)",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="random weights on both sides (required for --size 2b: same FLOPs, no download)",
    )
    p.add_argument("--preset", default="models/tiny-base", help="the tiny base preset (tokenizer, tiny config)")
    p.add_argument(
        "--data",
        default=None,
        help="prepared dataset dir (default data/prepared), or 'synthetic' "
        "for random fixed-length sequences (default for --size 2b)",
    )
    p.add_argument(
        "--base-run",
        default="runs/tiny-base",
        help="run exported with `kit export --to hf` so the HF side holds the same base weights (tiny)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (tiny 16, 2b 8)")
    p.add_argument("--max-length", type=int, default=None, help="largest sequence length (tiny 256, 2b 512)")
    p.add_argument(
        "--auto-buckets", type=int, default=8, help="bucket lengths chosen by kit.data.batching.choose_buckets"
    )
    p.add_argument(
        "--padding",
        default=None,
        help="comma-separated modes: buckets, fixed, dynamic (HF only); default all three for sample "
        "data, fixed for synthetic",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed optimizer steps per mode (cpu 80: 30 varied by ±10 %% between runs; gpu 20)",
    )
    p.add_argument(
        "--warmup-rounds", type=int, default=None, help="untimed steps per distinct shape before timing (cpu 1, gpu 2)"
    )
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale alpha/rank)")
    p.add_argument(
        "--targets",
        choices=tuple(LORA_TARGETS),
        default=None,
        help="LoRA target layers (tiny: all, as configs/tiny.toml; 2b: qv, as configs/gemma2_2b_gpu.toml)",
    )
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="weights dtype (auto: float32 on cpu, bfloat16 on gpu); LoRA adapters stay float32 on both sides",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for each side (default: all cores)")
    p.add_argument("--sides", default="kit,hf", help="which sides to run: kit, hf or kit,hf")
    p.add_argument("--hf-attn", default="eager", help="transformers attn_implementation (Gemma 2 has no SDPA)")
    p.add_argument(
        "--hf-weights",
        default="auto",
        help="auto: export --base-run with the kit's exporter when it exists, else random; random; or an HF dir",
    )
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU (else looked up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="result JSON (default bench/results/train_throughput[_gpu_2b].json)")
    p.add_argument(
        "--note", default="", help="free text stored with the result (e.g. 'preliminary, machine under load')"
    )
    p.add_argument("--child", choices=("kit", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--hf-weights-dir", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    """Fill size/device defaults and check combinations (BenchError on a bad one)."""
    big = a.size == "2b"
    gpu = a.device == "gpu"
    if big and not a.random_init:
        raise BenchError(
            "--size 2b needs --random-init: the benchmark uses the Gemma 2 2B architecture with "
            "random weights (same FLOPs, nothing to download). Received: --size 2b without --random-init"
        )
    a.data = a.data or ("synthetic" if big else "data/prepared")
    a.batch_size = (8 if big else 16) if a.batch_size is None else a.batch_size
    a.max_length = (512 if big else 256) if a.max_length is None else a.max_length
    a.targets = a.targets or ("qv" if big else "all")
    a.steps = (20 if gpu else 80) if a.steps is None else a.steps
    a.warmup_rounds = (2 if gpu else 1) if a.warmup_rounds is None else a.warmup_rounds
    a.dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if gpu else "float32")
    synthetic = a.data == "synthetic"
    modes = tuple(
        m.strip() for m in (a.padding or ("fixed" if synthetic else "buckets,fixed,dynamic")).split(",") if m.strip()
    )
    bad = set(modes) - {"buckets", "fixed", "dynamic"}
    if bad or not modes:
        raise BenchError(f"--padding takes buckets, fixed and/or dynamic. Received: --padding {a.padding}")
    if synthetic and set(modes) != {"fixed"}:
        raise BenchError(
            "--data synthetic has one fixed length: use --padding fixed. Received: --padding " + str(a.padding)
        )
    a.padding = modes
    sides = tuple(s.strip() for s in a.sides.split(",") if s.strip())
    if not sides or set(sides) - {"kit", "hf"}:
        raise BenchError(f"--sides takes kit, hf or kit,hf. Received: --sides {a.sides}")
    a.sides = sides
    for name in ("batch_size", "max_length", "steps", "rank", "auto_buckets", "warmup_rounds"):
        if getattr(a, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be ≥ 1. Received: {getattr(a, name)}")
    a.threads = a.threads or available_threads()
    a.out = a.out or str(
        ROOT / "bench/results" / ("train_throughput_gpu_2b.json" if big and gpu else "train_throughput.json")
    )
    return a


# ---------------------------------------------------------------------- the parent


def child_main(a) -> int:
    """One side, in its own process (`--child kit|hf`): pin the cores, run it, print its JSON line."""
    n = pin_threads(a.threads)
    a.threads = n
    result = run_kit(a) if a.child == "kit" else run_hf(a)
    result["threads"] = n
    emit(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        a = resolve(parse_args(argv))
        if a.child:
            return child_main(a)
        return parent_main(a, argv)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parent_main(a, argv: list[str] | None) -> int:
    """Run each side in a child process of this script, then assemble, write and print the result."""
    argv = list(sys.argv[1:] if argv is None else argv)
    notes = [a.note] if a.note else []
    cfg = backbone_config(a.size, a.preset)
    examples, pad_id, buckets_by_mode = make_data(a)
    shares = padding_shares(examples, buckets_by_mode, a, pad_id)
    weights_dir = hf_weights_dir(a, notes) if "hf" in a.sides else None
    child_args = [*argv, "--threads", str(a.threads)]
    if weights_dir:
        child_args += ["--hf-weights-dir", weights_dir]
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * a.threads:
        print(
            f"[train_throughput] warning: load average {load_before[0]:.1f} on {available_threads()} cores: other "
            "processes compete for the CPU and distort the timings (torch's OpenMP threads suffer most).",
            file=sys.stderr,
        )
    sides = {}
    for side in a.sides:
        print(f"[train_throughput] {side} side ...", file=sys.stderr, flush=True)
        sides[side] = run_child(SCRIPT, [*child_args, "--child", side])
    result = {
        "benchmark": "LoRA training throughput: kit (KerasHub/JAX) vs transformers + PEFT (torch)",
        "note": " | ".join(notes),
        "device": a.device,
        "size": a.size,
        "config": config_record(a, cfg, len(examples), buckets_by_mode, weights_dir),
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "threads": {
            "requested": a.threads,
            **{s: r.get("threads") for s, r in sides.items()},
            "hf_torch_threads": sides.get("hf", {}).get("torch_threads"),
        },
        "padding_share": shares,
        "flops": flops_record(cfg, a),
        "sides": sides,
        "ratio_kit_over_hf": {},
        "targets": TARGETS,
        "machine": machine_info(PACKAGES),
    }
    add_flops(result, cfg, a, a.peak_tflops * 1e12 if a.peak_tflops else None)
    add_ratios(result, same_weights=bool(weights_dir))
    write_result(a.out, result)
    print_summary(result, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""LoRA training throughput: the kit (KerasHub + JAX) vs Hugging Face transformers + PEFT (torch), same batches.

Both sides train the same Gemma 2 architecture (the Hugging Face config is
derived from the Keras backbone's config: layers, heads, kv heads, head_dim,
hidden, intermediate, vocabulary, soft-caps, sliding window, query
pre-attention scalar), with LoRA of the same rank, alpha and target layers,
the same masked loss (prompt and padding labels excluded: `sample_weight` 0
on the kit side, label -100 on the HF side), AdamW with the same schedule and
global-norm clipping, and the very same padded batches: the prepared
sample's train split tokenised by the kit's `Encoder`, grouped by
`kit.batching.plan_batches` and padded by `make_batch`.

The kit side is the kit's own loop (`kit.engine.Engine.run`, jitted
stateless steps); the HF side is a plain PyTorch loop (forward with
`use_cache=False`, cross-entropy on float32 logits, backward,
`clip_grad_norm_`, `AdamW.step`). Each side runs in its own child process
pinned to the same CPU cores (same thread count), so it reports its own
peak memory.

Padding modes (timed on both sides unless noted):
- `buckets`: the kit's lengths from `choose_buckets` (as `kit finetune` with
  `data.auto_buckets = 6`), one compiled program per length.
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
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import FORMULA, batch_train_flops, lora_macs, lora_params, matmul_params, mfu, peak_flops  # noqa: E402
from machine import machine_info  # noqa: E402
from sides import (  # noqa: E402
    ROOT,
    BenchError,
    available_threads,
    backbone_config,
    emit,
    hf_export,
    peak_rss_mib,
    pin_threads,
    rss_mib,
    run_child,
    write_result,
)

SCRIPT = Path(__file__).resolve()
TARGETS = {"kit_over_hf_tokens_per_s_cpu_tiny": 1.5, "padding_share_with_buckets": 0.10, "mfu_h100_2b_seq512": 0.40}
LORA_TARGETS = {
    "qv": ("query", "value"),
    "all": ("query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"),
}
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
    p.add_argument("--size", choices=("tiny", "2b"), default="tiny",
                   help="tiny: the demo base models/tiny-base; 2b: Gemma 2 2B architecture (needs --random-init)")
    p.add_argument("--random-init", action="store_true",
                   help="random weights on both sides (required for --size 2b: same FLOPs, no download)")
    p.add_argument("--preset", default="models/tiny-base", help="the tiny base preset (tokenizer, tiny config)")
    p.add_argument("--data", default=None, help="prepared dataset dir (default data/prepared), or 'synthetic' "
                   "for random fixed-length sequences (default for --size 2b)")
    p.add_argument("--base-run", default="runs/tiny-base",
                   help="run exported with `kit export --to hf` so the HF side holds the same base weights (tiny)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (tiny 16, 2b 8)")
    p.add_argument("--max-length", type=int, default=None, help="largest sequence length (tiny 256, 2b 512)")
    p.add_argument("--auto-buckets", type=int, default=6, help="bucket lengths chosen by kit.batching.choose_buckets")
    p.add_argument("--padding", default=None,
                   help="comma-separated modes: buckets, fixed, dynamic (HF only); default all three for sample "
                   "data, fixed for synthetic")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps per mode (cpu 30, gpu 20)")
    p.add_argument("--warmup-rounds", type=int, default=None,
                   help="untimed steps per distinct shape before timing (cpu 1, gpu 2)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale alpha/rank)")
    p.add_argument("--targets", choices=tuple(LORA_TARGETS), default=None,
                   help="LoRA target layers (tiny: all, as configs/tiny.toml; 2b: qv, as configs/gemma2_2b_gpu.toml)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="weights dtype (auto: float32 on cpu, bfloat16 on gpu); LoRA adapters stay float32 on both sides")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for each side (default: all cores)")
    p.add_argument("--sides", default="kit,hf", help="which sides to run: kit, hf or kit,hf")
    p.add_argument("--hf-attn", default="eager", help="transformers attn_implementation (Gemma 2 has no SDPA)")
    p.add_argument("--hf-weights", default="auto",
                   help="auto: export --base-run with the kit's exporter when it exists, else random; random; or an HF dir")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU (else looked up)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="result JSON (default bench/results/train_throughput[_gpu_2b].json)")
    p.add_argument("--note", default="", help="free text stored with the result (e.g. 'preliminary, machine under load')")
    p.add_argument("--child", choices=("kit", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--hf-weights-dir", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    """Fill size/device defaults and check combinations (BenchError on a bad one)."""
    big = a.size == "2b"
    gpu = a.device == "gpu"
    if big and not a.random_init:
        raise BenchError("--size 2b needs --random-init: the benchmark uses the Gemma 2 2B architecture with "
                         "random weights (same FLOPs, nothing to download). Received: --size 2b without --random-init")
    a.data = a.data or ("synthetic" if big else "data/prepared")
    a.batch_size = (8 if big else 16) if a.batch_size is None else a.batch_size
    a.max_length = (512 if big else 256) if a.max_length is None else a.max_length
    a.targets = a.targets or ("qv" if big else "all")
    a.steps = (20 if gpu else 30) if a.steps is None else a.steps
    a.warmup_rounds = (2 if gpu else 1) if a.warmup_rounds is None else a.warmup_rounds
    a.dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if gpu else "float32")
    synthetic = a.data == "synthetic"
    modes = tuple(m.strip() for m in (a.padding or ("fixed" if synthetic else "buckets,fixed,dynamic")).split(",") if m.strip())
    bad = set(modes) - {"buckets", "fixed", "dynamic"}
    if bad or not modes:
        raise BenchError(f"--padding takes buckets, fixed and/or dynamic. Received: --padding {a.padding}")
    if synthetic and set(modes) != {"fixed"}:
        raise BenchError("--data synthetic has one fixed length: use --padding fixed. Received: --padding " + str(a.padding))
    a.padding = modes
    sides = tuple(s.strip() for s in a.sides.split(",") if s.strip())
    if not sides or set(sides) - {"kit", "hf"}:
        raise BenchError(f"--sides takes kit, hf or kit,hf. Received: --sides {a.sides}")
    a.sides = sides
    for name in ("batch_size", "max_length", "steps", "rank", "auto_buckets", "warmup_rounds"):
        if getattr(a, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be ≥ 1. Received: {getattr(a, name)}")
    a.threads = a.threads or available_threads()
    a.out = a.out or str(ROOT / "bench/results" / ("train_throughput_gpu_2b.json" if big and gpu else "train_throughput.json"))
    return a


# ---------------------------------------------------------------------- data (identical in both children)

def make_data(a):
    """`(examples, pad_id, {mode: buckets})`, a pure function of the flags."""
    from sides import sample_examples, synthetic_examples

    from kit.batching import choose_buckets

    if a.data == "synthetic":
        vocab = backbone_config(a.size, a.preset)["vocabulary_size"]
        n = a.batch_size * (a.steps + a.warmup_rounds + 1)
        return synthetic_examples(n, a.max_length, vocab, seed=a.seed), 0, {"fixed": (a.max_length,)}
    examples, pad_id = sample_examples(a.data, a.preset, longest=a.max_length)
    lengths = [len(e.ids) - 1 for e in examples]
    buckets = {"buckets": choose_buckets(lengths, a.auto_buckets, a.max_length), "fixed": (a.max_length,),
               "dynamic": (a.max_length,)}
    return examples, pad_id, {m: buckets[m] for m in a.padding}


def dynamic_trim(batch):
    """Cut a padded batch to its longest row (pad-to-longest, as a transformers collator does)."""
    from kit.batching import Batch

    n = max(int(batch.x["padding_mask"].sum(axis=1).max()), 1)
    x = {k: v[:, :n] for k, v in batch.x.items()}
    return Batch(x, batch.y[:, :n], batch.sample_weight[:, :n], batch.real_tokens)


def mode_batches(examples, buckets, a, mode: str, pad_id: int):
    """The timed batches of a mode (the first `steps` of the seeded plan), the warm-up batches
    (`warmup_rounds` per distinct shape) and, per shape, one example that falls in it."""
    from kit.batching import make_batch, plan_batches

    plan = plan_batches(examples, buckets, a.batch_size, seed=a.seed)
    if len(plan) < a.steps:
        raise BenchError(f"--steps {a.steps} is more than the {len(plan)} batches of one epoch; lower --steps.")
    chosen = plan.batches[: a.steps]
    timed = [make_batch([examples[i] for i in idx], length, a.batch_size, pad_id) for length, idx in chosen]
    if mode == "dynamic":
        timed = [dynamic_trim(b) for b in timed]
    warm, shape_examples, seen = [], [], set()
    for batch, (_, idx) in zip(timed, chosen, strict=True):
        if batch.length not in seen:
            seen.add(batch.length)
            warm.extend([batch] * a.warmup_rounds)
            shape_examples.append(examples[idx[0]])
    return timed, warm, shape_examples


def padding_shares(examples, buckets_by_mode: dict, a, pad_id: int) -> dict:
    """Padding share of a whole epoch under each mode (filler rows of a last partial batch included)."""
    from kit.batching import make_batch, plan_batches

    out = {}
    for mode, buckets in buckets_by_mode.items():
        plan = plan_batches(examples, buckets, a.batch_size, seed=a.seed)
        if mode != "dynamic":
            out[mode] = round(plan.padding_share(examples, a.batch_size), 4)
            continue
        slots = real = 0
        for length, idx in plan.batches:
            b = dynamic_trim(make_batch([examples[i] for i in idx], length, a.batch_size, pad_id))
            slots += b.y.size
            real += b.real_tokens
        out[mode] = round(1 - real / max(slots, 1), 4)
    return out


def summarise(step_s: list[float], timed) -> dict:
    seconds = sum(step_s)
    total = sum(b.y.size for b in timed)
    real = sum(b.real_tokens for b in timed)
    target = int(sum(float(b.sample_weight.sum()) for b in timed))
    return {
        "steps": len(step_s),
        "seconds": round(seconds, 4),
        "step_s_median": round(statistics.median(step_s), 5),
        "step_s_min": round(min(step_s), 5),
        "step_s_max": round(max(step_s), 5),
        "tokens": total,
        "real_tokens": real,
        "target_tokens": target,
        "tokens_per_s": round(total / seconds, 1),
        "real_tokens_per_s": round(real / seconds, 1),
        "target_tokens_per_s": round(target / seconds, 1),
        "shapes": [[b.length, b.y.shape[0]] for b in timed],
    }


# ---------------------------------------------------------------------- the kit side

def run_kit(a) -> dict:
    from sides import build_kit_lm, check_jax_device, jax_device_info

    check_jax_device(a.device)
    import jax

    from kit.engine import Engine, LoopOptions
    from kit.model import enable_lora, parameter_counts
    from kit.optim import make_optimizer

    examples, pad_id, buckets_by_mode = make_data(a)
    t0 = time.perf_counter()
    lm = build_kit_lm(a.size, a.preset, dtype=a.dtype, seed=a.seed)
    import keras

    keras.utils.set_random_seed(a.seed)
    enable_lora(lm, rank=a.rank, alpha=a.alpha, targets=a.targets)
    optimizer = make_optimizer(learning_rate=a.learning_rate, warmup_steps=10, total_steps=10_000,
                               weight_decay=a.weight_decay, clip_norm=1.0)
    engine = Engine(lm, optimizer, pad_id=pad_id)
    load_s = time.perf_counter() - t0
    out = {"side": "kit", "load_s": round(load_s, 2), "parameters": parameter_counts(lm),
           "rss_mib_model_loaded": rss_mib(), "modes": {}}
    for mode, buckets in buckets_by_mode.items():
        if mode == "dynamic":
            continue  # every new length would be a new XLA program
        timed, _, warm_examples = mode_batches(examples, buckets, a, mode, pad_id)
        initial_loss = _kit_initial_loss(engine, examples, buckets, a) if not out["modes"] else None
        # Warm-up: the kit's loop over one example per timed shape (compiles each once).
        t0 = time.perf_counter()
        engine.run(warm_examples, [], LoopOptions(total_steps=len(warm_examples) * a.warmup_rounds,
                                                  batch_size=a.batch_size, buckets=tuple(buckets), seed=None,
                                                  progress=False, log_every=1))
        warm_s = time.perf_counter() - t0
        traces = engine._micro._cache_size()
        # Timed: the kit's own loop over the seeded plan (the same batches the HF side gets).
        state, _ = engine.run(examples, [], LoopOptions(total_steps=len(timed), batch_size=a.batch_size,
                                                        buckets=tuple(buckets), seed=a.seed, progress=False,
                                                        log_every=1))
        elapsed = [r["elapsed_s"] for r in state.history if "elapsed_s" in r]
        step_s = [t - s for s, t in zip([0.0, *elapsed[:-1]], elapsed, strict=True)]
        res = summarise(step_s, timed)
        res.update(warmup_s=round(warm_s, 2), warmup_steps=len(warm_examples) * a.warmup_rounds,
                   compiled_shapes=sorted({b.length for b in timed}), recompiles_while_timed=engine._micro._cache_size() - traces,
                   first_loss=state.history[0]["train_loss"], last_loss=state.history[-1]["train_loss"],
                   peak_rss_mib=peak_rss_mib(), **_jax_mem(jax_device_info()))
        if initial_loss is not None:
            res["initial_loss"] = initial_loss
        out["modes"][mode] = res
    info = jax_device_info()
    out.update(device_name=info["device_kind"], backend=info["backend"], jax_devices=len(jax.devices()))
    return out


def _kit_initial_loss(engine, examples, buckets, a) -> float:
    """Loss of the first timed batch before any update (LoRA B starts at 0: the base model's loss)."""
    from kit.batching import plan_batches

    length, idx = plan_batches(examples, buckets, a.batch_size, seed=a.seed).batches[0]
    return engine.loss_on([examples[i] for i in idx], buckets=(length,), batch_size=a.batch_size)


def _jax_mem(info: dict) -> dict:
    peak = info.get("peak_bytes_in_use")
    return {"peak_device_mib": round(peak / 2**20, 1)} if peak else {}


# ---------------------------------------------------------------------- the Hugging Face side

def run_hf(a) -> dict:
    import hf_gemma2 as hf
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sides import check_torch_device

    device = check_torch_device(a.device)
    hf.set_threads(a.threads)
    examples, pad_id, buckets_by_mode = make_data(a)
    t0 = time.perf_counter()
    cfg = backbone_config(a.size, a.preset)
    model = hf.build_model(cfg, dtype=a.dtype, device=device, attn=a.hf_attn, weights_dir=a.hf_weights_dir, seed=a.seed)
    torch.manual_seed(a.seed)
    model = hf.add_lora(model, rank=a.rank, alpha=a.alpha, targets=LORA_TARGETS[a.targets])
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, hf.warmup_decay(a.learning_rate, 10, 10_000))
    load_s = time.perf_counter() - t0
    trainable, total = model.get_nb_trainable_parameters()
    lora_dtypes = sorted({str(p.dtype) for p in params})

    def masked_loss(batch):
        ids = torch.from_numpy(batch.x["token_ids"]).to(device, non_blocking=True)
        mask = torch.from_numpy(batch.x["padding_mask"]).to(device, non_blocking=True)
        labels = torch.from_numpy(np.where(batch.sample_weight > 0, batch.y, -100).astype(np.int64)).to(device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss_sum = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return loss_sum, (labels != -100).sum()

    def step(batch) -> float:
        loss_sum, n = masked_loss(batch)
        (loss_sum / n.clamp(min=1)).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return loss_sum.item() / max(int(n.item()), 1)  # .item() syncs, like the kit's float(loss)

    out = {"side": "hf", "load_s": round(load_s, 2), "attn_implementation": a.hf_attn,
           "weights": a.hf_weights_dir or "random", "lora_dtypes": lora_dtypes,
           "parameters": {"trainable": int(trainable), "total": int(total)},
           "rss_mib_model_loaded": rss_mib(), "torch_threads": torch.get_num_threads(), "modes": {}}
    for mode, buckets in buckets_by_mode.items():
        timed, warm, _ = mode_batches(examples, buckets, a, mode, pad_id)
        initial_loss = None
        if not out["modes"]:  # before any update: the base model's loss on the first timed batch
            with torch.no_grad():
                initial_loss = float(masked_loss(timed[0])[0] / max(float(timed[0].sample_weight.sum()), 1.0))
        t0 = time.perf_counter()
        for batch in warm:
            step(batch)
        warm_s = time.perf_counter() - t0
        step_s, losses = [], []
        for batch in timed:
            s = time.perf_counter()
            losses.append(step(batch))
            step_s.append(time.perf_counter() - s)
        res = summarise(step_s, timed)
        res.update(warmup_s=round(warm_s, 2), warmup_steps=len(warm), first_loss=losses[0], last_loss=losses[-1],
                   peak_rss_mib=peak_rss_mib())
        if initial_loss is not None:
            res["initial_loss"] = initial_loss
        peak = hf.peak_device_bytes(device)
        if peak:
            res["peak_device_mib"] = round(peak / 2**20, 1)
        out["modes"][mode] = res
    out["device_name"] = hf.device_name(device)
    return out


# ---------------------------------------------------------------------- the parent

def child_main(a) -> int:
    n = pin_threads(a.threads)
    a.threads = n
    result = run_kit(a) if a.child == "kit" else run_hf(a)
    result["threads"] = n
    emit(result)
    return 0


def hf_weights_dir(a, notes: list[str]) -> str | None:
    if a.hf_weights == "random" or a.random_init or a.size != "tiny":
        return None
    if a.hf_weights != "auto":
        if not (Path(a.hf_weights) / "config.json").is_file():
            raise BenchError(f"--hf-weights {a.hf_weights}: no config.json there (give an HF export dir, auto or random).")
        return a.hf_weights
    try:
        return str(hf_export(a.base_run, ROOT / "bench/tmp/hf" / Path(a.base_run).name))
    except BenchError as e:
        notes.append(f"HF side on random weights: {e}")
        return None


def add_flops(result: dict, cfg: dict, a, peak_override: float | None) -> None:
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
        print(f"[train_throughput] warning: load average {load_before[0]:.1f} on {available_threads()} cores: other "
              "processes compete for the CPU and distort the timings (torch's OpenMP threads suffer most).",
              file=sys.stderr)
    sides = {}
    for side in a.sides:
        print(f"[train_throughput] {side} side ...", file=sys.stderr, flush=True)
        sides[side] = run_child(SCRIPT, [*child_args, "--child", side])
    result = {
        "benchmark": "LoRA training throughput: kit (KerasHub/JAX) vs transformers + PEFT (torch)",
        "note": " | ".join(notes),
        "device": a.device,
        "size": a.size,
        "config": {
            "backbone": cfg, "dtype": a.dtype, "lora": {"rank": a.rank, "alpha": a.alpha, "targets": a.targets,
                                                      "layers": list(LORA_TARGETS[a.targets])},
            "batch_size": a.batch_size, "max_length": a.max_length, "data": a.data, "examples": len(examples),
            "buckets": {m: list(b) for m, b in buckets_by_mode.items()}, "timed_steps": a.steps,
            "warmup_rounds": a.warmup_rounds, "optimizer": "AdamW (betas 0.9/0.999, eps 1e-8), global-norm clip 1.0, "
            f"weight decay {a.weight_decay}, warm-up + cosine schedule", "random_init": a.random_init,
            "hf_weights": weights_dir or "random", "hf_attn_implementation": a.hf_attn, "seed": a.seed,
        },
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "threads": {"requested": a.threads, **{s: r.get("threads") for s, r in sides.items()},
                    "hf_torch_threads": sides.get("hf", {}).get("torch_threads")},
        "padding_share": shares,
        "flops": {**FORMULA, "N_value": matmul_params(cfg),
                  "N_lora_macs": {"kit (Keras EinsumDense LoRA)": lora_macs(cfg, a.rank, LORA_TARGETS[a.targets], "keras"),
                                  "hf (PEFT)": lora_macs(cfg, a.rank, LORA_TARGETS[a.targets], "peft")},
                  "lora_params": {"kit (Keras EinsumDense LoRA)": lora_params(cfg, a.rank, LORA_TARGETS[a.targets], "keras"),
                                  "hf (PEFT)": lora_params(cfg, a.rank, LORA_TARGETS[a.targets], "peft")}},
        "sides": sides,
        "ratio_kit_over_hf": {},
        "targets": TARGETS,
        "machine": machine_info(PACKAGES),
    }
    add_flops(result, cfg, a, a.peak_tflops * 1e12 if a.peak_tflops else None)
    if {"kit", "hf"} <= set(sides):
        for mode in sides["kit"]["modes"]:
            if mode in sides["hf"]["modes"]:
                k, h = sides["kit"]["modes"][mode], sides["hf"]["modes"][mode]
                result["ratio_kit_over_hf"][mode] = round(k["real_tokens_per_s"] / h["real_tokens_per_s"], 3)
        if "buckets" in sides["kit"]["modes"] and "dynamic" in sides["hf"]["modes"]:
            result["ratio_kit_over_hf"]["kit_buckets_vs_hf_dynamic"] = round(
                sides["kit"]["modes"]["buckets"]["real_tokens_per_s"] / sides["hf"]["modes"]["dynamic"]["real_tokens_per_s"], 3)
        k0 = next((m.get("initial_loss") for m in sides["kit"]["modes"].values() if "initial_loss" in m), None)
        h0 = next((m.get("initial_loss") for m in sides["hf"]["modes"].values() if "initial_loss" in m), None)
        if k0 is not None and h0 is not None:
            # Before any update LoRA adds 0 (B starts at zero on both sides): with the same base
            # weights (an HF export) the two losses on the first batch must agree to float precision.
            result["initial_loss"] = {"kit": k0, "hf": h0, "abs_diff": abs(k0 - h0),
                                      "same_weights": bool(weights_dir)}
    write_result(a.out, result)
    print_summary(result, a.out)
    return 0


def print_summary(r: dict, out: str) -> None:
    print(f"{'side':<5} {'mode':<8} {'tok/s':>9} {'real tok/s':>11} {'step ms':>8} {'warm-up s':>9} {'peak MiB':>9} {'MFU':>6}")
    for side, s in r["sides"].items():
        for mode, m in s["modes"].items():
            mem = m.get("peak_device_mib") or m.get("peak_rss_mib")
            mfu_text = f"{m['mfu']:.1%}" if m.get("mfu") is not None else "-"
            print(f"{side:<5} {mode:<8} {m['tokens_per_s']:>9.0f} {m['real_tokens_per_s']:>11.0f} "
                  f"{m['step_s_median'] * 1e3:>8.1f} {m['warmup_s']:>9.1f} {mem:>9.0f} {mfu_text:>6}")
    print(f"padding share: {r['padding_share']}")
    print(f"kit / HF (non-padding tokens/s): {r['ratio_kit_over_hf']}  (target ≥ {TARGETS['kit_over_hf_tokens_per_s_cpu_tiny']} on CPU tiny)")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())

"""Generation speed: the kit's `Generator` (KerasHub/JAX) vs transformers `generate` (torch) on the same weights.

The run is exported with the kit's own Hugging Face exporter (`kit export
--run RUN --to hf`), so both sides hold identical weights (the kit keeps a
LoRA run's adapter unmerged, as `kit generate` does; the export has it
merged). Both decode greedily from the same real prompts (the test split's,
tokenised by the kit's `Encoder`, all of one token length so neither side
pads), batch 1 and batch 16, a fixed number of new tokens: early stopping is
off on both sides (the kit gets a stop id that never occurs, transformers
`eos_token_id=None`), so every row generates exactly `--new-tokens` tokens.
The greedy texts of the two sides are compared as a check of identical
weights (float32 on CPU: they normally agree exactly).

Reported per side and batch size: tokens/s (batch × new tokens / latency),
latency (median of `--repeats` calls, one call = the whole batch), ms per
new token, and warm-up (the first call: XLA compilation for the kit, first-call
overheads for torch), reported separately and not in the medians. The kit's
call includes its prompt tokenisation and decoding; so does the HF side's.
Each side runs in its own child process pinned to the same CPU cores.

CPU, tiny demo model (about 2 minutes; needs `make demo` first):

    .venv/bin/python bench/generate_throughput.py

GPU, Gemma 2 2B architecture with random weights, bf16 (prompts still come
from the demo data and the tiny tokenizer, so `make demo` first there too):

    .venv/bin/python bench/generate_throughput.py --device gpu --size 2b --random-init

Decoding FLOPs per new token (for the MFU column; see `bench/flops.py`):
2·N + 4·L·H·d_head·C, C the context length. Decoding is memory-bound, so MFU
is low by nature; tokens/s and latency are the figures to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops import FORMULA, generate_flops_per_token, matmul_params, mfu, peak_flops  # noqa: E402
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
NEVER = -1  # a stop id no model can produce: early stopping off, the stop check still runs
PACKAGES = ("keras", "keras-hub", "jax", "jaxlib", "torch", "transformers", "peft", "numpy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; device-dependent defaults are filled in by `resolve`.

    Example:
        >>> a = resolve(parse_args(["--device", "gpu", "--size", "2b", "--random-init"]))
        >>> a.batch_sizes, a.new_tokens, a.dtype, a.repeats
        ((1, 16), 128, 'bfloat16', 5)
        >>> resolve(parse_args(["--batch-sizes", "1,4"])).batch_sizes
        (1, 4)
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="where both sides run")
    p.add_argument(
        "--size",
        choices=("tiny", "2b"),
        default="tiny",
        help="tiny: --run's model; 2b: Gemma 2 2B architecture (needs --random-init)",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="random weights (required for --size 2b; with tiny: the HF side only, when no export is possible)",
    )
    p.add_argument("--run", default="runs/tiny-lora", help="the kit run to generate with (exported for the HF side)")
    p.add_argument("--preset", default="models/tiny-base", help="tokenizer source (and tiny config) for --size 2b")
    p.add_argument("--data", default="data/prepared", help="prepared dataset dir: prompts come from its test split")
    p.add_argument("--batch-sizes", default="1,16", help="comma-separated batch sizes")
    p.add_argument("--new-tokens", type=int, default=None, help="new tokens per row (cpu 64, gpu 128)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per batch size (cpu 10, gpu 5)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16"),
        default="auto",
        help="weights dtype (auto: float32 on cpu, bfloat16 on gpu)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for each side (default: all cores)")
    p.add_argument("--sides", default="kit,hf", help="which sides to run: kit, hf or kit,hf")
    p.add_argument("--hf-attn", default="eager", help="transformers attn_implementation (Gemma 2 has no SDPA)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU (else looked up)")
    p.add_argument("--out", default=None, help="result JSON (default bench/results/generate_throughput[_gpu_2b].json)")
    p.add_argument("--note", default="", help="free text stored with the result")
    p.add_argument("--child", choices=("kit", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--hf-weights-dir", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def resolve(a: argparse.Namespace) -> argparse.Namespace:
    big, gpu = a.size == "2b", a.device == "gpu"
    if big and not a.random_init:
        raise BenchError(
            "--size 2b needs --random-init: the benchmark uses the Gemma 2 2B architecture with "
            "random weights (nothing to download). Received: --size 2b without --random-init"
        )
    try:
        a.batch_sizes = tuple(int(b) for b in str(a.batch_sizes).split(",") if b.strip())
    except ValueError:
        raise BenchError(f"--batch-sizes takes integers like 1,16. Received: {a.batch_sizes}") from None
    if not a.batch_sizes or min(a.batch_sizes) < 1:
        raise BenchError(f"--batch-sizes must be ≥ 1. Received: {a.batch_sizes}")
    a.new_tokens = (128 if gpu else 64) if a.new_tokens is None else a.new_tokens
    a.repeats = (5 if gpu else 10) if a.repeats is None else a.repeats
    if a.new_tokens < 1 or a.repeats < 1:
        raise BenchError(f"--new-tokens and --repeats must be ≥ 1. Received: {a.new_tokens}, {a.repeats}")
    a.dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if gpu else "float32")
    sides = tuple(s.strip() for s in a.sides.split(",") if s.strip())
    if not sides or set(sides) - {"kit", "hf"}:
        raise BenchError(f"--sides takes kit, hf or kit,hf. Received: --sides {a.sides}")
    a.sides = sides
    a.threads = a.threads or available_threads()
    a.out = a.out or str(
        ROOT / "bench/results" / ("generate_throughput_gpu_2b.json" if big and gpu else "generate_throughput.json")
    )
    return a


def tokenizer_source(a) -> Path:
    """Where the SentencePiece model comes from: the run's preset (tiny) or --preset (2b)."""
    if a.size == "tiny":
        from kit.runs import RunInfo

        if not (Path(a.run) / "run.json").is_file():
            from sides import DEMO_HINT

            raise BenchError(f"Run not found: {a.run}; {DEMO_HINT}.")
        return Path(RunInfo.read(a.run).preset)
    return Path(a.preset)


def pick_prompts(a, n: int) -> tuple[list[str], int, int]:
    """`n` test-split prompts of one token length (the most common one), that length (with <bos>) and
    how many distinct prompts have it.

    One length for the whole batch means no padding on either side and exactly
    the same positions computed. Cycles when fewer than `n` share a length.
    """
    from sides import load_split, preset_proto

    from kit.data.batching import Encoder

    prompts = list(load_split(a.data, "test")["prompt"])
    sp = Encoder(preset_proto(tokenizer_source(a))).sp
    lengths = [1 + len(ids) for ids in sp.encode(prompts)]
    length, _ = Counter(lengths).most_common(1)[0]
    same = [p for p, n_tok in zip(prompts, lengths, strict=True) if n_tok == length]
    return [same[i % len(same)] for i in range(n)], length, len(same)


def time_calls(call, repeats: int, sync=lambda: None) -> tuple[float, list[float], object]:
    """First call (warm-up) seconds, then `repeats` timed calls; returns (warm, times, last output)."""
    t0 = time.perf_counter()
    out = call()
    sync()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = call()
        sync()
        times.append(time.perf_counter() - t0)
    return warm, times, out


def summarise(batch: int, new_tokens: int, warm: float, times: list[float]) -> dict:
    latency = statistics.median(times)
    return {
        "batch_size": batch,
        "new_tokens": new_tokens,
        "warmup_s": round(warm, 3),
        "latency_s_median": round(latency, 4),
        "latency_s_min": round(min(times), 4),
        "latency_s_max": round(max(times), 4),
        "ms_per_new_token": round(latency / new_tokens * 1e3, 3),
        "tokens_per_s": round(batch * new_tokens / latency, 1),
        "repeats": len(times),
    }


# ---------------------------------------------------------------------- the kit side


def run_kit(a) -> dict:
    from sides import build_kit_lm, check_jax_device, jax_device_info

    check_jax_device(a.device)
    from kit.generate import Generator, SamplerSpec
    from kit.model import load_model

    prompts, length, _ = pick_prompts(a, max(a.batch_sizes))
    t0 = time.perf_counter()
    lm = load_model(a.run, dtype=a.dtype) if a.size == "tiny" else build_kit_lm(a.size, a.preset, dtype=a.dtype)
    gen = Generator(lm, batch_size=max(a.batch_sizes), length_buckets=(length + a.new_tokens,))
    stop_ids = gen.stop_ids
    gen.stop_ids = (NEVER,)  # early stopping off: every row decodes exactly --new-tokens tokens
    load_s = time.perf_counter() - t0
    out = {
        "side": "kit",
        "load_s": round(load_s, 2),
        "prompt_tokens": length,
        "usual_stop_ids": list(stop_ids),
        "lora_adapter_unmerged": any("lora_kernel" in v.path for v in lm.backbone.weights),
        "rss_mib_model_loaded": rss_mib(),
        "batches": {},
        "texts": {},
    }
    greedy = SamplerSpec(name="greedy")
    for b in a.batch_sizes:
        traces = gen.traces

        def call(b=b):
            return [row[0] for row in gen.complete(prompts[:b], greedy, max_new_tokens=a.new_tokens)]

        warm, times, samples = time_calls(call, a.repeats)
        if any(s.new_tokens != a.new_tokens for s in samples):
            raise RuntimeError(f"kit generated {[s.new_tokens for s in samples]} tokens, expected {a.new_tokens}")
        res = summarise(b, a.new_tokens, warm, times)
        res.update(compiles=gen.traces - traces, peak_rss_mib=peak_rss_mib())
        peak = jax_device_info().get("peak_bytes_in_use")
        if peak:
            res["peak_device_mib"] = round(peak / 2**20, 1)
        out["batches"][str(b)] = res
        out["texts"][str(b)] = [s.text for s in samples]
    info = jax_device_info()
    out.update(device_name=info["device_kind"], backend=info["backend"])
    return out


# ---------------------------------------------------------------------- the Hugging Face side


def run_hf(a) -> dict:
    import hf_gemma2 as hf
    import torch
    from sides import check_torch_device, preset_proto

    from kit.data.batching import Encoder
    from kit.data.prompt import extract_response
    from kit.data.tskv import unescape

    device = check_torch_device(a.device)
    hf.set_threads(a.threads)
    prompts, length, _ = pick_prompts(a, max(a.batch_sizes))
    encoder = Encoder(preset_proto(tokenizer_source(a)))
    t0 = time.perf_counter()
    cfg = backbone_config(a.size, tokenizer_source(a))
    model = hf.build_model(cfg, dtype=a.dtype, device=device, attn=a.hf_attn, weights_dir=a.hf_weights_dir)
    model.eval()
    model.generation_config.eos_token_id = None  # early stopping off, as on the kit side
    load_s = time.perf_counter() - t0
    out = {
        "side": "hf",
        "load_s": round(load_s, 2),
        "prompt_tokens": length,
        "attn_implementation": a.hf_attn,
        "weights": a.hf_weights_dir or "random",
        "cache_implementation": model.generation_config.cache_implementation,
        "rss_mib_model_loaded": rss_mib(),
        "torch_threads": torch.get_num_threads(),
        "batches": {},
        "texts": {},
    }
    sync = (lambda: torch.cuda.synchronize()) if device == "cuda" else (lambda: None)
    for b in a.batch_sizes:

        def call(b=b):
            # Same work as the kit's `complete`: tokenise, generate, decode.
            ids = torch.tensor([[encoder.bos_id, *t] for t in encoder.sp.encode(prompts[:b])], device=device)
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=a.new_tokens,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=0,
                )
            new = gen[:, ids.shape[1] :].tolist()
            return [
                unescape(extract_response(p + encoder.sp.decode(n))) for p, n in zip(prompts[:b], new, strict=True)
            ], len(new[0])

        warm, times, (texts, produced) = time_calls(call, a.repeats, sync)
        if produced != a.new_tokens:
            raise RuntimeError(f"transformers generated {produced} tokens, expected {a.new_tokens}")
        res = summarise(b, a.new_tokens, warm, times)
        res["peak_rss_mib"] = peak_rss_mib()
        peak = hf.peak_device_bytes(device)
        if peak:
            res["peak_device_mib"] = round(peak / 2**20, 1)
        out["batches"][str(b)] = res
        out["texts"][str(b)] = texts
    out["device_name"] = hf.device_name(device)
    return out


# ---------------------------------------------------------------------- the parent


def child_main(a) -> int:
    a.threads = pin_threads(a.threads)
    result = run_kit(a) if a.child == "kit" else run_hf(a)
    result["threads"] = a.threads
    emit(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        a = resolve(parse_args(argv))
        return child_main(a) if a.child else parent_main(a, argv)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parent_main(a, argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    notes = [a.note] if a.note else []
    _, length, distinct = pick_prompts(a, 1)  # fails early, with the fix, when the demo has not run
    weights_dir = None
    if "hf" in a.sides and a.size == "tiny":
        try:
            weights_dir = str(hf_export(a.run, ROOT / "bench/tmp/hf" / Path(a.run).name))
        except BenchError as e:
            if not a.random_init:
                raise
            notes.append(f"HF side on random weights: {e}")
    child_args = [*argv, "--threads", str(a.threads)]
    if weights_dir:
        child_args += ["--hf-weights-dir", weights_dir]
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * a.threads:
        print(
            f"[generate_throughput] warning: load average {load_before[0]:.1f} on {available_threads()} cores: "
            "other processes distort the timings.",
            file=sys.stderr,
        )
    sides = {}
    for side in a.sides:
        print(f"[generate_throughput] {side} side ...", file=sys.stderr, flush=True)
        sides[side] = run_child(SCRIPT, [*child_args, "--child", side])
    cfg = backbone_config(a.size, tokenizer_source(a))
    context = length + a.new_tokens / 2  # mean context over the decoded positions
    per_token = generate_flops_per_token(cfg, round(context))
    for side in sides.values():
        peak = (
            a.peak_tflops * 1e12
            if a.peak_tflops
            else (peak_flops(side.get("device_name", "")) if a.device == "gpu" else None)
        )
        for res in side["batches"].values():
            flops = per_token * res["batch_size"] * res["new_tokens"]
            res["achieved_tflops_per_s"] = round(flops / res["latency_s_median"] / 1e12, 5)
            m = mfu(flops, res["latency_s_median"], peak)
            res["mfu"] = round(m, 5) if m is not None else None
    ratio, agree = {}, {}
    if {"kit", "hf"} <= set(sides):
        for b in sides["kit"]["batches"]:
            ratio[b] = round(sides["kit"]["batches"][b]["tokens_per_s"] / sides["hf"]["batches"][b]["tokens_per_s"], 3)
            kt, ht = sides["kit"]["texts"][b], sides["hf"]["texts"][b]
            agree[b] = f"{sum(x == y for x, y in zip(kt, ht, strict=True))}/{len(kt)}"
    for side in sides.values():
        side["texts"] = {b: t[:2] for b, t in side["texts"].items()}  # a sample is enough in the JSON
    result = {
        "benchmark": "Greedy generation speed: kit Generator (KerasHub/JAX) vs transformers generate (torch)",
        "note": " | ".join(notes),
        "device": a.device,
        "size": a.size,
        "config": {
            "run": a.run if a.size == "tiny" else None,
            "backbone": cfg,
            "dtype": a.dtype,
            "batch_sizes": list(a.batch_sizes),
            "new_tokens": a.new_tokens,
            "prompt_tokens": length,
            "distinct_prompts": min(distinct, max(a.batch_sizes)),
            "repeats": a.repeats,
            "sampler": "greedy",
            "early_stopping": "off on both sides",
            "random_init": a.random_init,
            "hf_weights": weights_dir or "random",
            "hf_attn_implementation": a.hf_attn,
        },
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "threads": {
            "requested": a.threads,
            **{s: r.get("threads") for s, r in sides.items()},
            "hf_torch_threads": sides.get("hf", {}).get("torch_threads"),
        },
        "flops": {
            "generate_flops_per_token": FORMULA["generate_flops_per_token"],
            "N": FORMULA["N"],
            "N_value": matmul_params(cfg),
            "context_used": round(context, 1),
        },
        "sides": sides,
        "ratio_kit_over_hf_tokens_per_s": ratio,
        "greedy_texts_equal": agree,
        "machine": machine_info(PACKAGES),
    }
    write_result(a.out, result)
    print(f"{'side':<5} {'batch':>5} {'tok/s':>9} {'latency s':>10} {'ms/token':>9} {'warm-up s':>10}")
    for name, s in sides.items():
        for m in s["batches"].values():
            print(
                f"{name:<5} {m['batch_size']:>5} {m['tokens_per_s']:>9.1f} {m['latency_s_median']:>10.3f} "
                f"{m['ms_per_new_token']:>9.2f} {m['warmup_s']:>10.2f}"
            )
    print(f"kit / HF tokens/s: {ratio}; greedy texts equal: {agree}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One full-size LoRA step on this CPU: the kit vs transformers + PEFT, Gemma 2 2B, the same random weights.

Three child processes, one after another, so each side's peak RSS is its
own: `weights` builds the kit's Gemma 2 2B with random weights and writes
it as a bfloat16 Hugging Face checkpoint (`kit.model.hf_checkpoint.write_hf_checkpoint`)
into a temporary dir; `kit` loads that checkpoint with KerasHub's converter
and runs the kit's train step (`kit.train.loop.Engine.run`, the
`configs/gemma2_2b_gpu.toml` levers: factored LoRA, chunked loss, remat
`auto`); `hf` loads it with `Gemma2ForCausalLM.from_pretrained` and runs a
plain PyTorch step (forward, float32 cross-entropy, backward, AdamW). Both
get LoRA rank 8 on q and v, and the same batch of 1 × 256 tokens. Reported per
side: the load time, the first step (the kit's includes XLA compilation),
the median of the timed steps and the peak RSS.

Run it alone, with no other full-size job on the machine (about 10 minutes,
5 GB of disk for the checkpoint, up to ~12 GB of memory per child):

    .venv/bin/python bench/step_2b_cpu.py
    .venv/bin/python bench/step_2b_cpu.py --size tiny                  # seconds (the test)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import ROOT, BenchError, emit, peak_rss_mib, pin_threads, rss_mib, run_child, write_result  # noqa: E402

import kit  # noqa: E402, F401  (the JAX backend for Keras; imports neither Keras nor JAX itself)

SCRIPT = Path(__file__).resolve()
PACKAGES = ("keras", "keras-hub", "jax", "jaxlib", "torch", "transformers", "peft", "numpy")


def parse_args(argv=None) -> argparse.Namespace:
    """Flags.

    Example:
        >>> a = parse_args([])
        >>> a.size, a.batch_size, a.length, a.rank, a.steps
        ('2b', 1, 256, 8, 2)
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("2b", "tiny"), default="2b")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="timed steps after the first (warm-up) one")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for each side (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="result JSON (default bench/results/step_2b_cpu.json)")
    p.add_argument("--child", choices=("weights", "kit", "hf"), help=argparse.SUPPRESS)
    p.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if min(a.batch_size, a.length, a.rank, a.steps) < 1:
        raise BenchError("--batch-size, --length, --rank and --steps must be ≥ 1.")
    return a


def arch(a) -> dict:
    """The GemmaBackbone arguments of `--size`: Gemma 2 2B, or the kit's micro test model."""
    from flops import GEMMA2_2B

    if a.size == "2b":
        return dict(GEMMA2_2B)
    from kit.testing import MICRO_BACKBONE  # here, not above: the parent of a 2B run loads no Keras

    return dict(MICRO_BACKBONE)


def batch(a):
    """The one batch both sides train on: random ids, the first quarter a masked-out prompt."""
    import numpy as np

    rs = np.random.RandomState(a.seed)
    ids = rs.randint(3, arch(a)["vocabulary_size"], (a.batch_size, a.length + 1)).astype("int32")
    weight = np.ones((a.batch_size, a.length), "float32")
    weight[:, : a.length // 4] = 0.0
    return ids[:, :-1], ids[:, 1:], weight


def child_weights(a) -> dict:
    """Random-weight Gemma 2 (kit/KerasHub) written as an HF checkpoint: what both sides load.

    Written in bfloat16 (the exporter copies every tensor, so a float32 2B
    writer would peak at ~21 GB); both sides read it back as float32, so they
    hold the very same values."""
    import keras
    import keras_hub

    from kit.model.hf_checkpoint import write_hf_checkpoint

    keras.utils.set_random_seed(a.seed)
    backbone = keras_hub.models.GemmaBackbone(**arch(a), dtype="bfloat16")
    tokenizer = keras_hub.models.GemmaTokenizer(proto=str(ROOT / "models/tiny-base/assets/tokenizer/vocabulary.spm"))
    pre = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer=tokenizer, sequence_length=a.length)
    lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=pre)
    t0 = time.perf_counter()
    write_hf_checkpoint(lm, a.weights_dir)
    return {"write_s": round(time.perf_counter() - t0, 1), "parameters": int(backbone.count_params())}


def child_kit(a) -> dict:
    import jax
    import keras
    import keras_hub
    import numpy as np

    from kit.config import TrainConfig
    from kit.data.batching import Example
    from kit.model.lora import enable_lora
    from kit.train.lean import step_levers
    from kit.train.loop import Engine, LoopOptions
    from kit.train.optim import make_optimizer

    t0 = time.perf_counter()
    lm = keras_hub.models.GemmaCausalLM.from_preset(a.weights_dir, dtype="float32")
    keras.utils.set_random_seed(a.seed)
    enable_lora(lm, rank=a.rank, alpha=2.0 * a.rank, targets="qv")
    # the defaults, as configs/gemma2_2b_gpu.toml uses them, resolved for this batch
    levers = step_levers(dataclasses.replace(TrainConfig(), batch_size=a.batch_size), lm, a.length)
    engine = Engine(lm, make_optimizer(learning_rate=1e-4, warmup_steps=0, total_steps=100), **levers)
    load_s = time.perf_counter() - t0
    x, y, w = batch(a)
    # Examples whose make_batch is exactly (x, y, w): the full row, the prompt a quarter of it.
    examples = [Example(np.concatenate([x[i], y[i, -1:]]), a.length // 4 + 1) for i in range(a.batch_size)]
    times, losses = [], []
    for _ in range(a.steps + 1):
        t = time.perf_counter()
        state, _ = engine.run(
            examples,
            [],
            LoopOptions(total_steps=1, batch_size=a.batch_size, buckets=(a.length,), seed=None, progress=False),
        )
        times.append(time.perf_counter() - t)
        losses.append(state.history[-1]["train_loss"])
    return {
        "side": "kit",
        "levers": levers,
        "load_s": round(load_s, 1),
        "first_step_s": round(times[0], 4),
        "step_s": round(statistics.median(times[1:]), 4),
        "first_loss": losses[0],
        "loss": losses[-1],
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib_end": rss_mib(),
        "jax": jax.__version__,
    }


def child_hf(a) -> dict:
    import hf_gemma2 as hf
    import torch
    import torch.nn.functional as F
    import transformers

    hf.set_threads(a.threads)
    t0 = time.perf_counter()
    model = transformers.Gemma2ForCausalLM.from_pretrained(
        a.weights_dir, dtype=torch.float32, attn_implementation="eager"
    )
    torch.manual_seed(a.seed)
    model = hf.add_lora(model, rank=a.rank, alpha=2.0 * a.rank, targets=("query", "value"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    load_s = time.perf_counter() - t0
    x, y, w = batch(a)
    ids, labels = torch.from_numpy(x).long(), torch.from_numpy(y).long()
    labels[torch.from_numpy(w) == 0] = -100
    times, losses = [], []
    for _ in range(a.steps + 1):
        t = time.perf_counter()
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        times.append(time.perf_counter() - t)
    return {
        "side": "hf",
        "load_s": round(load_s, 1),
        "first_step_s": round(times[0], 4),
        "step_s": round(statistics.median(times[1:]), 4),
        "first_loss": losses[0],
        "loss": losses[-1],
        "peak_rss_mib": peak_rss_mib(),
        "rss_mib_end": rss_mib(),
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        if a.child:
            a.threads = pin_threads(a.threads or len(__import__("os").sched_getaffinity(0)))
            emit({"weights": child_weights, "kit": child_kit, "hf": child_hf}[a.child](a))
            return 0
        return parent(a, list(sys.argv[1:] if argv is None else argv))
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parent(a, argv: list[str]) -> int:
    import os

    threads = a.threads or len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="step2b-") as tmp:
        common = [*argv, "--threads", str(threads), "--weights-dir", tmp]
        print("[step_2b_cpu] writing the random weights ...", file=sys.stderr, flush=True)
        weights = run_child(SCRIPT, [*common, "--child", "weights"])
        sides = {}
        for side in ("kit", "hf"):
            print(f"[step_2b_cpu] {side} side ...", file=sys.stderr, flush=True)
            sides[side] = run_child(SCRIPT, [*common, "--child", side])
    kit_s, hf_s = sides["kit"], sides["hf"]
    result = {
        "benchmark": "One LoRA train step on CPU, the kit vs transformers + PEFT, same random weights",
        "config": {
            "size": a.size,
            "architecture": arch(a),
            "dtype": "float32",
            "batch_size": a.batch_size,
            "length": a.length,
            "lora": {"rank": a.rank, "alpha": 2.0 * a.rank, "targets": "qv"},
            "timed_steps": a.steps,
            "threads": threads,
        },
        "weights": weights,
        "sides": sides,
        "ratio_hf_step_s_over_kit": round(hf_s["step_s"] / kit_s["step_s"], 3),
        "ratio_hf_peak_rss_over_kit": round(hf_s["peak_rss_mib"] / kit_s["peak_rss_mib"], 3),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "machine": machine_info(PACKAGES),
    }
    out = a.out or str(ROOT / "bench/results" / ("step_2b_cpu.json" if a.size == "2b" else "step_tiny_cpu.json"))
    write_result(out, result)
    for s in (kit_s, hf_s):
        print(
            f"{s['side']:3s}: load {s['load_s']} s, first step {s['first_step_s']} s, step {s['step_s']} s, "
            f"peak RSS {s['peak_rss_mib'] / 1024:.2f} GiB, loss {s['loss']:.4f}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

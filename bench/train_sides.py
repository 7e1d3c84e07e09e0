"""The two sides of the training benchmark, each run in its own child process: the kit and transformers + PEFT.

The kit side is the kit's own loop (`kit.train.loop.Engine.run`, jitted
stateless steps); the HF side is a plain PyTorch loop (forward with
`use_cache=False`, cross-entropy on float32 logits, backward,
`clip_grad_norm_`, `AdamW.step`). Both get LoRA of the same rank, alpha and
target layers, AdamW with the same schedule and global-norm clipping, and
the very same batches (`train_data`). JAX, Keras, torch and the kit are
imported inside the functions, after the child has pinned its CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path

from sides import ROOT, BenchError, backbone_config, hf_export, peak_rss_mib, rss_mib
from train_data import make_data, mode_batches, summarise

# --targets: the KerasHub LoRA target layers (hf_gemma2.PEFT_MODULE maps them to transformers' names).
LORA_TARGETS = {
    "qv": ("query", "value"),
    "all": ("query", "key", "value", "attention_output", "ffw_gating", "ffw_gating_2", "ffw_linear"),
}


def run_kit(a) -> dict:
    """The kit side (in its child process): `kit.train.loop.Engine.run` timed per padding mode (not `dynamic`)."""
    from sides import build_kit_lm, check_jax_device, jax_device_info

    check_jax_device(a.device)
    import jax

    from kit.model import enable_lora, parameter_counts
    from kit.train.loop import Engine, LoopOptions
    from kit.train.optim import make_optimizer

    examples, pad_id, buckets_by_mode = make_data(a)
    t0 = time.perf_counter()
    lm = build_kit_lm(a.size, a.preset, dtype=a.dtype, seed=a.seed)
    import keras

    keras.utils.set_random_seed(a.seed)
    enable_lora(lm, rank=a.rank, alpha=a.alpha, targets=a.targets)
    optimizer = make_optimizer(
        learning_rate=a.learning_rate, warmup_steps=10, total_steps=10_000, weight_decay=a.weight_decay, clip_norm=1.0
    )
    engine = Engine(lm, optimizer, pad_id=pad_id)
    load_s = time.perf_counter() - t0
    out = {
        "side": "kit",
        "load_s": round(load_s, 2),
        "parameters": parameter_counts(lm),
        "rss_mib_model_loaded": rss_mib(),
        "modes": {},
    }
    for mode, buckets in buckets_by_mode.items():
        if mode == "dynamic":
            continue  # every new length would be a new XLA program
        timed, _, warm_examples = mode_batches(examples, buckets, a, mode, pad_id)
        initial_loss = _kit_initial_loss(engine, examples, buckets, a) if not out["modes"] else None
        # Warm-up: the kit's loop over one example per timed shape (compiles each once).
        t0 = time.perf_counter()
        engine.run(
            warm_examples,
            [],
            LoopOptions(
                total_steps=len(warm_examples) * a.warmup_rounds,
                batch_size=a.batch_size,
                buckets=tuple(buckets),
                seed=None,
                progress=False,
                log_every=1,
            ),
        )
        warm_s = time.perf_counter() - t0
        traces = engine._micro._cache_size()
        # Timed: the kit's own loop over the seeded plan (the same batches the HF side gets).
        state, _ = engine.run(
            examples,
            [],
            LoopOptions(
                total_steps=len(timed),
                batch_size=a.batch_size,
                buckets=tuple(buckets),
                seed=a.seed,
                progress=False,
                log_every=1,
            ),
        )
        elapsed = [r["elapsed_s"] for r in state.history if "elapsed_s" in r]
        step_s = [t - s for s, t in zip([0.0, *elapsed[:-1]], elapsed, strict=True)]
        res = summarise(step_s, timed)
        res.update(
            warmup_s=round(warm_s, 2),
            warmup_steps=len(warm_examples) * a.warmup_rounds,
            compiled_shapes=sorted({b.length for b in timed}),
            recompiles_while_timed=engine._micro._cache_size() - traces,
            first_loss=state.history[0]["train_loss"],
            last_loss=state.history[-1]["train_loss"],
            peak_rss_mib=peak_rss_mib(),
            **_jax_mem(jax_device_info()),
        )
        if initial_loss is not None:
            res["initial_loss"] = initial_loss
        out["modes"][mode] = res
    info = jax_device_info()
    out.update(device_name=info["device_kind"], backend=info["backend"], jax_devices=len(jax.devices()))
    return out


def _kit_initial_loss(engine, examples, buckets, a) -> float:
    """Loss of the first timed batch before any update (LoRA B starts at 0: the base model's loss)."""
    from kit.data.batching import plan_batches

    length, idx = plan_batches(examples, buckets, a.batch_size, seed=a.seed).batches[0]
    return engine.loss_on([examples[i] for i in idx], buckets=(length,), batch_size=a.batch_size)


def _jax_mem(info: dict) -> dict:
    peak = info.get("peak_bytes_in_use")
    return {"peak_device_mib": round(peak / 2**20, 1)} if peak else {}


# ---------------------------------------------------------------------- the Hugging Face side


def run_hf(a) -> dict:
    """The Hugging Face side (in its child process): a plain PyTorch loop over the same batches, per padding mode."""
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

    out = {
        "side": "hf",
        "load_s": round(load_s, 2),
        "attn_implementation": a.hf_attn,
        "weights": a.hf_weights_dir or "random",
        "lora_dtypes": lora_dtypes,
        "parameters": {"trainable": int(trainable), "total": int(total)},
        "rss_mib_model_loaded": rss_mib(),
        "torch_threads": torch.get_num_threads(),
        "modes": {},
    }
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
        res.update(
            warmup_s=round(warm_s, 2),
            warmup_steps=len(warm),
            first_loss=losses[0],
            last_loss=losses[-1],
            peak_rss_mib=peak_rss_mib(),
        )
        if initial_loss is not None:
            res["initial_loss"] = initial_loss
        peak = hf.peak_device_bytes(device)
        if peak:
            res["peak_device_mib"] = round(peak / 2**20, 1)
        out["modes"][mode] = res
    out["device_name"] = hf.device_name(device)
    return out


def hf_weights_dir(a, notes: list[str]) -> str | None:
    """The HF side's base weights, chosen in the parent: None (random) for --hf-weights random, --random-init
    or --size 2b; the HF dir given as --hf-weights; with auto, the kit's export of --base-run (when that
    fails: a note and None)."""
    if a.hf_weights == "random" or a.random_init or a.size != "tiny":
        return None
    if a.hf_weights != "auto":
        if not (Path(a.hf_weights) / "config.json").is_file():
            raise BenchError(
                f"--hf-weights {a.hf_weights}: no config.json there (give an HF export dir, auto or random)."
            )
        return a.hf_weights
    try:
        return str(hf_export(a.base_run, ROOT / "bench/tmp/hf" / Path(a.base_run).name))
    except BenchError as e:
        notes.append(f"HF side on random weights: {e}")
        return None

"""The training benchmark's data and timing bookkeeping, identical in the parent and both children.

A pure function of the flags: the prepared sample's train split tokenised by
the kit's `Encoder` (or random fixed-length sequences with `--data
synthetic`), grouped by `kit.data.batching.plan_batches` and padded by
`make_batch`, so the kit and the Hugging Face side get the very same batches.
Kit imports are deferred to the functions: a child pins its CPU cores first.
"""

from __future__ import annotations

import statistics

from sides import BenchError, backbone_config, sample_examples, synthetic_examples


def make_data(a):
    """`(examples, pad_id, {mode: buckets})`, a pure function of the flags."""
    from kit.data.batching import choose_buckets

    if a.data == "synthetic":
        vocab = backbone_config(a.size, a.preset)["vocabulary_size"]
        n = a.batch_size * (a.steps + a.warmup_rounds + 1)
        return synthetic_examples(n, a.max_length, vocab, seed=a.seed), 0, {"fixed": (a.max_length,)}
    examples, pad_id = sample_examples(a.data, a.preset, longest=a.max_length)
    lengths = [len(e.ids) - 1 for e in examples]
    buckets = {
        "buckets": choose_buckets(lengths, a.auto_buckets, a.max_length),
        "fixed": (a.max_length,),
        "dynamic": (a.max_length,),
    }
    return examples, pad_id, {m: buckets[m] for m in a.padding}


def dynamic_trim(batch):
    """Cut a padded batch to its longest row (pad-to-longest, as a transformers collator does)."""
    from kit.data.batching import Batch

    n = max(int(batch.x["padding_mask"].sum(axis=1).max()), 1)
    x = {k: v[:, :n] for k, v in batch.x.items()}
    return Batch(x, batch.y[:, :n], batch.sample_weight[:, :n], batch.real_tokens)


def mode_batches(examples, buckets, a, mode: str, pad_id: int):
    """The timed batches of a mode (the first `steps` of the seeded plan), the warm-up batches
    (`warmup_rounds` per distinct shape) and, per shape, one example that falls in it."""
    from kit.data.batching import make_batch, plan_batches

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
    from kit.data.batching import make_batch, plan_batches

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
    """Per-mode figures of one side: step times, total / non-padding / target tokens and their rates,
    and the timed `[length, rows]` shapes (turned into FLOPs, then dropped, by the parent)."""
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

"""Decode steps saved by the kit's early stop, on the requests `kit evaluate` draws (150, rating-balanced, seed 0).

Runs the same batches twice on one model: through the kit's decode loop (a
batch ends when every row has a stop id or `max_new_tokens` new tokens) and
through KerasHub's own compiled generate (which runs until every row has a
stop id, else to the end of the length bucket). Reports the decode steps and
wall time of each and whether every text is the same.

    .venv/bin/python bench/early_stop.py [--model runs/tiny-lora --data data/prepared --limit 150]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import ROOT, write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/tiny-lora")
    parser.add_argument("--data", default="data/prepared")
    parser.add_argument("--limit", type=int, default=150)
    parser.add_argument("--note", default="", help="what the model is, if not the demo's")
    parser.add_argument("--out", default=str(ROOT / "bench/results/early_stop.json"))
    args = parser.parse_args()

    import kit  # noqa: F401
    from kit.data.prepare import load_prepared
    from kit.eval import EvalOptions
    from kit.eval.requests import select_requests
    from kit.generate import Generator, SamplerSpec
    from kit.model import load_model

    options = EvalOptions(limit=args.limit)
    test = load_prepared(args.data)["test"]
    rows = select_requests([int(r) for r in test["rating"]], limit=options.limit, seed=options.seed)
    prompts = [test[i]["prompt"] for i in rows]
    gen = Generator(load_model(args.model), batch_size=options.batch_size)
    sampler = SamplerSpec(seed=options.seed)  # kit evaluate's sampler and seed
    limit = options.max_new_tokens

    gen.complete(prompts[: options.batch_size], sampler, max_new_tokens=limit)  # compile outside the timing
    t = time.perf_counter()
    ours = [s[0] for s in gen.complete(prompts, sampler, max_new_tokens=limit)]
    kit_s, kit_steps = time.perf_counter() - t, list(gen.last_steps)

    encoded = [(i, gen.encode(p)) for i, p in enumerate(prompts)]
    batches = [encoded[s : s + options.batch_size] for s in range(0, len(encoded), options.batch_size)]
    packed = [gen._pack(chunk, limit) for chunk in batches]
    gen._run_keras(*packed[0], sampler, 0)  # compile
    gen.last_steps = []
    theirs = []
    t = time.perf_counter()
    for b, (chunk, (token_ids, mask)) in enumerate(zip(batches, packed, strict=True)):
        out = gen._run_keras(token_ids, mask, sampler, b)  # KerasHub's loop (what the kit ran before)
        theirs += [gen.decode_row(prompts[i], out[j], len(ids), limit) for j, (i, ids) in enumerate(chunk)]
    keras_s, keras_steps = time.perf_counter() - t, list(gen.last_steps)

    result = {
        "benchmark": __doc__.splitlines()[0],
        "model": args.model,
        "model_note": args.note or args.model,
        "requests": len(prompts),
        "batch_size": options.batch_size,
        "max_new_tokens": limit,
        "sampler": "top_k k=5 T=1 seed 0 (kit evaluate's default)",
        "stopped_rows": sum(s.stopped for s in ours),
        "kit_decode_steps": sum(kit_steps),
        "keras_hub_decode_steps": sum(keras_steps),
        "steps_saved_share": round(1 - sum(kit_steps) / max(sum(keras_steps), 1), 3),
        "kit_generate_s": round(kit_s, 2),
        "keras_hub_generate_s": round(keras_s, 2),
        "same_texts": [s.text for s in ours] == [s.text for s in theirs],
        "per_batch_steps": {"kit": kit_steps, "keras_hub": keras_steps},
        "machine": machine_info(("keras", "keras-hub", "jax")),
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "per_batch_steps")}))
    return 0 if result["same_texts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

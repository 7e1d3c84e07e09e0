"""Resident memory of a base + two LoRA adapters: one shared base (kit.generate.SharedBase) vs a model per run.

Each measurement runs in a fresh child process and reads its resident memory
(VmRSS) before and after loading, so one measurement's arrays and compile
caches never count in another's. The weights are random (the sizes are what
matter): `tiny` is the demo's tiny Gemma 2 architecture (`TinySpec()`),
`2b` is Gemma 2 2B (`bench/flops.py`'s GEMMA2_2B) in bfloat16. The two
adapters are the shapes of the kit's configs: rank 8 on q,v (the GPU config)
and rank 8 on every linear layer (the TPU config), each with alpha 16.

    .venv/bin/python bench/shared_base.py --size tiny   # shared and separate
    .venv/bin/python bench/shared_base.py --size 2b     # shared only (one 2B copy is ~5 GB; separate would be ~15)

Results go to bench/results/shared_base_memory.json (one entry per size and mode).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import ROOT, emit, peak_rss_mib, rss_mib, run_child, write_result  # noqa: E402

OUT = ROOT / "bench/results/shared_base_memory.json"
ADAPTERS = (("lora-qv-r8", 8, "qv"), ("lora-all-r8", 8, "all"))
ALPHA = 16.0


def _proto() -> bytes:
    from kit.model.tiny import train_tokenizer

    texts = [line.split("text=", 1)[-1] for line in (ROOT / "data/sample/geo-reviews-sample.tskv").open()][:2000]
    return train_tokenizer(texts, vocab_size=4096)


def _build(size: str, proto: bytes):
    """A random-weight GemmaCausalLM of `size` with the tiny tokenizer (any tokenizer serves for memory)."""
    import keras_hub

    from kit.model.tiny import TinySpec, build_tiny_lm

    tiny = build_tiny_lm(proto, TinySpec())
    if size == "tiny":
        return tiny
    from flops import GEMMA2_2B

    backbone = keras_hub.models.GemmaBackbone(**GEMMA2_2B, dtype="bfloat16")
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=tiny.preprocessor)


def _random_adapter(slot_layers: dict, rank: int, targets: str, seed: int):
    import numpy as np

    from kit.model.lora import LORA_TARGET_LAYERS

    rng = np.random.default_rng(seed)
    layers = {}
    for i, (name, a_shape, b_shape) in slot_layers.items():
        if name in LORA_TARGET_LAYERS[targets]:
            a = rng.normal(0, 0.02, (*a_shape[:-1], rank)).astype("float32")
            b = rng.normal(0, 0.02, (rank, b_shape[-1])).astype("float32")
            layers[i] = (a, b)
    return rank, layers


def _resident_mib() -> float:
    """VmRSS after a garbage collection and `malloc_trim`: freed init buffers are handed back to the
    OS first, so the figure is what stays resident, not the allocator's high-water mark."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError):  # not glibc: the figure may include freed memory
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib()


def child(size: str, mode: str) -> None:
    import gc

    import jax.numpy as jnp

    import kit  # noqa: F401
    from kit.generate import SharedBase, slot_for
    from kit.model.lora import enable_lora
    from kit.runs import LoraInfo

    shapes = [LoraInfo(rank=r, alpha=ALPHA, targets=t) for _, r, t in ADAPTERS]
    proto = _proto()
    jnp.zeros(1).block_until_ready()  # the JAX runtime itself is not the model's memory
    start = _resident_mib()
    steps = {}
    if mode == "shared":
        base = SharedBase(
            "random",
            "bfloat16" if size == "2b" else "float32",
            slot=slot_for(shapes),
            loader=lambda *_, **__: _build(size, proto),
        )
        steps["base"] = _resident_mib() - start
        slot = base.slot_layers()
        gens = [base.generator("base run")]
        for seed, ((name, rank, targets), lora) in enumerate(zip(ADAPTERS, shapes, strict=True)):
            gens.append(base.generator(name, _random_adapter(slot, rank, targets, seed), lora))
            gc.collect()
            steps[f"+ {name}"] = _resident_mib() - start
        weights = base.nbytes()
        arrays_mib = {("base weights" if k == "base" else k): round(v / 2**20, 2) for k, v in weights.items()}
    else:
        models = [_build(size, proto)]
        steps["base"] = _resident_mib() - start
        for name, rank, targets in ADAPTERS:
            lm = _build(size, proto)
            enable_lora(lm, rank=rank, alpha=ALPHA, targets=targets)
            models.append(lm)
            gc.collect()
            steps[f"+ {name}"] = _resident_mib() - start
        arrays_mib = {
            f"model {i}": round(sum(v.numpy().nbytes for v in lm.weights) / 2**20, 2) for i, lm in enumerate(models)
        }
    emit(
        {
            "size": size,
            "mode": mode,
            "rss_mib_after": {k: round(v, 1) for k, v in steps.items()},
            "peak_rss_mib": peak_rss_mib(),
            "arrays_mib": arrays_mib,
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    modes = ["shared"] if args.size == "2b" else ["shared", "separate"]
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {"benchmark": __doc__.splitlines()[0], "runs": {}}
    for mode in modes:
        r = run_child(Path(__file__), ["--child", args.size, mode])
        result["runs"][f"{args.size}/{mode}"] = r
        print(json.dumps(r))
    result["adapters"] = [{"name": n, "rank": r, "targets": t, "alpha": ALPHA} for n, r, t in ADAPTERS]
    result["weights"] = "random init; tiny = TinySpec() float32, 2b = GEMMA2_2B bfloat16 (LoRA arrays float32)"
    result.setdefault("machine", {})[args.size] = machine_info(("keras", "keras-hub", "jax"))
    write_result(out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

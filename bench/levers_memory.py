"""Peak memory of the 2B train step with each memory lever off and on, from XLA's ahead-of-time compile.

The kit's micro-step (`kit.train.loop.Engine._micro_fn`: forward, backward,
gradient accumulation) for the `configs/gemma2_2b_gpu.toml` shape (Gemma 2
2B, bfloat16, LoRA rank 8 on q and v, batch 2 × 512) is compiled for one TPU
v5e chip through libtpu's compile-only devices
(`jax.experimental.topologies`), on this CPU, without a TPU. The model is
built inside `keras.StatelessScope(initialize_variables=False)`, so its
weights have shapes but no values (nothing allocates them on exit); the step's inputs are `jax.ShapeDtypeStruct`s. The figures are
`compiled.memory_analysis()`: arguments, outputs and temporaries per device.
(CPU compiles of bfloat16 programs upcast to float32 and claim several times
the memory, so they are no proxy for an accelerator; that is why the target
is a TPU.) Rows 0-4 add the levers one after another (the defaults of
`configs/gemma2_2b_gpu.toml` are row 3); rows 5-7 are single levers on the
kit before them.

    JAX_PLATFORMS=cpu .venv/bin/python bench/levers_memory.py            # about 10 minutes, 2 cores
    JAX_PLATFORMS=cpu .venv/bin/python bench/levers_memory.py --size tiny  # seconds (the test)

Needs libtpu at the installed jax version (`pip install 'jax[tpu]==<jax version>'`).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # libtpu's compiler without claiming a TPU
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from sides import ROOT, BenchError, write_result  # noqa: E402

import kit  # noqa: E402, F401  (the JAX backend for Keras)

PACKAGES = ("keras", "keras-hub", "jax", "jaxlib", "libtpu")
GIB = 2**30
# (row name, factored LoRA, loss chunk, remat blocks, int8 base)
ROWS = (
    ("before levers (merged LoRA, full logits)", False, 0, False, False),
    ("+ factored LoRA", True, 0, False, False),
    ("+ factored LoRA + chunked loss (256)", True, 256, False, False),
    ("+ factored LoRA + chunked loss + remat blocks", True, 256, True, False),
    ("+ all four (int8 base too)", True, 256, True, True),
    ("chunked loss alone", False, 256, False, False),
    ("remat blocks alone", False, 0, True, False),
    ("int8 base alone", False, 0, False, True),
)


def parse_args(argv=None) -> argparse.Namespace:
    """Flags.

    Example:
        >>> a = parse_args([])
        >>> a.size, a.batch_size, a.length, a.rank, a.targets, a.topology
        ('2b', 2, 512, 8, 'qv', 'v5e:1x1')
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=("2b", "tiny"), default="2b")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", choices=("qv", "all"), default="qv")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--topology", default="v5e:1x1", help="TPU topology to compile for")
    p.add_argument("--rows", default="", help="comma-separated row numbers to run (default all)")
    p.add_argument("--out", default=None, help="result JSON (default bench/results/levers_memory.json)")
    a = p.parse_args(argv)
    if min(a.batch_size, a.length, a.rank) < 1:
        raise BenchError(
            f"--batch-size, --length and --rank must be ≥ 1. Received: {a.batch_size}, {a.length}, {a.rank}"
        )
    return a


def tpu_device(topology: str):
    """The first compile-only device of a TPU topology (libtpu), or BenchError saying what to install."""
    import jax

    try:
        from jax.experimental import topologies

        return topologies.get_topology_desc(topology, "tpu", chips_per_host_bounds=(1, 1, 1)).devices[0]
    except Exception as e:
        raise BenchError(
            f"cannot compile for TPU {topology} ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
            f"install libtpu: pip install 'jax[tpu]=={jax.__version__}'"
        ) from None


def build_abstract_lm(arch: dict, *, dtype: str, rank: int, targets: str, factored: bool, int8: bool):
    """A `GemmaCausalLM` whose variables have no values (built in `keras.StatelessScope`), LoRA added as the kit does.

    `int8` quantizes the backbone first (`kit.model.quantize.quantize_base`):
    that reads each random kernel once, so it holds the int8 weights (2 GB
    for 2B) but never the float model.
    """
    import keras
    import keras_hub

    from kit.model.lora import enable_lora
    from kit.model.quantize import quantize_base

    with keras.StatelessScope(initialize_variables=False):
        backbone = keras_hub.models.GemmaBackbone(**arch, dtype=dtype)
    # Outside the scope: the task's constructor compiles a default optimizer, whose variables need values.
    lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    with keras.StatelessScope(
        initialize_variables=False
    ):  # quantizing writes its int8 values into the scope, which drops them
        if int8:
            quantize_base(lm, "int8")
        enable_lora(lm, rank=rank, alpha=2.0 * rank, targets=targets, factored=factored)
    return lm


def compile_micro(lm, device, *, batch_size: int, length: int, loss_chunk: int, remat: bool) -> dict:
    """Compile the Engine's micro-step on abstract inputs for `device`; XLA's memory analysis in bytes."""
    import jax
    import jax.numpy as jnp

    from kit.train.loop import Engine
    from kit.train.plan_compile import compiled_flops, compiled_memory

    sharding = jax.sharding.SingleDeviceSharding(device)

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype), sharding=sharding)

    engine = _AbstractEngine(Engine, lm, loss_chunk=loss_chunk, remat=remat)
    tv = [spec(v.shape, v.dtype) for v in engine.trainable]
    ntv = [spec(v.shape, v.dtype) for v in engine.non_trainable]
    acc = [spec(v.shape, "float32" if v.dtype == "bfloat16" else v.dtype) for v in engine.trainable]
    x = {"token_ids": spec((batch_size, length), "int32"), "padding_mask": spec((batch_size, length), "int32")}
    y, w = spec((batch_size, length), "int32"), spec((batch_size, length), "float32")
    t0 = time.perf_counter()
    compiled = jax.jit(engine._micro_fn).lower(tv, ntv, acc, x, y, w).compile()
    # The same readers as `kit plan`, so the two report the same figures.
    out = compiled_memory(compiled)
    out["peak"] = out["total"]
    out["flops"] = compiled_flops(compiled)
    out["compile_s"] = round(time.perf_counter() - t0, 1)
    return out


def _AbstractEngine(engine_cls, lm, *, loss_chunk: int, remat: bool):
    """An Engine over `lm` with no variable values: only its pure step functions are used (they read
    the variable lists and the levers, never the values)."""
    engine = engine_cls.__new__(engine_cls)
    engine.lm, engine.optimizer, engine.distribution, engine.pad_id = lm, None, None, 0
    engine.loss_chunk, engine.remat = loss_chunk, remat
    engine.ul = None  # the kit's default (no unlikelihood): the levers are measured on the plain NLL step
    engine.trainable, engine.non_trainable = list(lm.trainable_variables), list(lm.non_trainable_variables)
    return engine


def _result(a, device, arch: dict, rows: list[dict]) -> dict:
    return {
        "benchmark": "Peak memory of the kit's 2B micro-step per memory lever (XLA AOT compile for a TPU chip)",
        "target": {"platform": "tpu", "topology": a.topology, "device_kind": getattr(device, "device_kind", None)},
        "config": {
            "size": a.size,
            "architecture": arch,
            "dtype": a.dtype,
            "batch_size": a.batch_size,
            "length": a.length,
            "lora": {"rank": a.rank, "alpha": 2.0 * a.rank, "targets": a.targets},
            "step": "kit.train.loop.Engine._micro_fn (forward + backward + accumulate), one micro-batch",
        },
        "peak_is": "arguments + outputs + temporaries - aliased, per device (compiled.memory_analysis())",
        "rows": rows,
        "machine": machine_info(PACKAGES),
    }


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        device = tpu_device(a.topology)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from flops import GEMMA2_2B

    from kit.testing import MICRO_BACKBONE  # --size tiny: a few-thousand-parameter Gemma 2 (the test)

    arch = dict(GEMMA2_2B) if a.size == "2b" else dict(MICRO_BACKBONE)
    chosen = [int(i) for i in a.rows.split(",") if i.strip()] or list(range(len(ROWS)))
    out = a.out or str(ROOT / "bench/results" / ("levers_memory.json" if a.size == "2b" else "levers_memory_tiny.json"))
    rows = []
    for i in chosen:
        name, factored, chunk, remat, int8 = ROWS[i]
        lm = build_abstract_lm(arch, dtype=a.dtype, rank=a.rank, targets=a.targets, factored=factored, int8=int8)
        mem = compile_micro(lm, device, batch_size=a.batch_size, length=a.length, loss_chunk=chunk, remat=remat)
        row = {
            "row": name,
            "lora_factored": factored,
            "loss_chunk": chunk,
            "remat": "blocks" if remat else "off",
            "quantize": "int8 (decoder-block kernels)" if int8 else "none",
            **mem,
            "peak_gib": round(mem["peak"] / GIB, 3),
            "temporaries_gib": round(mem["temporaries"] / GIB, 3),
            "arguments_gib": round(mem["arguments"] / GIB, 3),
        }
        rows.append(row)
        print(
            f"{name:46s} peak {row['peak_gib']:7.3f} GiB  (args {row['arguments_gib']:.3f}, "
            f"temps {row['temporaries_gib']:.3f})  {mem['compile_s']} s",
            flush=True,
        )
        del lm
        gc.collect()
        # Written after every row, so a run stopped part-way keeps the rows it compiled.
        write_result(out, _result(a, device, arch, rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

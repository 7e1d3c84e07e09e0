"""Compile a config's train step for a target without its weights: the compiling half of `kit plan`.

The model is the config's architecture (`kit.model.architectures`) built
inside `keras.StatelessScope`, so its variables have shapes and dtypes but
no values: Gemma 2 2B costs no 5 GB, Gemma 3 4B no 7.8 GB. The LoRA
adapters and the optimizer are added exactly as `kit finetune` adds them,
and `Engine.lower_steps` lowers the Engine's own jitted micro-step and apply
step (no second copy of the step) on abstract inputs (`jax.ShapeDtypeStruct`)
placed on the target's devices under the layout `choose_layout` picks for them. XLA's
`memory_analysis()` and `cost_analysis()` of the compiled programs are the
figures.

Runs in its own process (`python -m kit.train.plan_compile`, JSON on stdin
and stdout), started by `kit.train.plan`: libtpu's compiler needs
`JAX_PLATFORMS=cpu` and `ALLOW_MULTIPLE_LIBTPU_LOAD=1` set before JAX
starts (another JAX process, or a notebook holding the TPU, keeps libtpu's
lock), and the compile's memory is returned to the system when it ends.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time

import kit  # noqa: F401  (sets KERAS_BACKEND before keras is imported)
from kit.config import from_dict
from kit.errors import UserError

COMPILE_ENV = {"JAX_PLATFORMS": "cpu", "ALLOW_MULTIPLE_LIBTPU_LOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def target_devices(platform: str, devices: int, topology: str):
    """The JAX devices to compile for: a TPU topology's compile-only devices, or this CPU's.

    Raises:
        UserError: libtpu is not installed (TPU targets).
    """
    import jax

    if platform == "cpu":
        return jax.devices("cpu")[:devices]
    try:
        from jax.experimental import topologies

        # A single chip needs its host bounds given, or libtpu assumes a 4-chip host.
        extra = {"chips_per_host_bounds": (1, 1, 1)} if devices == 1 else {}
        found = topologies.get_topology_desc(topology, "tpu", **extra).devices
    except Exception as e:  # libtpu missing or refusing: one line, with the fix
        raise UserError(
            f"Cannot compile for TPU topology {topology!r} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            f"Install libtpu at the installed jax version: pip install 'jax[tpu]=={jax.__version__}'."
        ) from None
    if len(found) != devices:
        raise UserError(f"TPU topology {topology!r} has {len(found)} devices, expected {devices}.")
    return found


def _per_device_bytes(spec) -> int:
    shape = spec.sharding.shard_shape(spec.shape) if spec.sharding is not None else spec.shape
    return math.prod(shape) * spec.dtype.itemsize


def compiled_memory(compiled) -> dict:
    """XLA's memory analysis of a compiled program in bytes: arguments, outputs, temporaries, aliased, code, total.

    Example:
        >>> compiled_memory(jax.jit(lambda a: a * 2).lower(1.0).compile())["total"] >= 0  # doctest: +SKIP
        True
    """
    m = compiled.memory_analysis()
    out = {
        "arguments": int(m.argument_size_in_bytes),
        "outputs": int(m.output_size_in_bytes),
        "temporaries": int(m.temp_size_in_bytes),
        "aliased": int(m.alias_size_in_bytes),
        "code": int(m.generated_code_size_in_bytes),
    }
    out["total"] = out["arguments"] + out["outputs"] + out["temporaries"] - out["aliased"]
    return out


def compiled_flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def compile_steps(raw_config: dict, platform: str, devices: int, topology: str, buckets: list[int]) -> dict:
    """Build the config's model without weights, lower and compile its steps per bucket; the analyses.

    Returns:
        `{"layout", "dtype", "parameters", "levers", "resident", "buckets": [{length, micro, apply, flops, compile_s}]}`,
        bytes per device; `levers` are the step's resolved `loss_chunk` and `remat`.

    Example:
        >>> out = compile_steps(load_config("configs/tiny.toml").to_dict(), "cpu", 1, "", [64])  # doctest: +SKIP
        >>> out["buckets"][0]["micro"]["total"] > 0  # doctest: +SKIP
        True
    """
    import jax
    import keras

    from kit.model.architectures import build_random_lm, kv_heads, layout_of
    from kit.model.distribution import choose_layout, make_distribution
    from kit.model.lora import enable_lora, parameter_counts
    from kit.model.quantize import quantize_base
    from kit.train.lean import step_levers
    from kit.train.loop import Engine
    from kit.train.optim import run_optimizer

    cfg = from_dict(raw_config)
    if not cfg.lora_active:
        raise UserError("lora.enabled is false: a base-model run trains nothing, so there is no train step to plan.")
    found = target_devices(platform, devices, topology)
    mode, axes = choose_layout(
        cfg.distribution.mode, cfg.distribution.mesh, len(found), platform, kv_heads(cfg.model.preset)
    )
    dist, layout = make_distribution(
        mode, axes, found, batch_size=cfg.train.batch_size, layout=layout_of(cfg.model.preset)
    )
    dtype = cfg.model.dtype if cfg.model.dtype != "auto" else ("float32" if platform == "cpu" else "bfloat16")
    single = jax.sharding.SingleDeviceSharding(found[0])

    def spec(v):
        where = dist.get_variable_layout(v).backend_layout if dist is not None else single
        return jax.ShapeDtypeStruct(tuple(v.shape), jax.numpy.dtype(v.dtype), sharding=where)

    # Built outside the distribution's scope: the few concrete variables (optimizer step
    # counters) would otherwise be placed on compile-only devices, which hold no data.
    # Each variable's layout is asked of the distribution in `spec` instead.
    lm = build_random_lm(cfg.model.preset, dtype=dtype, seed=cfg.run.seed, abstract=True)
    optimizer = run_optimizer(cfg.train, 1000)  # the schedule's length changes no shape
    with keras.StatelessScope(initialize_variables=False):
        quantize_base(lm, cfg.model.quantize)
        enable_lora(lm, rank=cfg.lora.rank, alpha=cfg.lora.alpha, targets=cfg.lora.targets, factored=cfg.lora.factored)
        optimizer.build(lm.trainable_variables)
        groups = (lm.trainable_variables, lm.non_trainable_variables, optimizer.variables)
        values = [[spec(v) for v in group] for group in groups]
        levers = step_levers(cfg.train, lm, max(buckets))
        engine = Engine(lm, optimizer, distribution=dist, values=values, **levers)
    scope = dist.scope() if dist is not None else _Nothing()
    with scope:  # activation layouts inside the model follow the distribution while tracing
        out = {
            "layout": layout,
            "dtype": dtype,
            "parameters": parameter_counts(lm),
            "levers": {"loss_chunk": levers["loss_chunk"], "remat": levers["remat"]},
            "resident": {
                "trainable": sum(_per_device_bytes(s) for s in values[0]),
                "frozen": sum(_per_device_bytes(s) for s in values[1]),
                "optimizer": sum(_per_device_bytes(s) for s in values[2]),
            },
            "buckets": [],
        }
        for length in buckets:
            t = time.perf_counter()
            micro, apply = engine.lower_steps(length, cfg.train.batch_size, sharding=single)
            row = {"length": length}
            try:
                micro = micro.compile()
            except Exception as e:  # libtpu refuses a program larger than the chip's memory
                refused = refused_memory(str(e))
                if refused is None:
                    raise
                row.update(refused=refused, compile_s=round(time.perf_counter() - t, 1))
                out["buckets"].append(row)
                continue
            apply = apply.compile()
            row.update(
                micro=compiled_memory(micro),
                apply=compiled_memory(apply),
                flops=compiled_flops(micro),
                apply_flops=compiled_flops(apply),
            )
            row["compile_s"] = round(time.perf_counter() - t, 1)
            out["buckets"].append(row)
    return out


_REFUSED = re.compile(r"(HLO temporaries|memory required)[^(]*\(([\d.]+)([GM])\)[^(]*available HBM \(([\d.]+)([GM])\)")


def refused_memory(message: str) -> dict | None:
    """What libtpu's "Ran out of memory" refusal says the program needs, in bytes (None for other errors).

    Example:
        >>> refused_memory("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        ...                "temporaries (24.72G) exceeds available HBM (15.75G).")["temporaries"] > 24 * 2**30
        True
    """
    if "RESOURCE_EXHAUSTED" not in message:
        return None
    m = _REFUSED.search(message)
    unit = {"G": 2**30, "M": 2**20}
    line = message.strip().splitlines()[0][:300]
    if m is None:
        return {"temporaries": None, "available": None, "message": line}
    return {
        "temporaries": int(float(m.group(2)) * unit[m.group(3)]),
        "available": int(float(m.group(4)) * unit[m.group(5)]),
        "message": line,
    }


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main() -> int:
    """Read `{"config", "platform", "devices", "topology", "buckets"}` on stdin; print the result as JSON."""
    request = json.loads(sys.stdin.read())
    try:
        result = compile_steps(
            request["config"], request["platform"], request["devices"], request["topology"], request["buckets"]
        )
    except UserError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

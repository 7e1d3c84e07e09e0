"""The devices `kit plan` can plan for: memory per device, peak FLOP/s, and how each is compiled for.

- TPUs are compiled for exactly: libtpu's ahead-of-time compiler on a
  topology of compile-only devices (`jax.experimental.topologies`), as
  MaxText's `train_compile.py` does. Needs `libtpu` (the `jax[tpu]` extra at
  the installed jax version), not a TPU.
- NVIDIA GPUs: this kit's jaxlib has no GPU compiler without the CUDA
  plugin and a GPU, so their memory is an analytic estimate
  (`kit.train.plan_estimate`), labelled as one.
- `cpu` compiles for this machine's CPU: a real figure for the CPU only
  (XLA:CPU upcasts bfloat16, so it overstates accelerator memory).
"""

from __future__ import annotations

import dataclasses

from kit.errors import UserError
from kit.model.flops import peak_flops

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Target:
    """A device kind to plan for.

    Attributes:
        name: The `--device` name.
        platform: `tpu`, `gpu` or `cpu` (what `choose_layout` needs).
        devices: JAX devices in the slice (a v3 chip shows as 2 devices, its cores).
        memory_bytes: Memory per JAX device.
        peak_flops: Dense bf16 peak FLOP/s per JAX device (`kit.model.flops.PEAK_BF16`), None if unknown.
        topology: libtpu topology name (TPUs only).
        label: In words.
    """

    name: str
    platform: str
    devices: int
    memory_bytes: int
    peak_flops: float | None
    topology: str = ""
    label: str = ""

    @property
    def compiled(self) -> bool:
        """Whether the plan compiles for this target (else it estimates)."""
        return self.platform in ("tpu", "cpu")


def _gpu(name: str, devices: int, mib: int, kind: str, label: str) -> Target:
    # Memory is what `nvidia-smi` reports as total for the card.
    return Target(name, "gpu", devices, mib * 2**20, peak_flops(kind), label=label)


def _tpu(name: str, devices: int, topology: str, kind: str, label: str) -> Target:
    return Target(name, "tpu", devices, 16 * GIB, peak_flops(kind), topology=topology, label=label)


TARGETS = {
    t.name: t
    for t in (
        _gpu("t4", 1, 15360, "T4", "NVIDIA T4 16 GB (Kaggle, Colab); no bf16 units: float32 rate"),
        _gpu("t4x2", 2, 15360, "T4", "2 x NVIDIA T4 16 GB (Kaggle T4 x2)"),
        _gpu("p100", 1, 16280, "P100", "NVIDIA P100 16 GB (Kaggle); no bf16 units: float32 rate"),
        _gpu("l4", 1, 23034, "L4", "NVIDIA L4 24 GB (Colab)"),
        _gpu("a100-40g", 1, 40960, "A100", "NVIDIA A100 40 GB"),
        _gpu("a100-80g", 1, 81920, "A100", "NVIDIA A100 80 GB"),
        _gpu("h100", 1, 81559, "H100", "NVIDIA H100 80 GB SXM"),
        # v3: 16 GiB HBM per core, each core a JAX device; v5e: 16 GiB per chip.
        _tpu("v3-8", 8, "v3:2x2", "TPU v3", "TPU v3-8: 4 chips, 8 cores of 16 GiB (Kaggle)"),
        _tpu("v5e-1", 1, "v5e:1x1", "TPU v5e", "TPU v5e-1: 1 chip of 16 GiB (Colab)"),
        _tpu("v5e-4", 4, "v5e:2x2", "TPU v5e", "TPU v5e-4: 4 chips of 16 GiB"),
        _tpu("v5e-8", 8, "v5e:2x4", "TPU v5e", "TPU v5e-8: 8 chips of 16 GiB (Kaggle)"),
    )
}
DEVICE_CHOICES = ("auto", "cpu", *TARGETS)


def cpu_target() -> Target:
    """This machine's CPU as one device, with its total memory.

    Example:
        >>> cpu_target().platform
        'cpu'
    """
    import psutil

    return Target("cpu", "cpu", 1, int(psutil.virtual_memory().total), None, label="this machine's CPU")


def detect() -> str:
    """The `--device` name of the accelerator present (`auto`), else `cpu`.

    Example:
        >>> detect() in DEVICE_CHOICES
        True
    """
    import jax

    devices = jax.devices()
    kind = devices[0].device_kind.lower()
    n = len(devices)
    if devices[0].platform == "tpu":
        if "v3" in kind and n == 8:
            return "v3-8"
        if "v5" in kind and f"v5e-{n}" in TARGETS:
            return f"v5e-{n}"
    if devices[0].platform == "gpu":
        for name, key in (("t4x2" if n == 2 else "t4", "t4"), ("p100", "p100"), ("l4", "l4"), ("h100", "h100")):
            if key in kind:
                return name
        if "a100" in kind:
            return "a100-80g" if devices[0].memory_stats().get("bytes_limit", 0) > 50 * GIB else "a100-40g"
    if devices[0].platform != "cpu":
        raise UserError(f"kit plan does not know the device {devices[0].device_kind!r}: pass --device NAME.")
    return "cpu"


def target(name: str) -> Target:
    """The `Target` for a `--device` name (`auto` detects).

    Raises:
        UserError: an unknown name.

    Example:
        >>> target("v5e-1").topology, target("t4").compiled
        ('v5e:1x1', False)
        >>> target("v6")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Unknown --device 'v6': use one of auto, cpu, t4, t4x2, p100, l4, a100-40g, a100-80g, h100, v3-8, v5e-1, v5e-4, v5e-8.
    """
    if name == "auto":
        name = detect()
    if name == "cpu":
        return cpu_target()
    if name not in TARGETS:
        raise UserError(f"Unknown --device {name!r}: use one of {', '.join(DEVICE_CHOICES)}.")
    return TARGETS[name]

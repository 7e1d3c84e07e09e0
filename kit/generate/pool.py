"""One base model in memory for all the runs on it, and a bounded cache of such bases.

A LoRA run is its base preset plus a small adapter. Loading each run as its
own model (`load_run`) keeps one full copy of the base per run: at Gemma 2 2B
that is 5 GB per run in bfloat16, so base + two fine-tunes do not fit a 16 GB
GPU. Here:

* `SharedBase` loads a base once and gives it one LoRA *slot*: adapters on
  the union of the target layers of the runs that use it, at their largest
  rank, with alpha equal to that rank (scale 1). Each run's adapter is read
  from its file (`read_adapter`), scaled by its own alpha / rank and padded
  with zeros to the slot's rank and layers (zero rows and columns add exact
  zeros), and passed into every call in place of the slot's variables. A
  base-model run passes zeros. So every run on the base shares the weights,
  the compiled programs (`Decoder`) and the model's lock; an adapter costs
  only its own arrays.
* `ModelPool` keeps at most `max_bases` bases, least recently used first out.
  Evicting a base deletes its arrays, so the device memory is free at once,
  not when the garbage collector gets to it. A run whose adapter does not fit
  the slot of its loaded base (a larger rank, other layers) reloads the base
  with a slot that fits every run seen so far.

The slot is planned from the runs next to the first one asked for (the same
runs dir, same base and dtype), so a runs dir of fine-tunes of one base loads
it once.
"""

from __future__ import annotations

import collections
import gc
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import kit  # noqa: F401  (KERAS_BACKEND before keras)
from kit.errors import UserError
from kit.generate.decode import Decoder
from kit.generate.generator import LENGTH_BUCKETS, Generator
from kit.model.loader import load_causal_lm, resolve_dtype
from kit.model.lora import LORA_TARGET_LAYERS, enable_lora, read_adapter, weighted_layers
from kit.model.quantize import quantize_base, run_quantize
from kit.runs import LoraInfo, RunInfo, RunPaths


def slot_for(shapes: Sequence[LoraInfo]) -> tuple[int, str] | None:
    """The one LoRA slot that holds every adapter shape: (largest rank, target set); None for none.

    Example:
        >>> slot_for([LoraInfo(rank=8, alpha=16, targets="qv"), LoraInfo(rank=4, alpha=4, targets="all")])
        (8, 'all')
        >>> slot_for([]) is None
        True
    """
    if not shapes:
        return None
    targets = "all" if any(s.targets == "all" for s in shapes) else "qv"
    return max(int(s.rank) for s in shapes), targets


def _base_key(info: RunInfo, dtype: str | None) -> tuple:
    """Which loaded base serves a run: its preset and dtype, and its quantization when it has one."""
    key = (info.preset, resolve_dtype(dtype or info.dtype or "auto"))
    quantize = run_quantize(info.config)
    return key if quantize == "none" else (*key, quantize)


def _fits(slot: tuple[int, str] | None, lora: LoraInfo | None) -> bool:
    if lora is None:
        return True
    if slot is None:
        return False
    return lora.rank <= slot[0] and set(LORA_TARGET_LAYERS[lora.targets]) <= set(LORA_TARGET_LAYERS[slot[1]])


class SharedBase:
    """A base causal LM loaded once, serving the base itself and any number of adapters on it.

    Args:
        preset: The base preset (what `load_causal_lm` takes).
        dtype: Weights dtype (resolved: `float32`, `bfloat16`, ...).
        slot: `(rank, targets)` of the LoRA slot (see `slot_for`); None for no adapters.
        quantize: `none`, or `int8` for the base of runs trained with `model.quantize = "int8"`.
        loader: `(preset, dtype=...) -> GemmaCausalLM`; default `load_causal_lm`.
        batch_size: Largest batch of each generator.
        length_buckets: Total lengths of each generator.

    Example:
        >>> base = SharedBase("models/tiny-base", "float32", slot=(16, "all"))  # doctest: +SKIP
        >>> lora = base.generator("runs/tiny-lora", "runs/tiny-lora/adapter.lora.h5", info.lora)  # doctest: +SKIP
        >>> plain = base.generator("runs/tiny-base")  # doctest: +SKIP
    """

    def __init__(
        self,
        preset: str,
        dtype: str,
        *,
        slot: tuple[int, str] | None = None,
        quantize: str = "none",
        loader: Callable | None = None,
        batch_size: int = 8,
        length_buckets: Sequence[int] = LENGTH_BUCKETS,
    ):
        self.preset, self.dtype, self.slot = preset, dtype, slot
        self.lm = (loader or load_causal_lm)(preset, dtype=dtype)
        quantize_base(self.lm, quantize)
        self.lock = threading.Lock()
        self.batch_size, self.length_buckets = batch_size, tuple(length_buckets)
        self.closed = False
        self._slot_layers: dict[int, object] = {}
        if slot is not None:
            enable_lora(self.lm, rank=slot[0], alpha=float(slot[0]), targets=slot[1])
            self._slot_layers = {
                i: layer
                for i, layer in enumerate(weighted_layers(self.lm.backbone))
                if getattr(layer, "lora_enabled", False)
            }
        self.decoder = Decoder(self.lm)
        self._zeros: dict[tuple, object] = {}
        self._adapters: dict[str, dict] = {}  # run key -> slot variable path -> array
        self._shapes: dict[str, LoraInfo] = {}
        self._generators: dict[str, Generator] = {}

    @property
    def shapes(self) -> list[LoraInfo]:
        """The adapter shapes loaded so far."""
        return list(self._shapes.values())

    def fits(self, lora: LoraInfo | None) -> bool:
        """Whether an adapter of this shape fits the slot (a base run always does)."""
        return _fits(self.slot, lora)

    def generator(self, key: str, adapter=None, lora: LoraInfo | None = None) -> Generator:
        """The `Generator` of one run on this base: its adapter and shape, or none for the base itself.

        Args:
            key: The run (its resolved dir).
            adapter: The adapter file (`adapter.lora.h5`), or `(rank, {layer index: (A, B)})` as
                `read_adapter` returns it; None for the base.
            lora: The adapter's shape and alpha (from `run.json`).
        """
        if key in self._generators:
            return self._generators[key]
        if self.closed:
            raise UserError(f"The model {self.preset} was unloaded; load it again.")
        if adapter is not None and not self.fits(lora):
            raise UserError(
                f"The adapter of {key} (rank {lora.rank}, {lora.targets}) does not fit the slot {self.slot}."
            )
        overrides = self._overrides(adapter, lora)
        gen = Generator(
            self.lm,
            batch_size=self.batch_size,
            length_buckets=self.length_buckets,
            adapter=overrides,
            decoder=self.decoder,
            lock=self.lock,
            name=Path(key).name or key,
        )
        self._generators[key] = gen
        if lora is not None:
            self._shapes[key] = lora
        return gen

    def _zero(self, shape, dtype):
        import jax.numpy as jnp

        key = (tuple(shape), str(dtype))
        if key not in self._zeros:  # one zero array per shape, shared by every adapter that leaves a layer out
            self._zeros[key] = jnp.zeros(shape, dtype=dtype)
        return self._zeros[key]

    def _overrides(self, adapter, lora: LoraInfo | None) -> dict | None:
        import jax.numpy as jnp

        if not self._slot_layers:
            return None
        layers: dict[int, tuple] = {}
        if adapter is not None:
            rank, layers = read_adapter(adapter) if isinstance(adapter, str | Path) else adapter
            if rank != lora.rank:
                raise UserError(
                    f"{adapter} holds rank {rank}, but run.json says rank {lora.rank}; re-run `kit finetune`."
                )
            unknown = set(layers) - set(self._slot_layers)
            if unknown:
                raise UserError(f"{adapter} has adapters on layers the base {self.preset} has no slot for.")
        scale = float(lora.alpha) / float(lora.rank) if lora else 0.0
        out = {}
        for i, layer in self._slot_layers.items():
            va, vb = layer.lora_kernel_a, layer.lora_kernel_b
            if i not in layers:
                out[va.path], out[vb.path] = self._zero(va.shape, va.dtype), self._zero(vb.shape, vb.dtype)
                continue
            a, b = layers[i]
            r = a.shape[-1]
            pa = np.zeros(va.shape, dtype=va.dtype)
            pa[..., :r] = a
            pb = np.zeros(vb.shape, dtype=vb.dtype)
            pb[:r] = b * np.asarray(scale, dtype=b.dtype)  # the run's alpha / rank; the slot's own scale is 1
            out[va.path], out[vb.path] = jnp.asarray(pa), jnp.asarray(pb)
        return out

    def slot_layers(self) -> dict[int, tuple[str, tuple, tuple]]:
        """Layer index -> (layer name, A shape, B shape) of the slot: where an adapter can go."""
        return {
            i: (layer.name, tuple(layer.lora_kernel_a.shape), tuple(layer.lora_kernel_b.shape))
            for i, layer in self._slot_layers.items()
        }

    def nbytes(self) -> dict[str, int]:
        """Bytes of the base weights and of each run's own adapter arrays (shared zeros not counted)."""
        zeros = {id(z) for z in self._zeros.values()}
        slot = {layer.lora_kernel_a.path for layer in self._slot_layers.values()}
        slot |= {layer.lora_kernel_b.path for layer in self._slot_layers.values()}
        base = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in self.lm.weights if v.path not in slot)
        out = {"base": base}
        for key, gen in self._generators.items():
            arrays = (gen.adapter or {}).values()
            out[key] = sum(int(a.nbytes) for a in arrays if id(a) not in zeros)
        return out

    def close(self) -> None:
        """Unload: every generator on the base refuses further calls, and the arrays are deleted now."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for gen in self._generators.values():
                gen.closed = True
            arrays = [v.value for v in self.lm.variables]
            arrays += [a for gen in self._generators.values() for a in (gen.adapter or {}).values()]
            arrays += list(self._zeros.values())
            for a in arrays:
                try:
                    if not a.is_deleted():
                        a.delete()  # frees the device buffer now
                except (AttributeError, RuntimeError):  # a numpy value, or already gone
                    pass
            self._generators.clear()
            self._adapters.clear()
            self._zeros.clear()
            self.decoder = self.lm = None
        gc.collect()


class ModelPool:
    """At most `max_bases` bases in memory, each shared by the runs on it; least recently used out first.

    Args:
        max_bases: How many distinct bases (preset + dtype) stay loaded (≥ 1).
        loader: `(preset, dtype=...) -> GemmaCausalLM`; default `load_causal_lm`.
        batch_size: Largest batch of each generator.
        length_buckets: Total lengths of each generator.

    Example:
        >>> pool = ModelPool(max_bases=1)  # doctest: +SKIP
        >>> a, b = pool.generator("runs/tiny-base"), pool.generator("runs/tiny-lora")  # doctest: +SKIP
        >>> a.lm is b.lm  # one copy of the base weights  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        max_bases: int = 2,
        *,
        loader: Callable | None = None,
        batch_size: int = 8,
        length_buckets: Sequence[int] = LENGTH_BUCKETS,
    ):
        if max_bases < 1:
            raise UserError(f"The model cache must hold at least 1 model. Received: max_bases={max_bases}")
        self.max_bases = max_bases
        self.loader = loader
        self.batch_size, self.length_buckets = batch_size, tuple(length_buckets)
        self._bases: collections.OrderedDict[tuple, SharedBase] = collections.OrderedDict()
        self._lock = threading.RLock()
        self.evictions = 0

    def _describe(self, model: str | Path, dtype: str | None):
        """(base key, run key, adapter path, LoraInfo, runs dir) of a run dir or preset."""
        paths = RunPaths(model)
        if paths.run_json.is_file():
            info = RunInfo.read(paths.root)
            key = _base_key(info, dtype)
            adapter = paths.root / info.adapter if info.adapter else None
            if adapter is not None and not adapter.is_file():
                raise UserError(f"{adapter} is missing; re-run `kit finetune` for {paths.name}.")
            return key, str(paths.root.resolve()), adapter, info.lora if adapter else None, paths.root.parent
        return (str(model), resolve_dtype(dtype or "auto")), str(model), None, None, None

    def _planned_slot(self, key: tuple, runs_dir: Path | None, extra: Sequence[LoraInfo]):
        shapes = [s for s in extra if s is not None]
        if runs_dir is not None and runs_dir.is_dir():
            for p in sorted(runs_dir.iterdir()):
                try:
                    info = RunInfo.read(p) if RunPaths(p).run_json.is_file() else None
                except UserError:
                    continue
                if info and info.adapter and info.lora and _base_key(info, None) == key:
                    shapes.append(info.lora)
        return slot_for(shapes)

    def generator(self, model: str | Path, *, dtype: str | None = None) -> Generator:
        """The `Generator` for a run dir (base + its adapter) or a preset, loading the base if needed.

        Raises:
            UserError: the run, its preset or its adapter is missing.
        """
        key, run_key, adapter, lora, runs_dir = self._describe(model, dtype)
        with self._lock:
            base = self._bases.get(key)
            if base is not None and not base.fits(lora):
                # A larger rank or other layers than the slot: reload with a slot for every run seen.
                shapes = [*base.shapes, lora]
                self.evict(key)
                base = None
            else:
                shapes = [lora]
            if base is None:
                while len(self._bases) >= self.max_bases:
                    self.evict(next(iter(self._bases)))
                base = SharedBase(
                    key[0],
                    key[1],
                    slot=self._planned_slot(key, runs_dir, shapes),
                    quantize=key[2] if len(key) > 2 else "none",
                    loader=self.loader,
                    batch_size=self.batch_size,
                    length_buckets=self.length_buckets,
                )
                self._bases[key] = base
            self._bases.move_to_end(key)
            return base.generator(run_key, adapter, lora)

    def loaded(self, model: str | Path, *, dtype: str | None = None) -> bool:
        """Whether `generator(model)` would reuse a loaded base (no load, no reload)."""
        try:
            key, _, _, lora, _ = self._describe(model, dtype)
        except UserError:
            return False
        with self._lock:
            base = self._bases.get(key)
            return base is not None and base.fits(lora)

    @property
    def bases(self) -> list[tuple]:
        """Keys (preset, dtype), or (preset, dtype, quantize) for an int8 base, of the loaded bases, least
        recently used first."""
        with self._lock:
            return list(self._bases)

    def base(self, key: tuple) -> SharedBase:
        return self._bases[key]

    def evict(self, key: tuple) -> None:
        """Unload one base now (its generators refuse further calls)."""
        with self._lock:
            base = self._bases.pop(key, None)
            if base is not None:
                self.evictions += 1
                base.close()

    def close(self) -> None:
        """Unload every base."""
        with self._lock:
            for key in list(self._bases):
                self.evict(key)

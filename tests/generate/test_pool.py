"""One base in memory for several runs: adapters applied per call, a bounded model cache that frees memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kit.errors import UserError
from kit.generate import Generator, ModelPool, Request, SamplerSpec
from kit.model import load_causal_lm, load_run
from kit.model.lora import enable_lora, save_adapter
from kit.runs import LoraInfo, RunInfo

REQS = [
    Request.create(rubrics="Кафе", rating=5, keywords="кофе, десерт"),
    Request.create(rubrics="Музей", rating=3, name="Эрмитаж"),
]
BUCKETS = (128,)


def _write_run(root: Path, name: str, preset: Path, lora: LoraInfo | None, seed: int) -> Path:
    run = root / name
    run.mkdir(parents=True)
    info = RunInfo(name=name, preset=str(preset), dtype="float32", status="base" if lora is None else "finished")
    if lora is not None:
        lm = load_causal_lm(str(preset), dtype="float32")
        enable_lora(lm, rank=lora.rank, alpha=lora.alpha, targets=lora.targets)
        rng = np.random.default_rng(seed)
        for v in lm.backbone.weights:
            if "lora_kernel" in v.path:  # B starts at zero: give both factors values, so the adapter matters
                v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
        save_adapter(lm, run / "adapter.lora.h5")
        info.adapter, info.lora = "adapter.lora.h5", lora
    info.write(run)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_preset):
    root = tmp_path_factory.mktemp("pool") / "runs"
    return {
        "base": _write_run(root, "base", tiny_preset, None, 0),
        # Two shapes: the slot is rank 4 on every layer; the qv run is padded and scaled (alpha/rank = 3).
        "all4": _write_run(root, "all4", tiny_preset, LoraInfo(rank=4, alpha=8.0, targets="all"), 1),
        "qv2": _write_run(root, "qv2", tiny_preset, LoraInfo(rank=2, alpha=6.0, targets="qv"), 2),
    }


def _texts(gen, sampler, n=2):
    return [s.text for samples in gen.generate(REQS, sampler, n=n, max_new_tokens=12) for s in samples]


def _live_bytes() -> int:
    import gc

    import jax

    # Collect first: arrays that earlier tests dropped but the collector has not yet
    # freed would otherwise vanish between two measurements and skew the difference.
    gc.collect()
    return sum(a.nbytes for a in jax.live_arrays())


SAMPLERS = [SamplerSpec(name="greedy"), SamplerSpec(name="top_k", seed=5, temperature=1.5)]


@pytest.mark.slow  # compiles 3 models x 3 samplers (~2 min)
def test_runs_on_one_base_share_its_weights_and_give_their_own_text(runs):
    pool = ModelPool(max_bases=1, batch_size=4, length_buckets=BUCKETS)
    gens = {name: pool.generator(path) for name, path in runs.items()}
    assert len(pool.bases) == 1 and len({id(g.lm) for g in gens.values()}) == 1
    assert len({id(g.decoder) for g in gens.values()}) == 1 and len({id(g.lock) for g in gens.values()}) == 1
    for sampler in SAMPLERS:
        # Interleaved: each call applies its own run's adapter, whatever ran before on the base.
        shared = {name: _texts(gens[name], sampler) for name in ("all4", "base", "qv2", "all4")}
        for name, path in runs.items():
            alone = Generator(load_run(path), batch_size=4, length_buckets=BUCKETS)
            assert shared[name] == _texts(alone, sampler), (name, sampler.name)
        assert len(set(map(tuple, shared.values()))) == 3  # three different models
    # Beam search keeps KerasHub's loop: the adapter is swapped into the variables under the lock.
    beam = SamplerSpec(name="beam", num_beams=2)
    for name in ("qv2", "base", "all4"):
        alone = Generator(load_run(runs[name]), batch_size=4, length_buckets=BUCKETS)
        assert _texts(gens[name], beam, n=1) == _texts(alone, beam, n=1), name
    sizes = pool.base(pool.bases[0]).nbytes()
    assert sizes[str(runs["base"].resolve())] == 0  # the base run adds nothing
    assert 0 < sizes[str(runs["qv2"].resolve())] <= sizes[str(runs["all4"].resolve())] < sizes["base"] / 4
    pool.close()


def test_lru_eviction_frees_memory_and_reload_works(runs):
    pool = ModelPool(max_bases=1, batch_size=4, length_buckets=BUCKETS)
    before = _live_bytes()
    gen = pool.generator(runs["all4"])
    first = _texts(gen, SAMPLERS[0])
    loaded = _live_bytes() - before
    weights = [v.value for v in gen.lm.variables]
    assert loaded >= sum(w.nbytes for w in weights)
    other = pool.generator(runs["base"], dtype="bfloat16")  # another base (dtype): the float32 one goes
    assert pool.evictions == 1 and pool.bases == [(RunInfo.read(runs["base"]).preset, "bfloat16")]
    assert all(w.is_deleted() for w in weights)
    with pytest.raises(UserError, match="unloaded"):
        gen.generate(REQS, SAMPLERS[0], max_new_tokens=12)
    pool.evict(pool.bases[0])
    del other, gen, weights
    assert _live_bytes() - before < loaded / 10  # the device memory is back
    assert _texts(pool.generator(runs["all4"]), SAMPLERS[0]) == first  # loads again
    pool.close()


def test_a_larger_adapter_reloads_the_base_with_a_slot_that_fits(runs, tmp_path, tiny_preset):
    pool = ModelPool(max_bases=2, batch_size=4, length_buckets=BUCKETS)
    qv = pool.generator(runs["qv2"])
    assert pool.base(pool.bases[0]).slot == (4, "all")  # planned from the runs next to it
    big = _write_run(runs["base"].parent, "all8", tiny_preset, LoraInfo(rank=8, alpha=8.0, targets="all"), 3)
    try:
        gen = pool.generator(big)
        assert pool.evictions == 1 and pool.base(pool.bases[0]).slot == (8, "all") and qv.closed
        alone = Generator(load_run(big), batch_size=4, length_buckets=BUCKETS)
        assert _texts(gen, SAMPLERS[0]) == _texts(alone, SAMPLERS[0])
        assert _texts(pool.generator(runs["qv2"]), SAMPLERS[0]) == _texts(
            Generator(load_run(runs["qv2"]), batch_size=4, length_buckets=BUCKETS), SAMPLERS[0]
        )
    finally:
        import shutil

        shutil.rmtree(big)
        pool.close()


def test_pool_refuses_bad_sizes_and_missing_adapters(runs, tmp_path):
    with pytest.raises(UserError, match="at least 1"):
        ModelPool(max_bases=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    info = RunInfo.read(runs["all4"])
    info.name = "broken"
    info.write(broken)
    with pytest.raises(UserError, match="adapter.lora.h5 is missing"):
        ModelPool().generator(broken)

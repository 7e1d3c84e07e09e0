"""The kit's decode loop on a micro Gemma 3: KerasHub's `Gemma3CausalLM.generate` text, early stop, streaming, pool.

The micro Gemma 3 has 6 layers (layer 5 attends globally, 0-4 in a window of 8
tokens) and prompts of 50-90 tokens, so the sliding mask and the global layer
both shape every token. The shared-base pool serves a Gemma 2 and a Gemma 3 run
at once, one base each.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from kit.families import family_of
from kit.generate import Generator, ModelPool, Request, SamplerSpec
from kit.generate.decode import Decoder
from kit.model import load_causal_lm, load_run
from kit.model.lora import enable_lora, save_adapter
from kit.runs import LoraInfo, RunInfo
from kit.testing import MICRO, micro_lm

# Six layers: five sliding-window layers and one global one (KerasHub: `i % 6 < 5` is local).
GEMMA3_MICRO = dataclasses.replace(MICRO, num_layers=6, num_key_value_heads=2, sliding_window_size=8)

REQS = [
    Request.create(rubrics="Кафе", rating=5, keywords="кофе, десерт"),
    Request.create(
        rubrics="Гостиница;Ресторан", rating=1, keywords="номер", name="Азимут", address="Москва, Тверская улица, 3"
    ),
]


@pytest.fixture(scope="module")
def gemma3_preset(tmp_path_factory, tiny_prepared) -> Path:
    path = tmp_path_factory.mktemp("gemma3") / "micro-gemma3"
    micro_lm(tiny_prepared, GEMMA3_MICRO, family="gemma3").save_to_preset(str(path))
    return path


@pytest.fixture(scope="module")
def gen(gemma3_preset):
    return Generator(load_causal_lm(str(gemma3_preset), dtype="float32"), batch_size=4, length_buckets=(128,))


def keras_hub_rows(gen, requests, sampler, n, max_new_tokens):
    """The same batch through KerasHub's own compiled `generate_step` (Gemma3CausalLM's, cache_update_mask and all)."""
    chunk = [(i, gen.encode(r.prompt())) for i, r in enumerate(requests) for _ in range(n)]
    token_ids, padding_mask = gen._pack(chunk, max_new_tokens)
    rows = gen._run_keras(token_ids, padding_mask, sampler, 0)
    return [gen.decode_row(requests[i].prompt(), rows[j], len(ids), max_new_tokens) for j, (i, ids) in enumerate(chunk)]


def test_the_micro_gemma3_has_a_global_layer_and_a_window_shorter_than_the_prompts(gen):
    backbone = gen.lm.backbone
    assert family_of(gen.lm).NAME == "gemma3" and type(gen.lm).__name__ == "Gemma3CausalLM"
    local = [b.attention.use_sliding_window_attention for b in backbone.transformer_layers]
    assert local == [True] * 5 + [False]
    lengths = [len(gen.encode(r.prompt())) for r in REQS]
    assert min(lengths) > 4 * backbone.sliding_window_size and lengths[0] != lengths[1]
    assert Decoder(gen.lm).keeps_prompt_cache and not Decoder(_gemma2(gen)).keeps_prompt_cache


def _gemma2(gen):
    """A micro Gemma 2 (its `call_with_cache` takes no masks), for the Decoder's check."""
    from kit.model.tiny import build_tiny_lm

    return build_tiny_lm(gen.lm.preprocessor.tokenizer.proto, MICRO)


@pytest.mark.slow  # two compiled loops (kit + KerasHub) per sampler: ~15 s each on 2 CPU cores
@pytest.mark.parametrize(
    "sampler",
    [SamplerSpec(name="greedy"), SamplerSpec(name="top_k", seed=3, temperature=1.5), SamplerSpec(name="top_p", seed=4)],
    ids=lambda s: s.name,
)
def test_same_seed_same_text_as_keras_hub_with_fewer_steps(gen, sampler):
    ours = [s for samples in gen.generate(REQS, sampler, n=2, max_new_tokens=20) for s in samples]
    steps = list(gen.last_steps)
    theirs = keras_hub_rows(gen, REQS, sampler, 2, 20)
    assert [s.text for s in ours] == [s.text for s in theirs]
    assert [s.new_tokens for s in ours] == [s.new_tokens for s in theirs]
    assert all(s.text for s in ours)
    if sampler.name != "greedy":  # the two samples of a request are drawn, not copied
        assert ours[0].text != ours[1].text or ours[2].text != ours[3].text
    lengths = [len(gen.encode(r.prompt())) for r in REQS]
    # Early stop: the random model writes no stop id, so the batch ends when the longest prompt's row has
    # its 20 tokens; KerasHub's loop runs to the end of the 128-token bucket.
    assert steps == [max(lengths) - min(lengths) + 20]
    assert gen.last_steps[-1] == 128 - min(lengths)


def test_decode_keeps_the_prefill_cache_at_prompt_positions_of_longer_rows(gen):
    """As Gemma3CausalLM.generate_step's cache_update_mask: a step at a longer row's prompt position writes nothing.

    Recomputing those keys and values one token at a time gives other float bits
    than the prefill (the cache would differ at most positions), which is what
    KerasHub avoids and the kit's loop matches.
    """
    dec = gen.decoder
    chunk = [(i, gen.encode(r.prompt())) for i, r in enumerate(REQS)]
    token_ids, padding_mask = gen._pack(chunk, 16)
    state = dec.state()
    greedy = SamplerSpec(name="greedy")
    ds = dec.start(state, greedy, token_ids, padding_mask, seed=0, stream=0, limit=16, stops=gen.stop_ids)
    prefill = [tuple(np.asarray(a) for a in layer) for layer in ds.cache]
    short, long = sorted(len(ids) for _, ids in chunk)
    dec.advance(state, greedy, ds, steps=long - short + 4)  # through the longer prompt and 4 tokens past it
    row = int(np.argmax(padding_mask.sum(axis=-1)))
    for before, after in zip(prefill, ds.cache, strict=True):
        for b, a in zip(before, after, strict=True):
            a = np.asarray(a)
            np.testing.assert_array_equal(a[row, :long], b[row, :long])  # prompt: the prefill's, bit for bit
            assert np.abs(a[1 - row, short:long] - b[1 - row, short:long]).max() > 0  # generated: written


@pytest.mark.slow  # compiles the batch-of-1 loop: ~20 s
def test_decoding_ends_when_every_row_has_written_a_stop_id(gen):
    greedy = SamplerSpec(name="greedy")
    first = gen.generate(REQS[:1], greedy, max_new_tokens=30)[0][0]
    assert not first.stopped and first.new_tokens == 30 and gen.last_steps == [30]
    saved = gen.stop_ids
    try:
        ids = gen.encode(REQS[0].prompt())
        gen.stop_ids = ()
        new = [int(t) for t in gen._run([(0, ids)], greedy, 0, 30)[0][len(ids) :]]
        # The first token greedy writes anew after the first one now ends the review (a random model repeats).
        j = next(j for j in range(1, 30) if new[j] not in new[:j])
        gen.stop_ids = (*saved, new[j])
        stopped = gen.generate(REQS[:1], greedy, max_new_tokens=30)[0][0]
        assert stopped.stopped and stopped.new_tokens == j and gen.last_steps == [j + 1]
    finally:
        gen.stop_ids = saved


@pytest.mark.parametrize(
    ("sampler", "n"),
    [(SamplerSpec(name="greedy"), 1), (SamplerSpec(name="top_k", seed=9, temperature=1.5), 2)],
    ids=["greedy-1", "top_k-2"],
)
def test_stream_gives_the_batch_text_piece_by_piece(gen, sampler, n):
    batch = gen.generate(REQS[:1], sampler, n=n, max_new_tokens=24)[0]
    traces = gen.traces
    stream = gen.stream(REQS[0], sampler, n=n, max_new_tokens=24, chunk_tokens=3)
    pieces = list(stream)
    assert "".join(pieces) == batch[0].text
    assert [s.text for s in stream.samples] == [s.text for s in batch]
    assert len(pieces) > 3  # the first piece after one token, then every 3 tokens through the KV cache
    assert gen.traces == traces  # the batch path's program: no new compile for streaming
    assert stream.steps >= 24


# --------------------------------------------------------------------------- the shared-base pool, both families


def _write_run(root: Path, name: str, preset: Path, lora: LoraInfo | None, seed: int) -> Path:
    """A run dir on `preset`: a base run, or random non-zero adapters of shape `lora` (no training)."""
    run = root / name
    run.mkdir(parents=True)
    info = RunInfo(name=name, preset=str(preset), dtype="float32", status="base" if lora is None else "finished")
    if lora is not None:
        lm = load_causal_lm(str(preset), dtype="float32")
        enable_lora(lm, rank=lora.rank, alpha=lora.alpha, targets=lora.targets)
        rng = np.random.default_rng(seed)
        for v in lm.backbone.weights:
            if "lora_kernel" in v.path:
                v.assign(rng.normal(0, 0.5, v.shape).astype("float32"))
        save_adapter(lm, run / "adapter.lora.h5")
        info.adapter, info.lora = "adapter.lora.h5", lora
    info.write(run)
    return run


@pytest.mark.slow  # compiles the decode loop of 2 shared bases and 4 lone models (~40 s)
def test_pool_serves_gemma2_and_gemma3_runs_at_once_one_base_per_preset(tmp_path, tiny_preset, gemma3_preset):
    root = tmp_path / "runs"
    runs = {
        "g2-lora": _write_run(root, "g2-lora", tiny_preset, LoraInfo(rank=4, alpha=8.0, targets="all"), 1),
        "g3-lora": _write_run(root, "g3-lora", gemma3_preset, LoraInfo(rank=2, alpha=6.0, targets="qv"), 2),
        "g3-base": _write_run(root, "g3-base", gemma3_preset, None, 0),
    }
    pool = ModelPool(max_bases=2, batch_size=4, length_buckets=(128,))  # the app's pool (streamlit_app.resources)
    try:
        gens = {name: pool.generator(path) for name, path in runs.items()}
        assert len(pool.bases) == 2 and {key[0] for key in pool.bases} == {str(tiny_preset), str(gemma3_preset)}
        assert gens["g3-lora"].lm is gens["g3-base"].lm and gens["g2-lora"].lm is not gens["g3-lora"].lm
        assert {name: family_of(g.lm).NAME for name, g in gens.items()} == {
            "g2-lora": "gemma2",
            "g3-lora": "gemma3",
            "g3-base": "gemma3",
        }
        greedy = SamplerSpec(name="greedy")
        # Interleaved across families and runs: each call brings its own base and adapter.
        shared = {name: _texts(gens[name], greedy) for name in ("g3-lora", "g2-lora", "g3-base", "g3-lora")}
        for name, path in runs.items():
            alone = Generator(load_run(path), batch_size=4, length_buckets=(128,))
            assert shared[name] == _texts(alone, greedy), name
        assert len({tuple(t) for t in shared.values()}) == 3  # three different models
    finally:
        pool.close()


def _texts(gen, sampler):
    return [s.text for samples in gen.generate(REQS, sampler, max_new_tokens=12) for s in samples]

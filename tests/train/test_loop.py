"""kit.train.loop: what the Engine's step differentiates and logs, its lever checks, and a run that diverges."""

from __future__ import annotations

import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kit.config import load_config
from kit.data.batching import Encoder
from kit.errors import UserError
from kit.metrics.perplexity import token_nll
from kit.model import enable_lora
from kit.runs import RunInfo, RunPaths
from kit.testing import micro_lm, micro_overrides
from kit.train import finetune
from kit.train.lean import step_levers
from kit.train.loop import Engine
from kit.train.optim import make_optimizer
from kit.train.unlikelihood import continuing, sentence_unlikelihood, token_unlikelihood

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lm(tiny_prepared):
    lm = micro_lm(tiny_prepared)
    enable_lora(lm, rank=3, alpha=6.0, targets="all", factored=True)
    for i, v in enumerate(lm.trainable_variables):  # B starts at 0, which would hide the adapter's gradient
        v.assign(np.random.RandomState(i).normal(size=v.shape).astype("float32") * 0.05)
    return lm


def _batch(vocab, ends=()):
    rs = np.random.RandomState(1)
    mask = np.ones((2, 40), np.int32)
    mask[1, 31:] = 0
    x = {"token_ids": jnp.asarray(rs.randint(3, vocab, (2, 40)), jnp.int32), "padding_mask": jnp.asarray(mask)}
    y = rs.randint(3, 40, (2, 40))  # 37 ids over 40 positions: many repeats
    if ends:
        y[:, 8::6] = ends[0]  # sentences of 6 tokens, so the sentence-start form has starts to act on
    y = jnp.asarray(y, jnp.int32)
    w = np.asarray(mask, np.float32)
    w[:, :5] = 0  # the prompt
    return x, y, jnp.asarray(w)


def _micro(engine, batch):
    acc = [jnp.zeros_like(v) for v in engine.tv]
    grads, loss, weight = jax.jit(engine._micro_fn)(engine.tv, engine.ntv, acc, *batch)
    return [np.asarray(g) for g in grads], float(loss), float(weight)


def _engine(lm, **levers):
    return Engine(lm, make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1), **levers)


@pytest.mark.parametrize(
    ("alpha", "context", "sentences"), [(0.5, 0, 0.0), (0.5, 1, 0.0), (0.5, 0, 2.0), (0.0, 0, 2.0)]
)
def test_the_step_differentiates_nll_plus_the_weighted_terms_and_logs_the_nll(lm, alpha, context, sentences):
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    batch = _batch(int(lm.backbone.vocabulary_size), enc.sentence_end_ids())
    plain = _engine(lm)
    on = _engine(lm, unlikelihood=alpha, unlikelihood_context=context, unlikelihood_sentences=sentences)
    assert on.ul.stop_ids == enc.stop_ids and (on.ul.sentence_ends == enc.sentence_end_ids()) == (sentences > 0)

    def expected(tv):
        logits, _ = lm.stateless_call(tv, on.ntv, batch[0])
        _, y, w = batch
        go_on = continuing(logits, enc.stop_ids)
        ul = alpha * jnp.sum(token_unlikelihood(logits, y, w, context) * w)
        ul += sentences * jnp.sum(sentence_unlikelihood(go_on, y, w, enc.sentence_end_ids(), enc.blank_ids()) * w)
        return jnp.sum(token_nll(logits, y) * w) + ul

    want = [np.asarray(g) for g in jax.grad(expected)(on.tv)]
    grads, loss, weight = _micro(on, batch)
    grads0, loss0, weight0 = _micro(plain, batch)
    for g, e in zip(grads, want, strict=True):  # float32 sums in another order: relative to the largest entry
        assert np.abs(g - e).max() <= 1e-4 * max(np.abs(e).max(), 1e-8)
    assert loss == pytest.approx(loss0, rel=1e-6) and weight == weight0  # the logged loss is the NLL
    assert max(np.abs(g - g0).max() for g, g0 in zip(grads, grads0, strict=True)) > 1e-4  # the term acts
    # validation is the plain NLL whatever the weight
    assert float(jax.jit(on._loss_fn)(on.tv, on.ntv, *batch)[0]) == pytest.approx(loss0, rel=1e-6)


@pytest.mark.slow
def test_remat_gives_the_plain_path_s_unlikelihood_gradients(lm):
    batch = _batch(int(lm.backbone.vocabulary_size), Encoder(lm.preprocessor.tokenizer.proto).sentence_end_ids())
    levers = {"unlikelihood": 0.5, "unlikelihood_context": 2, "unlikelihood_sentences": 2.0}
    grads, loss, _ = _micro(_engine(lm, **levers), batch)
    grads_r, loss_r, _ = _micro(_engine(lm, **levers, remat=True), batch)
    assert loss_r == pytest.approx(loss, rel=1e-5)
    for g, e in zip(grads_r, grads, strict=True):
        assert np.abs(g - e).max() <= 1e-4 * max(np.abs(e).max(), 1e-8)


def test_unlikelihood_with_a_chunked_loss_is_refused_in_one_line(lm):
    gemma_like = types.SimpleNamespace(backbone=types.SimpleNamespace(weights=[], vocabulary_size=256_000))
    train = load_config(ROOT / "configs" / "gemma2_2b_gpu.toml", ["train.unlikelihood=1.0"]).train
    with pytest.raises(UserError, match=r"train.unlikelihood = 1.0 needs the full logits.*train.loss_chunk = 0"):
        step_levers(train, gemma_like, 512)
    assert step_levers(train, lm, 64)["unlikelihood"] == 1.0  # the micro model's loss is not chunked
    train = load_config(ROOT / "configs" / "gemma2_2b_gpu.toml", ["train.unlikelihood_sentences=3"]).train
    with pytest.raises(UserError, match=r"train.unlikelihood_sentences = 3.0 needs the full logits"):
        step_levers(train, gemma_like, 512)
    with pytest.raises(ValueError, match="loss_chunk"):
        _engine(lm, unlikelihood=1.0, loss_chunk=16)


@pytest.mark.slow  # fine-tunes the micro model until its loss is NaN
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_preset, tiny_prepared, monkeypatch):
    import kit.train.loop

    real = kit.train.loop.make_batch
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        batch = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 12:  # after the step-3 checkpoint (2 micro-batches per step + evals)
            batch.sample_weight[:] = np.nan
        return batch

    monkeypatch.setattr(kit.train.loop, "make_batch", poisoned)
    cfg = load_config(None, micro_overrides(tmp_path, tiny_preset, tiny_prepared, **{"train.eval_every": 0}))
    with pytest.raises(kit.train.loop.TrainingDiverged, match="diverged at step"):
        finetune(cfg, progress=False)
    paths = RunPaths(tmp_path / "runs" / "micro")
    assert RunInfo.read(paths.root).status == "diverged"
    assert not paths.adapter.exists()
    (step, ckpt), *_ = paths.list_checkpoints()
    assert step == 3
    with np.load(ckpt / "state.npz") as z:
        assert all(np.isfinite(z[k]).all() for k in z.files)

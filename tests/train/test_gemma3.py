"""Training on a micro Gemma 3: factored LoRA, chunked loss, remat and the int8 base equal their plain forms; finetune resumes.

The micro Gemma 3 has 6 layers (layer 5 global, 0-4 in a window of 8 tokens),
grouped-query attention (4 query heads on 2 key/value heads) and query/key
norms; the batches are 40 tokens long, 5 windows. Tolerances as in
tests/train/test_lean.py (float32): outputs < 1e-4, losses and gradients
within 1e-4 relative.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kit.config import load_config
from kit.families import family_of
from kit.generate import Generator, Request, SamplerSpec
from kit.model import enable_lora, load_causal_lm, load_run
from kit.model.quantize import quantize_base
from kit.model.tiny import build_tiny_lm, train_tokenizer
from kit.runs import RunPaths
from kit.testing import MICRO, TINY_CONFIG, adapter_arrays, micro_overrides
from kit.train import finetune
from kit.train.lean import hidden_states, lean_loss
from kit.train.loop import Engine
from kit.train.optim import make_optimizer

GEMMA3_MICRO = dataclasses.replace(MICRO, num_layers=6, num_key_value_heads=2, sliding_window_size=8)
TARGETS = ("qv", "all")


def _randomise_adapters(lm, scale=0.05):
    """Non-zero A and B (B starts at 0, which would hide any difference in the B path)."""
    for i, v in enumerate(lm.trainable_variables):
        v.assign(np.random.RandomState(i).normal(size=v.shape).astype("float32") * scale)


def _batch(length=40, vocab=400):
    rs = np.random.RandomState(0)
    mask = np.ones((2, length), np.int32)
    mask[1, length - 9 :] = 0  # a padded row
    x = {"token_ids": jnp.asarray(rs.randint(3, vocab, (2, length)), jnp.int32), "padding_mask": jnp.asarray(mask)}
    y = jnp.asarray(rs.randint(3, vocab, (2, length)), jnp.int32)
    w = jnp.asarray(mask, jnp.float32)
    return x, y, w


def _engine(lm, **levers):
    return Engine(lm, make_optimizer(learning_rate=1e-2, warmup_steps=0, total_steps=1), **levers)


def _loss_and_grads(lm, **levers):
    engine = _engine(lm, **levers)
    (loss, _), grads = jax.jit(jax.value_and_grad(engine._loss_fn, has_aux=True))(engine.tv, engine.ntv, *_batch())
    return float(loss), [np.asarray(g) for g in grads]


def _assert_grads_close(a, b, rtol=1e-4):
    assert len(a) == len(b) > 0
    for ga, gb in zip(a, b, strict=True):
        assert np.abs(ga - gb).max() <= rtol * max(np.abs(gb).max(), 1e-8)


@pytest.fixture(scope="module")
def proto(tiny_prepared) -> bytes:
    """The micro models' tokenizer, trained once (as `kit.testing.micro_lm` trains it)."""
    import datasets

    train = datasets.load_from_disk(str(tiny_prepared))["train"]
    return train_tokenizer(list(train["text"]) + list(train["prompt"]), vocab_size=GEMMA3_MICRO.vocab_size)


def _gemma3(proto):
    """A micro Gemma 3; the same weights every time (`build_tiny_lm` seeds from the spec)."""
    return build_tiny_lm(proto, GEMMA3_MICRO, family="gemma3")


@pytest.fixture(scope="module")
def lms(proto):
    """Micro Gemma 3 models with merged and with factored adapters (same values), per target set."""
    out = {}
    for targets in TARGETS:
        for factored in (False, True):
            lm = _gemma3(proto)
            enable_lora(lm, rank=3, alpha=6.0, targets=targets, factored=factored)
            _randomise_adapters(lm)
            out[targets, factored] = lm
    return out


def test_the_micro_model_is_a_gemma3_with_a_global_layer(lms):
    lm = lms["all", True]
    assert family_of(lm).NAME == "gemma3" and lm.backbone.use_query_key_norm
    assert [b.attention.use_sliding_window_attention for b in lm.backbone.transformer_layers] == [True] * 5 + [False]
    assert lm.backbone.sliding_window_size * 4 < _batch()[0]["token_ids"].shape[1]


@pytest.mark.parametrize("targets", TARGETS)
def test_factored_lora_equals_keras_merged_outputs(lms, targets):
    x, _, _ = _batch()
    merged, factored = np.asarray(lms[targets, False](x)), np.asarray(lms[targets, True](x))
    assert np.abs(merged - factored).max() < 1e-4
    assert np.abs(merged).max() > 1e-2  # a real comparison, not two zeros
    n_layers = {"qv": 2, "all": 7}[targets] * 6
    assert sum(getattr(layer, "lora_enabled", False) for layer in lms[targets, True].backbone._flatten_layers()) == (
        n_layers
    )


@pytest.mark.slow  # compiles two gradient programs of the 6-layer model (~25 s)
@pytest.mark.parametrize("targets", ["all"])  # every adaptable layer; `qv`'s two are among them
def test_factored_lora_equals_keras_merged_gradients(lms, targets):
    loss_m, grads_m = _loss_and_grads(lms[targets, False])
    loss_f, grads_f = _loss_and_grads(lms[targets, True])
    assert abs(loss_m - loss_f) <= 1e-5 * abs(loss_m)
    assert all(np.abs(g).max() > 0 for g in grads_m)
    _assert_grads_close(grads_f, grads_m)


def test_remat_forward_equals_the_backbone_forward(lms):
    """`hidden_states(remat=True)` re-wires Gemma3Backbone's text path: embedding x sqrt(d), blocks, final norm."""
    backbone = lms["all", True].backbone
    x, _, _ = _batch()
    plain = np.asarray(backbone(x))
    np.testing.assert_array_equal(np.asarray(hidden_states(backbone, x)), plain)  # remat off: the backbone itself
    remat = np.asarray(hidden_states(backbone, x, remat=True))
    assert np.abs(remat - plain).max() <= 1e-5 * np.abs(plain).max()
    # The padded row's padding matters (a block that dropped padding_mask would differ here).
    unpadded = np.asarray(backbone({**x, "padding_mask": jnp.ones_like(x["padding_mask"])}))
    assert np.abs(unpadded[1, :31] - plain[1, :31]).max() == 0  # causal: no real position sees the padding
    assert np.abs(unpadded[1, 31:] - plain[1, 31:]).max() > 1e-3


def test_chunked_loss_equals_the_plain_loss(lms):
    lm = lms["all", True]
    x, y, w = _batch()
    tv = [v.value for v in lm.trainable_variables]
    ntv = [v.value for v in lm.non_trainable_variables]
    args = (lm, lm.trainable_variables, lm.non_trainable_variables, tv, ntv, x, y, w)
    plain, _, weight = lean_loss(*args, loss_chunk=0)
    chunked, _, _ = lean_loss(*args, loss_chunk=7)  # 40 positions: a padded last chunk
    engine = _engine(lm)
    reference, _ = engine._loss_fn(engine.tv, engine.ntv, x, y, w)  # the Engine's plain `stateless_call` loss
    assert float(weight) == 71 and abs(float(reference) - float(plain)) <= 1e-5 * float(reference)
    assert abs(float(chunked) - float(plain)) <= 1e-5 * float(plain)


@pytest.mark.slow  # a gradient program per lever set (~10 s each)
# Remat alone is checked on the forward pass (fast tier); its gradients here with a chunk that pads.
@pytest.mark.parametrize(("loss_chunk", "remat"), [(16, False), (7, True)])
def test_chunked_loss_and_remat_equal_the_plain_loss_and_gradients(lms, loss_chunk, remat):
    loss, grads = _loss_and_grads(lms["all", True])
    loss_l, grads_l = _loss_and_grads(lms["all", True], loss_chunk=loss_chunk, remat=remat)
    assert abs(loss - loss_l) <= 1e-4 * abs(loss)
    _assert_grads_close(grads_l, grads)


@pytest.mark.slow  # gradient programs of the float and the int8 model, one step, one generation (~40 s)
def test_int8_base_trains_a_lora_step_and_generates(proto):
    grads = {}
    for mode in ("none", "int8"):
        lm = _gemma3(proto)
        quantized = quantize_base(lm, mode)
        enable_lora(lm, rank=3, alpha=6.0, targets="all")
        _randomise_adapters(lm)
        grads[mode] = _loss_and_grads(lm)
    assert len(quantized) == 7 * 6  # q, k, v, output and the 3 FFW kernels of each of the 6 blocks
    block = lm.backbone.get_layer("decoder_block_5")  # the global layer
    assert block.attention.query_dense.quantization_mode == "int8" and block.ffw_linear.quantization_mode == "int8"
    assert block.attention.query_norm.weights[0].dtype == "float32"  # Gemma 3's query/key norms stay float
    assert lm.backbone.token_embedding.quantization_mode is None
    assert all("lora_kernel" in v.path for v in lm.trainable_variables)
    (loss_f, g_f), (loss_q, g_q) = grads["none"], grads["int8"]
    assert abs(loss_q - loss_f) < 0.01 * loss_f
    # int8 kernels and activations move the gradient, more the deeper the model: through 6 layers the
    # worst LoRA factor moves by a third of its size, as on a 6-layer micro Gemma 2 (three quarters
    # there); 2 layers of either family: ~15 %. The direction stays (measured cosine 0.991; Gemma 2: 0.959).
    flat_q, flat_f = (np.concatenate([a.ravel() for a in g]) for g in (g_q, g_f))
    assert flat_q @ flat_f / (np.linalg.norm(flat_q) * np.linalg.norm(flat_f)) > 0.97

    # One optimizer step on the int8 base (the Engine's own update) lowers the loss on its batch.
    engine = _engine(lm)
    x, y, w = _batch()
    (loss, weight), g = jax.value_and_grad(engine._loss_fn, has_aux=True)(engine.tv, engine.ntv, x, y, w)
    new_tv, _, norm = engine._apply(engine.tv, engine.ov, g, weight)
    after, _ = engine._loss_fn(new_tv, engine.ntv, x, y, w)
    assert float(norm) > 0 and float(after) < float(loss)
    assert all(np.abs(np.asarray(a) - np.asarray(b)).max() > 0 for a, b in zip(new_tv, engine.tv, strict=True))

    engine.tv = new_tv
    engine.sync_to_model()
    gen = Generator(lm, batch_size=2, length_buckets=(128,))
    req = Request.create(rubrics="Кафе", rating=5, keywords="кофе")
    a = gen.generate([req], SamplerSpec(name="top_k", seed=1), n=2, max_new_tokens=12)[0]
    b = gen.generate([req], SamplerSpec(name="top_k", seed=1), n=2, max_new_tokens=12)[0]
    assert a == b and all(s.new_tokens > 0 and s.text for s in a)


# --------------------------------------------------------------------------- kit finetune


@pytest.fixture(scope="module")
def gemma3_preset(tmp_path_factory, proto) -> Path:
    path = tmp_path_factory.mktemp("gemma3") / "micro-gemma3"
    _gemma3(proto).save_to_preset(str(path))
    return path


def _cfg(tmp_path, preset, data, name, **extra):
    return load_config(TINY_CONFIG, micro_overrides(tmp_path, preset, data, name=name, **extra))


@pytest.mark.slow  # three micro fine-tunes of the 6-layer model (~1.5 min)
def test_finetune_trains_and_a_resume_matches_an_uninterrupted_run(tmp_path, gemma3_preset, tiny_prepared):
    full = finetune(_cfg(tmp_path, gemma3_preset, tiny_prepared, "full"), progress=False)
    assert full.status == "completed" and full.metrics["steps"] == 8
    assert full.metrics["val_loss"] < full.metrics["initial_val_loss"]  # it learnt something
    saved = json.loads(RunPaths(tmp_path / "runs" / "full").run_json.read_text(encoding="utf-8"))
    assert saved["lora"]["targets"] == "all" and len(saved["lora"]["layers"]) == 7 * 6
    lm = load_run(tmp_path / "runs" / "full")
    assert type(lm).__name__ == "Gemma3CausalLM" and all(np.abs(a).max() > 0 for a in adapter_arrays(lm))
    x = {"token_ids": np.array([[2, 5, 9, 11, 4, 7]], "int32"), "padding_mask": np.ones((1, 6), "int32")}
    assert not np.allclose(np.asarray(lm(x)), np.asarray(load_causal_lm(str(gemma3_preset))(x)))

    # A budget shorter than loading the model: one step, a checkpoint; the resume finishes the same run.
    stopped = finetune(
        _cfg(tmp_path, gemma3_preset, tiny_prepared, "budget", **{"train.max_minutes": 1e-6}), progress=False
    )
    paths = RunPaths(tmp_path / "runs" / "budget")
    assert stopped.status == "stopped_on_budget" and [s for s, _ in paths.list_checkpoints()] == [1]
    resumed = finetune(_cfg(tmp_path, gemma3_preset, tiny_prepared, "budget"), resume=True, progress=False)
    assert resumed.status == "completed" and resumed.metrics["steps"] == 8
    for a, b in zip(adapter_arrays(load_run(paths.root)), adapter_arrays(lm), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed.metrics["val_loss"] == pytest.approx(full.metrics["val_loss"], rel=1e-5)

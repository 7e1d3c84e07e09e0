"""The train step's memory and speed levers equal the plain step: factored LoRA, chunked loss, remat, int8 base.

Tolerances (float32, micro model): factored vs merged LoRA logits < 1e-4 and
gradients within 1e-4 relative (the sums run in another order); chunked loss
and remat: loss within 1e-4 relative, gradients within 1e-4 relative. An int8
export's float kernels equal `q / scale + alpha/rank · A·B` to float32 rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kit.config import load_config
from kit.errors import UserError
from kit.model import enable_lora, load_run
from kit.model.lora import save_adapter
from kit.model.quantize import merged_kernel, quantize_base
from kit.testing import micro_lm, micro_overrides
from kit.train.lean import resolve_loss_chunk, resolve_remat
from kit.train.loop import Engine
from kit.train.optim import make_optimizer

ROOT = Path(__file__).resolve().parents[2]


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


def _loss_and_grads(lm, **levers):
    engine = Engine(lm, make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1), **levers)
    (loss, weight), grads = jax.jit(jax.value_and_grad(engine._loss_fn, has_aux=True))(engine.tv, engine.ntv, *_batch())
    return float(loss), [np.asarray(g) for g in grads]


def _assert_grads_close(a, b, rtol=1e-4):
    for ga, gb in zip(a, b, strict=True):
        assert np.abs(ga - gb).max() <= rtol * max(np.abs(gb).max(), 1e-8)


@pytest.fixture(scope="module")
def lms(tiny_prepared):
    """The same micro model with merged and with factored adapters (same adapter values)."""
    out = {}
    for factored in (False, True):
        lm = micro_lm(tiny_prepared)
        enable_lora(lm, rank=3, alpha=6.0, targets="all", factored=factored)
        _randomise_adapters(lm)
        out[factored] = lm
    return out


def test_factored_lora_equals_keras_merged_outputs(lms):
    x, _, _ = _batch()
    merged, factored = np.asarray(lms[False](x)), np.asarray(lms[True](x))
    assert np.abs(merged - factored).max() < 1e-4
    assert np.abs(merged).max() > 1e-2  # a real comparison, not two zeros


# The tests below compile a gradient program of the micro model each: 5-20 s apiece on an idle
# 2-core CPU, so they run in the slow tier.
@pytest.mark.slow
def test_factored_lora_equals_keras_merged_gradients(lms):
    loss_m, grads_m = _loss_and_grads(lms[False])
    loss_f, grads_f = _loss_and_grads(lms[True])
    assert abs(loss_m - loss_f) <= 1e-5 * abs(loss_m)
    assert all(np.abs(g).max() > 0 for g in grads_m)
    _assert_grads_close(grads_f, grads_m)


def test_factored_lora_keeps_the_adapter_file_and_the_merged_kernel(lms, tmp_path):
    layer = lms[True].backbone.get_layer("decoder_block_0").attention.query_dense
    ref = lms[False].backbone.get_layer("decoder_block_0").attention.query_dense
    np.testing.assert_allclose(np.asarray(layer.kernel), np.asarray(ref.kernel), rtol=1e-6)  # what exports read
    path = tmp_path / "adapter.lora.h5"
    save_adapter(lms[True], path)
    back = micro_lm_like(lms[True])
    enable_lora(back, rank=3, alpha=6.0, targets="all", factored=False)
    back.backbone.load_lora_weights(str(path))  # Keras' own loader: the same variable paths
    for a, b in zip(back.trainable_variables, lms[True].trainable_variables, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def micro_lm_like(lm):
    """A fresh model with `lm`'s architecture, base weights and tokenizer (no adapters)."""
    import keras_hub

    backbone = keras_hub.models.GemmaBackbone.from_config(lm.backbone.get_config())
    weights = [w for w in lm.backbone.weights if "lora_kernel" not in w.path]
    for mine, theirs in zip(backbone.weights, weights, strict=True):
        mine.assign(theirs)
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=lm.preprocessor)


@pytest.mark.slow
@pytest.mark.parametrize(("loss_chunk", "remat"), [(16, False), (0, True), (7, True)])
def test_chunked_loss_and_remat_equal_the_plain_loss(lms, loss_chunk, remat):
    loss, grads = _loss_and_grads(lms[True])
    loss_l, grads_l = _loss_and_grads(lms[True], loss_chunk=loss_chunk, remat=remat)
    assert abs(loss - loss_l) <= 1e-4 * abs(loss)  # 40 positions: 16 and 7 leave a padded last chunk
    _assert_grads_close(grads_l, grads)


def test_lever_defaults_follow_the_model_size():
    assert resolve_loss_chunk(256, 256_000) == 256 and resolve_loss_chunk(256, 400) == 0
    # auto: on for a >1e9-parameter model from 4096 tokens a micro-batch (8 x 512), off at 2 x 512
    assert resolve_remat("auto", 2_614_341_888, 8 * 512) and not resolve_remat("auto", 2_614_341_888, 2 * 512)
    assert not resolve_remat("auto", 50_000, 10**6)
    assert resolve_remat("blocks", 10, 1) and not resolve_remat("off", 10**10, 10**6)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.remat=always", "train.remat must be one of auto, off, blocks"),
        ("model.quantize=int4", "model.quantize must be one of none, int8"),
        ("train.loss_chunk=-1", "train.loss_chunk must be ≥ 0"),
        ("lora.factored=3", "lora.factored must be bool"),
    ],
)
def test_bad_lever_values_name_the_key_and_the_choices(override, named):
    with pytest.raises(UserError, match=named):
        load_config(ROOT / "configs" / "tiny.toml", [override])


def test_bad_lever_value_on_the_cli_is_one_line_and_exit_2():
    out = subprocess.run(
        [sys.executable, "-m", "kit", "finetune", "--config", "configs/tiny.toml", "--set", "train.remat=yes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: Config key train.remat must be one of auto, off, blocks, received 'yes'."
    ]


@pytest.mark.slow
def test_int8_base_gives_the_float_base_s_gradients_up_to_int8_rounding(tiny_prepared):
    grads = {}
    for mode in ("none", "int8"):
        lm = micro_lm(tiny_prepared)
        quantized = quantize_base(lm, mode)
        enable_lora(lm, rank=3, alpha=6.0, targets="all")
        _randomise_adapters(lm)
        grads[mode] = _loss_and_grads(lm)
        if mode == "int8":
            layer = lm.backbone.get_layer("decoder_block_0").attention.query_dense
            assert layer.quantization_mode == "int8" and len(quantized) == 14  # 7 kernels x 2 blocks
            # an int8 embedding's logits call has no straight-through gradient: it stays float
            assert lm.backbone.token_embedding.quantization_mode is None
            assert all("lora_kernel" in v.path for v in lm.trainable_variables)
            loss_l, grads_l = _loss_and_grads(lm, loss_chunk=16, remat=True)
            assert abs(grads[mode][0] - loss_l) <= 1e-4 * abs(loss_l)
            _assert_grads_close(grads_l, grads[mode][1])
    (loss_f, g_f), (loss_q, g_q) = grads["none"], grads["int8"]
    assert abs(loss_q - loss_f) < 0.01 * loss_f
    # int8 kernels and activations move the gradients by a few percent, never by their own size
    _assert_grads_close(g_q, g_f, rtol=0.25)


def test_gpu_memory_defaults_are_set_once_and_user_values_win():
    code = "import kit, os; print(os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XLA_PYTHON_CLIENT")}
    env["PYTHONPATH"] = str(ROOT)

    def run(**extra):
        return subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run() == "0.95"
    assert run(XLA_PYTHON_CLIENT_MEM_FRACTION="0.5") == "0.5"
    assert run(XLA_PYTHON_CLIENT_PREALLOCATE="false") == "None"  # on-demand allocation: no fraction forced


@pytest.mark.slow
def test_int8_run_generates_and_exports_dequantised_merged_weights(tmp_path, tiny_preset, tiny_prepared):
    """`kit finetune` with model.quantize=int8, then generation and both exports (about 1 min)."""
    from kit.model.export import export_run
    from kit.train import finetune

    cfg = load_config(
        ROOT / "configs" / "tiny.toml",
        micro_overrides(tmp_path, tiny_preset, tiny_prepared, name="q8", **{"model.quantize": "int8"}),
    )
    info = finetune(cfg, progress=False)
    assert info.config["model"]["quantize"] == "int8" and info.status == "completed"
    lm = load_run(tmp_path / "runs" / "q8")
    q = lm.backbone.get_layer("decoder_block_1").attention.query_dense
    assert q.quantization_mode == "int8"
    assert lm.generate("Кафе", max_length=12)
    from kit.generate.pool import ModelPool

    pool = ModelPool(max_bases=1, batch_size=2, length_buckets=(64,))
    pool.generator(tmp_path / "runs" / "q8")  # the app's and `kit evaluate`'s path: the int8 base, shared
    (key,) = pool.bases
    assert key[2] == "int8"
    shared = pool.base(key).lm.backbone.get_layer("decoder_block_1").attention.query_dense
    assert shared.quantization_mode == "int8"
    pool.close()

    import keras_hub

    export_run(tmp_path / "runs" / "q8", "keras", tmp_path / "k")

    back = keras_hub.models.GemmaCausalLM.from_preset(str(tmp_path / "k"), dtype="float32")
    kernel = np.asarray(back.backbone.get_layer("decoder_block_1").attention.query_dense.kernel)
    np.testing.assert_allclose(kernel, merged_kernel(q), rtol=1e-6, atol=1e-7)
    a, b = np.asarray(q.lora_kernel_a), np.asarray(q.lora_kernel_b)
    assert np.abs(a @ b).max() > 0  # the adapter is in there
    emb = np.asarray(back.backbone.token_embedding.embeddings)
    np.testing.assert_array_equal(emb, np.asarray(lm.backbone.token_embedding.embeddings))  # kept in float
    base = keras_hub.models.GemmaCausalLM.from_preset(str(tiny_preset), dtype="float32")
    float_q = np.asarray(base.backbone.get_layer("decoder_block_1").attention.query_dense.kernel)
    # The dequantised base is the float base up to int8 rounding (half a step of absmax / 127 per channel).
    step = np.abs(float_q).max() / 127
    err = np.abs(kernel - (float_q + (info.lora.alpha / info.lora.rank) * (a @ b))).max()
    assert 0 < err <= step

    export_run(tmp_path / "runs" / "q8", "hf", tmp_path / "hf")
    assert (tmp_path / "hf" / "config.json").is_file()
    export_run(tmp_path / "runs" / "q8", "peft", tmp_path / "peft")
    assert (tmp_path / "peft" / "adapter_model.safetensors").is_file()

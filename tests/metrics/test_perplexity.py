"""kit.metrics.perplexity: perplexity, per-token log-probabilities and the float32 NLL the training step uses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kit.metrics import perplexity, sequence_perplexities, token_log_probs, token_nll


def test_perplexity_of_uniform_predictions_is_the_vocabulary_size():
    lp = np.full((2, 5), math.log(1 / 4))
    mask = np.ones((2, 5))
    assert perplexity(lp, mask) == pytest.approx(4.0)
    # Prompt/padding positions are masked out, whatever their log-probs are.
    lp[:, :2] = -100.0
    mask[:, :2] = 0
    assert perplexity(lp, mask) == pytest.approx(4.0)
    assert sequence_perplexities(lp, mask).tolist() == pytest.approx([4.0, 4.0])


def test_perplexity_weights_tokens_and_rows():
    lp = np.log([[0.5, 0.5, 1.0], [0.25, 1.0, 1.0]])
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    assert sequence_perplexities(lp, mask).tolist() == pytest.approx([2.0, 4.0])
    # Token-weighted: exp(-(2 ln .5 + ln .25) / 3) = exp(4 ln 2 / 3)
    assert perplexity(lp, mask) == pytest.approx(2 ** (4 / 3))
    assert np.isnan(sequence_perplexities(lp, np.array([[1, 0, 0], [0, 0, 0]]))[1])
    with pytest.raises(ValueError, match="selects no tokens"):
        perplexity(lp, np.zeros_like(mask))
    with pytest.raises(ValueError, match="log-probabilities"):
        perplexity([[0.5]], [[1]])
    with pytest.raises(ValueError, match="same shape"):
        perplexity([[0.0, 0.0]], [[1]])


def test_token_log_probs_is_a_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)) * 5
    targets = rng.integers(0, 7, size=(2, 3))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.log(np.take_along_axis(probs, targets[..., None], -1)[..., 0])
    assert token_log_probs(logits, targets) == pytest.approx(expected)
    assert np.isfinite(token_log_probs([[1e4, 0.0]], [1])).all()  # no overflow


def test_token_nll_is_float32_cross_entropy_under_jit_and_grad():
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 11)) * 5
    targets = rng.integers(0, 11, size=(2, 3))
    shifted = logits - logits.max(-1, keepdims=True)
    expected = np.log(np.exp(shifted).sum(-1)) - np.take_along_axis(shifted, targets[..., None], -1)[..., 0]
    eager = token_nll(logits, targets)
    assert eager.dtype == jnp.float32 and eager.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(eager), expected, rtol=1e-5, atol=1e-5)
    # What the training step does with it: jit, mixed-precision logits, a gradient.
    jitted = jax.jit(token_nll)(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(targets, jnp.int32))
    assert jitted.dtype == jnp.float32  # bfloat16 logits are scored in float32
    np.testing.assert_allclose(np.asarray(jitted), expected, atol=0.3)
    grad = jax.grad(lambda z: token_nll(z, targets).sum())(jnp.asarray(logits, jnp.float32))
    softmax = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    onehot = np.eye(11)[targets]
    np.testing.assert_allclose(np.asarray(grad), softmax - onehot, atol=1e-5)
    assert token_log_probs(logits, targets) == pytest.approx(-np.asarray(eager, np.float64))

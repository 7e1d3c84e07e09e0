"""`train.unlikelihood` and `train.unlikelihood_sentences`: the unlikelihood terms, their keys and a run with them.

What the training step does with the terms is tested with the step, in test_loop.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kit.config import load_config
from kit.data.batching import Encoder
from kit.errors import UserError
from kit.runs import RunPaths
from kit.testing import micro_lm, micro_overrides
from kit.train import finetune
from kit.train.unlikelihood import Unlikelihood, continuing, sentence_unlikelihood, token_unlikelihood

ROOT = Path(__file__).resolve().parents[2]


def _reference(logits, targets, weights, context=0):
    """The definition, one position at a time: -sum log(1 - p(c)) over earlier weighted targets c != y_t
    whose `context` tokens before them equal the `context` tokens before t."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = np.zeros(targets.shape)
    for b in range(targets.shape[0]):
        row = [int(v) for v in targets[b]]
        prefix = [tuple(row[max(i - context, 0) : i][::-1] + [-1] * max(context - i, 0)) for i in range(len(row))]
        for t in range(len(row)):
            seen = {row[s] for s in range(t) if weights[b, s] > 0 and prefix[s] == prefix[t]} - {row[t]}
            out[b, t] = -sum(np.log(1.0 - p[b, t, c]) for c in seen)
    return out


@pytest.mark.parametrize("context", [0, 1, 2])
def test_token_unlikelihood_is_the_definition(context):
    rs = np.random.RandomState(0)
    logits = rs.normal(size=(2, 30, 4)).astype(np.float32) * 2
    targets = rs.randint(0, 4, (2, 30))  # 4 ids over 30 positions: repeated 3-grams are certain
    weights = np.ones((2, 30), np.float32)
    weights[0, :3] = 0  # a prompt: its tokens are not "written before"
    weights[1, 27:] = 0  # padding
    got = np.asarray(token_unlikelihood(logits, targets, weights, context))
    np.testing.assert_allclose(got, _reference(logits, targets, weights, context), rtol=1e-5, atol=1e-6)
    assert got[0, :4].tolist() == [0.0] * 4  # nothing weighted before position 4 in row 0
    assert (got >= 0).all() and got.max() > 0


def test_context_keeps_only_the_tokens_that_followed_the_same_tokens():
    # Uniform over 5 ids: each candidate adds -log(1 - 0.2). Row 1 2 3 1 | 4: at the last
    # position the prefix ends in 1, which was followed by 2 before.
    logits, targets, weights = np.zeros((1, 5, 5), np.float32), np.array([[1, 2, 3, 1, 4]]), np.ones((1, 5))
    per_candidate = -np.log(0.8)
    counts = [float(token_unlikelihood(logits, targets, weights, k)[0, 4]) / per_candidate for k in (0, 1, 2)]
    np.testing.assert_allclose(counts, [3, 1, 0], atol=1e-5)  # {1, 2, 3}; {2}; no earlier "3 1"


def _sentence_reference(logits, targets, weights, ends):
    """The sentence-start form, one position at a time: at a start (first weighted position, or after
    a sentence-end id; no blank ids here), the first tokens of the row's earlier sentences, less the next token."""
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = np.zeros(targets.shape)
    for b in range(targets.shape[0]):
        row, w = [int(v) for v in targets[b]], weights[b] > 0
        starts = [t for t in range(len(row)) if w[t] and (t == 0 or not w[t - 1] or row[t - 1] in ends)]
        for t in starts:
            seen = {row[s] for s in starts if s < t} - {row[t]}
            out[b, t] = -sum(np.log(1.0 - p[b, t, c]) for c in seen)
    return out


def test_sentence_unlikelihood_is_the_definition():
    rs = np.random.RandomState(2)
    logits = rs.normal(size=(2, 40, 6)).astype(np.float32) * 2
    targets = rs.randint(0, 6, (2, 40))
    weights = np.ones((2, 40), np.float32)
    weights[0, :4] = 0  # a prompt: its sentence ends start nothing
    weights[1, 35:] = 0  # padding
    ends = [1, 4]
    got = np.asarray(sentence_unlikelihood(logits, targets, weights, ends))
    np.testing.assert_allclose(got, _sentence_reference(logits, targets, weights, ends), rtol=1e-5, atol=1e-6)
    assert (got > 0).sum() >= 10  # it fires at sentence starts ...
    after_end = np.isin(np.pad(targets, ((0, 0), (1, 0)))[:, :40], ends) | (np.arange(40) == 4)
    assert (got[~after_end] == 0).all()  # ... and only there


def test_the_sentence_term_never_pushes_mass_onto_stopping():
    # Whatever the stop token's score, the sentence-start term sees p(. | the review goes on): its
    # gradient leaves the stop logit alone, so the NLL alone decides when a review ends.
    rs = np.random.RandomState(3)
    logits = jnp.asarray(rs.normal(size=(1, 12, 5)).astype(np.float32))
    targets, weights = jnp.asarray([[2, 3, 0, 2, 3, 0, 4, 2, 3, 0, 4, 1]]), jnp.ones((1, 12))

    def grad(ul):
        return np.asarray(jax.grad(lambda z: ul(z, targets, weights))(logits))

    g = grad(Unlikelihood(sentences=3.0, stop_ids=(1,), sentence_ends=(0,)))
    assert np.abs(g[..., 1]).max() == 0.0 and np.abs(g).max() > 1e-3
    assert grad(Unlikelihood(sentences=3.0, sentence_ends=(0,)))[..., 1].min() < 0  # no stop ids: stopping gains
    # The token-level form stays on the full distribution (Welleck et al.), so the demo's is unchanged.
    token = Unlikelihood(weight=1.0, stop_ids=(1,))
    np.testing.assert_allclose(
        float(token(logits, targets, weights)), float(jnp.sum(token_unlikelihood(logits, targets, weights))), rtol=1e-6
    )
    # continuing() itself: the stop token gets no mass, the others keep their ratios
    p = np.asarray(jax.nn.softmax(continuing(logits, (1,))))
    assert p[..., 1].max() == 0.0
    np.testing.assert_allclose(p[0, 0, 2] / p[0, 0, 3], np.exp(logits[0, 0, 2] - logits[0, 0, 3]), rtol=1e-5)


def test_the_tokenizer_names_the_stop_and_sentence_end_ids(tiny_prepared):
    enc = Encoder(micro_lm(tiny_prepared).preprocessor.tokenizer.proto)
    assert enc.stop_ids == (enc.eos_id, enc.sp.piece_to_id("<end_of_turn>"))
    ends = {enc.sp.id_to_piece(i) for i in enc.sentence_end_ids()}
    assert {".", "!"} <= ends and all(("\n" in e) or e == "<0x0A>" or e.rstrip("»\"')] ")[-1] in ".!?…" for e in ends)
    assert not ends & {"<end_of_turn>", "<eos>", "▁и", ","}
    blanks = enc.blank_ids()
    assert blanks and {enc.sp.id_to_piece(i) for i in blanks} <= {"▁" * n for n in range(1, 17)}
    # "Грязно. Дорого!" as the micro tokenizer writes it: "." then a blank "▁" then the next word
    ids = enc.sp.encode("Грязно. Дорого!")
    dot = ids.index(enc.sp.piece_to_id("."))
    assert ids[dot + 1] in blanks
    logits = np.zeros((1, len(ids), int(enc.sp.get_piece_size())), np.float32)
    ul = np.asarray(sentence_unlikelihood(logits, np.array([ids]), np.ones((1, len(ids))), [ids[dot]], blanks))[0]
    assert ul[dot + 2] > 0 and ul[dot + 1] == 0  # the word after the blank opens the sentence, not the blank


def test_negative_unlikelihood_names_the_key():
    with pytest.raises(UserError, match="train.unlikelihood must be ≥ 0"):
        load_config(ROOT / "configs" / "tiny.toml", ["train.unlikelihood=-1"])
    with pytest.raises(UserError, match="train.unlikelihood_context must be between 0 and 16"):
        load_config(ROOT / "configs" / "tiny.toml", ["train.unlikelihood_context=17"])
    with pytest.raises(UserError, match="train.unlikelihood_sentences must be ≥ 0"):
        load_config(ROOT / "configs" / "tiny.toml", ["train.unlikelihood_sentences=-0.5"])


def test_a_context_without_the_term_is_refused_not_ignored():
    with pytest.raises(UserError, match=r"train.unlikelihood must be > 0 when train.unlikelihood_context is 2"):
        load_config(ROOT / "configs" / "tiny.toml", ["train.unlikelihood=0", "train.unlikelihood_context=2"])
    assert load_config(ROOT / "configs" / "tiny.toml", ["train.unlikelihood=0"]).train.unlikelihood_context == 0


@pytest.mark.slow  # fine-tunes the micro model
def test_a_run_with_unlikelihood_records_it_and_keeps_an_nll_history(tmp_path, tiny_preset, tiny_prepared):
    cfg = load_config(
        ROOT / "configs" / "tiny.toml",
        micro_overrides(
            tmp_path,
            tiny_preset,
            tiny_prepared,
            **{"train.unlikelihood": 2.0, "train.unlikelihood_context": 1, "train.unlikelihood_sentences": 4.0},
        ),
    )
    info = finetune(cfg, progress=False)
    saved = json.loads(RunPaths(tmp_path / "runs" / "micro").run_json.read_text(encoding="utf-8"))
    assert saved["config"]["train"]["unlikelihood"] == 2.0
    assert saved["batching"]["step"]["unlikelihood"] == 2.0
    assert saved["config"]["train"]["unlikelihood_context"] == saved["batching"]["step"]["unlikelihood_context"] == 1
    assert (
        saved["config"]["train"]["unlikelihood_sentences"] == saved["batching"]["step"]["unlikelihood_sentences"] == 4
    )
    m = info.metrics
    assert m["val_loss"] < m["initial_val_loss"] and 0 < m["final_train_loss"] < 20

"""Prompt masking through sample_weight, length bucketing and padding share."""

import numpy as np
import pytest

from kit.data.batching import Encoder, Example, bucket_for, has_target, make_batch, plan_batches
from kit.model import load_causal_lm
from kit.train.optim import make_optimizer


def _ex(n, n_prompt=1):
    return Example(np.arange(2, 2 + n, dtype=np.int32), n_prompt)


def test_bucket_choice():
    assert [bucket_for(n, (64, 128, 256)) for n in (1, 64, 65, 128, 200, 256, 900)] == [64, 64, 128, 128, 256, 256, 256]


def test_padding_share_and_fixed_shapes():
    # inputs are len(ids) - 1: 9, 15, 30, 31 positions
    examples = [_ex(10), _ex(16), _ex(31), _ex(32)]
    plan = plan_batches(examples, (16, 32), batch_size=2)
    assert [(length, list(idx)) for length, idx in plan.batches] == [(16, [0, 1]), (32, [2, 3])]
    assert plan.padding_share(examples, 2) == pytest.approx(1 - (9 + 15 + 30 + 31) / (2 * 16 + 2 * 32))
    # a partial batch is filled to the batch size with zero-weight rows: one shape per bucket
    plan = plan_batches(examples[:3], (16, 32), batch_size=2)
    shapes = {make_batch([examples[i] for i in idx], length, 2).y.shape for length, idx in plan.batches}
    assert shapes == {(2, 16), (2, 32)}
    filler = make_batch([examples[2]], 32, 2)
    assert filler.sample_weight[1].sum() == 0 and filler.real_tokens == 30


def test_lazy_examples_plan_from_sizes_and_tokenise_only_the_rows_read():
    """A process of a job plans from sizes alone and builds the same rows as from the tokenised list."""
    from kit.data.batching import LazyExamples, example_sizes, length_report, select

    examples = [_ex(n, n_prompt=1 + n % 3) for n in range(3, 40)]
    sizes = example_sizes(examples)
    encoded: list[int] = []
    lazy = LazyExamples(sizes, lambda row: encoded.append(row) or examples[row])
    picked = [3, 3, *range(5, 30)]  # a redraw: repeats and a subset
    view, whole = select(lazy, picked), select(examples, picked)
    plan = plan_batches(view, (16, 32, 64), 4, seed=1, epoch=2)
    assert plan == plan_batches(whole, (16, 32, 64), 4, seed=1, epoch=2)
    assert plan.padding_share(view, 4) == plan.padding_share(whole, 4)
    assert length_report(view, (16, 32)) == length_report(whole, (16, 32))
    assert encoded == []  # planning read sizes only
    length, idx = plan.batches[-1]
    rows = range(2, 4)
    got = make_batch(select(view, idx), length, 4, rows=rows)
    want = make_batch([whole[i] for i in idx], length, 4, rows=rows)
    for key in ("token_ids", "padding_mask"):
        np.testing.assert_array_equal(got.x[key], want.x[key])
    np.testing.assert_array_equal(got.y, want.y)
    np.testing.assert_array_equal(got.sample_weight, want.sample_weight)
    needed = {picked[idx[r]] if r < len(idx) else picked[idx[0]] for r in rows}
    assert set(encoded) == needed and lazy.tokenised == len(needed)
    make_batch(select(view, idx), length, 4, rows=rows)  # read again: cached, not tokenised again
    assert len(encoded) == len(needed)


def test_plan_is_a_shuffle_determined_by_seed_and_epoch():
    examples = [_ex(n) for n in range(3, 40)]
    a = plan_batches(examples, (16, 32, 64), 4, seed=1, epoch=0)
    assert a == plan_batches(examples, (16, 32, 64), 4, seed=1, epoch=0)
    assert a != plan_batches(examples, (16, 32, 64), 4, seed=1, epoch=1)
    assert sorted(i for _, idx in a.batches for i in idx) == list(range(len(examples)))


def test_truncation_and_examples_without_target():
    b = make_batch([_ex(10, n_prompt=4)], 6, 1)
    assert b.x["padding_mask"].sum() == 6
    assert b.sample_weight[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert has_target(_ex(10, n_prompt=4), 6)
    assert not has_target(_ex(10, n_prompt=8), 6)


def test_encoder_masks_exactly_the_prompt(tiny_preset, tiny_prepared):
    import datasets

    lm = load_causal_lm(str(tiny_preset))
    row = datasets.load_from_disk(str(tiny_prepared))["train"][0]
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    ex = enc.encode(row["prompt"], row["target"])
    b = make_batch([ex], 256, 1)
    weighted = b.y[0][b.sample_weight[0] > 0]
    assert enc.sp.decode(weighted.tolist()) == row["target"]  # review + <end_of_turn>, nothing else
    assert b.x["token_ids"][0, 0] == enc.bos_id


def test_loss_ignores_prompt_labels_but_not_review_labels(tiny_preset, tiny_prepared):
    import datasets

    from kit.train.loop import Engine

    lm = load_causal_lm(str(tiny_preset))
    enc = Encoder(lm.preprocessor.tokenizer.proto)
    rows = datasets.load_from_disk(str(tiny_prepared))["train"].select(range(2))
    batch = make_batch(enc.encode_pairs(rows["prompt"], rows["target"]), 128, 2)
    engine = Engine(lm, make_optimizer(learning_rate=1e-3, warmup_steps=0, total_steps=1))

    def loss(y):
        total, weight = engine._loss_fn(engine.tv, engine.ntv, batch.x, y, batch.sample_weight)
        return float(total) / float(weight)

    base = loss(batch.y)
    prompt_pos = np.argwhere((batch.sample_weight == 0) & (batch.x["padding_mask"] == 1))
    review_pos = np.argwhere(batch.sample_weight > 0)
    y = batch.y.copy()
    for r, c in prompt_pos:
        y[r, c] = (y[r, c] + 7) % lm.backbone.vocabulary_size
    assert loss(y) == pytest.approx(base, abs=1e-6)
    y = batch.y.copy()
    r, c = review_pos[0]
    y[r, c] = (y[r, c] + 7) % lm.backbone.vocabulary_size
    assert abs(loss(y) - base) > 1e-4


def _padded(lengths, buckets):
    return sum(min(b for b in buckets if b >= min(x, buckets[-1])) for x in lengths)


def test_choose_buckets_is_optimal_against_brute_force():
    import itertools

    from kit.data.batching import choose_buckets

    rng = np.random.default_rng(0)
    for _ in range(20):
        lengths = rng.integers(5, 140, size=60)
        cap, multiple = 128, 8
        got = choose_buckets(lengths, 3, cap, multiple=multiple)
        assert got[-1] == cap and len(got) <= 3
        rounded = np.minimum(-(-np.minimum(lengths, cap) // multiple) * multiple, cap)
        candidates = sorted(set(rounded.tolist()) - {cap})
        best = min(_padded(rounded, (*combo, cap)) for r in range(3) for combo in itertools.combinations(candidates, r))
        assert _padded(rounded, got) == best


def test_choose_buckets_cuts_padding_on_a_skewed_distribution():
    from kit.data.batching import choose_buckets

    lengths = np.random.default_rng(1).lognormal(4.7, 0.3, size=5000).astype(int)  # like review lengths
    fixed = (128, 192, 256)
    auto = choose_buckets(lengths, 8, 256)
    assert auto[-1] == 256 and len(auto) == 8
    real = np.minimum(lengths, 256).sum()
    assert 1 - real / _padded(lengths, auto) < 0.5 * (1 - real / _padded(lengths, fixed))

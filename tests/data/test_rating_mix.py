"""Rating re-weighting of the train split (`kit.data.rating_mix`) and its use by `kit finetune`."""

from collections import Counter

import numpy as np
import pytest

from kit.config import load_config
from kit.data.rating_mix import mix_by_rating, rating_shares
from kit.errors import UserError

# The committed sample's train split: 318 / 116 / 200 / 339 / 3508 reviews of 1..5 stars.
TRAIN = [1] * 318 + [2] * 116 + [3] * 200 + [4] * 339 + [5] * 3508


def test_shares_follow_count_to_the_power():
    natural = rating_shares(TRAIN, 1.0)
    assert natural[5] == pytest.approx(3508 / len(TRAIN))
    sqrt = rating_shares(TRAIN, 0.5)
    total = sum(n**0.5 for n in (318, 116, 200, 339, 3508))
    assert sqrt[2] == pytest.approx(116**0.5 / total)
    assert list(rating_shares(TRAIN, 0.0).values()) == [pytest.approx(0.2)] * 5


@pytest.mark.parametrize("power", [0.0, 0.3, 0.5, 0.9])
def test_mix_keeps_the_epoch_size_and_hits_the_shares(power):
    idx = mix_by_rating(TRAIN, power, seed=3)
    assert len(idx) == len(TRAIN)
    got = Counter(TRAIN[i] for i in idx)
    for rating, share in rating_shares(TRAIN, power).items():
        assert abs(got[rating] - share * len(TRAIN)) <= 1


def test_rare_ratings_use_every_row_before_repeating_and_common_ones_never_repeat():
    idx = mix_by_rating(TRAIN, 0.0, seed=0)
    per_row = Counter(idx.tolist())
    twos = [i for i, r in enumerate(TRAIN) if r == 2]
    fives = [i for i, r in enumerate(TRAIN) if r == 5]
    # 896 draws of 2-star (a fifth of 4,481) from 116 rows: each row 7 or 8 times.
    assert {per_row[i] for i in twos} == {7, 8}
    assert max(per_row[i] for i in fives) == 1


def test_mix_is_a_pure_function_of_its_arguments():
    a = mix_by_rating(TRAIN, 0.5, seed=7)
    assert np.array_equal(a, mix_by_rating(TRAIN, 0.5, seed=7))
    assert not np.array_equal(a, mix_by_rating(TRAIN, 0.5, seed=8))
    assert mix_by_rating(TRAIN, 1.0).tolist() == list(range(len(TRAIN)))
    assert mix_by_rating([5, 5, 5], 0.0).tolist() == [0, 1, 2]  # one rating: nothing to re-weight
    assert mix_by_rating([], 0.0).tolist() == []


def test_power_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match="between 0"):
        rating_shares(TRAIN, 1.5)
    with pytest.raises(UserError, match="data.rating_power"):
        load_config(None, ["data.rating_power=-0.1"])
    assert load_config(None, ["data.rating_power=0.5"]).data.rating_power == 0.5

"""kit.metrics.keyword_coverage: requested keywords found in a text, in any inflected form."""

from __future__ import annotations

import pytest

from kit.metrics import keyword_coverage, mean_keyword_coverage


def test_keyword_coverage_matches_inflected_forms():
    assert keyword_coverage("Номера чистые", ["номер"]) == 1.0  # "номера" covers "номер"
    assert keyword_coverage("Отличный номер", ["номера"]) == 1.0  # and the other way round
    text = "В номерах чисто, а завтраков не было вовсе"
    assert keyword_coverage(text, ["номер", "завтрак", "парковка"]) == pytest.approx(2 / 3)
    assert keyword_coverage("Во дворе ёлка", ["елка"]) == 1.0
    assert keyword_coverage("Хачапури по-аджарски", ["хачапури по-аджарски"]) == 1.0
    assert keyword_coverage("Хачапури", ["хачапури по-аджарски"]) == 0.0
    assert keyword_coverage("Чисто", []) is None
    assert keyword_coverage("Чисто", ["", " "]) is None
    with pytest.raises(TypeError, match="not a single string"):
        keyword_coverage("Чисто", "номер")


def test_mean_keyword_coverage_skips_requests_without_keywords():
    assert mean_keyword_coverage(["Вкусный кофе", "Чисто", "Номер"], [["кофе", "десерт"], [], ["номер"]]) == 0.75
    assert mean_keyword_coverage(["Чисто"], [[]]) is None

"""kit.data.split: the organisation id and the deterministic split by organisation."""

from __future__ import annotations

import pytest

from kit.data.split import SPLITS, assign_split, check_shares, org_id
from kit.errors import UserError


def test_org_id_ignores_case_and_spacing_but_not_branch():
    assert org_id("Пятёрочка", "Москва, ул. Ленина, 1") == org_id(" пятёрочка", "москва,  ул. Ленина, 1")
    assert org_id("Пятёрочка", "Москва, ул. Ленина, 1") != org_id("Пятёрочка", "Москва, ул. Ленина, 2")
    assert org_id(None, "Омск") == org_id("", "Омск")


def test_assign_split_is_deterministic_and_close_to_the_shares():
    orgs = [org_id(f"Орг {i}", "Омск") for i in range(20_000)]
    first = [assign_split(o, seed=3, val_share=0.1, test_share=0.2) for o in orgs]
    assert first == [assign_split(o, seed=3, val_share=0.1, test_share=0.2) for o in orgs]
    shares = {s: first.count(s) / len(first) for s in SPLITS}
    assert shares["test"] == pytest.approx(0.2, abs=0.015)
    assert shares["validation"] == pytest.approx(0.1, abs=0.015)
    assert first != [assign_split(o, seed=4, val_share=0.1, test_share=0.2) for o in orgs]


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.6, 0.1), (0.5, 0.5)])
def test_check_shares_refuses_bad_values(val, test):
    with pytest.raises(UserError, match="share"):
        check_shares(val, test)

"""kit.notebook.eda: the EDA notebook's tables, on the tiny prepared data."""

from __future__ import annotations


def test_eda_tables(tiny_prepared):
    from kit.data.prepare import load_prepared
    from kit.notebook import eda

    dd = load_prepared(tiny_prepared)
    stats = {
        "synthetic": True,
        "input": "x.tskv",
        "ratings": {"train": {"5": 3, "1": 1}, "all": {"5": 6, "1": 2}},
        "rubrics_top": [{"rubric": "Кафе", "reviews": 5}, {"rubric": "Музей", "reviews": 3}],
        "counts": {"lines": 10, "skipped_lines": 0, "dropped": {"rating_0": 1, "duplicate_text": 1}, "final": 8},
    }
    assert eda.data_label(stats).startswith("SYNTHETIC")
    assert eda.rating_table(stats)["share_%"].tolist() == [25.0, 75.0]
    lengths = eda.review_lengths(dd, "train")
    assert len(lengths) == dd["train"].num_rows
    by = eda.length_by_rating(lengths)
    assert by["reviews"].sum() == dd["train"].num_rows
    assert eda.top_rubrics(stats, 1).index.tolist() == ["Кафе"]
    chains = eda.top_chains(dd, 3)
    assert len(chains) == 3 and (chains["reviews"] >= chains["organisations"]).all()
    q = eda.quality_counts(stats, dd)["count"]
    assert q["dropped: duplicate text"] == 1 and q["reviews kept"] == 8
    assert q["kept, no name"] == sum(1 for s in dd for n in dd[s]["name_ru"] if not n)
    ex = eda.keyword_examples(dd, "train", n=3)
    assert 1 <= len(ex) <= 3 and all(ex["keywords"])
    assert eda.prompt_example(dd, "test", 0).startswith("<start_of_turn>user")

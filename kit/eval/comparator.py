"""`<report>/llm_comparator/<A>__vs__<B>.json`: a pair of report columns in the LLM Comparator format.

LLM Comparator format (from the app's `client/lib/types.ts` and
`docs/data/example_tiny.json`): `{"metadata": {"source_path",
"custom_fields_schema": [{"name", "type"}]}, "models": [{"name"}, {"name"}],
"examples": [{"input_text", "tags", "output_text_a", "output_text_b", "score",
"individual_rater_scores", "custom_fields"}]}`. `score` > 0 means A is better
(the app's judge scale is -1.5..1.5); we have no LLM judge, so `score` is
1.5 × the difference of the two outputs' *control score* (the mean of
rating hit, rubric top-3 hit and keyword coverage, each 0–1), and
`individual_rater_scores` is empty. Per-output numbers are `per_model_number`
custom fields (`[value_a, value_b]`).
"""

from __future__ import annotations

from collections.abc import Mapping

from kit.eval.scoring import HUMAN

COMPARATOR_FIELDS = ("rating_predicted", "rating_accuracy", "rubric_top3", "keyword_coverage", "chrf", "words")


def _control_score(scores: Mapping) -> float | None:
    values = [scores.get(k) for k in ("rating_accuracy", "rubric_top3", "keyword_coverage")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def comparator_export(result: Mapping, a: str, b: str) -> dict:
    """One LLM Comparator file comparing column `a` with column `b` (see the module docstring).

    Example:
        >>> r = {"data": {"dir": "d", "split": "test"}, "samples": [{"prompt": "p", "request": {"rubrics": ["Кафе"],
        ...      "rating": 5}, "outputs": {"m": "x"}, "reference": "y", "scores": {"m": {"rating_accuracy": 1.0},
        ...      "human": {"rating_accuracy": 0.0}}}]}
        >>> ex = comparator_export(r, "m", "human")["examples"][0]
        >>> ex["output_text_b"], ex["score"], ex["tags"]
        ('y', 1.5, ['Кафе', '5★'])
    """

    def text(row, name):
        return row["reference"] if name == HUMAN else row["outputs"][name]

    examples = []
    for row in result["samples"]:
        sa, sb = row["scores"].get(a, {}), row["scores"].get(b, {})
        ca, cb = _control_score(sa), _control_score(sb)
        fields = {k: [sa.get(k), sb.get(k)] for k in COMPARATOR_FIELDS}
        fields["requested_rating"] = str(row["request"]["rating"])
        examples.append(
            {
                "input_text": row["prompt"],
                "tags": [*row["request"]["rubrics"], f"{row['request']['rating']}★"],
                "output_text_a": text(row, a),
                "output_text_b": text(row, b),
                "score": None if ca is None or cb is None else round(1.5 * (ca - cb), 6),
                "individual_rater_scores": [],
                "custom_fields": fields,
            }
        )
    schema = [{"name": k, "type": "per_model_number"} for k in COMPARATOR_FIELDS]
    schema.append({"name": "requested_rating", "type": "category"})
    return {
        "metadata": {
            "source_path": f"kit evaluate: {result['data']['dir']} split {result['data']['split']}",
            "custom_fields_schema": schema,
        },
        "models": [{"name": a}, {"name": b}],
        "examples": examples,
    }

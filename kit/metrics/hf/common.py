"""What every `kit` `evaluate` module shares: its `MetricInfo` and input checks.

Imported by the module scripts as `kit.metrics.hf.common`: `evaluate.load`
copies only the script itself into its module cache, so shared code must be
importable from the installed `kit` package, not from a sibling file.
"""

from __future__ import annotations

CITATION = "geo-reviews kit (kit.metrics); see each module's description for the original metric."


def metric_info(*, description: str, inputs: str, features: dict):
    """An `evaluate.MetricInfo` with the kit's citation and the given input features.

    Example:
        >>> import datasets
        >>> info = metric_info(description="d", inputs="i",
        ...                    features={"predictions": datasets.Value("string")})
        >>> list(info.features)
        ['predictions']
    """
    import datasets
    import evaluate

    return evaluate.MetricInfo(
        description=description,
        citation=CITATION,
        inputs_description=inputs,
        features=datasets.Features(features),
    )


def as_list(values) -> list:
    """Column values from `evaluate` as a plain list (datasets 5 can hand back a lazy column).

    Example:
        >>> as_list(("a", "b"))
        ['a', 'b']
    """
    return list(values)


def text_pair_info(*, description: str, inputs: str):
    """`metric_info` for a metric of generated texts against one reference text each.

    Example:
        >>> list(text_pair_info(description="d", inputs="i").features)
        ['predictions', 'references']
    """
    import datasets

    string = datasets.Value("string")
    return metric_info(description=description, inputs=inputs, features={"predictions": string, "references": string})


def corpus_and_per_sample(
    predictions, references, *, key: str, corpus, per_sample_key: str, per_sample, return_per_sample: bool
) -> dict:
    """`{key: corpus(predictions, references)}`, plus per-pair scores under
    `per_sample_key` when `return_per_sample` — the shape every text-pair module returns.

    Example:
        >>> corpus_and_per_sample(["a"], ["a"], key="m", corpus=lambda p, r: 1.0,
        ...                       per_sample_key="m_each", per_sample=lambda p, r: 1.0,
        ...                       return_per_sample=True)
        {'m': 1.0, 'm_each': [1.0]}
    """
    predictions, references = as_list(predictions), as_list(references)
    out = {key: corpus(predictions, references)}
    if return_per_sample:
        out[per_sample_key] = [per_sample(p, r) for p, r in zip(predictions, references, strict=True)]
    return out

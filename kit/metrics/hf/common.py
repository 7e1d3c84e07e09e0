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

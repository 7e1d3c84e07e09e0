"""The deterministic SYNTHETIC sample: same format and field statistics as the real dataset.

`sample` generates the records; `banks*` and `places` hold the phrase and
place banks it draws from.

Example:
    >>> from kit.data.synth import write_sample  # doctest: +SKIP
    >>> write_sample("data/sample/geo-reviews-sample.tskv", rows=5000)  # doctest: +SKIP
    5000
"""

from kit.data.synth.sample import generate_records, planted_counts, rubric_group, write_sample

__all__ = ["generate_records", "planted_counts", "rubric_group", "write_sample"]

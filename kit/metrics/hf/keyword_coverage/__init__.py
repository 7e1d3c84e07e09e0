"""The `keyword_coverage` `evaluate` module.

Load it with `kit.metrics.load_metric("keyword_coverage")`.
"""

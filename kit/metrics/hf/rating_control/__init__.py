"""The `rating_control` `evaluate` module.

Load it with `kit.metrics.load_metric("rating_control")`.
"""

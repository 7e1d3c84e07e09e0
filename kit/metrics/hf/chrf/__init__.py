"""The `chrf` `evaluate` module (load with `kit.metrics.load_metric("chrf")`)."""

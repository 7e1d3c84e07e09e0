"""The `length_ratio` `evaluate` module (load with `kit.metrics.load_metric("length_ratio")`)."""

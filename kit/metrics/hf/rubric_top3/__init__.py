"""The `rubric_top3` `evaluate` module (load with `kit.metrics.load_metric("rubric_top3")`)."""

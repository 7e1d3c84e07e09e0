"""The `diversity` `evaluate` module (load with `kit.metrics.load_metric("diversity")`)."""

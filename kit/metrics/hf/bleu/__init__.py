"""The `bleu` `evaluate` module (load with `kit.metrics.load_metric("bleu")`)."""

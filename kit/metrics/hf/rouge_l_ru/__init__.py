"""The `rouge_l_ru` `evaluate` module (load with `kit.metrics.load_metric("rouge_l_ru")`)."""

"""`evaluate` metric modules, one directory each, that load offline.

Each `<name>/<name>.py` is an `evaluate.Metric` subclass wrapping the pure
functions of `kit.metrics`, so `evaluate.load("<this dir>/<name>")` gives the
same numbers as calling them directly. Load them with
`kit.metrics.load_metric(name)`; nothing is fetched from the Hub.
"""

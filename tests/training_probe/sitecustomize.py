"""Notes each training run, a call of `kit.train.loop.Engine.run`, in the file `KIT_TEST_TRAINING_LOG` names.

Fine-tuning, pretraining the tiny base and the benchmarks' kit side all train
through `Engine.run`, so a call of it is what "trains a model" means to
tests/training_guard.py. The guard puts this dir first on the PYTHONPATH of
every process a test starts, so Python imports this `sitecustomize` at start-up
there (and in the processes those start, `kit launch`'s included); the pytest
process calls `watch_training()` itself. The patch is made when
`kit.train.loop` is first imported, so nothing is imported earlier than the kit
imports it; the kit holds no test hook. A `sitecustomize` later on the path
(e.g. tests/slow_batches) still runs: this one runs it after itself.

Example:
    >>> import types
    >>> class Engine:
    ...     def run(self):
    ...         return "trained"
    >>> watch(types.SimpleNamespace(Engine=Engine))
    >>> Engine.run.watched, Engine.run.__name__  # a call now notes itself, then trains
    (True, 'run')
"""

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

LOG_ENV = "KIT_TEST_TRAINING_LOG"
TRAINING_MODULE = "kit.train.loop"


def note(what: str) -> None:
    """Append one line, `what` and this process's id and command, to the log file (when one is set)."""
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{what} in process {os.getpid()} ({' '.join(sys.argv)[:200]})\n")


def watch(loop) -> None:
    """Make `loop.Engine.run` note each call before it trains (once: a watched run is left as is)."""
    run = loop.Engine.run
    if getattr(run, "watched", False):
        return

    @functools.wraps(run)
    def watched_run(self, *args, **kwargs):
        note("kit.train.loop.Engine.run")
        return run(self, *args, **kwargs)

    watched_run.watched = True
    loop.Engine.run = watched_run


class _WatchOnImport(importlib.abc.MetaPathFinder):
    """Finds `kit.train.loop` as usual and watches it once it has run; stays for a later import (a reload)."""

    busy = False

    def find_spec(self, name, path=None, target=None):
        if name != TRAINING_MODULE or self.busy:
            return None
        self.busy = True  # the finders after this one find the real module
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_watch(module):
            exec_module(module)
            watch(module)

        spec.loader.exec_module = exec_and_watch
        return spec


def watch_training() -> None:
    """Watch `kit.train.loop.Engine.run` in this process: now when it is imported, else once it is."""
    if TRAINING_MODULE in sys.modules:
        watch(sys.modules[TRAINING_MODULE])
    elif not any(type(f).__name__ == _WatchOnImport.__name__ for f in sys.meta_path):
        sys.meta_path.insert(0, _WatchOnImport())


def _run_the_next_sitecustomize() -> None:
    """Python imports only the first `sitecustomize` on the path: run the one this dir hides, if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if __name__ == "sitecustomize":  # Python's start-up import, not `tests.training_probe.sitecustomize`
    if os.environ.get(LOG_ENV):
        watch_training()
    _run_the_next_sitecustomize()

"""Test hook: with this dir on PYTHONPATH and `KIT_TEST_BATCH_DELAY=<seconds>`, the training loop is slow.

Each batch `kit.train.loop` builds waits that long first (a sleep: no number
changes), so a subprocess test can kill a run between its checkpoints. Python
imports `sitecustomize` at start-up in every process that has this dir on its
path, the processes a `kit launch` starts included; the kit itself holds no
test hook. The patch is made when `kit.train.loop` is first imported, so
nothing is imported earlier than the kit imports it.
"""

import importlib.abc
import importlib.util
import os
import sys
import time

DELAY_S = float(os.environ.get("KIT_TEST_BATCH_DELAY") or 0)


def _slow_down(loop) -> None:
    make_batch = loop.make_batch

    def slow_make_batch(*args, **kwargs):
        time.sleep(DELAY_S)
        return make_batch(*args, **kwargs)

    loop.make_batch = slow_make_batch


class _AfterLoopImport(importlib.abc.MetaPathFinder):
    """Finds `kit.train.loop` as usual and slows it down once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != "kit.train.loop":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _slow_down(module)

        spec.loader.exec_module = exec_module
        return spec


if DELAY_S:
    sys.meta_path.insert(0, _AfterLoopImport())

"""Training checkpoints without a model: round trips, pruning, incomplete dirs, failed saves."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from kit.errors import UserError
from kit.runs import RunPaths
from kit.train import checkpoint
from kit.train.checkpoint import LoopState, load_checkpoint, save_checkpoint


class Boom(Exception):
    """The failure a test injects halfway through a save."""


def arrays(seed: int, shapes=((3, 4), (4,), (2, 1, 5))) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def state(step: int) -> LoopState:
    return LoopState(
        step=step,
        epoch=1,
        position=7,
        tokens=12_345,
        best_val=1.25,
        bad_evals=2,
        history=[{"step": 1, "train_loss": 2.5, "lr": 1e-3}, {"step": step, "val_loss": 1.25}],
        elapsed_s=3.5,
    )


def save(paths: RunPaths, step: int, **kwargs):
    return save_checkpoint(paths, state(step), arrays(step), arrays(100 + step, ((2,),)), **kwargs)


def steps(paths: RunPaths) -> list[int]:
    return [s for s, _ in paths.list_checkpoints()]


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_round_trip_of_arrays_loop_state_and_best(tmp_path):
    paths = RunPaths(tmp_path / "run")
    st = state(50)
    trainable = [*arrays(1), np.arange(6, dtype=np.int32).reshape(2, 3)]
    # Optimizer state: more arrays than trainable ones, with a 0-d step count as optax keeps it.
    optimizer = [*arrays(2), *arrays(3), np.asarray(50, dtype=np.int64)]
    best = [a + 1 for a in trainable]
    path = save_checkpoint(paths, st, trainable, optimizer, best=best, extra={"total_steps": 200})
    assert path == paths.checkpoint(50) == tmp_path / "run" / "checkpoints" / "step_000050"

    got_state, got_trainable, got_optimizer, got_best, meta = load_checkpoint(path)
    assert got_state == st and isinstance(got_state, LoopState)
    assert_same(got_trainable, trainable)
    assert_same(got_optimizer, optimizer)
    assert_same(got_best, best)
    assert meta["total_steps"] == 200 and meta["n_trainable"] == 4 and meta["n_optimizer"] == 7


def test_round_trip_without_best_and_of_a_fresh_loop_state(tmp_path):
    paths = RunPaths(tmp_path / "run")
    path = save_checkpoint(paths, LoopState(), arrays(1), [])
    got_state, got_trainable, got_optimizer, got_best, meta = load_checkpoint(path)
    assert got_state == LoopState() and got_state.best_val is None and got_state.history == []
    assert_same(got_trainable, arrays(1))
    assert got_optimizer == [] and got_best is None and meta["has_best"] is False


def test_keep_last_prunes_the_oldest(tmp_path):
    paths = RunPaths(tmp_path / "run")
    for step in (3, 6, 9, 12, 15):
        save(paths, step, keep_last=2)
    assert steps(paths) == [12, 15]
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == ["step_000012", "step_000015"]
    assert paths.latest_checkpoint() == paths.checkpoint(15)
    assert load_checkpoint(paths.latest_checkpoint())[0] == state(15)


def test_keep_last_counts_by_step_not_by_name_length(tmp_path):
    paths = RunPaths(tmp_path / "run")
    for step in (999_999, 1_000_000, 1_000_001):  # step_999999 sorts after step_1000000 as text
        save(paths, step, keep_last=2)
    assert steps(paths) == [1_000_000, 1_000_001]


def test_incomplete_checkpoint_dirs_are_ignored_and_refused(tmp_path):
    paths = RunPaths(tmp_path / "run")
    save(paths, 3)
    complete = paths.checkpoint(3)
    meta_only, state_only = paths.checkpoint(4), paths.checkpoint(5)
    meta_only.mkdir()
    shutil.copy(complete / "meta.json", meta_only)
    state_only.mkdir()
    shutil.copy(complete / "state.npz", state_only)
    # The temp dir of a write killed just before its rename holds both files.
    shutil.copytree(complete, paths.checkpoints / ".step_000006.k3j2.tmp")
    shutil.copytree(complete, paths.checkpoints / "step_7")  # not a checkpoint name

    assert paths.list_checkpoints() == [(3, complete)]
    assert paths.latest_checkpoint() == complete
    for path in (meta_only, state_only, paths.checkpoint(8)):
        with pytest.raises(UserError, match="not found or incomplete"):
            load_checkpoint(path)


@pytest.mark.parametrize("fails", ["arrays", "meta"])
def test_a_failed_save_leaves_earlier_checkpoints_intact(tmp_path, monkeypatch, fails):
    paths = RunPaths(tmp_path / "run")
    save(paths, 3)
    save(paths, 6)

    def boom(*args, **kwargs):
        raise Boom

    if fails == "arrays":
        monkeypatch.setattr(checkpoint.np, "savez", boom)  # e.g. disk full while writing state.npz
    else:
        monkeypatch.setattr(checkpoint, "write_json", boom)  # state.npz written, meta.json not
    with pytest.raises(Boom):
        save(paths, 9, keep_last=1)
    monkeypatch.undo()

    # Nothing pruned (keep_last=1 would have removed both), no half-written dir left.
    assert steps(paths) == [3, 6]
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == ["step_000003", "step_000006"]
    got_state, got_trainable, *_ = load_checkpoint(paths.latest_checkpoint())
    assert got_state == state(6)
    assert_same(got_trainable, arrays(6))

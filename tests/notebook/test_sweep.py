"""kit.notebook.sweep: sweep points, the config TOML round trip and a sweep on the micro model."""

from __future__ import annotations

import json
import tomllib

import pytest

from kit.config import from_dict, load_config


def test_sweep_points_and_toml_round_trip(tmp_path):
    from kit.notebook import sweep

    assert len(sweep.one_at_a_time(sweep.DEFAULT_AXES)) == 6
    assert len(sweep.one_at_a_time(sweep.SMOKE_AXES)) == 4
    assert len(sweep.grid(sweep.DEFAULT_AXES)) == 18
    cfg = load_config("configs/gemma2_2b_tpu.toml", ["lora.rank=16", 'run.name="x y"'])
    path = sweep.write_config(cfg, tmp_path / "c" / "best.toml", header="line one\nline two")
    assert path.read_text().startswith("# line one\n# line two\n")
    assert load_config(path) == cfg
    assert from_dict(tomllib.loads(sweep.config_toml(cfg))) == cfg


@pytest.mark.slow  # trains two sweep points
def test_run_sweep_on_the_micro_model(tmp_path, tiny_prepared, tiny_preset):
    from kit.notebook import sweep
    from kit.testing import micro_overrides

    overrides = [
        o
        for o in micro_overrides(tmp_path, tiny_preset, tiny_prepared)
        if not o.startswith(("run.", "lora.rank", "train.steps"))
    ] + ["train.steps=2", "train.eval_every=0", "train.checkpoint_every=0"]
    points = sweep.one_at_a_time({"lora.rank": [2, 4]})
    results = sweep.run_sweep("configs/tiny.toml", points, overrides=overrides, out_dir=tmp_path / "sweep")
    assert results["lora.rank"].tolist() == [2, 4]
    assert results["val_loss"].notna().all()
    run = json.loads((tmp_path / "sweep" / "sweep-01-rank4" / "run.json").read_text())
    assert run["config"]["lora"]["rank"] == 4 and run["config"]["train"]["steps"] == 2
    best = sweep.best_point(results)
    assert set(best) == {"lora.rank"}
    cfg = sweep.best_config("configs/gemma2_2b_gpu.toml", best, [f"data.dir={tiny_prepared}"])
    assert cfg.lora.rank == best["lora.rank"] and cfg.model.preset == "gemma2_2b_en"
    with pytest.raises(Exception, match="rating_accuracy"):
        sweep.best_point(results, "rating_accuracy")

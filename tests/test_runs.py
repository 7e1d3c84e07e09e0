"""`run.json` as a typed record, the run dir's lifecycle, and CLI flags derived from the option dataclasses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kit.atomic import output_kind
from kit.cli import build_parser
from kit.errors import UserError
from kit.eval import EvalOptions
from kit.generate import GenerateOptions, SamplerSpec
from kit.options import options_from
from kit.runs import (
    RUN,
    RUN_JSON,
    DataInfo,
    LoraInfo,
    RunInfo,
    check_same_config,
    check_shared,
    config_changes,
    default_data_dir,
    list_runs,
    prepare_run_dir,
    run_dir,
    start_run_dir,
)


def _lora_run() -> RunInfo:
    return RunInfo(
        name="tiny-lora",
        preset="models/tiny-base",
        dtype="float32",
        status="finished",
        config={"data": {"dir": "data/prepared"}},
        adapter="adapter.lora.h5",
        lora=LoraInfo(rank=16, alpha=32.0, targets="qv", layers=["decoder_block_0/attention/query"]),
        data=DataInfo(dir="data/prepared", dataset_fingerprint="abc", rows_sha256="def", train_rows=10, val_rows=2),
        metrics={"val_loss": 0.75},
        timings={"train_s": 1.0},
    )


def test_run_info_round_trips_through_the_file(tmp_path):
    info = _lora_run()
    path = info.write(tmp_path)
    assert path == tmp_path / RUN_JSON
    back = RunInfo.read(tmp_path)
    assert back == info
    assert isinstance(back.lora, LoraInfo) and back.lora.rank == 16
    assert isinstance(back.data, DataInfo) and back.data.train_rows == 10
    assert back.data_dir == "data/prepared" and default_data_dir(str(tmp_path)) == "data/prepared"
    assert list_runs(tmp_path.parent)[0]["val_loss"] == 0.75


def test_run_json_keeps_its_keys_and_leaves_unset_sections_out(tmp_path):
    base = RunInfo(name="tiny-base", preset="models/tiny-base", dtype="float32", status="base")
    raw = json.loads(base.write(tmp_path).read_text(encoding="utf-8"))
    assert raw["adapter"] is None and raw["lora"] is None  # a base model says so explicitly
    assert not {"data", "parameters", "batching", "error"} & set(raw)
    full = _lora_run().to_dict()
    assert full["lora"] == {"rank": 16, "alpha": 32.0, "targets": "qv", "layers": ["decoder_block_0/attention/query"]}
    assert full["data"]["rows_sha256"] == "def"


def test_run_info_ignores_keys_of_a_newer_kit_and_refuses_bad_files(tmp_path):
    raw = {**_lora_run().to_dict(), "from_the_future": 1}
    (tmp_path / RUN_JSON).write_text(json.dumps(raw), encoding="utf-8")
    assert RunInfo.read(tmp_path) == _lora_run()
    (tmp_path / RUN_JSON).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        RunInfo.read(tmp_path)
    (tmp_path / RUN_JSON).write_text(json.dumps({"name": "x"}), encoding="utf-8")
    with pytest.raises(UserError, match="not a run record"):
        RunInfo.read(tmp_path)
    with pytest.raises(UserError, match="Run not found"):
        RunInfo.read(tmp_path / "missing")


# --------------------------------------------------------------------------- the run dir's lifecycle


def _run(root, name="r", *, status="running", adapter=False, checkpoint=0, config=None):
    """A run dir as `kit finetune` leaves it: marked, its run.json, optionally an adapter and a checkpoint."""
    paths = run_dir(root, name)
    start_run_dir(paths, replace=False)
    RunInfo(name=name, preset="p", dtype="float32", status=status, config=config or {}).write(paths.root)
    if adapter:
        paths.adapter.write_bytes(b"lora")
    if checkpoint:
        ckpt = paths.checkpoint(checkpoint)
        ckpt.mkdir(parents=True)
        (ckpt / "meta.json").write_text("{}", encoding="utf-8")
        (ckpt / "state.npz").write_bytes(b"")
    return paths


def test_a_missing_run_dir_is_a_new_run_and_resume_needs_a_checkpoint(tmp_path):
    paths = run_dir(tmp_path, "r")
    assert prepare_run_dir(paths, resume=False, overwrite=False) == ("new", False)
    assert prepare_run_dir(paths, resume="auto", overwrite=False) == ("new", False)
    assert prepare_run_dir(paths, resume="auto", overwrite=True) == ("new", False)
    with pytest.raises(UserError, match="--resume: no checkpoint in .*Start without --resume"):
        prepare_run_dir(paths, resume=True, overwrite=False)
    assert not paths.root.exists()  # checking makes nothing


def test_a_run_with_a_checkpoint_resumes_and_starting_it_over_takes_overwrite(tmp_path):
    paths = _run(tmp_path, checkpoint=3)
    assert prepare_run_dir(paths, resume=True, overwrite=False) == ("resume", False)
    assert prepare_run_dir(paths, resume="auto", overwrite=False) == ("resume", False)
    assert prepare_run_dir(paths, resume=True, overwrite=True) == ("resume", False)  # --resume wins: nothing replaced
    with pytest.raises(
        UserError, match="already holds a run .*pass --overwrite to replace it, --resume to continue it"
    ):
        prepare_run_dir(paths, resume=False, overwrite=False)
    assert prepare_run_dir(paths, resume=False, overwrite=True) == ("new", True)
    assert prepare_run_dir(paths, resume="auto", overwrite=True) == ("new", True)


def test_auto_resume_leaves_a_finished_run_or_a_base_as_it_is(tmp_path):
    for status in ("completed", "early_stopped"):
        paths = _run(tmp_path, status, status=status, adapter=True)
        assert prepare_run_dir(paths, resume="auto", overwrite=False) == ("finished", False)
    assert prepare_run_dir(_run(tmp_path, "base", status="base"), resume="auto", overwrite=False) == ("finished", False)
    # Neither finished with an adapter nor resumable: starting it over is the user's call.
    for name, status, adapter in (("lost", "completed", False), ("budget", "stopped_on_budget", True)):
        paths = _run(tmp_path, name, status=status, adapter=adapter)
        with pytest.raises(UserError, match="pass --overwrite"):
            prepare_run_dir(paths, resume="auto", overwrite=False)


def test_only_a_run_of_the_kit_is_ever_replaced(tmp_path):
    paths = run_dir(tmp_path, "thesis")
    paths.root.mkdir()
    (paths.root / "chapter1.tex").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="did not write; choose another run name .*--overwrite never replaces it"):
        prepare_run_dir(paths, resume=False, overwrite=True)
    with pytest.raises(UserError, match="did not write"):
        prepare_run_dir(paths, resume="auto", overwrite=False)


def test_start_run_dir_marks_it_and_replaces_only_when_told(tmp_path):
    paths = run_dir(tmp_path / "runs", "r")
    start_run_dir(paths, replace=False)
    assert output_kind(paths.root) == RUN and [p.name for p in paths.root.iterdir()] == [".kit-output.json"]
    old = _run(tmp_path / "runs", "r", checkpoint=2)
    start_run_dir(old, replace=True)
    assert [p.name for p in old.root.iterdir()] == [".kit-output.json"]  # the earlier run is gone
    _run(tmp_path / "runs", "r")
    start_run_dir(old, replace=False)
    assert old.run_json.is_file()  # kept


def test_check_shared_names_the_process_that_cannot_see_the_run_dir(tmp_path):
    paths = run_dir(tmp_path, "r")
    with pytest.raises(UserError, match=r"^Process 3 cannot see the run dir .* on storage every host mounts"):
        check_shared(paths, 3)
    start_run_dir(paths, replace=False)
    check_shared(paths, 3)


def test_a_resume_must_keep_the_config_except_what_only_decides_when_to_stop(tmp_path):
    defaults = {"train": {"steps": 0, "max_minutes": 0.0, "patience": 0}, "data": {"dir": "data/prepared"}}
    saved = {"train": {"steps": 8, "max_minutes": 0.0, "patience": 0}, "data": {"dir": "d"}}
    paths = _run(tmp_path, config=saved)
    check_same_config(paths, saved, defaults)
    check_same_config(paths, {**saved, "train": {**saved["train"], "max_minutes": 30.0}}, defaults)
    now = {"train": {"steps": 9, "max_minutes": 0.0, "patience": 0}, "data": {"dir": "other"}}
    with pytest.raises(UserError, match="differs from the run's saved config at train.steps, data.dir. Resume with"):
        check_same_config(paths, now, defaults)


def test_a_key_added_after_the_run_started_counts_as_its_default():
    defaults = {"train": {"steps": 0, "unlikelihood": 0.0}}
    saved = {"train": {"steps": 8}}  # written by a kit without train.unlikelihood
    assert config_changes(saved, {"train": {"steps": 8, "unlikelihood": 0.0}}, defaults) == []
    assert config_changes(saved, {"train": {"steps": 8, "unlikelihood": 0.5}}, defaults) == ["train.unlikelihood"]
    assert config_changes({}, {"train": {"steps": 0, "unlikelihood": 0.0}}, defaults) == []


def _subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def test_generate_and_evaluate_flags_default_to_the_one_sampler_spec():
    args = build_parser().parse_args(["generate", "--model", "m", "--rubrics", "Кафе", "--rating", "5"])
    assert options_from(SamplerSpec, args, dest_prefix="sampler_") == SamplerSpec()
    assert options_from(GenerateOptions, args) == GenerateOptions()
    args = build_parser().parse_args(["evaluate", "--models", "a", "--out", "r"])
    sampler = options_from(SamplerSpec, args, dest_prefix="sampler_")
    assert sampler == SamplerSpec()
    assert options_from(EvalOptions, args, sampler=sampler) == EvalOptions()


def test_help_shows_the_defaults_from_the_code(monkeypatch):
    spec = SamplerSpec()
    for command in ("generate", "evaluate"):
        help_text = " ".join(_subparser(command).format_help().split())
        assert f"(default {spec.k})" in help_text and f"(default {spec.name})" in help_text
    assert f"(default {GenerateOptions().max_new_tokens})" in " ".join(_subparser("generate").format_help().split())
    # Change the code's default and the help follows: nothing restates it by hand.
    field = next(f for f in dataclasses.fields(SamplerSpec) if f.name == "k")
    monkeypatch.setattr(field, "default", 7)
    assert "(default 7)" in " ".join(_subparser("generate").format_help().split())


def test_flags_map_onto_the_option_fields():
    args = build_parser().parse_args(
        [
            "generate",
            "--model",
            "m",
            "--requests",
            "in.jsonl",
            "--out",
            "o.jsonl",
            "--sampler",
            "top-p",
            "--top-p",
            "0.7",
            "--top-k",
            "0",
            "--n",
            "3",
            "--max-new-tokens",
            "64",
            "--seed",
            "4",
        ]
    )
    assert options_from(SamplerSpec, args, dest_prefix="sampler_") == SamplerSpec(name="top_p", p=0.7, k=0, seed=4)
    assert options_from(GenerateOptions, args) == GenerateOptions(n=3, max_new_tokens=64)
    args = build_parser().parse_args(
        [
            "evaluate",
            "--models",
            "a",
            "--out",
            "r",
            "--bootstrap",
            "10",
            "--no-perplexity",
            "--limit",
            "7",
            "--top-k",
            "3",
        ]
    )
    options = options_from(EvalOptions, args, sampler=options_from(SamplerSpec, args, dest_prefix="sampler_"))
    assert (options.n_resamples, options.perplexity, options.limit, options.sampler.k) == (10, False, 7, 3)


def test_tiny_and_prepare_flags_come_from_their_dataclasses():
    from kit.data.prepare import PrepareOptions
    from kit.model.tiny import TinySpec

    args = build_parser().parse_args(["tiny"])
    assert options_from(TinySpec, args) == TinySpec()
    args = build_parser().parse_args(["tiny", "--documents", "pages", "--batch-size", "4", "--max-steps", "0"])
    assert options_from(TinySpec, args) == TinySpec(documents="pages", batch_size=4)
    args = build_parser().parse_args(["data", "prepare", "--input", "x.tskv", "--out", "d", "--test-share", "0.2"])
    assert options_from(PrepareOptions, args) == PrepareOptions(test_share=0.2)
    help_text = " ".join(_subparser("tiny").format_help().split())
    assert f"(default {TinySpec().batch_size})" in help_text and "(default reviews)" in help_text

"""`run.json` as a typed record, and CLI flags derived from the option dataclasses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kit.cli import build_parser
from kit.errors import UserError
from kit.eval import EvalOptions
from kit.generate import GenerateOptions, SamplerSpec
from kit.options import options_from
from kit.runs import RUN_JSON, DataInfo, LoraInfo, RunInfo, default_data_dir, list_runs


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

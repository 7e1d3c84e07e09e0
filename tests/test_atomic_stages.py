"""The output rule (kit.atomic): no stage deletes what the kit did not write, and a failed write loses nothing old.

For every stage that writes a directory (data prepare, tiny, finetune,
export, evaluate) and every file output (generate --out, data synth --out):
an existing file at the output path stays byte-identical with exit 2; a
foreign non-empty directory stays untouched with exit 2 (even with
--overwrite); the kit's own earlier output is refused without --overwrite and
replaced with it. The refusals come before any model loads or any data is read.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from kit import atomic
from kit.atomic import MARKER, OutputKind, check_output_dir, mark_output, output_kind
from kit.cli import main
from kit.data import SAMPLE_FILE
from kit.data.prepare import PREPARED
from kit.errors import UserError, WriteError
from kit.eval.report import REPORT
from kit.model.export import EXPORT
from kit.model.tiny import TINY_BASE
from kit.runs import RUN

NO_MODEL = "no/such/model-dir"  # a model that cannot load: a refusal that names the output came first


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under `path` (or `path` itself) by relative name, with its bytes."""
    if path.is_file():
        return {".": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    if code:
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return code, err


@pytest.fixture
def notes(tmp_path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("мои заметки, не удалять\n", encoding="utf-8")
    return f


@pytest.fixture
def foreign(tmp_path) -> Path:
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.txt").write_text("глава 1\n", encoding="utf-8")
    (d / "sub").mkdir()
    (d / "sub" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return d


def fake_output(path: Path, kind: OutputKind) -> Path:
    """A directory that carries the kit's marker for `kind` (the stage's own earlier output)."""
    path.mkdir(parents=True)
    (path / "old.txt").write_text("old output\n", encoding="utf-8")
    return mark_output(path, kind)


def assert_refused(argv, path: Path, capsys, *needles: str) -> str:
    before = snapshot(path)
    code, err = run(argv, capsys)
    assert code == 2, err
    assert str(path) in err
    for needle in needles:
        assert needle in err, err
    assert snapshot(path) == before  # byte-identical
    return err


# --------------------------------------------------------------------------- the rule itself


def test_check_output_dir_allows_new_and_empty_dirs(tmp_path):
    assert check_output_dir(tmp_path / "new", REPORT) is False
    (tmp_path / "empty").mkdir()
    assert check_output_dir(tmp_path / "empty", REPORT) is False


def test_check_output_dir_replaces_only_its_own_kind_and_only_with_overwrite(tmp_path, foreign, notes):
    own = fake_output(tmp_path / "report", REPORT)
    with pytest.raises(UserError, match="already holds a report .kit evaluate.; pass --overwrite"):
        check_output_dir(own, REPORT)
    assert check_output_dir(own, REPORT, overwrite=True) is True
    with pytest.raises(UserError, match="holds a report .kit evaluate., not a prepared dataset"):
        check_output_dir(own, PREPARED, overwrite=True)
    with pytest.raises(UserError, match="non-empty directory that kit evaluate did not write"):
        check_output_dir(foreign, REPORT, overwrite=True)
    with pytest.raises(UserError, match="is an existing file"):
        check_output_dir(notes, REPORT, overwrite=True)
    link = tmp_path / "link"
    link.symlink_to(own)
    with pytest.raises(UserError, match="symbolic link"):
        check_output_dir(link, REPORT, overwrite=True)


@pytest.mark.parametrize(
    "kind, files",
    [
        (PREPARED, ["dataset_dict.json", "stats.json"]),
        (TINY_BASE, ["tiny_base.json", "config.json"]),
        (RUN, ["run.json"]),
        (EXPORT, ["kit_export.json"]),
        (REPORT, ["metrics.json", "samples.jsonl"]),
    ],
    ids=lambda v: getattr(v, "name", None),
)
def test_outputs_of_older_kits_are_known_by_their_own_files(tmp_path, kind, files):
    # Written before the marker existed: recognised by the files only that stage writes.
    d = tmp_path / "old"
    d.mkdir()
    for f in files:
        (d / f).write_text("{}", encoding="utf-8")
    assert output_kind(d) == kind
    assert check_output_dir(d, kind, overwrite=True) is True
    (d / files[0]).unlink()
    if len(files) > 1:  # one of the pair alone is not enough
        assert output_kind(d) is None


def test_output_dir_writes_the_marker_last_and_checks_again_before_the_swap(tmp_path):
    out = tmp_path / "report"
    with atomic.output_dir(out, REPORT) as tmp:
        (tmp / "metrics.json").write_text("{}")
        assert not (tmp / MARKER).exists()
    assert json.loads((out / MARKER).read_text()) == {"kind": "report", "written_by": "geo-reviews kit"}
    # Something the kit did not write appears at the path while the stage runs: the swap is refused.
    late = tmp_path / "late"
    with pytest.raises(UserError, match="did not write"), atomic.output_dir(late, REPORT) as tmp:
        (tmp / "metrics.json").write_text("{}")
        late.mkdir()
        (late / "thesis.txt").write_text("mine")
    assert snapshot(late) == {"thesis.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late", "report"]


# --------------------------------------------------------------------------- kit data prepare


def prepare_argv(out, *extra):
    return ["data", "prepare", "--input", SAMPLE_FILE, "--out", out, "--max-rows", "300", "--quiet", *extra]


def test_prepare_onto_a_file_or_a_foreign_dir_is_refused(notes, foreign, capsys):
    # The repro: a typo in --out named a file, which prepare deleted.
    assert_refused(prepare_argv(notes), notes, capsys, "is an existing file")
    assert_refused(prepare_argv(foreign), foreign, capsys, "did not write")
    assert_refused(prepare_argv(foreign, "--overwrite"), foreign, capsys, "--overwrite never replaces it")


@pytest.fixture(scope="module")
def prepared_once(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "prepared"
    assert main([str(a) for a in prepare_argv(out)]) == 0
    return out


def test_prepare_replaces_its_own_output_only_with_overwrite(prepared_once, tmp_path, capsys):
    out = tmp_path / "prepared"
    shutil.copytree(prepared_once, out)
    assert output_kind(out) == PREPARED
    assert_refused(prepare_argv(out, "--seed", "1"), out, capsys, "already holds a prepared dataset", "--overwrite")
    old_stats = (out / "stats.json").read_bytes()
    code, err = run(prepare_argv(out, "--seed", "1", "--overwrite"), capsys)
    assert code == 0, err
    assert (out / "stats.json").read_bytes() != old_stats  # replaced: another seed, another split
    assert json.loads((out / "stats.json").read_text())["options"]["seed"] == 1
    assert output_kind(out) == PREPARED


def test_a_prepare_that_fills_the_disk_keeps_the_old_dataset(prepared_once, tmp_path, capsys, monkeypatch):
    import kit.data.prepare as prepare_module

    out = tmp_path / "prepared"
    shutil.copytree(prepared_once, out)
    before = snapshot(out)
    real = prepare_module.write_json

    def disk_full_at_rubrics(path, obj):
        if Path(path).name == prepare_module.RUBRICS_FILE:  # the splits and stats.json are written by now
            Path(path).write_text('{"half', encoding="utf-8")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, obj)

    monkeypatch.setattr(prepare_module, "write_json", disk_full_at_rubrics)
    code, err = run(prepare_argv(out, "--seed", "2", "--overwrite"), capsys)
    assert code == 1
    assert err == (
        f"error: Could not write {out}: No space left on device. The previous copy is kept unchanged; "
        "free some space and run again."
    )
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no temp dir left


# --------------------------------------------------------------------------- kit tiny


def tiny_argv(data, out, *extra):
    return ["tiny", "--data", data, "--out", out, "--max-steps", "2", "--batch-size", "8", "--quiet", *extra]


def test_tiny_refuses_a_file_a_foreign_dir_and_its_own_base_without_overwrite(tmp_path, notes, foreign, capsys):
    data = tmp_path / "no-data-needed"  # refused before the data is read
    assert_refused(tiny_argv(data, notes), notes, capsys, "is an existing file")
    assert_refused(tiny_argv(data, foreign, "--overwrite"), foreign, capsys, "kit tiny did not write")
    own = fake_output(tmp_path / "tiny-base", TINY_BASE)
    assert_refused(tiny_argv(data, own), own, capsys, "already holds a tiny base", "pass --overwrite")


@pytest.mark.slow  # pretrains a (small) tiny base
def test_tiny_replaces_its_own_base_with_overwrite(tmp_path, tiny_prepared, capsys):
    own = fake_output(tmp_path / "tiny-base", TINY_BASE)
    code, err = run(tiny_argv(tiny_prepared, own, "--overwrite"), capsys)
    assert code == 0, err
    assert not (own / "old.txt").exists() and (own / "config.json").is_file() and (own / "tiny_base.json").is_file()
    assert output_kind(own) == TINY_BASE


# --------------------------------------------------------------------------- kit finetune


def finetune_sets(out_dir, name, preset, data) -> list[str]:
    sets = [f"run.out_dir={out_dir}", f"run.name={name}", f"model.preset={preset}", f"data.dir={data}"]
    return [*sets, "data.buckets=[64, 128]", "data.max_val_rows=8", "train.batch_size=8"]


def finetune_argv(out_dir, name, preset, data, *extra):
    sets = finetune_sets(out_dir, name, preset, data)
    return [
        "finetune",
        "--config",
        "configs/tiny_base.toml",
        *[x for s in sets for x in ("--set", s)],
        "--quiet",
        *extra,
    ]


def test_finetune_refuses_a_file_or_a_foreign_dir_as_its_run_dir(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "typo").write_text("a file where the run dir would go\n")
    (runs / "mine").mkdir()
    (runs / "mine" / "thesis.txt").write_text("глава 1\n", encoding="utf-8")
    assert_refused(finetune_argv(runs, "typo", NO_MODEL, "d"), runs / "typo", capsys, "is an existing file")
    assert_refused(
        finetune_argv(runs, "mine", NO_MODEL, "d", "--overwrite"), runs / "mine", capsys, "kit finetune did not write"
    )


def test_finetune_replaces_its_own_run_only_with_overwrite(tmp_path, tiny_preset, tiny_prepared, capsys):
    # A base-model run: loads the micro model and scores validation, no training.
    runs = tmp_path / "runs"
    argv = finetune_argv(runs, "base", tiny_preset, tiny_prepared)
    code, err = run(argv, capsys)
    assert code == 0, err
    run_dir = runs / "base"
    assert output_kind(run_dir) == RUN and (run_dir / "run.json").is_file()
    (run_dir / "stray.txt").write_text("left by the first run")
    assert_refused(argv, run_dir, capsys, "already holds a run", "--resume to continue it", "--set run.name")
    # --overwrite with a base model that does not load: the earlier run is kept (it goes only once the new one starts).
    before = snapshot(run_dir)
    code, err = run([*finetune_argv(runs, "base", NO_MODEL, tiny_prepared), "--overwrite"], capsys)
    assert code == 2 and NO_MODEL in err and snapshot(run_dir) == before
    code, err = run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert not (run_dir / "stray.txt").exists() and output_kind(run_dir) == RUN


# --------------------------------------------------------------------------- kit export


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_preset, tiny_prepared) -> Path:
    """A registered base-model run of the micro model (no training: seconds)."""
    from kit.config import load_config
    from kit.train import finetune

    out = tmp_path_factory.mktemp("runs")
    sets = finetune_sets(out, "micro-base", tiny_preset, tiny_prepared)
    finetune(load_config("configs/tiny_base.toml", sets), progress=False)
    return out / "micro-base"


def export_argv(run_dir, out, *extra):
    return ["export", "--run", run_dir, "--to", "keras", "--out", out, *extra]


def test_export_refuses_a_run_dir_a_file_and_a_foreign_dir(tmp_path, base_run, notes, foreign, capsys):
    other = tmp_path / "other-run"
    shutil.copytree(base_run, other)
    err = assert_refused(export_argv(base_run, other, "--overwrite"), other, capsys, "holds a run (kit finetune)")
    assert "not an export" in err
    assert_refused(export_argv(base_run, base_run, "--overwrite"), base_run, capsys, "holds a run")
    assert_refused(export_argv(base_run, notes), notes, capsys, "is an existing file")
    assert_refused(export_argv(base_run, foreign, "--overwrite"), foreign, capsys, "kit export did not write")


def test_export_replaces_its_own_export_only_with_overwrite(tmp_path, base_run, capsys):
    out = tmp_path / "export"
    code, err = run(export_argv(base_run, out), capsys)
    assert code == 0, err
    assert output_kind(out) == EXPORT
    (out / "stray.txt").write_text("x")
    assert_refused(export_argv(base_run, out), out, capsys, "already holds an export (kit export)")
    code, err = run(export_argv(base_run, out, "--overwrite"), capsys)
    assert code == 0, err
    assert not (out / "stray.txt").exists() and (out / "config.json").is_file()


# --------------------------------------------------------------------------- kit evaluate


def evaluate_argv(models, data, out, *extra):
    return ["evaluate", "--models", *models, "--data", data, "--out", out, "--quiet", *extra]


def test_evaluate_refuses_before_any_model_loads(tmp_path, notes, foreign, capsys):
    data = tmp_path / "no-data"
    assert_refused(evaluate_argv([NO_MODEL], data, notes), notes, capsys, "is an existing file")
    assert_refused(evaluate_argv([NO_MODEL], data, foreign, "--overwrite"), foreign, capsys, "kit evaluate did not")
    own = fake_output(tmp_path / "report", REPORT)
    assert_refused(evaluate_argv([NO_MODEL], data, own), own, capsys, "already holds a report", "--overwrite")


@pytest.mark.slow  # generates and scores with the micro model
def test_evaluate_replaces_its_own_report_with_overwrite(tmp_path, base_run, tiny_prepared, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_prepared, data)  # the judges cache themselves in the data dir
    own = fake_output(tmp_path / "report", REPORT)
    fast = ["--limit", "2", "--bootstrap", "10", "--no-perplexity", "--max-new-tokens", "4", "--top-rubrics", "0"]
    code, err = run(evaluate_argv([base_run], data, own, *fast, "--overwrite"), capsys)
    assert code == 0, err
    assert not (own / "old.txt").exists() and (own / "metrics.json").is_file() and output_kind(own) == REPORT


# --------------------------------------------------------------------------- file outputs


@pytest.fixture
def generate_argv(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_JAX_CACHE", "off")
    requests = tmp_path / "in.jsonl"
    requests.write_text('{"rubrics": "Кафе", "rating": 5}\n', encoding="utf-8")
    vocabulary = tmp_path / "vocabulary"
    vocabulary.mkdir()
    (vocabulary / "rubrics.json").write_text('{"Кафе": 1}', encoding="utf-8")

    def argv(model, out, *extra):
        return ["generate", "--model", model, "--data", vocabulary, "--requests", requests, "--out", out, *extra]

    return argv


def test_generate_out_refuses_an_existing_file_or_a_dir_before_the_model_loads(generate_argv, notes, foreign, capsys):
    assert_refused(generate_argv(NO_MODEL, notes), notes, capsys, "already exists; pass --overwrite")
    assert_refused(generate_argv(NO_MODEL, foreign, "--overwrite"), foreign, capsys, "is a directory")


@pytest.mark.slow  # generates with the micro model
def test_generate_out_replaces_an_existing_file_with_overwrite(generate_argv, base_run, notes, capsys):
    code, err = run(generate_argv(base_run, notes, "--max-new-tokens", "4", "--overwrite"), capsys)
    assert code == 0, err
    (line,) = notes.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["request"]["rubrics"] == ["Кафе"]


def test_synth_out_keeps_an_existing_file_unless_overwrite(notes, capsys):
    argv = ["data", "synth", "--out", notes, "--rows", "5"]
    assert_refused(argv, notes, capsys, "already exists; pass --overwrite")
    code, err = run([*argv, "--overwrite"], capsys)
    assert code == 0, err
    assert len(notes.read_text(encoding="utf-8").splitlines()) == 5


def test_votes_never_replace_a_votes_file_the_kit_did_not_write(tmp_path):
    from kit.eval.votes import read_votes, save_vote

    report = tmp_path / "report"
    report.mkdir()
    save_vote(report, 1, "a", "b", "A")
    save_vote(report, 2, "a", "b", "tie")  # votes accumulate
    assert set(read_votes(report)) == {"1|a|b", "2|a|b"}
    (report / "votes.json").write_text("my own notes, not JSON\n", encoding="utf-8")
    with pytest.raises(UserError, match="is not a votes file the kit wrote"):
        save_vote(report, 3, "a", "b", "B")
    assert (report / "votes.json").read_text(encoding="utf-8") == "my own notes, not JSON\n"


def test_the_notebooks_prepare_never_replaces_a_foreign_dir(foreign):
    from kit.notebook.smoke import ensure_prepared

    before = snapshot(foreign)
    with pytest.raises(UserError, match="did not write"):
        ensure_prepared(foreign)
    assert snapshot(foreign) == before


# --------------------------------------------------------------------------- failed writes keep the old copy


def test_a_checkpoint_that_fills_the_disk_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import numpy as np

    import kit.train.checkpoint as ckpt
    from kit.runs import RunPaths

    paths = RunPaths(tmp_path / "run")
    ckpt.save_checkpoint(paths, ckpt.LoopState(step=3), [np.ones(4)], [np.zeros(2)])
    before = snapshot(paths.checkpoints)
    real = np.savez

    def half_then_full(file, **arrays):
        Path(file).write_bytes(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", half_then_full)
    for step in (6, 3):  # a new checkpoint, and a rewrite of the existing step
        with pytest.raises(WriteError) as err:
            ckpt.save_checkpoint(paths, ckpt.LoopState(step=step), [np.full(4, 2.0)], [np.ones(2)])
        assert "No space left on device" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setattr(ckpt.np, "savez", real)
    assert snapshot(paths.checkpoints) == before  # step 3 byte-identical, no step 6, no temp dir
    state, trainable, *_ = ckpt.load_checkpoint(paths.latest_checkpoint())
    assert state.step == 3 and trainable[0].tolist() == [1.0] * 4


def test_an_adapter_save_that_fails_keeps_the_old_adapter(tmp_path, tiny_preset, monkeypatch):
    from kit.model.loader import load_causal_lm
    from kit.model.lora import enable_lora, save_adapter

    lm = load_causal_lm(str(tiny_preset), dtype="float32")
    enable_lora(lm, rank=2, alpha=4.0, targets="qv")
    adapter = tmp_path / "run" / "adapter.lora.h5"
    save_adapter(lm, adapter)
    before = adapter.read_bytes()

    def io_error(path):
        Path(path).write_bytes(b"\x89HDF half")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(lm.backbone, "save_lora_weights", io_error)
    with pytest.raises(WriteError, match="Input/output error. The previous copy is kept unchanged"):
        save_adapter(lm, adapter)
    assert adapter.read_bytes() == before
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["adapter.lora.h5"]


def test_a_report_write_that_fills_the_disk_keeps_the_old_report(tmp_path, monkeypatch):
    import kit.eval.report as report

    result = {"columns_order": ["m"], "samples": [{"id": 0, "text": "Вкусно."}], "metrics": {}}
    monkeypatch.setattr(report, "render_markdown", lambda result: "# report\n")
    out = report.write_report(tmp_path / "report", result)
    before = snapshot(out)
    real = report.write_text

    def disk_full_at_markdown(path, text):
        if Path(path).name == report.REPORT_MD:  # metrics.json and samples.jsonl are written by now
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(report, "write_text", disk_full_at_markdown)
    with pytest.raises(WriteError, match="No space left on device. The previous copy is kept unchanged"):
        report.write_report(out, {**result, "samples": [{"id": 0, "text": "новое"}]}, overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]

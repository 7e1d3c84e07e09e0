"""The README's supported-models table is the one `bench/plan_presets.py` renders from its committed JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import plan_presets  # noqa: E402

from kit.families import architecture  # noqa: E402


def _result() -> dict:
    return json.loads(plan_presets.RESULT.read_text(encoding="utf-8"))


def test_readme_table_is_the_generated_one(capsys):
    code = plan_presets.main(["--check", str(ROOT / "README.md")])
    assert code == 0, capsys.readouterr().out + "\nrun `python bench/plan_presets.py --write README.md`"


def test_the_json_covers_every_preset_and_device_with_published_counts():
    rows = _result()["rows"]
    assert {(r["preset"], r["device"]) for r in rows} <= {
        (p, d) for p in plan_presets.PRESETS for d in plan_presets.DEVICES
    }
    assert {r["preset"] for r in rows} == set(plan_presets.PRESETS)
    for r in rows:
        if "error" not in r:
            assert r["parameters"]["base"] == r["parameters"]["published"] == architecture(r["preset"])[1]
            assert (r["method"] == "compiled") == (r["device"] != "t4")


def test_the_t4_rows_are_what_kit_plan_says_now(capsys):
    """The estimates are analytic: a config or formula change that moves them makes the JSON stale."""
    from kit.cli import main

    for r in _result()["rows"]:
        if r["device"] != "t4":
            continue
        argv = ["plan", "--config", r["config"], "--device", "t4", "--set", "data.dir=nowhere", "--json"]
        argv += [] if r["own_config"] else ["--set", f"model.preset={r['preset']}"]
        assert main(argv) == 0
        plan = json.loads(capsys.readouterr().out)
        assert (plan["verdict"]["fits"], plan["verdict"]["peak_bytes"]) == (r["fits"], r["peak_bytes"]), r["preset"]


def test_a_preset_without_its_own_config_says_so():
    rendered = plan_presets.render(_result())
    for r in _result()["rows"]:
        line = next(
            x for x in rendered.splitlines() if x.startswith(f"| `{r['preset']}` |") and f"| {r['device']} |" in x
        )
        assert (f"--set model.preset={r['preset']}" in line) == (not r["own_config"])
    assert plan_presets.config_for("gemma3_4b_text", "tpu") == ("configs/gemma3_1b_tpu.toml", False)
    assert plan_presets.config_for("gemma3_1b", "gpu") == ("configs/gemma3_1b_gpu.toml", True)


def test_check_fails_on_an_edited_table(tmp_path, capsys):
    readme = tmp_path / "README.md"
    generated = plan_presets.render(_result())
    readme.write_text("# x\n\n" + generated.replace("**fits**", "**fits well**", 1) + "\n")
    assert plan_presets.main(["--check", str(readme)]) == 1
    assert "--write README.md" in capsys.readouterr().out
    assert plan_presets.main(["--write", str(readme)]) == 0
    assert plan_presets.main(["--check", str(readme)]) == 0
    readme.write_text("# no table\n")
    assert plan_presets.main(["--check", str(readme)]) == 2
    with pytest.raises(ValueError, match="markers"):
        plan_presets.replace_table("text", "table")

"""docs/config.md is what `kit.config_reference` writes from the config's option metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kit.config import KEY_RULES, Config
from kit.config_reference import COMMAND, main, render

ROOT = Path(__file__).resolve().parent.parent


def test_committed_reference_is_current():
    committed = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render(), f"docs/config.md is out of date: run `{COMMAND}`"


def test_the_reference_lists_every_key_and_every_rule_between_keys():
    text = render()
    for section in dataclasses.fields(Config):
        for field in dataclasses.fields(section.default_factory):
            assert f"| `{section.name}.{field.name}` |" in text
    assert all(f"| `{rule.key}` | {rule.doc} |" in text for rule in KEY_RULES)
    assert '| `train.remat` | str | `"auto"` | one of auto, off, blocks |' in text


def test_check_mode_fails_on_a_stale_file_and_write_mode_fixes_it(tmp_path, capsys):
    out = tmp_path / "config.md"
    out.write_text("# stale\n", encoding="utf-8")
    assert main(["--out", str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--out", str(out)]) == 0
    assert main(["--out", str(out), "--check"]) == 0
    assert out.read_text(encoding="utf-8") == render()

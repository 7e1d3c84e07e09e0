"""The README's benchmark table is the one `bench/table.py` generates from `bench/results/*.json`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import table  # noqa: E402


def test_readme_table_is_the_generated_one(capsys):
    code = table.main(["--check", str(ROOT / "README.md")])
    assert code == 0, capsys.readouterr().out + "\nrun `make bench-table` and commit README.md"


def test_every_row_reads_a_committed_result():
    """A row whose file is gone would silently drop out of the table."""
    missing = sorted({row.file for row in table.ROWS} - {p.name for p in table.RESULTS.glob("*.json")})
    assert not missing, f"rows read missing result files: {missing}"


def test_each_row_names_its_file_machine_and_load():
    rendered = table.render(table.read_results())
    rows = [line for line in rendered.splitlines() if line.startswith("| ") and "`" in line.split("|")[5]]
    assert len(rows) == len(table.ROWS)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[4].endswith(".json`") and "cores" in cells[5] and cells[6], line


def test_a_result_from_a_busy_machine_is_marked_busy():
    busy = json.loads((table.RESULTS / "prepare.json").read_text())
    busy["load_average_1m"] = {"before": 7.5, "after": 6.0}
    idle = dict(busy, load_average_1m={"before": 1.2, "after": 1.4})
    rendered_busy = table.render({"prepare.json": busy})
    rendered_idle = table.render({"prepare.json": idle})
    row = next(line for line in rendered_busy.splitlines() if "prepare.json" in line)
    assert "*(busy machine)*" in row and "**busy**: 7.50 before, 6.00 after" in row
    assert "busy" not in next(line for line in rendered_idle.splitlines() if "prepare.json" in line)


def test_check_fails_on_an_edited_table(tmp_path, capsys):
    readme = tmp_path / "README.md"
    generated = table.render(table.read_results())
    readme.write_text("# x\n\n" + generated.replace("| 1,663 |", "| 1,700 |") + "\n")
    assert table.main(["--check", str(readme)]) == 1
    assert "make bench-table" in capsys.readouterr().out
    assert table.main(["--write", str(readme)]) == 0
    assert table.main(["--check", str(readme)]) == 0


def test_a_file_without_markers_is_refused(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n")
    assert table.main(["--check", str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
    with pytest.raises(ValueError, match="markers"):
        table.replace_table("text", "table")

"""kit.atomic: a finished write replaces the file or directory whole; a failed or killed one leaves the old."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kit import atomic
from kit.atomic import atomic_dir, atomic_path, write_json, write_text
from kit.errors import WriteError

ROOT = Path(__file__).resolve().parent.parent


class Boom(Exception):
    """The failure a test injects halfway through a write."""


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def run_killed(code: str, *args: str) -> None:
    """Run `code` in a child that SIGKILLs itself: nothing after the kill (no `finally`) runs."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


# --------------------------------------------------------------------------- atomic_path


def test_atomic_path_replaces_the_file_only_when_the_body_finishes(tmp_path):
    target = tmp_path / "model.weights.h5"
    target.write_text("old")
    with atomic_path(target, suffix=".weights.h5") as tmp:
        # Same directory, so the final os.replace is a rename within one filesystem;
        # the suffix is kept for writers that check extensions (Keras).
        assert tmp.parent == tmp_path and tmp != target and tmp.name.endswith(".weights.h5")
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert entries(tmp_path) == ["model.weights.h5"]


def test_atomic_path_keeps_the_old_file_when_the_body_raises(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise Boom
    assert target.read_text() == "old"
    assert entries(tmp_path) == ["x.txt"]


def test_atomic_path_creates_nothing_when_the_body_raises(tmp_path):
    target = tmp_path / "new" / "x.txt"
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom
    assert not target.exists()
    assert entries(tmp_path / "new") == []  # the parent is made, but no temp file stays in it


def test_atomic_path_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def no_space(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", no_space)
    with (
        pytest.raises(WriteError, match="No space left on device. The previous copy is kept"),
        atomic_path(target) as tmp,
    ):
        tmp.write_text("new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert entries(tmp_path) == ["x.txt"]


def test_a_killed_file_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "stats.json"
    target.write_text("old")
    run_killed(
        """
        import os, signal, sys
        from kit.atomic import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_text("half of the new")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(target),
    )
    assert target.read_text() == "old"
    # Nothing cleans up after SIGKILL: the temp file stays, hidden and named after its target.
    (leftover,) = set(entries(tmp_path)) - {"stats.json"}
    assert leftover.startswith(".stats.json.")


# --------------------------------------------------------------------------- atomic_dir


def fill_old(out: Path) -> None:
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")


def assert_old(out: Path) -> None:
    assert entries(out) == ["a.txt", "b.txt"]
    assert (out / "a.txt").read_text() == "old a" and (out / "b.txt").read_text() == "old b"


def test_atomic_dir_swaps_the_whole_directory_when_the_body_finishes(tmp_path):
    out = tmp_path / "prepared"
    fill_old(out)
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp != out
        (tmp / "c.txt").write_text("new c")
        assert_old(out)  # readers see the old directory until the swap
    assert entries(out) == ["c.txt"]  # no old file survives next to the new ones
    assert (out / "c.txt").read_text() == "new c"
    assert entries(tmp_path) == ["prepared"]  # neither the temp dir nor the old one is left


def test_atomic_dir_keeps_the_old_directory_when_the_body_raises(tmp_path):
    out = tmp_path / "prepared"
    fill_old(out)
    with pytest.raises(Boom), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "half.arrow").write_text("half")
        raise Boom
    assert_old(out)
    assert entries(tmp_path) == ["prepared"]


def test_atomic_dir_creates_nothing_when_the_body_raises(tmp_path):
    with pytest.raises(Boom), atomic_dir(tmp_path / "prepared") as tmp:
        (tmp / "a.txt").write_text("new")
        raise Boom
    assert entries(tmp_path) == []


def test_a_killed_directory_write_leaves_the_old_directory(tmp_path):
    out = tmp_path / "prepared"
    fill_old(out)
    run_killed(
        """
        import os, signal, sys
        from pathlib import Path
        from kit.atomic import atomic_dir
        with atomic_dir(sys.argv[1]) as tmp:
            (Path(tmp) / "a.txt").write_text("new a")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(out),
    )
    assert_old(out)
    (leftover,) = set(entries(tmp_path)) - {"prepared"}
    assert leftover.startswith(".prepared.")


def test_atomic_dir_puts_the_old_directory_back_when_the_swap_fails(tmp_path, monkeypatch):
    # The old dir is renamed aside first; the rename of the new one in then fails (EIO).
    out = tmp_path / "prepared"
    fill_old(out)
    real_replace = os.replace
    calls = []

    def second_rename_fails(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", second_rename_fails)
    with pytest.raises(WriteError) as err, atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("new c")
    monkeypatch.undo()
    assert calls[0][1].startswith(".prepared.old.") and calls[1][1] == "prepared"  # aside, then in
    assert_old(out)
    assert entries(tmp_path) == ["prepared"]  # neither the new temp dir nor the aside copy is left
    assert str(err.value) == (
        f"Could not write {out}: Input/output error. The previous copy is kept unchanged; check the disk and run again."
    )


def test_atomic_dir_keeps_the_old_directory_when_the_disk_fills_midway(tmp_path):
    out = tmp_path / "prepared"
    fill_old(out)
    full = pytest.raises(WriteError, match="No space left on device. The previous copy is kept")
    with full, atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new a")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert_old(out)
    assert entries(tmp_path) == ["prepared"]


def test_a_swap_killed_between_the_renames_is_undone_by_the_next_write(tmp_path):
    out = tmp_path / "prepared"
    fill_old(out)
    run_killed(
        """
        import os, signal, sys
        from pathlib import Path
        from kit import atomic
        real, calls = os.replace, []

        def replace(src, dst):
            calls.append(dst)
            real(src, dst)
            if len(calls) == 1:  # the old dir is aside, the new one not yet in
                os.kill(os.getpid(), signal.SIGKILL)

        atomic.os.replace = replace
        with atomic.atomic_dir(sys.argv[1]) as tmp:
            (Path(tmp) / "c.txt").write_text("new c")
        """,
        str(out),
    )
    assert not out.exists()
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith(".prepared.old.")]
    assert entries(aside) == ["a.txt", "b.txt"]  # the previous good copy survives, aside
    # The next write (or output check) on the path puts it back before it starts.
    with pytest.raises(Boom), atomic_dir(out):
        raise Boom
    assert_old(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prepared.old.")]


# --------------------------------------------------------------------------- write_text / write_json


def test_write_text_round_trips_utf8_and_replaces(tmp_path):
    note = tmp_path / "note.txt"
    write_text(note, "первая\n")
    write_text(note, "Кафе «Ромашка»\nвторая строка\n")
    assert note.read_bytes() == "Кафе «Ромашка»\nвторая строка\n".encode()
    assert entries(tmp_path) == ["note.txt"]


def test_write_json_round_trips_readable_indented_json(tmp_path):
    stats = {"name": "Кафе «Ромашка»", "rows": 3, "shares": [0.05, 0.2], "nested": {"none": None, "ok": True}}
    file = tmp_path / "stats.json"
    write_json(file, {"rows": 1})
    write_json(file, stats)
    raw = file.read_text(encoding="utf-8")
    assert json.loads(raw) == stats
    assert list(json.loads(raw)) == list(stats)  # key order kept (stats.json is compared byte for byte)
    assert "Кафе «Ромашка»" in raw and "\\u" not in raw  # Cyrillic stays readable
    assert raw.splitlines()[1] == '  "name": "Кафе «Ромашка»",' and raw.endswith("}\n")
    assert entries(tmp_path) == ["stats.json"]


def test_write_json_of_an_unserialisable_object_keeps_the_old_file(tmp_path):
    file = tmp_path / "stats.json"
    write_json(file, {"rows": 3})
    with pytest.raises(TypeError):
        write_json(file, {"rows": 4, "path": object()})
    assert json.loads(file.read_text()) == {"rows": 3}
    assert entries(tmp_path) == ["stats.json"]


def test_write_json_makes_missing_parents(tmp_path):
    file = tmp_path / "runs" / "micro" / "run.json"
    write_json(file, {"status": "ok"})
    assert json.loads(file.read_text()) == {"status": "ok"}
    assert os.listdir(file.parent) == ["run.json"]

"""Atomic writes, and the one rule for what a stage may replace.

Atomic: a temp file (or dir) in the same directory, then `os.replace`. A
killed process leaves either the old copy or the new one, never half of one,
and a failed write (disk full, I/O error) keeps the old copy and says so in
one line (`WriteError`). Used for everything that matters: datasets, stats,
checkpoints, adapters, reports.

What may be replaced (`check_output_dir`, `output_dir`, `check_output_file`):
every stage that writes a directory (prepared dataset, tiny base, run,
export, report) may create a new one or fill an empty one. It replaces a
directory only when that directory carries the kit's marker for the same kind
of output (`MARKER`, a small file written last) and the user asked for it
(`--overwrite`). An existing file, a non-empty directory the kit did not
write, or a kit output of another kind (a run dir given to `kit export
--out`) is refused with one line naming the path and the choices, so a typo
in an output path never deletes anything. A file output (`kit generate
--out`, `kit data synth --out`) replaces an existing file only with
`--overwrite`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kit.errors import UserError, WriteError

# Written last inside every directory a stage writes: {"kind": ..., "written_by": ...}.
MARKER = ".kit-output.json"
WRITER = "geo-reviews kit"
_KINDS: dict[str, OutputKind] = {}


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """A kind of directory that a stage writes, and how to recognise one.

    Outputs of kits older than the marker have no `MARKER`; a directory that
    holds all of `legacy` (files only that stage writes, such as `run.json` or
    `dataset_dict.json` + `stats.json`) is taken as that kind, written by the
    kit. Each kind is defined once, next to the layout it names, and registers
    itself here so any check can name what a directory holds.

    Attributes:
        name: What it is called in messages and in the marker, e.g. `prepared dataset`.
        command: The command that writes it, e.g. `kit data prepare`.
        legacy: The files that mark an older kit's output of this kind.

    Example:
        >>> OutputKind("scratch", "kit scratch", legacy=("scratch.json",)).name
        'scratch'
    """

    name: str
    command: str
    legacy: tuple[str, ...] = ()

    def __post_init__(self):
        _KINDS.setdefault(self.name, self)  # the first definition stays (a reloaded module makes an equal one)


def output_kind(path: str | os.PathLike) -> OutputKind | None:
    """The kind of kit output that the directory `path` holds (by its marker, else its legacy files), or None.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> kind = OutputKind("demo output", "kit demo")
        >>> output_kind(d) is None, output_kind(mark_output(d, kind)) == kind
        (True, True)
    """
    path = Path(path)
    if not path.is_dir():
        return None
    marker = path / MARKER
    if marker.is_file():
        try:
            name = json.loads(marker.read_text(encoding="utf-8")).get("kind")
        except (ValueError, AttributeError, OSError):
            name = None
        if name in _KINDS:
            return _KINDS[name]
    for kind in _KINDS.values():
        if kind.legacy and all((path / f).is_file() for f in kind.legacy):
            return kind
    return None


def mark_output(directory: str | os.PathLike, kind: OutputKind) -> Path:
    """Write the kit's `MARKER` for `kind` into `directory` (last, once its content is in place).

    The content is fixed, so outputs stay byte-identical run to run.
    """
    directory = Path(directory)
    write_json(directory / MARKER, {"kind": kind.name, "written_by": WRITER})
    return directory


def check_output_dir(
    path: str | os.PathLike, kind: OutputKind, *, overwrite: bool = False, option: str = "--out", also: str = ""
) -> bool:
    """Refuse an output dir that `kind`'s stage may not replace; True when it will replace its own earlier output.

    Allowed: a missing path, an empty directory, and (only with `overwrite`)
    a directory holding the kit's own output of this `kind`. Refused with one
    line naming the path and the choices: an existing file (or symlink), a
    non-empty directory the kit did not write (even with `overwrite`), and a
    kit output of another kind. Call it before the stage's work starts;
    `output_dir` calls it again just before the swap.

    Raises:
        UserError: the path may not be replaced.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "thesis.txt").write_text("mine")
        >>> check_output_dir(d, OutputKind("demo report", "kit demo"))
        Traceback (most recent call last):
        ...
        kit.errors.UserError: ... is a non-empty directory that kit demo did not write; choose another --out (--overwrite never replaces it).
    """
    path = Path(path)
    recover_swap(path)
    if path.is_symlink():
        raise UserError(
            f"{path} is a symbolic link; give {option} a real directory path (the kit does not replace links)."
        )
    if not path.exists():
        return False
    if not path.is_dir():
        raise UserError(
            f"{path} is an existing file, not {_a(kind.name)} directory; choose another {option} "
            "(the kit never replaces a file with a directory)."
        )
    if not any(path.iterdir()):
        return False
    found = output_kind(path)
    if found == kind:
        if overwrite:
            return True
        raise UserError(
            f"{path} already holds {_a(kind.name)} ({kind.command}); pass --overwrite to replace it, "
            f"{also}or choose another {option}."
        )
    if found is not None:
        raise UserError(
            f"{path} holds {_a(found.name)} ({found.command}), not {_a(kind.name)}; choose another {option} "
            f"({kind.command} never replaces {_a(found.name)})."
        )
    raise UserError(
        f"{path} is a non-empty directory that {kind.command} did not write; choose another {option} "
        "(--overwrite never replaces it)."
    )


def _a(name: str) -> str:
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, kind: OutputKind, *, overwrite: bool = False) -> Iterator[Path]:
    """`atomic_dir` for a stage's output: checked by `check_output_dir`, marked with `MARKER` last.

    The check runs before the body and again before the swap (the stage may
    have run for minutes). On any failure the previous output stays.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "out"
        >>> kind = OutputKind("demo output", "kit demo")
        >>> with output_dir(d, kind) as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> sorted(p.name for p in d.iterdir()), output_kind(d) == kind
        (['.kit-output.json', 'a.txt'], True)
    """
    check_output_dir(path, kind, overwrite=overwrite)
    with atomic_dir(path) as tmp:
        yield tmp
        mark_output(tmp, kind)
        check_output_dir(path, kind, overwrite=overwrite)


def check_output_file(path: str | os.PathLike, *, overwrite: bool = False, option: str = "--out") -> bool:
    """Refuse to replace an existing file unless `overwrite`; True when it will be replaced.

    A directory at `path` is always refused.

    Raises:
        UserError: `path` is a directory, or an existing file without `overwrite`.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> check_output_file(f), check_output_file(f.parent, overwrite=True)
        Traceback (most recent call last):
        ...
        kit.errors.UserError: ... is a directory; give --out a file path.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give {option} a file path.")
    if not (path.exists() or path.is_symlink()):
        return False
    if not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it, or choose another {option}.")
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success.

    The temp name keeps `suffix` so writers that check extensions (for example
    Keras' `.weights.h5`) accept it. On an exception the temp file is removed
    and `path` is untouched; a failed write (disk full, I/O error) raises
    `WriteError`, one line that says the previous file is kept.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "x.txt") as tmp:
        ...     _ = tmp.write_text("hello")
        >>> (d / "x.txt").read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    existed = path.exists()
    try:
        try:
            yield tmp_path
            _fsync(tmp_path)
            os.replace(tmp_path, path)
        except OSError as e:
            raise WriteError.of(path, e, kept=existed) from e
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; swap it in for `path` on success.

    An existing `path` is replaced as a whole, so readers never see a mix of
    old and new files. The old directory is renamed aside first and deleted
    only once the new one is in place: if the body or either rename fails,
    the old one is put back, and a failed write raises `WriteError` (one line
    that says the previous copy is kept). A process killed between the two
    renames leaves the old copy as `.<name>.old.*`, and the next `atomic_dir`
    on `path` puts it back before it starts. This is the raw swap; stages
    that write a user's output dir go through `output_dir`, which first
    checks that the dir may be replaced at all.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_dir(d / "out") as tmp:
        ...     _ = (tmp / "a.txt").write_text("1")
        >>> sorted(p.name for p in (d / "out").iterdir())
        ['a.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_swap(path)
    existed = path.exists() or path.is_symlink()
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        try:
            yield tmp
            _fsync_tree(tmp)
        except OSError as e:
            raise WriteError.of(path, e, kept=existed) from e
        old = None
        if existed:
            old = path.with_name(f".{path.name}.old.{os.getpid()}.{uuid.uuid4().hex[:8]}")
            try:
                os.replace(path, old)
            except OSError as e:
                raise WriteError.of(path, e, kept=True) from e
        try:
            os.replace(tmp, path)
        except BaseException as e:
            if old is not None:
                os.replace(old, path)  # the previous good copy goes back where it was
            if isinstance(e, OSError):
                raise WriteError.of(path, e, kept=existed) from e
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_swap(path: str | os.PathLike) -> Path | None:
    """Put back the old copy of `path` that a killed `atomic_dir` swap left aside; return it if one was.

    Only when `path` itself is missing: the newest `.<name>.old.*` goes back
    to `path`, older ones stay for a person to look at.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / ".out.old.1.ab").mkdir()
        >>> recover_swap(d / "out").name, (d / "out").is_dir()
        ('out', True)
    """
    path = Path(path)
    if path.exists() or path.is_symlink() or not path.parent.is_dir():
        return None
    olds = [p for p in path.parent.glob(f".{glob.escape(path.name)}.old.*") if p.is_dir()]
    if not olds:
        return None
    newest = max(olds, key=lambda p: p.stat().st_mtime)
    os.replace(newest, path)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "note.txt"
        >>> write_text(p, "привет")
        >>> p.read_text(encoding="utf-8")
        'привет'
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented UTF-8 JSON (Cyrillic kept readable) atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "stats.json"
        >>> write_json(p, {"rows": 3})
        >>> json.loads(p.read_text())
        {'rows': 3}
    """
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=False) + "\n")


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb+") as f:
            os.fsync(f.fileno())


def _fsync_tree(directory: Path) -> None:
    # The data of every file reaches the disk before the rename makes the directory visible.
    for file in directory.rglob("*"):
        if file.is_file() and not file.is_symlink():
            _fsync(file)

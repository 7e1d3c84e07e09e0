"""JSONL in and out of `kit generate`: one request per line in, one record per request out.

A request line is a JSON object with the keys of `kit.generate.request.FIELDS`
(`rubrics`, `rating`, `keywords`, `name`, `address`); a bad line is reported
with its file and line number. An output record holds the request, its
samples and the settings that made them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from kit.atomic import check_output_file, write_text
from kit.errors import DataError, UserError
from kit.generate.generator import Sample
from kit.generate.request import Request


def read_requests(path: str | Path, vocabulary: Mapping[str, int] | None = None) -> list[Request]:
    """The validated requests of a JSONL file (blank lines skipped).

    Raises:
        UserError: the file is missing or empty; `DataError` (a `UserError`)
            names the file and line of a bad request.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
        >>> _ = f.write_text('{"rubrics": "Кафе", "rating": 5}\\n{"rating": 9}\\n', encoding="utf-8")
        >>> try:
        ...     read_requests(f)
        ... except DataError as e:
        ...     print(e.line)
        2
    """
    file = Path(path)
    if not file.is_file():
        raise UserError(
            f"--requests file not found: {path}. Write one JSON object per line, e.g. "
            '{"rubrics": "Кафе", "rating": 5, "keywords": "кофе"}.'
        )
    requests = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            requests.append(Request.from_dict(json.loads(line), vocabulary=vocabulary))
        except json.JSONDecodeError as e:
            raise DataError(str(path), number, f"not valid JSON ({e.msg})") from None
        except UserError as e:
            raise DataError(str(path), number, str(e)) from None
    if not requests:
        raise UserError(f"--requests file {path} holds no requests (one JSON object per line).")
    return requests


def response_records(requests: Sequence[Request], results: Sequence[Sequence[Sample]]) -> list[dict]:
    """One `{"request", "samples"}` dict per request, in order.

    Example:
        >>> req = Request.create(rubrics="Кафе", rating=5)
        >>> response_records([req], [[Sample(text="Вкусно.", new_tokens=3, stopped=True)]])[0]["samples"]
        [{'text': 'Вкусно.', 'new_tokens': 3, 'stopped': True}]
    """
    return [
        {"request": r.to_dict(), "samples": [dataclasses.asdict(s) for s in samples]}
        for r, samples in zip(requests, results, strict=True)
    ]


def write_responses(path: str | Path, records: Sequence[Mapping], meta: Mapping, *, overwrite: bool = False) -> None:
    """Write `records` as JSONL, each line carrying `meta` too (model, sampler, limits); atomically.

    An existing file at `path` is replaced only with `overwrite` (`kit.atomic.check_output_file`).

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.jsonl"
        >>> write_responses(out, [{"request": {"rating": 5}, "samples": []}], {"model": "m"})
        >>> out.read_text(encoding="utf-8")
        '{"request": {"rating": 5}, "samples": [], "model": "m"}\\n'
    """
    check_output_file(path, overwrite=overwrite)
    write_text(path, "".join(json.dumps({**rec, **meta}, ensure_ascii=False) + "\n" for rec in records))

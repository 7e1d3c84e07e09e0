"""Read and write the geo-reviews TSKV format, and the Hub parquet layout.

One review per line, tab-separated `key=value` fields in the order
`address`, `name_ru`, `rating`, `rubrics`, `text`. Inside a value a newline
is written `\\n`, a tab `\\t`, a carriage return `\\r` and a backslash `\\\\`.
`rating` is written like `5.` (the real file stores floats), `rubrics` is
`;`-separated and `name_ru` may be absent.

Reading streams line by line. A malformed line is reported as
`FILE:LINE: reason`: with `on_error="fail"` the first one raises `DataError`;
with `on_error="skip"` it is recorded in a `ReadReport` and reading goes on.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from kit.errors import DataError, UserError

FIELDS = ("address", "name_ru", "rating", "rubrics", "text")
REQUIRED = ("address", "rating", "rubrics", "text")
OnError = Literal["fail", "skip"]

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_UNESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One review of one organisation.

    Attributes:
        address: Postal address of the organisation (non-empty).
        name_ru: Organisation name, or None when the source has none.
        rating: Stars, an integer 0–5 (0 exists in the raw data and is
            dropped by `prepare`).
        rubrics: Rubrics of the organisation, e.g. `("Кафе", "Ресторан")`.
        text: The review with real newlines (escapes already decoded).

    Example:
        >>> r = Record(address="Москва, ул. Ленина, 1", name_ru="Кофейня",
        ...            rating=5, rubrics=("Кафе",), text="Вкусно!")
        >>> r.rubrics_str
        'Кафе'
    """

    address: str
    name_ru: str | None
    rating: int
    rubrics: tuple[str, ...]
    text: str

    @property
    def rubrics_str(self) -> str:
        """The rubrics joined with `;`, as in the file."""
        return ";".join(self.rubrics)

    def to_dict(self) -> dict:
        """A plain dict (rubrics as a list) for JSON, pandas and `datasets`."""
        return {
            "address": self.address,
            "name_ru": self.name_ru,
            "rating": self.rating,
            "rubrics": list(self.rubrics),
            "text": self.text,
        }


@dataclasses.dataclass
class BadLine:
    """A line that could not be read, with its 1-based number and the reason."""

    line: int
    reason: str

    def to_dict(self) -> dict:
        return {"line": self.line, "reason": self.reason}


@dataclasses.dataclass
class ReadReport:
    """What a read saw: lines, records and every skipped line.

    Attributes:
        path: The file that was read.
        lines: Non-blank lines seen.
        records: Records returned.
        skipped: Bad lines (only filled with `on_error="skip"`).
    """

    path: str
    lines: int = 0
    records: int = 0
    skipped: list[BadLine] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "lines": self.lines,
            "records": self.records,
            "skipped": [b.to_dict() for b in self.skipped],
        }


def escape(value: str) -> str:
    r"""Escape a value for a TSKV field.

    Example:
        >>> escape("два\nслова\tи \\")
        'два\\nслова\\tи \\\\'
    """
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def unescape(value: str) -> str:
    r"""Decode `\n`, `\t`, `\r` and `\\`; any other backslash pair is kept as is.

    Example:
        >>> unescape("два\\nслова")
        'два\nслова'
    """
    if "\\" not in value:
        return value
    return _UNESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)


def format_rating(rating: int) -> str:
    """Write a rating the way the real file does (`5.`).

    Example:
        >>> format_rating(4)
        '4.'
    """
    return f"{int(rating)}."


def format_record(record: Record) -> str:
    """One TSKV line for `record`, without the trailing newline.

    Example:
        >>> format_record(Record("Казань, ул. Баумана, 5", None, 4, ("Кафе",), "Ок"))
        'address=Казань, ул. Баумана, 5\\trating=4.\\trubrics=Кафе\\ttext=Ок'
    """
    parts = [f"address={escape(record.address)}"]
    if record.name_ru is not None:
        parts.append(f"name_ru={escape(record.name_ru)}")
    parts.append(f"rating={format_rating(record.rating)}")
    parts.append(f"rubrics={escape(record.rubrics_str)}")
    parts.append(f"text={escape(record.text)}")
    return "\t".join(parts)


def parse_line(line: str) -> Record:
    """Parse one decoded line (no newline) into a `Record`.

    Raises:
        ValueError: with the reason, when the line is malformed.

    Example:
        >>> parse_line("address=Москва\\trating=5.\\trubrics=Кафе;Бар\\ttext=Супер").rubrics
        ('Кафе', 'Бар')
    """
    fields: dict[str, str] = {}
    for i, part in enumerate(line.split("\t"), start=1):
        key, sep, value = part.partition("=")
        if not sep:
            shown = part if len(part) <= 40 else part[:40] + "…"
            raise ValueError(f"field {i} has no '=' (expected key=value). Received: {shown!r}")
        fields[key] = value
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ValueError(f"missing field {missing[0]!r} (a line needs {', '.join(REQUIRED)})")
    return make_record(
        address=unescape(fields["address"]),
        name_ru=unescape(fields["name_ru"]) if "name_ru" in fields else None,
        rating=fields["rating"],
        rubrics=unescape(fields["rubrics"]),
        text=unescape(fields["text"]),
    )


def parse_rating(value: object) -> int:
    """Parse `5.`, `5`, `5.0` or a number into an int 0–5.

    Raises:
        ValueError: when it is not a whole number from 0 to 5.

    Example:
        >>> parse_rating("3.")
        3
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"rating is not a number. Received: rating={value!r}") from None
    if number != number or not 0 <= number <= 5:  # NaN or out of range
        raise ValueError(f"rating must be between 0 and 5. Received: rating={value!r}")
    if number != int(number):
        raise ValueError(f"rating must be a whole number of stars. Received: rating={value!r}")
    return int(number)


def make_record(
    *, address: str, name_ru: str | None, rating: object, rubrics: str | Iterable[str], text: str
) -> Record:
    """Validate raw field values into a `Record` (shared by TSKV and parquet).

    Raises:
        ValueError: with the reason, when a value is unusable.

    Example:
        >>> make_record(address="Омск", name_ru="", rating="5.", rubrics="Кафе", text="Да").name_ru is None
        True
    """
    if address is None or not str(address).strip():
        raise ValueError("address is empty")
    if text is None or not str(text).strip():
        raise ValueError("text is empty")
    if isinstance(rubrics, str):
        rubric_list = [r.strip() for r in rubrics.split(";")]
    else:
        rubric_list = [str(r).strip() for r in rubrics]
    rubric_list = [r for r in rubric_list if r]
    if not rubric_list:
        raise ValueError("rubrics is empty")
    name = None if name_ru is None or name_ru != name_ru or not str(name_ru).strip() else str(name_ru)
    return Record(
        address=str(address),
        name_ru=name,
        rating=parse_rating(rating),
        rubrics=tuple(rubric_list),
        text=str(text),
    )


def read_tskv(
    path: str | os.PathLike,
    *,
    on_error: OnError = "fail",
    report: ReadReport | None = None,
) -> Iterator[Record]:
    """Stream the records of a TSKV file.

    A UTF-8 BOM and CRLF line ends are accepted; blank lines are ignored.

    Args:
        path: The `.tskv` file.
        on_error: `"fail"` raises `DataError` at the first bad line; `"skip"`
            records it in `report.skipped` and goes on.
        report: Filled with line/record counts and skipped lines.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.tskv"
        >>> _ = p.write_text("address=Омск\\trating=5.\\trubrics=Кафе\\ttext=Вкусно\\n", encoding="utf-8")
        >>> [r.text for r in read_tskv(p)]
        ['Вкусно']
    """
    # Checks run now, not at the first `next()`, so a missing file is reported
    # before any progress bar starts.
    _check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Input file not found: {path}. Run `kit data synth` or `kit data download` first.")
    return _iter_tskv(path, on_error, report if report is not None else ReadReport(str(path)))


def _iter_tskv(path: Path, on_error: OnError, report: ReadReport) -> Iterator[Record]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            report.lines += 1
            try:
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"line is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
                    ) from None
                record = parse_line(line)
            except ValueError as e:
                if on_error == "fail":
                    raise DataError(str(path), lineno, str(e)) from None
                report.skipped.append(BadLine(lineno, str(e)))
                continue
            report.records += 1
            yield record


def read_parquet(
    path: str | os.PathLike,
    *,
    on_error: OnError = "fail",
    report: ReadReport | None = None,
    batch_size: int = 10_000,
) -> Iterator[Record]:
    """Stream records from the Hub parquet layout (`d0rj/geo-reviews-dataset-2023`).

    Columns `address`, `name_ru`, `rating` (int or float), `rubrics`
    (`;`-separated string) and `text`. Bad rows are reported like TSKV lines,
    numbered from 1.

    Example:
        >>> import tempfile, pathlib, pandas as pd
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.parquet"
        >>> pd.DataFrame({"address": ["Омск"], "name_ru": [None], "rating": [4],
        ...               "rubrics": ["Кафе"], "text": ["Норм"]}).to_parquet(p)
        >>> [r.rating for r in read_parquet(p)]
        [4]
    """
    import pyarrow.parquet as pq

    _check_on_error(on_error)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Input file not found: {path}. Run `kit data download` first.")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise UserError(
            f"Cannot read {path} as parquet ({e}). Re-download it with `kit data download --source hub`."
        ) from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise UserError(f"{path}: parquet file has no column {missing[0]!r} (needs {', '.join(REQUIRED)})")
    columns = [c for c in FIELDS if c in names]
    return _iter_parquet(
        path, pf, columns, on_error, report if report is not None else ReadReport(str(path)), batch_size
    )


def _iter_parquet(path, pf, columns, on_error, report, batch_size) -> Iterator[Record]:
    row = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            row += 1
            report.lines += 1
            try:
                record = make_record(
                    address=data["address"][i],
                    name_ru=data["name_ru"][i] if "name_ru" in data else None,
                    rating=data["rating"][i],
                    rubrics=data["rubrics"][i] or "",
                    text=data["text"][i],
                )
            except ValueError as e:
                if on_error == "fail":
                    raise DataError(str(path), row, str(e)) from None
                report.skipped.append(BadLine(row, str(e)))
                continue
            report.records += 1
            yield record


def read_records(
    path: str | os.PathLike, *, on_error: OnError = "fail", report: ReadReport | None = None
) -> Iterator[Record]:
    """Read a `.tskv` or `.parquet` file, chosen by its extension.

    Example:
        >>> read_records("missing.csv")
        Traceback (most recent call last):
        ...
        kit.errors.UserError: Unsupported input format: missing.csv. Use a .tskv file or the Hub's .parquet.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".tskv", ".txt"):
        return read_tskv(path, on_error=on_error, report=report)
    if suffix == ".parquet":
        return read_parquet(path, on_error=on_error, report=report)
    raise UserError(f"Unsupported input format: {path}. Use a .tskv file or the Hub's .parquet.")


def write_tskv(path: str | os.PathLike, records: Iterable[Record]) -> int:
    """Write records as TSKV atomically (LF line ends, no BOM); returns the count.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.tskv"
        >>> write_tskv(p, [Record("Омск", None, 5, ("Кафе",), "Да\\nнет")])
        1
        >>> next(read_tskv(p)).text
        'Да\\nнет'
    """
    from kit.atomic import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for record in records:
            f.write(format_record(record))
            f.write("\n")
            n += 1
    return n


def _check_on_error(on_error: str) -> None:
    if on_error not in ("fail", "skip"):
        raise UserError(f"--on-error must be 'fail' or 'skip'. Received: {on_error!r}")

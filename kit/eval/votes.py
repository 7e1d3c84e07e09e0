"""Blind A/B votes on report samples, kept in `<report>/votes.json` next to the report they judge."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kit.atomic import write_json
from kit.errors import UserError

VOTES_JSON = "votes.json"
VOTES_SCHEMA = "kit.votes/1"
VOTE_CHOICES = ("A", "B", "tie", "both bad")
_VOTES_LOCK = threading.Lock()


def vote_key(sample_id: int, a: str, b: str) -> str:
    """The key of one vote in `votes.json`: sample id and the two columns in the order shown.

    Example:
        >>> vote_key(3, "base", "lora")
        '3|base|lora'
    """
    return f"{int(sample_id)}|{a}|{b}"


def read_votes(report_dir: str | Path) -> dict[str, dict]:
    """Human preference votes saved in a report dir, keyed by `vote_key` (empty if none)."""
    file = Path(report_dir) / VOTES_JSON
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data.get("votes", {}) if isinstance(data, dict) else {}


def save_vote(report_dir: str | Path, sample_id: int, a: str, b: str, choice: str | None) -> dict[str, dict]:
    """Record (or with `choice=None` clear) a preference between columns `a` and `b` on one sample.

    Votes accumulate: the whole `votes.json` is read, updated and rewritten
    atomically under a process-wide lock, so concurrent voters never lose each
    other's votes or leave half a file. A `votes.json` the kit did not write
    (not JSON, or another schema) is never replaced: saving is refused.

    Raises:
        UserError: a bad choice, or a `votes.json` that is not the kit's.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> save_vote(d, 3, "base", "lora", "B")["3|base|lora"]["choice"]
        'B'
        >>> read_votes(d)["3|base|lora"]["choice"], save_vote(d, 3, "base", "lora", None)
        ('B', {})
    """
    if choice is not None and choice not in VOTE_CHOICES:
        raise UserError(f"A vote must be one of {', '.join(VOTE_CHOICES)}. Received: choice={choice!r}")
    key = vote_key(sample_id, a, b)
    with _VOTES_LOCK:
        _check_votes_file(Path(report_dir) / VOTES_JSON)
        votes = read_votes(report_dir)
        if choice is None:
            votes.pop(key, None)
        else:
            votes[key] = {
                "id": int(sample_id),
                "a": a,
                "b": b,
                "choice": choice,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        write_json(Path(report_dir) / VOTES_JSON, {"schema": VOTES_SCHEMA, "votes": votes})
    return votes


def _check_votes_file(file: Path) -> None:
    if not file.exists():
        return
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        ours = isinstance(data, dict) and data.get("schema") == VOTES_SCHEMA and isinstance(data.get("votes"), dict)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        ours = False
    if not ours:
        raise UserError(
            f"{file} is not a votes file the kit wrote (schema {VOTES_SCHEMA}); move it elsewhere to record votes here."
        )

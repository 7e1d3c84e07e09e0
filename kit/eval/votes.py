"""Blind A/B votes on report samples, kept in `<report>/votes.json` next to the report they judge."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from kit.atomic import write_json
from kit.errors import UserError

VOTES_JSON = "votes.json"
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

    The whole `votes.json` is rewritten atomically under a process-wide lock,
    so concurrent voters never lose each other's votes or leave half a file.

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
        write_json(Path(report_dir) / VOTES_JSON, {"schema": "kit.votes/1", "votes": votes})
    return votes
